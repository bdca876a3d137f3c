//! BM25 statistics gathered from several indexes, so that each one scores as if they were one.
//!
//! A sharded index is several ordinary ibex indexes. BM25 weighs a term by how rare it is in the
//! whole collection (document frequency against document count) and normalizes by the average
//! document length; a shard that scores with its own counts ranks differently from one index
//! holding every document. The scatter-gather therefore asks every shard for the query terms'
//! [`TermStatistics`] first, sums them ([`TermStatistics::merge`]), and sends the sum back with
//! the search (Elasticsearch's `dfs_query_then_fetch`): tantivy then computes the weights from the
//! collection's numbers, and each shard's scores equal those of the single index.

use std::collections::BTreeMap;

use ibex_indexer::Index;
use serde::{Deserialize, Serialize};
use tantivy::query::Bm25StatisticsProvider;
use tantivy::schema::Field;
use tantivy::{TantivyError, Term};

use crate::error::{Result, SearchError};
use crate::lexical::analyze;

/// What BM25 needs to know about a collection for one query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermStatistics {
    /// Documents in the collection, as tantivy counts them (deleted ones not yet merged away
    /// included, as in a single index).
    pub documents: u64,
    /// Live documents (deleted ones left out): what passage scoring weighs terms against.
    #[serde(default)]
    pub live_documents: u64,
    /// Tokens of the searched field (title and text) over those documents.
    pub tokens: u64,
    /// Documents containing each analyzed query term.
    pub doc_freq: BTreeMap<String, u64>,
}

impl TermStatistics {
    /// The statistics of `query`'s terms in `index`.
    pub fn of_query(index: &Index, query: &str) -> Result<TermStatistics> {
        let searcher = index.searcher();
        let contents = index.fields().contents;
        let mut doc_freq = BTreeMap::new();
        for term in analyze(query).into_keys() {
            let count = searcher.doc_freq(&Term::from_field_text(contents, &term))?;
            doc_freq.insert(term, count);
        }
        Ok(TermStatistics {
            documents: Bm25StatisticsProvider::total_num_docs(&searcher)?,
            live_documents: searcher.num_docs(),
            tokens: Bm25StatisticsProvider::total_num_tokens(&searcher, contents)?,
            doc_freq,
        })
    }

    /// The statistics of the union of disjoint collections: every count summed.
    pub fn merge<'a>(parts: impl IntoIterator<Item = &'a TermStatistics>) -> TermStatistics {
        let mut sum = TermStatistics::default();
        for part in parts {
            sum.documents += part.documents;
            sum.live_documents += part.live_documents;
            sum.tokens += part.tokens;
            for (term, count) in &part.doc_freq {
                *sum.doc_freq.entry(term.clone()).or_default() += count;
            }
        }
        sum
    }

    /// Checks that the statistics can weigh `query` (they come from outside the process): every
    /// query term is present and no term is in more documents than the collection holds
    /// (tantivy's IDF assumes it).
    pub fn check_covers(&self, query: &str) -> Result<()> {
        for term in analyze(query).into_keys() {
            match self.doc_freq.get(&term) {
                None => {
                    return Err(SearchError::InvalidRequest(format!(
                        "the BM25 statistics lack the query term {term:?}: gather them for this query"
                    )))
                }
                Some(&count) if count > self.documents => {
                    return Err(SearchError::InvalidRequest(format!(
                        "the BM25 statistics say {count} documents contain {term:?} but the collection holds {}",
                        self.documents
                    )))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// Hands tantivy the collection's statistics instead of the index's own.
pub(crate) struct CollectionStatistics<'a> {
    pub(crate) statistics: &'a TermStatistics,
    pub(crate) contents: Field,
}

impl Bm25StatisticsProvider for CollectionStatistics<'_> {
    fn total_num_tokens(&self, field: Field) -> tantivy::Result<u64> {
        if field == self.contents {
            Ok(self.statistics.tokens)
        } else {
            Err(TantivyError::InvalidArgument(
                "BM25 statistics were gathered for the contents field only".into(),
            ))
        }
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        Ok(self.statistics.documents)
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        let value = term.value();
        let text = value.as_str().unwrap_or_default();
        self.statistics.doc_freq.get(text).copied().ok_or_else(|| {
            TantivyError::InvalidArgument(format!("no BM25 statistics for the term {text:?}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(documents: u64, tokens: u64, terms: &[(&str, u64)]) -> TermStatistics {
        TermStatistics {
            documents,
            live_documents: documents,
            tokens,
            doc_freq: terms.iter().map(|(t, c)| (t.to_string(), *c)).collect(),
        }
    }

    #[test]
    fn merging_sums_every_count() {
        let merged = TermStatistics::merge([
            &stats(10, 100, &[("wing", 2), ("flow", 1)]),
            &stats(5, 40, &[("wing", 3)]),
        ]);
        assert_eq!(merged, stats(15, 140, &[("flow", 1), ("wing", 5)]));
    }

    #[test]
    fn statistics_missing_a_term_or_over_counting_are_refused() {
        let partial = stats(10, 100, &[("wing", 2)]);
        assert!(partial.check_covers("wings").is_ok());
        let err = partial.check_covers("wing flow").unwrap_err().to_string();
        assert!(err.contains("\"flow\""), "{err}");
        let err = stats(1, 10, &[("wing", 2)])
            .check_covers("wing")
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds 1"), "{err}");
    }
}
