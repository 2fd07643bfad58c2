//! The data directory (config, database, logs, lock) and the lock that keeps two processes from
//! syncing the same directory at once.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::errors::Failure;

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
            Failure::Config(format!(
                "cannot find a home directory for the data directory; use --data-dir or {DATA_DIR_ENV}"
            ))
            .into()
        })
}

/// Creates the data directory if needed. Only a directory this call creates is made private
/// (0700 on Unix, whatever the umask); an existing directory keeps its mode, since it may be
/// shared (e.g. a 1777 scratch folder given with `--data-dir`).
pub fn ensure(dir: &Path) -> anyhow::Result<()> {
    create_private_dir(dir)
        .map(|_| ())
        .with_context(|| format!("creating the data directory {}", dir.display()))
}

/// Creates `dir` (and missing parents) and gives the directory itself mode 0700 on Unix when
/// this call created it. Returns whether it did. An existing directory is left as it is.
pub fn create_private_dir(dir: &Path) -> std::io::Result<bool> {
    if dir.is_dir() {
        return Ok(false);
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    #[cfg_attr(not(unix), allow(unused_mut))] // the mode is set on Unix only
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    match builder.create(dir) {
        Ok(()) => {}
        // another process made it in between: it is theirs, leave it
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {
            return Ok(false);
        }
        Err(e) => return Err(e),
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // the umask may have taken bits off; 0700 is what we want either way
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    // Windows: an ACL for the current user only, inherited by the files made inside
    crate::platform::restrict_to_current_user(dir)?;
    Ok(true)
}

/// How long a writer waits for another process's lock on a file it wants to change.
const EDIT_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Holds an exclusive edit lock (`.NAME.lock` in the data directory) until dropped.
#[derive(Debug)]
pub struct EditLock {
    _file: std::fs::File,
}

/// How lock files are opened: read and write, created when missing, never truncated.
fn lock_options() -> std::fs::OpenOptions {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    opts
}

/// Takes the exclusive lock that serializes read-modify-write of `name` (e.g. `config.toml`)
/// between processes and threads, waiting up to 30 s for another holder.
pub fn lock_for_edit(dir: &Path, name: &str) -> anyhow::Result<EditLock> {
    let path = dir.join(format!(".{name}.lock"));
    let file = open_private(&path, &lock_options())
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    let deadline = std::time::Instant::now() + EDIT_LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(EditLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Busy(format!(
                    "{name} is being changed by another process (lock file {}); try again",
                    path.display()
                ))
                .into());
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
    }
}

/// Replaces `path` atomically with `bytes`, mode 0600: a temp file with a unique name in the
/// same directory, written and flushed to disk, renamed over the old file, then the directory
/// is flushed so the rename survives a crash. Readers see the old or the new file, never a
/// mix. Concurrent read-modify-write needs [`lock_for_edit`] around it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    crate::platform::restrict_to_current_user(tmp.path())
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", path.display()))?;
    sync_dir(dir).with_context(|| format!("flushing the directory {}", dir.display()))
}

/// Flushes a directory's entries (a rename in it) to disk; a no-op where directories cannot be
/// opened (Windows).
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
    }
    Ok(())
}

/// Opens `path` with `opts`, creating it readable and writable by its owner only (0600 on Unix,
/// whatever the umask; an ACL for the current user only on Windows); an existing file with
/// other modes is made private too. Every private file
/// of the data directory (database, locks, logs, config) is opened through here.
pub fn open_private(path: &Path, opts: &std::fs::OpenOptions) -> std::io::Result<std::fs::File> {
    #[allow(unused_mut)] // the mode is set on Unix only
    let mut opts = opts.clone();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let file = opts.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if file.metadata()?.permissions().mode() & 0o777 != 0o600 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
    }
    // Windows: the counterpart of 0600, an ACL for the current user only
    crate::platform::restrict_to_current_user(path)?;
    Ok(file)
}

/// Makes an existing file readable and writable by its owner only, as [`open_private`] does,
/// without opening it. (The database's files must never be opened outside SQLite: closing any
/// descriptor of a file drops every POSIX lock this process holds on it, those of its SQLite
/// connections too, and another process may then reset the shared-memory file they have mapped:
/// SIGBUS.)
pub fn make_private(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if std::fs::metadata(path)?.permissions().mode() & 0o777 != 0o600 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    crate::platform::restrict_to_current_user(path)
}

/// Writes a file readable only by its owner (0600 on Unix), replacing its content.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = open_private(
        path,
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true),
    )
    .with_context(|| format!("writing {}", path.display()))?;
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
    let mut file = open_private(&path, &lock_options())
        .with_context(|| format!("opening the lock file {}", path.display()))?;
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

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[cfg(unix)]
    #[test]
    fn an_existing_directory_keeps_its_mode_and_a_new_one_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        ensure(&shared).unwrap();
        assert_eq!(mode(&shared), 0o1777);
        let fresh = dir.path().join("a/b/fresh");
        ensure(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);
    }

    #[test]
    fn atomic_writes_leave_no_temp_file_and_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.toml");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["x.toml".to_string()]);
        #[cfg(unix)]
        assert_eq!(mode(&p), 0o600);
    }

    #[test]
    fn the_edit_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let l = lock_for_edit(dir.path(), "config.toml").unwrap();
        let p = dir.path().to_path_buf();
        let t = std::thread::spawn(move || {
            let start = std::time::Instant::now();
            let _l2 = lock_for_edit(&p, "config.toml").unwrap();
            start.elapsed()
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        drop(l);
        assert!(t.join().unwrap() >= std::time::Duration::from_millis(150));
    }
}
