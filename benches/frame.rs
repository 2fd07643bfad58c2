//! Frame-time benchmark of the Dashboard with N result rows (default 100,000): builds the window
//! headless with egui_kittest, fills the users table as `Test Now` would, and times frames
//! while scrolling, searching and switching views. Run:
//! `BENCH_ROWS=100000 cargo bench --bench frame`.

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

use std::sync::Arc;
use std::time::Instant;

use directory_connector::connector::TestReport;
use directory_connector::engine::{Id, NormGroup, NormUser, Normalized, Plan};
use directory_connector::gui::{App, AppOptions};
use directory_connector::secrets::{MemoryStore, SecretStore};
use egui_kittest::Harness;

fn main() {
    let n: usize = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let secrets: Arc<dyn SecretStore> = Arc::new(MemoryStore::default());
    secrets
        .set("bitwarden.client_id", &support::client_id())
        .expect("key");
    secrets
        .set("bitwarden.client_secret", support::CLIENT_SECRET)
        .expect("key");
    let opts = AppOptions {
        data_dir: dir.path().to_path_buf(),
        secrets,
        poll_interval: None,
    };
    let mut h = Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .build_eframe(move |cc| App::new(&cc.egui_ctx, opts));
    // wait for the worker's first status (logged in)
    for _ in 0..200 {
        h.step();
        if h.state().status.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let users = users(n);
    let groups: Vec<NormGroup> = (0..n / 100)
        .map(|g| NormGroup {
            reference_id: format!("cn=g{g}"),
            external_id: format!("cn=g{g}"),
            name: format!("Group {g}"),
            members: (0..100)
                .map(|k| Id::clone(&users[g * 100 + k].external_id))
                .collect(),
        })
        .collect();
    let t = Instant::now();
    h.state_mut().dashboard.set_test(TestReport {
        normalized: Normalized {
            users: Some(users),
            groups: Some(groups),
            skipped: vec![],
        },
        plan: Plan::default(),
        refused: None,
        baseline_note: None,
        drift: None,
        fast_lane: None,
    });
    let load = t.elapsed();
    let frame = |label: &str,
                 h: &mut Harness<'static, App>,
                 frames: usize,
                 f: &dyn Fn(&mut Harness<'static, App>, usize)| {
        let mut times = Vec::with_capacity(frames);
        for i in 0..frames {
            f(h, i);
            let t = Instant::now();
            h.step();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        let p95 = times[(times.len() * 95 / 100).min(times.len() - 1)];
        println!(
            "{label:<36} mean {mean:>6.2} ms   p95 {p95:>6.2} ms   max {:>6.2} ms",
            times[times.len() - 1]
        );
    };
    println!(
        "rows={n}; building the tables took {:.0} ms",
        load.as_secs_f64() * 1000.0
    );
    frame("users table, idle", &mut h, 60, &|_, _| {});
    frame("users table, scrolling", &mut h, 60, &|h, _| {
        h.event(egui::Event::MouseWheel {
            unit: egui::MouseWheelUnit::Point,
            delta: egui::vec2(0.0, -2000.0),
            modifiers: egui::Modifiers::NONE,
            phase: egui::TouchPhase::Move,
            source: egui::MouseWheelSource::Wheel,
        });
    });
    frame("users table, searching (new query)", &mut h, 20, &|h, i| {
        let q = format!("u00{:02}", i % 100);
        h.state_mut().dashboard.query = q.clone();
        h.state_mut().dashboard.users.filter(&q);
    });
    h.state_mut().dashboard.view = directory_connector::gui::View::Groups;
    frame("groups table, idle", &mut h, 60, &|_, _| {});
}

/// `n` directory users, one in 50 disabled.
fn users(n: usize) -> Vec<NormUser> {
    (0..n)
        .map(|i| NormUser {
            reference_id: format!("uid=u{i:07},ou=People,dc=example,dc=com"),
            external_id: Id::from(format!("uid=u{i:07},ou=People,dc=example,dc=com")),
            email: Some(format!("u{i:07}@example.com")),
            disabled: i % 50 == 0,
            deleted: false,
            unreadable: None,
            immutable_id: None,
        })
        .collect()
}
