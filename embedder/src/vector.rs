//! The one dot product of ibex: exact vector scans, HNSW graph walks, recommendation profiles
//! and the compressor's sentence similarities all call [`dot`], so they agree to the last bit.
//! It lives in the embedder, the lowest crate that handles vectors.

use crate::cpu::SimdLevel;

/// Dot product: AVX-512 or AVX2+FMA when the CPU has them (chosen at run time, so one binary
/// serves every x86-64 machine; `IBEX_CPU` forces a narrower path, see [`crate::cpu`]), else
/// eight independent accumulators the compiler vectorizes. Exact scans and graph walks spend
/// nearly all their time here.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_at(crate::cpu::simd_level(), a, b)
}

/// [`dot`] on the path `level`, which must be one this CPU supports.
#[inline]
fn dot_at(level: SimdLevel, a: &[f32], b: &[f32]) -> f32 {
    let len = a.len().min(b.len());
    let (a, b) = (&a[..len], &b[..len]);
    #[cfg(target_arch = "x86_64")]
    match level {
        // SAFETY: `level` is at most what the CPU supports (crate::cpu only hands out such
        // levels), so it has AVX-512F.
        SimdLevel::Avx512 => return unsafe { dot_avx512(a, b) },
        // SAFETY: as above; the CPU has AVX2 and FMA.
        SimdLevel::Avx2 => return unsafe { dot_avx2(a, b) },
        SimdLevel::Scalar => {}
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = level;
    dot_portable(a, b)
}

fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks_a = a.chunks_exact(8);
    let chunks_b = b.chunks_exact(8);
    let (rest_a, rest_b) = (chunks_a.remainder(), chunks_b.remainder());
    for (x, y) in chunks_a.zip(chunks_b) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in rest_a.iter().zip(rest_b) {
        sum += x * y;
    }
    sum
}

/// `a` and `b` must have the same length.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm512_setzero_ps();
    let mut acc1 = _mm512_setzero_ps();
    let mut i = 0;
    while i + 32 <= n {
        // SAFETY: i + 32 <= n, and both slices hold n values.
        unsafe {
            acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc0);
            acc1 = _mm512_fmadd_ps(
                _mm512_loadu_ps(pa.add(i + 16)),
                _mm512_loadu_ps(pb.add(i + 16)),
                acc1,
            );
        }
        i += 32;
    }
    if i + 16 <= n {
        // SAFETY: i + 16 <= n.
        unsafe {
            acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc0);
        }
        i += 16;
    }
    let mut sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    while i < n {
        sum += a[i] * b[i];
        i += 1;
    }
    sum
}

/// `a` and `b` must have the same length.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n, and both slices hold n values.
        unsafe {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            acc1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 8)),
                _mm256_loadu_ps(pb.add(i + 8)),
                acc1,
            );
        }
        i += 16;
    }
    let mut sum = horizontal_sum_avx2(_mm256_add_ps(acc0, acc1));
    while i < n {
        sum += a[i] * b[i];
        i += 1;
    }
    sum
}

/// `Σ weights[i] · codes[i]`: the inner loop of scoring a query against 8-bit scalar-quantized
/// vectors (the query is scaled per dimension beforehand, so the codes are used as they are).
/// Same run-time dispatch as [`dot`].
#[inline]
pub fn dot_u8(weights: &[f32], codes: &[u8]) -> f32 {
    dot_u8_at(crate::cpu::simd_level(), weights, codes)
}

#[inline]
fn dot_u8_at(level: SimdLevel, weights: &[f32], codes: &[u8]) -> f32 {
    let len = weights.len().min(codes.len());
    let (weights, codes) = (&weights[..len], &codes[..len]);
    #[cfg(target_arch = "x86_64")]
    match level {
        // SAFETY: `level` is at most what the CPU supports, so it has AVX-512F.
        SimdLevel::Avx512 => return unsafe { dot_u8_avx512(weights, codes) },
        // SAFETY: as above; the CPU has AVX2 and FMA.
        SimdLevel::Avx2 => return unsafe { dot_u8_avx2(weights, codes) },
        SimdLevel::Scalar => {}
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = level;
    let mut acc = [0f32; 8];
    let chunks_w = weights.chunks_exact(8);
    let chunks_c = codes.chunks_exact(8);
    let (rest_w, rest_c) = (chunks_w.remainder(), chunks_c.remainder());
    for (w, c) in chunks_w.zip(chunks_c) {
        for i in 0..8 {
            acc[i] += w[i] * c[i] as f32;
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (w, c) in rest_w.iter().zip(rest_c) {
        sum += w * *c as f32;
    }
    sum
}

/// The sum of the eight lanes of `acc`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn horizontal_sum_avx2(acc: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let halves = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps::<1>(acc));
    let pairs = _mm_add_ps(halves, _mm_movehl_ps(halves, halves));
    _mm_cvtss_f32(_mm_add_ss(pairs, _mm_shuffle_ps::<1>(pairs, pairs)))
}

/// `weights` and `codes` must have the same length.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_u8_avx512(weights: &[f32], codes: &[u8]) -> f32 {
    use std::arch::x86_64::*;
    let n = weights.len();
    let (pw, pc) = (weights.as_ptr(), codes.as_ptr());
    let mut acc0 = _mm512_setzero_ps();
    let mut acc1 = _mm512_setzero_ps();
    let mut i = 0;
    while i + 32 <= n {
        // SAFETY: i + 32 <= n, and both slices hold n values (16 bytes of codes per load).
        unsafe {
            let c0 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(
                pc.add(i) as *const __m128i
            )));
            let c1 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(
                pc.add(i + 16) as *const __m128i
            )));
            acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(pw.add(i)), c0, acc0);
            acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(pw.add(i + 16)), c1, acc1);
        }
        i += 32;
    }
    let mut sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    while i < n {
        sum += weights[i] * codes[i] as f32;
        i += 1;
    }
    sum
}

/// `weights` and `codes` must have the same length.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_u8_avx2(weights: &[f32], codes: &[u8]) -> f32 {
    use std::arch::x86_64::*;
    let n = weights.len();
    let (pw, pc) = (weights.as_ptr(), codes.as_ptr());
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n, and both slices hold n values (8 bytes of codes per load).
        unsafe {
            let c0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                pc.add(i) as *const __m128i
            )));
            let c1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                pc.add(i + 8) as *const __m128i
            )));
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pw.add(i)), c0, acc0);
            acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(pw.add(i + 8)), c1, acc1);
        }
        i += 16;
    }
    let mut sum = horizontal_sum_avx2(_mm256_add_ps(acc0, acc1));
    while i < n {
        sum += weights[i] * codes[i] as f32;
        i += 1;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path this CPU can take agrees with a double-precision sum, at every length around
    /// the vector widths (so each remainder loop runs) and at the default model's 384.
    #[test]
    fn every_path_matches_the_exact_sum() {
        for len in (0..=70).chain([383, 384, 1024]) {
            let a: Vec<f32> = (0..len)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
                .collect();
            let b: Vec<f32> = (0..len)
                .map(|i| ((i * 11 % 17) as f32 - 8.0) / 3.0)
                .collect();
            let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            for level in SimdLevel::supported() {
                let got = dot_at(level, &a, &b) as f64;
                assert!(
                    (got - exact).abs() <= 1e-5 * (1.0 + exact.abs()),
                    "{} at length {len}: {got} against {exact}",
                    level.as_str()
                );
            }
        }
    }

    #[test]
    fn every_u8_path_matches_the_exact_sum() {
        for len in (0..=70).chain([383, 384, 1024]) {
            let weights: Vec<f32> = (0..len)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
                .collect();
            let codes: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
            let exact: f64 = weights
                .iter()
                .zip(&codes)
                .map(|(w, c)| *w as f64 * *c as f64)
                .sum();
            for level in SimdLevel::supported() {
                let got = dot_u8_at(level, &weights, &codes) as f64;
                assert!(
                    (got - exact).abs() <= 1e-5 * (1.0 + exact.abs()),
                    "{} at length {len}: {got} against {exact}",
                    level.as_str()
                );
            }
        }
    }
}
