//! Where each chunk lies among the BM25 field's token positions, recorded at index time.
//!
//! A search returns each hit's best passages: its chunks scored by BM25 against the query. The
//! terms' frequencies in a chunk could come from re-analyzing the document at query time, but then
//! a hit's cost follows the document's length (a 10,000-word meeting transcript took ~1 ms per hit
//! to tokenize and stem, `bench/bm25.sh`, qmsum-val). The lexical index already holds each term's
//! positions in each document; with each chunk's range of positions and its token count stored
//! beside its character span, a chunk's term frequencies are a count of positions in a range, and
//! the cost follows the query terms' occurrences instead.
//!
//! Positions are those tantivy gives the analyzed `contents` value (`title + "\n" + text`): the
//! tokenizer numbers every word and the filters (stop words, over-long words) drop some without
//! renumbering, so the words a chunk keeps are exactly the positions in its range.

use tantivy::tokenizer::TextAnalyzer;

use crate::schema::english_analyzer;

/// A chunk's place in the analyzed `contents` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChunkPositions {
    /// Position of the chunk's first kept token (or where it would be, for a chunk with none).
    pub first: u32,
    /// One past the position of its last kept token.
    pub end: u32,
    /// Tokens the analyzer keeps inside the chunk: its length as BM25 counts it.
    pub tokens: u32,
    /// Byte offset of the chunk in the document text (its span is in characters), so a
    /// passage is sliced without walking the text up to it.
    pub byte_start: u32,
    /// One past its last byte.
    pub byte_end: u32,
}

/// Bytes one chunk's record takes in the stored field.
const RECORD_BYTES: usize = 20;

/// The `contents` value BM25 indexes for a document: its title and text, on separate lines so no
/// word of one runs into the other.
pub fn contents_text(title: &str, text: &str) -> String {
    format!("{title}\n{text}")
}

/// The positions of each chunk of `text` (character spans `spans`, as chunking gives them) in the
/// analyzed [`contents_text`]. A chunk holds the tokens that start and end inside its span, as the
/// query-time scan counts them.
pub fn chunk_positions(title: &str, text: &str, spans: &[(usize, usize)]) -> Vec<ChunkPositions> {
    let contents = contents_text(title, text);
    let text_start = contents.len() - text.len();
    let mut analyzer: TextAnalyzer = english_analyzer();
    let mut tokens: Vec<(usize, usize, u32)> = Vec::new();
    let mut stream = analyzer.token_stream(&contents);
    while let Some(token) = stream.next() {
        if token.offset_from >= text_start {
            tokens.push((
                token.offset_from - text_start,
                token.offset_to - text_start,
                token.position as u32,
            ));
        }
    }
    let byte_spans = char_spans_to_bytes(text, spans);
    byte_spans
        .iter()
        .map(|&(start, end)| {
            let (byte_start, byte_end) = (start as u32, end as u32);
            let first = tokens.partition_point(|t| t.0 < start);
            let inside: Vec<&(usize, usize, u32)> = tokens[first..]
                .iter()
                .take_while(|t| t.0 < end)
                .filter(|t| t.1 <= end)
                .collect();
            match (inside.first(), inside.last()) {
                (Some(a), Some(b)) => ChunkPositions {
                    first: a.2,
                    end: b.2 + 1,
                    tokens: inside.len() as u32,
                    byte_start,
                    byte_end,
                },
                _ => {
                    let at = tokens.get(first).map_or(u32::MAX, |t| t.2);
                    ChunkPositions {
                        first: at,
                        end: at,
                        tokens: 0,
                        byte_start,
                        byte_end,
                    }
                }
            }
        })
        .collect()
}

/// Byte ranges of the character ranges `spans` of `text` (clamped to its end).
fn char_spans_to_bytes(text: &str, spans: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let boundaries: Vec<usize> = text
        .char_indices()
        .map(|(byte, _)| byte)
        .chain(std::iter::once(text.len()))
        .collect();
    let byte = |chars: usize| boundaries[chars.min(boundaries.len() - 1)];
    spans.iter().map(|&(s, e)| (byte(s), byte(e))).collect()
}

/// The stored form: five little-endian u32 per chunk.
pub fn encode(positions: &[ChunkPositions]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(positions.len() * RECORD_BYTES);
    for p in positions {
        bytes.extend_from_slice(&p.first.to_le_bytes());
        bytes.extend_from_slice(&p.end.to_le_bytes());
        bytes.extend_from_slice(&p.tokens.to_le_bytes());
        bytes.extend_from_slice(&p.byte_start.to_le_bytes());
        bytes.extend_from_slice(&p.byte_end.to_le_bytes());
    }
    bytes
}

/// Reads [`encode`]'s form back. `None` when the length is not a whole number of records (a
/// damaged field: the caller falls back on analyzing the text).
pub fn decode(bytes: &[u8]) -> Option<Vec<ChunkPositions>> {
    if !bytes.len().is_multiple_of(RECORD_BYTES) {
        return None;
    }
    let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    Some(
        bytes
            .chunks_exact(RECORD_BYTES)
            .map(|r| ChunkPositions {
                first: word(&r[0..4]),
                end: word(&r[4..8]),
                tokens: word(&r[8..12]),
                byte_start: word(&r[12..16]),
                byte_end: word(&r[16..20]),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_positions_of_their_kept_words() {
        // Title "Jet Engines": positions 0, 1; the text starts at 2. "the" and "of" are stop words
        // (positions kept as gaps).
        let text = "the engine of a jet. Jets fly";
        // Characters: "the engine of a jet." = 0..20, " Jets fly" = 20..29.
        let spans = [(0, 20), (13, 29), (4, 8), (29, 29)];
        let positions = chunk_positions("Jet Engines", text, &spans);
        assert_eq!(
            positions[0],
            ChunkPositions {
                first: 3,
                end: 7,
                tokens: 2,
                byte_start: 0,
                byte_end: 20,
            }
        );
        assert_eq!(
            positions[1],
            ChunkPositions {
                first: 6,
                end: 9,
                tokens: 3,
                byte_start: 13,
                byte_end: 29,
            }
        );
        // A span cutting "engine" in half holds no whole token.
        assert_eq!(positions[2].tokens, 0);
        assert_eq!(positions[2].first, positions[2].end);
        assert_eq!(positions[3].tokens, 0);
    }

    #[test]
    fn character_spans_become_byte_ranges() {
        assert_eq!(
            char_spans_to_bytes("héllo wörld", &[(0, 5), (6, 11), (9, 99)]),
            vec![(0, 6), (7, 13), (11, 13)]
        );
    }

    #[test]
    fn the_stored_form_round_trips_and_rejects_torn_records() {
        let positions = vec![
            ChunkPositions {
                first: 1,
                end: 9,
                tokens: 5,
                byte_start: 3,
                byte_end: 70,
            },
            ChunkPositions {
                first: u32::MAX,
                end: u32::MAX,
                tokens: 0,
                byte_start: 70,
                byte_end: 70,
            },
        ];
        assert_eq!(decode(&encode(&positions)), Some(positions));
        assert_eq!(decode(&[0; 21]), None);
    }
}
