//! The Python package's tests (python/tests, pytest), run by `cargo test --workspace`.
//!
//! Builds the package with maturin into a virtualenv under the target folder (created once and
//! reused; its packages come from PyPI by python/requirements-test.txt) with the dev profile, so
//! it reuses this build's compiled dependencies, then runs pytest against it with the `ibex`
//! binary of this build for the CLI comparisons. Where python3 is missing the test says so and
//! passes, unless IBEX_PYTHON_TESTS=required (as `.ci/run` sets it).
//!
//! Ray (python/requirements-ray.txt) is installed into the same virtualenv for the Ray tests
//! (python/tests/test_ray.py); where it cannot be installed they are skipped with a notice,
//! unless IBEX_RAY_TESTS=required (as `.ci/run` sets it). They start a two-node Ray cluster on
//! loopback, which runs only after maturin's build has finished: this test is the only one that
//! builds, and cargo runs test binaries one at a time.

use std::path::{Path, PathBuf};
use std::process::Command;

fn required() -> bool {
    std::env::var("IBEX_PYTHON_TESTS").is_ok_and(|v| v == "required")
}

fn ray_required() -> bool {
    std::env::var("IBEX_RAY_TESTS").is_ok_and(|v| v == "required")
}

/// The folder cargo builds into (the parent of this test's scratch folder).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the scratch folder lies in the target folder")
        .to_path_buf()
}

fn run(command: &mut Command, what: &str) {
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("{what}: cannot run {command:?}: {e}"));
    assert!(status.success(), "{what} failed ({status}): {command:?}");
}

#[test]
fn python_package_tests_pass() {
    let python = std::env::var("IBEX_PYTHON").unwrap_or_else(|_| "python3".into());
    let version = Command::new(&python).arg("--version").output();
    if !version.as_ref().is_ok_and(|o| o.status.success()) {
        assert!(
            !required(),
            "IBEX_PYTHON_TESTS=required but {python} cannot be run: install Python >= 3.10"
        );
        eprintln!("skipped: {python} not found (the Python package's tests need Python >= 3.10 and pip; IBEX_PYTHON_TESTS=required makes this a failure)");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = target_dir().join("python-venv");
    let venv_python = venv.join("bin").join("python");
    if !venv_python.exists() {
        run(
            Command::new(&python).args(["-m", "venv"]).arg(&venv),
            "creating the virtualenv",
        );
    }
    let ready = Command::new(&venv_python)
        .args([
            "-c",
            "import pytest, numpy, langchain_core, llama_index.core, maturin",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ready {
        run(
            Command::new(&venv_python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    "-r",
                ])
                .arg(repo.join("python").join("requirements-test.txt")),
            "installing maturin, pytest and the frameworks from PyPI",
        );
    }
    let has_ray = |python: &Path| {
        Command::new(python)
            .args(["-c", "import ray.data, ray.serve"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !has_ray(&venv_python) {
        let installed = Command::new(&venv_python)
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(repo.join("python").join("requirements-ray.txt"))
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            installed || !ray_required(),
            "IBEX_RAY_TESTS=required but ray[data,serve] could not be installed from PyPI"
        );
        if !installed {
            eprintln!("notice: ray[data,serve] could not be installed: the Ray tests will be skipped (IBEX_RAY_TESTS=required makes this a failure)");
        }
    }
    run(
        Command::new(venv.join("bin").join("maturin"))
            .args(["develop", "--profile", "dev", "-q", "--manifest-path"])
            .arg(repo.join("python").join("Cargo.toml"))
            .env("VIRTUAL_ENV", &venv)
            .env("CARGO_TARGET_DIR", target_dir()),
        "building the package with maturin",
    );
    run(
        Command::new(&venv_python)
            .args(["-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"])
            .arg(repo.join("python").join("tests"))
            .env("IBEX_BIN", env!("CARGO_BIN_EXE_ibex")),
        "the Python package's tests (pytest)",
    );
}
