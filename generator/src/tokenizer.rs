//! SmolLM2's tokenizer, rebuilt from a GGUF file's metadata.
//!
//! candle's `TokenizerFromGguf` does not know the `smollm` pre-tokenizer and silently falls back
//! to GPT-2's, which adds a space before each segment and does not split digits: the ids differ
//! from the model's training without any error. SmolLM2's own `tokenizer.json` pre-tokenizes with
//! `Digits(individual_digits)` followed by `ByteLevel(add_prefix_space = false)`; that is what we
//! build here, and the tests compare ids with llama.cpp's encoding of the same file.
//!
//! Control tokens (`<|im_start|>` and friends) are never produced from text: the chat template
//! inserts them by id, so a document or question that contains the string `<|im_end|>` cannot
//! end a message early (prompt injection through retrieved text stays text).

use std::collections::HashMap;

use candle_core::quantized::gguf_file;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::Tokenizer;

use crate::error::{GeneratorError, Result};
use crate::ChatMessage;

/// GGUF token types (llama.cpp's `llama_token_type`): 1 normal, 2 unknown, 3 control,
/// 4 user-defined, 5 unused, 6 byte.
const TOKEN_TYPE_NORMAL: u32 = 1;
const TOKEN_TYPE_BYTE: u32 = 6;

/// The tokenizer of a ChatML byte-level BPE model (SmolLM2).
pub struct SmolTokenizer {
    bpe: Tokenizer,
    /// The bytes each token stands for; `None` for control tokens.
    token_bytes: Vec<Option<Vec<u8>>>,
    im_start: u32,
    im_end: u32,
    end_of_text: u32,
}

impl SmolTokenizer {
    /// Builds the tokenizer from a GGUF file's metadata.
    pub fn from_gguf(content: &gguf_file::Content) -> Result<Self> {
        let bad = |reason: String| GeneratorError::Inference(format!("GGUF tokenizer: {reason}"));
        let meta = |key: &str| {
            content
                .metadata
                .get(key)
                .ok_or_else(|| bad(format!("the file has no `{key}`")))
        };
        let model = meta("tokenizer.ggml.model")?
            .to_string()
            .map_err(|e| bad(e.to_string()))?;
        if model != "gpt2" {
            return Err(bad(format!(
                "tokenizer model `{model}` is not a byte-level BPE (gpt2)"
            )));
        }
        let strings = |key: &str| -> Result<Vec<String>> {
            meta(key)?
                .to_vec()
                .map_err(|e| bad(e.to_string()))?
                .iter()
                .map(|v| {
                    v.to_string()
                        .cloned()
                        .map_err(|e| bad(format!("{key}: {e}")))
                })
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges: Vec<(String, String)> = strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| bad(format!("merge `{m}` is not two tokens")))
            })
            .collect::<Result<_>>()?;
        let types: Vec<u32> = match content.metadata.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()
                .map_err(|e| bad(e.to_string()))?
                .iter()
                .map(|t| match t {
                    gguf_file::Value::I32(x) => *x as u32,
                    gguf_file::Value::U32(x) => *x,
                    _ => TOKEN_TYPE_NORMAL,
                })
                .collect(),
            None => vec![TOKEN_TYPE_NORMAL; tokens.len()],
        };

        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let model = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let mut bpe = Tokenizer::new(model);
        bpe.with_pre_tokenizer(Some(Sequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ])));

        let unicode_to_byte: HashMap<char, u8> =
            byte_to_unicode().into_iter().map(|(b, c)| (c, b)).collect();
        let token_bytes = tokens
            .iter()
            .zip(types.iter().chain(std::iter::repeat(&TOKEN_TYPE_NORMAL)))
            .map(|(token, &kind)| {
                if kind != TOKEN_TYPE_NORMAL && kind != TOKEN_TYPE_BYTE {
                    return None;
                }
                token
                    .chars()
                    .map(|c| unicode_to_byte.get(&c).copied())
                    .collect::<Option<Vec<u8>>>()
            })
            .collect();
        let id_of = |name: &str| {
            tokens
                .iter()
                .position(|t| t == name)
                .map(|i| i as u32)
                .ok_or_else(|| bad(format!("no `{name}` token: not a ChatML model")))
        };
        Ok(SmolTokenizer {
            bpe,
            token_bytes,
            im_start: id_of("<|im_start|>")?,
            im_end: id_of("<|im_end|>")?,
            end_of_text: id_of("<|endoftext|>")?,
        })
    }

    /// The ids of `text`, as plain text (control-token strings stay text).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .bpe
            .encode(text, false)
            .map_err(|e| GeneratorError::Inference(format!("tokenizing: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The bytes token `id` stands for (`None` for control tokens and unknown ids).
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.token_bytes.get(id as usize)?.as_deref()
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.token_bytes.len()
    }

    /// Whether `id` ends the assistant's message.
    pub fn is_stop(&self, id: u32) -> bool {
        id == self.im_end || id == self.end_of_text
    }

    /// The text of `ids` (control tokens dropped; invalid UTF-8 replaced).
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .filter_map(|&id| self.token_bytes(id))
            .flatten()
            .copied()
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The ChatML prompt of `messages`, ready for the assistant's reply:
    /// `<|im_start|>{role}\n{content}<|im_end|>\n` per message, then `<|im_start|>assistant\n`.
    pub fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        for message in messages {
            ids.push(self.im_start);
            ids.extend(self.encode(&format!("{}\n{}", message.role.as_str(), message.content))?);
            ids.push(self.im_end);
            ids.extend(self.encode("\n")?);
        }
        ids.push(self.im_start);
        ids.extend(self.encode("assistant\n")?);
        Ok(ids)
    }
}

/// GPT-2's reversible map from bytes to printable characters (byte-level BPE's alphabet).
fn byte_to_unicode() -> Vec<(u8, char)> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut shifted = 0u32;
    (0..=255u8)
        .map(|b| {
            if printable(b) {
                (b, char::from(b))
            } else {
                let c = char::from_u32(256 + shifted).unwrap_or('\u{FFFD}');
                shifted += 1;
                (b, c)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_is_a_bijection_with_gpt2_landmarks() {
        let map = byte_to_unicode();
        let chars: std::collections::HashSet<char> = map.iter().map(|(_, c)| *c).collect();
        assert_eq!(chars.len(), 256);
        // GPT-2: space is 'Ġ' (U+0120), newline is 'Ċ' (U+010A).
        assert_eq!(map[b' ' as usize].1, 'Ġ');
        assert_eq!(map[b'\n' as usize].1, 'Ċ');
        assert_eq!(map[b'a' as usize].1, 'a');
    }
}
