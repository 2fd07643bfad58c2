//! What the service knows about its runs, shared by the run loop and the HTTP endpoints: the
//! health verdict (`/healthz`) and the Prometheus metrics (`/metrics`).

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Duration, Utc};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::engine::diff::{GroupAction, MemberAction};
use crate::store::{RunOutcome, RunRecord, Store};

use super::Finished;

/// Every outcome a finished run can have (each has its `runs_total` series from the start).
const OUTCOMES: [&str; 5] = ["synced", "unchanged", "failed", "refused", "interrupted"];
/// Every kind of request to the Bitwarden server counted in `server_requests_total`.
const REQUEST_KINDS: [&str; 6] = [
    "token",
    "members",
    "groups",
    "member_ids",
    "import",
    "member_api",
];
/// Every state of the fast lane (`fast_lane_state`): off, watching the change feed, no feed
/// (a full read every `sync.watch_seconds` × 10), fallen back to a full read (a cursor lost),
/// stopped by the guard (until a full sync succeeds), failing (the feed cannot be read).
pub const LANE_STATES: [&str; 6] = [
    "off",
    "watching",
    "no_feed",
    "fallen_back",
    "stopped_by_guard",
    "failing",
];
/// The buckets of the fast lane's latency histogram (seconds).
const LATENCY_BUCKETS: [f64; 10] = [
    5.0, 10.0, 30.0, 60.0, 90.0, 120.0, 300.0, 900.0, 3600.0, 86400.0,
];
/// Every kind of change counted in `changes_total`.
const CHANGE_KINDS: [&str; 9] = [
    "invite",
    "update",
    "remove",
    "group_create",
    "group_update",
    "revoke",
    "restore",
    "rename",
    "member_refused",
];

type Labels = Vec<(String, String)>;

/// The Prometheus metrics of the service.
struct Metrics {
    registry: Registry,
    last_success: Gauge<f64, AtomicU64>,
    last_run: Gauge<f64, AtomicU64>,
    last_duration: Gauge<f64, AtomicU64>,
    runs: Family<Labels, Counter>,
    members: Gauge,
    groups: Gauge,
    changes: Family<Labels, Counter>,
    refusals: Counter,
    server_requests: Family<Labels, Counter>,
    server_refusals: Counter,
    budget_wait: Counter<f64, AtomicU64>,
    /// The last run's groups: read before the plan, verified after the push, left pending.
    group_reads: Family<Labels, Gauge>,
    /// The fast lane: its state (1 for the current one), its looks, its latency.
    lane_state: Family<Labels, Gauge>,
    lane_looks: Counter,
    lane_latency: Histogram,
}

/// The fast lane's metrics: its state (off at start), its looks, its latency.
fn register_lane(registry: &mut Registry) -> (Family<Labels, Gauge>, Counter, Histogram) {
    let lane_state = Family::<Labels, Gauge>::default();
    let lane_looks = Counter::default();
    let lane_latency = Histogram::new(LATENCY_BUCKETS);
    registry.register(
        "directory_connector_fast_lane_state",
        "The fast lane's state: 1 for the current one (off, watching, no_feed, fallen_back, stopped_by_guard, failing)",
        lane_state.clone(),
    );
    registry.register(
        "directory_connector_fast_lane_looks",
        "Looks at the directory's change feed since the service started",
        lane_looks.clone(),
    );
    registry.register(
        "directory_connector_fast_lane_revoke_latency_seconds",
        "Seconds from a change in the directory (its timestamp, else when it was seen) to the revoke the server confirmed, per revoked member",
        lane_latency.clone(),
    );
    for (i, k) in LANE_STATES.iter().enumerate() {
        let _ = lane_state
            .get_or_create(&vec![("state".into(), (*k).into())])
            .set(i64::from(i == 0));
    }
    (lane_state, lane_looks, lane_latency)
}

impl Metrics {
    #[allow(
        clippy::too_many_lines,
        reason = "one registration per metric, in the order /metrics lists them; each is two lines of help"
    )]
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let last_success = Gauge::<f64, AtomicU64>::default();
        let last_run = Gauge::<f64, AtomicU64>::default();
        let last_duration = Gauge::<f64, AtomicU64>::default();
        let runs = Family::<Labels, Counter>::default();
        let members = Gauge::default();
        let groups = Gauge::default();
        let changes = Family::<Labels, Counter>::default();
        let refusals = Counter::default();
        let server_requests = Family::<Labels, Counter>::default();
        let server_refusals = Counter::default();
        let budget_wait = Counter::<f64, AtomicU64>::default();
        let group_reads = Family::<Labels, Gauge>::default();
        let (lane_state, lane_looks, lane_latency) = register_lane(&mut registry);
        registry.register(
            "directory_connector_server_requests",
            "Requests to the Bitwarden server since the service started, by kind",
            server_requests.clone(),
        );
        registry.register(
            "directory_connector_server_refusals",
            "Requests the Bitwarden server refused as too many (HTTP 429) since the service started",
            server_refusals.clone(),
        );
        registry.register(
            "directory_connector_request_budget_wait_seconds",
            "Time runs waited for the request budget since the service started",
            budget_wait.clone(),
        );
        registry.register(
            "directory_connector_last_run_groups",
            "The last run's groups: members read from the server before the plan (read), read back after the push (verified), sent and left to the reconcile (pending)",
            group_reads.clone(),
        );
        registry.register(
            "directory_connector_last_success_timestamp_seconds",
            "Unix time of the last run that synced or found nothing to change",
            last_success.clone(),
        );
        registry.register(
            "directory_connector_last_run_timestamp_seconds",
            "Unix time the last run ended",
            last_run.clone(),
        );
        registry.register(
            "directory_connector_last_run_duration_seconds",
            "How long the last run took",
            last_duration.clone(),
        );
        // counters get their `_total` suffix from the registry
        registry.register(
            "directory_connector_runs",
            "Runs by outcome since the service started",
            runs.clone(),
        );
        registry.register(
            "directory_connector_members",
            "Members the sync cache holds after the last run",
            members.clone(),
        );
        registry.register(
            "directory_connector_groups",
            "Groups the sync cache holds after the last run",
            groups.clone(),
        );
        registry.register(
            "directory_connector_changes",
            "Changes pushed by successful runs since the service started, by kind",
            changes.clone(),
        );
        registry.register(
            "directory_connector_guard_refusals",
            "Runs the mass-removal guard refused since the service started",
            refusals.clone(),
        );
        // every series from the start (at 0)
        for (family, label, values) in [
            (&runs, "outcome", &OUTCOMES[..]),
            (&changes, "kind", &CHANGE_KINDS[..]),
            (&server_requests, "kind", &REQUEST_KINDS[..]),
        ] {
            for v in values {
                let _ = family.get_or_create(&vec![(label.into(), (*v).into())]);
            }
        }
        for k in ["read", "verified", "pending"] {
            let _ = group_reads.get_or_create(&vec![("state".into(), k.into())]);
        }
        Metrics {
            registry,
            last_success,
            last_run,
            last_duration,
            runs,
            members,
            groups,
            changes,
            refusals,
            server_requests,
            server_refusals,
            budget_wait,
            group_reads,
            lane_state,
            lane_looks,
            lane_latency,
        }
    }
}

/// The health answer (`/healthz`), also the JSON body.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Health {
    /// `ok` or `unhealthy`.
    pub status: &'static str,
    pub last_outcome: Option<RunOutcome>,
    pub last_run: Option<String>,
    pub last_success: Option<String>,
    pub next_run: Option<String>,
    /// Why the service is unhealthy (the last run's error, or the age of the last success).
    pub error: Option<String>,
}

#[derive(Default)]
struct State {
    last_outcome: Option<RunOutcome>,
    last_run: Option<DateTime<Utc>>,
    last_success: Option<DateTime<Utc>>,
    last_error: Option<String>,
    next_run: Option<DateTime<Utc>>,
    period: Option<Duration>,
}

/// The service's state, shared by the run loop and the HTTP endpoints.
pub struct Status {
    state: Mutex<State>,
    metrics: Metrics,
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn is_success(o: RunOutcome) -> bool {
    matches!(o, RunOutcome::Synced | RunOutcome::Unchanged)
}

impl Status {
    /// A state that knows the last run and the last success from the run history (so the
    /// health check is right at once after a restart).
    /// A status with no history (the window's fast lane, whose metrics are not served).
    pub fn empty() -> Status {
        Status {
            state: Mutex::new(State::default()),
            metrics: Metrics::new(),
        }
    }

    pub fn from_history(store: &Store) -> anyhow::Result<Status> {
        let runs = store.list_runs(200)?;
        let mut state = State::default();
        if let Some(last) = runs.iter().find(|r| r.outcome != RunOutcome::Running) {
            state.last_outcome = Some(last.outcome);
            state.last_run = last.ended_at.as_deref().and_then(parse_time);
            state.last_error = last.error.clone();
        }
        state.last_success = runs
            .iter()
            .find(|r| is_success(r.outcome))
            .and_then(|r| r.ended_at.as_deref().and_then(parse_time));
        let metrics = Metrics::new();
        if let Some(t) = state.last_success {
            metrics.last_success.set(t.timestamp() as f64);
        }
        if let Some(t) = state.last_run {
            metrics.last_run.set(t.timestamp() as f64);
        }
        if let Ok((m, g)) = store.cache_counts() {
            metrics.members.set(m as i64);
            metrics.groups.set(g as i64);
        }
        Ok(Status {
            state: Mutex::new(state),
            metrics,
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // a panic elsewhere cannot leave this state half-written: keep serving it
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When the next run is due and the time between runs.
    pub fn set_schedule(&self, period: Duration, next: DateTime<Utc>) {
        let mut s = self.state();
        s.period = Some(period);
        s.next_run = Some(next);
    }

    /// Takes in a finished run.
    pub fn record(&self, f: &Finished, store: Option<&Store>) {
        let now = Utc::now();
        let r: &RunRecord = &f.record;
        {
            let mut s = self.state();
            s.last_outcome = Some(r.outcome);
            s.last_run = Some(now);
            s.last_error = r.error.clone();
            if is_success(r.outcome) {
                s.last_success = Some(now);
            }
        }
        let m = &self.metrics;
        m.last_run.set(now.timestamp() as f64);
        m.last_duration.set(f.duration.as_secs_f64());
        if is_success(r.outcome) {
            m.last_success.set(now.timestamp() as f64);
        }
        m.runs
            .get_or_create(&vec![("outcome".into(), r.outcome.as_str().into())])
            .inc();
        if r.outcome == RunOutcome::Refused {
            m.refusals.inc();
        }
        if let Some(server) = &r.server {
            let q = &server.requests;
            for (kind, n) in REQUEST_KINDS.into_iter().zip([
                q.token,
                q.members,
                q.groups,
                q.member_ids,
                q.import,
                q.member_api,
            ]) {
                m.server_requests
                    .get_or_create(&vec![("kind".into(), kind.into())])
                    .inc_by(n);
            }
            m.server_refusals.inc_by(q.refusals);
            count_lifecycle(&m.changes, server);
            m.budget_wait.inc_by(q.waited_ms as f64 / 1000.0);
            for (state, n) in [
                ("read", server.groups_read),
                ("verified", server.groups_verified),
                ("pending", server.groups_pending),
            ] {
                m.group_reads
                    .get_or_create(&vec![("state".into(), state.into())])
                    .set(n as i64);
            }
        }
        if let Some(report) = &f.report {
            let add = |kind: &str, n: usize| {
                m.changes
                    .get_or_create(&vec![("kind".into(), kind.into())])
                    .inc_by(n as u64);
            };
            let members = &report.plan.members;
            add(
                "invite",
                members
                    .iter()
                    .filter(|c| c.action == MemberAction::Invite)
                    .count(),
            );
            add(
                "update",
                members
                    .iter()
                    .filter(|c| c.action == MemberAction::Resend)
                    .count(),
            );
            add("remove", members.iter().filter(|c| c.is_removal()).count());
            let groups = &report.plan.groups;
            add(
                "group_create",
                groups
                    .iter()
                    .filter(|g| g.action == GroupAction::Create)
                    .count(),
            );
            add(
                "group_update",
                groups
                    .iter()
                    .filter(|g| g.action != GroupAction::Create)
                    .count(),
            );
        }
        if let Some(Ok((members, groups))) = store.map(Store::cache_counts) {
            m.members.set(members as i64);
            m.groups.set(groups as i64);
        }
    }

    /// The last success, if any.
    pub fn last_success(&self) -> Option<DateTime<Utc>> {
        self.state().last_success
    }

    /// The health verdict at `now`: healthy when the last run synced or was unchanged and the
    /// last success is not older than twice the interval plus 5 minutes.
    pub fn health(&self, now: DateTime<Utc>) -> Health {
        let s = self.state();
        let fmt = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339());
        let period = s.period.unwrap_or_else(|| Duration::minutes(5));
        let limit = period * 2 + Duration::minutes(5);
        let error = match (s.last_outcome, s.last_success) {
            (None, _) => Some("no run has finished yet".to_string()),
            (Some(o), _) if !is_success(o) => Some(
                s.last_error
                    .clone()
                    .unwrap_or_else(|| format!("the last run ended {}", o.as_str())),
            ),
            (_, None) => Some("no run has succeeded yet".to_string()),
            (_, Some(t)) if now - t > limit => Some(format!(
                "the last success ({}) is older than twice the interval plus 5 minutes ({} minutes)",
                t.to_rfc3339(),
                limit.num_minutes()
            )),
            _ => None,
        };
        Health {
            status: if error.is_none() { "ok" } else { "unhealthy" },
            last_outcome: s.last_outcome,
            last_run: fmt(s.last_run),
            last_success: fmt(s.last_success),
            next_run: fmt(s.next_run),
            error,
        }
    }

    /// The fast lane's state now (one of [`LANE_STATES`]).
    pub fn set_lane(&self, state: &str) {
        for k in LANE_STATES {
            self.metrics
                .lane_state
                .get_or_create(&vec![("state".into(), k.into())])
                .set(i64::from(k == state));
        }
    }

    /// One look at the change feed.
    pub fn lane_looked(&self) {
        self.metrics.lane_looks.inc();
    }

    /// `n` revokes the server confirmed `seconds` after the change that caused them.
    pub fn lane_latency(&self, seconds: f64, n: u64) {
        for _ in 0..n {
            self.metrics.lane_latency.observe(seconds);
        }
    }

    /// The metrics in the Prometheus (OpenMetrics) text format.
    pub fn metrics_text(&self) -> anyhow::Result<String> {
        let mut out = String::new();
        encode(&mut out, &self.metrics.registry)
            .map_err(|e| anyhow::anyhow!("encoding the metrics: {e}"))?;
        Ok(out)
    }
}

/// The member lifecycle as the server confirmed it (a failed run's too), in `changes_total`.
fn count_lifecycle(changes: &Family<Labels, Counter>, server: &crate::store::ServerUse) {
    for (kind, n) in [
        ("revoke", server.revoked),
        ("restore", server.restored),
        ("rename", server.renamed),
        ("member_refused", server.member_refusals),
    ] {
        changes
            .get_or_create(&vec![("kind".into(), kind.into())])
            .inc_by(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(outcome: RunOutcome, error: Option<&str>) -> Finished {
        let mut record = RunRecord::new(1, "sync");
        record.outcome = outcome;
        record.error = error.map(str::to_string);
        Finished {
            record,
            report: None,
            duration: std::time::Duration::from_millis(1500),
        }
    }

    #[test]
    fn health_follows_the_last_outcome_and_the_age_of_the_last_success() {
        let store = Store::open_in_memory().unwrap();
        let s = Status::from_history(&store).unwrap();
        let now = Utc::now();
        s.set_schedule(Duration::minutes(10), now + Duration::minutes(10));
        let h = s.health(now);
        assert_eq!(h.status, "unhealthy");
        assert_eq!(h.error.as_deref(), Some("no run has finished yet"));
        s.record(&finished(RunOutcome::Failed, Some("ldap down")), None);
        let h = s.health(Utc::now());
        assert_eq!(
            (h.status, h.error.as_deref()),
            ("unhealthy", Some("ldap down"))
        );
        s.record(&finished(RunOutcome::Unchanged, None), None);
        let h = s.health(Utc::now());
        assert_eq!(h.status, "ok", "{h:?}");
        assert!(h.last_success.is_some() && h.next_run.is_some());
        // 2 × 10 + 5 minutes later, the success is too old
        let h = s.health(Utc::now() + Duration::minutes(26));
        assert_eq!(h.status, "unhealthy");
        assert!(h.error.unwrap().contains("older than"));
        let h = s.health(Utc::now() + Duration::minutes(24));
        assert_eq!(h.status, "ok");
    }

    #[test]
    fn metrics_carry_every_name_and_count_outcomes() {
        let store = Store::open_in_memory().unwrap();
        let s = Status::from_history(&store).unwrap();
        s.record(&finished(RunOutcome::Refused, Some("sync refused")), None);
        s.record(&finished(RunOutcome::Failed, Some("x")), None);
        s.record(&finished(RunOutcome::Failed, Some("x")), None);
        let text = s.metrics_text().unwrap();
        for name in [
            "directory_connector_last_success_timestamp_seconds",
            "directory_connector_last_run_timestamp_seconds",
            "directory_connector_last_run_duration_seconds 1.5",
            "directory_connector_runs_total{outcome=\"failed\"} 2",
            "directory_connector_runs_total{outcome=\"refused\"} 1",
            "directory_connector_runs_total{outcome=\"synced\"} 0",
            "directory_connector_members",
            "directory_connector_groups",
            "directory_connector_changes_total{kind=\"group_create\"} 0",
            "directory_connector_guard_refusals_total 1",
        ] {
            assert!(text.contains(name), "{name} missing:\n{text}");
        }
    }
}
