//! HNSW graphs over a vector segment's rows, by inner product of unit vectors (Malkov and
//! Yashunin, "Efficient and robust approximate nearest neighbor search using Hierarchical
//! Navigable Small World graphs", 2018; neighbour selection by their heuristic, as hnswlib).
//!
//! ibex's own graph rather than a crate's, for four reasons measured or met in practice
//! (BENCHMARKS.md, "ANN search"): the links live in flat arrays beside the segment's vectors,
//! which the graph reads in place instead of keeping a second copy; searches take no locks and
//! reuse a per-thread visited list; a filtered search walks the graph through rejected rows but
//! returns only allowed ones; and the file format is checksummed and fully validated on load, so
//! a damaged graph is an error, never a panic or a leaked loader.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Mutex, RwLock};

use rayon::prelude::*;

use crate::vectors::dot;

const MAGIC: &[u8; 8] = b"IBEXHNS1";
/// Levels above this are never drawn (with M = 16, level 16 has probability 16^-16).
const MAX_LEVEL: usize = 16;

/// A row and its similarity to the query being served.
#[derive(Clone, Copy, PartialEq)]
struct Scored {
    similarity: f32,
    row: u32,
}

impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.similarity
            .total_cmp(&other.similarity)
            .then(other.row.cmp(&self.row))
    }
}

/// Per-thread visited marks: a tag per row, valid for the current search's epoch, so a search
/// never clears (or allocates) an array the size of the segment.
struct Visited {
    tags: Vec<u16>,
    epoch: u16,
}

impl Visited {
    fn start(&mut self, rows: usize) {
        if self.tags.len() < rows {
            self.tags.resize(rows, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.tags.iter_mut().for_each(|t| *t = 0);
            self.epoch = 1;
        }
    }

    /// Marks `row`; true when it was not marked yet in this search.
    #[inline]
    fn insert(&mut self, row: u32) -> bool {
        let tag = &mut self.tags[row as usize];
        let fresh = *tag != self.epoch;
        *tag = self.epoch;
        fresh
    }
}

thread_local! {
    static VISITED: RefCell<Visited> = const { RefCell::new(Visited { tags: Vec::new(), epoch: 0 }) };
}

/// Asks the CPU to bring the start of `bytes` into the cache.
#[inline]
pub(crate) fn prefetch_bytes<T>(bytes: &[T]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint; it never faults, whatever the address.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(bytes.as_ptr() as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// How a search scores a row against the query it serves: the dot product with full-precision
/// vectors, or an estimate from quantized codes ([`crate::quantized`]). The graph is the same.
pub(crate) trait Similarity {
    /// The query's similarity to `row`.
    fn similarity(&self, row: u32) -> f32;
    /// Hints that `row` is scored next.
    fn prefetch(&self, row: u32);
    /// Number of rows.
    fn rows(&self) -> usize;
}

/// A query against full-precision rows.
#[derive(Clone, Copy)]
struct FloatQuery<'a> {
    rows: Rows<'a>,
    query: &'a [f32],
}

impl Similarity for FloatQuery<'_> {
    #[inline]
    fn similarity(&self, row: u32) -> f32 {
        dot(self.query, self.rows.get(row))
    }

    #[inline]
    fn prefetch(&self, row: u32) {
        prefetch_bytes(self.rows.get(row));
    }

    fn rows(&self) -> usize {
        self.rows.vectors.len() / self.rows.dimension.max(1)
    }
}

/// Where a search reads the links from: the frozen graph, or the graph under construction.
trait Links {
    /// Calls `f` with the neighbours of `row` on `level`.
    fn with_neighbours<R>(&self, row: u32, level: usize, f: impl FnOnce(&[u32]) -> R) -> R;
}

/// Vectors of a segment, row-major.
#[derive(Clone, Copy)]
struct Rows<'a> {
    vectors: &'a [f32],
    dimension: usize,
}

impl<'a> Rows<'a> {
    #[inline]
    fn get(&self, row: u32) -> &'a [f32] {
        let start = row as usize * self.dimension;
        &self.vectors[start..start + self.dimension]
    }
}

/// Greedy descent on one level: the neighbour closest to `query`, from `start`.
fn greedy<L: Links, S: Similarity>(
    links: &L,
    scorer: &S,
    mut best: Scored,
    level: usize,
) -> Scored {
    loop {
        let next = links.with_neighbours(best.row, level, |neighbours| {
            let mut next = best;
            for &n in neighbours {
                let similarity = scorer.similarity(n);
                if similarity > next.similarity {
                    next = Scored { similarity, row: n };
                }
            }
            next
        });
        if next.row == best.row {
            return best;
        }
        best = next;
    }
}

/// Beam search on one level (the paper's SEARCH-LAYER, with hnswlib's filter rule: rejected
/// rows are walked through but never returned). Returns up to `ef` rows, best first.
fn search_level<L: Links, S: Similarity>(
    links: &L,
    scorer: &S,
    entry: Scored,
    ef: usize,
    level: usize,
    allowed: Option<&dyn Fn(u32) -> bool>,
) -> Vec<Scored> {
    let count = scorer.rows();
    VISITED.with_borrow_mut(|visited| {
        visited.start(count);
        // Neither heap can hold more than the graph's rows: sizing them by `ef` alone would let
        // a caller's k (the beam is at least k) decide an allocation (found by fuzz/search_request).
        let mut candidates: BinaryHeap<Scored> =
            BinaryHeap::with_capacity(ef.saturating_mul(2).min(count + 1));
        // Min-heap of the best `ef` allowed rows (reversed order: the worst on top).
        let mut results: BinaryHeap<std::cmp::Reverse<Scored>> =
            BinaryHeap::with_capacity(ef.saturating_add(1).min(count + 1));
        let is_allowed = |row: u32| allowed.is_none_or(|f| f(row));
        visited.insert(entry.row);
        candidates.push(entry);
        if is_allowed(entry.row) {
            results.push(std::cmp::Reverse(entry));
        }
        let mut bound = if results.len() >= ef {
            results.peek().map_or(f32::NEG_INFINITY, |r| r.0.similarity)
        } else {
            f32::NEG_INFINITY
        };
        while let Some(current) = candidates.pop() {
            if current.similarity < bound && results.len() >= ef {
                break;
            }
            links.with_neighbours(current.row, level, |neighbours| {
                if let Some(&first) = neighbours.first() {
                    scorer.prefetch(first);
                }
                for (i, &n) in neighbours.iter().enumerate() {
                    if let Some(&next) = neighbours.get(i + 1) {
                        scorer.prefetch(next);
                    }
                    if !visited.insert(n) {
                        continue;
                    }
                    let similarity = scorer.similarity(n);
                    if results.len() < ef || similarity > bound {
                        let scored = Scored { similarity, row: n };
                        candidates.push(scored);
                        if is_allowed(n) {
                            results.push(std::cmp::Reverse(scored));
                            if results.len() > ef {
                                results.pop();
                            }
                            if results.len() >= ef {
                                bound = results.peek().map_or(bound, |r| r.0.similarity);
                            }
                        }
                    }
                }
            });
        }
        let mut out: Vec<Scored> = results.into_iter().map(|r| r.0).collect();
        out.sort_unstable_by(|a, b| b.cmp(a));
        out
    })
}

/// The paper's neighbour-selection heuristic: from `candidates` (best first), keep a row only
/// if it is closer to the base than to every row already kept, up to `m` rows. Keeps links
/// pointing in diverse directions, which is what lets greedy search cross between clusters.
fn select_neighbours(rows: Rows, candidates: &[Scored], m: usize) -> Vec<Scored> {
    let mut kept: Vec<Scored> = Vec::with_capacity(m);
    for &candidate in candidates {
        if kept.len() >= m {
            break;
        }
        let vector = rows.get(candidate.row);
        if kept
            .iter()
            .all(|k| dot(vector, rows.get(k.row)) <= candidate.similarity)
        {
            kept.push(candidate);
        }
    }
    kept
}

/// Links of the graph under construction, each list behind its own lock (as hnswlib).
struct BuildLinks {
    /// `lists[row][level]`.
    lists: Vec<Vec<Mutex<Vec<u32>>>>,
}

impl Links for BuildLinks {
    fn with_neighbours<R>(&self, row: u32, level: usize, f: impl FnOnce(&[u32]) -> R) -> R {
        let mut copy = [0u32; 64];
        let len = {
            let list = self.lists[row as usize][level]
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let len = list.len().min(copy.len());
            copy[..len].copy_from_slice(&list[..len]);
            len
        };
        f(&copy[..len])
    }
}

/// An HNSW graph over the rows of one segment (row ids are `u32`).
#[derive(Debug, Clone, PartialEq)]
pub struct HnswGraph {
    /// Links per row on the upper levels; level 0 has `2 * m`.
    m: usize,
    entry: u32,
    max_level: usize,
    levels: Vec<u8>,
    /// Level 0: for row `r`, `layer0[r * (2m + 1)]` is its neighbour count, then the slots.
    layer0: Vec<u32>,
    /// Upper levels of row `r` (levels 1..=levels[r]), each `m + 1` words (count, slots),
    /// starting at `upper_start[r]`.
    upper_start: Vec<u32>,
    upper: Vec<u32>,
}

impl Links for HnswGraph {
    #[inline]
    fn with_neighbours<R>(&self, row: u32, level: usize, f: impl FnOnce(&[u32]) -> R) -> R {
        f(self.neighbours(row, level))
    }
}

impl HnswGraph {
    /// Builds the graph of `vectors` (`dimension`-d unit vectors, row-major) with `m` links per
    /// row (2m on level 0) and a beam of `ef_construction`, inserting rows in parallel on
    /// rayon's pool. Levels are drawn from `seed`, so the same input gives the same levels.
    pub fn build(
        vectors: &[f32],
        dimension: usize,
        m: usize,
        ef_construction: usize,
        seed: u64,
    ) -> HnswGraph {
        let count = vectors.len() / dimension.max(1);
        let rows = Rows { vectors, dimension };
        let m = m.clamp(2, 31);
        let level_scale = 1.0 / (m as f64).ln();
        let levels: Vec<u8> = (0..count)
            .map(|row| {
                // SplitMix64 of (seed, row): a uniform draw in (0, 1].
                let mut z = seed ^ (row as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^= z >> 31;
                let uniform = ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
                ((-uniform.ln() * level_scale) as usize).min(MAX_LEVEL) as u8
            })
            .collect();
        let links = BuildLinks {
            lists: levels
                .iter()
                .map(|&l| (0..=l as usize).map(|_| Mutex::new(Vec::new())).collect())
                .collect(),
        };
        if count == 0 {
            return HnswGraph::freeze(m, 0, 0, levels, &links);
        }
        let entry = RwLock::new((0u32, levels[0] as usize));
        let insert = |row: u32| {
            let scorer = FloatQuery {
                rows,
                query: rows.get(row),
            };
            let level = levels[row as usize] as usize;
            let (entry_row, top) = *entry.read().unwrap_or_else(|p| p.into_inner());
            let mut best = Scored {
                similarity: scorer.similarity(entry_row),
                row: entry_row,
            };
            for l in (level + 1..=top).rev() {
                best = greedy(&links, &scorer, best, l);
            }
            for l in (0..=level.min(top)).rev() {
                let found = search_level(&links, &scorer, best, ef_construction, l, None);
                let found: Vec<Scored> = found.into_iter().filter(|s| s.row != row).collect();
                let Some(&nearest) = found.first() else {
                    continue;
                };
                let selected = select_neighbours(rows, &found, m);
                *links.lists[row as usize][l]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = selected.iter().map(|s| s.row).collect();
                let capacity = if l == 0 { 2 * m } else { m };
                for neighbour in &selected {
                    let mut list = links.lists[neighbour.row as usize][l]
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    if list.contains(&row) {
                        continue;
                    }
                    if list.len() < capacity {
                        list.push(row);
                        continue;
                    }
                    let base = rows.get(neighbour.row);
                    let mut candidates: Vec<Scored> = list
                        .iter()
                        .chain(std::iter::once(&row))
                        .map(|&r| Scored {
                            similarity: dot(base, rows.get(r)),
                            row: r,
                        })
                        .collect();
                    candidates.sort_unstable_by(|a, b| b.cmp(a));
                    *list = select_neighbours(rows, &candidates, capacity)
                        .iter()
                        .map(|s| s.row)
                        .collect();
                }
                best = nearest;
            }
            if level > top {
                let mut entry = entry.write().unwrap_or_else(|p| p.into_inner());
                if level > entry.1 {
                    *entry = (row, level);
                }
            }
        };
        // A few rows first, one at a time, so the parallel insertions start from a graph.
        let serial = count.min(64) as u32;
        (1..serial).for_each(insert);
        (serial..count as u32).into_par_iter().for_each(insert);
        let (entry_row, top) = *entry.read().unwrap_or_else(|p| p.into_inner());
        HnswGraph::freeze(m, entry_row, top, levels, &links)
    }

    fn freeze(
        m: usize,
        entry: u32,
        max_level: usize,
        levels: Vec<u8>,
        links: &BuildLinks,
    ) -> HnswGraph {
        let width0 = 2 * m + 1;
        let mut layer0 = vec![0u32; levels.len() * width0];
        let mut upper_start = vec![0u32; levels.len()];
        let mut upper = Vec::new();
        for (row, lists) in links.lists.iter().enumerate() {
            for (level, list) in lists.iter().enumerate() {
                let list = list.lock().unwrap_or_else(|p| p.into_inner());
                if level == 0 {
                    let slot = &mut layer0[row * width0..(row + 1) * width0];
                    slot[0] = list.len() as u32;
                    slot[1..=list.len()].copy_from_slice(&list);
                } else {
                    if level == 1 {
                        upper_start[row] = upper.len() as u32;
                    }
                    upper.push(list.len() as u32);
                    upper.extend_from_slice(&list);
                    upper.resize(upper.len() + m - list.len(), 0);
                }
            }
        }
        HnswGraph {
            m,
            entry,
            max_level,
            levels,
            layer0,
            upper_start,
            upper,
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    /// Whether the graph has no rows.
    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    #[inline]
    fn neighbours(&self, row: u32, level: usize) -> &[u32] {
        let row = row as usize;
        if level == 0 {
            let start = row * (2 * self.m + 1);
            let count = self.layer0[start] as usize;
            &self.layer0[start + 1..start + 1 + count]
        } else {
            let start = self.upper_start[row] as usize + (level - 1) * (self.m + 1);
            let count = self.upper[start] as usize;
            &self.upper[start + 1..start + 1 + count]
        }
    }

    /// The `k` rows most similar to `query` among those `allowed` accepts (all when `None`),
    /// best first, with a beam of `ef` (at least `k`) on level 0.
    pub fn search(
        &self,
        vectors: &[f32],
        dimension: usize,
        query: &[f32],
        k: usize,
        ef: usize,
        allowed: Option<&dyn Fn(u32) -> bool>,
    ) -> Vec<(u32, f32)> {
        let scorer = FloatQuery {
            rows: Rows { vectors, dimension },
            query,
        };
        self.search_by(&scorer, k, ef, allowed)
    }

    /// [`HnswGraph::search`] with the rows scored by `scorer` (quantized codes, for example).
    pub(crate) fn search_by<S: Similarity>(
        &self,
        scorer: &S,
        k: usize,
        ef: usize,
        allowed: Option<&dyn Fn(u32) -> bool>,
    ) -> Vec<(u32, f32)> {
        if self.is_empty() || k == 0 || scorer.rows() != self.len() {
            return Vec::new();
        }
        let mut best = Scored {
            similarity: scorer.similarity(self.entry),
            row: self.entry,
        };
        for level in (1..=self.max_level).rev() {
            best = greedy(self, scorer, best, level);
        }
        let mut found = search_level(self, scorer, best, ef.max(k), 0, allowed);
        found.truncate(k);
        found.into_iter().map(|s| (s.row, s.similarity)).collect()
    }

    /// Bytes the graph holds in memory.
    pub fn memory_bytes(&self) -> usize {
        self.levels.capacity()
            + (self.layer0.capacity() + self.upper_start.capacity() + self.upper.capacity()) * 4
    }

    /// The graph's file contents (little-endian u32 words after the magic).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(32 + self.levels.len() + (self.layer0.len() + self.upper.len()) * 4);
        out.extend_from_slice(MAGIC);
        for word in [
            self.levels.len() as u32,
            self.m as u32,
            self.entry,
            self.max_level as u32,
            self.upper.len() as u32,
        ] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out.extend_from_slice(&self.levels);
        out.resize(out.len().next_multiple_of(4), 0);
        for word in self.layer0.iter().chain(&self.upper) {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out
    }

    /// Reads a graph written by [`HnswGraph::to_bytes`] for a segment of `rows` rows, checking
    /// every count and link, so that no damaged file can make a search read out of bounds.
    pub fn from_bytes(bytes: &[u8], rows: usize) -> std::result::Result<HnswGraph, String> {
        if bytes.len() < 28 || &bytes[..8] != MAGIC {
            return Err("not an ibex HNSW graph".into());
        }
        let word = |i: usize| {
            u32::from_le_bytes([
                bytes[8 + 4 * i],
                bytes[9 + 4 * i],
                bytes[10 + 4 * i],
                bytes[11 + 4 * i],
            ])
        };
        let (count, m, entry, max_level, upper_len) = (
            word(0) as usize,
            word(1) as usize,
            word(2),
            word(3) as usize,
            word(4) as usize,
        );
        if count != rows {
            return Err(format!("the graph has {count} rows, its segment {rows}"));
        }
        if !(2..=31).contains(&m) || max_level > MAX_LEVEL || (count > 0 && entry as usize >= count)
        {
            return Err("impossible graph header".into());
        }
        let levels_end = 28 + count;
        let words_start = levels_end.next_multiple_of(4);
        let width0 = 2 * m + 1;
        let expected = words_start + (count * width0 + upper_len) * 4;
        if bytes.len() != expected {
            return Err(format!(
                "{} bytes where the header implies {expected}",
                bytes.len()
            ));
        }
        let levels = bytes[28..levels_end].to_vec();
        let words: Vec<u32> = bytes[words_start..]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let (layer0, upper) = words.split_at(count * width0);
        let mut upper_start = vec![0u32; count];
        let mut next = 0usize;
        for (row, &level) in levels.iter().enumerate() {
            let level = level as usize;
            if level > max_level {
                return Err(format!(
                    "row {row} is on level {level}, above the top {max_level}"
                ));
            }
            if level > 0 {
                upper_start[row] = next as u32;
                next += level * (m + 1);
            }
        }
        if next != upper_len {
            return Err("upper levels do not match the rows' levels".into());
        }
        if count > 0 && levels[entry as usize] as usize != max_level {
            return Err("the entry point is not on the top level".into());
        }
        let check = |lists: &[u32],
                     width: usize,
                     capacity: usize|
         -> std::result::Result<(), String> {
            for list in lists.chunks_exact(width) {
                let n = list[0] as usize;
                if n > capacity || list[1..=n].iter().any(|&r| r as usize >= count) {
                    return Err("a link list is too long or names a row that does not exist".into());
                }
            }
            Ok(())
        };
        check(layer0, width0, 2 * m)?;
        check(upper, m + 1, m)?;
        Ok(HnswGraph {
            m,
            entry,
            max_level,
            levels,
            layer0: layer0.to_vec(),
            upper_start,
            upper: upper.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn unit_vectors(n: usize, dimension: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut out = Vec::with_capacity(n * dimension);
        for _ in 0..n {
            let v: Vec<f32> = (0..dimension)
                .map(|_| rng.gen_range(-1.0f32..1.0))
                .collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            out.extend(v.iter().map(|x| x / norm));
        }
        out
    }

    fn exact(vectors: &[f32], dimension: usize, query: &[f32], k: usize) -> Vec<u32> {
        let mut scored: Vec<(f32, u32)> = vectors
            .chunks_exact(dimension)
            .enumerate()
            .map(|(i, v)| (dot(query, v), i as u32))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.into_iter().take(k).map(|s| s.1).collect()
    }

    #[test]
    fn finds_the_exact_neighbours_and_survives_a_round_trip() {
        let (n, dimension) = (4000, 16);
        let vectors = unit_vectors(n, dimension, 1);
        let graph = HnswGraph::build(&vectors, dimension, 16, 100, 7);
        let loaded = HnswGraph::from_bytes(&graph.to_bytes(), n).unwrap();
        assert_eq!(loaded, graph);
        let queries = unit_vectors(100, dimension, 2);
        let mut found = 0;
        for query in queries.chunks_exact(dimension) {
            let truth = exact(&vectors, dimension, query, 10);
            let hits = loaded.search(&vectors, dimension, query, 10, 64, None);
            assert!(hits.windows(2).all(|w| w[0].1 >= w[1].1), "best first");
            found += hits.iter().filter(|(r, _)| truth.contains(r)).count();
        }
        assert!(found >= 980, "recall@10 {}", found as f64 / 1000.0);
    }

    #[test]
    fn filtered_search_returns_only_allowed_rows_and_finds_them() {
        let (n, dimension) = (3000, 12);
        let vectors = unit_vectors(n, dimension, 3);
        let graph = HnswGraph::build(&vectors, dimension, 16, 100, 7);
        let allowed = |row: u32| row.is_multiple_of(3);
        let queries = unit_vectors(50, dimension, 4);
        let mut found = 0;
        for query in queries.chunks_exact(dimension) {
            let truth: Vec<u32> = {
                let mut scored: Vec<(f32, u32)> = (0..n as u32)
                    .filter(|&r| allowed(r))
                    .map(|r| {
                        (
                            dot(query, &vectors[r as usize * dimension..][..dimension]),
                            r,
                        )
                    })
                    .collect();
                scored.sort_by(|a, b| b.0.total_cmp(&a.0));
                scored.into_iter().take(10).map(|s| s.1).collect()
            };
            let hits = graph.search(&vectors, dimension, query, 10, 100, Some(&allowed));
            assert_eq!(hits.len(), 10);
            assert!(hits.iter().all(|(r, _)| allowed(*r)));
            found += hits.iter().filter(|(r, _)| truth.contains(r)).count();
        }
        assert!(found >= 480, "filtered recall@10 {}", found as f64 / 500.0);
    }

    #[test]
    fn damaged_graph_files_are_errors() {
        let (n, dimension) = (500, 8);
        let vectors = unit_vectors(n, dimension, 5);
        let bytes = HnswGraph::build(&vectors, dimension, 8, 50, 1).to_bytes();
        assert!(
            HnswGraph::from_bytes(&bytes, n + 1).is_err(),
            "row count mismatch"
        );
        assert!(
            HnswGraph::from_bytes(&bytes[..bytes.len() - 4], n).is_err(),
            "truncated"
        );
        assert!(HnswGraph::from_bytes(b"not a graph at all, no", n).is_err());
        // Every single-word corruption of the links is either harmless or refused, and never
        // lets a search read out of bounds.
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for _ in 0..300 {
            let mut damaged = bytes.clone();
            let at = rng.gen_range(8..damaged.len() / 4 * 4 - 4) & !3;
            damaged[at..at + 4].copy_from_slice(&rng.gen::<u32>().to_le_bytes());
            if let Ok(graph) = HnswGraph::from_bytes(&damaged, n) {
                graph.search(&vectors, dimension, &vectors[..dimension], 5, 20, None);
            }
        }
    }

    #[test]
    fn tiny_graphs() {
        let vectors = unit_vectors(3, 4, 6);
        let graph = HnswGraph::build(&vectors, 4, 16, 100, 1);
        let hits = graph.search(&vectors, 4, &vectors[4..8], 5, 10, None);
        assert_eq!(hits.len(), 3);
        assert_eq!(hits[0].0, 1);
        let empty = HnswGraph::build(&[], 4, 16, 100, 1);
        assert!(empty.search(&[], 4, &vectors[..4], 5, 10, None).is_empty());
        assert_eq!(HnswGraph::from_bytes(&empty.to_bytes(), 0).unwrap(), empty);
    }
}
