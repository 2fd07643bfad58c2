//! The SQLite store in the data directory: the sync cache (only what the server confirmed),
//! last-sync times, the device id and the run history. The file is readable by its owner only
//! (0600, whatever the umask); a damaged file is named with the remedy (`clear-cache`), which
//! moves it aside and starts a new one.

mod cache;
mod identities;
pub mod kept;
mod runs;
mod state;

pub use cache::GroupList;
pub use runs::{CurrentRun, RunOutcome, RunRecord, ServerUse};
pub use state::StagedState;

use std::path::{Path, PathBuf};

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "directory-connector.sqlite3";

const SCHEMA_VERSION: i64 = 6;

/// An open database. The cache functions work on one scope (API URL and organization): the one
/// the last successful sync used, unless [`Store::set_scope`] chose another.
pub struct Store {
    pub(crate) conn: Connection,
    pub(crate) scope: String,
    /// The data directory ([`kept`] lives there); none in memory.
    pub(crate) dir: Option<PathBuf>,
}

/// Which last-sync time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    Users,
    Groups,
}

impl SyncKind {
    fn key(self) -> &'static str {
        match self {
            SyncKind::Users => "last_user_sync",
            SyncKind::Groups => "last_group_sync",
        }
    }
}

pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DB_FILE)
}

/// What an admin reads when the database is damaged: the file and the remedy.
pub fn corrupt_message(data_dir: &Path) -> String {
    format!(
        "the database {} is damaged or not a database. Run `directory-connector clear-cache`: \
         it moves the file aside (as {DB_FILE}.broken-<time>) and starts a new one; the sync \
         cache and the run history start empty (pending email changes are kept outside it); the \
         next sync plans against the organization where the server can be read back, and sends \
         everything where it cannot (Vaultwarden)",
        db_path(data_dir).display()
    )
}

/// Makes one of the database's files readable and writable by its owner only, by its path:
/// the file is never opened here (see [`crate::datadir::make_private`]: a descriptor closed
/// beside SQLite's drops its locks, and the service crashed with SIGBUS when another process
/// then reset the shared-memory file).
fn private_file(path: &Path) -> anyhow::Result<()> {
    crate::datadir::make_private(path).with_context(|| {
        format!(
            "making the database file {} private (mode 0600)",
            path.display()
        )
    })
}

/// The `-wal` and `-shm` files SQLite keeps beside a database.
fn side_files(path: &Path) -> impl Iterator<Item = PathBuf> + '_ {
    ["-wal", "-shm"].into_iter().map(move |side| {
        let mut p = path.as_os_str().to_owned();
        p.push(side);
        PathBuf::from(p)
    })
}

/// Whether an error is SQLite's "database is locked" (another connection holds the lock).
fn is_busy(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<rusqlite::Error>(),
            Some(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::DatabaseBusy
                    || f.code == rusqlite::ErrorCode::DatabaseLocked
        )
    })
}

impl Store {
    /// Opens (and creates or migrates) the database of a data directory.
    pub fn open(data_dir: &Path) -> anyhow::Result<Store> {
        let path = db_path(data_dir);
        let open = || {
            Connection::open(&path)
                .with_context(|| format!("opening the database {}", path.display()))
                .and_then(|conn| {
                    Self::init(conn)
                        .with_context(|| format!("preparing the database {}", path.display()))
                })
        };
        // Another process of the data directory (the service, the window, a CLI command) may
        // hold a lock that SQLite's busy handler does not wait for while this one opens the
        // file (WAL recovery, the journal mode): a few tries before it is an error.
        let mut opened = open();
        for _ in 0..20 {
            match &opened {
                Err(e) if is_busy(e) => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    opened = open();
                }
                _ => break,
            }
        }
        // SQLite creates the files with the umask's mode: they are made private by path (a new
        // database is empty until then, in the data directory, which is private itself)
        for p in std::iter::once(path.clone())
            .chain(side_files(&path))
            .filter(|p| p.exists())
        {
            private_file(&p)?;
        }
        opened
            .map(|mut s| {
                s.dir = Some(data_dir.to_path_buf());
                s
            })
            .map_err(|e| {
                if crate::errors::is_corrupt_database(&e) {
                    e.context(corrupt_message(data_dir))
                } else {
                    e
                }
            })
    }

    /// Moves a damaged database (and its -wal and -shm files) aside as
    /// `<name>.broken-<UTC time>` and opens a new, empty one. Returns the new store and where
    /// the old file went.
    pub fn recreate(data_dir: &Path) -> anyhow::Result<(Store, PathBuf)> {
        let path = db_path(data_dir);
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let aside = |p: &Path| {
            let mut name = p.as_os_str().to_owned();
            name.push(format!(".broken-{stamp}"));
            PathBuf::from(name)
        };
        let moved = aside(&path);
        std::fs::rename(&path, &moved).with_context(|| {
            format!(
                "moving the damaged database {} aside to {}",
                path.display(),
                moved.display()
            )
        })?;
        for p in side_files(&path).filter(|p| p.exists()) {
            let to = aside(&p);
            std::fs::rename(&p, &to)
                .with_context(|| format!("moving {} aside to {}", p.display(), to.display()))?;
        }
        tracing::warn!(
            "the damaged database was moved to {}; a new one is created at {}",
            moved.display(),
            path.display()
        );
        Ok((Store::open(data_dir)?, moved))
    }

    /// An in-memory database (tests).
    pub fn open_in_memory() -> anyhow::Result<Store> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> anyhow::Result<Store> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            anyhow::bail!(
                "the database was written by a newer version (schema {version}); upgrade Directory Connector"
            );
        }
        if version < SCHEMA_VERSION {
            // one process migrates; another one opening the same new or old file at the same
            // moment waits for it (busy_timeout) and then finds the schema current
            conn.execute_batch("BEGIN IMMEDIATE")?;
            let migrated = conn
                .pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
                .map_err(anyhow::Error::from)
                .and_then(|now| migrate(&conn, now));
            match migrated {
                Ok(()) => conn.execute_batch("COMMIT")?,
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    return Err(e);
                }
            }
        }
        let scope: Option<String> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'cache_scope'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(Store {
            conn,
            scope: scope.unwrap_or_default(),
            dir: None,
        })
    }

    /// Works on the cache of `scope` from now on (nothing is written).
    pub fn set_scope(&mut self, scope: &str) {
        self.scope = scope.to_string();
    }

    /// The scope the cache functions work on.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// Records the current scope as the one the last successful sync used (what `test` without
    /// a login and the window's counts show).
    pub fn remember_scope(&self) -> anyhow::Result<()> {
        self.meta_set("cache_scope", Some(&self.scope))
    }

    pub fn meta_get(&self, key: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    pub fn meta_set(&self, key: &str, value: Option<&str>) -> anyhow::Result<()> {
        match value {
            Some(v) => self.conn.execute(
                "INSERT INTO meta(key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, v],
            )?,
            None => self
                .conn
                .execute("DELETE FROM meta WHERE key = ?1", [key])?,
        };
        Ok(())
    }

    /// The device identifier sent with token requests, created on first use.
    pub fn app_id(&self) -> anyhow::Result<String> {
        if let Some(id) = self.meta_get("app_id")? {
            return Ok(id);
        }
        let id = uuid::Uuid::new_v4().to_string();
        self.meta_set("app_id", Some(&id))?;
        Ok(id)
    }

    pub fn last_sync(&self, kind: SyncKind) -> anyhow::Result<Option<String>> {
        self.meta_get(kind.key())
    }

    pub fn set_last_sync(&self, kind: SyncKind, when: &str) -> anyhow::Result<()> {
        self.meta_set(kind.key(), Some(when))
    }
}

/// The schema upgrades from version 5 on (`version`: the database's before them).
/// The schema upgrades from `version` on, inside the caller's transaction.
fn migrate(conn: &Connection, version: i64) -> anyhow::Result<()> {
    if version < 1 {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS members (
                 external_id TEXT PRIMARY KEY, email TEXT NOT NULL, synced_at TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS groups (
                 external_id TEXT PRIMARY KEY, name TEXT NOT NULL, fingerprint TEXT NOT NULL,
                 member_count INTEGER NOT NULL, synced_at TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS runs (
                 id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,
                 started_at TEXT NOT NULL, ended_at TEXT, outcome TEXT NOT NULL,
                 invited INTEGER NOT NULL DEFAULT 0, updated INTEGER NOT NULL DEFAULT 0,
                 removed INTEGER NOT NULL DEFAULT 0, groups_changed INTEGER NOT NULL DEFAULT 0,
                 directory_users INTEGER NOT NULL DEFAULT 0, directory_groups INTEGER NOT NULL DEFAULT 0,
                 members_after INTEGER NOT NULL DEFAULT 0, requests INTEGER NOT NULL DEFAULT 0,
                 bytes_pushed INTEGER NOT NULL DEFAULT 0, error TEXT);
             PRAGMA user_version = 1;",
        )?;
    }
    if version < 2 {
        // v2: groups keep their confirmed member list (NULL for rows written before)
        conn.execute_batch(
            "ALTER TABLE groups ADD COLUMN members TEXT;
             PRAGMA user_version = 2;",
        )?;
    }
    if version < 3 {
        // v3: one cache per scope (API URL | organization id); rows written before belong to
        // the scope recorded then ('' when none was: such rows are never read)
        conn.execute_batch(
            "CREATE TABLE members_v3 (
                 scope TEXT NOT NULL, external_id TEXT NOT NULL, email TEXT NOT NULL,
                 synced_at TEXT NOT NULL, PRIMARY KEY (scope, external_id));
             INSERT INTO members_v3
                 SELECT COALESCE((SELECT value FROM meta WHERE key = 'cache_scope'), ''),
                        external_id, email, synced_at FROM members;
             DROP TABLE members;
             ALTER TABLE members_v3 RENAME TO members;
             CREATE TABLE groups_v3 (
                 scope TEXT NOT NULL, external_id TEXT NOT NULL, name TEXT NOT NULL,
                 fingerprint TEXT NOT NULL, member_count INTEGER NOT NULL,
                 synced_at TEXT NOT NULL, members TEXT, PRIMARY KEY (scope, external_id));
             INSERT INTO groups_v3
                 SELECT COALESCE((SELECT value FROM meta WHERE key = 'cache_scope'), ''),
                        external_id, name, fingerprint, member_count, synced_at, members
                 FROM groups;
             DROP TABLE groups;
             ALTER TABLE groups_v3 RENAME TO groups;
             PRAGMA user_version = 3;",
        )?;
    }
    if version < 4 {
        // v4: groups that left the directory are kept (the organization keeps them), marked
        conn.execute_batch(
            "ALTER TABLE groups ADD COLUMN left_directory INTEGER NOT NULL DEFAULT 0;
             PRAGMA user_version = 4;",
        )?;
    }
    migrate_since_v5(conn, version)?;
    Ok(())
}

fn migrate_since_v5(conn: &Connection, version: i64) -> anyhow::Result<()> {
    if version < 5 {
        // v5: when each group's members were last read from the server (the rolling
        // reconcile), and each run's requests to the server by kind
        conn.execute_batch(
            "ALTER TABLE groups ADD COLUMN read_at TEXT;
             ALTER TABLE runs ADD COLUMN server_requests TEXT;
             PRAGMA user_version = 5;",
        )?;
    }
    if version < 6 {
        // v6: each directory entry's immutable id beside its externalId (renames and moves)
        conn.execute_batch(
            "CREATE TABLE identities (
                 scope TEXT NOT NULL, immutable_id TEXT NOT NULL, external_id TEXT NOT NULL,
                 PRIMARY KEY (scope, immutable_id));
             PRAGMA user_version = 6;",
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_opening_a_new_database_at_once_all_find_it_current() {
        // the service and a CLI command started together used to both migrate (one failed
        // with "duplicate column name")
        for _ in 0..10 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().to_path_buf();
            let opened: Vec<anyhow::Result<()>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..4)
                    .map(|_| {
                        s.spawn(|| Store::open(&path).and_then(|st| st.list_runs(1).map(drop)))
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for r in opened {
                r.unwrap();
            }
        }
    }

    #[test]
    fn a_damaged_file_is_named_with_the_remedy_and_recreate_moves_it_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(db_path(dir.path()), vec![b'x'; 8192]).unwrap();
        let e = Store::open(dir.path()).err().expect("not a database");
        assert!(crate::errors::is_corrupt_database(&e), "{e:#}");
        let msg = format!("{e:#}");
        assert!(
            msg.contains(&db_path(dir.path()).display().to_string()),
            "{msg}"
        );
        assert!(msg.contains("clear-cache"), "{msg}");
        let (store, moved) = Store::recreate(dir.path()).unwrap();
        assert!(store.list_runs(1).unwrap().is_empty());
        assert_eq!(std::fs::read(&moved).unwrap(), vec![b'x'; 8192]);
        assert!(
            moved
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{DB_FILE}.broken-"))
        );
    }

    #[cfg(unix)]
    #[test]
    fn an_existing_database_is_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let p = db_path(dir.path());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(Store::open(dir.path()).unwrap());
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    /// Opening the database again (the service does, for every run) keeps the POSIX locks of
    /// the connections already open. A descriptor of one of its files, opened and closed beside
    /// them, dropped their locks on the shared-memory file: another process opening the database
    /// then reset that file under the service's mapping, and the service died of SIGBUS.
    #[cfg(target_os = "linux")]
    #[test]
    fn opening_the_database_again_keeps_the_locks_of_open_connections() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap();
        first.list_runs(1).unwrap();
        let mut shm = db_path(dir.path()).into_os_string();
        shm.push("-shm");
        let inode = std::fs::metadata(&shm).unwrap().ino();
        // this process's locks on the -shm file, from /proc/locks (`… POSIX … <pid> <dev>:<inode> …`)
        let held = || {
            let pid = std::process::id().to_string();
            std::fs::read_to_string("/proc/locks")
                .unwrap()
                .lines()
                .filter(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.get(1) == Some(&"POSIX")
                        && f.get(4) == Some(&pid.as_str())
                        && f.get(5)
                            .and_then(|d| d.rsplit(':').next())
                            .is_some_and(|i| i == inode.to_string())
                })
                .count()
        };
        assert!(
            held() > 0,
            "an open connection holds a lock on the -shm file"
        );
        let second = Store::open(dir.path()).unwrap();
        assert!(
            held() > 0,
            "opening the database again dropped the first one's locks"
        );
        second.list_runs(1).unwrap();
        first.list_runs(1).unwrap();
    }
}
