//! How metadata is indexed for filtering: the terms each document's metadata gives, and the
//! encodings a filter uses to find them.
//!
//! Every value keeps its JSON type. All terms live in the one raw (untokenized) `meta` field:
//!
//! - `key=value` for every string, number and boolean, compared as text: the equality terms of
//!   format 1, so `year=2020` written on a command line matches the number 2020.
//! - `\0n` key `\0` 16 hex digits for every number: the number's bits in an order-preserving
//!   encoding ([`sortable_number`]), so a range of numbers is a range of terms.
//! - `\0d` key `\0` 16 hex digits for every string that is an RFC 3339 date (`2024-05-01`) or
//!   timestamp (`2024-05-01T12:00:00Z`, any offset): microseconds since 1970 UTC, encoded the
//!   same way, so date ranges are term ranges too.
//! - `\0e` key for every key that holds at least one value (null holds none).
//!
//! Nested keys are joined with dots (`author.name`); each element of an array gives its own
//! terms, so a list-valued field matches when any element does. The typed terms begin with NUL,
//! which no equality term does: a NUL inside a key is indexed (and looked up) as U+FFFD, so keys
//! cannot forge a typed term.
//!
//! A range query over a tantivy term dictionary visits only the terms in range (tantivy's
//! `InvertedIndexRangeWeight`), which is why ibex encodes values into terms rather than adding a
//! JSON fast field: one field, no schema change, and the same query drives the BM25 filter and
//! the dense retriever's allowed set.

use std::ops::Bound;

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime};

/// Length of an encoded number or date in a typed term (16 hex digits).
const ENCODED_LEN: usize = 16;

/// The key as it appears inside terms: a NUL (which would let a key imitate a typed term's
/// prefix) becomes U+FFFD.
fn term_key(key: &str) -> std::borrow::Cow<'_, str> {
    if key.contains('\0') {
        std::borrow::Cow::Owned(key.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(key)
    }
}

/// The equality term of `key` holding a value whose text is `text`.
pub fn equality_term(key: &str, text: &str) -> String {
    format!("{}={text}", term_key(key))
}

/// The text a scalar compares as in equality terms (strings as themselves, numbers and booleans
/// as JSON writes them); `None` for null, arrays and objects.
pub fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(value.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// The term saying that `key` holds at least one value.
pub fn exists_term(key: &str) -> String {
    format!("\0e{}", term_key(key))
}

/// A totally ordered value: what range conditions compare.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OrderedValue {
    /// A JSON number.
    Number(f64),
    /// An RFC 3339 date or timestamp, in microseconds since 1970-01-01T00:00:00Z.
    Date(i64),
}

impl OrderedValue {
    fn tag(self) -> char {
        match self {
            OrderedValue::Number(_) => 'n',
            OrderedValue::Date(_) => 'd',
        }
    }

    fn encoded(self) -> u64 {
        match self {
            OrderedValue::Number(x) => sortable_number(x),
            // Flipping the sign bit maps i64 order onto u64 order.
            OrderedValue::Date(micros) => (micros as u64) ^ (1 << 63),
        }
    }

    /// The typed term of `key` holding this value.
    pub fn term(self, key: &str) -> String {
        format!(
            "\0{}{}\0{:0width$x}",
            self.tag(),
            term_key(key),
            self.encoded(),
            width = ENCODED_LEN
        )
    }

    /// The same kind of value's term range for `key` between `lower` and `upper`: every typed
    /// term of `key` of this kind, and only those, when both are unbounded.
    pub fn term_range(
        key: &str,
        kind: OrderedKind,
        lower: Bound<OrderedValue>,
        upper: Bound<OrderedValue>,
    ) -> (Bound<String>, Bound<String>) {
        let tag = match kind {
            OrderedKind::Number => 'n',
            OrderedKind::Date => 'd',
        };
        let key = term_key(key);
        // `\0{tag}{key}\0` sorts before every term of the key (it is their prefix) and
        // `\0{tag}{key}\x01` after all of them (their next byte is the NUL).
        let lower = match lower {
            Bound::Included(v) => Bound::Included(v.term(&key)),
            Bound::Excluded(v) => Bound::Excluded(v.term(&key)),
            Bound::Unbounded => Bound::Included(format!("\0{tag}{key}\0")),
        };
        let upper = match upper {
            Bound::Included(v) => Bound::Included(v.term(&key)),
            Bound::Excluded(v) => Bound::Excluded(v.term(&key)),
            Bound::Unbounded => Bound::Excluded(format!("\0{tag}{key}\x01")),
        };
        (lower, upper)
    }

    /// Which kind of value this is.
    pub fn kind(self) -> OrderedKind {
        match self {
            OrderedValue::Number(_) => OrderedKind::Number,
            OrderedValue::Date(_) => OrderedKind::Date,
        }
    }
}

/// The two kinds of ordered values; a range compares values of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderedKind {
    /// Numbers.
    Number,
    /// Dates and timestamps.
    Date,
}

/// `x`'s bits mapped so that unsigned order is numeric order (negative numbers have every bit
/// flipped, others only the sign bit); -0.0 is taken as 0.0 so that the two compare equal.
pub fn sortable_number(x: f64) -> u64 {
    let x = if x == 0.0 { 0.0 } else { x };
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// The instant an RFC 3339 timestamp (`2024-05-01T12:00:00Z`, `...+02:00`, fractional seconds)
/// or full date (`2024-05-01`, taken as midnight UTC) names, in microseconds since 1970 UTC.
/// `None` for any other text.
pub fn parse_date(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.len() == 10 {
        let (year, rest) = text.split_once('-')?;
        let (month, day) = rest.split_once('-')?;
        if year.len() != 4 || month.len() != 2 || day.len() != 2 {
            return None;
        }
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if !(all_digits(year) && all_digits(month) && all_digits(day)) {
            return None;
        }
        let month = Month::try_from(month.parse::<u8>().ok()?).ok()?;
        let date = Date::from_calendar_date(year.parse().ok()?, month, day.parse().ok()?).ok()?;
        let seconds = date.midnight().assume_utc().unix_timestamp();
        return Some(seconds * 1_000_000);
    }
    // A timestamp needs a date, a `T` and a time; `time`'s RFC 3339 parser checks the rest.
    if text.len() < 20 {
        return None;
    }
    let instant = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(instant.unix_timestamp_nanos() / 1000).ok()
}

/// The ordered value a scalar metadata value is indexed under, if any: numbers as numbers,
/// strings that are RFC 3339 dates as dates.
pub fn ordered_value(value: &Value) -> Option<OrderedValue> {
    match value {
        Value::Number(n) => n.as_f64().map(OrderedValue::Number),
        Value::String(s) => parse_date(s).map(OrderedValue::Date),
        _ => None,
    }
}

/// Every filter term of a document's metadata (see the module documentation).
pub fn metadata_terms(metadata: &Map<String, Value>) -> Vec<String> {
    /// Adds the terms of `value` under `key`; whether it held any value.
    fn walk(key: &str, value: &Value, out: &mut Vec<String>) -> bool {
        let held = match value {
            Value::Null => false,
            Value::Array(items) => {
                let mut any = false;
                for item in items {
                    any |= walk(key, item, out);
                }
                any
            }
            Value::Object(map) => {
                let mut any = false;
                for (child, item) in map {
                    any |= walk(&format!("{key}.{child}"), item, out);
                }
                any
            }
            scalar => {
                if let Some(text) = scalar_text(scalar) {
                    out.push(equality_term(key, &text));
                }
                if let Some(ordered) = ordered_value(scalar) {
                    out.push(ordered.term(key));
                }
                true
            }
        };
        // An array's elements already said that the key holds a value.
        if held && !matches!(value, Value::Array(_)) {
            out.push(exists_term(key));
        }
        held
    }
    let mut out = Vec::new();
    for (key, value) in metadata {
        walk(key, value, &mut out);
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_encoding_keeps_numeric_order() {
        let values = [
            f64::NEG_INFINITY,
            -1e300,
            -2.5,
            -1.0,
            -f64::MIN_POSITIVE,
            0.0,
            f64::MIN_POSITIVE,
            1.0,
            2.0,
            2020.0,
            2020.5,
            1e300,
            f64::INFINITY,
        ];
        for pair in values.windows(2) {
            assert!(
                sortable_number(pair[0]) < sortable_number(pair[1]),
                "{pair:?}"
            );
        }
        assert_eq!(sortable_number(-0.0), sortable_number(0.0));
    }

    #[test]
    fn dates_parse_as_rfc_3339_and_nothing_else() {
        assert_eq!(parse_date("1970-01-02"), Some(86_400_000_000));
        assert_eq!(parse_date("1970-01-01T00:00:01Z"), Some(1_000_000));
        assert_eq!(parse_date("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_date("1970-01-01T00:00:00.5Z"), Some(500_000));
        assert_eq!(parse_date("1969-12-31"), Some(-86_400_000_000));
        for text in [
            "2024",
            "2024-13-01",
            "2024-02-30",
            "soon",
            "2024-1-01",
            "20240101",
        ] {
            assert_eq!(parse_date(text), None, "{text}");
        }
    }

    #[test]
    fn metadata_gives_equality_typed_and_exists_terms() {
        let metadata: Map<String, Value> = serde_json::from_str(
            r#"{"year": 2020, "lang": ["en", "de"], "when": "2024-05-01",
                "author": {"name": "Ada", "age": null}, "none": null, "flag": true}"#,
        )
        .unwrap();
        let terms = metadata_terms(&metadata);
        for expected in [
            "year=2020".to_string(),
            OrderedValue::Number(2020.0).term("year"),
            exists_term("year"),
            "lang=en".into(),
            "lang=de".into(),
            exists_term("lang"),
            "when=2024-05-01".into(),
            OrderedValue::Date(parse_date("2024-05-01").unwrap()).term("when"),
            "author.name=Ada".into(),
            exists_term("author.name"),
            exists_term("author"),
            "flag=true".into(),
        ] {
            assert!(
                terms.contains(&expected),
                "{expected:?} missing from {terms:?}"
            );
        }
        assert!(!terms.contains(&exists_term("none")));
        assert!(!terms.contains(&exists_term("author.age")));
    }

    #[test]
    fn a_key_holding_nul_cannot_forge_a_typed_term() {
        let mut metadata = Map::new();
        metadata.insert("\0nyear\0".into(), Value::from("x"));
        let terms = metadata_terms(&metadata);
        assert!(terms.iter().all(|t| !t.starts_with("\0n")), "{terms:?}");
    }

    #[test]
    fn a_range_of_terms_holds_exactly_the_values_in_range() {
        let key = "year";
        let (lower, upper) = OrderedValue::term_range(
            key,
            OrderedKind::Number,
            Bound::Included(OrderedValue::Number(2020.0)),
            Bound::Excluded(OrderedValue::Number(2024.0)),
        );
        let inside = |term: &String| {
            (match &lower {
                Bound::Included(l) => term >= l,
                Bound::Excluded(l) => term > l,
                Bound::Unbounded => true,
            }) && (match &upper {
                Bound::Included(u) => term <= u,
                Bound::Excluded(u) => term < u,
                Bound::Unbounded => true,
            })
        };
        for (year, expected) in [
            (2019.9, false),
            (2020.0, true),
            (2023.99, true),
            (2024.0, false),
        ] {
            assert_eq!(
                inside(&OrderedValue::Number(year).term(key)),
                expected,
                "{year}"
            );
        }
        assert!(!inside(&OrderedValue::Number(2021.0).term("years")));
        let (lower, upper) =
            OrderedValue::term_range(key, OrderedKind::Number, Bound::Unbounded, Bound::Unbounded);
        let all = |term: &String| match (&lower, &upper) {
            (Bound::Included(l), Bound::Excluded(u)) => term >= l && term < u,
            _ => unreachable!(),
        };
        assert!(all(&OrderedValue::Number(f64::INFINITY).term(key)));
        assert!(all(&OrderedValue::Number(f64::NEG_INFINITY).term(key)));
        assert!(!all(&OrderedValue::Date(0).term(key)));
        assert!(!all(&OrderedValue::Number(1.0).term("yea")));
    }
}
