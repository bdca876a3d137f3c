//! Pseudo-relevance feedback on small indexes whose answers are known: RM3 finds a document
//! that shares the feedback documents' vocabulary but not the query's words, Rocchio moves the
//! dense query toward the best document, and bad settings are refused with the reason.

use ibex_search::{search, Feedback, FeedbackSource, Mode, SearchError, SearchRequest};
use serde_json::json;

mod common;

use common::{create, doc, write, Doc};

/// Two glacier documents that also speak of moraines, one moraine document without the word
/// glacier, and 30 river documents (so `moraine`, in 3 of 33 documents, stays under RM3's 10%
/// document-frequency cut, and `river` is far over it).
fn corpus() -> Vec<Doc> {
    let mut docs = vec![
        doc(
            "g1",
            "glacier moraine moraine ice",
            json!({}),
            [1.0, 0.0, 0.0, 0.0],
        ),
        doc(
            "g2",
            "glacier moraine valley",
            json!({}),
            [1.0, 0.1, 0.0, 0.0],
        ),
        doc(
            "m1",
            "moraine deposits sediment",
            json!({}),
            [0.0, 1.0, 0.0, 0.0],
        ),
    ];
    for n in 0..30 {
        docs.push(doc(
            &format!("r{n:02}"),
            &format!("river delta flow {n}"),
            json!({}),
            [0.0, 0.0, 1.0, n as f32 / 30.0],
        ));
    }
    docs
}

fn ranked(index: &ibex_indexer::Index, request: &SearchRequest) -> Vec<String> {
    search(index, None, request)
        .unwrap()
        .hits
        .into_iter()
        .map(|h| h.id)
        .collect()
}

fn sorted(ids: &[String]) -> Vec<String> {
    let mut ids = ids.to_vec();
    ids.sort();
    ids
}

#[test]
fn rm3_finds_documents_sharing_the_feedback_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = create(dir.path());
    write(&mut index, &corpus(), &[]);
    let mut request = SearchRequest::new("glacier");
    request.mode = Mode::Bm25;
    request.passages = 0;
    let plain = ranked(&index, &request);
    assert_eq!(sorted(&plain), ["g1", "g2"]);

    request.feedback = Some(Feedback {
        documents: 2,
        terms: 5,
        ..Feedback::default()
    });
    let expanded = ranked(&index, &request);
    assert_eq!(
        expanded.len(),
        3,
        "moraine brings m1, river nothing: {expanded:?}"
    );
    assert_eq!(sorted(&expanded[..2]), ["g1", "g2"]);
    assert_eq!(expanded[2], "m1");

    // Weight 1 on the original query: the same ranking as without feedback.
    request.feedback = Some(Feedback {
        documents: 2,
        original_weight: 1.0,
        ..Feedback::default()
    });
    assert_eq!(ranked(&index, &request), plain);
}

#[test]
fn rocchio_moves_the_dense_query_toward_the_best_document() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = create(dir.path());
    write(
        &mut index,
        &[
            doc("a", "alpha", json!({}), [0.8, 0.6, 0.0, 0.0]),
            doc("b", "beta", json!({}), [0.6, -0.8, 0.0, 0.0]),
            doc("c", "gamma", json!({}), [0.3, 0.95, 0.0, 0.0]),
        ],
        &[],
    );
    let mut request = SearchRequest::new("anything");
    request.mode = Mode::Dense;
    request.passages = 0;
    request.vector = Some(vec![1.0, 0.0, 0.0, 0.0]);
    assert_eq!(ranked(&index, &request), ["a", "b", "c"]);
    // q' = q + 1 x a, renormalized: about (0.95, 0.32), closer to c than to b.
    request.feedback = Some(Feedback {
        documents: 1,
        rocchio_beta: 1.0,
        ..Feedback::default()
    });
    assert_eq!(ranked(&index, &request), ["a", "c", "b"]);
    // Scores are the cosines with the moved query: a's is 0.8 x 0.949 + 0.6 x 0.316.
    let results = search(&index, None, &request).unwrap();
    assert!(
        (results.hits[0].score - 0.9487).abs() < 1e-3,
        "{}",
        results.hits[0].score
    );
}

#[test]
fn bad_feedback_settings_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = create(dir.path());
    write(&mut index, &corpus(), &[]);
    let cases = [
        (
            Mode::Bm25,
            Feedback {
                documents: 0,
                ..Feedback::default()
            },
            "feedback documents",
        ),
        (
            Mode::Bm25,
            Feedback {
                original_weight: 1.5,
                ..Feedback::default()
            },
            "original query's weight",
        ),
        (
            Mode::Bm25,
            Feedback {
                source: FeedbackSource::Fused,
                ..Feedback::default()
            },
            "hybrid mode",
        ),
        (
            Mode::Dense,
            Feedback {
                rocchio_beta: f32::NAN,
                ..Feedback::default()
            },
            "Rocchio weight",
        ),
    ];
    for (mode, feedback, expected) in cases {
        let mut request = SearchRequest::new("glacier");
        request.mode = mode;
        if mode != Mode::Bm25 {
            request.vector = Some(vec![1.0, 0.0, 0.0, 0.0]);
        }
        request.feedback = Some(feedback);
        match search(&index, None, &request) {
            Err(SearchError::InvalidRequest(message)) => {
                assert!(message.contains(expected), "{message}")
            }
            other => panic!("{feedback:?} was not refused: {other:?}"),
        }
    }
}
