//! The SQLite store in the data directory: the sync cache (only what the server confirmed),
//! last-sync times, the device id and the run history.

mod cache;
mod runs;
mod state;

pub use runs::{RunOutcome, RunRecord};
pub use state::StagedState;

use std::path::{Path, PathBuf};

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "directory-connector.sqlite3";

const SCHEMA_VERSION: i64 = 3;

/// An open database. The cache functions work on one scope (API URL and organization): the one
/// the last successful sync used, unless [`Store::set_scope`] chose another.
pub struct Store {
    pub(crate) conn: Connection,
    pub(crate) scope: String,
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

impl Store {
    /// Opens (and creates or migrates) the database of a data directory.
    pub fn open(data_dir: &Path) -> anyhow::Result<Store> {
        let path = db_path(data_dir);
        let conn = Connection::open(&path)
            .with_context(|| format!("opening the database {}", path.display()))?;
        Self::init(conn).with_context(|| format!("preparing the database {}", path.display()))
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
        if version < 1 {
            conn.execute_batch(
                "BEGIN;
                 CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
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
                 PRAGMA user_version = 1;
                 COMMIT;",
            )?;
        }
        if version < 2 {
            // v2: groups keep their confirmed member list (NULL for rows written before)
            conn.execute_batch(
                "BEGIN;
                 ALTER TABLE groups ADD COLUMN members TEXT;
                 PRAGMA user_version = 2;
                 COMMIT;",
            )?;
        }
        if version < 3 {
            // v3: one cache per scope (API URL | organization id); rows written before belong to
            // the scope recorded then ('' when none was: such rows are never read)
            conn.execute_batch(
                "BEGIN;
                 CREATE TABLE members_v3 (
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
                 PRAGMA user_version = 3;
                 COMMIT;",
            )?;
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
