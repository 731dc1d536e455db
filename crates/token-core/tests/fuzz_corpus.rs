//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the same input decoding
//! as the fuzz targets, so every seed and every past crash is a regression test under plain
//! `cargo test`. Needs the `__fuzzing` feature (enabled by the self dev-dependency).

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use token_core::fuzzing;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// Feeds every file of `fuzz/corpus/<target>/` to `run`; fails if the directory is missing or
/// empty, and names every input that panicked.
fn replay(target: &str, run: fn(&[u8])) {
    let dir = corpus_dir(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read corpus {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| path.is_file())
        // libFuzzer's scratch files (`.tmp*`, ignored by git).
        .filter(|path| !path.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "corpus {} is empty: the replay would prove nothing",
        dir.display()
    );
    let failures: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).expect("read corpus file");
            panic::catch_unwind(AssertUnwindSafe(|| run(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} {target} inputs panicked:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn token_response_corpus() {
    replay("token_response", fuzzing::token_response_input);
}

#[test]
fn error_response_corpus() {
    replay("error_response", fuzzing::error_response_input);
}

#[test]
fn jwt_exp_corpus() {
    replay("jwt_exp", fuzzing::jwt_exp_input);
}

#[test]
fn quota_header_corpus() {
    replay("quota_header", fuzzing::quota_header_input);
}

#[test]
fn authorization_redirect_corpus() {
    replay(
        "authorization_redirect",
        fuzzing::authorization_redirect_input,
    );
}
