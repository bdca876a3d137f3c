//! Evaluation on BEIR-layout collections: queries.jsonl, qrels/test.tsv, TREC run files.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Result, SearchError};
use crate::metrics::{evaluate, mean, trec_order, Judgments, Measures};

/// A query of the collection.
#[derive(Debug, Clone)]
pub struct EvalQuery {
    pub id: String,
    pub text: String,
}

/// Judgments of all queries: query id -> document id -> grade.
pub type Qrels = BTreeMap<String, Judgments>;

fn open(path: &Path) -> Result<Box<dyn BufRead>> {
    let file = std::fs::File::open(path).map_err(|e| SearchError::Io {
        context: format!("opening {}", path.display()),
        source: e,
    })?;
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(std::io::BufReader::new(
            flate2::read::MultiGzDecoder::new(file),
        )))
    } else {
        Ok(Box::new(std::io::BufReader::new(file)))
    }
}

fn malformed(path: &Path, line: usize, reason: impl Into<String>) -> SearchError {
    SearchError::MalformedEvalFile {
        path: path.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

/// Reads `queries.jsonl` (`{"_id", "text"}` per line).
pub fn read_queries(path: &Path) -> Result<Vec<EvalQuery>> {
    let mut queries = Vec::new();
    for (i, line) in open(path)?.lines().enumerate() {
        let line = line.map_err(|e| SearchError::Io {
            context: format!("reading {}", path.display()),
            source: e,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| malformed(path, i + 1, e.to_string()))?;
        let id = match value.get("_id").or_else(|| value.get("id")) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => return Err(malformed(path, i + 1, "missing \"_id\"")),
        };
        let text = value
            .get("text")
            .and_then(|t| t.as_str())
            .ok_or_else(|| malformed(path, i + 1, "missing \"text\""))?;
        queries.push(EvalQuery {
            id,
            text: text.to_string(),
        });
    }
    Ok(queries)
}

/// Reads a BEIR qrels TSV (`query-id corpus-id score`, with or without a header line).
pub fn read_qrels(path: &Path) -> Result<Qrels> {
    let mut qrels = Qrels::new();
    for (i, line) in open(path)?.lines().enumerate() {
        let line = line.map_err(|e| SearchError::Io {
            context: format!("reading {}", path.display()),
            source: e,
        })?;
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.is_empty() {
            continue;
        }
        // BEIR's 3 columns, or TREC's 4 (qid iter docid grade).
        let (qid, docid, grade) = match parts.as_slice() {
            [q, d, g] => (q, d, g),
            [q, _, d, g] => (q, d, g),
            _ => {
                return Err(malformed(
                    path,
                    i + 1,
                    "expected `query-id corpus-id score`",
                ))
            }
        };
        let Ok(grade) = grade.parse::<i32>() else {
            if i == 0 {
                continue; // header
            }
            return Err(malformed(
                path,
                i + 1,
                format!("grade {grade:?} is not an integer"),
            ));
        };
        qrels
            .entry(qid.to_string())
            .or_default()
            .insert(docid.to_string(), grade);
    }
    Ok(qrels)
}

/// The files of a BEIR collection folder.
#[derive(Debug, Clone)]
pub struct BeirFiles {
    pub queries: PathBuf,
    pub qrels: PathBuf,
}

impl BeirFiles {
    /// Locates queries.jsonl(.gz) and qrels/test.tsv in `dir`.
    pub fn locate(dir: &Path) -> Result<BeirFiles> {
        let queries = ["queries.jsonl", "queries.jsonl.gz"]
            .iter()
            .map(|n| dir.join(n))
            .find(|p| p.is_file());
        let qrels = dir.join("qrels").join("test.tsv");
        match queries {
            Some(queries) if qrels.is_file() => Ok(BeirFiles { queries, qrels }),
            _ => Err(SearchError::InvalidRequest(format!(
                "{} is not a BEIR folder: it needs queries.jsonl and qrels/test.tsv",
                dir.display()
            ))),
        }
    }
}

/// The result of an evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    #[serde(flatten)]
    pub mean: Measures,
    pub queries: usize,
}

/// Runs `search` on every query that has judgments and scores the rankings. `search` returns
/// (document id, score) pairs. With `run_file`, writes a TREC run for trec_eval/pytrec_eval.
pub fn run_evaluation(
    queries: &[EvalQuery],
    qrels: &Qrels,
    run_name: &str,
    run_file: Option<&Path>,
    mut search: impl FnMut(&str) -> Result<Vec<(String, f32)>>,
) -> Result<EvalReport> {
    let mut per_query = Vec::new();
    let mut run_writer = match run_file {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| SearchError::Io {
                context: format!("creating {}", path.display()),
                source: e,
            })?,
        )),
        None => None,
    };
    let texts: HashMap<&str, &str> = queries
        .iter()
        .map(|q| (q.id.as_str(), q.text.as_str()))
        .collect();
    for query in queries {
        let Some(judgments) = qrels.get(&query.id) else {
            continue;
        };
        let mut ranking = search(texts[query.id.as_str()])?;
        trec_order(&mut ranking);
        ranking.truncate(1000);
        if let Some(writer) = run_writer.as_mut() {
            for (rank, (doc, score)) in ranking.iter().enumerate() {
                writeln!(
                    writer,
                    "{} Q0 {} {} {} {}",
                    query.id,
                    doc,
                    rank + 1,
                    score,
                    run_name
                )
                .map_err(|e| SearchError::Io {
                    context: "writing the run file".into(),
                    source: e,
                })?;
            }
        }
        per_query.push(evaluate(&ranking, judgments));
    }
    if let Some(mut writer) = run_writer {
        writer.flush().map_err(|e| SearchError::Io {
            context: "writing the run file".into(),
            source: e,
        })?;
    }
    Ok(EvalReport {
        mean: mean(&per_query),
        queries: per_query.len(),
    })
}
