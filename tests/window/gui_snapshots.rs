//! Image snapshots of each screen (login, dashboard with results, settings, more), rendered on
//! the CPU with wgpu over Mesa's lavapipe and compared with the PNGs in `tests/snapshots/`.
//! Refresh them after an intended change with `UPDATE_SNAPSHOTS=1 cargo test --test gui_snapshots`.
//! The content is deterministic: a fixed data directory, a fixed config, synthetic results.

use crate::support;

use std::path::PathBuf;
use std::sync::Arc;

use directory_connector::connector::TestReport;
use directory_connector::engine::{Id, NormGroup, NormUser, Normalized};
use directory_connector::gui::{App, AppOptions, Tab};
use directory_connector::secrets::{MemoryStore, SecretStore};
use egui_kittest::kittest::Queryable;
use egui_kittest::{Harness, SnapshotOptions};

fn options() -> SnapshotOptions {
    // a little room for rasteriser differences between Mesa builds
    SnapshotOptions::new().threshold(0.8).max_failed_pixels(800)
}

/// A window over a fixed data directory (paths show on screen), logged in or not.
fn window(name: &str, logged_in: bool) -> Harness<'static, App> {
    let dir = PathBuf::from(format!("/tmp/directory-connector-snapshot-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        "[directory]\ntype = \"ldap\"\n\n[ldap]\nhostname = \"dc1.example.com\"\nencryption = \"ldaps\"\n\
         root_path = \"dc=example,dc=com\"\nusername = \"cn=reader,dc=example,dc=com\"\nad = true\n\n\
         [sync]\nuser_path = \"ou=People\"\ngroup_path = \"ou=Groups\"\n",
    )
    .unwrap();
    let secrets: Arc<dyn SecretStore> = Arc::new(MemoryStore::default());
    secrets.set("ldap.password", "x").unwrap();
    if logged_in {
        secrets
            .set("bitwarden.client_id", &support::client_id())
            .unwrap();
        secrets
            .set("bitwarden.client_secret", support::CLIENT_SECRET)
            .unwrap();
    }
    let opts = AppOptions {
        data_dir: dir,
        secrets,
        poll_interval: None,
    };
    let mut h = Harness::builder()
        .with_size(egui::vec2(1100.0, 700.0))
        .wgpu()
        .build_eframe(move |cc| App::new(&cc.egui_ctx, opts));
    for _ in 0..200 {
        h.step();
        if h.state().status.is_some() && h.state().worker.busy().is_none() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    h.run_steps(4);
    h
}

fn results() -> TestReport {
    let user = |i: usize, name: &str, disabled: bool| NormUser {
        reference_id: format!("uid={name},ou=People,dc=example,dc=com"),
        external_id: Id::from(format!("00000000-0000-4000-8000-{i:012}")),
        email: Some(format!("{name}@example.com")),
        disabled,
        deleted: false,
        unreadable: None,
        immutable_id: None,
    };
    let users = vec![
        user(1, "alice", false),
        user(2, "bob", false),
        user(3, "carol", true),
        user(4, "dave", false),
    ];
    let groups = vec![
        NormGroup {
            reference_id: "cn=engineering,ou=groups,dc=example,dc=com".into(),
            external_id: "cn=engineering,ou=groups,dc=example,dc=com".into(),
            name: "Engineering".into(),
            members: vec![
                Id::clone(&users[0].external_id),
                Id::clone(&users[1].external_id),
            ],
        },
        NormGroup {
            reference_id: "cn=sales,ou=groups,dc=example,dc=com".into(),
            external_id: "cn=sales,ou=groups,dc=example,dc=com".into(),
            name: "Sales".into(),
            members: vec![Id::clone(&users[3].external_id)],
        },
    ];
    let normalized = Normalized {
        users: Some(users),
        groups: Some(groups),
        skipped: vec![],
    };
    let plan =
        directory_connector::engine::diff(&normalized, &Default::default(), &Default::default());
    TestReport {
        normalized,
        plan,
        refused: None,
        baseline_note: None,
        drift: None,
        fast_lane: None,
    }
}

#[test]
fn the_login_screen_matches_its_snapshot() {
    let mut h = window("login", false);
    assert!(h.query_by_label("Log In").is_some());
    h.snapshot_options("login", &options());
}

#[test]
fn each_tab_matches_its_snapshot() {
    let mut h = window("tabs", true);
    h.state_mut().dashboard.set_test(results());
    // the line says when: a fixed time, so that the image does not change with the clock
    h.state_mut().dashboard.as_of = "As of 10:42, Test Now.".into();
    h.run_steps(4);
    assert!(h.query_by_label("alice@example.com").is_some());
    h.snapshot_options("dashboard", &options());

    h.state_mut().tab = Tab::Settings;
    h.run_steps(4);
    assert!(h.query_by_label("Server Hostname").is_some());
    h.snapshot_options("settings", &options());

    h.state_mut().tab = Tab::More;
    h.run_steps(4);
    h.snapshot_options("more", &options());

    // the light theme too
    h.state_mut().tab = Tab::Dashboard;
    h.ctx.set_theme(egui::Theme::Light);
    h.run_steps(4);
    h.snapshot_options("dashboard-light", &options());
}

/// The history (each run's result, the chart of members over time with its time axis) and an
/// error with its hint, in the window's words.
#[test]
fn the_history_and_an_error_match_their_snapshot() {
    use directory_connector::gui::View;
    use directory_connector::gui::words::Said;
    use directory_connector::store::{RunOutcome, RunRecord};
    let mut h = window("history", true);
    let run = |id: i64, at: &str, outcome: RunOutcome, invited: u64, members: u64| {
        let mut r = RunRecord::new(id, "sync");
        r.started_at = at.to_string();
        r.outcome = outcome;
        r.invited = invited;
        r.groups_changed = u64::from(invited > 0);
        r.members_after = members;
        if outcome == RunOutcome::Failed {
            r.error = Some(
                "reading the directory: connecting to ldap://dc1.example.com:389: \
                            Connection refused (os error 111)"
                    .into(),
            );
        }
        r
    };
    // newest first, as the store lists them
    let runs = [
        run(5, "2026-11-03T09:00:00Z", RunOutcome::Failed, 0, 0),
        run(4, "2026-11-03T08:00:00Z", RunOutcome::Synced, 40, 340),
        run(3, "2026-11-02T08:00:00Z", RunOutcome::Unchanged, 0, 300),
        run(2, "2026-11-01T08:00:00Z", RunOutcome::Synced, 120, 300),
        run(1, "2026-10-31T08:00:00Z", RunOutcome::Synced, 180, 180),
    ];
    h.state_mut().dashboard.set_runs(&runs);
    h.state_mut().dashboard.view = View::History;
    h.state_mut().said(Said {
        what: "Test Now could not connect to the directory server: the connection was refused."
            .into(),
        hint: Some(
            "Check Server Hostname and Server Port in Settings (Directory, Connection), and \
             that the directory server is running."
                .into(),
        ),
        details: Some(
            "reading the directory: connecting to ldap://dc1.example.com:389: I/O error: \
             Connection refused (os error 111)"
                .into(),
        ),
    });
    h.run_steps(4);
    assert!(
        h.query_by_label("Members over time (axes: Time, Members)")
            .is_some()
    );
    h.snapshot_options("history", &options());
}
