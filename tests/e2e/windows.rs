//! End-to-end on Windows: the cross-built `directory-connector.exe` (scripts/build-windows.sh)
//! run under Wine, with its own Wine prefix per test run, against a real slapd and the fake
//! Bitwarden server on loopback. Secrets go to Wine's Credential Manager (the Windows store).
//!
//! The exe must exist: a missing exe FAILS these tests, naming the script to run. Only
//! `DIRECTORY_CONNECTOR_SKIP_WINDOWS_TESTS=1` (documented in the README) skips them.

use crate::support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use support::fake_bitwarden::FakeBitwarden;
use support::slapd::{self, Slapd, group, person, user_dn};
use support::xvfb::{Killed, xvfb};

const SKIP_ENV: &str = "DIRECTORY_CONNECTOR_SKIP_WINDOWS_TESTS";
const TARGET: &str = "x86_64-pc-windows-gnu";

/// The target directory this test binary was built in (honours CARGO_TARGET_DIR).
fn target_dir() -> PathBuf {
    let bin = support::bin();
    bin.parent()
        .and_then(Path::parent)
        .expect("the binary sits in <target>/<profile>/")
        .to_path_buf()
}

struct Wine {
    wine: PathBuf,
    wineserver: PathBuf,
    prefix: PathBuf,
    exe: PathBuf,
    /// the test stand-in for bcryptprimitives.dll, copied into each prefix
    prng: PathBuf,
}

fn wine_binary() -> Option<PathBuf> {
    ["/usr/lib/wine/wine64", "/usr/bin/wine64", "/usr/bin/wine"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn wineserver_binary() -> Option<PathBuf> {
    ["/usr/lib/wine/wineserver", "/usr/bin/wineserver"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

static WINE: OnceLock<Result<Wine, String>> = OnceLock::new();

/// Runs `wineserver <arg>` for a prefix, output to /dev/null; an error names the command and,
/// when it ran, its exit status.
fn wineserver(wineserver: &Path, prefix: &Path, arg: &str) -> Result<(), String> {
    let what = || {
        format!(
            "{} {arg} (WINEPREFIX={})",
            wineserver.display(),
            prefix.display()
        )
    };
    let status = Command::new(wineserver)
        .arg(arg)
        .env("WINEPREFIX", prefix)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("starting {}: {e}", what()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} failed: {status}", what()))
    }
}

/// The prefixes whose persistent wineserver this run started: (wineserver, prefix).
static SESSIONS: std::sync::Mutex<Vec<(PathBuf, PathBuf)>> = std::sync::Mutex::new(Vec::new());

/// At the test binary's exit: ends the persistent wineservers and every Wine process in them
/// (the Windows service, a window left open).
extern "C" fn end_wineservers() {
    if let Ok(sessions) = SESSIONS.lock() {
        for (server, prefix) in sessions.iter() {
            let _ = wineserver(server, prefix, "-k");
        }
    }
}

/// Creates the Wine prefix `prefix` and starts the one Wine session the tests use in it.
///
/// The prefix is created by `wineboot -i` in a session of its own, which ends with it (`-w`
/// waits). Then one session for the whole run: Debian's wineserver wrapper passes `-p0`, so a
/// session ends the moment its last program exits, and services.exe, explorer.exe and the
/// Windows service are shut down then. A command started in that moment meets a services.exe
/// that is going away (`service start` got "service does not exist", os error 1060, right after
/// `service install`) or may be killed with the dying session (likely the SIGKILL at exit that
/// [`WinEnv::run`] retries). A persistent
/// server (`-p`, ended by `wineserver -k` at exit) keeps one session with one services.exe to
/// the end of the run. It is started after the prefix's creation: under `wineboot -i` a
/// persistent session kept two services.exe, and `service install` and `service start`
/// reached different ones.
///
/// The session's desktop (explorer.exe, started by `wineboot`) picks its display driver once,
/// from `DISPLAY`: without one, every window of the session goes to Wine's null driver
/// ("Application tried to create a window, but no driver could be loaded"). `display` is the
/// X display of a session that shows windows.
fn boot(w: &Wine, prefix: &Path, display: Option<&str>) -> Result<(), String> {
    std::fs::create_dir_all(prefix).map_err(|e| format!("{}: {e}", prefix.display()))?;
    let mut booted = false;
    for _ in 0..3 {
        let status = Command::new(&w.wine)
            .args(["wineboot", "-i"])
            .env("WINEPREFIX", prefix)
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .env_remove("DISPLAY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("starting {}: {e}", w.wine.display()))?;
        let _ = wineserver(&w.wineserver, prefix, "-w");
        if status.success() && prefix.join("drive_c/windows/system32").is_dir() {
            booted = true;
            break;
        }
    }
    if !booted {
        return Err(format!(
            "wineboot could not create the prefix {}",
            prefix.display()
        ));
    }
    // Wine 8 lacks bcryptprimitives.dll (Rust's std needs ProcessPrng): the test stand-in
    std::fs::copy(
        &w.prng,
        prefix.join("drive_c/windows/system32/bcryptprimitives.dll"),
    )
    .map_err(|e| format!("copying {}: {e}", w.prng.display()))?;
    wineserver(&w.wineserver, prefix, "-p")?;
    if let Ok(mut sessions) = SESSIONS.lock() {
        if sessions.is_empty() {
            // SAFETY: registers a plain `extern "C" fn` that only spawns `wineserver -k`
            unsafe { libc::atexit(end_wineservers) };
        }
        sessions.push((w.wineserver.clone(), prefix.to_path_buf()));
    }
    // the session's services (started by wineboot) inherit its output: /dev/null, so that no
    // test waits on a pipe they hold
    let mut cmd = Command::new(&w.wine);
    cmd.arg("wineboot")
        .env("WINEPREFIX", prefix)
        .env("WINEDEBUG", "-all")
        .env_remove("DISPLAY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(d) = display {
        cmd.env("DISPLAY", d);
    }
    let status = cmd
        .status()
        .map_err(|e| format!("starting {}: {e}", w.wine.display()))?;
    if !status.success() {
        return Err(format!(
            "wineboot could not start the session of {}: {status}",
            prefix.display()
        ));
    }
    Ok(())
}

/// The Wine set-up for this run, or `None` when the admin of this machine skipped the Windows
/// tests. Panics (fails the test) when the exe or Wine is missing.
fn wine() -> Option<&'static Wine> {
    if support::opted_out(SKIP_ENV, "the Windows tests are skipped on this machine") {
        return None;
    }
    match WINE.get_or_init(set_up) {
        Ok(w) => Some(w),
        Err(e) => panic!("{e}"),
    }
}

fn set_up() -> Result<Wine, String> {
    let out = target_dir().join(TARGET);
    let exe = out.join("release/directory-connector.exe");
    let prng = out.join("wine/bcryptprimitives.dll");
    for f in [&exe, &prng] {
        if !f.is_file() {
            return Err(format!(
                "{} is missing: run scripts/build-windows.sh first (scripts/test.sh does), or \
                 set {SKIP_ENV}=1 on a machine that cannot build or run the Windows binary",
                f.display()
            ));
        }
    }
    let wine = wine_binary()
        .ok_or("Wine is missing: install Debian's wine64 (scripts/test.sh does)".to_string())?;
    let wineserver_bin = wineserver_binary().ok_or(
        "wineserver is missing: install Debian's wine64 (scripts/test.sh does)".to_string(),
    )?;
    // one prefix per test run, under the target dir; earlier runs' prefixes (and a wineserver
    // an interrupted run left behind) are removed
    let root = target_dir().join("wine-e2e");
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            let _ = wineserver(&wineserver_bin, &e.path(), "-k");
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    let w = Wine {
        wine,
        wineserver: wineserver_bin,
        prefix: root.join(format!("prefix-{}", std::process::id())),
        exe,
        prng,
    };
    boot(&w, &w.prefix, None)?;
    Ok(w)
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self) -> String {
        format!("exit {}\n{}\n{}", self.code, self.stdout, self.stderr)
    }
}

/// A unix path as the Windows program sees it (Wine maps `/` to drive Z:).
fn win_path(p: &Path) -> String {
    format!("Z:{}", p.display()).replace('/', "\\")
}

/// A data directory and the variables the exe runs with (no plaintext opt-in, no API key).
struct WinEnv {
    dir: tempfile::TempDir,
    /// `--data-dir` as the Windows program gets it (default: the temp dir on drive Z:)
    data_arg: Option<String>,
    vars: Vec<(String, String)>,
}

impl WinEnv {
    fn new() -> WinEnv {
        WinEnv {
            dir: tempfile::tempdir().expect("tempdir"),
            data_arg: None,
            vars: vec![
                ("DIRECTORY_CONNECTOR_RETRY_BASE_MS".into(), "20".into()),
                ("NO_COLOR".into(), "1".into()),
            ],
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs the exe once. `None` when Wine killed the process as it exited (SIGKILL, a Wine
    /// quirk), which is not the product's verdict.
    fn run_once(
        &self,
        w: &Wine,
        args: &[&str],
        stdin: &str,
        extra: &[(&str, &str)],
    ) -> Option<Run> {
        let mut cmd = Command::new(&w.wine);
        cmd.arg(&w.exe)
            .arg("--data-dir")
            .arg(
                self.data_arg
                    .clone()
                    .unwrap_or_else(|| win_path(self.path())),
            )
            .args(args)
            .env("WINEPREFIX", &w.prefix)
            .env("WINEDEBUG", "-all")
            .env_remove("BW_CLIENTID")
            .env_remove("BW_CLIENTSECRET")
            .env_remove("RUST_LOG")
            .env_remove("DIRECTORY_CONNECTOR_DATA_DIR")
            .env_remove("DIRECTORY_CONNECTOR_PLAINTEXT_SECRETS")
            .env_remove("DISPLAY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn wine");
        {
            let mut si = child.stdin.take().expect("stdin");
            let _ = si.write_all(stdin.as_bytes());
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let pid = child.id();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(o) => o.expect("wait for wine"),
            Err(_) => {
                // SAFETY: kill(2) on the child we spawned
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                panic!(
                    "`{}` did not finish within 180 s under Wine",
                    args.join(" ")
                );
            }
        };
        use std::os::unix::process::ExitStatusExt;
        if out.status.signal() == Some(libc::SIGKILL) || out.status.code() == Some(137) {
            return None;
        }
        Some(Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n"),
            stderr: String::from_utf8_lossy(&out.stderr).replace("\r\n", "\n"),
        })
    }

    /// Runs the exe, retrying when Wine killed it at exit. Only for commands whose repeat is
    /// harmless (reads, `config set`, `login`, a sync that converges).
    fn run(&self, w: &Wine, args: &[&str], stdin: &str, extra: &[(&str, &str)]) -> Run {
        for _ in 0..3 {
            if let Some(r) = self.run_once(w, args, stdin, extra) {
                return r;
            }
            eprintln!("Wine killed `{}` at exit; running it again", args.join(" "));
        }
        panic!("Wine killed `{}` three times", args.join(" "));
    }

    fn expect(&self, w: &Wine, args: &[&str], extra: &[(&str, &str)], code: i32) -> Run {
        let r = self.run(w, args, "", extra);
        assert_eq!(r.code, code, "`{}`: {}", args.join(" "), r.all());
        r
    }

    fn set(&self, w: &Wine, key: &str, value: &str) {
        self.expect(w, &["config", "set", key, value], &[], 0);
    }

    fn configure(&self, w: &Wine, slapd: &Slapd, server: &FakeBitwarden) {
        self.set(w, "server.url", &server.url);
        self.set(w, "directory.type", "ldap");
        self.set(w, "ldap.hostname", "127.0.0.1");
        self.set(w, "ldap.port", &slapd.port.to_string());
        self.set(w, "ldap.root_path", slapd::BASE);
        self.set(w, "ldap.username", slapd::READER_DN);
        self.set(w, "sync.user_path", "ou=People");
        self.set(w, "sync.group_path", "ou=Groups");
    }
}

fn directory() -> String {
    let mut l = String::new();
    for u in ["alice", "bob", "carol"] {
        l.push_str(&person(u, Some(&format!("{u}@example.com")), false));
    }
    l.push_str(&group("Engineering", &[user_dn("alice"), user_dn("bob")]));
    l
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn windows_exe_prints_its_version() {
    let Some(w) = wine() else { return };
    let env = WinEnv::new();
    let r = env.expect(w, &["--version"], &[], 0);
    assert!(r.stdout.contains(env!("CARGO_PKG_VERSION")), "{}", r.all());
}

/// `config set` + `test`; `login` puts the API key in the Credential Manager (no plaintext file);
/// a later `sync` without the key in the environment reads it from there; `logout` removes it.
#[test]
fn windows_exe_keeps_secrets_in_the_credential_manager_and_syncs() {
    let Some(w) = wine() else { return };
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = WinEnv::new();
    env.configure(w, &slapd, &server);
    // the LDAP password from standard input goes to the Credential Manager too
    let r = env.run(
        w,
        &["config", "set", "ldap.password"],
        &format!("{}\n", slapd::READER_PW),
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.all());

    let r = env.expect(w, &["test"], &[], 0);
    assert!(r.stdout.contains("alice@example.com"), "{}", r.all());
    assert!(r.stdout.contains("Engineering (2)"), "{}", r.all());
    assert_eq!(server.import_count(), 0, "test pushes nothing");

    // not logged in yet: refused, and nothing is sent
    let r = env.expect(w, &["sync"], &[], 2);
    assert!(r.stderr.contains("not logged in"), "{}", r.all());
    // a wrong key is refused and not stored
    let id = support::client_id();
    let r = env.expect(
        w,
        &["login"],
        &[("BW_CLIENTID", &id), ("BW_CLIENTSECRET", "nope-nope")],
        1,
    );
    assert!(r.stderr.contains("API key was rejected"), "{}", r.all());
    let r = env.expect(
        w,
        &["login"],
        &[
            ("BW_CLIENTID", &id),
            ("BW_CLIENTSECRET", support::CLIENT_SECRET),
        ],
        0,
    );
    assert!(r.stdout.contains("You are logged in!"), "{}", r.all());
    assert!(
        !env.path().join("secrets.toml").exists(),
        "no plaintext secrets file without the opt-in"
    );
    let cfg = std::fs::read_to_string(env.path().join("config.toml")).unwrap();
    assert!(
        !cfg.contains(support::CLIENT_SECRET) && !cfg.contains(slapd::READER_PW),
        "{cfg}"
    );

    // the key and the LDAP password come from the Credential Manager
    let r = env.expect(w, &["sync"], &[], 0);
    assert!(r.stdout.contains("Sync complete"), "{}", r.all());
    {
        let org = server.org();
        assert_eq!(
            org.emails(),
            set(&["alice@example.com", "bob@example.com", "carol@example.com"])
        );
        assert_eq!(
            org.group_emails("Engineering"),
            set(&["alice@example.com", "bob@example.com"])
        );
    }
    // a new user in the directory reaches the organization on the next sync
    slapd.add(&person("dave", Some("dave@example.com"), false));
    env.expect(w, &["sync"], &[], 0);
    assert!(
        server.org().emails().contains("dave@example.com"),
        "{:?}",
        server.org().emails()
    );

    // logout removes the key from the store: sync is refused again
    env.expect(w, &["logout"], &[], 0);
    let r = env.expect(w, &["sync"], &[], 2);
    assert!(r.stderr.contains("not logged in"), "{}", r.all());
    assert!(!env.path().join("secrets.toml").exists());
}

/// A secret given as `env:NAME` is read from the environment of each run.
#[test]
fn windows_exe_reads_a_secret_given_as_an_env_reference() {
    let Some(w) = wine() else { return };
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = WinEnv::new();
    env.configure(w, &slapd, &server);
    env.set(w, "ldap.password", "env:DC_WIN_LDAP_PW");
    let r = env.expect(w, &["test"], &[("DC_WIN_LDAP_PW", slapd::READER_PW)], 0);
    assert!(r.stdout.contains("carol@example.com"), "{}", r.all());
    let r = env.expect(w, &["test"], &[], 2);
    assert!(r.stderr.contains("DC_WIN_LDAP_PW"), "{}", r.all());
    let r = env.expect(w, &["test"], &[("DC_WIN_LDAP_PW", "wrong")], 1);
    assert!(!r.stdout.contains("carol@example.com"), "{}", r.all());
    assert!(!env.path().join("secrets.toml").exists());
}

/// Double-click face: no subcommand opens the window. Wine's OpenGL (through Mesa under Xvfb)
/// draws it; the screenshot must show the window with its content, not a blank area.
///
/// In a prefix and session of its own, whose desktop is started on the Xvfb display (see
/// [`boot`]): the shared session has no display, the CLI tests' way.
#[test]
fn windows_exe_opens_the_window_under_xvfb() {
    let Some(w) = wine() else { return };
    let env = WinEnv::new();
    let (_x, display) = xvfb(150);
    let prefix = w.prefix.with_file_name(format!(
        "{}-window",
        w.prefix
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("prefix")
    ));
    let booted = std::time::Instant::now();
    boot(w, &prefix, Some(&display)).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("the window's prefix was ready after {:?}", booted.elapsed());
    // Wine's errors go to a log file (a CI artifact) that a failure quotes
    let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("wine-window.log");
    let app = Command::new(&w.wine)
        .arg(&w.exe)
        .arg("--data-dir")
        .arg(win_path(env.path()))
        .env("WINEPREFIX", &prefix)
        .env("WINEDEBUG", "err+all,fixme-all")
        .env("DISPLAY", &display)
        .env_remove("BW_CLIENTID")
        .env_remove("BW_CLIENTSECRET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("the window's log file"))
        .spawn()
        .expect("start the window under Wine");
    let mut app = Killed(app);
    let start = std::time::Instant::now();
    let alive = |app: &mut Killed| {
        if let Ok(Some(status)) = app.0.try_wait() {
            panic!("the Windows program ended before its window was checked: {status}");
        }
    };
    loop {
        alive(&mut app);
        let out = Command::new("xwininfo")
            .args(["-root", "-tree"])
            .env("DISPLAY", &display)
            .output()
            .expect("xwininfo (package x11-utils)");
        let tree = String::from_utf8_lossy(&out.stdout);
        if tree.contains("\"Bitwarden Directory Connector\"") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the window did not appear under Wine within 120 s; the X windows:\n{tree}\nWine's \
             log ({}):\n{}",
            log.display(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!("the window appeared after {:?}", start.elapsed());
    // a few frames to lay out and paint: screenshots until the window shows content (60 s)
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("wine-window.png");
    let painted = std::time::Instant::now();
    let colors = loop {
        std::thread::sleep(Duration::from_secs(2));
        alive(&mut app);
        let ok = Command::new("import")
            .args(["-window", "root"])
            .arg(&path)
            .env("DISPLAY", &display)
            .status()
            .expect("import (package imagemagick)");
        assert!(ok.success(), "screenshot failed");
        let out = Command::new("identify")
            .args(["-format", "%k"])
            .arg(&path)
            .output()
            .expect("identify");
        let colors: usize = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        // a blank (unpainted) window is one or two flat colours; text and widgets give hundreds
        if colors > 50 || painted.elapsed() > Duration::from_secs(60) {
            break colors;
        }
    };
    drop(app);
    let _ = wineserver(&w.wineserver, &prefix, "-k");
    assert!(
        colors > 50,
        "the window looks blank: {colors} colours in {}",
        path.display()
    );
}

/// The Windows service under Wine's Service Control Manager: `service install` registers it
/// with its data directory under %ProgramData% (configured and logged in beforehand, secrets in
/// the Credential Manager); it syncs; `service stop` stops it through the SCM and waits;
/// `service uninstall` removes it.
#[test]
fn windows_service_installs_syncs_and_stops_under_the_scm() {
    let Some(w) = wine() else { return };
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let mut env = WinEnv::new();
    env.data_arg = Some("C:\\ProgramData\\directory-connector\\data".into());
    env.configure(w, &slapd, &server);
    let r = env.run(
        w,
        &["config", "set", "ldap.password"],
        &format!("{}\n", slapd::READER_PW),
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    env.set(w, "sync.interval_minutes", "5");
    let id = support::client_id();
    env.expect(
        w,
        &["login"],
        &[
            ("BW_CLIENTID", &id),
            ("BW_CLIENTSECRET", support::CLIENT_SECRET),
        ],
        0,
    );
    let r = env.expect(w, &["service", "install"], &[], 0);
    assert!(
        r.stdout
            .contains("Installed the service DirectoryConnector"),
        "{}",
        r.all()
    );
    // Wine's SCM may start an automatic service at once; `start` accepts a running one
    let r = env.expect(w, &["service", "start"], &[], 0);
    assert!(r.stdout.contains("running"), "{}", r.all());
    let start = std::time::Instant::now();
    while server.org().emails().len() < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the service did not sync within 120 s: {:?}",
            server.org().emails()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        server.org().emails(),
        set(&["alice@example.com", "bob@example.com", "carol@example.com"])
    );
    // a CLI sync is refused while the service holds the data directory
    let r = env.expect(w, &["sync"], &[], 1);
    assert!(r.stderr.contains("another sync is running"), "{}", r.all());
    let r = env.expect(w, &["service", "stop"], &[], 0);
    assert!(r.stdout.contains("has stopped"), "{}", r.all());
    // the service's run is recorded, and nothing is left unfinished by the stop
    let r = env.expect(w, &["--json", "history"], &[], 0);
    let runs: serde_json::Value = serde_json::from_str(&r.stdout).expect("history --json");
    let runs = runs.as_array().expect("a list of runs");
    assert!(
        runs.iter()
            .any(|r| r["outcome"] == "synced" && r["invited"] == 3),
        "{runs:?}"
    );
    assert!(runs.iter().all(|r| !r["ended_at"].is_null()), "{runs:?}");
    // stopped: the data directory is free again
    let r = env.expect(w, &["sync"], &[], 0);
    assert!(r.stdout.contains("Sync complete"), "{}", r.all());
    let r = env.expect(w, &["service", "uninstall"], &[], 0);
    assert!(r.stdout.contains("Removed the service"), "{}", r.all());
    let r = env.expect(w, &["service", "stop"], &[], 1);
    assert!(r.stderr.contains("is it installed?"), "{}", r.all());
}
