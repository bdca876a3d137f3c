//! Matrix products with few rows against fixed weights: a search's query, one short text.
//!
//! The gemm crate is tuned for many rows: on a query of 21 tokens (the median of the shared
//! collections' 526 queries) ibex's forward pass took 5.5 ms where onnxruntime took 2.9 ms
//! (`bash bench/query_latency.sh`, 2 cores, AVX-512 Xeon), 61% of it in gemm's kernel. Its
//! kernels read the weights (`[k, n]`, row-major) a row of `k` at a time with a stride of `n`
//! floats, which a product with few rows cannot amortize. onnxruntime repacks constant weights
//! once, at load; so does this module: each weight matrix is also kept as column panels of
//! [`PANEL`] columns, each panel's `k` rows contiguous, so a product streams every weight once,
//! in order, while a tile of rows accumulates in registers.
//!
//! Products with more than [`MAX_ROWS`] rows (batches of documents) stay on gemm, whose packing
//! pays off there. The panels cost a second copy of the layer weights (42 MB for
//! all-MiniLM-L6-v2).

use rayon::prelude::*;

use crate::cpu::SimdLevel;

/// Columns per panel: two AVX-512 vectors, four AVX2 ones.
pub(crate) const PANEL: usize = 32;

/// The most rows a product takes through the panels; more go to gemm. Texts of 60 random
/// cacm spans each, 2 threads, p50 per text (AVX-512 Xeon): panels 2.3-2.5 ms against gemm's
/// 4.0 ms at 15 tokens, level at 56 tokens (7.3-7.8 ms both), gemm ahead from 85 tokens
/// (11.1 against 11.7-12.4 ms).
pub(crate) const MAX_ROWS: usize = 48;

/// A weight matrix `[k, n]` as column panels: panel `p` holds columns `p * PANEL ..` for every
/// row `0..k`, row-major with `PANEL` columns (the last panel zero-padded).
pub(crate) struct PanelWeights {
    k: usize,
    n: usize,
    data: Vec<f32>,
}

impl PanelWeights {
    /// Repacks `b`, `[k, n]` row-major.
    pub(crate) fn pack(b: &[f32], k: usize, n: usize) -> PanelWeights {
        assert_eq!(b.len(), k * n, "weights of {k} x {n}");
        let panels = n.div_ceil(PANEL);
        let mut data = vec![0f32; panels * k * PANEL];
        for p in 0..panels {
            let cols = PANEL.min(n - p * PANEL);
            for row in 0..k {
                data[(p * k + row) * PANEL..][..cols]
                    .copy_from_slice(&b[row * n + p * PANEL..][..cols]);
            }
        }
        PanelWeights { k, n, data }
    }

    fn panels(&self) -> usize {
        self.n.div_ceil(PANEL)
    }

    fn panel(&self, p: usize) -> &[f32] {
        &self.data[p * self.k * PANEL..(p + 1) * self.k * PANEL]
    }
}

thread_local! {
    /// Panel-major products of the calling thread, reused: a fresh buffer of this size would
    /// be mapped and zeroed by the kernel on every product.
    static PRODUCTS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `out[m, n] += a[m, k] · b`, all row-major, with the kernels of `level`; the panels are
/// shared among rayon's threads when `parallel`.
pub(crate) fn matmul_add(
    a: &[f32],
    m: usize,
    b: &PanelWeights,
    out: &mut [f32],
    parallel: bool,
    level: SimdLevel,
) {
    let (k, n) = (b.k, b.n);
    assert!(
        a.len() == m * k && out.len() == m * n,
        "a is {m} x {k}, out {m} x {n}"
    );
    if m == 0 {
        return;
    }
    // Taken out of the slot, not borrowed: while this thread waits on the split below, rayon
    // may run another product on it (work stealing), which then makes its own buffer.
    let mut products = PRODUCTS.take();
    products.clear();
    products.resize(b.panels() * m * PANEL, 0.0);
    let one_panel = |(p, product): (usize, &mut [f32])| {
        panel_product(a, m, k, b.panel(p), product, level);
    };
    if parallel {
        products
            .par_chunks_mut(m * PANEL)
            .enumerate()
            .for_each(one_panel);
    } else {
        products
            .chunks_mut(m * PANEL)
            .enumerate()
            .for_each(one_panel);
    }
    for (p, product) in products.chunks_exact(m * PANEL).enumerate() {
        let cols = PANEL.min(n - p * PANEL);
        for row in 0..m {
            let target = &mut out[row * n + p * PANEL..][..cols];
            for (o, v) in target.iter_mut().zip(&product[row * PANEL..][..cols]) {
                *o += v;
            }
        }
    }
    PRODUCTS.set(products);
}

/// `product[m, PANEL] = a[m, k] · panel[k, PANEL]`, a tile of rows at a time.
fn panel_product(
    a: &[f32],
    m: usize,
    k: usize,
    panel: &[f32],
    product: &mut [f32],
    level: SimdLevel,
) {
    debug_assert!(a.len() == m * k && panel.len() == k * PANEL && product.len() == m * PANEL);
    #[cfg(target_arch = "x86_64")]
    match level {
        SimdLevel::Avx512 => {
            let mut row = 0;
            while row < m {
                let rows = (m - row).min(12);
                let a = &a[row * k..(row + rows) * k];
                let out = &mut product[row * PANEL..(row + rows) * PANEL];
                // SAFETY: crate::cpu hands out Avx512 only when the CPU has AVX-512F; the
                // slices have the lengths the kernel reads and writes (rows x k, k x PANEL,
                // rows x PANEL), checked by its asserts.
                unsafe {
                    match rows {
                        12 => x86::tile_avx512::<12>(a, k, panel, out),
                        11 => x86::tile_avx512::<11>(a, k, panel, out),
                        10 => x86::tile_avx512::<10>(a, k, panel, out),
                        9 => x86::tile_avx512::<9>(a, k, panel, out),
                        8 => x86::tile_avx512::<8>(a, k, panel, out),
                        7 => x86::tile_avx512::<7>(a, k, panel, out),
                        6 => x86::tile_avx512::<6>(a, k, panel, out),
                        5 => x86::tile_avx512::<5>(a, k, panel, out),
                        4 => x86::tile_avx512::<4>(a, k, panel, out),
                        3 => x86::tile_avx512::<3>(a, k, panel, out),
                        2 => x86::tile_avx512::<2>(a, k, panel, out),
                        _ => x86::tile_avx512::<1>(a, k, panel, out),
                    }
                }
                row += rows;
            }
            return;
        }
        SimdLevel::Avx2 => {
            let mut row = 0;
            while row < m {
                let rows = (m - row).min(2);
                let a = &a[row * k..(row + rows) * k];
                let out = &mut product[row * PANEL..(row + rows) * PANEL];
                // SAFETY: crate::cpu hands out Avx2 only when the CPU has AVX2 and FMA; lengths
                // as above.
                unsafe {
                    match rows {
                        2 => x86::tile_avx2::<2>(a, k, panel, out),
                        _ => x86::tile_avx2::<1>(a, k, panel, out),
                    }
                }
                row += rows;
            }
            return;
        }
        SimdLevel::Scalar => {}
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = level;
    for row in 0..m {
        let mut sums = [0f32; PANEL];
        for (x, weights) in a[row * k..(row + 1) * k]
            .iter()
            .zip(panel.chunks_exact(PANEL))
        {
            for (s, w) in sums.iter_mut().zip(weights) {
                *s += x * w;
            }
        }
        product[row * PANEL..(row + 1) * PANEL].copy_from_slice(&sums);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::PANEL;

    /// `out[R, PANEL] = a[R, k] · panel[k, PANEL]` with 2·R AVX-512 accumulators (R <= 12: 24
    /// of the 32 registers; tiles of 12 rows measured 0.2-0.3 ms faster per query than tiles of
    /// 8, which read each panel more often).
    ///
    /// # Safety
    /// The CPU must have AVX-512F. (Lengths are checked: `a` is `R x k`, `panel` `k x PANEL`,
    /// `out` `R x PANEL`.)
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile_avx512<const R: usize>(
        a: &[f32],
        k: usize,
        panel: &[f32],
        out: &mut [f32],
    ) {
        assert!(a.len() == R * k && panel.len() == k * PANEL && out.len() == R * PANEL);
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        let (a, panel) = (a.as_ptr(), panel.as_ptr());
        for i in 0..k {
            // SAFETY: i < k, so the panel row i (PANEL floats from i * PANEL) and the values
            // a[r * k + i] for r < R are inside the slices checked above.
            unsafe {
                let b0 = _mm512_loadu_ps(panel.add(i * PANEL));
                let b1 = _mm512_loadu_ps(panel.add(i * PANEL + 16));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let x = _mm512_set1_ps(*a.add(r * k + i));
                    acc[0] = _mm512_fmadd_ps(x, b0, acc[0]);
                    acc[1] = _mm512_fmadd_ps(x, b1, acc[1]);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            // SAFETY: row r of out is PANEL = 32 floats at r * PANEL, inside `out`.
            unsafe {
                _mm512_storeu_ps(out.as_mut_ptr().add(r * PANEL), acc[0]);
                _mm512_storeu_ps(out.as_mut_ptr().add(r * PANEL + 16), acc[1]);
            }
        }
    }

    /// `out[R, PANEL] = a[R, k] · panel[k, PANEL]` with 4·R AVX2 accumulators (R <= 2 keeps
    /// them, the panel row and the broadcast in AVX2's 16 registers).
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA. (Lengths are checked as for [`tile_avx512`].)
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile_avx2<const R: usize>(
        a: &[f32],
        k: usize,
        panel: &[f32],
        out: &mut [f32],
    ) {
        assert!(a.len() == R * k && panel.len() == k * PANEL && out.len() == R * PANEL);
        let mut acc = [[_mm256_setzero_ps(); 4]; R];
        let (a, panel) = (a.as_ptr(), panel.as_ptr());
        for i in 0..k {
            // SAFETY: as in tile_avx512: panel row i and a[r * k + i] are inside the slices.
            unsafe {
                let row = panel.add(i * PANEL);
                let b = [
                    _mm256_loadu_ps(row),
                    _mm256_loadu_ps(row.add(8)),
                    _mm256_loadu_ps(row.add(16)),
                    _mm256_loadu_ps(row.add(24)),
                ];
                for (r, acc) in acc.iter_mut().enumerate() {
                    let x = _mm256_set1_ps(*a.add(r * k + i));
                    for (lane, b) in acc.iter_mut().zip(b) {
                        *lane = _mm256_fmadd_ps(x, b, *lane);
                    }
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (j, lane) in acc.iter().enumerate() {
                // SAFETY: row r of out is PANEL = 32 floats at r * PANEL, inside `out`.
                unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(r * PANEL + 8 * j), *lane) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic matrix of small values.
    fn matrix(rows: usize, cols: usize, seed: u32) -> Vec<f32> {
        (0..rows * cols)
            .map(|i| {
                let x = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed);
                (x >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn every_path_computes_the_product_at_every_shape() {
        for level in SimdLevel::supported() {
            for &(m, k, n) in &[
                (1, 1, 1),
                (3, 5, 31),
                (9, 17, 33),
                (21, 384, 1152),
                (64, 7, 96),
            ] {
                let (a, b) = (matrix(m, k, 1), matrix(k, n, 2));
                let initial = matrix(m, n, 3);
                let mut expected = initial.clone();
                for row in 0..m {
                    for col in 0..n {
                        expected[row * n + col] += (0..k)
                            .map(|i| a[row * k + i] as f64 * b[i * n + col] as f64)
                            .sum::<f64>() as f32;
                    }
                }
                let packed = PanelWeights::pack(&b, k, n);
                for parallel in [false, true] {
                    let mut got = initial.clone();
                    matmul_add(&a, m, &packed, &mut got, parallel, level);
                    for (g, e) in got.iter().zip(&expected) {
                        assert!(
                            (g - e).abs() <= 1e-4 * (1.0 + e.abs()),
                            "{level:?} {m}x{k}x{n}: {g} vs {e}"
                        );
                    }
                }
            }
        }
    }
}
