//! The best passages of a result document: which of its chunks answer the query.
//!
//! A hit's chunks are ranked by cosine to the query vector and by BM25 of the query terms in
//! each chunk. The terms' frequencies come from the lexical index's positions and the chunks'
//! position ranges stored at index time ([`ibex_indexer::chunk_terms`]), so a hit costs what its
//! query terms' occurrences cost, not what its length does; documents of indexes written before
//! those ranges were stored are analyzed instead, with the same scores.

use ibex_indexer::chunk_terms::ChunkPositions;
use ibex_indexer::{Index, StoredDocument};
use serde::Serialize;
use tantivy::postings::Postings;
use tantivy::schema::IndexRecordOption;
use tantivy::{DocAddress, DocSet, Term};

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use ibex_indexer::{english_stemmer, english_words_analyzer};
use tantivy::tokenizer::TextAnalyzer;

use crate::error::{Result, SearchError};
use crate::lexical::analyze;
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
    let mut byte_spans: Vec<(usize, usize)> = Vec::new();
    for_each_word(text, |from, to, stem| {
        if terms.contains_key(stem) {
            byte_spans.push((from, to));
        }
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

/// The most words [`STEMMER`] remembers; past it, it starts again from empty.
const REMEMBERED_STEMS: usize = 65_536;

/// The index analyzer split in two (the words it keeps, then their stems), with the stems of
/// the words met so far: stemming was a third of a search's time on cranfield (highlighting
/// every hit's passages), and a collection's searches meet the same words again and again.
struct Stemmer {
    words: TextAnalyzer,
    stemmer: TextAnalyzer,
    stems: HashMap<String, String>,
}

thread_local! {
    static STEMMER: RefCell<Stemmer> = RefCell::new(Stemmer {
        words: english_words_analyzer(),
        stemmer: english_stemmer(),
        stems: HashMap::new(),
    });
}

/// Calls `f(from, to, stem)` for each token of `text` the index's analyzer keeps, in order, with
/// its byte range and its analyzed form: the terms [`analyze`] gives.
fn for_each_word(text: &str, mut f: impl FnMut(usize, usize, &str)) {
    STEMMER.with_borrow_mut(|s| {
        let Stemmer {
            words,
            stemmer,
            stems,
        } = s;
        let mut stream = words.token_stream(text);
        while let Some(token) = stream.next() {
            if let Some(stem) = stems.get(&token.text) {
                f(token.offset_from, token.offset_to, stem);
                continue;
            }
            let stem = stemmer
                .token_stream(&token.text)
                .next()
                .map(|t| t.text.clone())
                .unwrap_or_default();
            f(token.offset_from, token.offset_to, &stem);
            if stems.len() >= REMEMBERED_STEMS {
                stems.clear();
            }
            stems.insert(token.text.clone(), stem);
        }
    });
}

/// One token of a scanned text, as BM25 counts it: its byte range and the query term it is.
struct ScannedToken {
    from: usize,
    to: usize,
    term: Option<u32>,
}

/// The tokens of `text` that the index's analyzer keeps, each with the position in `terms`
/// (sorted) of its stem: the terms [`analyze`] gives.
fn scan_terms(text: &str, terms: &[String]) -> Vec<ScannedToken> {
    let mut tokens = Vec::new();
    for_each_word(text, |from, to, stem| {
        tokens.push(ScannedToken {
            from,
            to,
            term: terms
                .binary_search_by(|t| t.as_str().cmp(stem))
                .ok()
                .map(|i| i as u32),
        });
    });
    tokens
}

/// Byte offsets of the character offsets `positions` in `text` (its length for offsets past
/// its end), in one pass that stops at the largest. The pass counts characters 64 bytes at a
/// time (the bytes that start a character), which the compiler vectorizes: walking `char_indices`
/// to a passage deep in a 10,000-word transcript was a fifth of a qmsum-val search.
fn byte_offsets(text: &str, positions: &[usize]) -> Vec<usize> {
    const BLOCK: usize = 64;
    let bytes = text.as_bytes();
    let starts_a_character = |b: u8| (b as i8) >= -64;
    let mut order: Vec<usize> = (0..positions.len()).collect();
    order.sort_by_key(|&i| positions[i]);
    let mut out = vec![text.len(); positions.len()];
    // Characters starting before `byte`.
    let (mut byte, mut characters) = (0usize, 0usize);
    for i in order {
        let target = positions[i];
        while byte + BLOCK <= bytes.len() {
            let starts = bytes[byte..byte + BLOCK]
                .iter()
                .filter(|&&b| starts_a_character(b))
                .count();
            if characters + starts > target {
                break;
            }
            characters += starts;
            byte += BLOCK;
        }
        while byte < bytes.len() {
            if starts_a_character(bytes[byte]) {
                if characters == target {
                    break;
                }
                characters += 1;
            }
            byte += 1;
        }
        out[i] = byte;
    }
    out
}

/// What scores the passages of every hit of one search: the query's analyzed terms, their idf
/// and its vector, prepared once per search rather than once per hit.
pub struct PassageScorer<'a> {
    index: &'a Index,
    /// The query's analyzed terms, sorted (a term's index is its place in `idf`).
    terms: Vec<String>,
    /// The same terms with their counts, for highlighting.
    highlight_terms: BTreeMap<String, u32>,
    /// Each term's BM25 idf in the collection.
    idf: Vec<f32>,
    vector: Option<&'a [f32]>,
    lexical: bool,
    count: usize,
}

impl<'a> PassageScorer<'a> {
    /// A scorer of `count` passages per hit. With a query vector, chunks are scored by cosine;
    /// with `lexical` too, by BM25 against the query terms, both rankings fused by reciprocal
    /// rank. `statistics` are the collection's when the index is one shard of several, so the
    /// idf is the collection's.
    pub fn new(
        index: &'a Index,
        query: &str,
        vector: Option<&'a [f32]>,
        lexical: bool,
        count: usize,
        statistics: Option<&TermStatistics>,
    ) -> Self {
        let highlight_terms = analyze(query);
        let terms: Vec<String> = highlight_terms.keys().cloned().collect();
        let idf = if lexical {
            term_idf(index, &terms, statistics)
        } else {
            Vec::new()
        };
        PassageScorer {
            index,
            terms,
            highlight_terms,
            idf,
            vector,
            lexical,
            count,
        }
    }

    /// The best passages of `doc` (found at `address` in the index's snapshot), best first.
    pub fn passages(&self, address: DocAddress, doc: &StoredDocument) -> Result<Vec<Passage>> {
        if self.count == 0 || doc.chunks.is_empty() {
            return Ok(Vec::new());
        }
        let dense: Option<Vec<f32>> = match self.vector {
            Some(q) => Some(
                (0..doc.chunks.len())
                    .map(|i| {
                        Ok(self
                            .index
                            .chunk_vector(doc.chunk_base + i as u64)?
                            .map_or(0.0, |v| ibex_indexer::vectors::dot(q, &v)))
                    })
                    .collect::<Result<_>>()?,
            ),
            None => None,
        };
        let lexical = if self.lexical {
            Some(self.lexical_chunk_scores(address, doc)?)
        } else {
            None
        };
        let scores: Vec<f32> = match (dense, lexical) {
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
        order.truncate(self.count);
        // The passages' byte ranges: stored with the chunk positions, or found in one pass
        // that stops at the last passage (slicing each passage by characters would walk a long
        // text from its start every time).
        let bytes: Vec<usize> = if doc.chunk_positions.len() == doc.chunks.len() {
            order
                .iter()
                .flat_map(|&i| {
                    let p = doc.chunk_positions[i];
                    [p.byte_start as usize, p.byte_end as usize]
                })
                .collect()
        } else {
            let characters: Vec<usize> = order
                .iter()
                .flat_map(|&i| [doc.chunks[i].start, doc.chunks[i].end])
                .collect();
            byte_offsets(&doc.text, &characters)
        };
        Ok(order
            .into_iter()
            .zip(bytes.chunks_exact(2))
            .map(|(i, range)| {
                let span = doc.chunks[i];
                // A damaged record gives an empty passage, never a panic.
                let text = doc.text.get(range[0]..range[1]).unwrap_or_default();
                Passage {
                    text: text.to_string(),
                    start: span.start,
                    end: span.end,
                    score: scores[i],
                    highlights: highlight_spans(text, &self.highlight_terms),
                }
            })
            .collect())
    }

    /// BM25 (k1 = 1.2, b = 0.75) of each chunk of `doc` against the query terms, chunk lengths
    /// averaged over the document's chunks, so lexical results point at the chunks where the
    /// query's rare words occur. Term frequencies come from the postings' positions and the
    /// chunks' stored position ranges; a document stored without them (an older index) is
    /// analyzed instead, which gives the same scores at a cost that follows its length.
    fn lexical_chunk_scores(&self, address: DocAddress, doc: &StoredDocument) -> Result<Vec<f32>> {
        if self.terms.is_empty() {
            return Ok(vec![0.0; doc.chunks.len()]);
        }
        let (lengths, frequencies) = if doc.chunk_positions.len() == doc.chunks.len() {
            self.frequencies_from_postings(address, &doc.chunk_positions)?
        } else {
            frequencies_by_scanning(doc, &self.terms)
        };
        let average = (lengths.iter().sum::<f32>() / lengths.len().max(1) as f32).max(1.0);
        Ok(frequencies
            .iter()
            .zip(&lengths)
            .map(|(tf, &len)| {
                self.idf
                    .iter()
                    .zip(tf)
                    .map(|(idf, &tf)| {
                        let tf = tf as f32;
                        idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len / average))
                    })
                    .sum()
            })
            .collect())
    }

    /// Each chunk's length and query-term frequencies, counted from the positions of the query
    /// terms in the document's postings.
    fn frequencies_from_postings(
        &self,
        address: DocAddress,
        chunks: &[ChunkPositions],
    ) -> Result<ChunkFrequencies> {
        let contents = self.index.fields().contents;
        let searcher = self.index.searcher();
        let inverted = searcher
            .segment_reader(address.segment_ord)
            .inverted_index(contents)?;
        let mut term_positions: Vec<Vec<u32>> = Vec::with_capacity(self.terms.len());
        for term in &self.terms {
            let term = Term::from_field_text(contents, term);
            let mut positions = Vec::new();
            let postings = inverted
                .read_postings(&term, IndexRecordOption::WithFreqsAndPositions)
                .map_err(|source| SearchError::Io {
                    context: "reading the lexical index's positions".into(),
                    source,
                })?;
            if let Some(mut postings) = postings {
                // `seek` only moves forward: a list starting past the document lacks it.
                if postings.doc() <= address.doc_id
                    && postings.seek(address.doc_id) == address.doc_id
                {
                    postings.positions(&mut positions);
                }
            }
            term_positions.push(positions);
        }
        let lengths = chunks.iter().map(|c| c.tokens as f32).collect();
        let frequencies = chunks
            .iter()
            .map(|chunk| {
                term_positions
                    .iter()
                    .map(|positions| {
                        let from = positions.partition_point(|&p| p < chunk.first);
                        let to = positions.partition_point(|&p| p < chunk.end);
                        to.saturating_sub(from) as u32
                    })
                    .collect()
            })
            .collect();
        Ok((lengths, frequencies))
    }
}

/// Each chunk's length in tokens, and its frequency of each query term.
type ChunkFrequencies = (Vec<f32>, Vec<Vec<u32>>);

/// BM25 idf of each of `terms` in the collection (from `statistics` when the index is one shard
/// of several), weighed against its live documents.
fn term_idf(index: &Index, terms: &[String], statistics: Option<&TermStatistics>) -> Vec<f32> {
    let searcher = index.searcher();
    let total = match statistics {
        Some(s) => s.live_documents,
        None => searcher.num_docs(),
    }
    .max(1) as f32;
    terms
        .iter()
        .map(|t| {
            let df = match statistics {
                Some(s) => s.doc_freq.get(t).copied().unwrap_or(0),
                None => searcher
                    .doc_freq(&Term::from_field_text(index.fields().contents, t))
                    .unwrap_or(0),
            } as f32;
            (1.0 + (total - df + 0.5) / (df + 0.5)).ln()
        })
        .collect()
}

/// [`PassageScorer::frequencies_from_postings`]'s answer found by analyzing the document's text
/// once; each chunk (chunks overlap) counts the tokens inside its range.
fn frequencies_by_scanning(doc: &StoredDocument, terms: &[String]) -> ChunkFrequencies {
    let tokens = scan_terms(&doc.text, terms);
    let positions: Vec<usize> = doc.chunks.iter().flat_map(|s| [s.start, s.end]).collect();
    let bytes = byte_offsets(&doc.text, &positions);
    let mut lengths = Vec::with_capacity(doc.chunks.len());
    let mut frequencies = Vec::with_capacity(doc.chunks.len());
    for range in bytes.chunks_exact(2) {
        let (start, end) = (range[0], range[1]);
        let first = tokens.partition_point(|t| t.from < start);
        let mut counts = vec![0u32; terms.len()];
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
        frequencies.push(counts);
    }
    (lengths, frequencies)
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
    fn byte_offsets_agree_with_char_indices_across_blocks() {
        let text = "ab é ∑ 𝄞 ".repeat(40);
        let boundaries: Vec<usize> = text
            .char_indices()
            .map(|(b, _)| b)
            .chain(std::iter::once(text.len()))
            .collect();
        let positions: Vec<usize> = (0..boundaries.len() + 5).rev().step_by(3).collect();
        let expected: Vec<usize> = positions
            .iter()
            .map(|&p| boundaries.get(p).copied().unwrap_or(text.len()))
            .collect();
        assert_eq!(byte_offsets(&text, &positions), expected);
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
