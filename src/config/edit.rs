//! Reading and writing `config.toml`: load and parse (errors name the key), set and unset keys
//! keeping comments and layout (all changes or none), get one value and show the whole file with
//! secrets masked.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::SecretRef;
use super::{Config, KeyKind, key_info, values};
use crate::errors::{Failure, config_err};

/// Path of the config file in a data directory.
pub fn config_path(data_dir: &Path) -> PathBuf {
    data_dir.join("config.toml")
}

/// Reads the config file; a missing file is the default config. Errors (exit 2) name the line,
/// the column and the key, never quoting the file.
pub fn load(data_dir: &Path) -> anyhow::Result<Config> {
    let path = config_path(data_dir);
    let text = match read_text(&path)? {
        Some(t) => t,
        None => return Ok(Config::default()),
    };
    parse(&text).map_err(|e| Failure::Config(format!("{}: {e}", path.display())).into())
}

/// The file's text, `None` when it does not exist. Bytes that are not UTF-8 are a
/// configuration error naming where they start.
fn read_text(path: &Path) -> anyhow::Result<Option<String>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    match String::from_utf8(bytes) {
        Ok(t) => Ok(Some(t)),
        Err(e) => {
            let good = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(&e.as_bytes()[..good]).into_owned();
            let (line, col) = values::line_column(&text, good);
            Err(Failure::Config(format!(
                "{}: not a text file (invalid UTF-8 at line {line}, column {col}); fix or remove it",
                path.display()
            ))
            .into())
        }
    }
}

/// Parses config text, turning the parser's errors into messages that name the line, the
/// column and the key. The message leaves out the file's text, and for a secret key also the
/// parser's words (they may quote the value).
pub fn parse(text: &str) -> Result<Config, Failure> {
    toml::from_str::<Config>(text).map_err(|e| {
        let key = e.span().and_then(|span| values::key_at(text, span.start));
        let at = values::location(text, e.span(), key.as_deref());
        let secret = key
            .as_deref()
            .and_then(|k| key_info(k).ok())
            .is_some_and(|(_, kind)| kind == KeyKind::Secret);
        let msg = e.message().trim();
        match &key {
            Some(k) if !secret => Failure::Config(format!("`{k}`: {msg} ({at})")),
            _ if secret => Failure::Config(format!("invalid value ({at})")),
            _ => Failure::Config(format!("{msg} ({at})")),
        }
    })
}

/// Writes the config atomically (unique temp file, fsync, rename, fsync of the directory),
/// mode 0600, holding the config's edit lock.
pub fn save_text(data_dir: &Path, text: &str) -> anyhow::Result<()> {
    let _lock = crate::datadir::lock_for_edit(data_dir, "config.toml")?;
    crate::datadir::write_atomic(&config_path(data_dir), text.as_bytes())
}

/// Sets one key in the file, keeping comments and layout, and validates the result.
/// `value = None` removes the key (back to its default).
pub fn set_value(data_dir: &Path, key: &str, value: Option<&str>) -> anyhow::Result<Config> {
    set_values(data_dir, &[(key, value)])
}

/// Sets several keys at once: all are checked before the file is written, so either every
/// change is saved or none is (the error names the key).
///
/// Concurrent writers (several `config set`, the window's Save) take turns: the whole
/// read-modify-write runs under the config's edit lock, so no change is lost, and the call
/// returns `Ok` only when its change is on disk.
pub fn set_values(data_dir: &Path, changes: &[(&str, Option<&str>)]) -> anyhow::Result<Config> {
    let path = config_path(data_dir);
    let _lock = crate::datadir::lock_for_edit(data_dir, "config.toml")?;
    let text = read_text(&path)?.unwrap_or_default();
    let (new_text, cfg, warnings) = apply_changes(&path, &text, changes)?;
    crate::datadir::write_atomic(&path, new_text.as_bytes())?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    Ok(cfg)
}

/// Applies key changes to config text without writing anything: the new text, its parsed
/// config and the warnings (e.g. an `http://` URL). `path` only names the file in errors.
pub fn apply_changes(
    path: &Path,
    text: &str,
    changes: &[(&str, Option<&str>)],
) -> anyhow::Result<(String, Config, Vec<String>)> {
    let text = text.to_string();
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        let key = e.span().and_then(|span| values::key_at(&text, span.start));
        Failure::Config(format!(
            "{}: {} ({}); fix or remove the file",
            path.display(),
            e.message().trim(),
            values::location(&text, e.span(), key.as_deref())
        ))
    })?;
    let mut warnings = Vec::new();
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
                let item = typed_value(key, kind, raw, &mut warnings)?;
                if doc.get(section).is_none() {
                    doc[section] = toml_edit::table();
                }
                doc[section][field] = toml_edit::value(item);
            }
        }
    }
    let new_text = doc.to_string();
    let cfg = parse(&new_text)?;
    // the checks of a value on its own that need the rest of the file (the directory type)
    for (key, value) in changes {
        if let Some(raw) = value
            && let Some(message) = super::value_problem(key, raw, cfg.directory.kind)
        {
            let message = if message.contains(&format!("`{key}`")) {
                message
            } else {
                format!("`{key}`: {message}")
            };
            return config_err(message);
        }
    }
    Ok((new_text, cfg, warnings))
}

/// Whether `raw` is a value `key` accepts on its own (its type, range, URL or host rules), with
/// the message `config set` would give. The window checks each field with it as it is typed.
pub fn check_value(key: &str, raw: &str) -> Result<(), String> {
    let (key, kind) = key_info(key).map_err(|e| format!("{e:#}"))?;
    if kind == KeyKind::Secret || raw.trim().is_empty() {
        return Ok(());
    }
    typed_value(key, kind, raw, &mut Vec::new())
        .map(|_| ())
        .map_err(|e| format!("{e:#}"))
}

fn typed_value(
    key: &str,
    kind: KeyKind,
    raw: &str,
    warnings: &mut Vec<String>,
) -> anyhow::Result<toml_edit::Value> {
    let raw_t = raw.trim();
    Ok(match kind {
        KeyKind::Bool => match raw_t.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => true.into(),
            "false" | "no" | "off" | "0" => false.into(),
            _ => return config_err(format!("`{key}` must be true or false, not `{raw}`")),
        },
        KeyKind::Int(range) => values::check_int(key, range, raw_t)
            .map_err(Failure::Config)?
            .into(),
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
            let checked = values::check_url(key, raw_t).map_err(Failure::Config)?;
            warnings.extend(checked.warning);
            checked.url.into()
        }
        KeyKind::Host => values::check_host(key, raw_t)
            .map_err(Failure::Config)?
            .into(),
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
                if key == "sync.protected_emails" {
                    values::check_email_entry(key, item).map_err(Failure::Config)?;
                }
                a.push(item);
            }
            a.into()
        }
        KeyKind::Str if key == "service.schedule" && !raw_t.is_empty() => {
            // the check `config validate` and the service make: it parses and it fires
            super::schedule::parse_cron(raw_t)
                .map_err(|e| Failure::Config(format!("`{key}`: {e}")))?;
            raw_t.into()
        }
        KeyKind::Str | KeyKind::Path => raw.into(),
    })
}

/// Upstream's URL normalization: trims, strips trailing slashes, adds `https://` when there is
/// no scheme. A URL with another scheme is left as it is (and refused by [`validate`]), never
/// turned into `https://ftp://…`.
///
/// [`validate`]: super::validate
pub fn normalize_url(raw: &str) -> String {
    let v = raw.trim().trim_end_matches('/');
    if v.contains("://") {
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
