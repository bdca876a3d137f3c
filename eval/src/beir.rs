//! Evaluation on BEIR-layout collections: queries.jsonl, qrels/test.tsv, TREC run files.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use ibex_indexer::{index_corpus, open_index, IndexOptions};
use ibex_search::SearchRequest;
use serde::Serialize;

use crate::error::{EvalError, Result};
use crate::metrics::{evaluate, mean, trec_order, Judgments, Measures};

/// A query of the collection.
#[derive(Debug, Clone)]
pub struct EvalQuery {
    /// The query's id, as the qrels name it.
    pub id: String,
    /// The query text.
    pub text: String,
}

/// Judgments of all queries: query id -> document id -> grade.
pub type Qrels = BTreeMap<String, Judgments>;

fn open(path: &Path) -> Result<Box<dyn BufRead>> {
    let file =
        std::fs::File::open(path).map_err(EvalError::io(format!("opening {}", path.display())))?;
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(std::io::BufReader::new(
            flate2::read::MultiGzDecoder::new(file),
        )))
    } else {
        Ok(Box::new(std::io::BufReader::new(file)))
    }
}

fn malformed(path: &Path, line: usize, reason: impl Into<String>) -> EvalError {
    EvalError::Malformed {
        path: path.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

/// Reads `queries.jsonl` (`{"_id", "text"}` per line).
pub fn read_queries(path: &Path) -> Result<Vec<EvalQuery>> {
    let mut queries = Vec::new();
    for (i, line) in open(path)?.lines().enumerate() {
        let line = line.map_err(EvalError::io(format!("reading {}", path.display())))?;
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
        let line = line.map_err(EvalError::io(format!("reading {}", path.display())))?;
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
    /// `queries.jsonl` or `queries.jsonl.gz`.
    pub queries: PathBuf,
    /// `qrels/test.tsv`.
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
            _ => Err(EvalError::NotACollection(format!(
                "{} is not a BEIR folder: it needs queries.jsonl and qrels/test.tsv",
                dir.display()
            ))),
        }
    }
}

/// The result of an evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// The measures' means over the judged queries.
    #[serde(flatten)]
    pub mean: Measures,
    /// Queries evaluated (those with judgments).
    pub queries: usize,
    /// Median time of one query's search, in milliseconds (depth 1000, one thread): the cost of
    /// a setting, compared between runs on the same machine.
    pub latency_ms_p50: f64,
    /// 99th percentile of the same.
    pub latency_ms_p99: f64,
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
    let mut latencies = Vec::new();
    let mut run_writer = match run_file {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(EvalError::io(format!("creating {}", path.display())))?,
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
        let started = std::time::Instant::now();
        let mut ranking = search(texts[query.id.as_str()])?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
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
                .map_err(EvalError::io("writing the run file"))?;
            }
        }
        per_query.push(evaluate(&ranking, judgments));
    }
    if let Some(mut writer) = run_writer {
        writer
            .flush()
            .map_err(EvalError::io("writing the run file"))?;
    }
    latencies.sort_by(f64::total_cmp);
    let percentile = |p: f64| {
        if latencies.is_empty() {
            return 0.0;
        }
        let rank = ((p * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
        latencies[rank - 1]
    };
    Ok(EvalReport {
        mean: mean(&per_query),
        queries: per_query.len(),
        latency_ms_p50: percentile(0.5),
        latency_ms_p99: percentile(0.99),
    })
}

/// Indexes the BEIR collection in `beir_dir` into `index_dir` (a no-op when the index already
/// holds it unchanged) and evaluates its judged queries with the settings of `settings` (mode,
/// fusion, aggregation; its query and depth are set per query). With `run_file`, writes the TREC
/// run too.
pub fn evaluate_beir(
    beir_dir: &Path,
    index_dir: &Path,
    settings: &SearchRequest,
    options: &IndexOptions,
    run_file: Option<&Path>,
) -> Result<EvalReport> {
    let files = BeirFiles::locate(beir_dir)?;
    index_corpus(beir_dir, index_dir, options, |_| {})?;
    let (index, embedder) =
        open_index(index_dir, options.model.as_deref(), options.device.as_ref())?;
    let queries = read_queries(&files.queries)?;
    let qrels = read_qrels(&files.qrels)?;
    let mut request = settings.clone();
    request.top_k = 1000;
    request.candidates = 1000;
    run_evaluation(
        &queries,
        &qrels,
        &format!("ibex-{}", settings.mode),
        run_file,
        |text| {
            request.query = text.to_string();
            if text.trim().is_empty() {
                return Ok(Vec::new());
            }
            let ranked = ibex_search::rank_documents(&index, Some(embedder.as_ref()), &request)?;
            Ok(ranked.into_iter().map(|d| (d.id, d.score)).collect())
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_name_the_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let queries = dir.path().join("queries.jsonl");
        std::fs::write(
            &queries,
            "{\"_id\": \"1\", \"text\": \"a\"}\n{\"_id\": 2}\n",
        )
        .unwrap();
        let error = read_queries(&queries).unwrap_err().to_string();
        assert!(error.ends_with(":2: missing \"text\""), "{error}");
        let qrels = dir.path().join("test.tsv");
        std::fs::write(&qrels, "query-id\tcorpus-id\tscore\n1\td1\t2\n1\td2\tx\n").unwrap();
        let error = read_qrels(&qrels).unwrap_err().to_string();
        assert!(error.contains(":3: grade \"x\""), "{error}");
        assert!(matches!(
            BeirFiles::locate(dir.path()),
            Err(EvalError::NotACollection(_))
        ));
    }

    #[test]
    fn run_evaluation_scores_only_judged_queries_and_writes_the_run() {
        let queries = vec![
            EvalQuery {
                id: "1".into(),
                text: "one".into(),
            },
            EvalQuery {
                id: "2".into(),
                text: "unjudged".into(),
            },
        ];
        let mut qrels = Qrels::new();
        qrels.entry("1".into()).or_default().insert("b".into(), 1);
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run.txt");
        let report = run_evaluation(&queries, &qrels, "t", Some(&run), |_| {
            Ok(vec![("a".to_string(), 2.0), ("b".to_string(), 1.0)])
        })
        .unwrap();
        assert_eq!(report.queries, 1);
        assert!((report.mean.mrr_at_10 - 0.5).abs() < 1e-12);
        let text = std::fs::read_to_string(&run).unwrap();
        assert_eq!(text, "1 Q0 a 1 2 t\n1 Q0 b 2 1 t\n");
    }
}
