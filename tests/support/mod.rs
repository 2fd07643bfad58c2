//! Test support: a fake Bitwarden server with real organization semantics (and, on request,
//! the Bitwarden cloud's rate limits: `FAKE_BITWARDEN_CLOUD_LIMITS=<time scale>` turns them on
//! for every fake and gives the client a matching budget and clock), a slapd launcher, and
//! helpers to run the real binary.
//!
//! The limits are counted as the cloud counts them, per client IP, method and whole path
//! (`GET /public/groups/{id}/member-ids` has a counter per group). `FAKE_BITWARDEN_LIMITS_MODE`
//! (only with `FAKE_BITWARDEN_CLOUD_LIMITS`) picks another setup of [`cloud_limits`]: `cloud`
//! (the default: the cloud's rules per path), `appsettings` (the stored `appsettings.json`
//! rules, 5 a second and 60 a minute per path for every method) or `shared` (the stress mode:
//! one counter per IP and service for every request, 5 a second and 60 a minute in all).

#![allow(dead_code)]

pub mod bad_ldap;
pub mod cloud_limits;
pub mod fake_bitwarden;
pub mod fake_cloud;
pub mod samba;
pub mod secret_service;
pub mod slapd;
pub mod xvfb;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const ORG_ID: &str = "3f0c0f4e-7d2a-4a57-9d1c-1a2b3c4d5e6f";
pub const CLIENT_SECRET: &str = "Xq9v2LmSecretValue";

pub fn client_id() -> String {
    format!("organization.{ORG_ID}")
}

/// The binary under test (`DIRECTORY_CONNECTOR_BIN` names another build, for the benchmark's
/// before-and-after runs).
pub fn bin() -> PathBuf {
    std::env::var_os("DIRECTORY_CONNECTOR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_directory-connector")))
}

/// Whether this is a CI run: `CI=true` (or `1`), as CI services set it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// The name of the running test (libtest names each test's thread after it).
fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string()
}

/// For a test that cannot start what it needs (`what` names it and why: "systemd-analyze is not
/// installed"). A test never passes by returning early unseen: under CI (`CI=true`) this fails
/// the test, naming `what`; elsewhere it says on stderr that the test is skipped and why, and
/// returns, so the caller returns next.
#[track_caller]
pub fn unavailable(what: &str) {
    assert!(
        !in_ci(),
        "{what}: a test never skips under CI (CI=true); scripts/test.sh installs what the tests need"
    );
    say(&format!(
        "SKIPPED {}: {what} (outside CI only; with CI=true this fails; scripts/test.sh installs \
         what the tests need)",
        test_name()
    ));
}

/// The one deliberate opt-out: `var` (`DIRECTORY_CONNECTOR_SKIP_WINDOWS_TESTS`) set to `1` or
/// `true` by the admin of a machine that cannot run `what`. Says on stderr that the test is
/// skipped, and why; the caller returns when this is true.
pub fn opted_out(var: &str, what: &str) -> bool {
    let skip = std::env::var(var).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        say(&format!("SKIPPED {}: {var} is set: {what}", test_name()));
    }
    skip
}

/// A line on the test process's stderr that the test harness does not capture (`eprintln!` of a
/// passing test is swallowed), so a skip shows in every run's output.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// A data directory plus the environment the binary runs with.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub vars: Vec<(String, String)>,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl Env {
    /// A fresh data directory; the API key comes from BW_CLIENTID / BW_CLIENTSECRET and
    /// secrets are kept in the plaintext opt-in file (no keyring in tests).
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
            vars: vec![
                ("BW_CLIENTID".into(), client_id()),
                ("BW_CLIENTSECRET".into(), CLIENT_SECRET.into()),
                (
                    "DIRECTORY_CONNECTOR_PLAINTEXT_SECRETS".into(),
                    "true".into(),
                ),
                ("DIRECTORY_CONNECTOR_RETRY_BASE_MS".into(), "20".into()),
                ("NO_COLOR".into(), "1".into()),
            ]
            .into_iter()
            // the client's clock runs as fast as the fake's rate limits
            .chain(
                cloud_limits::scale_from_env()
                    .map(|s| ("DIRECTORY_CONNECTOR_TIME_SCALE".to_string(), s.to_string())),
            )
            .collect(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn set_var(&mut self, k: &str, v: &str) {
        self.vars.retain(|(a, _)| a != k);
        self.vars.push((k.into(), v.into()));
    }

    pub fn remove_var(&mut self, k: &str) {
        self.vars.retain(|(a, _)| a != k);
    }

    /// The binary with this environment's data directory and variables.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.arg("--data-dir").arg(self.path()).args(args);
        cmd.env_remove("BW_CLIENTID")
            .env_remove("BW_CLIENTSECRET")
            .env_remove("RUST_LOG");
        cmd.env_remove("DIRECTORY_CONNECTOR_DATA_DIR");
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn run_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn binary");
        {
            use std::io::Write;
            let mut si = child.stdin.take().expect("stdin");
            let _ = si.write_all(stdin.as_bytes());
        }
        let out: Output = child.wait_with_output().expect("wait");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_stdin(args, "")
    }

    /// Runs and asserts the exit code, printing everything on mismatch.
    pub fn ok(&self, args: &[&str]) -> Run {
        self.expect(args, 0)
    }

    pub fn expect(&self, args: &[&str], code: i32) -> Run {
        let r = self.run(args);
        assert_eq!(
            r.code,
            code,
            "`{}` exited {}:\n{}",
            args.join(" "),
            r.code,
            r.all()
        );
        r
    }

    pub fn set(&self, key: &str, value: &str) {
        self.ok(&["config", "set", key, value]);
    }

    /// Points the config at a slapd and a fake server.
    pub fn configure(&self, slapd: &slapd::Slapd, server: &fake_bitwarden::FakeBitwarden) {
        self.set("server.url", &server.url);
        self.set("directory.type", "ldap");
        self.set("ldap.hostname", "127.0.0.1");
        self.set("ldap.port", &slapd.port.to_string());
        self.set("ldap.root_path", slapd::BASE);
        self.set("ldap.username", slapd::READER_DN);
        let r = self.run_stdin(&["config", "set", "ldap.password"], slapd::READER_PW);
        assert_eq!(r.code, 0, "{}", r.all());
        self.set("sync.user_path", "ou=People");
        self.set("sync.group_path", "ou=Groups");
        // the suite checks the removal path (`0`: remove at once, as before the lifecycle);
        // tests/e2e/lifecycle.rs sets the revoke-first default back
        self.set("sync.remove_revoked_after_days", "0");
        if cloud_limits::scale_from_env().is_some() {
            // the client counts as the fake does: per path (the cloud), or everything together
            // (an edge in front of the server)
            let shared = std::env::var("FAKE_BITWARDEN_LIMITS_MODE").as_deref() == Ok("shared");
            self.set(
                "server.rate_limits",
                if shared { "shared" } else { "cloud" },
            );
        }
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let r = self.ok(&a);
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
    }

    /// Runs like [`Env::run`], killing the process when it has not ended within `limit`
    /// (`None`: it hung).
    pub fn run_bounded(&self, args: &[&str], limit: std::time::Duration) -> Option<Run> {
        let mut child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn binary");
        // read on threads of their own: a full pipe would stop the process
        let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut text = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut text);
                }
                String::from_utf8_lossy(&text).into_owned()
            })
        };
        let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
        let deadline = std::time::Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        Some(Run {
            code: status.code().unwrap_or(-1),
            stdout: stdout.join().expect("stdout"),
            stderr: stderr.join().expect("stderr"),
        })
    }

    pub fn cache_counts(&self) -> (usize, usize) {
        directory_connector::store::Store::open(self.path())
            .and_then(|s| s.cache_counts())
            .expect("cache counts")
    }
}

/// The number of members `test --json` lists for the group `name` (panics, naming it, when the
/// report has no such group).
pub fn test_group_size(j: &serde_json::Value, name: &str) -> usize {
    j["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == name)
        .unwrap_or_else(|| panic!("{name} missing: {j}"))["userIds"]
        .as_array()
        .unwrap()
        .len()
}
