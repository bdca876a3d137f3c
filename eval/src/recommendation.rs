//! Generative recommendation on MovieLens-100k with leave-one-out (`ibex eval-recommend`).
//!
//! The catalog is the movies (title with year, genres); each user's ratings sorted by timestamp,
//! the last held out, the rest the history, which also feeds the co-occurrence. Metrics over the
//! full catalog minus the history (no sampled negatives).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use ibex_generator::Generator;
use ibex_indexer::{index_corpus, open_index, IndexOptions};
use ibex_pipeline::interactions::{CoOccurrence, Interactions};
use ibex_pipeline::recommend::{candidates, ItemCatalog};
use ibex_pipeline::RecommendOptions;
use serde::Serialize;

use crate::error::{EvalError, Result};
use crate::metrics::top_n::TOP_N;
use crate::metrics::{RankingFigures, TopNTally};

/// The result of `eval-recommend`; the JSON keys are the ones the issue names.
#[derive(Debug, Clone, Serialize)]
pub struct RecommendEvalReport {
    /// HR@10 of the full pipeline.
    #[serde(rename = "hr@10")]
    pub hr_at_10: f64,
    /// NDCG@10 of the full pipeline.
    #[serde(rename = "ndcg@10")]
    pub ndcg_at_10: f64,
    /// Users evaluated with the full pipeline.
    pub users: usize,
    /// Share of the LLM's outputs naming an item that was not a candidate.
    pub candidate_error_rate: f64,
    /// Share of the LLM's outputs naming an item twice.
    pub duplicate_rate: f64,
    /// Share of the LLM's outputs naming an item of the user's history.
    pub history_repeat_rate: f64,
    /// Share of the LLM's outputs with lines that are not `ID: reason`.
    pub unparseable_rate: f64,
    /// Share of users whose final list fell back to the candidate ranking.
    pub fallback_rate: f64,
    /// Whether the LLM decoded under the candidate grammar.
    pub constrained: bool,
    /// The LLM's name (or that none ran).
    pub model: String,
    /// Baselines over the same users: popularity, item_knn, embedding, and two ablations of the
    /// pipeline (`candidates`: its candidate ranking without the LLM; `llm_order`: the LLM's list
    /// alone, without fusing it with the candidate ranking).
    pub baselines: std::collections::BTreeMap<String, RankingFigures>,
    /// HR@10 and NDCG@10 of the final ranking at other weights of the LLM's order in the fusion
    /// (same LLM outputs), keyed by weight.
    pub llm_weight_sweep: std::collections::BTreeMap<String, RankingFigures>,
    /// Mean seconds per user of the LLM step.
    pub seconds_per_user: f64,
}

/// Reads MovieLens's `u.item` (and `u.genre`) as catalog documents: id, title, genres and date.
fn movielens_items(dir: &Path) -> Result<Vec<serde_json::Value>> {
    let genre_path = dir.join("u.genre");
    let genres: Vec<String> = std::fs::read_to_string(&genre_path)
        .map_err(EvalError::io(format!("reading {}", genre_path.display())))?
        .lines()
        .filter_map(|l| l.split('|').next())
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect();
    let item_path = dir.join("u.item");
    let bytes = std::fs::read(&item_path)
        .map_err(EvalError::io(format!("reading {}", item_path.display())))?;
    // The official file is Latin-1; decode byte by byte so either encoding reads.
    let text: String = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => e.into_bytes().iter().map(|&b| b as char).collect(),
    };
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split('|').collect();
        if fields.len() < 5 + genres.len() {
            return Err(EvalError::Malformed {
                path: item_path.clone(),
                line: i + 1,
                reason: format!("expected {} fields, got {}", 5 + genres.len(), fields.len()),
            });
        }
        let item_genres: Vec<&str> = genres
            .iter()
            .zip(&fields[5..])
            .filter(|(_, flag)| flag.trim() == "1")
            .map(|(g, _)| g.as_str())
            .filter(|g| *g != "unknown")
            .collect();
        items.push(serde_json::json!({
            "_id": fields[0],
            "title": fields[1],
            "text": format!("Genres: {}.", item_genres.join(", ")),
        }));
    }
    Ok(items)
}

/// The first 10 of `ranked` that are not in `seen`.
fn top_unseen<'a>(ranked: impl Iterator<Item = &'a str>, seen: &HashSet<&str>) -> Vec<&'a str> {
    ranked.filter(|id| !seen.contains(id)).take(TOP_N).collect()
}

/// Leave-one-out evaluation on MovieLens-100k: the movies (title, year, genres) are the catalog,
/// each user's last rating (by timestamp) is held out, the rest is their history and feeds the
/// co-occurrence. Reports HR@10 and NDCG@10 of popularity, item-kNN, embedding similarity and the
/// full pipeline, and the LLM's error rates. The catalog is indexed into `index_dir` with
/// `index_options`; `limit` evaluates the first N users (by id); without a generator only the
/// candidate stage and the baselines run.
pub fn evaluate_recommendation(
    movielens: &Path,
    index_dir: &Path,
    index_options: &IndexOptions,
    limit: Option<usize>,
    generator: Option<&dyn Generator>,
    options: &RecommendOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<RecommendEvalReport> {
    let skip_llm = generator.is_none();
    let items = movielens_items(movielens)?;
    let pool =
        tempfile::NamedTempFile::new().map_err(EvalError::io("creating a temporary file"))?;
    let lines: String = items.iter().map(|v| v.to_string() + "\n").collect();
    std::fs::write(pool.path(), lines).map_err(EvalError::io("writing the catalog"))?;
    index_corpus(pool.path(), index_dir, index_options, |_| {})?;
    let (index, _embedder) = open_index(
        index_dir,
        index_options.model.as_deref(),
        index_options.device.as_ref(),
    )?;
    let catalog = ItemCatalog::from_index(&index)?;

    let ratings = movielens.join("u.data.gz");
    let ratings = if ratings.is_file() {
        ratings
    } else {
        movielens.join("u.data")
    };
    let histories = Interactions::read(&ratings)?.histories();
    let mut users: Vec<(&String, &Vec<String>)> =
        histories.iter().filter(|(_, h)| h.len() >= 2).collect();
    users.sort_by_key(|(u, _)| u.parse::<u64>().unwrap_or(u64::MAX));
    let split: Vec<(&[String], &str)> = users
        .iter()
        .map(|(_, h)| (&h[..h.len() - 1], h[h.len() - 1].as_str()))
        .collect();
    let co = CoOccurrence::build(split.iter().map(|(history, _)| *history));
    let popular: Vec<&str> = co.popularity().into_iter().map(|(id, _)| id).collect();

    let evaluated: Vec<&(&[String], &str)> =
        split.iter().take(limit.unwrap_or(usize::MAX)).collect();
    let total = evaluated.len();
    let names = [
        "popularity",
        "item_knn",
        "embedding",
        "candidates",
        "llm_order",
    ];
    let mut tallies: HashMap<&str, TopNTally> =
        names.iter().map(|n| (*n, TopNTally::default())).collect();
    let mut pipeline = TopNTally::default();
    const SWEEP: [f32; 6] = [0.0, 0.1, 0.25, 0.5, 1.0, 4.0];
    let mut sweep = [TopNTally::default(); SWEEP.len()];
    let (mut candidate_errors, mut duplicates, mut repeats, mut unparseable, mut fallbacks) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    let mut constrained = true;
    let mut llm_seconds = 0.0;
    for (n, (history, target)) in evaluated.iter().enumerate() {
        let seen: HashSet<&str> = history.iter().map(String::as_str).collect();
        let popularity = top_unseen(popular.iter().copied(), &seen);
        if let Some(t) = tallies.get_mut("popularity") {
            t.add(&popularity, target);
        }
        let mut knn: Vec<(&str, f32)> = co.scores(history).into_iter().collect();
        knn.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        let knn = top_unseen(knn.into_iter().map(|(id, _)| id), &seen);
        if let Some(t) = tallies.get_mut("item_knn") {
            t.add(&knn, target);
        }
        let embedding: Vec<&str> = match catalog.profile(history) {
            Some(profile) => catalog
                .rank_by_vector(&profile, &seen)
                .into_iter()
                .take(TOP_N)
                .map(|(i, _)| catalog.items[i].id.as_str())
                .collect(),
            None => Vec::new(),
        };
        if let Some(t) = tallies.get_mut("embedding") {
            t.add(&embedding, target);
        }
        // Without an LLM the candidate ranking is computed here; with one, the pipeline computes
        // it and returns it, so it is not ranked twice.
        let Some(generator) = generator else {
            let cands = candidates(
                &catalog,
                Some(&co),
                history,
                None,
                options.candidates.max(options.k),
                options.embedding_weight,
                options.recency_half_life,
            );
            let cand_ids: Vec<&str> = cands.iter().map(|c| c.id.as_str()).collect();
            if let Some(t) = tallies.get_mut("candidates") {
                t.add(&cand_ids, target);
            }
            progress(n + 1, total);
            continue;
        };
        let recommendation =
            ibex_pipeline::recommend(&catalog, Some(&co), None, generator, history, None, options)?;
        let cand_ids: Vec<&str> = recommendation
            .candidates
            .iter()
            .map(|c| c.id.as_str())
            .collect();
        if let Some(t) = tallies.get_mut("candidates") {
            t.add(&cand_ids, target);
        }
        llm_seconds += recommendation.generate_ms / 1000.0;
        constrained &= recommendation.constrained;
        let final_ids: Vec<&str> = recommendation.items.iter().map(|i| i.id.as_str()).collect();
        pipeline.add(&final_ids, target);
        let llm_ids: Vec<&str> = recommendation
            .llm_order
            .iter()
            .map(String::as_str)
            .collect();
        if let Some(t) = tallies.get_mut("llm_order") {
            t.add(&llm_ids, target);
        }
        let ranks: Vec<Option<usize>> = recommendation
            .candidates
            .iter()
            .map(|c| llm_ids.iter().position(|id| *id == c.id).map(|p| p + 1))
            .collect();
        for (weight, tally) in SWEEP.iter().zip(sweep.iter_mut()) {
            let fused: Vec<&str> =
                ibex_pipeline::recommend::fuse(ranks.len(), &ranks, *weight, TOP_N)
                    .into_iter()
                    .map(|i| recommendation.candidates[i].id.as_str())
                    .collect();
            tally.add(&fused, target);
        }
        let e = recommendation.errors;
        candidate_errors += (e.candidate_errors > 0) as usize;
        duplicates += (e.duplicates > 0) as usize;
        repeats += (e.history_repeats > 0) as usize;
        unparseable += (e.unparseable > 0) as usize;
        fallbacks += e.fell_back as usize;
        progress(n + 1, total);
    }
    let rate = |count: usize| count as f64 / total.max(1) as f64;
    let figures = pipeline.figures(total);
    Ok(RecommendEvalReport {
        hr_at_10: figures.hr_at_10,
        ndcg_at_10: figures.ndcg_at_10,
        users: total,
        candidate_error_rate: rate(candidate_errors),
        duplicate_rate: rate(duplicates),
        history_repeat_rate: rate(repeats),
        unparseable_rate: rate(unparseable),
        fallback_rate: rate(fallbacks),
        constrained,
        model: generator.map_or_else(
            || "none (candidates only)".to_string(),
            |g| g.model().to_string(),
        ),
        baselines: names
            .iter()
            .map(|n| (n.to_string(), tallies[n].figures(total)))
            .collect(),
        seconds_per_user: llm_seconds / total.max(1) as f64,
        llm_weight_sweep: if skip_llm {
            Default::default()
        } else {
            SWEEP
                .iter()
                .zip(&sweep)
                .map(|(w, t)| (format!("{w}"), t.figures(total)))
                .collect()
        },
    })
}
