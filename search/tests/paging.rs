//! Paging, totals, score thresholds, MMR, grouping, facets and cursors, on small indexes whose
//! vectors and texts are chosen so the right answers are known.

use std::time::Duration;

use ibex_indexer::Index;
use ibex_search::{
    search, Cursors, FacetScope, Filter, Fusion, GroupBy, Mmr, Mode, SearchError, SearchRequest,
    TotalRelation,
};
use serde_json::{json, Value};

mod common;

use common::{create, doc, write, Doc};

/// 60 documents: `river` in every text, repeated `n % 7 + 1` times so BM25 scores differ;
/// `lake` in the even ones; vectors spread around the first axis; metadata `source` (6
/// values), `year` and `lang`.
fn corpus() -> Vec<Doc> {
    (0..60)
        .map(|n| {
            let river = vec!["river"; n % 7 + 1].join(" ");
            let lake = if n % 2 == 0 { " lake" } else { "" };
            let angle = n as f32 / 60.0;
            let lang = ["en", "de", "fr"][n % 3];
            doc(
                &format!("d{n:02}"),
                &format!("{river} valley{lake} note {n}"),
                json!({"source": format!("s{}", n % 6), "year": 2000 + n % 5, "lang": lang}),
                [1.0 - angle, angle, 0.1 * (n % 4) as f32, 0.05],
            )
        })
        .collect()
}

fn built(dir: &std::path::Path) -> Index {
    let mut index = create(dir);
    write(&mut index, &corpus(), &[]);
    index
}

fn request(mode: Mode) -> SearchRequest {
    let mut request = SearchRequest::new("river");
    request.mode = mode;
    request.passages = 0;
    if mode != Mode::Bm25 {
        request.vector = Some(vec![1.0, 0.2, 0.0, 0.0]);
    }
    request
}

fn ids(index: &Index, request: &SearchRequest) -> Vec<String> {
    search(index, None, request)
        .unwrap()
        .hits
        .into_iter()
        .map(|h| h.id)
        .collect()
}

#[test]
fn pages_by_offset_concatenate_to_the_full_ranking_in_every_mode() {
    let dir = tempfile::tempdir().unwrap();
    let index = built(dir.path());
    for mode in [Mode::Bm25, Mode::Dense, Mode::Hybrid] {
        let mut all = request(mode);
        all.top_k = 60;
        let full = ids(&index, &all);
        assert_eq!(full.len(), 60, "{mode}");
        let mut paged = Vec::new();
        for page in 0..6 {
            let mut request = request(mode);
            request.top_k = 10;
            request.offset = page * 10;
            let results = search(&index, None, &request).unwrap();
            assert_eq!(results.offset, page * 10);
            assert_eq!(results.total.value, 60, "{mode}");
            assert_eq!(results.total.relation, TotalRelation::Eq);
            paged.extend(results.hits.into_iter().map(|h| h.id));
        }
        assert_eq!(paged, full, "{mode}");
        let mut beyond = request(mode);
        beyond.offset = 60;
        assert!(ids(&index, &beyond).is_empty(), "{mode}");
    }
    let mut too_deep = request(Mode::Bm25);
    too_deep.offset = ibex_search::MAX_TOP_K;
    assert!(matches!(
        search(&index, None, &too_deep),
        Err(SearchError::InvalidRequest(m)) if m.contains("offset + top_k")
    ));
}

#[test]
fn totals_count_matches_and_allowed_documents_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let index = built(dir.path());
    // BM25: documents holding the term, under the filter.
    let mut lake = request(Mode::Bm25);
    lake.query = "lake".into();
    assert_eq!(search(&index, None, &lake).unwrap().total.value, 30);
    lake.filters = vec![Filter::parse_cli("lang=en").unwrap()];
    // Even and divisible by 3: n % 6 == 0.
    assert_eq!(search(&index, None, &lake).unwrap().total.value, 10);
    // Dense and hybrid: every document the filter allows.
    for mode in [Mode::Dense, Mode::Hybrid] {
        let mut request = request(mode);
        request.query = "lake".into();
        request.filters = vec![Filter::parse_cli("year>=2003").unwrap()];
        let total = search(&index, None, &request).unwrap().total;
        assert_eq!(total.value, 24, "{mode}");
        assert_eq!(total.relation, TotalRelation::Eq);
    }
}

#[test]
fn min_score_drops_weak_hits_in_the_modes_score_space_and_refuses_rank_fusion() {
    let dir = tempfile::tempdir().unwrap();
    let index = built(dir.path());
    for (mode, fusion) in [
        (Mode::Bm25, Fusion::default()),
        (Mode::Dense, Fusion::default()),
        (Mode::Hybrid, Fusion::Weighted { alpha: 0.5 }),
    ] {
        let mut all = request(mode);
        all.fusion = fusion;
        all.top_k = 60;
        let scores: Vec<f32> = search(&index, None, &all)
            .unwrap()
            .hits
            .iter()
            .map(|h| h.score)
            .collect();
        let threshold = scores[20];
        let above = scores.iter().filter(|&&s| s >= threshold).count();
        let mut request = all.clone();
        request.min_score = Some(threshold);
        let results = search(&index, None, &request).unwrap();
        assert!(results.hits.iter().all(|h| h.score >= threshold), "{mode}");
        assert_eq!(results.hits.len(), above, "{mode}");
        assert_eq!(results.total.value, above, "{mode}");
        assert_eq!(results.total.relation, TotalRelation::Eq, "{mode}");
        // A page shorter than the hits above the threshold: a lower bound.
        request.top_k = 5;
        let total = search(&index, None, &request).unwrap().total;
        assert_eq!((total.value, total.relation), (5, TotalRelation::Gte));
    }
    let mut rrf = request(Mode::Hybrid);
    rrf.min_score = Some(0.01);
    assert!(matches!(
        search(&index, None, &rrf),
        Err(SearchError::InvalidRequest(m)) if m.contains("reciprocal rank fusion")
    ));
}

#[test]
fn mmr_puts_a_near_duplicate_after_a_different_relevant_document() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = create(dir.path());
    // Against the query: a 0.958, a-copy 0.958 (but a's twin), b 0.805 (cosine 0.6 to a), far 0.
    write(
        &mut index,
        &[
            doc("a", "river", json!({}), [1.0, 0.0, 0.0, 0.0]),
            doc("a-copy", "river", json!({}), [0.99995, 0.0101, 0.0, 0.0]),
            doc("b", "river", json!({}), [0.6, 0.0, 0.8, 0.0]),
            doc("far", "river", json!({}), [0.0, 0.0, 0.0, 1.0]),
        ],
        &[],
    );
    let mut plain = request(Mode::Dense);
    plain.vector = Some(vec![1.0, 0.0, 0.3, 0.0]);
    plain.top_k = 3;
    assert_eq!(ids(&index, &plain), ["a", "a-copy", "b"]);
    let with = |lambda: f32| {
        let mut request = plain.clone();
        request.mmr = Some(Mmr { lambda, fetch_k: 4 });
        request
    };
    // 0.7 x 0.958 - 0.3 x 1.0 for the copy against 0.7 x 0.805 - 0.3 x 0.6 for b: b first.
    assert_eq!(ids(&index, &with(0.7)), ["a", "b", "a-copy"]);
    // At 0.5 novelty weighs enough that even the unrelated document beats the copy.
    assert_eq!(ids(&index, &with(0.5)), ["a", "b", "far"]);
    // lambda 1 is relevance alone: the plain order.
    assert_eq!(ids(&index, &with(1.0)), ["a", "a-copy", "b"]);
    // Pages of an MMR ranking are slices of it.
    let mut second = with(0.7);
    second.top_k = 1;
    second.offset = 1;
    assert_eq!(ids(&index, &second), ["b"]);
    let mut too_few = with(0.7);
    too_few.mmr = Some(Mmr {
        lambda: 0.7,
        fetch_k: 1,
    });
    assert!(matches!(
        search(&index, None, &too_few),
        Err(SearchError::InvalidRequest(m)) if m.contains("fetch_k")
    ));
}

#[test]
fn group_by_keeps_the_best_per_group_and_pages_by_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = create(dir.path());
    // Scores fall with the first coordinate: a1 > a2 > b1 > a3 > c1 > b2 > none.
    let docs = [
        ("a1", json!({"meta": {"source": "a"}}), 1.0),
        ("a2", json!({"meta": {"source": "a"}}), 0.9),
        ("b1", json!({"meta": {"source": "b"}}), 0.8),
        ("a3", json!({"meta": {"source": "a"}}), 0.7),
        ("c1", json!({"meta": {"source": "c"}}), 0.6),
        ("b2", json!({"meta": {"source": "b"}}), 0.5),
        ("none", json!({}), 0.4),
    ];
    let docs: Vec<Doc> = docs
        .into_iter()
        .map(|(id, metadata, x)| doc(id, "river", metadata, [x, 1.0 - x, 0.0, 0.0]))
        .collect();
    write(&mut index, &docs, &[]);
    let mut request = request(Mode::Dense);
    request.vector = Some(vec![1.0, 0.0, 0.0, 0.0]);
    request.top_k = 3;
    request.group_by = Some(GroupBy {
        field: "meta.source".into(),
        per_group: 2,
    });
    let results = search(&index, None, &request).unwrap();
    let groups: Vec<(Value, Vec<String>)> = results
        .groups
        .clone()
        .unwrap()
        .into_iter()
        .map(|g| (g.value, g.ids))
        .collect();
    assert_eq!(
        groups,
        vec![
            (json!("a"), vec!["a1".to_string(), "a2".into()]),
            (json!("b"), vec!["b1".to_string(), "b2".into()]),
            (json!("c"), vec!["c1".to_string()]),
        ]
    );
    let hits: Vec<&str> = results.hits.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(hits, ["a1", "a2", "b1", "b2", "c1"]);
    // The next page of groups: the documents without the field.
    request.offset = 3;
    let next = search(&index, None, &request).unwrap();
    let groups = next.groups.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(
        (groups[0].value.clone(), groups[0].ids.clone()),
        (Value::Null, vec!["none".to_string()])
    );
    // One per group (a collapse).
    request.offset = 0;
    request.group_by = Some(GroupBy {
        field: "meta.source".into(),
        per_group: 1,
    });
    assert_eq!(ids(&index, &request), ["a1", "b1", "c1"]);
}

#[test]
fn facets_count_every_bm25_match_or_the_ranked_candidates() {
    let dir = tempfile::tempdir().unwrap();
    let index = built(dir.path());
    let corpus = corpus();
    let mut lake = request(Mode::Bm25);
    lake.query = "lake".into();
    lake.top_k = 3;
    lake.facets = vec!["lang".into(), "year".into(), "absent".into()];
    let results = search(&index, None, &lake).unwrap();
    let lang = &results.facets["lang"];
    assert_eq!(lang.counted_over, FacetScope::Matches);
    assert_eq!(lang.documents, 30);
    // Brute force over the corpus: even documents, by language.
    for value in &lang.values {
        let expected = corpus
            .iter()
            .enumerate()
            .filter(|(n, d)| n % 2 == 0 && d.metadata["lang"] == value.value.as_str())
            .count();
        assert_eq!(value.count, expected, "lang={}", value.value);
    }
    assert_eq!(lang.values.iter().map(|v| v.count).sum::<usize>(), 30);
    // Numbers come back as the text their equality filters match.
    let year = &results.facets["year"];
    assert_eq!(year.values.len(), 5);
    assert!(year.values.iter().any(|v| v.value == "2000"));
    assert!(results.facets["absent"].values.is_empty());
    // Dense: the candidates ranked (the request's candidate depth).
    let mut dense = request(Mode::Dense);
    dense.top_k = 3;
    dense.candidates = 12;
    dense.facets = vec!["source".into()];
    let results = search(&index, None, &dense).unwrap();
    let source = &results.facets["source"];
    assert_eq!(source.counted_over, FacetScope::Candidates);
    assert_eq!(source.documents, 12);
    assert_eq!(source.values.iter().map(|v| v.count).sum::<usize>(), 12);
}

#[test]
fn a_cursor_pages_through_the_commit_it_started_on_while_writes_land() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = built(dir.path());
    let mut all = request(Mode::Hybrid);
    all.top_k = 60;
    let before = ids(&index, &all);
    let cursors = Cursors::default();
    let mut page = request(Mode::Hybrid);
    page.top_k = 7;
    let (first, mut cursor) = cursors
        .start("books", index.clone(), None, page.clone())
        .unwrap();
    let mut paged: Vec<String> = first.hits.into_iter().map(|h| h.id).collect();
    // Writes land between pages: new documents that rank first, a document of a later page
    // deleted, another replaced; each commit collects the files it replaced.
    write(
        &mut index,
        &[
            doc(
                "new-1",
                "river river river river river river river river",
                json!({}),
                [1.0, 0.2, 0.0, 0.0],
            ),
            doc("d30", "changed entirely", json!({}), [0.0, 0.0, 1.0, 0.0]),
        ],
        &["d40"],
    );
    write(
        &mut index,
        &[doc("new-2", "river", json!({}), [1.0, 0.2, 0.0, 0.0])],
        &[],
    );
    assert!(cursors
        .next("another-index", cursor.as_deref().unwrap(), None)
        .is_err_and(|e| matches!(e, SearchError::CursorNotFound(_))));
    while let Some(id) = cursor {
        let (results, next) = cursors.next("books", &id, None).unwrap();
        assert_eq!(results.total.value, 60);
        paged.extend(results.hits.into_iter().map(|h| h.id));
        cursor = next;
    }
    assert_eq!(paged, before);
    // The index itself moved on.
    let after = ids(&index, &all);
    assert_ne!(after, before);
    assert!(after.contains(&"new-1".to_string()));
    // The cursor closed after its last page.
    assert!(cursors.is_empty());
}

#[test]
fn cursors_expire_and_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let index = built(dir.path());
    let mut page = request(Mode::Bm25);
    page.top_k = 5;
    let expiring = Cursors::new(Duration::ZERO, 10);
    let (_, cursor) = expiring
        .start("i", index.clone(), None, page.clone())
        .unwrap();
    let error = expiring.next("i", &cursor.unwrap(), None).unwrap_err();
    assert!(
        error.to_string().contains("start the search again"),
        "{error}"
    );
    let bounded = Cursors::new(Duration::from_secs(300), 2);
    for _ in 0..2 {
        bounded
            .start("i", index.clone(), None, page.clone())
            .unwrap();
    }
    assert!(matches!(
        bounded.start("i", index.clone(), None, page.clone()),
        Err(SearchError::TooManyCursors(2))
    ));
    // A search whose only page is its first opens no cursor.
    let mut one_page = page.clone();
    one_page.top_k = 60;
    let unbounded = Cursors::default();
    let (_, cursor) = unbounded.start("i", index, None, one_page).unwrap();
    assert!(cursor.is_none());
}
