//! Switching from the official Bitwarden Directory Connector ("bwdc"): `import-bwdc` reads its
//! `data.json` (state version 8, the older flat layouts 5–7 and the account layout of 3–4) and
//! its secrets (inline in plaintext mode, else its keychain entries), maps every setting onto
//! this project's config keys, and reports what was imported, what was not and why. Upstream's
//! files and keychain entries are only read, never changed.
//!
//! A secret data.json keeps in the keychain (`[STORED SECURELY]`) that cannot be read fails the
//! whole import before anything is written. The secrets are stored, then config.toml is
//! written; a failure on the way puts the secret store back as it was. With `--force` the
//! secrets an import sets that this import does not are removed.

mod source;

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

use crate::config;
use crate::connector::{KEY_CLIENT_ID, KEY_CLIENT_SECRET};
use crate::errors::Failure;
use crate::secrets::SecretStore;

pub use source::{Layout, Source, read_source};

/// The official connector's keychain service name.
pub const UPSTREAM_SERVICE: &str = "Bitwarden Directory Connector";
/// What upstream writes in data.json in place of a secret kept in the keychain.
pub const STORED_SECURELY: &str = "[STORED SECURELY]";

/// The official connector's data directory: `BITWARDENCLI_CONNECTOR_APPDATA_DIR`, then
/// `BITWARDEN_CONNECTOR_APPDATA_DIR`, then the platform folder (Linux
/// `$XDG_CONFIG_HOME/Bitwarden Directory Connector` or `~/.config/…`, macOS
/// `~/Library/Application Support/…`, Windows `%APPDATA%\…`).
pub fn default_upstream_dir() -> Option<PathBuf> {
    for var in [
        "BITWARDENCLI_CONNECTOR_APPDATA_DIR",
        "BITWARDEN_CONNECTOR_APPDATA_DIR",
    ] {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            return Some(PathBuf::from(v));
        }
    }
    directories::BaseDirs::new().map(|d| d.config_dir().join("Bitwarden Directory Connector"))
}

/// The largest data.json read: upstream's files are a few kilobytes.
pub const MAX_DATA_JSON_BYTES: u64 = 16 * 1024 * 1024;

/// The secrets an import can set; `--force` removes those the new import does not set.
pub const IMPORTED_SECRET_KEYS: &[&str] = &[
    "ldap.password",
    "entra.key",
    "google.key",
    "okta.token",
    "onelogin.client_secret",
    KEY_CLIENT_ID,
    KEY_CLIENT_SECRET,
];

/// Where upstream's secrets are read from in secure mode.
pub trait UpstreamKeychain {
    /// The raw (JSON-encoded) value of an account of the `Bitwarden Directory Connector`
    /// service; `Ok(None)` when there is no such entry.
    fn get(&self, account: &str) -> anyhow::Result<Option<String>>;
    /// Where the accounts were looked for, for messages.
    fn location(&self, accounts: &[String]) -> String {
        format!(
            "the keychain: service `{UPSTREAM_SERVICE}`, account {}",
            accounts
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(" or ")
        )
    }
}

/// The OS keychain, read the way the official connector wrote it (keytar's layout, see
/// [`crate::secrets::read_keytar_secret`]).
pub struct OsKeychain;

impl UpstreamKeychain for OsKeychain {
    fn get(&self, account: &str) -> anyhow::Result<Option<String>> {
        match crate::secrets::read_keytar_secret(UPSTREAM_SERVICE, account)? {
            None => Ok(None),
            Some(bytes) => Ok(Some(keychain_text(&bytes).ok_or_else(|| {
                anyhow::anyhow!("the entry is neither UTF-16 nor UTF-8 text")
            })?)),
        }
    }
    fn location(&self, accounts: &[String]) -> String {
        crate::secrets::keytar_location(UPSTREAM_SERVICE, accounts)
    }
}

/// The text of a keychain entry: Bitwarden's `desktop_core` writes UTF-16 on Windows, keytar
/// (and every platform but Windows) UTF-8. The values are JSON, so the reading that parses as
/// JSON wins (UTF-8 text read as UTF-16 never does: its first unit is `"` plus a non-zero
/// byte); else the first that is text at all.
fn keychain_text(bytes: &[u8]) -> Option<String> {
    let utf16 = bytes
        .len()
        .is_multiple_of(2)
        .then(|| {
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        })
        .flatten();
    let utf8 = std::str::from_utf8(bytes).ok().map(str::to_string);
    let is_json = |s: &String| serde_json::from_str::<Value>(s).is_ok();
    match (utf16, utf8) {
        (Some(w), _) if is_json(&w) => Some(w),
        (_, Some(n)) => Some(n),
        (w, None) => w,
    }
}

/// What to import and how.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// upstream's data directory or its `data.json`; default [`default_upstream_dir`].
    pub path: Option<PathBuf>,
    /// Print the resulting config.toml, write nothing.
    pub dry_run: bool,
    /// Import into a data directory that is already configured.
    pub force: bool,
}

/// One imported setting.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Setting {
    pub key: String,
    pub value: String,
    /// Where in data.json it came from.
    pub from: String,
}

/// A secret and what became of it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SecretOutcome {
    /// This project's key (`ldap.password`, `bitwarden.client_secret`, …).
    pub key: String,
    /// data.json (plaintext mode) or the keychain account it was read from.
    pub from: Option<String>,
    /// Stored in this project's secret store (false in a dry run or when it failed).
    pub stored: bool,
    /// Why it was not imported, when it was not.
    pub problem: Option<String>,
    /// The command that enters it by hand, when it was not imported.
    pub command: Option<String>,
}

/// Something in data.json that was not imported, and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Skipped {
    pub what: String,
    pub why: String,
}

/// The result of an import (also its `--json` answer).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub source: PathBuf,
    pub state_version: u64,
    pub layout: Layout,
    pub dry_run: bool,
    pub organization_id: Option<String>,
    pub settings: Vec<Setting>,
    pub secrets: Vec<SecretOutcome>,
    /// With `--force`: the secrets of the replaced configuration that this import does not set,
    /// removed from this connector's secret store (in a dry run: to be removed).
    pub removed_secrets: Vec<String>,
    pub not_imported: Vec<Skipped>,
    /// Settings changed on the way so that this connector reads the directory as upstream did.
    pub changes: Vec<String>,
    pub warnings: Vec<String>,
    pub config_toml: String,
    pub next_steps: Vec<String>,
}

/// A secret found (or not) in upstream's data.
#[derive(Debug, Clone)]
struct FoundSecret {
    key: &'static str,
    value: Option<String>,
    from: Option<String>,
    problem: Option<String>,
    /// Missing secrets of a directory that is not the selected one are not worth a line.
    required: bool,
    /// data.json says the secret is in the keychain (`[STORED SECURELY]`): missing, it fails
    /// the import (when required).
    referenced: bool,
    /// Its place in data.json.
    field: String,
}

/// The mapping of one data.json, before anything is written.
#[derive(Debug, Default)]
struct Mapping {
    settings: Vec<(String, String, String)>,
    secrets: Vec<FoundSecret>,
    skipped: Vec<Skipped>,
    changes: Vec<String>,
    warnings: Vec<String>,
    /// The root-path translation took in the user / group path.
    fold_user_path: bool,
    fold_group_path: bool,
}

impl Mapping {
    fn set(&mut self, key: &str, value: impl Into<String>, from: &str) {
        self.settings.push((key.into(), value.into(), from.into()));
    }
    fn skip(&mut self, what: impl Into<String>, why: impl Into<String>) {
        self.skipped.push(Skipped {
            what: what.into(),
            why: why.into(),
        });
    }
}

/// A non-blank string value (numbers are written as text).
fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn flag(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The type a data.json field must have.
#[derive(Clone, Copy)]
enum Kind {
    /// `true` or `false` (also as the strings "true" and "false")
    Flag,
    /// a string (a number is taken as its text)
    Text,
    /// a whole number (also as a string of digits; a blank string is not set)
    Int,
}

impl Kind {
    fn accepts(self, v: &Value) -> bool {
        match self {
            Kind::Flag => flag(Some(v)).is_some(),
            Kind::Text => matches!(v, Value::String(_) | Value::Number(_)),
            Kind::Int => match v {
                Value::Number(_) => true,
                Value::String(s) => s.trim().is_empty() || s.trim().parse::<i64>().is_ok(),
                _ => false,
            },
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Kind::Flag => "true or false",
            Kind::Text => "a string",
            Kind::Int => "a whole number",
        }
    }
}

/// How a JSON value is written, for an error (strings are cut short).
fn describe_json(v: &Value) -> String {
    match v {
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
        Value::String(s) if s.chars().count() > 40 => {
            format!("the string \"{}…\"", s.chars().take(40).collect::<String>())
        }
        Value::String(s) => format!("the string \"{s}\""),
        other => other.to_string(),
    }
}

/// The fields data.json holds whose value has the wrong type (`"sync": []`, `"groups": 1`,
/// `"users": "yes"`), each named with the type it needs. Upstream's fields are read leniently
/// otherwise (a missing or null value is its default), but a value of the wrong type is not
/// silently read as "off" or "not set": the import is refused.
fn type_problems(src: &Source) -> Vec<String> {
    use Kind::{Flag, Int, Text};
    let mut p = Vec::new();
    if let Some(v) = src.directory_type_raw.as_ref().filter(|v| !v.is_null())
        && !Int.accepts(v)
    {
        p.push(format!(
            "`directoryType` is {}, expected a whole number (0 LDAP, 1 Entra ID, 2 Google, 3 \
             Okta, 4 OneLogin)",
            describe_json(v)
        ));
    }
    let ldap: &[(&str, Kind)] = &[
        ("hostname", Text),
        ("port", Int),
        ("username", Text),
        ("rootPath", Text),
        ("domain", Text),
        ("id", Text),
        ("sslCaPath", Text),
        ("sslCertPath", Text),
        ("sslKeyPath", Text),
        ("tlsCaPath", Text),
        ("ssl", Flag),
        ("startTls", Flag),
        ("sslAllowUnauthorized", Flag),
        ("ad", Flag),
        ("pagedSearch", Flag),
        ("currentUser", Flag),
    ];
    let entra: &[(&str, Kind)] = &[
        ("tenant", Text),
        ("applicationId", Text),
        ("identityAuthority", Text),
        ("id", Text),
    ];
    let gsuite: &[(&str, Kind)] = &[
        ("domain", Text),
        ("adminUser", Text),
        ("customer", Text),
        ("clientEmail", Text),
        ("id", Text),
    ];
    let okta: &[(&str, Kind)] = &[("orgUrl", Text), ("id", Text)];
    let onelogin: &[(&str, Kind)] = &[("clientId", Text), ("region", Text), ("id", Text)];
    let sync: &[(&str, Kind)] = &[
        ("users", Flag),
        ("groups", Flag),
        ("removeDisabled", Flag),
        ("overwriteExisting", Flag),
        ("largeImport", Flag),
        ("useEmailPrefixSuffix", Flag),
        ("inviteUsersAfterProvisioning", Flag),
        ("interval", Int),
        ("userFilter", Text),
        ("groupFilter", Text),
        ("userPath", Text),
        ("groupPath", Text),
        ("userObjectClass", Text),
        ("groupObjectClass", Text),
        ("userEmailAttribute", Text),
        ("groupNameAttribute", Text),
        ("memberAttribute", Text),
        ("emailPrefixAttribute", Text),
        ("emailSuffix", Text),
        ("creationDateAttribute", Text),
        ("revisionDateAttribute", Text),
    ];
    let env: &[(&str, Kind)] = &[("base", Text), ("api", Text), ("identity", Text)];
    for (name, value, fields) in [
        (src.ldap_name.as_str(), &src.ldap, ldap),
        (src.entra_name.as_str(), &src.entra, entra),
        ("directoryGsuite", &src.gsuite, gsuite),
        ("directoryOkta", &src.okta, okta),
        (src.onelogin_name.as_str(), &src.onelogin, onelogin),
        ("sync", &src.sync, sync),
        ("environmentUrls", &src.environment_urls, env),
    ] {
        let Some(v) = value.as_ref().filter(|v| !v.is_null()) else {
            continue;
        };
        let Some(obj) = v.as_object() else {
            p.push(format!(
                "`{name}` is {}, expected an object",
                describe_json(v)
            ));
            continue;
        };
        for (field, kind) in fields {
            if let Some(v) = obj.get(*field).filter(|v| !v.is_null())
                && !kind.accepts(v)
            {
                p.push(format!(
                    "`{name}.{field}` is {}, expected {}",
                    describe_json(v),
                    kind.expected()
                ));
            }
        }
    }
    p
}

/// The command that enters a secret by hand.
pub fn manual_command(key: &str) -> String {
    match key {
        KEY_CLIENT_ID | KEY_CLIENT_SECRET => {
            "directory-connector login   (BW_CLIENTID / BW_CLIENTSECRET, or prompted)".into()
        }
        "google.key" => "directory-connector config set google.key < service-account.json".into(),
        k => format!("directory-connector config set {k}   (prompted, or piped on standard input)"),
    }
}

/// How upstream read a root path, as this project's root path and paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootTranslation {
    pub root_path: String,
    pub user_path: Option<String>,
    pub group_path: Option<String>,
    /// What changed and why (empty when nothing did).
    pub note: Option<String>,
}

/// Upstream's search base is `<path>,<root from its first dc=>`: whatever precedes the first
/// `dc=` of `rootPath` (an `ou=…`) is dropped, and a root without `dc=` leaves the path alone as
/// the base. This returns the root path and paths that make this connector search the same
/// bases.
pub fn translate_root(
    root: &str,
    user_path: Option<&str>,
    group_path: Option<&str>,
) -> RootTranslation {
    let trimmed = root.trim();
    let lower = trimmed.to_ascii_lowercase();
    let keep = |p: Option<&str>| p.map(str::to_string);
    match lower.find("dc=") {
        Some(0) => RootTranslation {
            root_path: trimmed.to_string(),
            user_path: keep(user_path),
            group_path: keep(group_path),
            note: None,
        },
        Some(i) => {
            let dc = trimmed[i..].to_string();
            let dropped = trimmed[..i].trim_end_matches([',', ' ']);
            let paths = |p: Option<&str>| match p.map(str::trim).filter(|p| !p.is_empty()) {
                Some(p) => format!("`{p},{dc}`"),
                None => format!("`{dc}`"),
            };
            RootTranslation {
                note: Some(format!(
                    "ldap.root_path: `{trimmed}` became `{dc}`. The official connector searches \
                     from the dc= part of the root path only (it drops `{dropped}`), so it read \
                     users from {} and groups from {}; this connector now searches the same \
                     places",
                    paths(user_path),
                    paths(group_path)
                )),
                root_path: dc,
                user_path: keep(user_path),
                group_path: keep(group_path),
            }
        }
        None => {
            let u = user_path.map(str::trim).filter(|p| !p.is_empty());
            let g = group_path.map(str::trim).filter(|p| !p.is_empty());
            match (u, g) {
                (Some(u), Some(g)) if !u.eq_ignore_ascii_case(g) => RootTranslation {
                    root_path: trimmed.to_string(),
                    user_path: keep(user_path),
                    group_path: keep(group_path),
                    note: Some(format!(
                        "ldap.root_path `{trimmed}` has no dc= part: the official connector then \
                         searched `{u}` for users and `{g}` for groups, which this connector \
                         cannot express with one root path; imported unchanged — check `test`"
                    )),
                },
                (Some(p), _) | (None, Some(p)) => RootTranslation {
                    root_path: p.to_string(),
                    user_path: None,
                    group_path: None,
                    note: Some(format!(
                        "ldap.root_path: `{trimmed}` has no dc= part, so the official connector \
                         searched `{p}` alone; root path set to `{p}` and the user/group paths \
                         cleared"
                    )),
                },
                (None, None) => RootTranslation {
                    root_path: trimmed.to_string(),
                    user_path: None,
                    group_path: None,
                    note: Some(format!(
                        "ldap.root_path `{trimmed}` has no dc= part and no user or group path is \
                         set: the official connector could not search this (it failed); \
                         imported unchanged"
                    )),
                },
            }
        }
    }
}

/// Decodes a keychain value: upstream stores JSON (a string with its quotes).
fn decode_keychain(raw: &str) -> Result<String, String> {
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::String(s)) if !s.is_empty() => Ok(s),
        Ok(Value::String(_)) | Ok(Value::Null) => Err("the entry is empty".into()),
        Ok(_) => Err("the entry is not a JSON string".into()),
        Err(_) => Err(
            "the entry is not JSON-encoded (the official connector ignores such entries too)"
                .into(),
        ),
    }
}

/// Finds a secret: inline in data.json (plaintext mode), else the first keychain account of
/// `accounts` that exists.
fn find_secret(
    key: &'static str,
    inline: Option<&Value>,
    inline_from: &str,
    accounts: &[String],
    keychain: &dyn UpstreamKeychain,
    required: bool,
) -> FoundSecret {
    let mut found = FoundSecret {
        key,
        value: None,
        from: None,
        problem: None,
        required,
        referenced: matches!(inline, Some(Value::String(s)) if s == STORED_SECURELY),
        field: inline_from.to_string(),
    };
    if let Some(Value::String(s)) = inline
        && !s.is_empty()
        && s != STORED_SECURELY
    {
        crate::logging::register_secret(s);
        found.value = Some(s.clone());
        found.from = Some(inline_from.into());
        return found;
    }
    let mut errors = Vec::new();
    for account in accounts {
        match keychain.get(account) {
            Ok(Some(raw)) => match decode_keychain(&raw) {
                Ok(v) => {
                    crate::logging::register_secret(&v);
                    found.value = Some(v);
                    found.from = Some(format!("keychain `{UPSTREAM_SERVICE}` / `{account}`"));
                    return found;
                }
                Err(e) => errors.push(format!("`{account}`: {e}")),
            },
            Ok(None) => {}
            Err(e) => {
                let e = format!("{e:#}");
                // the store's advice is about this project's secrets; keep the cause
                let cause = e.split(". Choose one of").next().unwrap_or(&e).to_string();
                errors.push(format!("entry `{UPSTREAM_SERVICE}` / `{account}`: {cause}"));
                break;
            }
        }
    }
    found.problem = Some(if errors.is_empty() {
        if accounts.is_empty() {
            format!("not in data.json ({inline_from})")
        } else {
            format!(
                "not in data.json and not in {}",
                keychain.location(accounts)
            )
        }
    } else {
        format!(
            "the keychain could not be read: {} (looked in {})",
            errors.join("; "),
            keychain.location(accounts)
        )
    });
    found
}

/// Keychain accounts of a directory secret: `<base>:<id>` then `<base>` (flat layouts), or
/// `<userId>_<legacy>` (account layout).
fn accounts(src: &Source, bases: &[&str], legacy: &[&str], id: Option<&str>) -> Vec<String> {
    match &src.layout {
        Layout::Account { user_id } => legacy.iter().map(|l| format!("{user_id}_{l}")).collect(),
        Layout::Flat => {
            let mut v = Vec::new();
            for b in bases {
                if let Some(id) = id.filter(|i| !i.is_empty()) {
                    v.push(format!("{b}:{id}"));
                }
                v.push((*b).to_string());
            }
            v
        }
    }
}

fn map_source(src: &Source, keychain: &dyn UpstreamKeychain) -> Mapping {
    let mut m = Mapping::default();
    let dir_type = src.directory_type;
    let selected = |n: i64| dir_type == Some(n);
    match dir_type {
        Some(n @ 0..=4) => {
            let t = ["ldap", "entra", "google", "okta", "onelogin"][n as usize];
            m.set("directory.type", t, "directoryType");
        }
        Some(n) => m.skip(
            format!("directoryType {n}"),
            "not a directory type of the official connector (0–4)",
        ),
        None => m.skip(
            "directoryType",
            "not set in data.json: choose one with `config set directory.type`",
        ),
    }
    map_ldap(src, keychain, selected(0), &mut m);
    map_entra(src, keychain, selected(1), &mut m);
    map_google(src, keychain, selected(2), &mut m);
    map_okta(src, keychain, selected(3), &mut m);
    map_onelogin(src, keychain, selected(4), &mut m);
    map_sync(src, &mut m);
    map_env(src, &mut m);
    map_api_key(src, keychain, &mut m);
    for (k, why) in src.leftovers() {
        m.skip(k, why);
    }
    m
}

#[allow(
    clippy::too_many_lines,
    reason = "one mapping per field of upstream's LDAP settings, in data.json's order: a table written as code"
)]
fn map_ldap(src: &Source, keychain: &dyn UpstreamKeychain, selected: bool, m: &mut Mapping) {
    let Some(l) = src.ldap.as_ref() else {
        return;
    };
    let f = |k: &str| l.get(k);
    let from = |k: &str| format!("{}.{k}", src.ldap_name);
    if let Some(h) = text(f("hostname")) {
        m.set("ldap.hostname", h.trim(), &from("hostname"));
    }
    if let Some(p) = text(f("port")) {
        m.set("ldap.port", p.trim(), &from("port"));
    }
    let ssl = flag(f("ssl")).unwrap_or(false);
    let start_tls = flag(f("startTls")).unwrap_or(false);
    let encryption = match (ssl, start_tls) {
        (true, false) => "ldaps",
        (true, true) => "starttls",
        (false, _) => "none",
    };
    m.set("ldap.encryption", encryption, &from("ssl/startTls"));
    if start_tls && !ssl {
        m.warnings.push(
            "startTls is on but ssl is off: the official connector used no TLS at all, and \
             neither does this import (ldap.encryption = none); set `ldap.encryption starttls` to \
             protect the connection"
                .into(),
        );
    }
    let file = |m: &mut Mapping, key: &str, field: &str| {
        if let Some(p) = text(f(field)) {
            if Path::new(p.trim()).is_file() {
                m.set(key, p.trim(), &from(field));
            } else {
                m.skip(
                    from(field),
                    format!(
                        "the file {p} does not exist (the official connector ignored it silently)"
                    ),
                );
            }
        }
    };
    match encryption {
        "ldaps" => {
            file(m, "ldap.ca_file", "sslCaPath");
            file(m, "ldap.client_cert_file", "sslCertPath");
            file(m, "ldap.client_key_file", "sslKeyPath");
            if text(f("tlsCaPath")).is_some() {
                m.skip(
                    from("tlsCaPath"),
                    "used for STARTTLS only, and this server uses LDAPS",
                );
            }
        }
        "starttls" => {
            file(m, "ldap.ca_file", "tlsCaPath");
            for k in ["sslCaPath", "sslCertPath", "sslKeyPath"] {
                if text(f(k)).is_some() {
                    m.skip(
                        from(k),
                        "used for LDAPS only, and this server uses STARTTLS",
                    );
                }
            }
        }
        _ => {
            for k in ["sslCaPath", "sslCertPath", "sslKeyPath", "tlsCaPath"] {
                if text(f(k)).is_some() {
                    m.skip(from(k), "the connection is not encrypted");
                }
            }
        }
    }
    if let Some(b) = flag(f("sslAllowUnauthorized")) {
        m.set(
            "ldap.skip_cert_verification",
            b.to_string(),
            &from("sslAllowUnauthorized"),
        );
    }
    // upstream reads the stored object as it is: a missing flag is `undefined`, i.e. off (its
    // defaults of true apply to a configuration made in its window, which saves them)
    let ad = flag(f("ad")).unwrap_or(false);
    m.set("ldap.ad", ad.to_string(), &from("ad"));
    // every search pages exactly when `pagedSearch` is on, AD or not
    let paged = flag(f("pagedSearch")).unwrap_or(false);
    m.set("ldap.paged_search", paged.to_string(), &from("pagedSearch"));
    if ad && !paged && selected {
        m.warnings.push(
            "ldap.paged_search is off, as in data.json: Active Directory refuses a search \
             without paging that finds more than 1000 entries (so did the official \
             connector's); `config set ldap.paged_search true` reads them all"
                .into(),
        );
    }
    if let Some(u) = text(f("username")) {
        m.set("ldap.username", u, &from("username"));
    }
    if let Some(root) = text(f("rootPath")) {
        let sync = src.sync.as_ref();
        let up = sync.and_then(|s| text(s.get("userPath")));
        let gp = sync.and_then(|s| text(s.get("groupPath")));
        let t = translate_root(&root, up.as_deref(), gp.as_deref());
        m.set("ldap.root_path", t.root_path.clone(), &from("rootPath"));
        if let Some(note) = t.note {
            m.changes.push(note);
        }
        m.fold_user_path = t.user_path.is_none() && up.is_some();
        m.fold_group_path = t.group_path.is_none() && gp.is_some();
    }
    if flag(f("currentUser")) == Some(true) {
        m.skip(
            from("currentUser"),
            "\"Authenticate as current system user\" is unused by the official connector too; \
             the username and password are used",
        );
    }
    if text(f("domain")).is_some() {
        m.skip(
            from("domain"),
            "not used by any query of the official connector",
        );
    }
    let id = text(f("id"));
    let acc = accounts(src, &["secretLdap"], &["ldapPassword"], id.as_deref());
    m.secrets.push(find_secret(
        "ldap.password",
        f("password"),
        &from("password"),
        &acc,
        keychain,
        selected,
    ));
}

fn map_entra(src: &Source, keychain: &dyn UpstreamKeychain, selected: bool, m: &mut Mapping) {
    let Some(e) = src.entra.as_ref() else {
        return;
    };
    let from = |k: &str| format!("{}.{k}", src.entra_name);
    if let Some(t) = text(e.get("tenant")) {
        m.set("entra.tenant", t.trim(), &from("tenant"));
    }
    if let Some(a) = text(e.get("applicationId")) {
        m.set("entra.application_id", a.trim(), &from("applicationId"));
    }
    match text(e.get("identityAuthority")).as_deref().map(str::trim) {
        None | Some("login.microsoftonline.com") => {
            m.set("entra.cloud", "public", &from("identityAuthority"))
        }
        Some("login.microsoftonline.us") => {
            m.set("entra.cloud", "government", &from("identityAuthority"))
        }
        Some(other) => m.skip(
            from("identityAuthority"),
            format!(
                "`{other}` is not one of the official connector's authorities (it refused it as \
                 \"Directory configuration incomplete.\"); set entra.cloud or entra.login_url"
            ),
        ),
    }
    let id = text(e.get("id"));
    let acc = accounts(
        src,
        &["secretEntra", "secretAzure"],
        &["entraIdKey", "entraKey", "azureKey"],
        id.as_deref(),
    );
    // upstream's order: entra with id, entra, azure with id, azure
    m.secrets.push(find_secret(
        "entra.key",
        e.get("key"),
        &from("key"),
        &acc,
        keychain,
        selected,
    ));
}

fn map_google(src: &Source, keychain: &dyn UpstreamKeychain, selected: bool, m: &mut Mapping) {
    let Some(g) = src.gsuite.as_ref() else {
        return;
    };
    let from = |k: &str| format!("directoryGsuite.{k}");
    if let Some(d) = text(g.get("domain")) {
        m.set("google.domain", d.trim(), &from("domain"));
    }
    if let Some(a) = text(g.get("adminUser")) {
        m.set("google.admin_user", a.trim(), &from("adminUser"));
    }
    if let Some(c) = text(g.get("customer")) {
        m.set("google.customer", c.trim(), &from("customer"));
    }
    let id = text(g.get("id"));
    let acc = accounts(src, &["secretGsuite"], &["gsuitePrivateKey"], id.as_deref());
    let mut found = find_secret(
        "google.key",
        g.get("privateKey"),
        &from("privateKey"),
        &acc,
        keychain,
        selected,
    );
    // this project keeps the service account's JSON key: rebuild it from its two parts
    if let Some(pem) = found.value.take() {
        match text(g.get("clientEmail")) {
            Some(email) => {
                let pem = pem.replace("\\n", "\n");
                let key = serde_json::json!({
                    "type": "service_account",
                    "client_email": email.trim(),
                    "private_key": pem.trim_start(),
                });
                let json = key.to_string();
                crate::logging::register_secret(&json);
                found.value = Some(json);
            }
            None => {
                found.problem = Some(
                    "directoryGsuite.clientEmail is missing, so the service-account key cannot \
                     be rebuilt"
                        .into(),
                );
            }
        }
    }
    m.secrets.push(found);
}

fn map_okta(src: &Source, keychain: &dyn UpstreamKeychain, selected: bool, m: &mut Mapping) {
    let Some(o) = src.okta.as_ref() else {
        return;
    };
    let from = |k: &str| format!("directoryOkta.{k}");
    if let Some(u) = text(o.get("orgUrl")) {
        let trimmed = u.trim().trim_end_matches('/');
        if trimmed != u.trim() {
            m.changes.push(format!(
                "okta.org_url: the trailing slash of `{}` was dropped (the official connector \
                 then called `…//api/v1`)",
                u.trim()
            ));
        }
        m.set("okta.org_url", trimmed, &from("orgUrl"));
    }
    let id = text(o.get("id"));
    let acc = accounts(src, &["secretOkta"], &["oktaToken"], id.as_deref());
    m.secrets.push(find_secret(
        "okta.token",
        o.get("token"),
        &from("token"),
        &acc,
        keychain,
        selected,
    ));
}

fn map_onelogin(src: &Source, keychain: &dyn UpstreamKeychain, selected: bool, m: &mut Mapping) {
    let Some(o) = src.onelogin.as_ref() else {
        return;
    };
    let from = |k: &str| format!("{}.{k}", src.onelogin_name);
    if let Some(c) = text(o.get("clientId")) {
        m.set("onelogin.client_id", c.trim(), &from("clientId"));
    }
    match text(o.get("region")).map(|r| r.trim().to_ascii_lowercase()) {
        None => m.set("onelogin.region", "us", &from("region")),
        Some(r) if r == "us" || r == "eu" => m.set("onelogin.region", r, &from("region")),
        Some(r) => m.skip(from("region"), format!("`{r}` is neither us nor eu")),
    }
    let id = text(o.get("id"));
    let acc = accounts(
        src,
        &["secretOneLogin"],
        &["oneLoginClientSecret"],
        id.as_deref(),
    );
    m.secrets.push(find_secret(
        "onelogin.client_secret",
        o.get("clientSecret"),
        &from("clientSecret"),
        &acc,
        keychain,
        selected,
    ));
}

#[allow(
    clippy::too_many_lines,
    reason = "one mapping per field of upstream's sync settings, in data.json's order: a table written as code"
)]
fn map_sync(src: &Source, m: &mut Mapping) {
    let Some(s) = src.sync.as_ref() else {
        m.skip(
            "sync",
            "not set in data.json: this connector's defaults apply",
        );
        return;
    };
    let from = |k: &str| format!("sync.{k}");
    for (field, key) in [
        ("users", "sync.users"),
        ("groups", "sync.groups"),
        ("removeDisabled", "sync.remove_disabled"),
        ("overwriteExisting", "sync.overwrite_existing"),
        ("largeImport", "sync.large_import"),
        ("useEmailPrefixSuffix", "sync.use_email_prefix_suffix"),
    ] {
        // upstream's defaults for a missing flag are false
        let v = flag(s.get(field)).unwrap_or(false);
        m.set(key, v.to_string(), &from(field));
        if field == "removeDisabled" && v {
            m.changes.push(format!(
                "sync.remove_disabled: a disabled user is revoked first, not removed, and removed \
                 only after {} days still disabled (sync.remove_revoked_after_days; the official \
                 connector removes at once, set it to 0 for that)",
                crate::config::DEFAULT_REMOVE_REVOKED_AFTER_DAYS
            ));
        }
    }
    match flag(s.get("inviteUsersAfterProvisioning")) {
        Some(v) => m.set(
            "sync.invite_users_after_provisioning",
            v.to_string(),
            &from("inviteUsersAfterProvisioning"),
        ),
        None => {
            // the 7 → 8 migration keeps the old "always invite" behaviour
            let v = src.state_version < 8;
            m.set(
                "sync.invite_users_after_provisioning",
                v.to_string(),
                &from("inviteUsersAfterProvisioning"),
            );
            if v {
                m.changes.push(format!(
                    "sync.invite_users_after_provisioning: true, as the official connector's \
                     migration from state version {} sets it (the old \"always invite\" behaviour)",
                    src.state_version
                ));
            }
        }
    }
    match s.get("interval").map(|v| (v, int(Some(v)))) {
        // null, missing or ≤ 0: upstream's window stops its automatic syncs (its CLI ignores
        // the interval). This connector's 0 would make the service refuse to start, and its
        // window polls every 5 minutes at least anyway: its default applies.
        None | Some((Value::Null, _)) | Some((_, Some(i64::MIN..=0))) => {
            let was = match s.get("interval") {
                None => "not set".to_string(),
                Some(v) => v.to_string(),
            };
            m.skip(
                from("interval"),
                format!(
                    "{was}: no automatic syncs in the official connector's window (its CLI \
                     ignores it); this connector's default (sync.interval_minutes = 5) applies \
                     to the service and the window's Start Sync — scheduled `sync` runs (cron) \
                     work as before"
                ),
            );
        }
        Some((v, i)) => {
            let interval = i.unwrap_or(5);
            let mapped = match interval {
                1..=4 => 5,
                i if i > 10_080 => 10_080,
                i => i,
            };
            if mapped != interval || i.is_none() {
                m.changes.push(format!(
                    "sync.interval_minutes: {v} became {mapped} ({})",
                    if i.is_none() {
                        "not a number; the official connector's default"
                    } else if mapped == 5 {
                        "the minimum, as the official connector saves it"
                    } else {
                        "the longest interval this connector accepts"
                    }
                ));
            }
            m.set(
                "sync.interval_minutes",
                mapped.to_string(),
                &from("interval"),
            );
        }
    }
    let ldap_only = src.directory_type.is_none_or(|t| t == 0);
    for (field, key, ldap) in [
        ("userFilter", "sync.user_filter", false),
        ("groupFilter", "sync.group_filter", false),
        ("userPath", "sync.user_path", true),
        ("groupPath", "sync.group_path", true),
        ("userObjectClass", "sync.user_object_class", true),
        ("groupObjectClass", "sync.group_object_class", true),
        ("userEmailAttribute", "sync.user_email_attribute", true),
        ("groupNameAttribute", "sync.group_name_attribute", true),
        ("memberAttribute", "sync.member_attribute", true),
        ("emailPrefixAttribute", "sync.email_prefix_attribute", true),
        ("emailSuffix", "sync.email_suffix", false),
    ] {
        if let Some(v) = text(s.get(field)) {
            if ldap && !ldap_only {
                m.skip(
                    from(field),
                    "an LDAP setting, and the directory is not LDAP",
                );
                continue;
            }
            if (field == "userPath" && m.fold_user_path)
                || (field == "groupPath" && m.fold_group_path)
            {
                m.skip(from(field), "folded into ldap.root_path (see the changes)");
                continue;
            }
            m.set(key, v, &from(field));
        }
    }
    if text(s.get("creationDateAttribute")).is_some() {
        m.skip(
            from("creationDateAttribute"),
            "stored but never used by the official connector",
        );
    }
    if text(s.get("revisionDateAttribute")).is_some() {
        m.skip(
            from("revisionDateAttribute"),
            "upstream's incremental LDAP queries: this connector reads the whole directory \
             each run and plans the changes itself",
        );
    }
}

fn map_env(src: &Source, m: &mut Mapping) {
    let Some(e) = src.environment_urls.as_ref() else {
        return;
    };
    for (field, key) in [
        ("base", "server.url"),
        ("api", "server.api_url"),
        ("identity", "server.identity_url"),
    ] {
        if let Some(v) = text(e.get(field)) {
            m.set(key, v.trim(), &format!("environmentUrls.{field}"));
        }
    }
    if let Some(obj) = e.as_object() {
        for (k, v) in obj {
            if !["base", "api", "identity"].contains(&k.as_str()) && text(Some(v)).is_some() {
                m.skip(
                    format!("environmentUrls.{k}"),
                    "not used by a directory connector (only the API and identity URLs are)",
                );
            }
        }
    }
}

fn map_api_key(src: &Source, keychain: &dyn UpstreamKeychain, m: &mut Mapping) {
    let (id_accounts, secret_accounts) = match &src.layout {
        Layout::Flat => (
            vec!["apiKeyClientId".to_string()],
            vec!["apiKeyClientSecret".to_string()],
        ),
        Layout::Account { user_id } => (
            vec![format!("{user_id}_apiKeyClientId")],
            vec![format!("{user_id}_apiKeyClientSecret")],
        ),
    };
    let mut id = find_secret(
        KEY_CLIENT_ID,
        src.api_client_id.as_ref(),
        &src.api_client_id_from,
        &id_accounts,
        keychain,
        true,
    );
    let mut secret = find_secret(
        KEY_CLIENT_SECRET,
        src.api_client_secret.as_ref(),
        &src.api_client_secret_from,
        &secret_accounts,
        keychain,
        true,
    );
    if let Some(client_id) = id.value.clone() {
        let key_org = client_id
            .trim()
            .strip_prefix("organization.")
            .map(str::to_ascii_lowercase);
        match (&src.organization_id, key_org) {
            (_, None) => {
                let why = format!(
                    "`{}` is not an organization API key (organization.<id>)",
                    client_id.trim()
                );
                id.problem = Some(why.clone());
                secret.problem.get_or_insert(why);
                id.value = None;
                secret.value = None;
            }
            (Some(org), Some(k)) if !org.trim().eq_ignore_ascii_case(&k) => {
                let why = format!(
                    "the API key belongs to organization {k}, but data.json's organizationId is \
                     {}; log in with the key of the organization you sync",
                    org.trim()
                );
                id.problem = Some(why.clone());
                secret.problem = Some(why);
                id.value = None;
                secret.value = None;
            }
            _ => {}
        }
    }
    m.secrets.push(id);
    m.secrets.push(secret);
}

/// Whether this connector's data directory already holds a configuration or an API key.
fn configured(data_dir: &Path, store: &dyn SecretStore) -> anyhow::Result<Option<String>> {
    let path = config::config_path(data_dir);
    if let Ok(text) = std::fs::read_to_string(&path)
        && text.lines().any(|l| {
            let l = l.trim();
            !l.is_empty() && !l.starts_with('#')
        })
    {
        return Ok(Some(format!("{} has settings", path.display())));
    }
    if matches!(store.get(KEY_CLIENT_ID), Ok(Some(_))) {
        return Ok(Some(format!(
            "an API key is stored in {}",
            store.describe()
        )));
    }
    Ok(None)
}

/// Reads upstream's data, maps it and (unless a dry run) writes config.toml and the secrets.
#[allow(
    clippy::too_many_lines,
    reason = "the import's steps in order (read, check, map, write config.toml, store the secrets, report), each a few lines over the same mapping and report"
)]
pub fn import(
    opts: &ImportOptions,
    data_dir: &Path,
    store: &dyn SecretStore,
    keychain: &dyn UpstreamKeychain,
) -> anyhow::Result<Report> {
    let path = match &opts.path {
        Some(p) => p.clone(),
        None => default_upstream_dir().ok_or_else(|| {
            Failure::Config(
                "cannot find the official connector's data directory (no home directory); give \
                 its path: `import-bwdc PATH`"
                    .into(),
            )
        })?,
    };
    let src = read_source(&path)?;
    let wrong = type_problems(&src);
    if !wrong.is_empty() {
        return Err(Failure::Config(format!(
            "import-bwdc: {} has values of the wrong type, so nothing was imported (the \
             official connector would have read them as off or not set): {}",
            src.path.display(),
            wrong.join("; ")
        ))
        .into());
    }
    if !opts.dry_run
        && !opts.force
        && let Some(why) = configured(data_dir, store)?
    {
        return Err(Failure::Config(format!(
            "import-bwdc: the data directory {} is already configured ({why}); nothing was \
             imported. Use --force to replace its configuration, --dry-run to see the result, \
             or --data-dir for another directory",
            data_dir.display()
        ))
        .into());
    }
    let mapping = map_source(&src, keychain);
    let unreadable: Vec<&FoundSecret> = mapping
        .secrets
        .iter()
        .filter(|s| s.required && s.referenced && s.value.is_none())
        .collect();
    if !unreadable.is_empty() {
        return Err(missing_secrets(&src, &unreadable, opts.dry_run));
    }

    // every setting on its own: a value this connector refuses is reported, not fatal
    let cfg_path = config::config_path(data_dir);
    let mut text = String::new();
    let mut settings = Vec::new();
    let mut not_imported = mapping.skipped.clone();
    let mut warnings = mapping.warnings.clone();
    for (key, value, from) in &mapping.settings {
        match config::apply_changes(&cfg_path, &text, &[(key.as_str(), Some(value.as_str()))]) {
            Ok((t, _, w)) => {
                text = t;
                warnings.extend(w);
                settings.push(Setting {
                    key: key.clone(),
                    value: value.clone(),
                    from: from.clone(),
                });
            }
            Err(e) => not_imported.push(Skipped {
                what: format!("{from} → {key}"),
                why: format!("{e:#}"),
            }),
        }
    }
    let text = format!(
        "# Imported from the official Bitwarden Directory Connector ({}, state version {})\n{text}",
        src.path.display(),
        src.state_version
    );

    // the secrets to store, and (with --force) the earlier ones this import does not set
    let values: Vec<(&'static str, &str)> = mapping
        .secrets
        .iter()
        .filter_map(|s| s.value.as_deref().map(|v| (s.key, v)))
        .collect();
    let mut removed = Vec::new();
    if opts.force {
        for key in IMPORTED_SECRET_KEYS {
            if values.iter().any(|(k, _)| k == key) {
                continue;
            }
            let held = store
                .get(key)
                .with_context(|| format!("import-bwdc: reading `{key}` in {}", store.describe()))?;
            if held.is_some() {
                removed.push((*key).to_string());
            }
        }
    }
    if !opts.dry_run {
        write_all(data_dir, &text, store, &values, &removed)?;
    }

    let mut secrets = Vec::new();
    for s in &mapping.secrets {
        if s.value.is_none() && !s.required && s.problem.is_some() {
            continue;
        }
        let mut out = SecretOutcome {
            key: s.key.into(),
            from: s.from.clone(),
            stored: s.value.is_some() && !opts.dry_run,
            problem: s.problem.clone(),
            command: None,
        };
        if out.problem.is_some() {
            out.command = Some(manual_command(s.key));
        }
        secrets.push(out);
    }
    let mut next_steps = Vec::new();
    for s in secrets.iter().filter(|s| s.problem.is_some()) {
        if let Some(c) = &s.command
            && !next_steps.contains(c)
        {
            next_steps.push(c.clone());
        }
    }
    if opts.dry_run {
        next_steps.push("directory-connector import-bwdc (without --dry-run) to import".into());
    }
    next_steps.push(
        "directory-connector test   (lists the users and groups a sync would send; pushes \
         nothing)"
            .into(),
    );
    Ok(Report {
        source: src.path.clone(),
        state_version: src.state_version,
        layout: src.layout.clone(),
        dry_run: opts.dry_run,
        organization_id: src.organization_id.clone(),
        settings,
        secrets,
        removed_secrets: removed,
        not_imported,
        changes: mapping.changes,
        warnings,
        config_toml: text,
        next_steps,
    })
}

/// The error for secrets data.json keeps in the keychain that could not be read: each with its
/// place in data.json and where it was looked for.
fn missing_secrets(src: &Source, missing: &[&FoundSecret], dry_run: bool) -> anyhow::Error {
    let list: Vec<String> = missing
        .iter()
        .map(|s| {
            format!(
                "  - {} ({} is \"{STORED_SECURELY}\"): {}",
                s.key,
                s.field,
                s.problem.as_deref().unwrap_or("not found")
            )
        })
        .collect();
    Failure::Config(format!(
        "import-bwdc: {}: {} keeps {} in the official connector's keychain, and {} be read:\n{}\n\
         Run the import as the user, and in the session, the official connector ran in (its \
         keychain unlocked), or configure this connector by hand: {}.",
        if dry_run {
            "the import would fail"
        } else {
            "nothing was imported"
        },
        src.path.display(),
        if missing.len() == 1 {
            "a secret"
        } else {
            "secrets"
        },
        if missing.len() == 1 {
            "it cannot"
        } else {
            "they cannot"
        },
        list.join("\n"),
        missing
            .iter()
            .map(|s| manual_command(s.key))
            .collect::<Vec<_>>()
            .join("; ")
    ))
    .into()
}

/// Stores the secrets, removes `removed`, then writes config.toml. A failure on the way puts
/// every secret back as it was, and config.toml is then not written.
fn write_all(
    data_dir: &Path,
    text: &str,
    store: &dyn SecretStore,
    values: &[(&str, &str)],
    removed: &[String],
) -> anyhow::Result<()> {
    let changes: Vec<(&str, Option<&str>)> = values
        .iter()
        .map(|(k, v)| (*k, Some(*v)))
        .chain(removed.iter().map(|k| (k.as_str(), None)))
        .collect();
    let mut before: Vec<(&str, Option<String>)> = Vec::new();
    let mut result = Ok(());
    for (key, value) in &changes {
        let step = store
            .get(key)
            .and_then(|old| {
                before.push((key, old));
                match value {
                    Some(v) => store.set(key, v),
                    None => store.delete(key),
                }
            })
            .with_context(|| {
                format!(
                    "import-bwdc: {} `{key}` in {}",
                    if value.is_some() {
                        "storing"
                    } else {
                        "removing the replaced configuration's"
                    },
                    store.describe()
                )
            });
        if let Err(e) = step {
            result = Err(e);
            break;
        }
    }
    if result.is_ok() {
        let cfg_path = config::config_path(data_dir);
        result = config::save_text(data_dir, text)
            .with_context(|| format!("import-bwdc: writing {}", cfg_path.display()));
    }
    let Err(e) = result else {
        return Ok(());
    };
    let mut not_restored = Vec::new();
    for (key, old) in before.iter().rev() {
        let undo = match old {
            Some(v) => store.set(key, v),
            None => store.delete(key),
        };
        if undo.is_err() {
            not_restored.push(format!("`{key}`"));
        }
    }
    Err(if not_restored.is_empty() {
        e.context("nothing was imported (the secret store is as it was)")
    } else {
        e.context(format!(
            "nothing was imported, but {} could not be put back in {}: check them with \
             `config get`",
            not_restored.join(", "),
            store.describe()
        ))
    })
}

/// The summary in words (the window shows the same lines).
pub fn summary(r: &Report, store: &str) -> Vec<String> {
    let mut l = Vec::new();
    let layout = match &r.layout {
        Layout::Flat => "flat layout".to_string(),
        Layout::Account { user_id } => format!("account layout, account {user_id}"),
    };
    if r.dry_run {
        l.push(format!(
            "Dry run: nothing was written. From {} (state version {}, {layout}) the configuration \
             would be:",
            r.source.display(),
            r.state_version
        ));
        l.push(String::new());
        l.extend(r.config_toml.trim_end().lines().map(str::to_string));
        l.push(String::new());
    } else {
        l.push(format!(
            "Imported from {} (state version {}, {layout}). The official connector's files were \
             only read.",
            r.source.display(),
            r.state_version
        ));
    }
    l.push(format!("Settings ({}):", r.settings.len()));
    for s in &r.settings {
        l.push(format!("  {} = {}   (from {})", s.key, s.value, s.from));
    }
    l.push("Secrets:".into());
    if r.secrets.is_empty() {
        l.push("  none found".into());
    }
    for s in &r.secrets {
        let from = s.from.as_deref().unwrap_or("-");
        match (&s.problem, s.stored) {
            (None, true) => l.push(format!("  {}: stored in {store} (from {from})", s.key)),
            (None, false) => l.push(format!(
                "  {}: found (from {from}); would be stored in {store}",
                s.key
            )),
            (Some(p), _) => {
                l.push(format!("  {}: NOT imported: {p}", s.key));
                if let Some(c) = &s.command {
                    l.push(format!("      enter it with: {c}"));
                }
            }
        }
    }
    if !r.removed_secrets.is_empty() {
        l.push(format!(
            "{} from {store} (--force: the replaced configuration's, not set by this import): {}",
            if r.dry_run {
                "Would be removed"
            } else {
                "Removed"
            },
            r.removed_secrets.join(", ")
        ));
    }
    if !r.changes.is_empty() {
        l.push(
            "Changed so that this connector reads the directory as the official one did:".into(),
        );
        for c in &r.changes {
            l.push(format!("  - {c}"));
        }
    }
    if !r.warnings.is_empty() {
        l.push("Warnings:".into());
        for w in &r.warnings {
            l.push(format!("  - {w}"));
        }
    }
    if !r.not_imported.is_empty() {
        l.push("Not imported:".into());
        for s in &r.not_imported {
            l.push(format!("  - {}: {}", s.what, s.why));
        }
    }
    l.push("Next steps:".into());
    for (i, n) in r.next_steps.iter().enumerate() {
        l.push(format!("  {}. {n}", i + 1));
    }
    l
}

#[cfg(test)]
mod tests;
