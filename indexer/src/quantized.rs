//! Vectors held in RAM below 32 bits per dimension, for indexes larger than the machine's memory
//! would hold at full precision.
//!
//! The segment files keep every vector at full precision: quantization is how a process holds
//! them, chosen per index ([`VectorStorage`], in the manifest) and applied when a segment is
//! loaded or written, so switching costs no rewrite and an index read by an older ibex is still
//! whole. A quantized segment ranks by its codes (graph walk or scan) and then rescores the best
//! candidates with their full-precision vectors, read from the segment file, so the scores a
//! search returns are exact dot products and only the candidate list is approximate.
//!
//! - `int8`: per-dimension scalar quantization (as faiss's SQ8): each dimension's range, taken
//!   from a sample of the segment's rows, split into 256 steps; a query is scored against the
//!   codes without decoding them (`q · (offset + step ⊙ code)` = `q · offset + (q ⊙ step) · code`).
//!   4x less memory than f32.
//! - `binary`: one sign bit per dimension, scored asymmetrically (the query stays f32:
//!   `Σ q_d · sign_d`, through a per-query table of 256 partial sums per code byte, as in product
//!   quantization's lookup tables). 32x less memory; needs a deeper rescoring list.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::hnsw::Similarity;
use ibex_embedder::vector::dot_u8;

/// How an index holds its vectors in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VectorStorage {
    /// 32-bit floats: exact, 4 bytes per dimension.
    #[default]
    F32,
    /// 8-bit scalar codes, rescored at full precision: 1 byte per dimension.
    Int8,
    /// Sign bits, rescored at full precision: 1 bit per dimension.
    Binary,
}

impl VectorStorage {
    /// The name the CLI, the API and the manifest use.
    pub fn as_str(self) -> &'static str {
        match self {
            VectorStorage::F32 => "f32",
            VectorStorage::Int8 => "int8",
            VectorStorage::Binary => "binary",
        }
    }

    /// Whether this is the full-precision default (left out of manifests, so that manifests
    /// written before the option existed keep their checksum).
    pub fn is_f32(&self) -> bool {
        *self == VectorStorage::F32
    }

    /// How many candidates a search of `k` rescores at full precision: sign bits order the
    /// candidates more coarsely than int8 codes, so they get the deeper list. Chosen, not swept:
    /// with these depths `ann_bench quantized` measured recall@10 0.9855 (int8) and 0.9837
    /// (binary) against f32's 0.9865 at 1M vectors (BENCHMARKS.md, "Quantized vectors").
    pub fn rescoring_depth(self, k: usize) -> usize {
        match self {
            VectorStorage::F32 => k,
            VectorStorage::Int8 => k.saturating_mul(4).max(40),
            VectorStorage::Binary => k.saturating_mul(10).max(100),
        }
    }
}

impl FromStr for VectorStorage {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value.to_ascii_lowercase().as_str() {
            "f32" | "float32" | "full" => Ok(VectorStorage::F32),
            "int8" | "sq8" => Ok(VectorStorage::Int8),
            "binary" | "bit" | "1bit" => Ok(VectorStorage::Binary),
            other => Err(format!(
                "unknown vector storage {other:?}: use f32 (exact), int8 (4x less memory) or \
                 binary (32x less memory), the last two rescored at full precision"
            )),
        }
    }
}

impl std::fmt::Display for VectorStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Rows of a segment sampled to find each dimension's range for int8 codes: enough that a
/// value outside the sampled range is rare (it is clamped to the end code, and rescoring at full
/// precision corrects the candidate's score).
pub(crate) const RANGE_SAMPLE_ROWS: usize = 16_384;

/// The rows the range sample reads, evenly spread over a segment of `rows` rows.
pub(crate) fn sample_rows(rows: usize) -> impl Iterator<Item = usize> {
    let taken = rows.min(RANGE_SAMPLE_ROWS);
    (0..taken).map(move |i| i * rows / taken.max(1))
}

/// 8-bit scalar codes of a segment's rows.
pub(crate) struct Int8Codes {
    dimension: usize,
    /// Each dimension's lowest value (code 0).
    offset: Vec<f32>,
    /// Each dimension's value step between consecutive codes.
    step: Vec<f32>,
    codes: Vec<u8>,
}

impl Int8Codes {
    /// Codes with per-dimension ranges taken from `sample` (row-major vectors), for `rows` rows.
    pub(crate) fn with_ranges(dimension: usize, sample: &[f32], rows: usize) -> Int8Codes {
        let mut low = vec![f32::INFINITY; dimension];
        let mut high = vec![f32::NEG_INFINITY; dimension];
        for vector in sample.chunks_exact(dimension.max(1)) {
            for (d, &value) in vector.iter().enumerate() {
                low[d] = low[d].min(value);
                high[d] = high[d].max(value);
            }
        }
        let mut offset = Vec::with_capacity(dimension);
        let mut step = Vec::with_capacity(dimension);
        for d in 0..dimension {
            if low[d].is_finite() && high[d].is_finite() && high[d] > low[d] {
                offset.push(low[d]);
                step.push((high[d] - low[d]) / 255.0);
            } else {
                // No sample, or a constant dimension: code 0 stands for the value itself.
                offset.push(if low[d].is_finite() { low[d] } else { 0.0 });
                step.push(0.0);
            }
        }
        Int8Codes {
            dimension,
            offset,
            step,
            codes: Vec::with_capacity(rows * dimension),
        }
    }

    /// Appends the codes of one row.
    pub(crate) fn push(&mut self, vector: &[f32]) {
        for ((&value, &offset), &step) in vector.iter().zip(&self.offset).zip(&self.step) {
            let code = if step > 0.0 {
                ((value - offset) / step).round().clamp(0.0, 255.0) as u8
            } else {
                0
            };
            self.codes.push(code);
        }
    }

    /// Bytes held in memory.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.codes.capacity() + (self.offset.capacity() + self.step.capacity()) * 4
    }

    /// A scorer of `query` against every row.
    pub(crate) fn scorer(&self, query: &[f32]) -> Int8Scorer<'_> {
        let weights = query.iter().zip(&self.step).map(|(q, s)| q * s).collect();
        Int8Scorer {
            codes: self,
            base: query.iter().zip(&self.offset).map(|(q, o)| q * o).sum(),
            weights,
        }
    }
}

/// A query against [`Int8Codes`]: its dot product with the offsets, and its per-dimension
/// products with the steps.
pub(crate) struct Int8Scorer<'a> {
    codes: &'a Int8Codes,
    base: f32,
    weights: Vec<f32>,
}

impl Similarity for Int8Scorer<'_> {
    #[inline]
    fn similarity(&self, row: u32) -> f32 {
        let start = row as usize * self.codes.dimension;
        self.base
            + dot_u8(
                &self.weights,
                &self.codes.codes[start..start + self.codes.dimension],
            )
    }

    #[inline]
    fn prefetch(&self, row: u32) {
        crate::hnsw::prefetch_bytes(&self.codes.codes[row as usize * self.codes.dimension..]);
    }

    fn rows(&self) -> usize {
        self.codes.codes.len() / self.codes.dimension.max(1)
    }
}

/// Sign bits of a segment's rows, `dimension.div_ceil(8)` bytes a row (bit `d % 8` of byte
/// `d / 8` is set when dimension `d` is positive).
pub(crate) struct BinaryCodes {
    bytes_per_row: usize,
    codes: Vec<u8>,
}

impl BinaryCodes {
    pub(crate) fn new(dimension: usize, rows: usize) -> BinaryCodes {
        let bytes_per_row = dimension.div_ceil(8);
        BinaryCodes {
            bytes_per_row,
            codes: Vec::with_capacity(rows * bytes_per_row),
        }
    }

    /// Appends the codes of one row.
    pub(crate) fn push(&mut self, vector: &[f32]) {
        for byte in vector.chunks(8) {
            let mut code = 0u8;
            for (bit, &value) in byte.iter().enumerate() {
                if value > 0.0 {
                    code |= 1 << bit;
                }
            }
            self.codes.push(code);
        }
    }

    /// Bytes held in memory.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.codes.capacity()
    }

    /// A scorer of `query` against every row: for each code byte, the sum of the query's values
    /// over each of the 256 bit patterns, so a row costs one lookup per byte.
    pub(crate) fn scorer(&self, query: &[f32]) -> BinaryScorer<'_> {
        let mut table = vec![0f32; self.bytes_per_row * 256];
        for (j, part) in table.chunks_exact_mut(256).enumerate() {
            for pattern in 1..256usize {
                let lowest = pattern.trailing_zeros() as usize;
                let value = query.get(j * 8 + lowest).copied().unwrap_or(0.0);
                part[pattern] = part[pattern & (pattern - 1)] + value;
            }
        }
        BinaryScorer {
            codes: self,
            table,
            query_sum: query.iter().sum(),
        }
    }
}

/// A query against [`BinaryCodes`]: `Σ_d q_d · (±1)` = `2 · Σ_{bits set} q_d − Σ_d q_d`.
pub(crate) struct BinaryScorer<'a> {
    codes: &'a BinaryCodes,
    table: Vec<f32>,
    query_sum: f32,
}

impl Similarity for BinaryScorer<'_> {
    #[inline]
    fn similarity(&self, row: u32) -> f32 {
        let width = self.codes.bytes_per_row;
        let start = row as usize * width;
        let mut sum = 0f32;
        for (j, &code) in self.codes.codes[start..start + width].iter().enumerate() {
            sum += self.table[j * 256 + code as usize];
        }
        2.0 * sum - self.query_sum
    }

    #[inline]
    fn prefetch(&self, row: u32) {
        crate::hnsw::prefetch_bytes(&self.codes.codes[row as usize * self.codes.bytes_per_row..]);
    }

    fn rows(&self) -> usize {
        self.codes.codes.len() / self.codes.bytes_per_row.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors(n: usize, dimension: usize) -> Vec<f32> {
        (0..n * dimension)
            .map(|i| (((i * 7919) % 1000) as f32 / 500.0 - 1.0) * 0.2)
            .collect()
    }

    #[test]
    fn storage_names_round_trip_and_unknown_names_say_what_exists() {
        for storage in [
            VectorStorage::F32,
            VectorStorage::Int8,
            VectorStorage::Binary,
        ] {
            assert_eq!(storage.as_str().parse::<VectorStorage>(), Ok(storage));
        }
        let err = "int4".parse::<VectorStorage>().unwrap_err();
        assert!(err.contains("int8") && err.contains("binary"), "{err}");
    }

    #[test]
    fn int8_scores_are_the_dot_product_within_half_a_step_per_dimension() {
        let dimension = 37;
        let base = vectors(50, dimension);
        let mut codes = Int8Codes::with_ranges(dimension, &base, 50);
        base.chunks_exact(dimension).for_each(|v| codes.push(v));
        let query: Vec<f32> = (0..dimension).map(|d| (d as f32 - 18.0) / 40.0).collect();
        let scorer = codes.scorer(&query);
        let bound: f32 = query
            .iter()
            .zip(&codes.step)
            .map(|(q, s)| q.abs() * s / 2.0)
            .sum::<f32>()
            + 1e-5;
        for (row, vector) in base.chunks_exact(dimension).enumerate() {
            let exact: f32 = query.iter().zip(vector).map(|(a, b)| a * b).sum();
            let approximate = scorer.similarity(row as u32);
            assert!(
                (approximate - exact).abs() <= bound,
                "row {row}: {approximate} against {exact} (bound {bound})"
            );
        }
    }

    #[test]
    fn values_outside_the_sampled_range_are_clamped_and_constant_dimensions_kept() {
        let mut codes = Int8Codes::with_ranges(2, &[0.0, 0.5, 1.0, 0.5], 3);
        codes.push(&[2.0, 0.5]);
        codes.push(&[-1.0, 0.5]);
        assert_eq!(codes.codes, vec![255, 0, 0, 0]);
        let scorer = codes.scorer(&[1.0, 2.0]);
        // Row 0 decodes to (1.0, 0.5): the clamp, and the constant dimension's value.
        assert!((scorer.similarity(0) - 2.0).abs() < 1e-6);
    }

    #[test]
    fn binary_scores_are_the_query_summed_under_the_signs() {
        let dimension = 21; // not a multiple of 8: the last byte is partial
        let base = vectors(40, dimension);
        let mut codes = BinaryCodes::new(dimension, 40);
        base.chunks_exact(dimension).for_each(|v| codes.push(v));
        assert_eq!(codes.codes.len(), 40 * 3);
        let query: Vec<f32> = (0..dimension).map(|d| (d as f32 - 9.0) / 10.0).collect();
        let scorer = codes.scorer(&query);
        for (row, vector) in base.chunks_exact(dimension).enumerate() {
            let expected: f32 = query
                .iter()
                .zip(vector)
                .map(|(q, v)| if *v > 0.0 { *q } else { -*q })
                .sum();
            assert!((scorer.similarity(row as u32) - expected).abs() < 1e-4);
        }
    }
}
