//! Lexical query building: the query analyzed like the documents, and metadata filters.

use std::cell::RefCell;
use std::collections::BTreeMap;

use ibex_indexer::{english_analyzer, ChunkSet, Fields, Index};
use tantivy::collector::DocSetCollector;
use tantivy::query::{BooleanQuery, BoostQuery, ConstScoreQuery, Occur, Query, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{Searcher, Term};

use crate::error::{Result, SearchError};

/// An equality filter on a metadata field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataFilter {
    /// The metadata field (top level).
    pub key: String,
    /// The value it must equal (compared as text).
    pub value: String,
}

impl std::str::FromStr for MetadataFilter {
    type Err = SearchError;
    fn from_str(s: &str) -> Result<Self> {
        match s.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => Ok(MetadataFilter {
                key: key.trim().to_string(),
                value: value.to_string(),
            }),
            _ => Err(SearchError::InvalidFilter(s.to_string())),
        }
    }
}

impl MetadataFilter {
    /// The filters of a JSON object `{"field": value, ...}` (the REST API's and the Python
    /// package's syntax): strings, numbers and booleans compare as their text; anything else is
    /// an error naming the field.
    pub fn from_json_object(
        object: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Vec<MetadataFilter>> {
        object
            .iter()
            .map(|(key, value)| {
                let value = match value {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    serde_json::Value::Bool(b) => b.to_string(),
                    other => {
                        return Err(SearchError::InvalidRequest(format!(
                        "filter {key:?}: values must be strings, numbers or booleans, not {other}"
                    )))
                    }
                };
                Ok(MetadataFilter {
                    key: key.clone(),
                    value,
                })
            })
            .collect()
    }
}

/// The query's analyzed terms with their counts, as BM25 sees them.
pub fn analyze(text: &str) -> BTreeMap<String, u32> {
    with_analyzer(|analyzer| {
        let mut stream = analyzer.token_stream(text);
        let mut terms = BTreeMap::new();
        while let Some(token) = stream.next() {
            *terms.entry(token.text.clone()).or_insert(0) += 1;
        }
        terms
    })
}

thread_local! {
    /// Building the analyzer (its stop-word set, its stemmer) costs as much as analyzing a
    /// short query, so each thread keeps one.
    static ANALYZER: RefCell<TextAnalyzer> = RefCell::new(english_analyzer());
}

/// Runs `f` with this thread's instance of the index's English analyzer.
pub(crate) fn with_analyzer<T>(f: impl FnOnce(&mut TextAnalyzer) -> T) -> T {
    ANALYZER.with_borrow_mut(f)
}

/// Bag-of-words BM25 query over `contents`: one clause per distinct term, boosted by its count
/// in the query (as Anserini's bag-of-words query generator does). `None` when no term survives
/// analysis (a query of stop words).
pub fn bag_of_words_query(fields: &Fields, text: &str) -> Option<Box<dyn Query>> {
    let clauses: Vec<(Occur, Box<dyn Query>)> = analyze(text)
        .into_iter()
        .map(|(term, count)| {
            let query: Box<dyn Query> = Box::new(TermQuery::new(
                Term::from_field_text(fields.contents, &term),
                IndexRecordOption::WithFreqs,
            ));
            let query: Box<dyn Query> = if count > 1 {
                Box::new(BoostQuery::new(query, count as f32))
            } else {
                query
            };
            (Occur::Should, query)
        })
        .collect();
    (!clauses.is_empty()).then(|| Box::new(BooleanQuery::new(clauses)) as Box<dyn Query>)
}

/// A query matching the documents that pass every filter, scoring 0.
pub fn filter_query(fields: &Fields, filters: &[MetadataFilter]) -> Option<Box<dyn Query>> {
    if filters.is_empty() {
        return None;
    }
    let clauses: Vec<(Occur, Box<dyn Query>)> = filters
        .iter()
        .map(|f| {
            let term = Term::from_field_text(fields.meta, &format!("{}={}", f.key, f.value));
            (
                Occur::Must,
                Box::new(TermQuery::new(term, IndexRecordOption::Basic)) as Box<dyn Query>,
            )
        })
        .collect();
    Some(Box::new(ConstScoreQuery::new(
        Box::new(BooleanQuery::new(clauses)),
        0.0,
    )))
}

/// The chunk keys of the documents that pass `filters`.
pub fn allowed_chunks(
    index: &Index,
    searcher: &Searcher,
    filters: &[MetadataFilter],
) -> Result<Option<ChunkSet>> {
    let Some(query) = filter_query(index.fields(), filters) else {
        return Ok(None);
    };
    let docs = searcher.search(&query, &DocSetCollector)?;
    let mut allowed = ChunkSet::default();
    for address in docs {
        let fast = searcher.segment_reader(address.segment_ord).fast_fields();
        let base = fast.u64("chunk_base")?.first(address.doc_id);
        let count = fast.u64("chunk_count")?.first(address.doc_id);
        if let (Some(base), Some(count)) = (base, count) {
            allowed.insert_range(base, base + count);
        }
    }
    Ok(Some(allowed))
}
