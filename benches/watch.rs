//! Fast-lane benchmark: what watching the directory's change feed costs while nothing changes,
//! against the full read it saves, at N users (`BENCH_USERS`, default 5000; the README's
//! numbers are at 100,000). Loads N users and N/100 groups into a real slapd with the
//! `syncprov` overlay, syncs once, then:
//!
//! 1. times an unchanged full sync (`sync`): the connector's CPU, slapd's CPU, the requests to
//!    the fake Bitwarden server;
//! 2. runs `directory-connector service` with `sync.watch_seconds = 1` (the schedule an hour
//!    away) for `BENCH_WATCH_SECONDS` (default 60) with nothing changing, and reads the
//!    service's and slapd's CPU time from `/proc` before and after, the looks from `/metrics`
//!    and the requests from the fake: per look, and per hour at the default
//!    `sync.watch_seconds = 60`;
//! 3. disables one user and reports the time from the change to the revoke the server
//!    confirmed, and that sync's requests.
//!
//! Run: `BENCH_USERS=100000 cargo bench --bench watch`. CPU times are the kernel's (clock
//! ticks of `/proc/<pid>/stat`), so short windows are coarse: the per-look figures are totals
//! divided by the looks.

#![allow(
    unused_crate_dependencies,
    reason = "a bench crate sees every dependency of the package and uses a few of them"
)]
#![allow(
    unreachable_pub,
    reason = "a bench crate exports nothing; `pub` in tests/support says what a test may use"
)]
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "bench set-up code: a failed step panics (clippy.toml exempts only the #[test] functions, not their helpers)"
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::Env;
use support::fake_bitwarden::{FakeBitwarden, REVOKED};
use support::slapd::{self, Slapd, group, person, user_dn};

fn uid(i: usize) -> String {
    format!("u{i:07}")
}

/// A process's CPU time so far (user + system), in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // the fields after the command name (in parentheses, which may hold spaces)
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name and state
    // SAFETY: sysconf with a valid name has no preconditions
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz.max(1.0)
}

/// A plain HTTP GET of `/metrics`.
fn metrics(port: u16) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    );
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Waits (bounded) until `f` is true.
fn wait(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills the service when the bench ends, however it ends.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[allow(
    clippy::too_many_lines,
    reason = "the benchmark's set-up and its three measurements in order, as the module doc lists them"
)]
fn main() {
    let n: usize = std::env::var("BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let window: u64 = std::env::var("BENCH_WATCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let groups = (n / 100).max(1);
    eprintln!("generating {n} users and {groups} groups");
    let mut ldif = String::with_capacity(n * 260);
    for i in 0..n {
        ldif.push_str(&person(
            &uid(i),
            Some(&format!("{}@example.com", uid(i))),
            false,
        ));
    }
    for g in 0..groups {
        let dns: Vec<String> = (g * 100..((g + 1) * 100).min(n))
            .map(|i| user_dn(&uid(i)))
            .collect();
        ldif.push_str(&group(&format!("group{g:05}"), &dns));
    }
    let t = Instant::now();
    let slapd = Slapd::start_with_feed(&ldif);
    eprintln!(
        "slapd (syncprov) loaded in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    drop(ldif);
    let slapd_pid =
        slapd::read_pid(&slapd.dir.path().join("slapd.pid")).expect("slapd's pid") as u32;
    let server = FakeBitwarden::start();
    server.org().discard_bodies = true;
    let env = Env::new();
    env.configure(&slapd, &server);
    env.set("sync.remove_missing_users", "true");
    env.set("sync.remove_disabled", "true");
    env.set("sync.remove_revoked_after_days", "30");
    env.set("sync.max_removals", "0");
    env.set("sync.max_removal_percent", "0");
    env.set("sync.interval_minutes", "60");
    env.set("sync.watch_seconds", "1");
    let port = slapd::free_port();
    env.set("service.metrics_listen", &format!("127.0.0.1:{port}"));
    let requests = || {
        let org = server.org();
        org.token_requests + org.reads.len() + org.imports.len() + org.member_calls.len()
    };
    eprintln!("first sync");
    env.ok(&["sync"]);

    // 1. the full read the lane stands in for: an unchanged sync
    let slapd_before = cpu_seconds(slapd_pid);
    let requests_before = requests();
    let t = Instant::now();
    let child = env.command(&["sync"]).spawn().expect("sync");
    let pid = child.id();
    let peak = std::thread::spawn(move || {
        let mut child = child;
        let mut cpu = 0.0;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            cpu = f64::max(cpu, cpu_seconds(pid));
            std::thread::sleep(Duration::from_millis(5));
        }
        cpu
    });
    let sync_cpu = peak.join().unwrap();
    let sync_wall = t.elapsed().as_secs_f64();
    let sync_slapd = cpu_seconds(slapd_pid) - slapd_before;
    let sync_requests = requests() - requests_before;

    // 2. the lane, idle
    let mut cmd = env.command(&["service"]);
    let service = Service(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("service"),
    );
    let spid = service.0.id();
    wait("the service's first look", Duration::from_secs(600), || {
        metric(
            &metrics(port),
            "directory_connector_fast_lane_state{state=\"watching\"}",
        ) == 1.0
    });
    let looks_before = metric(&metrics(port), "directory_connector_fast_lane_looks_total");
    let cpu_before = cpu_seconds(spid);
    let slapd_before = cpu_seconds(slapd_pid);
    let requests_before = requests();
    std::thread::sleep(Duration::from_secs(window));
    let looks = metric(&metrics(port), "directory_connector_fast_lane_looks_total") - looks_before;
    let idle_cpu = cpu_seconds(spid) - cpu_before;
    let idle_slapd = cpu_seconds(slapd_pid) - slapd_before;
    let idle_requests = requests() - requests_before;
    let looks = looks.max(1.0);
    let per_look_ms = idle_cpu * 1000.0 / looks;
    let slapd_per_look_ms = idle_slapd * 1000.0 / looks;
    // at the default of one look a minute, and the same process otherwise idle
    let per_hour_s = per_look_ms * 60.0 / 1000.0;
    let watch_wall = window as f64;

    // 3. a change: one user disabled, revoked by the lane
    let who = uid(n / 2);
    let t = Instant::now();
    let requests_before = requests();
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 514\n\n",
        user_dn(&who)
    ));
    let email = format!("{who}@example.com");
    wait("the revoke", Duration::from_secs(600), || {
        server
            .org()
            .members
            .get(&email)
            .is_some_and(|m| m.status == REVOKED)
    });
    let latency = t.elapsed().as_secs_f64();
    let change_requests = requests() - requests_before;
    drop(service);

    println!("users={n} groups={groups}");
    println!(
        "unchanged full sync: wall {sync_wall:.2} s, connector CPU {sync_cpu:.2} s, slapd CPU \
         {sync_slapd:.2} s, {sync_requests} requests to Bitwarden"
    );
    println!(
        "fast lane idle for {watch_wall:.0} s at 1 look/s: {looks:.0} looks, service CPU \
         {idle_cpu:.2} s ({per_look_ms:.1} ms a look), slapd CPU {idle_slapd:.2} s \
         ({slapd_per_look_ms:.1} ms a look), {idle_requests} requests to Bitwarden"
    );
    println!(
        "at sync.watch_seconds = 60: service CPU {per_hour_s:.2} s an hour ({:.3}% of a \
         core), slapd CPU {:.2} s an hour, 0 requests an hour while nothing changes (measured: \
         {idle_requests}); one full read instead costs slapd {sync_slapd:.2} s and Bitwarden \
         {sync_requests} requests",
        per_hour_s / 3600.0 * 100.0,
        slapd_per_look_ms * 60.0 / 1000.0,
    );
    println!(
        "a change (one user disabled) → revoked by the server in {latency:.2} s at \
         sync.watch_seconds = 1 ({change_requests} requests to Bitwarden)"
    );
}
