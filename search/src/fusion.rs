//! Fusion of ranked lists: reciprocal rank fusion and normalized weighted fusion.

use std::collections::HashMap;
use std::hash::Hash;

use serde::{Deserialize, Serialize};

/// A document and its score in one ranked list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocScore {
    /// The document's id.
    pub id: String,
    /// Its score in this list.
    pub score: f32,
}

/// How the hybrid retriever combines BM25 and dense rankings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fusion {
    /// Reciprocal rank fusion: score = Σ 1 / (k + rank). Needs no score calibration, which is
    /// why it is the default: BM25 scores are unbounded, cosines are not.
    ReciprocalRank {
        /// The rank constant (60 by default): larger values flatten the gap between ranks.
        k: f32,
    },
    /// alpha × min-max-normalized dense score + (1 − alpha) × min-max-normalized BM25 score.
    Weighted {
        /// Weight of the dense list in [0, 1].
        alpha: f32,
    },
}

impl Default for Fusion {
    fn default() -> Self {
        Fusion::ReciprocalRank { k: 60.0 }
    }
}

fn sorted(mut scores: HashMap<String, f32>) -> Vec<DocScore> {
    let mut out: Vec<DocScore> = scores
        .drain()
        .map(|(id, score)| DocScore { id, score })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
    out
}

/// Reciprocal rank fusion, the one implementation in ibex: each list, given as items with their
/// 1-based ranks and a weight, adds `weight / (k + rank)` to the score of each of its items.
/// Hybrid search fuses its BM25 and dense lists with it (weights 1); recommendation fuses its
/// candidate sources, and the candidate order with the LLM's, with it. Ranks are explicit because
/// a list may skip ranks (an LLM's list whose invalid entries were dropped keeps its numbering).
pub fn reciprocal_rank_scores<K, L>(
    lists: impl IntoIterator<Item = (L, f32)>,
    k: f32,
) -> HashMap<K, f32>
where
    K: Eq + Hash,
    L: IntoIterator<Item = (K, usize)>,
{
    let mut scores: HashMap<K, f32> = HashMap::new();
    for (list, weight) in lists {
        for (item, rank) in list {
            *scores.entry(item).or_default() += weight / (k + rank as f32);
        }
    }
    scores
}

/// Reciprocal rank fusion of ranked lists (each best first, ranks from 1, all weighing the same).
pub fn fuse_reciprocal_rank(lists: &[&[DocScore]], k: f32) -> Vec<DocScore> {
    let ranked = lists.iter().map(|list| {
        let items = list
            .iter()
            .enumerate()
            .map(|(i, doc)| (doc.id.clone(), i + 1));
        (items, 1.0)
    });
    sorted(reciprocal_rank_scores(ranked, k))
}

/// Normalized weighted fusion of a dense and a lexical list. A document missing from a list
/// gets that list's minimum (normalized 0).
pub fn fuse_weighted(dense: &[DocScore], lexical: &[DocScore], alpha: f32) -> Vec<DocScore> {
    fn normalized(list: &[DocScore]) -> impl Iterator<Item = (&str, f32)> {
        let max = list
            .iter()
            .map(|d| d.score)
            .fold(f32::NEG_INFINITY, f32::max);
        let min = list.iter().map(|d| d.score).fold(f32::INFINITY, f32::min);
        let range = if max > min { max - min } else { 1.0 };
        list.iter().map(move |d| {
            (
                d.id.as_str(),
                if max > min {
                    (d.score - min) / range
                } else {
                    1.0
                },
            )
        })
    }
    let mut scores: HashMap<String, f32> = HashMap::new();
    for (id, s) in normalized(dense) {
        *scores.entry(id.to_string()).or_default() += alpha * s;
    }
    for (id, s) in normalized(lexical) {
        *scores.entry(id.to_string()).or_default() += (1.0 - alpha) * s;
    }
    sorted(scores)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(ids: &[&str]) -> Vec<DocScore> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| DocScore {
                id: id.to_string(),
                score: 10.0 - i as f32,
            })
            .collect()
    }

    #[test]
    fn rrf_rewards_agreement() {
        let fused = fuse_reciprocal_rank(&[&list(&["a", "b", "c"]), &list(&["b", "c", "a"])], 60.0);
        assert_eq!(fused[0].id, "b");
        assert!((fused[0].score - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-6);
    }

    #[test]
    fn weighted_rrf_keeps_explicit_ranks() {
        // The second list skips rank 1 (a dropped entry): "y" scores at rank 2.
        let scores = reciprocal_rank_scores(
            [(vec![("x", 1), ("y", 2)], 1.0), (vec![("y", 2)], 0.5)],
            60.0,
        );
        assert!((scores["x"] - 1.0 / 61.0).abs() < 1e-9);
        assert!((scores["y"] - (1.0 / 62.0 + 0.5 / 62.0)).abs() < 1e-9);
    }

    #[test]
    fn weighted_alpha_one_is_dense_order() {
        let fused = fuse_weighted(&list(&["x", "y"]), &list(&["y", "x"]), 1.0);
        assert_eq!(fused[0].id, "x");
        let fused = fuse_weighted(&list(&["x", "y"]), &list(&["y", "x"]), 0.0);
        assert_eq!(fused[0].id, "y");
    }
}
