//! Temporary directories that clean up after themselves.
//!
//! A dozen lines of std rather than the `tempfile` crate: the examples need
//! one directory per run and nothing else that crate offers.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// A directory made for this run and removed with everything in it when
/// dropped: where `wordfreq` puts the corpus it generates.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a new, empty directory under the system's temporary directory,
    /// its name starting with `prefix`.
    pub fn new(prefix: &str) -> io::Result<TempDir> {
        let base = std::env::temp_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        // `create_dir` fails on an existing name, so a clash (or a planted
        // directory) is never reused: try another name instead.
        for attempt in 0..100u32 {
            let name = format!("{prefix}-{}-{nanos:x}-{attempt}", std::process::id());
            let path = base.join(name);
            match fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir { path }),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(err) => {
                    return Err(io::Error::new(
                        err.kind(),
                        format!("cannot create a directory in {}: {err}", base.display()),
                    ))
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("no free directory name in {}", base.display()),
        ))
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover temporary directory is no reason to fail.
        let _ = fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_dir_is_removed_on_drop() {
        let dir = TempDir::new("tempdir-test").unwrap();
        let path = dir.path().to_path_buf();
        fs::write(path.join("f"), "x").unwrap();
        drop(dir);
        assert!(!path.exists());
    }
}
