//! Which chunks are live: derived from the committed documents, never stored separately.
//!
//! Each live tantivy document names its chunk keys (`chunk_base .. chunk_base + chunk_count`).
//! A vector row whose key no live document names belongs to a deleted or replaced document: it is
//! a tombstoned row. Deriving the live set from the same commit as the documents means the two can
//! never disagree, whatever moment a writer was killed at.

use std::collections::HashMap;

use tantivy::Searcher;

use crate::vectors::ChunkSet;

/// The chunks of one live document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocChunks {
    /// The document's id.
    pub id: String,
    /// Key of its first chunk.
    pub chunk_base: u64,
    /// How many chunks it has (keys `chunk_base..chunk_base + chunk_count`).
    pub chunk_count: u32,
}

/// The live documents and chunks of a committed index state.
#[derive(Debug, Default)]
pub struct LiveDocs {
    /// Sorted by `chunk_base`, so the owner of a chunk key is found by binary search.
    docs: Vec<DocChunks>,
    by_id: HashMap<String, usize>,
    chunks: ChunkSet,
    /// Position in `docs` of each live document, by tantivy address (segment ordinal, then
    /// doc id), for views read from a searcher: a BM25 hit finds its id without loading the
    /// stored document.
    by_address: Vec<Vec<u32>>,
}

impl LiveDocs {
    /// Reads the live documents from a tantivy searcher's fast fields.
    pub fn from_searcher(searcher: &Searcher) -> tantivy::Result<LiveDocs> {
        let mut docs = Vec::with_capacity(searcher.num_docs() as usize);
        let mut addresses: Vec<(u32, u32)> = Vec::with_capacity(docs.capacity());
        let mut id = String::new();
        for (ordinal, segment) in searcher.segment_readers().iter().enumerate() {
            let fast = segment.fast_fields();
            let bases = fast.u64("chunk_base")?;
            let counts = fast.u64("chunk_count")?;
            let Some(ids) = fast.str("id")? else { continue };
            for doc in segment.doc_ids_alive() {
                let (Some(base), Some(count)) = (bases.first(doc), counts.first(doc)) else {
                    continue;
                };
                let Some(ord) = ids.term_ords(doc).next() else {
                    continue;
                };
                id.clear();
                ids.ord_to_str(ord, &mut id)?;
                docs.push(DocChunks {
                    id: id.clone(),
                    chunk_base: base,
                    chunk_count: count as u32,
                });
                addresses.push((ordinal as u32, doc));
            }
        }
        let ids: Vec<String> = docs.iter().map(|d| d.id.clone()).collect();
        let mut live = LiveDocs::from_docs(docs);
        live.by_address = searcher
            .segment_readers()
            .iter()
            .map(|segment| vec![u32::MAX; segment.max_doc() as usize])
            .collect();
        for ((ordinal, doc), id) in addresses.into_iter().zip(&ids) {
            if let Some(&position) = live.by_id.get(id) {
                live.by_address[ordinal as usize][doc as usize] = position as u32;
            }
        }
        Ok(live)
    }

    /// Builds the view from a list of live documents.
    pub fn from_docs(mut docs: Vec<DocChunks>) -> LiveDocs {
        docs.sort_by_key(|d| d.chunk_base);
        let mut chunks = ChunkSet::default();
        let mut by_id = HashMap::with_capacity(docs.len());
        for (i, doc) in docs.iter().enumerate() {
            chunks.insert_range(doc.chunk_base, doc.chunk_base + doc.chunk_count as u64);
            by_id.insert(doc.id.clone(), i);
        }
        LiveDocs {
            docs,
            by_id,
            chunks,
            by_address: Vec::new(),
        }
    }

    /// The live chunk keys.
    pub fn chunks(&self) -> &ChunkSet {
        &self.chunks
    }

    /// The document that owns live chunk `key`.
    pub fn owner(&self, key: u64) -> Option<&DocChunks> {
        let i = self
            .docs
            .partition_point(|d| d.chunk_base <= key)
            .checked_sub(1)?;
        let doc = &self.docs[i];
        (key < doc.chunk_base + doc.chunk_count as u64).then_some(doc)
    }

    /// The live document at tantivy address (`segment_ord`, `doc_id`) of the searcher this view
    /// was read from (`None` for views built from a document list).
    pub fn at_address(&self, segment_ord: u32, doc_id: u32) -> Option<&DocChunks> {
        let position = *self
            .by_address
            .get(segment_ord as usize)?
            .get(doc_id as usize)?;
        self.docs.get(position as usize)
    }

    /// The chunks of live document `id`.
    pub fn get(&self, id: &str) -> Option<&DocChunks> {
        self.by_id.get(id).map(|&i| &self.docs[i])
    }

    /// Number of live documents.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// Whether there are no live documents.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// All live documents, in chunk-key order.
    pub fn iter(&self) -> impl Iterator<Item = &DocChunks> {
        self.docs.iter()
    }
}
