//! End-to-end: `directory-connector service` (the real binary) against a real slapd, the fake
//! Bitwarden server, a webhook receiver, a real SMTP server (Debian's python3-aiosmtpd) and a
//! Unix datagram socket standing in for systemd's NOTIFY_SOCKET. The schedule is a cron
//! expression firing every second. Timing checks assert order and presence, never durations.

use crate::support;

use std::io::{Read, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::Env;
use support::fake_bitwarden::FakeBitwarden;
use support::slapd::{self, Slapd, group, person, user_dn};

fn directory() -> String {
    let mut l = String::new();
    for u in ["alice", "bob", "carol", "dave", "erin"] {
        l.push_str(&person(u, Some(&format!("{u}@example.com")), false));
    }
    l.push_str(&group("Engineering", &[user_dn("alice"), user_dn("bob")]));
    l
}

/// Waits (bounded) until `f` gives a value.
pub(crate) fn wait_for<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    wait_until(what, String::new, f)
}

/// As [`wait_for`]; a timeout's message ends with `detail()`.
pub(crate) fn wait_until<T>(
    what: &str,
    detail: impl Fn() -> String,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}{}",
            detail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A plain HTTP/1.1 GET: status and body.
pub(crate) fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// A webhook receiver: every POST body it got, in order.
struct Hooks {
    url: String,
    got: Arc<Mutex<Vec<Value>>>,
    _rt: tokio::runtime::Runtime,
}

impl Hooks {
    fn start() -> Hooks {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let state = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(
                |axum::extract::State(s): axum::extract::State<Arc<Mutex<Vec<Value>>>>,
                 axum::Json(v): axum::Json<Value>| async move {
                    s.lock().unwrap().push(v);
                    "ok"
                },
            ),
        );
        let app = app.with_state(state);
        let l = rt.block_on(async { tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap() });
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        rt.spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        Hooks { url, got, _rt: rt }
    }
    fn events(&self) -> Vec<String> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|v| v["event"].as_str().unwrap_or("?").to_string())
            .collect()
    }
    fn find(&self, event: &str) -> Option<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .find(|v| v["event"] == event)
            .cloned()
    }
}

/// A real SMTP server (aiosmtpd) storing what it receives in a maildir.
struct Smtp {
    port: u16,
    maildir: tempfile::TempDir,
    child: Child,
}

impl Smtp {
    fn start() -> Smtp {
        let port = slapd::free_port();
        let maildir = tempfile::tempdir().unwrap();
        let log = maildir.path().join("smtpd.log");
        let mut child = Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("mail"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("python3-aiosmtpd is needed (scripts/test.sh installs it)");
        wait_for("the SMTP server", || {
            // python3 without the aiosmtpd module exits at once: say so, not "timed out"
            if let Ok(Some(status)) = child.try_wait() {
                let err = std::fs::read_to_string(&log).unwrap_or_default();
                panic!(
                    "cannot start the SMTP server (python3 -m aiosmtpd: {status}): install \
                     python3-aiosmtpd (scripts/test.sh does)\n{err}"
                );
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Smtp {
            port,
            maildir,
            child,
        }
    }
    /// Every message received so far (raw RFC 5322 text).
    fn messages(&self) -> Vec<String> {
        let dir = self.maildir.path().join("mail/new");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// systemd's side of NOTIFY_SOCKET: every datagram received, in order.
struct NotifySocket {
    path: PathBuf,
    got: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    fn start() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                g.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        });
        NotifySocket {
            path,
            got,
            _dir: dir,
        }
    }
    fn messages(&self) -> Vec<String> {
        self.got.lock().unwrap().clone()
    }
}

/// Starts the service with the env's data directory; stderr is collected.
/// A running service: its stderr is read as it comes (a pipe nobody reads would block the service
/// once full), so that a failure can quote it.
pub(crate) struct Service {
    child: Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Drop for Service {
    /// A test that fails leaves no service running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    /// What the service has written to stderr so far.
    pub(crate) fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

pub(crate) fn start_service(env: &Env, notify: Option<&Path>) -> Service {
    let mut cmd = env.command(&["service"]);
    if let Some(p) = notify {
        cmd.env("NOTIFY_SOCKET", p).env("WATCHDOG_USEC", "400000");
    }
    spawn_service(cmd)
}

/// Spawns `cmd` (the service) with its stderr collected.
pub(crate) fn spawn_service(mut cmd: Command) -> Service {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the service");
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    if let Some(stderr) = child.stderr.take() {
        let log = log.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(mut l) = log.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
    }
    Service { child, log }
}

/// As [`wait_for`], quoting the service's stderr when it times out.
pub(crate) fn wait_for_service<T>(
    service: &Service,
    what: &str,
    f: impl FnMut() -> Option<T>,
) -> T {
    wait_until(
        what,
        || format!("; the service's stderr:\n{}", service.log()),
        f,
    )
}

/// Sends `signal` to the service.
fn signal(service: &Service, signal: i32) {
    // SAFETY: kill with a pid we spawned and a valid signal number.
    unsafe {
        libc::kill(service.child.id() as i32, signal);
    }
}

/// The number of finished runs in the history (read by the CLI, another process).
pub(crate) fn finished_runs(env: &Env) -> Option<usize> {
    let r = env.run(&["--json", "history", "--limit", "1000"]);
    let v: Value = serde_json::from_str(&r.stdout).ok()?;
    Some(
        v.as_array()?
            .iter()
            .filter(|r| r["outcome"] != "running")
            .count(),
    )
}

/// `config.toml` with a line that is not TOML at its end (as a hand edit gone wrong), and the
/// text it had before.
fn break_config(env: &Env) -> String {
    let path = env.path().join("config.toml");
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{good}this line is not toml\n")).unwrap();
    good
}

pub(crate) fn sigterm_and_wait(mut service: Service) -> (i32, String) {
    // SAFETY: kill with a pid we spawned and a valid signal number.
    unsafe {
        libc::kill(service.child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = service.child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = service.child.kill();
            panic!(
                "the service did not stop after SIGTERM; its stderr:\n{}",
                service.log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // the reader ends at the pipe's end, shortly after the exit
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end && std::sync::Arc::strong_count(&service.log) > 1 {
        std::thread::sleep(Duration::from_millis(20));
    }
    (status.code().unwrap_or(-1), service.log())
}

pub(crate) fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one scenario: the service's life from a failing run to recovery, health, metrics and SIGTERM; each step depends on the one before"
)]
fn service_fails_alerts_recovers_serves_health_and_metrics_and_stops_on_sigterm() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = Env::new();
    env.configure(&slapd, &server);
    let hooks = Hooks::start();
    let smtp = Smtp::start();
    let notify = NotifySocket::start();
    let metrics_port = slapd::free_port();
    // the directory is down at first: nothing listens on this port
    let dead_port = slapd::free_port();
    env.set("ldap.port", &dead_port.to_string());
    env.set("ldap.timeout_seconds", "5");
    env.set("service.schedule", "* * * * * *");
    env.set(
        "service.metrics_listen",
        &format!("127.0.0.1:{metrics_port}"),
    );
    env.set("notify.webhook_url", &hooks.url);
    env.set(
        "notify.smtp_url",
        &format!("smtp://127.0.0.1:{}", smtp.port),
    );
    env.set("notify.email_to", "admin@example.com");
    env.set("notify.email_from", "connector@example.com");

    let service = start_service(&env, Some(&notify.path));

    // the first run fails: a failure webhook, /healthz 503, the failed counter
    let failure = wait_for_service(&service, "the failure webhook", || hooks.find("failure"));
    assert_eq!(failure["outcome"], "failed", "{failure}");
    assert!(
        failure["error"].as_str().unwrap().contains("directory"),
        "{failure}"
    );
    assert!(failure["host"].as_str().is_some_and(|h| !h.is_empty()));
    let (code, body) = http_get(metrics_port, "/healthz").expect("healthz");
    assert_eq!(code, 503, "{body}");
    let h: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["status"], "unhealthy");
    assert_eq!(h["last_outcome"], "failed");
    assert!(h["error"].as_str().is_some_and(|e| !e.is_empty()), "{h}");
    assert!(h["next_run"].is_string(), "{h}");
    let (code, text) = http_get(metrics_port, "/metrics").expect("metrics");
    assert_eq!(code, 200);
    assert!(
        metric(&text, "directory_connector_runs_total{outcome=\"failed\"}").unwrap() >= 1.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "directory_connector_runs_total{outcome=\"synced\"}"),
        Some(0.0),
        "{text}"
    );
    // failing again and again: one alert for the change of state, not one per run
    wait_for_service(&service, "a second failed run", || {
        let (_, t) = http_get(metrics_port, "/metrics")?;
        (metric(&t, "directory_connector_runs_total{outcome=\"failed\"}")? >= 2.0).then_some(())
    });
    assert_eq!(hooks.events(), ["failure"]);

    // a CLI sync is refused while the service runs, naming it
    let r = env.run(&["sync"]);
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(
        r.stderr.contains("directory-connector service"),
        "{}",
        r.stderr
    );

    // the fix takes effect at the next run (the config is re-read)
    env.set("ldap.port", &slapd.port.to_string());
    let recovery = wait_for_service(&service, "the recovery webhook", || hooks.find("recovery"));
    assert_eq!(recovery["outcome"], "synced", "{recovery}");
    assert_eq!(recovery["counts"]["invited"], 5, "{recovery}");
    assert_eq!(hooks.events(), ["failure", "recovery"]);
    assert_eq!(server.org().emails().len(), 5);
    let (code, body) = http_get(metrics_port, "/healthz").expect("healthz");
    assert_eq!(code, 200, "{body}");
    let h: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["status"], "ok");
    assert!(
        h["last_outcome"] == "synced" || h["last_outcome"] == "unchanged",
        "{h}"
    );
    assert!(h["last_success"].is_string() && h["error"].is_null(), "{h}");
    let (_, text) = http_get(metrics_port, "/metrics").expect("metrics");
    for (series, want) in [
        ("directory_connector_runs_total{outcome=\"synced\"}", 1.0),
        ("directory_connector_changes_total{kind=\"invite\"}", 5.0),
        (
            "directory_connector_changes_total{kind=\"group_create\"}",
            1.0,
        ),
        ("directory_connector_members", 5.0),
        ("directory_connector_groups", 1.0),
        ("directory_connector_guard_refusals_total", 0.0),
    ] {
        assert_eq!(metric(&text, series), Some(want), "{series}:\n{text}");
    }
    let success = metric(&text, "directory_connector_last_success_timestamp_seconds").unwrap();
    assert!(success > 1.7e9, "{text}");
    assert!(metric(&text, "directory_connector_last_run_duration_seconds").is_some());

    // both alerts arrived by email too
    let mails = wait_for_service(&service, "two alert emails", || {
        let m = smtp.messages();
        (m.len() >= 2).then_some(m)
    });
    let failed_mail = mails
        .iter()
        .find(|m| m.contains("Subject: [Directory Connector] sync failed"))
        .unwrap_or_else(|| panic!("{mails:?}"));
    assert!(
        failed_mail.contains("To: admin@example.com"),
        "{failed_mail}"
    );
    assert!(
        failed_mail.contains("From: connector@example.com"),
        "{failed_mail}"
    );
    assert!(failed_mail.contains("Outcome: failed"), "{failed_mail}");
    assert!(
        mails
            .iter()
            .any(|m| m.contains("Subject: [Directory Connector] sync recovered")),
        "{mails:?}"
    );

    // SIGTERM: the service finishes, records, says STOPPING=1 and exits 0
    let (code, stderr) = sigterm_and_wait(service);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("service stopped"), "{stderr}");
    let msgs = notify.messages();
    let pos = |needle: &str| msgs.iter().position(|m| m.contains(needle));
    let ready = pos("READY=1").unwrap_or_else(|| panic!("{msgs:?}"));
    let stopping = pos("STOPPING=1").unwrap_or_else(|| panic!("{msgs:?}"));
    assert!(ready < stopping, "{msgs:?}");
    assert!(pos("WATCHDOG=1").is_some(), "{msgs:?}");
    assert!(
        msgs.iter().any(|m| m.contains("STATUS=last run failed")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(
            |m| m.contains("STATUS=last run synced") || m.contains("STATUS=last run unchanged")
        ),
        "{msgs:?}"
    );

    // the runs and the alerts are in the history
    let runs = env.json(&["history", "--limit", "100"]);
    let outcomes: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.last(), Some(&"failed"), "{outcomes:?}");
    assert!(outcomes.contains(&"synced"), "{outcomes:?}");
    let runs = runs.as_array().unwrap();
    let first = runs.last().unwrap();
    assert_eq!(first["alert"]["event"], "failure", "{first}");
    let synced = runs.iter().find(|r| r["outcome"] == "synced").unwrap();
    assert_eq!(synced["alert"]["event"], "recovery", "{synced}");
    let table = env.ok(&["history", "--limit", "100"]).stdout;
    assert!(
        table.contains("Service alerts") && table.contains("recovery (run"),
        "{table}"
    );
    // after it stopped, a CLI sync runs again
    env.ok(&["sync"]);
}

#[test]
fn a_guard_refusal_keeps_the_service_running_and_alerts_once() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = Env::new();
    env.configure(&slapd, &server);
    env.set("sync.remove_missing_users", "true");
    env.set("sync.max_removals", "2");
    env.ok(&["sync"]);
    for u in ["alice", "bob", "carol"] {
        slapd.delete(&user_dn(u));
    }
    let hooks = Hooks::start();
    let metrics_port = slapd::free_port();
    env.set("service.schedule", "* * * * * *");
    env.set(
        "service.metrics_listen",
        &format!("localhost:{metrics_port}"),
    );
    env.set("notify.webhook_url", &hooks.url);
    let service = start_service(&env, None);
    let refused = wait_for_service(&service, "the refusal webhook", || hooks.find("refused"));
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("max_removals = 2"),
        "{refused}"
    );
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("--allow-mass-removal"),
        "{refused}"
    );
    // the next runs keep refusing, and the service keeps running
    let text = wait_for_service(&service, "a second refusal", || {
        let (_, t) = http_get(metrics_port, "/metrics")?;
        (metric(&t, "directory_connector_guard_refusals_total")? >= 2.0).then_some(t)
    });
    assert!(
        metric(&text, "directory_connector_runs_total{outcome=\"refused\"}").unwrap() >= 2.0,
        "{text}"
    );
    assert_eq!(hooks.events(), ["refused"]);
    let (code, body) = http_get(metrics_port, "/healthz").unwrap();
    assert_eq!(code, 503, "{body}");
    assert_eq!(server.import_count(), 1, "nothing was pushed");
    let (code, stderr) = sigterm_and_wait(service);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(server.org().members.len(), 5);
}

#[test]
fn a_bad_configuration_fails_the_run_not_the_service_and_a_taken_port_is_a_clear_error() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = Env::new();
    env.configure(&slapd, &server);
    env.set("service.schedule", "* * * * * *");
    // a port already in use: the service does not start, and says why
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    env.set("service.metrics_listen", &format!("127.0.0.1:{port}"));
    let r = env.run(&["service"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("service.metrics_listen")
            && r.stderr.contains(&format!("127.0.0.1:{port}")),
        "{}",
        r.stderr
    );
    drop(taken);
    env.ok(&["config", "unset", "service.metrics_listen"]);
    // the alert webhook is down: its failure is logged, the service goes on
    let dead = slapd::free_port();
    env.set(
        "notify.webhook_url",
        &format!("http://127.0.0.1:{dead}/hook"),
    );
    // a schedule that does not parse fails the runs, recorded with the key
    std::fs::write(
        env.path().join("config.toml"),
        std::fs::read_to_string(env.path().join("config.toml"))
            .unwrap()
            .replace("* * * * * *", "every second"),
    )
    .unwrap();
    let r = env.expect(&["config", "validate"], 2);
    assert!(
        r.stderr.contains("service.schedule: `every second`"),
        "{}",
        r.stderr
    );
    // a cron expression that never fires (February 30th) is refused the same way, by `config
    // validate` and by the service's runs (`config set` refuses it: written by hand)
    std::fs::write(
        env.path().join("config.toml"),
        std::fs::read_to_string(env.path().join("config.toml"))
            .unwrap()
            .replace("every second", "0 0 30 2 *"),
    )
    .unwrap();
    let r = env.expect(&["config", "validate"], 2);
    assert!(
        r.stderr
            .contains("service.schedule: `0 0 30 2 *` never fires"),
        "{}",
        r.stderr
    );
    let service = start_service(&env, None);
    let runs = wait_for_service(&service, "a finished run", || {
        let r = env.run(&["--json", "history"]);
        let v: Value = serde_json::from_str(&r.stdout).ok()?;
        v.as_array()?
            .iter()
            .any(|r| r["outcome"] != "running")
            .then_some(v)
    });
    assert_eq!(runs[0]["outcome"], "failed", "{runs}");
    assert!(
        runs[0]["error"]
            .as_str()
            .unwrap()
            .contains("service.schedule: `0 0 30 2 *` never fires"),
        "{runs}"
    );
    let (code, stderr) = sigterm_and_wait(service);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("never fires"), "{stderr}");
    assert!(
        stderr.contains("the alert webhook failed: 127.0.0.1")
            && stderr.contains("the sync itself is not affected"),
        "{stderr}"
    );
}

#[test]
fn idle_connections_to_the_metrics_port_are_capped_and_closed_and_runs_go_on() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = Env::new();
    env.configure(&slapd, &server);
    let metrics_port = slapd::free_port();
    env.set("service.schedule", "* * * * * *");
    env.set(
        "service.metrics_listen",
        &format!("127.0.0.1:{metrics_port}"),
    );
    // the service may open 256 descriptors: more idle clients than that used to take them all
    let mut cmd = env.command(&["service"]);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 256,
                rlim_max: 256,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let service = spawn_service(cmd);
    wait_for_service(&service, "a first synced run", || {
        let (code, _) = http_get(metrics_port, "/healthz")?;
        (code == 200).then_some(())
    });
    let mut idle: Vec<std::net::TcpStream> = (0..300)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", metrics_port)).unwrap())
        .collect();
    for s in &idle {
        s.set_nonblocking(true).unwrap();
    }
    // while they are open, runs are still recorded
    let before = finished_runs(&env).unwrap();
    wait_for_service(
        &service,
        "a run recorded after 300 idle connections",
        || (finished_runs(&env)? > before + 1).then_some(()),
    );
    // those beyond the cap were closed at once, the others after 10 s without a byte
    let start = Instant::now();
    wait_for_service(&service, "every idle connection closed", || {
        idle.retain_mut(|s| {
            let mut buf = [0u8; 64];
            matches!(s.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        });
        idle.is_empty().then_some(())
    });
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    let (code, body) = http_get(metrics_port, "/healthz").expect("healthz");
    assert_eq!(code, 200, "{body}");
    let (code, text) = http_get(metrics_port, "/metrics").expect("metrics");
    assert_eq!(code, 200);
    assert_eq!(
        metric(&text, "directory_connector_runs_total{outcome=\"failed\"}"),
        Some(0.0),
        "{text}"
    );
    let (code, stderr) = sigterm_and_wait(service);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("connections are open"), "{stderr}");
}

#[test]
fn a_config_file_that_stops_parsing_fails_the_run_alerts_and_health_stays_up() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = Env::new();
    env.configure(&slapd, &server);
    let hooks = Hooks::start();
    let metrics_port = slapd::free_port();
    env.set("service.schedule", "* * * * * *");
    env.set(
        "service.metrics_listen",
        &format!("127.0.0.1:{metrics_port}"),
    );
    env.set("notify.webhook_url", &hooks.url);
    let service = start_service(&env, None);
    wait_for_service(&service, "a first synced run", || {
        let (code, _) = http_get(metrics_port, "/healthz")?;
        (code == 200).then_some(())
    });
    // an admin's edit breaks the file: the next run fails and alerts, naming the file and line
    let good = break_config(&env);
    let failure = wait_for_service(&service, "the failure webhook", || hooks.find("failure"));
    let error = failure["error"].as_str().unwrap();
    assert!(
        error.contains("config.toml") && error.contains("line"),
        "{failure}"
    );
    let (code, body) = http_get(metrics_port, "/healthz").expect("healthz");
    assert_eq!(code, 503, "{body}");
    let h: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["last_outcome"], "failed", "{h}");
    assert!(h["error"].as_str().unwrap().contains("config.toml"), "{h}");
    // fixed: the next run recovers
    std::fs::write(env.path().join("config.toml"), good).unwrap();
    wait_for_service(&service, "the recovery webhook", || hooks.find("recovery"));
    assert_eq!(hooks.events(), ["failure", "recovery"]);
    let (code, stderr) = sigterm_and_wait(service);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn started_with_a_broken_config_it_serves_health_and_sighup_reloads_instead_of_killing() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = Env::new();
    env.configure(&slapd, &server);
    let metrics_port = slapd::free_port();
    env.set("service.schedule", "* * * * * *");
    env.set(
        "service.metrics_listen",
        &format!("127.0.0.1:{metrics_port}"),
    );
    let good = break_config(&env);
    let service = start_service(&env, None);
    // it runs, fails the run naming the file, and serves /healthz on the address in the file
    let body = wait_for_service(&service, "/healthz with the broken file", || {
        let (code, body) = http_get(metrics_port, "/healthz")?;
        (code == 503 && body.contains("config.toml")).then_some(body)
    });
    let h: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["last_outcome"], "failed", "{h}");
    assert_eq!(finished_runs(&env), Some(1));
    // fixed, and a SIGHUP: the file is re-read and the next run follows its schedule at once
    // (not the 5 minutes of a service that never read its schedule)
    std::fs::write(env.path().join("config.toml"), good).unwrap();
    signal(&service, libc::SIGHUP);
    wait_for_service(&service, "a synced run after SIGHUP", || {
        let (code, _) = http_get(metrics_port, "/healthz")?;
        (code == 200).then_some(())
    });
    assert!(
        service
            .log()
            .contains("SIGHUP: configuration re-read; next run at"),
        "{}",
        service.log()
    );
    // another SIGHUP while all is well: the service goes on recording runs
    let before = finished_runs(&env).unwrap();
    signal(&service, libc::SIGHUP);
    wait_for_service(&service, "a run after the second SIGHUP", || {
        (finished_runs(&env)? > before).then_some(())
    });
    let (code, stderr) = sigterm_and_wait(service);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("service stopped"), "{stderr}");
}
