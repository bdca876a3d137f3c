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
use serde::Serialize;

use crate::error::Result;
use crate::metrics::{answer_span, contains_answer, normalize_answer, token_f1};
use crate::nq;

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

/// Evaluates RAG answers in the compressor's NQ setting (each question's gold passage plus
/// `distractors` retrieved passages, shuffled): exact match and F1 against the gold answers, with
/// and without compression, and the tokens sent to the LLM. The passage pool is indexed into
/// `index_dir` with `index_options`; `progress` hears (done, total) after each question.
pub fn evaluate_rag(
    nq_path: &Path,
    index_dir: &Path,
    index_options: &IndexOptions,
    distractors: usize,
    limit: Option<usize>,
    generator: &dyn Generator,
    mut progress: impl FnMut(usize, usize),
) -> Result<RagEvalReport> {
    let questions = nq::read_nq(nq_path)?;
    let (index, embedder) = nq::pool_index(&questions, index_dir, index_options)?;
    let compressor = default_compressor(embedder.clone(), IbParams::default());
    let total = questions.len().min(limit.unwrap_or(usize::MAX));
    let mut sums = [RagFigures::default(); 2];
    // Per configuration: answers containing a gold answer, and how many of each kind were flagged.
    let mut correct = [0usize; 2];
    let mut flagged_correct = [0usize; 2];
    let mut flagged_wrong = [0usize; 2];
    for (i, q) in questions.iter().enumerate().take(total) {
        let passages = nq::context(&index, embedder.as_ref(), q, i, distractors)?;
        let titles = HashMap::new(); // the passages carry their titles in their text
        let compression = compressor.compress(&q.question, &passages, None)?;
        for (slot, compressed) in [(0, true), (1, false)] {
            let context = build_context(&passages, &titles, compressed.then_some(&compression));
            let started = Instant::now();
            let (completion, checked) = generate_answer(
                generator,
                &q.question,
                &context,
                AnswerStyle::ShortPhrase,
                32,
                &mut |_| {},
            )?;
            let seconds = started.elapsed().as_secs_f64();
            let prediction = normalize_answer(&answer_span(&checked.text));
            let golds: Vec<String> = q.answers.iter().map(|a| normalize_answer(a)).collect();
            let figures = &mut sums[slot];
            figures.exact_match += golds.contains(&prediction) as u8 as f64;
            figures.f1 += golds
                .iter()
                .map(|g| token_f1(&prediction, g))
                .fold(0.0, f64::max);
            let contains = contains_answer(&checked.text, &q.answers);
            figures.contains_answer += contains as u8 as f64;
            let support = check_support(
                &checked.text,
                completion.finish_reason == FinishReason::Length,
                &q.question,
                context
                    .iter()
                    .flat_map(|c| [c.title.as_str(), c.text.as_str()]),
            );
            let flagged = !support.supported;
            figures.flagged += flagged as u8 as f64;
            correct[slot] += contains as usize;
            flagged_correct[slot] += (flagged && contains) as usize;
            flagged_wrong[slot] += (flagged && !contains) as usize;
            figures.prompt_tokens += completion.prompt_tokens as f64;
            figures.context_tokens += if compressed {
                compression.kept_tokens
            } else {
                compression.total_tokens
            } as f64;
            figures.seconds_per_answer += seconds;
        }
        progress(i + 1, total);
    }
    let mean = |f: RagFigures, slot: usize| {
        let n = total.max(1) as f64;
        let share = |part: usize, whole: usize| part as f64 / whole.max(1) as f64;
        RagFigures {
            flagged: f.flagged / n,
            flagged_when_correct: share(flagged_correct[slot], correct[slot]),
            flagged_when_wrong: share(flagged_wrong[slot], total - correct[slot]),
            exact_match: f.exact_match / n,
            f1: f.f1 / n,
            contains_answer: f.contains_answer / n,
            prompt_tokens: f.prompt_tokens / n,
            context_tokens: f.context_tokens / n,
            seconds_per_answer: f.seconds_per_answer / n,
        }
    };
    Ok(RagEvalReport {
        model: generator.model().to_string(),
        questions: total,
        distractors,
        compressed: mean(sums[0], 0),
        uncompressed: mean(sums[1], 1),
    })
}
