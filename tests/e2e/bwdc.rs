//! End-to-end: switching from the official connector. The real binary imports a bwdc
//! `data.json` that points at a real slapd and the fake Bitwarden server; `test` then lists the
//! users upstream listed (also with an OU in the root path, which upstream drops), and the first
//! `sync` on an organization that already matches sends nothing. Upstream's file is never
//! changed. In secure mode the secrets come from a private Secret Service holding them as
//! upstream (keytar) stored them; a secret data.json keeps there that cannot be read fails the
//! import and writes nothing.

use crate::support;

use std::path::{Path, PathBuf};

use support::Env;
use support::fake_bitwarden::FakeBitwarden;
use support::secret_service::SecretService;
use support::slapd::{self, Slapd, person, user_dn};

fn email(i: usize) -> String {
    format!("u{i}@example.com")
}

fn directory() -> String {
    let mut l = String::new();
    for i in 0..6 {
        l.push_str(&person(&format!("u{i}"), Some(&email(i)), i == 5));
    }
    let members: Vec<String> = (0..3).map(|i| user_dn(&format!("u{i}"))).collect();
    l.push_str(&slapd::group("team", &members));
    l
}

/// An upstream data.json (state version 8, plaintext mode) for this slapd and server, with an
/// OU in the root path as admins often had it.
fn data_json(slapd: &Slapd, server: &FakeBitwarden, secure: bool) -> String {
    let (pw, id, secret) = if secure {
        (
            "\"[STORED SECURELY]\"".to_string(),
            "null".into(),
            "null".into(),
        )
    } else {
        (
            format!("\"{}\"", slapd::READER_PW),
            format!("\"{}\"", support::client_id()),
            format!("\"{}\"", support::CLIENT_SECRET),
        )
    };
    format!(
        r#"{{
  "stateVersion": 8,
  "installedVersion": "2026.6.1",
  "environmentUrls": {{ "base": "{url}", "api": null, "identity": null, "webVault": null }},
  "entityId": "{org}", "organizationId": "{org}",
  "directoryType": 0,
  "directoryLdap": {{ "id": "3f0c9a1e-2b3c-4d5e-8f90-a1b2c3d4e5f6", "ssl": false, "startTls": false,
    "sslAllowUnauthorized": false, "hostname": "127.0.0.1", "port": "{port}",
    "rootPath": "ou=People,{base}", "currentUser": false, "username": "{reader}",
    "password": {pw}, "ad": false, "pagedSearch": true }},
  "sync": {{ "users": true, "groups": true, "interval": 5, "userFilter": "", "groupFilter": "",
    "removeDisabled": false, "overwriteExisting": false, "largeImport": false,
    "inviteUsersAfterProvisioning": false, "groupObjectClass": "groupOfNames",
    "userObjectClass": "inetOrgPerson", "groupPath": "ou=Groups", "userPath": "ou=People",
    "groupNameAttribute": "cn", "userEmailAttribute": "mail", "memberAttribute": "member",
    "useEmailPrefixSuffix": false }},
  "lastUserSync": "2026-08-01T10:00:00.000Z", "lastGroupSync": "2026-08-01T10:00:00.000Z",
  "lastSyncHash": "PiRMKff0jtytABVv0wxhu8EadDQO5HrsQJT/Cu88RfU=",
  "apiKeyClientId": {id}, "apiKeyClientSecret": {secret},
  "window": {{ "width": 800, "height": 600 }}, "enableTray": false
}}"#,
        url = server.url,
        org = support::ORG_ID,
        port = slapd.port,
        base = slapd::BASE,
        reader = slapd::READER_DN,
    )
}

/// An upstream data directory holding `text` as data.json.
fn upstream(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.json");
    std::fs::write(&file, text).unwrap();
    (dir, file)
}

fn fingerprint(file: &Path) -> (Vec<u8>, std::time::SystemTime) {
    (
        std::fs::read(file).unwrap(),
        std::fs::metadata(file).unwrap().modified().unwrap(),
    )
}

/// A data directory that knows the API key only from what it imports.
fn fresh_env() -> Env {
    let mut env = Env::new();
    env.remove_var("BW_CLIENTID");
    env.remove_var("BW_CLIENTSECRET");
    env.set_var("DIRECTORY_CONNECTOR_RETRIES", "1");
    env
}

fn emails(list: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn import_then_test_lists_the_users_and_a_matching_org_gets_nothing() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    // the organization as upstream left it: synced from the same directory
    let mut before = Env::new();
    before.set_var("DIRECTORY_CONNECTOR_RETRIES", "1");
    before.configure(&slapd, &server);
    before.ok(&["sync"]);
    let pushes = server.import_count();
    assert_eq!(server.org().emails().len(), 6);

    let (_up, file) = upstream(&data_json(&slapd, &server, false));
    // what the root path with an OU gives without the translation: nothing found
    let plain = fresh_env();
    plain.configure(&slapd, &server);
    plain.set("ldap.root_path", &format!("ou=People,{}", slapd::BASE));
    let r = plain.run(&["--json", "test"]);
    let found = serde_json::from_str::<serde_json::Value>(&r.stdout)
        .ok()
        .and_then(|j| j["enabledUsers"].as_array().map(Vec::len))
        .unwrap_or(0);
    assert_eq!(found, 0, "without the translation: {}", r.all());

    let before_bytes = fingerprint(&file);
    let env = fresh_env();
    let dry = env.ok(&["import-bwdc", file.to_str().unwrap(), "--dry-run"]);
    assert!(
        dry.stdout.contains("root_path = \"dc=example,dc=com\""),
        "{}",
        dry.stdout
    );
    assert!(
        !env.path().join("config.toml").exists(),
        "a dry run writes nothing"
    );
    let r = env.ok(&["import-bwdc", file.to_str().unwrap()]);
    assert!(
        r.stdout.contains("became `dc=example,dc=com`"),
        "the change and its reason are printed: {}",
        r.stdout
    );
    assert!(r.stdout.contains("ldap.password: stored"), "{}", r.stdout);
    assert!(
        r.stdout.contains("bitwarden.client_secret: stored"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("lastSyncHash:"), "{}", r.stdout);
    assert!(
        r.stdout.contains("directory-connector test"),
        "{}",
        r.stdout
    );
    assert!(
        !r.all().contains(slapd::READER_PW) && !r.all().contains(support::CLIENT_SECRET),
        "no secret printed"
    );
    assert_eq!(
        fingerprint(&file),
        before_bytes,
        "upstream's data.json is unchanged"
    );

    // `test` lists the users and groups upstream listed
    let j = env.json(&["test"]);
    assert_eq!(
        emails(&j["enabledUsers"]),
        (0..5).map(email).collect::<Vec<_>>()
    );
    assert_eq!(emails(&j["disabledUsers"]), vec![email(5)]);
    assert_eq!(j["groups"][0]["name"], "team");
    assert_eq!(j["groups"][0]["userIds"].as_array().unwrap().len(), 3);

    // the first sync plans against the organization, which already matches: nothing sent
    let r = env.ok(&["sync"]);
    assert_eq!(server.import_count(), pushes, "{}", r.all());

    // a configured data directory is refused, and --force replaces it
    let r = env.expect(&["import-bwdc", file.to_str().unwrap()], 2);
    assert!(r.stderr.contains("already configured"), "{}", r.stderr);
    env.ok(&["import-bwdc", file.to_str().unwrap(), "--force"]);
    assert_eq!(fingerprint(&file), before_bytes);

    // --json answers like the other commands
    let j = fresh_env().json(&["import-bwdc", file.to_str().unwrap(), "--dry-run"]);
    assert_eq!(j["success"], true);
    assert_eq!(j["state_version"], 8);
    assert!(
        j["changes"][0]
            .as_str()
            .unwrap()
            .contains("dc=example,dc=com")
    );
}

#[test]
fn secure_mode_without_a_readable_keychain_fails_naming_the_secret_and_writes_nothing() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let (up, file) = upstream(&data_json(&slapd, &server, true));
    let before = fingerprint(&file);
    let mut env = fresh_env();
    // no Secret Service here: upstream's keychain cannot be read
    env.set_var("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus");
    // the default path: BITWARDENCLI_CONNECTOR_APPDATA_DIR
    env.set_var(
        "BITWARDENCLI_CONNECTOR_APPDATA_DIR",
        up.path().to_str().unwrap(),
    );
    for args in [&["import-bwdc", "--dry-run"][..], &["import-bwdc"]] {
        let r = env.expect(args, 2);
        for want in [
            "ldap.password",
            "directoryLdap.password is \"[STORED SECURELY]\"",
            "keychain could not be read",
            "secretLdap:3f0c9a1e-2b3c-4d5e-8f90-a1b2c3d4e5f6",
            "directory-connector config set ldap.password",
        ] {
            assert!(r.stderr.contains(want), "{want}: {}", r.all());
        }
        assert!(r.stdout.is_empty(), "{}", r.all());
    }
    assert!(
        !env.path().join("config.toml").exists() && !env.path().join("secrets.toml").exists(),
        "nothing written"
    );
    assert_eq!(fingerprint(&file), before);
}

#[test]
fn secure_mode_reads_the_secrets_where_the_official_connector_stored_them() {
    let keychain = SecretService::start();
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    const SERVICE: &str = "Bitwarden Directory Connector";
    const LDAP_ACCOUNT: &str = "secretLdap:3f0c9a1e-2b3c-4d5e-8f90-a1b2c3d4e5f6";
    // as upstream stores them: keytar's attributes, JSON-encoded values
    let json = |s: &str| serde_json::Value::from(s).to_string();
    keychain.store_keytar(SERVICE, LDAP_ACCOUNT, &json(slapd::READER_PW));
    keychain.store_keytar(SERVICE, "apiKeyClientId", &json(&support::client_id()));
    keychain.store_keytar(SERVICE, "apiKeyClientSecret", &json(support::CLIENT_SECRET));
    // an item under the keyring crate's own attributes is not upstream's: never read
    keychain.store(
        &[("service", SERVICE), ("username", LDAP_ACCOUNT)],
        &json("not-the-password"),
    );
    let (_up, file) = upstream(&data_json(&slapd, &server, true));
    let before = fingerprint(&file);
    let mut env = fresh_env();
    env.set_var("DBUS_SESSION_BUS_ADDRESS", &keychain.address);
    let r = env.ok(&["import-bwdc", file.to_str().unwrap()]);
    for key in [
        "ldap.password",
        "bitwarden.client_id",
        "bitwarden.client_secret",
    ] {
        assert!(
            r.stdout.contains(&format!("{key}: stored")),
            "{key}: {}",
            r.stdout
        );
    }
    assert!(!r.all().contains(slapd::READER_PW), "no secret printed");
    // the password and the API key work: `test` binds, `sync` logs in
    let j = env.json(&["test"]);
    assert_eq!(
        emails(&j["enabledUsers"]),
        (0..5).map(email).collect::<Vec<_>>()
    );
    env.ok(&["sync"]);
    assert_eq!(server.org().emails().len(), 6);

    // another directory setup whose password is not in the keychain: refused, and the data
    // directory keeps the first import untouched
    let cfg = std::fs::read(env.path().join("config.toml")).unwrap();
    let secrets = std::fs::read(env.path().join("secrets.toml")).unwrap();
    let other = data_json(&slapd, &server, true).replace(
        "3f0c9a1e-2b3c-4d5e-8f90-a1b2c3d4e5f6",
        "99999999-2b3c-4d5e-8f90-a1b2c3d4e5f6",
    );
    let (_up2, file2) = upstream(&other);
    let r = env.expect(&["import-bwdc", file2.to_str().unwrap(), "--force"], 2);
    for want in [
        "nothing was imported",
        "ldap.password",
        "service = `Bitwarden Directory Connector` and account = \
         `secretLdap:99999999-2b3c-4d5e-8f90-a1b2c3d4e5f6` or `secretLdap`",
    ] {
        assert!(r.stderr.contains(want), "{want}: {}", r.all());
    }
    assert_eq!(std::fs::read(env.path().join("config.toml")).unwrap(), cfg);
    assert_eq!(
        std::fs::read(env.path().join("secrets.toml")).unwrap(),
        secrets
    );
    assert_eq!(
        fingerprint(&file),
        before,
        "upstream's data.json is unchanged"
    );
}

/// A data directory configured for the slapd and server, synced once.
fn synced() -> (Slapd, FakeBitwarden, Env) {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let mut env = Env::new();
    env.set_var("DIRECTORY_CONNECTOR_RETRIES", "1");
    env.configure(&slapd, &server);
    env.ok(&["sync"]);
    (slapd, server, env)
}

fn json_of(s: &str) -> serde_json::Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("{e}: {s}"))
}

#[test]
fn bwdc_flags_answer_in_upstream_shapes() {
    let (_slapd, server, mut env) = synced();
    let pushes = server.import_count();

    // --response: the envelope around upstream's test object
    let r = env.ok(&["--response", "test", "--last"]);
    let j = json_of(&r.stdout);
    assert_eq!(j["success"], true);
    assert_eq!(j["data"]["object"], "test");
    let enabled: Vec<&str> = j["data"]["enabledUsers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["displayName"].as_str().unwrap())
        .collect();
    assert_eq!(
        enabled,
        [
            "u0@example.com",
            "u1@example.com",
            "u2@example.com",
            "u3@example.com",
            "u4@example.com"
        ]
    );
    assert_eq!(
        j["data"]["disabledUsers"][0]["displayName"],
        "u5@example.com"
    );
    assert_eq!(j["data"]["deletedUsers"], serde_json::json!([]));
    assert_eq!(j["data"]["groups"][0]["displayName"], "team");
    assert_eq!(
        j["data"]["groups"][0]["userIds"].as_array().unwrap().len(),
        3
    );
    assert!(!r.stdout.trim().contains('\n'), "compact without --pretty");

    // --pretty indents
    let r = env.ok(&["--pretty", "test"]);
    assert!(r.stdout.contains("\n  \"enabledUsers\""), "{}", r.stdout);
    assert_eq!(json_of(&r.stdout)["object"], "test");

    // sync: upstream's message; nothing changed, so 0/0 and nothing sent
    let r = env.ok(&["--response", "sync"]);
    let j = json_of(&r.stdout);
    assert_eq!(
        j["data"],
        serde_json::json!({"noColor": false, "object": "message", "title": "Syncing complete.",
            "message": "Synced 0 group(s) and 0 user(s)."})
    );
    assert_eq!(server.import_count(), pushes);
    // a change: the counts of what was sent, printed as title and message
    server.org().reset();
    env.ok(&["clear-cache"]);
    let r = env.ok(&["--pretty", "sync"]);
    assert_eq!(
        r.stdout,
        "Syncing complete.\nSynced 1 group(s) and 6 user(s).\n",
        "{}",
        r.all()
    );

    // last-sync: a string, in the envelope as {"object":"string","data":…}
    let r = env.ok(&["--response", "last-sync", "users"]);
    let j = json_of(&r.stdout);
    assert_eq!(j["data"]["object"], "string");
    let when = j["data"]["data"].as_str().unwrap().to_string();
    assert!(when.starts_with("20"), "{when}");
    let r = env.ok(&["--cleanexit", "last-sync", "users"]);
    assert_eq!(r.stdout.trim(), when);

    // --quiet: nothing on stdout
    let r = env.ok(&["--quiet", "sync"]);
    assert_eq!(r.stdout, "");
    // --raw: a message without a raw field prints nothing
    let r = env.ok(&["--raw", "clear-cache"]);
    assert_eq!(r.stdout, "");
    // BW_RESPONSE as the flag
    env.set_var("BW_RESPONSE", "true");
    let j = json_of(&env.ok(&["data-file"]).stdout);
    assert_eq!(j["data"]["object"], "string");
    env.remove_var("BW_RESPONSE");

    // failures: the envelope on stdout and exit 1; --cleanexit exits 0; --quiet prints nothing
    env.set("ldap.port", "1");
    let r = env.expect(&["--response", "test"], 1);
    let j = json_of(&r.stdout);
    assert_eq!(j["success"], false);
    assert!(!j["message"].as_str().unwrap().is_empty());
    let r = env.expect(&["--cleanexit", "test"], 0);
    assert!(
        r.stdout.is_empty() && !r.stderr.trim().is_empty(),
        "{}",
        r.all()
    );
    let r = env.expect(&["--quiet", "test"], 1);
    assert!(r.stdout.is_empty(), "{}", r.all());
    // without any bwdc flag the command answers as this project does (exit 1 or 2)
    let r = env.run(&["test"]);
    assert!(r.code == 1 || r.code == 2, "{}", r.all());
    assert!(
        r.stderr.contains("error: reading the directory"),
        "{}",
        r.stderr
    );
}

#[test]
fn started_as_bwdc_with_its_plaintext_variable() {
    let (slapd, server, _env) = synced();
    let link_dir = tempfile::tempdir().unwrap();
    let bwdc = link_dir.path().join("bwdc");
    #[cfg(unix)]
    std::os::unix::fs::symlink(support::bin(), &bwdc).unwrap();
    #[cfg(not(unix))]
    std::fs::copy(support::bin(), &bwdc).unwrap();
    let mut env = Env::new();
    // upstream's opt-in alone enables the plaintext store
    env.remove_var("DIRECTORY_CONNECTOR_PLAINTEXT_SECRETS");
    env.set_var("BITWARDENCLI_CONNECTOR_PLAINTEXT_SECRETS", "true");
    env.set_var("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus");
    env.configure(&slapd, &server);
    assert!(env.path().join("secrets.toml").exists());
    let out = std::process::Command::new(&bwdc)
        .arg("--data-dir")
        .arg(env.path())
        .arg("test")
        .envs(env.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = json_of(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(j["object"], "test");
    assert_eq!(j["enabledUsers"].as_array().unwrap().len(), 5);
}

#[test]
fn a_null_interval_imports_a_configuration_that_validates() {
    // plaintext mode, Entra ID, `"interval": null` (the official window's "no automatic syncs")
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bwdc/v8_entra_plaintext.json");
    let env = fresh_env();
    let r = env.ok(&["import-bwdc", fixture.to_str().unwrap()]);
    assert!(r.stdout.contains("sync.interval: null"), "{}", r.stdout);
    let r = env.ok(&["config", "validate"]);
    assert!(r.stdout.contains("valid"), "{}", r.all());
}

/// Issue 26 item 10: a FIFO as the path, or as data.json in the given folder, made
/// `import-bwdc` wait forever.
#[cfg(unix)]
#[test]
fn a_fifo_as_data_json_is_refused_at_once() {
    let upstream = tempfile::tempdir().unwrap();
    let fifo = upstream.path().join("data.json");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    let env = fresh_env();
    for path in [&fifo, &upstream.path().to_path_buf()] {
        let r = env
            .run_bounded(
                &["import-bwdc", path.to_str().unwrap()],
                std::time::Duration::from_secs(20),
            )
            .expect("import-bwdc ends instead of waiting on the FIFO");
        assert_eq!(r.code, 2, "{}", r.all());
        assert!(
            r.stderr.contains("is not a regular file (a FIFO)"),
            "{}",
            r.all()
        );
    }
    assert!(!env.path().join("config.toml").exists());
}

/// Issue 26 item 10: `config server URL` and `config directory 0`, which the README documents,
/// were usage errors (exit 2, no JSON even with --response, exit 2 even with --cleanexit).
#[test]
fn upstream_config_settings_and_failures_answer_as_bwdc_does() {
    let env = fresh_env();
    // this program's shape without bwdc flags
    let r = env.ok(&["config", "server", "https://bw.example.com/"]);
    assert_eq!(
        r.stdout.trim(),
        "Saved setting `server.url`.",
        "{}",
        r.all()
    );
    env.ok(&["config", "Directory", "0"]);
    assert_eq!(
        env.ok(&["config", "get", "server.url"]).stdout.trim(),
        "https://bw.example.com"
    );
    assert_eq!(
        env.ok(&["config", "get", "directory.type"]).stdout.trim(),
        "ldap"
    );
    let r = env.expect(&["config", "directory", "7"], 2);
    assert!(
        r.stderr.contains("Invalid directory type value."),
        "{}",
        r.all()
    );

    // --response: upstream's envelope, success and failure
    let r = env.ok(&["--response", "config", "directory", "3"]);
    let j = json_of(&r.stdout);
    assert_eq!(j["success"], true, "{}", r.stdout);
    assert_eq!(j["data"]["object"], "message");
    assert_eq!(j["data"]["title"], "Saved setting `directory`.");
    assert_eq!(
        env.ok(&["config", "get", "directory.type"]).stdout.trim(),
        "okta"
    );
    let r = env.expect(&["--response", "config", "directory", "9"], 1);
    let j = json_of(&r.stdout);
    assert_eq!(j["success"], false);
    assert!(
        j["message"]
            .as_str()
            .unwrap()
            .contains("Invalid directory type value."),
        "{j}"
    );
    let r = env.expect(&["--response", "config", "nosuchsetting", "x"], 1);
    assert!(
        json_of(&r.stdout)["message"]
            .as_str()
            .unwrap()
            .contains("Unknown setting"),
        "{}",
        r.stdout
    );
    // a usage error is a failure like the others in bwdc mode
    let r = env.expect(&["--response", "nosuchcommand"], 1);
    assert_eq!(json_of(&r.stdout)["success"], false, "{}", r.all());
    // --cleanexit: exit 0 on failures, the message on stderr
    let r = env.expect(&["--cleanexit", "config", "directory", "9"], 0);
    assert!(
        r.stdout.is_empty() && r.stderr.contains("Invalid directory type value."),
        "{}",
        r.all()
    );
    let r = env.expect(&["--cleanexit", "nosuchcommand"], 0);
    assert!(r.stdout.is_empty() && !r.stderr.is_empty(), "{}", r.all());
    // a secret is never taken from the command line, also in upstream's form
    let r = env.expect(
        &["--response", "config", "ldap.password", "hunter2hunter2"],
        1,
    );
    assert!(
        json_of(&r.stdout)["message"]
            .as_str()
            .unwrap()
            .contains("not accepted on the command line"),
        "{}",
        r.stdout
    );
    let r = env.run_stdin(
        &["--response", "config", "ldap.password"],
        "s3cret-Passw0rd",
    );
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        json_of(&r.stdout)["data"]["title"],
        "Saved setting `ldap.password`."
    );
    // without bwdc flags, a usage error keeps this program's exit code
    env.expect(&["nosuchcommand"], 2);
}
