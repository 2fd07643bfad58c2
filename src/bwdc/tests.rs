//! Unit tests of the import on real-shaped data.json files (`tests/fixtures/bwdc/`), one per
//! state version and directory type, with a fake keychain.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::*;
use crate::secrets::MemoryStore;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bwdc")
        .join(name)
}

/// A keychain holding upstream-style JSON-encoded values.
#[derive(Default)]
struct FakeKeychain {
    entries: HashMap<String, String>,
    broken: bool,
}

impl FakeKeychain {
    fn with(entries: &[(&str, &str)]) -> FakeKeychain {
        FakeKeychain {
            entries: entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            broken: false,
        }
    }
}

impl UpstreamKeychain for FakeKeychain {
    fn get(&self, account: &str) -> anyhow::Result<Option<String>> {
        if self.broken {
            anyhow::bail!("the OS keyring is not available (no D-Bus session)");
        }
        Ok(self.entries.get(account).cloned())
    }
}

fn run(name: &str, keychain: &FakeKeychain) -> (Report, tempfile::TempDir, MemoryStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::default();
    let opts = ImportOptions {
        path: Some(fixture(name)),
        dry_run: false,
        force: false,
    };
    let r = import(&opts, dir.path(), &store, keychain).unwrap();
    (r, dir, store)
}

fn setting<'a>(r: &'a Report, key: &str) -> Option<&'a str> {
    r.settings
        .iter()
        .find(|s| s.key == key)
        .map(|s| s.value.as_str())
}

fn skipped(r: &Report, what: &str) -> Option<String> {
    r.not_imported
        .iter()
        .find(|s| s.what == what)
        .map(|s| s.why.clone())
}

#[test]
fn v8_ldap_ad_secure_reads_the_scoped_keychain_entries() {
    let kc = FakeKeychain::with(&[
        (
            "secretLdap:3f0c9a1e-2b3c-4d5e-8f90-a1b2c3d4e5f6",
            "\"Bind-Pw\\\"quoted\"",
        ),
        // the unscoped legacy key loses against the scoped one
        ("secretLdap", "\"old-password\""),
        (
            "apiKeyClientId",
            "\"organization.8a1c2b3d-4e5f-4a6b-9c7d-0e1f2a3b4c5d\"",
        ),
        ("apiKeyClientSecret", "\"OrgSecretFromKeychain\""),
    ]);
    let (r, dir, store) = run("v8_ldap_ad_secure.json", &kc);
    assert_eq!(r.state_version, 8);
    assert_eq!(r.layout, Layout::Flat);
    for (k, v) in [
        ("directory.type", "ldap"),
        ("ldap.hostname", "ad.company.com"),
        ("ldap.port", "636"),
        ("ldap.encryption", "ldaps"),
        ("ldap.ad", "true"),
        ("ldap.paged_search", "true"),
        ("ldap.root_path", "dc=company,dc=com"),
        ("ldap.username", "COMPANY\\svc_bw"),
        ("ldap.skip_cert_verification", "false"),
        ("sync.users", "true"),
        ("sync.remove_disabled", "true"),
        ("sync.user_path", "CN=Users"),
        ("sync.group_object_class", "group"),
        ("sync.invite_users_after_provisioning", "true"),
        ("sync.interval_minutes", "5"),
        ("server.url", "https://vault.bitwarden.eu"),
    ] {
        assert_eq!(setting(&r, k), Some(v), "{k}");
    }
    assert_eq!(
        setting(&r, "sync.user_filter"),
        None,
        "blank filters stay unset"
    );
    // removeDisabled: a disabled user is revoked first now, with the default grace
    assert!(
        r.changes
            .iter()
            .any(|c| c.contains("revoked first") && c.contains("remove_revoked_after_days")),
        "{:?}",
        r.changes
    );
    assert_eq!(setting(&r, "sync.remove_revoked_after_days"), None);
    assert_eq!(
        store.get("ldap.password").unwrap().as_deref(),
        Some("Bind-Pw\"quoted")
    );
    assert_eq!(
        store.get("bitwarden.client_secret").unwrap().as_deref(),
        Some("OrgSecretFromKeychain")
    );
    assert!(r.secrets.iter().all(|s| s.stored && s.problem.is_none()));
    // what is not imported says why
    for what in [
        "lastSyncHash",
        "window",
        "enableTray",
        "appId",
        "sync.revisionDateAttribute",
        "sync.creationDateAttribute",
        "directoryLdap.domain",
    ] {
        assert!(skipped(&r, what).is_some(), "{what}: {:?}", r.not_imported);
    }
    // the written config is this project's and loads
    let cfg = config::load(dir.path()).unwrap();
    assert_eq!(cfg.ldap.encryption, config::Encryption::Ldaps);
    assert_eq!(cfg.ldap.port, Some(636));
    assert!(cfg.ldap.password.is_none(), "the secret is not in the file");
    assert!(!r.config_toml.contains("Bind-Pw"));
}

#[test]
fn an_ou_in_the_root_path_is_read_as_upstream_did() {
    let (r, dir, store) = run("v8_ldap_plaintext_ou_root.json", &FakeKeychain::default());
    assert_eq!(setting(&r, "ldap.root_path"), Some("dc=example,dc=com"));
    assert_eq!(setting(&r, "sync.user_path"), Some("ou=People"));
    assert!(
        r.changes
            .iter()
            .any(|c| c.contains("ou=people") && c.contains("`ou=People,dc=example,dc=com`")),
        "{:?}",
        r.changes
    );
    // plaintext mode: the secrets were inside data.json
    assert_eq!(
        store.get("ldap.password").unwrap().as_deref(),
        Some("ReaderPw-456")
    );
    assert_eq!(
        store.get("bitwarden.client_id").unwrap().as_deref(),
        Some("organization.3f0c0f4e-7d2a-4a57-9d1c-1a2b3c4d5e6f")
    );
    assert_eq!(
        setting(&r, "ldap.port"),
        Some("389"),
        "a port stored as text"
    );
    assert_eq!(setting(&r, "ldap.paged_search"), Some("false"));
    assert_eq!(setting(&r, "sync.interval_minutes"), Some("5"), "3 → 5");
    assert_eq!(setting(&r, "sync.email_suffix"), Some("@example.com"));
    assert_eq!(setting(&r, "server.url"), Some("https://bw.company.com"));
    assert!(skipped(&r, "environmentUrls.webVault").is_some());
    assert!(skipped(&r, "accessToken").is_some());
    let cfg = config::load(dir.path()).unwrap();
    assert_eq!(
        crate::sources::ldap::search_base(
            cfg.sync.user_path.as_deref(),
            cfg.ldap.root_path.as_deref().unwrap()
        ),
        "ou=People,dc=example,dc=com"
    );
}

#[test]
fn root_path_translation_cases() {
    let t = translate_root("dc=x,dc=y", Some("ou=a"), None);
    assert_eq!(t.root_path, "dc=x,dc=y");
    assert!(t.note.is_none());
    let t = translate_root(" OU=Staff,DC=corp,DC=local ", Some("CN=Users"), None);
    assert_eq!(t.root_path, "DC=corp,DC=local");
    assert!(t.note.unwrap().contains("drops `OU=Staff`"));
    let t = translate_root("ou=people,o=corp", Some("ou=people,o=corp"), None);
    assert_eq!(t.root_path, "ou=people,o=corp");
    assert_eq!(t.user_path, None);
    let t = translate_root("o=corp", Some("ou=a,o=corp"), Some("ou=b,o=corp"));
    assert_eq!(t.root_path, "o=corp");
    assert!(t.note.unwrap().contains("cannot express"));
}

#[test]
fn v8_entra_government_with_plaintext_secrets() {
    let (r, _dir, store) = run("v8_entra_plaintext.json", &FakeKeychain::default());
    assert_eq!(setting(&r, "directory.type"), Some("entra"));
    assert_eq!(setting(&r, "entra.cloud"), Some("government"));
    assert_eq!(
        setting(&r, "entra.tenant"),
        Some("companyad.onmicrosoft.us")
    );
    assert_eq!(
        setting(&r, "sync.user_filter"),
        Some("includeGroup:0f3c1a2b-0000-4000-8000-000000000001|exclude:joe@company.com")
    );
    assert_eq!(setting(&r, "sync.large_import"), Some("true"));
    assert_eq!(
        setting(&r, "sync.interval_minutes"),
        None,
        "null: the default"
    );
    // AD overrides upstream wrote for a non-LDAP setup are not carried over
    assert_eq!(setting(&r, "sync.user_path"), None);
    assert!(skipped(&r, "sync.userPath").is_some());
    assert_eq!(
        store.get("entra.key").unwrap().as_deref(),
        Some("EntraSecret~abc123")
    );
    assert_eq!(
        store.get("bitwarden.client_secret").unwrap().as_deref(),
        Some("EntraOrgApiSecret")
    );
}

#[test]
fn v8_google_rebuilds_the_service_account_key_from_the_keychain() {
    let kc = FakeKeychain::with(&[(
        "secretGsuite:aa11bb22-cc33-4d44-8e55-ff6677889900",
        "\"-----BEGIN PRIVATE KEY-----\\\\nMIIE\\\\n-----END PRIVATE KEY-----\\\\n\"",
    )]);
    let (r, _dir, store) = run("v8_gsuite_secure.json", &kc);
    assert_eq!(setting(&r, "directory.type"), Some("google"));
    assert_eq!(setting(&r, "google.admin_user"), Some("admin@company.com"));
    assert_eq!(setting(&r, "google.customer"), Some("my_customer"));
    assert_eq!(setting(&r, "sync.groups"), Some("false"));
    let key: serde_json::Value =
        serde_json::from_str(&store.get("google.key").unwrap().unwrap()).unwrap();
    assert_eq!(key["client_email"], "bwdc@project.iam.gserviceaccount.com");
    assert_eq!(
        key["private_key"],
        "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
    );
    // no API key anywhere: the summary says which and how
    let id = r
        .secrets
        .iter()
        .find(|s| s.key == "bitwarden.client_id")
        .unwrap();
    assert!(!id.stored);
    assert!(id.problem.as_ref().unwrap().contains("`apiKeyClientId`"));
    assert!(
        id.command
            .as_ref()
            .unwrap()
            .contains("directory-connector login")
    );
}

#[test]
fn v8_okta_and_a_clamped_interval() {
    let (r, _dir, store) = run("v8_okta_plaintext.json", &FakeKeychain::default());
    assert_eq!(
        setting(&r, "okta.org_url"),
        Some("https://mycompany.okta.com")
    );
    assert!(r.changes.iter().any(|c| c.contains("trailing slash")));
    assert_eq!(setting(&r, "sync.interval_minutes"), Some("10080"));
    assert_eq!(
        setting(&r, "sync.group_filter"),
        Some("|type eq \"APP_GROUP\"")
    );
    assert_eq!(
        store.get("okta.token").unwrap().as_deref(),
        Some("00OktaApiToken")
    );
}

/// Runs an import that must fail; returns its message.
fn import_err(name: &str, keychain: &FakeKeychain, dir: &Path, store: &MemoryStore) -> String {
    let opts = ImportOptions {
        path: Some(fixture(name)),
        ..ImportOptions::default()
    };
    let e = import(&opts, dir, store, keychain).unwrap_err();
    assert!(
        matches!(e.downcast_ref::<Failure>(), Some(Failure::Config(_))),
        "exit 2: {e:#}"
    );
    format!("{e:#}")
}

#[test]
fn a_secret_in_an_unreadable_keychain_fails_the_import_and_writes_nothing() {
    let kc = FakeKeychain {
        broken: true,
        ..FakeKeychain::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::default();
    let e = import_err("v8_onelogin_secure.json", &kc, dir.path(), &store);
    for want in [
        "nothing was imported",
        "onelogin.client_secret (directoryOnelogin.clientSecret is \"[STORED SECURELY]\")",
        "the keychain could not be read: entry `Bitwarden Directory Connector` / \
         `secretOneLogin:0c0c0c0c-1d1d-4e2e-8f3f-404040404040`: the OS keyring is not available",
        "account `secretOneLogin:0c0c0c0c-1d1d-4e2e-8f3f-404040404040` or `secretOneLogin`",
        "directory-connector config set onelogin.client_secret",
    ] {
        assert!(e.contains(want), "{want}: {e}");
    }
    assert!(!config::config_path(dir.path()).exists(), "nothing written");
    assert!(store.get("onelogin.client_secret").unwrap().is_none());
}

#[test]
fn a_secret_data_json_keeps_in_the_keychain_and_is_not_there_fails_the_import() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::default();
    // only the API key is there: the LDAP password is missing
    let kc = FakeKeychain::with(&[
        (
            "apiKeyClientId",
            "\"organization.8a1c2b3d-4e5f-4a6b-9c7d-0e1f2a3b4c5d\"",
        ),
        ("apiKeyClientSecret", "\"OrgSecretFromKeychain\""),
    ]);
    let e = import_err("v8_ldap_ad_secure.json", &kc, dir.path(), &store);
    for want in [
        "ldap.password (directoryLdap.password is \"[STORED SECURELY]\")",
        "not in data.json and not in the keychain: service `Bitwarden Directory Connector`, \
         account `secretLdap:3f0c9a1e-2b3c-4d5e-8f90-a1b2c3d4e5f6` or `secretLdap`",
    ] {
        assert!(e.contains(want), "{want}: {e}");
    }
    // an entry that is not upstream's JSON is as good as missing
    let kc = FakeKeychain::with(&[("secretLdap", "not json")]);
    let e = import_err("v8_ldap_ad_secure.json", &kc, dir.path(), &store);
    assert!(e.contains("not JSON-encoded"), "{e}");
    // a dry run says the import would fail
    let opts = ImportOptions {
        path: Some(fixture("v8_ldap_ad_secure.json")),
        dry_run: true,
        force: false,
    };
    let e = format!("{:#}", import(&opts, dir.path(), &store, &kc).unwrap_err());
    assert!(e.contains("the import would fail"), "{e}");
    assert!(!config::config_path(dir.path()).exists(), "nothing written");
    assert!(
        store.get(KEY_CLIENT_ID).unwrap().is_none(),
        "nothing stored"
    );
    // the API key is not one data.json refers to: without it the import goes on (login later)
    let kc = FakeKeychain::with(&[("secretLdap", "\"pw\"")]);
    let (r, _dir, _store) = run("v8_ldap_ad_secure.json", &kc);
    assert!(
        r.secrets
            .iter()
            .any(|s| s.key == KEY_CLIENT_ID && s.problem.is_some())
    );
}

#[test]
fn v7_azure_gets_invitations_on_as_the_migration_does() {
    let (r, _dir, store) = run("v7_azure_plaintext.json", &FakeKeychain::default());
    assert_eq!(r.state_version, 7);
    assert_eq!(
        setting(&r, "entra.tenant"),
        Some("companyad.onmicrosoft.com")
    );
    assert_eq!(setting(&r, "entra.cloud"), Some("public"));
    assert_eq!(
        setting(&r, "sync.invite_users_after_provisioning"),
        Some("true")
    );
    assert!(r.changes.iter().any(|c| c.contains("state version 7")));
    assert_eq!(
        store.get("entra.key").unwrap().as_deref(),
        Some("AzureLegacySecret")
    );
}

#[test]
fn v5_starttls_uses_the_unscoped_legacy_key_and_skips_missing_files() {
    let kc = FakeKeychain::with(&[
        ("secretLdap", "\"legacy-bind\""),
        ("apiKeyClientId", "not json"),
    ]);
    let (r, _dir, store) = run("v5_ldap_startls_secure_legacy_key.json", &kc);
    assert_eq!(setting(&r, "ldap.encryption"), Some("starttls"));
    assert_eq!(setting(&r, "ldap.ca_file"), None);
    assert!(
        skipped(&r, "directoryLdap.tlsCaPath")
            .unwrap()
            .contains("does not exist")
    );
    assert!(skipped(&r, "directoryLdap.sslCertPath").is_some());
    assert_eq!(setting(&r, "sync.interval_minutes"), None, "0: the default");
    assert_eq!(setting(&r, "sync.member_attribute"), Some("uniqueMember"));
    assert_eq!(
        store.get("ldap.password").unwrap().as_deref(),
        Some("legacy-bind")
    );
    let id = r
        .secrets
        .iter()
        .find(|s| s.key == "bitwarden.client_id")
        .unwrap();
    assert!(id.problem.as_ref().unwrap().contains("not JSON-encoded"));
}

#[test]
fn v4_account_layout_with_an_ou_root_and_legacy_keychain_names() {
    let kc = FakeKeychain::with(&[(
        "organization.8a1c2b3d-4e5f-4a6b-9c7d-0e1f2a3b4c5d_ldapPassword",
        "\"AccountPw\"",
    )]);
    let (r, _dir, store) = run("v4_account_ldap.json", &kc);
    assert_eq!(r.state_version, 4);
    assert!(matches!(r.layout, Layout::Account { .. }));
    assert_eq!(setting(&r, "ldap.hostname"), Some("dc1.corp.local"));
    assert_eq!(setting(&r, "ldap.root_path"), Some("DC=corp,DC=local"));
    assert_eq!(setting(&r, "sync.user_path"), Some("CN=Users"));
    assert_eq!(
        setting(&r, "server.api_url"),
        Some("https://api.bw.example.net")
    );
    assert_eq!(setting(&r, "server.url"), None);
    assert_eq!(
        setting(&r, "sync.invite_users_after_provisioning"),
        Some("true")
    );
    assert_eq!(
        store.get("ldap.password").unwrap().as_deref(),
        Some("AccountPw")
    );
    assert_eq!(
        store.get("bitwarden.client_secret").unwrap().as_deref(),
        Some("AccountLayoutApiSecret")
    );
}

#[test]
fn v3_account_layout_with_the_azure_name() {
    let kc = FakeKeychain::with(&[("user-1_azureKey", "\"V3AzureKey\"")]);
    let (r, _dir, store) = run("v3_account_azure.json", &kc);
    assert_eq!(r.state_version, 3);
    assert_eq!(setting(&r, "entra.tenant"), Some("legacy.onmicrosoft.com"));
    assert_eq!(
        store.get("entra.key").unwrap().as_deref(),
        Some("V3AzureKey")
    );
    assert_eq!(
        store.get("bitwarden.client_secret").unwrap().as_deref(),
        Some("V3ClientSecret")
    );
}

#[test]
fn too_old_broken_and_missing_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::default();
    let kc = FakeKeychain::default();
    let try_import = |p: PathBuf| {
        let opts = ImportOptions {
            path: Some(p),
            ..ImportOptions::default()
        };
        format!("{:#}", import(&opts, dir.path(), &store, &kc).unwrap_err())
    };
    assert!(try_import(fixture("v2_too_old.json")).contains("state version 2"));
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"stateVersion\": 8,").unwrap();
    let e = try_import(bad);
    assert!(
        e.contains("not valid JSON") && e.contains("bad.json"),
        "{e}"
    );
    let e = try_import(dir.path().join("nowhere"));
    assert!(e.contains("not found"), "{e}");
    assert!(!config::config_path(dir.path()).exists(), "nothing written");
}

/// Issue 26 item 10: a FIFO given as the path (or as data.json in the given folder) made
/// `import-bwdc` wait forever in its open.
#[cfg(unix)]
#[test]
fn a_fifo_is_refused_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = tempfile::tempdir().unwrap();
    let fifo = upstream.path().join("data.json");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for path in [fifo.clone(), upstream.path().to_path_buf()] {
        let data_dir = dir.path().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let opts = ImportOptions {
                path: Some(path),
                ..ImportOptions::default()
            };
            let r = import(
                &opts,
                &data_dir,
                &MemoryStore::default(),
                &FakeKeychain::default(),
            );
            let _ = tx.send(r.map(|_| ()).map_err(|e| format!("{e:#}")));
        });
        let r = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("import-bwdc returns instead of waiting on the FIFO");
        let e = r.unwrap_err();
        assert!(
            e.contains("is not a regular file (a FIFO)") && e.contains("data.json"),
            "{e}"
        );
    }
    assert!(!config::config_path(dir.path()).exists(), "nothing written");
}

#[test]
fn an_api_key_of_another_organization_is_not_imported() {
    let (r, _dir, store) = run("v8_org_mismatch.json", &FakeKeychain::default());
    assert!(store.get("bitwarden.client_secret").unwrap().is_none());
    let s = r
        .secrets
        .iter()
        .find(|s| s.key == "bitwarden.client_secret")
        .unwrap();
    assert!(s.problem.as_ref().unwrap().contains("aaaaaaaa-0000"));
    // the directory secret still is
    assert_eq!(store.get("okta.token").unwrap().as_deref(), Some("tok"));
}

#[test]
fn dry_run_writes_nothing_and_a_configured_dir_is_refused_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::default();
    let kc = FakeKeychain::with(&[(
        "secretOneLogin:0c0c0c0c-1d1d-4e2e-8f3f-404040404040",
        "\"ol-secret\"",
    )]);
    let mut opts = ImportOptions {
        path: Some(fixture("v8_okta_plaintext.json")),
        dry_run: true,
        force: false,
    };
    let r = import(&opts, dir.path(), &store, &kc).unwrap();
    assert!(
        r.config_toml
            .contains("org_url = \"https://mycompany.okta.com\"")
    );
    assert!(!config::config_path(dir.path()).exists());
    assert!(store.get("okta.token").unwrap().is_none());
    assert!(r.secrets.iter().all(|s| !s.stored));

    opts.dry_run = false;
    import(&opts, dir.path(), &store, &kc).unwrap();
    let before = std::fs::read(config::config_path(dir.path())).unwrap();
    opts.path = Some(fixture("v8_onelogin_secure.json"));
    let e = import(&opts, dir.path(), &store, &kc).unwrap_err();
    assert!(format!("{e:#}").contains("already configured"), "{e:#}");
    assert_eq!(
        std::fs::read(config::config_path(dir.path())).unwrap(),
        before
    );
    // --force replaces the configuration, and the secrets of the one it replaces go too
    opts.force = true;
    opts.dry_run = true;
    let r = import(&opts, dir.path(), &store, &kc).unwrap();
    let gone = ["okta.token", KEY_CLIENT_ID, KEY_CLIENT_SECRET];
    assert_eq!(r.removed_secrets, gone);
    assert!(
        summary(&r, "memory")
            .iter()
            .any(|l| l.starts_with("Would be removed from memory") && l.contains("okta.token"))
    );
    assert!(store.get("okta.token").unwrap().is_some(), "a dry run");
    opts.dry_run = false;
    let r = import(&opts, dir.path(), &store, &kc).unwrap();
    assert_eq!(setting(&r, "directory.type"), Some("onelogin"));
    let cfg = config::load(dir.path()).unwrap();
    assert_eq!(cfg.directory.kind, Some(config::DirectoryType::Onelogin));
    assert_eq!(cfg.okta.org_url, None, "--force replaces the configuration");
    assert_eq!(r.removed_secrets, gone);
    for key in gone {
        assert_eq!(store.get(key).unwrap(), None, "{key}");
    }
    assert_eq!(
        store.get("onelogin.client_secret").unwrap().as_deref(),
        Some("ol-secret")
    );
}

/// A store whose writes of one key fail.
struct FailingStore {
    inner: MemoryStore,
    fail_on: &'static str,
}

impl SecretStore for FailingStore {
    fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        self.inner.get(key)
    }
    fn set(&self, key: &str, value: &str) -> anyhow::Result<()> {
        if key == self.fail_on {
            anyhow::bail!("the store refused `{key}`");
        }
        self.inner.set(key, value)
    }
    fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.inner.delete(key)
    }
    fn describe(&self) -> String {
        "the failing store".into()
    }
}

#[test]
fn a_secret_that_cannot_be_stored_puts_everything_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = FailingStore {
        inner: MemoryStore::default(),
        fail_on: KEY_CLIENT_SECRET,
    };
    // the replaced configuration's secrets
    store.inner.set("okta.token", "old-token").unwrap();
    store.inner.set(KEY_CLIENT_ID, "organization.old").unwrap();
    std::fs::write(
        config::config_path(dir.path()),
        "[okta]\norg_url = \"https://o\"\n",
    )
    .unwrap();
    let before = std::fs::read(config::config_path(dir.path())).unwrap();
    let opts = ImportOptions {
        path: Some(fixture("v8_entra_plaintext.json")),
        dry_run: false,
        force: true,
    };
    let e = format!(
        "{:#}",
        import(&opts, dir.path(), &store, &FakeKeychain::default()).unwrap_err()
    );
    assert!(
        e.contains("nothing was imported (the secret store is as it was)")
            && e.contains("storing `bitwarden.client_secret` in the failing store"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(config::config_path(dir.path())).unwrap(),
        before
    );
    assert_eq!(store.get("entra.key").unwrap(), None);
    assert_eq!(
        store.get("okta.token").unwrap().as_deref(),
        Some("old-token")
    );
    assert_eq!(
        store.get(KEY_CLIENT_ID).unwrap().as_deref(),
        Some("organization.old")
    );
}

/// A data.json in a temporary directory.
fn data_json(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("data.json");
    std::fs::write(&p, text).unwrap();
    p
}

fn import_text(text: &str) -> (Report, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let opts = ImportOptions {
        path: Some(data_json(dir.path(), text)),
        dry_run: true,
        force: false,
    };
    let r = import(
        &opts,
        dir.path(),
        &MemoryStore::default(),
        &FakeKeychain::default(),
    )
    .unwrap();
    (r, dir)
}

#[test]
fn paged_search_is_imported_as_set_and_missing_flags_read_as_off() {
    let ldap = |flags: &str| {
        format!(
            r#"{{"stateVersion": 8, "directoryType": 0,
              "directoryLdap": {{"hostname": "dc", "rootPath": "dc=x", "password": "pw"{flags}}}}}"#
        )
    };
    for (flags, ad, paged) in [
        (r#", "ad": true, "pagedSearch": false"#, "true", "false"),
        (r#", "ad": true, "pagedSearch": true"#, "true", "true"),
        (r#", "ad": false, "pagedSearch": true"#, "false", "true"),
        ("", "false", "false"),
        (r#", "ad": true"#, "true", "false"),
        (r#", "pagedSearch": true"#, "false", "true"),
    ] {
        let (r, _dir) = import_text(&ldap(flags));
        assert_eq!(setting(&r, "ldap.ad"), Some(ad), "{flags}");
        assert_eq!(setting(&r, "ldap.paged_search"), Some(paged), "{flags}");
        let warned = r.warnings.iter().any(|w| w.contains("1000 entries"));
        assert_eq!(warned, ad == "true" && paged == "false", "{flags}");
    }
}

/// Issue 26 item 10: `"sync": []` or `"sync": "yes"` imported as "sync nothing", and
/// `"groups": 1` as false. A value of the wrong type refuses the import, naming the field and
/// the type it needs.
#[test]
fn wrongly_typed_values_are_refused_naming_the_field_and_the_type() {
    let okta = r#""directoryOkta": {"orgUrl": "https://o.okta.com", "token": "t"}"#;
    for (sync, want) in [
        (r#""sync": []"#, "`sync` is an array, expected an object"),
        (
            r#""sync": "yes""#,
            "`sync` is the string \"yes\", expected an object",
        ),
        (
            r#""sync": {"users": true, "groups": 1}"#,
            "`sync.groups` is 1, expected true or false",
        ),
        (
            r#""sync": {"users": "yes"}"#,
            "`sync.users` is the string \"yes\", expected true or false",
        ),
        (
            r#""sync": {"users": true, "interval": [5]}"#,
            "`sync.interval` is an array, expected a whole number",
        ),
        (
            r#""sync": {"users": true, "userFilter": {"a": 1}}"#,
            "`sync.userFilter` is an object, expected a string",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(r#"{{"stateVersion": 8, "directoryType": 3, {okta}, {sync}}}"#);
        let opts = ImportOptions {
            path: Some(data_json(dir.path(), &text)),
            ..ImportOptions::default()
        };
        let e = format!(
            "{:#}",
            import(
                &opts,
                dir.path(),
                &MemoryStore::default(),
                &FakeKeychain::default()
            )
            .unwrap_err()
        );
        assert!(
            e.contains(want) && e.contains("nothing was imported"),
            "{sync}: {e}"
        );
        assert!(!config::config_path(dir.path()).exists(), "{sync}");
    }
    // a directory's object and the directory type too, every problem at once
    let dir = tempfile::tempdir().unwrap();
    let text = r#"{"stateVersion": 8, "directoryType": "ldap",
        "directoryLdap": {"hostname": "dc", "ssl": "on", "port": true}}"#;
    let opts = ImportOptions {
        path: Some(data_json(dir.path(), text)),
        ..ImportOptions::default()
    };
    let e = format!(
        "{:#}",
        import(
            &opts,
            dir.path(),
            &MemoryStore::default(),
            &FakeKeychain::default()
        )
        .unwrap_err()
    );
    for want in [
        "`directoryType` is the string \"ldap\", expected a whole number",
        "`directoryLdap.ssl` is the string \"on\", expected true or false",
        "`directoryLdap.port` is true, expected a whole number",
    ] {
        assert!(e.contains(want), "{want}: {e}");
    }
    // the lenient forms upstream writes still import: flags as strings, numbers as strings,
    // nulls as not set
    let (r, _dir) = import_text(&format!(
        r#"{{"stateVersion": 8, "directoryType": "3", {okta},
            "sync": {{"users": "true", "groups": false, "interval": "60", "userFilter": null}}}}"#
    ));
    assert_eq!(setting(&r, "sync.users"), Some("true"));
    assert_eq!(setting(&r, "sync.groups"), Some("false"));
    assert_eq!(setting(&r, "sync.interval_minutes"), Some("60"));
}

#[test]
fn a_null_or_zero_interval_keeps_the_default_and_the_config_validates() {
    for interval in ["null", "0", "-3"] {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            r#"{{"stateVersion": 8, "directoryType": 3,
               "directoryOkta": {{"orgUrl": "https://o.okta.com", "token": "t"}},
               "sync": {{"users": true, "interval": {interval}}}}}"#
        );
        let opts = ImportOptions {
            path: Some(data_json(dir.path(), &text)),
            ..ImportOptions::default()
        };
        let r = import(
            &opts,
            dir.path(),
            &MemoryStore::default(),
            &FakeKeychain::default(),
        )
        .unwrap();
        assert_eq!(setting(&r, "sync.interval_minutes"), None, "{interval}");
        assert!(
            skipped(&r, "sync.interval")
                .unwrap()
                .starts_with(&format!("{interval}: no automatic syncs")),
            "{interval}: {:?}",
            r.not_imported
        );
        let cfg = config::load(dir.path()).unwrap();
        assert_eq!(cfg.sync.interval_minutes, 5);
        assert!(
            crate::service::settings_problems(&cfg).is_empty(),
            "{interval}: {:?}",
            crate::service::settings_problems(&cfg)
        );
        assert!(
            config::validate(&cfg, true, false)
                .iter()
                .all(|p| p.key != "sync.interval_minutes"),
            "{interval}"
        );
    }
}

#[test]
fn an_oversized_data_json_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("data.json");
    // sparse: no disk space used
    std::fs::File::create(&big)
        .unwrap()
        .set_len(MAX_DATA_JSON_BYTES + 1)
        .unwrap();
    let opts = ImportOptions {
        path: Some(dir.path().to_path_buf()),
        ..ImportOptions::default()
    };
    let store = MemoryStore::default();
    let e = import(&opts, dir.path(), &store, &FakeKeychain::default()).unwrap_err();
    assert!(matches!(
        e.downcast_ref::<Failure>(),
        Some(Failure::Config(_))
    ));
    let e = format!("{e:#}");
    assert!(
        e.contains("16777217 bytes") && e.contains("over 16 MiB are not read"),
        "{e}"
    );
    assert!(!config::config_path(dir.path()).exists());
    // at the limit it is read (and then fails as JSON)
    std::fs::File::create(&big)
        .unwrap()
        .set_len(MAX_DATA_JSON_BYTES)
        .unwrap();
    let e = format!(
        "{:#}",
        import(&opts, dir.path(), &store, &FakeKeychain::default()).unwrap_err()
    );
    assert!(e.contains("not valid JSON"), "{e}");
}

#[test]
fn keychain_values_are_read_as_utf16_or_utf8() {
    let utf16: Vec<u8> = "\"pw-é\""
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    assert_eq!(keychain_text(&utf16).as_deref(), Some("\"pw-é\""));
    // keytar's UTF-8, even of an even length
    assert_eq!(keychain_text(b"\"ab\"").as_deref(), Some("\"ab\""));
    assert_eq!(keychain_text(b"\"abc\"").as_deref(), Some("\"abc\""));
    assert_eq!(keychain_text(b"no json").as_deref(), Some("no json"));
    assert_eq!(keychain_text(&[0xff, 0xfe, 0xfd]), None);
}
