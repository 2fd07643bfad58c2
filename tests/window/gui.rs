//! The desktop window, driven through its real widgets with egui_kittest (no display needed):
//! each admin flow against a real slapd and the fake Bitwarden server, then checked through the
//! CLI and the organization's state.

use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use directory_connector::gui::{App, AppOptions};
use directory_connector::secrets::{PlaintextStore, SecretStore};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use support::fake_bitwarden::FakeBitwarden;
use support::slapd::{Slapd, group, person, user_dn};
use support::{CLIENT_SECRET, Env, client_id};

pub(crate) fn directory() -> String {
    let mut l = String::new();
    for u in ["alice", "bob", "carol"] {
        l.push_str(&person(u, Some(&format!("{u}@example.com")), false));
    }
    l.push_str(&group("Staff", &[user_dn("alice"), user_dn("bob")]));
    l
}

pub(crate) fn window(env: &Env, poll: Option<Duration>) -> Harness<'static, App> {
    let opts = AppOptions {
        data_dir: env.path().to_path_buf(),
        secrets: Arc::new(PlaintextStore::new(env.path())),
        poll_interval: poll,
    };
    Harness::builder()
        .with_size(egui::vec2(1200.0, 900.0))
        .build_eframe(move |cc| App::new(&cc.egui_ctx, opts))
}

/// Steps frames until `done` holds (the worker answers asynchronously), at most 60 s.
pub(crate) fn wait(
    h: &mut Harness<'static, App>,
    what: &str,
    done: impl Fn(&Harness<'static, App>) -> bool,
) {
    let start = Instant::now();
    loop {
        h.step();
        if done(h) {
            return;
        }
        let banner = h
            .state()
            .banner
            .as_ref()
            .map(|b| b.text.clone())
            .unwrap_or_default();
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}; banner: {banner}; running: {:?}",
            h.state().worker.activity.lock().unwrap().clone()
        );
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// The notification: what happened, its hint and its details.
fn banner(h: &Harness<'static, App>) -> String {
    h.state().banner.as_ref().map_or(String::new(), |b| {
        format!(
            "{} {} {}",
            b.text,
            b.hint.as_deref().unwrap_or_default(),
            b.details.as_deref().unwrap_or_default()
        )
        .trim()
        .to_string()
    })
}

pub(crate) fn has_label(h: &Harness<'static, App>, text: &str) -> bool {
    h.query_by_label_contains(text).is_some()
}

/// A logged-in window (key in the plaintext store, as `login` leaves it) over a configured
/// environment.
pub(crate) fn logged_in(env: &Env, poll: Option<Duration>) -> Harness<'static, App> {
    let store = PlaintextStore::new(env.path());
    store.set("bitwarden.client_id", &client_id()).unwrap();
    store.set("bitwarden.client_secret", CLIENT_SECRET).unwrap();
    let mut h = window(env, poll);
    wait(&mut h, "the dashboard", |h| has_label(h, "Test Now"));
    h
}

pub(crate) fn click(h: &mut Harness<'static, App>, label: &str) {
    // a control below the fold of a scrolled page is brought into view first
    h.get_by_label(label).scroll_to_me();
    h.run_steps(2);
    h.get_by_label(label).hover();
    h.step();
    h.get_by_label(label).click();
    // popups and modals appear a frame or two later
    for _ in 0..3 {
        h.step();
    }
}

pub(crate) fn type_into(h: &mut Harness<'static, App>, label: &str, text: &str) {
    h.get_by_label(label).scroll_to_me();
    h.run_steps(2);
    let node = h.get_by_label(label);
    node.focus();
    h.step();
    // select what is there, so the typed text replaces it
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.step();
    if text.is_empty() {
        // nothing to type: delete the selection
        h.key_press(egui::Key::Backspace);
    } else {
        h.get_by_label(label).type_text(text);
    }
    h.step();
}

/// The CLI on the same data directory (plaintext secrets opt-in, no API key in the environment).
fn cli(env: &Env, args: &[&str]) -> std::process::Output {
    let mut cmd = env.command(args);
    cmd.env_remove("BW_CLIENTID").env_remove("BW_CLIENTSECRET");
    cmd.output().expect("run the CLI")
}

fn configured(slapd: &Slapd, server: &FakeBitwarden) -> Env {
    let env = Env::new();
    env.configure(slapd, server);
    env
}

#[test]
fn login_against_the_server_then_the_cli_sees_it() {
    let server = FakeBitwarden::start();
    let env = Env::new();
    let mut h = window(&env, None);
    wait(&mut h, "the login screen", |h| has_label(h, "Log In"));

    click(&mut h, "Server settings");
    click(&mut h, "Self-hosted");
    type_into(&mut h, "Server URL", &server.url);
    type_into(&mut h, "Client ID", &client_id());
    // a wrong secret: the server's refusal is shown, nothing is stored
    type_into(&mut h, "Client secret", "wrong-secret");
    click(&mut h, "Log In");
    wait(&mut h, "the login error", |h| {
        banner(h).contains("refused the API key")
    });
    assert!(!h.state().status.as_ref().unwrap().logged_in);
    assert!(
        !env.path().join("secrets.toml").exists() || {
            let s = std::fs::read_to_string(env.path().join("secrets.toml")).unwrap();
            !s.contains("client_id")
        }
    );

    // the secret shown while typed; Enter in the field submits the form (issue 28 item 8)
    click(&mut h, "Show");
    assert!(has_label(&h, "Hide"));
    type_into(&mut h, "Client secret", CLIENT_SECRET);
    h.key_press(egui::Key::Enter);
    wait(&mut h, "the dashboard", |h| has_label(h, "Test Now"));
    assert!(banner(&h).contains("Logged in"), "{}", banner(&h));

    // the CLI sees the same server and the stored key
    let out = cli(&env, &["config", "get", "server.url"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), server.url);
    let secrets = std::fs::read_to_string(env.path().join("secrets.toml")).unwrap();
    assert!(
        secrets.contains(&client_id()),
        "the key is stored for the CLI"
    );
    assert!(
        !std::fs::read_to_string(env.path().join("config.toml"))
            .unwrap()
            .contains(CLIENT_SECRET)
    );
    // after Log Out the next secret is typed hidden again
    click(&mut h, "More");
    click(&mut h, "Log Out");
    click(&mut h, "Log out");
    wait(&mut h, "the login screen", |h| has_label(h, "Log In"));
    assert!(has_label(&h, "Show") && !has_label(&h, "Hide"));
}

#[test]
fn settings_are_saved_to_the_config_and_problems_name_the_field() {
    let env = Env::new();
    let mut h = logged_in(&env, None);
    click(&mut h, "Settings");
    click(&mut h, "Active Directory / LDAP");
    wait(&mut h, "the LDAP form", |h| has_label(h, "Server Hostname"));
    type_into(&mut h, "Server Hostname", "dc1.example.com");
    type_into(&mut h, "Page size", "250");
    type_into(&mut h, "Password", "Bind-Secret-1");
    click(&mut h, "Save");
    // root_path and username are still missing: named next to their fields
    assert!(banner(&h).contains("problem"), "{}", banner(&h));
    assert!(h.state().settings.problems.contains_key("ldap.root_path"));
    assert!(has_label(&h, "required: the base DN"));

    let cfg = directory_connector::config::load(env.path()).unwrap();
    assert_eq!(cfg.ldap.hostname.as_deref(), Some("dc1.example.com"));
    assert_eq!(cfg.ldap.page_size, 250);
    assert_eq!(
        cfg.ldap.password, None,
        "the password is not in config.toml"
    );
    let text = std::fs::read_to_string(env.path().join("config.toml")).unwrap();
    assert!(!text.contains("Bind-Secret-1"));
    assert_eq!(
        PlaintextStore::new(env.path())
            .get("ldap.password")
            .unwrap()
            .as_deref(),
        Some("Bind-Secret-1")
    );
    // and the CLI reads the same values back
    let out = cli(&env, &["config", "get", "ldap.page_size"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "250");

    // a bad value is refused with the field named, and nothing is written
    type_into(&mut h, "Server Port", "99999");
    click(&mut h, "Save");
    assert!(banner(&h).contains("Server Port"), "{}", banner(&h));
    let cfg = directory_connector::config::load(env.path()).unwrap();
    assert_eq!(cfg.ldap.port, None);
}

#[test]
fn test_now_shows_the_directory_and_sync_now_fills_the_organization() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = configured(&slapd, &server);
    let mut h = logged_in(&env, None);

    click(&mut h, "Test Now");
    wait(&mut h, "the test results", |h| {
        h.state().dashboard.users.len() == 3
    });
    assert!(has_label(&h, "alice@example.com"));
    assert!(has_label(&h, "Test: 3 users"));
    assert!(has_label(&h, "Baseline: the organization"));
    assert_eq!(server.import_count(), 0, "Test Now pushes nothing");
    // the search narrows the table
    type_into(&mut h, "Search", "bob");
    assert_eq!(h.state().dashboard.users.visible.len(), 1);
    assert!(!has_label(&h, "alice@example.com"));

    click(&mut h, "Sync Now");
    wait(&mut h, "the sync", |h| banner(h).contains("Sync complete"));
    assert_eq!(server.org().members.len(), 3);
    assert_eq!(server.org().group_emails("Staff").len(), 2);
    wait(&mut h, "the status", |h| {
        h.state()
            .status
            .as_ref()
            .is_some_and(|s| s.last_user_sync.is_some())
    });
    // the CLI sees the run and the cache the window wrote
    let out = cli(&env, &["--json", "history"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("synced"));
    assert_eq!(env.cache_counts(), (3, 1));

    // Clear Sync Cache (confirmed) makes the next sync a full push
    click(&mut h, "More");
    click(&mut h, "Clear Sync Cache");
    click(&mut h, "Clear");
    wait(&mut h, "the cache to clear", |h| {
        banner(h).contains("cache was cleared")
    });
    assert_eq!(env.cache_counts(), (0, 0));
    click(&mut h, "Dashboard");
    // the organization already matches: the cache is rebuilt from it and nothing is sent
    let before = server.import_count();
    click(&mut h, "Sync Now");
    wait(&mut h, "the sync from the organization", |h| {
        banner(h).contains("Sync complete: nothing to change")
    });
    assert_eq!(server.import_count(), before);
    assert_eq!(env.cache_counts(), (3, 1));
    // an emptied organization gets everyone again (after the cache is cleared: an empty member
    // list against a cache that confirmed three is refused as a short answer)
    server.org().reset();
    env.ok(&["clear-cache"]);
    click(&mut h, "Sync Now");
    wait(&mut h, "the full sync", |h| {
        server.import_count() > before && banner(h).contains("Sync complete: 3 invited")
    });
    let body = server.last_body();
    assert_eq!(
        body["members"].as_array().unwrap().len(),
        3,
        "everyone sent again"
    );
}

#[test]
fn start_sync_polls_until_stop_and_holds_off_the_cli() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = configured(&slapd, &server);
    let mut h = logged_in(&env, Some(Duration::from_millis(300)));

    click(&mut h, "Start Sync");
    wait(&mut h, "two polled syncs", |h| {
        h.state().syncs_started_by_polling >= 2 && h.state().worker.busy().is_none()
    });
    assert!(has_label(&h, "Next sync at"));
    // a CLI sync meanwhile is refused, naming the window
    let out = cli(&env, &["sync"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another sync is running") && err.contains("polling"),
        "{err}"
    );

    click(&mut h, "Stop Sync");
    wait(&mut h, "polling to stop", |h| {
        !h.state().polling && h.state().worker.busy().is_none()
    });
    let n = h.state().syncs_started_by_polling;
    for _ in 0..20 {
        h.step();
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        h.state().syncs_started_by_polling,
        n,
        "no sync after Stop Sync"
    );
    let runs = directory_connector::store::Store::open(env.path())
        .unwrap()
        .list_runs(50)
        .unwrap();
    assert!(runs.len() >= 2, "{} runs", runs.len());
    assert_eq!(server.org().members.len(), 3);
    // the lock is released: the CLI can sync again
    let out = cli(&env, &["sync"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_wrong_ldap_password_is_shown_in_the_banner() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = configured(&slapd, &server);
    let r = env.run_stdin(&["config", "set", "ldap.password"], "not-the-password");
    assert_eq!(r.code, 0);
    let mut h = logged_in(&env, None);
    click(&mut h, "Test Now");
    wait(&mut h, "the error", |h| {
        banner(h).contains("Test Now could not sign in to the directory")
    });
    let b = banner(&h);
    assert!(
        b.contains("invalid credentials") && b.contains("bind"),
        "{b}"
    );
    assert!(h.state().banner.as_ref().unwrap().error);
    assert_eq!(server.import_count(), 0);
}

#[test]
fn log_out_is_confirmed_and_forgets_the_key() {
    let env = Env::new();
    let mut h = logged_in(&env, None);
    click(&mut h, "More");
    assert!(has_label(&h, env!("CARGO_PKG_VERSION")));
    click(&mut h, "Log Out");
    click(&mut h, "Cancel");
    assert!(
        PlaintextStore::new(env.path())
            .get("bitwarden.client_id")
            .unwrap()
            .is_some()
    );
    click(&mut h, "Log Out");
    click(&mut h, "Log out");
    wait(&mut h, "the login screen", |h| has_label(h, "Log In"));
    assert!(
        PlaintextStore::new(env.path())
            .get("bitwarden.client_id")
            .unwrap()
            .is_none()
    );
}

#[test]
fn cloud_directory_forms_save_and_validate() {
    let env = Env::new();
    let mut h = logged_in(&env, None);
    click(&mut h, "Settings");
    click(&mut h, "Okta");
    wait(&mut h, "the Okta form", |h| {
        has_label(h, "Organization URL")
    });
    assert!(
        !has_label(&h, "Server Hostname"),
        "only the chosen directory's fields"
    );
    type_into(&mut h, "Organization URL", "https://company.okta.com");
    click(&mut h, "Save");
    // the token is missing: named next to its field, as `config validate` does
    assert!(
        h.state().settings.problems.contains_key("okta.token"),
        "{:?}",
        h.state().settings.problems
    );
    let out = cli(&env, &["--json", "config", "validate"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("okta.token"));
    type_into(&mut h, "Token", "00-okta-api-token");
    click(&mut h, "Save");
    assert!(
        h.state().settings.problems.is_empty(),
        "{:?}",
        h.state().settings.problems
    );
    let cfg = directory_connector::config::load(env.path()).unwrap();
    assert_eq!(
        cfg.okta.org_url.as_deref(),
        Some("https://company.okta.com")
    );
    assert_eq!(cfg.okta.token, None);
    assert_eq!(
        PlaintextStore::new(env.path())
            .get("okta.token")
            .unwrap()
            .as_deref(),
        Some("00-okta-api-token")
    );

    // Entra's form, with the government cloud option
    click(&mut h, "Entra ID");
    wait(&mut h, "the Entra form", |h| has_label(h, "Tenant"));
    type_into(&mut h, "Tenant", "contoso.onmicrosoft.us");
    click(&mut h, "Entra Id Government");
    click(&mut h, "Save");
    let cfg = directory_connector::config::load(env.path()).unwrap();
    assert_eq!(
        cfg.entra.cloud,
        directory_connector::config::EntraCloud::Government
    );
    assert!(
        h.state()
            .settings
            .problems
            .contains_key("entra.application_id")
    );
}

#[test]
fn an_unreadable_config_is_shown_not_replaced_by_defaults() {
    let env = Env::new();
    std::fs::write(env.path().join("config.toml"), "[ldap]\nportt = 389\n").unwrap();
    let mut h = logged_in(&env, None);
    assert!(banner(&h).contains("could not be read"), "{}", banner(&h));
    assert!(
        banner(&h).contains("portt"),
        "the error names the key: {}",
        banner(&h)
    );
    click(&mut h, "Settings");
    assert!(has_label(&h, "config.toml could not be read"));
    // nothing was written over the admin's file
    assert_eq!(
        std::fs::read_to_string(env.path().join("config.toml")).unwrap(),
        "[ldap]\nportt = 389\n"
    );
}

#[test]
fn the_dashboard_shows_the_baseline_the_drift_and_the_group_guard() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = configured(&slapd, &server);
    env.ok(&["sync"]);
    server.org().add_manual_member("manual@example.com");
    let mut h = logged_in(&env, None);
    click(&mut h, "Test Now");
    wait(&mut h, "the test results", |h| {
        h.state().dashboard.users.len() == 3
    });
    assert!(has_label(
        &h,
        "Baseline: the organization (read from the server)"
    ));
    click(&mut h, "Drift (1)");
    assert!(has_label(&h, "manual@example.com"));
    assert!(has_label(&h, "member without externalId"));

    // a typo that empties the group: the guard refuses, with its numbers, and the override
    // is confirmed first
    env.set("sync.member_attribute", "uniqueMember");
    click(&mut h, "Sync Now");
    wait(&mut h, "the refusal", |h| {
        h.state().dashboard.refused.is_some()
    });
    assert!(
        h.query_all_by_label_contains("would empty 1 group(s)")
            .next()
            .is_some()
    );
    assert_eq!(server.org().group_emails("Staff").len(), 2);
    click(&mut h, "Sync anyway (this once)...");
    assert!(has_label(&h, "Override the guard?"));
    click(&mut h, "Cancel");
    assert_eq!(server.org().group_emails("Staff").len(), 2);

    // against Vaultwarden (no read API) the baseline is the cache
    let vw = FakeBitwarden::vaultwarden(true);
    let env = configured(&slapd, &vw);
    let mut h = logged_in(&env, None);
    click(&mut h, "Test Now");
    wait(&mut h, "the test results", |h| {
        h.state().dashboard.users.len() == 3
    });
    assert!(
        has_label(&h, "the server has no read API"),
        "{}",
        h.state().dashboard.baseline
    );
}

#[test]
fn clear_sync_cache_moves_a_damaged_database_aside_and_starts_a_new_one() {
    let env = Env::new();
    let db = env.path().join("directory-connector.sqlite3");
    std::fs::write(&db, vec![0xA5u8; 8192]).unwrap();
    let mut h = logged_in(&env, None);
    // the window opens anyway and names the file and the remedy
    assert!(
        banner(&h).contains("directory-connector.sqlite3"),
        "{}",
        banner(&h)
    );
    assert!(banner(&h).contains("Clear Sync Cache"), "{}", banner(&h));
    click(&mut h, "More");
    click(&mut h, "Clear Sync Cache");
    click(&mut h, "Clear");
    wait(&mut h, "the cache to clear", |h| {
        banner(h).contains("cache was cleared")
    });
    let moved: Vec<String> = std::fs::read_dir(env.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("directory-connector.sqlite3.broken-"))
        .collect();
    assert_eq!(moved.len(), 1, "the damaged file is kept aside: {moved:?}");
    assert_eq!(
        std::fs::read(env.path().join(&moved[0])).unwrap(),
        vec![0xA5u8; 8192],
        "moved as it was"
    );
    // the new database is a working one: the CLI reads its history
    let out = cli(&env, &["--json", "history"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_login_screen_checks_the_key_and_imports_from_the_official_connector() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = Env::new();
    let up = tempfile::tempdir().unwrap();
    let data = format!(
        r#"{{"stateVersion": 8, "organizationId": "{org}", "directoryType": 0,
  "environmentUrls": {{"base": "{url}"}},
  "directoryLdap": {{"hostname": "127.0.0.1", "port": {port}, "ssl": false,
    "rootPath": "ou=People,{base}", "username": "{reader}", "password": "{pw}", "ad": false}},
  "sync": {{"users": true, "groups": true, "interval": 5, "userPath": "ou=People",
    "groupPath": "ou=Groups", "userObjectClass": "inetOrgPerson",
    "groupObjectClass": "groupOfNames", "memberAttribute": "member"}},
  "apiKeyClientId": "{id}", "apiKeyClientSecret": "{secret}"}}"#,
        org = support::ORG_ID,
        url = server.url,
        port = slapd.port,
        base = support::slapd::BASE,
        reader = support::slapd::READER_DN,
        pw = support::slapd::READER_PW,
        id = client_id(),
        secret = CLIENT_SECRET,
    );
    std::fs::write(up.path().join("data.json"), &data).unwrap();
    let mut h = window(&env, None);
    wait(&mut h, "the login screen", |h| has_label(h, "Log In"));
    assert!(has_label(&h, "Welcome to the Directory Connector"));

    // upstream's checks, before anything is sent
    for (id, message) in [
        ("", "Client Id is required."),
        ("user.1234", "Api Key must belong to an Organization"),
        ("organization.not-a-guid", "Invalid Client Id provided."),
    ] {
        type_into(&mut h, "Client ID", id);
        type_into(&mut h, "Client secret", "some-secret");
        click(&mut h, "Log In");
        assert_eq!(banner(&h), message);
    }
    type_into(&mut h, "Client ID", &client_id());
    type_into(&mut h, "Client secret", "");
    click(&mut h, "Log In");
    assert_eq!(banner(&h), "Client Secret is required.");
    // the secret can be shown and hidden
    click(&mut h, "Show");
    assert!(has_label(&h, "Hide"));
    click(&mut h, "Hide");

    click(&mut h, "Import from Bitwarden Directory Connector…");
    type_into(
        &mut h,
        "Official connector's data",
        up.path().to_str().unwrap(),
    );
    click(&mut h, "Preview");
    assert!(has_label(&h, "Preview: nothing was written"));
    assert!(has_label(&h, "became \u{201c}dc=example,dc=com\u{201d}"));
    assert!(!env.path().join("config.toml").exists());
    click(&mut h, "Import");
    wait(&mut h, "the dashboard", |h| {
        h.state().status.as_ref().is_some_and(|s| s.logged_in)
    });
    assert!(has_label(&h, "Imported from"));
    click(&mut h, "Close window");
    let cfg = directory_connector::config::load(env.path()).unwrap();
    assert_eq!(cfg.ldap.root_path.as_deref(), Some("dc=example,dc=com"));
    assert_eq!(
        std::fs::read_to_string(up.path().join("data.json")).unwrap(),
        data,
        "the official connector's file is unchanged"
    );
    // the settings form shows the imported values under upstream's labels
    click(&mut h, "Settings");
    assert!(has_label(&h, "Server Hostname"));
    assert_eq!(
        h.state()
            .settings
            .draft
            .get("ldap.hostname")
            .map(String::as_str),
        Some("127.0.0.1")
    );
    // and the import is in More too
    click(&mut h, "More");
    assert!(has_label(&h, "Import from Bitwarden Directory Connector…"));
}

#[test]
fn a_banner_does_not_move_the_buttons_under_the_cursor() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = configured(&slapd, &server);
    let mut h = logged_in(&env, None);
    click(&mut h, "Settings");
    type_into(&mut h, "Server Port", "99999");
    let save = h.get_by_label("Save").rect();
    let hostname = h.get_by_label("Server Hostname").rect();
    click(&mut h, "Save");
    assert!(banner(&h).contains("Server Port"), "{}", banner(&h));
    assert!(has_label(&h, "Dismiss"));
    assert_eq!(h.get_by_label("Save").rect(), save);
    assert_eq!(h.get_by_label("Server Hostname").rect(), hostname);
    click(&mut h, "Dismiss");
    assert!(h.state().banner.is_none());
}

#[test]
fn the_more_log_shows_the_sync_lines() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = configured(&slapd, &server);
    env.ok(&["sync"]);
    let mut h = logged_in(&env, None);
    click(&mut h, "More");
    assert!(has_label(&h, "started"), "the start line");
    assert!(
        has_label(&h, "plan: 3 invited, 0 removed"),
        "the plan summary"
    );
    assert!(has_label(&h, "finished: synced"), "the outcome");
}

#[test]
fn the_services_last_alert_is_a_banner_until_a_recovery() {
    use directory_connector::service::alerts::{EventKind, keep, run_event};
    use directory_connector::store::{RunOutcome, RunRecord, Store};
    let env = Env::new();
    let store = Store::open(env.path()).unwrap();
    let mut run = RunRecord::new(1, "sync");
    run.outcome = RunOutcome::Failed;
    run.error = Some("reading the directory: connection refused".into());
    keep(&store, &run_event(EventKind::Failure, &run)).unwrap();
    let mut h = logged_in(&env, None);
    wait(&mut h, "the alert banner", |h| {
        has_label(h, "Service alert") && has_label(h, "connection refused")
    });
    drop(h);
    // after a recovery the banner is gone
    run.id = 2;
    run.outcome = RunOutcome::Synced;
    keep(&store, &run_event(EventKind::Recovery, &run)).unwrap();
    let mut h = logged_in(&env, None);
    // the status (with the alert) is loaded with the sync cache counts
    wait(&mut h, "the status", |h| has_label(h, "Sync cache:"));
    assert!(!has_label(&h, "Service alert"));
}

/// The label of a problem under a field: just below the field, in the window's words.
fn problem_under(h: &Harness<'static, App>, field: &str, words: &str) -> bool {
    let Some(problem) = h.query_by_label_contains(words) else {
        return false;
    };
    let f = h.get_by_label(field).rect();
    let p = problem.rect();
    p.top() >= f.bottom() - 1.0 && p.top() - f.bottom() < 40.0
}

/// Every text the window shows that names a config key.
fn shown_keys(h: &Harness<'static, App>) -> Vec<String> {
    let mut out = Vec::new();
    for (key, _, _) in directory_connector::config::KEYS {
        if let Some(n) = h.query_by_label_contains(key) {
            out.push(format!("{key} in {n:?}"));
        }
    }
    out
}

/// Issue 28 item 5: type errors and other problems, each under its field in the label's words,
/// all at once as they are typed; a fixed field's mark clears.
#[test]
fn settings_show_every_problem_under_its_field_as_it_is_typed() {
    let env = Env::new();
    let mut h = logged_in(&env, None);
    click(&mut h, "Settings");
    click(&mut h, "Active Directory / LDAP");
    wait(&mut h, "the LDAP form", |h| has_label(h, "Server Hostname"));
    type_into(&mut h, "Server Port", "abc");
    type_into(&mut h, "Interval (minutes)", "2");
    type_into(&mut h, "Root Path", "abc");
    type_into(&mut h, "User Filter", "(mail=*");
    h.run_steps(2);
    // no Save yet: every problem is there at once, under its own field
    assert!(
        problem_under(
            &h,
            "Server Port",
            "from 1 to 65535, not \u{201c}abc\u{201d}"
        ),
        "{:?}",
        h.state().settings.problems
    );
    assert!(problem_under(
        &h,
        "Interval (minutes)",
        "0 (off) or from 5 to 10080"
    ));
    assert!(problem_under(
        &h,
        "Root Path",
        "\u{201c}abc\u{201d} has no \u{201c}=\u{201d}"
    ));
    assert!(
        problem_under(&h, "User Filter", "unbalanced parentheses"),
        "{:?}",
        h.state().settings.problems
    );
    assert!(!has_label(&h, "must be in parentheses"));
    assert_eq!(
        shown_keys(&h),
        Vec::<String>::new(),
        "no config key on screen"
    );
    // the default shows in an empty field, for the encryption chosen
    type_into(&mut h, "Server Port", "");
    h.run_steps(2);
    assert!(
        !has_label(&h, "from 1 to 65535"),
        "the fixed field's mark is gone"
    );
    assert_eq!(h.state().settings.hint("ldap.port"), Some("389"));
    click(&mut h, "Use SSL (LDAPS)");
    h.run_steps(2);
    assert_eq!(h.state().settings.hint("ldap.port"), Some("636"));
    assert_eq!(
        h.state().settings.hint("sync.user_object_class"),
        Some("inetOrgPerson")
    );
    type_into(&mut h, "Root Path", "dc=example,dc=com");
    h.run_steps(2);
    assert!(!has_label(&h, "has no \u{201c}=\u{201d}"));
    assert!(
        has_label(&h, "0 (off) or from 5 to 10080"),
        "the others stay"
    );
}

/// Issue 28 item 5: Save with a type error saves the rest and says which field it did not save.
#[test]
fn save_with_a_type_error_names_the_field_it_did_not_save() {
    let env = Env::new();
    let mut h = logged_in(&env, None);
    click(&mut h, "Settings");
    click(&mut h, "Active Directory / LDAP");
    wait(&mut h, "the LDAP form", |h| has_label(h, "Server Hostname"));
    type_into(&mut h, "Server Hostname", "dc1.example.com");
    type_into(&mut h, "Server Port", "abc");
    click(&mut h, "Save");
    let b = banner(&h);
    assert!(
        b.contains("Not saved") && b.contains("Server Port") && !b.contains("ldap.port"),
        "{b}"
    );
    let cfg = directory_connector::config::load(env.path()).unwrap();
    assert_eq!(cfg.ldap.hostname.as_deref(), Some("dc1.example.com"));
    assert_eq!(cfg.ldap.port, None);
    // the refused value stays in its field, marked, and the form still has unsaved changes
    assert_eq!(h.state().settings.draft["ldap.port"], "abc");
    assert!(h.state().settings.is_dirty());
    assert!(problem_under(&h, "Server Port", "from 1 to 65535"));
    // after Save every problem is marked, the ones of untouched fields too
    assert!(problem_under(&h, "Root Path", "required: the base DN"));
    type_into(&mut h, "Server Port", "1389");
    click(&mut h, "Save");
    assert!(!banner(&h).contains("Not saved"), "{}", banner(&h));
    let cfg = directory_connector::config::load(env.path()).unwrap();
    assert_eq!(cfg.ldap.port, Some(1389));
}

/// Issue 28 item 5: the server, the schedule and the alerts are set in the window, saved to
/// config.toml (the secret to the store), and changing the server keeps the login.
#[test]
fn the_server_schedule_and_alerts_sections_save_to_config_toml() {
    let env = Env::new();
    let ca = env.path().join("server-ca.pem");
    std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
    let mut h = logged_in(&env, None);
    click(&mut h, "Settings");
    type_into(&mut h, "Bitwarden server URL", "https://vault.example.com");
    type_into(&mut h, "Server CA certificates (PEM)", ca.to_str().unwrap());
    type_into(&mut h, "Interval (minutes)", "30");
    type_into(&mut h, "Service schedule (cron expression)", "0 */2 * * *");
    type_into(&mut h, "Health and metrics address", "127.0.0.1:9464");
    type_into(&mut h, "Webhook URL", "https://hooks.example.com/T0/B0");
    click(&mut h, "Slack");
    type_into(&mut h, "SMTP server", "smtps://alerts@mail.example.com:465");
    type_into(&mut h, "SMTP password", "Smtp-Secret-1");
    type_into(&mut h, "Alert email to", "it@example.com, ops@example.com");
    click(&mut h, "Save");
    assert!(!banner(&h).contains("Not saved"), "{}", banner(&h));
    let text = std::fs::read_to_string(env.path().join("config.toml")).unwrap();
    let cfg = directory_connector::config::parse(&text).unwrap();
    assert_eq!(cfg.server.url.as_deref(), Some("https://vault.example.com"));
    assert_eq!(cfg.server.ca_file.as_deref(), Some(ca.as_path()));
    assert_eq!(cfg.sync.interval_minutes, 30);
    assert_eq!(cfg.service.schedule.as_deref(), Some("0 */2 * * *"));
    assert_eq!(
        cfg.service.metrics_listen.as_deref(),
        Some("127.0.0.1:9464")
    );
    assert_eq!(
        cfg.notify.webhook_url.as_deref(),
        Some("https://hooks.example.com/T0/B0")
    );
    assert_eq!(
        cfg.notify.webhook_format,
        directory_connector::config::WebhookFormat::Slack
    );
    assert_eq!(
        cfg.notify.smtp_url.as_deref(),
        Some("smtps://alerts@mail.example.com:465")
    );
    assert_eq!(cfg.notify.email_to, ["it@example.com", "ops@example.com"]);
    assert!(
        !text.contains("Smtp-Secret-1"),
        "the secret is not in the file"
    );
    assert_eq!(
        PlaintextStore::new(env.path())
            .get("notify.smtp_password")
            .unwrap()
            .as_deref(),
        Some("Smtp-Secret-1")
    );
    // the secret is never shown in clear: the field is a password field, empty, "stored"
    assert_eq!(h.state().settings.draft["notify.smtp_password"], "");
    assert!(!has_label(&h, "Smtp-Secret-1"));
    // changing the server did not log out
    assert!(h.state().status.as_ref().unwrap().logged_in);
    assert!(
        PlaintextStore::new(env.path())
            .get("bitwarden.client_id")
            .unwrap()
            .is_some()
    );
    // the service's checks see the same file
    let out = cli(&env, &["--json", "config", "validate"]);
    let json = String::from_utf8_lossy(&out.stdout);
    for key in ["service.", "notify.", "server."] {
        assert!(!json.contains(key), "{key}: {json}");
    }
}

/// WCAG relative luminance of an sRGB colour.
fn luminance(c: egui::Color32) -> f64 {
    let lin = |v: u8| {
        let v = f64::from(v) / 255.0;
        if v <= 0.04045 {
            v / 12.92
        } else {
            ((v + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * lin(c.r()) + 0.7152 * lin(c.g()) + 0.0722 * lin(c.b())
}

fn contrast(a: egui::Color32, b: egui::Color32) -> f64 {
    let (la, lb) = (luminance(a), luminance(b));
    (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
}

/// Issue 28 item 7: the Light theme meets WCAG AA (4.5:1) for text, text-field borders and
/// unticked checkboxes, computed from the visuals the window uses.
#[test]
fn the_light_theme_has_aa_contrast() {
    let env = Env::new();
    let mut h = logged_in(&env, None);
    click(&mut h, "Light");
    h.run_steps(2);
    let v = h.ctx.global_style().visuals.clone();
    assert!(!v.dark_mode);
    let w = &v.widgets;
    // what is seen of a border: its colour over the background, or, with no border (no width,
    // transparent), nothing but the fill it surrounds
    let edge = |stroke: egui::Stroke, fill: egui::Color32, bg: egui::Color32| {
        let c = stroke.color;
        if stroke.width <= 0.0 || c.a() == 0 {
            return fill;
        }
        let a = f32::from(c.a()) / 255.0;
        let mix = |f: u8, b: u8| (f32::from(f) + f32::from(b) * (1.0 - a)).round() as u8;
        egui::Color32::from_rgb(mix(c.r(), bg.r()), mix(c.g(), bg.g()), mix(c.b(), bg.b()))
    };
    let field = edge(w.inactive.bg_stroke, v.text_edit_bg_color(), v.panel_fill);
    let checkbox = edge(w.inactive.bg_stroke, w.inactive.bg_fill, v.panel_fill);
    let pairs = [
        ("text", v.text_color(), v.panel_fill),
        ("text in a field", v.text_color(), v.text_edit_bg_color()),
        ("hint text", v.weak_text_color(), v.text_edit_bg_color()),
        (
            "button text",
            w.inactive.fg_stroke.color,
            w.inactive.weak_bg_fill,
        ),
        ("error text", v.error_fg_color, v.panel_fill),
        // a text field's border against the panel around it and its own inside
        ("field border/panel", field, v.panel_fill),
        ("field border/inside", field, v.text_edit_bg_color()),
        // an unticked checkbox: its border against the panel
        ("checkbox border/panel", checkbox, v.panel_fill),
    ];
    for (what, fg, bg) in pairs {
        let c = contrast(fg, bg);
        assert!(c >= 4.5, "{what}: {fg:?} on {bg:?} is {c:.2}:1");
    }
    // and the theme is remembered: a new window starts in Light
    drop(h);
    let h = logged_in(&env, None);
    assert_eq!(h.ctx.theme(), egui::Theme::Light);
}

/// Issue 28 item 7: at 420×340 the theme switch leaves the tabs alone, and every button,
/// checkbox, radio button and field of each tab can be scrolled to and clicked.
#[test]
fn at_420_by_340_every_control_of_each_tab_can_be_reached() {
    use egui::accesskit::Role;
    let env = Env::new();
    env.set("directory.type", "ldap");
    let store = PlaintextStore::new(env.path());
    store.set("bitwarden.client_id", &client_id()).unwrap();
    store.set("bitwarden.client_secret", CLIENT_SECRET).unwrap();
    let opts = AppOptions {
        data_dir: env.path().to_path_buf(),
        secrets: Arc::new(PlaintextStore::new(env.path())),
        poll_interval: None,
    };
    let mut h = Harness::builder()
        .with_size(egui::vec2(420.0, 340.0))
        .build_eframe(move |cc| App::new(&cc.egui_ctx, opts));
    wait(&mut h, "the dashboard", |h| has_label(h, "Test Now"));
    let screen = egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(420.0, 340.0));
    let top: Vec<egui::Rect> = ["Dashboard", "Settings", "More", "Light", "Dark"]
        .iter()
        .map(|l| h.get_by_label(l).rect())
        .collect();
    for (i, a) in top.iter().enumerate() {
        assert!(screen.contains_rect(*a), "{a:?}");
        for b in &top[i + 1..] {
            assert!(!a.intersects(*b), "the top bar overlaps: {a:?} {b:?}");
        }
    }
    let page_top = top.iter().map(|r| r.bottom()).fold(0.0, f32::max);
    let page = egui::Rect::from_min_max(egui::pos2(0.0, page_top), screen.max);
    let roles = [
        Role::Button,
        Role::CheckBox,
        Role::RadioButton,
        Role::TextInput,
    ];
    for (tab, last) in [
        ("Dashboard", "History"),
        ("Settings", "Microsoft Teams"),
        ("More", "Reload"),
    ] {
        click(&mut h, tab);
        let count = |h: &Harness<'static, App>| {
            roles
                .iter()
                .map(|r| h.query_all_by_role(*r).count())
                .sum::<usize>()
        };
        let n = count(&h);
        assert!(n > 3, "{tab}: {n} controls");
        for role in roles {
            let m = h.query_all_by_role(role).count();
            for i in 0..m {
                let node = h.query_all_by_role(role).nth(i).unwrap();
                let label = format!("{node:?}");
                if top.contains(&node.rect()) {
                    continue;
                }
                node.scroll_to_me();
                h.run_steps(3);
                let node = h.query_all_by_role(role).nth(i).unwrap();
                let r = node.rect();
                assert!(
                    page.contains(r.center()) && r.width() > 0.0,
                    "{tab}: {role:?} {label:?} at {r:?} is not in the page {page:?}"
                );
            }
        }
        // the last control of the tab: scrolled to and clicked
        h.get_by_label(last).scroll_to_me();
        h.run_steps(3);
        assert!(
            page.contains(h.get_by_label(last).rect().center()),
            "{tab}: {last}"
        );
        click(&mut h, last);
        match tab {
            "Dashboard" => assert_eq!(
                h.state().dashboard.view,
                directory_connector::gui::View::History
            ),
            "Settings" => assert_eq!(h.state().settings.draft["notify.webhook_format"], "teams"),
            _ => {}
        }
    }
}

/// A Bitwarden server that accepts connections and never answers (its process stopped, the
/// socket open): every connection is held until the test process ends.
fn server_that_never_answers() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    url
}

/// Clicks Cancel on the running job and waits for the worker: it must be idle within 2 s.
fn cancel_within_two_seconds(h: &mut Harness<'static, App>) {
    let clicked = Instant::now();
    click(h, "Cancel");
    wait(h, "the job to stop", |h| h.state().worker.busy().is_none());
    let took = clicked.elapsed();
    assert!(took < Duration::from_secs(2), "stopped after {took:?}");
    // the outcome, sent before the job ends, is read in the next frame
    h.run_steps(2);
}

#[test]
fn cancel_stops_test_and_sync_against_a_server_that_never_answers() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = configured(&slapd, &server);
    env.ok(&["sync"]);
    assert_eq!(env.cache_counts(), (3, 1));
    env.set("server.url", &server_that_never_answers());
    let mut h = logged_in(&env, None);

    click(&mut h, "Sync Now");
    wait(&mut h, "the sign-in", |h| {
        has_label(h, "Signing in to Bitwarden")
    });
    std::thread::sleep(Duration::from_millis(300));
    cancel_within_two_seconds(&mut h);
    assert!(banner(&h).contains("Sync Now cancelled"), "{}", banner(&h));
    // nothing was confirmed, nothing recorded: the cache still matches the organization
    assert_eq!(env.cache_counts(), (3, 1));
    assert_eq!(server.org().members.len(), 3);

    click(&mut h, "Test Now");
    wait(&mut h, "the test to start", |h| {
        h.state().worker.busy().is_some()
    });
    std::thread::sleep(Duration::from_millis(300));
    cancel_within_two_seconds(&mut h);
    assert!(banner(&h).contains("Test Now cancelled"), "{}", banner(&h));
    // the buttons are back
    click(&mut h, "Test Now");
    cancel_within_two_seconds(&mut h);
}

#[test]
fn the_status_shows_a_retry_and_cancel_ends_its_wait() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = configured(&slapd, &server);
    // a port nobody listens on: each attempt fails at once and the next waits
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    env.set("server.url", &url);
    let mut h = logged_in(&env, None);
    click(&mut h, "Sync Now");
    wait(&mut h, "a retry on the status line", |h| {
        has_label(h, "Signing in to Bitwarden: attempt 3 of 5, next in")
    });
    cancel_within_two_seconds(&mut h);
    assert!(banner(&h).contains("Sync Now cancelled"), "{}", banner(&h));
    assert_eq!(env.cache_counts(), (0, 0));
}

#[test]
fn sync_now_refreshes_every_table_and_a_new_window_shows_them() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = configured(&slapd, &server);
    server.org().add_manual_member("manual@example.com");
    let mut h = logged_in(&env, None);
    click(&mut h, "Test Now");
    wait(&mut h, "the test results", |h| {
        h.state().dashboard.users.len() == 3
    });
    assert!(has_label(&h, "Drift (1)"));
    assert!(has_label(&h, "Test Now."), "{}", h.state().dashboard.as_of);

    // the directory and the organization change after the test; the sync reads them
    slapd.add(&person("dave", Some("dave@example.com"), false));
    slapd.add(&group("Ops", &[user_dn("dave")]));
    server.org().add_manual_member("manual2@example.com");
    click(&mut h, "Sync Now");
    wait(&mut h, "the sync's tables", |h| {
        banner(h).contains("Sync complete") && h.state().dashboard.users.len() == 4
    });
    let d = &h.state().dashboard;
    assert_eq!(d.groups.len(), 2, "the groups the sync read");
    assert_eq!(d.drift.len(), 2, "the organization the sync read");
    assert!(d.as_of.contains("Sync Now"), "{}", d.as_of);
    assert_eq!(server.org().members.len(), 6);
    // the counts equal the sync's own record
    let runs = env.json(&["history"]);
    let last = &runs.as_array().unwrap()[0];
    assert_eq!(last["directory_users"].as_u64(), Some(4), "{last}");
    assert_eq!(last["directory_groups"].as_u64(), Some(2), "{last}");
    assert!(has_label(&h, "Users (4)") && has_label(&h, "Groups (2)"));
    assert!(has_label(&h, "Drift (2)"));
    click(&mut h, "Users (4)");
    type_into(&mut h, "Search", "dave");
    assert_eq!(h.state().dashboard.users.visible.len(), 1);
    assert!(has_label(&h, "dave@example.com"));
    drop(h);

    // a new window shows the last run's tables before any operation
    let mut h = logged_in(&env, None);
    wait(&mut h, "the saved tables", |h| {
        h.state().dashboard.users.len() == 4
    });
    assert!(has_label(&h, "Sync Now."), "{}", h.state().dashboard.as_of);
    assert!(has_label(&h, "Drift (2)") && has_label(&h, "Groups (2)"));
}

#[test]
fn a_refused_sync_shows_its_plan_and_the_override_names_the_removals() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = configured(&slapd, &server);
    env.set("sync.remove_missing_users", "true");
    env.set("sync.max_removals", "1");
    let mut h = logged_in(&env, None);
    click(&mut h, "Sync Now");
    wait(&mut h, "the first sync", |h| {
        banner(h).contains("Sync complete") && h.state().dashboard.users.len() == 3
    });
    assert_eq!(server.org().members.len(), 3);

    // two people leave: the guard refuses to remove them
    slapd.delete(&user_dn("bob"));
    slapd.delete(&user_dn("carol"));
    click(&mut h, "Sync Now");
    wait(&mut h, "the refusal", |h| {
        h.state().dashboard.refused.is_some() && h.state().dashboard.tables.removals.len() == 2
    });
    assert_eq!(server.org().members.len(), 3, "nothing removed");
    // the Plan tab shows the refused plan, not the first sync's invitations
    let d = &h.state().dashboard;
    assert_eq!(d.view, directory_connector::gui::View::Plan);
    let plan: Vec<String> = d.plan.cells.iter().map(|r| r.join(" ")).collect();
    assert!(
        plan.iter()
            .any(|r| r.contains("remove") && r.contains("bob@example.com")),
        "{plan:?}"
    );
    assert!(!plan.iter().any(|r| r.starts_with("invite")), "{plan:?}");
    assert!(
        has_label(&h, "Sync refused, nothing was sent"),
        "{}",
        d.summary
    );

    click(&mut h, "Sync anyway (this once)...");
    assert!(has_label(&h, "2 member(s) would be removed"));
    assert!(has_label(&h, "bob@example.com, carol@example.com"));
    click(&mut h, "Show all removals in the Plan tab");
    assert!(!has_label(&h, "Override the guard?"));
    assert_eq!(h.state().dashboard.plan.visible.len(), 2);

    // confirmed, the sync removes them
    click(&mut h, "Sync anyway (this once)...");
    click(&mut h, "Sync and remove");
    wait(&mut h, "the confirmed sync", |h| {
        banner(h).contains("Sync complete") && h.state().dashboard.users.len() == 1
    });
    assert_eq!(server.org().active_emails().len(), 1);
}
