//! RAG answers on NQ-open (`ibex eval-rag`): exact match, F1 and answer containment, with and
//! without compression, the tokens sent to the LLM, and how often the grounding rule
//! ([`ibex_pipeline::support`]) flags right and wrong answers.
//!
//! The setting is the compressor's (see [`crate::nq`]); EM and F1 use SQuAD's normalization on the
//! answer's first line with citation markers removed.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use ibex_compressor::{default_compressor, Compressor, IbParams};
use ibex_generator::prompt::AnswerStyle;
use ibex_generator::{FinishReason, Generator};
use ibex_indexer::IndexOptions;
use ibex_pipeline::answer::{build_context, generate_answer};
use ibex_pipeline::check_support;
use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::error::Result;
use crate::metrics::{answer_span, contains_answer, normalize_answer, token_f1};
use crate::nq::{self, NqRun};

/// Answer quality and context size of one configuration.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RagFigures {
    /// Share of questions whose normalized answer equals a normalized gold answer.
    pub exact_match: f64,
    /// Mean over questions of the best token F1 against the gold answers.
    pub f1: f64,
    /// Share of questions whose answer contains a gold answer (lenient; what small models reach).
    pub contains_answer: f64,
    /// Mean prompt tokens sent to the LLM (its own count).
    pub prompt_tokens: f64,
    /// Mean context tokens (the compressor's count) before prompting.
    pub context_tokens: f64,
    /// Mean seconds per answer (generation only).
    pub seconds_per_answer: f64,
    /// Share of answers flagged `supported: false` (a number or name no passage holds).
    pub flagged: f64,
    /// Among answers that contain a gold answer, the share flagged: false alarms (the gold
    /// passage is always in the uncompressed context).
    pub flagged_when_correct: f64,
    /// Among answers that contain no gold answer, the share flagged: what the rule catches of
    /// wrong answers (a wrong answer copied from a distractor is grounded, and passes).
    pub flagged_when_wrong: f64,
}

/// The result of `eval-rag`.
#[derive(Debug, Clone, Serialize)]
pub struct RagEvalReport {
    /// The LLM's name.
    pub model: String,
    /// Questions evaluated.
    pub questions: usize,
    /// Distractor passages per question.
    pub distractors: usize,
    /// Figures with the IB-compressed context.
    pub compressed: RagFigures,
    /// Figures with the whole passages.
    pub uncompressed: RagFigures,
}

/// What one configuration's answer to one question was worth: a checkpoint's record.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct AnswerOutcome {
    exact_match: bool,
    f1: f64,
    contains_answer: bool,
    flagged: bool,
    prompt_tokens: usize,
    context_tokens: usize,
    seconds: f64,
}

/// Evaluates RAG answers in the compressor's NQ setting (each question's gold passage plus
/// `run.distractors` retrieved passages, shuffled): exact match and F1 against the gold answers,
/// with and without compression, and the tokens sent to the LLM. The passage pool is indexed into
/// `index_dir` with `index_options`; `run.checkpoint` makes the run resumable; `progress` hears
/// (done, total) after each question.
pub fn evaluate_rag(
    nq_path: &Path,
    index_dir: &Path,
    index_options: &IndexOptions,
    run: &NqRun,
    generator: &dyn Generator,
    mut progress: impl FnMut(usize, usize),
) -> Result<RagEvalReport> {
    let questions = nq::read_nq(nq_path)?;
    let (index, embedder) = nq::pool_index(&questions, index_dir, index_options)?;
    let compressor = default_compressor(embedder.clone(), IbParams::default());
    let total = questions.len().min(run.limit.unwrap_or(usize::MAX));
    let settings = serde_json::json!({
        "embedder": embedder.model_id(),
        "distractors": run.distractors,
        "selector": format!("{:?}", IbParams::default()),
        "model": generator.model(),
        "max_answer_tokens": MAX_ANSWER_TOKENS,
    });
    let mut checkpoint = Checkpoint::open(run.checkpoint.as_deref(), "eval-rag", settings)?;
    let mut outcomes: Vec<[AnswerOutcome; 2]> = Vec::with_capacity(total);
    for (i, q) in questions.iter().enumerate().take(total) {
        if let Some(outcome) = checkpoint.get(i, &q.question)? {
            outcomes.push(*outcome);
            progress(i + 1, total);
            continue;
        }
        let passages = nq::context(&index, embedder.as_ref(), q, i, run.distractors)?;
        let titles = HashMap::new(); // the passages carry their titles in their text
        let compression = compressor.compress(&q.question, &passages, None)?;
        let answer = |compressed: bool| -> Result<AnswerOutcome> {
            let context = build_context(&passages, &titles, compressed.then_some(&compression));
            let started = Instant::now();
            let (completion, checked) = generate_answer(
                generator,
                &q.question,
                &context,
                AnswerStyle::ShortPhrase,
                MAX_ANSWER_TOKENS,
                &mut |_| {},
            )?;
            let seconds = started.elapsed().as_secs_f64();
            let prediction = normalize_answer(&answer_span(&checked.text));
            let golds: Vec<String> = q.answers.iter().map(|a| normalize_answer(a)).collect();
            let support = check_support(
                &checked.text,
                completion.finish_reason == FinishReason::Length,
                &q.question,
                context
                    .iter()
                    .flat_map(|c| [c.title.as_str(), c.text.as_str()]),
            );
            Ok(AnswerOutcome {
                exact_match: golds.contains(&prediction),
                f1: golds
                    .iter()
                    .map(|g| token_f1(&prediction, g))
                    .fold(0.0, f64::max),
                contains_answer: contains_answer(&checked.text, &q.answers),
                flagged: !support.supported,
                prompt_tokens: completion.prompt_tokens,
                context_tokens: if compressed {
                    compression.kept_tokens
                } else {
                    compression.total_tokens
                },
                seconds,
            })
        };
        let outcome = [answer(true)?, answer(false)?];
        outcomes.push(*checkpoint.record(i, &q.question, outcome)?);
        progress(i + 1, total);
    }
    let figures = |slot: usize| {
        let answers: Vec<&AnswerOutcome> = outcomes.iter().map(|o| &o[slot]).collect();
        let n = answers.len().max(1) as f64;
        let mean =
            |value: fn(&AnswerOutcome) -> f64| answers.iter().map(|a| value(a)).sum::<f64>() / n;
        let share = |part: usize, whole: usize| part as f64 / whole.max(1) as f64;
        let correct = answers.iter().filter(|a| a.contains_answer).count();
        let flagged_correct = answers
            .iter()
            .filter(|a| a.flagged && a.contains_answer)
            .count();
        let flagged_wrong = answers
            .iter()
            .filter(|a| a.flagged && !a.contains_answer)
            .count();
        RagFigures {
            exact_match: mean(|a| a.exact_match as u8 as f64),
            f1: mean(|a| a.f1),
            contains_answer: mean(|a| a.contains_answer as u8 as f64),
            prompt_tokens: mean(|a| a.prompt_tokens as f64),
            context_tokens: mean(|a| a.context_tokens as f64),
            seconds_per_answer: mean(|a| a.seconds),
            flagged: mean(|a| a.flagged as u8 as f64),
            flagged_when_correct: share(flagged_correct, correct),
            flagged_when_wrong: share(flagged_wrong, answers.len() - correct),
        }
    };
    Ok(RagEvalReport {
        model: generator.model().to_string(),
        questions: outcomes.len(),
        distractors: run.distractors,
        compressed: figures(0),
        uncompressed: figures(1),
    })
}

/// The longest answer asked for, in the LLM's tokens: a short phrase.
const MAX_ANSWER_TOKENS: usize = 32;
