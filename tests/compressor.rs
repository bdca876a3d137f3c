//! The information-bottleneck compressor on real embeddings.

mod common;

use ibex::compress::default_compressor;
use ibex::compressor::{EmbeddingScorer, IbCompressor, IbParams, Passage, UsefulnessScorer};
use ibex::Compressor;

fn passage(id: &str, text: &str) -> Passage {
    Passage {
        doc_id: id.to_string(),
        text: text.to_string(),
        offset: 0,
    }
}

fn sample() -> Vec<Passage> {
    vec![
        passage("paris", "Paris is the capital of France. The Eiffel Tower was built in 1889 for the World's Fair. It is 330 metres tall. Millions of tourists visit it each year."),
        passage("bread", "Sourdough uses a starter of wild yeast. Long fermentation gives the loaf its tang."),
        passage("london", "London's Big Ben clock tower was completed in 1859. The Thames flows through the city."),
    ]
}

#[test]
fn keeps_the_answer_bearing_sentence_in_original_order() {
    let compressor = default_compressor(common::default_model(), IbParams::default());
    let compression = compressor
        .compress("When was the Eiffel Tower built?", &sample(), None)
        .unwrap();
    assert!(compression.text.contains("1889"), "{}", compression.text);
    assert!(!compression.text.contains("Sourdough"));
    assert!(compression.kept_tokens < compression.total_tokens / 2);
    let span = &compression.spans[0];
    assert_eq!(span.doc_id, "paris");
    let kept: String = sample()[0]
        .text
        .chars()
        .skip(span.start)
        .take(span.end - span.start)
        .collect();
    assert!(
        compression.text.starts_with(&kept),
        "spans point into the passage text"
    );
    // Spans come in original order.
    assert!(compression
        .spans
        .windows(2)
        .all(
            |w| (w[0].doc_id.as_str(), w[0].start) <= (w[1].doc_id.as_str(), w[1].start)
                || w[0].doc_id != w[1].doc_id
        ));
}

#[test]
fn the_budget_is_never_exceeded() {
    let params = IbParams {
        relevance_floor: -1.0,
        beta: 0.0,
        redundancy: 0.0,
        ..IbParams::default()
    };
    let compressor = default_compressor(common::default_model(), params);
    for budget in [0, 3, 8, 15, 30, 1000] {
        let c = compressor
            .compress("towers and clocks", &sample(), Some(budget))
            .unwrap();
        assert!(
            c.kept_tokens <= budget,
            "budget {budget}: kept {}",
            c.kept_tokens
        );
        let counted: usize = c
            .sentences
            .iter()
            .filter(|s| s.kept)
            .map(|s| s.tokens)
            .sum();
        assert_eq!(counted, c.kept_tokens);
    }
    // With no budget and no costs, everything useful is kept.
    let all = compressor
        .compress("towers and clocks", &sample(), Some(usize::MAX))
        .unwrap();
    assert_eq!(all.kept_tokens, all.total_tokens);
}

#[test]
fn empty_input_and_useless_context_give_empty_results() {
    let compressor = default_compressor(common::default_model(), IbParams::default());
    let empty = compressor.compress("anything", &[], None).unwrap();
    assert_eq!(
        (empty.total_tokens, empty.kept_tokens, empty.text.as_str()),
        (0, 0, "")
    );
    let blank = compressor
        .compress("anything", &[passage("x", "   ")], None)
        .unwrap();
    assert!(blank.sentences.is_empty());
    let useless = compressor
        .compress(
            "quantum chromodynamics and gluon confinement",
            &sample()[1..2],
            None,
        )
        .unwrap();
    assert!(
        useless.text.is_empty(),
        "nothing useful is kept: {:?}",
        useless.text
    );
    assert!(useless.total_tokens > 0);
}

/// Counts the texts the real embedding scorer is asked to score: the bound on the work a very
/// large input causes, observed directly rather than through a wall-clock limit.
struct CountingScorer {
    inner: EmbeddingScorer,
    scored: std::cell::RefCell<Vec<usize>>,
}

impl UsefulnessScorer for CountingScorer {
    fn score(
        &self,
        query: &str,
        texts: &[&str],
    ) -> ibex::compressor::Result<ibex::compressor::TextScores> {
        self.scored.borrow_mut().push(texts.len());
        self.inner.score(query, texts)
    }

    fn count_tokens(&self, text: &str) -> ibex::compressor::Result<usize> {
        self.inner.count_tokens(text)
    }
}

#[test]
fn a_very_large_passage_list_is_bounded() {
    let params = IbParams {
        max_sentences: 300,
        ..IbParams::default()
    };
    let scorer = CountingScorer {
        inner: EmbeddingScorer::new(common::default_model()),
        scored: Default::default(),
    };
    let compressor = IbCompressor::new(scorer, params);
    let many: Vec<Passage> = (0..5000)
        .map(|i| {
            passage(
                &format!("p{i}"),
                &format!("Filler sentence number {i}. Another filler line here."),
            )
        })
        .collect();
    let c = compressor.compress("filler", &many, Some(50)).unwrap();
    assert_eq!(c.sentences.len(), 10_000);
    assert!(
        c.sentences[300..].iter().all(|s| !s.kept),
        "sentences past the cap are never kept"
    );
    assert!(c.kept_tokens <= 50);
    // 300 sentences, then the 150 passages they come from: nothing past the cap is embedded.
    assert_eq!(compressor_scored(&compressor), [300, 150]);
}

fn compressor_scored(compressor: &IbCompressor<CountingScorer>) -> Vec<usize> {
    compressor.scorer().scored.borrow().clone()
}
