//! Leave-one-out top-N measures of recommendation: hit rate and NDCG at 10 of one held-out item.

use serde::Serialize;

/// The cut-off of the recommendation measures.
pub const TOP_N: usize = 10;

/// HR@10 and NDCG@10 of one method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RankingFigures {
    /// Share of users whose held-out item is in the top 10.
    #[serde(rename = "hr@10")]
    pub hr_at_10: f64,
    /// Mean of 1 / log2(rank + 1) of the held-out item within the top 10 (0 outside): with one
    /// relevant item the ideal DCG is 1.
    #[serde(rename = "ndcg@10")]
    pub ndcg_at_10: f64,
}

/// Running sums of hits and discounted gains over users.
#[derive(Debug, Default, Clone, Copy)]
pub struct TopNTally {
    hits: f64,
    ndcg: f64,
}

impl TopNTally {
    /// Adds one user's list (best first) and held-out `target`.
    pub fn add(&mut self, list: &[&str], target: &str) {
        if let Some(position) = list.iter().take(TOP_N).position(|id| *id == target) {
            self.hits += 1.0;
            self.ndcg += 1.0 / ((position + 2) as f64).log2();
        }
    }

    /// The means over `users` users (users without a hit count as zeros).
    pub fn figures(&self, users: usize) -> RankingFigures {
        RankingFigures {
            hr_at_10: self.hits / users.max(1) as f64,
            ndcg_at_10: self.ndcg / users.max(1) as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_and_discounts_by_rank() {
        let mut tally = TopNTally::default();
        tally.add(&["a", "b"], "a"); // rank 1: gain 1
        tally.add(&["a", "b", "c"], "c"); // rank 3: gain 1 / log2(4) = 0.5
        tally.add(&["a"], "z"); // miss
        let late: Vec<String> = (0..20).map(|i| format!("i{i}")).collect();
        let late: Vec<&str> = late.iter().map(String::as_str).collect();
        tally.add(&late, "i10"); // rank 11: outside the top 10
        let f = tally.figures(4);
        assert!((f.hr_at_10 - 0.5).abs() < 1e-12);
        assert!((f.ndcg_at_10 - 1.5 / 4.0).abs() < 1e-12);
    }
}
