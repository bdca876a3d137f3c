//! IR evaluation measures with trec_eval's definitions.
//!
//! - nDCG@10 (`ndcg_cut_10`): graded gains (the judgment's grade), discount log2(rank + 1), ideal
//!   ranking from all judged documents with grade > 0;
//! - Recall@100 (`recall_100`): relevant documents in the top 100 / relevant documents;
//! - MAP (`map`, ranking cut at 1000): mean over relevant documents of the precision at their rank;
//! - MRR@10: 1 / rank of the first relevant document within the top 10, else 0.
//!
//! Grades <= 0 count as non-relevant. As trec_eval does, a ranking is first sorted by score
//! (descending) and ties are broken by document id in descending order, so the figures here
//! match trec_eval's on the run file ibex writes.

use std::collections::HashMap;

use serde::Serialize;

/// Judgments of one query: document id -> grade.
pub type Judgments = HashMap<String, i32>;

/// The measures of one query (or their means).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Measures {
    #[serde(rename = "ndcg@10")]
    /// nDCG@10 with graded gains (trec_eval's `ndcg_cut_10`).
    pub ndcg_at_10: f64,
    #[serde(rename = "recall@100")]
    /// Share of the relevant documents found in the top 100 (`recall_100`).
    pub recall_at_100: f64,
    /// Mean average precision over the top 1000 (`map`).
    pub map: f64,
    #[serde(rename = "mrr@10")]
    /// Reciprocal rank of the first relevant document within the top 10, else 0.
    pub mrr_at_10: f64,
}

/// Sorts a ranking the way trec_eval reads a run: score descending, then id descending.
pub fn trec_order(ranking: &mut [(String, f32)]) {
    ranking.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
}

/// Measures of one ranking (already in trec order) against its judgments.
pub fn evaluate(ranking: &[(String, f32)], judgments: &Judgments) -> Measures {
    let grade = |id: &str| judgments.get(id).copied().unwrap_or(0).max(0);
    let relevant = judgments.values().filter(|&&g| g > 0).count();
    let mut measures = Measures::default();
    if relevant == 0 {
        return measures;
    }
    let ranking = &ranking[..ranking.len().min(1000)];
    let mut dcg = 0.0;
    for (i, (id, _)) in ranking.iter().take(10).enumerate() {
        dcg += grade(id) as f64 / ((i + 2) as f64).log2();
    }
    let mut ideal: Vec<i32> = judgments.values().copied().filter(|&g| g > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(10)
        .enumerate()
        .map(|(i, &g)| g as f64 / ((i + 2) as f64).log2())
        .sum();
    measures.ndcg_at_10 = if idcg > 0.0 { dcg / idcg } else { 0.0 };

    let mut found = 0usize;
    let mut precision_sum = 0.0;
    for (i, (id, _)) in ranking.iter().enumerate() {
        if grade(id) > 0 {
            found += 1;
            precision_sum += found as f64 / (i + 1) as f64;
            if i < 100 {
                measures.recall_at_100 += 1.0;
            }
            if measures.mrr_at_10 == 0.0 && i < 10 {
                measures.mrr_at_10 = 1.0 / (i + 1) as f64;
            }
        }
    }
    measures.recall_at_100 /= relevant as f64;
    measures.map = precision_sum / relevant as f64;
    measures
}

/// The mean of per-query measures.
pub fn mean(all: &[Measures]) -> Measures {
    let n = all.len().max(1) as f64;
    Measures {
        ndcg_at_10: all.iter().map(|m| m.ndcg_at_10).sum::<f64>() / n,
        recall_at_100: all.iter().map(|m| m.recall_at_100).sum::<f64>() / n,
        map: all.iter().map(|m| m.map).sum::<f64>() / n,
        mrr_at_10: all.iter().map(|m| m.mrr_at_10).sum::<f64>() / n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(pairs: &[(&str, i32)]) -> Judgments {
        pairs.iter().map(|(d, g)| (d.to_string(), *g)).collect()
    }

    fn run(ids: &[&str]) -> Vec<(String, f32)> {
        ids.iter()
            .enumerate()
            .map(|(i, d)| (d.to_string(), 100.0 - i as f32))
            .collect()
    }

    #[test]
    fn perfect_ranking_scores_one() {
        let m = evaluate(&run(&["a", "b", "x"]), &judged(&[("a", 2), ("b", 1)]));
        assert!((m.ndcg_at_10 - 1.0).abs() < 1e-12);
        assert_eq!((m.recall_at_100, m.map, m.mrr_at_10), (1.0, 1.0, 1.0));
    }

    #[test]
    fn hand_computed_values() {
        // Relevant: a (grade 3), b (grade 1), c (grade 2, never retrieved); d judged 0; -1 ignored.
        let j = judged(&[("a", 3), ("b", 1), ("c", 2), ("d", 0), ("e", -1)]);
        let m = evaluate(&run(&["d", "a", "e", "b"]), &j);
        let dcg = 3.0 / 3f64.log2() + 1.0 / 5f64.log2();
        let idcg = 3.0 + 2.0 / 3f64.log2() + 1.0 / 4f64.log2();
        assert!((m.ndcg_at_10 - dcg / idcg).abs() < 1e-12);
        assert!((m.recall_at_100 - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.map - (0.5 + 0.5) / 3.0).abs() < 1e-12);
        assert!((m.mrr_at_10 - 0.5).abs() < 1e-12);
    }

    #[test]
    fn ties_break_by_descending_id_like_trec_eval() {
        let mut ranking = vec![
            ("a".to_string(), 1.0),
            ("b".to_string(), 1.0),
            ("c".to_string(), 2.0),
        ];
        trec_order(&mut ranking);
        let ids: Vec<&str> = ranking.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(ids, ["c", "b", "a"]);
    }
}
