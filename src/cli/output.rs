//! What the CLI prints: tables for people, JSON for scripts, and a spinner on a terminal.
//! Every write to stdout is checked: the first failure (a closed pipe, a full disk) stops the
//! output and is kept for the caller to decide the exit code; nothing panics.

use std::cell::RefCell;
use std::io::{IsTerminal, Write};

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::json;

use crate::config::{KEYS, Problem};
use crate::connector::{SyncReport, TestReport};
use crate::engine::diff::{GroupAction, MemberAction};
use crate::progress::Progress;
use crate::store::RunRecord;

pub(super) struct Output {
    pub json: bool,
    /// The first failed write to stdout; later writes are skipped.
    write_error: RefCell<Option<std::io::Error>>,
}

/// A line to stdout through [`Output::write_line`].
macro_rules! outln {
    ($o:expr, $($t:tt)*) => {
        $o.write_line(format_args!($($t)*))
    };
}

/// A line to stderr; a closed stderr is ignored (there is nowhere left to say so).
macro_rules! errln {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stderr().lock(), $($t)*);
    }};
}
pub(crate) use errln;

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    t
}

/// Rows per table in a sync's report: a first sync of a large directory would print every
/// member otherwise (the `test` preview and `--json` list them all).
const SYNC_REPORT_ROWS: usize = 50;

impl Output {
    pub(super) fn new(json: bool) -> Output {
        Output {
            json,
            write_error: RefCell::new(None),
        }
    }

    /// Writes one line to stdout, unless an earlier write failed; a failure is kept.
    pub(super) fn write_line(&self, args: std::fmt::Arguments<'_>) {
        if self.write_error.borrow().is_some() {
            return;
        }
        let mut w = std::io::stdout().lock();
        if let Err(e) = writeln!(w, "{args}") {
            self.failed(e);
        }
    }

    fn failed(&self, e: std::io::Error) {
        let mut slot = self.write_error.borrow_mut();
        if slot.is_none() {
            *slot = Some(e);
        }
    }

    /// Flushes stdout and returns the first write that failed, if any.
    pub(super) fn finish(&self) -> Option<std::io::Error> {
        if self.write_error.borrow().is_none()
            && let Err(e) = std::io::stdout().lock().flush()
        {
            self.failed(e);
        }
        self.write_error.borrow_mut().take()
    }

    /// Whether progress may be drawn (a terminal, not JSON).
    pub(super) fn interactive(&self) -> bool {
        !self.json && std::io::stderr().is_terminal()
    }

    pub(super) fn line(&self, s: &str) {
        outln!(self, "{s}");
    }

    pub(super) fn json_value(&self, v: &serde_json::Value) {
        self.json_write(v);
    }

    /// Writes any serializable value as pretty JSON straight to stdout, without building an
    /// intermediate tree (the `test` report of a large directory is hundreds of MB as one).
    pub(super) fn json_write<T: serde::Serialize + ?Sized>(&self, v: &T) {
        if self.write_error.borrow().is_some() {
            return;
        }
        let stdout = std::io::stdout();
        let mut w = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
        let written = serde_json::to_writer_pretty(&mut w, v)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(w))
            .and_then(|()| w.flush());
        if let Err(e) = written {
            self.failed(e);
        }
    }

    pub(super) fn message(&self, title: &str, detail: &str) {
        if self.json {
            self.json_value(&json!({"success": true, "title": title, "message": detail}));
        } else if detail.is_empty() {
            outln!(self, "{title}");
        } else {
            outln!(self, "{title}\n{detail}");
        }
    }

    /// `test --explain`: the directory API requests, in order ("GET https://…"). `complete` is
    /// false when the read stopped at a refused request (the last one listed).
    pub(super) fn requests(&self, requests: &[String], complete: bool) {
        if self.json {
            let list: Vec<serde_json::Value> = requests
                .iter()
                .map(|r| {
                    let (method, url) = r.split_once(' ').unwrap_or(("", r));
                    json!({"method": method, "url": url})
                })
                .collect();
            self.json_value(&json!({"requests": list, "complete": complete}));
            return;
        }
        outln!(
            self,
            "A sync makes these {} request(s) to the directory{}:",
            requests.len(),
            if complete {
                ""
            } else {
                " (the read stopped at the last one: see the error)"
            }
        );
        for r in requests {
            outln!(self, "  {r}");
        }
    }

    #[allow(
        clippy::too_many_lines,
        reason = "the JSON and the text form of the test report side by side, so that both list the same things"
    )]
    pub(super) fn test_report(&self, r: &TestReport) {
        let n = &r.normalized;
        let users = n.users.as_deref().unwrap_or_default();
        let groups = n.groups.as_deref().unwrap_or_default();
        let by_id: std::collections::HashMap<&str, &str> = users
            .iter()
            .map(|u| {
                (
                    &*u.external_id,
                    u.email.as_deref().unwrap_or(&u.reference_id),
                )
            })
            .collect();
        if self.json {
            #[derive(serde::Serialize)]
            #[serde(rename_all = "camelCase")]
            struct UserJson<'a> {
                external_id: &'a str,
                reference_id: &'a str,
                email: &'a Option<String>,
            }
            #[derive(serde::Serialize)]
            #[serde(rename_all = "camelCase")]
            struct GroupJson<'a> {
                external_id: &'a str,
                reference_id: &'a str,
                name: &'a str,
                user_ids: &'a [crate::engine::Id],
            }
            /// Serializes the users matching a predicate, one by one.
            struct Part<'a>(
                &'a [crate::engine::NormUser],
                fn(&crate::engine::NormUser) -> bool,
            );
            impl serde::Serialize for Part<'_> {
                fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    s.collect_seq(self.0.iter().filter(|u| (self.1)(u)).map(|u| UserJson {
                        external_id: &u.external_id,
                        reference_id: &u.reference_id,
                        email: &u.email,
                    }))
                }
            }
            struct Groups<'a>(&'a [crate::engine::NormGroup]);
            impl serde::Serialize for Groups<'_> {
                fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    s.collect_seq(self.0.iter().map(|g| GroupJson {
                        external_id: &g.external_id,
                        reference_id: &g.reference_id,
                        name: &g.name,
                        user_ids: &g.members,
                    }))
                }
            }
            #[derive(serde::Serialize)]
            #[serde(rename_all = "camelCase")]
            struct TestJson<'a> {
                object: &'static str,
                enabled_users: Part<'a>,
                disabled_users: Part<'a>,
                deleted_users: Part<'a>,
                groups: Groups<'a>,
                skipped: &'a [crate::engine::Skipped],
                plan: &'a crate::engine::Plan,
                refused: &'a Option<String>,
                baseline_note: &'a Option<String>,
                drift: &'a Option<crate::engine::Drift>,
                fast_lane: &'a Option<String>,
            }
            self.json_write(&TestJson {
                object: "test",
                enabled_users: Part(users, |u| !u.deleted && !u.disabled),
                disabled_users: Part(users, |u| !u.deleted && u.disabled),
                deleted_users: Part(users, |u| u.deleted),
                groups: Groups(groups),
                skipped: &n.skipped,
                plan: &r.plan,
                refused: &r.refused,
                baseline_note: &r.baseline_note,
                drift: &r.drift,
                fast_lane: &r.fast_lane,
            });
            return;
        }
        let (enabled, disabled, deleted) = crate::engine::model::user_counts(users);
        if n.users.is_some() {
            let mut t = table(&["User", "Status", "Directory id"]);
            let mut sorted: Vec<_> = users.iter().collect();
            sorted.sort_by(|a, b| a.email.cmp(&b.email));
            for u in sorted {
                let status = u.status();
                t.add_row(vec![
                    u.email.clone().unwrap_or_else(|| "(no email)".into()),
                    status.to_string(),
                    u.reference_id.clone(),
                ]);
            }
            outln!(
                self,
                "Users: {} ({enabled} enabled, {disabled} disabled, {deleted} deleted)",
                users.len()
            );
            if !users.is_empty() {
                outln!(self, "{t}");
            }
        }
        if n.groups.is_some() {
            outln!(self, "Groups: {}", groups.len());
            if !groups.is_empty() {
                let mut t = table(&["Group", "Members"]);
                let mut sorted: Vec<_> = groups.iter().collect();
                sorted.sort_by_cached_key(|g| g.name.to_lowercase());
                for g in sorted {
                    let mut names: Vec<&str> = g
                        .members
                        .iter()
                        .map(|m| by_id.get(&**m).copied().unwrap_or(&**m))
                        .collect();
                    names.sort();
                    t.add_row(vec![
                        format!("{} ({})", g.name, g.members.len()),
                        names.join("\n"),
                    ]);
                }
                outln!(self, "{t}");
            }
        }
        if !n.skipped.is_empty() {
            outln!(self, "Skipped: {}", n.skipped.len());
            let mut t = table(&["Kind", "Directory id", "Reason"]);
            for s in &n.skipped {
                t.add_row(vec![
                    format!("{:?}", s.kind).to_lowercase(),
                    s.reference_id.clone(),
                    s.reason.clone(),
                ]);
            }
            outln!(self, "{t}");
        }
        if let Some(drift) = &r.drift {
            self.print_drift(drift);
        }
        outln!(self, "Baseline: {}.", r.plan.baseline.describe());
        if let Some(note) = &r.baseline_note {
            outln!(self, "({note}.)");
        }
        self.plan_summary(&r.plan, None);
        if let Some(reason) = &r.refused {
            outln!(self, "A sync now would be REFUSED: {reason}.");
        }
        if let Some(lane) = &r.fast_lane {
            outln!(self, "Fast lane: {lane}.");
        }
    }

    /// The drift report (the `drift` command).
    pub(super) fn drift_report(&self, d: &crate::engine::Drift) {
        if self.json {
            self.json_value(&json!({"success": true, "drift": d}));
            return;
        }
        self.print_drift(d);
    }

    fn print_drift(&self, d: &crate::engine::Drift) {
        outln!(self, "{}", d.summary());
        let rows = d.rows();
        if !rows.is_empty() {
            let mut t = table(&["Drift", "Name", "externalId", "Detail"]);
            for row in rows {
                t.add_row(row.to_vec());
            }
            outln!(self, "{t}");
        }
    }

    /// The plan's summary line and its member and group changes, at most `limit` rows per table
    /// (the rest counted).
    fn plan_summary(&self, p: &crate::engine::Plan, limit: Option<usize>) {
        outln!(self, "{}", p.summary());
        let limit = limit.unwrap_or(usize::MAX);
        let more = |n: usize, what: &str| {
            if n > limit {
                outln!(
                    self,
                    "... and {} more {what} not shown (`sync --json` lists every change, `test` \
                     previews them).",
                    n - limit
                );
            }
        };
        let changes: Vec<_> = p
            .members
            .iter()
            .filter(|m| m.action != MemberAction::Resend)
            .collect();
        if !changes.is_empty() {
            let mut t = table(&["Member", "Change"]);
            let n = changes.len();
            for m in changes.into_iter().take(limit) {
                t.add_row(vec![m.email.clone(), p.member_label(m).to_string()]);
            }
            outln!(self, "{t}");
            more(n, "member changes");
        }
        let gchanges: Vec<_> = p
            .groups
            .iter()
            .filter(|g| g.action != GroupAction::Resend)
            .collect();
        if !gchanges.is_empty() {
            let mut t = table(&["Group", "Change"]);
            let n = gchanges.len();
            for g in gchanges.into_iter().take(limit) {
                let what = match g.previous_member_count {
                    Some(prev) => format!("{} ({prev} → {} members)", g.label(), g.members.len()),
                    None => format!("{} ({} members)", g.label(), g.members.len()),
                };
                t.add_row(vec![g.name.clone(), what]);
            }
            outln!(self, "{t}");
            more(n, "group changes");
        }
        if !p.email_changes.is_empty() {
            let mut t = table(&["Directory email", "Baseline email", "externalId"]);
            for e in p.email_changes.iter().take(limit) {
                t.add_row(vec![
                    e.directory_email.clone(),
                    e.baseline_email.clone(),
                    e.external_id.clone(),
                ]);
            }
            outln!(self, "{t}");
            more(p.email_changes.len(), "email changes");
            outln!(
                self,
                "Warning: {} member(s) have a new email in the directory: {}",
                p.email_changes.len(),
                crate::engine::diff::EMAIL_CHANGE_ADVICE
            );
        }
        for line in &p.protected {
            outln!(self, "Protected (sync.protected_emails): {line}");
        }
        for line in &p.kept {
            outln!(self, "Kept: {line}");
        }
        for line in p.pending_removals.iter().take(limit) {
            outln!(self, "Revoked, waiting: {line}");
        }
        more(p.pending_removals.len(), "revoked members waiting");
        for line in &p.warnings {
            outln!(self, "Warning: {line}.");
        }
        if !p.stale_groups.is_empty() {
            outln!(
                self,
                "{} group(s) are no longer in the directory; the import API cannot delete groups, remove them in the Admin Console if needed.",
                p.stale_groups.len()
            );
        }
    }

    pub(super) fn sync_report(&self, r: &SyncReport) {
        if !self.json {
            self.server_use(&r.server);
        }
        if self.json {
            self.json_value(&json!({
                "success": true,
                "outcome": r.outcome,
                "invited": r.plan.invites(),
                "emailChanges": r.plan.email_changes.len(),
                // where the import revokes (Vaultwarden), its removals are revokes
                "removed": if r.plan.import_revokes { 0 } else { r.plan.removals() },
                "revoked": r.server.revoked,
                "restored": r.server.restored,
                "renamed": r.server.renamed,
                "groupsChanged": r.plan.groups.len(),
                "requests": r.requests,
                "bytesPushed": r.bytes_pushed,
                "server": r.server,
                "plan": r.plan,
            }));
            return;
        }
        match r.outcome {
            crate::store::RunOutcome::Unchanged => {
                outln!(
                    self,
                    "Sync complete: unchanged. Nothing was sent (baseline: {}).",
                    r.plan.baseline.describe()
                );
                if !r.plan.email_changes.is_empty()
                    || !r.plan.pending_removals.is_empty()
                    || !r.plan.protected.is_empty()
                    || !r.plan.kept.is_empty()
                    || !r.plan.warnings.is_empty()
                {
                    self.plan_summary(&r.plan, Some(SYNC_REPORT_ROWS));
                }
            }
            _ => {
                outln!(
                    self,
                    "Sync complete: {} request(s), {} bytes sent (baseline: {}).",
                    r.requests,
                    r.bytes_pushed,
                    r.plan.baseline.describe()
                );
                if r.plan.baseline != crate::engine::Baseline::Organization
                    && !r.plan.groups.is_empty()
                {
                    outln!(
                        self,
                        "Note: this server cannot be read back, so the groups were confirmed by \
                         its answer only. Vaultwarden drops groups unless ORG_GROUPS_ENABLED=true \
                         and never renames them; groups are sent again every \
                         sync.group_resend_hours."
                    );
                }
                self.plan_summary(&r.plan, Some(SYNC_REPORT_ROWS));
            }
        }
    }

    /// What a sync asked of the Bitwarden server, in one or two lines.
    fn server_use(&self, s: &crate::store::ServerUse) {
        outln!(self, "{}.", s.requests.describe());
        if s.revoked + s.restored + s.renamed + s.member_refusals > 0 {
            outln!(
                self,
                "Member API: {} revoked, {} restored, {} renamed, {} refused by the server.",
                s.revoked,
                s.restored,
                s.renamed,
                s.member_refusals
            );
        }
        if s.groups_verified + s.groups_pending > 0 {
            outln!(
                self,
                "Groups read back after the push: {}; left to the reconcile: {} (read by the next \
                 syncs first).",
                s.groups_verified,
                s.groups_pending
            );
        }
    }

    pub(super) fn history(
        &self,
        runs: &[RunRecord],
        alerts: &[crate::service::alerts::Event],
        lane: Option<&crate::service::lane::LaneView>,
    ) {
        if self.json {
            // each run carries the service's alert about it, if any
            let mut v = serde_json::to_value(runs).unwrap_or_default();
            if let Some(items) = v.as_array_mut() {
                for item in items {
                    let id = item["id"].as_i64();
                    if let Some(a) = alerts.iter().find(|a| a.run_id.is_some() && a.run_id == id) {
                        item["alert"] = serde_json::to_value(a).unwrap_or_default();
                    }
                }
            }
            self.json_value(&v);
            return;
        }
        if let Some(l) = lane.filter(|l| l.state != "off") {
            let change = match (&l.last_change, &l.last_change_what) {
                (Some(t), Some(w)) => format!(
                    "; last change {}: {w}",
                    t.chars().take(19).collect::<String>().replace('T', " ")
                ),
                _ => String::new(),
            };
            outln!(
                self,
                "Fast lane ({}): {}{change}",
                l.state.replace('_', " "),
                l.message
            );
        }
        if runs.is_empty() {
            outln!(self, "No runs yet.");
            return;
        }
        let mut t = table(&[
            "#", "Started", "Outcome", "Invited", "Revoked", "Restored", "Removed", "Groups",
            "Members", "Error",
        ]);
        for r in runs {
            t.add_row(vec![
                r.id.to_string(),
                r.started_at
                    .chars()
                    .take(19)
                    .collect::<String>()
                    .replace('T', " "),
                if r.kind == "fast lane" {
                    format!("{} (fast lane)", r.outcome.as_str())
                } else {
                    r.outcome.as_str().to_string()
                },
                r.invited.to_string(),
                r.server.as_ref().map_or(0, |s| s.revoked).to_string(),
                r.server.as_ref().map_or(0, |s| s.restored).to_string(),
                r.removed.to_string(),
                r.groups_changed.to_string(),
                r.members_after.to_string(),
                r.error
                    .clone()
                    .unwrap_or_default()
                    .chars()
                    .take(120)
                    .collect(),
            ]);
        }
        outln!(self, "{t}");
        if !alerts.is_empty() {
            outln!(self, "Service alerts (newest first):");
            for a in alerts.iter().take(runs.len().max(1)) {
                let run = a.run_id.map(|i| format!(" (run {i})")).unwrap_or_default();
                let time: String = a
                    .time
                    .chars()
                    .take(19)
                    .collect::<String>()
                    .replace('T', " ");
                let event = serde_json::to_value(a.event).unwrap_or_default();
                outln!(
                    self,
                    "  {time}  {}{run}: {}",
                    event.as_str().unwrap_or("?"),
                    a.message
                );
            }
        }
    }

    pub(super) fn problems(&self, problems: &[Problem]) {
        if self.json {
            self.json_value(&json!({"valid": problems.is_empty(), "problems": problems}));
            return;
        }
        if problems.is_empty() {
            outln!(self, "The configuration is valid.");
            return;
        }
        errln!("{} problem(s):", problems.len());
        for p in problems {
            errln!("  {}: {}", p.key, p.message);
        }
    }

    pub(super) fn keys(&self) {
        if self.json {
            let v: Vec<_> = KEYS
                .iter()
                .map(|(k, _, h)| json!({"key": k, "help": h}))
                .collect();
            self.json_value(&json!(v));
            return;
        }
        for (k, _, h) in KEYS {
            outln!(self, "{k:40} {h}");
        }
    }
}

/// A spinner on stderr for long stages; silent when not on a terminal.
pub(super) struct Spinner {
    bar: Option<indicatif::ProgressBar>,
    /// Set (non-zero) when a signal asked the run to stop.
    stop: Option<&'static std::sync::atomic::AtomicI32>,
}

impl Spinner {
    pub(super) fn new(enabled: bool) -> Spinner {
        let bar = enabled.then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.enable_steady_tick(std::time::Duration::from_millis(120));
            b
        });
        Spinner { bar, stop: None }
    }

    /// The run is asked to stop once `flag` is non-zero.
    pub(super) fn stopped_by(mut self, flag: &'static std::sync::atomic::AtomicI32) -> Spinner {
        self.stop = Some(flag);
        self
    }
    pub(super) fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Progress for Spinner {
    fn cancelled(&self) -> bool {
        self.stop
            .is_some_and(|f| f.load(std::sync::atomic::Ordering::SeqCst) != 0)
    }
    fn stage(&self, message: &str) {
        tracing::info!("{message}");
        if let Some(b) = &self.bar {
            b.set_message(message.to_string());
        }
    }
    fn count(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.set_message(format!(
                "{} ({n} entries)",
                b.message().split(" (").next().unwrap_or_default()
            ));
        }
    }
}
