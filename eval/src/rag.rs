//! RAG answers over an index directory (`ibex ask`) and their evaluation on NQ (`ibex eval-rag`).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use ibex_compressor::answers::normalize_answer;
use ibex_compressor::{Compressor, IbParams};
use ibex_generator::prompt::AnswerStyle;
use ibex_pipeline::answer::{build_context, generate_answer};
use ibex_pipeline::{AnswerOptions, RagAnswer};
use serde::Serialize;

use crate::compress::{default_compressor, nq_context, nq_pool_index, read_nq};
use crate::{open_index, Generator, Result};

/// Answers `question` from the index at `dir` with `generator` (`ibex ask`).
pub fn ask(
    dir: &Path,
    question: &str,
    generator: &dyn Generator,
    options: &AnswerOptions,
    on_text: &mut dyn FnMut(&str),
) -> Result<RagAnswer> {
    let (index, embedder) = open_index(dir, None)?;
    let compressor = default_compressor(embedder.clone(), IbParams::default());
    Ok(ibex_pipeline::answer(
        &index,
        embedder.as_ref(),
        &compressor,
        generator,
        question,
        options,
        on_text,
    )?)
}

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
    pub model: String,
    pub questions: usize,
    pub distractors: usize,
    pub compressed: RagFigures,
    pub uncompressed: RagFigures,
}

/// The answer of a generation without its citation markers and anything after its first line.
fn answer_span(text: &str) -> String {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let mut out = String::new();
    let mut depth = 0;
    for c in first.chars() {
        match c {
            '[' => depth += 1,
            ']' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.trim().to_string()
}

/// Token-level F1 of two normalized answers (SQuAD's definition).
fn token_f1(prediction: &str, gold: &str) -> f64 {
    let p: Vec<&str> = prediction.split_whitespace().collect();
    let g: Vec<&str> = gold.split_whitespace().collect();
    if p.is_empty() || g.is_empty() {
        return (p.is_empty() && g.is_empty()) as u8 as f64;
    }
    let mut counts: HashMap<&str, i32> = HashMap::new();
    for t in &g {
        *counts.entry(t).or_default() += 1;
    }
    let mut common = 0;
    for t in &p {
        if let Some(c) = counts.get_mut(t) {
            if *c > 0 {
                *c -= 1;
                common += 1;
            }
        }
    }
    if common == 0 {
        return 0.0;
    }
    let precision = common as f64 / p.len() as f64;
    let recall = common as f64 / g.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// Evaluates RAG answers in the compressor's NQ setting (each question's gold passage plus
/// `distractors` retrieved passages, shuffled): exact match and F1 against the gold answers, with
/// and without compression, and the tokens sent to the LLM.
pub fn evaluate_rag(
    nq_path: &Path,
    index_dir: &Path,
    distractors: usize,
    limit: Option<usize>,
    generator: &dyn Generator,
    mut progress: impl FnMut(usize, usize),
) -> Result<RagEvalReport> {
    let questions = read_nq(nq_path)?;
    let (index, embedder) = nq_pool_index(&questions, index_dir)?;
    let compressor = default_compressor(embedder.clone(), IbParams::default());
    let total = questions.len().min(limit.unwrap_or(usize::MAX));
    let mut sums = [RagFigures::default(); 2];
    for (i, q) in questions.iter().enumerate().take(total) {
        let passages = nq_context(&index, embedder.as_ref(), q, i, distractors)?;
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
            figures.contains_answer +=
                ibex_compressor::answers::contains_answer(&checked.text, &q.answers) as u8 as f64;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_span_drops_citations_and_later_lines() {
        assert_eq!(
            answer_span("Kingsford, Michigan [2]\nBecause..."),
            "Kingsford, Michigan"
        );
        assert_eq!(answer_span("\n[1] Paris"), "Paris");
    }

    #[test]
    fn f1_matches_squad() {
        assert!((token_f1("kingsford michigan", "kingsford") - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(token_f1("paris", "london"), 0.0);
        assert_eq!(token_f1("a b", "a b"), 1.0);
    }
}
