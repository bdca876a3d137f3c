//! The NQ-open oracle setting shared by the compression and RAG evaluations: each question's gold
//! passage, plus distractors retrieved (hybrid) from the pool of all other questions' gold
//! passages, shuffled with a seed of the question's position, so the noise is real and on topic
//! and every run sees the same contexts.

use std::path::Path;
use std::sync::Arc;

use ibex_compressor::Passage;
use ibex_embedder::Embedder;
use ibex_indexer::{index_corpus, open_index, read_json_lines, Index, IndexOptions};
use ibex_search::{Mode, SearchRequest};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::error::{EvalError, Result};

/// Which questions of an NQ file an evaluation runs, in what setting, and where it keeps each
/// question's result (see [`crate::checkpoint`]).
#[derive(Debug, Clone, Default)]
pub struct NqRun {
    /// Distractor passages per question.
    pub distractors: usize,
    /// Evaluate only the first N questions.
    pub limit: Option<usize>,
    /// Append each question's result to this file, and skip the questions it already holds.
    pub checkpoint: Option<std::path::PathBuf>,
}

/// A question of the NQ-open oracle file, with its gold passage.
#[derive(Debug, Clone)]
pub struct NqQuestion {
    /// The question.
    pub question: String,
    /// Its gold answers (any one counts).
    pub answers: Vec<String>,
    /// The gold passage's title.
    pub title: String,
    /// The gold passage's text.
    pub text: String,
}

/// Reads an NQ-open oracle file (JSONL, plain or gzip): `question`, `answers` and the gold
/// passage as `ctxs[0]` (`title`, `text`).
pub fn read_nq(path: &Path) -> Result<Vec<NqQuestion>> {
    let mut out = Vec::new();
    for (line, v) in read_json_lines(path)? {
        let bad = |why: &str| EvalError::Malformed {
            path: path.to_path_buf(),
            line,
            reason: why.to_string(),
        };
        let ctx = v
            .get("ctxs")
            .and_then(|c| c.get(0))
            .ok_or_else(|| bad("no \"ctxs\" passage"))?;
        let text_of = |value: &serde_json::Value, key: &str| {
            value
                .get(key)
                .and_then(|t| t.as_str())
                .unwrap_or_default()
                .to_string()
        };
        out.push(NqQuestion {
            question: v
                .get("question")
                .and_then(|q| q.as_str())
                .ok_or_else(|| bad("no \"question\""))?
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
            title: text_of(ctx, "title"),
            text: text_of(ctx, "text"),
        });
    }
    Ok(out)
}

/// Indexes every question's gold passage (one document each, id `nq-{i}`) into `index_dir`
/// (skipped when already indexed: unchanged documents are not re-embedded) and opens it.
pub fn pool_index(
    questions: &[NqQuestion],
    index_dir: &Path,
    options: &IndexOptions,
) -> Result<(Index, Arc<dyn Embedder>)> {
    let pool =
        tempfile::NamedTempFile::new().map_err(EvalError::io("creating a temporary file"))?;
    let lines: String = questions
        .iter()
        .enumerate()
        .map(|(i, q)| {
            serde_json::json!({"_id": format!("nq-{i}"), "title": q.title, "text": q.text})
                .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(pool.path(), lines).map_err(EvalError::io("writing the passage pool"))?;
    index_corpus(pool.path(), index_dir, options, |_| {})?;
    Ok(open_index(
        index_dir,
        options.model.as_deref(),
        options.device.as_ref(),
    )?)
}

/// Question `i`'s context: its gold passage plus `distractors` passages of other questions
/// retrieved for it (hybrid), shuffled with a seed of `i`. Each passage is the document's title
/// and text (offset 0).
pub fn context(
    index: &Index,
    embedder: &dyn Embedder,
    question: &NqQuestion,
    i: usize,
    distractors: usize,
) -> Result<Vec<Passage>> {
    let mut request = SearchRequest::new(question.question.clone());
    request.mode = Mode::Hybrid;
    request.top_k = distractors + 1;
    let own = format!("nq-{i}");
    let ranked = ibex_search::rank_documents(index, Some(embedder), &request)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_questions_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nq.jsonl");
        std::fs::write(
            &path,
            "{\"question\": \"q?\", \"answers\": [\"a\"], \"ctxs\": [{\"title\": \"T\", \"text\": \"x\"}]}\n\n{\"question\": \"no context\"}\n",
        )
        .unwrap();
        let error = read_nq(&path).unwrap_err().to_string();
        assert!(error.ends_with(":3: no \"ctxs\" passage"), "{error}");
        std::fs::write(
            &path,
            "{\"question\": \"q?\", \"answers\": [\"a\", 3], \"ctxs\": [{\"title\": \"T\", \"text\": \"x\"}]}\n",
        )
        .unwrap();
        let questions = read_nq(&path).unwrap();
        assert_eq!(questions[0].answers, ["a"]);
        assert_eq!(
            (questions[0].title.as_str(), questions[0].text.as_str()),
            ("T", "x")
        );
    }
}
