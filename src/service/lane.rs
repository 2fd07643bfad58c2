//! The fast lane in the service: between the scheduled full syncs, a look at the directory's
//! change feed every `sync.watch_seconds` ([`crate::sync::watch`]). What must reach the
//! organization now (a leaver, a returner, a changed email or group; a joiner with
//! `sync.watch_joiners`) runs a sync at once, recorded as a `fast lane` run: it plans against
//! the organization read at that moment and passes the guards like every sync.
//!
//! * More leavers in one look than `sync.max_removals` stops the lane (an alert says so); it
//!   watches again after a full sync that is not refused.
//! * A lost cursor (a cookie refused, a DC restored) is said and answered with a full read.
//! * A directory without a feed is said once; a full read then runs every
//!   `sync.watch_seconds` × 10.
//! * The cursor is kept once what a look found is handled: after its sync finished (a sync
//!   the guard refused stops the lane; one cancelled, cut or failed leaves the changes to a
//!   later look, after a back-off that doubles from one period up to
//!   [`MAX_BACKOFF`], said once).
//! * The first look comes right after the first run; then one every period, or at once when
//!   the doorbell rings ([`doorbell`]: a persistent search where the LDAP server or domain
//!   controller offers one), at most one a second.
//!
//! Its state is in `/metrics` (`fast_lane_state`), and in the store (`fast_lane` meta) for the
//! window and `status`.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::connector::Connector;
use crate::store::RunOutcome;
use crate::sync::watch::Cursor;
use crate::sync::watch::{Found, Look};

use super::Finished;
use super::status::Status;

/// The longest wait after lane syncs that did not finish before the lane looks again.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// The store meta key of the lane's view.
pub const VIEW_KEY: &str = "fast_lane";

/// What the window and `status` show of the fast lane.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LaneView {
    /// One of [`super::status::LANE_STATES`].
    pub state: String,
    /// Why, in words (the feed in use, or why there is none).
    pub message: String,
    /// The last look (RFC 3339).
    pub last_look: Option<String>,
    /// The last change the feed reported (RFC 3339), and what it was.
    pub last_change: Option<String>,
    pub last_change_what: Option<String>,
}

/// The lane's view as the store has it (the service's, or the window's own lane).
pub fn view(conn: &Connector) -> Option<LaneView> {
    let raw = conn.store().ok()?.meta_get(VIEW_KEY).ok().flatten()?;
    serde_json::from_str(&raw).ok()
}

/// What the service loop does after a look.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Wait for the next look.
    Wait,
    /// Run a sync now, for this reason.
    SyncNow(String),
}

/// The lane's state between looks.
pub struct Lane {
    view: LaneView,
    /// Said once per reason: why there is no feed, and what the feed cannot see.
    said: Option<String>,
    said_blind: Option<String>,
    /// The cursor and the findings of the look whose sync runs now.
    pending: Option<(Option<Cursor>, Option<Found>)>,
    /// Without a feed: when the next full read is due.
    next_full: Option<Instant>,
    stopped: bool,
    /// Lane syncs in a row that did not finish, and when the lane may look again.
    failures: u32,
    retry_at: Option<Instant>,
}

impl Default for Lane {
    fn default() -> Self {
        Lane::new()
    }
}

impl Lane {
    pub fn new() -> Lane {
        Lane {
            view: LaneView {
                state: "off".into(),
                ..LaneView::default()
            },
            said: None,
            said_blind: None,
            pending: None,
            next_full: None,
            stopped: false,
            failures: 0,
            retry_at: None,
        }
    }

    /// The lane's sync did not finish (cancelled, cut, failed, or not started): its changes
    /// stay for a later look, after a back-off (said the first time in a row).
    pub fn sync_not_finished(&mut self, cfg: Option<&Config>, what: &str) {
        self.pending = None;
        self.failures = self.failures.saturating_add(1);
        let period = self.period(cfg).unwrap_or(Duration::from_secs(60));
        let wait = period
            .saturating_mul(1u32 << self.failures.min(16))
            .min(MAX_BACKOFF);
        self.retry_at = Some(Instant::now() + wait);
        let msg = format!(
            "its sync {what}; the same changes are looked at again in {} s",
            wait.as_secs()
        );
        if self.failures == 1 {
            super::say(&format!("fast lane: {msg}"));
        } else {
            tracing::warn!("fast lane: {msg}");
        }
    }

    /// How long until the next look: at once before the first, then a period; `None` when
    /// the lane is off.
    pub fn next_look_in(&self, cfg: Option<&Config>) -> Option<Duration> {
        let period = self.period(cfg)?;
        Some(if self.view.last_look.is_none() {
            Duration::ZERO
        } else {
            period
        })
    }

    /// The time between looks: `None` when the lane is off (`sync.watch_seconds = 0`, or
    /// stopped by the guard until a full sync).
    pub fn period(&self, cfg: Option<&Config>) -> Option<Duration> {
        let seconds = cfg?.sync.watch_seconds;
        (seconds > 0 && !self.stopped).then(|| Duration::from_secs(seconds))
    }

    fn set(&mut self, conn: &Connector, status: &Status, state: &str, message: String) {
        self.view.state = state.into();
        self.view.message = message;
        status.set_lane(state);
        self.publish(conn);
    }

    fn publish(&self, conn: &Connector) {
        let kept = serde_json::to_string(&self.view)
            .map_err(anyhow::Error::from)
            .and_then(|raw| conn.store()?.meta_set(VIEW_KEY, Some(&raw)));
        if let Err(e) = kept {
            tracing::warn!(
                "fast lane: keeping its state for the window and `history` failed (the lane \
                 goes on): {e:#}"
            );
        }
    }

    /// Stops the lane until a full sync that is not refused: said (with `hint` for the
    /// journal), in the state, and alerted where alerts go.
    async fn stop(
        &mut self,
        conn: &Connector,
        (cfg, status, alerts): (Option<&Config>, &Status, &mut super::alerts::Alerts),
        why: String,
        hint: &str,
    ) {
        super::say(&format!("fast lane stopped: {why}{hint}"));
        self.stopped = true;
        self.set(conn, status, "stopped_by_guard", why.clone());
        if let Some(cfg) = cfg {
            alerts.lane_stopped(conn, cfg, &why).await;
        }
    }

    /// The lane is off (`sync.watch_seconds = 0`): said in the metrics and the store.
    pub fn off(&mut self, conn: &Connector, status: &Status) {
        if self.view.state != "off" {
            self.set(conn, status, "off", "sync.watch_seconds is 0".into());
        }
    }

    /// One look at the change feed, and what to do about it.
    pub async fn tick(
        &mut self,
        conn: &Connector,
        cfg: &Config,
        status: &Status,
        alerts: &mut super::alerts::Alerts,
    ) -> Next {
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return Next::Wait;
        }
        status.lane_looked();
        let now = Utc::now();
        self.view.last_look = Some(now.to_rfc3339());
        let looked = match conn.watch().await {
            Ok(l) => l,
            Err(e) => {
                let msg = crate::logging::redact(&format!("{e:#}"));
                if self.view.state != "failing" {
                    super::say(&format!(
                        "fast lane: the change feed cannot be read ({msg}); the scheduled \
                         sync still runs"
                    ));
                }
                tracing::warn!("fast lane: {msg}");
                self.set(conn, status, "failing", msg);
                return Next::Wait;
            }
        };
        let period = self.period(Some(cfg)).unwrap_or(Duration::from_secs(60));
        let blind = looked.blind_spot();
        if let Some(b) = &blind
            && self.said_blind.as_deref() != Some(b.as_str())
        {
            super::say(&format!(
                "fast lane: {b}; a full read every {} s finds it",
                period.as_secs() * 10
            ));
            self.said_blind = Some(b.clone());
        }
        let next = self
            .handle(conn, cfg, status, alerts, looked, (period, now))
            .await;
        if next == Next::Wait && blind.is_some() && self.full_read_due(period) {
            return Next::SyncNow("a full read for what the change feed cannot see".into());
        }
        next
    }

    /// Without a feed, or for what the feed cannot see: whether the full read that stands in
    /// for it is due (every ten looks; the first after ten looks).
    fn full_read_due(&mut self, period: Duration) -> bool {
        let due = *self
            .next_full
            .get_or_insert_with(|| Instant::now() + period * 10);
        if Instant::now() >= due {
            self.next_full = Some(Instant::now() + period * 10);
            true
        } else {
            false
        }
    }

    /// What one look found, handled: the state, the cursor kept, a sync asked for.
    async fn handle(
        &mut self,
        conn: &Connector,
        cfg: &Config,
        status: &Status,
        alerts: &mut super::alerts::Alerts,
        looked: crate::sync::watch::Looked,
        (period, now): (Duration, DateTime<Utc>),
    ) -> Next {
        let keep = |c: &Option<Cursor>| keep_cursor(conn, c.as_ref());
        match looked.look {
            Look::Started => {
                keep(&looked.cursor);
                let msg = format!(
                    "watching the directory's change feed every {} s",
                    period.as_secs()
                );
                super::say(&format!("fast lane: {msg}"));
                self.set(conn, status, "watching", msg);
                Next::Wait
            }
            Look::Quiet { changes, joiners } => {
                keep(&looked.cursor);
                if changes > 0 {
                    self.view.last_change = Some(now.to_rfc3339());
                    self.view.last_change_what = Some(if joiners > 0 {
                        format!(
                            "{changes} changed entries, {joiners} joiner(s) waiting for the next \
                             full sync"
                        )
                    } else {
                        format!("{changes} changed entries, nothing for the organization")
                    });
                    tracing::info!(
                        "fast lane: {}",
                        self.view.last_change_what.as_deref().unwrap_or_default()
                    );
                }
                if self.view.state != "watching" {
                    let msg = format!(
                        "watching the directory's change feed every {} s",
                        period.as_secs()
                    );
                    self.set(conn, status, "watching", msg);
                } else {
                    self.publish(conn);
                }
                Next::Wait
            }
            Look::Reset(reason) => {
                super::say(&format!("fast lane: {reason}"));
                self.pending = Some((looked.cursor, None));
                self.set(conn, status, "fallen_back", reason.clone());
                Next::SyncNow(reason)
            }
            Look::Unavailable(why) => {
                if self.said.as_deref() != Some(why.as_str()) {
                    super::say(&format!(
                        "fast lane: {why}; a full read runs every {} s instead",
                        period.as_secs() * 10
                    ));
                    self.said = Some(why.clone());
                }
                self.set(conn, status, "no_feed", why);
                if self.full_read_due(period) {
                    Next::SyncNow("no change feed: the full read in its place".into())
                } else {
                    Next::Wait
                }
            }
            Look::Act(found) => {
                let what = found.summary();
                self.view.last_change = Some(found.since.to_rfc3339());
                self.view.last_change_what = Some(what.clone());
                let limit = cfg.sync.max_removals;
                // 0 switches the guard's count off, as for a sync
                if limit > 0 && found.leavers.len() as u64 > limit {
                    let why = format!(
                        "{} leavers in one look, more than the guard allows ({limit}); it waits \
                         for a full sync",
                        found.leavers.len()
                    );
                    let hint = " (sync.max_removals; run `directory-connector sync \
                                --allow-mass-removal` once if they are right)";
                    self.stop(conn, (Some(cfg), status, alerts), why, hint)
                        .await;
                    return Next::Wait;
                }
                super::say(&format!("fast lane: {what}: a sync now"));
                self.pending = Some((looked.cursor, Some(found)));
                self.publish(conn);
                Next::SyncNow(what)
            }
        }
    }

    /// After a run: the lane's sync keeps its cursor (only once it finished: a cancelled or
    /// failed one leaves the changes to the next look) and measures its latency; a guard's
    /// refusal stops the lane; a full sync that is not refused starts a stopped lane again.
    pub async fn after_run(
        &mut self,
        conn: &Connector,
        cfg: Option<&Config>,
        status: &Status,
        alerts: &mut super::alerts::Alerts,
        f: &Finished,
    ) {
        let refused = f.record.outcome == RunOutcome::Refused;
        let finished = matches!(f.record.outcome, RunOutcome::Synced | RunOutcome::Unchanged);
        if finished {
            // the lane's sync, or a full sync that covered what the lane waits to retry
            self.failures = 0;
            self.retry_at = None;
        }
        match self.pending.take() {
            Some((cursor, found)) => {
                if refused {
                    let why = format!(
                        "its sync (run {}) was refused by the mass-removal guard; it waits for a \
                         full sync",
                        f.record.id
                    );
                    self.stop(conn, (cfg, status, alerts), why, "").await;
                    return;
                }
                if !finished {
                    // cancelled, cut or failed: the changes are not handled yet; the cursor
                    // before them stays, so a later look finds them again
                    let what = format!(
                        "(run {}) did not finish ({})",
                        f.record.id,
                        f.record.outcome.as_str()
                    );
                    self.sync_not_finished(cfg, &what);
                    return;
                }
                keep_cursor(conn, cursor.as_ref());
                let revoked = f.record.server.as_ref().map_or(0, |s| s.revoked);
                if let Some(found) = found
                    && revoked > 0
                {
                    let since: DateTime<Utc> = found.since;
                    let seconds = (Utc::now() - since).num_milliseconds().max(0) as f64 / 1000.0;
                    status.lane_latency(seconds, revoked);
                    tracing::info!("fast lane: {revoked} revoked {seconds:.1} s after the change");
                }
                if self.view.state == "fallen_back" {
                    let msg = "watching the directory's change feed again after a full read";
                    super::say(&format!("fast lane: {msg}"));
                    self.set(conn, status, "watching", msg.into());
                }
            }
            None => {
                if self.stopped && !refused && f.report.is_some() {
                    self.stopped = false;
                    let msg = "watching again after a full sync";
                    super::say(&format!("fast lane: {msg}"));
                    self.set(conn, status, "watching", msg.into());
                }
            }
        }
    }
}

/// Keeps the cursor of a handled look; a failure is said (the next look starts from the one
/// kept before, and sees the same changes again).
fn keep_cursor(conn: &Connector, cursor: Option<&Cursor>) {
    if let Some(c) = cursor
        && let Err(e) = conn.keep_cursor(c)
    {
        tracing::warn!(
            "fast lane: keeping the change feed's cursor failed (the next look reads the same \
             changes again): {e:#}"
        );
    }
}

/// Waits for the next look: `period`, or the doorbell's ring, whichever comes first; a ring
/// waits out the second after the ring before it (a burst of changes is one look).
pub async fn until_look(period: Duration, bell: &tokio::sync::Notify) {
    tokio::select! {
        () = tokio::time::sleep(period) => {}
        () = bell.notified() => {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// The doorbell beside the service's loop: holds the directory's persistent search
/// ([`Connector::doorbell`]) and rings `bell` for each change, so that the lane looks at once.
/// Without one (another directory, the lane off, no cursor yet) it checks again later; a
/// server that refuses or ends the search is said once, and the looks every period go on.
pub async fn doorbell(
    data_dir: std::path::PathBuf,
    secrets: Option<std::sync::Arc<dyn crate::secrets::SecretStore>>,
    bell: std::sync::Arc<tokio::sync::Notify>,
    stop: super::StopHandle,
) {
    let conn = match secrets {
        Some(s) => Connector::with_store(&data_dir, s),
        None => Connector::open(&data_dir),
    };
    let conn = match conn {
        Ok(c) => c,
        Err(e) => {
            super::say(&format!(
                "fast lane: no persistent search: the data directory cannot be opened for it \
                 ({}); the looks every period go on",
                crate::logging::redact(&format!("{e:#}"))
            ));
            return;
        }
    };
    // a refusal is said once until a search is held again
    let mut said = false;
    let mut holding = false;
    loop {
        use crate::sync::watch::Doorbell;
        let ring = || bell.notify_one();
        let ended = tokio::select! {
            r = conn.doorbell(&ring) => r,
            () = stop.stopped() => return,
        };
        let wait = match ended {
            // another directory, or the lane off: the configuration may change
            Ok(Doorbell::Absent) => Duration::from_secs(60),
            // nothing to hold yet: look again soon (the lane's first look makes the cursor)
            Ok(Doorbell::NotYet) => Duration::from_secs(2),
            Ok(Doorbell::Ended(why)) => {
                tracing::info!("fast lane: the persistent search ended ({why}); holding it again");
                holding = true;
                said = false;
                Duration::from_secs(5)
            }
            Err(e) => {
                let msg = crate::logging::redact(&format!("{e:#}"));
                if said {
                    tracing::debug!("fast lane: no persistent search: {msg}");
                } else {
                    super::say(&format!(
                        "fast lane: no persistent search ({msg}); the looks every period go on"
                    ));
                    said = true;
                }
                if holding {
                    Duration::from_secs(30)
                } else {
                    Duration::from_secs(300)
                }
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.stopped() => return,
        }
    }
}
