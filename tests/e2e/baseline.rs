//! End-to-end: the organization as baseline. The real binary against a real slapd and the fake
//! server acting like Bitwarden (read API, removals cascade) or Vaultwarden (no read API, revoke
//! keeping group rows, members matched by email, no renames, groups optional). Each of the
//! findings that made the organization the baseline has a test here, in both modes where it
//! applies.

use crate::support;

use support::Env;
use support::fake_bitwarden::{FakeBitwarden, ServerKind};
use support::slapd::{self, Slapd, person, user_dn};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bitwarden,
    Vaultwarden,
}

const BOTH: [Mode; 2] = [Mode::Bitwarden, Mode::Vaultwarden];

/// The organization's owner (not in the directory).
const OWNER: &str = "owner@example.com";

fn email(i: usize) -> String {
    format!("u{i}@example.com")
}

/// A groupOfNames whose display name is its `description` (so that a rename is one modify).
fn group(cn: &str, name: &str, members: &[usize]) -> String {
    let mut s = format!(
        "dn: cn={cn},ou=Groups,{}\nobjectClass: groupOfNames\ncn: {cn}\ndescription: {name}\n",
        slapd::BASE
    );
    for i in members {
        s.push_str(&format!("member: {}\n", user_dn(&format!("u{i}"))));
    }
    s.push('\n');
    s
}

/// Ten users; `All` has everyone, `Team` the first five.
fn directory() -> String {
    let mut l = String::new();
    for i in 0..10 {
        l.push_str(&person(&format!("u{i}"), Some(&email(i)), false));
    }
    l.push_str(&group("all", "All", &(0..10).collect::<Vec<_>>()));
    l.push_str(&group("team", "Team", &[0, 1, 2, 3, 4]));
    l
}

fn server(mode: Mode) -> FakeBitwarden {
    match mode {
        Mode::Bitwarden => FakeBitwarden::start(),
        Mode::Vaultwarden => FakeBitwarden::vaultwarden(true),
    }
}

fn setup(mode: Mode) -> (Slapd, FakeBitwarden, Env) {
    let slapd = Slapd::start(&directory());
    let server = server(mode);
    let mut env = Env::new();
    env.set_var("DIRECTORY_CONNECTOR_RETRIES", "1");
    env.configure(&slapd, &server);
    env.set("sync.group_name_attribute", "description");
    env.set("sync.remove_missing_users", "true");
    if mode == Mode::Vaultwarden {
        // the organization's owner: Vaultwarden cannot show owners, so they are named here
        env.set("sync.protected_emails", OWNER);
    }
    let r = env.ok(&["sync"]);
    assert!(r.stdout.contains("Sync complete"), "{}", r.stdout);
    assert_eq!(server.org().active_emails().len(), 10, "{mode:?}");
    assert_eq!(server.org().group_emails("Team").len(), 5, "{mode:?}");
    (slapd, server, env)
}

#[test]
fn a_cleared_cache_and_overwrite_with_a_narrower_filter_is_refused() {
    for mode in BOTH {
        let (_slapd, server, env) = setup(mode);
        env.ok(&["clear-cache"]);
        env.set("sync.overwrite_existing", "true");
        env.set("sync.user_filter", "(|(uid=u0)(uid=u1))");
        let r = env.expect(&["sync"], 3);
        assert!(r.stderr.contains("sync refused"), "{mode:?}: {}", r.stderr);
        match mode {
            // counted against the organization
            Mode::Bitwarden => assert!(r.stderr.contains("8 of 10"), "{}", r.stderr),
            // nothing to count against
            Mode::Vaultwarden => assert!(
                r.stderr.contains("nothing to count removals against")
                    && r.stderr.contains("overwrite_existing"),
                "{}",
                r.stderr
            ),
        }
        assert_eq!(
            server.org().active_emails().len(),
            10,
            "{mode:?}: nothing removed"
        );
        // the admin means it: once
        env.ok(&["sync", "--allow-mass-removal"]);
        assert_eq!(server.org().active_emails().len(), 2, "{mode:?}");
    }
}

#[test]
fn a_failed_sync_against_a_mistyped_url_keeps_the_baseline() {
    for mode in BOTH {
        let (slapd, server, env) = setup(mode);
        env.set("server.url", "http://127.0.0.1:9");
        let r = env.expect(&["sync"], 1);
        assert!(r.stderr.contains("127.0.0.1:9"), "{}", r.stderr);
        env.set("server.url", &server.url);
        assert_eq!(
            env.cache_counts(),
            (10, 2),
            "{mode:?}: the good scope's cache is kept"
        );
        // six people leave: 60% of the organization
        for i in 4..10 {
            slapd.delete(&user_dn(&format!("u{i}")));
        }
        let r = env.expect(&["sync"], 3);
        assert!(r.stderr.contains("6 of 10"), "{mode:?}: {}", r.stderr);
        assert_eq!(server.org().active_emails().len(), 10);
    }
}

#[test]
fn a_wrong_member_attribute_is_refused_by_the_group_guard() {
    for mode in BOTH {
        let (_slapd, server, env) = setup(mode);
        env.set("sync.member_attribute", "uniqueMember");
        let r = env.expect(&["sync"], 3);
        assert!(
            r.stderr.contains("would empty 2 group(s)")
                && r.stderr.contains("sync.member_attribute"),
            "{mode:?}: {}",
            r.stderr
        );
        assert_eq!(server.org().group_emails("Team").len(), 5, "{mode:?}");
        assert_eq!(server.org().group_emails("All").len(), 10, "{mode:?}");
        // test shows the same refusal
        let r = env.ok(&["test"]);
        assert!(r.stdout.contains("REFUSED"), "{}", r.stdout);
        // the percent limit: a third of the references out of the changed groups
        env.set("sync.member_attribute", "member");
        env.ok(&["sync"]);
    }
}

#[test]
fn a_removed_member_comes_back_without_its_old_groups() {
    for mode in BOTH {
        let (slapd, server, env) = setup(mode);
        slapd.delete(&user_dn("u3"));
        env.ok(&["sync"]);
        assert!(
            !server.org().active_emails().contains(&email(3)),
            "{mode:?}"
        );
        // back, in no group
        slapd.add(&person("u3", Some(&email(3)), false));
        slapd.modify(&format!(
            "dn: cn=all,ou=Groups,{}\nchangetype: modify\ndelete: member\nmember: {}\n\n",
            slapd::BASE,
            user_dn("u3")
        ));
        slapd.modify(&format!(
            "dn: cn=team,ou=Groups,{}\nchangetype: modify\ndelete: member\nmember: {}\n\n",
            slapd::BASE,
            user_dn("u3")
        ));
        env.ok(&["sync"]);
        let org = server.org();
        assert!(org.active_emails().contains(&email(3)), "{mode:?}");
        assert!(
            !org.group_emails("Team").contains(&email(3)),
            "{mode:?}: u3 got its old group back: {:?}",
            org.group_emails("Team")
        );
        assert!(!org.group_emails("All").contains(&email(3)), "{mode:?}");
    }
}

#[test]
fn an_email_change_never_makes_a_second_membership() {
    for mode in BOTH {
        let (slapd, server, env) = setup(mode);
        let ext = server.org().members[&email(2)].external_id.clone().unwrap();
        slapd.modify(&format!(
            "dn: {}\nchangetype: modify\nreplace: mail\nmail: new2@example.com\n\n",
            user_dn("u2")
        ));
        let r = env.ok(&["test"]);
        assert!(
            r.stdout.contains("new2@example.com") && r.stdout.contains("Vaultwarden"),
            "{mode:?}: the plan warns: {}",
            r.stdout
        );
        env.ok(&["sync"]);
        assert_eq!(
            server.org().with_external_id(&ext).len(),
            1,
            "{mode:?}: {:?}",
            server.org().with_external_id(&ext)
        );
    }
}

#[test]
fn renames_are_shown_applied_and_checked() {
    for mode in BOTH {
        let (slapd, server, env) = setup(mode);
        slapd.modify(&format!(
            "dn: cn=team,ou=Groups,{}\nchangetype: modify\nreplace: description\ndescription: Team B\n\n",
            slapd::BASE
        ));
        let r = env.ok(&["test"]);
        assert!(
            r.stdout.contains("rename from `Team`"),
            "{mode:?}: {}",
            r.stdout
        );
        let r = env.ok(&["sync"]);
        match mode {
            Mode::Bitwarden => assert!(server.org().group("Team B").is_some()),
            Mode::Vaultwarden => {
                // Vaultwarden never renames; the report says so
                assert!(server.org().group("Team").is_some());
                assert!(r.stdout.contains("never renames"), "{}", r.stdout);
            }
        }
    }
    // a server with the read API that ignores the rename fails the run, naming the cause
    let (slapd, server, env) = setup(Mode::Bitwarden);
    server.org().ignore_renames = true;
    slapd.modify(&format!(
        "dn: cn=team,ou=Groups,{}\nchangetype: modify\nreplace: description\ndescription: Team C\n\n",
        slapd::BASE
    ));
    let r = env.expect(&["sync"], 1);
    assert!(
        r.stderr.contains("still named `Team`") && r.stderr.contains("did not apply the rename"),
        "{}",
        r.stderr
    );
}

#[test]
fn groups_dropped_by_vaultwarden_are_sent_again() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::vaultwarden(false);
    let env = Env::new();
    env.configure(&slapd, &server);
    env.set("sync.group_name_attribute", "description");
    let r = env.ok(&["sync"]);
    assert!(r.stdout.contains("ORG_GROUPS_ENABLED"), "{}", r.stdout);
    assert!(
        server.org().groups.is_empty(),
        "Vaultwarden dropped the groups"
    );
    // the admin turns groups on; within sync.group_resend_hours the groups go out again
    server.org().kind = ServerKind::Vaultwarden {
        groups_enabled: true,
    };
    let conn = rusqlite::Connection::open(env.path().join("directory-connector.sqlite3")).unwrap();
    conn.execute(
        "UPDATE groups SET synced_at = '2000-01-01T00:00:00+00:00'",
        [],
    )
    .unwrap();
    drop(conn);
    env.ok(&["sync"]);
    assert_eq!(server.org().group_emails("Team").len(), 5);
    assert_eq!(server.org().group_emails("All").len(), 10);
    // and not again until they are due
    let before = server.import_count();
    env.ok(&["sync"]);
    assert_eq!(server.import_count(), before);
}

#[test]
fn an_unchanged_sync_proves_the_key() {
    for mode in BOTH {
        let (_slapd, server, env) = setup(mode);
        {
            let mut org = server.org();
            org.client_secret = "rotated".into();
            org.tokens.clear();
        }
        let r = env.expect(&["sync"], 1);
        assert!(
            r.stderr.contains("API key was rejected"),
            "{mode:?}: {}",
            r.stderr
        );
        let runs = env.json(&["history", "--limit", "1"]);
        assert_eq!(runs[0]["outcome"], "failed");
    }
}

#[test]
fn drift_is_reported_and_repaired_from_the_organization() {
    let (_slapd, server, env) = setup(Mode::Bitwarden);
    {
        let mut org = server.org();
        org.remove_from_group("Team", &email(0));
        org.group_mut("All").unwrap().name = "Everyone".into();
        org.add_manual_member("manual@example.com");
        org.add_manual_group("Hand made", &["manual@example.com"]);
        org.revoke(&email(9));
    }
    let j = env.json(&["drift"]);
    let d = &j["drift"];
    assert_eq!(
        d["membersWithoutExternalId"][0]["email"], "manual@example.com",
        "{j}"
    );
    assert_eq!(d["groupsUnknownToDirectory"][0]["name"], "Hand made", "{j}");
    assert_eq!(d["revokedMembers"][0]["email"], email(9), "{j}");
    let r = env.ok(&["test"]);
    assert!(
        r.stdout.contains("repairs a change made outside"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("Drift:"), "{}", r.stdout);
    // every sync reads every group's members (issue 26): the very next sync repairs both
    // the rename and the hand removal, and reads back the groups it sent
    let j = env.json(&["sync"]);
    assert_eq!(
        j["server"]["groupsRead"], 2,
        "the groups with an externalId: {j}"
    );
    assert_eq!(j["server"]["groupsVerified"], 2, "{j}");
    assert_eq!(j["server"]["groupsPending"], 0, "{j}");
    assert_eq!(
        j["server"]["requests"]["memberIds"], 5,
        "the three groups read before the plan (the hand-made one too), the two sent read \
         back: {j}"
    );
    let org = server.org();
    assert!(org.group_emails("Team").contains(&email(0)), "repaired");
    assert!(org.group("All").is_some(), "renamed back");
    assert!(org.group("Hand made").is_some(), "left alone");
    drop(org);
    // Vaultwarden has no read API: drift says so
    let (_slapd, _server, env) = setup(Mode::Vaultwarden);
    let r = env.expect(&["drift"], 1);
    assert!(r.stderr.contains("no read API"), "{}", r.stderr);
}

#[test]
fn a_fresh_data_directory_on_a_matching_organization_sends_nothing() {
    let (slapd, server, _env) = setup(Mode::Bitwarden);
    let env = Env::new();
    env.configure(&slapd, &server);
    env.set("sync.group_name_attribute", "description");
    let before = server.import_count();
    let r = env.ok(&["sync"]);
    assert!(r.stdout.contains("unchanged"), "{}", r.stdout);
    assert_eq!(server.import_count(), before);
    assert_eq!(
        env.cache_counts(),
        (10, 2),
        "the cache is rebuilt from the organization"
    );
}

#[test]
fn protected_members_are_never_removed() {
    for mode in BOTH {
        let (slapd, server, env) = setup(mode);
        env.set(
            "sync.protected_emails",
            &format!("{}, boss@example.com", email(0)),
        );
        assert_eq!(
            env.ok(&["config", "get", "sync.protected_emails"])
                .stdout
                .trim(),
            format!("{}, boss@example.com", email(0))
        );
        slapd.delete(&user_dn("u0"));
        let r = env.ok(&["sync"]);
        assert!(r.stdout.contains("Protected"), "{}", r.stdout);
        let org = server.org();
        assert!(org.active_emails().contains(&email(0)), "{mode:?}");
        assert!(org.group_emails("Team").contains(&email(0)), "{mode:?}");
    }
}

#[test]
fn without_any_baseline_a_removal_is_refused() {
    let mut ldif = directory();
    ldif.push_str(&person("gone", Some("gone@example.com"), true));
    let slapd = Slapd::start(&ldif);
    let server = FakeBitwarden::vaultwarden(true);
    let env = Env::new();
    env.configure(&slapd, &server);
    env.set("sync.remove_disabled", "true");
    let r = env.expect(&["sync"], 3);
    assert!(
        r.stderr.contains("nothing to count removals against"),
        "{}",
        r.stderr
    );
    assert!(server.org().members.is_empty());
    env.ok(&["sync", "--allow-mass-removal"]);
    assert_eq!(server.org().active_emails().len(), 10);
}

#[test]
fn after_a_push_the_cache_holds_what_the_organization_shows() {
    // the cache held the organization, the push changed it, the read-back corrects only the
    // rows where the organization differs from what the batches recorded
    let (slapd, server, env) = setup(Mode::Bitwarden);
    let names = || {
        let store = directory_connector::store::Store::open(env.path()).expect("store");
        let mut names: Vec<String> = store
            .load_cache()
            .expect("cache")
            .groups
            .into_values()
            .map(|g| g.name)
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(), ["All", "Team"]);
    server.org().ignore_renames = true;
    slapd.modify(&format!(
        "dn: cn=team,ou=Groups,{}\nchangetype: modify\nreplace: description\ndescription: Team C\n\n",
        slapd::BASE
    ));
    slapd.add(&person("u10", Some(&email(10)), false));
    let r = env.expect(&["sync"], 1);
    assert!(
        r.stderr.contains("did not apply the rename"),
        "{}",
        r.stderr
    );
    // the batch recorded `Team C`; the organization shows `Team`, and so does the cache
    assert_eq!(names(), ["All", "Team"]);
    assert_eq!(
        env.cache_counts(),
        (11, 2),
        "the new member the server applied is kept"
    );
    // once the server renames, the next sync sends the rename again and records it
    server.org().ignore_renames = false;
    env.ok(&["sync"]);
    assert_eq!(names(), ["All", "Team C"]);
}

/// A group that leaves the directory stays in the organization with its members (the import
/// cannot delete it). If it comes back having lost most of them, the group guard counts what it
/// had: against the cache (Vaultwarden) as against the organization.
#[test]
fn a_group_back_in_the_directory_is_guarded_against_what_it_kept() {
    for mode in BOTH {
        let (slapd, server, env) = setup(mode);
        env.set("sync.group_filter", "(cn=all)");
        env.ok(&["sync"]);
        let r = env.ok(&["test"]);
        assert!(
            r.stdout.contains("no longer in the directory"),
            "{mode:?}: {}",
            r.stdout
        );
        assert_eq!(server.org().group_emails("Team").len(), 5, "{mode:?}");
        // while it is filtered out, Team loses four of its five members in the directory
        slapd.modify(&format!(
            "dn: cn=team,ou=Groups,{}\nchangetype: modify\nreplace: member\nmember: {}\n\n",
            slapd::BASE,
            user_dn("u0")
        ));
        env.set("sync.group_filter", "");
        let r = env.expect(&["sync"], 3);
        assert!(
            r.stderr.contains("4 of 5 member(s)")
                && r.stderr.contains("`Team`")
                && r.stderr.contains("sync.max_group_removal_percent"),
            "{mode:?}: {}",
            r.stderr
        );
        assert_eq!(server.org().group_emails("Team").len(), 5, "{mode:?}");
        env.ok(&["sync", "--allow-mass-removal"]);
        assert_eq!(
            server.org().group_emails("Team"),
            std::collections::BTreeSet::from([email(0)]),
            "{mode:?}"
        );
        let r = env.ok(&["test"]);
        assert!(
            !r.stdout.contains("no longer in the directory"),
            "{mode:?}: {}",
            r.stdout
        );
    }
}

/// Issue 23 item 2: with no baseline (Vaultwarden after `clear-cache`), a directory read with
/// empty groups (a `member_attribute` typo) or no users (a user filter that matches no one)
/// would empty every group: refused in both modes, and the groups keep their members.
#[test]
fn without_a_baseline_a_read_with_empty_groups_or_no_users_is_refused() {
    for mode in BOTH {
        let (_slapd, server, env) = setup(mode);
        env.ok(&["clear-cache"]);
        env.set("sync.member_attribute", "uniqueMember");
        let r = env.expect(&["sync"], 3);
        assert!(
            r.stderr.contains("sync refused") && r.stderr.contains("member_attribute"),
            "{mode:?}: {}",
            r.stderr
        );
        if mode == Mode::Vaultwarden {
            assert!(
                r.stderr.contains("2 of 2 group(s)") && r.stderr.contains("no baseline"),
                "{}",
                r.stderr
            );
        }
        env.set("sync.member_attribute", "member");
        env.set("sync.user_filter", "(uid=nobody)");
        let r = env.expect(&["sync"], 3);
        assert!(r.stderr.contains("no users"), "{mode:?}: {}", r.stderr);
        let org = server.org();
        assert_eq!(org.group_emails("Team").len(), 5, "{mode:?}");
        assert_eq!(org.group_emails("All").len(), 10, "{mode:?}");
        assert_eq!(org.active_emails().len(), 10, "{mode:?}");
    }
}

/// Issue 23 item 7: one group gutted (Team 5 -> 1) while another changed group loses little
/// (All 10 -> 9) is refused: each group is judged on its own, not diluted by the total.
#[test]
fn one_gutted_group_is_refused_whatever_the_others_keep() {
    for mode in BOTH {
        let (slapd, server, env) = setup(mode);
        slapd.modify(&format!(
            "dn: cn=team,ou=Groups,{}\nchangetype: modify\nreplace: member\nmember: {}\n\n",
            slapd::BASE,
            user_dn("u0")
        ));
        slapd.modify(&format!(
            "dn: cn=all,ou=Groups,{}\nchangetype: modify\ndelete: member\nmember: {}\n\n",
            slapd::BASE,
            user_dn("u9")
        ));
        let r = env.expect(&["sync"], 3);
        assert!(
            r.stderr.contains("4 of 5 member(s)") && r.stderr.contains("`Team`"),
            "{mode:?}: {}",
            r.stderr
        );
        assert_eq!(server.org().group_emails("Team").len(), 5, "{mode:?}");
        env.ok(&["sync", "--allow-mass-removal"]);
        assert_eq!(server.org().group_emails("Team").len(), 1, "{mode:?}");
        assert_eq!(server.org().group_emails("All").len(), 9, "{mode:?}");
    }
}

/// Issue 23 item 4: after `clear-cache` and one normal sync, the cache does not hold every
/// member the server has; `overwrite_existing` would let the server remove the others without
/// the plan counting them: refused until allowed once, after which the cache holds what the
/// server kept and overwrite pushes are counted again.
#[test]
fn overwrite_existing_after_a_cleared_cache_is_refused_until_allowed() {
    for mode in BOTH {
        let (_slapd, server, env) = setup(mode);
        env.ok(&["clear-cache"]);
        env.set(
            "sync.user_filter",
            "(|(uid=u0)(uid=u1)(uid=u2)(uid=u3)(uid=u4))",
        );
        env.set("sync.remove_missing_users", "false");
        env.ok(&["sync"]);
        assert_eq!(server.org().active_emails().len(), 10, "{mode:?}");
        env.set("sync.overwrite_existing", "true");
        let r = env.expect(&["sync"], 3);
        match mode {
            Mode::Bitwarden => assert!(r.stderr.contains("5 of 10"), "{}", r.stderr),
            Mode::Vaultwarden => assert!(
                r.stderr.contains("overwrite_existing") && r.stderr.contains("cannot count"),
                "{}",
                r.stderr
            ),
        }
        let r = env.ok(&["test"]);
        assert!(r.stdout.contains("REFUSED"), "{mode:?}: {}", r.stdout);
        assert_eq!(
            server.org().active_emails().len(),
            10,
            "{mode:?}: nothing removed"
        );
        let r = env.ok(&["sync", "--allow-mass-removal"]);
        assert_eq!(server.org().active_emails().len(), 5, "{mode:?}");
        // what the server removes is counted where it can be read back, and said to be
        // uncounted where it cannot (issue 26 item 4)
        match mode {
            Mode::Bitwarden => {
                let runs = env.json(&["history", "--limit", "1"]);
                assert_eq!(runs[0]["removed"], 5, "{runs}");
            }
            Mode::Vaultwarden => assert!(
                r.stdout.contains("the server removes them, uncounted"),
                "{}",
                r.stdout
            ),
        }
        // the cache now holds every member: later overwrite pushes are counted, not refused
        env.ok(&["sync"]);
        assert_eq!(server.org().active_emails().len(), 5, "{mode:?}");
        // and a clear-cache ends that again
        if mode == Mode::Vaultwarden {
            env.ok(&["clear-cache"]);
            env.expect(&["sync"], 3);
        }
    }
}

/// Issue 23 item 4: with no baseline, members that left the directory are neither removed nor
/// listed; the plan says that departures cannot be detected (test, sync and JSON).
#[test]
fn without_a_baseline_departures_are_said_to_be_undetectable() {
    for mode in BOTH {
        let (slapd, server, env) = setup(mode);
        env.ok(&["clear-cache"]);
        slapd.delete(&user_dn("u9"));
        let r = env.ok(&["test"]);
        let j = env.json(&["test"]);
        let warnings = j["plan"]["warnings"].to_string();
        match mode {
            Mode::Vaultwarden => {
                assert!(
                    r.stdout.contains("Warning: departures cannot be detected"),
                    "{}",
                    r.stdout
                );
                assert!(warnings.contains("departures cannot be detected"), "{j}");
                let r = env.ok(&["sync"]);
                assert!(
                    r.stdout.contains("departures cannot be detected"),
                    "{}",
                    r.stdout
                );
                assert!(server.org().active_emails().contains(&email(9)));
            }
            Mode::Bitwarden => {
                // the organization is the baseline: the departure is seen and removed
                assert!(!r.stdout.contains("departures"), "{}", r.stdout);
                assert_eq!(warnings, "[]", "{j}");
                env.ok(&["sync"]);
                assert!(!server.org().active_emails().contains(&email(9)));
            }
        }
    }
}

/// Issue 23 item 4: a pending email change and then `clear-cache` never makes a second
/// membership (Vaultwarden matches members by email): the change stays pending until the admin
/// says the user changed the email in their account.
#[test]
fn a_pending_email_change_survives_clear_cache() {
    for mode in [Mode::Vaultwarden, Mode::Bitwarden] {
        let (slapd, server, env) = setup(mode);
        let ext = server.org().members[&email(2)].external_id.clone().unwrap();
        slapd.modify(&format!(
            "dn: {}\nchangetype: modify\nreplace: mail\nmail: new2@example.com\n\n",
            user_dn("u2")
        ));
        env.ok(&["sync"]);
        let cleared = env.ok(&["clear-cache"]);
        let r = env.ok(&["sync"]);
        let org = server.org();
        assert_eq!(
            org.with_external_id(&ext).len(),
            1,
            "{mode:?}: {:?}",
            org.with_external_id(&ext)
        );
        assert!(!org.members.contains_key("new2@example.com"), "{mode:?}");
        assert!(org.group_emails("Team").contains(&email(2)), "{mode:?}");
        drop(org);
        assert!(
            r.stdout.contains("new2@example.com"),
            "{mode:?}: {}",
            r.stdout
        );
        if mode == Mode::Vaultwarden {
            assert!(
                cleared
                    .stdout
                    .contains("1 member(s) with a pending email change"),
                "{}",
                cleared.stdout
            );
        }
        // the user changes the email in their account; the admin says so
        server
            .org()
            .change_account_email(&email(2), "new2@example.com");
        env.ok(&["clear-cache", "--forget-email-changes"]);
        env.ok(&["sync"]);
        let org = server.org();
        assert_eq!(org.with_external_id(&ext).len(), 1, "{mode:?}");
        assert_eq!(org.members.len(), 10, "{mode:?}");
        assert!(
            org.group_emails("Team").contains("new2@example.com"),
            "{mode:?}"
        );
    }
}

/// Issue 23 item 6: an owner whose externalId leaves the directory is never planned for
/// removal (the server refuses, and the check after the push failed every sync): the sync
/// succeeds, says the owner was kept, and so does the next one.
#[test]
fn an_owner_leaving_the_directory_is_kept_and_syncs_keep_working() {
    let (slapd, server, env) = setup(Mode::Bitwarden);
    server.org().members.get_mut(&email(0)).unwrap().owner = true;
    slapd.delete(&user_dn("u0"));
    let r = env.ok(&["test"]);
    assert!(
        r.stdout
            .contains("Kept: u0@example.com: owner, not removed"),
        "{}",
        r.stdout
    );
    let r = env.ok(&["sync"]);
    assert!(r.stdout.contains("owner, not removed"), "{}", r.stdout);
    assert!(server.org().active_emails().contains(&email(0)));
    let j = env.json(&["sync"]);
    assert_eq!(j["removed"], 0, "{j}");
    assert!(
        j["plan"]["kept"].to_string().contains("u0@example.com"),
        "{j}"
    );
}

/// Issue 23 item 8: protected emails that protect no one are refused, naming the value.
#[test]
fn protected_emails_that_protect_no_one_are_refused() {
    let env = Env::new();
    let r = env.expect(
        &["config", "set", "sync.protected_emails", "a@x.com;b@x.com"],
        2,
    );
    assert!(
        r.stderr.contains("`a@x.com;b@x.com`") && r.stderr.contains("commas"),
        "{}",
        r.stderr
    );
    // a hand-edited file is held to the same rule
    std::fs::write(
        env.path().join("config.toml"),
        "[sync]\nprotected_emails = [\"boss@x.com\", \"it admin@x.com\"]\n",
    )
    .unwrap();
    let r = env.expect(&["config", "validate"], 2);
    assert!(
        r.stdout.contains("`it admin@x.com`") || r.stderr.contains("`it admin@x.com`"),
        "{}{}",
        r.stdout,
        r.stderr
    );
}

/// Issue 26 item 1: without a baseline (Vaultwarden after `clear-cache`), a user filter that
/// leaves most members out would replace every group with a few members. The plan says
/// "create or replace", and the push is refused against the groups' last confirmed sizes, which
/// `clear-cache` keeps.
#[test]
fn without_a_baseline_a_narrow_filter_cannot_shrink_the_groups() {
    let (_slapd, server, env) = setup(Mode::Vaultwarden);
    env.set("sync.user_filter", "(|(uid=u0)(uid=u1))");
    env.ok(&["clear-cache"]);
    let r = env.ok(&["test"]);
    assert!(
        r.stdout
            .contains("create or replace (the server's members are unknown)"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("┆ create ("), "{}", r.stdout);
    assert!(r.stdout.contains("REFUSED"), "{}", r.stdout);
    let j = env.json(&["test"]);
    assert_eq!(j["plan"]["groups"][0]["action"], "replace", "{j}");
    let r = env.expect(&["sync"], 3);
    assert!(
        r.stderr.contains("would be sent with 2 member(s)")
            && r.stderr.contains("the server last confirmed")
            && r.stderr.contains("no baseline"),
        "{}",
        r.stderr
    );
    {
        let org = server.org();
        assert_eq!(org.group_emails("All").len(), 10);
        assert_eq!(org.group_emails("Team").len(), 5);
    }
    // the directory is right after all: allowed once
    env.ok(&["sync", "--allow-mass-removal"]);
    assert_eq!(server.org().group_emails("All").len(), 2);
}

/// Issue 26 item 2: on a server that cannot show who is an owner, owners are protected only
/// through `sync.protected_emails`: the plan says so, and the first sync that removes someone is
/// refused until the setting is made or the admin allowed it once. The fake does what
/// Vaultwarden does with an owner marked deleted (a co-owner is revoked, the last owner kept).
#[test]
fn without_the_read_api_owners_are_protected_only_by_protected_emails() {
    let (slapd, server, env) = setup(Mode::Vaultwarden);
    env.set("sync.protected_emails", "");
    server.org().members.get_mut(&email(0)).unwrap().owner = true;
    slapd.delete(&user_dn("u0"));
    let r = env.ok(&["test"]);
    assert!(
        r.stdout
            .contains("owners are protected only through sync.protected_emails")
            && r.stdout.contains("REFUSED"),
        "{}",
        r.stdout
    );
    let r = env.expect(&["sync"], 3);
    assert!(
        r.stderr.contains("cannot show who is an owner") && r.stderr.contains("protected_emails"),
        "{}",
        r.stderr
    );
    assert!(server.org().active_emails().contains(&email(0)));
    // named: the owner is never marked deleted, and the sync goes on
    env.set("sync.protected_emails", &email(0));
    let r = env.ok(&["sync"]);
    assert!(
        r.stdout.contains("u0@example.com: not removed"),
        "{}",
        r.stdout
    );
    assert!(server.org().active_emails().contains(&email(0)));
    // allowed once instead: later syncs only warn
    env.set("sync.protected_emails", "");
    slapd.delete(&user_dn("u9"));
    env.expect(&["sync"], 3);
    env.ok(&["sync", "--allow-mass-removal"]);
    assert!(!server.org().active_emails().contains(&email(9)));
    slapd.delete(&user_dn("u8"));
    let r = env.ok(&["sync"]);
    assert!(
        r.stdout.contains("owners are protected only through"),
        "{}",
        r.stdout
    );
}

/// Issue 26 item 3: a pending email change survives a damaged database: `clear-cache` moves the
/// database aside, and the change is kept outside it, so the next full push never sends the new
/// address beside the old membership (Vaultwarden matches members by email).
#[test]
fn a_pending_email_change_survives_a_damaged_database() {
    let (slapd, server, env) = setup(Mode::Vaultwarden);
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: mail\nmail: new2@example.com\n\n",
        user_dn("u2")
    ));
    env.ok(&["sync"]);
    let db = env.path().join("directory-connector.sqlite3");
    for side in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(
            env.path()
                .join(format!("directory-connector.sqlite3{side}")),
        );
    }
    std::fs::write(&db, "damaged ".repeat(200)).unwrap();
    let r = env.ok(&["clear-cache"]);
    assert!(
        r.stdout.contains("moved to") && r.stdout.contains("1 pending email change(s) were kept"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("sends everything"), "{}", r.stdout);
    let r = env.ok(&["sync"]);
    assert!(r.stdout.contains("new2@example.com"), "{}", r.stdout);
    let org = server.org();
    assert!(
        !org.members.contains_key("new2@example.com"),
        "no second membership"
    );
    assert!(org.active_emails().contains(&email(2)));
}

/// Issue 26 item 4: the departures warning of an incomplete cache is said by every `test`, but
/// by `sync` once a day (the service runs every few minutes), and it says what ends it.
#[test]
fn the_departures_warning_of_a_sync_is_said_once_a_day() {
    let (_slapd, _server, env) = setup(Mode::Vaultwarden);
    env.ok(&["clear-cache"]);
    let r = env.ok(&["sync"]);
    assert!(
        r.stdout.contains("departures cannot be detected") && r.stdout.contains("warning ends"),
        "{}",
        r.stdout
    );
    let r = env.ok(&["sync"]);
    assert!(!r.stdout.contains("departures"), "{}", r.stdout);
    let r = env.ok(&["test"]);
    assert!(r.stdout.contains("departures"), "{}", r.stdout);
}

/// Issue 26 item 10: `config set` took `*@company.com` as a protected email (it protects no
/// one) and a schedule that never fires (which `config validate` and the service refuse).
#[test]
fn config_set_refuses_an_email_pattern_and_a_schedule_that_never_fires() {
    let env = Env::new();
    let r = env.expect(
        &["config", "set", "sync.protected_emails", "*@company.com"],
        2,
    );
    assert!(
        r.stderr.contains("`*@company.com` is a pattern") && r.stderr.contains("plain addresses"),
        "{}",
        r.stderr
    );
    let r = env.expect(&["config", "set", "service.schedule", "0 0 30 2 *"], 2);
    assert!(
        r.stderr.contains("service.schedule") && r.stderr.contains("never fires"),
        "{}",
        r.stderr
    );
    assert!(!env.path().join("config.toml").exists(), "nothing written");
    env.ok(&["config", "set", "service.schedule", "0 2 * * *"]);
    // a hand-edited file is held to the same rule
    std::fs::write(
        env.path().join("config.toml"),
        "[sync]\nprotected_emails = [\"boss@x.com\", \"*@x.com\"]\n",
    )
    .unwrap();
    let r = env.expect(&["config", "validate"], 2);
    assert!(r.all().contains("`*@x.com` is a pattern"), "{}", r.all());
}
