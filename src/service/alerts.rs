//! Alerts of the service: a webhook (`notify.webhook_url`, shaped by `notify.webhook_format`)
//! and email (`notify.smtp_url`, `notify.email_to`) on a failure, a guard refusal, the recovery
//! after one (judged from the run history, so it also fires when the first good run follows a
//! restart) and a stale sync (no success for `notify.stale_after_minutes`).
//!
//! One alert per change of state: a run that fails like the one before it is not announced
//! again. Deliveries are retried a bounded number of times; a failed delivery is logged and
//! never fails the sync. The last alerts are kept in the database (meta `service.alerts`) for
//! `history` and the window's banner.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{Config, WebhookFormat};
use crate::connector::Connector;
use crate::store::{RunOutcome, RunRecord, Store};

use super::{Finished, Status};

/// Attempts per delivery (webhook or email).
const ATTEMPTS: u32 = 3;
/// The meta key under which the last alerts are kept.
pub const ALERTS_META: &str = "service.alerts";
/// How many alerts are kept.
const KEPT: usize = 20;

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Failure,
    Refused,
    Recovery,
    Stale,
    /// The fast lane stopped (more leavers than the guard allows): it waits for a full sync.
    #[serde(rename = "lane_stopped")]
    LaneStopped,
}

impl EventKind {
    fn title(self) -> &'static str {
        match self {
            EventKind::Failure => "sync failed",
            EventKind::Refused => "sync refused by the mass-removal guard",
            EventKind::Recovery => "sync recovered",
            EventKind::Stale => "no successful sync",
            EventKind::LaneStopped => "fast lane stopped",
        }
    }
}

/// One alert, as sent and as kept.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub event: EventKind,
    pub time: String,
    pub host: String,
    /// The run's outcome (`failed`, `refused`, `synced`, …).
    pub outcome: Option<String>,
    pub run_id: Option<i64>,
    pub counts: Counts,
    pub error: Option<String>,
    /// One line for people.
    pub message: String,
}

/// The counts of the run an alert is about.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Counts {
    pub invited: u64,
    pub removed: u64,
    pub groups_changed: u64,
    pub directory_users: u64,
    pub directory_groups: u64,
    pub members_after: u64,
}

fn host() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

fn counted(o: RunOutcome) -> bool {
    !matches!(o, RunOutcome::Running | RunOutcome::Interrupted)
}

/// The alert a finished run calls for, given the runs before it (newest first; interrupted runs
/// are skipped, they say nothing about the directory or the server).
pub fn event_for(this: &RunRecord, earlier: &[RunRecord]) -> Option<EventKind> {
    let previous = earlier
        .iter()
        .find(|r| r.id < this.id && counted(r.outcome))
        .map(|r| r.outcome);
    match this.outcome {
        RunOutcome::Failed if previous != Some(RunOutcome::Failed) => Some(EventKind::Failure),
        RunOutcome::Refused if previous != Some(RunOutcome::Refused) => Some(EventKind::Refused),
        RunOutcome::Synced | RunOutcome::Unchanged
            if matches!(previous, Some(RunOutcome::Failed | RunOutcome::Refused)) =>
        {
            Some(EventKind::Recovery)
        }
        _ => None,
    }
}

/// The event for a run.
pub fn run_event(kind: EventKind, r: &RunRecord) -> Event {
    let host = host();
    let detail = match kind {
        EventKind::Refused => format!(
            "{}. The next runs keep refusing: stop the service, run `directory-connector sync \
             --allow-mass-removal` once if the removals are intended, and start it again",
            r.error.as_deref().unwrap_or("refused")
        ),
        EventKind::Recovery => format!(
            "run {} {}: {} invited, {} removed, {} group(s) changed",
            r.id,
            r.outcome.as_str(),
            r.invited,
            r.removed,
            r.groups_changed
        ),
        _ => r.error.clone().unwrap_or_else(|| "no detail".into()),
    };
    Event {
        event: kind,
        time: Utc::now().to_rfc3339(),
        message: format!("Directory Connector on {host}: {}: {detail}", kind.title()),
        host,
        outcome: Some(r.outcome.as_str().to_string()),
        run_id: Some(r.id),
        counts: Counts {
            invited: r.invited,
            removed: r.removed,
            groups_changed: r.groups_changed,
            directory_users: r.directory_users,
            directory_groups: r.directory_groups,
            members_after: r.members_after,
        },
        error: r.error.clone(),
    }
}

/// The webhook body in the configured format.
pub fn webhook_body(format: WebhookFormat, e: &Event) -> serde_json::Value {
    match format {
        WebhookFormat::Json => serde_json::to_value(e).unwrap_or_default(),
        WebhookFormat::Slack => serde_json::json!({ "text": e.message }),
        WebhookFormat::Teams => serde_json::json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        {"type": "TextBlock", "weight": "Bolder", "size": "Medium",
                         "text": format!("Directory Connector: {}", e.event.title())},
                        {"type": "TextBlock", "wrap": true, "text": e.message},
                        {"type": "FactSet", "facts": [
                            {"title": "Host", "value": e.host},
                            {"title": "Outcome", "value": e.outcome.clone().unwrap_or_default()},
                            {"title": "Invited", "value": e.counts.invited.to_string()},
                            {"title": "Removed", "value": e.counts.removed.to_string()},
                            {"title": "Groups changed", "value": e.counts.groups_changed.to_string()},
                        ]},
                    ],
                },
            }],
        }),
    }
}

/// The pause before retry `attempt` (1-based): 1 s, 2 s, … (`DIRECTORY_CONNECTOR_RETRY_BASE_MS`
/// sets the base, as for the Bitwarden client).
fn backoff(attempt: u32) -> Duration {
    let base = std::env::var("DIRECTORY_CONNECTOR_RETRY_BASE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1000);
    Duration::from_millis(base.saturating_mul(1 << attempt.min(6)))
}

/// POSTs the event to the webhook, retrying network errors, 429 and 5xx.
pub async fn send_webhook(url: &str, format: WebhookFormat, e: &Event) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .user_agent(format!("directory-connector/{}", crate::VERSION))
        .build()
        .context("setting up the HTTP client for the webhook")?;
    let body = webhook_body(format, e);
    // the URL may hold a token (Slack, Teams): only its host is ever shown
    let shown = url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "the webhook".into());
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(backoff(attempt - 1)).await;
        }
        match client.post(url).json(&body).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => {
                last = format!("{shown} answered {}", r.status());
                let s = r.status();
                if !(s.is_server_error() || s == reqwest::StatusCode::TOO_MANY_REQUESTS) {
                    break;
                }
            }
            Err(err) => last = format!("{shown}: {}", err.without_url()),
        }
    }
    anyhow::bail!("the alert webhook failed: {last}")
}

/// Checks `notify.smtp_url` and turns it into the form lettre reads (`tls=starttls` is
/// lettre's `tls=required`).
pub fn parse_smtp_url(raw: &str) -> Result<String, String> {
    let u = url::Url::parse(raw.trim()).map_err(|e| {
        format!(
            "`{raw}` is not a URL ({e}); e.g. smtps://user@mail.example.com:465 or \
             smtp://user@mail.example.com:587?tls=starttls"
        )
    })?;
    if !matches!(u.scheme(), "smtp" | "smtps") {
        return Err(format!("`{raw}` must start with smtp:// or smtps://"));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{raw}` has no host"));
    }
    if u.password().is_some() {
        return Err(
            "the password does not belong in notify.smtp_url: set notify.smtp_password (secret \
             store, or env:NAME / file:PATH)"
                .into(),
        );
    }
    let mut out = u.clone();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "tls" && v == "starttls" {
                "required".to_string()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    if pairs.is_empty() {
        out.set_query(None);
    } else {
        out.query_pairs_mut().clear().extend_pairs(pairs);
    }
    Ok(out.to_string())
}

/// Sends the event by email to `notify.email_to`.
pub async fn send_email(cfg: &Config, password: Option<String>, e: &Event) -> anyhow::Result<()> {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let raw = cfg
        .notify
        .smtp_url
        .as_deref()
        .context("notify.smtp_url is not set")?;
    let url = parse_smtp_url(raw).map_err(crate::errors::Failure::Config)?;
    let user = url::Url::parse(&url)
        .map(|u| u.username().to_string())
        .unwrap_or_default();
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url)
        .with_context(|| format!("notify.smtp_url `{raw}`"))?
        .timeout(Some(Duration::from_secs(30)));
    if let Some(pw) = password {
        if url.starts_with("smtp://") && !url.contains("tls=required") {
            return Err(crate::errors::Failure::Config(
                "notify.smtp_password is set but notify.smtp_url has no TLS: use smtps://… or \
                 add ?tls=starttls, so the password is never sent in the clear"
                    .into(),
            )
            .into());
        }
        builder = builder.credentials(Credentials::new(user, pw));
    }
    let mailer = builder.build();
    let from = cfg
        .notify
        .email_from
        .clone()
        .unwrap_or_else(|| format!("directory-connector@{}", host()));
    let mut msg = Message::builder()
        .from(
            from.parse()
                .with_context(|| format!("notify.email_from `{from}` is not an address"))?,
        )
        .subject(format!(
            "[Directory Connector] {} on {}",
            e.event.title(),
            e.host
        ))
        .header(ContentType::TEXT_PLAIN);
    for to in &cfg.notify.email_to {
        msg = msg.to(to
            .parse()
            .with_context(|| format!("notify.email_to `{to}` is not an address"))?);
    }
    let body = format!(
        "{}\n\nHost: {}\nTime: {}\nOutcome: {}\nRun: {}\nInvited: {}\nRemoved: {}\nGroups \
         changed: {}\nDirectory users: {}\nDirectory groups: {}\nMembers after: {}\n{}",
        e.message,
        e.host,
        e.time,
        e.outcome.as_deref().unwrap_or("-"),
        e.run_id.map_or("-".into(), |i| i.to_string()),
        e.counts.invited,
        e.counts.removed,
        e.counts.groups_changed,
        e.counts.directory_users,
        e.counts.directory_groups,
        e.counts.members_after,
        e.error
            .as_deref()
            .map(|x| format!("\nError:\n{x}\n"))
            .unwrap_or_default()
    );
    let msg = msg.body(body).context("building the alert email")?;
    let mut last = None;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(backoff(attempt - 1)).await;
        }
        match mailer.send(msg.clone()).await {
            Ok(_) => return Ok(()),
            Err(err) => {
                let permanent = err.is_permanent();
                last = Some(err);
                if permanent {
                    break;
                }
            }
        }
    }
    match last {
        Some(err) => Err(anyhow::Error::new(err).context("the alert email could not be sent")),
        None => Ok(()),
    }
}

/// The alerts kept in the database, newest first.
pub fn recent(store: &Store) -> Vec<Event> {
    store
        .meta_get(ALERTS_META)
        .ok()
        .flatten()
        .and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or_default()
}

/// Keeps an alert in the database (the last 20).
pub fn keep(store: &Store, e: &Event) -> anyhow::Result<()> {
    let mut all = recent(store);
    all.insert(0, e.clone());
    all.truncate(KEPT);
    store.meta_set(ALERTS_META, Some(&serde_json::to_string(&all)?))
}

/// The alert to show in the window: the newest kept one, unless it is a recovery (then all is
/// well again). One line, with its time.
pub fn banner(store: &Store) -> Option<String> {
    let e = recent(store).into_iter().next()?;
    if e.event == EventKind::Recovery {
        return None;
    }
    let when = DateTime::parse_from_rfc3339(&e.time)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or(e.time.clone());
    let line = e.message.lines().next().unwrap_or_default().to_string();
    Some(format!("Service alert ({when}): {line}"))
}

/// The alerting state of a running service.
pub struct Alerts {
    started: DateTime<Utc>,
    /// The last success a stale alert was sent for (`None`: no success ever).
    stale_sent: Option<Option<DateTime<Utc>>>,
}

impl Alerts {
    pub fn new(started: DateTime<Utc>) -> Alerts {
        Alerts {
            started,
            stale_sent: None,
        }
    }

    /// Sends the alert a finished run calls for, if any.
    pub async fn after_run(&mut self, conn: &Connector, cfg: &Config, f: &Finished) {
        let Ok(store) = conn.store() else { return };
        let earlier = store.list_runs(50).unwrap_or_default();
        if let Some(kind) = event_for(&f.record, &earlier) {
            if kind == EventKind::Recovery {
                self.stale_sent = None;
            }
            deliver(conn, cfg, &store, &run_event(kind, &f.record)).await;
        }
    }

    /// Says that the fast lane stopped, and why (once per stop: the caller stops it).
    pub async fn lane_stopped(&mut self, conn: &Connector, cfg: &Config, why: &str) {
        let host = host();
        let e = Event {
            event: EventKind::LaneStopped,
            time: Utc::now().to_rfc3339(),
            message: format!("Directory Connector on {host}: the fast lane stopped: {why}"),
            host,
            outcome: None,
            run_id: None,
            counts: Counts::default(),
            error: Some(why.to_string()),
        };
        if let Ok(store) = conn.store() {
            deliver(conn, cfg, &store, &e).await;
        }
    }

    /// Sends a stale alert once when no sync has succeeded for `notify.stale_after_minutes`
    /// (counted from the service's start when none ever did).
    pub async fn check_stale(&mut self, conn: &Connector, cfg: &Config, status: &Status) {
        let minutes = cfg.notify.stale_after_minutes;
        if minutes == 0 {
            return;
        }
        let last = status.last_success();
        let now = Utc::now();
        if !stale_due(last, self.started, now, minutes, self.stale_sent) {
            return;
        }
        self.stale_sent = Some(last);
        let host = host();
        let message = match last {
            Some(t) => format!(
                "Directory Connector on {host}: no successful sync since {} (more than {minutes} \
                 minutes)",
                t.to_rfc3339()
            ),
            None => format!(
                "Directory Connector on {host}: no successful sync since the service started \
                 {minutes} minutes ago"
            ),
        };
        let e = Event {
            event: EventKind::Stale,
            time: now.to_rfc3339(),
            host,
            outcome: None,
            run_id: None,
            counts: Counts::default(),
            error: None,
            message,
        };
        if let Ok(store) = conn.store() {
            deliver(conn, cfg, &store, &e).await;
        }
    }
}

/// Whether a stale alert is due: no success for `minutes` (since the service started when there
/// was none), and none was sent yet for this last success.
fn stale_due(
    last: Option<DateTime<Utc>>,
    started: DateTime<Utc>,
    now: DateTime<Utc>,
    minutes: u64,
    sent: Option<Option<DateTime<Utc>>>,
) -> bool {
    let since = last.unwrap_or(started);
    now - since >= chrono::Duration::minutes(minutes as i64) && sent != Some(last)
}

/// Keeps the event and sends it wherever alerts go; failures are logged only.
async fn deliver(conn: &Connector, cfg: &Config, store: &Store, e: &Event) {
    tracing::warn!("alert: {}", e.message);
    if let Err(err) = keep(store, e) {
        tracing::warn!("keeping the alert in the database failed: {err:#}");
    }
    if let Some(url) = &cfg.notify.webhook_url
        && let Err(err) = send_webhook(url, cfg.notify.webhook_format, e).await
    {
        tracing::error!("{err:#} (the sync itself is not affected)");
    }
    if cfg.notify.smtp_url.is_some() && !cfg.notify.email_to.is_empty() {
        let password = crate::secrets::resolve(
            conn.secrets.as_ref(),
            "notify.smtp_password",
            cfg.notify.smtp_password.as_deref(),
        );
        let result = match password {
            Ok(pw) => send_email(cfg, pw, e).await,
            Err(err) => Err(err.context("reading notify.smtp_password")),
        };
        if let Err(err) = result {
            let msg = crate::logging::redact(&format!("{err:#}"));
            tracing::error!("{msg} (the sync itself is not affected)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: i64, outcome: RunOutcome) -> RunRecord {
        let mut r = RunRecord::new(id, "sync");
        r.outcome = outcome;
        r
    }

    #[test]
    fn one_alert_per_change_of_state_judged_from_history() {
        use RunOutcome::*;
        let history = |v: &[(i64, RunOutcome)]| -> Vec<RunRecord> {
            v.iter().rev().map(|(i, o)| run(*i, *o)).collect()
        };
        // the first failure alerts, the same failure again does not
        assert_eq!(
            event_for(&run(2, Failed), &history(&[(1, Synced), (2, Failed)])),
            Some(EventKind::Failure)
        );
        assert_eq!(
            event_for(
                &run(3, Failed),
                &history(&[(1, Synced), (2, Failed), (3, Failed)])
            ),
            None
        );
        // recovery, also across an interrupted run (a restart)
        assert_eq!(
            event_for(
                &run(4, Unchanged),
                &history(&[(2, Failed), (3, Interrupted), (4, Unchanged)])
            ),
            Some(EventKind::Recovery)
        );
        assert_eq!(
            event_for(&run(5, Synced), &history(&[(4, Unchanged), (5, Synced)])),
            None
        );
        assert_eq!(
            event_for(&run(6, Refused), &history(&[(5, Failed), (6, Refused)])),
            Some(EventKind::Refused)
        );
        assert_eq!(event_for(&run(1, Failed), &[]), Some(EventKind::Failure));
        assert_eq!(event_for(&run(1, Interrupted), &[]), None);
    }

    #[test]
    fn a_stale_alert_is_sent_once_per_last_success() {
        let t0 = Utc::now();
        let m = chrono::Duration::minutes;
        // never a success: counted from the start
        assert!(!stale_due(None, t0, t0 + m(59), 60, None));
        assert!(stale_due(None, t0, t0 + m(60), 60, None));
        assert!(
            !stale_due(None, t0, t0 + m(90), 60, Some(None)),
            "sent already"
        );
        // a success long ago
        let last = Some(t0 - m(120));
        assert!(stale_due(last, t0, t0, 60, Some(None)));
        assert!(!stale_due(last, t0, t0, 60, Some(last)));
        // a recent success
        assert!(!stale_due(Some(t0 - m(10)), t0, t0, 60, None));
    }

    #[test]
    fn smtp_urls() {
        assert_eq!(
            parse_smtp_url("smtp://u@mail.example.com:587?tls=starttls").unwrap(),
            "smtp://u@mail.example.com:587?tls=required"
        );
        assert_eq!(
            parse_smtp_url("smtps://u@mail.example.com:465").unwrap(),
            "smtps://u@mail.example.com:465"
        );
        assert!(
            parse_smtp_url("smtp://u:pw@h")
                .unwrap_err()
                .contains("smtp_password")
        );
        assert!(parse_smtp_url("http://h").unwrap_err().contains("smtp://"));
    }

    #[test]
    fn webhook_bodies_carry_the_message() {
        let mut r = run(7, RunOutcome::Failed);
        r.error = Some("reading the directory: connection refused".into());
        let e = run_event(EventKind::Failure, &r);
        let j = webhook_body(WebhookFormat::Json, &e);
        assert_eq!(j["event"], "failure");
        assert_eq!(j["outcome"], "failed");
        assert_eq!(j["run_id"], 7);
        assert!(j["host"].as_str().is_some_and(|h| !h.is_empty()));
        let s = webhook_body(WebhookFormat::Slack, &e);
        assert!(s["text"].as_str().unwrap().contains("connection refused"));
        let t = webhook_body(WebhookFormat::Teams, &e);
        assert_eq!(
            t["attachments"][0]["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert!(t.to_string().contains("connection refused"));
    }
}
