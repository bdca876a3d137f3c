//! Corpus readers: JSONL (plain or gzip), BEIR folders and folders of text/markdown files.
//!
//! Every reader yields [`Document`]s one at a time, so corpora larger than memory stream through.
//! Errors carry what a user needs to fix the input: the file and line of a malformed JSONL line,
//! the id of a document without text, the path of a file that is not UTF-8.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use serde_json::{Map, Value};

use crate::error::{IndexError, Result};

/// A document as ibex indexes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Unique id within the index; indexing a document with an existing id replaces it.
    pub id: String,
    /// Optional title; it takes part in BM25 and in every embedded chunk.
    pub title: String,
    /// The body text (must not be empty).
    pub text: String,
    /// Free-form metadata; every value can be filtered on (see [`crate::metadata`]).
    pub metadata: Map<String, Value>,
}

/// Bounds on the parts of a document other than its text, so one document cannot make every
/// lookup, stored-field read and API response of an index expensive. The text is bounded by the
/// request size where documents arrive over HTTP; long texts are what ibex's chunking is for.
///
/// The defaults follow the trusted engines: Elasticsearch refuses ids over 512 bytes, Qdrant and
/// Weaviate cap payload sizes, and 256 keys is generous for metadata meant for filtering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentLimits {
    /// Longest id, in bytes of UTF-8.
    pub max_id_bytes: usize,
    /// Longest title, in bytes of UTF-8.
    pub max_title_bytes: usize,
    /// Largest metadata object, in bytes of its compact JSON.
    pub max_metadata_bytes: usize,
    /// Most keys at the top level of the metadata object.
    pub max_metadata_keys: usize,
}

impl Default for DocumentLimits {
    fn default() -> Self {
        DocumentLimits {
            max_id_bytes: 512,
            max_title_bytes: 64 * 1024,
            max_metadata_bytes: 64 * 1024,
            max_metadata_keys: 256,
        }
    }
}

impl DocumentLimits {
    /// Bounds that accept any document (for tests and for callers that check elsewhere).
    pub fn unlimited() -> Self {
        DocumentLimits {
            max_id_bytes: usize::MAX,
            max_title_bytes: usize::MAX,
            max_metadata_bytes: usize::MAX,
            max_metadata_keys: usize::MAX,
        }
    }

    /// Why `doc` is outside these bounds, as a sentence naming the document and the limit.
    pub fn check(&self, doc: &Document) -> std::result::Result<(), DocumentProblem> {
        let id_shown = || {
            let prefix: String = doc.id.chars().take(40).collect();
            format!("{prefix:?}...")
        };
        if doc.id.len() > self.max_id_bytes {
            return Err(DocumentProblem::Malformed(format!(
                "the document id {} is {} bytes long; ids may be at most {} bytes (use a shorter id and keep the long one in metadata)",
                id_shown(),
                doc.id.len(),
                self.max_id_bytes
            )));
        }
        if doc.title.len() > self.max_title_bytes {
            return Err(DocumentProblem::Malformed(format!(
                "document {:?}: the title is {} bytes long; titles may be at most {} bytes (put long text in \"text\", where it is chunked)",
                doc.id,
                doc.title.len(),
                self.max_title_bytes
            )));
        }
        if doc.metadata.len() > self.max_metadata_keys {
            return Err(DocumentProblem::Malformed(format!(
                "document {:?}: the metadata has {} keys; at most {} are allowed",
                doc.id,
                doc.metadata.len(),
                self.max_metadata_keys
            )));
        }
        if self.max_metadata_bytes != usize::MAX {
            // Serialized only when a bound applies; a Map always serializes.
            let bytes = serde_json::to_vec(&doc.metadata).map_or(usize::MAX, |v| v.len());
            if bytes > self.max_metadata_bytes {
                return Err(DocumentProblem::Malformed(format!(
                    "document {:?}: the metadata is {} bytes of JSON; at most {} are allowed (keep large values in \"text\" or outside the index)",
                    doc.id, bytes, self.max_metadata_bytes
                )));
            }
        }
        Ok(())
    }
}

impl Document {
    /// Parses one JSON object of the form `{"_id" or "id", "title"?, "text", "metadata"?}`,
    /// within the default [`DocumentLimits`].
    /// The error is a sentence without location; callers add the file and line.
    pub fn from_json(value: Value) -> std::result::Result<Document, DocumentProblem> {
        Document::from_json_within(value, &DocumentLimits::default())
    }

    /// [`Document::from_json`] within `limits`.
    pub fn from_json_within(
        value: Value,
        limits: &DocumentLimits,
    ) -> std::result::Result<Document, DocumentProblem> {
        let Value::Object(mut object) = value else {
            return Err(DocumentProblem::Malformed("expected a JSON object".into()));
        };
        let id = match object.remove("_id").or_else(|| object.remove("id")) {
            Some(Value::String(s)) if !s.is_empty() => s,
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(_)) => {
                return Err(DocumentProblem::Malformed(
                    "the document id is empty".into(),
                ))
            }
            Some(other) => {
                return Err(DocumentProblem::Malformed(format!(
                    "the document id must be a string or a number, not {other}"
                )))
            }
            None => {
                return Err(DocumentProblem::Malformed(
                    "missing \"_id\" (or \"id\") field".into(),
                ))
            }
        };
        let title = match object.remove("title") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s,
            Some(other) => {
                return Err(DocumentProblem::Malformed(format!(
                    "document {id:?}: \"title\" must be a string, not {other}"
                )))
            }
        };
        let text = match object.remove("text") {
            Some(Value::String(s)) => s,
            None | Some(Value::Null) => String::new(),
            Some(other) => {
                return Err(DocumentProblem::Malformed(format!(
                    "document {id:?}: \"text\" must be a string, not {other}"
                )))
            }
        };
        let metadata = match object.remove("metadata") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(other) => {
                return Err(DocumentProblem::Malformed(format!(
                    "document {id:?}: \"metadata\" must be an object, not {other}"
                )))
            }
        };
        // Title-only documents exist in real collections (CACM has hundreds); a document with
        // neither title nor text has nothing to index.
        if text.trim().is_empty() && title.trim().is_empty() {
            return Err(DocumentProblem::MissingText(id));
        }
        let document = Document {
            id,
            title,
            text,
            metadata,
        };
        limits.check(&document)?;
        Ok(document)
    }
}

/// Why a JSON value is not a document.
#[derive(Debug)]
pub enum DocumentProblem {
    /// Not a JSON object with the fields a document needs (the reason).
    Malformed(String),
    /// A document with neither title nor text (its id).
    MissingText(String),
}

/// A stream of documents read from a corpus.
pub type DocumentStream = Box<dyn Iterator<Item = Result<Document>> + Send>;

/// Opens the corpus at `path`: a BEIR folder (corpus.jsonl or corpus.jsonl.gz), a .jsonl or
/// .jsonl.gz file, or a folder of .txt and .md files.
pub fn read_corpus(path: &Path) -> Result<DocumentStream> {
    if path.is_dir() {
        for name in ["corpus.jsonl", "corpus.jsonl.gz"] {
            let candidate = path.join(name);
            if candidate.is_file() {
                return read_jsonl(&candidate);
            }
        }
        return read_text_folder(path);
    }
    if path.is_file() {
        return read_jsonl(path);
    }
    Err(IndexError::UnsupportedCorpus {
        path: path.to_path_buf(),
        reason: "no such file or directory (expected a BEIR folder, a .jsonl/.jsonl.gz file or a folder of .txt/.md files)".into(),
    })
}

/// Opens a file for reading, transparently decompressing `.gz`.
pub fn open_maybe_gzip(path: &Path) -> Result<Box<dyn BufRead + Send>> {
    let file =
        File::open(path).map_err(|e| IndexError::io(format!("opening {}", path.display()), e))?;
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(BufReader::new(MultiGzDecoder::new(file))))
    } else {
        Ok(Box::new(BufReader::new(file)))
    }
}

/// The JSON values of a JSONL file (plain or gzip), with their 1-based line numbers. Blank lines
/// are skipped; a line that is not JSON is an error naming the file and line. For the small
/// files around a corpus (questions, passages to compress), read whole.
pub fn read_json_lines(path: &Path) -> Result<Vec<(usize, serde_json::Value)>> {
    let reader = open_maybe_gzip(path)?;
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| IndexError::io(format!("reading {}", path.display()), e))?;
        if line.trim().is_empty() {
            continue;
        }
        let value = serde_json::from_str(&line).map_err(|e| IndexError::MalformedLine {
            path: path.to_path_buf(),
            line: i + 1,
            reason: format!("invalid JSON: {e}"),
        })?;
        out.push((i + 1, value));
    }
    Ok(out)
}

fn read_jsonl(path: &Path) -> Result<DocumentStream> {
    let reader = open_maybe_gzip(path)?;
    let path = path.to_path_buf();
    let mut line_number = 0usize;
    let mut lines = reader.split(b'\n');
    let iter = std::iter::from_fn(move || loop {
        line_number += 1;
        let bytes = match lines.next()? {
            Ok(bytes) => bytes,
            Err(e) => {
                return Some(Err(IndexError::io(
                    format!("reading {} at line {line_number}", path.display()),
                    e,
                )))
            }
        };
        let malformed = |reason: String| IndexError::MalformedLine {
            path: path.clone(),
            line: line_number,
            reason,
        };
        let Ok(line) = std::str::from_utf8(&bytes) else {
            return Some(Err(malformed("the line is not valid UTF-8".into())));
        };
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => return Some(Err(malformed(format!("invalid JSON: {e}")))),
        };
        return Some(match Document::from_json(value) {
            Ok(doc) => Ok(doc),
            Err(DocumentProblem::Malformed(reason)) => Err(malformed(reason)),
            Err(DocumentProblem::MissingText(id)) => Err(IndexError::MissingText {
                id,
                path: PathBuf::from(format!("{}:{line_number}", path.display())),
            }),
        });
    });
    Ok(Box::new(iter))
}

fn collect_text_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| IndexError::io(format!("listing {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| IndexError::io(format!("listing {}", dir.display()), e))?;
        let path = entry.path();
        let file_type = entry
            .file_type()
            .map_err(|e| IndexError::io(format!("inspecting {}", path.display()), e))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if file_type.is_dir() {
            collect_text_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "txt" || e == "md") {
            out.push(path);
        }
    }
    Ok(())
}

fn read_text_folder(root: &Path) -> Result<DocumentStream> {
    let mut files = Vec::new();
    collect_text_files(root, &mut files)?;
    if files.is_empty() {
        return Err(IndexError::UnsupportedCorpus {
            path: root.to_path_buf(),
            reason: "the folder holds no corpus.jsonl(.gz) and no .txt or .md files".into(),
        });
    }
    files.sort();
    let root = root.to_path_buf();
    let iter = files.into_iter().map(move |path| {
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| IndexError::io(format!("reading {}", path.display()), e))?;
        let text =
            String::from_utf8(bytes).map_err(|_| IndexError::NotUtf8 { path: path.clone() })?;
        let relative = path.strip_prefix(&root).unwrap_or(&path);
        let id = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        if text.trim().is_empty() {
            return Err(IndexError::MissingText {
                id,
                path: path.clone(),
            });
        }
        let title = if path.extension().is_some_and(|e| e == "md") {
            markdown_title(&text)
        } else {
            String::new()
        };
        let document = Document {
            id,
            title,
            text,
            metadata: Map::new(),
        };
        match DocumentLimits::default().check(&document) {
            Ok(()) => Ok(document),
            Err(DocumentProblem::Malformed(reason)) | Err(DocumentProblem::MissingText(reason)) => {
                Err(IndexError::MalformedLine {
                    path: path.clone(),
                    line: 1,
                    reason,
                })
            }
        }
    });
    Ok(Box::new(iter))
}

/// The first level-1 heading of a markdown file, if its first non-blank line is one.
fn markdown_title(text: &str) -> String {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| l.trim().strip_prefix("# "))
        .map(|t| t.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn malformed_line_reports_its_line_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        let mut f = File::create(&path).unwrap();
        writeln!(f, r#"{{"_id": "a", "text": "alpha"}}"#).unwrap();
        writeln!(f).unwrap();
        writeln!(f, r#"{{"_id": "b", "text": "beta""#).unwrap();
        let results: Vec<_> = read_corpus(&path).unwrap().collect();
        assert!(results[0].is_ok());
        let err = results[1].as_ref().unwrap_err().to_string();
        assert!(err.contains("c.jsonl:3"), "{err}");
    }

    #[test]
    fn document_without_text_is_reported_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        std::fs::write(&path, "{\"id\": 7, \"title\": \"\", \"text\": \"  \"}\n").unwrap();
        let err = read_corpus(&path).unwrap().next().unwrap().unwrap_err();
        assert!(
            matches!(&err, IndexError::MissingText { id, .. } if id == "7"),
            "{err}"
        );
    }

    #[test]
    fn non_utf8_file_in_folder_is_reported_by_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("good.txt"), "fine text").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/bad.md"), [0xff, 0xfe, 0x41]).unwrap();
        let results: Vec<_> = read_corpus(dir.path()).unwrap().collect();
        assert_eq!(results[0].as_ref().unwrap().id, "good.txt");
        let err = results[1].as_ref().unwrap_err().to_string();
        assert!(err.contains("sub/bad.md") && err.contains("UTF-8"), "{err}");
    }
}
