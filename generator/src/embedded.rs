//! The embedded LLM: SmolLM2-135M-Instruct, quantized, run in-process by ibex's own forward
//! pass ([`crate::llama`]; the GGUF file is read with candle's reader).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::quantized::gguf_file;
use rand::distributions::{Distribution, WeightedIndex};
use rand::SeedableRng;

use crate::error::{GeneratorError, Result};
use crate::fetch::{ensure_default_llm, DEFAULT_LLM_NAME};
use crate::grammar::OutputGrammar;
use crate::llama::{KvCache, LlamaModel, LogitsFrom};
use crate::tokenizer::SmolTokenizer;
use crate::{Completion, FinishReason, GenerationRequest, Generator, Likelihood};

/// The longest sequence (prompt plus generated tokens) the embedded model runs: the positions
/// its key/value cache and rotary tables hold.
pub const MAX_CONTEXT_TOKENS: usize = crate::llama::MAX_POSITIONS;

/// Decoding options of the embedded model.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Penalty on logits of tokens already generated (1 = none). Small models loop without one.
    pub repeat_penalty: f32,
    /// How many of the last generated tokens the penalty looks at.
    pub repeat_last_n: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            repeat_penalty: 1.1,
            repeat_last_n: 64,
        }
    }
}

/// SmolLM2 (or another ChatML llama-architecture GGUF) run on the CPU.
///
/// One generation runs at a time (one key/value cache, whose memory is reused); concurrent
/// callers wait their turn. Each forward pass already uses every thread of rayon's pool.
pub struct EmbeddedGenerator {
    name: String,
    path: PathBuf,
    tokenizer: SmolTokenizer,
    model: LlamaModel,
    cache: Mutex<KvCache>,
    options: EmbeddedOptions,
}

impl EmbeddedGenerator {
    /// Loads a GGUF file.
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |reason: String| GeneratorError::ModelLoad {
            path: path.to_path_buf(),
            reason,
        };
        let mut file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
        let content = gguf_file::Content::read(&mut file)
            .map_err(|e| bad(format!("not a GGUF file: {e}")))?;
        let tokenizer = SmolTokenizer::from_gguf(&content).map_err(|e| bad(e.to_string()))?;
        // The default file's metadata calls it "Smollm2 135M 8k Lc100K Mix1 Ep2": report the
        // name users know it by.
        let name = if path == crate::fetch::default_llm_path() {
            DEFAULT_LLM_NAME.to_string()
        } else {
            content
                .metadata
                .get("general.name")
                .and_then(|v| v.to_string().ok())
                .cloned()
                .unwrap_or_else(|| {
                    path.file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_else(|| DEFAULT_LLM_NAME.to_string())
                })
        };
        let model = LlamaModel::from_gguf(&content, &mut file).map_err(bad)?;
        let cache = Mutex::new(model.new_cache());
        Ok(EmbeddedGenerator {
            name,
            path: path.to_path_buf(),
            tokenizer,
            model,
            cache,
            options: EmbeddedOptions::default(),
        })
    }

    /// Loads the default model, fetching it on first use.
    pub fn load_default() -> Result<Self> {
        Self::load(&ensure_default_llm()?)
    }

    /// Replaces the decoding options.
    pub fn with_options(mut self, options: EmbeddedOptions) -> Self {
        self.options = options;
        self
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &SmolTokenizer {
        &self.tokenizer
    }

    /// The GGUF file the model came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn run(
        &self,
        request: &GenerationRequest,
        grammar: Option<&dyn OutputGrammar>,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Completion> {
        request.validate()?;
        let prompt = self.tokenizer.chat_prompt(&request.messages)?;
        if prompt.len() + 1 >= MAX_CONTEXT_TOKENS {
            return Err(GeneratorError::ContextTooLong {
                tokens: prompt.len(),
                max_tokens: request.max_tokens,
                limit: MAX_CONTEXT_TOKENS,
            });
        }
        let max_tokens = request.max_tokens.min(MAX_CONTEXT_TOKENS - prompt.len());
        let mut state = grammar.map(|g| g.start());
        let mut rng = rand::rngs::StdRng::seed_from_u64(request.seed);
        let mut cache = self.lock_cache()?;
        let mut scores = Vec::new();
        self.forward(&mut cache, &prompt, LogitsFrom::Last, &mut scores)?;
        let mut generated: Vec<u32> = Vec::new();
        let mut pending_bytes: Vec<u8> = Vec::new();
        let mut finish_reason = FinishReason::Length;
        for step in 0..max_tokens {
            if let Some(state) = &state {
                // A complete output that admits nothing more ends without asking the model.
                if state.is_finished() {
                    finish_reason = FinishReason::Stop;
                    break;
                }
            }
            self.penalize_repeats(&mut scores, &generated);
            if let Some(state) = &state {
                for (id, score) in scores.iter_mut().enumerate() {
                    let id = id as u32;
                    let allowed = if self.tokenizer.is_stop(id) {
                        state.can_end()
                    } else {
                        self.tokenizer
                            .token_bytes(id)
                            .is_some_and(|bytes| state.allows(bytes))
                    };
                    if !allowed {
                        *score = f32::NEG_INFINITY;
                    }
                }
            }
            let next = choose(&scores, request.temperature, &mut rng)?;
            if self.tokenizer.is_stop(next) {
                finish_reason = FinishReason::Stop;
                break;
            }
            generated.push(next);
            if let Some(bytes) = self.tokenizer.token_bytes(next) {
                if let Some(state) = &mut state {
                    state.advance(bytes);
                }
                pending_bytes.extend_from_slice(bytes);
                emit_complete_chars(&mut pending_bytes, on_text);
            }
            if step + 1 == max_tokens {
                break;
            }
            self.forward(&mut cache, &[next], LogitsFrom::Last, &mut scores)?;
        }
        if !pending_bytes.is_empty() {
            on_text(&String::from_utf8_lossy(&pending_bytes));
        }
        if let Some(state) = &state {
            if !state.can_end() {
                return Err(GeneratorError::Inference(format!(
                    "the constrained output was not complete within {max_tokens} tokens (raise max_tokens)"
                )));
            }
        }
        Ok(Completion {
            text: self.tokenizer.decode(&generated),
            finish_reason,
            prompt_tokens: prompt.len(),
            completion_tokens: generated.len(),
            constrained: grammar.is_some(),
        })
    }

    /// See [`Generator::likelihood`]: the prompt and the continuation go through the model in one
    /// forward pass, and each continuation token is scored from the logits of the position
    /// before it.
    fn score(&self, prompt: &str, continuation: &str) -> Result<Likelihood> {
        let prompt_ids = self.tokenizer.encode(prompt)?;
        if prompt_ids.is_empty() {
            return Err(GeneratorError::InvalidRequest(
                "a likelihood needs a prompt of at least one token".into(),
            ));
        }
        let continuation_ids = self.tokenizer.encode(continuation)?;
        let total = prompt_ids.len() + continuation_ids.len();
        if total > MAX_CONTEXT_TOKENS {
            return Err(GeneratorError::ContextTooLong {
                tokens: prompt_ids.len(),
                max_tokens: continuation_ids.len(),
                limit: MAX_CONTEXT_TOKENS,
            });
        }
        let mut token_logprobs = Vec::with_capacity(continuation_ids.len());
        if continuation_ids.is_empty() {
            return Ok(Likelihood { token_logprobs });
        }
        // The last continuation token predicts nothing that is scored: it is not fed.
        let mut input = prompt_ids.clone();
        input.extend_from_slice(&continuation_ids[..continuation_ids.len() - 1]);
        let mut cache = self.lock_cache()?;
        let mut logits = Vec::new();
        self.forward(
            &mut cache,
            &input,
            LogitsFrom::Row(prompt_ids.len() - 1),
            &mut logits,
        )?;
        let vocab = self.model.config().vocab;
        for (scores, &token) in logits.chunks_exact(vocab).zip(&continuation_ids) {
            token_logprobs.push(log_softmax_at(scores, token as usize)?);
        }
        Ok(Likelihood { token_logprobs })
    }

    /// The key/value cache, emptied for a new sequence.
    fn lock_cache(&self) -> Result<std::sync::MutexGuard<'_, KvCache>> {
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| GeneratorError::Inference("a previous generation panicked".into()))?;
        cache.clear();
        Ok(cache)
    }

    /// One forward pass of `tokens` after the cache's positions, its logits into `logits`.
    fn forward(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        which: LogitsFrom,
        logits: &mut Vec<f32>,
    ) -> Result<()> {
        self.model
            .forward(cache, tokens, which, logits)
            .map_err(GeneratorError::Inference)
    }

    fn penalize_repeats(&self, scores: &mut [f32], generated: &[u32]) {
        let penalty = self.options.repeat_penalty;
        if penalty == 1.0 {
            return;
        }
        let start = generated.len().saturating_sub(self.options.repeat_last_n);
        let mut seen = std::collections::HashSet::new();
        for &id in &generated[start..] {
            if seen.insert(id) {
                if let Some(score) = scores.get_mut(id as usize) {
                    *score = if *score >= 0.0 {
                        *score / penalty
                    } else {
                        *score * penalty
                    };
                }
            }
        }
    }
}

/// log softmax(`scores`)[`index`], summed in f64 (a vocabulary of 49,152 terms).
fn log_softmax_at(scores: &[f32], index: usize) -> Result<f32> {
    let chosen = *scores.get(index).ok_or_else(|| {
        GeneratorError::Inference(format!(
            "token {index} is outside the model's {} logits",
            scores.len()
        ))
    })?;
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = scores.iter().map(|&s| ((s - max) as f64).exp()).sum();
    Ok(((chosen - max) as f64 - sum.ln()) as f32)
}

/// Greedy (temperature 0) or sampled choice of the next token among finite scores.
fn choose(scores: &[f32], temperature: f64, rng: &mut rand::rngs::StdRng) -> Result<u32> {
    let best = scores
        .iter()
        .enumerate()
        .filter(|(_, s)| s.is_finite())
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, s)| (i as u32, *s))
        .ok_or_else(|| GeneratorError::Inference("no token is allowed at this point".into()))?;
    if temperature <= 0.0 {
        return Ok(best.0);
    }
    let weights: Vec<f64> = scores
        .iter()
        .map(|&s| {
            if s.is_finite() {
                (((s - best.1) as f64) / temperature).exp()
            } else {
                0.0
            }
        })
        .collect();
    let distribution = WeightedIndex::new(&weights)
        .map_err(|e| GeneratorError::Inference(format!("sampling: {e}")))?;
    Ok(distribution.sample(rng) as u32)
}

/// Sends the complete UTF-8 characters at the front of `pending` to `on_text`, keeping an
/// unfinished character for the next token.
fn emit_complete_chars(pending: &mut Vec<u8>, on_text: &mut dyn FnMut(&str)) {
    match std::str::from_utf8(pending) {
        Ok(text) => {
            if !text.is_empty() {
                on_text(text);
            }
            pending.clear();
        }
        Err(e) => {
            let valid = e.valid_up_to();
            let cut = match e.error_len() {
                // Invalid bytes (not just unfinished): emit them replaced.
                Some(len) => valid + len,
                None => valid,
            };
            if cut > 0 {
                on_text(&String::from_utf8_lossy(&pending[..cut]));
                pending.drain(..cut);
            }
        }
    }
}

impl Generator for EmbeddedGenerator {
    fn model(&self) -> &str {
        &self.name
    }

    fn generate(
        &self,
        request: &GenerationRequest,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Completion> {
        self.run(request, None, on_text)
    }

    fn generate_constrained(
        &self,
        request: &GenerationRequest,
        grammar: &dyn OutputGrammar,
    ) -> Option<Result<Completion>> {
        Some(self.run(request, Some(grammar), &mut |_| {}))
    }

    fn likelihood(&self, prompt: &str, continuation: &str) -> Result<Likelihood> {
        self.score(prompt, continuation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_characters_wait_for_their_last_byte() {
        let mut out = String::new();
        let mut pending = "é".as_bytes()[..1].to_vec();
        emit_complete_chars(&mut pending, &mut |t| out.push_str(t));
        assert_eq!(out, "");
        pending.extend_from_slice(&"é".as_bytes()[1..]);
        pending.extend_from_slice(b"x");
        emit_complete_chars(&mut pending, &mut |t| out.push_str(t));
        assert_eq!(out, "éx");
        assert!(pending.is_empty());
    }

    #[test]
    fn log_softmax_is_a_log_probability() {
        let scores = [1.0f32, 2.0, 3.0];
        let total: f64 = (0..3)
            .map(|i| (log_softmax_at(&scores, i).unwrap() as f64).exp())
            .sum();
        assert!((total - 1.0).abs() < 1e-6);
        let expected = 3.0 - (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
        assert!((log_softmax_at(&scores, 2).unwrap() as f64 - expected).abs() < 1e-6);
        assert!(log_softmax_at(&scores, 3).is_err());
    }

    #[test]
    fn greedy_choice_skips_masked_tokens() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let scores = [f32::NEG_INFINITY, 0.5, 2.0, f32::NEG_INFINITY];
        assert_eq!(choose(&scores, 0.0, &mut rng).ok(), Some(2));
        for _ in 0..100 {
            let sampled = choose(&scores, 1.0, &mut rng).ok();
            assert!(matches!(sampled, Some(1 | 2)));
        }
        assert!(choose(&[f32::NEG_INFINITY; 3], 0.0, &mut rng).is_err());
    }
}
