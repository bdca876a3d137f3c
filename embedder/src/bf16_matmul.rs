//! Matrix products in bfloat16 with float32 sums, for `IBEX_EMBED_PRECISION=bf16`: on AMX
//! tiles (`TDPBF16PS`, Intel Sapphire Rapids and later) where the CPU and the kernel allow them,
//! else on AVX512-BF16 (`VDPBF16PS`).
//!
//! Weights are rounded to bf16 once, at load, and packed as column panels of [`PANEL`] columns
//! whose rows come in pairs (`(w[2j][c], w[2j+1][c])` in one 32-bit word): the layout both
//! instructions read (an AMX B tile is 16 such pair-rows of 16 columns). Each product rounds its
//! left operand's rows the same way. Sums stay in float32, so the only loss is bf16's 8-bit
//! mantissa on the two operands (the embeddings' cosine to the f32 path:
//! `tests/embedding_reference.rs` and BENCHMARKS.md).
//!
//! Why AMX: one `VDPBF16PS` does 32 products, as many as two f32 FMAs, and on the Xeon of
//! BENCHMARKS.md it ran at half gemm's f32 rate (2048 x 384 x 1536, one thread: 88-94 GFLOP/s
//! against gemm's 174-181), so AVX512-BF16 alone brings nothing there; on an AMD EPYC with
//! AVX512-BF16 and no AMX the same kernels embed 1.64x faster than f32 (BENCHMARKS.md; `IBEX_AMX=off`
//! measures that path on an AMX machine). One `TDPBF16PS` multiplies a 16 x 32 tile by
//! a 32 x 16 one (8,192 products): the same product ran at 333 GFLOP/s on one thread and 921 on
//! two (gemm: 341), measured with a throwaway timing loop beside these kernels.
//!
//! AVX512-BF16 tiles of up to 12 rows x 32 columns keep 24 accumulators in registers (as the
//! f32 panels of [`crate::panel_matmul`]); AMX blocks of 32 x 32 keep four accumulator tiles.
//! Row blocks of [`BLOCK_ROWS`] keep their rounded rows in L2 cache while every panel passes
//! over them.

use rayon::prelude::*;

/// Columns per panel: two AVX-512 vectors of sums.
const PANEL: usize = 32;

/// Rows a thread takes at a time: their bf16 copy (96 x 384 x 2 B = 72 KiB at MiniLM's width,
/// 288 KiB before the down-projection) stays in L2 while all panels pass over it.
const BLOCK_ROWS: usize = 96;

/// Whether this CPU runs the bf16 kernels (AVX-512F and AVX512-BF16; AMX is used on top when
/// present, see [`uses_amx`]).
pub fn supported() -> bool {
    ibex_cpu::x86_has!("avx512f", "avx512bf16")
}

/// Whether bf16 products run on AMX tiles: the CPU has AMX-BF16, Linux granted this process the
/// tile state, and `IBEX_AMX` is not `off` (which forces the AVX512-BF16 path, to test and
/// measure it on an AMX machine).
pub fn uses_amx() -> bool {
    static USES_AMX: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USES_AMX.get_or_init(|| {
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        {
            std::env::var("IBEX_AMX").as_deref() != Ok("off") && supported() && amx::enable()
        }
        #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
        {
            false
        }
    })
}

/// `x` rounded to the nearest bfloat16 (ties to even), as its bit pattern; NaN stays NaN.
pub(crate) fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) as u16) | 0x40;
    }
    let rounding = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding) >> 16) as u16
}

/// Two values as one word: `low` in the low half (the instruction's even element).
fn pair(low: f32, high: f32) -> u32 {
    u32::from(to_bf16(low)) | (u32::from(to_bf16(high)) << 16)
}

/// Row pairs are padded to a multiple of this: an AMX tile takes 16 pair-rows (32 values of k).
const PAIRS_STEP: usize = 16;

/// A weight matrix `[k, n]` rounded to bf16 and packed for [`matmul_add`]: panel `p`, row pair
/// `j`, column `c` at word `(p * pairs + j) * PANEL + c` (zero past `k` and past `n`; `pairs` is
/// `k / 2` rounded up to a multiple of [`PAIRS_STEP`]).
pub(crate) struct Bf16Weights {
    k: usize,
    n: usize,
    pairs: usize,
    data: Vec<u32>,
}

impl Bf16Weights {
    /// Packs `b`, `[k, n]` row-major.
    pub(crate) fn pack(b: &[f32], k: usize, n: usize) -> Bf16Weights {
        assert_eq!(b.len(), k * n, "weights of {k} x {n}");
        let pairs = k.div_ceil(2).next_multiple_of(PAIRS_STEP);
        let panels = n.div_ceil(PANEL);
        let mut data = vec![0u32; panels * pairs * PANEL];
        let at = |row: usize, col: usize| if row < k { b[row * n + col] } else { 0.0 };
        for p in 0..panels {
            for j in 0..pairs {
                for c in 0..PANEL.min(n - p * PANEL) {
                    let col = p * PANEL + c;
                    data[(p * pairs + j) * PANEL + c] = pair(at(2 * j, col), at(2 * j + 1, col));
                }
            }
        }
        Bf16Weights { k, n, pairs, data }
    }

    fn panel(&self, p: usize) -> &[u32] {
        &self.data[p * self.pairs * PANEL..(p + 1) * self.pairs * PANEL]
    }
}

thread_local! {
    /// The calling thread's rounded rows, reused (taken out while in use: rayon may run another
    /// product on this thread while it waits).
    static ROUNDED: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `out[m, n] += a[m, k] · b` with both operands rounded to bf16 and float32 sums; row blocks
/// shared among rayon's threads when `parallel`. Callers check [`supported`] first (the weights
/// are packed only then); on a CPU without it this panics rather than compute garbage.
pub(crate) fn matmul_add(a: &[f32], m: usize, b: &Bf16Weights, out: &mut [f32], parallel: bool) {
    matmul_add_on(a, m, b, out, parallel, uses_amx());
}

/// [`matmul_add`] on AMX tiles when `amx` (which [`uses_amx`] must allow), else on AVX512-BF16.
fn matmul_add_on(a: &[f32], m: usize, b: &Bf16Weights, out: &mut [f32], parallel: bool, amx: bool) {
    assert!(!amx || uses_amx(), "AMX products on a process without AMX");
    let (k, n) = (b.k, b.n);
    assert!(
        a.len() == m * k && out.len() == m * n,
        "a is {m} x {k}, out {m} x {n}"
    );
    assert!(supported(), "bf16 products need AVX-512F and AVX512-BF16");
    if m == 0 || n == 0 {
        return;
    }
    let block = |(index, out): (usize, &mut [f32])| {
        let first = index * BLOCK_ROWS;
        let rows = out.len() / n;
        let mut rounded = ROUNDED.take();
        rounded.clear();
        // AMX reads rows 32 at a time: the padding rows are zeros, and their sums are dropped.
        rounded.resize(rows.next_multiple_of(AMX_ROWS) * b.pairs, 0);
        for (row, words) in rounded.chunks_exact_mut(b.pairs).take(rows).enumerate() {
            round_row(&a[(first + row) * k..(first + row + 1) * k], words);
        }
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        if amx {
            // SAFETY: uses_amx() established that the CPU has AMX-BF16 and that Linux granted
            // this process the tile state; `rounded` holds rows.next_multiple_of(32) rows of
            // b.pairs words (a multiple of 16), as the kernel requires.
            unsafe { amx::block_product(&rounded, rows, b, out) };
            ROUNDED.set(rounded);
            return;
        }
        let _ = amx;
        block_product(&rounded[..rows * b.pairs], rows, b, out);
        ROUNDED.set(rounded);
    };
    if parallel {
        out.par_chunks_mut(BLOCK_ROWS * n)
            .enumerate()
            .for_each(block);
    } else {
        out.chunks_mut(BLOCK_ROWS * n).enumerate().for_each(block);
    }
}

/// `words` = `source` rounded to bf16, two values a word in order (the low half holds the even
/// element, as bf16 values laid out one after the other in memory), zeros past its end.
///
/// Rounding the left operand was a fifth of a bf16 embedding run (`perf record` of
/// `embed_throughput`, 2,000 passages, AMD EPYC with AVX512-BF16: 20.6% in this loop, scalar,
/// against 52% in the tiles), so whole vectors of 16 go through `VCVTNEPS2BF16`, which rounds to
/// nearest even as [`to_bf16`] does (it also reads denormal inputs as zero: no effect on a
/// product at bf16's precision).
fn round_row(source: &[f32], words: &mut [u32]) {
    assert!(
        words.len() * 2 >= source.len(),
        "{} words for {} values",
        words.len(),
        source.len()
    );
    // The check is a cached flag read, once a row: it keeps this safe function sound by itself
    // instead of leaning on its callers' assertion.
    let done = if supported() {
        // SAFETY: supported() says the CPU has AVX-512F and AVX512-BF16; the kernel checks the
        // slices' lengths.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            x86::round_vectors(source, words)
        }
        #[cfg(not(target_arch = "x86_64"))]
        0
    } else {
        0
    };
    let value = |i: usize| source.get(i).copied().unwrap_or(0.0);
    for (j, word) in words.iter_mut().enumerate().skip(done / 2) {
        *word = pair(value(2 * j), value(2 * j + 1));
    }
}

/// `out[rows, n] += rounded[rows, pairs] · b`, panel by panel, 12-row tiles.
///
/// The tiles add into `out` in place (their sums start from `out`'s values): adding a tile's
/// sums afterwards, row by row, was 12.6% of a bf16 embedding run (`perf annotate`: almost all
/// of it one `addps` waiting on `out`'s rows), more than a quarter of the tiles' own time.
fn block_product(rounded: &[u32], rows: usize, b: &Bf16Weights, out: &mut [f32]) {
    let (n, pairs) = (b.n, b.pairs);
    for p in 0..n.div_ceil(PANEL) {
        let panel = b.panel(p);
        let cols = PANEL.min(n - p * PANEL);
        let mut row = 0;
        while row < rows {
            let count = (rows - row).min(12);
            let a = &rounded[row * pairs..(row + count) * pairs];
            let target = &mut out[row * n + p * PANEL..(row + count - 1) * n + p * PANEL + cols];
            #[cfg(target_arch = "x86_64")]
            // SAFETY: matmul_add asserted that the CPU has AVX-512F and AVX512-BF16; the kernel
            // checks the slices' lengths (count x pairs, pairs x PANEL, count rows of n).
            unsafe {
                match count {
                    12 => x86::tile::<12>(a, pairs, panel, target, n, cols),
                    11 => x86::tile::<11>(a, pairs, panel, target, n, cols),
                    10 => x86::tile::<10>(a, pairs, panel, target, n, cols),
                    9 => x86::tile::<9>(a, pairs, panel, target, n, cols),
                    8 => x86::tile::<8>(a, pairs, panel, target, n, cols),
                    7 => x86::tile::<7>(a, pairs, panel, target, n, cols),
                    6 => x86::tile::<6>(a, pairs, panel, target, n, cols),
                    5 => x86::tile::<5>(a, pairs, panel, target, n, cols),
                    4 => x86::tile::<4>(a, pairs, panel, target, n, cols),
                    3 => x86::tile::<3>(a, pairs, panel, target, n, cols),
                    2 => x86::tile::<2>(a, pairs, panel, target, n, cols),
                    _ => x86::tile::<1>(a, pairs, panel, target, n, cols),
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = (a, panel, target, pairs, cols);
            row += count;
        }
    }
}

/// Rows of an AMX block: two tiles of 16.
const AMX_ROWS: usize = 32;

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod amx {
    use std::arch::asm;

    use super::{Bf16Weights, AMX_ROWS, PAIRS_STEP, PANEL};

    /// The `LDTILECFG` operand: palette 1, eight tiles of 16 rows x 64 bytes.
    #[repr(C, align(64))]
    struct TileConfig {
        palette: u8,
        start_row: u8,
        reserved: [u8; 14],
        bytes_per_row: [u16; 16],
        rows: [u8; 16],
    }

    const CONFIG: TileConfig = TileConfig {
        palette: 1,
        start_row: 0,
        reserved: [0; 14],
        bytes_per_row: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
        rows: [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
    };

    /// Whether the CPU has AMX-TILE and AMX-BF16 (CPUID leaf 7, EDX bits 24 and 22) and Linux
    /// grants this process the tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM)`, required
    /// since Linux 5.16 before any tile instruction; without it they fault).
    pub(super) fn enable() -> bool {
        let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
        let has_amx = leaf7.edx & (1 << 24) != 0 && leaf7.edx & (1 << 22) != 0;
        if !has_amx {
            return false;
        }
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: arch_prctl with these arguments only changes which state the kernel lets this
        // process use; it reads and writes no memory of ours.
        let granted = unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            )
        };
        granted == 0
    }

    /// `out[rows, n] += rounded[rows, pairs] · b` in 32 x 32 blocks: four accumulator tiles
    /// (tmm0-3), two of rows (tmm4-5) and two of weights (tmm6-7), 32 values of k at a time.
    ///
    /// # Safety
    /// [`enable`] must have returned true. `rounded` must hold `rows.next_multiple_of(32)` rows
    /// of `b.pairs` words (checked).
    pub(super) unsafe fn block_product(
        rounded: &[u32],
        rows: usize,
        b: &Bf16Weights,
        out: &mut [f32],
    ) {
        let (n, pairs) = (b.n, b.pairs);
        let padded_rows = rows.next_multiple_of(AMX_ROWS);
        assert!(rounded.len() == padded_rows * pairs && pairs % PAIRS_STEP == 0);
        assert!(out.len() == rows * n);
        let mut sums = [0f32; AMX_ROWS * PANEL];
        let a_stride = pairs * 4;
        let b_stride = PANEL * 4;
        let c_stride = PANEL * 4;
        // SAFETY: the configuration is a valid palette-1 layout (eight 16 x 64-byte tiles).
        unsafe { asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly)) };
        for p in 0..n.div_ceil(PANEL) {
            let panel = b.panel(p).as_ptr();
            let cols = PANEL.min(n - p * PANEL);
            for block in (0..padded_rows).step_by(AMX_ROWS) {
                let a = rounded[block * pairs..].as_ptr();
                // SAFETY: every load reads 16 rows of 64 bytes. A tiles: rows block..block+32 of
                // `rounded` (inside: padded_rows rows), words j..j+16 of each (j + 16 <= pairs).
                // B tiles: pair-rows j..j+16 of the panel (pairs rows of PANEL words), words
                // 0..16 and 16..32 of each. The stores write 16 rows of 64 bytes into `sums`
                // (32 rows of PANEL floats).
                unsafe {
                    asm!(
                        "tilezero tmm0",
                        "tilezero tmm1",
                        "tilezero tmm2",
                        "tilezero tmm3",
                        options(nostack, nomem)
                    );
                    for j in (0..pairs).step_by(PAIRS_STEP) {
                        asm!(
                            "tileloadd tmm4, [{a0} + {sa}*1]",
                            "tileloadd tmm5, [{a1} + {sa}*1]",
                            "tileloadd tmm6, [{b0} + {sb}*1]",
                            "tileloadd tmm7, [{b1} + {sb}*1]",
                            "tdpbf16ps tmm0, tmm4, tmm6",
                            "tdpbf16ps tmm1, tmm4, tmm7",
                            "tdpbf16ps tmm2, tmm5, tmm6",
                            "tdpbf16ps tmm3, tmm5, tmm7",
                            a0 = in(reg) a.add(j),
                            a1 = in(reg) a.add(16 * pairs + j),
                            b0 = in(reg) panel.add(j * PANEL),
                            b1 = in(reg) panel.add(j * PANEL + 16),
                            sa = in(reg) a_stride,
                            sb = in(reg) b_stride,
                            options(nostack, readonly),
                        );
                    }
                    let c = sums.as_mut_ptr();
                    asm!(
                        "tilestored [{c0} + {sc}*1], tmm0",
                        "tilestored [{c1} + {sc}*1], tmm1",
                        "tilestored [{c2} + {sc}*1], tmm2",
                        "tilestored [{c3} + {sc}*1], tmm3",
                        c0 = in(reg) c,
                        c1 = in(reg) c.add(16),
                        c2 = in(reg) c.add(16 * PANEL),
                        c3 = in(reg) c.add(16 * PANEL + 16),
                        sc = in(reg) c_stride,
                        options(nostack),
                    );
                }
                for r in 0..AMX_ROWS.min(rows.saturating_sub(block)) {
                    let target = &mut out[(block + r) * n + p * PANEL..][..cols];
                    for (o, s) in target.iter_mut().zip(&sums[r * PANEL..r * PANEL + cols]) {
                        *o += s;
                    }
                }
            }
        }
        // SAFETY: releases the tile state this function configured.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::PANEL;

    /// Rounds the whole vectors of 16 at the start of `source` into `words` (8 words each) and
    /// returns how many values it rounded (a multiple of 16).
    ///
    /// # Safety
    /// The CPU must have AVX-512F and AVX512-BF16. (Lengths are checked.)
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn round_vectors(source: &[f32], words: &mut [u32]) -> usize {
        let vectors = (source.len() / 16).min(words.len() / 8);
        for v in 0..vectors {
            // SAFETY: v < vectors, so values 16v..16v+16 of source and words 8v..8v+8 are
            // inside the slices. __m256bh and __m256i are both 256 bits of plain integers.
            unsafe {
                let values = _mm512_loadu_ps(source.as_ptr().add(16 * v));
                let rounded: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(values));
                _mm256_storeu_si256(words.as_mut_ptr().add(8 * v) as *mut __m256i, rounded);
            }
        }
        vectors * 16
    }

    /// `out[r][..cols] += a[r] · panel[pairs, PANEL]` for the R rows `r` of `out`, `stride`
    /// floats apart (bf16 pairs, float32 sums), with 2·R accumulators that start from `out`.
    ///
    /// # Safety
    /// The CPU must have AVX-512F and AVX512-BF16. (Lengths are checked.)
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn tile<const R: usize>(
        a: &[u32],
        pairs: usize,
        panel: &[u32],
        out: &mut [f32],
        stride: usize,
        cols: usize,
    ) {
        assert!(a.len() == R * pairs && panel.len() == pairs * PANEL);
        assert!(cols <= PANEL && cols > 0 && out.len() == (R - 1) * stride + cols);
        // Lanes of the panel's two halves that are columns of `out` (all of them but in a last,
        // partial panel).
        let low: __mmask16 = (1u32 << cols.min(16)).wrapping_sub(1) as u16;
        let high: __mmask16 = (1u32 << cols.saturating_sub(16)).wrapping_sub(1) as u16;
        let target = out.as_mut_ptr();
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: row r of out starts at r * stride and has `cols` floats (checked above);
            // the masks read only those (the second half's address is only formed, wrapping,
            // when the row has 16 floats or fewer: its mask is then empty and reads nothing).
            unsafe {
                acc[0] = _mm512_maskz_loadu_ps(low, target.add(r * stride));
                acc[1] = _mm512_maskz_loadu_ps(high, target.wrapping_add(r * stride + 16));
            }
        }
        let (a, panel) = (a.as_ptr(), panel.as_ptr());
        for j in 0..pairs {
            // SAFETY: j < pairs, so panel row j (PANEL words from j * PANEL) and a[r * pairs + j]
            // for r < R are inside the slices checked above. The transmutes reinterpret 512 bits
            // of packed bf16 pairs as the bf16 vector type, which has the same size and no
            // invalid bit patterns.
            unsafe {
                let b0: __m512bh =
                    std::mem::transmute(_mm512_loadu_si512(panel.add(j * PANEL) as *const _));
                let b1: __m512bh =
                    std::mem::transmute(_mm512_loadu_si512(panel.add(j * PANEL + 16) as *const _));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let x: __m512bh =
                        std::mem::transmute(_mm512_set1_epi32(*a.add(r * pairs + j) as i32));
                    acc[0] = _mm512_dpbf16_ps(acc[0], x, b0);
                    acc[1] = _mm512_dpbf16_ps(acc[1], x, b1);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            // SAFETY: as for the loads: the masks write only row r's `cols` floats.
            unsafe {
                _mm512_mask_storeu_ps(target.add(r * stride), low, acc[0]);
                _mm512_mask_storeu_ps(target.wrapping_add(r * stride + 16), high, acc[1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(rows: usize, cols: usize, seed: u32) -> Vec<f32> {
        (0..rows * cols)
            .map(|i| {
                let x = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed);
                (x >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    fn from_bf16(bits: u16) -> f32 {
        f32::from_bits(u32::from(bits) << 16)
    }

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(from_bf16(to_bf16(1.0)), 1.0);
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
        assert_eq!(from_bf16(to_bf16(1.0 + 1.0 / 256.0)), 1.0);
        assert_eq!(from_bf16(to_bf16(1.0 + 3.0 / 256.0)), 1.0 + 4.0 / 256.0);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
    }

    /// The vector rounding gives the scalar rounding's words, ties to even included, on a row
    /// with whole vectors and a tail, and pads with zeros past the row's end.
    #[test]
    fn rows_round_as_the_scalar_rounding_does() {
        if !supported() {
            eprintln!("skipped: this CPU has no AVX512-BF16");
            return;
        }
        let mut row = matrix(1, 37, 4);
        row[0] = 1.0 + 1.0 / 256.0;
        row[1] = 1.0 + 3.0 / 256.0;
        row[2] = -1.0e30;
        row[3] = f32::INFINITY;
        row[17] = -(1.0 + 1.0 / 256.0);
        let mut words = vec![u32::MAX; 32];
        round_row(&row, &mut words);
        let value = |i: usize| row.get(i).copied().unwrap_or(0.0);
        let expected: Vec<u32> = (0..32)
            .map(|j| pair(value(2 * j), value(2 * j + 1)))
            .collect();
        assert_eq!(words, expected);
    }

    /// The product equals the float64 product of the bf16-rounded operands (sums in float32),
    /// at shapes with odd k, partial panels, partial tiles and several row blocks.
    #[test]
    fn products_are_those_of_the_rounded_operands() {
        if !supported() {
            eprintln!("skipped: this CPU has no AVX512-BF16");
            return;
        }
        let round = |x: f32| from_bf16(to_bf16(x));
        for &(m, k, n) in &[
            (1, 1, 1),
            (3, 5, 31),
            (13, 17, 33),
            (21, 384, 1152),
            (200, 7, 96),
        ] {
            let (a, b) = (matrix(m, k, 1), matrix(k, n, 2));
            let initial = matrix(m, n, 3);
            let mut expected = initial.clone();
            for row in 0..m {
                for col in 0..n {
                    expected[row * n + col] += (0..k)
                        .map(|i| round(a[row * k + i]) as f64 * round(b[i * n + col]) as f64)
                        .sum::<f64>() as f32;
                }
            }
            let packed = Bf16Weights::pack(&b, k, n);
            let paths = if uses_amx() {
                vec![false, true]
            } else {
                vec![false]
            };
            for (parallel, amx) in [false, true]
                .into_iter()
                .flat_map(|p| paths.iter().map(move |&a| (p, a)))
            {
                let mut got = initial.clone();
                matmul_add_on(&a, m, &packed, &mut got, parallel, amx);
                for (g, e) in got.iter().zip(&expected) {
                    assert!(
                        (g - e).abs() <= 1e-4 * (1.0 + e.abs()),
                        "{m}x{k}x{n} (AMX: {amx}): {g} vs {e}"
                    );
                }
            }
        }
    }
}
