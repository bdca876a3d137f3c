//! Interaction data (who used which item, when) and what recommendation derives from it:
//! per-user histories, item co-occurrence (item-kNN on co-ratings) and popularity.
//!
//! The format is MovieLens's `u.data`: one interaction per line, `user item [rating [timestamp]]`
//! separated by tabs or spaces, plain or gzip; `#` starts a comment. An index may hold such data,
//! installed by a commit ([`Interactions::install`]) so that a crash leaves the old data or the
//! new and snapshots hold it, and the recommender then adds co-occurrence to its candidates.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

use ibex_indexer::{Index, IndexWriter};

use crate::{PipelineError, Result};

/// One interaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Interaction {
    /// The user's id.
    pub user: String,
    /// The item's id (a document id of the catalog index).
    pub item: String,
    /// The rating, when the data has one.
    pub rating: Option<f32>,
    /// When it happened (Unix seconds; 0 when unknown, so order is the file's).
    pub timestamp: i64,
}

/// A set of interactions.
#[derive(Debug, Clone, Default)]
pub struct Interactions {
    /// Every interaction, in file order.
    pub events: Vec<Interaction>,
}

impl Interactions {
    /// Reads a `user item [rating [timestamp]]` file (plain or gzip). A malformed line is an
    /// error naming the file and line.
    pub fn read(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| PipelineError::Io {
            context: format!("opening {}", path.display()),
            source: e,
        })?;
        let reader: Box<dyn BufRead> = if path.extension().is_some_and(|x| x == "gz") {
            Box::new(std::io::BufReader::new(flate2::read::MultiGzDecoder::new(
                file,
            )))
        } else {
            Box::new(std::io::BufReader::new(file))
        };
        Self::parse(reader, path)
    }

    /// Parses interaction lines from `reader`; `path` names their origin in errors.
    fn parse(reader: impl BufRead, path: &Path) -> Result<Self> {
        let mut events = Vec::new();
        for (i, line) in reader.lines().enumerate() {
            let bad = |reason: String| PipelineError::MalformedInteractions {
                path: path.to_path_buf(),
                line: i + 1,
                reason,
            };
            let line = line.map_err(|e| bad(format!("cannot read: {e}")))?;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split(['\t', ' ']).filter(|f| !f.is_empty()).collect();
            if fields.len() < 2 || fields.len() > 4 {
                return Err(bad(format!(
                    "expected `user item [rating [timestamp]]`, got {} fields",
                    fields.len()
                )));
            }
            let rating = match fields.get(2) {
                Some(r) => Some(
                    r.parse::<f32>()
                        .map_err(|_| bad(format!("rating `{r}` is not a number")))?,
                ),
                None => None,
            };
            let timestamp = match fields.get(3) {
                Some(t) => t
                    .parse::<i64>()
                    .map_err(|_| bad(format!("timestamp `{t}` is not an integer")))?,
                // Without timestamps, file order is the order of events.
                None => events.len() as i64,
            };
            events.push(Interaction {
                user: fields[0].to_string(),
                item: fields[1].to_string(),
                rating,
                timestamp,
            });
        }
        Ok(Interactions { events })
    }

    /// The interactions of the commit `index` shows, if any were installed.
    pub fn load_for_index(index: &Index) -> Result<Option<Self>> {
        let Some(bytes) = index.read_interactions()? else {
            return Ok(None);
        };
        let origin = index.interactions_path();
        Self::parse(bytes.as_slice(), &origin).map(Some)
    }

    /// Validates the file at `source` and installs a copy as the interaction data of `index`,
    /// replacing what it held, in a commit of its own (it takes the index's writer lock: a
    /// crash leaves the old data or the new). Returns the number of interactions installed.
    pub fn install(source: &Path, index: &mut Index) -> Result<usize> {
        let interactions = Self::read(source)?;
        let mut writer = index.embedded_writer()?;
        interactions.stage(&mut writer);
        writer.commit()?;
        writer.finish()?;
        Ok(interactions.events.len())
    }

    /// Stages these interactions as the index's interaction data in `writer`'s next commit (for
    /// callers that take the writer lock themselves, e.g. waiting for another process's write).
    pub fn stage(&self, writer: &mut IndexWriter<'_>) {
        let mut text = String::new();
        for e in &self.events {
            let rating = e
                .rating
                .map(|r| r.to_string())
                .unwrap_or_else(|| "1".into());
            text.push_str(&format!(
                "{}\t{}\t{}\t{}\n",
                e.user, e.item, rating, e.timestamp
            ));
        }
        writer.set_interactions(text.into_bytes(), self.events.len());
    }

    /// Each user's items, oldest first (ties keep file order).
    pub fn histories(&self) -> HashMap<String, Vec<String>> {
        let mut by_user: HashMap<String, Vec<(i64, usize, String)>> = HashMap::new();
        for (i, e) in self.events.iter().enumerate() {
            by_user
                .entry(e.user.clone())
                .or_default()
                .push((e.timestamp, i, e.item.clone()));
        }
        by_user
            .into_iter()
            .map(|(user, mut items)| {
                items.sort();
                (user, items.into_iter().map(|(_, _, item)| item).collect())
            })
            .collect()
    }
}

/// Item-to-item similarity from co-occurrence in histories: cosine of the items' user sets,
/// `|U_i ∩ U_j| / sqrt(|U_i| |U_j|)` (item-kNN on co-ratings).
#[derive(Debug, Clone, Default)]
pub struct CoOccurrence {
    ids: Vec<String>,
    index: HashMap<String, u32>,
    /// For each item, its co-occurring items and their similarity.
    neighbours: Vec<Vec<(u32, f32)>>,
    /// How many histories hold each item.
    counts: Vec<u32>,
}

impl CoOccurrence {
    /// Counts co-occurrences over `histories` (each history's distinct items).
    pub fn build<'h>(histories: impl IntoIterator<Item = &'h [String]>) -> Self {
        let mut co = CoOccurrence::default();
        let mut pairs: HashMap<u64, u32> = HashMap::new();
        for history in histories {
            let mut items: Vec<u32> = history.iter().map(|item| co.intern(item)).collect();
            items.sort_unstable();
            items.dedup();
            for &i in &items {
                co.counts[i as usize] += 1;
            }
            for (a, &i) in items.iter().enumerate() {
                for &j in &items[a + 1..] {
                    *pairs.entry(((i as u64) << 32) | j as u64).or_default() += 1;
                }
            }
        }
        co.neighbours = vec![Vec::new(); co.ids.len()];
        for (key, together) in pairs {
            let (i, j) = ((key >> 32) as u32, key as u32);
            let norm = ((co.counts[i as usize] as f32) * (co.counts[j as usize] as f32)).sqrt();
            let similarity = together as f32 / norm.max(1.0);
            co.neighbours[i as usize].push((j, similarity));
            co.neighbours[j as usize].push((i, similarity));
        }
        co
    }

    fn intern(&mut self, item: &str) -> u32 {
        if let Some(&i) = self.index.get(item) {
            return i;
        }
        let i = self.ids.len() as u32;
        self.ids.push(item.to_string());
        self.index.insert(item.to_string(), i);
        self.counts.push(0);
        i
    }

    /// Scores of items given a history: the sum of their similarities to the history's items.
    pub fn scores(&self, history: &[String]) -> HashMap<&str, f32> {
        let mut scores: HashMap<&str, f32> = HashMap::new();
        for item in history {
            let Some(&i) = self.index.get(item) else {
                continue;
            };
            for &(j, similarity) in &self.neighbours[i as usize] {
                *scores.entry(self.ids[j as usize].as_str()).or_default() += similarity;
            }
        }
        scores
    }

    /// Like [`scores`](Self::scores), with recent items counting more: the item `a` places from
    /// the end of `history` (oldest first) weighs `0.5^(a / half_life)`. Next-item prediction
    /// depends more on what a user did last than on what they did long ago.
    pub fn recency_scores(&self, history: &[String], half_life: f32) -> HashMap<&str, f32> {
        let mut scores: HashMap<&str, f32> = HashMap::new();
        for (age, item) in history.iter().rev().enumerate() {
            let Some(&i) = self.index.get(item) else {
                continue;
            };
            let weight = 0.5f32.powf(age as f32 / half_life.max(1e-3));
            for &(j, similarity) in &self.neighbours[i as usize] {
                *scores.entry(self.ids[j as usize].as_str()).or_default() += weight * similarity;
            }
        }
        scores
    }

    /// Items by how many histories hold them, most popular first (ties by id).
    pub fn popularity(&self) -> Vec<(&str, u32)> {
        let mut items: Vec<(&str, u32)> = self
            .ids
            .iter()
            .zip(&self.counts)
            .map(|(id, &c)| (id.as_str(), c))
            .collect();
        items.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_movielens_lines_and_orders_histories_by_time() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("u.data");
        std::fs::write(&path, "# comment\n1\t50\t5\t300\n1\t10\t3\t100\n2 50\n").expect("write");
        let interactions = Interactions::read(&path).expect("reads");
        assert_eq!(interactions.events.len(), 3);
        let histories = interactions.histories();
        assert_eq!(histories["1"], ["10", "50"]);
        std::fs::write(&path, "1\t50\tfive\n").expect("write");
        let error = Interactions::read(&path)
            .expect_err("bad rating")
            .to_string();
        assert!(
            error.contains("u.data:1") && error.contains("five"),
            "{error}"
        );
    }

    #[test]
    fn co_occurrence_is_cosine_of_user_sets() {
        let h = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let histories = [h(&["a", "b"]), h(&["a", "b", "c"]), h(&["c"])];
        let co = CoOccurrence::build(histories.iter().map(Vec::as_slice));
        let scores = co.scores(&h(&["a"]));
        // a and b share 2 users of 2 each: 1.0; a and c share 1 of 2 and 2: 0.5.
        assert!((scores["b"] - 1.0).abs() < 1e-6);
        assert!((scores["c"] - 0.5).abs() < 1e-6);
        assert_eq!(co.popularity()[0], ("a", 2));
    }
}
