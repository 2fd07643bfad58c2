//! Reading upstream's `data.json` into one view, whatever its state version: the flat layout of
//! versions 5–8 (`directoryLdap`, `sync`, … at the top) and the account layout of 3–4 (an
//! account object under the user id, `global` for app-wide settings). The file is only read, and
//! at most 16 MiB of it; anything but a regular file (a FIFO, a device) is refused unopened.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

use crate::errors::Failure;

/// How the data was laid out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Layout {
    /// State version 5–8: flat keys.
    Flat,
    /// State version 3–4: an account object under `user_id`.
    Account { user_id: String },
}

/// upstream's data, whatever the layout.
#[derive(Debug, Clone)]
pub struct Source {
    /// The data.json read.
    pub path: PathBuf,
    pub state_version: u64,
    pub layout: Layout,
    pub directory_type: Option<i64>,
    /// `directoryType` as written (its type is checked before anything is imported).
    pub directory_type_raw: Option<Value>,
    pub organization_id: Option<String>,
    pub ldap: Option<Value>,
    pub entra: Option<Value>,
    pub gsuite: Option<Value>,
    pub okta: Option<Value>,
    pub onelogin: Option<Value>,
    /// The names these objects had in the file (for messages).
    pub ldap_name: String,
    pub entra_name: String,
    pub onelogin_name: String,
    pub sync: Option<Value>,
    pub environment_urls: Option<Value>,
    /// Plaintext-mode API key, with where it was found.
    pub api_client_id: Option<Value>,
    pub api_client_id_from: String,
    pub api_client_secret: Option<Value>,
    pub api_client_secret_from: String,
    top: serde_json::Map<String, Value>,
}

/// The first of `names` present and not null in `obj`, with its name.
fn first<'a>(obj: &'a Value, names: &[&'a str]) -> Option<(&'a str, Value)> {
    names.iter().find_map(|n| match obj.get(*n) {
        Some(Value::Null) | None => None,
        Some(v) => Some((*n, v.clone())),
    })
}

fn as_version(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Reads at most [`MAX_DATA_JSON_BYTES`](super::MAX_DATA_JSON_BYTES) of `file`: a larger file
/// (or one that grows past it while read) is refused, not read whole.
fn read_bounded(file: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let max = super::MAX_DATA_JSON_BYTES;
    let too_large = |size: String| {
        Failure::Config(format!(
            "import-bwdc: {} is {size}; the official connector's data.json is a few kilobytes \
             and files over {} MiB are not read: give the path of its data directory or \
             data.json",
            file.display(),
            max / (1024 * 1024)
        ))
    };
    let not_found = || {
        Failure::Config(format!(
            "import-bwdc: {} not found: the official connector keeps its settings in data.json \
             in its data directory (see `bwdc data-file`); give that path",
            file.display()
        ))
    };
    // a FIFO, socket or device would block the read (or never end): only a regular file is
    // opened, checked before (the open of a FIFO blocks) and after (it may have been swapped)
    let not_regular = |meta: &std::fs::Metadata| {
        Failure::Config(format!(
            "import-bwdc: {} is not a regular file ({}): the official connector's data.json is \
             a plain file; give its path or its data directory",
            file.display(),
            file_kind(meta)
        ))
    };
    match std::fs::metadata(file) {
        Ok(meta) if !meta.is_file() => return Err(not_regular(&meta).into()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found().into()),
        Err(e) => {
            return Err(e).with_context(|| format!("import-bwdc: reading {}", file.display()));
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(target_os = "linux")]
    {
        // never wait on the open: a FIFO put in its place since the check opens at once
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let f = match options.open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found().into()),
        Err(e) => {
            return Err(e).with_context(|| format!("import-bwdc: reading {}", file.display()));
        }
    };
    let meta = f
        .metadata()
        .with_context(|| format!("import-bwdc: reading {}", file.display()))?;
    if !meta.is_file() {
        return Err(not_regular(&meta).into());
    }
    if meta.len() > max {
        return Err(too_large(format!("{} bytes", meta.len())).into());
    }
    let mut bytes = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("import-bwdc: reading {}", file.display()))?;
    if bytes.len() as u64 > max {
        return Err(too_large(format!("over {max} bytes")).into());
    }
    Ok(bytes)
}

/// What a file that is not a regular one is, for the error.
fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
    }
    if meta.is_dir() {
        "a directory"
    } else {
        "not a plain file"
    }
}

/// Reads `data.json` (or the data.json inside a directory). Errors name the file and the stage.
pub fn read_source(path: &Path) -> anyhow::Result<Source> {
    let file = if path.is_dir() {
        path.join("data.json")
    } else {
        path.to_path_buf()
    };
    let bytes = read_bounded(&file)?;
    let text = String::from_utf8_lossy(&bytes);
    let data: Value = serde_json::from_str(text.trim_start_matches('\u{feff}')).map_err(|e| {
        Failure::Config(format!(
            "import-bwdc: {} is not valid JSON (line {}, column {}): {}",
            file.display(),
            e.line(),
            e.column(),
            match e.classify() {
                serde_json::error::Category::Eof => "the file ends early",
                serde_json::error::Category::Syntax => "a syntax error",
                _ => "unexpected content",
            }
        ))
    })?;
    let Some(top) = data.as_object().cloned() else {
        return Err(Failure::Config(format!(
            "import-bwdc: {} is not a data.json of the official connector (not a JSON object)",
            file.display()
        ))
        .into());
    };
    if top.is_empty() {
        return Err(Failure::Config(format!(
            "import-bwdc: {} is empty: the official connector was never configured there",
            file.display()
        ))
        .into());
    }
    let version = as_version(top.get("stateVersion"))
        .or_else(|| as_version(data.get("global").and_then(|g| g.get("stateVersion"))))
        .unwrap_or(8);
    if version < 3 {
        return Err(Failure::Config(format!(
            "import-bwdc: {} has state version {version}; the official connector itself asks to \
             reinstall and reconfigure from versions below 3, so there is nothing reliable to \
             import",
            file.display()
        ))
        .into());
    }
    let mut src = Source {
        path: file,
        state_version: version,
        layout: Layout::Flat,
        directory_type: None,
        directory_type_raw: None,
        organization_id: None,
        ldap: None,
        entra: None,
        gsuite: None,
        okta: None,
        onelogin: None,
        ldap_name: "directoryLdap".into(),
        entra_name: "directoryEntra".into(),
        onelogin_name: "directoryOnelogin".into(),
        sync: None,
        environment_urls: None,
        api_client_id: None,
        api_client_id_from: "apiKeyClientId".into(),
        api_client_secret: None,
        api_client_secret_from: "apiKeyClientSecret".into(),
        top,
    };
    if version <= 4 {
        read_account_layout(&mut src, &data)?;
    } else {
        read_flat_layout(&mut src, &data);
    }
    Ok(src)
}

fn read_flat_layout(src: &mut Source, data: &Value) {
    src.directory_type_raw = data.get("directoryType").cloned();
    src.directory_type = match data.get("directoryType") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    src.organization_id = data
        .get("organizationId")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some((n, v)) = first(data, &["directoryLdap", "directory_ldap"]) {
        src.ldap_name = n.into();
        src.ldap = Some(v);
    }
    if let Some((n, v)) = first(
        data,
        &["directoryEntra", "directoryAzure", "directory_entra"],
    ) {
        src.entra_name = n.into();
        src.entra = Some(v);
    }
    src.gsuite = first(data, &["directoryGsuite", "directory_gsuite"]).map(|(_, v)| v);
    src.okta = first(data, &["directoryOkta", "directory_okta"]).map(|(_, v)| v);
    if let Some((n, v)) = first(
        data,
        &[
            "directoryOnelogin",
            "directoryOneLogin",
            "directory_onelogin",
        ],
    ) {
        src.onelogin_name = n.into();
        src.onelogin = Some(v);
    }
    src.sync = first(data, &["sync"]).map(|(_, v)| v);
    src.environment_urls = first(data, &["environmentUrls"]).map(|(_, v)| v);
    src.api_client_id = first(data, &["apiKeyClientId"]).map(|(_, v)| v);
    src.api_client_secret = first(data, &["apiKeyClientSecret"]).map(|(_, v)| v);
}

fn read_account_layout(src: &mut Source, data: &Value) -> anyhow::Result<()> {
    let user_id = data
        .get("activeUserId")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            data.get("authenticatedAccounts")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    let Some(user_id) = user_id.filter(|u| data.get(u).is_some_and(Value::is_object)) else {
        return Err(Failure::Config(format!(
            "import-bwdc: {} has state version {} but no account (activeUserId / \
             authenticatedAccounts): log in once with the official connector, or configure \
             this connector directly",
            src.path.display(),
            src.state_version
        ))
        .into());
    };
    let account = &data[&user_id];
    let configs = account
        .get("directoryConfigurations")
        .cloned()
        .unwrap_or_default();
    let settings = account
        .get("directorySettings")
        .cloned()
        .unwrap_or_default();
    let base = format!("{user_id}.directoryConfigurations");
    src.ldap = first(&configs, &["ldap"]).map(|(_, v)| v);
    src.ldap_name = format!("{base}.ldap");
    if let Some((n, v)) = first(&configs, &["entra", "azure"]) {
        src.entra_name = format!("{base}.{n}");
        src.entra = Some(v);
    }
    src.gsuite = first(&configs, &["gsuite"]).map(|(_, v)| v);
    src.okta = first(&configs, &["okta"]).map(|(_, v)| v);
    src.onelogin = first(&configs, &["oneLogin", "onelogin"]).map(|(_, v)| v);
    src.onelogin_name = format!("{base}.oneLogin");
    src.directory_type_raw = settings.get("directoryType").cloned();
    src.directory_type = match settings.get("directoryType") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    src.organization_id = settings
        .get("organizationId")
        .and_then(Value::as_str)
        .map(str::to_string);
    src.sync = first(&settings, &["sync"]).map(|(_, v)| v);
    src.environment_urls = data
        .get("global")
        .and_then(|g| first(g, &["environmentUrls"]))
        .or_else(|| {
            account
                .get("settings")
                .and_then(|s| first(s, &["environmentUrls"]))
        })
        .map(|(_, v)| v);
    let pick = |paths: &[(&str, &str)]| {
        paths.iter().find_map(|(obj, key)| {
            account
                .get(*obj)
                .and_then(|o| first(o, &[*key]))
                .map(|(_, v)| (format!("{user_id}.{obj}.{key}"), v))
        })
    };
    if let Some((from, v)) = pick(&[("profile", "apiKeyClientId"), ("clientKeys", "clientId")]) {
        src.api_client_id = Some(v);
        src.api_client_id_from = from;
    }
    if let Some((from, v)) = pick(&[
        ("keys", "apiKeyClientSecret"),
        ("clientKeys", "clientSecret"),
    ]) {
        src.api_client_secret = Some(v);
        src.api_client_secret_from = from;
    }
    src.layout = Layout::Account { user_id };
    Ok(())
}

impl Source {
    /// The other things data.json holds, and why they are not imported.
    pub fn leftovers(&self) -> Vec<(String, String)> {
        const STATE: &str = "upstream's sync state: this connector plans its first sync against \
                             the organization (servers with the read API), or sends everything \
                             once, so it is not needed";
        const TOKENS: &str = "session tokens: this connector gets its own token with the API key";
        const WINDOW: &str = "window and tray preferences of the official desktop app";
        const BOOK: &str = "bookkeeping of the official app";
        let mut out = Vec::new();
        for (k, v) in &self.top {
            if v.is_null() {
                continue;
            }
            let why = match k.as_str() {
                "lastUserSync" | "lastGroupSync" | "lastSyncHash" | "userDeltaToken"
                | "groupDeltaToken" | "userDelta" | "groupDelta" => STATE,
                "accessToken" | "refreshToken" | "twoFactorToken" => TOKENS,
                "window"
                | "enableAlwaysOnTop"
                | "enableTray"
                | "enableMinimizeToTray"
                | "enableCloseToTray"
                | "alwaysShowDock"
                | "enableStartToTray" => WINDOW,
                "appId" | "anonymousAppId" | "installedVersion" | "locale" | "entityId" => BOOK,
                "syncingDir" => {
                    "the desktop app's scheduler state: set sync.interval_minutes and press \
                     Start sync in the window, or run `sync` from cron"
                }
                "global" | "activeUserId" | "authenticatedAccounts"
                    if self.layout == Layout::Flat =>
                {
                    "leftovers of state version 3–4, which the official connector no longer reads"
                }
                _ => continue,
            };
            out.push((k.clone(), why.to_string()));
        }
        out
    }
}
