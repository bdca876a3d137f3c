//! The best passages of a result document: which of its chunks answer the query.
//!
//! A hit's chunks are ranked by cosine to the query vector and by BM25 of the query terms in
//! each chunk. The terms' frequencies come from the lexical index's positions and the chunks'
//! position ranges stored at index time ([`ibex_indexer::chunk_terms`]), so a hit costs what its
//! query terms' occurrences cost, not what its length does; documents of indexes written before
//! those ranges were stored are analyzed instead, with the same scores.

use ibex_indexer::chunk_terms::ChunkPositions;
use ibex_indexer::{ChunkSpan, Index, StoredDocument, StoredHit};
use serde::Serialize;
use tantivy::postings::Postings;
use tantivy::schema::IndexRecordOption;
use tantivy::{DocAddress, DocSet, Term};

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

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

/// Character ranges, relative to the passage `range` of `text` (bytes), of the passage's words
/// whose analyzed form is one of `terms`. A word the passage's edge cuts in two is not one of its
/// words (BM25 does not count it in the chunk either), so it is never highlighted.
pub fn highlight_spans(
    text: &str,
    range: Range<usize>,
    terms: &BTreeMap<String, u32>,
) -> Vec<[usize; 2]> {
    let words = DocumentText(text.as_bytes());
    match words.get(range.clone()) {
        Some(passage) => passage_highlights(passage, words.cut_edges(range), terms),
        None => Vec::new(),
    }
}

/// [`highlight_spans`] of `passage`, whose first or last word its edges cut (`cut`: start, end).
fn passage_highlights(
    passage: &str,
    cut: (bool, bool),
    terms: &BTreeMap<String, u32>,
) -> Vec<[usize; 2]> {
    if terms.is_empty() {
        return Vec::new();
    }
    let mut byte_spans: Vec<(usize, usize)> = Vec::new();
    for_each_word(passage, |from, to, stem| {
        let edge = (from == 0 && cut.0) || (to == passage.len() && cut.1);
        if !edge && terms.contains_key(stem) {
            byte_spans.push((from, to));
        }
    });
    character_spans(passage, &byte_spans)
}

/// The highlights [`highlight_spans`] finds, found instead from the query terms' positions in
/// the document (`term_positions`, one sorted list per term) and the passage's chunk record:
/// only the passage's words are split (no lower-casing, stop words or stemming, which were
/// most of a search on long documents), and the words at the terms' positions are the ones
/// highlighted.
///
/// Positions number every word the tokenizer finds (the filters drop some without
/// renumbering), so once the first word the analyzer keeps is known to be at `chunk.first`,
/// the n-th word after it is at `chunk.first + n`.
fn highlights_from_positions(
    passage: &str,
    cut: (bool, bool),
    chunk: &ChunkPositions,
    term_positions: &[Vec<u32>],
) -> Vec<[usize; 2]> {
    let mut wanted: Vec<u32> = term_positions
        .iter()
        .flat_map(|positions| {
            let from = positions.partition_point(|&p| p < chunk.first);
            let to = positions.partition_point(|&p| p < chunk.end);
            positions[from..to.max(from)].iter().copied()
        })
        .collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    wanted.sort_unstable();
    wanted.dedup();
    let mut words = word_spans(passage);
    // A first word cut by the passage's edge is not one of its words.
    let first_word = match words.next() {
        Some((0, _)) if cut.0 => words.next(),
        first => first,
    };
    let Some((first_word, _)) = first_word else {
        return Vec::new();
    };
    // The first word the analyzer keeps (the words before it are stop words or over-long).
    let Some(kept) = STEMMER.with_borrow_mut(|s| {
        s.words
            .token_stream(&passage[first_word..])
            .next()
            .map(|token| token.position)
    }) else {
        return Vec::new();
    };
    if passage.is_ascii() {
        // The number of the first whole word among all the passage's words.
        let skipped = u64::from(first_word > 0 && cut.0);
        return ascii_highlights(passage, cut.1, skipped + kept as u64, chunk.first, &wanted);
    }
    // Walk the words up to the last one wanted, numbered from the first whole one.
    let mut byte_spans = Vec::with_capacity(wanted.len());
    let mut words = word_spans(&passage[first_word..]);
    let mut number = 0u64;
    for position in wanted {
        let target = kept as u64 + u64::from(position - chunk.first);
        let mut found = None;
        while number <= target {
            let Some(span) = words.next() else {
                break;
            };
            if number == target {
                found = Some(span);
            }
            number += 1;
        }
        match found {
            Some((from, to)) if !(cut.1 && first_word + to == passage.len()) => {
                byte_spans.push((first_word + from, first_word + to));
            }
            _ => {}
        }
    }
    // A damaged record may point past the passage's words: nothing is highlighted there.
    character_spans(passage, &byte_spans)
}

/// [`highlights_from_positions`] for an ASCII passage, whose characters are its bytes: the
/// words are found from bit masks (a bit per byte: alphanumeric, and the first of a word), 64
/// bytes at a time, so the word wanted is reached by popcounts instead of a walk that
/// mispredicts at every word edge (that walk was 19% of a qmsum-val search, `perf` of
/// `bm25_bench`). `offset` is the number, among all the passage's words, of the word at
/// position `first`; a last word cut by the passage's end (`cut_end`) is not highlighted.
fn ascii_highlights(
    passage: &str,
    cut_end: bool,
    offset: u64,
    first: u32,
    wanted: &[u32],
) -> Vec<[usize; 2]> {
    let bytes = passage.as_bytes();
    let alphanumeric: Vec<u64> = bytes
        .chunks(64)
        .map(|block| {
            block.iter().enumerate().fold(0u64, |bits, (i, b)| {
                bits | (u64::from(b.is_ascii_alphanumeric()) << i)
            })
        })
        .collect();
    let mut carry = 0u64;
    let starts: Vec<u64> = alphanumeric
        .iter()
        .map(|&bits| {
            let first_letters = bits & !((bits << 1) | carry);
            carry = bits >> 63;
            first_letters
        })
        .collect();
    let mut spans = Vec::with_capacity(wanted.len());
    // Word starts in the blocks before `block`.
    let (mut block, mut before) = (0usize, 0u64);
    for &position in wanted {
        let target = offset + u64::from(position - first);
        while let Some(count) = starts.get(block).map(|bits| u64::from(bits.count_ones())) {
            if before + count > target {
                break;
            }
            before += count;
            block += 1;
        }
        if block == starts.len() {
            // A damaged record may point past the passage's words.
            break;
        }
        let mut bits = starts[block];
        for _ in 0..target - before {
            bits &= bits - 1;
        }
        let from = block * 64 + bits.trailing_zeros() as usize;
        // The word ends at the first byte after `from` that is not alphanumeric.
        let mut end_block = block;
        let mut others = !alphanumeric[end_block] & (u64::MAX << (from % 64));
        while others == 0 && end_block + 1 < alphanumeric.len() {
            end_block += 1;
            others = !alphanumeric[end_block];
        }
        let to = if others == 0 {
            bytes.len()
        } else {
            (end_block * 64 + others.trailing_zeros() as usize).min(bytes.len())
        };
        if !(cut_end && to == bytes.len()) {
            spans.push([from, to]);
        }
    }
    spans
}

/// Byte ranges of the words of `text` as tantivy's `SimpleTokenizer` splits it: maximal runs
/// of alphanumeric characters.
fn word_spans(text: &str) -> WordSpans<'_> {
    WordSpans { text, at: 0 }
}

/// The iterator of [`word_spans`].
struct WordSpans<'a> {
    text: &'a str,
    /// Where the next word is looked for.
    at: usize,
}

impl WordSpans<'_> {
    /// Whether the character at byte `at` is alphanumeric, and its length: ASCII bytes are
    /// classified directly (most of a text), others decoded (a byte >= 0x80 lies inside a
    /// multi-byte character).
    #[inline]
    fn classify(&self, at: usize) -> (bool, usize) {
        let byte = self.text.as_bytes()[at];
        if byte < 0x80 {
            return (byte.is_ascii_alphanumeric(), 1);
        }
        match self.text.get(at..).and_then(|rest| rest.chars().next()) {
            Some(c) => (c.is_alphanumeric(), c.len_utf8()),
            None => (false, 1),
        }
    }
}

impl Iterator for WordSpans<'_> {
    type Item = (usize, usize);

    #[inline]
    fn next(&mut self) -> Option<(usize, usize)> {
        let bytes = self.text.as_bytes();
        let mut at = self.at;
        // To the next word, ASCII separators a byte at a time.
        loop {
            while at < bytes.len() && bytes[at] < 0x80 && !bytes[at].is_ascii_alphanumeric() {
                at += 1;
            }
            if at >= bytes.len() {
                self.at = at;
                return None;
            }
            let (word, len) = self.classify(at);
            if word {
                break;
            }
            at += len;
        }
        let from = at;
        loop {
            while at < bytes.len() && bytes[at].is_ascii_alphanumeric() {
                at += 1;
            }
            if at >= bytes.len() || bytes[at] < 0x80 {
                break;
            }
            let (word, len) = self.classify(at);
            if !word {
                break;
            }
            at += len;
        }
        self.at = at;
        Some((from, at))
    }
}

/// A document's text as passage scoring reads it: its bytes, checked to be UTF-8 only where
/// they are read. A search hit's passages come from stored byte ranges, so its whole text is
/// never checked: checking each hit's 10,000-word transcript was an eighth of a qmsum-val search.
#[derive(Debug, Clone, Copy)]
pub struct DocumentText<'a>(pub &'a [u8]);

impl<'a> DocumentText<'a> {
    /// The text in `range` (bytes), when that is a whole, valid stretch of UTF-8.
    pub fn get(&self, range: Range<usize>) -> Option<&'a str> {
        std::str::from_utf8(self.0.get(range)?).ok()
    }

    /// The whole text, when it is valid UTF-8.
    pub fn whole(&self) -> Option<&'a str> {
        std::str::from_utf8(self.0).ok()
    }

    /// Whether a passage over `range` cuts a word at its start, and at its end.
    fn cut_edges(&self, range: Range<usize>) -> (bool, bool) {
        (self.cuts_a_word(range.start), self.cuts_a_word(range.end))
    }

    /// Whether byte `at` falls inside a word (alphanumeric characters on both sides).
    fn cuts_a_word(&self, at: usize) -> bool {
        let before = self.char_before(at);
        let after = self.char_at(at);
        matches!((before, after), (Some(a), Some(b)) if a.is_alphanumeric() && b.is_alphanumeric())
    }

    /// The character ending at byte `at`.
    fn char_before(&self, at: usize) -> Option<char> {
        let start = (at.saturating_sub(4)..at).rev().find(|&i| {
            // The byte starting a character: not a continuation byte (0b10xx_xxxx).
            self.0.get(i).is_some_and(|b| b & 0xC0 != 0x80)
        })?;
        self.get(start..at)?.chars().next_back()
    }

    /// The character starting at byte `at`.
    fn char_at(&self, at: usize) -> Option<char> {
        let end = (at + 4).min(self.0.len());
        let window = self.0.get(at..end)?;
        let valid = match std::str::from_utf8(window) {
            Ok(text) => text,
            Err(error) => std::str::from_utf8(&window[..error.valid_up_to()]).ok()?,
        };
        valid.chars().next()
    }
}

/// Character offsets of byte ranges of `text` given in text order (counted incrementally).
fn character_spans(text: &str, byte_spans: &[(usize, usize)]) -> Vec<[usize; 2]> {
    let mut spans = Vec::with_capacity(byte_spans.len());
    let (mut byte, mut chars) = (0usize, 0usize);
    for &(from, to) in byte_spans {
        let (Some(gap), Some(word)) = (text.get(byte..from), text.get(from..to)) else {
            continue;
        };
        chars += gap.chars().count();
        let len = word.chars().count();
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

/// What passage scoring reads of a stored document: a whole [`StoredDocument`], or the
/// [`StoredHit`] a search reads (its text left in the document store's cache).
#[derive(Debug, Clone, Copy)]
pub struct DocumentParts<'a> {
    /// The document's text.
    pub text: DocumentText<'a>,
    /// Its chunks' character spans.
    pub chunks: &'a [ChunkSpan],
    /// Its chunks' BM25 position ranges (empty for documents of older indexes).
    pub chunk_positions: &'a [ChunkPositions],
    /// Key of its first chunk.
    pub chunk_base: u64,
}

impl<'a> From<&'a StoredDocument> for DocumentParts<'a> {
    fn from(doc: &'a StoredDocument) -> Self {
        DocumentParts {
            text: DocumentText(doc.text.as_bytes()),
            chunks: &doc.chunks,
            chunk_positions: &doc.chunk_positions,
            chunk_base: doc.chunk_base,
        }
    }
}

impl<'a> From<&'a StoredHit> for DocumentParts<'a> {
    fn from(hit: &'a StoredHit) -> Self {
        DocumentParts {
            text: DocumentText(hit.text.as_bytes()),
            chunks: &hit.chunks,
            chunk_positions: &hit.chunk_positions,
            chunk_base: hit.chunk_base,
        }
    }
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
    pub fn passages<'d>(
        &self,
        address: DocAddress,
        doc: impl Into<DocumentParts<'d>>,
    ) -> Result<Vec<Passage>> {
        Ok(self
            .passages_of_hits(&[(address, doc.into())])?
            .pop()
            .unwrap_or_default())
    }

    /// [`PassageScorer::passages`] of each of a search's hits, in order. The query terms'
    /// positions in all of them are read in one pass over each term's postings (hits in
    /// document order), rather than a lookup and a fresh postings reader per term and hit.
    pub fn passages_of_hits(
        &self,
        hits: &[(DocAddress, DocumentParts<'_>)],
    ) -> Result<Vec<Vec<Passage>>> {
        // Documents of older indexes, stored without chunk positions, are analyzed instead.
        let from_postings = |doc: &DocumentParts| {
            self.count > 0
                && !self.terms.is_empty()
                && !doc.chunks.is_empty()
                && doc.chunk_positions.len() == doc.chunks.len()
        };
        let addresses: Vec<DocAddress> = hits
            .iter()
            .filter(|(_, doc)| from_postings(doc))
            .map(|(address, _)| *address)
            .collect();
        let mut positions = self.term_positions(&addresses)?;
        hits.iter()
            .map(|&(address, doc)| {
                let term_positions = if from_postings(&doc) {
                    positions.remove(&address)
                } else {
                    None
                };
                self.passages_with(doc, term_positions)
            })
            .collect()
    }

    /// The best passages of `doc`, with the query terms' positions in it when they were read.
    fn passages_with(
        &self,
        doc: DocumentParts<'_>,
        term_positions: Option<Vec<Vec<u32>>>,
    ) -> Result<Vec<Passage>> {
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
        let lexical = self
            .lexical
            .then(|| self.lexical_chunk_scores(doc, term_positions.as_deref()));
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
        // The best `count` chunks, best first (selected, then sorted: a transcript has a hundred
        // chunks and a hit shows two).
        let better = |a: &usize, b: &usize| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b));
        let mut order: Vec<usize> = (0..scores.len()).collect();
        if self.count < order.len() {
            order.select_nth_unstable_by(self.count, better);
            order.truncate(self.count);
        }
        order.sort_by(better);
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
            byte_offsets(doc.text.whole().unwrap_or_default(), &characters)
        };
        Ok(order
            .into_iter()
            .zip(bytes.chunks_exact(2))
            .map(|(i, range)| {
                let span = doc.chunks[i];
                let range = range[0]..range[1];
                // A damaged record (or text) gives an empty passage, never a panic.
                let text = doc.text.get(range.clone()).unwrap_or_default();
                let cut = doc.text.cut_edges(range);
                let highlights = match &term_positions {
                    Some(positions) => {
                        highlights_from_positions(text, cut, &doc.chunk_positions[i], positions)
                    }
                    None => passage_highlights(text, cut, &self.highlight_terms),
                };
                Passage {
                    text: text.to_string(),
                    start: span.start,
                    end: span.end,
                    score: scores[i],
                    highlights,
                }
            })
            .collect())
    }

    /// BM25 (k1 = 1.2, b = 0.75) of each chunk of `doc` against the query terms, chunk lengths
    /// averaged over the document's chunks, so lexical results point at the chunks where the
    /// query's rare words occur. Term frequencies come from the query terms' positions in the
    /// postings (`term_positions`) and the chunks' stored position ranges; a document stored
    /// without them (an older index) is analyzed instead, which gives the same scores at a cost
    /// that follows its length.
    fn lexical_chunk_scores(
        &self,
        doc: DocumentParts<'_>,
        term_positions: Option<&[Vec<u32>]>,
    ) -> Vec<f32> {
        if self.terms.is_empty() {
            return vec![0.0; doc.chunks.len()];
        }
        let frequencies = match term_positions {
            Some(positions) => frequencies_from_positions(doc.chunk_positions, positions),
            None => frequencies_by_scanning(doc, &self.terms),
        };
        let lengths = &frequencies.lengths;
        let average = (lengths.iter().sum::<f32>() / lengths.len().max(1) as f32).max(1.0);
        frequencies
            .counts
            .chunks_exact(self.terms.len())
            .zip(lengths)
            .map(|(tf, &len)| {
                let saturation = 1.2 * (0.25 + 0.75 * len / average);
                self.idf
                    .iter()
                    .zip(tf)
                    .filter(|(_, &tf)| tf > 0)
                    .map(|(idf, &tf)| {
                        let tf = tf as f32;
                        idf * tf * 2.2 / (tf + saturation)
                    })
                    .sum()
            })
            .collect()
    }

    /// The positions of each query term (in `terms` order) in each document of `addresses`,
    /// from the lexical index's postings: one reader per term and segment, moved forward
    /// through the segment's documents in order.
    fn term_positions(
        &self,
        addresses: &[DocAddress],
    ) -> Result<HashMap<DocAddress, Vec<Vec<u32>>>> {
        let mut found: HashMap<DocAddress, Vec<Vec<u32>>> = addresses
            .iter()
            .map(|&address| (address, vec![Vec::new(); self.terms.len()]))
            .collect();
        let mut by_segment: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for address in addresses {
            by_segment
                .entry(address.segment_ord)
                .or_default()
                .push(address.doc_id);
        }
        let contents = self.index.fields().contents;
        let searcher = self.index.searcher();
        for (segment, mut docs) in by_segment {
            docs.sort_unstable();
            docs.dedup();
            let inverted = searcher.segment_reader(segment).inverted_index(contents)?;
            for (t, term) in self.terms.iter().enumerate() {
                let term = Term::from_field_text(contents, term);
                let postings = inverted
                    .read_postings(&term, IndexRecordOption::WithFreqsAndPositions)
                    .map_err(|source| SearchError::Io {
                        context: "reading the lexical index's positions".into(),
                        source,
                    })?;
                let Some(mut postings) = postings else {
                    continue;
                };
                for &doc in &docs {
                    // `seek` only moves forward, and a list starting past `doc` lacks it.
                    if postings.doc() > doc {
                        continue;
                    }
                    if postings.seek(doc) == doc {
                        if let Some(lists) = found.get_mut(&DocAddress::new(segment, doc)) {
                            postings.positions(&mut lists[t]);
                        }
                    }
                }
            }
        }
        Ok(found)
    }
}

/// Each chunk's length and query-term frequencies, counted from the positions of the query
/// terms in the document (one sorted list per term) and the chunks' position ranges.
///
/// Chunks come in text order (their first and end positions never decrease), so each term's
/// occurrences are counted in one merge of its positions with the chunks' ranges; a record that
/// breaks that order (from damage) is counted chunk by chunk by binary search instead. Counting
/// chunk by chunk, one small vector each, was a fifth of a qmsum-val search (about 80 chunks a
/// hit, and meeting words occur hundreds of times).
fn frequencies_from_positions(
    chunks: &[ChunkPositions],
    term_positions: &[Vec<u32>],
) -> ChunkFrequencies {
    let terms = term_positions.len();
    let mut counts = vec![0u32; chunks.len() * terms];
    let in_order = chunks
        .windows(2)
        .all(|w| w[0].first <= w[1].first && w[0].end <= w[1].end);
    for (term, positions) in term_positions.iter().enumerate() {
        let (mut from, mut to) = (0, 0);
        for (chunk, range) in chunks.iter().enumerate() {
            if in_order {
                while from < positions.len() && positions[from] < range.first {
                    from += 1;
                }
                to = to.max(from);
                while to < positions.len() && positions[to] < range.end {
                    to += 1;
                }
            } else {
                from = positions.partition_point(|&p| p < range.first);
                to = positions.partition_point(|&p| p < range.end).max(from);
            }
            counts[chunk * terms + term] = (to - from) as u32;
        }
    }
    ChunkFrequencies {
        lengths: chunks.iter().map(|c| c.tokens as f32).collect(),
        counts,
    }
}

/// Each chunk's length in tokens, and its frequency of each query term.
struct ChunkFrequencies {
    lengths: Vec<f32>,
    /// Chunk by chunk, the frequency of each term (in the query's term order).
    counts: Vec<u32>,
}

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

/// [`frequencies_from_positions`]'s answer found by analyzing the document's text
/// once; each chunk (chunks overlap) counts the tokens inside its range.
fn frequencies_by_scanning(doc: DocumentParts<'_>, terms: &[String]) -> ChunkFrequencies {
    let text = doc.text.whole().unwrap_or_default();
    let tokens = scan_terms(text, terms);
    let positions: Vec<usize> = doc.chunks.iter().flat_map(|s| [s.start, s.end]).collect();
    let bytes = byte_offsets(text, &positions);
    let mut lengths = Vec::with_capacity(doc.chunks.len());
    let mut counts = vec![0u32; doc.chunks.len() * terms.len()];
    for (range, chunk_counts) in bytes
        .chunks_exact(2)
        .zip(counts.chunks_exact_mut(terms.len().max(1)))
    {
        let (start, end) = (range[0], range[1]);
        let first = tokens.partition_point(|t| t.from < start);
        let mut length = 0u32;
        for token in tokens[first..].iter().take_while(|t| t.from < end) {
            if token.to <= end {
                length += 1;
                if let Some(term) = token.term {
                    chunk_counts[term as usize] += 1;
                }
            }
        }
        lengths.push(length as f32);
    }
    ChunkFrequencies { lengths, counts }
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
        let spans = highlight_spans(text, 0..text.len(), &terms);
        let words: Vec<String> = spans
            .iter()
            .map(|[s, e]| text.chars().skip(*s).take(e - s).collect())
            .collect();
        assert_eq!(words, ["engine", "jet", "Jets"]);
    }

    #[test]
    fn occurrences_count_in_every_chunk_that_holds_them() {
        let chunk = |first, end| ChunkPositions {
            first,
            end,
            tokens: end.saturating_sub(first),
            ..ChunkPositions::default()
        };
        // Overlapping chunks in text order, one without kept words, one at the document's end.
        let chunks = [
            chunk(0, 10),
            chunk(6, 16),
            chunk(12, 12),
            chunk(12, 22),
            chunk(18, 25),
            chunk(u32::MAX, u32::MAX),
        ];
        let terms = vec![vec![0, 5, 6, 11, 12, 21, 22, 24], vec![], vec![15, 16, 17]];
        let expected: Vec<Vec<u32>> = chunks
            .iter()
            .map(|c| {
                terms
                    .iter()
                    .map(|t| t.iter().filter(|&&p| c.first <= p && p < c.end).count() as u32)
                    .collect()
            })
            .collect();
        let flat = |rows: &[Vec<u32>]| rows.concat();
        assert_eq!(
            frequencies_from_positions(&chunks, &terms).counts,
            flat(&expected)
        );
        // Out of order (a damaged record): counted chunk by chunk, with the same answer.
        let mut shuffled = chunks.to_vec();
        shuffled.swap(0, 3);
        let mut reordered = expected.clone();
        reordered.swap(0, 3);
        assert_eq!(
            frequencies_from_positions(&shuffled, &terms).counts,
            flat(&reordered)
        );
    }

    #[test]
    fn words_split_as_tantivys_simple_tokenizer_splits_them() {
        use tantivy::tokenizer::{SimpleTokenizer, TokenStream, Tokenizer};
        let text = "Ärger: naïve 1,200°C x²-jets' engine—driven 𝄞 中文字 Ωmega_7 end";
        let mut tokenizer = SimpleTokenizer::default();
        let mut stream = tokenizer.token_stream(text);
        let mut expected = Vec::new();
        while stream.advance() {
            expected.push((stream.token().offset_from, stream.token().offset_to));
        }
        assert_eq!(word_spans(text).collect::<Vec<_>>(), expected);
        assert_eq!(word_spans("").count(), 0);
        assert_eq!(word_spans(" ,;").count(), 0);
    }

    #[test]
    fn document_text_reads_characters_at_any_boundary_and_refuses_broken_bytes() {
        let text = DocumentText("aé𝄞b c".as_bytes());
        // 'a' 0, 'é' 1..3, '𝄞' 3..7, 'b' 7, ' ' 8, 'c' 9
        assert_eq!(text.char_before(3), Some('é'));
        assert_eq!(text.char_at(3), Some('𝄞'));
        assert_eq!(text.char_before(7), Some('𝄞'));
        assert_eq!(text.char_at(9), Some('c'));
        assert_eq!(text.char_at(10), None);
        assert_eq!(text.char_before(0), None);
        // "𝄞" is a symbol, not a letter: no word runs across it.
        assert!(text.cuts_a_word(1) && !text.cuts_a_word(7) && !text.cuts_a_word(8));
        // Inside a character: no stretch of text there.
        assert_eq!(text.get(0..2), None);
        assert_eq!(text.get(1..7), Some("é𝄞"));
        let broken = DocumentText(&[b'a', 0xFF, b'b', b' ']);
        assert_eq!(broken.whole(), None);
        assert_eq!(broken.get(2..4), Some("b "));
        assert!(!broken.cuts_a_word(1) && !broken.cuts_a_word(2));
    }

    #[test]
    fn a_word_cut_by_the_passage_edge_is_not_highlighted() {
        let terms = analyze("jet engines");
        let text = "jet engines roar";
        // "et engines ": "jet" is cut at the start.
        assert_eq!(highlight_spans(text, 1..12, &terms), vec![[3, 10]]);
        // "jet en": "engines" is cut at the end.
        assert_eq!(highlight_spans(text, 0..6, &terms), vec![[0, 3]]);
        // A passage ending where a word ends cuts nothing.
        assert_eq!(highlight_spans(text, 4..11, &terms), vec![[0, 7]]);
    }

    #[test]
    fn ascii_words_found_by_masks_are_the_words_the_walk_finds() {
        let long_word = "x".repeat(130);
        let texts = [
            "jet engines roar".to_string(),
            "  leading, trailing.  ".to_string(),
            format!("a {long_word} b"),
            long_word.clone(),
            "9 r-2 d2 ... end".repeat(20),
            "word ".repeat(64),
            String::new(),
        ];
        for text in &texts {
            let walked: Vec<[usize; 2]> = word_spans(text).map(|(f, t)| [f, t]).collect();
            let numbers: Vec<u32> = (0..walked.len() as u32 + 3).collect();
            assert_eq!(
                ascii_highlights(text, false, 0, 0, &numbers),
                walked,
                "{text:?}"
            );
            // Numbered from the third word, every other one.
            let every_other: Vec<u32> = (10..10 + walked.len() as u32).step_by(2).collect();
            let expected: Vec<[usize; 2]> = walked.iter().skip(2).step_by(2).copied().collect();
            assert_eq!(
                ascii_highlights(text, false, 2, 10, &every_other),
                expected,
                "{text:?}"
            );
            // A last word cut by the end is left out.
            let cut = ascii_highlights(text, true, 0, 0, &numbers);
            let ends_in_word = walked.last().is_some_and(|w| w[1] == text.len());
            assert_eq!(
                cut.len() + usize::from(ends_in_word),
                walked.len(),
                "{text:?}"
            );
        }
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
        assert!(highlight_spans("the and of", 0..10, &analyze("the of")).is_empty());
    }
}
