//! The last operation's tables, as the window shows them (users, groups, skipped, plan, drift),
//! with which operation made them and when. Built from what a test or a sync read and planned,
//! and kept in the data directory (`last-run-tables.json.lz4`, compressed, each table bounded) so
//! that the window shows them again when it starts.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::engine::diff::MemberAction;
use crate::engine::{Drift, Normalized, Plan};

/// The file in the data directory.
pub const FILE: &str = "last-run-tables.json.lz4";
/// The rows of one table that the saved copy keeps (the window shows the rest until it closes).
pub const MAX_SAVED_ROWS: usize = 100_000;
/// The names the override dialog lists before "show all".
pub const NAMES_SHOWN: usize = 20;

/// The last operation's tables.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tables {
    /// What made them: "Test Now", "Sync Now", "Start Sync", "service run".
    pub operation: String,
    /// When (RFC 3339).
    pub at: String,
    pub users: Vec<Vec<String>>,
    pub groups: Vec<Vec<String>>,
    pub skipped: Vec<Vec<String>>,
    pub plan: Vec<Vec<String>>,
    pub drift: Vec<Vec<String>>,
    pub summary: String,
    pub baseline: String,
    /// Why the guard refused the plan (or would refuse it, for a test).
    pub refused: Option<String>,
    /// Who the refused plan removes (emails) and which groups lose members ("Staff: 2 out").
    pub removals: Vec<String>,
    pub groups_losing: Vec<String>,
    /// Rows were left out of the saved copy (a table had more than [`MAX_SAVED_ROWS`]).
    pub truncated: bool,
}

impl Tables {
    /// Tables made by `operation` now.
    pub fn new(operation: &str) -> Tables {
        Tables {
            operation: operation.to_string(),
            at: chrono::Utc::now().to_rfc3339(),
            ..Tables::default()
        }
    }

    /// Fills the users, groups and skipped tables from the directory as normalized, with each
    /// user's action in `plan`.
    pub fn set_directory(&mut self, n: &Normalized, plan: &Plan) {
        let users = n.users.as_deref().unwrap_or_default();
        let actions: HashMap<&str, &'static str> = plan
            .members
            .iter()
            .map(|m| (m.external_id.as_str(), plan.member_label(m)))
            .collect();
        let email_of: HashMap<&str, &str> = users
            .iter()
            .map(|u| {
                (
                    &*u.external_id,
                    u.email.as_deref().unwrap_or(u.reference_id.as_str()),
                )
            })
            .collect();
        self.users = users
            .iter()
            .map(|u| {
                vec![
                    u.email.clone().unwrap_or_default(),
                    u.status().to_string(),
                    actions
                        .get(&*u.external_id)
                        .copied()
                        .unwrap_or("-")
                        .to_string(),
                    u.external_id.to_string(),
                ]
            })
            .collect();
        self.groups = n
            .groups
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|g| {
                let mut members: Vec<&str> = g
                    .members
                    .iter()
                    .map(|m| email_of.get(&**m).copied().unwrap_or(m))
                    .collect();
                members.sort_unstable();
                vec![
                    g.name.clone(),
                    members.len().to_string(),
                    first_names(&members),
                ]
            })
            .collect();
        self.skipped = n
            .skipped
            .iter()
            .map(|s| {
                vec![
                    format!("{:?}", s.kind).to_lowercase(),
                    s.reference_id.clone(),
                    s.reason.clone(),
                ]
            })
            .collect();
    }

    /// Fills the plan table, and who it removes and which groups lose members.
    pub fn set_plan(&mut self, plan: &Plan) {
        self.plan = plan_rows(plan);
        self.removals = plan
            .members
            .iter()
            .filter(|m| matches!(m.action, MemberAction::Remove(_)))
            .map(|m| m.email.clone())
            .collect();
        self.groups_losing = plan
            .groups
            .iter()
            .filter(|g| g.removed_members > 0)
            .map(|g| format!("{}: {} out", g.name, g.removed_members))
            .collect();
    }

    /// Fills the drift table.
    pub fn set_drift(&mut self, drift: Option<&Drift>) {
        self.drift = drift.map_or_else(Vec::new, |d| {
            d.rows().into_iter().map(|r| r.to_vec()).collect()
        });
    }

    /// Saves a copy in the data directory: compressed, each table cut at [`MAX_SAVED_ROWS`].
    pub fn save(&self, data_dir: &Path) -> anyhow::Result<()> {
        let mut bounded = self.clone();
        for t in [
            &mut bounded.users,
            &mut bounded.groups,
            &mut bounded.skipped,
            &mut bounded.plan,
            &mut bounded.drift,
        ] {
            if t.len() > MAX_SAVED_ROWS {
                t.truncate(MAX_SAVED_ROWS);
                bounded.truncated = true;
            }
        }
        bounded.removals.truncate(MAX_SAVED_ROWS);
        let json = serde_json::to_vec(&bounded).context("encoding the last run's tables")?;
        crate::datadir::write_atomic(
            &data_dir.join(FILE),
            &lz4_flex::compress_prepend_size(&json),
        )
        .context("saving the last run's tables")
    }

    /// The saved copy, if there is one that reads (a damaged one is ignored, logged).
    pub fn load(data_dir: &Path) -> Option<Tables> {
        let bytes = std::fs::read(data_dir.join(FILE)).ok()?;
        let read = lz4_flex::decompress_size_prepended(&bytes)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .and_then(|json| Ok(serde_json::from_slice(&json)?));
        match read {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!("the last run's tables ({FILE}) could not be read: {e:#}");
                None
            }
        }
    }
}

/// Which groups of the baseline lose members when `plan`'s removals go through ("Staff: 2
/// out"): a member removed from the organization leaves every group it is in. For a plan the
/// member guard refused before the groups were planned.
pub fn groups_losing_in(base: &crate::engine::diff::Cache, plan: &Plan) -> Vec<String> {
    let removed: std::collections::HashSet<&str> = plan
        .members
        .iter()
        .filter(|m| matches!(m.action, MemberAction::Remove(_)))
        .map(|m| m.external_id.as_str())
        .collect();
    if removed.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<(String, usize)> = base
        .groups
        .values()
        .filter_map(|g| {
            let out = g
                .members
                .as_deref()
                .unwrap_or_default()
                .iter()
                .filter(|m| removed.contains(&***m))
                .count();
            (out > 0).then(|| (g.name.clone(), out))
        })
        .collect();
    out.sort();
    out.into_iter()
        .map(|(name, n)| format!("{name}: {n} out"))
        .collect()
}

/// The tables of a sync (`operation`: how it started: "Sync Now", "Start Sync", "service
/// run"), from what it read and planned; a refused sync (`refused`: the guard's message) shows
/// the plan it refused. `None` when the run ended before it had a plan.
pub fn of_sync(
    operation: &str,
    report: Option<&crate::sync::SyncReport>,
    read: crate::sync::SyncRead,
    refused: Option<String>,
) -> Option<Tables> {
    let plan = report.map(|r| &r.plan).or(read.refused_plan.as_ref())?;
    let mut t = Tables::new(operation);
    if let Some(n) = &read.normalized {
        t.set_directory(n, plan);
        let users = n.users.as_deref().unwrap_or_default();
        let (enabled, disabled, deleted) = crate::engine::model::user_counts(users);
        t.summary = format!(
            "{}: {} users ({enabled} enabled, {disabled} disabled, {deleted} deleted), {} groups, {} skipped. ",
            operation,
            users.len(),
            t.groups.len(),
            t.skipped.len(),
        );
    }
    t.set_plan(plan);
    if t.groups_losing.is_empty()
        && let Some(losing) = read.groups_losing
    {
        t.groups_losing = losing;
    }
    t.set_drift(read.drift.as_ref());
    t.summary.push_str(&match report {
        Some(r) if r.outcome == crate::store::RunOutcome::Unchanged => {
            "Nothing to change, nothing was sent.".to_string()
        }
        Some(r) => format!(
            "Synced. {}. {} request(s), {} bytes sent.",
            plan.summary(),
            r.requests,
            r.bytes_pushed
        ),
        None => format!(
            "Sync refused, nothing was sent. The refused {}.",
            plan.summary().replacen("Plan", "plan", 1)
        ),
    });
    t.baseline = format!("Baseline: {}.", plan.baseline.describe());
    if let Some(d) = &read.drift {
        t.baseline.push_str(&format!(" {}.", d.summary()));
    }
    t.refused = refused;
    Some(t)
}

/// The first [`NAMES_SHOWN`] names, then how many more.
pub fn first_names(names: &[&str]) -> String {
    let shown = names
        .iter()
        .take(NAMES_SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    match names.len() > NAMES_SHOWN {
        true => format!("{shown} ... and {} more", names.len() - NAMES_SHOWN),
        false => shown,
    }
}

/// The plan as (action, member or group, detail) rows.
pub fn plan_rows(plan: &Plan) -> Vec<Vec<String>> {
    let mut cells: Vec<Vec<String>> = plan
        .members
        .iter()
        .map(|m| {
            vec![
                plan.member_label(m).to_string(),
                m.email.clone(),
                m.external_id.clone(),
            ]
        })
        .collect();
    cells.extend(plan.email_changes.iter().map(|e| {
        vec![
            "email change (not sent)".to_string(),
            e.directory_email.clone(),
            format!("the organization has {}", e.baseline_email),
        ]
    }));
    cells.extend(plan.kept.iter().map(|k| {
        let (email, why) = k.split_once(": ").unwrap_or((k.as_str(), ""));
        vec![
            "kept (not removed)".to_string(),
            email.to_string(),
            why.to_string(),
        ]
    }));
    cells.extend(plan.groups.iter().map(|g| {
        vec![
            format!("group: {}", g.label()),
            g.name.clone(),
            format!("{} members", g.members.len()),
        ]
    }));
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_copy_reads_back_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Tables::new("Sync Now");
        t.users = (0..MAX_SAVED_ROWS + 5)
            .map(|i| vec![format!("u{i}@example.com")])
            .collect();
        t.summary = "Sync synced.".into();
        t.save(dir.path()).unwrap();
        let back = Tables::load(dir.path()).unwrap();
        assert_eq!(back.users.len(), MAX_SAVED_ROWS);
        assert!(back.truncated);
        assert_eq!(back.operation, "Sync Now");
        assert_eq!(back.summary, "Sync synced.");
        std::fs::write(dir.path().join(FILE), b"damaged").unwrap();
        assert_eq!(Tables::load(dir.path()), None);
    }

    #[test]
    fn first_names_says_how_many_more() {
        let names: Vec<String> = (0..25).map(|i| format!("n{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        assert!(first_names(&refs).ends_with("n19 ... and 5 more"));
        assert_eq!(first_names(&refs[..2]), "n0, n1");
    }
}
