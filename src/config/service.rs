//! The settings only `directory-connector service` reads: its schedule, the health/metrics
//! listener (`[service]`) and where alerts go (`[notify]`).

use serde::{Deserialize, Serialize};

/// `[service]`: how the long-running service schedules runs and what it serves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// A cron expression (5 fields, or 6 with seconds first); overrides
    /// `sync.interval_minutes` for the service.
    pub schedule: Option<String>,
    /// Up to this many seconds (random) are added to every wait, so that many connectors do
    /// not hit the server at the same second.
    pub jitter_seconds: u64,
    /// `address:port` for `/healthz` and `/metrics` (off when unset).
    pub metrics_listen: Option<String>,
}

/// How alert webhooks are shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// `{"event": …, "outcome": …, "counts": {…}, "error": …, "host": …}`
    #[default]
    Json,
    /// Slack incoming webhook: `{"text": …}`
    Slack,
    /// Microsoft Teams (Workflows / incoming webhook): a message with an Adaptive Card.
    Teams,
}

/// `[notify]`: alerts on failures, refusals, recoveries and stale syncs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    pub webhook_url: Option<String>,
    pub webhook_format: WebhookFormat,
    /// Alert when no sync has succeeded for this many minutes (0: off).
    pub stale_after_minutes: u64,
    /// `smtps://user@host:465` or `smtp://user@host:587?tls=starttls` (no password here).
    pub smtp_url: Option<String>,
    /// Only a reference (`env:NAME`, `file:PATH`) may live here; else the secret store.
    pub smtp_password: Option<String>,
    /// Sender address (default `directory-connector@<host name>`).
    pub email_from: Option<String>,
    pub email_to: Vec<String>,
}
