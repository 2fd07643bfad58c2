//! The fast lane (`sync.watch_seconds`): the service watches a real slapd's change feed (the
//! `syncprov` overlay, RFC 4533) between its scheduled syncs, here an hour apart, so that
//! every change below reaches the fake Bitwarden server through a `fast lane` run: a leaver
//! revoked, a returner restored, a group change, a deletion; a joiner waits for the full sync;
//! more leavers than the guard allows stop the lane with an alert; a refused cookie falls back
//! to a full read; a directory without a feed is said once and read in full every ten periods.

use std::time::Instant;

use serde_json::Value;

use crate::service::{
    Service, finished_runs, http_get, metric, sigterm_and_wait, start_service, wait_for_service,
};
use crate::support::Env;
use crate::support::fake_bitwarden::{FakeBitwarden, REVOKED};
use crate::support::slapd::{self, Slapd, group, group_dn, person, user_dn};

const USERS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];

fn directory() -> String {
    let mut l = String::new();
    for u in USERS {
        l.push_str(&person(u, Some(&format!("{u}@example.com")), false));
    }
    l.push_str(&group("Staff", &["alice", "bob", "carol"].map(user_dn)));
    l
}

fn email(u: &str) -> String {
    format!("{u}@example.com")
}

/// An env that revokes leavers, with the schedule an hour apart and the lane looking every
/// `watch` seconds; its metrics on a free port (returned).
fn configure(env: &Env, slapd: &Slapd, server: &FakeBitwarden, watch: u32) -> u16 {
    env.configure(slapd, server);
    env.set("sync.remove_missing_users", "true");
    env.set("sync.remove_disabled", "true");
    env.set("sync.remove_revoked_after_days", "30");
    env.set("sync.interval_minutes", "60");
    env.set("sync.watch_seconds", &watch.to_string());
    let port = slapd::free_port();
    env.set("service.metrics_listen", &format!("127.0.0.1:{port}"));
    port
}

fn status(server: &FakeBitwarden, u: &str) -> Option<i32> {
    server.org().members.get(&email(u)).map(|m| m.status)
}

fn set_disabled(slapd: &Slapd, u: &str, disabled: bool) {
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: {}\n\n",
        user_dn(u),
        if disabled { 514 } else { 512 }
    ));
}

/// The runs in the history (newest first), as `history --json` gives them.
fn runs(env: &Env) -> Vec<Value> {
    env.json(&["history", "--limit", "100"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn fast_lane_runs(env: &Env) -> usize {
    runs(env)
        .iter()
        .filter(|r| r["kind"] == "fast lane")
        .count()
}

fn metrics(port: u16) -> String {
    http_get(port, "/metrics")
        .map(|(_, b)| b)
        .unwrap_or_default()
}

/// Starts the service and waits for its first run and the lane's first look.
fn start(env: &Env) -> Service {
    let service = start_service(env, None);
    wait_for_service(&service, "the first run", || {
        finished_runs(env).filter(|n| *n >= 1)
    });
    wait_for_service(&service, "the fast lane to start watching", || {
        service.log().contains("fast lane: watching").then_some(())
    });
    service
}

/// Waits until `user`'s status is `want` (None: not a member), quoting the service's log.
fn wait_status(service: &Service, server: &FakeBitwarden, user: &str, want: Option<i32>) {
    wait_for_service(service, &format!("{user}'s status {want:?}"), || {
        (status(server, user) == want).then_some(())
    });
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one service's life: each change follows the one before against the same organization"
)]
fn the_fast_lane_revokes_a_leaver_restores_a_returner_and_follows_groups_within_seconds() {
    let slapd = Slapd::start_with_feed(&directory());
    let server = FakeBitwarden::start();
    let env = Env::new();
    let port = configure(&env, &slapd, &server, 1);
    let service = start(&env);
    assert_eq!(
        status(&server, "bob"),
        Some(0),
        "bob invited by the full sync"
    );
    let full_runs = runs(&env).len();

    // nothing changes, then a change that matters to nobody (a surname): looks, no run
    std::thread::sleep(std::time::Duration::from_secs(3));
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: sn\nsn: Changed\n\n",
        user_dn("alice")
    ));
    wait_for_service(&service, "the surname change seen", || {
        let h = env.ok(&["history"]).stdout;
        h.lines()
            .find(|l| l.starts_with("Fast lane"))
            .is_some_and(|l| l.contains("nothing for the organization"))
            .then_some(())
    });
    assert_eq!(runs(&env).len(), full_runs, "no sync while nothing matters");
    assert!(
        !service.log().contains("a full read"),
        "the cookie kept working: {}",
        service.log()
    );
    let requests = || {
        let org = server.org();
        org.token_requests + org.reads.len() + org.imports.len() + org.member_calls.len()
    };
    let before = requests();
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        requests(),
        before,
        "no request to Bitwarden while nothing changes"
    );

    // a leaver: disabled in the directory, revoked by the fast lane (not removed)
    let t0 = Instant::now();
    set_disabled(&slapd, "bob", true);
    wait_status(&service, &server, "bob", Some(REVOKED));
    eprintln!(
        "fast lane (slapd syncprov): disabled → revoked in {:?}",
        t0.elapsed()
    );
    assert!(fast_lane_runs(&env) >= 1, "{:?}", runs(&env));
    let m = metrics(port);
    assert_eq!(
        metric(
            &m,
            "directory_connector_fast_lane_state{state=\"watching\"}"
        ),
        Some(1.0),
        "{m}"
    );
    let observed = metric(
        &m,
        "directory_connector_fast_lane_revoke_latency_seconds_count",
    )
    .unwrap_or(0.0);
    assert!(observed >= 1.0, "the revoke's latency is measured: {m}");
    assert!(
        metric(&m, "directory_connector_fast_lane_looks_total").unwrap_or(0.0) >= 1.0,
        "{m}"
    );

    // a returner: enabled again, restored in place (same member id)
    let bob_id = server.org().members[&email("bob")].id.clone();
    set_disabled(&slapd, "bob", false);
    wait_for_service(&service, "bob restored", || {
        status(&server, "bob").filter(|s| *s != REVOKED).map(|_| ())
    });
    assert_eq!(server.org().members[&email("bob")].id, bob_id);

    // a group change: erin joins Staff
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nadd: member\nmember: {}\n\n",
        group_dn("Staff"),
        user_dn("erin")
    ));
    wait_for_service(&service, "erin in Staff", || {
        let org = server.org();
        let erin = org.members.get(&email("erin"))?.id.clone();
        org.groups
            .values()
            .find(|g| g.name == "Staff")
            .filter(|g| g.members.contains(&erin))
            .map(|_| ())
    });

    // a deletion: carol's entry removed, carol revoked
    slapd.delete(&user_dn("carol"));
    wait_status(&service, &server, "carol", Some(REVOKED));

    // a joiner waits for the next full sync (sync.watch_joiners is off)
    slapd.add(&person("frank", Some("frank@example.com"), false));
    wait_for_service(&service, "the joiner seen", || {
        let h = env.ok(&["history"]).stdout;
        let lane = h.lines().find(|l| l.starts_with("Fast lane"))?.to_string();
        lane.contains("joiner").then_some(())
    });
    assert_eq!(
        status(&server, "frank"),
        None,
        "a joiner is not invited by the lane"
    );

    // every change went through the lane: no scheduled run in between
    let all = runs(&env);
    assert_eq!(
        all.len() - full_runs,
        all.iter().filter(|r| r["kind"] == "fast lane").count(),
        "{all:?}"
    );
    let (code, log) = sigterm_and_wait(service);
    assert_eq!(code, 0, "{log}");
}

#[test]
fn a_joiner_is_invited_at_once_with_watch_joiners() {
    let slapd = Slapd::start_with_feed(&directory());
    let server = FakeBitwarden::start();
    let env = Env::new();
    configure(&env, &slapd, &server, 1);
    env.set("sync.watch_joiners", "true");
    let service = start(&env);
    slapd.add(&person("frank", Some("frank@example.com"), false));
    wait_status(&service, &server, "frank", Some(0));
    assert!(fast_lane_runs(&env) >= 1);
    let _ = sigterm_and_wait(service);
}

#[test]
fn more_leavers_than_the_guard_allows_stop_the_lane_with_an_alert_until_a_full_sync() {
    let slapd = Slapd::start_with_feed(&directory());
    let server = FakeBitwarden::start();
    let env = Env::new();
    let port = configure(&env, &slapd, &server, 2);
    env.set("sync.max_removals", "1");
    let service = start(&env);
    // three leavers in one change
    slapd.modify(
        &["bob", "carol", "dave"]
            .map(|u| format!("dn: {}\nchangetype: delete\n\n", user_dn(u)))
            .concat(),
    );
    wait_for_service(&service, "the lane stopped", || {
        service.log().contains("fast lane stopped").then_some(())
    });
    let m = metrics(port);
    assert_eq!(
        metric(
            &m,
            "directory_connector_fast_lane_state{state=\"stopped_by_guard\"}"
        ),
        Some(1.0),
        "{m}"
    );
    // at most the one the guard allows before the stop; never all three
    let revoked = ["bob", "carol", "dave"]
        .iter()
        .filter(|u| status(&server, u) == Some(REVOKED))
        .count();
    assert!(revoked <= 1, "{revoked} revoked: {}", service.log());
    // the alert is kept (history --json lists it)
    let h = env.ok(&["history"]);
    assert!(h.stdout.contains("fast lane stopped"), "{}", h.stdout);
    let _ = sigterm_and_wait(service);
}

#[test]
fn the_persistent_search_rings_the_lane_at_once_however_long_the_period() {
    // one look an hour: only the doorbell (refreshAndPersist from the cookie) can make the
    // revoke come in seconds
    let slapd = Slapd::start_with_feed(&directory());
    let server = FakeBitwarden::start();
    let env = Env::new();
    configure(&env, &slapd, &server, 3600);
    let service = start(&env);
    // the doorbell holds its search once the first look has made the cursor
    std::thread::sleep(std::time::Duration::from_secs(3));
    let t0 = Instant::now();
    set_disabled(&slapd, "bob", true);
    wait_status(&service, &server, "bob", Some(REVOKED));
    eprintln!(
        "fast lane (refreshAndPersist, one look an hour): disabled → revoked in {:?}",
        t0.elapsed()
    );
    set_disabled(&slapd, "bob", false);
    wait_for_service(&service, "bob restored", || {
        status(&server, "bob").filter(|s| *s != REVOKED).map(|_| ())
    });
    assert!(
        !service.log().contains("no persistent search"),
        "{}",
        service.log()
    );
    let _ = sigterm_and_wait(service);
}

#[test]
fn a_lane_sync_that_fails_leaves_its_changes_to_a_later_look_after_a_back_off() {
    let slapd = Slapd::start_with_feed(&directory());
    let server = FakeBitwarden::start();
    let env = Env::new();
    configure(&env, &slapd, &server, 1);
    let service = start(&env);
    // the server refuses the next two revokes: two lane syncs fail
    server.org().revoke_refusals = 2;
    set_disabled(&slapd, "bob", true);
    wait_status(&service, &server, "bob", Some(REVOKED));
    let log = service.log();
    assert_eq!(
        log.matches("did not finish (failed); the same changes are looked at again in 2 s")
            .count(),
        1,
        "said once, then backed off (2 s, 4 s): {log}"
    );
    let failed = runs(&env)
        .iter()
        .filter(|r| r["kind"] == "fast lane" && r["outcome"] == "failed")
        .count();
    assert_eq!(failed, 2, "{:?}", runs(&env));
    let _ = sigterm_and_wait(service);
}

#[test]
fn a_refused_cookie_falls_back_to_a_full_read_and_the_feed_starts_again() {
    let slapd = Slapd::start_with_feed(&directory());
    let server = FakeBitwarden::start();
    let env = Env::new();
    configure(&env, &slapd, &server, 1);
    let service = start(&env);
    let (code, log) = sigterm_and_wait(service);
    assert_eq!(code, 0, "{log}");
    // the stored cookie is one the server never gave (as after a provider's database was
    // rebuilt): the next look must say so and read everything
    let service = restart_with_cursor(
        &env,
        |c| c["cookie"] = hex("not a cookie this server gave").into(),
        "a full read",
    );
    // and the new cookie works: a leaver is revoked by the lane
    set_disabled(&slapd, "bob", true);
    wait_status(&service, &server, "bob", Some(REVOKED));
    let _ = sigterm_and_wait(service);
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// With the service stopped, changes the stored cursor as `change` says, starts the service
/// again and waits until it has said `said`, read everything and watches again.
fn restart_with_cursor(env: &Env, change: impl FnOnce(&mut Value), said: &str) -> Service {
    let db = rusqlite::Connection::open(env.path().join("directory-connector.sqlite3")).unwrap();
    let (key, raw): (String, String) = db
        .query_row(
            "SELECT key, value FROM meta WHERE key LIKE 'feed_cursor:%'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("a stored cursor");
    let mut cursor: Value = serde_json::from_str(&raw).unwrap();
    change(&mut cursor);
    db.execute(
        "UPDATE meta SET value = ?1 WHERE key = ?2",
        [cursor.to_string(), key],
    )
    .unwrap();
    drop(db);
    let service = start_service(env, None);
    wait_for_service(&service, &format!("the service saying {said:?}"), || {
        service.log().contains(said).then_some(())
    });
    wait_for_service(&service, "watching again after the full read", || {
        (service
            .log()
            .contains("watching the directory's change feed again")
            && fast_lane_runs(env) >= 1)
            .then_some(())
    });
    service
}

#[test]
fn a_directory_without_a_feed_is_said_once_and_read_in_full_every_ten_periods() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = Env::new();
    let port = configure(&env, &slapd, &server, 1);
    let service = start_service(&env, None);
    // a full read in place of the feed, 10 looks after the first
    wait_for_service(&service, "the full read in place of the feed", || {
        finished_runs(&env).filter(|n| *n >= 2)
    });
    let log = service.log();
    assert_eq!(
        log.matches("offers no change feed").count(),
        1,
        "said once: {log}"
    );
    let m = metrics(port);
    assert_eq!(
        metric(&m, "directory_connector_fast_lane_state{state=\"no_feed\"}"),
        Some(1.0),
        "{m}"
    );
    let _ = sigterm_and_wait(service);
}

/// Active Directory (a real Samba AD DC): `uSNChanged` and the Deleted Objects container.
mod ad {
    use super::*;
    use crate::support::samba::{self, dc, dn, ou_ldif, unique_ou};

    fn configure_ad(env: &Env, server: &FakeBitwarden, ou: &str) -> u16 {
        // the DC as the reader, scoped to the OU (tests/e2e/ad.rs), then revoke-first
        crate::ad::configure(env, server, ou);
        env.set("sync.remove_missing_users", "true");
        env.set("sync.remove_disabled", "true");
        env.set("sync.remove_revoked_after_days", "30");
        env.set("sync.interval_minutes", "60");
        env.set("sync.watch_seconds", "1");
        let port = slapd::free_port();
        env.set("service.metrics_listen", &format!("127.0.0.1:{port}"));
        port
    }

    /// An OU of its own with Alice and Bob (`alice@<prefix>.test`), the server, and an env
    /// reading it as the service account with the lane looking every second.
    fn alice_and_bob(prefix: &str) -> (String, FakeBitwarden, Env) {
        let ou = unique_ou(prefix);
        let alice = format!("alice@{prefix}.test");
        let bob = format!("bob@{prefix}.test");
        dc().modify(&ou_ldif(
            &ou,
            &[("Alice", Some(&alice), false), ("Bob", Some(&bob), false)],
            &[],
        ));
        let server = FakeBitwarden::start();
        let env = Env::new();
        configure_ad(&env, &server, &ou);
        (ou, server, env)
    }

    fn ad_status(server: &FakeBitwarden, mail: &str) -> Option<i32> {
        server.org().members.get(mail).map(|m| m.status)
    }

    fn wait_ad(service: &Service, server: &FakeBitwarden, mail: &str, want: Option<i32>) {
        wait_for_service(service, &format!("{mail}'s status {want:?}"), || {
            (ad_status(server, mail) == want).then_some(())
        });
    }

    fn set_uac(ou: &str, cn: &str, disabled: bool) {
        dc().modify(&format!(
            "dn: {}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: {}\n\n",
            dn(ou, cn),
            if disabled { 514 } else { 512 }
        ));
    }

    #[test]
    fn ad_a_disabled_and_a_deleted_account_are_revoked_by_the_fast_lane() {
        let ou = unique_ou("lane");
        dc().modify(&ou_ldif(
            &ou,
            &[
                ("Alice", Some("alice@lane.test"), false),
                ("Bob", Some("bob@lane.test"), false),
                ("Carol", Some("carol@lane.test"), false),
            ],
            &[("Staff", &["Alice", "Bob"])],
        ));
        // a domain has deleted accounts: one in Deleted Objects shows the administrator sees
        // them there (in an empty container nothing shows it), so uSNChanged, not DirSync
        dc().modify(&samba::user_ldif(&ou, "Gone", None, false));
        dc().delete(&dn(&ou, "Gone"));
        let server = FakeBitwarden::start();
        let env = Env::new();
        let port = configure_ad(&env, &server, &ou);
        // listing CN=Deleted Objects takes rights ordinary accounts lack (on AD as on Samba)
        env.set("ldap.username", samba::ADMIN);
        let r = env.run_stdin(&["config", "set", "ldap.password"], samba::ADMIN_PW);
        assert_eq!(r.code, 0, "{}", r.all());
        let t = env.ok(&["test"]);
        assert!(
            t.stdout.contains("Fast lane: the directory's change feed (Active Directory's uSNChanged) is available"),
            "{}",
            t.stdout
        );
        let service = start(&env);
        assert_eq!(ad_status(&server, "bob@lane.test"), Some(0));

        // disabled through userAccountControl
        let t0 = Instant::now();
        set_uac(&ou, "Bob", true);
        wait_ad(&service, &server, "bob@lane.test", Some(REVOKED));
        eprintln!(
            "fast lane (AD uSNChanged): disabled → revoked in {:?}",
            t0.elapsed()
        );
        // enabled again: restored in place
        set_uac(&ou, "Bob", false);
        wait_for_service(&service, "bob restored", || {
            ad_status(&server, "bob@lane.test")
                .filter(|s| *s != REVOKED)
                .map(|_| ())
        });
        // deleted outright: found in the Deleted Objects container by its GUID
        let carol = dc().guid(&dn(&ou, "Carol"));
        dc().delete(&dn(&ou, "Carol"));
        wait_ad(&service, &server, "carol@lane.test", Some(REVOKED));
        assert!(
            service
                .log()
                .contains(&format!("fast lane: 1 leaver ({carol})")),
            "the tombstone, not a full read, named the leaver: {}",
            service.log()
        );
        assert!(fast_lane_runs(&env) >= 3, "{:?}", runs(&env));
        let m = metrics(port);
        assert!(
            metric(
                &m,
                "directory_connector_fast_lane_revoke_latency_seconds_count"
            )
            .unwrap_or(0.0)
                >= 2.0,
            "{m}"
        );
        let _ = sigterm_and_wait(service);
    }

    #[test]
    fn ad_an_account_that_cannot_list_deleted_objects_finds_deletions_by_a_full_read() {
        let (ou, server, env) = alice_and_bob("laneblind");
        let t = env.ok(&["test"]);
        assert!(
            t.stdout
                .contains("sees no deleted account in the Deleted Objects container")
                && t.stdout.contains("a full read every 10 s finds it"),
            "{}",
            t.stdout
        );
        let service = start(&env);
        // a change the feed sees still goes at once
        set_uac(&ou, "Alice", true);
        wait_ad(&service, &server, "alice@laneblind.test", Some(REVOKED));
        // a deletion it cannot see: the full read every ten looks finds it
        dc().delete(&dn(&ou, "Bob"));
        wait_ad(&service, &server, "bob@laneblind.test", Some(REVOKED));
        let log = service.log();
        assert_eq!(
            log.matches("sees no deleted account in the Deleted Objects container")
                .count(),
            1,
            "said once: {log}"
        );
        let _ = sigterm_and_wait(service);
    }

    #[test]
    fn ad_dirsync_for_an_account_that_may_replicate_revokes_and_restores() {
        // an ordinary account with "Replicating Directory Changes": DirSync, not uSNChanged;
        // it cannot list Deleted Objects (and Samba's DirSync does not show it tombstones),
        // so a deletion outright is found by the full read every ten looks
        let ou = unique_ou("lanedirsync");
        dc().modify(&ou_ldif(
            &ou,
            &[
                ("Alice", Some("alice@lanedirsync.test"), false),
                ("Bob", Some("bob@lanedirsync.test"), false),
            ],
            &[("Staff", &["Alice"])],
        ));
        let server = FakeBitwarden::start();
        let env = Env::new();
        configure_ad(&env, &server, &ou);
        env.set("ldap.username", dc().replicator());
        let r = env.run_stdin(&["config", "set", "ldap.password"], samba::REPLICATOR_PW);
        assert_eq!(r.code, 0, "{}", r.all());
        let t = env.ok(&["test"]);
        assert!(
            t.stdout.contains(
                "Fast lane: the directory's change feed (Active Directory's DirSync) is available"
            ) && t.stdout.contains("a full read every 10 s finds it"),
            "{}",
            t.stdout
        );
        let service = start(&env);
        let t0 = Instant::now();
        set_uac(&ou, "Bob", true);
        wait_ad(&service, &server, "bob@lanedirsync.test", Some(REVOKED));
        eprintln!(
            "fast lane (AD DirSync): disabled → revoked in {:?}",
            t0.elapsed()
        );
        set_uac(&ou, "Bob", false);
        wait_for_service(&service, "bob restored", || {
            ad_status(&server, "bob@lanedirsync.test")
                .filter(|s| *s != REVOKED)
                .map(|_| ())
        });
        let bob = dn(&ou, "Bob");
        let log = service.log();
        assert!(
            log.contains(&format!("fast lane: 1 leaver ({bob})"))
                && log.contains(&format!("fast lane: 1 returner ({bob})")),
            "DirSync named bob each time: {log}"
        );
        // deleted outright: the full read that stands in for what the feed cannot see
        dc().delete(&dn(&ou, "Alice"));
        wait_ad(&service, &server, "alice@lanedirsync.test", Some(REVOKED));
        let (code, log) = sigterm_and_wait(service);
        assert_eq!(code, 0, "{log}");
        // a cookie the controller does not take: said, a full read, then uSNChanged
        let service = restart_with_cursor(
            &env,
            |c| {
                assert_eq!(c["feed"], "dirsync", "{c}");
                c["cookie"] = "00ff00ff".into();
            },
            "refused the stored DirSync cookie",
        );
        // the feed goes on (uSNChanged): a change is seen
        set_uac(&ou, "Bob", true);
        wait_ad(&service, &server, "bob@lanedirsync.test", Some(REVOKED));
        let _ = sigterm_and_wait(service);
    }

    #[test]
    fn ad_the_change_notification_rings_the_lane_at_once_however_long_the_period() {
        let (ou, server, env) = alice_and_bob("lanenotify");
        env.set("sync.watch_seconds", "3600");
        let service = start(&env);
        std::thread::sleep(std::time::Duration::from_secs(3));
        let t0 = Instant::now();
        set_uac(&ou, "Bob", true);
        wait_ad(&service, &server, "bob@lanenotify.test", Some(REVOKED));
        eprintln!(
            "fast lane (AD change notification, one look an hour): disabled → revoked in {:?}",
            t0.elapsed()
        );
        let _ = sigterm_and_wait(service);
    }

    #[test]
    fn ad_a_restored_domain_controller_falls_back_to_a_full_read() {
        let (ou, server, env) = alice_and_bob("lanerst");
        let service = start(&env);
        let (code, log) = sigterm_and_wait(service);
        assert_eq!(code, 0, "{log}");
        // the stored invocationID is another one: as after a restore from backup
        let service = restart_with_cursor(
            &env,
            |c| {
                assert!(c["usn"].as_u64().is_some(), "{c}");
                c["invocation_id"] = "00000000-0000-0000-0000-000000000001".into();
            },
            "invocationID changed",
        );
        // the feed starts again from the controller's USN: a change is seen
        set_uac(&ou, "Bob", true);
        wait_ad(&service, &server, "bob@lanerst.test", Some(REVOKED));
        let _ = sigterm_and_wait(service);
    }
}

/// Entra ID (the fake Microsoft Graph): `/users/delta` with the saved delta link.
mod entra {
    use super::*;
    use crate::support::fake_cloud::FakeCloud;

    fn set_status(cloud: &FakeCloud, id: &str, status: &'static str) {
        if let Some(u) = cloud.dir().users.iter_mut().find(|u| u.id == id) {
            u.status = status;
        }
    }

    fn mail_status(server: &FakeBitwarden, id: &str) -> Option<i32> {
        server
            .org()
            .members
            .get(&format!("{id}@example.com"))
            .map(|m| m.status)
    }

    #[test]
    fn entra_a_disabled_and_a_deleted_user_are_revoked_and_a_returner_restored_by_the_fast_lane() {
        let cloud = FakeCloud::start(crate::cloud::directory("ACTIVE", "ACTIVE", "ACTIVE"));
        let server = FakeBitwarden::start();
        let env = crate::cloud::entra_env(&cloud, &server);
        env.set("sync.remove_missing_users", "true");
        env.set("sync.remove_disabled", "true");
        env.set("sync.remove_revoked_after_days", "30");
        env.set("sync.interval_minutes", "60");
        env.set("sync.watch_seconds", "1");
        let t = env.ok(&["test"]);
        assert!(
            t.stdout.contains(
                "Fast lane: the directory's change feed (Microsoft Graph's /users/delta) is \
                 available"
            ),
            "{}",
            t.stdout
        );
        let service = start(&env);
        assert_eq!(mail_status(&server, "dave"), Some(0));
        let full_runs = runs(&env).len();

        let t0 = Instant::now();
        set_status(&cloud, "dave", "DISABLED");
        wait_for_service(&service, "dave revoked", || {
            (mail_status(&server, "dave") == Some(REVOKED)).then_some(())
        });
        eprintln!(
            "fast lane (Entra /users/delta): disabled → revoked in {:?}",
            t0.elapsed()
        );
        set_status(&cloud, "erin", "DELETED");
        wait_for_service(&service, "erin revoked", || {
            (mail_status(&server, "erin") == Some(REVOKED)).then_some(())
        });
        let dave = server.org().members["dave@example.com"].id.clone();
        set_status(&cloud, "dave", "ACTIVE");
        wait_for_service(&service, "dave restored", || {
            mail_status(&server, "dave")
                .filter(|s| *s != REVOKED)
                .map(|_| ())
        });
        assert_eq!(server.org().members["dave@example.com"].id, dave);
        let all = runs(&env);
        assert_eq!(
            all.len() - full_runs,
            all.iter().filter(|r| r["kind"] == "fast lane").count(),
            "every change went through the lane: {all:?}"
        );
        let log = service.log();
        assert!(
            log.contains("fast lane: 1 leaver (dave)")
                && log.contains("fast lane: 1 returner (dave)")
                && !log.contains("a full read"),
            "each change named, the delta link kept: {log}"
        );
        let _ = sigterm_and_wait(service);
    }

    #[test]
    fn entra_group_membership_changes_reach_the_organization_through_groups_delta() {
        // users filtered by a group (includeGroup): leaving it is leaving; groups synced:
        // joining one reaches the organization's group
        let cloud = FakeCloud::start(crate::cloud::directory("ACTIVE", "ACTIVE", "ACTIVE"));
        let server = FakeBitwarden::start();
        let env = crate::cloud::entra_env(&cloud, &server);
        crate::fast_lane::audit_logs::lane_env(&env);
        env.set("sync.user_filter", "includeGroup:g1,g2");
        let service = start(&env);
        assert_eq!(mail_status(&server, "bob"), Some(0));
        let full_runs = runs(&env).len();
        let t0 = Instant::now();
        cloud.dir().happen(
            "bob",
            crate::support::fake_cloud::Happened::Left("g1".into()),
        );
        wait_for_service(&service, "bob revoked", || {
            (mail_status(&server, "bob") == Some(REVOKED)).then_some(())
        });
        eprintln!(
            "fast lane (Entra /groups/delta): left the group → revoked in {:?}",
            t0.elapsed()
        );
        // carol was in no group (so not synced): joining Sales brings her in, through the
        // group's change (no joiner setting needed)
        assert_eq!(mail_status(&server, "carol"), None);
        cloud.dir().happen(
            "carol",
            crate::support::fake_cloud::Happened::Joined("g2".into()),
        );
        wait_for_service(&service, "carol invited", || {
            mail_status(&server, "carol").map(|_| ())
        });
        let all = runs(&env);
        assert_eq!(
            all.len() - full_runs,
            all.iter().filter(|r| r["kind"] == "fast lane").count(),
            "every change went through the lane: {all:?}"
        );
        let log = service.log();
        assert!(
            log.contains("fast lane: 1 change (group g1)")
                && log.contains("fast lane: 1 change (group g2)"),
            "the groups named: {log}"
        );
        let _ = sigterm_and_wait(service);
    }

    #[test]
    fn entra_an_expired_delta_link_falls_back_to_a_full_read_and_the_feed_starts_again() {
        let cloud = FakeCloud::start(crate::cloud::directory("ACTIVE", "ACTIVE", "ACTIVE"));
        let server = FakeBitwarden::start();
        let env = crate::cloud::entra_env(&cloud, &server);
        env.set("sync.remove_missing_users", "true");
        env.set("sync.remove_revoked_after_days", "30");
        env.set("sync.interval_minutes", "60");
        env.set("sync.watch_seconds", "1");
        let service = start(&env);
        // Graph forgets the link (syncStateNotFound): said, a full read
        cloud.dir().expire_delta_links = true;
        wait_for_service(&service, "the expired link said", || {
            service
                .log()
                .contains("delta link has expired")
                .then_some(())
        });
        cloud.dir().expire_delta_links = false;
        wait_for_service(&service, "watching again", || {
            service
                .log()
                .contains("watching the directory's change feed again")
                .then_some(())
        });
        // the new link works: a deleted user is revoked by the lane
        set_status(&cloud, "alice", "DELETED");
        wait_for_service(&service, "alice revoked", || {
            (mail_status(&server, "alice") == Some(REVOKED)).then_some(())
        });
        let _ = sigterm_and_wait(service);
    }
}

/// The cloud directories' audit logs (the fake Okta System Log, OneLogin Events and Google
/// Reports API, written by the fake as it changes): the same story for each.
pub(crate) mod audit_logs {
    use super::*;
    use crate::support::fake_cloud::{Directory, FakeCloud, Happened};

    /// How one vendor names a disabled and a deleted user, and its feed.
    pub(super) struct Vendor {
        pub feed: &'static str,
        pub disabled: &'static str,
        pub deleted: &'static str,
        /// Okta: a deactivated user is then deleted outright (404 afterwards).
        pub purge: bool,
        /// How the log names dave (his id in the directory).
        pub dave: &'static str,
        /// The path of the log's requests (as the fake records them).
        pub log_path: &'static str,
        /// The log names a change to a field the connector does not read (Google leaves it
        /// out by event name, so it is never read).
        pub touched_read: bool,
    }

    fn log_reads(cloud: &FakeCloud, path: &str) -> usize {
        cloud
            .dir()
            .requests
            .iter()
            .filter(|r| r.starts_with(path))
            .count()
    }

    pub(crate) fn lane_env(env: &Env) {
        env.set("sync.remove_missing_users", "true");
        env.set("sync.remove_disabled", "true");
        env.set("sync.remove_revoked_after_days", "30");
        env.set("sync.interval_minutes", "60");
        env.set("sync.watch_seconds", "1");
    }

    fn mail_status(server: &FakeBitwarden, id: &str) -> Option<i32> {
        server
            .org()
            .members
            .get(&format!("{id}@example.com"))
            .map(|m| m.status)
    }

    /// The group's member emails on the server.
    fn group_members(server: &FakeBitwarden, name: &str) -> Vec<String> {
        let org = server.org();
        let Some(g) = org.groups.values().find(|g| g.name == name) else {
            return Vec::new();
        };
        let mut v: Vec<String> = org
            .members
            .iter()
            .filter(|(_, m)| g.members.contains(&m.id))
            .map(|(e, _)| e.clone())
            .collect();
        v.sort();
        v
    }

    pub(super) fn directory() -> Directory {
        crate::cloud::directory("ACTIVE", "ACTIVE", "ACTIVE")
    }

    /// A leaver disabled and one deleted revoked, someone merely touched left alone, a
    /// returner restored with the same member, a group joined: each by the lane.
    pub(super) fn the_story(v: Vendor, cloud: &FakeCloud, server: &FakeBitwarden, env: &Env) {
        lane_env(env);
        let t = env.ok(&["test"]);
        assert!(
            t.stdout.contains(&format!(
                "Fast lane: the directory's change feed ({}) is available",
                v.feed
            )),
            "{}",
            t.stdout
        );
        let service = start(env);
        assert_eq!(mail_status(server, "dave"), Some(0));
        let full_runs = runs(env).len();

        // an event for someone who is still there: nothing done
        let reads = log_reads(cloud, v.log_path);
        cloud.dir().happen("alice", Happened::Touched);
        wait_for_service(&service, "two more looks at the log", || {
            (log_reads(cloud, v.log_path) >= reads + 2).then_some(())
        });
        if v.touched_read {
            wait_for_service(&service, "alice's event looked at", || {
                env.ok(&["history"])
                    .stdout
                    .contains("1 changed entries, nothing for the organization")
                    .then_some(())
            });
        }
        assert_eq!(runs(env).len(), full_runs, "no run for alice");

        let t0 = Instant::now();
        cloud.dir().happen("dave", Happened::Status(v.disabled));
        wait_for_service(&service, "dave revoked", || {
            (mail_status(server, "dave") == Some(REVOKED)).then_some(())
        });
        eprintln!(
            "fast lane ({}): disabled → revoked in {:?}",
            v.feed,
            t0.elapsed()
        );
        assert_eq!(mail_status(server, "alice"), Some(0), "alice untouched");

        let t0 = Instant::now();
        cloud.dir().happen("erin", Happened::Status(v.deleted));
        if v.purge {
            cloud.dir().happen("erin", Happened::Purged);
        }
        wait_for_service(&service, "erin revoked", || {
            (mail_status(server, "erin") == Some(REVOKED)).then_some(())
        });
        eprintln!(
            "fast lane ({}): deleted → revoked in {:?}",
            v.feed,
            t0.elapsed()
        );

        let dave = server.org().members["dave@example.com"].id.clone();
        let t0 = Instant::now();
        cloud.dir().happen("dave", Happened::Status("ACTIVE"));
        wait_for_service(&service, "dave restored", || {
            mail_status(server, "dave")
                .filter(|s| *s != REVOKED)
                .map(|_| ())
        });
        eprintln!(
            "fast lane ({}): returned → restored in {:?}",
            v.feed,
            t0.elapsed()
        );
        assert_eq!(server.org().members["dave@example.com"].id, dave);

        // carol joins Sales: the group follows
        assert!(!group_members(server, "Sales").contains(&"carol@example.com".to_string()));
        cloud.dir().happen("carol", Happened::Joined("g2".into()));
        wait_for_service(&service, "carol in Sales", || {
            group_members(server, "Sales")
                .contains(&"carol@example.com".to_string())
                .then_some(())
        });

        let all = runs(env);
        assert_eq!(
            all.len() - full_runs,
            all.iter().filter(|r| r["kind"] == "fast lane").count(),
            "every change went through the lane: {all:?}"
        );
        let log = service.log();
        assert!(
            log.contains(&format!("fast lane: 1 leaver ({})", v.dave))
                && log.contains(&format!("fast lane: 1 returner ({})", v.dave))
                && !log.contains("a full read"),
            "each change named, the cursor kept: {log}"
        );
        let _ = sigterm_and_wait(service);
    }

    /// An account that may not read the log: said in `test` and by the lane, which reads the
    /// directory in full every ten periods instead.
    pub(super) fn a_forbidden_log(cloud: &FakeCloud, env: &Env, why: &str) {
        lane_env(env);
        cloud.dir().log_forbidden = true;
        let t = env.ok(&["test"]);
        assert!(
            t.stdout.contains("Fast lane: no change feed:") && t.stdout.contains(why),
            "{}",
            t.stdout
        );
        let service = start_service(env, None);
        wait_for_service(&service, "the full read in place of the feed", || {
            finished_runs(env).filter(|n| *n >= 2)
        });
        let log = service.log();
        assert_eq!(log.matches(why).count(), 1, "said once: {log}");
        let _ = sigterm_and_wait(service);
    }

    mod okta {
        use super::*;

        #[test]
        fn okta_the_system_log_revokes_leavers_restores_returners_and_follows_groups() {
            let cloud = FakeCloud::start(super::directory());
            let server = FakeBitwarden::start();
            let env = crate::cloud::okta_env(&cloud, &server);
            let v = Vendor {
                feed: "Okta's System Log",
                disabled: "SUSPENDED",
                deleted: "DEPROVISIONED",
                purge: true,
                dave: "dave",
                log_path: "/api/v1/logs",
                touched_read: true,
            };
            the_story(v, &cloud, &server, &env);
        }

        #[test]
        fn okta_a_token_that_may_not_read_the_system_log_is_said_once() {
            let cloud = FakeCloud::start(super::directory());
            let server = FakeBitwarden::start();
            let env = crate::cloud::okta_env(&cloud, &server);
            a_forbidden_log(&cloud, &env, "may not read the System Log");
        }
    }

    mod onelogin {
        use super::*;

        #[test]
        fn onelogin_the_events_api_revokes_leavers_restores_returners_and_follows_roles() {
            let cloud = FakeCloud::start(super::directory());
            let server = FakeBitwarden::start();
            let env = crate::cloud::onelogin_env(&cloud, &server);
            let v = Vendor {
                feed: "OneLogin's Events API",
                disabled: "DISABLED",
                deleted: "DELETED",
                purge: false,
                dave: "1003",
                log_path: "/api/1/events [",
                touched_read: true,
            };
            the_story(v, &cloud, &server, &env);
            // only the watched event types were asked for (no sign-ins, no password changes)
            let asked = cloud.dir().requests.clone();
            let events = asked
                .iter()
                .find(|r| r.starts_with("/api/1/events ["))
                .cloned()
                .unwrap_or_default();
            assert!(
                events.contains("(\"event_type_id\", \"4,13,15,17,901,902,903,904\")"),
                "{events}"
            );
        }

        #[test]
        fn onelogin_a_credential_that_may_not_read_events_is_said_once() {
            let cloud = FakeCloud::start(super::directory());
            let server = FakeBitwarden::start();
            let env = crate::cloud::onelogin_env(&cloud, &server);
            a_forbidden_log(&cloud, &env, "may not read events");
        }
    }

    mod google {
        use super::*;

        fn google(log_forbidden: bool) -> (FakeCloud, FakeBitwarden, Env) {
            let (private, public) = crate::cloud::google_key();
            let mut d = super::directory();
            d.google_public_key = public;
            d.log_forbidden = log_forbidden;
            let cloud = FakeCloud::start(d);
            let server = FakeBitwarden::start();
            let env = crate::cloud::google_env(&cloud, &server, &private);
            (cloud, server, env)
        }

        #[test]
        fn google_the_reports_api_revokes_leavers_restores_returners_and_follows_groups() {
            let (cloud, server, env) = google(false);
            let v = Vendor {
                feed: "Google's Reports API (admin activity)",
                disabled: "DISABLED",
                deleted: "DELETED",
                purge: false,
                dave: "dave",
                log_path: "/admin/reports/v1/",
                touched_read: false,
            };
            the_story(v, &cloud, &server, &env);
        }

        #[test]
        fn google_a_renamed_user_is_followed_not_revoked() {
            // the log names the old and the new email: the old one is an alias of the same
            // user (or, without the alias, not found while the new one reads the same member):
            // nobody leaves, one change
            let (cloud, server, env) = google(false);
            lane_env(&env);
            let service = start(&env);
            let full_runs = runs(&env).len();
            cloud
                .dir()
                .happen("dave", Happened::Email("david@example.com".into()));
            wait_for_service(&service, "the rename's run", || {
                (runs(&env).len() > full_runs).then_some(())
            });
            let log = service.log();
            assert!(
                log.contains("fast lane: 1 change (dave (email))") && !log.contains("leaver"),
                "the old email is not a leaver: {log}"
            );
            assert_eq!(
                server.org().members["dave@example.com"].status,
                0,
                "dave is not revoked"
            );
            let _ = sigterm_and_wait(service);
        }

        #[test]
        fn google_a_service_account_without_the_reports_scope_is_said_once() {
            let (cloud, _server, env) = google(true);
            a_forbidden_log(&cloud, &env, "may not read the Reports API");
        }
    }
}
