//! End-to-end: the real binary against a real slapd and the fake Bitwarden server.

use crate::support;

use std::collections::BTreeSet;

use support::Env;
use support::fake_bitwarden::{Failure, FakeBitwarden, member_changes};
use support::slapd::{self, Slapd, group, group_dn, person, user_dn};

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn directory() -> String {
    let mut l = String::new();
    for u in ["alice", "bob", "carol", "dave", "erin"] {
        l.push_str(&person(
            u,
            Some(&format!("{}@Example.com", u.to_uppercase())),
            false,
        ));
    }
    l.push_str(&person("frank", None, false));
    l.push_str(&person("grace", Some("not-an-email"), false));
    l.push_str(&group(
        "Engineering",
        &[user_dn("alice"), user_dn("bob"), group_dn("Platform")],
    ));
    l.push_str(&group("Platform", &[user_dn("carol")]));
    l.push_str(&group("Sales", &[user_dn("dave"), user_dn("erin")]));
    l
}

fn setup() -> (Slapd, FakeBitwarden, Env) {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = Env::new();
    env.configure(&slapd, &server);
    (slapd, server, env)
}

fn group_names(body: &serde_json::Value) -> Vec<String> {
    body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn test_shows_directory_and_plan_without_pushing() {
    let (_slapd, server, env) = setup();
    let r = env.ok(&["test"]);
    let out = r.stdout;
    assert!(
        out.contains("Users: 5 (5 enabled, 0 disabled, 0 deleted)"),
        "{out}"
    );
    assert!(out.contains("alice@example.com"), "{out}");
    assert!(out.contains("Engineering (3)"), "{out}");
    assert!(
        out.contains("no email") && out.contains("invalid email `not-an-email`"),
        "{out}"
    );
    assert!(out.contains("invite 5"), "{out}");
    let j = env.json(&["test"]);
    assert_eq!(j["enabledUsers"].as_array().unwrap().len(), 5);
    assert_eq!(j["skipped"].as_array().unwrap().len(), 2);
    let eng = j["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "Engineering")
        .unwrap();
    assert_eq!(
        eng["userIds"].as_array().unwrap().len(),
        3,
        "nested Platform flattened"
    );
    assert_eq!(server.import_count(), 0, "test pushes nothing");
    // it reads the organization (the plan's baseline), and says so
    assert!(
        server.org().reads.iter().any(|r| r == "/public/members"),
        "{:?}",
        server.org().reads
    );
    assert_eq!(j["plan"]["baseline"], "organization");
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one scenario: a first sync, then each change in the directory and the sync that sends only it"
)]
fn first_sync_then_changes_send_only_the_differences() {
    let (slapd, server, mut env) = setup();

    // first sync: everything
    let r = env.ok(&["sync"]);
    assert!(r.stdout.contains("Sync complete"), "{}", r.stdout);
    {
        let org = server.org();
        assert_eq!(
            org.emails(),
            set(&[
                "alice@example.com",
                "bob@example.com",
                "carol@example.com",
                "dave@example.com",
                "erin@example.com"
            ])
        );
        assert_eq!(
            org.group_emails("Engineering"),
            set(&["alice@example.com", "bob@example.com", "carol@example.com"])
        );
        assert_eq!(
            org.group_emails("Sales"),
            set(&["dave@example.com", "erin@example.com"])
        );
        assert_eq!(org.imports.len(), 1);
        let h = org.last_headers.clone().unwrap();
        assert_eq!(h["bitwarden-client-name"], "connector");
        assert!(
            h["user-agent"]
                .to_str()
                .unwrap()
                .starts_with(&format!("Bitwarden_DC/{}", env!("CARGO_PKG_VERSION")))
        );
    }
    assert_eq!(env.cache_counts(), (5, 3));
    assert!(!env.ok(&["last-sync", "users"]).stdout.trim().is_empty());

    // unchanged: no import request at all
    let r = env.ok(&["sync"]);
    assert!(r.stdout.contains("unchanged"), "{}", r.stdout);
    assert_eq!(server.import_count(), 1);

    // a new user in a group: that member and that group only
    slapd.add(&person("heidi", Some("heidi@example.com"), false));
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nadd: member\nmember: {}\n\n",
        group_dn("Sales"),
        user_dn("heidi")
    ));
    env.ok(&["sync"]);
    assert_eq!(server.import_count(), 2);
    let body = server.last_body();
    assert_eq!(
        member_changes(&body),
        vec![("heidi@example.com".to_string(), false)]
    );
    assert_eq!(group_names(&body), vec!["Sales".to_string()]);
    assert!(
        server
            .org()
            .group_emails("Sales")
            .contains("heidi@example.com")
    );

    // a disabled user without remove_disabled: still a member, nothing sent
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 514\n\n",
        user_dn("erin")
    ));
    let j = env.json(&["test"]);
    assert_eq!(j["disabledUsers"].as_array().unwrap().len(), 1);
    let r = env.ok(&["sync"]);
    assert!(r.stdout.contains("unchanged"), "{}", r.stdout);
    assert_eq!(server.import_count(), 2);

    // with remove_disabled: erin is removed, and the server takes her out of Sales itself,
    // so no group is re-sent
    env.set("sync.remove_disabled", "true");
    env.ok(&["sync"]);
    let body = server.last_body();
    assert_eq!(
        member_changes(&body),
        vec![("erin@example.com".to_string(), true)]
    );
    assert!(group_names(&body).is_empty(), "{body}");
    assert!(!server.org().emails().contains("erin@example.com"));
    assert_eq!(
        server.org().group_emails("Sales"),
        set(&["dave@example.com", "heidi@example.com"])
    );

    // enabled again: invited again, and Sales is re-sent so she is back in it
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 512\n\n",
        user_dn("erin")
    ));
    env.ok(&["sync"]);
    let body = server.last_body();
    assert_eq!(
        member_changes(&body),
        vec![("erin@example.com".to_string(), false)]
    );
    assert_eq!(group_names(&body), vec!["Sales".to_string()]);
    assert_eq!(
        server.org().group_emails("Sales"),
        set(&["dave@example.com", "erin@example.com", "heidi@example.com"])
    );
    // and disabled once more, for what follows
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 514\n\n",
        user_dn("erin")
    ));
    env.ok(&["sync"]);
    assert!(!server.org().emails().contains("erin@example.com"));

    // a membership change: only the group
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\ndelete: member\nmember: {}\n\n",
        group_dn("Engineering"),
        user_dn("bob")
    ));
    env.ok(&["sync"]);
    let body = server.last_body();
    assert!(member_changes(&body).is_empty());
    assert_eq!(group_names(&body), vec!["Engineering".to_string()]);
    assert_eq!(
        server.org().group_emails("Engineering"),
        set(&["alice@example.com", "carol@example.com"])
    );

    // clear-cache: the next sync rebuilds the cache from the organization and sends nothing
    env.ok(&["clear-cache"]);
    assert_eq!(env.cache_counts(), (0, 0));
    let imports = server.import_count();
    env.ok(&["sync"]);
    assert_eq!(
        server.import_count(),
        imports,
        "the organization already matches"
    );
    assert_eq!(env.cache_counts(), (5, 3));

    // an emptied organization is taken for a short answer of the server (the cache confirmed
    // five members), then gets everything again once allowed
    server.org().reset();
    let r = env.expect(&["sync"], 3);
    assert!(r.stderr.contains("looks incomplete"), "{}", r.stderr);
    assert_eq!(server.import_count(), imports);
    env.ok(&["sync", "--allow-mass-removal"]);
    let body = server.last_body();
    assert_eq!(
        body["members"].as_array().unwrap().len(),
        6,
        "5 active + erin's removal"
    );
    assert_eq!(body["groups"].as_array().unwrap().len(), 3);

    // history records every run
    let runs = env.json(&["history"]);
    let outcomes: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        vec![
            "synced",
            "refused",
            "unchanged",
            "synced",
            "synced",
            "synced",
            "synced",
            "unchanged",
            "synced",
            "unchanged",
            "synced"
        ]
    );
    env.remove_var("NOTHING");
}

#[test]
fn mass_removal_is_refused_until_allowed() {
    let (slapd, server, env) = setup();
    env.set("sync.remove_missing_users", "true");
    env.set("sync.max_removals", "2");
    env.ok(&["sync"]);
    for u in ["alice", "bob", "carol"] {
        slapd.delete(&user_dn(u));
    }
    let r = env.expect(&["sync"], 3);
    assert!(
        r.stderr.contains("remove 3 member(s)") && r.stderr.contains("max_removals = 2"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("Nothing was pushed"));
    assert_eq!(server.import_count(), 1);
    assert_eq!(server.org().members.len(), 5);
    assert_eq!(env.cache_counts().0, 5);
    let t = env.ok(&["test"]);
    assert!(t.stdout.contains("REFUSED"), "{}", t.stdout);
    let runs = env.json(&["history"]);
    assert_eq!(runs[0]["outcome"], "refused");

    let r = env.ok(&["sync", "--allow-mass-removal"]);
    assert!(r.stdout.contains("remove 3"), "{}", r.stdout);
    assert_eq!(
        server.org().emails(),
        set(&["dave@example.com", "erin@example.com"])
    );
    assert_eq!(env.cache_counts().0, 2);
}

#[test]
fn empty_directory_over_a_full_cache_is_refused() {
    let (_slapd, server, env) = setup();
    env.ok(&["sync"]);
    env.set("sync.user_filter", "(uid=nobody-has-this)");
    let r = env.expect(&["sync"], 3);
    assert!(r.stderr.contains("returned no users"), "{}", r.stderr);
    assert_eq!(server.import_count(), 1);
}

#[test]
fn seat_limit_error_is_shown_and_the_cache_is_untouched() {
    let (_slapd, server, env) = setup();
    server.org().seat_limit = Some(3);
    let r = env.expect(&["sync"], 1);
    assert!(
        r.stderr.contains("maximum number of users (3)"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("import batch 1/1"), "{}", r.stderr);
    assert_eq!(env.cache_counts(), (0, 0));
    assert!(server.org().members.is_empty());
    let runs = env.json(&["history"]);
    assert_eq!(runs[0]["outcome"], "failed");
    assert!(
        runs[0]["error"]
            .as_str()
            .unwrap()
            .contains("maximum number of users")
    );
    server.org().seat_limit = Some(10);
    env.ok(&["sync"]);
    assert_eq!(server.org().members.len(), 5);
}

#[test]
fn server_errors_rate_limits_and_validation_messages() {
    let (_slapd, server, env) = setup();
    // 429 with Retry-After and a 500 are retried, then the push succeeds
    server
        .org()
        .import_failures
        .push_back(Failure::RateLimited(1));
    server
        .org()
        .import_failures
        .push_back(Failure::Status(500, "{}".into()));
    let started = std::time::Instant::now();
    env.ok(&["sync"]);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_eq!(server.org().members.len(), 5);

    // a 401 on import (token revoked) gets one fresh token, then succeeds
    server.org().reset();
    env.ok(&["clear-cache"]);
    let tokens = server.org().token_requests;
    server
        .org()
        .import_failures
        .push_back(Failure::Status(401, "".into()));
    env.ok(&["sync"]);
    assert_eq!(server.org().token_requests, tokens + 2);
    // a 401 that persists says the key was refused
    server.org().reset();
    env.ok(&["clear-cache"]);
    for _ in 0..2 {
        server
            .org()
            .import_failures
            .push_back(Failure::Status(401, "".into()));
    }
    let r = env.expect(&["sync"], 1);
    assert!(
        r.stderr.contains("refused the API key's token"),
        "{}",
        r.stderr
    );
    assert_eq!(env.cache_counts(), (0, 0));

    // a validation error is shown with its field
    let (_s2, server2, env2) = setup();
    server2.org().import_failures.push_back(Failure::Status(
        400,
        r#"{"message":"The model state is invalid.","validationErrors":{"Members[0].Email":["The Email field is not a valid e-mail address."]}}"#.into(),
    ));
    let r = env2.expect(&["sync"], 1);
    assert!(
        r.stderr
            .contains("Members[0].Email: The Email field is not a valid e-mail address."),
        "{}",
        r.stderr
    );
    assert_eq!(env2.cache_counts(), (0, 0));

    // 500s that never stop: bounded retries, then a clear failure
    for _ in 0..10 {
        server2
            .org()
            .import_failures
            .push_back(Failure::Status(503, "".into()));
    }
    let r = env2.expect(&["sync"], 1);
    assert!(r.stderr.contains("HTTP 503"), "{}", r.stderr);
}

#[test]
fn wrong_api_key_and_wrong_ldap_password_are_clear_errors() {
    let (_slapd, server, mut env) = setup();
    env.set_var("BW_CLIENTSECRET", "wrong-secret-value");
    let r = env.expect(&["sync"], 1);
    assert!(r.stderr.contains("API key was rejected"), "{}", r.stderr);
    assert!(
        !r.all().contains("wrong-secret-value"),
        "secret leaked: {}",
        r.all()
    );
    let log = std::fs::read_dir(env.path().join("logs"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    assert!(!log.contains("wrong-secret-value"), "secret in log");
    assert_eq!(server.import_count(), 0);

    env.set_var("BW_CLIENTSECRET", support::CLIENT_SECRET);
    let r = env.run_stdin(&["config", "set", "ldap.password"], "not-the-password");
    assert_eq!(r.code, 0);
    let r = env.expect(&["test"], 1);
    assert!(
        r.stderr.contains("LDAP bind to ldap://127.0.0.1")
            && r.stderr.contains("invalid credentials"),
        "{}",
        r.stderr
    );

    // an unreachable server
    env.set("ldap.port", &slapd::free_port().to_string());
    let r = env.expect(&["test"], 1);
    assert!(
        r.stderr.contains("connecting to ldap://127.0.0.1"),
        "{}",
        r.stderr
    );
}

#[test]
fn login_checks_the_key_and_logout_forgets_it() {
    let (_slapd, server, mut env) = setup();
    env.remove_var("BW_CLIENTID");
    env.remove_var("BW_CLIENTSECRET");
    let r = env.expect(&["sync"], 2);
    assert!(r.stderr.contains("not logged in"), "{}", r.stderr);
    // wrong secret: refused, nothing stored
    let r = env.run_stdin(
        &["login"],
        &format!("{}\nnope-nope\n", support::client_id()),
    );
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("API key was rejected"), "{}", r.stderr);
    let r = env.run_stdin(
        &["login"],
        &format!("{}\n{}\n", support::client_id(), support::CLIENT_SECRET),
    );
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("You are logged in!"));
    env.ok(&["sync"]);
    assert_eq!(server.org().members.len(), 5);
    // the secret is in the opted-in plaintext file, never in config.toml
    let cfg = std::fs::read_to_string(env.path().join("config.toml")).unwrap();
    assert!(
        !cfg.contains(support::CLIENT_SECRET) && !cfg.contains(slapd::READER_PW),
        "{cfg}"
    );
    env.ok(&["logout"]);
    env.expect(&["sync"], 2);
    // a key that is not an organization key
    let r = env.run_stdin(&["login"], "user.1234\nsecret\n");
    assert_eq!(r.code, 2, "{}", r.all());
}

#[test]
fn a_second_sync_on_the_same_data_directory_is_refused() {
    let (_slapd, server, env) = setup();
    let lock =
        directory_connector::datadir::acquire_sync_lock(env.path(), "sync from the test").unwrap();
    let r = env.expect(&["sync"], 1);
    assert!(r.stderr.contains("another sync is running"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("process {}", std::process::id())),
        "{}",
        r.stderr
    );
    drop(lock);
    env.ok(&["sync"]);
    assert_eq!(server.import_count(), 1);
}

#[test]
fn config_commands() {
    let env = Env::new();
    let r = env.expect(&["config", "set", "ldap.portt", "1"], 2);
    assert!(
        r.stderr.contains("unknown setting `ldap.portt`"),
        "{}",
        r.stderr
    );
    let r = env.expect(&["config", "set", "ldap.port", "many"], 2);
    assert!(r.stderr.contains("`ldap.port`"), "{}", r.stderr);
    let r = env.expect(&["config", "set", "ldap.password", "hunter22"], 2);
    assert!(
        r.stderr.contains("not accepted on the command line"),
        "{}",
        r.stderr
    );
    env.ok(&["config", "set", "ldap.hostname", "ldap.example.com"]);
    assert_eq!(
        env.ok(&["config", "get", "ldap.hostname"]).stdout.trim(),
        "ldap.example.com"
    );
    let r = env.expect(&["config", "validate"], 2);
    assert!(
        r.stderr.contains("directory.type") && r.stderr.contains("ldap.root_path")
            || r.stderr.contains("directory.type"),
        "{}",
        r.stderr
    );
    env.ok(&["config", "set", "directory.type", "ldap"]);
    let r = env.expect(&["config", "validate"], 2);
    for k in ["ldap.root_path", "ldap.username", "ldap.password"] {
        assert!(r.stderr.contains(k), "{k}: {}", r.stderr);
    }
    let r = env.run_stdin(&["config", "set", "ldap.password"], "Pa55word!\n");
    assert_eq!(r.code, 0, "{}", r.all());
    let shown = env.ok(&["config", "show"]).stdout;
    assert!(!shown.contains("Pa55word!"));
    assert!(
        env.ok(&["config", "get", "ldap.password"])
            .stdout
            .contains("********")
    );
    // a hand-edited unknown key is a clear error naming it
    let path = env.path().join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{text}\n[sync]\nremove_disabledd = true\n")).unwrap();
    let r = env.expect(&["config", "show"], 2);
    assert!(r.stderr.contains("sync.remove_disabledd"), "{}", r.stderr);
    assert!(
        env.ok(&["data-file"])
            .stdout
            .trim()
            .ends_with("config.toml")
    );
}

#[test]
fn without_a_keyring_or_opt_in_the_error_explains_the_choices() {
    let mut env = Env::new();
    env.remove_var("DIRECTORY_CONNECTOR_PLAINTEXT_SECRETS");
    env.set_var(
        "DBUS_SESSION_BUS_ADDRESS",
        "unix:path=/nonexistent/dc-test-bus",
    );
    let r = env.run_stdin(&["config", "set", "ldap.password"], "Pa55word!\n");
    assert_eq!(r.code, 2, "{}", r.all());
    for hint in [
        "Secret Service (GNOME Keyring, KWallet) is not available",
        "env:NAME",
        "file:PATH",
        "DIRECTORY_CONNECTOR_PLAINTEXT_SECRETS=true",
    ] {
        assert!(r.stderr.contains(hint), "{hint}: {}", r.stderr);
    }
    assert!(!r.all().contains("Pa55word!"));
    assert!(!env.path().join("secrets.toml").exists());
    // a reference needs no keyring
    env.ok(&["config", "set", "ldap.password", "env:LDAP_PW"]);
    assert_eq!(
        env.ok(&["config", "get", "ldap.password"]).stdout.trim(),
        "env:LDAP_PW"
    );
}
