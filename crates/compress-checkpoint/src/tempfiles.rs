//! The temporary files of unfinished writes: `OUT.tmp-<pid>` / `OUT.tmp2-<pid>` beside each
//! output file, and `.OUT.partial-<pid>` beside each output directory (a model directory
//! being built).
//!
//! Every temporary file or directory is registered while it exists, so that
//! [`interrupt_writes`] (called from a SIGINT/SIGTERM handler) can remove them all and stop
//! further writes, and those left by a process that was killed outright (SIGKILL, power
//! loss) are swept by the next write to the same output: an entry of our naming whose
//! process id no longer runs is removed.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::error::{CheckpointError, Result};

/// Live temporary files.
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
/// Set once [`interrupt_writes`] ran: no temporary file may be created or committed after.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The suffixes of our temporary files.
const SUFFIXES: [&str; 2] = ["tmp", "tmp2"];

fn live() -> MutexGuard<'static, Vec<PathBuf>> {
    // A panic while the lock was held leaves a consistent list: use it anyway.
    LIVE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `OUT.suffix-<pid>` beside `path`.
pub(crate) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!("{name}.{suffix}-{}", std::process::id()))
}

/// Removes a file, or a directory with its contents, ignoring errors (used on cleanup paths
/// only). A symlink is removed, never followed.
pub(crate) fn remove_quietly(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir_all(path);
        }
        _ => {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `.OUT.partial-<pid>` beside the output directory `out`.
pub(crate) fn partial_dir(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
    out.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

/// Creates (and registers) the temporary directory `path` (it must not exist).
///
/// # Errors
///
/// [`CheckpointError::Interrupted`] after [`interrupt_writes`]; [`CheckpointError::Io`].
pub(crate) fn create_dir(path: &Path) -> Result<()> {
    let mut live = live();
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Err(CheckpointError::Interrupted);
    }
    std::fs::create_dir(path).map_err(|e| CheckpointError::io(path, e))?;
    live.push(path.to_path_buf());
    Ok(())
}

/// Creates (and registers) the temporary file `path` with `options`.
///
/// # Errors
///
/// [`CheckpointError::Interrupted`] after [`interrupt_writes`]; [`CheckpointError::Io`].
pub(crate) fn create(path: &Path, options: &OpenOptions) -> Result<File> {
    let mut live = live();
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Err(CheckpointError::Interrupted);
    }
    let f = options
        .open(path)
        .map_err(|e| CheckpointError::io(path, e))?;
    live.push(path.to_path_buf());
    Ok(f)
}

/// Removes the temporary file `path` and forgets it.
pub(crate) fn remove(path: &Path) {
    let mut live = live();
    remove_quietly(path);
    live.retain(|p| p != path);
}

/// Runs `f` (the final renames) holding the temporary-file lock (`f` gets the list of live
/// temporary files, to forget those it renamed), so a signal handler cannot
/// remove files half-way through; refuses after [`interrupt_writes`].
///
/// # Errors
///
/// [`CheckpointError::Interrupted`], or `f`'s error.
pub(crate) fn while_locked<R>(f: impl FnOnce(&mut Vec<PathBuf>) -> Result<R>) -> Result<R> {
    let mut live = live();
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Err(CheckpointError::Interrupted);
    }
    f(&mut live)
}

/// Refuses an output path that exists and is not a regular file (directory, FIFO, device,
/// socket or symlink): replacing it would destroy something that is not a checkpoint.
///
/// # Errors
///
/// [`CheckpointError::Output`] naming the path and what it is.
pub(crate) fn check_replaceable(path: &Path) -> Result<()> {
    let Ok(m) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let t = m.file_type();
    if t.is_file() {
        return Ok(());
    }
    let what = if t.is_symlink() {
        "a symlink"
    } else if t.is_dir() {
        "a directory"
    } else {
        "not a regular file (device, FIFO or socket)"
    };
    Err(CheckpointError::output(
        path,
        format!("exists and is {what}; refusing to replace it"),
    ))
}

/// Removes every temporary file of this process and makes every later write or commit fail
/// with [`CheckpointError::Interrupted`]. Call it from a SIGINT/SIGTERM handler, then exit:
/// no partial output is left, and an output whose final renames were under way is complete.
pub fn interrupt_writes() {
    let mut live = live();
    INTERRUPTED.store(true, Ordering::SeqCst);
    for p in live.drain(..) {
        remove_quietly(&p);
    }
}

/// Whether process `pid` runs (`None` when it cannot be told on this system).
fn process_alive(pid: u32) -> Option<bool> {
    let proc = Path::new("/proc");
    proc.join("self")
        .exists()
        .then(|| proc.join(pid.to_string()).exists())
}

/// Removes the entries beside `target` for which `stale_pid` gives the process id of a
/// process that no longer runs, and whose file type `kind` accepts.
fn sweep_beside(
    target: &Path,
    stale_pid: impl Fn(&str, &str) -> Option<u32>,
    kind: impl Fn(std::fs::FileType) -> bool,
) {
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let name = name.to_string_lossy();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name();
        if let Some(pid) = stale_pid(&file.to_string_lossy(), &name)
            && pid != std::process::id()
            && process_alive(pid) == Some(false)
            && e.file_type().is_ok_and(&kind)
        {
            remove_quietly(&e.path());
        }
    }
}

/// Removes `OUT.tmp-<pid>` / `OUT.tmp2-<pid>` files beside `target` left by processes that no
/// longer run (only files of exactly our naming for this output are touched).
pub(crate) fn sweep_stale(target: &Path) {
    sweep_beside(
        target,
        |file, name| {
            let rest = file.strip_prefix(name)?.strip_prefix('.')?;
            SUFFIXES
                .iter()
                .find_map(|s| rest.strip_prefix(s)?.strip_prefix('-')?.parse::<u32>().ok())
        },
        |t| t.is_file(),
    );
}

/// Removes `.OUT.partial-<pid>` directories beside the output directory `out` left by
/// processes that no longer run (only directories of exactly our naming for this output).
pub(crate) fn sweep_stale_dirs(out: &Path) {
    sweep_beside(
        out,
        |file, name| {
            file.strip_prefix('.')?
                .strip_prefix(name)?
                .strip_prefix(".partial-")?
                .parse::<u32>()
                .ok()
        },
        |t| t.is_dir(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_temp_files_of_dead_processes_are_swept() {
        let dir = std::env::temp_dir().join(format!("nc-sweep-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("m.safetensors");
        // pid 0 is never a running process's /proc entry; u32::MAX is out of range.
        let dead = [
            dir.join("m.safetensors.tmp-4294967294"),
            dir.join("m.safetensors.tmp2-4294967294"),
        ];
        let keep = [
            dir.join(format!("m.safetensors.tmp-{}", std::process::id())),
            dir.join("m.safetensors.tmpx-4294967294"),
            dir.join("other.safetensors.tmp-4294967294"),
        ];
        for p in dead.iter().chain(&keep) {
            std::fs::write(p, b"x").unwrap();
        }
        sweep_stale(&out);
        for p in &dead {
            assert_eq!(p.exists(), process_alive(1).is_none(), "{}", p.display());
        }
        for p in &keep {
            assert!(p.exists(), "{}", p.display());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_partial_dirs_of_dead_processes_are_swept() {
        let dir = std::env::temp_dir().join(format!("nc-sweep-dirs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("q");
        let dead = dir.join(".q.partial-4294967294");
        let keep = [
            partial_dir(&out),
            dir.join(".other.partial-4294967294"),
            dir.join(".q.partial-x4294967294"),
        ];
        for p in std::iter::once(&dead).chain(&keep) {
            std::fs::create_dir_all(p.join("sub")).unwrap();
            std::fs::write(p.join("sub/f"), b"x").unwrap();
        }
        // A regular file of the same naming is not ours to remove.
        let file = dir.join(".q.partial-4294967293");
        std::fs::write(&file, b"x").unwrap();
        sweep_stale_dirs(&out);
        assert_eq!(dead.exists(), process_alive(1).is_none());
        for p in keep.iter().chain([&file]) {
            assert!(p.exists(), "{}", p.display());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn interrupting_removes_live_partial_dirs() {
        // Only the registration is exercised here (interrupt_writes is process-wide and is
        // tested by killing the CLI); a registered directory is removed with its contents.
        let dir = std::env::temp_dir().join(format!("nc-live-dir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = partial_dir(&dir.join("m"));
        create_dir(&p).unwrap();
        std::fs::write(p.join("f"), b"x").unwrap();
        assert!(live().contains(&p));
        remove(&p);
        assert!(!p.exists() && !live().contains(&p));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn non_regular_outputs_are_refused() {
        let dir = std::env::temp_dir().join(format!("nc-replace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(check_replaceable(&file).is_ok());
        assert!(check_replaceable(&dir.join("missing")).is_ok());
        assert!(matches!(
            check_replaceable(&dir),
            Err(CheckpointError::Output { .. })
        ));
        #[cfg(unix)]
        {
            let link = dir.join("link");
            std::os::unix::fs::symlink(&file, &link).unwrap();
            let e = check_replaceable(&link).unwrap_err().to_string();
            assert!(e.contains("symlink"), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
