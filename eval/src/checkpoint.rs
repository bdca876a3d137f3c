//! Resumable evaluations: each question's result is appended to a checkpoint file as soon as it
//! is known, so a long run (the LLM-scored compressor costs seconds a question, 300 questions
//! take an hour) that is killed, or runs out of disk, loses at most the question it was on. Run
//! again with the same file, it evaluates only the questions the file lacks, and its report is
//! computed from every question's record, old and new, the same way.
//!
//! The file is JSON lines: a header `{"ibex_checkpoint": 1, "evaluation": ..., "settings": ...}`
//! naming what produced it, then `{"index": i, "question": ..., "result": ...}` per question. A
//! file written with other settings (another budget, scorer, model) is refused, since its
//! records would not be comparable; a question text that differs from the question file's is
//! refused too (another question file). A last line cut short by a kill is dropped, and the file
//! truncated to its last whole line, with a warning; a malformed line anywhere else is an error
//! naming it. The number of questions (`--limit`) is not a setting: a run can be extended.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{EvalError, Result};

/// The format version of the header.
const VERSION: u64 = 1;

#[derive(Serialize, Deserialize)]
struct Header {
    ibex_checkpoint: u64,
    evaluation: String,
    settings: Value,
}

#[derive(Serialize, Deserialize)]
struct Record<R> {
    index: usize,
    question: String,
    result: R,
}

/// The per-question results of one evaluation, read from and appended to a file (or kept in
/// memory only, when no file is given).
pub struct Checkpoint<R> {
    path: Option<PathBuf>,
    file: Option<File>,
    done: BTreeMap<usize, (String, R)>,
}

impl<R: Serialize + DeserializeOwned> Checkpoint<R> {
    /// Opens `path` (created if missing) for the evaluation `evaluation` run with `settings`,
    /// reading the results it holds; `None` keeps results in memory only.
    pub fn open(path: Option<&Path>, evaluation: &str, settings: Value) -> Result<Self> {
        let Some(path) = path else {
            return Ok(Checkpoint {
                path: None,
                file: None,
                done: BTreeMap::new(),
            });
        };
        let header = Header {
            ibex_checkpoint: VERSION,
            evaluation: evaluation.to_string(),
            settings,
        };
        let done = if path.exists() {
            let done = read_records(path, &header)?;
            eprintln!(
                "{}: {} questions already evaluated; going on from there",
                path.display(),
                done.len()
            );
            done
        } else {
            let mut file = File::create(path)
                .map_err(EvalError::io(format!("creating {}", path.display())))?;
            let line = serde_json::to_string(&header).map_err(|e| json_error(path, e))?;
            writeln!(file, "{line}")
                .and_then(|_| file.sync_data())
                .map_err(EvalError::io(format!("writing {}", path.display())))?;
            BTreeMap::new()
        };
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(EvalError::io(format!("opening {}", path.display())))?;
        Ok(Checkpoint {
            path: Some(path.to_path_buf()),
            file: Some(file),
            done,
        })
    }

    /// Questions already evaluated.
    pub fn len(&self) -> usize {
        self.done.len()
    }

    /// Whether no question has been evaluated yet.
    pub fn is_empty(&self) -> bool {
        self.done.is_empty()
    }

    /// The result of question `index`, if it was evaluated; an error if the file holds another
    /// question at that index.
    pub fn get(&self, index: usize, question: &str) -> Result<Option<&R>> {
        match self.done.get(&index) {
            None => Ok(None),
            Some((recorded, result)) if recorded == question => Ok(Some(result)),
            Some((recorded, _)) => Err(EvalError::InvalidSetting(format!(
                "{} holds question {index} as {recorded:?}, but the question file has {question:?}: \
                 it was written for another question file (use another checkpoint file)",
                self.path_name()
            ))),
        }
    }

    /// Records question `index`'s result, on disk before this returns.
    pub fn record(&mut self, index: usize, question: &str, result: R) -> Result<&R> {
        if let (Some(file), Some(path)) = (&mut self.file, &self.path) {
            let record = Record {
                index,
                question: question.to_string(),
                result: &result,
            };
            let line = serde_json::to_string(&record).map_err(|e| json_error(path, e))?;
            // One write of the whole line, then to the disk: a kill leaves whole lines and at
            // most one cut-off last line, which the next open drops.
            file.write_all(format!("{line}\n").as_bytes())
                .and_then(|_| file.sync_data())
                .map_err(EvalError::io(format!(
                    "appending question {index} to {}",
                    path.display()
                )))?;
        }
        self.done.insert(index, (question.to_string(), result));
        Ok(&self.done[&index].1)
    }

    fn path_name(&self) -> String {
        self.path
            .as_ref()
            .map_or_else(|| "the checkpoint".into(), |p| p.display().to_string())
    }
}

fn json_error(path: &Path, error: serde_json::Error) -> EvalError {
    EvalError::InvalidSetting(format!("{}: {error}", path.display()))
}

/// Reads a checkpoint's records after checking that its header is `expected`; drops (and cuts
/// off the file at) a torn last line.
fn read_records<R: DeserializeOwned>(
    path: &Path,
    expected: &Header,
) -> Result<BTreeMap<usize, (String, R)>> {
    let file = File::open(path).map_err(EvalError::io(format!("reading {}", path.display())))?;
    let mut reader = BufReader::new(file);
    let mut lines: Vec<(u64, String)> = Vec::new();
    let mut offset = 0u64;
    loop {
        let mut line = String::new();
        let read = reader
            .read_line(&mut line)
            .map_err(EvalError::io(format!("reading {}", path.display())))?;
        if read == 0 {
            break;
        }
        lines.push((offset, line));
        offset += read as u64;
    }
    let malformed = |line: usize, reason: String| EvalError::Malformed {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let Some((_, first)) = lines.first() else {
        return Err(malformed(
            1,
            "an empty checkpoint file (remove it to start afresh)".into(),
        ));
    };
    let header: Header = serde_json::from_str(first).map_err(|e| {
        malformed(
            1,
            format!("not an ibex checkpoint header ({e}); give a new file or remove this one"),
        )
    })?;
    if header.ibex_checkpoint != VERSION || header.evaluation != expected.evaluation {
        return Err(malformed(
            1,
            format!(
                "a checkpoint of {} (format {}), not of {} (format {VERSION})",
                header.evaluation, header.ibex_checkpoint, expected.evaluation
            ),
        ));
    }
    if header.settings != expected.settings {
        return Err(EvalError::InvalidSetting(format!(
            "{} was written with other settings ({}); this run has {}: rerun with the same \
             settings or give another checkpoint file",
            path.display(),
            header.settings,
            expected.settings
        )));
    }
    let mut done = BTreeMap::new();
    let count = lines.len();
    for (number, (start, line)) in lines.iter().enumerate().skip(1) {
        match serde_json::from_str::<Record<R>>(line) {
            Ok(record) => {
                done.insert(record.index, (record.question, record.result));
            }
            Err(error) if number + 1 == count && !line.ends_with('\n') => {
                eprintln!(
                    "warning: {}: dropping the cut-off last line ({error}); its question is evaluated again",
                    path.display()
                );
                OpenOptions::new()
                    .write(true)
                    .open(path)
                    .and_then(|f| f.set_len(*start))
                    .map_err(EvalError::io(format!("truncating {}", path.display())))?;
            }
            Err(error) => return Err(malformed(number + 1, error.to_string())),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn open(path: &Path, settings: Value) -> Result<Checkpoint<f64>> {
        Checkpoint::open(Some(path), "test-eval", settings)
    }

    #[test]
    fn results_survive_a_reopen_and_a_cut_off_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.jsonl");
        let mut checkpoint = open(&path, json!({"budget": 64})).unwrap();
        assert!(checkpoint.is_empty());
        checkpoint.record(0, "who?", 0.5).unwrap();
        checkpoint.record(1, "when?", 0.25).unwrap();
        drop(checkpoint);
        // A kill in the middle of the third record's write.
        let whole = std::fs::metadata(&path).unwrap().len();
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"index":2,"question":"wh"#).unwrap();
        drop(file);

        let mut checkpoint = open(&path, json!({"budget": 64})).unwrap();
        assert_eq!(checkpoint.len(), 2);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
        assert_eq!(checkpoint.get(1, "when?").unwrap(), Some(&0.25));
        assert_eq!(checkpoint.get(2, "where?").unwrap(), None);
        checkpoint.record(2, "where?", 1.0).unwrap();
        drop(checkpoint);
        let checkpoint = open(&path, json!({"budget": 64})).unwrap();
        assert_eq!(checkpoint.get(2, "where?").unwrap(), Some(&1.0));
    }

    #[test]
    fn other_settings_another_question_file_and_damage_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.jsonl");
        open(&path, json!({"budget": 64}))
            .unwrap()
            .record(0, "who?", 0.5)
            .unwrap();
        let error = open(&path, json!({"budget": 96}))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("other settings"), "{error}");
        let error = Checkpoint::<f64>::open(Some(&path), "other-eval", json!({"budget": 64}))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("not of other-eval"), "{error}");
        let checkpoint = open(&path, json!({"budget": 64})).unwrap();
        let error = checkpoint.get(0, "what?").unwrap_err().to_string();
        assert!(error.contains("another question file"), "{error}");

        // A damaged line that is not the last, whole one: an error naming it, nothing dropped.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            format!("{text}garbage\n{{\"index\":1,\"question\":\"q\",\"result\":1.0}}\n"),
        )
        .unwrap();
        let error = open(&path, json!({"budget": 64}))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains(":3:"), "{error}");
        assert!(std::fs::read_to_string(&path).unwrap().contains("garbage"));
    }

    #[test]
    fn without_a_file_results_stay_in_memory() {
        let mut checkpoint = Checkpoint::open(None, "test-eval", json!({})).unwrap();
        checkpoint.record(3, "q", 2.0f64).unwrap();
        assert_eq!(checkpoint.get(3, "q").unwrap(), Some(&2.0));
    }
}
