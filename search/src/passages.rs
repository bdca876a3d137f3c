//! The best passages of a result document: which of its chunks answer the query.

use ibex_indexer::{slice_chars, Index, StoredDocument};
use serde::Serialize;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use ibex_indexer::{english_stemmer, english_words_analyzer};
use tantivy::tokenizer::TextAnalyzer;

use crate::lexical::{analyze, with_analyzer};
use crate::statistics::TermStatistics;

/// A passage of a result: a chunk's text and its character offsets into the document text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Passage {
    /// The passage's text.
    pub text: String,
    /// Character offset of the passage in the document text.
    pub start: usize,
    /// One past its last character.
    pub end: usize,
    /// Its score for the query (higher is better).
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
    let byte_spans: Vec<(usize, usize)> = with_analyzer(|analyzer| {
        let mut stream = analyzer.token_stream(text);
        let mut spans = Vec::new();
        while let Some(token) = stream.next() {
            if terms.contains_key(&token.text) {
                spans.push((token.offset_from, token.offset_to));
            }
        }
        spans
    });
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

thread_local! {
    /// The index analyzer split in two (words, then stems), for [`TermFinder`].
    static SPLIT_ANALYZER: RefCell<(TextAnalyzer, TextAnalyzer)> =
        RefCell::new((english_words_analyzer(), english_stemmer()));
}

/// One token of a scanned text, as BM25 counts it: its byte range and the query term it is.
struct ScannedToken {
    from: usize,
    to: usize,
    term: Option<u32>,
}

/// The tokens of `text` that the index's analyzer keeps, each with the position in `terms`
/// (sorted) of its stem. Same terms as [`analyze`], but each distinct word is stemmed once:
/// a long document repeats its words, and stemming is most of the analyzer's cost.
fn scan_terms(text: &str, terms: &[String]) -> Vec<ScannedToken> {
    SPLIT_ANALYZER.with_borrow_mut(|(words, stemmer)| {
        let mut stems: HashMap<String, Option<u32>> = HashMap::new();
        let mut tokens = Vec::new();
        let mut stream = words.token_stream(text);
        while let Some(token) = stream.next() {
            let term = match stems.get(&token.text) {
                Some(&term) => term,
                None => {
                    let mut stemmed = stemmer.token_stream(&token.text);
                    let term = stemmed
                        .next()
                        .and_then(|stem| terms.binary_search(&stem.text).ok())
                        .map(|i| i as u32);
                    stems.insert(token.text.clone(), term);
                    term
                }
            };
            tokens.push(ScannedToken {
                from: token.offset_from,
                to: token.offset_to,
                term,
            });
        }
        tokens
    })
}

/// Byte offsets of the character offsets `positions` in `text`, in one pass over the text.
fn byte_offsets(text: &str, positions: &[usize]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..positions.len()).collect();
    order.sort_by_key(|&i| positions[i]);
    let mut out = vec![text.len(); positions.len()];
    let mut chars = text
        .char_indices()
        .map(|(byte, _)| byte)
        .chain(std::iter::once(text.len()))
        .enumerate()
        .peekable();
    for i in order {
        while chars.peek().is_some_and(|&(c, _)| c < positions[i]) {
            chars.next();
        }
        if let Some(&(_, byte)) = chars.peek() {
            out[i] = byte;
        }
    }
    out
}

/// BM25 (k1 = 1.2, b = 0.75) of each chunk against the query terms, with the collection's idf
/// (from `statistics` when the index is one shard of several), so lexical results point at the
/// chunks where the query's rare words occur. The document is analyzed once; each chunk (chunks
/// overlap) counts the tokens inside its range.
fn lexical_chunk_scores(
    index: &Index,
    doc: &StoredDocument,
    query: &str,
    statistics: Option<&TermStatistics>,
) -> Vec<f32> {
    let terms: Vec<String> = analyze(query).into_keys().collect();
    if terms.is_empty() {
        return vec![0.0; doc.chunks.len()];
    }
    let searcher = index.searcher();
    let total = match statistics {
        Some(s) => s.live_documents,
        None => searcher.num_docs(),
    }
    .max(1) as f32;
    let idf: Vec<f32> = terms
        .iter()
        .map(|t| {
            let df = match statistics {
                Some(s) => s.doc_freq.get(t).copied().unwrap_or(0),
                None => searcher
                    .doc_freq(&tantivy::Term::from_field_text(index.fields().contents, t))
                    .unwrap_or(0),
            } as f32;
            (1.0 + (total - df + 0.5) / (df + 0.5)).ln()
        })
        .collect();
    let tokens = scan_terms(&doc.text, &terms);
    let positions: Vec<usize> = doc.chunks.iter().flat_map(|s| [s.start, s.end]).collect();
    let bytes = byte_offsets(&doc.text, &positions);
    let mut counts = vec![0u32; terms.len()];
    let mut lengths = Vec::with_capacity(doc.chunks.len());
    let mut frequencies = Vec::with_capacity(doc.chunks.len());
    for range in bytes.chunks_exact(2) {
        let (start, end) = (range[0], range[1]);
        let first = tokens.partition_point(|t| t.from < start);
        counts.iter_mut().for_each(|c| *c = 0);
        let mut length = 0u32;
        for token in tokens[first..].iter().take_while(|t| t.from < end) {
            if token.to <= end {
                length += 1;
                if let Some(term) = token.term {
                    counts[term as usize] += 1;
                }
            }
        }
        lengths.push(length as f32);
        frequencies.push(counts.clone());
    }
    let average = (lengths.iter().sum::<f32>() / lengths.len().max(1) as f32).max(1.0);
    frequencies
        .iter()
        .zip(&lengths)
        .map(|(tf, &len)| {
            idf.iter()
                .zip(tf)
                .map(|(idf, &tf)| {
                    let tf = tf as f32;
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
/// cosine; with lexical scoring too, both rankings are fused by reciprocal rank. `statistics`
/// are the collection's when the index is one shard of several.
pub fn best_passages(
    index: &Index,
    doc: &StoredDocument,
    query: &str,
    vector: Option<&[f32]>,
    lexical: bool,
    count: usize,
    statistics: Option<&TermStatistics>,
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
    let lexical_scores = lexical.then(|| lexical_chunk_scores(index, doc, query, statistics));
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
    fn scanning_once_finds_the_terms_the_analyzer_finds() {
        let text = "Running runners ran; the RUNNER's runs. Generously generous generations, \
                    happily happy; jets' engines engine-driven, naïve Ärger ärgerlich.";
        let analyzed = analyze(text);
        let terms: Vec<String> = analyzed.keys().cloned().collect();
        let tokens = scan_terms(text, &terms);
        assert_eq!(tokens.len() as u32, analyzed.values().sum::<u32>());
        let mut counts = vec![0u32; terms.len()];
        for token in &tokens {
            counts[token
                .term
                .expect("every kept token is one of the text's terms")
                as usize] += 1;
        }
        assert_eq!(counts, analyzed.values().copied().collect::<Vec<_>>());
    }

    #[test]
    fn byte_offsets_of_character_offsets() {
        let text = "héllo wörld";
        assert_eq!(
            byte_offsets(text, &[6, 0, 5, 11, 99]),
            vec![7, 0, 6, 13, 13]
        );
    }

    #[test]
    fn no_terms_no_highlights() {
        assert!(highlight_spans("the and of", &analyze("the of")).is_empty());
    }
}
