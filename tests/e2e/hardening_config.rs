//! End-to-end: the hardening of configuration input (issue 11, part B). The real binary against
//! a data directory: concurrent `config set`, URL rules, ranges at set time, validation by
//! purpose, broken `config.toml` / `secrets.toml`, redaction that does not mangle text, and
//! the modes of the data directory and the logs.

use crate::support;

use support::Env;
use support::fake_bitwarden::FakeBitwarden;
use support::slapd::{self, Slapd, person};

fn config_text(env: &Env) -> String {
    std::fs::read_to_string(env.path().join("config.toml")).unwrap_or_default()
}

fn logs(env: &Env) -> String {
    std::fs::read_dir(env.path().join("logs"))
        .map(|d| {
            d.flatten()
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .collect::<String>()
        })
        .unwrap_or_default()
}

#[test]
fn twelve_parallel_config_sets_all_succeed_and_all_are_kept() {
    let pairs: [(&str, &str); 12] = [
        ("ldap.hostname", "ad.example.com"),
        ("ldap.port", "1389"),
        ("ldap.root_path", "dc=example,dc=com"),
        ("ldap.username", "cn=reader,dc=example,dc=com"),
        ("sync.user_path", "ou=People"),
        ("sync.group_path", "ou=Groups"),
        ("sync.email_suffix", "@example.com"),
        ("sync.max_removals", "7"),
        ("sync.group_resend_hours", "3"),
        ("entra.tenant", "example.onmicrosoft.com"),
        ("google.domain", "example.com"),
        ("onelogin.client_id", "client-1234"),
    ];
    for round in 0..3 {
        let env = Env::new();
        let children: Vec<_> = pairs
            .iter()
            .map(|(k, v)| {
                let child = env
                    .command(&["config", "set", k, v])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn");
                (k, child)
            })
            .collect();
        for (k, child) in children {
            let out = child.wait_with_output().expect("wait");
            assert_eq!(
                out.status.code(),
                Some(0),
                "round {round}: `config set {k}` failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for (k, v) in pairs {
            let r = env.ok(&["config", "get", k]);
            assert_eq!(
                r.stdout.trim(),
                v,
                "round {round}: {k} lost:\n{}",
                config_text(&env)
            );
        }
        // no temp file is left behind
        let names: Vec<String> = std::fs::read_dir(env.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names.iter().any(|n| n.ends_with(".tmp")),
            "round {round}: {names:?}"
        );
    }
}

#[test]
fn urls_of_other_schemes_or_with_credentials_are_refused_when_set() {
    let env = Env::new();
    let url_keys = [
        "server.url",
        "server.api_url",
        "server.identity_url",
        "entra.login_url",
        "entra.graph_url",
        "okta.org_url",
        "onelogin.api_url",
        "google.api_url",
        "google.token_url",
    ];
    for key in url_keys {
        for bad in ["ftp://x", "http://", "mailto:a@b.com", "file:///etc/passwd"] {
            let r = env.expect(&["config", "set", key, bad], 2);
            assert!(r.stderr.contains(key), "{key} {bad}: {}", r.stderr);
        }
        let r = env.expect(
            &[
                "config",
                "set",
                key,
                "https://admin:hunter2pw@vault.example.com",
            ],
            2,
        );
        assert!(
            r.stderr.contains("user name or password") && !r.all().contains("hunter2pw"),
            "{key}: {}",
            r.all()
        );
    }
    let shown = env.ok(&["config", "show"]).stdout;
    assert!(
        !shown.contains("ftp") && !shown.contains("mailto"),
        "{shown}"
    );
    assert!(!logs(&env).contains("hunter2pw"));

    // a bare host still gets https://; http:// to another machine is kept but warned about
    env.ok(&["config", "set", "server.url", "vault.example.com/"]);
    assert_eq!(
        env.ok(&["config", "get", "server.url"]).stdout.trim(),
        "https://vault.example.com"
    );
    let r = env.ok(&["config", "set", "server.url", "http://vault.example.com"]);
    assert!(r.stderr.contains("unencrypted"), "{}", r.stderr);
    let r = env.ok(&["config", "set", "server.url", "http://127.0.0.1:8080"]);
    assert!(!r.stderr.contains("unencrypted"), "{}", r.stderr);

    // ldap.hostname is a host name, not a URL
    let r = env.expect(
        &["config", "set", "ldap.hostname", "ldaps://ad.example.com"],
        2,
    );
    assert!(r.stderr.contains("ldap.hostname"), "{}", r.stderr);

    // a hand-edited file is held to the same rules
    std::fs::write(
        env.path().join("config.toml"),
        "[server]\nurl = \"ftp://x\"\n[directory]\ntype = \"okta\"\n[okta]\norg_url = \"mailto:a@b.com\"\n",
    )
    .unwrap();
    let r = env.expect(&["config", "validate"], 2);
    assert!(
        r.stderr.contains("server.url") && r.stderr.contains("okta.org_url"),
        "{}",
        r.stderr
    );
}

#[test]
fn numbers_out_of_range_are_refused_when_set_naming_the_key_and_range() {
    let env = Env::new();
    for (key, bad, range) in [
        ("ldap.port", "0", "from 1 to 65535"),
        ("ldap.port", "70000", "from 1 to 65535"),
        ("sync.interval_minutes", "1", "0 (off) or from 5 to"),
        ("sync.max_removal_percent", "150", "from 0 to 100"),
        ("sync.max_group_removal_percent", "101", "from 0 to 100"),
        ("ldap.page_size", "0", "from 1 to"),
        ("okta.rate_limit_reserve_percent", "95", "from 0 to 90"),
    ] {
        let r = env.expect(&["config", "set", key, bad], 2);
        assert!(
            r.stderr.contains(key) && r.stderr.contains(range),
            "{key} {bad}: {}",
            r.stderr
        );
        let field = key.split_once('.').unwrap().1;
        assert!(!config_text(&env).contains(field), "{key} {bad} was saved");
    }
    // a negative number (after `--`, so the argument parser passes it through)
    let r = env.expect(&["config", "set", "--", "ldap.port", "-1"], 2);
    assert!(
        r.stderr.contains("ldap.port") && r.stderr.contains("from 1 to 65535"),
        "{}",
        r.stderr
    );
    env.ok(&["config", "set", "sync.interval_minutes", "0"]);
    env.ok(&["config", "set", "ldap.port", "65535"]);
    assert!(!config_text(&env).contains("page_size"));
}

fn directory() -> String {
    let mut l = String::new();
    for i in 0..3 {
        l.push_str(&person(
            &format!("u{i}"),
            Some(&format!("u{i}@example.com")),
            false,
        ));
    }
    l
}

#[test]
fn a_schedule_setting_does_not_block_a_one_shot_sync_or_test() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = Env::new();
    env.configure(&slapd, &server);
    env.set("sync.groups", "false");
    // written by hand (or by an older version): `config set` would refuse it
    let text = config_text(&env).replace("[sync]\n", "[sync]\ninterval_minutes = 1\n");
    assert!(text.contains("interval_minutes = 1"), "{text}");
    std::fs::write(env.path().join("config.toml"), text).unwrap();

    env.ok(&["test"]);
    let r = env.ok(&["sync"]);
    assert!(r.stdout.contains("Sync complete"), "{}", r.stdout);
    assert_eq!(server.org().active_emails().len(), 3);
    // asked for every problem, the schedule setting is one
    let r = env.expect(&["config", "validate"], 2);
    assert!(r.stderr.contains("sync.interval_minutes"), "{}", r.stderr);
}

/// A `server.ca_file` that is not a PEM bundle is a configuration error of the sync (exit 2,
/// naming the key), recorded as a failed run, and nothing reaches the server.
#[test]
fn a_ca_file_that_is_not_pem_fails_the_sync_as_a_configuration_error() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = Env::new();
    env.configure(&slapd, &server);
    let ca = env.path().join("not-a-cert.pem");
    std::fs::write(&ca, "not a certificate").unwrap();
    env.set("server.ca_file", ca.to_str().unwrap());
    let r = env.expect(&["sync"], 2);
    assert!(r.stderr.contains("server.ca_file"), "{}", r.stderr);
    assert_eq!(server.org().token_requests, 0);
    let runs = env.json(&["history"]);
    assert_eq!(runs[0]["outcome"], "failed", "{runs}");
}

#[test]
fn a_broken_config_file_exits_2_and_names_the_line_column_and_key() {
    let env = Env::new();
    let path = env.path().join("config.toml");

    std::fs::write(&path, b"[ldap]\nhost\xff\xfe\x00\x9c garbage").unwrap();
    for args in [
        &["config", "show"][..],
        &["config", "set", "ldap.port", "389"],
        &["test"],
    ] {
        let r = env.expect(args, 2);
        assert!(
            r.stderr.contains("config.toml") && r.stderr.contains("line 2, column 5"),
            "{args:?}: {}",
            r.stderr
        );
    }

    std::fs::write(&path, "[sync]\nusers = true\n[ldap]\nhostname = \"ad.exa").unwrap();
    for args in [
        &["config", "show"][..],
        &["config", "set", "ldap.port", "389"],
    ] {
        let r = env.expect(args, 2);
        assert!(
            r.stderr.contains("line 4") && r.stderr.contains("column"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(r.stderr.contains("ldap.hostname"), "{args:?}: {}", r.stderr);
    }

    std::fs::write(&path, "[ldap]\nhostname = \"a\"\nport = \"x\"\n").unwrap();
    let r = env.expect(&["config", "show"], 2);
    assert!(
        r.stderr.contains("line 3, column 8") && r.stderr.contains("ldap.port"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_malformed_secrets_file_never_shows_the_secret() {
    const SECRET: &str = "Zq7LeakedClientSecret";
    let mut env = Env::new();
    env.remove_var("BW_CLIENTID");
    env.remove_var("BW_CLIENTSECRET");
    std::fs::write(
        env.path().join("secrets.toml"),
        format!(
            "\"bitwarden.client_id\" = \"organization.x\"\n\"bitwarden.client_secret\" = \"{SECRET}\n"
        ),
    )
    .unwrap();
    let r = env.run_stdin(&["config", "set", "ldap.password"], "NewPassword-1");
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(!r.all().contains(SECRET), "secret shown: {}", r.all());
    assert!(
        r.stderr.contains("secrets.toml") && r.stderr.contains("line 2"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("bitwarden.client_secret"), "{}", r.stderr);
    let r = env.run_stdin(
        &["--json", "config", "set", "ldap.password"],
        "NewPassword-1",
    );
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(!r.all().contains(SECRET), "secret shown: {}", r.all());
    assert!(!logs(&env).contains(SECRET), "secret in the log");
}

#[test]
fn a_short_ldap_password_does_not_mangle_the_bind_dn() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = Env::new();
    env.configure(&slapd, &server);
    // a wrong password that is also a word of the bind DN (cn=reader,...)
    let r = env.run_stdin(&["config", "set", "ldap.password"], "reader");
    assert_eq!(r.code, 0, "{}", r.all());
    let r = env.expect(&["test"], 1);
    assert!(
        r.stderr.contains(slapd::READER_DN) && !r.stderr.contains("[REDACTED]"),
        "{}",
        r.stderr
    );
    assert!(logs(&env).contains(slapd::READER_DN), "{}", logs(&env));
}

#[cfg(unix)]
#[test]
fn an_existing_data_dir_keeps_its_mode_and_the_logs_are_private() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let env = Env::new();
    std::fs::set_permissions(env.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let mut cmd = env.command(&["config", "set", "ldap.port", "0"]);
    // SAFETY: umask is async-signal-safe and touches only the child
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o022);
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        mode(env.path()),
        0o1777,
        "the existing directory was chmodded"
    );
    let logs = env.path().join("logs");
    assert_eq!(mode(&logs), 0o700);
    let files: Vec<_> = std::fs::read_dir(&logs).unwrap().flatten().collect();
    assert!(!files.is_empty(), "no log file");
    for f in files {
        assert_eq!(mode(&f.path()), 0o600, "{}", f.path().display());
    }

    // a directory the program creates is private
    let fresh = env.path().join("fresh");
    let r = std::process::Command::new(support::bin())
        .arg("--data-dir")
        .arg(&fresh)
        .args(["config", "set", "sync.users", "true"])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(0));
    assert_eq!(mode(&fresh), 0o700);
}
