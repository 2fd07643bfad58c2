//! The CLI side of switching from the official connector: `import-bwdc` and its summary, and
//! bwdc compatibility (upstream's output shapes and exit codes, its `config <setting> [value]`).

use std::path::Path;

use super::output::Output;
use crate::bwdc::{ImportOptions, OsKeychain, import, summary};
use crate::connector::Connector;
use crate::errors::Failure;

/// Runs `import-bwdc` and prints its summary (or its JSON).
pub(super) fn import_command(
    opts: &ImportOptions,
    data_dir: &Path,
    out: &Output,
) -> anyhow::Result<i32> {
    let conn = Connector::open(data_dir)?;
    let report = import(opts, data_dir, conn.secrets.as_ref(), &OsKeychain)?;
    if out.json {
        let mut v = serde_json::to_value(&report)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("success".into(), true.into());
        }
        out.json_value(&v);
    } else {
        for line in summary(&report, &conn.secrets.describe()) {
            out.line(&line);
        }
    }
    Ok(0)
}

/// Upstream's `config <setting> [value]` (setting names in any case): this connector's key and
/// value. `server` is `server.url`, `directory 0`–`4` is `directory.type` ldap, entra, google,
/// okta or onelogin, the secrets are this connector's secret keys (prompted or piped, or an
/// env:/file: reference: never on the command line), and this connector's own keys work too.
pub(super) fn upstream_setting(args: &[String]) -> anyhow::Result<(String, Option<String>)> {
    let (setting, value) = match args {
        [s] => (s.as_str(), None),
        [s, v] => (s.as_str(), Some(v.clone())),
        _ => {
            return Err(Failure::Config(format!(
                "`config {}`: give one setting and at most one value, e.g. `config server \
                 https://bitwarden.company.com` (or `config set KEY VALUE`)",
                args.join(" ")
            ))
            .into());
        }
    };
    let key = match setting.to_lowercase().as_str() {
        "server" => "server.url",
        "directory" => {
            let t = match value.as_deref().map(str::trim) {
                Some("0") => "ldap",
                Some("1") => "entra",
                Some("2") => "google",
                Some("3") => "okta",
                Some("4") => "onelogin",
                _ => {
                    return Err(Failure::Config(
                        "Invalid directory type value. (0 LDAP, 1 Entra ID, 2 Google, 3 Okta, \
                         4 OneLogin)"
                            .into(),
                    )
                    .into());
                }
            };
            return Ok(("directory.type".into(), Some(t.into())));
        }
        "ldap.password" => "ldap.password",
        "gsuite.key" => "google.key",
        "entra.key" | "azure.key" => "entra.key",
        "okta.token" => "okta.token",
        "onelogin.secret" => "onelogin.client_secret",
        "sync.inviteusersafterprovisioning" => "sync.invite_users_after_provisioning",
        _ => match crate::config::key_info(setting) {
            Ok((key, _)) => key,
            Err(_) => {
                return Err(Failure::Config(format!(
                    "Unknown setting `{setting}`. bwdc's settings are server, directory, \
                     ldap.password, gsuite.key, entra.key, okta.token, onelogin.secret and \
                     sync.inviteUsersAfterProvisioning; this connector's keys are listed by \
                     `config keys`"
                ))
                .into());
            }
        },
    };
    Ok((key.to_string(), value))
}

/// Upstream's global flags (`--response`, `--raw`, `--pretty`, `--quiet`, `--cleanexit`,
/// `--nointeraction`, or their `BW_*` variables): with any of the first five, or when the
/// program runs under the name `bwdc`, the upstream commands answer in upstream's shapes.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Compat {
    pub response: bool,
    pub raw: bool,
    pub pretty: bool,
    pub quiet: bool,
    pub cleanexit: bool,
    /// Started as `bwdc` (a link or copy under that name).
    pub as_bwdc: bool,
}

impl Compat {
    pub(super) fn from_cli(cli: &super::Cli) -> Compat {
        let as_bwdc = started_as_bwdc();
        Compat {
            response: cli.response,
            raw: cli.raw,
            pretty: cli.pretty,
            quiet: cli.quiet,
            cleanexit: cli.cleanexit,
            as_bwdc,
        }
    }

    /// The flags and variables as written, for a command line that could not be parsed (its
    /// usage error is then answered in upstream's shape too).
    pub(super) fn from_raw_args() -> Compat {
        let args: Vec<std::ffi::OsString> = std::env::args_os()
            .skip(1)
            .take_while(|a| a != "--")
            .collect();
        let on = |flag: &str, var: &str| {
            args.iter().any(|a| a == flag)
                || std::env::var(var).is_ok_and(|v| {
                    !matches!(
                        v.trim().to_ascii_lowercase().as_str(),
                        "" | "0" | "false" | "no" | "off"
                    )
                })
        };
        Compat {
            response: on("--response", "BW_RESPONSE"),
            raw: on("--raw", "BW_RAW"),
            pretty: on("--pretty", "BW_PRETTY"),
            quiet: on("--quiet", "BW_QUIET"),
            cleanexit: on("--cleanexit", "BW_CLEANEXIT"),
            as_bwdc: started_as_bwdc(),
        }
    }

    /// Whether upstream's output shapes apply.
    pub(super) fn active(&self) -> bool {
        self.response || self.raw || self.pretty || self.quiet || self.cleanexit || self.as_bwdc
    }

    fn json(&self, v: &serde_json::Value) -> String {
        if self.pretty {
            serde_json::to_string_pretty(v).unwrap_or_default()
        } else {
            v.to_string()
        }
    }
}

/// Whether the program runs under the name `bwdc` (a link or copy).
fn started_as_bwdc() -> bool {
    std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().to_lowercase()))
        .is_some_and(|s| s == "bwdc")
}

/// An upstream response payload.
pub(super) enum Payload {
    /// `{"object":"message","title","message"}`; printed as title, then message.
    Message { title: String, message: String },
    /// `{"object":"string","data"}`; printed as is (nothing when `None`).
    Str(Option<String>),
    /// Any other object, printed as JSON.
    Json(serde_json::Value),
}

impl Payload {
    fn to_json(&self) -> serde_json::Value {
        match self {
            Payload::Message { title, message } => serde_json::json!({
                "noColor": false, "object": "message", "title": title, "message": message,
            }),
            Payload::Str(s) => serde_json::json!({"object": "string", "data": s}),
            Payload::Json(v) => v.clone(),
        }
    }
}

/// Prints a success in upstream's shape. Returns the exit code (0).
fn succeed(c: &Compat, p: &Payload) -> i32 {
    if c.quiet {
        return 0;
    }
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    let text = if c.response {
        Some(c.json(&serde_json::json!({"success": true, "data": p.to_json()})))
    } else {
        match p {
            // only `update` has a raw field upstream; other messages print nothing with --raw
            Payload::Message { .. } if c.raw => None,
            Payload::Message { title, message } if message.is_empty() => {
                (!title.is_empty()).then(|| title.clone())
            }
            Payload::Message { title, message } => Some(format!("{title}\n{message}")),
            Payload::Str(s) => s.clone(),
            Payload::Json(v) => Some(c.json(v)),
        }
    };
    if let Some(t) = text {
        let _ = writeln!(out, "{t}");
    }
    0
}

/// Prints a failure in upstream's shape: the envelope on stdout with `--response`, else the
/// message on stderr (nothing with `--quiet`). Exit code 1, or 0 with `--cleanexit`.
pub(super) fn fail(c: &Compat, msg: &str) -> i32 {
    use std::io::Write;
    if c.response {
        let _ = writeln!(
            std::io::stdout().lock(),
            "{}",
            c.json(&serde_json::json!({"success": false, "message": msg}))
        );
    } else if !c.quiet {
        let _ = writeln!(std::io::stderr().lock(), "{msg}");
    }
    if c.cleanexit { 0 } else { 1 }
}

/// upstream's `test` object: groups, enabled, disabled and deleted users, sorted by display
/// name.
pub(super) fn test_payload(n: &crate::engine::Normalized) -> serde_json::Value {
    let users = n.users.as_deref().unwrap_or_default();
    let user = |u: &crate::engine::NormUser| {
        (
            u.email.clone().unwrap_or_else(|| u.reference_id.clone()),
            u.external_id.to_string(),
        )
    };
    let sorted = |pick: &dyn Fn(&crate::engine::NormUser) -> bool| {
        let mut v: Vec<(String, String)> = users.iter().filter(|u| pick(u)).map(user).collect();
        v.sort_by_key(|(name, _)| name.to_lowercase());
        v.into_iter()
            .map(|(d, e)| serde_json::json!({"externalId": e, "displayName": d}))
            .collect::<Vec<_>>()
    };
    let mut groups: Vec<&crate::engine::NormGroup> =
        n.groups.as_deref().unwrap_or_default().iter().collect();
    groups.sort_by_key(|g| g.name.to_lowercase());
    let groups: Vec<serde_json::Value> = groups
        .into_iter()
        .map(|g| {
            let name = if g.name.is_empty() {
                &g.reference_id
            } else {
                &g.name
            };
            serde_json::json!({
                "externalId": g.external_id,
                "displayName": name,
                "userIds": g.members.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({
        "groups": groups,
        "enabledUsers": sorted(&|u| !u.deleted && !u.disabled),
        "disabledUsers": sorted(&|u| !u.deleted && u.disabled),
        "deletedUsers": sorted(&|u| u.deleted),
        "object": "test",
    })
}

/// Runs an upstream command with upstream's output; `None` for this project's own commands
/// (they answer as usual).
pub(super) fn dispatch(command: &super::Command, data_dir: &Path, c: &Compat) -> Option<i32> {
    use super::Command;
    let result: anyhow::Result<Payload> = match command {
        Command::Login => (|| {
            let conn = Connector::open(data_dir)?;
            let id = super::env_or_prompt("BW_CLIENTID", "client_id", false)?;
            let secret = super::env_or_prompt("BW_CLIENTSECRET", "client_secret", true)?;
            let key = crate::bitwarden::ApiKey::new(&id, &secret)?;
            super::runtime()?.block_on(conn.login(key, true))?;
            Ok(Payload::Message {
                title: "You are logged in!".into(),
                message: String::new(),
            })
        })(),
        Command::Logout => Connector::open(data_dir)
            .and_then(|c| c.logout())
            .map(|()| Payload::Message {
                title: "You have logged out.".into(),
                message: String::new(),
            }),
        Command::Test { explain: false, .. } => (|| {
            let conn = Connector::open(data_dir)?;
            let report = super::runtime()?.block_on(conn.test(&crate::progress::NoProgress))?;
            Ok(Payload::Json(test_payload(&report.normalized)))
        })(),
        Command::Sync {
            allow_mass_removal,
            reconcile,
        } => (|| {
            let conn = Connector::open(data_dir)?;
            let report = super::runtime()?.block_on(async {
                super::watch_signals();
                conn.sync(
                    crate::connector::SyncOptions {
                        allow_mass_removal: *allow_mass_removal,
                        lock_held: false,
                        reconcile: *reconcile,
                        keep_read: false,
                        fast_lane: false,
                    },
                    &crate::progress::NoProgress,
                )
                .await
            })?;
            let (g, u) = if report.requests == 0 {
                (0, 0)
            } else {
                (report.plan.groups.len(), report.plan.members.len())
            };
            Ok(Payload::Message {
                title: "Syncing complete.".into(),
                message: format!("Synced {g} group(s) and {u} user(s)."),
            })
        })(),
        Command::LastSync { object } => (|| {
            let store = Connector::open(data_dir)?.store()?;
            let kind = if object == "users" {
                crate::store::SyncKind::Users
            } else {
                crate::store::SyncKind::Groups
            };
            Ok(Payload::Str(store.last_sync(kind)?))
        })(),
        Command::Config(super::ConfigCommand::Upstream(args)) => (|| {
            let (key, value) = upstream_setting(args)?;
            super::set_key(data_dir, &key, value.as_deref())?;
            let setting = args.first().map(|s| s.to_lowercase()).unwrap_or_default();
            Ok(Payload::Message {
                title: format!("Saved setting `{setting}`."),
                message: String::new(),
            })
        })(),
        Command::DataFile => Ok(Payload::Str(Some(
            crate::config::config_path(data_dir).display().to_string(),
        ))),
        Command::ClearCache {
            forget_email_changes,
        } => Connector::open(data_dir)
            .and_then(|c| {
                c.clear_or_recreate_cache()?;
                c.pending_email_changes(*forget_email_changes)
            })
            .map(|_| Payload::Message {
                title: "The sync cache has been cleared.".into(),
                message: String::new(),
            }),
        _ => return None,
    };
    Some(match result {
        Ok(p) => succeed(c, &p),
        Err(e) => fail(c, &crate::logging::redact(&format!("{e:#}"))),
    })
}
