//! What every CLI integration test shares: running the binary (its JSON result or its one
//! error line), a temporary directory removed on drop, and the fixture paths.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// A fresh temporary directory, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    /// `nc-test-{tag}-{pid}` under the system's temporary directory, emptied.
    pub(crate) fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("nc-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    /// The path of `name` inside the directory.
    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// File names in the directory, sorted.
    pub(crate) fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `netcompress` binary with `args`, not started yet.
pub(crate) fn command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_netcompress"));
    c.args(args);
    c
}

/// Runs `netcompress args` to completion.
pub(crate) fn nc(args: &[&str]) -> Output {
    command(args).output().expect("run netcompress")
}

/// Runs a command that must succeed and returns its last stdout line as JSON.
pub(crate) fn nc_json(args: &[&str]) -> Value {
    let out = nc(args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?} failed:\n{stderr}\n{stdout}");
    let last = stdout.lines().last().expect("some output");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}"))
}

/// Runs a command that must fail with one `error:` line and returns it.
pub(crate) fn nc_err(args: &[&str]) -> String {
    let out = nc(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} should fail");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("warning:"))
        .collect();
    assert_eq!(lines.len(), 1, "one error line expected: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0].to_string()
}

/// A path as a command-line argument.
pub(crate) fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The tiny BERT directory of compress-transformer's fixtures.
pub(crate) fn tiny_bert() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../compress-transformer/tests/fixtures/tiny-bert")
}
