//! Lexical query building: the query analyzed like the documents, and the chunks metadata
//! filters allow.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};

use ibex_indexer::{english_analyzer, ChunkSet, Fields, Index};
use tantivy::collector::DocSetCollector;
use tantivy::query::{BooleanQuery, BoostQuery, EnableScoring, Occur, Query, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{DocAddress, Searcher, Term};

use crate::error::Result;
use crate::filter::{filter_query, Filter};
use crate::retriever::PreparedQuery;

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

/// The chunk keys of the documents that pass `filters`, and how many documents those are
/// (`None`: no filter, every live chunk is allowed).
///
/// Walks the filter's matches segment by segment with each segment's chunk columns opened once:
/// opening them for every matching document made a filter keeping 25,000 of 50,000 documents
/// cost 60 ms a query (bench/filtered_search.sh).
pub fn allowed_chunks(
    index: &Index,
    searcher: &Searcher,
    filters: &[Filter],
) -> Result<Option<(ChunkSet, usize)>> {
    let Some(query) = filter_query(index.fields(), filters) else {
        return Ok(None);
    };
    let weight = query.weight(EnableScoring::disabled_from_searcher(searcher))?;
    let mut allowed = ChunkSet::default();
    let mut documents = 0;
    for segment in searcher.segment_readers() {
        let fast = segment.fast_fields();
        let bases = fast.u64("chunk_base")?;
        let counts = fast.u64("chunk_count")?;
        let alive = segment.alive_bitset();
        weight.for_each_no_score(segment, &mut |docs| {
            for &doc in docs {
                if alive.is_some_and(|a| a.is_deleted(doc)) {
                    continue;
                }
                if let (Some(base), Some(count)) = (bases.first(doc), counts.first(doc)) {
                    allowed.insert_range(base, base + count);
                    documents += 1;
                }
            }
        })?;
    }
    Ok(Some((allowed, documents)))
}

/// A BM25 query over `contents` from weighted terms (pseudo-relevance feedback's expanded
/// query): one clause per term, boosted by its weight. `None` without terms.
pub fn weighted_terms_query(fields: &Fields, terms: &[(String, f32)]) -> Option<Box<dyn Query>> {
    let clauses: Vec<(Occur, Box<dyn Query>)> = terms
        .iter()
        .map(|(term, weight)| {
            let query: Box<dyn Query> = Box::new(TermQuery::new(
                Term::from_field_text(fields.contents, term),
                IndexRecordOption::WithFreqs,
            ));
            (
                Occur::Should,
                Box::new(BoostQuery::new(query, *weight)) as Box<dyn Query>,
            )
        })
        .collect();
    (!clauses.is_empty()).then(|| Box::new(BooleanQuery::new(clauses)) as Box<dyn Query>)
}

/// The query BM25 runs: the bag of words, required together with the filters (`None` when no
/// term survives analysis).
pub fn bm25_query(fields: &Fields, text: &str, filters: &[Filter]) -> Option<Box<dyn Query>> {
    Some(with_filters(
        fields,
        bag_of_words_query(fields, text)?,
        filters,
    ))
}

/// The query the BM25 retriever runs for a prepared query: its expanded terms when feedback
/// gave some, else its bag of words, under its filters.
pub(crate) fn expanded_bm25_query(
    fields: &Fields,
    query: &PreparedQuery,
) -> Option<Box<dyn Query>> {
    let terms = match &query.expansion.terms {
        Some(terms) => weighted_terms_query(fields, terms)?,
        None => bag_of_words_query(fields, query.text)?,
    };
    Some(with_filters(fields, terms, query.filters))
}

/// `terms` required together with the filters.
fn with_filters(fields: &Fields, terms: Box<dyn Query>, filters: &[Filter]) -> Box<dyn Query> {
    match filter_query(fields, filters) {
        Some(filter) => Box::new(BooleanQuery::new(vec![
            (Occur::Must, filter),
            (Occur::Must, terms),
        ])),
        None => terms,
    }
}

/// Every document BM25 matches for `text` under `filters` (what facets count in bm25 mode).
pub fn bm25_matches(index: &Index, text: &str, filters: &[Filter]) -> Result<HashSet<DocAddress>> {
    match bm25_query(index.fields(), text, filters) {
        Some(query) => Ok(index.searcher().search(&*query, &DocSetCollector)?),
        None => Ok(HashSet::new()),
    }
}
