//! Facet counts: how many documents of a result set hold each value of a metadata field, the way
//! Meilisearch and Elasticsearch return them beside the hits (the search page shows them as
//! clickable filters).
//!
//! Counts come from the index's equality terms (`key=value` in the `meta` field, see
//! `ibex_indexer::metadata`): for each value of the field, its posting list is walked and the
//! documents of the set counted. Nothing is loaded from the document store, so counting over all
//! of a BM25 query's matches costs one pass over the field's postings.

use std::collections::{BTreeMap, HashMap};

use ibex_indexer::metadata::equality_term;
use ibex_indexer::Index;
use serde::Serialize;
use tantivy::schema::IndexRecordOption;
use tantivy::{DocSet, TERMINATED};

use crate::error::Result;

/// Most fields one search may count facets of.
pub const MAX_FACETS: usize = 20;

/// Values returned per facet: the most frequent, ties in value order.
pub const FACET_VALUES: usize = 100;

/// Which documents a facet counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FacetScope {
    /// Every document matching the filters and the query's BM25 terms (mode bm25): exact.
    Matches,
    /// The documents of the candidate lists ranked before the cut (modes dense and hybrid, where
    /// every document has a similarity and "matching" would mean the whole index).
    Candidates,
}

/// The counts of one field's values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Facet {
    /// Which documents were counted.
    pub counted_over: FacetScope,
    /// How many documents were counted.
    pub documents: usize,
    /// The most frequent values, most frequent first (at most [`FACET_VALUES`]).
    pub values: Vec<FacetCount>,
    /// Whether values were left out beyond [`FACET_VALUES`].
    pub truncated: bool,
}

/// One value of a facet and how many counted documents hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FacetCount {
    /// The value as equality filters match it (numbers and booleans as JSON writes them), so
    /// `{field: value}` keeps exactly these documents.
    pub value: String,
    /// Documents holding it (a document with a list counts once for each distinct element).
    pub count: usize,
}

/// Counts the values of each of `fields` over the documents for which `counted` (segment
/// ordinal, document id in the segment) holds.
pub(crate) fn count_facets(
    index: &Index,
    fields: &[String],
    scope: FacetScope,
    documents: usize,
    counted: impl Fn(u32, u32) -> bool,
) -> Result<BTreeMap<String, Facet>> {
    let searcher = index.searcher();
    let meta = index.fields().meta;
    let mut facets = BTreeMap::new();
    for field in fields {
        // Every equality term of the field starts with `field=`; the next byte after '=' is '>',
        // so `field>` bounds the range from above.
        let prefix = equality_term(field, "");
        let end = format!("{}>", &prefix[..prefix.len() - 1]);
        let mut counts: HashMap<String, usize> = HashMap::new();
        for (ordinal, segment) in searcher.segment_readers().iter().enumerate() {
            let inverted = segment.inverted_index(meta)?;
            let mut terms = inverted
                .terms()
                .range()
                .ge(prefix.as_bytes())
                .lt(end.as_bytes())
                .into_stream()
                .map_err(tantivy::TantivyError::from)?;
            while terms.advance() {
                let value = String::from_utf8_lossy(&terms.key()[prefix.len()..]).into_owned();
                let mut postings = inverted
                    .read_postings_from_terminfo(terms.value(), IndexRecordOption::Basic)
                    .map_err(tantivy::TantivyError::from)?;
                let mut count = 0;
                let mut doc = postings.doc();
                while doc != TERMINATED {
                    if counted(ordinal as u32, doc) {
                        count += 1;
                    }
                    doc = postings.advance();
                }
                if count > 0 {
                    *counts.entry(value).or_default() += count;
                }
            }
        }
        let mut values: Vec<FacetCount> = counts
            .into_iter()
            .map(|(value, count)| FacetCount { value, count })
            .collect();
        values.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
        let truncated = values.len() > FACET_VALUES;
        values.truncate(FACET_VALUES);
        facets.insert(
            field.clone(),
            Facet {
                counted_over: scope,
                documents,
                values,
                truncated,
            },
        );
    }
    Ok(facets)
}
