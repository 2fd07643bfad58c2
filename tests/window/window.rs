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
