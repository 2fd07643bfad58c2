//! Typed configuration (`config.toml` in the data directory): load, save, get and set by key,
//! and validation that names the key of every problem. Secrets are never stored here unless the
//! value is a reference (`env:NAME`, `file:PATH`); see `secrets.rs`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::errors::{ConfigError, config_err};
use crate::secrets::SecretRef;

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
}

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
            overwrite_existing: false,
            large_import: false,
            invite_users_after_provisioning: false,
            max_removals: crate::engine::guard::DEFAULT_MAX_REMOVALS,
            max_removal_percent: crate::engine::guard::DEFAULT_MAX_REMOVAL_PERCENT,
            max_group_removal_percent: crate::engine::guard::DEFAULT_MAX_GROUP_REMOVAL_PERCENT,
            protected_emails: Vec::new(),
            group_resend_hours: 24,
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

/// The type of a settable key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Bool,
    Int,
    Str,
    Path,
    Url,
    Enum(&'static [&'static str]),
    /// A secret: the value lives in the secret store unless it is a reference.
    Secret,
    /// A list of strings, given comma-separated.
    List,
}

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
        "directory.type",
        KeyKind::Enum(&DirectoryType::ALL),
        "which directory to read",
    ),
    (
        "ldap.hostname",
        KeyKind::Str,
        "LDAP server host name, e.g. ad.company.com",
    ),
    (
        "ldap.port",
        KeyKind::Int,
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
        KeyKind::Int,
        "AD: group members read per request (ranged retrieval; AD's limit is 1500)",
    ),
    (
        "ldap.paged_search",
        KeyKind::Bool,
        "use paged searches (RFC 2696)",
    ),
    (
        "ldap.page_size",
        KeyKind::Int,
        "entries per page for paged searches",
    ),
    (
        "ldap.timeout_seconds",
        KeyKind::Int,
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
        KeyKind::Int,
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
        KeyKind::Int,
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
        KeyKind::Int,
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
        KeyKind::Int,
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
        KeyKind::Int,
        "refuse a sync that removes more members than this (0: no limit)",
    ),
    (
        "sync.max_removal_percent",
        KeyKind::Int,
        "refuse a sync that removes more than this % of members (0: no limit)",
    ),
    (
        "sync.max_group_removal_percent",
        KeyKind::Int,
        "refuse a sync that empties a group or takes more than this % of the member references out of the groups it changes (0: off)",
    ),
    (
        "sync.protected_emails",
        KeyKind::List,
        "comma-separated emails a sync never removes, revokes or takes out of a group",
    ),
    (
        "sync.group_resend_hours",
        KeyKind::Int,
        "servers without a read API (Vaultwarden): send groups again when confirmed longer ago than this (0: never)",
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

/// Path of the config file in a data directory.
pub fn config_path(data_dir: &Path) -> PathBuf {
    data_dir.join("config.toml")
}

/// Reads the config file; a missing file is the default config. Errors name the key.
pub fn load(data_dir: &Path) -> anyhow::Result<Config> {
    let path = config_path(data_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    parse(&text).map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)).into())
}

/// Parses config text, turning serde's errors into messages that name the key.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    toml::from_str::<Config>(text).map_err(|e| {
        let msg = e.message().trim().to_string();
        let key = e
            .span()
            .and_then(|span| key_at(text, span.start))
            .unwrap_or_default();
        if key.is_empty() {
            ConfigError(msg)
        } else {
            ConfigError(format!("`{key}`: {msg}"))
        }
    })
}

/// Best effort: the dotted key whose value or name starts at `offset`.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let mut section = String::new();
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.starts_with('[') && trimmed.ends_with(']') {
            section = trimmed.trim_matches(['[', ']']).trim().to_string();
        }
        if offset >= pos && offset < pos + line.len() {
            if let Some((k, _)) = trimmed.split_once('=') {
                let k = k.trim();
                return Some(if section.is_empty() {
                    k.to_string()
                } else {
                    format!("{section}.{k}")
                });
            }
            return Some(section);
        }
        pos += line.len();
    }
    None
}

/// Writes the config atomically (temp file + rename), mode 0600.
pub fn save_text(data_dir: &Path, text: &str) -> anyhow::Result<()> {
    let path = config_path(data_dir);
    let tmp = data_dir.join(".config.toml.tmp");
    crate::datadir::write_private(&tmp, text.as_bytes())?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Sets one key in the file, keeping comments and layout, and validates the result.
/// `value = None` removes the key (back to its default).
pub fn set_value(data_dir: &Path, key: &str, value: Option<&str>) -> anyhow::Result<Config> {
    set_values(data_dir, &[(key, value)])
}

/// Sets several keys at once: all are checked before the file is written, so either every
/// change is saved or none is (the error names the key).
pub fn set_values(data_dir: &Path, changes: &[(&str, Option<&str>)]) -> anyhow::Result<Config> {
    let path = config_path(data_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
    for (key, value) in changes {
        let (key, kind) = key_info(key)?;
        let (section, field) = key.split_once('.').unwrap_or((key, ""));
        match value {
            None => {
                if let Some(t) = doc.get_mut(section).and_then(|s| s.as_table_like_mut()) {
                    t.remove(field);
                }
            }
            Some(raw) => {
                let item = typed_value(key, kind, raw)?;
                if doc.get(section).is_none() {
                    doc[section] = toml_edit::table();
                }
                doc[section][field] = toml_edit::value(item);
            }
        }
    }
    let new_text = doc.to_string();
    let cfg = parse(&new_text)?;
    save_text(data_dir, &new_text)?;
    Ok(cfg)
}

fn typed_value(key: &str, kind: KeyKind, raw: &str) -> anyhow::Result<toml_edit::Value> {
    let raw_t = raw.trim();
    Ok(match kind {
        KeyKind::Bool => match raw_t.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => true.into(),
            "false" | "no" | "off" | "0" => false.into(),
            _ => return config_err(format!("`{key}` must be true or false, not `{raw}`")),
        },
        KeyKind::Int => match raw_t.parse::<i64>() {
            Ok(n) if n >= 0 => n.into(),
            _ => return config_err(format!("`{key}` must be a whole number ≥ 0, not `{raw}`")),
        },
        KeyKind::Enum(options) => {
            let v = raw_t.to_ascii_lowercase();
            if !options.contains(&v.as_str()) {
                return config_err(format!(
                    "`{key}` must be one of {}, not `{raw}`",
                    options.join(", ")
                ));
            }
            v.into()
        }
        KeyKind::Url => {
            let v = normalize_url(raw_t);
            if url::Url::parse(&v).is_err() {
                return config_err(format!("`{key}` is not a valid URL: `{raw}`"));
            }
            v.into()
        }
        KeyKind::Secret => {
            if SecretRef::parse(raw_t).is_none() {
                return config_err(format!(
                    "`{key}` is a secret and is not accepted on the command line. Run \
                     `config set {key}` without a value to be prompted (or pipe it on standard \
                     input), or give a reference: env:NAME or file:PATH"
                ));
            }
            raw_t.into()
        }
        KeyKind::List => {
            let mut a = toml_edit::Array::new();
            for item in raw.split(',').map(str::trim).filter(|v| !v.is_empty()) {
                a.push(item);
            }
            a.into()
        }
        KeyKind::Str | KeyKind::Path => raw.into(),
    })
}

/// Upstream's URL normalization: trims, strips trailing slashes, adds `https://` when no scheme.
pub fn normalize_url(raw: &str) -> String {
    let v = raw.trim().trim_end_matches('/');
    if v.starts_with("http://") || v.starts_with("https://") {
        v.to_string()
    } else {
        format!("https://{v}")
    }
}

/// The value of one key as the admin sees it (secrets masked), or `None` when unset.
pub fn get_value(cfg: &Config, key: &str) -> anyhow::Result<Option<String>> {
    let (key, kind) = key_info(key)?;
    let json = serde_json::to_value(cfg).context("serializing the configuration")?;
    let (section, field) = key.split_once('.').unwrap_or((key, ""));
    let v = &json[section][field];
    Ok(match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) if kind == KeyKind::Secret => Some(mask_secret_value(s)),
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(a) if a.is_empty() => None,
        serde_json::Value::Array(a) => Some(
            a.iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        other => Some(other.to_string()),
    })
}

/// A secret value as shown: references are shown, literal secrets masked.
pub fn mask_secret_value(v: &str) -> String {
    if SecretRef::parse(v).is_some() {
        v.to_string()
    } else {
        "********".into()
    }
}

/// The whole config as TOML, secrets masked.
pub fn show(cfg: &Config) -> anyhow::Result<String> {
    let mut masked = cfg.clone();
    for v in [
        &mut masked.ldap.password,
        &mut masked.entra.key,
        &mut masked.okta.token,
        &mut masked.onelogin.client_secret,
        &mut masked.google.key,
    ]
    .into_iter()
    .flatten()
    {
        *v = mask_secret_value(v);
    }
    toml::to_string_pretty(&masked).context("serializing the configuration")
}

/// One validation problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

fn problem(out: &mut Vec<Problem>, key: &str, message: impl Into<String>) {
    out.push(Problem {
        key: key.into(),
        message: message.into(),
    });
}

fn blank(v: &Option<String>) -> bool {
    v.as_deref().is_none_or(|s| s.trim().is_empty())
}

/// Every problem in the config, each with its key. `secret_known` tells whether the directory's
/// secret (LDAP password, API key or token) is in the secret store (it is not in the file).
pub fn validate(cfg: &Config, secret_known: bool, plaintext_opt_in: bool) -> Vec<Problem> {
    let mut p = Vec::new();
    for (key, v) in [
        ("server.url", &cfg.server.url),
        ("server.api_url", &cfg.server.api_url),
        ("server.identity_url", &cfg.server.identity_url),
    ] {
        if let Some(u) = v
            && url::Url::parse(u).is_err()
        {
            problem(&mut p, key, format!("not a valid URL: `{u}`"));
        }
    }
    for (key, v) in [
        ("server.ca_file", &cfg.server.ca_file),
        ("ldap.ca_file", &cfg.ldap.ca_file),
        ("ldap.client_cert_file", &cfg.ldap.client_cert_file),
        ("ldap.client_key_file", &cfg.ldap.client_key_file),
    ] {
        if let Some(path) = v
            && !path.is_file()
        {
            problem(&mut p, key, format!("file not found: {}", path.display()));
        }
    }
    match cfg.directory.kind {
        None => problem(
            &mut p,
            "directory.type",
            format!(
                "no directory configured; choose one of {}",
                DirectoryType::ALL.join(", ")
            ),
        ),
        Some(DirectoryType::Ldap) => validate_ldap(cfg, secret_known, plaintext_opt_in, &mut p),
        Some(DirectoryType::Entra) => {
            let e = &cfg.entra;
            if blank(&e.tenant) {
                problem(&mut p, "entra.tenant", "required: the tenant id or domain");
            }
            if blank(&e.application_id) {
                problem(
                    &mut p,
                    "entra.application_id",
                    "required: the application (client) id",
                );
            }
            secret_problem(&mut p, "entra.key", &e.key, secret_known, plaintext_opt_in);
        }
        Some(DirectoryType::Okta) => {
            let o = &cfg.okta;
            match o.org_url.as_deref().map(str::trim) {
                None | Some("") => problem(
                    &mut p,
                    "okta.org_url",
                    "required: the Okta organization URL, e.g. https://company.okta.com",
                ),
                Some(u) if url::Url::parse(u).is_err() => {
                    problem(&mut p, "okta.org_url", format!("not a valid URL: `{u}`"));
                }
                _ => {}
            }
            if o.rate_limit_reserve_percent > 90 {
                problem(
                    &mut p,
                    "okta.rate_limit_reserve_percent",
                    "must be between 0 and 90",
                );
            }
            secret_problem(
                &mut p,
                "okta.token",
                &o.token,
                secret_known,
                plaintext_opt_in,
            );
        }
        Some(DirectoryType::Onelogin) => {
            let o = &cfg.onelogin;
            if blank(&o.client_id) {
                problem(&mut p, "onelogin.client_id", "required: the API client id");
            }
            if o.rate_limit_reserve_percent > 90 {
                problem(
                    &mut p,
                    "onelogin.rate_limit_reserve_percent",
                    "must be between 0 and 90",
                );
            }
            secret_problem(
                &mut p,
                "onelogin.client_secret",
                &o.client_secret,
                secret_known,
                plaintext_opt_in,
            );
        }
        Some(DirectoryType::Google) => {
            let g = &cfg.google;
            if blank(&g.domain) && blank(&g.customer) {
                problem(
                    &mut p,
                    "google.domain",
                    "required: the primary domain (or set google.customer)",
                );
            }
            if blank(&g.admin_user) {
                problem(
                    &mut p,
                    "google.admin_user",
                    "required: a super-admin email for domain-wide delegation",
                );
            }
            secret_problem(&mut p, "google.key", &g.key, secret_known, plaintext_opt_in);
        }
    }
    let s = &cfg.sync;
    if !s.users && !s.groups {
        problem(
            &mut p,
            "sync.users",
            "neither sync.users nor sync.groups is on: nothing to sync",
        );
    }
    if s.interval_minutes != 0 && s.interval_minutes < 5 {
        problem(
            &mut p,
            "sync.interval_minutes",
            "the minimum sync interval is 5 minutes (0 turns automatic syncs off)",
        );
    }
    if s.max_removal_percent > 100 {
        problem(
            &mut p,
            "sync.max_removal_percent",
            "must be between 0 and 100",
        );
    }
    if s.max_group_removal_percent > 100 {
        problem(
            &mut p,
            "sync.max_group_removal_percent",
            "must be between 0 and 100",
        );
    }
    for e in &s.protected_emails {
        let t = e.trim();
        if !t.contains('@') || t.contains(char::is_whitespace) {
            problem(
                &mut p,
                "sync.protected_emails",
                format!("`{e}` is not an email address"),
            );
        }
    }
    if s.use_email_prefix_suffix && blank(&s.email_suffix) {
        problem(
            &mut p,
            "sync.email_suffix",
            "required when sync.use_email_prefix_suffix is on, e.g. @company.com",
        );
    }
    for (key, v) in [
        ("sync.user_filter", &s.user_filter),
        ("sync.group_filter", &s.group_filter),
    ] {
        let Some(f) = v.as_deref().filter(|f| !f.trim().is_empty()) else {
            continue;
        };
        let result = match cfg.directory.kind {
            Some(DirectoryType::Ldap) | None => check_ldap_filter(f),
            Some(kind) => check_cloud_filter(kind, key == "sync.user_filter", f),
        };
        if let Err(e) = result {
            problem(&mut p, key, e);
        }
    }
    p
}

/// The cloud filter language: `keyword:values` then `|` and the vendor's query. An unknown
/// keyword would silently mean "no filter" upstream; here it is an error.
pub fn check_cloud_filter(kind: DirectoryType, users: bool, f: &str) -> Result<(), String> {
    let set = f.split('|').next().unwrap_or_default();
    if set.trim().is_empty() {
        return Ok(());
    }
    let parts: Vec<&str> = set.split(':').collect();
    if parts.len() != 2 {
        return Err(format!(
            "expected `include:a,b` or `exclude:a,b` before any `|`, not `{}`",
            set.trim()
        ));
    }
    let keyword = parts[0].trim().to_lowercase();
    let mut allowed = vec!["include", "exclude"];
    if kind == DirectoryType::Entra && users {
        allowed.extend(["includegroup", "excludegroup"]);
    }
    if kind == DirectoryType::Entra && !users {
        // upstream's group filter keywords for administrative units
        allowed.extend(["includeadministrativeunit", "excludeadministrativeunit"]);
    }
    if allowed.contains(&keyword.as_str()) {
        Ok(())
    } else {
        Err(format!(
            "unknown filter keyword `{}`: use {}",
            parts[0].trim(),
            allowed.join(", ")
        ))
    }
}

/// A secret key's problem: a literal secret in the file without the opt-in, or missing.
fn secret_problem(
    p: &mut Vec<Problem>,
    key: &str,
    value: &Option<String>,
    known: bool,
    plaintext_opt_in: bool,
) {
    match value {
        Some(v) if SecretRef::parse(v).is_none() && !plaintext_opt_in => problem(
            p,
            key,
            format!(
                "config.toml holds a plaintext secret; move it to the secret store with \
                 `config set {key}`, use env:NAME or file:PATH, or opt in with \
                 DIRECTORY_CONNECTOR_PLAINTEXT_SECRETS=true"
            ),
        ),
        Some(_) => {}
        None if !known => problem(
            p,
            key,
            format!("not set: run `config set {key}` (prompts) or set it to env:NAME or file:PATH"),
        ),
        None => {}
    }
}

fn validate_ldap(cfg: &Config, secret_known: bool, plaintext_opt_in: bool, p: &mut Vec<Problem>) {
    let l = &cfg.ldap;
    if blank(&l.hostname) {
        problem(p, "ldap.hostname", "required: the LDAP server's host name");
    }
    if l.port == Some(0) {
        problem(p, "ldap.port", "must be between 1 and 65535");
    }
    if blank(&l.root_path) {
        problem(
            p,
            "ldap.root_path",
            "required: the base DN, e.g. dc=company,dc=com",
        );
    }
    if blank(&l.username) {
        problem(
            p,
            "ldap.username",
            "required: the DN (or DOMAIN\\user) to bind as",
        );
    }
    secret_problem(
        p,
        "ldap.password",
        &l.password,
        secret_known,
        plaintext_opt_in,
    );
    if l.page_size == 0 && l.paged_search {
        problem(p, "ldap.page_size", "must be at least 1");
    }
    if l.timeout_seconds == 0 {
        problem(p, "ldap.timeout_seconds", "must be at least 1");
    }
    if l.member_range_size == 0 {
        problem(p, "ldap.member_range_size", "must be at least 1");
    }
    match (&l.client_cert_file, &l.client_key_file) {
        (Some(_), None) => problem(
            p,
            "ldap.client_key_file",
            "required with ldap.client_cert_file: the certificate's private key",
        ),
        (None, Some(_)) => problem(
            p,
            "ldap.client_cert_file",
            "required with ldap.client_key_file: the client certificate",
        ),
        _ => {}
    }
    if l.client_cert_file.is_some() && l.encryption == Encryption::None {
        problem(
            p,
            "ldap.client_cert_file",
            "a client certificate needs ldap.encryption = starttls or ldaps",
        );
    }
    if (l.deleted_objects || l.in_chain_membership) && !l.ad {
        let key = if l.deleted_objects {
            "ldap.deleted_objects"
        } else {
            "ldap.in_chain_membership"
        };
        problem(p, key, "only for Active Directory: set ldap.ad = true");
    }
}

/// A light syntax check of an LDAP filter: parentheses balance and it is wrapped in them.
pub fn check_ldap_filter(f: &str) -> Result<(), String> {
    let f = f.trim();
    if !f.starts_with('(') || !f.ends_with(')') {
        return Err(format!(
            "an LDAP filter must be in parentheses, e.g. (cn=Sales*): `{f}`"
        ));
    }
    let mut depth: i64 = 0;
    let mut escaped = false;
    for c in f.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!("unbalanced parentheses in LDAP filter `{f}`"));
                }
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced parentheses in LDAP filter `{f}`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = parse("[ldap]\nhostname = \"x\"\nportt = 1\n").unwrap_err();
        assert!(
            e.0.contains("ldap.portt") && e.0.contains("unknown field"),
            "{}",
            e.0
        );
        let e = parse("[sync]\nusers = \"yes\"\n").unwrap_err();
        assert!(e.0.contains("sync.users"), "{}", e.0);
        let e = parse("[ldap]\nencryption = \"tls\"\n").unwrap_err();
        assert!(e.0.contains("ldap.encryption"), "{}", e.0);
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
            assert!(e.downcast_ref::<ConfigError>().is_some(), "{k}: {e}");
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
    fn urls_are_normalized() {
        assert_eq!(
            normalize_url(" vault.example.com/ "),
            "https://vault.example.com"
        );
        assert_eq!(normalize_url("http://x:8080//"), "http://x:8080");
    }
}
