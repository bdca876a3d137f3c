//! Which device models run on: `IBEX_DEVICE` (or the CLI's `--device`) = `auto` (default: the
//! first CUDA device when this build has the `cuda` feature and a CUDA driver is installed, else
//! the CPU), `cpu`, `cuda` or `cuda:N`.
//!
//! cudarc panics when the CUDA driver library is missing, so its presence is checked first and a
//! missing driver is an error that says so.

use candle_core::Device;

use crate::error::{EmbedderError, Result};

/// Environment variable naming the device.
pub const DEVICE_ENV: &str = "IBEX_DEVICE";

/// Where a process looks for the CUDA driver library (the loader's usual places).
fn cuda_driver_present() -> bool {
    let mut dirs: Vec<std::path::PathBuf> = std::env::var("LD_LIBRARY_PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty())
        .map(Into::into)
        .collect();
    // The dynamic loader's configured folders (drivers mounted into containers are often
    // listed only there, e.g. /usr/local/nvidia/lib64).
    if let Ok(entries) = std::fs::read_dir("/etc/ld.so.conf.d") {
        for entry in entries.flatten() {
            if let Ok(text) = std::fs::read_to_string(entry.path()) {
                dirs.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| l.starts_with('/'))
                        .map(std::path::PathBuf::from),
                );
            }
        }
    }
    for dir in [
        "/usr/local/nvidia/lib64",
        "/usr/local/nvidia/lib",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/usr/local/cuda/lib64",
        "/usr/local/cuda/compat",
        "/usr/lib/wsl/lib",
    ] {
        dirs.push(dir.into());
    }
    dirs.iter()
        .any(|d| d.join("libcuda.so.1").exists() || d.join("libcuda.so").exists())
}

/// Parses a device name (see the module documentation).
pub fn parse_device(spec: &str) -> Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    let ordinal = match spec.as_str() {
        "" | "auto" => {
            if cfg!(feature = "cuda") && cuda_driver_present() {
                Some(0)
            } else {
                return Ok(Device::Cpu);
            }
        }
        "cpu" => return Ok(Device::Cpu),
        "cuda" => Some(0),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => Some(n),
            _ => {
                return Err(EmbedderError::Device(format!(
                    "unknown device {spec:?}: use cpu, cuda or cuda:N"
                )))
            }
        },
    };
    let ordinal = ordinal.unwrap_or(0);
    if !cfg!(feature = "cuda") {
        return Err(EmbedderError::Device(format!(
            "device {spec:?} needs a build with CUDA: `cargo build --release --features cuda` (with the CUDA toolkit installed)"
        )));
    }
    if !cuda_driver_present() {
        return Err(EmbedderError::Device(
            "no CUDA driver found (libcuda.so.1 is not in LD_LIBRARY_PATH or the system library folders): install the NVIDIA driver, or use --device cpu".into(),
        ));
    }
    Device::new_cuda(ordinal)
        .map_err(|e| EmbedderError::Device(format!("cannot open CUDA device {ordinal}: {e}")))
}

/// The device named by `IBEX_DEVICE` (default `auto`).
pub fn select_device() -> Result<Device> {
    parse_device(&std::env::var(DEVICE_ENV).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        assert!(parse_device("CPU").unwrap().is_cpu());
        let error = parse_device("gpu").unwrap_err().to_string();
        assert!(error.contains("cpu, cuda or cuda:N"), "{error}");
        if !cfg!(feature = "cuda") {
            assert!(parse_device("auto").unwrap().is_cpu());
            let error = parse_device("cuda:1").unwrap_err().to_string();
            assert!(error.contains("--features cuda"), "{error}");
        }
    }
}
