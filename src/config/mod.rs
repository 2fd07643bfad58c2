//! Typed configuration (`config.toml` in the data directory). This file is the typed model;
//! `keys.rs` is the table of settable keys, `edit.rs` loads, saves, gets and sets by key,
//! `validate.rs` names the key of every problem and `schedule.rs` says when the service runs
//! next. Secrets are never stored here unless the value is a reference (`env:NAME`,
//! `file:PATH`, recognised and read by `secret_ref.rs`); the secret stores are in `secrets.rs`.

mod edit;
mod keys;
pub mod schedule;
mod secret_ref;
mod service;
mod validate;
mod values;

pub use edit::{
    apply_changes, check_value, config_path, get_value, load, mask_secret_value, normalize_url,
    parse, save_text, set_value, set_values, show,
};
pub use keys::{IntRange, KEYS, KeyKind, SCHEDULE_KEYS, key_info};
pub use secret_ref::SecretRef;
pub use service::{NotifyConfig, ServiceConfig, WebhookFormat};
pub use validate::{
    Problem, Purpose, check_cloud_filter, check_ldap_filter, schedule_problems, validate,
    validate_for, value_problem,
};
pub use values::{
    CheckedUrl, DN_KEYS, check_dn, check_host, check_int, check_url, default_value, key_at,
    line_column, location as parse_location,
};

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Which directory the connector reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectoryType {
    Ldap,
    Entra,
    Google,
    Okta,
    Onelogin,
}

impl DirectoryType {
    pub const ALL: [&'static str; 5] = ["ldap", "entra", "google", "okta", "onelogin"];
}

/// How the request budget counts the requests to the Bitwarden server (`server.rate_limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitMode {
    /// As the Bitwarden cloud does: one counter per HTTP method and path.
    Cloud,
    /// One counter for every request (an edge in front of the server may count so).
    Shared,
    /// No pacing.
    None,
}

impl RateLimitMode {
    pub const ALL: [&'static str; 3] = ["cloud", "shared", "none"];
}

/// How the LDAP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encryption {
    #[default]
    None,
    Starttls,
    Ldaps,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Base URL: `https://vault.bitwarden.com` (US cloud, default), `https://vault.bitwarden.eu`
    /// (EU cloud) or a self-hosted base.
    pub url: Option<String>,
    pub api_url: Option<String>,
    pub identity_url: Option<String>,
    /// Extra CA certificates (PEM) trusted for the Bitwarden server.
    pub ca_file: Option<PathBuf>,
    /// How the request budget counts: `cloud` (per method and path, as the Bitwarden cloud
    /// does), `shared` (one counter for everything) or `none`. Unset: `shared` when a number
    /// below is set, else `cloud` against the US or EU cloud and `none` elsewhere.
    pub rate_limits: Option<RateLimitMode>,
    /// The request budget: at most this many requests a second (per counter; 0: no limit).
    /// Unset: 4.
    pub max_requests_per_second: Option<u32>,
    /// The request budget: at most this many requests a minute (per counter; 0: no limit).
    /// Unset: 50.
    pub max_requests_per_minute: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectoryConfig {
    #[serde(rename = "type")]
    pub kind: Option<DirectoryType>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LdapConfig {
    pub hostname: Option<String>,
    /// Defaults to 389, or 636 with `encryption = "ldaps"`.
    pub port: Option<u16>,
    pub encryption: Encryption,
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS, with its key in `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    pub skip_cert_verification: bool,
    pub root_path: Option<String>,
    pub username: Option<String>,
    /// Only a reference (`env:NAME`, `file:PATH`) may live here; the secret itself goes to the
    /// secret store.
    pub password: Option<String>,
    pub ad: bool,
    /// AD: read tombstones from `CN=Deleted Objects` (show-deleted control); they become
    /// deleted members.
    pub deleted_objects: bool,
    /// AD: resolve nested membership on the server with the in-chain matching rule
    /// (1.2.840.113556.1.4.1941), one user search per group.
    pub in_chain_membership: bool,
    /// AD: values of `member` asked for per request (`member;range=0-1499`, …).
    pub member_range_size: u32,
    pub paged_search: bool,
    pub page_size: u32,
    /// Seconds for connecting and for each LDAP operation.
    pub timeout_seconds: u64,
}

impl Default for LdapConfig {
    fn default() -> Self {
        LdapConfig {
            hostname: None,
            port: None,
            encryption: Encryption::None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            skip_cert_verification: false,
            root_path: None,
            username: None,
            password: None,
            ad: false,
            deleted_objects: false,
            in_chain_membership: false,
            member_range_size: 1500,
            paged_search: true,
            page_size: 500,
            timeout_seconds: 300,
        }
    }
}

impl LdapConfig {
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.encryption {
            Encryption::Ldaps => 636,
            _ => 389,
        })
    }
    pub fn user_object_class<'a>(&self, s: &'a SyncConfig) -> &'a str {
        s.user_object_class
            .as_deref()
            .unwrap_or(if self.ad { "person" } else { "inetOrgPerson" })
    }
    pub fn group_object_class<'a>(&self, s: &'a SyncConfig) -> &'a str {
        s.group_object_class
            .as_deref()
            .unwrap_or(if self.ad { "group" } else { "groupOfNames" })
    }
    pub fn user_email_attribute<'a>(&self, s: &'a SyncConfig) -> &'a str {
        s.user_email_attribute.as_deref().unwrap_or("mail")
    }
    pub fn group_name_attribute<'a>(&self, s: &'a SyncConfig) -> &'a str {
        s.group_name_attribute
            .as_deref()
            .unwrap_or(if self.ad { "name" } else { "cn" })
    }
    pub fn member_attribute<'a>(&self, s: &'a SyncConfig) -> &'a str {
        s.member_attribute.as_deref().unwrap_or("member")
    }
    pub fn email_prefix_attribute<'a>(&self, s: &'a SyncConfig) -> &'a str {
        s.email_prefix_attribute.as_deref().unwrap_or(if self.ad {
            "sAMAccountName"
        } else {
            "uid"
        })
    }
}

/// Default for `sync.remove_revoked_after_days`.
pub const DEFAULT_REMOVE_REVOKED_AFTER_DAYS: u32 = 30;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    pub users: bool,
    pub groups: bool,
    pub interval_minutes: u32,
    pub user_filter: Option<String>,
    pub group_filter: Option<String>,
    pub user_path: Option<String>,
    pub group_path: Option<String>,
    pub user_object_class: Option<String>,
    pub group_object_class: Option<String>,
    pub user_email_attribute: Option<String>,
    pub group_name_attribute: Option<String>,
    pub member_attribute: Option<String>,
    pub use_email_prefix_suffix: bool,
    pub email_prefix_attribute: Option<String>,
    pub email_suffix: Option<String>,
    pub remove_disabled: bool,
    pub remove_missing_users: bool,
    /// Where the server has the member API (Bitwarden), a departure is revoked first and
    /// removed only after it has stayed gone or disabled this many days (0: removed at once).
    pub remove_revoked_after_days: u32,
    pub overwrite_existing: bool,
    /// Kept for upstream users; batching and `largeImport` are automatic.
    pub large_import: bool,
    pub invite_users_after_provisioning: bool,
    pub max_removals: u64,
    pub max_removal_percent: u64,
    /// Refuse a sync that empties a group or takes more than this % of the member references
    /// out of the groups it changes (0: off).
    pub max_group_removal_percent: u64,
    /// Emails a sync never removes, revokes or takes out of a group.
    pub protected_emails: Vec<String>,
    /// Without the read API, groups confirmed longer ago than this are sent again (0: never).
    pub group_resend_hours: u64,
    /// With the read API, every group's members are read from the server again within this
    /// many hours, a slice each sync (the rolling reconcile); between, a sync takes them from
    /// the sync cache's last confirmed rows.
    pub reconcile_hours: u64,
    /// The fast lane: how often (seconds) the service, and the window while it polls, look at
    /// the directory's change feed between full syncs (0: off).
    pub watch_seconds: u64,
    /// The fast lane invites a joiner at once (off: a joiner waits for the next full sync).
    pub watch_joiners: bool,
}

/// Default for `sync.watch_seconds`.
pub const DEFAULT_WATCH_SECONDS: u64 = 60;

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            users: true,
            groups: true,
            interval_minutes: 5,
            user_filter: None,
            group_filter: None,
            user_path: None,
            group_path: None,
            user_object_class: None,
            group_object_class: None,
            user_email_attribute: None,
            group_name_attribute: None,
            member_attribute: None,
            use_email_prefix_suffix: false,
            email_prefix_attribute: None,
            email_suffix: None,
            remove_disabled: false,
            remove_missing_users: false,
            remove_revoked_after_days: DEFAULT_REMOVE_REVOKED_AFTER_DAYS,
            overwrite_existing: false,
            large_import: false,
            invite_users_after_provisioning: false,
            max_removals: crate::engine::guard::DEFAULT_MAX_REMOVALS,
            max_removal_percent: crate::engine::guard::DEFAULT_MAX_REMOVAL_PERCENT,
            max_group_removal_percent: crate::engine::guard::DEFAULT_MAX_GROUP_REMOVAL_PERCENT,
            protected_emails: Vec::new(),
            group_resend_hours: 24,
            reconcile_hours: 24,
            watch_seconds: DEFAULT_WATCH_SECONDS,
            watch_joiners: false,
        }
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub directory: DirectoryConfig,
    pub ldap: LdapConfig,
    pub entra: EntraConfig,
    pub okta: OktaConfig,
    pub onelogin: OneLoginConfig,
    pub google: GoogleConfig,
    pub sync: SyncConfig,
    pub service: ServiceConfig,
    pub notify: NotifyConfig,
}

/// OneLogin (API v1 with an OAuth2 v2 token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OneLoginConfig {
    pub client_id: Option<String>,
    /// Only a reference may live here; the secret goes to the store.
    pub client_secret: Option<String>,
    pub region: OneLoginRegion,
    /// Overrides `https://api.<region>.onelogin.com`.
    pub api_url: Option<String>,
    /// Like Okta's: the share (percent) of the hourly rate limit left untouched; the sync waits
    /// for the window to reset instead (`X-RateLimit-*` headers).
    pub rate_limit_reserve_percent: u32,
}

impl Default for OneLoginConfig {
    fn default() -> Self {
        OneLoginConfig {
            client_id: None,
            client_secret: None,
            region: OneLoginRegion::default(),
            api_url: None,
            rate_limit_reserve_percent: 10,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OneLoginRegion {
    #[default]
    Us,
    Eu,
}

impl OneLoginConfig {
    pub fn base(&self) -> String {
        match &self.api_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => match self.region {
                OneLoginRegion::Us => "https://api.us.onelogin.com".into(),
                OneLoginRegion::Eu => "https://api.eu.onelogin.com".into(),
            },
        }
    }
}

/// Google Workspace (Admin SDK Directory API).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GoogleConfig {
    pub domain: Option<String>,
    pub customer: Option<String>,
    /// The super-admin the service account acts as (domain-wide delegation).
    pub admin_user: Option<String>,
    /// The service account's JSON key: only a reference may live here (`file:key.json`); the
    /// key itself goes to the store.
    pub key: Option<String>,
    /// Overrides the Admin SDK base URL (`https://admin.googleapis.com`).
    pub api_url: Option<String>,
    /// Overrides the token URL (`https://oauth2.googleapis.com/token`).
    pub token_url: Option<String>,
}

/// Which Microsoft cloud Entra ID lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntraCloud {
    /// login.microsoftonline.com / graph.microsoft.com
    #[default]
    Public,
    /// US government: login.microsoftonline.us / graph.microsoft.us
    Government,
}

/// Microsoft Entra ID (Microsoft Graph).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EntraConfig {
    pub tenant: Option<String>,
    pub application_id: Option<String>,
    /// The client secret: only a reference may live here; the secret goes to the store.
    pub key: Option<String>,
    pub cloud: EntraCloud,
    /// Overrides the login (token) base URL, e.g. for sovereign clouds or tests.
    pub login_url: Option<String>,
    /// Overrides the Graph base URL (without `/v1.0`).
    pub graph_url: Option<String>,
    /// Sync guests (`userType` Guest) too; off by default, as upstream skips `#EXT#` guests.
    pub include_guests: bool,
    /// The longest `Retry-After` Microsoft Graph may ask for before the run gives up
    /// (default 300 s).
    pub max_retry_after_seconds: Option<u64>,
}

impl EntraConfig {
    pub fn login_base(&self) -> String {
        match &self.login_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => match self.cloud {
                EntraCloud::Public => "https://login.microsoftonline.com".into(),
                EntraCloud::Government => "https://login.microsoftonline.us".into(),
            },
        }
    }
    pub fn graph_base(&self) -> String {
        match &self.graph_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => match self.cloud {
                EntraCloud::Public => "https://graph.microsoft.com".into(),
                EntraCloud::Government => "https://graph.microsoft.us".into(),
            },
        }
    }
    /// The token scope: the real Graph resource of the cloud (not an override).
    pub fn scope(&self) -> String {
        match self.cloud {
            EntraCloud::Public => "https://graph.microsoft.com/.default".into(),
            EntraCloud::Government => "https://graph.microsoft.us/.default".into(),
        }
    }
}

/// Okta (REST API v1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OktaConfig {
    pub org_url: Option<String>,
    /// The API token: only a reference may live here; the token goes to the store.
    pub token: Option<String>,
    /// Stop using the rate-limit budget when fewer than this share (percent) of calls remain
    /// in the window: wait for the window to reset instead.
    pub rate_limit_reserve_percent: u32,
}

impl Default for OktaConfig {
    fn default() -> Self {
        OktaConfig {
            org_url: None,
            token: None,
            rate_limit_reserve_percent: 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::Failure;

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = parse("[ldap]\nhostname = \"x\"\nportt = 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ldap.portt") && e.contains("unknown field"),
            "{e}"
        );
        let e = parse("[sync]\nusers = \"yes\"\n").unwrap_err().to_string();
        assert!(e.contains("sync.users"), "{e}");
        let e = parse("[ldap]\nencryption = \"tls\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ldap.encryption"), "{e}");
    }

    /// Issue 26 item 10: `config set` took a schedule that never fires (and `*@company.com` as
    /// a protected email), which `config validate` and the service then refused.
    #[test]
    fn config_set_refuses_a_schedule_that_never_fires_and_an_email_pattern() {
        let dir = tempfile::tempdir().unwrap();
        for (expr, want) in [
            ("0 0 30 2 *", "never fires"),
            ("0 0 31 4 *", "never fires"),
            ("every day", "is not a cron expression"),
        ] {
            let e = set_value(dir.path(), "service.schedule", Some(expr)).unwrap_err();
            assert!(
                matches!(e.downcast_ref::<Failure>(), Some(Failure::Config(_))),
                "{e:#}"
            );
            let e = format!("{e:#}");
            assert!(
                e.contains("service.schedule") && e.contains(expr) && e.contains(want),
                "{e}"
            );
        }
        let e = set_value(
            dir.path(),
            "sync.protected_emails",
            Some("ceo@company.com, *@company.com"),
        )
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("`*@company.com` is a pattern"),
            "{e:#}"
        );
        assert!(!config_path(dir.path()).exists(), "nothing written");
        set_value(dir.path(), "service.schedule", Some("0 2 29 2 *")).unwrap();
        set_value(dir.path(), "service.schedule", Some("*/30 * * * *")).unwrap();
        assert_eq!(
            load(dir.path()).unwrap().service.schedule.as_deref(),
            Some("*/30 * * * *")
        );
    }

    #[test]
    fn set_get_round_trip_keeps_comments() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            config_path(dir.path()),
            "# my comment\n[ldap]\nhostname = \"a\"\n",
        )
        .unwrap();
        set_value(dir.path(), "LDAP.Port", Some("1389")).unwrap();
        set_value(dir.path(), "sync.remove_disabled", Some("yes")).unwrap();
        set_value(dir.path(), "directory.type", Some("LDAP")).unwrap();
        let text = std::fs::read_to_string(config_path(dir.path())).unwrap();
        assert!(text.contains("# my comment"));
        let cfg = load(dir.path()).unwrap();
        assert_eq!(cfg.ldap.port, Some(1389));
        assert!(cfg.sync.remove_disabled);
        assert_eq!(
            get_value(&cfg, "directory.type").unwrap().as_deref(),
            Some("ldap")
        );
        assert_eq!(
            get_value(&cfg, "ldap.hostname").unwrap().as_deref(),
            Some("a")
        );
        set_value(dir.path(), "ldap.port", None).unwrap();
        assert_eq!(load(dir.path()).unwrap().ldap.port, None);
    }

    #[test]
    fn bad_values_are_refused_and_the_file_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        set_value(dir.path(), "ldap.port", Some("389")).unwrap();
        for (k, v) in [
            ("ldap.port", "abc"),
            ("ldap.port", "70000"),
            ("sync.users", "maybe"),
            ("ldap.encryption", "ssl"),
            ("nope.key", "1"),
            ("ldap.password", "hunter2"),
        ] {
            let e = set_value(dir.path(), k, Some(v)).unwrap_err();
            assert!(
                matches!(e.downcast_ref::<Failure>(), Some(Failure::Config(_))),
                "{k}: {e}"
            );
            assert!(
                format!("{e:#}").contains(k.split('.').next().unwrap()),
                "{k}: {e:#}"
            );
        }
        assert_eq!(load(dir.path()).unwrap().ldap.port, Some(389));
    }

    #[test]
    fn secret_references_are_accepted_and_shown() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = set_value(dir.path(), "ldap.password", Some("env:LDAP_PW")).unwrap();
        assert_eq!(
            get_value(&cfg, "ldap.password").unwrap().as_deref(),
            Some("env:LDAP_PW")
        );
        let mut c = cfg.clone();
        c.ldap.password = Some("hunter2".into());
        let shown = show(&c).unwrap();
        assert!(!shown.contains("hunter2") && shown.contains("********"));
    }

    #[test]
    fn validate_lists_every_problem_with_its_key() {
        let mut cfg = Config::default();
        cfg.directory.kind = Some(DirectoryType::Ldap);
        cfg.sync.interval_minutes = 2;
        cfg.sync.user_filter = Some("(cn=x".into());
        cfg.ldap.password = Some("plain".into());
        let keys: Vec<String> = validate(&cfg, false, false)
            .into_iter()
            .map(|p| p.key)
            .collect();
        for k in [
            "ldap.hostname",
            "ldap.root_path",
            "ldap.username",
            "ldap.password",
            "sync.interval_minutes",
            "sync.user_filter",
        ] {
            assert!(keys.contains(&k.to_string()), "{k} missing from {keys:?}");
        }
        assert!(
            validate(&Config::default(), false, false)
                .iter()
                .any(|p| p.key == "directory.type")
        );
    }

    #[test]
    fn concurrent_saves_lose_nothing() {
        // the window's Save and `config set` share set_values: threads stand in for both
        let dir = tempfile::tempdir().unwrap();
        let keys = [
            ("ldap.hostname", "ad.example.com"),
            ("ldap.root_path", "dc=example,dc=com"),
            ("ldap.username", "cn=reader"),
            ("sync.user_path", "ou=People"),
            ("sync.group_path", "ou=Groups"),
            ("sync.email_suffix", "@example.com"),
            ("entra.tenant", "t"),
            ("google.domain", "example.com"),
            ("onelogin.client_id", "c"),
            ("okta.org_url", "https://x.okta.com"),
            ("sync.max_removals", "7"),
            ("ldap.port", "1389"),
        ];
        std::thread::scope(|s| {
            let handles: Vec<_> = keys
                .iter()
                .map(|(k, v)| s.spawn(|| set_value(dir.path(), k, Some(v))))
                .collect();
            for h in handles {
                h.join().unwrap().unwrap();
            }
        });
        let cfg = load(dir.path()).unwrap();
        for (k, v) in keys {
            assert_eq!(get_value(&cfg, k).unwrap().as_deref(), Some(v), "{k}");
        }
    }

    #[test]
    fn validation_by_purpose_keeps_schedule_settings_out_of_one_shot_runs() {
        let mut cfg = Config::default();
        cfg.directory.kind = Some(DirectoryType::Okta);
        cfg.okta.org_url = Some("https://x.okta.com".into());
        cfg.okta.token = Some("env:T".into());
        cfg.sync.interval_minutes = 1;
        assert!(validate_for(&cfg, true, false, Purpose::Run).is_empty());
        let all = validate(&cfg, true, false);
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(all[0].key, "sync.interval_minutes");
        assert_eq!(schedule_problems(&cfg).len(), 1);
        cfg.sync.max_removal_percent = 150;
        cfg.server.url = Some("ftp://x".into());
        let run: Vec<String> = validate_for(&cfg, true, false, Purpose::Run)
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(run, ["server.url", "sync.max_removal_percent"]);
    }

    #[test]
    fn urls_are_normalized() {
        assert_eq!(
            normalize_url(" vault.example.com/ "),
            "https://vault.example.com"
        );
        assert_eq!(normalize_url("http://x:8080//"), "http://x:8080");
    }
}
