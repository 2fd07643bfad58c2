//! Reading and writing `config.toml`: load and parse (errors name the key), set and unset keys
//! keeping comments and layout (all changes or none), get one value and show the whole file with
//! secrets masked.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{Config, KeyKind, key_info};
use crate::errors::{ConfigError, config_err};
use crate::secrets::SecretRef;

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
