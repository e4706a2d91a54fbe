//! What the fuzz targets share: the scratch directory each target process writes its inputs
//! into (the readers under test take paths).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// `$TMPDIR/nc-fuzz-PID`, created on first use; one per fuzzing process.
///
/// # Panics
///
/// If the directory cannot be created (the fuzzer cannot run at all then).
pub fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("nc-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("scratch directory for the fuzz inputs");
        d
    })
}
