//! The run history: one row per sync (start, end, outcome, counts, error). The counts are what
//! the server confirmed, written after each confirmed batch, so a run that fails, is stopped or
//! crashes half way still shows what it applied. A run left `running` by a process that died is
//! closed as `interrupted` when the next run starts.

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
    /// Stopped by a signal (or the window closing), or left running by a process that died.
    Interrupted,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Running => "running",
            RunOutcome::Synced => "synced",
            RunOutcome::Unchanged => "unchanged",
            RunOutcome::Failed => "failed",
            RunOutcome::Refused => "refused",
            RunOutcome::Interrupted => "interrupted",
        }
    }
    fn parse(s: &str) -> RunOutcome {
        match s {
            "synced" => RunOutcome::Synced,
            "unchanged" => RunOutcome::Unchanged,
            "refused" => RunOutcome::Refused,
            "running" => RunOutcome::Running,
            "interrupted" => RunOutcome::Interrupted,
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
    /// What the run asked of the Bitwarden server (`None` for runs recorded before it was).
    pub server: Option<ServerUse>,
}

/// What a run asked of the Bitwarden server: its requests by kind, refusals and waits, and
/// how many groups' members it read, verified after its push, or left for the reconcile.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServerUse {
    pub requests: crate::engine::run::RequestStats,
    /// Groups whose members were read from the server before the plan (the rest came from the
    /// sync cache's last confirmed rows).
    pub groups_read: u64,
    /// Groups the push sent whose members were read back.
    pub groups_verified: u64,
    /// Groups the push sent that were not read back: the reconcile reads them first.
    pub groups_pending: u64,
    /// Members revoked, restored and renamed through the member API, as the server confirmed.
    pub revoked: u64,
    pub restored: u64,
    pub renamed: u64,
    /// Member API requests the server refused (the run fails, naming them).
    pub member_refusals: u64,
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
            server: None,
        }
    }
}

/// The run this process has going (data directory and run id), so that a panic can record it
/// as failed.
static CURRENT: std::sync::Mutex<Option<(std::path::PathBuf, i64)>> = std::sync::Mutex::new(None);

/// Marks a run as this process's current one until dropped.
pub struct CurrentRun(());

impl CurrentRun {
    pub fn set(data_dir: &std::path::Path, id: i64) -> CurrentRun {
        if let Ok(mut c) = CURRENT.lock() {
            *c = Some((data_dir.to_path_buf(), id));
        }
        CurrentRun(())
    }

    /// The run in progress, if any.
    pub fn get() -> Option<(std::path::PathBuf, i64)> {
        CURRENT.lock().ok().and_then(|c| c.clone())
    }
}

impl Drop for CurrentRun {
    fn drop(&mut self) {
        if let Ok(mut c) = CURRENT.lock() {
            *c = None;
        }
    }
}

/// The error recorded for a run that a dead process left `running`.
pub(super) const STALE_RUN_ERROR: &str = "the process ended before the run finished (killed, crashed or \
     the machine stopped); the counts are what the server had confirmed by then";

impl Store {
    /// Starts a run record; finish it with [`Store::finish_run`]. Runs still `running` are
    /// closed as `interrupted` first: the caller holds the sync lock, so no other process is
    /// running them.
    pub fn start_run(&self, kind: &str) -> anyhow::Result<i64> {
        self.close_stale_runs()?;
        self.conn.execute(
            "INSERT INTO runs(kind, started_at, outcome) VALUES (?1, ?2, 'running')",
            params![kind, chrono::Utc::now().to_rfc3339()],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Closes every run still marked `running` as `interrupted` (their process is gone).
    /// Returns how many there were.
    pub fn close_stale_runs(&self) -> anyhow::Result<usize> {
        let n = self.conn.execute(
            "UPDATE runs SET outcome = 'interrupted', ended_at = ?1,
               error = COALESCE(error, ?2)
             WHERE outcome = 'running'",
            params![chrono::Utc::now().to_rfc3339(), STALE_RUN_ERROR],
        )?;
        if n > 0 {
            tracing::warn!(
                "{n} earlier run(s) were left running by a process that ended; recorded as interrupted"
            );
        }
        Ok(n)
    }

    /// Records what a run has applied so far (the counts after a confirmed batch); the run stays
    /// `running`.
    pub fn record_progress(&self, r: &RunRecord) -> anyhow::Result<()> {
        self.conn.execute(
            "UPDATE runs SET invited = ?2, updated = ?3, removed = ?4, groups_changed = ?5,
               directory_users = ?6, directory_groups = ?7, requests = ?8, bytes_pushed = ?9
             WHERE id = ?1",
            params![
                r.id,
                r.invited as i64,
                r.updated as i64,
                r.removed as i64,
                r.groups_changed as i64,
                r.directory_users as i64,
                r.directory_groups as i64,
                r.requests as i64,
                r.bytes_pushed as i64,
            ],
        )?;
        Ok(())
    }

    /// Marks a run that ended without finishing (a panic) as failed with `error`, keeping the
    /// counts recorded so far. Only a run still `running` is changed; returns whether it was.
    pub fn fail_unfinished_run(&self, id: i64, error: &str) -> anyhow::Result<bool> {
        let n = self.conn.execute(
            "UPDATE runs SET ended_at = ?2, outcome = 'failed', error = ?3
             WHERE id = ?1 AND outcome = 'running'",
            params![id, chrono::Utc::now().to_rfc3339(), error],
        )?;
        Ok(n > 0)
    }

    /// Finishes a run record with its outcome and counts.
    pub fn finish_run(&self, r: &RunRecord) -> anyhow::Result<()> {
        // the counts as after a batch, then what only the end knows, in one transaction
        let tx = self.conn.unchecked_transaction()?;
        self.record_progress(r)?;
        tx.execute(
            "UPDATE runs SET ended_at = ?2, outcome = ?3, members_after = ?4, error = ?5,
               server_requests = ?6
             WHERE id = ?1",
            params![
                r.id,
                chrono::Utc::now().to_rfc3339(),
                r.outcome.as_str(),
                r.members_after as i64,
                r.error,
                r.server.as_ref().map(serde_json::to_string).transpose()?
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The most recent runs, newest first.
    pub fn list_runs(&self, limit: usize) -> anyhow::Result<Vec<RunRecord>> {
        let mut st = self.conn.prepare(
            "SELECT id, kind, started_at, ended_at, outcome, invited, updated, removed,
                    groups_changed, directory_users, directory_groups, members_after, requests,
                    bytes_pushed, error, server_requests
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
                server: r
                    .get::<_, Option<String>>(15)?
                    .and_then(|j| serde_json::from_str(&j).ok()),
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_left_running_is_closed_as_interrupted_when_the_next_starts() {
        let s = Store::open_in_memory().unwrap();
        let dead = s.start_run("sync").unwrap();
        let mut r = RunRecord::new(dead, "sync");
        r.invited = 2000;
        r.requests = 1;
        s.record_progress(&r).unwrap();
        let next = s.start_run("sync").unwrap();
        let runs = s.list_runs(10).unwrap();
        assert_eq!(runs[0].id, next);
        assert_eq!(runs[0].outcome, RunOutcome::Running);
        assert_eq!(runs[1].outcome, RunOutcome::Interrupted);
        assert_eq!(runs[1].invited, 2000, "what was applied stays");
        assert_eq!(runs[1].error.as_deref(), Some(STALE_RUN_ERROR));
        assert!(runs[1].ended_at.is_some());
        assert_eq!(s.close_stale_runs().unwrap(), 1, "the new one, once asked");
    }

    #[test]
    fn a_panicked_run_is_failed_but_a_finished_one_is_left_alone() {
        let s = Store::open_in_memory().unwrap();
        let id = s.start_run("sync").unwrap();
        let mut r = RunRecord::new(id, "sync");
        r.outcome = RunOutcome::Synced;
        s.finish_run(&r).unwrap();
        assert!(!s.fail_unfinished_run(id, "internal error").unwrap());
        assert_eq!(s.list_runs(1).unwrap()[0].outcome, RunOutcome::Synced);
        let id = s.start_run("sync").unwrap();
        assert!(s.fail_unfinished_run(id, "internal error").unwrap());
        let run = &s.list_runs(1).unwrap()[0];
        assert_eq!(run.outcome, RunOutcome::Failed);
        assert_eq!(run.error.as_deref(), Some("internal error"));
        assert_eq!(RunOutcome::parse("interrupted"), RunOutcome::Interrupted);
    }
}
