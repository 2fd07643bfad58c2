//! Sync benchmark: loads N users and N/100 groups into a real slapd, then times the release
//! binary against the in-process fake Bitwarden server: `test`, a first full sync, an unchanged
//! sync and a churn sync (1% new users added to one group, 1% deleted with
//! `remove_missing_users`). Also times `ldapsearch` reading the same users with paging (the
//! floor). Each run is repeated `BENCH_REPEAT` times (default 3; the first full sync each time
//! after `clear-cache` against an emptied organization, the churn each time with other users)
//! and the run with the median wall time is reported; slapd's cache is warmed first. Run: `BENCH_USERS=5000 cargo bench
//! --bench sync`. With `BENCH_HOLD=1` it prints the command line for the loaded setup and waits;
//! each Enter empties the fake organization (for profiling a first sync by hand), end of input
//! quits. With `BENCH_VERBOSE=1` every run gets `-v` (its stage times go to stderr); with
//! `BENCH_PERF=DIR` every run is recorded by `perf record` into `DIR`. Every run also reports
//! the requests it sent to the server. With `BENCH_CLOUD=1`, a first, an unchanged and a churn
//! sync run once more against a fake that enforces the Bitwarden cloud's limits in real time (5
//! a second, 60 a minute, 429 and the block), with the client's cloud budget (4 and 50): the
//! least wall time those requests take at the cloud's limits, and the refusals (none expected).

// Lints of Cargo.toml's [lints] table that do not fit a bench crate (see clippy.toml):
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

/// The fake server runs in this process: mimalloc, like the connector, so that its allocations
/// weigh less in the measured push.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::Command;
use std::time::Instant;

use support::Env;
use support::cloud_limits::CloudLimits;
use support::fake_bitwarden::{FakeBitwarden, ServerKind};
use support::slapd::{self, Slapd, group, group_dn, person, user_dn};

/// The child's peak RSS (KiB), polled from `/proc/<pid>/status` while it runs. `VmHWM` is the
/// peak of the process's own address space; `ru_maxrss` from wait4 is not usable here, as Linux
/// starts it at the parent's peak when the child is spawned from this (large) process.
fn watch_peak(pid: u32) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0u64;
        // a zombie (exited, not yet reaped) has no memory lines: that ends the loop
        while let Some(kb) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
        {
            peak = peak.max(kb);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        peak
    })
}

/// Runs the binary and returns (wall s, cpu s, peak RSS KiB) of that process alone.
#[allow(clippy::zombie_processes)] // reaped by wait4 below
fn measured(env: &Env, args: &[&str]) -> (f64, f64, u64) {
    let mut args = args.to_vec();
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        args.push("-v"); // stage times on stderr, for finding where the time goes
    }
    let mut cmd = env.command(&args);
    if let Some(dir) = std::env::var_os("BENCH_PERF") {
        cmd = perf_wrapped(&cmd, std::path::Path::new(&dir), args[0]);
    }
    let t = Instant::now();
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("spawn");
    let peak = watch_peak(child.id());
    let mut status = 0;
    // SAFETY: wait4 writes only into the status and rusage we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut ru) };
    assert!(
        pid > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{args:?} failed"
    );
    let wall = t.elapsed().as_secs_f64();
    let cpu = ru.ru_utime.tv_sec as f64
        + ru.ru_utime.tv_usec as f64 / 1e6
        + ru.ru_stime.tv_sec as f64
        + ru.ru_stime.tv_usec as f64 / 1e6;
    (wall, cpu, peak.join().unwrap_or(0))
}

/// `cmd` run under `perf record --call-graph dwarf` (for `BENCH_PERF=DIR`): each run writes
/// `DIR/<n>-<what>.data` (`what`: the subcommand), numbered in the order the runs happen. The figures of such a
/// run include perf's overhead; its profile is what it is for.
fn perf_wrapped(cmd: &Command, dir: &std::path::Path, what: &str) -> Command {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut perf = Command::new("perf");
    perf.args([
        "record",
        "-q",
        "-F",
        "499",
        "--call-graph",
        "dwarf,16384",
        "-o",
    ])
    .arg(dir.join(format!("{n:02}-{what}.data")))
    .arg("--")
    .arg(cmd.get_program())
    .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => perf.env(k, v),
            None => perf.env_remove(k),
        };
    }
    perf
}

fn uid(i: usize) -> String {
    format!("u{i:07}")
}

#[allow(
    clippy::too_many_lines,
    reason = "the benchmark's set-up and its timed runs in order, as the module doc lists them"
)]
fn main() {
    let n: usize = std::env::var("BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
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
    // each user in about three groups; groups nest three levels (g -> g+1 -> g+2)
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); groups];
    for i in 0..n {
        for g in [i % groups, (i / 3) % groups, (i / 7) % groups] {
            members[g].push(i);
        }
    }
    for (g, m) in members.iter_mut().enumerate() {
        m.sort_unstable();
        m.dedup();
        let mut dns: Vec<String> = m.iter().map(|&i| user_dn(&uid(i))).collect();
        if g % 3 != 2 && g + 1 < groups {
            dns.push(group_dn(&format!("group{:05}", g + 1)));
        }
        ldif.push_str(&group(&format!("group{g:05}"), &dns));
    }
    drop(members);
    let t = Instant::now();
    let slapd = Slapd::start(&ldif);
    eprintln!("slapd loaded in {:.1}s", t.elapsed().as_secs_f64());
    drop(ldif);
    let server = FakeBitwarden::start();
    server.org().discard_bodies = true;
    let env = Env::new();
    env.configure(&slapd, &server);
    env.set("sync.remove_missing_users", "true");
    env.set("sync.max_removals", "0");
    env.set("sync.max_removal_percent", "0");

    if std::env::var_os("BENCH_HOLD").is_some() {
        // for profiling by hand: print how to run the binary against this setup and wait
        let vars: Vec<String> = env.vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "env {} {} --data-dir {} test",
            vars.join(" "),
            support::bin().display(),
            env.path().display()
        );
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
            server.org().reset();
            println!("organization emptied");
            line.clear();
        }
        return;
    }

    // the floor: ldapsearch reading the same entries with paging
    let ldapsearch = |base: &str, filter: &str, attrs: &[&str]| -> f64 {
        let t = Instant::now();
        let out = Command::new("ldapsearch")
            .args([
                "-x",
                "-LLL",
                "-H",
                &format!("ldap://127.0.0.1:{}", slapd.port),
            ])
            .args([
                "-D",
                slapd::READER_DN,
                "-w",
                slapd::READER_PW,
                "-E",
                "pr=500/noprompt",
            ])
            .args(["-b", &format!("{base},{}", slapd::BASE), filter])
            .args(attrs)
            .output()
            .expect("ldapsearch");
        assert!(out.status.success(), "ldapsearch failed");
        t.elapsed().as_secs_f64()
    };
    let repeat: usize = std::env::var("BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let floor_once = || {
        ldapsearch(
            "ou=People",
            "(objectClass=inetOrgPerson)",
            &["mail", "uid", "objectGUID", "userAccountControl"],
        ) + ldapsearch(
            "ou=Groups",
            "(objectClass=groupOfNames)",
            &["cn", "member", "objectGUID"],
        )
    };
    floor_once(); // warms slapd's cache, as every later run finds it
    let mut floors: Vec<f64> = (0..repeat).map(|_| floor_once()).collect();
    floors.sort_by(f64::total_cmp);
    let floor = floors[floors.len() / 2];
    println!("users={n} groups={groups}");
    println!(
        "{:<28} {:>9} {:>9} {:>12} {:>14} {:>9} {:>9}",
        "run", "wall s", "cpu s", "peak RSS MB", "bytes pushed", "server s", "requests"
    );
    println!(
        "{:<28} {:>9.2} {:>9} {:>12} {:>14} {:>9} {:>9}",
        "ldapsearch floor (paged)", floor, "-", "-", "-", "-", "-"
    );

    // (bytes pushed, server seconds, requests to the server)
    let totals = || {
        let org = server.org();
        (
            org.imports.iter().map(|i| i.bytes).sum::<usize>(),
            org.imports.iter().map(|i| i.seconds).sum::<f64>(),
            org.token_requests + org.reads.len() + org.imports.len(),
        )
    };
    // runs `times` times (calling `before` ahead of each) and prints the median run by wall time
    let run_with = |label: &str, args: &[&str], times: usize, before: &dyn Fn()| {
        let mut runs = Vec::new();
        for _ in 0..times {
            before();
            let (bytes_before, server_before, requests_before) = totals();
            let (wall, cpu, rss) = measured(&env, args);
            let (bytes_after, server_after, requests_after) = totals();
            runs.push((
                wall,
                cpu,
                rss,
                bytes_after - bytes_before,
                server_after - server_before,
                requests_after - requests_before,
            ));
        }
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (wall, cpu, rss, bytes, server_s, requests) = runs[runs.len() / 2];
        println!(
            "{label:<28} {wall:>9.2} {cpu:>9.2} {:>12.1} {bytes:>14} {server_s:>9.2} {requests:>9}",
            rss as f64 / 1024.0,
        );
    };
    run_with(
        "test (read+diff, no push)",
        &["test", "--json"],
        repeat,
        &|| {},
    );
    run_with("first full sync", &["sync"], repeat, &|| {
        let out = env.command(&["clear-cache"]).output().expect("clear-cache");
        assert!(out.status.success(), "clear-cache failed");
        server.org().reset();
    });
    run_with("unchanged sync", &["sync"], repeat, &|| {});
    let imports = server.import_count();
    // churn: 1% new users, all added to group 0; 1% deleted. Each repeat churns again (new
    // users, others deleted), against the organization the previous one left.
    let churn = (n / 100).max(1);
    let round = std::cell::Cell::new(0usize);
    let churn_once = || {
        let k = round.get();
        round.set(k + 1);
        let new_users = n + k * churn..n + (k + 1) * churn;
        let mut add = String::new();
        for i in new_users.clone() {
            add.push_str(&person(
                &uid(i),
                Some(&format!("{}@example.com", uid(i))),
                false,
            ));
        }
        slapd.add(&add);
        let mut m = format!(
            "dn: {}\nchangetype: modify\nadd: member\n",
            group_dn("group00000")
        );
        for i in new_users {
            m.push_str(&format!("member: {}\n", user_dn(&uid(i))));
        }
        m.push('\n');
        slapd.modify(&m);
        // (multiples of 97, shifted by the round: a user is deleted once)
        let mut del = String::new();
        for i in 0..churn {
            del.push_str(&format!(
                "dn: {}\nchangetype: delete\n\n",
                user_dn(&uid((i * 97 + k) % n))
            ));
        }
        slapd.modify(&del);
    };
    run_with("churn sync (1% in, 1% out)", &["sync"], repeat, &churn_once);
    println!(
        "import requests: {imports} after the unchanged sync, {} in all",
        server.import_count()
    );
    println!("org members after: {}", server.org().members.len());

    if std::env::var_os("BENCH_CLOUD").is_some() {
        // the same runs against the cloud's limits, in real time, with the cloud's budget
        let cloud = FakeBitwarden::start_with(ServerKind::Bitwarden, Some(CloudLimits::cloud()));
        cloud.org().discard_bodies = true;
        let env = Env::new();
        env.configure(&slapd, &cloud);
        env.set("sync.remove_missing_users", "true");
        env.set("sync.max_removals", "0");
        env.set("sync.max_removal_percent", "0");
        env.set("server.max_requests_per_second", "4");
        env.set("server.max_requests_per_minute", "50");
        println!("at the cloud's limits (5/s, 60/min per IP; client budget 4/s, 50/min):");
        println!(
            "{:<28} {:>9} {:>9} {:>9} {:>9}",
            "run", "wall s", "requests", "refused", "blocked"
        );
        let requests = || {
            let org = cloud.org();
            org.token_requests + org.reads.len() + org.imports.len()
        };
        let refused = || {
            let org = cloud.org();
            let l = org.limits.as_ref().expect("limits");
            (l.refusals().len(), l.blocked_answers().len())
        };
        for (label, before) in [
            ("first full sync", None),
            ("unchanged sync", None),
            ("churn sync (1% in, 1% out)", Some(&churn_once as &dyn Fn())),
        ] {
            if let Some(f) = before {
                f();
            }
            let (r0, (x0, b0)) = (requests(), refused());
            let (wall, _, _) = measured(&env, &["sync"]);
            let (r1, (x1, b1)) = (requests(), refused());
            println!(
                "{label:<28} {wall:>9.2} {:>9} {:>9} {:>9}",
                r1 - r0,
                x1 - x0,
                b1 - b0
            );
        }
    }
}
