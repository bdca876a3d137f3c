//! The information-bottleneck score of a compression (`eval-compress --ib-score`).
//!
//! Zhu et al. (2024, arXiv 2406.01549) judge a compression X̃ of the retrieved passages X by the
//! bottleneck it makes: it should tell the model the output Y (high I(X̃; Y | Q)) while keeping
//! little of X (low I(X̃; X | Q)), L_IB = I(X̃; X | Q) − β I(X̃; Y | Q). Estimated here with the
//! LLM ibex runs, per question:
//! - the answer side as the gain in the model's mean log-probability per token of the gold answer
//!   given the compression, over the same given no context (nats per answer token; the full
//!   context's gain is the ceiling a compression tries to keep);
//! - the compression side as the share of the context's tokens kept (what retention is already
//!   reported beside).
//!
//! The score is gain − β × kept share, higher is better: keeping nothing scores 0, keeping
//! everything scores the full context's gain minus β. Unlike retention, which only asks whether
//! the answer string survived, the gain also sees a kept text that makes the answer likelier
//! without containing it verbatim, and a distractor that makes it less likely.

use std::sync::Arc;

use ibex_generator::Generator;
use serde::Serialize;

use crate::error::Result;

/// The information-bottleneck figures of one method, averaged over questions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct IbFigures {
    /// Mean gain in log P(answer) per answer token given the kept text over given nothing (nats).
    pub answer_gain: f64,
    /// `answer_gain` − β × the mean share of tokens kept.
    pub score: f64,
}

/// Scores kept texts by the likelihood they give a question's gold answer.
pub struct AnswerLikelihood {
    generator: Arc<dyn Generator>,
}

impl AnswerLikelihood {
    /// Scores with `generator`, which must give likelihoods (the embedded model does; a server
    /// must echo prompt log-probabilities, and the error names the missing capability).
    pub fn new(generator: Arc<dyn Generator>) -> Self {
        AnswerLikelihood { generator }
    }

    /// The mean log-probability per token of ` answer` after the question and `context`
    /// (none, or empty, scores the question alone).
    pub fn answer_logprob(
        &self,
        question: &str,
        context: Option<&str>,
        answer: &str,
    ) -> Result<f64> {
        let likelihood = self
            .generator
            .likelihood(&answer_prompt(question, context), &format!(" {answer}"))?;
        Ok(likelihood.mean() as f64)
    }
}

/// The scoring prompt: the context (when there is one), the question, and the answer's cue.
fn answer_prompt(question: &str, context: Option<&str>) -> String {
    match context.filter(|c| !c.trim().is_empty()) {
        Some(context) => format!("Context: {context}\nQuestion: {question}\nAnswer:"),
        None => format!("Question: {question}\nAnswer:"),
    }
}

/// Running sums of one method's gains and kept shares.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct IbTally {
    gain: f64,
    kept_share: f64,
    questions: usize,
}

impl IbTally {
    /// Adds one question: its gain (nats per answer token) and the share of tokens kept.
    pub(crate) fn add(&mut self, gain: f64, kept_share: f64) {
        self.gain += gain;
        self.kept_share += kept_share;
        self.questions += 1;
    }

    /// The averages, with the compression side weighed by `beta`.
    pub(crate) fn figures(&self, beta: f64) -> IbFigures {
        let n = self.questions.max(1) as f64;
        let answer_gain = self.gain / n;
        IbFigures {
            answer_gain,
            score: answer_gain - beta * self.kept_share / n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_without_context_is_the_question_alone() {
        assert_eq!(answer_prompt("who?", None), "Question: who?\nAnswer:");
        assert_eq!(answer_prompt("who?", Some("  ")), "Question: who?\nAnswer:");
        assert_eq!(
            answer_prompt("who?", Some("Ann did.")),
            "Context: Ann did.\nQuestion: who?\nAnswer:"
        );
    }

    #[test]
    fn score_is_gain_less_beta_times_kept_share() {
        let mut tally = IbTally::default();
        tally.add(1.0, 0.1);
        tally.add(0.5, 0.3);
        let f = tally.figures(2.0);
        assert!((f.answer_gain - 0.75).abs() < 1e-12);
        // 0.75 - 2 * 0.2
        assert!((f.score - 0.35).abs() < 1e-12);
        assert_eq!(IbTally::default().figures(1.0), IbFigures::default());
    }
}
