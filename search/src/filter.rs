//! Metadata filters: the operator syntax RAG frameworks translate to (Pinecone's, Chroma's and
//! LangChain's query constructors use it), a compact command-line form, and the tantivy query
//! that applies a filter inside both retrievers.
//!
//! ```json
//! {"lang": "en", "year": {"$gte": 2020, "$lt": 2024},
//!  "$or": [{"source": {"$in": ["wiki", "arxiv"]}}, {"published": {"$gte": "2024-01-01"}}]}
//! ```
//!
//! Semantics (the brute-force reference in `tests/filters.rs` states them as code):
//! - Keys are metadata fields, nested keys joined by dots (`author.name`). A list-valued field
//!   matches a condition when any element does (for `$ne` and `$nin`: when no element matches
//!   the value). A null value counts as absent.
//! - `$eq` (or a bare value): a string equals a value with the same text, and a date string also
//!   a date or timestamp naming the same instant; a number equals a number of the same value or
//!   a string of the same text; booleans compare as `true`/`false`. (Text comparison keeps format
//!   1's behaviour: `year=2020` on the command line matches the number 2020.)
//! - `$ne`, `$nin`: documents without the field match (as in MongoDB).
//! - `$gt`, `$gte`, `$lt`, `$lte`: numbers compare with numbers, RFC 3339 dates and timestamps
//!   with dates and timestamps (by instant); a value of the other kind never matches. A bound
//!   that is neither a number nor a date is an error naming the field, never an empty result.
//! - `$in`, `$nin`: any of / none of the listed values, each compared as `$eq` does.
//! - `$exists`: whether the field holds any non-null value.
//! - `$and`, `$or` (non-empty lists of filters), `$not` (a filter, or a field's conditions).
//!   Several keys in one object must all hold.
//!
//! Every condition becomes terms of the index's `meta` field (see
//! [`ibex_indexer::metadata`]): no condition is checked after retrieval, so a filtered search
//! returns as many hits as match, up to `top_k`.

use std::ops::Bound;

use ibex_indexer::metadata::{equality_term, exists_term, parse_date, OrderedKind, OrderedValue};
use ibex_indexer::Fields;
use serde_json::{Map, Value};
use tantivy::query::{
    AllQuery, BooleanQuery, ConstScoreQuery, EmptyQuery, Occur, Query, RangeQuery, TermQuery,
};
use tantivy::schema::IndexRecordOption;
use tantivy::Term;

use crate::error::{Result, SearchError};

/// Most nested levels of `$and`/`$or`/`$not` a filter may have.
pub const MAX_FILTER_DEPTH: usize = 16;
/// Most values (conditions and list elements together) one search's filters may hold: each is
/// a term lookup, so the bound is a bound on work.
pub const MAX_FILTER_VALUES: usize = 10_000;

/// A condition on documents' metadata.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Every filter holds (`$and`, or several keys in one object).
    And(Vec<Filter>),
    /// At least one filter holds (`$or`).
    Or(Vec<Filter>),
    /// The filter does not hold (`$not`).
    Not(Box<Filter>),
    /// A condition on one field.
    Field {
        /// The metadata key, nested keys joined by dots.
        key: String,
        /// What its value must satisfy.
        condition: Condition,
    },
}

/// What a field's value must satisfy.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Some value equals this one (`$eq`).
    Equals(Scalar),
    /// No value equals this one (`$ne`; documents without the field match).
    NotEquals(Scalar),
    /// Some value equals one of these (`$in`).
    In(Vec<Scalar>),
    /// No value equals any of these (`$nin`; documents without the field match).
    NotIn(Vec<Scalar>),
    /// Some value of `kind` lies between the bounds (`$gt`, `$gte`, `$lt`, `$lte`).
    Range {
        /// Whether numbers or dates are compared.
        kind: OrderedKind,
        /// The lower bound.
        lower: Bound<OrderedValue>,
        /// The upper bound.
        upper: Bound<OrderedValue>,
    },
    /// The field holds a non-null value (`true`) or does not (`false`).
    Exists(bool),
}

/// A value an equality compares with: its text, and the number or instant it also names.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    /// The text it equals (strings as themselves, numbers and booleans as JSON writes them).
    pub text: String,
    /// The number it equals, for a JSON number (or command-line text that is one).
    pub number: Option<f64>,
    /// The instant it equals, for an RFC 3339 date or timestamp.
    pub date: Option<i64>,
}

impl Scalar {
    /// A scalar from JSON: strings are text (and dates when they are RFC 3339), numbers are
    /// numbers, booleans compare as text. `None` for null, lists and objects.
    pub fn from_json(value: &Value) -> Option<Scalar> {
        match value {
            Value::String(s) => Some(Scalar {
                text: s.clone(),
                number: None,
                date: parse_date(s),
            }),
            Value::Number(n) => Some(Scalar {
                text: value.to_string(),
                number: n.as_f64(),
                date: None,
            }),
            Value::Bool(b) => Some(Scalar {
                text: b.to_string(),
                number: None,
                date: None,
            }),
            Value::Null | Value::Array(_) | Value::Object(_) => None,
        }
    }

    /// A scalar typed on the command line, where nothing says its type: its text, the number
    /// it spells (if finite) and the date it names (if any).
    pub fn from_text(text: &str) -> Scalar {
        Scalar {
            text: text.to_string(),
            number: text.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
            date: parse_date(text),
        }
    }
}

impl Filter {
    /// The filter a JSON object states (the REST API's and the Python package's syntax; see the
    /// module documentation). Errors name the field and say what was wrong.
    pub fn from_json(value: &Value) -> Result<Filter> {
        let mut budget = MAX_FILTER_VALUES;
        match value {
            Value::Object(object) => parse_object(object, 0, &mut budget),
            other => Err(invalid(format!(
                "a filter is a JSON object such as {{\"lang\": \"en\"}}, not {}",
                shown(other)
            ))),
        }
    }

    /// One `--filter` of the command line: `key=value`, `key!=value`, `key>=value` (also `>`,
    /// `<=`, `<`), `key in (a,b)`, `key not in (a,b)`, `key exists`, `key not exists`. Values
    /// are untyped text: equality also matches the number or date the text names; range bounds
    /// must be numbers or RFC 3339 dates.
    pub fn parse_cli(text: &str) -> Result<Filter> {
        let usage = || {
            invalid(format!(
                "{text:?} is not a filter: use key=value, key!=value, key>=value (or >, <=, <), \
                 'key in (a,b)', 'key not in (a,b)', 'key exists' or 'key not exists'"
            ))
        };
        let trimmed = text.trim();
        // The word forms apply only when what precedes the word holds no operator: in
        // `note=it exists` the value is "it exists".
        let plain_key = |key: &str| !key.contains(['=', '!', '<', '>']);
        for (suffix, exists) in [(" not exists", false), (" exists", true)] {
            if let Some(key) = trimmed.strip_suffix(suffix).filter(|k| plain_key(k)) {
                return Ok(field(checked_key(key.trim())?, Condition::Exists(exists)));
            }
        }
        for (separator, negated) in [(" not in ", true), (" in ", false)] {
            if let Some((key, list)) = trimmed
                .split_once(separator)
                .filter(|(key, _)| plain_key(key))
            {
                let list = list.trim();
                let Some(items) = list.strip_prefix('(').and_then(|l| l.strip_suffix(')')) else {
                    return Err(usage());
                };
                let values: Vec<Scalar> = if items.trim().is_empty() {
                    Vec::new()
                } else {
                    items
                        .split(',')
                        .map(|v| Scalar::from_text(v.trim()))
                        .collect()
                };
                let condition = if negated {
                    Condition::NotIn(values)
                } else {
                    Condition::In(values)
                };
                return Ok(field(checked_key(key.trim())?, condition));
            }
        }
        // The first operator character ends the key; what follows the operator is the value
        // (which may itself hold `=` or `<`).
        let at = trimmed.find(['=', '!', '<', '>']).ok_or_else(usage)?;
        let key = checked_key(trimmed[..at].trim())?;
        let rest = &trimmed[at..];
        let (operator, value) = ["!=", ">=", "<=", "=", ">", "<"]
            .iter()
            .find_map(|op| rest.strip_prefix(op).map(|v| (*op, v)))
            .ok_or_else(usage)?;
        let condition = match operator {
            "=" => Condition::Equals(Scalar::from_text(value)),
            "!=" => Condition::NotEquals(Scalar::from_text(value)),
            _ => {
                let bound = ordered_from_text(&key, operator, value.trim())?;
                let (lower, upper) = match operator {
                    ">" => (Bound::Excluded(bound), Bound::Unbounded),
                    ">=" => (Bound::Included(bound), Bound::Unbounded),
                    "<" => (Bound::Unbounded, Bound::Excluded(bound)),
                    _ => (Bound::Unbounded, Bound::Included(bound)),
                };
                Condition::Range {
                    kind: bound.kind(),
                    lower,
                    upper,
                }
            }
        };
        Ok(field(key, condition))
    }

    /// The tantivy query matching exactly the documents that pass this filter.
    pub fn to_query(&self, fields: &Fields) -> Box<dyn Query> {
        match self {
            // No condition: every document (an empty BooleanQuery would match none).
            Filter::And(filters) if filters.is_empty() => Box::new(AllQuery),
            Filter::And(filters) => Box::new(BooleanQuery::new(
                filters
                    .iter()
                    .map(|f| (Occur::Must, f.to_query(fields)))
                    .collect(),
            )),
            Filter::Or(filters) => any_of(filters.iter().map(|f| f.to_query(fields)).collect()),
            Filter::Not(filter) => none_of(filter.to_query(fields)),
            Filter::Field { key, condition } => condition_query(fields, key, condition),
        }
    }
}

impl std::str::FromStr for Filter {
    type Err = SearchError;
    /// [`Filter::parse_cli`].
    fn from_str(text: &str) -> Result<Filter> {
        Filter::parse_cli(text)
    }
}

fn field(key: String, condition: Condition) -> Filter {
    Filter::Field { key, condition }
}

fn invalid(message: String) -> SearchError {
    SearchError::InvalidFilter(message)
}

/// A JSON value as an error message shows it: short.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 {
        format!("{}...", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}

fn checked_key(key: &str) -> Result<String> {
    if key.is_empty() {
        return Err(invalid("a filter names an empty field".into()));
    }
    if key.starts_with('$') {
        return Err(invalid(format!(
            "field {key:?}: names starting with $ are operators, and {key:?} is not one \
             (the operators joining filters are $and, $or and $not)"
        )));
    }
    Ok(key.to_string())
}

fn spend(budget: &mut usize, n: usize) -> Result<()> {
    if n > *budget {
        return Err(invalid(format!(
            "the filter holds more than {MAX_FILTER_VALUES} conditions and values"
        )));
    }
    *budget -= n;
    Ok(())
}

fn parse_object(object: &Map<String, Value>, depth: usize, budget: &mut usize) -> Result<Filter> {
    if depth > MAX_FILTER_DEPTH {
        return Err(invalid(format!(
            "the filter nests $and, $or and $not more than {MAX_FILTER_DEPTH} levels deep"
        )));
    }
    let mut all = Vec::with_capacity(object.len());
    for (key, value) in object {
        spend(budget, 1)?;
        let filter = match key.as_str() {
            "$and" | "$or" => {
                let Some(items) = value.as_array().filter(|items| !items.is_empty()) else {
                    return Err(invalid(format!(
                        "{key} takes a non-empty list of filters, not {}",
                        shown(value)
                    )));
                };
                let mut filters = Vec::with_capacity(items.len());
                for item in items {
                    let Value::Object(inner) = item else {
                        return Err(invalid(format!(
                            "{key}: each element is a filter object, not {}",
                            shown(item)
                        )));
                    };
                    filters.push(parse_object(inner, depth + 1, budget)?);
                }
                if key == "$and" {
                    Filter::And(filters)
                } else {
                    Filter::Or(filters)
                }
            }
            "$not" => match value {
                Value::Object(inner) => {
                    Filter::Not(Box::new(parse_object(inner, depth + 1, budget)?))
                }
                other => {
                    return Err(invalid(format!(
                        "$not takes a filter object, not {}",
                        shown(other)
                    )))
                }
            },
            _ => parse_field(&checked_key(key)?, value, depth, budget)?,
        };
        all.push(filter);
    }
    Ok(if all.len() == 1 {
        all.pop().unwrap_or(Filter::And(Vec::new()))
    } else {
        Filter::And(all)
    })
}

/// The conditions on one field: a bare value (equality) or an object of operators.
fn parse_field(key: &str, value: &Value, depth: usize, budget: &mut usize) -> Result<Filter> {
    let Value::Object(operators) = value else {
        let scalar = Scalar::from_json(value).ok_or_else(|| {
            invalid(format!(
                "field {key:?}: compare with a string, number or boolean, or an object of \
                 operators such as {{\"$gte\": 2020}}; {} is neither",
                shown(value)
            ))
        })?;
        return Ok(field(key.to_string(), Condition::Equals(scalar)));
    };
    if operators.is_empty() {
        return Err(invalid(format!(
            "field {key:?}: the object of operators is empty"
        )));
    }
    let mut conditions = Vec::new();
    let mut lower = Bound::Unbounded;
    let mut upper = Bound::Unbounded;
    let mut kind: Option<OrderedKind> = None;
    for (operator, operand) in operators {
        spend(budget, 1)?;
        let scalar = || {
            Scalar::from_json(operand).ok_or_else(|| {
                invalid(format!(
                    "field {key:?}: {operator} compares with a string, number or boolean, not {}",
                    shown(operand)
                ))
            })
        };
        let list = |budget: &mut usize| -> Result<Vec<Scalar>> {
            let Some(items) = operand.as_array() else {
                return Err(invalid(format!(
                    "field {key:?}: {operator} takes a list of values, not {}",
                    shown(operand)
                )));
            };
            spend(budget, items.len())?;
            items
                .iter()
                .map(|item| {
                    Scalar::from_json(item).ok_or_else(|| {
                        invalid(format!(
                            "field {key:?}: {operator} lists strings, numbers or booleans, not {}",
                            shown(item)
                        ))
                    })
                })
                .collect()
        };
        match operator.as_str() {
            "$eq" => conditions.push(field(key.to_string(), Condition::Equals(scalar()?))),
            "$ne" => conditions.push(field(key.to_string(), Condition::NotEquals(scalar()?))),
            "$in" => conditions.push(field(key.to_string(), Condition::In(list(budget)?))),
            "$nin" => conditions.push(field(key.to_string(), Condition::NotIn(list(budget)?))),
            "$exists" => {
                let Value::Bool(exists) = operand else {
                    return Err(invalid(format!(
                        "field {key:?}: $exists takes true or false, not {}",
                        shown(operand)
                    )));
                };
                conditions.push(field(key.to_string(), Condition::Exists(*exists)));
            }
            "$not" => {
                let Value::Object(_) = operand else {
                    return Err(invalid(format!(
                        "field {key:?}: $not takes an object of operators, not {}",
                        shown(operand)
                    )));
                };
                if depth + 1 > MAX_FILTER_DEPTH {
                    return Err(invalid(format!(
                        "the filter nests $and, $or and $not more than {MAX_FILTER_DEPTH} levels deep"
                    )));
                }
                let inner = parse_field(key, operand, depth + 1, budget)?;
                conditions.push(Filter::Not(Box::new(inner)));
            }
            "$gt" | "$gte" | "$lt" | "$lte" => {
                let bound = ordered_from_json(key, operator, operand)?;
                match kind {
                    Some(k) if k != bound.kind() => {
                        return Err(invalid(format!(
                            "field {key:?}: a range compares numbers with numbers and dates \
                             with dates; this one mixes them"
                        )))
                    }
                    _ => kind = Some(bound.kind()),
                }
                let (slot, new) = match operator.as_str() {
                    "$gt" => (&mut lower, Bound::Excluded(bound)),
                    "$gte" => (&mut lower, Bound::Included(bound)),
                    "$lt" => (&mut upper, Bound::Excluded(bound)),
                    _ => (&mut upper, Bound::Included(bound)),
                };
                if !matches!(slot, Bound::Unbounded) {
                    return Err(invalid(format!(
                        "field {key:?}: give one lower bound ($gt or $gte) and one upper bound \
                         ($lt or $lte) at most"
                    )));
                }
                *slot = new;
            }
            other => {
                return Err(invalid(format!(
                    "field {key:?}: unknown operator {other:?}; the operators are $eq, $ne, \
                     $gt, $gte, $lt, $lte, $in, $nin, $exists and $not"
                )))
            }
        }
    }
    if let Some(kind) = kind {
        conditions.push(field(
            key.to_string(),
            Condition::Range { kind, lower, upper },
        ));
    }
    Ok(if conditions.len() == 1 {
        conditions.pop().unwrap_or(Filter::And(Vec::new()))
    } else {
        Filter::And(conditions)
    })
}

fn ordered_from_json(key: &str, operator: &str, operand: &Value) -> Result<OrderedValue> {
    let refused = || {
        invalid(format!(
            "field {key:?}: {operator} compares numbers or RFC 3339 dates (\"2024-05-01\", \
             \"2024-05-01T12:00:00Z\"), not {}",
            shown(operand)
        ))
    };
    match operand {
        Value::Number(n) => n.as_f64().map(OrderedValue::Number).ok_or_else(refused),
        Value::String(s) => parse_date(s).map(OrderedValue::Date).ok_or_else(refused),
        _ => Err(refused()),
    }
}

fn ordered_from_text(key: &str, operator: &str, text: &str) -> Result<OrderedValue> {
    if let Some(x) = text.parse::<f64>().ok().filter(|x| x.is_finite()) {
        return Ok(OrderedValue::Number(x));
    }
    parse_date(text).map(OrderedValue::Date).ok_or_else(|| {
        invalid(format!(
            "field {key:?}: {operator} compares numbers or RFC 3339 dates (2024-05-01, \
             2024-05-01T12:00:00Z), not {text:?}"
        ))
    })
}

fn term_query(fields: &Fields, term: &str) -> Box<dyn Query> {
    Box::new(TermQuery::new(
        Term::from_field_text(fields.meta, term),
        IndexRecordOption::Basic,
    ))
}

fn any_of(mut queries: Vec<Box<dyn Query>>) -> Box<dyn Query> {
    match queries.len() {
        0 => Box::new(EmptyQuery),
        1 => queries.pop().unwrap_or_else(|| Box::new(EmptyQuery)),
        _ => Box::new(BooleanQuery::new(
            queries.into_iter().map(|q| (Occur::Should, q)).collect(),
        )),
    }
}

/// Every document except those `query` matches (a query of only MustNot clauses matches
/// nothing in tantivy, hence the AllQuery).
fn none_of(query: Box<dyn Query>) -> Box<dyn Query> {
    Box::new(BooleanQuery::new(vec![
        (Occur::Must, Box::new(AllQuery) as Box<dyn Query>),
        (Occur::MustNot, query),
    ]))
}

fn equals_query(fields: &Fields, key: &str, scalar: &Scalar) -> Box<dyn Query> {
    let mut terms = vec![term_query(fields, &equality_term(key, &scalar.text))];
    if let Some(x) = scalar.number {
        terms.push(term_query(fields, &OrderedValue::Number(x).term(key)));
    }
    if let Some(micros) = scalar.date {
        terms.push(term_query(fields, &OrderedValue::Date(micros).term(key)));
    }
    any_of(terms)
}

fn condition_query(fields: &Fields, key: &str, condition: &Condition) -> Box<dyn Query> {
    match condition {
        Condition::Equals(scalar) => equals_query(fields, key, scalar),
        Condition::NotEquals(scalar) => none_of(equals_query(fields, key, scalar)),
        Condition::In(values) => any_of(
            values
                .iter()
                .map(|v| equals_query(fields, key, v))
                .collect(),
        ),
        Condition::NotIn(values) => none_of(any_of(
            values
                .iter()
                .map(|v| equals_query(fields, key, v))
                .collect(),
        )),
        Condition::Range { kind, lower, upper } => {
            let (lower, upper) = OrderedValue::term_range(key, *kind, *lower, *upper);
            let term = |text: String| Term::from_field_text(fields.meta, &text);
            Box::new(RangeQuery::new(lower.map(term), upper.map(term)))
        }
        Condition::Exists(true) => term_query(fields, &exists_term(key)),
        Condition::Exists(false) => none_of(term_query(fields, &exists_term(key))),
    }
}

/// A query matching the documents that pass every filter, scoring 0; `None` without filters.
pub fn filter_query(fields: &Fields, filters: &[Filter]) -> Option<Box<dyn Query>> {
    let query = match filters {
        [] => return None,
        [one] => one.to_query(fields),
        many => Filter::And(many.to_vec()).to_query(fields),
    };
    Some(Box::new(ConstScoreQuery::new(query, 0.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<Filter> {
        Filter::from_json(&value)
    }

    #[test]
    fn the_json_syntax_parses_into_conditions() {
        let filter = parse(json!({"year": {"$gte": 2020, "$lt": 2024}})).unwrap();
        assert_eq!(
            filter,
            field(
                "year".into(),
                Condition::Range {
                    kind: OrderedKind::Number,
                    lower: Bound::Included(OrderedValue::Number(2020.0)),
                    upper: Bound::Excluded(OrderedValue::Number(2024.0)),
                }
            )
        );
        let filter = parse(json!({"$or": [{"a": 1}, {"$not": {"b": {"$exists": true}}}]}));
        assert!(
            matches!(filter, Ok(Filter::Or(ref f)) if f.len() == 2),
            "{filter:?}"
        );
        let filter = parse(json!({"a": "x", "b": {"$ne": true, "$in": [1, "y"]}})).unwrap();
        assert!(
            matches!(filter, Filter::And(ref f) if f.len() == 2),
            "{filter:?}"
        );
    }

    #[test]
    fn malformed_filters_name_the_field_and_the_problem() {
        for (value, expected) in [
            (
                json!({"year": {"$gte": "soon"}}),
                "field \"year\": $gte compares numbers",
            ),
            (json!({"year": {"$gte": true}}), "field \"year\": $gte"),
            (
                json!({"year": {"$gte": 1, "$lt": "2024-01-01"}}),
                "mixes them",
            ),
            (json!({"year": {"$gt": 1, "$gte": 2}}), "one lower bound"),
            (
                json!({"lang": {"$regex": "e.*"}}),
                "unknown operator \"$regex\"",
            ),
            (json!({"lang": {"$in": "en"}}), "$in takes a list"),
            (json!({"lang": {"$in": [["en"]]}}), "$in lists strings"),
            (
                json!({"lang": {"$exists": 1}}),
                "$exists takes true or false",
            ),
            (json!({"lang": null}), "field \"lang\": compare with"),
            (json!({"lang": {}}), "empty"),
            (json!({"$or": []}), "$or takes a non-empty list"),
            (json!({"$and": [1]}), "each element is a filter object"),
            (json!({"$nor": [{"a": 1}]}), "\"$nor\""),
            (json!(["lang"]), "a filter is a JSON object"),
        ] {
            let error = parse(value.clone()).unwrap_err().to_string();
            assert!(error.contains(expected), "{value}: {error}");
        }
    }

    #[test]
    fn nesting_and_size_are_bounded() {
        let mut deep = json!({"a": 1});
        for _ in 0..=MAX_FILTER_DEPTH {
            deep = json!({"$not": deep});
        }
        assert!(parse(deep).unwrap_err().to_string().contains("levels deep"));
        let many: Vec<u32> = (0..=MAX_FILTER_VALUES as u32).collect();
        assert!(parse(json!({"id": {"$in": many}}))
            .unwrap_err()
            .to_string()
            .contains("more than"));
    }

    #[test]
    fn the_command_line_form_parses() {
        assert_eq!(
            Filter::parse_cli("lang=en").unwrap(),
            field("lang".into(), Condition::Equals(Scalar::from_text("en")))
        );
        assert_eq!(
            Filter::parse_cli("url=a=b").unwrap(),
            field("url".into(), Condition::Equals(Scalar::from_text("a=b")))
        );
        assert_eq!(
            Filter::parse_cli("year>=2020").unwrap(),
            field(
                "year".into(),
                Condition::Range {
                    kind: OrderedKind::Number,
                    lower: Bound::Included(OrderedValue::Number(2020.0)),
                    upper: Bound::Unbounded,
                }
            )
        );
        assert!(matches!(
            Filter::parse_cli("published < 2024-01-01").unwrap(),
            Filter::Field {
                condition: Condition::Range {
                    kind: OrderedKind::Date,
                    ..
                },
                ..
            }
        ));
        assert_eq!(
            Filter::parse_cli("lang in (en, de)").unwrap(),
            field(
                "lang".into(),
                Condition::In(vec![Scalar::from_text("en"), Scalar::from_text("de")])
            )
        );
        assert!(matches!(
            Filter::parse_cli("lang not in (en)").unwrap(),
            Filter::Field {
                condition: Condition::NotIn(_),
                ..
            }
        ));
        assert!(matches!(
            Filter::parse_cli("lang not exists").unwrap(),
            Filter::Field {
                condition: Condition::Exists(false),
                ..
            }
        ));
        assert!(matches!(
            Filter::parse_cli("lang!=en").unwrap(),
            Filter::Field {
                condition: Condition::NotEquals(_),
                ..
            }
        ));
        assert_eq!(
            Filter::parse_cli("note=it exists").unwrap(),
            field(
                "note".into(),
                Condition::Equals(Scalar::from_text("it exists"))
            )
        );
        assert_eq!(
            Filter::parse_cli("note=a in (b)").unwrap(),
            field(
                "note".into(),
                Condition::Equals(Scalar::from_text("a in (b)"))
            )
        );
        for bad in ["lang", "=en", "year>=soon", "lang in en", "$or=1"] {
            assert!(Filter::parse_cli(bad).is_err(), "{bad}");
        }
    }
}
