//! Which SIMD path ibex's own CPU kernels take: chosen once per process from what the CPU has,
//! and forced lower with `IBEX_CPU` so that every path can be tested and benchmarked on one
//! machine (an AVX-512 machine runs the AVX2 and baseline paths too).
//!
//! `IBEX_CPU` takes `native` (the default: the widest the CPU has), `avx512`, `avx2` or
//! `scalar` (x86-64's SSE2 baseline, what the compiler vectorizes with no run-time features; the
//! only path on other architectures). A path the CPU lacks cannot be forced: it would stop the
//! process with an illegal instruction, so ibex warns once and takes the widest it has.
//!
//! The kernels that follow this choice: in the embedder, the dot product of every vector scan and
//! graph walk (`vector::dot`), the element-wise passes of the BERT forward pass (softmax, GELU,
//! residual + layer norm) and the matrix products with few rows (a query's tokens,
//! `panel_matmul`); in the generator, the embedded LLM's Q8_0 matrix products (`q8_matmul`),
//! whose AVX-512 path also needs VNNI ([`has_avx512_vnni`]). Products with many rows in the
//! embedder go to the gemm crate, which picks its own kernels at run time and has no switch.

use std::sync::atomic::{AtomicU8, Ordering};

/// A SIMD path of ibex's kernels, narrowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// No run-time features: SSE2 on x86-64 (4 lanes), the portable code elsewhere.
    Scalar,
    /// AVX2 with FMA: 8 lanes (Haswell and later, Zen 1 and later).
    Avx2,
    /// AVX-512F: 16 lanes (Skylake-SP and later, Zen 4 and later).
    Avx512,
}

impl SimdLevel {
    /// The name `IBEX_CPU` and the benchmarks use.
    pub fn as_str(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }

    /// Every level this CPU can run, narrowest first.
    pub fn supported() -> Vec<SimdLevel> {
        [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512]
            .into_iter()
            .filter(|&level| level <= detected())
            .collect()
    }
}

/// The widest level this CPU has.
pub fn detected() -> SimdLevel {
    if x86_has!("avx512f", "avx2", "fma") {
        SimdLevel::Avx512
    } else if x86_has!("avx2", "fma") {
        SimdLevel::Avx2
    } else {
        SimdLevel::Scalar
    }
}

/// Whether the CPU has the AVX-512 integer dot products (`VPDPBUSD`, with AVX512BW): the int8
/// kernels' AVX-512 path needs them on top of [`SimdLevel::Avx512`].
pub fn has_avx512_vnni() -> bool {
    x86_has!("avx512vnni", "avx512bw")
}

/// What an `IBEX_CPU` value asks for on a CPU whose widest level is `detected`: the level, or a
/// message saying why the value cannot be followed (with the level taken instead).
pub fn parse_request(
    value: Option<&str>,
    detected: SimdLevel,
) -> std::result::Result<SimdLevel, String> {
    let asked = match value.map(str::trim) {
        None | Some("") | Some("native") => return Ok(detected),
        Some("avx512") => SimdLevel::Avx512,
        Some("avx2") => SimdLevel::Avx2,
        Some("scalar") | Some("baseline") => SimdLevel::Scalar,
        Some(other) => {
            return Err(format!(
                "IBEX_CPU={other} is not a CPU path (native, avx512, avx2 or scalar); using {}",
                detected.as_str()
            ))
        }
    };
    if asked > detected {
        return Err(format!(
            "IBEX_CPU={} asks for a path this CPU lacks; using {}",
            asked.as_str(),
            detected.as_str()
        ));
    }
    Ok(asked)
}

/// Not yet chosen (the level values are 0..=2).
const UNSET: u8 = u8::MAX;
static LEVEL: AtomicU8 = AtomicU8::new(UNSET);

/// The level ibex's kernels take in this process: `IBEX_CPU` if set and possible, else the
/// widest the CPU has. One atomic load after the first call (the dot product calls it for every
/// vector it compares).
#[inline]
pub fn simd_level() -> SimdLevel {
    match LEVEL.load(Ordering::Relaxed) {
        0 => SimdLevel::Scalar,
        1 => SimdLevel::Avx2,
        2 => SimdLevel::Avx512,
        _ => choose(),
    }
}

#[cold]
fn choose() -> SimdLevel {
    let detected = detected();
    let level = match parse_request(std::env::var("IBEX_CPU").ok().as_deref(), detected) {
        Ok(level) => level,
        Err(message) => {
            // Once per process: the first caller to store the level prints.
            if LEVEL.load(Ordering::Relaxed) == UNSET {
                eprintln!("warning: {message}");
            }
            detected
        }
    };
    LEVEL.store(level as u8, Ordering::Relaxed);
    level
}

/// Defines `$name`, which runs `$body` compiled for the path [`simd_level`] chose (AVX-512F:
/// loops written with 16 independent partial sums run 16 lanes wide; AVX2+FMA: 8; the baseline:
/// SSE2's 4), and `$at`, the same on a given path, for the tests that compare the paths on one
/// machine. `$body` should be `#[inline(always)]` so that each copy is compiled for its path.
/// One definition for every crate's kernels, so that each path's `unsafe` call is argued once.
#[macro_export]
macro_rules! with_widest_simd {
    ($name:ident, $at:ident, $body:ident, $($arg:ident: $ty:ty),+) => {
        fn $name($($arg: $ty),+) {
            $at($crate::simd_level(), $($arg),+)
        }

        /// `level` must be one this CPU supports.
        #[inline]
        fn $at(level: $crate::SimdLevel, $($arg: $ty),+) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn avx512($($arg: $ty),+) {
                    $body($($arg),+)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),+) {
                    $body($($arg),+)
                }
                match level {
                    // SAFETY: simd_level hands out only levels the CPU supports: AVX-512F here.
                    $crate::SimdLevel::Avx512 => return unsafe { avx512($($arg),+) },
                    // SAFETY: as above; the CPU has AVX2 and FMA.
                    $crate::SimdLevel::Avx2 => return unsafe { avx2($($arg),+) },
                    $crate::SimdLevel::Scalar => {}
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = level;
            $body($($arg),+)
        }
    };
}

/// Whether the CPU has every x86 feature named (`x86_has!("avx512vnni", "avx512bw")`); false on
/// other architectures. For the kernels that need features beyond a [`SimdLevel`].
#[macro_export]
macro_rules! x86_has {
    ($($feature:tt),+) => {{
        #[cfg(target_arch = "x86_64")]
        {
            true $(&& ::std::arch::is_x86_feature_detected!($feature))+
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_followed_up_to_what_the_cpu_has() {
        assert_eq!(parse_request(None, SimdLevel::Avx2), Ok(SimdLevel::Avx2));
        assert_eq!(
            parse_request(Some("native"), SimdLevel::Avx512),
            Ok(SimdLevel::Avx512)
        );
        assert_eq!(
            parse_request(Some("avx2"), SimdLevel::Avx512),
            Ok(SimdLevel::Avx2)
        );
        assert_eq!(
            parse_request(Some(" scalar "), SimdLevel::Avx2),
            Ok(SimdLevel::Scalar)
        );
        let lacking = parse_request(Some("avx512"), SimdLevel::Avx2).unwrap_err();
        assert!(
            lacking.contains("lacks") && lacking.contains("using avx2"),
            "{lacking}"
        );
        let unknown = parse_request(Some("neon"), SimdLevel::Scalar).unwrap_err();
        assert!(
            unknown.contains("native, avx512, avx2 or scalar"),
            "{unknown}"
        );
    }

    #[test]
    fn the_chosen_level_is_one_the_cpu_supports() {
        assert!(SimdLevel::supported().contains(&simd_level()));
        assert_eq!(SimdLevel::supported()[0], SimdLevel::Scalar);
    }
}
