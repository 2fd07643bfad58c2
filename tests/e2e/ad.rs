//! End-to-end against a real Active Directory: a Samba AD DC (provisioned once for this test
//! process) and the fake Bitwarden server, through the real binary. Each test works in its
//! own OU.

use crate::support;

use std::collections::BTreeSet;

use support::Env;
use support::fake_bitwarden::{FakeBitwarden, member_changes};
use support::samba::{self, dc, dn, ou_ldif, unique_ou};

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Points an environment at the DC, scoped to one OU, as the reader service account.
pub(crate) fn configure(env: &Env, server: &FakeBitwarden, ou: &str) {
    let d = dc();
    env.set("server.url", &server.url);
    // the removal path (revoke-first is tests/e2e/lifecycle.rs)
    env.set("sync.remove_revoked_after_days", "0");
    env.set("directory.type", "ldap");
    env.set("ldap.ad", "true");
    env.set("ldap.hostname", "127.0.0.1");
    env.set("ldap.root_path", samba::BASE);
    env.set("ldap.username", samba::READER);
    env.set("ldap.ca_file", d.ca().to_str().unwrap());
    let r = env.run_stdin(&["config", "set", "ldap.password"], samba::READER_PW);
    assert_eq!(r.code, 0, "{}", r.all());
    env.set("sync.user_path", &format!("OU={ou}"));
    env.set("sync.group_path", &format!("OU={ou}"));
}

/// Alice, Bob (disabled), Carol; Dave and Erin; Staff = {Alice, Bob, Devs}; Devs = {Carol,
/// Ops}; Ops = {Dave}: three levels of nesting.
fn seed(ou: &str) {
    dc().modify(&ou_ldif(
        ou,
        &[
            ("Alice", Some("alice@example.test"), false),
            ("Bob", Some("bob@example.test"), true),
            ("Carol", Some("Carol@Example.test"), false),
            ("Dave", Some("dave@example.test"), false),
            ("Erin", Some("erin@example.test"), false),
        ],
        &[
            ("Ops", &["Dave"]),
            ("Devs", &["Carol", "Ops"]),
            ("Staff", &["Alice", "Bob", "Devs"]),
        ],
    ));
}

fn group_user_ids(j: &serde_json::Value, name: &str) -> BTreeSet<String> {
    j["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == name)
        .unwrap_or_else(|| panic!("group {name} in {j}"))["userIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn ad_sync_uses_guids_disabled_flags_and_nested_groups() {
    let ou = unique_ou("sync");
    seed(&ou);
    let d = dc();
    let server = FakeBitwarden::start();
    let env = Env::new();
    configure(&env, &server, &ou);

    let j = env.json(&["test"]);
    let enabled: BTreeSet<String> = j["enabledUsers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["externalId"].as_str().unwrap().to_string())
        .collect();
    let alice = d.guid(&dn(&ou, "Alice"));
    let carol = d.guid(&dn(&ou, "Carol"));
    let dave = d.guid(&dn(&ou, "Dave"));
    let bob = d.guid(&dn(&ou, "Bob"));
    assert!(
        enabled.contains(&alice),
        "objectGUID is the externalId: {j}"
    );
    assert_eq!(enabled.len(), 4, "{j}");
    let disabled = j["disabledUsers"].as_array().unwrap();
    assert_eq!(disabled.len(), 1, "{j}");
    assert_eq!(disabled[0]["externalId"], bob.as_str());
    // Staff holds its direct members and everyone under Devs and Ops
    assert_eq!(
        group_user_ids(&j, "Staff"),
        [&alice, &bob, &carol, &dave].into_iter().cloned().collect()
    );
    assert_eq!(
        group_user_ids(&j, "Devs"),
        [&carol, &dave].into_iter().cloned().collect()
    );

    env.set("sync.remove_disabled", "true");
    env.ok(&["sync"]);
    let org = server.org();
    assert_eq!(
        org.emails(),
        set(&[
            "alice@example.test",
            "carol@example.test",
            "dave@example.test",
            "erin@example.test"
        ]),
        "disabled Bob is not a member"
    );
    assert_eq!(
        org.group_emails("Staff"),
        set(&[
            "alice@example.test",
            "carol@example.test",
            "dave@example.test"
        ])
    );
    assert!(org.group_external_ids("Ops").contains(&dave));
    assert_eq!(
        org.members["dave@example.test"].external_id.as_deref(),
        Some(dave.as_str())
    );
}

#[test]
fn in_chain_matching_rule_gives_the_same_memberships() {
    let ou = unique_ou("chain");
    seed(&ou);
    let server = FakeBitwarden::start();
    let env = Env::new();
    configure(&env, &server, &ou);
    let walked = env.json(&["test"]);
    env.set("ldap.in_chain_membership", "true");
    let chained = env.json(&["test"]);
    for g in ["Staff", "Devs", "Ops"] {
        assert_eq!(
            group_user_ids(&walked, g),
            group_user_ids(&chained, g),
            "group {g}"
        );
    }
    assert_eq!(group_user_ids(&chained, "Staff").len(), 4);
}

#[test]
fn ranged_member_retrieval_reads_every_range() {
    let ou = unique_ou("range");
    let names: Vec<String> = (0..7).map(|i| format!("Member{i}")).collect();
    let users: Vec<(String, String)> = names
        .iter()
        .map(|n| (n.clone(), format!("{}@example.test", n.to_lowercase())))
        .collect();
    let user_refs: Vec<(&str, Option<&str>, bool)> = users
        .iter()
        .map(|(n, m)| (n.as_str(), Some(m.as_str()), false))
        .collect();
    let member_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    dc().modify(&ou_ldif(&ou, &user_refs, &[("Big", &member_refs)]));
    let server = FakeBitwarden::start();
    let env = Env::new();
    configure(&env, &server, &ou);
    // ask for 2 values at a time: `member;range=0-1`, `2-3`, … (Samba honours explicit ranges
    // but does not cut by itself, as AD does at 1500)
    env.set("ldap.member_range_size", "2");
    let j = env.json(&["test"]);
    assert_eq!(group_user_ids(&j, "Big").len(), 7, "{j}");
    env.set("ldap.member_range_size", "1500");
    let j = env.json(&["test"]);
    assert_eq!(group_user_ids(&j, "Big").len(), 7);
}

#[test]
fn paging_reads_every_page() {
    let ou = unique_ou("page");
    let users: Vec<(String, String)> = (0..12)
        .map(|i| (format!("P{i:02}"), format!("p{i:02}@example.test")))
        .collect();
    let refs: Vec<(&str, Option<&str>, bool)> = users
        .iter()
        .map(|(n, m)| (n.as_str(), Some(m.as_str()), false))
        .collect();
    dc().modify(&ou_ldif(&ou, &refs, &[]));
    let server = FakeBitwarden::start();
    let env = Env::new();
    configure(&env, &server, &ou);
    env.set("ldap.page_size", "5");
    env.ok(&["sync"]);
    assert_eq!(server.org().members.len(), 12);
}

#[test]
fn deleted_objects_become_removals_and_the_guard_still_applies() {
    let ou = unique_ou("del");
    seed(&ou);
    let d = dc();
    let server = FakeBitwarden::start();
    let env = Env::new();
    configure(&env, &server, &ou);
    // listing CN=Deleted Objects takes rights ordinary accounts lack (on AD as on Samba):
    // bind as the administrator here
    env.set("ldap.username", samba::ADMIN);
    let r = env.run_stdin(&["config", "set", "ldap.password"], samba::ADMIN_PW);
    assert_eq!(r.code, 0, "{}", r.all());
    env.set("ldap.deleted_objects", "true");
    env.ok(&["sync"]);
    assert_eq!(server.org().members.len(), 5);

    // Carol goes to the Deleted Objects container: a tombstone, mail stripped, same GUID
    d.delete(&dn(&ou, "Carol"));
    let j = env.json(&["test"]);
    let carol_deleted = j["deletedUsers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["referenceId"].as_str().unwrap().contains("Carol\\0ADEL:"));
    assert!(carol_deleted, "tombstone listed: {j}");
    let r = env.ok(&["sync"]);
    assert!(r.stdout.contains("Sync complete"), "{}", r.all());
    assert!(
        !server.org().emails().contains("carol@example.test"),
        "the tombstone removed Carol"
    );
    let removed = member_changes(&server.last_body())
        .iter()
        .filter(|(_, deleted)| *deleted)
        .count();
    assert_eq!(removed, 1);

    // three more deletions over a limit of two: refused, nothing removed
    env.set("sync.max_removals", "2");
    env.set("sync.max_removal_percent", "100");
    for u in ["Alice", "Dave", "Erin"] {
        d.delete(&dn(&ou, u));
    }
    let before = server.import_count();
    let r = env.expect(&["sync"], 3);
    assert!(r.all().contains("3"), "{}", r.all());
    assert_eq!(server.import_count(), before);
    assert_eq!(server.org().members.len(), 4);
    env.ok(&["sync", "--allow-mass-removal"]);
    assert_eq!(
        server.org().emails(),
        set(&["bob@example.test"]),
        "only Bob (disabled, kept) is left"
    );
}

#[test]
fn bind_errors_are_sentences() {
    let ou = unique_ou("bind");
    seed(&ou);
    let d = dc();
    let server = FakeBitwarden::start();
    let env = Env::new();
    configure(&env, &server, &ou);

    let r = env.run_stdin(&["config", "set", "ldap.password"], "wrong-password");
    assert_eq!(r.code, 0);
    let r = env.expect(&["test"], 1);
    assert!(
        r.stderr.contains("wrong user name or password") && r.stderr.contains("svc-reader"),
        "{}",
        r.stderr
    );

    env.set("ldap.username", samba::DISABLED);
    let r = env.run_stdin(&["config", "set", "ldap.password"], samba::OTHER_PW);
    assert_eq!(r.code, 0);
    let r = env.expect(&["test"], 1);
    assert!(r.stderr.contains("the account is disabled"), "{}", r.stderr);

    // lock the account out with wrong passwords (threshold 3), then bind correctly
    for _ in 0..4 {
        assert!(!d.try_bind(samba::LOCKABLE, "nope"));
    }
    env.set("ldap.username", samba::LOCKABLE);
    let r = env.expect(&["test"], 1);
    assert!(r.stderr.contains("locked out"), "{}", r.stderr);
    assert_eq!(server.import_count(), 0);
}

#[test]
fn starttls_and_ldaps_with_the_test_ca() {
    let ou = unique_ou("tls");
    seed(&ou);
    let server = FakeBitwarden::start();
    let env = Env::new();
    configure(&env, &server, &ou);
    env.set("ldap.encryption", "starttls");
    let j = env.json(&["test"]);
    assert_eq!(j["enabledUsers"].as_array().unwrap().len(), 4);
    env.set("ldap.encryption", "ldaps");
    let j = env.json(&["test"]);
    assert_eq!(j["enabledUsers"].as_array().unwrap().len(), 4);

    // without the CA the system roots do not know the test CA
    env.ok(&["config", "unset", "ldap.ca_file"]);
    let r = env.expect(&["test"], 1);
    assert!(r.stderr.contains("unknown issuer"), "{}", r.stderr);
    env.set("ldap.encryption", "starttls");
    let r = env.expect(&["test"], 1);
    assert!(r.stderr.contains("unknown issuer"), "{}", r.stderr);
}
