//! The member lifecycle (active → revoked → removed, and back) against a real slapd and the fake
//! server with the member API as bitwarden/server has it (`MembersController.cs`): a leaver is
//! revoked, not removed; a returner is restored in place with its groups; removal waits for
//! `sync.remove_revoked_after_days`, and a lost record restarts the clock; a member revoked by
//! hand is left alone; a moved or renamed entry keeps its member and its collections; mass
//! revokes meet the guard; the server's 400 and 404 answers are read as the states they name;
//! and Vaultwarden's import revokes and restores by itself.

use crate::support::Env;
use crate::support::fake_bitwarden::{FakeBitwarden, REVOKED};
use crate::support::slapd::{self, BASE, Slapd, group, group_dn, person, user_dn};

fn set(v: &[&str]) -> std::collections::BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

const USERS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];

fn directory() -> String {
    let mut l = String::new();
    for u in USERS {
        l.push_str(&person(u, Some(&format!("{u}@example.com")), false));
    }
    l.push_str(&format!(
        "dn: ou=Moved,ou=People,{BASE}\nobjectClass: organizationalUnit\nou: Moved\n\n"
    ));
    l.push_str(&group("Staff", &["alice", "bob", "carol"].map(user_dn)));
    l
}

fn email(u: &str) -> String {
    format!("{u}@example.com")
}

/// slapd, a Bitwarden-like fake and an env with the lifecycle on (revoke first, 30 days'
/// grace), removing disabled users and users gone from the directory.
fn setup_with(server: FakeBitwarden) -> (Slapd, FakeBitwarden, Env) {
    let slapd = Slapd::start(&directory());
    let env = Env::new();
    env.configure(&slapd, &server);
    env.set("sync.remove_missing_users", "true");
    env.set("sync.remove_disabled", "true");
    env.set("sync.remove_revoked_after_days", "30");
    (slapd, server, env)
}

fn setup() -> (Slapd, FakeBitwarden, Env) {
    setup_with(FakeBitwarden::start())
}

fn status(server: &FakeBitwarden, u: &str) -> i32 {
    server.org().members[&email(u)].status
}

fn set_disabled(slapd: &Slapd, u: &str, disabled: bool) {
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: {}\n\n",
        user_dn(u),
        if disabled { 514 } else { 512 }
    ));
}

/// The revoke times kept in the data directory (externalId → RFC 3339).
fn revoke_records(env: &Env) -> serde_json::Map<String, serde_json::Value> {
    let raw = std::fs::read_to_string(env.path().join("kept.json")).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap_or_default();
    let mut all = serde_json::Map::new();
    if let Some(scopes) = v["scopes"].as_object() {
        for s in scopes.values() {
            if let Some(r) = s["revokedAt"].as_object() {
                all.extend(r.clone());
            }
        }
    }
    all
}

/// Moves every revoke record `days` into the past (the clock moved on).
fn age_records(env: &Env, days: i64) {
    let p = env.path().join("kept.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).expect("kept.json")).expect("json");
    for s in v["scopes"].as_object_mut().expect("scopes").values_mut() {
        if let Some(r) = s["revokedAt"].as_object_mut() {
            for t in r.values_mut() {
                let at = chrono::DateTime::parse_from_rfc3339(t.as_str().expect("time"))
                    .expect("rfc3339")
                    - chrono::Duration::days(days);
                *t = at.to_rfc3339().into();
            }
        }
    }
    std::fs::write(&p, serde_json::to_vec_pretty(&v).expect("json")).expect("write kept.json");
}

#[test]
fn a_leaver_is_revoked_not_removed_and_keeps_its_groups() {
    let (slapd, server, env) = setup();
    env.ok(&["sync"]);
    let bob_id = server.org().members[&email("bob")].id.clone();
    slapd.delete(&user_dn("bob"));
    let t = env.ok(&["test"]);
    assert!(
        t.stdout.contains("revoke (no longer in directory)"),
        "{}",
        t.stdout
    );
    let r = env.json(&["sync"]);
    assert_eq!(
        r["plan"]["members"][0]["action"]["revoke"], "missing",
        "{r}"
    );
    assert_eq!(r["server"]["revoked"], 1, "{r}");
    let org = server.org();
    let bob = &org.members[&email("bob")];
    assert_eq!(bob.status, REVOKED);
    assert_eq!(bob.id, bob_id, "the membership is kept");
    assert!(
        org.group_emails("Staff").contains(&email("bob")),
        "a revoked member keeps its groups"
    );
    assert!(
        org.member_calls
            .iter()
            .any(|c| c == &format!("POST revoke {}", email("bob"))),
        "{:?}",
        org.member_calls
    );
    drop(org);
    assert!(revoke_records(&env).contains_key(&user_dn("bob")));
    let h = env.json(&["history"]);
    assert_eq!(h[0]["server"]["revoked"], 1, "{h}");
    // the next sync sends nothing and says the removal waits
    let again = env.ok(&["sync"]);
    assert!(
        again.stdout.contains("wait for the grace period"),
        "{}",
        again.stdout
    );
    assert_eq!(status(&server, "bob"), REVOKED);
}

#[test]
fn a_returner_is_restored_in_place_with_its_groups() {
    let (slapd, server, env) = setup();
    env.ok(&["sync"]);
    let carol_id = server.org().members[&email("carol")].id.clone();
    let before = status(&server, "carol");
    set_disabled(&slapd, "carol", true);
    let r = env.ok(&["sync"]);
    assert!(r.stdout.contains("revoke 1"), "{}", r.stdout);
    assert_eq!(status(&server, "carol"), REVOKED);
    set_disabled(&slapd, "carol", false);
    let r = env.ok(&["sync"]);
    assert!(r.stdout.contains("restore 1"), "{}", r.stdout);
    let org = server.org();
    let carol = &org.members[&email("carol")];
    assert_eq!(carol.status, before, "back to the status it had");
    assert_eq!(carol.id, carol_id, "restored in place, not invited again");
    assert!(org.group_emails("Staff").contains(&email("carol")));
    assert_eq!(org.members.len(), USERS.len());
    drop(org);
    assert!(
        !revoke_records(&env).contains_key(&user_dn("carol")),
        "a restore ends the record"
    );
}

#[test]
fn removal_waits_for_the_grace_period_and_a_lost_record_restarts_the_clock() {
    let (slapd, server, env) = setup();
    env.ok(&["sync"]);
    slapd.delete(&user_dn("bob"));
    slapd.delete(&user_dn("dave"));
    env.ok(&["sync", "--allow-mass-removal"]);
    assert_eq!(status(&server, "bob"), REVOKED);
    // 29 days on: still waiting
    age_records(&env, 29);
    let r = env.ok(&["sync"]);
    assert!(r.stdout.contains("removed in 1 day(s)"), "{}", r.stdout);
    assert!(server.org().members.contains_key(&email("bob")));
    // the record of dave is lost (kept.json gone with the cache): its clock starts again
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.path().join("kept.json")).expect("kept"))
            .expect("json");
    for s in v["scopes"].as_object_mut().expect("scopes").values_mut() {
        s["revokedAt"]
            .as_object_mut()
            .expect("records")
            .remove(&user_dn("dave"));
    }
    std::fs::write(env.path().join("kept.json"), v.to_string()).expect("write");
    env.ok(&["clear-cache"]);
    // two more days: bob's 30 days are over, dave's clock started now
    age_records(&env, 2);
    let r = env.ok(&["sync"]);
    assert!(r.stdout.contains("remove 1"), "{}", r.stdout);
    let org = server.org();
    assert!(
        !org.members.contains_key(&email("bob")),
        "removed after the grace"
    );
    assert_eq!(
        org.members[&email("dave")].status,
        REVOKED,
        "not removed early"
    );
    drop(org);
    let records = revoke_records(&env);
    assert!(!records.contains_key(&user_dn("bob")));
    let dave =
        chrono::DateTime::parse_from_rfc3339(records[&user_dn("dave")].as_str().expect("time"))
            .expect("time");
    assert!(
        chrono::Utc::now().signed_duration_since(dave) < chrono::Duration::minutes(10),
        "the clock started at the sync that found no record: {dave}"
    );
}

#[test]
fn a_member_revoked_by_hand_is_left_alone_and_reported() {
    let (_slapd, server, env) = setup();
    env.ok(&["sync"]);
    server.org().revoke(&email("dave"));
    let r = env.ok(&["sync"]);
    assert!(!r.stdout.contains("restore"), "{}", r.stdout);
    assert_eq!(status(&server, "dave"), REVOKED);
    assert!(
        !server
            .org()
            .member_calls
            .iter()
            .any(|c| c.contains("restore")),
        "{:?}",
        server.org().member_calls
    );
    let d = env.ok(&["drift"]);
    assert!(d.stdout.contains("dave@example.com"), "{}", d.stdout);
    assert!(d.stdout.to_lowercase().contains("revoked"), "{}", d.stdout);
}

#[test]
fn a_moved_and_a_renamed_entry_keep_their_member_and_collections() {
    let (slapd, server, env) = setup();
    env.ok(&["sync"]);
    let alice_id = server.org().members[&email("alice")].id.clone();
    server
        .org()
        .grant_collection(&email("alice"), "col-1", true);
    server.org().grant_collection(&email("bob"), "col-2", false);
    // alice moves to another OU; bob's entry is renamed (a new RDN); the group follows (as
    // slapd's refint overlay or AD would)
    let moved = format!("uid=alice,ou=Moved,ou=People,{BASE}");
    let renamed = format!("uid=robert,ou=People,{BASE}");
    slapd.modify(&format!(
        "dn: {}\nchangetype: modrdn\nnewrdn: uid=alice\ndeleteoldrdn: 1\nnewsuperior: ou=Moved,ou=People,{BASE}\n\n\
         dn: {}\nchangetype: modrdn\nnewrdn: uid=robert\ndeleteoldrdn: 0\n\n\
         dn: {}\nchangetype: modify\nreplace: member\nmember: {moved}\nmember: {renamed}\nmember: {}\n\n",
        user_dn("alice"),
        user_dn("bob"),
        group_dn("Staff"),
        user_dn("carol"),
    ));
    let t = env.ok(&["test"]);
    assert!(t.stdout.contains("rename externalId"), "{}", t.stdout);
    let r = env.json(&["sync"]);
    let actions: Vec<&str> = r["plan"]["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["action"].as_str())
        .collect();
    assert_eq!(actions, ["rename", "rename"], "{r}");
    let org = server.org();
    let alice = &org.members[&email("alice")];
    assert_eq!(alice.id, alice_id, "the same member");
    assert_eq!(alice.external_id.as_deref(), Some(moved.as_str()));
    assert_eq!(alice.status, status_confirmed_or_invited(alice.status));
    assert_eq!(
        alice.collections.len(),
        1,
        "collections kept: {:?}",
        alice.collections
    );
    assert_eq!(alice.collections[0]["id"], "col-1");
    assert_eq!(alice.collections[0]["readOnly"], true);
    let bob = &org.members[&email("bob")];
    assert_eq!(bob.external_id.as_deref(), Some(renamed.as_str()));
    assert_eq!(bob.collections[0]["id"], "col-2");
    assert_ne!(bob.status, REVOKED);
    assert_eq!(org.members.len(), USERS.len(), "nobody invited afresh");
    assert_eq!(
        org.group_external_ids("Staff"),
        set(&[moved.as_str(), renamed.as_str(), user_dn("carol").as_str()])
    );
    assert!(
        !org.member_calls.iter().any(|c| c.contains("revoke")),
        "{:?}",
        org.member_calls
    );
    drop(org);
    // settled: the next sync changes nothing
    let again = env.json(&["sync"]);
    assert_eq!(again["outcome"], "unchanged", "{again}");
}

fn status_confirmed_or_invited(s: i32) -> i32 {
    assert_ne!(s, REVOKED);
    s
}

#[test]
fn mass_revokes_are_refused_like_removals() {
    let (slapd, server, env) = setup();
    env.set("sync.max_removals", "2");
    env.ok(&["sync"]);
    for u in ["alice", "bob", "carol"] {
        slapd.delete(&user_dn(u));
    }
    let r = env.expect(&["sync"], 3);
    assert!(
        r.stderr.contains("revoke or remove 3 member(s)") && r.stderr.contains("max_removals = 2"),
        "{}",
        r.stderr
    );
    assert!(server.org().member_calls.is_empty());
    assert_eq!(server.org().active_emails().len(), USERS.len());
    env.ok(&["sync", "--allow-mass-removal"]);
    let org = server.org();
    for u in ["alice", "bob", "carol"] {
        assert_eq!(org.members[&email(u)].status, REVOKED, "{u}");
    }
}

#[test]
fn protected_emails_are_never_revoked() {
    let (slapd, server, env) = setup();
    env.set("sync.protected_emails", "bob@example.com");
    env.ok(&["sync"]);
    slapd.delete(&user_dn("bob"));
    env.ok(&["sync"]);
    assert_ne!(status(&server, "bob"), REVOKED);
    assert!(server.org().member_calls.is_empty());
}

#[test]
fn the_servers_400_and_404_answers_are_read_as_the_states_they_name() {
    let (slapd, server, env) = setup();
    env.ok(&["sync"]);
    {
        let mut org = server.org();
        // revoked between the read and the request: the server says so
        org.member_refusals
            .insert(email("bob"), "Already revoked.".into());
        // made the last confirmed owner between the read and the request
        org.member_refusals.insert(
            email("carol"),
            "Organization must have at least one confirmed owner.".into(),
        );
        // removed by hand between the read and the request
        org.member_gone.insert(email("dave"));
    }
    for u in ["bob", "carol", "dave"] {
        slapd.delete(&user_dn(u));
    }
    let r = env.ok(&["sync", "--allow-mass-removal"]);
    assert!(
        r.stderr.contains("carol@example.com") && r.stderr.contains("last confirmed owner"),
        "the owner kept is said: {}",
        r.all()
    );
    assert!(!revoke_records(&env).contains_key(&user_dn("carol")));
    assert!(
        r.stderr.contains("dave@example.com") && r.stderr.contains("404"),
        "the gone member is said: {}",
        r.all()
    );
    let records = revoke_records(&env);
    assert!(
        records.contains_key(&user_dn("bob")),
        "Already revoked: recorded"
    );
    assert!(!records.contains_key(&user_dn("dave")));
    assert!(
        !server.org().members.contains_key(&email("dave")),
        "a member gone is not invited again by the import"
    );
    // the organization as those answers said: bob revoked, dave gone
    {
        let mut org = server.org();
        org.member_refusals.clear();
        org.member_gone.clear();
        org.revoke(&email("bob"));
        org.members.remove(&email("dave"));
        org.make_owner(&email("carol"));
        // another refusal fails the run, naming the member, after the rest was applied
        org.member_refusals
            .insert(email("erin"), "Policy requires two-step login.".into());
    }
    slapd.delete(&user_dn("erin"));
    slapd.add(&person("fran", Some("fran@example.com"), false));
    let r = env.expect(&["sync"], 1);
    assert!(
        r.stderr.contains("erin@example.com")
            && r.stderr.contains("Policy requires two-step login."),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("keeps its access"), "{}", r.stderr);
    assert!(
        server.org().members.contains_key("fran@example.com"),
        "the rest went on"
    );
    assert!(!revoke_records(&env).contains_key(&user_dn("erin")));
    assert_eq!(env.json(&["history"])[0]["outcome"], "failed");
}

#[test]
fn a_restore_refused_for_the_seat_limit_fails_and_the_member_stays_revoked() {
    let (slapd, server, env) = setup();
    env.ok(&["sync"]);
    set_disabled(&slapd, "carol", true);
    env.ok(&["sync"]);
    assert_eq!(status(&server, "carol"), REVOKED);
    {
        let mut org = server.org();
        org.seat_limit = Some(USERS.len() - 1);
        org.self_hosted = true;
    }
    set_disabled(&slapd, "carol", false);
    let r = env.expect(&["sync"], 1);
    assert!(
        r.stderr
            .contains("Cannot autoscale on self-hosted instance.")
            && r.stderr.contains("stays revoked"),
        "{}",
        r.stderr
    );
    assert_eq!(status(&server, "carol"), REVOKED);
    assert!(
        revoke_records(&env).contains_key(&user_dn("carol")),
        "still the connector's to restore"
    );
    server.org().seat_limit = None;
    env.ok(&["sync"]);
    assert_ne!(status(&server, "carol"), REVOKED);
}

#[test]
fn zero_days_removes_at_once_as_before() {
    let (slapd, server, env) = setup();
    env.set("sync.remove_revoked_after_days", "0");
    env.ok(&["sync"]);
    slapd.delete(&user_dn("bob"));
    let r = env.ok(&["sync"]);
    assert!(r.stdout.contains("remove 1"), "{}", r.stdout);
    assert!(!server.org().members.contains_key(&email("bob")));
    assert!(server.org().member_calls.is_empty());
}

#[test]
fn the_default_grace_is_thirty_days() {
    let env = Env::new();
    let r = env.ok(&["config", "get", "sync.remove_revoked_after_days"]);
    assert_eq!(r.stdout.trim(), "30", "{}", r.all());
    let keys = env.ok(&["config", "keys"]);
    assert!(
        keys.stdout.contains("sync.remove_revoked_after_days"),
        "{}",
        keys.stdout
    );
}

#[test]
fn vaultwarden_revokes_on_deleted_restores_on_return_and_follows_a_move_by_email() {
    let (slapd, server, env) = setup_with(FakeBitwarden::vaultwarden(true));
    env.set("sync.protected_emails", "owner@example.com");
    env.ok(&["sync"]);
    let bob_id = server.org().members[&email("bob")].id.clone();
    slapd.delete(&user_dn("bob"));
    let t = env.ok(&["test"]);
    assert!(
        t.stdout
            .contains("revoke (no longer in directory; by the import)"),
        "{}",
        t.stdout
    );
    let r = env.json(&["sync"]);
    // no member API there: the import's `deleted` revokes
    assert_eq!(r["server"]["revoked"], 1, "{r}");
    assert_eq!(r["removed"], 0, "{r}");
    assert_eq!(status(&server, "bob"), REVOKED);
    assert!(server.org().member_calls.is_empty());
    assert!(
        server.org().group_emails("Staff").contains(&email("bob")),
        "a revoked member keeps its groups there too"
    );
    // the next sync leaves it there
    env.ok(&["sync"]);
    assert!(server.org().group_emails("Staff").contains(&email("bob")));
    slapd.add(&person("bob", Some("bob@example.com"), false));
    let r = env.ok(&["sync"]);
    assert!(r.stdout.contains("restore 1"), "{}", r.stdout);
    assert!(r.stdout.contains("1 restored"), "{}", r.stdout);
    assert_ne!(status(&server, "bob"), REVOKED, "listed again: restored");
    assert_eq!(server.org().members[&email("bob")].id, bob_id);
    // a move: the import lists the email with the new DN, Vaultwarden matches by email
    let alice_id = server.org().members[&email("alice")].id.clone();
    let moved = format!("uid=alice,ou=Moved,ou=People,{BASE}");
    slapd.modify(&format!(
        "dn: {}\nchangetype: modrdn\nnewrdn: uid=alice\ndeleteoldrdn: 1\nnewsuperior: ou=Moved,ou=People,{BASE}\n\n",
        user_dn("alice")
    ));
    let r = env.json(&["sync"]);
    assert_eq!(r["server"]["renamed"], 1, "{r}");
    let org = server.org();
    let alice = &org.members[&email("alice")];
    assert_eq!(alice.id, alice_id);
    assert_ne!(alice.status, REVOKED, "a move is not a departure");
    assert_eq!(alice.external_id.as_deref(), Some(moved.as_str()));
    drop(org);
    // the old DN is gone from the cache: the next sync does not take it for a leaver
    env.ok(&["sync"]);
    assert_ne!(status(&server, "alice"), REVOKED);
    let _ = slapd::BASE;
}

#[test]
fn a_refused_rename_keeps_the_member_as_it_was_and_the_next_sync_tries_again() {
    let (slapd, server, env) = setup();
    env.ok(&["sync"]);
    let alice_id = server.org().members[&email("alice")].id.clone();
    server
        .org()
        .member_refusals
        .insert(email("alice"), "The member cannot be changed now.".into());
    let moved = format!("uid=alice,ou=Moved,ou=People,{BASE}");
    slapd.modify(&format!(
        "dn: {}\nchangetype: modrdn\nnewrdn: uid=alice\ndeleteoldrdn: 1\nnewsuperior: ou=Moved,ou=People,{BASE}\n\n",
        user_dn("alice")
    ));
    let r = env.expect(&["sync"], 1);
    assert!(
        r.stderr.contains("renaming alice@example.com")
            && r.stderr.contains("keeps its old externalId"),
        "{}",
        r.stderr
    );
    {
        let org = server.org();
        let alice = &org.members[&email("alice")];
        assert_eq!(alice.id, alice_id);
        assert_eq!(
            alice.external_id.as_deref(),
            Some(user_dn("alice").as_str())
        );
        assert_ne!(alice.status, REVOKED);
        assert_eq!(org.members.len(), USERS.len(), "nobody invited afresh");
    }
    server.org().member_refusals.clear();
    env.ok(&["sync"]);
    let org = server.org();
    let alice = &org.members[&email("alice")];
    assert_eq!(alice.id, alice_id);
    assert_eq!(alice.external_id.as_deref(), Some(moved.as_str()));
}
