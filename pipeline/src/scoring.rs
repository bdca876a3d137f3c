//! The compressor's LLM-scored usefulness on the generator's likelihood seam.
//!
//! `ibex-compressor` scores usefulness through its own small seam ([`TokenLikelihood`]) so that
//! it does not depend on the LLM backends; this adapter gives it any [`Generator`] that returns
//! log-probabilities of a given text (the embedded SmolLM2; HTTP servers that echo prompt
//! log-probabilities, see [`Generator::likelihood`]).

use std::sync::Arc;

use ibex_compressor::{
    CompressError, EmbeddingScorer, IbCompressor, IbParams, LlmScorer, LlmScoring, TokenLikelihood,
};
use ibex_embedder::Embedder;
use ibex_generator::Generator;

/// A generator's log-probabilities, as the compressor's LLM scorer reads them.
pub struct GeneratorLikelihood(pub Arc<dyn Generator>);

impl TokenLikelihood for GeneratorLikelihood {
    fn token_logprobs(
        &self,
        prompt: &str,
        continuation: &str,
    ) -> ibex_compressor::Result<Vec<f32>> {
        self.0
            .likelihood(prompt, continuation)
            .map(|likelihood| likelihood.token_logprobs)
            .map_err(|e| CompressError::Model(e.to_string()))
    }
}

/// The compressor whose sentence usefulness is the embedding similarity refined, for its best
/// candidates, by the likelihood gain `generator` gives the question (see
/// [`ibex_compressor::LlmScorer`]).
pub type LlmCompressor = IbCompressor<LlmScorer<EmbeddingScorer, GeneratorLikelihood>>;

/// An [`LlmCompressor`] with `params` and `scoring`.
pub fn llm_compressor(
    embedder: Arc<dyn Embedder>,
    generator: Arc<dyn Generator>,
    params: IbParams,
    scoring: LlmScoring,
) -> LlmCompressor {
    IbCompressor::new(
        LlmScorer::new(
            EmbeddingScorer::new(embedder),
            GeneratorLikelihood(generator),
            scoring,
        ),
        params,
    )
}

#[cfg(test)]
mod tests {
    use ibex_compressor::UsefulnessScorer;
    use ibex_generator::{Completion, GenerationRequest, Likelihood};

    use super::*;

    /// A generator that can only give likelihoods (`able`), or cannot at all (as a server that
    /// does not echo prompt log-probabilities).
    struct Scoring {
        able: bool,
    }

    impl Generator for Scoring {
        fn model(&self) -> &str {
            "scoring-test"
        }
        fn generate(
            &self,
            _request: &GenerationRequest,
            _on_text: &mut dyn FnMut(&str),
        ) -> ibex_generator::Result<Completion> {
            unreachable!("the scorer never generates")
        }
        fn likelihood(
            &self,
            prompt: &str,
            continuation: &str,
        ) -> ibex_generator::Result<Likelihood> {
            if !self.able {
                return Err(ibex_generator::GeneratorError::Unsupported {
                    backend: self.model().into(),
                    capability: "log-probabilities of a given text".into(),
                });
            }
            let per_token = if prompt.contains("answer") {
                -0.5
            } else {
                -2.5
            };
            Ok(Likelihood {
                token_logprobs: vec![per_token; continuation.split_whitespace().count()],
            })
        }
    }

    #[test]
    fn the_generators_log_probabilities_reach_the_scorer() {
        let model = GeneratorLikelihood(Arc::new(Scoring { able: true }));
        assert_eq!(
            model
                .token_logprobs("Passage: the answer", " who is it")
                .unwrap(),
            vec![-0.5; 3]
        );
    }

    #[test]
    fn a_backend_without_log_probabilities_is_named_in_the_error() {
        let model = GeneratorLikelihood(Arc::new(Scoring { able: false }));
        let error = model.token_logprobs("p", "c").unwrap_err().to_string();
        assert!(
            error.contains("scoring-test") && error.contains("log-probabilities"),
            "{error}"
        );
        // And so is a whole scoring pass that needs them.
        struct Flat;
        impl UsefulnessScorer for Flat {
            fn score(
                &self,
                _: &str,
                texts: &[&str],
            ) -> ibex_compressor::Result<ibex_compressor::TextScores> {
                Ok(ibex_compressor::TextScores {
                    scores: vec![0.5; texts.len()],
                    vectors: None,
                })
            }
            fn count_tokens(&self, text: &str) -> ibex_compressor::Result<usize> {
                Ok(text.len())
            }
        }
        let scorer = ibex_compressor::LlmScorer::new(Flat, model, LlmScoring::default());
        assert!(scorer.score("q", &["a"]).is_err());
    }
}
