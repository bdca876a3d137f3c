//! Queries, filters and search options against a real index: query text of any bytes (BM25's
//! analyzer, highlighting, passages), metadata filters in their `key=value` string form, modes,
//! fusions, top_k, passages and candidate counts, a query vector of any length and values,
//! offsets, score thresholds, MMR, grouping and facets. A
//! search gives results or an error naming what is wrong; never a panic or an unbounded
//! allocation.
#![no_main]

use ibex_fuzz::{fixture_index, fusion_from, Input};
use ibex_search::{ChunkAggregation, Filter, GroupBy, Mmr, Mode, SearchRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let index = fixture_index();
    let mut input = Input::new(data);
    let mode = [Mode::Bm25, Mode::Dense, Mode::Hybrid][input.byte() as usize % 3];
    let top_k = input.u32() as usize;
    let passages = input.u32() as usize;
    let candidates = input.u32() as usize;
    let fusion_kind = input.byte();
    let fusion_number = input.u32();
    let aggregation = match input.byte() {
        0..=127 => ChunkAggregation::Max,
        n => ChunkAggregation::TopKSum(n as usize - 127),
    };
    let vector_floats = input.byte() as usize;
    let vector: Option<Vec<f32>> = (vector_floats > 0).then(|| {
        (0..vector_floats % 17)
            .map(|_| f32::from_bits(input.u32()))
            .collect()
    });
    let offset = input.u32() as usize;
    let min_score = (input.byte() & 1 == 1).then(|| f32::from_bits(input.u32()));
    let mmr = (input.byte() & 1 == 1).then(|| Mmr {
        lambda: f32::from_bits(input.u32()),
        fetch_k: input.u32() as usize,
    });
    const FIELDS: [&str; 5] = ["lang", "year", "author.name", "", "missing"];
    let grouping = input.byte();
    let group_by = (grouping & 1 == 1).then(|| GroupBy {
        field: FIELDS[(grouping as usize >> 1) % FIELDS.len()].to_string(),
        per_group: input.u32() as usize,
    });
    let facet_bits = input.byte();
    let facets: Vec<String> = (0..FIELDS.len())
        .filter(|i| facet_bits & (1 << i) != 0)
        .map(|i| FIELDS[i].to_string())
        .collect();
    let query = String::from_utf8_lossy(input.until(0)).into_owned();
    // Each NUL-separated part is a filter: JSON when it parses as JSON (the API's syntax), the
    // command-line form otherwise.
    let filters: Vec<Filter> = input
        .rest()
        .split(|&b| b == 0)
        .filter_map(
            |spec| match serde_json::from_slice::<serde_json::Value>(spec) {
                Ok(value) => Filter::from_json(&value).ok(),
                Err(_) => Filter::parse_cli(&String::from_utf8_lossy(spec)).ok(),
            },
        )
        .collect();

    let mut request = SearchRequest::new(query);
    request.mode = mode;
    request.top_k = top_k;
    request.passages = passages;
    request.candidates = candidates;
    request.fusion = fusion_from(fusion_kind, fusion_number);
    request.aggregation = aggregation;
    request.filters = filters;
    request.vector = vector;
    request.offset = offset;
    request.min_score = min_score;
    request.mmr = mmr;
    request.group_by = group_by;
    request.facets = facets;
    if let Ok(results) = ibex_search::search(index, None, &request) {
        let per_hit = request.group_by.as_ref().map_or(1, |g| g.per_group);
        assert!(
            results.hits.len() <= request.top_k * per_hit,
            "more hits than top_k"
        );
        if let Some(groups) = &results.groups {
            assert!(groups.len() <= request.top_k, "more groups than top_k");
        }
        if let Some(min_score) = request.min_score {
            assert!(
                results.hits.iter().all(|h| h.score >= min_score),
                "below min_score"
            );
        }
        for hit in &results.hits {
            assert!(hit.score.is_finite(), "score {}", hit.score);
            for passage in &hit.passages {
                let characters = passage.text.chars().count();
                assert_eq!(passage.end - passage.start, characters, "passage offsets");
                for [start, end] in &passage.highlights {
                    assert!(
                        start < end && *end <= characters,
                        "highlight outside its passage"
                    );
                }
            }
        }
    }
});
