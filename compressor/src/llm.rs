//! LLM-scored usefulness: how much a text makes the question likelier to a language model.
//!
//! A bi-encoder's cosine says a sentence is about the question's topic, not that it answers it
//! (EVALUATION.md: the selector's misses are answer sentences ranked below sentences restating
//! the question's entity). Zhu et al. (2024) score a compression by what it does to a language
//! model's likelihood; without the answer at inference, the quantity here is the one UPR (Sachan
//! et al. 2022) ranks passages by: the gain in log P(question | text) over log P(question | no
//! text), per question token, so that it is on the same footing for every text. Scoring every
//! sentence with an LLM is expensive, so a cascade bounds it: the first scorer (embedding
//! similarity) ranks the texts and only its best `shortlist` are scored by the model; the rest
//! keep their first-stage score. A text's usefulness is its first-stage score plus `weight` times
//! its gain, which keeps the selector's floor and parameters meaningful.
//!
//! Zhu et al. score the output, not the question; at inference the output is unknown, so
//! [`ScoringTarget::DraftAnswer`] first has the model write a short draft answer from the first
//! stage's best texts, then scores the gain in log P(draft | text, question) over
//! log P(draft | question). It costs one generation a question more, and a wrong draft rewards
//! the texts that support it: EVALUATION.md measures both targets.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::ib::{TextScores, UsefulnessScorer};
use crate::{CompressError, Result};

/// log P(continuation | prompt) from a language model, token by token: what LLM-scored usefulness
/// needs of a model (the generator crate's models provide it; this crate does not depend on them).
pub trait TokenLikelihood: Send + Sync {
    /// The natural-log probability of each token of `continuation` after `prompt`.
    fn token_logprobs(&self, prompt: &str, continuation: &str) -> Result<Vec<f32>>;

    /// A short answer to `question` from `passages` (for [`ScoringTarget::DraftAnswer`]); a model
    /// that only scores cannot write one.
    fn draft_answer(&self, question: &str, passages: &[&str]) -> Result<String> {
        let _ = (question, passages);
        Err(CompressError::InvalidRequest(
            "this model only scores text; draft-answer scoring needs one that generates".into(),
        ))
    }
}

/// What the model's likelihood is taken of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScoringTarget {
    /// The question given the text (UPR's quantity).
    #[default]
    Question,
    /// A draft answer the model writes first from the first stage's best texts, given the text
    /// and the question (Zhu et al.'s output side, with the draft standing in for the output).
    DraftAnswer,
}

/// First-stage texts a draft answer is written from.
const DRAFT_TEXTS: usize = 3;

/// The cascade's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LlmScoring {
    /// Texts (sentences, or passages) the model scores per call, best first by the first stage.
    pub shortlist: usize,
    /// Weight of the likelihood gain (nats per scored token) added to the first-stage score.
    pub weight: f32,
    /// What the likelihood is taken of.
    pub target: ScoringTarget,
}

impl Default for LlmScoring {
    fn default() -> Self {
        LlmScoring {
            shortlist: 8,
            weight: 0.2,
            target: ScoringTarget::Question,
        }
    }
}

/// A [`UsefulnessScorer`] that refines `first`'s scores of its best texts by the likelihood gain
/// a language model gives the question.
pub struct LlmScorer<F: UsefulnessScorer, M: TokenLikelihood> {
    first: F,
    model: M,
    scoring: LlmScoring,
    /// Model calls made so far (the cost per question, for reports).
    calls: AtomicUsize,
    /// The last query's draft answer: a compression scores sentences, then passages, of one
    /// query, and both are scored against the same draft.
    draft: Mutex<Option<(String, String)>>,
}

impl<F: UsefulnessScorer, M: TokenLikelihood> LlmScorer<F, M> {
    /// A cascade of `first` then `model`.
    pub fn new(first: F, model: M, scoring: LlmScoring) -> Self {
        LlmScorer {
            first,
            model,
            scoring,
            calls: AtomicUsize::new(0),
            draft: Mutex::new(None),
        }
    }

    /// Calls made to the model since this scorer was made.
    pub fn model_calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }

    /// Mean log-probability per token of what is scored (`target`) after `text`.
    fn target_logprob(&self, text: &str, query: &str, target: &Target) -> Result<f32> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let (prompt, continuation) = match target {
            Target::Question => (
                format!("Passage: {text}\nA question this passage answers:"),
                format!(" {query}"),
            ),
            Target::Draft(draft) if text.is_empty() => {
                (format!("Question: {query}\nAnswer:"), format!(" {draft}"))
            }
            Target::Draft(draft) => (
                format!("Context: {text}\nQuestion: {query}\nAnswer:"),
                format!(" {draft}"),
            ),
        };
        let logprobs = self.model.token_logprobs(&prompt, &continuation)?;
        if logprobs.is_empty() {
            return Err(CompressError::InvalidRequest(
                "the question has no tokens to score".into(),
            ));
        }
        Ok(logprobs.iter().sum::<f32>() / logprobs.len() as f32)
    }

    /// What this query's texts are scored against: the question, or the query's draft answer
    /// (written on the query's first call from its best [`DRAFT_TEXTS`] texts, `order` being
    /// best first; the question if the draft comes out empty).
    fn target(&self, query: &str, texts: &[&str], order: &[usize]) -> Result<Target> {
        if self.scoring.target == ScoringTarget::Question {
            return Ok(Target::Question);
        }
        let mut last = self
            .draft
            .lock()
            .map_err(|_| CompressError::Model("a previous scoring call panicked".into()))?;
        let draft = match &*last {
            Some((for_query, draft)) if for_query == query => draft.clone(),
            _ => {
                self.calls.fetch_add(1, Ordering::Relaxed);
                let best: Vec<&str> = order.iter().take(DRAFT_TEXTS).map(|&i| texts[i]).collect();
                let draft = self.model.draft_answer(query, &best)?.trim().to_string();
                *last = Some((query.to_string(), draft.clone()));
                draft
            }
        };
        Ok(if draft.is_empty() {
            Target::Question
        } else {
            Target::Draft(draft)
        })
    }
}

/// What one scoring call takes the likelihood of.
enum Target {
    Question,
    Draft(String),
}

impl<F: UsefulnessScorer, M: TokenLikelihood> UsefulnessScorer for LlmScorer<F, M> {
    fn score(&self, query: &str, texts: &[&str]) -> Result<TextScores> {
        let mut scores = self.first.score(query, texts)?;
        if texts.is_empty() || self.scoring.shortlist == 0 || self.scoring.weight == 0.0 {
            return Ok(scores);
        }
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by(|&a, &b| {
            scores.scores[b]
                .total_cmp(&scores.scores[a])
                .then(a.cmp(&b))
        });
        let target = self.target(query, texts, &order)?;
        order.truncate(self.scoring.shortlist);
        let without = self.target_logprob("", query, &target)?;
        for i in order {
            let gain = self.target_logprob(texts[i], query, &target)? - without;
            scores.scores[i] += self.scoring.weight * gain;
        }
        Ok(scores)
    }

    fn count_tokens(&self, text: &str) -> Result<usize> {
        self.first.count_tokens(text)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// First-stage scores fixed per text.
    struct Fixed(Vec<(&'static str, f32)>);

    impl UsefulnessScorer for Fixed {
        fn score(&self, _query: &str, texts: &[&str]) -> Result<TextScores> {
            Ok(TextScores {
                scores: texts
                    .iter()
                    .map(|t| self.0.iter().find(|(f, _)| f == t).map_or(0.0, |(_, s)| *s))
                    .collect(),
                vectors: None,
            })
        }
        fn count_tokens(&self, text: &str) -> Result<usize> {
            Ok(text.split_whitespace().count())
        }
    }

    /// A model to which the question is likelier after a text holding "1889", and which records
    /// the prompts it scored.
    struct Model(Mutex<Vec<String>>);

    impl TokenLikelihood for Model {
        fn token_logprobs(&self, prompt: &str, continuation: &str) -> Result<Vec<f32>> {
            self.0
                .lock()
                .unwrap()
                .push(format!("{prompt}|{continuation}"));
            let per_token = if prompt.contains("1889") { -1.0 } else { -3.0 };
            Ok(vec![per_token; continuation.split_whitespace().count()])
        }

        /// Answers from the texts it is shown, and records them.
        fn draft_answer(&self, _question: &str, passages: &[&str]) -> Result<String> {
            self.0
                .lock()
                .unwrap()
                .push(format!("draft from {}", passages.join(" / ")));
            Ok("In 1889 .".into())
        }
    }

    /// Four texts about a tower, first-stage scores 0.6 to 0.1, and the recording model.
    fn tower_scorer(
        shortlist: usize,
        weight: f32,
        target: ScoringTarget,
    ) -> LlmScorer<Fixed, Model> {
        let first = Fixed(vec![
            ("It is in Paris.", 0.6),
            ("It was built in 1889.", 0.5),
            ("Paris has museums.", 0.4),
            ("Bread needs yeast.", 0.1),
        ]);
        let scoring = LlmScoring {
            shortlist,
            weight,
            target,
        };
        LlmScorer::new(first, Model(Mutex::new(Vec::new())), scoring)
    }

    #[test]
    fn a_draft_answer_is_written_once_per_query_and_scored_given_each_text() {
        let scorer = tower_scorer(2, 0.5, ScoringTarget::DraftAnswer);
        let texts = [
            "Bread needs yeast.",
            "It was built in 1889.",
            "It is in Paris.",
            "Paris has museums.",
        ];
        let query = "When was the tower built?";
        let scores = scorer.score(query, &texts).unwrap().scores;
        // The 3-token draft scores -1 a token after the 1889 text, -3 elsewhere.
        assert_eq!(scores, vec![0.1, 0.5 + 0.5 * 2.0, 0.6, 0.4]);
        // A second call for the same query (the passages) reuses the draft.
        scorer.score(query, &texts[..2]).unwrap();
        let prompts = scorer.model.0.lock().unwrap().clone();
        let drafts: Vec<&String> = prompts.iter().filter(|p| p.starts_with("draft")).collect();
        assert_eq!(
            drafts,
            ["draft from It is in Paris. / It was built in 1889. / Paris has museums."]
        );
        assert!(prompts.contains(&format!("Question: {query}\nAnswer:| In 1889 .")));
        assert!(prompts.contains(&format!(
            "Context: It was built in 1889.\nQuestion: {query}\nAnswer:| In 1889 ."
        )));
        // One draft, then per call a baseline and the shortlist: 1 + 3 + 3.
        assert_eq!(scorer.model_calls(), 7);
    }

    #[test]
    fn the_models_gain_reorders_the_shortlist_and_nothing_else() {
        let scorer = tower_scorer(3, 0.2, ScoringTarget::Question);
        let texts = [
            "It is in Paris.",
            "It was built in 1889.",
            "Paris has museums.",
            "Bread needs yeast.",
        ];
        let scores = scorer
            .score("When was the tower built?", &texts)
            .unwrap()
            .scores;
        // Gains: 2 nats per token for the 1889 sentence, 0 for the others; the fourth text is
        // past the shortlist and keeps its first-stage score.
        assert_eq!(scores, vec![0.6, 0.5 + 0.2 * 2.0, 0.4, 0.1]);
        // One call without a text, then one per shortlisted text.
        assert_eq!(scorer.model_calls(), 4);
        let prompts = scorer.model.0.lock().unwrap().clone();
        assert!(prompts.iter().all(|p| !p.contains("Bread")), "{prompts:?}");
        assert!(prompts
            .iter()
            .all(|p| p.ends_with("| When was the tower built?")));
    }

    #[test]
    fn a_weight_of_zero_never_calls_the_model() {
        let scorer = LlmScorer::new(
            Fixed(vec![("a", 0.3)]),
            Model(Mutex::new(Vec::new())),
            LlmScoring {
                shortlist: 8,
                weight: 0.0,
                target: ScoringTarget::Question,
            },
        );
        assert_eq!(scorer.score("q", &["a"]).unwrap().scores, vec![0.3]);
        assert_eq!(scorer.model_calls(), 0);
    }
}
