//! Retrievers: BM25, dense and hybrid, behind one trait.

use std::collections::HashMap;

use ibex_embedder::{Embedder, TextKind};
use ibex_indexer::{ChunkSet, Index};

use crate::error::{Result, SearchError};
use crate::feedback::Expansion;
use crate::filter::Filter;
use crate::fusion::{fuse_reciprocal_rank, fuse_weighted, DocScore, Fusion};
use crate::lexical::{allowed_chunks, expanded_bm25_query};
use crate::statistics::{CollectionStatistics, TermStatistics};
use crate::top_count::TopAndCount;

/// How a document's score is computed from its chunks' scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChunkAggregation {
    /// The best chunk's score (default): a long document is as relevant as its best passage.
    #[default]
    Max,
    /// The sum of the best `k` chunks' scores: rewards documents relevant in several places.
    TopKSum(usize),
}

/// A query prepared once and shared by the retrievers of one search.
pub struct PreparedQuery<'q> {
    /// The query text.
    pub text: &'q str,
    /// Metadata filters every result must pass.
    pub filters: &'q [Filter],
    /// The query's embedding, for dense retrieval and passage scoring.
    pub vector: Option<Vec<f32>>,
    /// Chunks allowed by the filters (`None`: all live chunks).
    pub allowed: Option<ChunkSet>,
    /// How many live documents the filters allow (all of them without filters): every one has
    /// a similarity to the query, so this is the dense and hybrid total.
    pub allowed_documents: usize,
    /// What pseudo-relevance feedback changed (nothing without it): the retrievers use the
    /// expanded queries, passages and MMR the query's own text and vector.
    pub expansion: Expansion,
}

impl<'q> PreparedQuery<'q> {
    /// Prepares `text`: embeds it when an embedder is given, resolves the filters.
    pub fn new(
        index: &Index,
        embedder: Option<&dyn Embedder>,
        text: &'q str,
        filters: &'q [Filter],
    ) -> Result<Self> {
        let vector = match embedder {
            Some(e) => Some(e.embed(&[text], TextKind::Query)?.pop().unwrap_or_default()),
            None => None,
        };
        let (allowed, allowed_documents) = resolve_filters(index, filters)?;
        Ok(PreparedQuery {
            text,
            filters,
            vector,
            allowed,
            allowed_documents,
            expansion: Expansion::default(),
        })
    }
}

impl<'q> PreparedQuery<'q> {
    /// Prepares a query whose vector the caller supplies (already checked against the index's
    /// dimension); `text` still drives BM25 in hybrid mode and passage highlighting.
    pub fn with_vector(
        index: &Index,
        text: &'q str,
        filters: &'q [Filter],
        vector: Vec<f32>,
    ) -> Result<Self> {
        let (allowed, allowed_documents) = resolve_filters(index, filters)?;
        Ok(PreparedQuery {
            text,
            filters,
            vector: Some(vector),
            allowed,
            allowed_documents,
            expansion: Expansion::default(),
        })
    }
}

fn resolve_filters(index: &Index, filters: &[Filter]) -> Result<(Option<ChunkSet>, usize)> {
    Ok(match allowed_chunks(index, &index.searcher(), filters)? {
        Some((allowed, documents)) => (Some(allowed), documents),
        None => (None, index.num_documents()),
    })
}

/// Ranks an index's documents for a query.
pub trait Retriever {
    /// The best `depth` documents, best first.
    fn retrieve(&self, index: &Index, query: &PreparedQuery) -> Result<Vec<DocScore>>;
}

/// BM25 over title + text (tantivy).
pub struct Bm25Retriever<'s> {
    /// Documents to return.
    pub depth: usize,
    /// The collection's statistics when this index is one shard of several (`None`: the
    /// index's own).
    pub statistics: Option<&'s TermStatistics>,
}

impl Retriever for Bm25Retriever<'_> {
    fn retrieve(&self, index: &Index, query: &PreparedQuery) -> Result<Vec<DocScore>> {
        Ok(self.retrieve_counted(index, query, 0)?.ranked)
    }
}

impl Bm25Retriever<'_> {
    /// The best `depth` documents, and how many documents match (the query's terms under the
    /// filters), counted in the same pass exactly up to `count_up_to` per segment: counting
    /// scores every match it counts, so a caller that needs no total passes 0 and ranking
    /// prunes from the start.
    pub fn retrieve_counted(
        &self,
        index: &Index,
        query: &PreparedQuery,
        count_up_to: usize,
    ) -> Result<Bm25List> {
        let fields = index.fields();
        if let Some(statistics) = self.statistics {
            statistics.check_covers(query.text)?;
        }
        let Some(query) = expanded_bm25_query(fields, query) else {
            return Ok(Bm25List {
                exact: true,
                ..Bm25List::default()
            });
        };
        let searcher = index.searcher();
        let collector = TopAndCount {
            k: self.depth.max(1),
            count_up_to,
        };
        let found = match self.statistics {
            Some(statistics) => searcher.search_with_statistics_provider(
                &*query,
                &collector,
                &CollectionStatistics {
                    statistics,
                    contents: fields.contents,
                },
            )?,
            None => searcher.search(&*query, &collector)?,
        };
        // Ids come from the index's live-document table (by tantivy address): loading stored
        // documents would decompress whole documents (long ones are most of the store) just to
        // read their ids.
        let live = index.live_docs();
        let mut out = Vec::with_capacity(found.top.len());
        for (score, address) in found.top {
            if let Some(doc) = live.at_address(address.segment_ord, address.doc_id) {
                out.push(DocScore {
                    id: doc.id.clone(),
                    score,
                });
            }
        }
        // Equal scores in document-id order, as the merged lists of a sharded index are: the
        // rank of a tie then does not depend on where the documents happen to lie.
        out.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
        Ok(Bm25List {
            ranked: out,
            matches: found.matches,
            exact: found.exact,
        })
    }
}

/// A BM25 list and how many documents matched.
#[derive(Debug, Clone, Default)]
pub struct Bm25List {
    /// The best documents, best first.
    pub ranked: Vec<DocScore>,
    /// Documents matching the query's terms under the filters: exact when `exact`, else a
    /// lower bound (see [`crate::EXACT_TOTAL_UP_TO`]).
    pub matches: usize,
    /// Whether `matches` counts every match.
    pub exact: bool,
}

/// Dense retrieval: nearest chunks by cosine, aggregated per document.
pub struct DenseRetriever {
    /// Documents to return.
    pub depth: usize,
    /// How a document's score comes from its chunks'.
    pub aggregation: ChunkAggregation,
}

impl Retriever for DenseRetriever {
    fn retrieve(&self, index: &Index, query: &PreparedQuery) -> Result<Vec<DocScore>> {
        let vector = query
            .expansion
            .vector
            .as_deref()
            .or(query.vector.as_deref())
            .ok_or(SearchError::NoEmbedder("dense"))?;
        let available = query
            .allowed
            .as_ref()
            .map_or(index.num_chunks(), |a| a.len());
        let per_doc = match self.aggregation {
            ChunkAggregation::Max => 1,
            ChunkAggregation::TopKSum(k) => k.max(1),
        };
        // Fetch chunks until `depth` distinct documents are found (long documents contribute
        // many chunks), or every chunk has been seen. The last round, which asks for every
        // allowed chunk, scans them exactly: a graph walk under a filter may miss allowed rows,
        // and a filtered search must return min(depth, matching documents) hits.
        let mut k = (self.depth * 3 * per_doc).max(50);
        loop {
            let hits = if k >= available {
                index.scan_vectors(vector, available, query.allowed.as_ref())?
            } else {
                index.search_vectors(vector, k, query.allowed.as_ref())?
            };
            let mut per_document: HashMap<&str, Vec<f32>> = HashMap::new();
            for hit in &hits {
                if let Some(owner) = index.live_docs().owner(hit.chunk_key) {
                    per_document
                        .entry(owner.id.as_str())
                        .or_default()
                        .push(hit.score);
                }
            }
            if per_document.len() >= self.depth || k >= available {
                let mut out: Vec<DocScore> = per_document
                    .into_iter()
                    .map(|(id, scores)| {
                        let score = match self.aggregation {
                            ChunkAggregation::Max => scores[0],
                            ChunkAggregation::TopKSum(n) => scores.iter().take(n).sum(),
                        };
                        DocScore {
                            id: id.to_string(),
                            score,
                        }
                    })
                    .collect();
                out.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
                out.truncate(self.depth);
                return Ok(out);
            }
            k *= 4;
        }
    }
}

/// Hybrid retrieval: BM25 and dense lists fused.
pub struct HybridRetriever {
    /// Documents to return.
    pub depth: usize,
    /// How deep each list is before fusion (fusion needs more than the final depth).
    pub candidates: usize,
    /// How the two lists are combined.
    pub fusion: Fusion,
    /// How a document's dense score comes from its chunks'.
    pub aggregation: ChunkAggregation,
}

impl Retriever for HybridRetriever {
    fn retrieve(&self, index: &Index, query: &PreparedQuery) -> Result<Vec<DocScore>> {
        let depth = self.candidates.max(self.depth);
        let lexical = Bm25Retriever {
            depth,
            statistics: None,
        }
        .retrieve(index, query)?;
        let dense = DenseRetriever {
            depth,
            aggregation: self.aggregation,
        }
        .retrieve(index, query)?;
        Ok(fuse_hybrid(self.fusion, &lexical, &dense, self.depth))
    }
}

/// The fused ranking of a BM25 and a dense list, cut at `depth`: what hybrid search returns,
/// whether the lists come from one index or are merged from shards.
pub fn fuse_hybrid(
    fusion: Fusion,
    lexical: &[DocScore],
    dense: &[DocScore],
    depth: usize,
) -> Vec<DocScore> {
    let mut fused = match fusion {
        Fusion::ReciprocalRank { k } => fuse_reciprocal_rank(&[lexical, dense], k),
        Fusion::Weighted { alpha } => fuse_weighted(dense, lexical, alpha),
    };
    fused.truncate(depth);
    fused
}
