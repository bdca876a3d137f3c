//! Every filter operator against a brute-force reference over the documents: random documents
//! (typed, list-valued, nested, missing and null metadata) and random filters (every operator,
//! nested `$and`/`$or`/`$not`), with the hits of BM25, dense and hybrid search compared to the
//! documents the reference says match. Seeds are fixed, so a failure names the case to rerun.
//!
//! The reference states the semantics of `ibex_search::filter` directly on the JSON; it shares
//! only the RFC 3339 date parser with the code under test (tested on its own in the indexer).

use std::collections::BTreeSet;

use ibex_indexer::metadata::parse_date;
use ibex_indexer::{ChunkSpan, ChunkingParams, Document, EmbeddedChunks, Index, ModelInfo};
use ibex_search::{search, Filter, Mode, SearchRequest};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

const DIMENSION: usize = 8;
const MODEL_ID: &str = "test/synthetic-8";
const DOCUMENTS: usize = 400;
const FILTERS: usize = 400;

const LANGS: &[&str] = &["en", "de", "fr", "it"];
const DATES: &[&str] = &[
    "2019-12-31",
    "2020-01-01",
    "2020-01-01T00:00:00Z",
    "2020-01-01T01:00:00+01:00",
    "2020-06-15T12:30:00.250Z",
    "2021-03-01",
    "2023-11-30T23:59:59-05:00",
    "soon",
    "2020",
];

fn random_vector(rng: &mut StdRng) -> Vec<f32> {
    let raw: Vec<f32> = (0..DIMENSION).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    raw.into_iter().map(|x| x / norm).collect()
}

fn random_year(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..6) {
        0 => json!(rng.gen_range(2015..2026) as f64 + 0.5),
        1 => json!(rng.gen_range(2015..2026).to_string()),
        _ => json!(rng.gen_range(2015..2026)),
    }
}

/// Metadata drawn so that every operator meets each case: missing keys, nulls, lists, nested
/// objects, numbers as strings, dates and non-dates, negative numbers, booleans.
fn random_metadata(rng: &mut StdRng) -> Map<String, Value> {
    let mut m = Map::new();
    let mut maybe = |rng: &mut StdRng, key: &str, value: Value| {
        if rng.gen_bool(0.8) {
            m.insert(key.into(), value);
        } else if rng.gen_bool(0.3) {
            m.insert(key.into(), Value::Null);
        }
    };
    let year = if rng.gen_bool(0.15) {
        json!([random_year(rng), random_year(rng)])
    } else {
        random_year(rng)
    };
    maybe(rng, "year", year);
    let lang = if rng.gen_bool(0.2) {
        json!([LANGS[rng.gen_range(0..4)], LANGS[rng.gen_range(0..4)]])
    } else if rng.gen_bool(0.1) {
        json!([])
    } else {
        json!(LANGS[rng.gen_range(0..4)])
    };
    maybe(rng, "lang", lang);
    let published = json!(DATES[rng.gen_range(0..DATES.len())]);
    maybe(rng, "published", published);
    let score = json!((rng.gen_range(-20..20) as f64) / 10.0);
    maybe(rng, "score", score);
    let flag = json!(rng.gen_bool(0.5));
    maybe(rng, "flag", flag);
    let mut author = Map::new();
    if rng.gen_bool(0.7) {
        author.insert(
            "name".into(),
            json!(["ada", "alan", "grace"][rng.gen_range(0..3)]),
        );
    }
    if rng.gen_bool(0.5) {
        author.insert("age".into(), json!(rng.gen_range(20..60)));
    }
    maybe(rng, "author", Value::Object(author));
    m
}

const KEYS: &[&str] = &[
    "year",
    "lang",
    "published",
    "score",
    "flag",
    "author",
    "author.name",
    "author.age",
    "missing",
];

/// A value a filter may compare `key` with: mostly of the key's own vocabulary.
fn random_operand(rng: &mut StdRng, key: &str) -> Value {
    match (key, rng.gen_range(0..10)) {
        (_, 0) => [json!("x"), json!(7), json!(true)][rng.gen_range(0..3)].clone(),
        ("year" | "missing", _) => random_year(rng),
        ("lang", _) => json!(LANGS[rng.gen_range(0..4)]),
        ("published", _) => json!(DATES[rng.gen_range(0..DATES.len())]),
        ("score", _) => json!((rng.gen_range(-20..20) as f64) / 10.0),
        ("flag", _) => json!(rng.gen_bool(0.5)),
        ("author.age", _) => json!(rng.gen_range(20..60)),
        _ => json!(["ada", "alan", "grace"][rng.gen_range(0..3)]),
    }
}

/// A range bound for `key`: a number, or a date for `published` (sometimes the other kind).
fn random_bound(rng: &mut StdRng, key: &str) -> Value {
    let date = (key == "published") != rng.gen_bool(0.1);
    if date {
        json!(DATES[rng.gen_range(0..7)])
    } else {
        match key {
            "score" => json!((rng.gen_range(-20..20) as f64) / 10.0),
            "author.age" => json!(rng.gen_range(20..60)),
            _ => json!(rng.gen_range(2014..2027)),
        }
    }
}

fn random_conditions(rng: &mut StdRng, key: &str, depth: usize) -> Value {
    match rng.gen_range(0..12) {
        0 => random_operand(rng, key),
        1 => json!({"$eq": random_operand(rng, key)}),
        2 => json!({"$ne": random_operand(rng, key)}),
        3 => {
            let values: Vec<Value> = (0..rng.gen_range(0..4))
                .map(|_| random_operand(rng, key))
                .collect();
            json!({"$in": values})
        }
        4 => {
            let values: Vec<Value> = (0..rng.gen_range(0..4))
                .map(|_| random_operand(rng, key))
                .collect();
            json!({"$nin": values})
        }
        5 => json!({"$exists": rng.gen_bool(0.5)}),
        6 if depth < 3 => json!({"$not": random_operands_object(rng, key, depth + 1)}),
        7 => {
            let lower = if rng.gen_bool(0.5) { "$gt" } else { "$gte" };
            let upper = if rng.gen_bool(0.5) { "$lt" } else { "$lte" };
            let a = random_bound(rng, key);
            let b = if a.is_string() {
                json!(DATES[rng.gen_range(0..7)])
            } else {
                json!(a.as_f64().unwrap_or(0.0) + rng.gen_range(0..5) as f64)
            };
            json!({lower: a, upper: b})
        }
        _ => {
            let op = ["$gt", "$gte", "$lt", "$lte"][rng.gen_range(0..4)];
            json!({op: random_bound(rng, key)})
        }
    }
}

/// Conditions as an object of operators (what field-level `$not` takes).
fn random_operands_object(rng: &mut StdRng, key: &str, depth: usize) -> Value {
    loop {
        let value = random_conditions(rng, key, depth);
        if value.is_object() {
            return value;
        }
    }
}

fn random_filter(rng: &mut StdRng, depth: usize) -> Value {
    if depth < 3 && rng.gen_bool(0.3) {
        let children = |rng: &mut StdRng| -> Vec<Value> {
            (0..rng.gen_range(1..4))
                .map(|_| random_filter(rng, depth + 1))
                .collect()
        };
        return match rng.gen_range(0..3) {
            0 => json!({"$and": children(rng)}),
            1 => json!({"$or": children(rng)}),
            _ => json!({"$not": random_filter(rng, depth + 1)}),
        };
    }
    let mut object = Map::new();
    for _ in 0..rng.gen_range(1..3) {
        let key = KEYS[rng.gen_range(0..KEYS.len())];
        object.insert(key.into(), random_conditions(rng, key, depth));
    }
    Value::Object(object)
}

// ---- The reference -------------------------------------------------------------------------

/// Every (dotted path, scalar) of the metadata: objects give dotted paths, lists their elements,
/// nulls nothing.
fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Null => {}
        Value::Array(items) => items.iter().for_each(|v| flatten(prefix, v, out)),
        Value::Object(map) => map
            .iter()
            .for_each(|(k, v)| flatten(&format!("{prefix}.{k}"), v, out)),
        scalar => out.push((prefix.to_string(), scalar.clone())),
    }
}

fn values_of(metadata: &Map<String, Value>, key: &str) -> Vec<Value> {
    let mut all = Vec::new();
    for (k, v) in metadata {
        flatten(k, v, &mut all);
    }
    all.into_iter()
        .filter(|(path, _)| path == key)
        .map(|(_, v)| v)
        .collect()
}

fn exists(metadata: &Map<String, Value>, key: &str) -> bool {
    let mut all = Vec::new();
    for (k, v) in metadata {
        flatten(k, v, &mut all);
    }
    let nested = format!("{key}.");
    all.iter()
        .any(|(path, _)| path == key || path.starts_with(&nested))
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `$eq` between a document value and a filter operand.
fn equals(value: &Value, operand: &Value) -> bool {
    if text_of(value) == text_of(operand) {
        return true;
    }
    match (value, operand) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::String(a), Value::String(b)) => match (parse_date(a), parse_date(b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
        _ => false,
    }
}

/// The value a range compares, with its kind (true: date).
fn ordered(value: &Value) -> Option<(bool, f64)> {
    match value {
        Value::Number(n) => n.as_f64().map(|x| (false, x)),
        Value::String(s) => parse_date(s).map(|micros| (true, micros as f64)),
        _ => None,
    }
}

fn in_range(value: &Value, operators: &Map<String, Value>) -> bool {
    let Some((is_date, x)) = ordered(value) else {
        return false;
    };
    operators.iter().all(|(op, bound)| {
        let Some((bound_is_date, b)) = ordered(bound) else {
            return true;
        };
        if !matches!(op.as_str(), "$gt" | "$gte" | "$lt" | "$lte") {
            return true;
        }
        bound_is_date == is_date
            && match op.as_str() {
                "$gt" => x > b,
                "$gte" => x >= b,
                "$lt" => x < b,
                _ => x <= b,
            }
    })
}

fn field_matches(metadata: &Map<String, Value>, key: &str, conditions: &Value) -> bool {
    let values = values_of(metadata, key);
    let Value::Object(operators) = conditions else {
        return values.iter().any(|v| equals(v, conditions));
    };
    let has_range = operators
        .keys()
        .any(|op| matches!(op.as_str(), "$gt" | "$gte" | "$lt" | "$lte"));
    if has_range && !values.iter().any(|v| in_range(v, operators)) {
        return false;
    }
    operators.iter().all(|(op, operand)| match op.as_str() {
        "$eq" => values.iter().any(|v| equals(v, operand)),
        "$ne" => !values.iter().any(|v| equals(v, operand)),
        "$in" => values
            .iter()
            .any(|v| operand.as_array().unwrap().iter().any(|o| equals(v, o))),
        "$nin" => !values
            .iter()
            .any(|v| operand.as_array().unwrap().iter().any(|o| equals(v, o))),
        "$exists" => exists(metadata, key) == operand.as_bool().unwrap(),
        "$not" => !field_matches(metadata, key, operand),
        _ => true, // range operators, checked together above
    })
}

fn matches(metadata: &Map<String, Value>, filter: &Value) -> bool {
    filter
        .as_object()
        .unwrap()
        .iter()
        .all(|(key, value)| match key.as_str() {
            "$and" => value
                .as_array()
                .unwrap()
                .iter()
                .all(|f| matches(metadata, f)),
            "$or" => value
                .as_array()
                .unwrap()
                .iter()
                .any(|f| matches(metadata, f)),
            "$not" => !matches(metadata, value),
            _ => field_matches(metadata, key, value),
        })
}

/// A range whose bounds mix numbers and dates is refused by the parser (a 422), not evaluated.
fn mixes_kinds(filter: &Value) -> bool {
    match filter {
        Value::Object(map) => {
            let kinds: BTreeSet<bool> = map
                .iter()
                .filter(|(op, _)| matches!(op.as_str(), "$gt" | "$gte" | "$lt" | "$lte"))
                .filter_map(|(_, bound)| ordered(bound).map(|(date, _)| date))
                .collect();
            kinds.len() > 1 || map.values().any(mixes_kinds)
        }
        Value::Array(items) => items.iter().any(mixes_kinds),
        _ => false,
    }
}

// ---- The index -----------------------------------------------------------------------------

fn build_index(dir: &std::path::Path, rng: &mut StdRng) -> (Index, Vec<Map<String, Value>>) {
    let model = ModelInfo {
        id: MODEL_ID.into(),
        source: "test".into(),
        dimension: DIMENSION,
    };
    let mut index = Index::create(dir, model, ChunkingParams::default()).unwrap();
    let mut metadata = Vec::new();
    let docs: Vec<(Document, EmbeddedChunks)> = (0..DOCUMENTS)
        .map(|n| {
            // Every document holds the query's word, so BM25 matches each one the filter keeps.
            let text = format!("glacier survey {n} of the northern valley and its river");
            let chars = text.chars().count();
            let meta = random_metadata(rng);
            metadata.push(meta.clone());
            let chunks = rng.gen_range(1..3);
            let spans = (0..chunks)
                .map(|c| ChunkSpan {
                    start: c * chars / chunks,
                    end: (c + 1) * chars / chunks,
                })
                .collect();
            let vectors = (0..chunks).flat_map(|_| random_vector(rng)).collect();
            let document = Document {
                id: format!("doc-{n:04}"),
                title: String::new(),
                text,
                metadata: meta,
            };
            (document, EmbeddedChunks { spans, vectors })
        })
        .collect();
    {
        // Two commits, the first large enough for an HNSW graph, so dense search walks a
        // filtered graph as well as scanning a flat segment.
        let mut writer = index.embedded_writer().unwrap().with_graph_threshold(200);
        writer.upsert_embedded(MODEL_ID, &docs[..300]).unwrap();
        writer.commit().unwrap();
        writer.upsert_embedded(MODEL_ID, &docs[300..]).unwrap();
        writer.commit().unwrap();
        writer.finish().unwrap();
    }
    index.refresh().unwrap();
    assert!(index.num_segments() >= 2);
    (index, metadata)
}

fn hit_ids(
    index: &Index,
    mode: Mode,
    filter: &Filter,
    top_k: usize,
    rng: &mut StdRng,
) -> Vec<String> {
    let mut request = SearchRequest::new("glacier");
    request.mode = mode;
    request.top_k = top_k;
    request.passages = 0;
    request.filters = vec![filter.clone()];
    if mode != Mode::Bm25 {
        request.vector = Some(random_vector(rng));
    }
    search(index, None, &request)
        .unwrap()
        .hits
        .into_iter()
        .map(|h| h.id)
        .collect()
}

#[test]
fn every_operator_matches_the_brute_force_reference_in_every_mode() {
    let temp = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(19);
    let (index, metadata) = build_index(&temp.path().join("idx"), &mut rng);
    let mut checked = 0;
    let mut nonempty_partial = 0;
    for case in 0..FILTERS {
        let filter_json = random_filter(&mut rng, 0);
        let parsed = Filter::from_json(&filter_json);
        if mixes_kinds(&filter_json) {
            assert!(parsed.is_err(), "case {case}: {filter_json} mixes kinds");
            continue;
        }
        let filter = parsed.unwrap_or_else(|e| panic!("case {case}: {filter_json}: {e}"));
        let expected: BTreeSet<String> = metadata
            .iter()
            .enumerate()
            .filter(|(_, m)| matches(m, &filter_json))
            .map(|(n, _)| format!("doc-{n:04}"))
            .collect();
        if !expected.is_empty() && expected.len() < DOCUMENTS {
            nonempty_partial += 1;
        }
        for mode in [Mode::Bm25, Mode::Dense, Mode::Hybrid] {
            // Every matching document, and only those.
            let all: BTreeSet<String> = hit_ids(&index, mode, &filter, DOCUMENTS, &mut rng)
                .into_iter()
                .collect();
            assert_eq!(
                all,
                expected,
                "case {case}, {mode}: {filter_json}\nmissing: {:?}\nextra: {:?}",
                expected.difference(&all).collect::<Vec<_>>(),
                all.difference(&expected).collect::<Vec<_>>()
            );
            // A cut list holds min(k, matching) documents, all matching.
            let top = hit_ids(&index, mode, &filter, 10, &mut rng);
            assert_eq!(
                top.len(),
                expected.len().min(10),
                "case {case}, {mode}: {filter_json}"
            );
            assert!(top.iter().all(|id| expected.contains(id)));
        }
        checked += 1;
    }
    // The generator must exercise the interesting middle, not only all-or-nothing filters.
    assert!(checked > FILTERS * 3 / 4, "{checked} filters checked");
    assert!(
        nonempty_partial > checked / 3,
        "{nonempty_partial} of {checked} selective"
    );
}

#[test]
fn typed_values_compare_by_type() {
    let temp = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let (index, metadata) = build_index(&temp.path().join("idx"), &mut rng);
    let count = |filter: Value| {
        let filter = Filter::from_json(&filter).unwrap();
        hit_ids(
            &index,
            Mode::Bm25,
            &filter,
            DOCUMENTS,
            &mut StdRng::seed_from_u64(1),
        )
        .len()
    };
    // The string "2020" is text, not a number: a range of numbers never matches it, equality
    // with the number 2020 does (as text, as format 1 did).
    let holds =
        |m: &Map<String, Value>, wanted: &Value| values_of(m, "year").iter().any(|v| v == wanted);
    let numbers = metadata.iter().filter(|m| holds(m, &json!(2020))).count();
    let strings_only = metadata
        .iter()
        .filter(|m| holds(m, &json!("2020")) && !holds(m, &json!(2020)))
        .count();
    assert!(numbers > 0 && strings_only > 0, "{numbers} {strings_only}");
    assert_eq!(
        count(json!({"year": {"$gte": 2020, "$lte": 2020}})),
        numbers
    );
    assert_eq!(count(json!({"year": 2020})), numbers + strings_only);
    // Midnight on 2020-01-01 written three ways is one instant.
    let midnight = metadata
        .iter()
        .filter(|m| {
            matches!(
                m.get("published").and_then(|v| v.as_str()),
                Some("2020-01-01" | "2020-01-01T00:00:00Z" | "2020-01-01T01:00:00+01:00")
            )
        })
        .count();
    assert_eq!(
        count(json!({"published": "2020-01-01T00:00:00Z"})),
        midnight
    );
    assert_eq!(
        count(json!({"published": {"$gte": "2020-01-01", "$lte": "2020-01-01"}})),
        midnight
    );
    // A bound of a type nothing compares with is refused, naming the field.
    let error = Filter::from_json(&json!({"year": {"$gte": "soon"}})).unwrap_err();
    assert!(error.to_string().contains("\"year\""), "{error}");
}

#[test]
fn command_line_filters_mean_what_their_json_forms_mean() {
    let temp = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let (index, _) = build_index(&temp.path().join("idx"), &mut rng);
    let ids = |filter: Filter| {
        hit_ids(
            &index,
            Mode::Bm25,
            &filter,
            DOCUMENTS,
            &mut StdRng::seed_from_u64(1),
        )
        .into_iter()
        .collect::<BTreeSet<_>>()
    };
    for (cli, json) in [
        ("year>=2020", json!({"year": {"$gte": 2020}})),
        ("year<2018.5", json!({"year": {"$lt": 2018.5}})),
        (
            "published<=2021-03-01",
            json!({"published": {"$lte": "2021-03-01"}}),
        ),
        ("lang in (en,de)", json!({"lang": {"$in": ["en", "de"]}})),
        ("lang not in (en)", json!({"lang": {"$nin": ["en"]}})),
        ("lang!=fr", json!({"lang": {"$ne": "fr"}})),
        ("author.name=ada", json!({"author.name": "ada"})),
        ("author exists", json!({"author": {"$exists": true}})),
        ("flag=true", json!({"flag": true})),
    ] {
        let from_cli = ids(Filter::parse_cli(cli).unwrap());
        let from_json = ids(Filter::from_json(&json).unwrap());
        assert_eq!(from_cli, from_json, "{cli} vs {json}");
        assert!(
            !from_cli.is_empty() && from_cli.len() < DOCUMENTS,
            "{cli} is selective"
        );
    }
}
