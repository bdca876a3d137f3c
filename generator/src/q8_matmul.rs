//! Matrix products of Q8_0 weights (GGUF's 8-bit blocks: 32 signed bytes and one scale) with
//! activations quantized the same way, for the embedded LLM.
//!
//! Why ibex does this itself: candle 0.11.1's quantized product computes every (row, column)
//! pair as a separate 1 x k dot product (`vec_dot_q8_0_q8_0`, AVX2) and converts both f16
//! scales for every block of every pair. Profiled on a 418-token prefill of SmolLM2-135M (one
//! thread, perf): 58% of the time in that dot product and 13% in f16 conversions, at 95 prompt
//! tokens/s where llama.cpp prefilled 372 (BENCHMARKS.md). Here the weights are repacked once,
//! at load, into panels of [`PANEL`] output columns whose bytes a vector instruction reads for
//! 16 columns at once (`VPDPBUSD`: 4 byte products per lane, 64 per instruction), while a tile
//! of rows accumulates in registers, so each weight byte loaded serves several rows.
//!
//! The arithmetic is the one candle and llama.cpp do: activations are quantized per block of 32
//! (scale = max |x| / 127, rounded through f16; values rounded to the nearest integer), the
//! integer products of a block are summed exactly, and each block's sum is scaled by the two
//! scales in f32. Only the order of the f32 additions across blocks differs from candle's.
//!
//! Paths, chosen by [`ibex_cpu::simd_level`] (`IBEX_CPU` forces a narrower one): AVX-512 with
//! VNNI (`VPDPBUSD` multiplies unsigned by signed bytes: the weights are stored plus 128, and 128
//! times each activation block's sum, computed as it is quantized, is taken off), AVX2
//! (`VPMADDUBSW` on |activation| and the weight with the activation's sign), and a portable one
//! that the tests compare both with.

use rayon::prelude::*;

use ibex_cpu::SimdLevel;

/// Values per quantization block (GGUF's `QK8_0`).
pub(crate) const BLOCK: usize = 32;
/// Output columns per weight panel: one 512-bit vector of 32-bit sums.
pub(crate) const PANEL: usize = 16;
/// Bytes of one block of one panel: 32 values of 16 columns, in 8 groups of 4 consecutive values,
/// each group column by column (`[group][column][4]`), the layout `VPDPBUSD` reads.
const PANEL_BLOCK_BYTES: usize = BLOCK * PANEL;
/// Bytes of one GGUF Q8_0 block: an f16 scale, then 32 signed bytes.
pub(crate) const GGUF_BLOCK_BYTES: usize = 2 + BLOCK;

/// A weight matrix `[columns, k]` (GGUF's row per output) repacked into column panels.
///
/// 34 bytes per block of 32 values, as in the file: a decoded token reads every weight once, so
/// its speed follows these bytes (with f32 scales and a per-column correction for the unsigned
/// operand it was 40 bytes, and decoding ran at llama.cpp's speed instead of ahead of it).
pub(crate) struct Q8Weights {
    /// Output columns (the matrix's rows in the file).
    columns: usize,
    /// Inputs per column, a multiple of [`BLOCK`].
    k: usize,
    /// `[panel][block]` of [`PANEL_BLOCK_BYTES`] each: every value plus 128 (its bits with the
    /// top one flipped), the unsigned operand of `VPDPBUSD`; the activations stay signed and the
    /// 128 x their block sum this adds is taken off per row ([`Q8Activations`]).
    quants: Vec<u8>,
    /// `[panel][block][column]`: the column's block scale, as GGUF's f16 bits.
    scales: Vec<u16>,
}

impl Q8Weights {
    /// Repacks `columns` rows of `k` values in GGUF's Q8_0 block layout. Columns past the last
    /// full panel are padded with zero weights (their outputs are never written).
    pub(crate) fn from_gguf_blocks(bytes: &[u8], columns: usize, k: usize) -> Result<Self, String> {
        if !k.is_multiple_of(BLOCK) {
            return Err(format!(
                "a Q8_0 row of {k} values is not whole blocks of {BLOCK}"
            ));
        }
        let blocks = k / BLOCK;
        let expected = columns * blocks * GGUF_BLOCK_BYTES;
        if bytes.len() != expected {
            return Err(format!(
                "a {columns} x {k} Q8_0 matrix takes {expected} bytes, the file has {}",
                bytes.len()
            ));
        }
        let panels = columns.div_ceil(PANEL);
        // Padding columns hold value 0 (stored as 128) and scale 0.
        let mut quants = vec![0x80u8; panels * blocks * PANEL_BLOCK_BYTES];
        let mut scales = vec![0u16; panels * blocks * PANEL];
        for column in 0..columns {
            let (panel, lane) = (column / PANEL, column % PANEL);
            for block in 0..blocks {
                let at = (column * blocks + block) * GGUF_BLOCK_BYTES;
                let source = &bytes[at..at + GGUF_BLOCK_BYTES];
                let values = &source[2..];
                let base = (panel * blocks + block) * PANEL_BLOCK_BYTES;
                for (i, &value) in values.iter().enumerate() {
                    let (group, within) = (i / 4, i % 4);
                    quants[base + group * PANEL * 4 + lane * 4 + within] = value ^ 0x80;
                }
                let slot = (panel * blocks + block) * PANEL + lane;
                scales[slot] = u16::from_le_bytes([source[0], source[1]]);
            }
        }
        Ok(Q8Weights {
            columns,
            k,
            quants,
            scales,
        })
    }

    fn blocks(&self) -> usize {
        self.k / BLOCK
    }

    fn panels(&self) -> usize {
        self.columns.div_ceil(PANEL)
    }

    /// Index of the `[panel][block]` slot, in units of one column's block.
    fn slot(&self, panel: usize, block: usize) -> usize {
        (panel * self.blocks() + block) * PANEL
    }

    /// One panel's block: [`PANEL_BLOCK_BYTES`] quants in `VPDPBUSD`'s order.
    fn block_quants(&self, panel: usize, block: usize) -> &[u8] {
        &self.quants[self.slot(panel, block) * BLOCK..][..PANEL_BLOCK_BYTES]
    }

    /// One panel's block scales, a column each (f16 bits).
    fn block_scales(&self, panel: usize, block: usize) -> &[u16] {
        &self.scales[self.slot(panel, block)..][..PANEL]
    }
}

/// Activations quantized to Q8_0, row by row.
pub(crate) struct Q8Activations {
    rows: usize,
    blocks: usize,
    values: Vec<i8>,
    scales: Vec<f32>,
    /// `[row][block]`: 128 x the sum of the block's values, what the weights' +128 adds to each
    /// integer block product.
    biases: Vec<i32>,
}

impl Q8Activations {
    /// Quantizes `rows` rows of `k` values (`k` a multiple of [`BLOCK`]) as candle and llama.cpp
    /// do, the scale rounded through f16 as GGUF stores it.
    pub(crate) fn quantize(x: &[f32], rows: usize, k: usize) -> Self {
        debug_assert_eq!(x.len(), rows * k);
        debug_assert_eq!(k % BLOCK, 0);
        let blocks = k / BLOCK;
        let mut values = vec![0i8; rows * k];
        let mut scales = vec![0f32; rows * blocks];
        let mut biases = vec![0i32; rows * blocks];
        // Rows in parallel: on one thread this was a tenth of a 418-token prefill, all of it
        // outside the products' parallel split.
        values
            .par_chunks_mut(k)
            .zip(scales.par_chunks_mut(blocks))
            .zip(biases.par_chunks_mut(blocks))
            .zip(x.par_chunks(k))
            .with_min_len(ROWS_PER_TASK)
            .for_each(|(((values, scales), biases), x)| quantize_row(x, values, scales, biases));
        Q8Activations {
            rows,
            blocks,
            values,
            scales,
            biases,
        }
    }

    /// Index of a row's block among `[row][block]`.
    fn slot(&self, row: usize, block: usize) -> usize {
        row * self.blocks + block
    }

    /// A row's block of [`BLOCK`] values.
    fn block_values(&self, row: usize, block: usize) -> &[i8] {
        &self.values[self.slot(row, block) * BLOCK..][..BLOCK]
    }
}

/// Rows per task where row-wise work is split across threads.
const ROWS_PER_TASK: usize = 16;

/// Quantizes one row, block by block: scale = max |x| / 127 (stored rounded through f16),
/// values rounded to the nearest integer, halves away from zero.
fn quantize_row(x: &[f32], values: &mut [i8], scales: &mut [f32], biases: &mut [i32]) {
    for (((chunk, out), scale), bias) in x
        .chunks_exact(BLOCK)
        .zip(values.chunks_exact_mut(BLOCK))
        .zip(scales.iter_mut())
        .zip(biases.iter_mut())
    {
        let max = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = max / 127.0;
        let inverse = if d != 0.0 { 1.0 / d } else { 0.0 };
        *scale = half::f16::from_f32(d).to_f32();
        for (o, &v) in out.iter_mut().zip(chunk) {
            *o = (v * inverse).round() as i8;
        }
        *bias = 128 * out.iter().map(|&v| v as i32).sum::<i32>();
    }
}

/// `out[r][c] = sum_k x[r][k] * w[c][k]` for every row of `x` (`rows` x `w.k()`), into `out`
/// (`rows` x `w.columns()`, overwritten). Splits rows (or, for a single row, columns) across
/// rayon's threads when `parallel`.
pub(crate) fn matmul(x: &[f32], rows: usize, w: &Q8Weights, out: &mut [f32], parallel: bool) {
    let level = ibex_cpu::simd_level();
    let path = if level == SimdLevel::Avx512 && ibex_cpu::has_avx512_vnni() {
        Path::Avx512Vnni
    } else if level >= SimdLevel::Avx2 && has_f16c() {
        Path::Avx2
    } else {
        Path::Portable
    };
    matmul_on(path, x, rows, w, out, parallel)
}

/// Whether the CPU converts f16 to f32 in vectors (F16C: every AVX2 CPU made has it, but the
/// AVX2 kernel reads the scales with it, so it is checked rather than assumed).
fn has_f16c() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Which kernel a product runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    Portable,
    Avx2,
    Avx512Vnni,
}

/// [`matmul`] on a given path (the tests run every path the CPU has).
pub(crate) fn matmul_on(
    path: Path,
    x: &[f32],
    rows: usize,
    w: &Q8Weights,
    out: &mut [f32],
    parallel: bool,
) {
    assert_eq!(x.len(), rows * w.k, "activation shape");
    assert_eq!(out.len(), rows * w.columns, "output shape");
    let a = Q8Activations::quantize(x, rows, w.k);
    let n = w.columns;
    let threads = if parallel {
        rayon::current_num_threads()
    } else {
        1
    };
    let panels = w.panels();
    if threads == 1 {
        product_tile_range(path, &a, 0, rows, w, 0, panels, out, n);
    } else if rows == 1 {
        // One row (a decoded token): panels across threads, each writing its own columns.
        let per_task = panels.div_ceil(threads);
        out.par_chunks_mut(per_task * PANEL)
            .enumerate()
            .for_each(|(task, chunk)| {
                let first = task * per_task;
                let last = (first + per_task).min(panels);
                product_tile_range(path, &a, 0, 1, w, first, last, chunk, chunk.len());
            });
    } else {
        // A prompt: rows across threads, each streaming every panel.
        let rows_per_task = rows.div_ceil(threads);
        out.par_chunks_mut(rows_per_task * n)
            .enumerate()
            .for_each(|(task, chunk)| {
                let count = chunk.len() / n;
                let first_row = task * rows_per_task;
                product_tile_range(path, &a, first_row, count, w, 0, panels, chunk, n);
            });
    }
}

/// Rows `first_row..first_row + rows` of the product, panels `first..last`, into `out`, whose
/// rows are `stride` floats apart and whose column 0 is panel `first`'s first column.
#[allow(clippy::too_many_arguments)]
fn product_tile_range(
    path: Path,
    a: &Q8Activations,
    first_row: usize,
    rows: usize,
    w: &Q8Weights,
    first: usize,
    last: usize,
    out: &mut [f32],
    stride: usize,
) {
    // Panels in chunks that stay in L2 while every row tile passes over them: row tiles outside
    // would stream a whole matrix (1.7 MB for SmolLM2's gate and up) from L3 per 4 rows.
    for chunk_first in (first..last).step_by(PANELS_PER_CHUNK) {
        let chunk_last = (chunk_first + PANELS_PER_CHUNK).min(last);
        product_tiles(
            path,
            a,
            first_row,
            rows,
            w,
            (chunk_first, chunk_last),
            first,
            out,
            stride,
        );
    }
}

/// [`product_tile_range`] over panels `chunk.0..chunk.1`; output column 0 is panel `first`'s.
#[allow(clippy::too_many_arguments)]
fn product_tiles(
    path: Path,
    a: &Q8Activations,
    first_row: usize,
    rows: usize,
    w: &Q8Weights,
    chunk: (usize, usize),
    first: usize,
    out: &mut [f32],
    stride: usize,
) {
    let mut row = 0;
    while row < rows {
        let tile = (rows - row).min(TILE_ROWS);
        for panel in chunk.0..chunk.1 {
            let mut sums = [[0f32; PANEL]; TILE_ROWS];
            match path {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the path is AVX-512 with VNNI only when `matmul` found avx512f,
                // avx512bw and avx512vnni on this CPU (the tests choose it under the same check);
                // `matmul_on` checked the shapes, so the tile's rows and the panel exist.
                Path::Avx512Vnni => unsafe {
                    let row0 = first_row + row;
                    match tile {
                        4 => x86::panel_avx512_vnni::<4>(a, row0, w, panel, &mut sums),
                        3 => x86::panel_avx512_vnni::<3>(a, row0, w, panel, &mut sums),
                        2 => x86::panel_avx512_vnni::<2>(a, row0, w, panel, &mut sums),
                        _ => x86::panel_avx512_vnni::<1>(a, row0, w, panel, &mut sums),
                    }
                },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the path is AVX2 only when the CPU has AVX2 and FMA (`simd_level`) and
                // F16C (`has_f16c`).
                Path::Avx2 => unsafe {
                    x86::panel_avx2(a, first_row + row, tile, w, panel, &mut sums)
                },
                _ => panel_portable(a, first_row + row, tile, w, panel, &mut sums),
            }
            let column0 = (panel - first) * PANEL;
            let width = PANEL.min(w.columns - panel * PANEL);
            for (r, lane_sums) in sums.iter().enumerate().take(tile) {
                let at = (row + r) * stride + column0;
                out[at..at + width].copy_from_slice(&lane_sums[..width]);
            }
        }
        row += tile;
    }
}

/// Rows a kernel keeps in registers at once.
const TILE_ROWS: usize = 4;

/// Panels whose weights one pass of row tiles reuses: 8 x 16 columns x 576 values (SmolLM2's
/// hidden size) is 74 KB of weights, within any L2 beside the activations.
const PANELS_PER_CHUNK: usize = 8;

/// The reference kernel: exact integer block sums, scaled and added block by block.
fn panel_portable(
    a: &Q8Activations,
    row0: usize,
    rows: usize,
    w: &Q8Weights,
    panel: usize,
    sums: &mut [[f32; PANEL]; TILE_ROWS],
) {
    let blocks = w.blocks();
    for block in 0..blocks {
        let wq = w.block_quants(panel, block);
        let ws = w.block_scales(panel, block);
        for (r, row_sums) in sums.iter_mut().enumerate().take(rows) {
            let row = row0 + r;
            let aq = a.block_values(row, block);
            let ascale = a.scales[a.slot(row, block)];
            for lane in 0..PANEL {
                let mut total = 0i32;
                for group in 0..BLOCK / 4 {
                    for within in 0..4 {
                        let weight = (wq[group * PANEL * 4 + lane * 4 + within] ^ 0x80) as i8;
                        total += aq[group * 4 + within] as i32 * weight as i32;
                    }
                }
                let scale = half::f16::from_bits(ws[lane]).to_f32();
                row_sums[lane] += total as f32 * (ascale * scale);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Q8Activations, Q8Weights, BLOCK, PANEL, TILE_ROWS};
    use std::arch::x86_64::*;

    /// One panel for `ROWS` rows with `VPDPBUSD`: per block, each row's 32 values go 4 at a
    /// time (one broadcast load, signed) against 16 columns' 4 values (stored +128, unsigned). The
    /// row count is a constant so that the row loops unroll into registers (measured: with a
    /// run-time count and checked byte loads, the scalar work of building each broadcast bound
    /// the kernel at about a tenth of the instruction's rate).
    ///
    /// # Safety
    /// The CPU must have AVX-512F, AVX-512BW and AVX-512 VNNI; rows `row0..row0 + ROWS` exist in
    /// `a`, `panel` is one of `w`'s panels, and `a` has `w`'s blocks per row.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn panel_avx512_vnni<const ROWS: usize>(
        a: &Q8Activations,
        row0: usize,
        w: &Q8Weights,
        panel: usize,
        sums: &mut [[f32; PANEL]; TILE_ROWS],
    ) {
        let blocks = w.blocks();
        debug_assert!(row0 + ROWS <= a.rows && panel < w.panels() && a.blocks == blocks);
        let mut acc = [_mm512_setzero_ps(); ROWS];
        let values = a.values.as_ptr();
        for block in 0..blocks {
            let slot = w.slot(panel, block);
            // SAFETY (all reads below): `slot` is within the weights' `[panel][block]` arrays
            // (panel and block in range), which hold PANEL scales and
            // PANEL_BLOCK_BYTES quants per slot; each row's block of BLOCK values exists in `a`
            // (row and block in range), and group * 4 + 4 <= BLOCK.
            let wq = w.quants.as_ptr().add(slot * BLOCK);
            let ws = _mm512_cvtph_ps(_mm256_loadu_si256(w.scales.as_ptr().add(slot).cast()));
            // Each row's sums start at minus the bias the unsigned weights add.
            let mut ints = [_mm512_setzero_si512(); ROWS];
            for (r, sums) in ints.iter_mut().enumerate() {
                let bias = *a.biases.as_ptr().add((row0 + r) * a.blocks + block);
                *sums = _mm512_set1_epi32(-bias);
            }
            let row_values: [*const i8; ROWS] =
                std::array::from_fn(|r| values.add(((row0 + r) * a.blocks + block) * BLOCK));
            for group in 0..BLOCK / 4 {
                let wv = _mm512_loadu_si512(wq.add(group * PANEL * 4).cast());
                for r in 0..ROWS {
                    let four = row_values[r].add(group * 4).cast::<i32>().read_unaligned();
                    ints[r] = _mm512_dpbusd_epi32(ints[r], wv, _mm512_set1_epi32(four));
                }
            }
            for r in 0..ROWS {
                let ascale = _mm512_set1_ps(*a.scales.as_ptr().add((row0 + r) * a.blocks + block));
                acc[r] = _mm512_fmadd_ps(
                    _mm512_cvtepi32_ps(ints[r]),
                    _mm512_mul_ps(ascale, ws),
                    acc[r],
                );
            }
        }
        for r in 0..ROWS {
            _mm512_storeu_ps(sums[r].as_mut_ptr(), acc[r]);
        }
    }

    /// One panel for up to [`TILE_ROWS`] rows on AVX2: `VPMADDUBSW` multiplies unsigned by
    /// signed bytes, so each row's values go in as |x| and the weights take x's sign (at most
    /// 127 * 127 * 2 per 16-bit pair: no saturation), then `VPMADDWD` sums pairs to 32 bits.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    // The row loops index the integer and float accumulators of the same row together.
    #[allow(clippy::needless_range_loop)]
    pub(super) unsafe fn panel_avx2(
        a: &Q8Activations,
        row0: usize,
        rows: usize,
        w: &Q8Weights,
        panel: usize,
        sums: &mut [[f32; PANEL]; TILE_ROWS],
    ) {
        let blocks = w.blocks();
        let ones = _mm256_set1_epi16(1);
        let flip = _mm256_set1_epi8(0x80u8 as i8);
        // Two rows at a time: 16 ymm registers hold 4 integer and 4 float accumulators, the two
        // weight halves and temporaries.
        let mut r = 0;
        while r < rows {
            let pair = (rows - r).min(2);
            let mut acc = [[_mm256_setzero_ps(); 2]; 2];
            for block in 0..blocks {
                let wq = w.block_quants(panel, block).as_ptr();
                let mut ints = [[_mm256_setzero_si256(); 2]; 2];
                for group in 0..BLOCK / 4 {
                    // SAFETY: `wq` points at a block's PANEL * BLOCK bytes; group * 64 + 64 is within.
                    // The stored +128 flipped back: signed weights.
                    let w_low = _mm256_xor_si256(
                        _mm256_loadu_si256(wq.add(group * PANEL * 4).cast()),
                        flip,
                    );
                    let w_high = _mm256_xor_si256(
                        _mm256_loadu_si256(wq.add(group * PANEL * 4 + 32).cast()),
                        flip,
                    );
                    for p in 0..pair {
                        let values = a.block_values(row0 + r + p, block);
                        // SAFETY: `values` holds BLOCK bytes and group * 4 + 4 <= BLOCK.
                        let four = values
                            .as_ptr()
                            .add(group * 4)
                            .cast::<i32>()
                            .read_unaligned();
                        let av = _mm256_set1_epi32(four);
                        let magnitude = _mm256_abs_epi8(av);
                        let low = _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(w_low, av));
                        let high = _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(w_high, av));
                        ints[p][0] = _mm256_add_epi32(ints[p][0], _mm256_madd_epi16(low, ones));
                        ints[p][1] = _mm256_add_epi32(ints[p][1], _mm256_madd_epi16(high, ones));
                    }
                }
                let scales = w.block_scales(panel, block);
                let ws_low = _mm256_cvtph_ps(_mm_loadu_si128(scales.as_ptr().cast()));
                let ws_high = _mm256_cvtph_ps(_mm_loadu_si128(scales[8..].as_ptr().cast()));
                for p in 0..pair {
                    let ascale = _mm256_set1_ps(a.scales[a.slot(row0 + r + p, block)]);
                    acc[p][0] = _mm256_fmadd_ps(
                        _mm256_cvtepi32_ps(ints[p][0]),
                        _mm256_mul_ps(ascale, ws_low),
                        acc[p][0],
                    );
                    acc[p][1] = _mm256_fmadd_ps(
                        _mm256_cvtepi32_ps(ints[p][1]),
                        _mm256_mul_ps(ascale, ws_high),
                        acc[p][1],
                    );
                }
            }
            for p in 0..pair {
                _mm256_storeu_ps(sums[r + p].as_mut_ptr(), acc[p][0]);
                _mm256_storeu_ps(sums[r + p].as_mut_ptr().add(8), acc[p][1]);
            }
            r += pair;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// GGUF Q8_0 bytes of random weights.
    fn random_gguf(columns: usize, k: usize, rng: &mut rand::rngs::StdRng) -> Vec<u8> {
        let mut bytes = Vec::new();
        for _ in 0..columns * k / BLOCK {
            let scale = half::f16::from_f32(rng.gen_range(0.001f32..0.05));
            bytes.extend_from_slice(&scale.to_le_bytes());
            for _ in 0..BLOCK {
                bytes.push(rng.gen_range(-127i32..=127) as i8 as u8);
            }
        }
        bytes
    }

    /// The product computed the plainest way: dequantized weights and quantized activations.
    fn reference(x: &[f32], rows: usize, bytes: &[u8], columns: usize, k: usize) -> Vec<f32> {
        let a = Q8Activations::quantize(x, rows, k);
        let blocks = k / BLOCK;
        let mut out = vec![0f32; rows * columns];
        for r in 0..rows {
            for c in 0..columns {
                let mut total = 0f64;
                for b in 0..blocks {
                    let at = (c * blocks + b) * GGUF_BLOCK_BYTES;
                    let d = half::f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32() as f64;
                    let mut ints = 0i64;
                    for i in 0..BLOCK {
                        ints += a.values[(r * blocks + b) * BLOCK + i] as i64
                            * bytes[at + 2 + i] as i8 as i64;
                    }
                    total += ints as f64 * d * a.scales[r * blocks + b] as f64;
                }
                out[r * columns + c] = total as f32;
            }
        }
        out
    }

    fn paths() -> Vec<Path> {
        let mut paths = vec![Path::Portable];
        let level = ibex_cpu::detected();
        if level >= SimdLevel::Avx2 && has_f16c() {
            paths.push(Path::Avx2);
        }
        if level == SimdLevel::Avx512 && ibex_cpu::has_avx512_vnni() {
            paths.push(Path::Avx512Vnni);
        }
        paths
    }

    #[test]
    fn every_path_matches_the_dequantized_product() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        // Rows that fill no tile, one tile and a half; columns that end inside a panel.
        for &(rows, columns, k) in &[(1, 16, 32), (3, 40, 64), (7, 33, 96), (9, 64, 576)] {
            let bytes = random_gguf(columns, k, &mut rng);
            let w = Q8Weights::from_gguf_blocks(&bytes, columns, k).expect("packs");
            let x: Vec<f32> = (0..rows * k).map(|_| rng.gen_range(-2f32..2.0)).collect();
            let expected = reference(&x, rows, &bytes, columns, k);
            for path in paths() {
                for parallel in [false, true] {
                    let mut out = vec![f32::NAN; rows * columns];
                    matmul_on(path, &x, rows, &w, &mut out, parallel);
                    for (i, (&got, &want)) in out.iter().zip(&expected).enumerate() {
                        assert!(
                            (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "{path:?} parallel={parallel} {rows}x{columns}x{k} at {i}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn quantization_rounds_like_gguf() {
        let mut x = vec![0f32; 64];
        x[0] = 1.27;
        x[1] = -0.635;
        x[2] = 0.004;
        let a = Q8Activations::quantize(&x, 1, 64);
        assert_eq!(a.values[0], 127);
        assert_eq!(a.values[1], -64); // -63.5 rounds away from zero
        assert_eq!(a.values[2], 0);
        assert_eq!(a.scales[0], half::f16::from_f32(0.01).to_f32());
        assert_eq!(a.scales[1], 0.0, "an all-zero block has scale 0");
        assert!(a.values[32..].iter().all(|&v| v == 0));
    }

    #[test]
    fn malformed_matrices_are_refused() {
        assert!(Q8Weights::from_gguf_blocks(&[0; 34], 1, 31).is_err());
        let short = Q8Weights::from_gguf_blocks(&[0; 33], 1, 32)
            .err()
            .unwrap_or_default();
        assert!(short.contains("34 bytes"), "{short}");
    }
}
