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
use ibex_embedder::{Embedder, TextKind};
use ibex_generator::Generator;
use ibex_indexer::{Index, IndexOptions};
use ibex_pipeline::scoring::llm_compressor;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::error::Result;
use crate::ib_score::{AnswerLikelihood, IbFigures, IbTally};
use crate::metrics::contains_answer;
use crate::nq::{self, NqRun};

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

/// The methods of a report, in the order of [`QuestionOutcome::methods`]: the selector, then
/// the baselines.
const METHODS: [&str; 5] = [
    "ib",
    "keep_all",
    "top1_passage",
    "top_sentences",
    "random_sentences",
];

/// What one method did with one question's context.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct MethodOutcome {
    /// Kept tokens / context tokens.
    kept_share: f64,
    /// Whether the kept text still contains a gold answer (false where the context has none).
    retained: bool,
    /// With `--ib-score`: the gain in the answer's log-probability per token over no context.
    answer_gain: Option<f64>,
}

/// One question's result: what a checkpoint stores, and what the report averages.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct QuestionOutcome {
    /// Whether the whole context contains a gold answer.
    has_answer: bool,
    /// Seconds the selector took (scoring included).
    selector_seconds: f64,
    /// Calls to the language model the selector made.
    model_calls: usize,
    /// Per method, in the order of [`METHODS`].
    methods: Vec<MethodOutcome>,
}

/// Evaluates the compressor on an NQ-open oracle file: each question's gold passage plus
/// `run.distractors` passages retrieved (hybrid) from the other questions' passages (indexed into
/// `index_dir` with `index_options`), shuffled. `run.limit` evaluates the first N questions;
/// `run.checkpoint` makes the run resumable. `llm` scores usefulness, the results, or both (see
/// [`CompressEvalLlm`]).
pub fn evaluate_compression(
    nq_path: &Path,
    index_dir: &Path,
    index_options: &IndexOptions,
    run: &NqRun,
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
    let model = llm.as_ref().map(|l| l.generator.model().to_string());
    let scoring = llm.as_ref().and_then(|l| l.scoring);
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
    let settings = serde_json::json!({
        "embedder": embedder.model_id(),
        "distractors": run.distractors,
        "selector": format!("{params:?}"),
        "scoring": scoring.map(|s| format!("{s:?}")),
        "model": model,
        "ib_score": ib_beta.is_some(),
    });
    let mut checkpoint: Checkpoint<QuestionOutcome> =
        Checkpoint::open(run.checkpoint.as_deref(), "eval-compress", settings)?;
    let mut outcomes = Vec::new();
    for (i, q) in questions
        .iter()
        .enumerate()
        .take(run.limit.unwrap_or(usize::MAX))
    {
        if let Some(outcome) = checkpoint.get(i, &q.question)? {
            outcomes.push(outcome.clone());
            continue;
        }
        let calls_before = llm.as_ref().map_or(0, |(_, c)| c.scorer().model_calls());
        let (mut outcome, texts) =
            compress_one(q, i, &index, embedder.as_ref(), compressor, run.distractors)?;
        outcome.model_calls =
            llm.as_ref().map_or(0, |(_, c)| c.scorer().model_calls()) - calls_before;
        if let (Some(scorer), Some(answer)) = (&answer_scorer, q.answers.first()) {
            let nothing = scorer.answer_logprob(&q.question, None, answer)?;
            for (method, text) in outcome.methods.iter_mut().zip(&texts) {
                let given = scorer.answer_logprob(&q.question, Some(text), answer)?;
                method.answer_gain = Some(given - nothing);
            }
        }
        outcomes.push(checkpoint.record(i, &q.question, outcome)?.clone());
    }
    Ok(report(&outcomes, scorer, ib_beta))
}

/// Compresses one question's context with the selector and the baselines (at the selector's
/// budget); returns the outcome (without model calls or answer gains) and each method's kept
/// text, in the order of [`METHODS`].
fn compress_one(
    q: &nq::NqQuestion,
    position: usize,
    index: &Index,
    embedder: &dyn Embedder,
    compressor: &dyn Compressor,
    distractors: usize,
) -> Result<(QuestionOutcome, Vec<String>)> {
    let passages = nq::context(index, embedder, q, position, distractors)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(position as u64);
    let full: String = passages
        .iter()
        .map(|p| p.text.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let has_answer = contains_answer(&full, &q.answers);
    let started = Instant::now();
    let compression = compressor.compress(&q.question, &passages, None)?;
    let selector_seconds = started.elapsed().as_secs_f64();
    let total = compression.total_tokens.max(1) as f64;
    let budget = compression.kept_tokens;

    // The top-1 passage by the query's similarity to the passage's first chunk.
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
    let mut by_similarity: Vec<usize> = (0..compression.sentences.len()).collect();
    by_similarity.sort_by(|&a, &b| {
        compression.sentences[b]
            .similarity
            .total_cmp(&compression.sentences[a].similarity)
    });
    let (similar_text, similar_tokens) =
        keep_in_order(&compression, &passages, &by_similarity, budget);
    let mut random: Vec<usize> = (0..compression.sentences.len()).collect();
    random.shuffle(&mut rng);
    let (random_text, random_tokens) = keep_in_order(&compression, &passages, &random, budget);

    let kept = [
        (compression.rate(), compression.text.clone()),
        (1.0, full),
        (best_tokens as f64 / total, best_text),
        (similar_tokens as f64 / total, similar_text),
        (random_tokens as f64 / total, random_text),
    ];
    let methods = kept
        .iter()
        .map(|(kept_share, text)| MethodOutcome {
            kept_share: *kept_share,
            retained: has_answer && contains_answer(text, &q.answers),
            answer_gain: None,
        })
        .collect();
    let outcome = QuestionOutcome {
        has_answer,
        selector_seconds,
        model_calls: 0,
        methods,
    };
    Ok((outcome, kept.into_iter().map(|(_, text)| text).collect()))
}

/// The report of the questions' outcomes.
fn report(
    outcomes: &[QuestionOutcome],
    scorer: String,
    ib_beta: Option<f64>,
) -> CompressEvalReport {
    let evaluated = outcomes.len();
    let answerable = outcomes.iter().filter(|o| o.has_answer).count();
    let figures = |method: usize| {
        let mut tally = IbTally::default();
        let (mut compression, mut retained) = (0.0, 0usize);
        for outcome in outcomes {
            let m = &outcome.methods[method];
            compression += m.kept_share;
            retained += m.retained as usize;
            if let Some(gain) = m.answer_gain {
                tally.add(gain, m.kept_share);
            }
        }
        CompressionFigures {
            compression: compression / evaluated.max(1) as f64,
            retention: retained as f64 / answerable.max(1) as f64,
            questions: evaluated,
            information_bottleneck: ib_beta.map(|beta| tally.figures(beta)),
        }
    };
    let per_question = |total: f64| total / evaluated.max(1) as f64;
    CompressEvalReport {
        ib: figures(0),
        answerable,
        scorer,
        seconds_per_question: per_question(outcomes.iter().map(|o| o.selector_seconds).sum()),
        model_calls_per_question: per_question(outcomes.iter().map(|o| o.model_calls as f64).sum()),
        baselines: METHODS
            .iter()
            .enumerate()
            .skip(1)
            .map(|(method, name)| (name.to_string(), figures(method)))
            .collect(),
    }
}
