//! Secrets (LDAP password, API key, later the cloud directories' secrets): the OS keyring, a
//! reference the admin writes as the config value (`env:NAME`, `file:PATH`), a 0600 plaintext
//! file only when `DIRECTORY_CONNECTOR_PLAINTEXT_SECRETS=true`, or memory (tests). It also reads
//! (never writes) the entries another program stored with keytar, the way the official
//! connector keeps its secrets (`import-bwdc`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context, anyhow, bail};

use crate::config::SecretRef;
use crate::errors::Failure;
use crate::logging::register_secret;

/// Environment variable that opts in to plaintext secret storage.
pub const PLAINTEXT_ENV: &str = "DIRECTORY_CONNECTOR_PLAINTEXT_SECRETS";
const KEYRING_SERVICE: &str = "Directory Connector";

/// Whether the admin opted in to plaintext secrets.
pub fn plaintext_opt_in() -> bool {
    [PLAINTEXT_ENV, BWDC_PLAINTEXT_ENV].iter().any(|name| {
        std::env::var(name)
            .map(|v| v.eq_ignore_ascii_case("true") || v == "1")
            .unwrap_or(false)
    })
}

/// The official connector's opt-in, accepted as an alias of [`PLAINTEXT_ENV`] so that scripts
/// written for bwdc keep working.
pub const BWDC_PLAINTEXT_ENV: &str = "BITWARDENCLI_CONNECTOR_PLAINTEXT_SECRETS";

/// Where secrets are kept.
pub trait SecretStore: Send + Sync {
    fn get(&self, key: &str) -> anyhow::Result<Option<String>>;
    fn set(&self, key: &str, value: &str) -> anyhow::Result<()>;
    fn delete(&self, key: &str) -> anyhow::Result<()>;
    /// A short name for messages ("the OS keyring", …).
    fn describe(&self) -> String;
}

/// In-memory store for tests.
#[derive(Default)]
pub struct MemoryStore(Mutex<HashMap<String, String>>);

impl SecretStore for MemoryStore {
    fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .0
            .lock()
            .map_err(|_| anyhow!("secret store lock poisoned"))?
            .get(key)
            .cloned())
    }
    fn set(&self, key: &str, value: &str) -> anyhow::Result<()> {
        self.0
            .lock()
            .map_err(|_| anyhow!("secret store lock poisoned"))?
            .insert(key.into(), value.into());
        Ok(())
    }
    fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.0
            .lock()
            .map_err(|_| anyhow!("secret store lock poisoned"))?
            .remove(key);
        Ok(())
    }
    fn describe(&self) -> String {
        "memory".into()
    }
}

/// Plaintext secrets in `secrets.toml` (mode 0600) — only with the opt-in.
pub struct PlaintextStore {
    path: PathBuf,
    lock: Mutex<()>,
}

impl PlaintextStore {
    pub fn new(data_dir: &Path) -> Self {
        PlaintextStore {
            path: data_dir.join("secrets.toml"),
            lock: Mutex::new(()),
        }
    }
    fn read(&self) -> anyhow::Result<BTreeMap<String, String>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => parse_secrets_file(&self.path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.path.display())),
        }
    }
    fn write(&self, map: &BTreeMap<String, String>) -> anyhow::Result<()> {
        let text = toml::to_string(map).context("serializing secrets")?;
        crate::datadir::write_atomic(&self.path, text.as_bytes())
    }
    /// Read-modify-write under the file's edit lock (other processes write it too).
    fn edit(&self, f: impl FnOnce(&mut BTreeMap<String, String>) -> bool) -> anyhow::Result<()> {
        let _g = self.lock.lock().map_err(|_| anyhow!("the plaintext secret store is unusable: an earlier error (a panic) left its lock poisoned; restart the program"))?;
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let _lock = crate::datadir::lock_for_edit(dir, "secrets.toml")?;
        let mut m = self.read()?;
        if f(&mut m) {
            self.write(&m)?;
        }
        Ok(())
    }
}

impl SecretStore for PlaintextStore {
    fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        let _g = self.lock.lock().map_err(|_| anyhow!("the plaintext secret store is unusable: an earlier error (a panic) left its lock poisoned; restart the program"))?;
        let v = self.read()?.get(key).cloned();
        if let Some(v) = &v {
            register_secret(v);
        }
        Ok(v)
    }
    fn set(&self, key: &str, value: &str) -> anyhow::Result<()> {
        self.edit(|m| {
            m.insert(key.into(), value.into());
            true
        })
    }
    fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.edit(|m| m.remove(key).is_some())
    }
    fn describe(&self) -> String {
        format!("the plaintext file {}", self.path.display())
    }
}

/// The names `secrets.toml` holds (the only key names an error about it may show).
fn known_secret_key(k: &str) -> bool {
    ["bitwarden.client_id", "bitwarden.client_secret"].contains(&k)
        || crate::config::KEYS
            .iter()
            .any(|(key, kind, _)| *kind == crate::config::KeyKind::Secret && *key == k)
}

/// Parses `secrets.toml`. An error (exit 2) names the line, the column and the key when it is
/// one of ours, and nothing of the file's text: not the source line, not the parser's words
/// (they can quote a value).
fn parse_secrets_file(path: &Path, bytes: &[u8]) -> anyhow::Result<BTreeMap<String, String>> {
    let (text, bad_utf8) = match std::str::from_utf8(bytes) {
        Ok(t) => (t, None),
        Err(e) => (
            std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
            Some(e.valid_up_to()),
        ),
    };
    let problem = match bad_utf8 {
        Some(offset) => Some(("not UTF-8 text", Some(offset..offset), None)),
        None => match toml::from_str::<BTreeMap<String, String>>(text) {
            Ok(m) => return Ok(m),
            Err(e) => {
                let key = e
                    .span()
                    .and_then(|s| crate::config::key_at(text, s.start))
                    .map(|k| k.trim_matches(['"', '\'']).to_string())
                    .filter(|k| known_secret_key(k));
                Some(("not valid TOML with text values", e.span(), key))
            }
        },
    };
    let (what, span, key) = problem.unwrap_or(("unreadable", None, None));
    Err(Failure::Config(format!(
        "{}: {what} ({}); the content is not shown because it holds secrets. Fix the file, or \
         remove it and store the secrets again (`login`, `config set KEY`)",
        path.display(),
        crate::config::parse_location(text, span, key.as_deref())
    ))
    .into())
}

/// The OS keyring: the Windows Credential Manager, the macOS Keychain, or the Secret Service
/// elsewhere (see [`native_store`]). Entries are scoped to the data directory so that several
/// profiles on one machine do not share secrets.
pub struct KeyringStore {
    scope: String,
}

static KEYRING_INIT: OnceLock<Result<(), String>> = OnceLock::new();

/// The name of this platform's secret store, for messages.
pub const NATIVE_STORE_NAME: &str = if cfg!(windows) {
    "the Windows Credential Manager"
} else if cfg!(target_os = "macos") {
    "the macOS Keychain"
} else {
    "the Secret Service (GNOME Keyring, KWallet)"
};

/// What the admin can do when the store cannot be used, per platform.
const NATIVE_STORE_FIX: &str = if cfg!(windows) {
    "run as a user with a loaded profile (a service needs its account's profile)"
} else if cfg!(target_os = "macos") {
    "run inside a login session with the login keychain unlocked"
} else {
    "run inside a desktop session with an unlocked keyring"
};

/// Opens this platform's keyring-core store: one store per OS, chosen at compile time.
#[cfg(windows)]
fn native_store() -> keyring_core::Result<Arc<keyring_core::CredentialStore>> {
    Ok(windows_native_keyring_store::Store::new()?)
}

#[cfg(target_os = "macos")]
fn native_store() -> keyring_core::Result<Arc<keyring_core::CredentialStore>> {
    Ok(apple_native_keyring_store::keychain::Store::new()?)
}

#[cfg(not(any(windows, target_os = "macos")))]
fn native_store() -> keyring_core::Result<Arc<keyring_core::CredentialStore>> {
    Ok(zbus_secret_service_keyring_store::Store::new()?)
}

/// Entry modifiers: on Windows the credential stays on this machine (`Local`) instead of
/// roaming with the profile to other machines (the default, `Enterprise`).
fn entry_modifiers() -> HashMap<&'static str, &'static str> {
    let mut m = HashMap::new();
    if cfg!(windows) {
        m.insert("persistence", "Local");
    }
    m
}

fn keyring_unavailable(err: &str) -> anyhow::Error {
    Failure::Config(format!(
        "{NATIVE_STORE_NAME} is not available ({err}). Choose one of: {NATIVE_STORE_FIX}; write \
         the secret as a reference in config.toml (env:NAME or file:PATH, e.g. `config set \
         ldap.password env:LDAP_PASSWORD`) and give the API key in BW_CLIENTID / \
         BW_CLIENTSECRET; or opt in to a plaintext file readable only by you with \
         {PLAINTEXT_ENV}=true"
    ))
    .into()
}

impl KeyringStore {
    pub fn new(data_dir: &Path) -> Self {
        KeyringStore {
            scope: data_dir.display().to_string(),
        }
    }

    /// Runs a call on this store's entry for `key` (see [`with_keyring_entry`]).
    fn with_entry<T: Send>(
        &self,
        key: &str,
        f: impl FnOnce(&keyring_core::Entry) -> keyring_core::Result<T> + Send,
    ) -> anyhow::Result<Result<T, keyring_core::Error>> {
        with_keyring_entry(KEYRING_SERVICE, &format!("{key}@{}", self.scope), f)
    }
}

/// Runs `f` on its own thread once the platform's store is open: the Secret Service client
/// runs its own executor and must not run inside the caller's async runtime. The store is
/// opened once.
fn on_keyring_thread<T: Send>(f: impl FnOnce() -> anyhow::Result<T> + Send) -> anyhow::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let init = KEYRING_INIT.get_or_init(|| {
                native_store()
                    .map(keyring_core::set_default_store)
                    .map_err(|e| e.to_string())
            });
            if let Err(e) = init {
                return Err(keyring_unavailable(e));
            }
            f()
        })
        .join()
        .map_err(|_| anyhow!("the keyring thread panicked"))?
    })
}

/// Runs a keyring call on this program's entry (service, user) (see [`on_keyring_thread`]).
fn with_keyring_entry<T: Send>(
    service: &str,
    user: &str,
    f: impl FnOnce(&keyring_core::Entry) -> keyring_core::Result<T> + Send,
) -> anyhow::Result<Result<T, keyring_core::Error>> {
    on_keyring_thread(|| {
        let entry = keyring_core::Entry::new_with_modifiers(service, user, &entry_modifiers())
            .map_err(|e| keyring_unavailable(&e.to_string()))?;
        Ok(f(&entry))
    })
}

/// A password read from the keyring: registered for redaction; `None` when there is no entry.
fn found_password(read: Result<String, keyring_core::Error>) -> anyhow::Result<Option<String>> {
    match read {
        Ok(v) => {
            register_secret(&v);
            Ok(Some(v))
        }
        Err(keyring_core::Error::NoEntry) => Ok(None),
        Err(e) => Err(keyring_unavailable(&e.to_string())),
    }
}

impl SecretStore for KeyringStore {
    fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        found_password(self.with_entry(key, |e| e.get_password())?)
    }
    fn set(&self, key: &str, value: &str) -> anyhow::Result<()> {
        let value = value.to_string();
        self.with_entry(key, move |e| e.set_password(&value))?
            .map_err(|e| keyring_unavailable(&e.to_string()))
    }
    fn delete(&self, key: &str) -> anyhow::Result<()> {
        match self.with_entry(key, |e| e.delete_credential())? {
            Ok(()) | Err(keyring_core::Error::NoEntry) => Ok(()),
            Err(e) => Err(keyring_unavailable(&e.to_string())),
        }
    }
    fn describe(&self) -> String {
        NATIVE_STORE_NAME.into()
    }
}

/// The entry keytar's `setPassword(service, account, …)` made, which Bitwarden's `desktop_core`
/// (the official connector's keychain code) keeps: on Linux a Secret Service item with the
/// attributes `service` and `account` (libsecret schema `org.freedesktop.Secret.Generic`). An
/// entry built from (service, user) would search `service` and `username`, this store's own
/// attributes, and miss it.
#[cfg(not(any(windows, target_os = "macos")))]
fn keytar_entry(service: &str, account: &str) -> keyring_core::Result<keyring_core::Entry> {
    let spec = HashMap::from([("service", service), ("account", account)]);
    keyring_core::Entry::search(&spec)?
        .into_iter()
        .next()
        .ok_or(keyring_core::Error::NoEntry)
}

/// On Windows keytar's entry is the generic credential `service/account` (this store's own
/// default would be `account.service`).
#[cfg(windows)]
fn keytar_entry(service: &str, account: &str) -> keyring_core::Result<keyring_core::Entry> {
    let target = format!("{service}/{account}");
    let modifiers = HashMap::from([("target", target.as_str())]);
    keyring_core::Entry::new_with_modifiers(service, account, &modifiers)
}

/// On macOS keytar's entry is the generic password of (service, account), as this store's.
#[cfg(target_os = "macos")]
fn keytar_entry(service: &str, account: &str) -> keyring_core::Result<keyring_core::Entry> {
    keyring_core::Entry::new(service, account)
}

/// Where keytar keeps the entries (service, account) on this platform, for messages.
pub fn keytar_location(service: &str, accounts: &[String]) -> String {
    let or = |f: &dyn Fn(&str) -> String| {
        accounts
            .iter()
            .map(|a| f(a))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    if cfg!(windows) {
        format!(
            "{NATIVE_STORE_NAME}: generic credential {}",
            or(&|a| format!("`{service}/{a}`"))
        )
    } else if cfg!(target_os = "macos") {
        format!(
            "{NATIVE_STORE_NAME}: generic password of service `{service}`, account {}",
            or(&|a| format!("`{a}`"))
        )
    } else {
        format!(
            "{NATIVE_STORE_NAME}: an item with the attributes service = `{service}` and account \
             = {}",
            or(&|a| format!("`{a}`"))
        )
    }
}

/// Reads a secret another program stored with keytar (the official connector's
/// `Bitwarden Directory Connector` entries): see [`keytar_entry`] for each platform's layout.
/// Returns the raw bytes (on Windows UTF-16 from `desktop_core`, UTF-8 from older keytar
/// versions); `Ok(None)`: no such entry. Nothing is written or deleted.
pub fn read_keytar_secret(service: &str, account: &str) -> anyhow::Result<Option<Vec<u8>>> {
    on_keyring_thread(
        || match keytar_entry(service, account).and_then(|e| e.get_secret()) {
            Ok(v) => Ok(Some(v)),
            Err(keyring_core::Error::NoEntry) => Ok(None),
            Err(e) => Err(keyring_unavailable(&e.to_string())),
        },
    )
}

/// The store for a data directory: plaintext with the opt-in (warns), otherwise the keyring.
pub fn open_store(data_dir: &Path) -> Arc<dyn SecretStore> {
    if plaintext_opt_in() {
        tracing::warn!(
            "{PLAINTEXT_ENV}=true: secrets are kept in plaintext in {}",
            data_dir.join("secrets.toml").display()
        );
        Arc::new(PlaintextStore::new(data_dir))
    } else {
        Arc::new(KeyringStore::new(data_dir))
    }
}

/// Resolves a secret setting: a reference in the config value wins, then a plaintext value in
/// the config (only with the opt-in), then the store.
pub fn resolve(
    store: &dyn SecretStore,
    key: &str,
    config_value: Option<&str>,
) -> anyhow::Result<Option<String>> {
    if let Some(v) = config_value {
        if let Some(r) = SecretRef::parse(v) {
            return r.resolve(key).map(Some);
        }
        if plaintext_opt_in() {
            register_secret(v);
            return Ok(Some(v.to_string()));
        }
        bail!(Failure::Config(format!(
            "`{key}` in config.toml is a plaintext secret; use `config set {key}` to move it to \
             the secret store, or a reference (env:NAME, file:PATH)"
        )));
    }
    store.get(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\nignored\n").unwrap();
        let r = SecretRef::parse(&format!("file:{}", f.display())).unwrap();
        assert_eq!(r.resolve("ldap.password").unwrap(), "s3cret");
        assert_eq!(SecretRef::parse("plain"), None);
        assert_eq!(SecretRef::parse("env:"), None);
        let e = SecretRef::Env("DC_TEST_SURELY_UNSET_VAR".into())
            .resolve("ldap.password")
            .unwrap_err();
        assert!(e.to_string().contains("DC_TEST_SURELY_UNSET_VAR"));
        let e = SecretRef::File(dir.path().join("missing"))
            .resolve("ldap.password")
            .unwrap_err();
        assert!(e.to_string().contains("cannot be read"));
    }

    #[test]
    fn memory_store_and_resolve_order() {
        let store = MemoryStore::default();
        assert_eq!(resolve(&store, "k", None).unwrap(), None);
        store.set("k", "v").unwrap();
        assert_eq!(resolve(&store, "k", None).unwrap().as_deref(), Some("v"));
        store.delete("k").unwrap();
        assert_eq!(store.get("k").unwrap(), None);
    }

    #[test]
    fn a_malformed_secrets_file_names_the_line_not_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let s = PlaintextStore::new(dir.path());
        for text in [
            "\"bitwarden.client_id\" = \"organization.x\"\n\"bitwarden.client_secret\" = \"Leak3dS3cretValue\n",
            "\"bitwarden.client_secret\" = 12345678901\n",
            "Leak3dS3cretValue\n",
        ] {
            std::fs::write(dir.path().join("secrets.toml"), text).unwrap();
            let e = s.get("bitwarden.client_secret").unwrap_err();
            let msg = format!("{e:#}");
            assert!(
                matches!(e.downcast_ref::<Failure>(), Some(Failure::Config(_))),
                "{msg}"
            );
            assert!(msg.contains("line "), "{msg}");
            assert!(
                !msg.contains("Leak3dS3cretValue") && !msg.contains("12345678901"),
                "{msg}"
            );
        }
        std::fs::write(dir.path().join("secrets.toml"), b"\xff\xfe\x00garbage").unwrap();
        let e = s.get("x").unwrap_err();
        assert!(format!("{e:#}").contains("line 1, column 1"), "{e:#}");
    }

    #[test]
    fn plaintext_store_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let s = PlaintextStore::new(dir.path());
        s.set("a", "1").unwrap();
        s.set("b", "2").unwrap();
        s.delete("a").unwrap();
        assert_eq!(s.get("b").unwrap().as_deref(), Some("2"));
        assert_eq!(s.get("a").unwrap(), None);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("secrets.toml"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
