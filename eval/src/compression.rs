//! The compressor on NQ-open (`ibex eval-compress`): compression rate and answer retention of the
//! information-bottleneck selector against baselines at the same token budget.
//!
//! For each question the context is its gold passage plus distractors (see [`crate::nq`]);
//! compression = kept tokens / context tokens (the embedder's tokens), averaged over questions;
//! retention = share of the questions whose context contains a gold answer whose kept text still
//! does. The baselines run in the same pass, at the IB selection's budget for each question
//! (except keep-all and the top-1 passage, whose size is what it is). With `--ib-score`, every
//! method is also scored by the likelihood its kept text gives the gold answer ([`crate::ib_score`]).

use std::path::Path;

use std::sync::Arc;
use std::time::Instant;

use ibex_compressor::{default_compressor, Compression, Compressor, IbParams, LlmScoring, Passage};
use ibex_embedder::TextKind;
use ibex_generator::Generator;
use ibex_indexer::IndexOptions;
use ibex_pipeline::scoring::llm_compressor;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;

use crate::error::Result;
use crate::ib_score::{AnswerLikelihood, IbFigures, IbTally};
use crate::metrics::contains_answer;
use crate::nq;

/// Compression rate and answer retention of one method.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CompressionFigures {
    /// Mean over questions of kept tokens / context tokens.
    pub compression: f64,
    /// Among questions whose full context contains an answer, the share whose kept text does.
    pub retention: f64,
    /// Questions evaluated.
    pub questions: usize,
    /// The information-bottleneck score, when asked for (`ib_score` in the JSON, absent
    /// otherwise).
    #[serde(rename = "ib_score", skip_serializing_if = "Option::is_none")]
    pub information_bottleneck: Option<IbFigures>,
}

/// What the evaluation asks of a language model: usefulness scoring (the LLM cascade), the IB
/// score of every method's result, or both.
pub struct CompressEvalLlm {
    /// The model.
    pub generator: Arc<dyn Generator>,
    /// Score usefulness with the cascade of [`ibex_compressor::LlmScorer`] with these settings.
    pub scoring: Option<LlmScoring>,
    /// Report the IB score with this β (the weight of the kept share against the answer gain).
    pub ib_beta: Option<f64>,
}

/// The result of `eval-compress`.
#[derive(Debug, Clone, Serialize)]
pub struct CompressEvalReport {
    /// The information-bottleneck selector's figures.
    #[serde(flatten)]
    pub ib: CompressionFigures,
    /// Questions whose full context contains an answer (the retention denominator; shown by
    /// the text report, left out of the JSON object whose keys are fixed).
    #[serde(skip)]
    pub answerable: usize,
    /// The baselines' figures by name: `keep_all`, `top1_passage`, `top_sentences` (RECOMP-style:
    /// the sentences most similar to the question) and `random_sentences`.
    pub baselines: std::collections::BTreeMap<String, CompressionFigures>,
    /// The usefulness scorer: `embedding`, or `llm:MODEL` (the cascade of
    /// [`ibex_compressor::LlmScorer`]).
    pub scorer: String,
    /// Mean seconds the selector took per question (scoring included).
    pub seconds_per_question: f64,
    /// Mean calls to the language model per question (0 for the embedding scorer).
    pub model_calls_per_question: f64,
}

/// Keeps sentences in `order` while they fit `budget`; returns the kept text and tokens.
fn keep_in_order(
    compression: &Compression,
    passages: &[Passage],
    order: &[usize],
    budget: usize,
) -> (String, usize) {
    let mut kept = vec![false; compression.sentences.len()];
    let mut tokens = 0;
    for &i in order {
        let s = &compression.sentences[i];
        if tokens + s.tokens <= budget {
            kept[i] = true;
            tokens += s.tokens;
        }
    }
    let text = compression
        .sentences
        .iter()
        .zip(&kept)
        .filter(|(_, k)| **k)
        .map(|(s, _)| {
            let passage = passages
                .iter()
                .find(|p| p.doc_id == s.doc_id)
                .map(|p| p.text.as_str())
                .unwrap_or_default();
            ibex_indexer::slice_chars(passage, s.start, s.end).to_string()
        })
        .collect::<Vec<_>>()
        .join(" ");
    (text, tokens)
}

/// Evaluates the compressor on an NQ-open oracle file: each question's gold passage plus
/// `distractors` passages retrieved (hybrid) from the other questions' passages (indexed into
/// `index_dir` with `index_options`), shuffled. `limit` evaluates the first N questions. `llm`
/// scores usefulness, the results, or both (see [`CompressEvalLlm`]).
pub fn evaluate_compression(
    nq_path: &Path,
    index_dir: &Path,
    index_options: &IndexOptions,
    distractors: usize,
    limit: Option<usize>,
    params: IbParams,
    llm: Option<CompressEvalLlm>,
) -> Result<CompressEvalReport> {
    let questions = nq::read_nq(nq_path)?;
    let (index, embedder) = nq::pool_index(&questions, index_dir, index_options)?;
    // The embedding scorer, or the LLM cascade (whose model calls are counted).
    let embedding = default_compressor(embedder.clone(), params);
    let ib_beta = llm.as_ref().and_then(|l| l.ib_beta);
    let answer_scorer = llm
        .as_ref()
        .filter(|l| l.ib_beta.is_some())
        .map(|l| AnswerLikelihood::new(l.generator.clone()));
    let llm = llm.and_then(|l| {
        let scoring = l.scoring?;
        let name = format!("llm:{}", l.generator.model());
        Some((
            name,
            llm_compressor(embedder.clone(), l.generator, params, scoring),
        ))
    });
    let (compressor, scorer): (&dyn Compressor, String) = match &llm {
        Some((name, compressor)) => (compressor, name.clone()),
        None => (&embedding, "embedding".into()),
    };
    let mut selector_seconds = 0.0;

    #[derive(Default)]
    struct Tally {
        compression: f64,
        retained: usize,
        ib: IbTally,
    }
    let names = [
        "keep_all",
        "top1_passage",
        "top_sentences",
        "random_sentences",
    ];
    let mut ib = Tally::default();
    let mut baselines: Vec<Tally> = names.iter().map(|_| Tally::default()).collect();
    let (mut evaluated, mut answerable) = (0usize, 0usize);
    for (i, q) in questions
        .iter()
        .enumerate()
        .take(limit.unwrap_or(usize::MAX))
    {
        let passages = nq::context(&index, embedder.as_ref(), q, i, distractors)?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(i as u64);
        let full: String = passages
            .iter()
            .map(|p| p.text.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let has_answer = contains_answer(&full, &q.answers);
        let started = Instant::now();
        let compression = compressor.compress(&q.question, &passages, None)?;
        selector_seconds += started.elapsed().as_secs_f64();
        let total = compression.total_tokens.max(1) as f64;
        let budget = compression.kept_tokens;
        evaluated += 1;
        answerable += has_answer as usize;
        ib.compression += compression.rate();
        ib.retained += (has_answer && contains_answer(&compression.text, &q.answers)) as usize;

        // Baselines, at the same token budget as the IB selection for this question.
        baselines[0].compression += 1.0;
        baselines[0].retained += has_answer as usize;
        let query_vector = embedder
            .embed(&[&q.question], TextKind::Query)?
            .pop()
            .unwrap_or_default();
        let mut passage_scores = Vec::with_capacity(passages.len());
        for passage in &passages {
            let vector = match index.doc_chunks(&passage.doc_id) {
                Some(chunks) => index.chunk_vector(chunks.chunk_base)?,
                None => None,
            };
            passage_scores
                .push(vector.map_or(f32::MIN, |v| ibex_indexer::vectors::dot(&query_vector, &v)));
        }
        let best = passages
            .iter()
            .zip(&passage_scores)
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(p, _)| p.doc_id.clone())
            .unwrap_or_default();
        let best_tokens: usize = compression
            .sentences
            .iter()
            .filter(|s| s.doc_id == best)
            .map(|s| s.tokens)
            .sum();
        let best_text = passages
            .iter()
            .find(|p| p.doc_id == best)
            .map(|p| p.text.clone())
            .unwrap_or_default();
        baselines[1].compression += best_tokens as f64 / total;
        baselines[1].retained += (has_answer && contains_answer(&best_text, &q.answers)) as usize;
        let mut by_similarity: Vec<usize> = (0..compression.sentences.len()).collect();
        by_similarity.sort_by(|&a, &b| {
            compression.sentences[b]
                .similarity
                .total_cmp(&compression.sentences[a].similarity)
        });
        let (similar_text, tokens) = keep_in_order(&compression, &passages, &by_similarity, budget);
        let similar_share = tokens as f64 / total;
        baselines[2].compression += similar_share;
        baselines[2].retained +=
            (has_answer && contains_answer(&similar_text, &q.answers)) as usize;
        let mut random: Vec<usize> = (0..compression.sentences.len()).collect();
        random.shuffle(&mut rng);
        let (random_text, tokens) = keep_in_order(&compression, &passages, &random, budget);
        let random_share = tokens as f64 / total;
        baselines[3].compression += random_share;
        baselines[3].retained += (has_answer && contains_answer(&random_text, &q.answers)) as usize;

        if let (Some(scorer), Some(answer)) = (&answer_scorer, q.answers.first()) {
            let nothing = scorer.answer_logprob(&q.question, None, answer)?;
            let gain = |text: &str| -> Result<f64> {
                Ok(scorer.answer_logprob(&q.question, Some(text), answer)? - nothing)
            };
            ib.ib.add(gain(&compression.text)?, compression.rate());
            baselines[0].ib.add(gain(&full)?, 1.0);
            baselines[1]
                .ib
                .add(gain(&best_text)?, best_tokens as f64 / total);
            baselines[2].ib.add(gain(&similar_text)?, similar_share);
            baselines[3].ib.add(gain(&random_text)?, random_share);
        }
    }
    let figures = |t: &Tally| CompressionFigures {
        compression: t.compression / evaluated.max(1) as f64,
        retention: t.retained as f64 / answerable.max(1) as f64,
        questions: evaluated,
        information_bottleneck: ib_beta.map(|beta| t.ib.figures(beta)),
    };
    let calls = llm.map_or(0, |(_, c)| c.scorer().model_calls());
    Ok(CompressEvalReport {
        ib: figures(&ib),
        answerable,
        scorer,
        seconds_per_question: selector_seconds / evaluated.max(1) as f64,
        model_calls_per_question: calls as f64 / evaluated.max(1) as f64,
        baselines: names
            .iter()
            .zip(&baselines)
            .map(|(n, t)| (n.to_string(), figures(t)))
            .collect(),
    })
}
