//! The lexical index's schema and analyzer.
//!
//! The tantivy index is both the BM25 index and the document store: each ibex document is one
//! tantivy document whose stored fields hold the title, text, metadata and chunk spans, and whose
//! fast fields say which chunk keys (vector rows) belong to it.

use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, STORED, STRING,
};
use tantivy::tokenizer::{
    Language, LowerCaser, RawTokenizer, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter,
    TextAnalyzer,
};

/// Name under which ibex's English analyzer is registered with tantivy.
pub const ANALYZER: &str = "ibex_en";

/// Lucene's English stop words (EnglishAnalyzer), so that BM25 matches Lucene/Anserini's.
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with",
];

/// The analyzer used for BM25: word tokens, lower-cased, English stop words removed, stemmed.
pub fn english_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(StopWordFilter::remove(
            STOP_WORDS.iter().map(|w| w.to_string()),
        ))
        .filter(Stemmer::new(Language::English))
        .build()
}

/// [`english_analyzer`] without its last step: the tokens it keeps, lower-cased, unstemmed.
/// With [`english_stemmer`] it gives the same terms, and lets a caller that scans long texts
/// stem each distinct word once (stemming is most of the analyzer's cost).
pub fn english_words_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(StopWordFilter::remove(
            STOP_WORDS.iter().map(|w| w.to_string()),
        ))
        .build()
}

/// The analyzer's stemming step alone: one token in (a lower-cased word), its stem out.
pub fn english_stemmer() -> TextAnalyzer {
    TextAnalyzer::builder(RawTokenizer::default())
        .filter(Stemmer::new(Language::English))
        .build()
}

/// Handles of the schema's fields.
#[derive(Debug, Clone, Copy)]
pub struct Fields {
    /// Document id (exact, stored, fast).
    pub id: Field,
    /// Title (stored only; searched through `contents`).
    pub title: Field,
    /// Body text (stored only; searched through `contents`).
    pub text: Field,
    /// Title and text, analyzed: the one field BM25 scores, as Anserini's `contents`.
    pub contents: Field,
    /// Metadata as exact terms for filters: `key=value` for equality, and typed terms for
    /// ranges and existence (see [`crate::metadata`]).
    pub meta: Field,
    /// Metadata as stored JSON.
    pub metadata_json: Field,
    /// First chunk key of the document.
    pub chunk_base: Field,
    /// Number of chunks.
    pub chunk_count: Field,
    /// Chunk spans (character offsets), as little-endian u32 pairs.
    pub chunk_spans: Field,
    /// Each chunk's range of `contents` token positions and its token count
    /// ([`crate::chunk_terms`]), so passages are scored from the postings. `None` in indexes
    /// written before it existed: their passages are scored by analyzing the text.
    pub chunk_positions: Option<Field>,
    /// Hash of the indexed content, to skip documents that did not change.
    pub content_hash: Field,
}

/// Builds the schema and returns it with its field handles.
pub fn build_schema() -> (Schema, Fields) {
    build_schema_with(true)
}

/// Whether `schema` is one ibex reads: the current one, or the one written before chunk
/// positions were stored (its passages are scored by analyzing the text; reindexing stores the
/// positions).
pub fn is_ibex_schema(schema: &Schema) -> bool {
    *schema == build_schema_with(true).0 || *schema == build_schema_with(false).0
}

/// The schema with or without the `chunk_positions` field.
fn build_schema_with(chunk_positions: bool) -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let contents_options = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(ANALYZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let fields = Fields {
        id: builder.add_text_field("id", STRING | STORED | FAST),
        title: builder.add_text_field("title", STORED),
        text: builder.add_text_field("text", STORED),
        contents: builder.add_text_field("contents", contents_options),
        meta: builder.add_text_field("meta", STRING),
        metadata_json: builder.add_text_field("metadata", STORED),
        chunk_base: builder.add_u64_field("chunk_base", FAST | STORED),
        chunk_count: builder.add_u64_field("chunk_count", FAST | STORED),
        chunk_spans: builder.add_bytes_field("chunk_spans", STORED),
        chunk_positions: chunk_positions
            .then(|| builder.add_bytes_field("chunk_positions", STORED)),
        content_hash: builder.add_text_field("content_hash", STRING | STORED),
    };
    (builder.build(), fields)
}

/// Looks up the field handles of an existing index's schema.
pub fn fields_of(schema: &Schema) -> tantivy::Result<Fields> {
    Ok(Fields {
        id: schema.get_field("id")?,
        title: schema.get_field("title")?,
        text: schema.get_field("text")?,
        contents: schema.get_field("contents")?,
        meta: schema.get_field("meta")?,
        metadata_json: schema.get_field("metadata")?,
        chunk_base: schema.get_field("chunk_base")?,
        chunk_count: schema.get_field("chunk_count")?,
        chunk_spans: schema.get_field("chunk_spans")?,
        chunk_positions: schema.get_field("chunk_positions").ok(),
        content_hash: schema.get_field("content_hash")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_from_before_chunk_positions_are_read_and_others_are_not() {
        assert!(is_ibex_schema(&build_schema().0));
        let legacy = build_schema_with(false).0;
        assert!(is_ibex_schema(&legacy));
        assert_eq!(fields_of(&legacy).unwrap().chunk_positions, None);
        assert!(fields_of(&build_schema().0)
            .unwrap()
            .chunk_positions
            .is_some());
        let mut builder = Schema::builder();
        builder.add_text_field("id", STRING | STORED);
        assert!(!is_ibex_schema(&builder.build()));
    }
}
