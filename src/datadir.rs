//! The data directory (config, database, logs, lock) and the lock that keeps two processes from
//! syncing the same directory at once.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::errors::ConfigError;

/// Environment variable that overrides the data directory.
pub const DATA_DIR_ENV: &str = "DIRECTORY_CONNECTOR_DATA_DIR";

/// The data directory: `--data-dir`, else `DIRECTORY_CONNECTOR_DATA_DIR`, else the platform's
/// app-data folder (Linux: `~/.local/share/directory-connector`).
pub fn resolve(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(DATA_DIR_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    directories::ProjectDirs::from("", "", "directory-connector")
        .map(|d| d.data_dir().to_path_buf())
        .ok_or_else(|| {
            ConfigError(format!(
                "cannot find a home directory for the data directory; use --data-dir or {DATA_DIR_ENV}"
            ))
            .into()
        })
}

/// Creates the data directory (mode 0700 on Unix) if needed.
pub fn ensure(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(dir)?;
        if meta.permissions().mode() & 0o077 != 0 {
            // Best effort: a directory we do not own may refuse.
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
    }
    Ok(())
}

/// Writes a file readable only by its owner (0600 on Unix), replacing its content.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Holds the sync lock of a data directory until dropped.
#[derive(Debug)]
pub struct SyncLock {
    _file: std::fs::File,
}

/// Another process holds the lock.
#[derive(Debug)]
pub struct Busy(pub String);

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Busy {}

/// Takes the data directory's sync lock, or fails naming the process that holds it.
pub fn acquire_sync_lock(dir: &Path, what: &str) -> anyhow::Result<SyncLock> {
    let path = dir.join("sync.lock");
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut file = opts
        .open(&path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // an older lock file, or one made under another umask: owner only
        if file.metadata()?.permissions().mode() & 0o777 != 0o600 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
    }
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(Busy(format!(
                "another sync is running on the data directory {}: {}. Wait for it to finish.",
                dir.display(),
                if holder.is_empty() {
                    "unknown process"
                } else {
                    holder
                }
            ))
            .into());
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(
        file,
        "process {} ({what}, started {})",
        std::process::id(),
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
    )?;
    file.flush()?;
    Ok(SyncLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let _l = acquire_sync_lock(dir.path(), "sync from the CLI").unwrap();
        let e = acquire_sync_lock(dir.path(), "other").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("process {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("sync from the CLI"), "{msg}");
        drop(_l);
        acquire_sync_lock(dir.path(), "again").unwrap();
    }
}
