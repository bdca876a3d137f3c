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
use ibex_generator::prompt::{answer_span, rag_messages, AnswerStyle, ContextPassage};
use ibex_generator::{GenerationRequest, Generator};

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

    /// The model's short answer from the passages, as `ibex ask` would prompt it, without its
    /// citation markers and anything after its first line.
    fn draft_answer(&self, question: &str, passages: &[&str]) -> ibex_compressor::Result<String> {
        let shown: Vec<ContextPassage> = passages
            .iter()
            .map(|text| ContextPassage {
                title: String::new(),
                text: text.to_string(),
            })
            .collect();
        let mut request =
            GenerationRequest::new(rag_messages(question, &shown, AnswerStyle::ShortPhrase));
        request.max_tokens = DRAFT_TOKENS;
        let completion = self
            .0
            .generate(&request, &mut |_| {})
            .map_err(|e| CompressError::Model(e.to_string()))?;
        Ok(answer_span(&completion.text))
    }
}

/// The longest draft answer, in the model's tokens: a short phrase.
const DRAFT_TOKENS: usize = 24;

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
    use ibex_generator::{Completion, Likelihood};

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
        /// Answers as small models do: a citation, then an explanation on the next line.
        fn generate(
            &self,
            request: &GenerationRequest,
            _on_text: &mut dyn FnMut(&str),
        ) -> ibex_generator::Result<Completion> {
            let prompt: String = request
                .messages
                .iter()
                .map(|m| m.content.as_str())
                .collect();
            assert!(
                prompt.contains("built in 1889") && prompt.contains("When"),
                "{prompt}"
            );
            Ok(Completion {
                text: "In 1889 [1]\nBecause the fair was then.".into(),
                finish_reason: ibex_generator::FinishReason::Stop,
                prompt_tokens: 30,
                completion_tokens: 12,
                constrained: false,
            })
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
    fn a_draft_answer_is_the_generations_first_line_without_citations() {
        let model = GeneratorLikelihood(Arc::new(Scoring { able: true }));
        let draft = model
            .draft_answer("When was it built?", &["It was built in 1889."])
            .unwrap();
        assert_eq!(draft, "In 1889");
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
