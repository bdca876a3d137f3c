//! E5-Mistral-7B-instruct as an [`Embedder`] (Wang et al. 2024, "Improving Text Embeddings with
//! Large Language Models"): Mistral's last hidden state at the final EOS, L2-normalized, 4096
//! dimensions.
//!
//! The model's prompt formats live here, so callers only say query or document: a query becomes
//! `Instruct: {task}\nQuery: {query}`, a document is embedded as it is. Every input gets the
//! tokenizer's BOS, is truncated to `max_tokens - 1`, and ends with an appended EOS; batches are
//! left-padded (pad id = EOS id, so the attention mask, not the id, says what is padding).

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use tokenizers::Tokenizer;

use crate::error::{EmbedderError, Result};
use crate::folder::{read_config, read_tokenizer, safetensors_files, token_spans};
use crate::mistral::{l2_normalize, last_token_pool, Config, MistralModel};
use crate::{Embedder, TextKind, TokenSpan};

/// The retrieval task description of the E5-Mistral model card.
pub const DEFAULT_TASK: &str =
    "Given a web search query, retrieve relevant passages that answer the query";

/// Longest input the model card uses.
const MAX_TOKENS: usize = 4096;

/// Texts per forward pass (sorted by length first, so rows in a batch have similar lengths).
const BATCH_SIZE: usize = 8;

/// E5-Mistral loaded from a Hugging Face-format folder.
pub struct E5MistralEmbedder {
    model: MistralModel,
    tokenizer: Tokenizer,
    config: Config,
    task: String,
    max_tokens: usize,
    model_id: String,
}

impl E5MistralEmbedder {
    /// Loads the model in `dir` (config.json, tokenizer.json, and model.safetensors or its
    /// shards), recorded under `model_id`.
    pub fn load_with_id(dir: &Path, model_id: &str, device: &Device) -> Result<Self> {
        let config: Config = read_config(dir)?;
        let tokenizer = read_tokenizer(dir)?;
        let files = safetensors_files(dir)?;
        // bf16 halves the memory of a 7B model where the device computes in it; the CPU path
        // stays f32 (candle's CPU bf16 matmul is slow).
        let dtype = if device.is_cuda() {
            DType::BF16
        } else {
            DType::F32
        };
        // SAFETY: weight files are memory-mapped read-only and never written while loaded.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, dtype, device)? };
        let model = MistralModel::load(vb, &config)?;
        Ok(E5MistralEmbedder {
            model,
            tokenizer,
            max_tokens: MAX_TOKENS.min(config.max_position_embeddings),
            config,
            task: DEFAULT_TASK.to_string(),
            model_id: model_id.to_string(),
        })
    }

    /// Uses `task` as the instruction of queries (for a task other than web search retrieval).
    pub fn with_task(mut self, task: impl Into<String>) -> Self {
        self.task = task.into();
        self
    }

    /// The text the model sees for `text`.
    pub fn format(&self, text: &str, kind: TextKind) -> String {
        match kind {
            TextKind::Query => format!("Instruct: {}\nQuery: {text}", self.task),
            TextKind::Document => text.to_string(),
        }
    }

    /// The token ids of a formatted input: the tokenizer's (with BOS), truncated to leave room
    /// for the appended EOS.
    fn input_ids(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| EmbedderError::Tokenizer(e.to_string()))?;
        let mut ids = encoding.get_ids().to_vec();
        ids.truncate(self.max_tokens - 1);
        ids.push(self.config.eos_token_id);
        Ok(ids)
    }

    /// Embeds already tokenized inputs (each ending with EOS), left-padded into one batch.
    pub fn embed_ids(&self, inputs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let (ids, mask) = pad_left(
            inputs,
            self.config.pad_token_id.unwrap_or(self.config.eos_token_id),
        );
        let hidden = self.model.forward(&ids, &mask)?;
        let pooled = l2_normalize(&last_token_pool(&hidden, &mask)?)?;
        Ok(pooled.to_dtype(DType::F32)?.to_vec2::<f32>()?)
    }
}

/// Left-pads rows to the longest, returning ids and attention mask.
pub fn pad_left(inputs: &[Vec<u32>], pad: u32) -> (Vec<Vec<u32>>, Vec<Vec<u32>>) {
    let width = inputs.iter().map(Vec::len).max().unwrap_or(0);
    let ids = inputs
        .iter()
        .map(|row| {
            let mut padded = vec![pad; width - row.len()];
            padded.extend_from_slice(row);
            padded
        })
        .collect();
    let mask = inputs
        .iter()
        .map(|row| {
            let mut m = vec![0u32; width - row.len()];
            m.extend(std::iter::repeat_n(1u32, row.len()));
            m
        })
        .collect();
    (ids, mask)
}

impl Embedder for E5MistralEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimension(&self) -> usize {
        self.config.hidden_size
    }

    fn max_tokens(&self) -> usize {
        // Room for BOS and the appended EOS around a chunk's own tokens.
        self.max_tokens - 2
    }

    fn normalized(&self) -> bool {
        true
    }

    fn embed(&self, texts: &[&str], kind: TextKind) -> Result<Vec<Vec<f32>>> {
        let inputs: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| self.input_ids(&self.format(t, kind)))
            .collect::<Result<_>>()?;
        let mut order: Vec<usize> = (0..inputs.len()).collect();
        order.sort_by_key(|&i| inputs[i].len());
        let mut vectors = vec![Vec::new(); inputs.len()];
        for batch in order.chunks(BATCH_SIZE) {
            let rows: Vec<Vec<u32>> = batch.iter().map(|&i| inputs[i].clone()).collect();
            for (&i, vector) in batch.iter().zip(self.embed_ids(&rows)?) {
                vectors[i] = vector;
            }
        }
        Ok(vectors)
    }

    fn tokenize(&self, text: &str) -> Result<Vec<TokenSpan>> {
        token_spans(&self.tokenizer, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn left_padding_puts_real_tokens_last() {
        let (ids, mask) = pad_left(&[vec![1, 5, 2], vec![1, 2]], 2);
        assert_eq!(ids, vec![vec![1, 5, 2], vec![2, 1, 2]]);
        assert_eq!(mask, vec![vec![1, 1, 1], vec![0, 1, 1]]);
    }
}
