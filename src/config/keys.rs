//! Every key `config set` and `config get` accept, with its type and a line of help (also the
//! window's Settings form and `config keys`). Whole-number keys carry their allowed range, so
//! `config set`, `config validate` and a sync all refuse the same values with the same message.

use super::DirectoryType;
use crate::errors::config_err;

/// The type of a settable key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Bool,
    /// A whole number within a range.
    Int(IntRange),
    Str,
    Path,
    /// An `http(s)://` URL with a host and no user name or password; a bare host gets
    /// `https://`.
    Url,
    /// A bare host name or IP address (no scheme, port or path), e.g. `ldap.hostname`.
    Host,
    Enum(&'static [&'static str]),
    /// A secret: the value lives in the secret store unless it is a reference.
    Secret,
    /// A list of strings, given comma-separated.
    List,
}

/// The values a whole-number key accepts: `min..=max`, and 0 too when `zero_off` (0 turns the
/// feature off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntRange {
    pub min: i64,
    pub max: i64,
    pub zero_off: bool,
}

impl IntRange {
    pub const fn new(min: i64, max: i64) -> IntRange {
        IntRange {
            min,
            max,
            zero_off: false,
        }
    }
    /// `0` (off) or `min..=max`.
    pub const fn off_or(min: i64, max: i64) -> IntRange {
        IntRange {
            min,
            max,
            zero_off: true,
        }
    }
    pub fn contains(&self, n: i64) -> bool {
        (self.zero_off && n == 0) || (self.min..=self.max).contains(&n)
    }
    /// The range in words: "from 1 to 65535", "0 (off) or from 5 to 10080".
    pub fn describe(&self) -> String {
        if self.zero_off {
            format!("0 (off) or from {} to {}", self.min, self.max)
        } else {
            format!("from {} to {}", self.min, self.max)
        }
    }
}

const PORT: IntRange = IntRange::new(1, 65535);
const PERCENT: IntRange = IntRange::new(0, 100);
const RESERVE_PERCENT: IntRange = IntRange::new(0, 90);
/// `sync.interval_minutes`: off, or 5 minutes to a week.
pub(super) const INTERVAL: IntRange = IntRange::off_or(5, 10_080);

/// Keys only the schedule (the window's automatic syncs) reads: a one-shot `sync` or `test`
/// never fails because of them.
pub const SCHEDULE_KEYS: &[&str] = &["sync.interval_minutes"];

/// Every key `config set` and `config get` accept, with its type and a one-line help.
pub const KEYS: &[(&str, KeyKind, &str)] = &[
    (
        "server.url",
        KeyKind::Url,
        "Bitwarden server: https://vault.bitwarden.com (US, default), https://vault.bitwarden.eu (EU) or your self-hosted URL",
    ),
    (
        "server.api_url",
        KeyKind::Url,
        "custom API URL (overrides the one derived from server.url)",
    ),
    (
        "server.identity_url",
        KeyKind::Url,
        "custom identity URL (overrides the one derived from server.url)",
    ),
    (
        "server.ca_file",
        KeyKind::Path,
        "extra CA certificates (PEM) for the Bitwarden server",
    ),
    (
        "server.rate_limits",
        KeyKind::Enum(&crate::config::RateLimitMode::ALL),
        "how the request budget counts: cloud (per method and path, as the Bitwarden cloud; default on the US/EU cloud), shared (one counter for everything; default when a number below is set), none (default elsewhere)",
    ),
    (
        "server.max_requests_per_second",
        KeyKind::Int(IntRange::new(0, 1000)),
        "request budget: at most this many requests a second, per counter (0: no limit; default 4)",
    ),
    (
        "server.max_requests_per_minute",
        KeyKind::Int(IntRange::new(0, 60_000)),
        "request budget: at most this many requests a minute, per counter (0: no limit; default 50)",
    ),
    (
        "directory.type",
        KeyKind::Enum(&DirectoryType::ALL),
        "which directory to read",
    ),
    (
        "ldap.hostname",
        KeyKind::Host,
        "LDAP server host name, e.g. ad.company.com",
    ),
    (
        "ldap.port",
        KeyKind::Int(PORT),
        "LDAP port (default 389, or 636 for ldaps)",
    ),
    (
        "ldap.encryption",
        KeyKind::Enum(&["none", "starttls", "ldaps"]),
        "none, starttls or ldaps",
    ),
    (
        "ldap.ca_file",
        KeyKind::Path,
        "CA certificates (PEM) that signed the LDAP server's certificate",
    ),
    (
        "ldap.client_cert_file",
        KeyKind::Path,
        "client certificate (PEM) for mutual TLS",
    ),
    (
        "ldap.client_key_file",
        KeyKind::Path,
        "private key (PEM) of the client certificate",
    ),
    (
        "ldap.skip_cert_verification",
        KeyKind::Bool,
        "do not verify the LDAP server certificate (unsafe)",
    ),
    (
        "ldap.root_path",
        KeyKind::Str,
        "base DN, e.g. dc=company,dc=com",
    ),
    (
        "ldap.username",
        KeyKind::Str,
        "bind DN, DOMAIN\\user or UPN",
    ),
    (
        "ldap.password",
        KeyKind::Secret,
        "bind password (secret store, or env:NAME / file:PATH)",
    ),
    ("ldap.ad", KeyKind::Bool, "the server is Active Directory"),
    (
        "ldap.deleted_objects",
        KeyKind::Bool,
        "AD: deleted users (CN=Deleted Objects) are removed from the organization",
    ),
    (
        "ldap.in_chain_membership",
        KeyKind::Bool,
        "AD: nested group members resolved by the server (matching rule 1.2.840.113556.1.4.1941)",
    ),
    (
        "ldap.member_range_size",
        KeyKind::Int(IntRange::new(1, 100_000)),
        "AD: group members read per request (ranged retrieval; AD's limit is 1500)",
    ),
    (
        "ldap.paged_search",
        KeyKind::Bool,
        "use paged searches (RFC 2696)",
    ),
    (
        "ldap.page_size",
        KeyKind::Int(IntRange::new(1, 100_000)),
        "entries per page for paged searches",
    ),
    (
        "ldap.timeout_seconds",
        KeyKind::Int(IntRange::new(1, 86_400)),
        "connect and operation timeout",
    ),
    (
        "entra.tenant",
        KeyKind::Str,
        "Entra ID: tenant id or domain, e.g. company.onmicrosoft.com",
    ),
    (
        "entra.application_id",
        KeyKind::Str,
        "Entra ID: application (client) id of the app registration",
    ),
    (
        "entra.key",
        KeyKind::Secret,
        "Entra ID: client secret (secret store, or env:NAME / file:PATH)",
    ),
    (
        "entra.cloud",
        KeyKind::Enum(&["public", "government"]),
        "Entra ID: public cloud or US government",
    ),
    (
        "entra.login_url",
        KeyKind::Url,
        "Entra ID: custom login (token) base URL",
    ),
    (
        "entra.graph_url",
        KeyKind::Url,
        "Entra ID: custom Microsoft Graph base URL",
    ),
    (
        "entra.include_guests",
        KeyKind::Bool,
        "Entra ID: also sync guest accounts (userType Guest); default false",
    ),
    (
        "entra.max_retry_after_seconds",
        KeyKind::Int(IntRange::new(0, 86_400)),
        "Entra ID: longest throttling wait (Retry-After) honoured before the run fails (default 300)",
    ),
    (
        "okta.org_url",
        KeyKind::Url,
        "Okta: organization URL, e.g. https://company.okta.com",
    ),
    (
        "okta.token",
        KeyKind::Secret,
        "Okta: API token (secret store, or env:NAME / file:PATH)",
    ),
    (
        "okta.rate_limit_reserve_percent",
        KeyKind::Int(RESERVE_PERCENT),
        "Okta: share of the rate limit left untouched (waits for the reset instead)",
    ),
    (
        "onelogin.client_id",
        KeyKind::Str,
        "OneLogin: API client id",
    ),
    (
        "onelogin.client_secret",
        KeyKind::Secret,
        "OneLogin: API client secret (secret store, or env:NAME / file:PATH)",
    ),
    (
        "onelogin.region",
        KeyKind::Enum(&["us", "eu"]),
        "OneLogin: region of the account",
    ),
    (
        "onelogin.api_url",
        KeyKind::Url,
        "OneLogin: custom API base URL",
    ),
    (
        "onelogin.rate_limit_reserve_percent",
        KeyKind::Int(RESERVE_PERCENT),
        "OneLogin: share of the hourly rate limit left untouched (waits for the reset instead)",
    ),
    (
        "google.domain",
        KeyKind::Str,
        "Google: primary domain, e.g. company.com",
    ),
    (
        "google.customer",
        KeyKind::Str,
        "Google: customer id (optional), e.g. my_customer or C01234abc",
    ),
    (
        "google.admin_user",
        KeyKind::Str,
        "Google: super-admin email the service account acts as",
    ),
    (
        "google.key",
        KeyKind::Secret,
        "Google: service-account JSON key (secret store, or file:key.json)",
    ),
    (
        "google.api_url",
        KeyKind::Url,
        "Google: custom Admin SDK base URL",
    ),
    (
        "google.token_url",
        KeyKind::Url,
        "Google: custom OAuth token URL",
    ),
    ("sync.users", KeyKind::Bool, "sync users"),
    ("sync.groups", KeyKind::Bool, "sync groups"),
    (
        "sync.interval_minutes",
        KeyKind::Int(INTERVAL),
        "minutes between automatic syncs (desktop app; minimum 5)",
    ),
    (
        "sync.user_filter",
        KeyKind::Str,
        "LDAP filter ANDed with the user object class",
    ),
    (
        "sync.group_filter",
        KeyKind::Str,
        "LDAP filter ANDed with the group object class",
    ),
    (
        "sync.user_path",
        KeyKind::Str,
        "where users are, relative to the root path, e.g. ou=People",
    ),
    (
        "sync.group_path",
        KeyKind::Str,
        "where groups are, relative to the root path, e.g. ou=Groups",
    ),
    (
        "sync.user_object_class",
        KeyKind::Str,
        "user object class (default inetOrgPerson; AD: person)",
    ),
    (
        "sync.group_object_class",
        KeyKind::Str,
        "group object class (default groupOfNames; AD: group)",
    ),
    (
        "sync.user_email_attribute",
        KeyKind::Str,
        "email attribute (default mail)",
    ),
    (
        "sync.group_name_attribute",
        KeyKind::Str,
        "group name attribute (default cn; AD: name)",
    ),
    (
        "sync.member_attribute",
        KeyKind::Str,
        "membership attribute: member, uniqueMember or memberUid (default member)",
    ),
    (
        "sync.use_email_prefix_suffix",
        KeyKind::Bool,
        "build an email from a prefix attribute and a suffix when a user has none",
    ),
    (
        "sync.email_prefix_attribute",
        KeyKind::Str,
        "prefix attribute (default uid; AD: sAMAccountName)",
    ),
    (
        "sync.email_suffix",
        KeyKind::Str,
        "suffix, e.g. @company.com",
    ),
    (
        "sync.remove_disabled",
        KeyKind::Bool,
        "remove disabled users from the organization",
    ),
    (
        "sync.remove_missing_users",
        KeyKind::Bool,
        "remove members the directory no longer returns",
    ),
    (
        "sync.remove_revoked_after_days",
        KeyKind::Int(IntRange::new(0, 3_650)),
        "Bitwarden: revoke a departing member first and remove it after this many days still gone or disabled (default 30; 0: remove at once)",
    ),
    (
        "sync.overwrite_existing",
        KeyKind::Bool,
        "let the server remove every external member not in the push (debugging)",
    ),
    (
        "sync.large_import",
        KeyKind::Bool,
        "accepted for upstream compatibility; batching is automatic",
    ),
    (
        "sync.invite_users_after_provisioning",
        KeyKind::Bool,
        "ask the server to email invitations",
    ),
    (
        "sync.max_removals",
        KeyKind::Int(IntRange::new(0, 1_000_000_000)),
        "refuse a sync that removes more members than this (0: no limit)",
    ),
    (
        "sync.max_removal_percent",
        KeyKind::Int(PERCENT),
        "refuse a sync that removes more than this % of members (0: no limit)",
    ),
    (
        "sync.max_group_removal_percent",
        KeyKind::Int(PERCENT),
        "refuse a sync that empties a group or takes more than this % of the member references out of the groups it changes (0: off)",
    ),
    (
        "sync.protected_emails",
        KeyKind::List,
        "comma-separated emails a sync never removes, revokes or takes out of a group",
    ),
    (
        "sync.reconcile_hours",
        KeyKind::Int(IntRange::new(1, 8_760)),
        "no longer used: every sync reads every group's members from the server (accepted so that older configurations load)",
    ),
    (
        "sync.watch_seconds",
        KeyKind::Int(IntRange::new(0, 3_600)),
        "the fast lane: look at the directory's change feed this often between full syncs, in the service and the polling window (default 60; 0: off)",
    ),
    (
        "sync.watch_joiners",
        KeyKind::Bool,
        "the fast lane invites a joiner at once (off: a joiner waits for the next full sync)",
    ),
    (
        "sync.group_resend_hours",
        KeyKind::Int(IntRange::new(0, 8_760)),
        "servers without a read API (Vaultwarden): send groups again when confirmed longer ago than this (0: never)",
    ),
    (
        "service.schedule",
        KeyKind::Str,
        "service: cron expression (5 fields, or 6 with seconds), e.g. `0 */2 * * *`; overrides sync.interval_minutes",
    ),
    (
        "service.jitter_seconds",
        KeyKind::Int(IntRange::new(0, 3_600)),
        "service: up to this many random seconds added to each wait (default 0)",
    ),
    (
        "service.metrics_listen",
        KeyKind::Str,
        "service: address:port serving /healthz and /metrics, e.g. 127.0.0.1:9464 (off when unset)",
    ),
    (
        "notify.webhook_url",
        KeyKind::Url,
        "alerts: URL that gets a POST on a failure, a guard refusal, a recovery and a stale sync",
    ),
    (
        "notify.webhook_format",
        KeyKind::Enum(&["json", "slack", "teams"]),
        "alerts: body of the webhook: json, slack or teams (default json)",
    ),
    (
        "notify.stale_after_minutes",
        KeyKind::Int(IntRange::off_or(5, 525_600)),
        "alerts: alert when no sync has succeeded for this many minutes (0: off)",
    ),
    (
        "notify.smtp_url",
        KeyKind::Str,
        "alerts: mail server, smtps://user@host:465 or smtp://user@host:587?tls=starttls",
    ),
    (
        "notify.smtp_password",
        KeyKind::Secret,
        "alerts: mail server password (secret store, or env:NAME / file:PATH)",
    ),
    (
        "notify.email_from",
        KeyKind::Str,
        "alerts: sender address (default directory-connector@<host name>)",
    ),
    (
        "notify.email_to",
        KeyKind::List,
        "alerts: comma-separated addresses that get alert emails",
    ),
];

/// Looks a key up (case-insensitive); a clear error for unknown keys.
pub fn key_info(key: &str) -> anyhow::Result<(&'static str, KeyKind)> {
    let lower = key.to_ascii_lowercase();
    match KEYS.iter().find(|(k, _, _)| *k == lower) {
        Some((k, kind, _)) => Ok((k, *kind)),
        None => config_err(format!(
            "unknown setting `{key}`; `config keys` lists every setting"
        )),
    }
}
