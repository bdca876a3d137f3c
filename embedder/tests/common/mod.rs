//! Helpers shared by the reference tests: fixture paths and comparing JSON reference matrices.
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;

/// `../shared/fixtures/<name>` beside the repository, or under `IBEX_FIXTURES_DIR` when set (a
/// test binary copied to a GPU machine finds the fixtures there).
pub fn fixture(name: &str) -> PathBuf {
    match std::env::var_os("IBEX_FIXTURES_DIR") {
        Some(dir) => PathBuf::from(dir).join(name),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fixtures")
            .join(name),
    }
}

/// The device the reference tests run on: `IBEX_TEST_DEVICE` (`cpu`, `cuda`, `cuda:N`), default
/// the CPU, so a build with the `cuda` feature checks the CUDA kernels against the same
/// references (`IBEX_TEST_DEVICE=cuda cargo test --features cuda -p ibex-embedder`).
/// One device per test binary: two `Device::new_cuda(0)` are distinct devices to candle.
pub fn device() -> candle_core::Device {
    static DEVICE: std::sync::OnceLock<candle_core::Device> = std::sync::OnceLock::new();
    DEVICE
        .get_or_init(|| {
            let name = std::env::var("IBEX_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
            ibex_embedder::device::parse_device(&name)
                .unwrap_or_else(|e| panic!("IBEX_TEST_DEVICE={name}: {e}"))
        })
        .clone()
}

fn matrix<T>(value: &Value, convert: fn(&Value) -> T) -> Vec<Vec<T>> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|row| row.as_array().unwrap().iter().map(convert).collect())
        .collect()
}

/// A JSON matrix of token ids.
pub fn ids(value: &Value) -> Vec<Vec<u32>> {
    matrix(value, |x| x.as_u64().unwrap() as u32)
}

/// A JSON matrix of floats.
pub fn floats(value: &Value) -> Vec<Vec<f32>> {
    matrix(value, |x| x.as_f64().unwrap() as f32)
}

/// The largest absolute difference between two matrices of one shape.
pub fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

/// The `input_ids` of each entry of a reference file's `inputs`.
pub fn inputs(reference: &Value) -> Vec<Vec<u32>> {
    reference["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| ids(&Value::Array(vec![i["input_ids"].clone()])).remove(0))
        .collect()
}
