//! The fast lane in the window: while Start Sync polls, the window looks at a real slapd's
//! change feed (`syncprov`) every `sync.watch_seconds`, says "Watching for changes" with the
//! last change seen, revokes a leaver at once and lists that run in History as the fast lane's;
//! the lane's sync shows as a running sync, and Cancel stops it.

use std::time::Duration;

use directory_connector::gui::App;
use egui_kittest::Harness;

use crate::gui::{click, directory, has_label, logged_in, wait};
use crate::support::Env;
use crate::support::fake_bitwarden::{FakeBitwarden, REVOKED};
use crate::support::slapd::{Slapd, user_dn};

/// A slapd with `syncprov`, the server, and a window polling (its syncs an hour apart, so that
/// what happens next is the lane's) that watches the feed every second.
fn polling_and_watching() -> (Slapd, FakeBitwarden, Env, Harness<'static, App>) {
    let slapd = Slapd::start_with_feed(&directory());
    let server = FakeBitwarden::start();
    let env = Env::new();
    env.configure(&slapd, &server);
    env.set("sync.remove_disabled", "true");
    env.set("sync.remove_revoked_after_days", "30");
    env.set("sync.watch_seconds", "1");
    let mut h = logged_in(&env, Some(Duration::from_secs(3600)));
    click(&mut h, "Start Sync");
    wait(&mut h, "the first polled sync", |h| {
        h.state().syncs_started_by_polling >= 1 && h.state().worker.busy().is_none()
    });
    wait(&mut h, "Watching for changes", |h| {
        has_label(h, "Watching for changes")
    });
    assert_eq!(server.org().members["bob@example.com"].status, 0);
    (slapd, server, env, h)
}

#[test]
fn while_polling_the_window_watches_for_changes_and_history_names_the_fast_lane() {
    let (slapd, server, _env, mut h) = polling_and_watching();

    // bob leaves: disabled in the directory, revoked by the lane, not by a polled sync
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 514\n\n",
        user_dn("bob")
    ));
    wait(&mut h, "bob revoked", |_| {
        server.org().members["bob@example.com"].status == REVOKED
    });
    assert_eq!(
        h.state().syncs_started_by_polling,
        1,
        "no polled sync did it"
    );
    wait(&mut h, "the last change seen", |h| {
        has_label(h, "last change seen") && has_label(h, "1 leaver (uid=bob")
    });

    click(&mut h, "History");
    wait(&mut h, "the fast lane's run in History", |h| {
        has_label(h, "Fast lane: Synced: 0 invited, 1 revoked")
    });
    click(&mut h, "Stop Sync");
}

#[test]
fn the_fast_lanes_sync_shows_as_a_running_sync_and_cancel_stops_it() {
    let (slapd, server, _env, mut h) = polling_and_watching();
    // a slow server: the lane's sync is still running when Cancel is clicked
    server.org().revoke_delay = Some(Duration::from_secs(3));
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 514\n\n",
        user_dn("bob")
    ));
    wait(
        &mut h,
        "the lane's sync shown with its bar and Cancel",
        |h| h.state().worker.busy() == Some("Fast lane") && has_label(h, "Cancel"),
    );
    click(&mut h, "Cancel");
    wait(&mut h, "the lane's sync stopped", |h| {
        h.state().worker.busy().is_none()
    });
    assert_eq!(
        server.org().members["bob@example.com"].status,
        0,
        "cancelled before the revoke was sent"
    );
    // the next look finds bob again (the cursor was not kept past an unfinished run)
    server.org().revoke_delay = None;
    wait(&mut h, "bob revoked by a later look", |_| {
        server.org().members["bob@example.com"].status == REVOKED
    });
    click(&mut h, "Stop Sync");
}
