//! End-to-end with thousands of users: paging against a size-limited slapd, automatic batches
//! with `largeImport`, and a network cut in the middle of a multi-batch sync.

use crate::support;

use std::collections::BTreeSet;

use support::Env;
use support::fake_bitwarden::FakeBitwarden;
use support::slapd::{Slapd, group, person, user_dn};

const USERS: usize = 4100;

fn big_directory() -> String {
    directory_of(USERS)
}

/// `users` people and one group of every seventh.
fn directory_of(users: usize) -> String {
    let mut l = String::with_capacity(users * 200);
    for i in 0..users {
        l.push_str(&person(
            &format!("user{i:05}"),
            Some(&format!("user{i:05}@example.com")),
            false,
        ));
    }
    let all: Vec<String> = (0..users)
        .step_by(7)
        .map(|i| user_dn(&format!("user{i:05}")))
        .collect();
    l.push_str(&group("Every Seventh", &all));
    l
}

#[test]
fn paging_reads_past_the_server_size_limit_and_non_paged_search_is_an_error() {
    let slapd = Slapd::start(&big_directory());
    let server = FakeBitwarden::start();
    let env = Env::new();
    env.configure(&slapd, &server);
    env.set("ldap.page_size", "300");
    let j = env.json(&["test"]);
    assert_eq!(j["enabledUsers"].as_array().unwrap().len(), USERS);
    env.set("ldap.paged_search", "false");
    let r = env.expect(&["test"], 1);
    assert!(r.stderr.contains("size limit"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("LDAP user search in `ou=People,dc=example,dc=com`"),
        "{}",
        r.stderr
    );
    assert_eq!(server.import_count(), 0);
}

#[test]
fn a_network_cut_mid_sync_leaves_the_cache_true_and_the_next_sync_completes() {
    let slapd = Slapd::start(&big_directory());
    let server = FakeBitwarden::start();
    let mut env = Env::new();
    env.set_var("DIRECTORY_CONNECTOR_RETRIES", "3");
    env.configure(&slapd, &server);
    server.org().cut_after_imports = Some(1);

    let r = env.expect(&["sync"], 1);
    assert!(
        r.stderr
            .contains("import member batch 2/3 (2000 members, 0 groups) failed"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("requests 1-1 were applied and recorded"),
        "{}",
        r.stderr
    );
    let first: BTreeSet<String> = server.org().emails();
    assert_eq!(first.len(), 2000);
    assert_eq!(
        env.cache_counts(),
        (2000, 0),
        "the cache holds exactly what the server confirmed"
    );
    {
        let org = server.org();
        let ok: Vec<_> = org.imports.iter().filter(|i| i.status == 200).collect();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].body()["largeImport"], true);
        assert_eq!(ok[0].body()["overwriteExisting"], false);
    }

    // the network comes back
    server.org().cut_after_imports = None;
    server.set_cut(false);
    let before = server.import_count();
    let r = env.ok(&["sync"]);
    assert!(r.stdout.contains("invite 2100"), "{}", r.stdout);
    // the report lists the first 50 changes and counts the rest
    assert_eq!(r.stdout.matches("┆ invite").count(), 50, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("... and 2050 more member changes not shown"),
        "{}",
        r.stdout
    );
    let org = server.org();
    assert_eq!(org.members.len(), USERS);
    let resent: Vec<String> = org.imports[before..]
        .iter()
        .flat_map(|i| i.body()["members"].as_array().cloned().unwrap_or_default())
        .map(|m| m["email"].as_str().unwrap().to_string())
        .filter(|e| first.contains(e))
        .collect();
    assert!(
        resent.is_empty(),
        "members already confirmed were sent again: {}",
        resent.len()
    );
    assert_eq!(
        org.imports.len() - before,
        3,
        "2100 members in two batches, then the group"
    );
    assert_eq!(org.group_emails("Every Seventh").len(), USERS.div_ceil(7));
    drop(org);
    assert_eq!(env.cache_counts(), (USERS, 1));

    // overwrite_existing cannot span batches
    env.ok(&["clear-cache"]);
    env.set("sync.overwrite_existing", "true");
    let r = env.expect(&["sync"], 2);
    assert!(
        r.stderr.contains("overwrite_existing cannot be used"),
        "{}",
        r.stderr
    );
}

#[test]
fn members_go_out_while_groups_are_read_and_a_failed_group_read_keeps_the_cache_true() {
    members_outlast_a_failed_group_read(USERS, 3);
}

/// Members that fill one request on their own go out before the groups are read too (the push
/// is split into member and group requests anyway): here exactly one request's worth.
#[test]
fn a_full_request_of_members_goes_out_while_groups_are_read() {
    members_outlast_a_failed_group_read(2000, 1);
}

/// `users` people: the user search works, the group search fails, and by then the members'
/// `requests` requests have gone out; the cache holds exactly what the server confirmed, and
/// the next sync sends only the group.
fn members_outlast_a_failed_group_read(users: usize, requests: usize) {
    let slapd = Slapd::start(&directory_of(users));
    let server = FakeBitwarden::start();
    let env = Env::new();
    env.configure(&slapd, &server);
    env.set("sync.group_path", "ou=Nowhere");
    let r = env.expect(&["sync"], 1);
    assert!(
        r.stderr
            .contains("LDAP group search in `ou=Nowhere,dc=example,dc=com`"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!(
            "{requests} member request(s) had been applied and recorded; the next sync sends \
             the groups"
        )),
        "{}",
        r.stderr
    );
    assert_eq!(server.org().members.len(), users);
    assert!(server.org().groups.is_empty());
    assert_eq!(
        env.cache_counts(),
        (users, 0),
        "the cache holds exactly what the server confirmed"
    );

    env.set("sync.group_path", "ou=Groups");
    let before = server.import_count();
    env.ok(&["sync"]);
    assert_eq!(server.import_count() - before, 1, "only the group is sent");
    assert_eq!(
        server.org().group_emails("Every Seventh").len(),
        users.div_ceil(7)
    );
    assert_eq!(env.cache_counts(), (users, 1));
}
