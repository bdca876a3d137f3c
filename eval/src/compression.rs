//! Context compression over ibex's retrieval: `ibex compress` and `ibex eval-compress`.

use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

use ibex_compressor::answers::contains_answer;
use ibex_compressor::{Compression, Compressor, EmbeddingScorer, IbCompressor, IbParams, Passage};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;

use crate::{open_index, Embedder, IbexError, IndexOptions, Mode, Result, SearchRequest};

/// The default compressor: the information-bottleneck selector scoring sentences with `embedder`.
pub fn default_compressor(
    embedder: Arc<dyn Embedder>,
    params: IbParams,
) -> IbCompressor<EmbeddingScorer> {
    IbCompressor::new(EmbeddingScorer::new(embedder), params)
}

/// Retrieves (hybrid, `top_k` documents, their best passages) from the index at `dir`, then
/// compresses for `query`.
pub fn compress_from_index(
    dir: &Path,
    query: &str,
    top_k: usize,
    budget: Option<usize>,
    params: IbParams,
) -> Result<Compression> {
    let (index, embedder) = open_index(dir, None)?;
    let (passages, _titles) =
        ibex_pipeline::answer::retrieve_passages(&index, embedder.as_ref(), query, top_k, 3)?;
    Ok(default_compressor(embedder, params).compress(query, &passages, budget)?)
}

/// The JSON objects of a JSONL file (plain or gzip), with their 1-based line numbers; a line
/// that is not JSON is an error naming the file and line.
fn read_json_lines(path: &Path) -> Result<Vec<(usize, serde_json::Value)>> {
    let reader = ibex_indexer::corpus::open_maybe_gzip(path)?;
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| IbexError::Io {
            context: format!("reading {}", path.display()),
            source: e,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let value = serde_json::from_str(&line).map_err(|e| {
            IbexError::Usage(format!("{}:{}: invalid JSON: {e}", path.display(), i + 1))
        })?;
        out.push((i + 1, value));
    }
    Ok(out)
}

/// Reads passages from a JSONL file of `{"doc_id" (or "id"/"_id"), "text", "offset"?}`.
pub fn read_passages(path: &Path) -> Result<Vec<Passage>> {
    let mut passages = Vec::new();
    for (line, value) in read_json_lines(path)? {
        let bad = |why: &str| IbexError::Usage(format!("{}:{line}: {why}", path.display()));
        let doc_id = ["doc_id", "id", "_id"]
            .iter()
            .find_map(|k| value.get(*k))
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .unwrap_or_else(|| format!("passage-{line}"));
        let text = value
            .get("text")
            .and_then(|t| t.as_str())
            .ok_or_else(|| bad("missing \"text\""))?;
        let offset = value.get("offset").and_then(|o| o.as_u64()).unwrap_or(0) as usize;
        passages.push(Passage {
            doc_id,
            text: text.to_string(),
            offset,
        });
    }
    Ok(passages)
}

/// Compression rate and answer retention of one method.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CompressionFigures {
    /// Mean over questions of kept tokens / context tokens.
    pub compression: f64,
    /// Among questions whose full context contains an answer, the share whose kept text does.
    pub retention: f64,
    /// Questions evaluated.
    pub questions: usize,
}

/// The result of `eval-compress`.
#[derive(Debug, Clone, Serialize)]
pub struct CompressEvalReport {
    #[serde(flatten)]
    pub ib: CompressionFigures,
    /// Questions whose full context contains an answer (the retention denominator; shown by
    /// the text report, left out of the JSON object whose keys are fixed).
    #[serde(skip)]
    pub answerable: usize,
    pub baselines: std::collections::BTreeMap<String, CompressionFigures>,
}

/// A question of the NQ-open oracle file, with its gold passage.
pub(crate) struct NqQuestion {
    pub(crate) question: String,
    pub(crate) answers: Vec<String>,
    title: String,
    text: String,
}

pub(crate) fn read_nq(path: &Path) -> Result<Vec<NqQuestion>> {
    let mut out = Vec::new();
    for (line, v) in read_json_lines(path)? {
        let bad = |why: String| IbexError::Usage(format!("{}:{line}: {why}", path.display()));
        let ctx = v
            .get("ctxs")
            .and_then(|c| c.get(0))
            .ok_or_else(|| bad("no \"ctxs\" passage".into()))?;
        out.push(NqQuestion {
            question: v
                .get("question")
                .and_then(|q| q.as_str())
                .ok_or_else(|| bad("no \"question\"".into()))?
                .to_string(),
            answers: v
                .get("answers")
                .and_then(|a| a.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            title: ctx
                .get("title")
                .and_then(|t| t.as_str())
                .unwrap_or_default()
                .to_string(),
            text: ctx
                .get("text")
                .and_then(|t| t.as_str())
                .unwrap_or_default()
                .to_string(),
        });
    }
    Ok(out)
}

/// Indexes every question's gold passage (one document each, id `nq-{i}`) into `index_dir`
/// (skipped when already indexed: unchanged documents are not re-embedded) and opens it.
pub(crate) fn nq_pool_index(
    questions: &[NqQuestion],
    index_dir: &Path,
) -> Result<(crate::Index, Arc<dyn Embedder>)> {
    let pool = tempfile::NamedTempFile::new().map_err(|e| IbexError::Io {
        context: "creating a temporary file".into(),
        source: e,
    })?;
    let lines: String = questions
        .iter()
        .enumerate()
        .map(|(i, q)| {
            serde_json::json!({"_id": format!("nq-{i}"), "title": q.title, "text": q.text})
                .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(pool.path(), lines).map_err(|e| IbexError::Io {
        context: "writing the passage pool".into(),
        source: e,
    })?;
    crate::index_corpus(pool.path(), index_dir, &IndexOptions::default(), |_| {})?;
    open_index(index_dir, None)
}

/// The NQ setting of the compressor's evaluation: question `i`'s gold passage plus `distractors`
/// passages of other questions retrieved for it (hybrid), shuffled with a seed of `i`. Each
/// passage is the document's title and text (offset 0).
pub(crate) fn nq_context(
    index: &crate::Index,
    embedder: &dyn Embedder,
    q: &NqQuestion,
    i: usize,
    distractors: usize,
) -> Result<Vec<Passage>> {
    let mut request = SearchRequest::new(q.question.clone());
    request.mode = Mode::Hybrid;
    request.top_k = distractors + 1;
    let own = format!("nq-{i}");
    let ranked = crate::search::rank_documents(index, Some(embedder), &request)?;
    let mut ids: Vec<String> = ranked
        .into_iter()
        .map(|d| d.id)
        .filter(|id| *id != own)
        .take(distractors)
        .collect();
    ids.push(own);
    let mut rng = rand::rngs::StdRng::seed_from_u64(i as u64);
    ids.shuffle(&mut rng);
    let mut passages = Vec::with_capacity(ids.len());
    for id in &ids {
        if let Some(doc) = index.get_document(id)? {
            passages.push(Passage {
                doc_id: id.clone(),
                text: format!("{}\n{}", doc.title, doc.text),
                offset: 0,
            });
        }
    }
    Ok(passages)
}

/// Keeps sentences in `order` while they fit `budget`; returns the kept text and tokens.
fn keep_in_order(
    compression: &Compression,
    passages: &[Passage],
    order: &[usize],
    budget: usize,
) -> (String, usize) {
    let mut kept = vec![false; compression.sentences.len()];
    let mut tokens = 0;
    for &i in order {
        let s = &compression.sentences[i];
        if tokens + s.tokens <= budget {
            kept[i] = true;
            tokens += s.tokens;
        }
    }
    let text = compression
        .sentences
        .iter()
        .zip(&kept)
        .filter(|(_, k)| **k)
        .map(|(s, _)| {
            let passage = passages
                .iter()
                .find(|p| p.doc_id == s.doc_id)
                .map(|p| p.text.as_str())
                .unwrap_or_default();
            ibex_indexer::slice_chars(passage, s.start, s.end).to_string()
        })
        .collect::<Vec<_>>()
        .join(" ");
    (text, tokens)
}

/// Evaluates the compressor on an NQ-open oracle file: each question's gold passage plus
/// `distractors` passages retrieved (hybrid) from the other questions' passages, shuffled.
pub fn evaluate_compression(
    nq_path: &Path,
    index_dir: &Path,
    distractors: usize,
    limit: Option<usize>,
    params: IbParams,
) -> Result<CompressEvalReport> {
    let questions = read_nq(nq_path)?;
    let (index, embedder) = nq_pool_index(&questions, index_dir)?;
    let compressor = default_compressor(embedder.clone(), params);

    #[derive(Default)]
    struct Tally {
        compression: f64,
        retained: usize,
    }
    let names = [
        "keep_all",
        "top1_passage",
        "top_sentences",
        "random_sentences",
    ];
    let mut ib = Tally::default();
    let mut baselines: Vec<Tally> = names.iter().map(|_| Tally::default()).collect();
    let (mut evaluated, mut answerable) = (0usize, 0usize);
    for (i, q) in questions
        .iter()
        .enumerate()
        .take(limit.unwrap_or(usize::MAX))
    {
        let passages = nq_context(&index, embedder.as_ref(), q, i, distractors)?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(i as u64);
        let full: String = passages
            .iter()
            .map(|p| p.text.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let has_answer = contains_answer(&full, &q.answers);
        let compression = compressor.compress(&q.question, &passages, None)?;
        let total = compression.total_tokens.max(1) as f64;
        let budget = compression.kept_tokens;
        evaluated += 1;
        answerable += has_answer as usize;
        ib.compression += compression.rate();
        ib.retained += (has_answer && contains_answer(&compression.text, &q.answers)) as usize;

        // Baselines, at the same token budget as the IB selection for this question.
        baselines[0].compression += 1.0;
        baselines[0].retained += has_answer as usize;
        let query_vector = embedder
            .embed(&[&q.question], crate::TextKind::Query)?
            .pop()
            .unwrap_or_default();
        let best = passages
            .iter()
            .max_by(|a, b| {
                let score = |p: &Passage| {
                    index
                        .doc_chunks(&p.doc_id)
                        .and_then(|c| index.chunk_vector(c.chunk_base))
                        .map_or(f32::MIN, |v| ibex_indexer::vectors::dot(&query_vector, v))
                };
                score(a).total_cmp(&score(b))
            })
            .map(|p| p.doc_id.clone())
            .unwrap_or_default();
        let best_tokens: usize = compression
            .sentences
            .iter()
            .filter(|s| s.doc_id == best)
            .map(|s| s.tokens)
            .sum();
        let best_text = passages
            .iter()
            .find(|p| p.doc_id == best)
            .map(|p| p.text.clone())
            .unwrap_or_default();
        baselines[1].compression += best_tokens as f64 / total;
        baselines[1].retained += (has_answer && contains_answer(&best_text, &q.answers)) as usize;
        let mut by_similarity: Vec<usize> = (0..compression.sentences.len()).collect();
        by_similarity.sort_by(|&a, &b| {
            compression.sentences[b]
                .similarity
                .total_cmp(&compression.sentences[a].similarity)
        });
        let (text, tokens) = keep_in_order(&compression, &passages, &by_similarity, budget);
        baselines[2].compression += tokens as f64 / total;
        baselines[2].retained += (has_answer && contains_answer(&text, &q.answers)) as usize;
        let mut random: Vec<usize> = (0..compression.sentences.len()).collect();
        random.shuffle(&mut rng);
        let (text, tokens) = keep_in_order(&compression, &passages, &random, budget);
        baselines[3].compression += tokens as f64 / total;
        baselines[3].retained += (has_answer && contains_answer(&text, &q.answers)) as usize;
    }
    let figures = |t: &Tally| CompressionFigures {
        compression: t.compression / evaluated.max(1) as f64,
        retention: t.retained as f64 / answerable.max(1) as f64,
        questions: evaluated,
    };
    Ok(CompressEvalReport {
        ib: figures(&ib),
        answerable,
        baselines: names
            .iter()
            .zip(&baselines)
            .map(|(n, t)| (n.to_string(), figures(t)))
            .collect(),
    })
}
