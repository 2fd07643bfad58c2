//! The run history: one row per sync (start, end, outcome, counts, error).

use rusqlite::params;
use serde::Serialize;

use super::Store;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunOutcome {
    Running,
    Synced,
    Unchanged,
    Failed,
    Refused,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Running => "running",
            RunOutcome::Synced => "synced",
            RunOutcome::Unchanged => "unchanged",
            RunOutcome::Failed => "failed",
            RunOutcome::Refused => "refused",
        }
    }
    fn parse(s: &str) -> RunOutcome {
        match s {
            "synced" => RunOutcome::Synced,
            "unchanged" => RunOutcome::Unchanged,
            "refused" => RunOutcome::Refused,
            "running" => RunOutcome::Running,
            _ => RunOutcome::Failed,
        }
    }
}

/// One run as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    pub id: i64,
    pub kind: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub outcome: RunOutcome,
    pub invited: u64,
    pub updated: u64,
    pub removed: u64,
    pub groups_changed: u64,
    pub directory_users: u64,
    pub directory_groups: u64,
    pub members_after: u64,
    pub requests: u64,
    pub bytes_pushed: u64,
    pub error: Option<String>,
}

impl RunRecord {
    /// A run that has just started (failed until it says otherwise).
    pub fn new(id: i64, kind: &str) -> RunRecord {
        RunRecord {
            id,
            kind: kind.to_string(),
            started_at: String::new(),
            ended_at: None,
            outcome: RunOutcome::Failed,
            invited: 0,
            updated: 0,
            removed: 0,
            groups_changed: 0,
            directory_users: 0,
            directory_groups: 0,
            members_after: 0,
            requests: 0,
            bytes_pushed: 0,
            error: None,
        }
    }
}

impl Store {
    /// Starts a run record; finish it with [`Store::finish_run`].
    pub fn start_run(&self, kind: &str) -> anyhow::Result<i64> {
        self.conn.execute(
            "INSERT INTO runs(kind, started_at, outcome) VALUES (?1, ?2, 'running')",
            params![kind, chrono::Utc::now().to_rfc3339()],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Finishes a run record with its outcome and counts.
    pub fn finish_run(&self, r: &RunRecord) -> anyhow::Result<()> {
        self.conn.execute(
            "UPDATE runs SET ended_at = ?2, outcome = ?3, invited = ?4, updated = ?5, removed = ?6,
               groups_changed = ?7, directory_users = ?8, directory_groups = ?9,
               members_after = ?10, requests = ?11, bytes_pushed = ?12, error = ?13
             WHERE id = ?1",
            params![
                r.id,
                chrono::Utc::now().to_rfc3339(),
                r.outcome.as_str(),
                r.invited as i64,
                r.updated as i64,
                r.removed as i64,
                r.groups_changed as i64,
                r.directory_users as i64,
                r.directory_groups as i64,
                r.members_after as i64,
                r.requests as i64,
                r.bytes_pushed as i64,
                r.error
            ],
        )?;
        Ok(())
    }

    /// The most recent runs, newest first.
    pub fn list_runs(&self, limit: usize) -> anyhow::Result<Vec<RunRecord>> {
        let mut st = self.conn.prepare(
            "SELECT id, kind, started_at, ended_at, outcome, invited, updated, removed,
                    groups_changed, directory_users, directory_groups, members_after, requests,
                    bytes_pushed, error
             FROM runs ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = st.query_map([limit as i64], |r| {
            Ok(RunRecord {
                id: r.get(0)?,
                kind: r.get(1)?,
                started_at: r.get(2)?,
                ended_at: r.get(3)?,
                outcome: RunOutcome::parse(&r.get::<_, String>(4)?),
                invited: r.get::<_, i64>(5)? as u64,
                updated: r.get::<_, i64>(6)? as u64,
                removed: r.get::<_, i64>(7)? as u64,
                groups_changed: r.get::<_, i64>(8)? as u64,
                directory_users: r.get::<_, i64>(9)? as u64,
                directory_groups: r.get::<_, i64>(10)? as u64,
                members_after: r.get::<_, i64>(11)? as u64,
                requests: r.get::<_, i64>(12)? as u64,
                bytes_pushed: r.get::<_, i64>(13)? as u64,
                error: r.get(14)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}
