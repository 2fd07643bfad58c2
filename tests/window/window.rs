//! The real window: starts the binary with no subcommand under Xvfb (a virtual X display),
//! waits for its window, takes a screenshot with ImageMagick's `import` and checks that it is
//! not blank. The screenshot is kept in `target/tmp/window-*.png` (a CI artifact).

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::Env;
use support::fake_bitwarden::FakeBitwarden;
use support::slapd::{Slapd, person};
use support::xvfb::{Killed, xvfb};

fn screenshot(display: &str, env: &Env, name: &str, expect_title: &str) -> PathBuf {
    let app = env
        .command(&[])
        .env("DISPLAY", display)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the window");
    let app = Killed(app);
    let start = Instant::now();
    loop {
        let out = Command::new("xwininfo")
            .args(["-root", "-tree"])
            .env("DISPLAY", display)
            .output()
            .expect("xwininfo (package x11-utils)");
        if String::from_utf8_lossy(&out.stdout).contains(expect_title) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the window did not appear"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // a few frames to lay out and paint
    std::thread::sleep(Duration::from_secs(3));
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("window-{name}.png"));
    let ok = Command::new("import")
        .args(["-window", "root"])
        .arg(&path)
        .env("DISPLAY", display)
        .status()
        .expect("import (package imagemagick)");
    assert!(ok.success(), "screenshot failed");
    drop(app);
    path
}

fn colors(path: &Path) -> usize {
    let out = Command::new("identify")
        .args(["-format", "%k"])
        .arg(path)
        .output()
        .expect("identify");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn the_real_window_opens_under_xvfb_and_is_not_blank() {
    let (_x, display) = xvfb(90);
    let slapd = Slapd::start(&person("alice", Some("alice@example.com"), false));
    let server = FakeBitwarden::start();
    let mut env = Env::new();
    env.configure(&slapd, &server);

    // logged out: the login screen
    env.remove_var("BW_CLIENTID");
    env.remove_var("BW_CLIENTSECRET");
    let login = screenshot(&display, &env, "login", "Bitwarden Directory Connector");
    let n = colors(&login);
    assert!(n > 20, "the login screenshot looks blank ({n} colors)");

    // with the API key: the dashboard
    env.set_var("BW_CLIENTID", &support::client_id());
    env.set_var("BW_CLIENTSECRET", support::CLIENT_SECRET);
    let dash = screenshot(&display, &env, "dashboard", "Bitwarden Directory Connector");
    let m = colors(&dash);
    assert!(m > 20, "the dashboard screenshot looks blank ({m} colors)");
    assert_ne!(
        std::fs::read(&login).unwrap(),
        std::fs::read(&dash).unwrap(),
        "two different screens"
    );
}

/// The README's screenshots (issue 28): the real window after a service run the guard refused
/// (the refused plan, the reason and the override, "As of …, service run"), and an error in the
/// window's words (a configuration that does not read: what happened, the hint, Details). Kept
/// in `target/tmp/window-refused.png` and `window-error.png`; `docs/window-*.png` are copies.
#[test]
fn the_real_window_shows_a_refused_service_run_and_an_error_in_its_own_words() {
    use support::slapd::{group, user_dn};
    let (_x, display) = xvfb(130);
    let mut ldif = String::new();
    for u in ["alice", "bob", "carol", "dave"] {
        ldif.push_str(&person(u, Some(&format!("{u}@example.com")), false));
    }
    ldif.push_str(&group("Staff", &[user_dn("alice"), user_dn("bob")]));
    ldif.push_str(&group("Ops", &[user_dn("carol"), user_dn("dave")]));
    let slapd = Slapd::start(&ldif);
    let server = FakeBitwarden::start();
    let env = Env::new();
    env.configure(&slapd, &server);
    env.set("sync.remove_missing_users", "true");
    env.set("sync.max_removals", "1");
    env.ok(&["sync"]);
    slapd.delete(&user_dn("bob"));
    slapd.delete(&user_dn("carol"));
    // one run of the service, refused by the guard: it saves the tables the window shows
    env.set("service.schedule", "* * * * * *");
    let service = env
        .command(&["service"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the service");
    let service = Killed(service);
    let tables = env.path().join(directory_connector::sync::tables::FILE);
    let start = Instant::now();
    while !tables.exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "no tables saved");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(service);
    let refused = screenshot(&display, &env, "refused", "Bitwarden Directory Connector");
    assert!(colors(&refused) > 20, "the screenshot looks blank");

    // a configuration that does not read: the error, its hint and Details
    let config = env.path().join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}\n[ldap]\nportt = 389\n")).unwrap();
    let error = screenshot(&display, &env, "error", "Bitwarden Directory Connector");
    assert!(colors(&error) > 20, "the screenshot looks blank");
    assert_ne!(
        std::fs::read(&refused).unwrap(),
        std::fs::read(&error).unwrap()
    );
}
