//! The best passages of a result document: which of its chunks answer the query.

use ibex_indexer::{slice_chars, Index, StoredDocument};
use serde::Serialize;

use std::collections::BTreeMap;

use ibex_indexer::english_analyzer;

use crate::lexical::analyze;

/// A passage of a result: a chunk's text and its character offsets into the document text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Passage {
    pub text: String,
    pub start: usize,
    pub end: usize,
    pub score: f32,
    /// Words of the passage that match a query term after analysis (so "engines" lights up for
    /// "engine"), as `[start, end)` character offsets into `text`. Clients highlight from these
    /// offsets rather than from markup, so a document's text is never interpreted as HTML.
    pub highlights: Vec<[usize; 2]>,
}

/// Character ranges of `text` whose analyzed form is one of `terms`.
pub fn highlight_spans(text: &str, terms: &BTreeMap<String, u32>) -> Vec<[usize; 2]> {
    if terms.is_empty() {
        return Vec::new();
    }
    let mut analyzer = english_analyzer();
    let mut stream = analyzer.token_stream(text);
    let mut byte_spans = Vec::new();
    while let Some(token) = stream.next() {
        if terms.contains_key(&token.text) {
            byte_spans.push((token.offset_from, token.offset_to));
        }
    }
    // Byte offsets to character offsets; tokens come in text order, so count incrementally.
    let mut spans = Vec::with_capacity(byte_spans.len());
    let (mut byte, mut chars) = (0usize, 0usize);
    for (from, to) in byte_spans {
        if from < byte || to < from || to > text.len() {
            continue;
        }
        chars += text[byte..from].chars().count();
        let len = text[from..to].chars().count();
        spans.push([chars, chars + len]);
        byte = to;
        chars += len;
    }
    spans
}

/// BM25 (k1 = 1.2, b = 0.75) of each chunk against the query terms, with the collection's idf,
/// so lexical results point at the chunks where the query's rare words occur.
fn lexical_chunk_scores(index: &Index, doc: &StoredDocument, query: &str) -> Vec<f32> {
    let terms = analyze(query);
    if terms.is_empty() {
        return vec![0.0; doc.chunks.len()];
    }
    let searcher = index.searcher();
    let total = searcher.num_docs().max(1) as f32;
    let idf: Vec<(String, f32)> = terms
        .keys()
        .map(|t| {
            let df = searcher
                .doc_freq(&tantivy::Term::from_field_text(index.fields().contents, t))
                .unwrap_or(0) as f32;
            (t.clone(), (1.0 + (total - df + 0.5) / (df + 0.5)).ln())
        })
        .collect();
    let analyzed: Vec<std::collections::BTreeMap<String, u32>> = doc
        .chunks
        .iter()
        .map(|span| analyze(slice_chars(&doc.text, span.start, span.end)))
        .collect();
    let lengths: Vec<f32> = analyzed
        .iter()
        .map(|a| a.values().sum::<u32>() as f32)
        .collect();
    let average = (lengths.iter().sum::<f32>() / lengths.len().max(1) as f32).max(1.0);
    analyzed
        .iter()
        .zip(&lengths)
        .map(|(chunk_terms, &len)| {
            idf.iter()
                .map(|(t, idf)| {
                    let tf = *chunk_terms.get(t).unwrap_or(&0) as f32;
                    idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len / average))
                })
                .sum()
        })
        .collect()
}

/// Ranks of `scores` (0 = best).
fn ranks(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut rank = vec![0; scores.len()];
    for (r, i) in order.into_iter().enumerate() {
        rank[i] = r;
    }
    rank
}

/// The `count` best passages of `doc`, best first. With a query vector, chunks are scored by
/// cosine; with lexical scoring too, both rankings are fused by reciprocal rank.
pub fn best_passages(
    index: &Index,
    doc: &StoredDocument,
    query: &str,
    vector: Option<&[f32]>,
    lexical: bool,
    count: usize,
) -> Vec<Passage> {
    if count == 0 || doc.chunks.is_empty() {
        return Vec::new();
    }
    let dense: Option<Vec<f32>> = vector.map(|q| {
        (0..doc.chunks.len())
            .map(|i| {
                index
                    .chunk_vector(doc.chunk_base + i as u64)
                    .map_or(0.0, |v| ibex_indexer::vectors::dot(q, v))
            })
            .collect()
    });
    let lexical_scores = lexical.then(|| lexical_chunk_scores(index, doc, query));
    let scores: Vec<f32> = match (dense, lexical_scores) {
        (Some(d), Some(l)) => {
            let (rd, rl) = (ranks(&d), ranks(&l));
            (0..d.len())
                .map(|i| 1.0 / (61.0 + rd[i] as f32) + 1.0 / (61.0 + rl[i] as f32))
                .collect()
        }
        (Some(d), None) => d,
        (None, Some(l)) => l,
        (None, None) => vec![0.0; doc.chunks.len()],
    };
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let terms = analyze(query);
    order
        .into_iter()
        .take(count)
        .map(|i| {
            let span = doc.chunks[i];
            Passage {
                text: slice_chars(&doc.text, span.start, span.end).to_string(),
                start: span.start,
                end: span.end,
                score: scores[i],
                highlights: highlight_spans(slice_chars(&doc.text, span.start, span.end), &terms),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highlights_match_analyzed_terms_at_character_offsets() {
        let terms = analyze("jet engines");
        let text = "Ärger: the engine of a jet. Jets fly.";
        let spans = highlight_spans(text, &terms);
        let words: Vec<String> = spans
            .iter()
            .map(|[s, e]| text.chars().skip(*s).take(e - s).collect())
            .collect();
        assert_eq!(words, ["engine", "jet", "Jets"]);
    }

    #[test]
    fn no_terms_no_highlights() {
        assert!(highlight_spans("the and of", &analyze("the of")).is_empty());
    }
}
