//! End-to-end: what the client does with server answers that are wrong or that limit it. The
//! real binary against a real slapd and the fake server: a member list whose paging repeats a
//! continuation token, cycles or answers 404 on a later page; a 404 on a group's member ids; a
//! short group list; a truncated member list; an import answered with a redirect (Bitwarden and
//! Vaultwarden); a token endpoint that answers 429 without `Retry-After`. Each test asserts on
//! the organization and the sync cache, not only on messages.
//!
//! The first tests check the fake's model of the Bitwarden cloud's rate limits
//! ([`support::cloud_limits`]): fixed windows, refusals not counted, the block after more than
//! ten refusals, its end, the token rule and other clients behind the same IP; the last test
//! syncs under those limits.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use support::Env;
use support::cloud_limits::{Answer, CloudLimits, Kind, LOCALHOST};
use support::fake_bitwarden::{FakeBitwarden, PagingFault, ServerKind};
use support::slapd::{self, Slapd, person, user_dn};

// ---------------------------------------------------------------------------------------------
// The rate limiter (server time given, no waiting)

fn passed(a: Answer) -> bool {
    a == Answer::Passed
}

fn refused(a: Answer) -> Option<(u64, &'static str)> {
    match a {
        Answer::Refused {
            retry_after,
            period,
        } => Some((retry_after, period)),
        _ => None,
    }
}

#[test]
fn limits_use_fixed_windows_per_second_and_per_minute() {
    let mut l = CloudLimits::cloud();
    // five in a second, the sixth refused until the window that opened at 0 ends
    for i in 0..5 {
        assert!(passed(l.admit_at(LOCALHOST, Kind::Members, 0.1 * i as f64)));
    }
    assert_eq!(
        refused(l.admit_at(LOCALHOST, Kind::Groups, 0.6)),
        Some((1, "1s"))
    );
    // a new second window opens at 1.0 (fixed, not sliding: 0.1..0.4 are not counted in it)
    assert!(passed(l.admit_at(LOCALHOST, Kind::MemberIds, 1.0)));
    // four a second stay under the second rule; the minute's 60 run out at 60 requests
    let mut l = CloudLimits::cloud();
    for i in 0..60 {
        let a = l.admit_at(LOCALHOST, Kind::MemberIds, 0.25 * i as f64);
        assert!(passed(a), "request {i}: {a:?}");
    }
    assert_eq!(
        refused(l.admit_at(LOCALHOST, Kind::Import, 15.0)),
        Some((45, "1m"))
    );
    // Retry-After is at least 1
    assert_eq!(
        refused(l.admit_at(LOCALHOST, Kind::Import, 59.9)),
        Some((1, "1m"))
    );
    // the minute window that opened at 0 ends at 60
    assert!(passed(l.admit_at(LOCALHOST, Kind::Import, 60.0)));
    assert_eq!(l.refusals().len(), 2);
    assert_eq!(l.requests(Kind::Import), 3);
    assert!(!l.is_blocked_at(LOCALHOST, 60.0));
}

#[test]
fn refused_requests_are_not_counted() {
    let mut l = CloudLimits::cloud();
    // 55 counted in seconds 0..=10, each second's window also refusing 4 more
    for s in 0..=10 {
        for i in 0..5 {
            assert!(passed(l.admit_at(
                LOCALHOST,
                Kind::Members,
                s as f64 + 0.01 * i as f64
            )));
        }
        if s == 10 {
            for i in 0..4 {
                assert!(
                    refused(l.admit_at(LOCALHOST, Kind::Members, 10.5 + 0.01 * i as f64)).is_some()
                );
            }
        }
    }
    // 55 counted: five more fit in the minute (the four refusals did not count)
    for i in 0..5 {
        let a = l.admit_at(LOCALHOST, Kind::Members, 11.0 + 0.01 * i as f64);
        assert!(passed(a), "{i}: {a:?}");
    }
    assert_eq!(
        refused(l.admit_at(LOCALHOST, Kind::Members, 12.0)),
        Some((48, "1m"))
    );
}

#[test]
fn the_eleventh_refusal_within_five_minutes_blocks_for_fifteen() {
    let mut l = CloudLimits::cloud();
    l.spend_other_at(LOCALHOST, Kind::Members, 60, 0.0);
    // ten refusals, a minute apart and more: the count's expiration slides
    for i in 0..10 {
        let a = l.admit_at(LOCALHOST, Kind::Members, 1.0 + 4.0 * i as f64);
        assert!(refused(a).is_some(), "{i}: {a:?}");
        assert!(!l.is_blocked_at(LOCALHOST, 1.0 + 4.0 * i as f64));
    }
    // the eleventh is refused (429) and blocks the IP
    let a = l.admit_at(LOCALHOST, Kind::Members, 50.0);
    assert!(refused(a).is_some(), "{a:?}");
    assert!(l.is_blocked_at(LOCALHOST, 50.0));
    // everything gets the 403 now, identity too, also after the windows ended
    assert_eq!(l.admit_at(LOCALHOST, Kind::Token, 61.0), Answer::Blocked);
    assert_eq!(l.admit_at(LOCALHOST, Kind::Import, 949.9), Answer::Blocked);
    assert_eq!(l.blocked_answers().len(), 2);
    // lifted after 15 minutes
    assert!(!l.is_blocked_at(LOCALHOST, 950.1));
    assert!(passed(l.admit_at(LOCALHOST, Kind::Members, 950.1)));
    // another IP was never blocked
    let other = "10.0.0.7".parse().unwrap();
    assert!(!l.is_blocked_at(other, 100.0));
}

#[test]
fn refusals_five_minutes_apart_do_not_add_up_to_a_block() {
    let mut l = CloudLimits::cloud();
    let refuse = |l: &mut CloudLimits, t: f64| {
        l.spend_other_at(LOCALHOST, Kind::Groups, 60, t);
        for i in 0..10 {
            assert!(refused(l.admit_at(LOCALHOST, Kind::Groups, t + 0.01 * i as f64)).is_some());
        }
    };
    refuse(&mut l, 0.0);
    // more than 5 minutes without a refusal: the count starts again
    refuse(&mut l, 400.0);
    assert!(!l.is_blocked_at(LOCALHOST, 401.0));
    assert_eq!(l.refusals().len(), 20);
    // one more within 5 minutes of the last is the eleventh
    assert!(refused(l.admit_at(LOCALHOST, Kind::Groups, 401.0)).is_some());
    assert!(l.is_blocked_at(LOCALHOST, 401.0));
}

#[test]
fn the_token_endpoint_allows_ten_a_minute_counted_by_identity() {
    let mut l = CloudLimits::cloud();
    for i in 0..10 {
        assert!(passed(l.admit_at(LOCALHOST, Kind::Token, i as f64)));
    }
    assert_eq!(
        refused(l.admit_at(LOCALHOST, Kind::Token, 10.0)),
        Some((50, "1m"))
    );
    // the API counts on its own
    for i in 0..5 {
        assert!(passed(l.admit_at(
            LOCALHOST,
            Kind::Members,
            10.0 + 0.01 * i as f64
        )));
    }
    assert!(passed(l.admit_at(LOCALHOST, Kind::Token, 60.0)));
}

#[test]
fn other_clients_behind_the_same_ip_spend_the_budget() {
    let mut l = CloudLimits::cloud();
    l.spend_other_at(LOCALHOST, Kind::Import, 58, 0.0);
    // counted in the second window too
    assert_eq!(
        refused(l.admit_at(LOCALHOST, Kind::Members, 0.5)),
        Some((1, "1s"))
    );
    assert!(passed(l.admit_at(LOCALHOST, Kind::Members, 1.0)));
    assert!(passed(l.admit_at(LOCALHOST, Kind::Members, 1.5)));
    assert_eq!(
        refused(l.admit_at(LOCALHOST, Kind::Members, 2.0)),
        Some((58, "1m"))
    );
    // the other clients' requests are not in the record
    assert_eq!(l.log.len(), 4);
}

#[test]
fn the_time_scale_runs_the_server_clock_faster() {
    let l = CloudLimits::cloud().scaled(30.0);
    std::thread::sleep(Duration::from_millis(200));
    let now = l.now();
    assert!((6.0..30.0).contains(&now), "{now}");
}

/// One HTTP/1.1 request to the fake: (status, headers in lower case, body).
fn http(url: &str, method: &str, path: &str) -> (u16, String, String) {
    let addr = url.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_lowercase(), body.to_string())
}

#[test]
fn the_fake_answers_429_then_blocks_with_the_edge_page() {
    let server = FakeBitwarden::start_with(ServerKind::Bitwarden, Some(CloudLimits::cloud()));
    // other clients behind this IP spent the minute
    server
        .org()
        .limits
        .as_mut()
        .unwrap()
        .spend_other(Kind::Members, 60);
    let (status, head, body) = http(&server.url, "GET", "/api/public/members");
    assert_eq!(status, 429, "{head}");
    let retry: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{head}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    // the refusing rule's period: the second's (or the minute's, on a slow machine)
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Slow down! Too many requests. Try again in 1")),
        "{body}"
    );
    // the identity service counts on its own: a token request passes (and fails on its form)
    let (status, _, _) = http(&server.url, "POST", "/identity/connect/token");
    assert_eq!(status, 415);
    for _ in 0..10 {
        let (status, _, _) = http(&server.url, "GET", "/api/public/groups");
        assert_eq!(status, 429);
    }
    let (status, head, body) = http(&server.url, "POST", "/identity/connect/token");
    assert_eq!(status, 403, "{head}");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(body.contains("<html>"), "{body}");
    let org = server.org();
    let l = org.limits.as_ref().unwrap();
    assert!(l.is_blocked(LOCALHOST));
    assert_eq!(l.refusals().len(), 11);
    assert_eq!(l.blocked_answers().len(), 1);
    assert_eq!(l.requests(Kind::Token), 2);
    assert_eq!(l.requests(Kind::Groups), 10);
    // a Vaultwarden (self-hosted) has no limits, whatever is asked
    let vw = FakeBitwarden::start_with(
        ServerKind::Vaultwarden {
            groups_enabled: true,
        },
        Some(CloudLimits::cloud()),
    );
    assert!(vw.org().limits.is_none());
}

// ---------------------------------------------------------------------------------------------
// The client against wrong answers

const USERS: usize = 50;

fn email(i: usize) -> String {
    format!("u{i}@example.com")
}

fn group(cn: &str, members: std::ops::Range<usize>) -> String {
    let mut s = format!(
        "dn: cn={cn},ou=Groups,{}\nobjectClass: groupOfNames\ncn: {cn}\n",
        slapd::BASE
    );
    for i in members {
        s.push_str(&format!("member: {}\n", user_dn(&format!("u{i}"))));
    }
    s.push('\n');
    s
}

/// Fifty users; `All` has everyone, `Half` the first 25, `Team` the first ten.
fn directory() -> String {
    let mut l = String::new();
    for i in 0..USERS {
        l.push_str(&person(&format!("u{i}"), Some(&email(i)), false));
    }
    l.push_str(&group("All", 0..USERS));
    l.push_str(&group("Half", 0..25));
    l.push_str(&group("Team", 0..10));
    l
}

/// A first sync of the fifty users and three groups; `remove_missing_users` on.
fn setup(server: FakeBitwarden) -> (Slapd, FakeBitwarden, Env) {
    let slapd = Slapd::start(&directory());
    let mut env = Env::new();
    env.set_var("DIRECTORY_CONNECTOR_RETRIES", "1");
    env.configure(&slapd, &server);
    env.set("sync.remove_missing_users", "true");
    let r = env.ok(&["sync"]);
    assert!(r.stdout.contains("Sync complete"), "{}", r.stdout);
    assert_eq!(server.org().active_emails().len(), USERS);
    assert_eq!(server.org().group_emails("Team").len(), 10);
    assert_eq!(env.cache_counts(), (USERS, 3));
    (slapd, server, env)
}

const LIMIT: Duration = Duration::from_secs(90);

/// Runs a command that must end (a list that never ends must not hang it).
fn bounded(env: &Env, args: &[&str]) -> support::Run {
    env.run_bounded(args, LIMIT)
        .unwrap_or_else(|| panic!("`{}` did not end within {LIMIT:?}", args.join(" ")))
}

/// Asserts a failed sync (`run`) changed nothing: the organization (members, groups), no
/// import, the cache's counts as before.
fn assert_untouched(
    server: &FakeBitwarden,
    env: &Env,
    imports: usize,
    what: &str,
    run: &support::Run,
) {
    let what = format!("{what} (exit {}: {})", run.code, run.all());
    let org = server.org();
    assert_eq!(org.active_emails().len(), USERS, "{what}: nobody removed");
    assert!(org.active_emails().contains(&email(49)), "{what}");
    assert_eq!(org.group_emails("Team").len(), 10, "{what}");
    assert_eq!(org.group_emails("Half").len(), 25, "{what}");
    assert_eq!(org.imports.len(), imports, "{what}: nothing pushed");
    drop(org);
    assert_eq!(
        env.cache_counts(),
        (USERS, 3),
        "{what}: the cache is as before"
    );
}

/// After the fault is gone, the sync that was held back goes through: u49 (deleted from the
/// directory) is removed.
fn assert_recovers(server: &FakeBitwarden, env: &Env) {
    let r = bounded(env, &["sync"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(server.org().active_emails().len(), USERS - 1);
    assert!(!server.org().active_emails().contains(&email(49)));
    assert_eq!(env.cache_counts(), (USERS - 1, 3));
}

#[test]
fn a_repeated_or_cycling_continuation_token_fails_the_read_and_nothing_hangs() {
    let (slapd, server, env) = setup(FakeBitwarden::start());
    env.set("sync.overwrite_existing", "true");
    // a change the sync would send
    slapd.delete(&user_dn("u49"));
    let imports = server.import_count();
    server.org().member_page_size = Some(20);
    for fault in [
        // page-2 → page-3 → page-2 … (a client that does not see it never ends)
        PagingFault::Cycle { from: 3, to: 2 },
        // page 2 sends back the token it was asked with
        PagingFault::RepeatToken { page: 2 },
    ] {
        server.org().paging_fault = Some(fault);
        let r = bounded(&env, &["sync"]);
        assert_untouched(&server, &env, imports, &format!("{fault:?}"), &r);
        assert_eq!(r.code, 1, "{fault:?}: {}", r.all());
        assert!(
            r.stderr.contains("continuation token") && r.stderr.contains("/public/members"),
            "{fault:?}: {}",
            r.stderr
        );
        // a preview ends too, and says why it could not use the organization
        let r = bounded(&env, &["test"]);
        assert_untouched(&server, &env, imports, &format!("{fault:?}, test"), &r);
        assert!(
            r.all().contains("continuation token"),
            "{fault:?}: {}",
            r.all()
        );
    }
    server.org().paging_fault = None;
    assert_recovers(&server, &env);
}

#[test]
fn a_404_on_a_later_page_fails_the_read_instead_of_using_the_cache() {
    let (slapd, server, env) = setup(FakeBitwarden::start());
    slapd.delete(&user_dn("u49"));
    let imports = server.import_count();
    {
        let mut org = server.org();
        org.member_page_size = Some(20);
        org.paging_fault = Some(PagingFault::NotFound { page: 2 });
    }
    let r = bounded(&env, &["sync"]);
    assert_untouched(&server, &env, imports, "404 on page 2", &r);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("page 2 answered 404") && r.stderr.contains("incomplete"),
        "{}",
        r.stderr
    );
    assert!(
        !r.all().contains("local sync cache"),
        "no switch to the cache: {}",
        r.all()
    );
    server.org().paging_fault = None;
    assert_recovers(&server, &env);
}

#[test]
fn a_missing_member_id_list_or_a_truncated_member_list_fails_the_read() {
    let (slapd, server, env) = setup(FakeBitwarden::start());
    slapd.delete(&user_dn("u49"));
    let imports = server.import_count();

    // the member ids of a group the list names answer 404 (a sync that reads every group)
    server.org().member_ids_404.insert("Team".into());
    let r = bounded(&env, &["sync", "--reconcile"]);
    assert_untouched(&server, &env, imports, "member ids 404", &r);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("`Team`") && r.stderr.contains("404"),
        "{}",
        r.stderr
    );
    server.org().member_ids_404.clear();

    // 50 → 19 members listed; the groups still name the others. A sync that reads every
    // group finds members the list lacks; one that takes the groups from the cache finds the
    // list far shorter than what the cache confirmed (the member guard's percentage)
    server.org().hidden_members.extend((19..USERS).map(email));
    let r = bounded(&env, &["sync", "--reconcile"]);
    assert_untouched(&server, &env, imports, "truncated member list", &r);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("member list is incomplete") && r.stderr.contains("(19 members)"),
        "{}",
        r.stderr
    );
    // a sync that takes the groups from the cache finds the list far shorter than what the
    // cache confirmed
    let r = bounded(&env, &["sync"]);
    assert_untouched(&server, &env, imports, "truncated member list", &r);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(
        r.stderr.contains("looks incomplete") && r.stderr.contains("31 of the 50"),
        "{}",
        r.stderr
    );
    server.org().hidden_members.clear();

    assert_recovers(&server, &env);
}

/// A group left out of `GET /public/groups` (the list is short; its members and their rows are
/// all there). Nothing in one read shows it: the client takes the group for new, pushes (here:
/// the removal of u49 and the group), then its check after the push finds the group missing and
/// the cache is written without it.
/// The groups a sync does not read come from the cache's last confirmed rows: a member list
/// that lost more than `sync.max_removal_percent` of the members the cache confirmed is refused
/// as a short answer even when no group read shows it (a sync right after the last reads none).
#[test]
fn a_member_list_far_shorter_than_the_cache_is_refused() {
    let (_slapd, server, env) = setup(FakeBitwarden::start());
    let imports = server.import_count();
    server.org().hidden_members.extend((25..USERS).map(email));
    let r = bounded(&env, &["sync"]);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(
        r.stderr.contains("looks incomplete") && r.stderr.contains("25 of the 50"),
        "{}",
        r.stderr
    );
    {
        let org = server.org();
        assert_eq!(org.imports.len(), imports, "nothing pushed");
        assert_eq!(org.active_emails().len(), USERS);
    }
    assert_eq!(
        env.cache_counts(),
        (USERS, 3),
        "the cache is not overwritten"
    );
    server.org().hidden_members.clear();
    let j = env.json(&["sync"]);
    assert_eq!(j["outcome"], "unchanged", "{j}");
}

#[test]
fn a_short_group_list_is_refused_by_the_group_guard() {
    let (slapd, server, env) = setup(FakeBitwarden::start());
    slapd.delete(&user_dn("u49"));
    let imports = server.import_count();
    server.org().hidden_groups.insert("Team".into());
    let r = bounded(&env, &["sync"]);
    assert_untouched(&server, &env, imports, "short group list", &r);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(
        r.stderr.contains("does not have group `Team`"),
        "{}",
        r.stderr
    );
    // `test` says the same
    let t = env.run(&["test"]);
    assert!(
        t.stdout.contains("does not have group `Team`"),
        "{}",
        t.all()
    );
    server.org().hidden_groups.clear();
    assert_recovers(&server, &env);
}

#[test]
fn an_import_answered_with_a_redirect_fails_and_is_sent_again() {
    for kind in [
        ServerKind::Bitwarden,
        ServerKind::Vaultwarden {
            groups_enabled: true,
        },
    ] {
        let (slapd, server, env) = setup(FakeBitwarden::start_with(kind, None));
        slapd.add(&person("u50", Some(&email(50)), false));
        let imports = server.import_count();
        server.org().import_redirect = Some(302);
        let r = bounded(&env, &["sync"]);
        {
            let org = server.org();
            // the request arrived (and was not applied), nobody followed the redirect
            assert_eq!(org.imports.len(), imports + 1, "{kind:?}");
            assert_eq!(org.imports.last().unwrap().status, 302, "{kind:?}");
            assert!(
                org.redirects_followed.is_empty(),
                "{kind:?}: {:?}: {}",
                org.redirects_followed,
                r.all()
            );
            assert!(!org.active_emails().contains(&email(50)), "{kind:?}");
        }
        // the cache does not claim the change
        assert_eq!(env.cache_counts(), (USERS, 3), "{kind:?}: {}", r.all());
        assert_eq!(r.code, 1, "{kind:?}: {}", r.all());
        assert!(
            r.stderr.contains("redirect") && r.stderr.contains(&format!("{}/moved/", server.url)),
            "{kind:?}: {}",
            r.stderr
        );
        // without the redirect, the next sync sends it again
        server.org().import_redirect = None;
        let r = bounded(&env, &["sync"]);
        assert_eq!(r.code, 0, "{kind:?}: {}", r.all());
        assert!(
            server.org().active_emails().contains(&email(50)),
            "{kind:?}"
        );
        assert_eq!(env.cache_counts(), (USERS + 1, 3), "{kind:?}");
    }
}

#[test]
fn a_token_429_without_retry_after_waits_for_the_window() {
    let (slapd, server, mut env) = setup(FakeBitwarden::start());
    slapd.add(&person("u50", Some(&email(50)), false));
    // the cloud's token window: 60 s, 6 s with a retry base of 100 ms
    env.set_var("DIRECTORY_CONNECTOR_RETRY_BASE_MS", "100");
    env.remove_var("DIRECTORY_CONNECTOR_RETRIES");
    let refused_for = Duration::from_secs(4);
    server.org().token_429_for = Some(refused_for);
    let tokens = server.org().token_requests;
    let started = Instant::now();
    let r = bounded(&env, &["sync"]);
    let took = started.elapsed();
    assert_eq!(r.code, 0, "after {took:?}: {}", r.all());
    assert!(took >= refused_for, "{took:?}");
    assert!(took < Duration::from_secs(40), "{took:?}");
    let org = server.org();
    assert!(
        org.token_requests >= tokens + 2,
        "refused, then asked again"
    );
    assert!(org.active_emails().contains(&email(50)));
    drop(org);
    assert_eq!(env.cache_counts(), (USERS + 1, 3));
}

/// A sync against the cloud's limits at 30 times real speed (a minute lasts 2 s): alone it is
/// never refused; when other clients behind the same IP have spent the minute, it waits out
/// `Retry-After` (in server seconds, divided by the time scale) instead of being refused into a
/// block.
#[test]
fn a_sync_within_the_cloud_limits_is_never_blocked() {
    const SCALE: f64 = 30.0;
    let server = FakeBitwarden::start_with(
        ServerKind::Bitwarden,
        Some(CloudLimits::cloud().scaled(SCALE)),
    );
    let slapd = Slapd::start(&directory());
    let mut env = Env::new();
    env.set_var("DIRECTORY_CONNECTOR_TIME_SCALE", &SCALE.to_string());
    env.configure(&slapd, &server);
    env.set("server.max_requests_per_second", "4");
    env.set("server.max_requests_per_minute", "50");
    env.set("sync.remove_missing_users", "true");
    let r = bounded(&env, &["sync"]);
    assert_eq!(r.code, 0, "{}", r.all());
    {
        let org = server.org();
        let l = org.limits.as_ref().unwrap();
        assert!(l.refusals().is_empty(), "alone: {:?}", l.refusals());
        assert_eq!(org.active_emails().len(), USERS);
    }
    // other clients behind this IP spent the whole minute (two seconds ago: their second is
    // over, the minute is not)
    slapd.delete(&user_dn("u49"));
    {
        let mut org = server.org();
        let l = org.limits.as_mut().unwrap();
        let now = l.now();
        l.spend_other_at(LOCALHOST, Kind::Members, 60, now - 2.0);
    }
    let r = bounded(&env, &["sync"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let org = server.org();
    let l = org.limits.as_ref().unwrap();
    assert!(!l.is_blocked(LOCALHOST));
    assert!(l.blocked_answers().is_empty());
    assert!(l.refusals().len() <= 3, "{:?}", l.refusals());
    assert_eq!(org.active_emails().len(), USERS - 1);
    drop(org);
    assert_eq!(env.cache_counts(), (USERS - 1, 3));
}
