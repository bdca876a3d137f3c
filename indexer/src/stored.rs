//! Reading stored documents: straight from the document store's bytes, without copying a
//! search hit's text.
//!
//! tantivy's own document type copies every stored value twice on the way in (into a value,
//! then into the document's arena; byte fields a byte at a time) and ibex copied the strings once
//! more out of it. For a search over long documents (qmsum-val's 10,000-word transcripts) reading
//! each hit's stored document that way was about a quarter of the search (`bench/bm25.sh`,
//! profiled), though a hit shows two passages of it. Here a document's bytes, as the store's
//! block cache holds them, are parsed where they lie ([`parse`]): a [`StoredHit`] keeps its text
//! as a view of the cached block, and a [`crate::StoredDocument`] copies each value once.
//! Documents holding a value of a type ibex never stores (or bytes [`parse`] does not accept)
//! are read through tantivy's deserializer instead ([`StoredFields::from_document`]).

use std::ops::Range;

use tantivy::directory::OwnedBytes;
use tantivy::schema::{Field, Value};
use tantivy::TantivyDocument;

use crate::chunk::ChunkSpan;
use crate::chunk_terms::{self, ChunkPositions};
use crate::schema::Fields;

/// One stored value, as far as ibex's schema needs to tell them apart.
pub(crate) enum StoredValue {
    Text(String),
    Bytes(Vec<u8>),
    Number(u64),
    /// A value of a type ibex's schema does not store.
    Other,
}

/// A stored document's values by field, first value of each field kept.
pub(crate) struct StoredFields(Vec<(Field, StoredValue)>);

impl StoredFields {
    /// The values of a document tantivy has already read.
    pub(crate) fn from_document(doc: &TantivyDocument) -> StoredFields {
        StoredFields(
            doc.field_values()
                .map(|(field, value)| {
                    let value = if let Some(text) = value.as_str() {
                        StoredValue::Text(text.to_string())
                    } else if let Some(bytes) = value.as_bytes() {
                        StoredValue::Bytes(bytes.to_vec())
                    } else if let Some(n) = value.as_u64() {
                        StoredValue::Number(n)
                    } else {
                        StoredValue::Other
                    };
                    (field, value)
                })
                .collect(),
        )
    }

    /// The first value of `field`, taken out (later calls for the same field find nothing).
    fn take(&mut self, field: Field) -> Option<StoredValue> {
        self.0
            .iter_mut()
            .find(|(f, _)| *f == field)
            .map(|(_, value)| std::mem::replace(value, StoredValue::Other))
    }

    /// The first text value of `field`, or empty.
    pub(crate) fn take_text(&mut self, field: Field) -> String {
        match self.take(field) {
            Some(StoredValue::Text(text)) => text,
            _ => String::new(),
        }
    }

    /// The first bytes value of `field`, or empty.
    pub(crate) fn take_bytes(&mut self, field: Field) -> Vec<u8> {
        match self.take(field) {
            Some(StoredValue::Bytes(bytes)) => bytes,
            _ => Vec::new(),
        }
    }

    /// The first number value of `field`, or 0.
    pub(crate) fn take_number(&mut self, field: Field) -> u64 {
        match self.take(field) {
            Some(StoredValue::Number(n)) => n,
            _ => 0,
        }
    }
}

/// One stored value as it lies in a document's bytes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RawValue {
    /// A text value's byte range (not yet checked to be UTF-8).
    Text(Range<usize>),
    /// A bytes value's byte range.
    Bytes(Range<usize>),
    Number(u64),
}

/// tantivy's type codes for the values ibex stores (`tantivy::schema::document::type_codes`).
const TEXT_CODE: u8 = 0;
const U64_CODE: u8 = 1;
const BYTES_CODE: u8 = 4;

/// The values of a stored document, parsed from its bytes in tantivy's binary document format
/// (tantivy 0.27: a VInt count, then for each value its field as a little-endian u32, a type
/// code, and the value: a VInt length and the bytes for text and bytes, eight little-endian
/// bytes for a u64). `None` for any other type code or a document cut short: the caller reads
/// it through tantivy. `tests::parsing_agrees_with_tantivys_deserializer` pins the format.
pub(crate) fn parse(bytes: &[u8]) -> Option<Vec<(Field, RawValue)>> {
    let mut at = 0usize;
    let count = read_vint(bytes, &mut at)?;
    let mut values = Vec::with_capacity(count.min(64) as usize);
    for _ in 0..count {
        let field = u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?);
        at += 4;
        let code = *bytes.get(at)?;
        at += 1;
        let value = match code {
            TEXT_CODE | BYTES_CODE => {
                let length = usize::try_from(read_vint(bytes, &mut at)?).ok()?;
                let range = at..at.checked_add(length)?;
                bytes.get(range.clone())?;
                at = range.end;
                if code == TEXT_CODE {
                    RawValue::Text(range)
                } else {
                    RawValue::Bytes(range)
                }
            }
            U64_CODE => {
                let number = u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?);
                at += 8;
                RawValue::Number(number)
            }
            _ => return None,
        };
        values.push((Field::from_field_id(field), value));
    }
    Some(values)
}

/// A variable-length integer as tantivy writes it: seven bits a byte, least significant first,
/// the last byte's high bit set.
fn read_vint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 != 0 {
            return Some(value);
        }
    }
    None
}

impl StoredFields {
    /// The values [`parse`] found in `bytes`, copied out (text checked to be UTF-8).
    pub(crate) fn from_raw(bytes: &[u8], values: Vec<(Field, RawValue)>) -> Option<StoredFields> {
        values
            .into_iter()
            .map(|(field, value)| {
                Some((
                    field,
                    match value {
                        RawValue::Text(range) => {
                            StoredValue::Text(std::str::from_utf8(&bytes[range]).ok()?.to_string())
                        }
                        RawValue::Bytes(range) => StoredValue::Bytes(bytes[range].to_vec()),
                        RawValue::Number(n) => StoredValue::Number(n),
                    },
                ))
            })
            .collect::<Option<Vec<_>>>()
            .map(StoredFields)
    }
}

/// A document's text left where the document store's cache holds it, as bytes: a reader checks
/// the stretch it reads to be UTF-8 (a search hit's passages are a small part of its text).
#[derive(Clone)]
pub struct StoredText {
    bytes: OwnedBytes,
}

impl StoredText {
    /// The text's bytes (UTF-8 unless the store is damaged).
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.as_slice()
    }

    /// The whole text, when it is valid UTF-8.
    pub fn to_str(&self) -> Option<&str> {
        std::str::from_utf8(self.bytes.as_slice()).ok()
    }
}

impl From<String> for StoredText {
    fn from(text: String) -> StoredText {
        StoredText {
            bytes: OwnedBytes::new(text.into_bytes()),
        }
    }
}

impl std::fmt::Debug for StoredText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoredText({} bytes)", self.bytes.len())
    }
}

/// What a search hit needs of its stored document: its title and metadata to show, its chunks
/// to score passages, and its text to slice them from, viewed in the store's cache rather than
/// copied (a hit of a 10,000-word transcript shows two passages of ~250 words).
#[derive(Debug, Clone)]
pub struct StoredHit {
    /// Its title (may be empty).
    pub title: String,
    /// Its metadata.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Spans of its chunks, in order; chunk `i` has key `chunk_base + i`.
    pub chunks: Vec<ChunkSpan>,
    /// Key of its first chunk.
    pub chunk_base: u64,
    /// Each chunk's BM25 position range (empty for documents of older indexes).
    pub chunk_positions: Vec<ChunkPositions>,
    /// Its text.
    pub text: StoredText,
}

impl StoredHit {
    /// The hit of a document whose bytes [`parse`] read, or `None` when a value is not what the
    /// schema stores (the caller then reads it the general way).
    pub(crate) fn from_raw(
        bytes: &OwnedBytes,
        values: &[(Field, RawValue)],
        fields: &Fields,
    ) -> Option<StoredHit> {
        let first = |field: Field| values.iter().find(|(f, _)| *f == field).map(|(_, v)| v);
        let text_of = |field: Field| -> Option<&str> {
            match first(field) {
                Some(RawValue::Text(range)) => std::str::from_utf8(&bytes[range.clone()]).ok(),
                Some(_) => None,
                None => Some(""),
            }
        };
        let bytes_of = |field: Field| -> Option<&[u8]> {
            match first(field) {
                Some(RawValue::Bytes(range)) => Some(&bytes[range.clone()]),
                Some(_) => None,
                None => Some(&[]),
            }
        };
        let text = match first(fields.text) {
            Some(RawValue::Text(range)) => StoredText {
                bytes: bytes.slice(range.clone()),
            },
            Some(_) => return None,
            None => StoredText::from(String::new()),
        };
        Some(StoredHit {
            title: text_of(fields.title)?.to_string(),
            metadata: serde_json::from_str(text_of(fields.metadata_json)?).unwrap_or_default(),
            chunks: decode_spans(bytes_of(fields.chunk_spans)?),
            chunk_base: match first(fields.chunk_base) {
                Some(RawValue::Number(n)) => *n,
                _ => 0,
            },
            chunk_positions: match fields.chunk_positions {
                Some(field) => chunk_terms::decode(bytes_of(field)?).unwrap_or_default(),
                None => Vec::new(),
            },
            text,
        })
    }
}

/// Chunk spans as stored: two little-endian u32 (start, end) per chunk.
pub(crate) fn decode_spans(bytes: &[u8]) -> Vec<ChunkSpan> {
    bytes
        .chunks_exact(8)
        .map(|c| ChunkSpan {
            start: u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize,
            end: u32::from_le_bytes([c[4], c[5], c[6], c[7]]) as usize,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document as tantivy 0.27 writes it: one text value (field 2) and one u64 (field 5).
    fn two_values() -> Vec<u8> {
        let mut bytes = vec![0x82]; // two values
        bytes.extend_from_slice(&2u32.to_le_bytes());
        bytes.push(TEXT_CODE);
        bytes.push(0x80 | 3); // length 3
        bytes.extend_from_slice(b"abc");
        bytes.extend_from_slice(&5u32.to_le_bytes());
        bytes.push(U64_CODE);
        bytes.extend_from_slice(&300u64.to_le_bytes());
        bytes
    }

    #[test]
    fn values_are_read_where_they_lie() {
        let bytes = two_values();
        assert_eq!(
            parse(&bytes),
            Some(vec![
                (Field::from_field_id(2), RawValue::Text(7..10)),
                (Field::from_field_id(5), RawValue::Number(300)),
            ])
        );
    }

    #[test]
    fn a_cut_document_or_an_unknown_type_is_left_to_tantivy() {
        let bytes = two_values();
        for end in 0..bytes.len() {
            assert_eq!(parse(&bytes[..end]), None, "cut at {end}");
        }
        let mut other = bytes.clone();
        other[5] = 2; // i64
        assert_eq!(parse(&other), None);
    }

    #[test]
    fn long_lengths_read_as_tantivy_writes_them() {
        // 300 = 0b10_0101100: low seven bits first, the last byte marked.
        let mut at = 0;
        assert_eq!(read_vint(&[0b0010_1100, 0x80 | 0b10], &mut at), Some(300));
        assert_eq!(at, 2);
        assert_eq!(read_vint(&[0x7f; 12], &mut 0), None);
    }
}
