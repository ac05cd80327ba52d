//! One writer per run folder: an exclusive lock that `train`, `distill` and `adapt` (and
//! `experiment` through them) hold on the folder they write for as long as they write it.
//!
//! The lock is `flock` on `.lstmkd.lock` inside the folder, so the kernel releases it when
//! its holder dies, however it dies (kill -9 included): a stale lock file never blocks the
//! next run. The file holds the holder's PID only so that a refusal can name it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};

pub(crate) const LOCK_FILE: &str = ".lstmkd.lock";

/// Held while a process writes a run folder; dropping it releases the folder.
#[derive(Debug)]
pub(crate) struct FolderLock {
    _file: File,
}

impl FolderLock {
    /// Takes the folder (creating it), or refuses at once when another process holds it.
    pub(crate) fn take(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create run directory", dir.display()))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("{}: cannot create", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                // A holder that has not written its PID yet is still a holder.
                let _ = file.read_to_string(&mut holder);
                let own = std::process::id().to_string();
                let holder = match holder.trim() {
                    "" => "another process".to_string(),
                    pid if pid == own => format!("this process ({pid}), through another run,"),
                    pid => format!("process {pid}"),
                };
                bail!(
                    "{}: {holder} is writing this run folder; wait for it to finish or stop it (one process per run folder)",
                    dir.display()
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("{}: cannot lock", path.display()));
            }
        }
        let pid = std::process::id().to_string();
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(pid.as_bytes()))
            .with_context(|| format!("{}: cannot write", path.display()))?;
        Ok(Self { _file: file })
    }
}
