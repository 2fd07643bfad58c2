//! End-to-end hardening of the CLI: a closed stdout, a panic, SIGINT/SIGTERM mid-sync, counts of
//! a run that stopped half way, a damaged database, file modes, and `--json` on every path. The
//! real binary against a real slapd and the fake Bitwarden server (127.0.0.1 only).

use crate::support;

use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::fake_bitwarden::FakeBitwarden;
use support::slapd::{Slapd, group, person, user_dn};
use support::{Env, Run};

fn email(i: usize) -> String {
    format!("user{i:05}@example.com")
}

/// `n` users; one group with every seventh.
fn directory(n: usize) -> String {
    let mut l = String::new();
    for i in 0..n {
        l.push_str(&person(&format!("user{i:05}"), Some(&email(i)), false));
    }
    let some: Vec<String> = (0..n)
        .step_by(7)
        .map(|i| user_dn(&format!("user{i:05}")))
        .collect();
    l.push_str(&group("Every Seventh", &some));
    l
}

fn setup(users: usize) -> (Slapd, FakeBitwarden, Env) {
    let slapd = Slapd::start(&directory(users));
    let server = FakeBitwarden::start();
    let mut env = Env::new();
    env.set_var("DIRECTORY_CONNECTOR_RETRIES", "1");
    env.configure(&slapd, &server);
    (slapd, server, env)
}

/// Runs the binary with a stdout whose reader is already gone (writes fail with EPIPE).
fn run_closed_stdout(env: &Env, args: &[&str]) -> Run {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = env
        .command(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn newest_run(env: &Env) -> Value {
    let runs = env.json(&["history", "--limit", "5"]);
    runs[0].clone()
}

/// What the binary said on stderr, without log lines (`<time>  WARN …`).
fn said(r: &Run) -> Vec<&str> {
    r.stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !(l.starts_with("20") && (l.contains(" WARN ") || l.contains(" INFO "))))
        .collect()
}

fn no_panic_text(r: &Run) {
    assert!(
        !r.stderr.contains("panicked") && !r.stderr.contains("RUST_BACKTRACE"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_closed_stdout_ends_quietly_and_json_never_claims_success() {
    let env = Env::new();
    let r = run_closed_stdout(&env, &["config", "keys"]);
    no_panic_text(&r);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(said(&r).is_empty(), "quiet: {}", r.stderr);

    let r = run_closed_stdout(&env, &["--json", "config", "keys"]);
    no_panic_text(&r);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("could not be written"), "{}", r.stderr);
}

#[test]
fn a_sync_whose_reader_went_away_is_recorded_and_exits_by_its_outcome() {
    let (_slapd, server, env) = setup(10);
    let r = run_closed_stdout(&env, &["sync"]);
    no_panic_text(&r);
    assert_eq!(r.code, 0, "a good run is a good run: {}", r.stderr);
    assert_eq!(server.org().active_emails().len(), 10);
    assert_eq!(newest_run(&env)["outcome"], "synced");

    // a script reading JSON got nothing: not a success, but the run is what it was
    let r = run_closed_stdout(&env, &["--json", "sync"]);
    no_panic_text(&r);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let run = newest_run(&env);
    assert_eq!(run["outcome"], "unchanged", "{run}");
}

#[test]
fn a_panic_mid_sync_is_one_line_an_exit_code_and_a_failed_run_with_its_counts() {
    let (_slapd, server, mut env) = setup(10);
    env.set_var("DIRECTORY_CONNECTOR_TEST_PANIC", "after-batch");
    let r = env.expect(&["sync"], 1);
    no_panic_text(&r);
    let lines = said(&r);
    assert_eq!(lines.len(), 1, "one line: {}", r.stderr);
    assert!(
        lines[0].starts_with("error: internal error") && lines[0].contains("after-batch"),
        "{}",
        r.stderr
    );
    assert_eq!(server.import_count(), 1);
    env.remove_var("DIRECTORY_CONNECTOR_TEST_PANIC");
    let run = newest_run(&env);
    assert_eq!(run["outcome"], "failed", "{run}");
    assert_eq!(run["invited"], 10, "what the server confirmed: {run}");
    assert!(
        run["error"].as_str().unwrap().contains("internal error"),
        "{run}"
    );

    // with --json: the JSON failure, wherever the panic happens
    env.set_var("DIRECTORY_CONNECTOR_TEST_PANIC", "sync-start");
    let r = env.expect(&["--json", "sync"], 1);
    no_panic_text(&r);
    let v: Value = serde_json::from_str(r.stdout.trim()).expect(&r.stdout);
    assert_eq!(v["success"], false);
    assert_eq!(v["exit_code"], 1);
    assert!(v["message"].as_str().unwrap().contains("sync-start"), "{v}");
    env.set_var("DIRECTORY_CONNECTOR_TEST_PANIC", "output");
    let r = env.expect(&["--json", "history"], 1);
    let v: Value =
        serde_json::from_str(r.stdout.lines().last().unwrap_or_default()).expect(&r.stdout);
    assert_eq!(v["success"], false, "{}", r.stdout);
    env.remove_var("DIRECTORY_CONNECTOR_TEST_PANIC");
    assert_eq!(newest_run(&env)["outcome"], "failed");
    // nothing is lost: the next sync finds the organization complete
    let r = env.ok(&["sync"]);
    assert!(r.stdout.contains("unchanged"), "{}", r.stdout);
}

/// Starts `sync` with a slow import endpoint and sends `signal` while the first import is in
/// flight.
fn interrupt_mid_import(env: &Env, server: &FakeBitwarden, signal: i32) -> Run {
    server.org().import_delay = Some(Duration::from_millis(1500));
    let child = env
        .command(&["sync"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(120);
    while server.org().imports_started == 0 {
        assert!(Instant::now() < deadline, "no import arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on the child's pid with a plain signal number.
    let sent = unsafe { libc::kill(child.id() as i32, signal) };
    assert_eq!(sent, 0);
    let out = child.wait_with_output().expect("wait");
    server.org().import_delay = None;
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn sigint_mid_sync_stops_after_the_request_in_flight_and_records_interrupted() {
    let (_slapd, server, env) = setup(2500);
    let r = interrupt_mid_import(&env, &server, libc::SIGINT);
    assert_eq!(r.code, 130, "{}", r.all());
    let lines = said(&r);
    assert_eq!(lines.len(), 1, "one line: {}", r.stderr);
    assert!(
        lines[0].starts_with("interrupted by SIGINT")
            && lines[0].contains("requests 1-1 were applied"),
        "{}",
        r.stderr
    );
    // the request in flight was answered and recorded; the next one was never started
    assert_eq!(server.org().imports_started, 1);
    assert_eq!(server.org().active_emails().len(), 2000);
    assert_eq!(env.cache_counts().0, 2000);
    let run = newest_run(&env);
    assert_eq!(run["outcome"], "interrupted", "{run}");
    assert_eq!(run["invited"], 2000, "{run}");
    assert_eq!(run["requests"], 1, "{run}");
    let table = env.ok(&["history"]);
    assert!(table.stdout.contains("interrupted"), "{}", table.stdout);
    // the next sync sends the rest
    env.ok(&["sync"]);
    assert_eq!(server.org().active_emails().len(), 2500);
}

#[test]
fn sigterm_exits_143_and_a_run_left_running_by_a_dead_process_is_closed() {
    let (_slapd, server, env) = setup(10);
    // a process that died mid-sync left its row `running`
    let stale = directory_connector::store::Store::open(env.path())
        .and_then(|s| s.start_run("sync"))
        .expect("run row");
    let r = interrupt_mid_import(&env, &server, libc::SIGTERM);
    assert_eq!(r.code, 143, "{}", r.all());
    assert!(r.stderr.contains("interrupted by SIGTERM"), "{}", r.stderr);
    let runs = env.json(&["history"]);
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["outcome"], "interrupted", "{}", runs[0]);
    // the single request was in flight: it completed and counts
    assert_eq!(runs[0]["invited"], 10, "{}", runs[0]);
    assert_eq!(runs[1]["id"], stale);
    assert_eq!(runs[1]["outcome"], "interrupted", "{}", runs[1]);
    assert!(
        runs[1]["error"]
            .as_str()
            .unwrap()
            .contains("process ended before the run finished"),
        "{}",
        runs[1]
    );
    assert!(runs.iter().all(|r| r["outcome"] != "running"));
}

#[test]
fn a_sync_that_fails_after_member_batches_records_what_they_applied() {
    let (_slapd, server, env) = setup(2500);
    server.org().cut_after_imports = Some(1);
    let r = env.expect(&["sync"], 1);
    assert!(
        r.stderr.contains("requests 1-1 were applied"),
        "{}",
        r.stderr
    );
    let run = newest_run(&env);
    assert_eq!(run["outcome"], "failed", "{run}");
    assert_eq!(run["invited"], 2000, "{run}");
    assert_eq!(run["requests"], 1, "{run}");
    let table = env.ok(&["history"]);
    assert!(table.stdout.contains("2000"), "{}", table.stdout);
}

#[test]
fn a_damaged_database_names_the_file_and_clear_cache_starts_a_new_one() {
    let env = Env::new();
    env.ok(&["history"]);
    let db = env.path().join("directory-connector.sqlite3");
    for side in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(
            env.path()
                .join(format!("directory-connector.sqlite3{side}")),
        );
    }
    std::fs::write(
        &db,
        "this is not an SQLite database, it was overwritten ".repeat(100),
    )
    .expect("write");
    let r = env.expect(&["history"], 1);
    no_panic_text(&r);
    assert!(
        r.stderr.contains(&db.display().to_string()) && r.stderr.contains("clear-cache"),
        "{}",
        r.stderr
    );
    let r = env.expect(&["--json", "history"], 1);
    let v: Value = serde_json::from_str(r.stdout.trim()).expect(&r.stdout);
    assert!(
        v["message"].as_str().unwrap().contains("clear-cache"),
        "{v}"
    );

    let r = env.ok(&["clear-cache"]);
    assert!(r.stdout.contains("moved to"), "{}", r.stdout);
    let moved: Vec<_> = std::fs::read_dir(env.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("directory-connector.sqlite3.broken-"))
        .collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    let kept = std::fs::read_to_string(env.path().join(&moved[0])).unwrap();
    assert!(kept.starts_with("this is not an SQLite database"));
    let r = env.ok(&["history"]);
    assert!(r.stdout.contains("No runs yet"), "{}", r.stdout);
    // a healthy database is only cleared
    let r = env.ok(&["clear-cache"]);
    assert!(r.stdout.contains("has been cleared"), "{}", r.stdout);
}

#[test]
fn the_database_and_the_lock_file_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let mut cmd = env.command(&["clear-cache"]);
    // SAFETY: umask(2) is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{out:?}");
    for name in [
        "directory-connector.sqlite3",
        "directory-connector.sqlite3-wal",
        "sync.lock",
    ] {
        let p = env.path().join(name);
        if name.ends_with("-wal") && !p.exists() {
            continue;
        }
        let mode = std::fs::metadata(&p).expect(name).permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}: {mode:o}");
    }
}

#[test]
fn usage_errors_data_file_and_a_data_dir_that_cannot_be_made_answer_json() {
    let env = Env::new();
    let r = env.expect(&["--json", "no-such-command"], 2);
    let v: Value = serde_json::from_str(r.stdout.trim()).expect(&r.stdout);
    assert_eq!(v["success"], false);
    assert_eq!(v["exit_code"], 2);
    assert!(
        v["message"].as_str().unwrap().contains("no-such-command"),
        "{v}"
    );
    // without --json: clap's text on stderr, exit 2
    let r = env.expect(&["no-such-command"], 2);
    assert!(r.stderr.contains("no-such-command"), "{}", r.stderr);
    // help and version stay as they are
    let r = env.ok(&["--json", "--help"]);
    assert!(r.stdout.contains("Usage"), "{}", r.stdout);
    let r = env.ok(&["--json", "--version"]);
    assert!(r.stdout.contains("directory-connector"), "{}", r.stdout);

    let v = env.json(&["data-file"]);
    assert_eq!(v["success"], true);
    assert!(v["path"].as_str().unwrap().ends_with("config.toml"), "{v}");

    let file = env.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let bad = file.join("data");
    let out = std::process::Command::new(support::bin())
        .args(["--json", "--data-dir", bad.to_str().unwrap(), "history"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(stdout.trim()).expect(&stdout);
    assert_eq!(v["exit_code"], 2);
    assert!(
        v["message"].as_str().unwrap().contains("data directory"),
        "{v}"
    );
}

#[test]
fn a_negative_number_for_config_set_reaches_the_validator() {
    let env = Env::new();
    let r = env.expect(&["config", "set", "sync.max_removals", "-1"], 2);
    assert!(!r.stderr.contains("unexpected argument"), "{}", r.stderr);
    assert!(r.stderr.contains("sync.max_removals"), "{}", r.stderr);
    let r = env.expect(&["--json", "config", "set", "sync.max_removals", "-1"], 2);
    let v: Value = serde_json::from_str(r.stdout.trim()).expect(&r.stdout);
    assert!(
        v["message"].as_str().unwrap().contains("sync.max_removals"),
        "{v}"
    );
    // the setting is unchanged
    let v = env.json(&["config", "get", "sync.max_removals"]);
    assert_eq!(v["value"], "100", "{v}");
}

/// `test` and `drift` stop on SIGINT as a sync does (issue 28 item 3, the CLI's side): against
/// a server that accepts the connection and never answers, the run ends within 2 seconds of the
/// signal with exit 130, saying nothing was written, instead of waiting out 5 attempts of 60 s.
#[test]
fn sigint_stops_test_and_drift_against_a_server_that_never_answers() {
    let (_slapd, _server, env) = setup(10);
    // a server that takes the connection and never answers
    let hung = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", hung.local_addr().expect("addr"));
    let held = std::thread::spawn(move || {
        let mut kept = Vec::new();
        for c in hung.incoming().take(8).flatten() {
            kept.push(c);
        }
        std::thread::sleep(Duration::from_secs(60));
    });
    env.set("server.url", &url);
    for cmd in ["test", "drift"] {
        let child = env
            .command(&[cmd])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(1500));
        let signalled = Instant::now();
        // SAFETY: kill(2) on the child's pid with a plain signal number.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
        let out = child.wait_with_output().expect("wait");
        let took = signalled.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "{cmd}: {stderr}");
        assert!(took < Duration::from_secs(2), "{cmd}: took {took:?}");
        assert!(
            stderr.contains("interrupted by SIGINT") && stderr.contains("nothing was written"),
            "{cmd}: {stderr}"
        );
    }
    drop(held);
}
