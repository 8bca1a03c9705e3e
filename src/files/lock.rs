//! One writer per output folder: a lock file holding the writer's process id, created with
//! `create_new` (git's `index.lock`), removed when the guard drops. A lock whose process is gone
//! (a run killed by SIGKILL or a power loss) is stale and taken over.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The lock file's name inside the folder it guards.
pub const LOCK_FILE: &str = "write.lock";

/// Holds a folder's lock; dropping it removes the lock file.
#[derive(Debug)]
pub struct FolderLock {
    path: PathBuf,
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether process `pid` is alive (Linux: `/proc/PID`; elsewhere assumed alive, so a lock is
/// only taken over where that can be told).
fn alive(pid: u32) -> bool {
    if Path::new("/proc/self").exists() {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

/// The live process holding `dir`'s lock, if any (a stale lock names none).
pub fn holder(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(dir.join(LOCK_FILE))
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .filter(|&pid| alive(pid))
}

/// The error for a folder whose lock `pid` holds.
fn held(what: &str, dir: &Path, pid: u32) -> String {
    format!(
        "{what} '{}' is being written by another process (pid {pid}, lock '{}') (hint: wait for it to end, or stop it first)",
        dir.display(),
        dir.join(LOCK_FILE).display()
    )
}

/// Fails when another live process holds `dir`'s lock (checked before any work).
pub fn check_unlocked(what: &str, dir: &Path) -> Result<(), String> {
    holder(dir).map_or(Ok(()), |pid| Err(held(what, dir, pid)))
}

/// Takes `dir`'s lock for `what` (e.g. "--out"): an error naming the process that holds it.
pub fn lock_folder(what: &str, dir: &Path) -> Result<FolderLock, String> {
    let path = dir.join(LOCK_FILE);
    for _ in 0..2 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                let me = std::process::id();
                f.write_all(format!("{me}\n").as_bytes()).map_err(|e| {
                    format!("{what} '{}': cannot write its lock: {e}", dir.display())
                })?;
                return Ok(FolderLock { path });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let holder = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| t.trim().parse::<u32>().ok());
                match holder {
                    Some(pid) if alive(pid) => return Err(held(what, dir, pid)),
                    // Stale (its process is gone) or unreadable: take it over.
                    _ => {
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
            Err(e) => {
                return Err(format!(
                    "{what} '{}': cannot create its lock: {e}",
                    dir.display()
                ));
            }
        }
    }
    Err(format!(
        "{what} '{}': another process took its lock at the same time (hint: run one writer at a time)",
        dir.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_stale_locks_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let a = lock_folder("--out", dir.path()).unwrap();
        let e = lock_folder("--out", dir.path()).unwrap_err();
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        drop(a);
        assert!(!dir.path().join(LOCK_FILE).exists());
        // A lock left by a process that is gone.
        std::fs::write(dir.path().join(LOCK_FILE), "4000000000\n").unwrap();
        let b = lock_folder("--out", dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(LOCK_FILE))
                .unwrap()
                .trim(),
            std::process::id().to_string()
        );
        drop(b);
    }
}
