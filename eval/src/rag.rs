//! RAG answers on NQ-open (`ibex eval-rag`): exact match, F1 and answer containment, with and
//! without compression, and the tokens sent to the LLM.
//!
//! The setting is the compressor's (see [`crate::nq`]); EM and F1 use SQuAD's normalization on the
//! answer's first line with citation markers removed.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use ibex_compressor::{default_compressor, Compressor, IbParams};
use ibex_generator::prompt::AnswerStyle;
use ibex_generator::Generator;
use ibex_indexer::IndexOptions;
use ibex_pipeline::answer::{build_context, generate_answer};
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
            figures.contains_answer += contains_answer(&checked.text, &q.answers) as u8 as f64;
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
    let mean = |f: RagFigures| {
        let n = total.max(1) as f64;
        RagFigures {
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
        compressed: mean(sums[0]),
        uncompressed: mean(sums[1]),
    })
}
