//! Normalization: trims and lower-cases emails, skips entries the server would reject (with a
//! reason the admin sees), flattens nested groups and finds duplicate emails.

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use serde::Serialize;

use super::model::{DirGroup, DirUser, Id, Snapshot};

/// Longest email the server accepts (UTF-16 code units, as the server counts).
pub const MAX_EMAIL_LEN: usize = 256;
/// Longest group name the server accepts.
pub const MAX_GROUP_NAME_LEN: usize = 100;
/// Longest externalId the server accepts.
pub const MAX_EXTERNAL_ID_LEN: usize = 300;

/// A user after normalization: the same shape as [`DirUser`], with the email trimmed,
/// lower-cased and checked (`None` only for deleted users).
pub type NormUser = DirUser;

/// A group after normalization; `members` are the externalIds of every user reachable through
/// nesting (reflexive-transitive closure), in first-seen order without repeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NormGroup {
    pub reference_id: String,
    pub external_id: String,
    pub name: String,
    pub members: Vec<Id>,
}

/// What kind of entry was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    User,
    Group,
    /// A member value of a group that names no user or group read from the directory.
    Member,
}

/// An entry left out of the sync, with the reason shown to the admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub kind: EntryKind,
    pub reference_id: String,
    pub reason: String,
}

/// The normalized directory.
#[derive(Debug, Clone, Default)]
pub struct Normalized {
    pub users: Option<Vec<NormUser>>,
    pub groups: Option<Vec<NormGroup>>,
    pub skipped: Vec<Skipped>,
}

/// Two or more different directory entries share an email. Lists every collision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateEmails {
    /// (email, reference ids of every entry that has it)
    pub collisions: Vec<(String, Vec<String>)>,
}

impl std::fmt::Display for DuplicateEmails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "Emails must be unique: {} email(s) are each used by more than one directory entry, \
             so nothing was synced. Give each entry its own email, or leave all but one out \
             with sync.user_filter:",
            self.collisions.len()
        )?;
        for (i, (email, ids)) in self.collisions.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  {email}: {}", ids.join(" | "))?;
        }
        Ok(())
    }
}

impl std::error::Error for DuplicateEmails {}

fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// A practical email syntax check close to what the server accepts: one `@`, a non-empty local
/// part, a dotted domain, no white space or control characters.
pub fn is_valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    if local.is_empty() || domain.is_empty() || domain.contains('@') {
        return false;
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') {
        return false;
    }
    !domain.contains("..") && !local.starts_with('.') && !local.ends_with('.')
}

/// Checks an email; `Err` holds the reason it is skipped.
fn check_email(raw: Option<&str>) -> Result<String, String> {
    let Some(raw) = raw else {
        return Err("no email".into());
    };
    let email = raw.trim().to_lowercase();
    if email.is_empty() {
        return Err("no email".into());
    }
    if utf16_len(&email) > MAX_EMAIL_LEN {
        return Err(format!(
            "email longer than {MAX_EMAIL_LEN} characters ({})",
            utf16_len(&email)
        ));
    }
    if !is_valid_email(&email) {
        return Err(format!("invalid email `{email}`"));
    }
    Ok(email)
}

/// Normalizes a snapshot. Fails only on duplicate emails, listing every collision.
pub fn normalize(snapshot: Snapshot) -> Result<Normalized, DuplicateEmails> {
    let mut skipped = Vec::new();
    let users = match snapshot.users {
        Some(users) => Some(normalize_users(users, &mut skipped)?),
        None => None,
    };
    let groups = snapshot
        .groups
        .map(|groups| normalize_groups(groups, &mut skipped));
    Ok(Normalized {
        users,
        groups,
        skipped,
    })
}

/// Normalizes the users of a snapshot (emails, lengths, duplicates); what is dropped goes to
/// `skipped`. Fails only on duplicate emails.
pub fn normalize_users(
    users: Vec<DirUser>,
    skipped: &mut Vec<Skipped>,
) -> Result<Vec<NormUser>, DuplicateEmails> {
    let mut out: Vec<NormUser> = Vec::with_capacity(users.len());
    for u in users {
        if let Some(reason) = u.unreadable {
            skipped.push(Skipped {
                kind: EntryKind::User,
                reference_id: u.reference_id,
                reason,
            });
            continue;
        }
        if utf16_len(&u.external_id) > MAX_EXTERNAL_ID_LEN {
            skipped.push(Skipped {
                kind: EntryKind::User,
                reason: format!("externalId longer than {MAX_EXTERNAL_ID_LEN} characters"),
                reference_id: u.reference_id,
            });
            continue;
        }
        let email = match check_email(u.email.as_deref()) {
            Ok(e) => Some(e),
            // A deleted entry is still useful without an email: it removes by externalId.
            Err(_) if u.deleted => None,
            Err(reason) => {
                skipped.push(Skipped {
                    kind: EntryKind::User,
                    reference_id: u.reference_id,
                    reason,
                });
                continue;
            }
        };
        out.push(NormUser {
            reference_id: u.reference_id,
            external_id: u.external_id,
            email,
            disabled: u.disabled,
            deleted: u.deleted,
            unreadable: None,
            immutable_id: u.immutable_id,
        });
    }
    dedupe_users(out, skipped)
}

/// Duplicate rules (spec §2.5, made order-independent): byte-identical repeats are dropped
/// silently; a deleted entry that shares its email with an active one is dropped; two different
/// active entries with one email are an error; a second entry with an externalId already seen
/// is skipped with a reason.
fn dedupe_users(
    users: Vec<NormUser>,
    skipped: &mut Vec<Skipped>,
) -> Result<Vec<NormUser>, DuplicateEmails> {
    let mut active_by_email: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, u) in users.iter().enumerate() {
        if !u.deleted
            && let Some(e) = &u.email
        {
            active_by_email.entry(e.as_str()).or_default().push(i);
        }
    }
    let mut drop = vec![false; users.len()];
    let mut collisions = Vec::new();
    for (email, idx) in &active_by_email {
        if idx.len() < 2 {
            continue;
        }
        let first = &users[idx[0]];
        let mut distinct: Vec<usize> = vec![idx[0]];
        for &j in &idx[1..] {
            if users[j] == *first || distinct.iter().any(|&d| users[d] == users[j]) {
                drop[j] = true;
            } else {
                distinct.push(j);
            }
        }
        if distinct.len() > 1 {
            let ids = distinct
                .iter()
                .map(|&d| users[d].reference_id.clone())
                .collect();
            collisions.push((email.to_string(), ids));
        }
    }
    if !collisions.is_empty() {
        collisions.sort();
        return Err(DuplicateEmails { collisions });
    }
    for (i, u) in users.iter().enumerate() {
        if u.deleted
            && let Some(e) = &u.email
            && active_by_email.contains_key(e.as_str())
        {
            drop[i] = true;
        }
    }
    let mut seen_ids: HashSet<Id> = HashSet::new();
    let mut out = Vec::with_capacity(users.len());
    for (u, dropped) in users.into_iter().zip(drop) {
        if dropped {
            continue;
        }
        if !seen_ids.insert(u.external_id.clone()) {
            skipped.push(Skipped {
                kind: EntryKind::User,
                reason: format!(
                    "externalId `{}` already used by another entry",
                    u.external_id
                ),
                reference_id: u.reference_id,
            });
            continue;
        }
        out.push(u);
    }
    Ok(out)
}

/// Normalizes the groups of a snapshot (names, lengths) and flattens their nesting. A nested
/// reference that names no group read (nor one skipped here) is listed as a skipped member.
pub fn normalize_groups(groups: Vec<DirGroup>, skipped: &mut Vec<Skipped>) -> Vec<NormGroup> {
    let mut kept: Vec<DirGroup> = Vec::with_capacity(groups.len());
    let mut names: Vec<String> = Vec::with_capacity(groups.len());
    let mut skipped_refs: HashSet<String> = HashSet::new();
    for mut g in groups {
        let name = g.name.as_deref().map(str::trim).unwrap_or_default();
        let reason = if let Some(reason) = g.unreadable.take() {
            Some(reason)
        } else if name.is_empty() {
            Some("group has no name".to_string())
        } else if utf16_len(name) > MAX_GROUP_NAME_LEN {
            Some(format!(
                "group name longer than {MAX_GROUP_NAME_LEN} characters ({})",
                utf16_len(name)
            ))
        } else if utf16_len(&g.external_id) > MAX_EXTERNAL_ID_LEN {
            Some(format!(
                "externalId longer than {MAX_EXTERNAL_ID_LEN} characters"
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            skipped_refs.insert(g.reference_id.clone());
            skipped.push(Skipped {
                kind: EntryKind::Group,
                reference_id: g.reference_id,
                reason,
            });
            continue;
        }
        names.push(name.to_string());
        kept.push(g);
    }
    unmatched_members(&kept, &names, &skipped_refs, skipped);
    let closures = flatten(&kept);
    kept.into_iter()
        .zip(names)
        .zip(closures)
        .map(|((g, name), members)| NormGroup {
            reference_id: g.reference_id,
            external_id: g.external_id,
            name,
            members,
        })
        .collect()
}

/// Lists every nested reference of a kept group that names no group read (a member DN that
/// matched neither a user nor a group): it is left out, and the admin sees which and where.
fn unmatched_members(
    kept: &[DirGroup],
    names: &[String],
    skipped_refs: &HashSet<String>,
    skipped: &mut Vec<Skipped>,
) {
    let known: HashSet<&str> = kept.iter().map(|g| g.reference_id.as_str()).collect();
    for (g, name) in kept.iter().zip(names) {
        let mut seen: HashSet<&str> = HashSet::new();
        for r in &g.group_members {
            if known.contains(r.as_str()) || skipped_refs.contains(r) || !seen.insert(r) {
                continue;
            }
            skipped.push(Skipped {
                kind: EntryKind::Member,
                reference_id: r.clone(),
                reason: format!(
                    "member of group `{name}` that matches no user or group read from the \
                     directory (outside the search bases or filters, unreadable, or gone); left \
                     out of the group"
                ),
            });
        }
    }
}

/// For each group, its direct user members plus those of every group reachable from it through
/// nested-group references within `groups` (cycles allowed). Strongly connected components are
/// found with an iterative Tarjan walk and their closures computed once each, successors first.
pub fn flatten(groups: &[DirGroup]) -> Vec<Vec<Id>> {
    let n = groups.len();
    let by_ref: HashMap<&str, usize> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| (g.reference_id.as_str(), i))
        .collect();
    let adj: Vec<Vec<usize>> = groups
        .iter()
        .map(|g| {
            let mut v: Vec<usize> = g
                .group_members
                .iter()
                .filter_map(|r| by_ref.get(r.as_str()).copied())
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        })
        .collect();

    // Intern user ids in first-seen order, then renumber them in string order: the closures,
    // sorted by number, come out sorted by id (the diff sorts them; sorted input is linear).
    let mut ids: Vec<&Id> = Vec::new();
    let mut id_of: HashMap<&str, u32> = HashMap::new();
    let mut direct: Vec<Vec<u32>> = groups
        .iter()
        .map(|g| {
            g.user_members
                .iter()
                .map(|m| {
                    *id_of.entry(m).or_insert_with(|| {
                        ids.push(m);
                        (ids.len() - 1) as u32
                    })
                })
                .collect()
        })
        .collect();
    drop(id_of);
    let mut order: Vec<u32> = (0..ids.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| ids[a as usize].cmp(ids[b as usize]));
    let mut rank = vec![0u32; ids.len()];
    for (r, &i) in order.iter().enumerate() {
        rank[i as usize] = r as u32;
    }
    for d in &mut direct {
        for i in d.iter_mut() {
            *i = rank[*i as usize];
        }
    }
    let ids: Vec<&Id> = order.iter().map(|&i| ids[i as usize]).collect();

    let (comp, ncomp) = tarjan(&adj);
    let mut comp_direct: Vec<Vec<u32>> = vec![Vec::new(); ncomp];
    let mut comp_succ: Vec<Vec<usize>> = vec![Vec::new(); ncomp];
    for g in 0..n {
        comp_direct[comp[g]].extend_from_slice(&direct[g]);
        for &w in &adj[g] {
            if comp[w] != comp[g] {
                comp_succ[comp[g]].push(comp[w]);
            }
        }
    }
    // Tarjan numbers components so that every successor has a smaller number.
    let mut closure: Vec<Vec<u32>> = Vec::with_capacity(ncomp);
    for c in 0..ncomp {
        let mut acc = std::mem::take(&mut comp_direct[c]);
        comp_succ[c].sort_unstable();
        comp_succ[c].dedup();
        for &s in &comp_succ[c] {
            acc.extend_from_slice(&closure[s]);
        }
        acc.sort_unstable();
        acc.dedup();
        closure.push(acc);
    }
    (0..n)
        .map(|g| {
            closure[comp[g]]
                .iter()
                .map(|&i| Id::clone(ids[i as usize]))
                .collect()
        })
        .collect()
}

/// Iterative Tarjan SCC. Returns the component of each node and the number of components;
/// components are numbered in completion order (reverse topological order).
fn tarjan(adj: &[Vec<usize>]) -> (Vec<usize>, usize) {
    const UNSET: usize = usize::MAX;
    let n = adj.len();
    let mut index = vec![UNSET; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut comp = vec![UNSET; n];
    let mut stack: Vec<usize> = Vec::new();
    let mut next_index = 0usize;
    let mut ncomp = 0usize;
    for start in 0..n {
        if index[start] != UNSET {
            continue;
        }
        let mut calls: Vec<(usize, usize)> = vec![(start, 0)];
        index[start] = next_index;
        low[start] = next_index;
        next_index += 1;
        stack.push(start);
        on_stack[start] = true;
        while let Some(&mut (v, ref mut i)) = calls.last_mut() {
            if *i < adj[v].len() {
                let w = adj[v][*i];
                *i += 1;
                if index[w] == UNSET {
                    index[w] = next_index;
                    low[w] = next_index;
                    next_index += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    calls.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
            } else {
                calls.pop();
                if let Some(&(u, _)) = calls.last() {
                    low[u] = low[u].min(low[v]);
                }
                if low[v] == index[v] {
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        comp[w] = ncomp;
                        if w == v {
                            break;
                        }
                    }
                    ncomp += 1;
                }
            }
        }
    }
    (comp, ncomp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, email: Option<&str>) -> DirUser {
        DirUser {
            reference_id: format!("cn={id}"),
            external_id: id.into(),
            email: email.map(str::to_string),
            disabled: false,
            deleted: false,
            unreadable: None,
            immutable_id: None,
        }
    }

    fn group(name: &str, users: &[&str], groups: &[&str]) -> DirGroup {
        DirGroup {
            reference_id: name.to_string(),
            external_id: format!("ext-{name}"),
            name: Some(name.to_string()),
            user_members: users.iter().map(|s| Id::from(*s)).collect(),
            group_members: groups.iter().map(|s| s.to_string()).collect(),
            unreadable: None,
        }
    }

    fn closures(groups: &[DirGroup]) -> HashMap<String, Vec<String>> {
        flatten(groups)
            .into_iter()
            .zip(groups)
            .map(|(m, g)| {
                let m: Vec<String> = m.iter().map(|s| s.to_string()).collect();
                assert!(
                    m.is_sorted(),
                    "closure of {} not in id order: {m:?}",
                    g.reference_id
                );
                (g.reference_id.clone(), m)
            })
            .collect()
    }

    fn set(v: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn closures_come_out_in_id_order_whatever_the_directory_order() {
        let c = closures(&[
            group("A", &["z", "m"], &["B"]),
            group("B", &["q", "a"], &[]),
        ]);
        assert_eq!(c["A"], set(&["a", "m", "q", "z"]));
        assert_eq!(c["B"], set(&["a", "q"]));
    }

    #[test]
    fn flatten_two_cycle() {
        let c = closures(&[group("A", &["a"], &["B"]), group("B", &["b"], &["A"])]);
        assert_eq!(c["A"], set(&["a", "b"]));
        assert_eq!(c["B"], set(&["a", "b"]));
    }

    #[test]
    fn flatten_three_cycle() {
        let c = closures(&[
            group("A", &["a"], &["B"]),
            group("B", &["b"], &["C"]),
            group("C", &["c"], &["A"]),
        ]);
        for g in ["A", "B", "C"] {
            assert_eq!(c[g], set(&["a", "b", "c"]));
        }
    }

    #[test]
    fn flatten_diamond() {
        let c = closures(&[
            group("A", &["a"], &["B", "C"]),
            group("B", &["b"], &["D"]),
            group("C", &["c"], &["D"]),
            group("D", &["d"], &[]),
        ]);
        assert_eq!(c["A"], set(&["a", "b", "c", "d"]));
        assert_eq!(c["B"], set(&["b", "d"]));
        assert_eq!(c["C"], set(&["c", "d"]));
        assert_eq!(c["D"], set(&["d"]));
    }

    #[test]
    fn flatten_deep_cycle() {
        let c = closures(&[
            group("A", &["a"], &["B"]),
            group("B", &["b"], &["C"]),
            group("C", &["c"], &["D"]),
            group("D", &["d"], &["B"]),
        ]);
        assert_eq!(c["A"], set(&["a", "b", "c", "d"]));
        for g in ["B", "C", "D"] {
            assert_eq!(c[g], set(&["b", "c", "d"]));
        }
    }

    #[test]
    fn flatten_upstream_circular_fixture() {
        // directory-circular-groups.ldif, spec §9.3
        let c = closures(&[
            group("Platform", &["bob"], &["Engineering"]),
            group("DevOps", &["alice"], &["Platform"]),
            group("QA", &["carol", "david"], &[]),
            group("Engineering", &[], &["DevOps", "QA"]),
            group("Marketing", &["eva", "frank"], &[]),
            group("HR", &["roland", "teirtza"], &[]),
            group("AllStaff", &[], &["Engineering", "Marketing", "HR"]),
            group("Contractors", &["david"], &["DevOps"]),
            group("TestNestA", &["roland"], &["TestNestB"]),
            group("TestNestB", &["teirtza"], &["TestNestA"]),
        ]);
        let core = set(&["alice", "bob", "carol", "david"]);
        for g in ["Platform", "DevOps", "Engineering", "Contractors"] {
            assert_eq!(c[g], core, "{g}");
        }
        assert_eq!(c["QA"], set(&["carol", "david"]));
        assert_eq!(c["Marketing"], set(&["eva", "frank"]));
        assert_eq!(c["HR"], set(&["roland", "teirtza"]));
        assert_eq!(c["AllStaff"].len(), 8);
        assert_eq!(c["TestNestA"], set(&["roland", "teirtza"]));
        assert_eq!(c["TestNestB"], set(&["roland", "teirtza"]));
    }

    #[test]
    fn flatten_ignores_references_outside_the_set_and_handles_self_loops() {
        let c = closures(&[group("A", &["a"], &["A", "missing", "cn=someuser"])]);
        assert_eq!(c["A"], set(&["a"]));
    }

    #[test]
    fn flatten_long_chain_does_not_overflow_the_stack() {
        // Deep nesting must not need a deep call stack.
        let n = 2_000;
        let groups: Vec<DirGroup> = (0..n)
            .map(|i| {
                let mut g = group(&format!("g{i}"), &[format!("u{i}").as_str()], &[]);
                if i + 1 < n {
                    g.group_members.push(format!("g{}", i + 1));
                }
                g
            })
            .collect();
        let f = flatten(&groups);
        assert_eq!(f[0].len(), n);
        assert_eq!(f[n - 1].len(), 1);
    }

    #[test]
    fn emails_are_trimmed_and_lowercased_and_bad_ones_skipped() {
        let long = format!("{}@example.com", "x".repeat(250));
        let n = normalize(Snapshot {
            users: Some(vec![
                user("1", Some("  Alice@Example.COM ")),
                user("2", None),
                user("3", Some("not-an-email")),
                user("4", Some(&long)),
                user("5", Some("bob@@example.com")),
                user("6", Some("has space@example.com")),
            ]),
            groups: None,
        })
        .unwrap();
        let users = n.users.unwrap();
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].email.as_deref(), Some("alice@example.com"));
        let reasons: Vec<&str> = n.skipped.iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(reasons[0], "no email");
        assert!(reasons[1].starts_with("invalid email"));
        assert!(reasons[2].starts_with("email longer than 256"));
        assert!(reasons[3].starts_with("invalid email"));
        assert!(reasons[4].starts_with("invalid email"));
        assert_eq!(n.skipped[0].reference_id, "cn=2");
    }

    #[test]
    fn deleted_user_without_email_is_kept_for_removal() {
        let mut u = user("1", None);
        u.deleted = true;
        let n = normalize(Snapshot {
            users: Some(vec![u]),
            groups: None,
        })
        .unwrap();
        assert_eq!(n.users.unwrap().len(), 1);
        assert!(n.skipped.is_empty());
    }

    #[test]
    fn groups_with_bad_names_or_ids_are_skipped() {
        let mut long_id = group("ok2", &[], &[]);
        long_id.external_id = "x".repeat(301);
        let mut no_name = group("noname", &[], &[]);
        no_name.name = None;
        let n = normalize(Snapshot {
            users: None,
            groups: Some(vec![
                group("ok", &[], &[]),
                group(&"n".repeat(101), &[], &[]),
                long_id,
                no_name,
            ]),
        })
        .unwrap();
        assert_eq!(n.groups.unwrap().len(), 1);
        let reasons: Vec<&str> = n.skipped.iter().map(|s| s.reason.as_str()).collect();
        assert!(reasons[0].starts_with("group name longer than 100"));
        assert!(reasons[1].starts_with("externalId longer than 300"));
        assert_eq!(reasons[2], "group has no name");
    }

    #[test]
    fn identical_duplicates_are_silently_merged() {
        let n = normalize(Snapshot {
            users: Some(vec![user("1", Some("a@x.com")), user("1", Some("A@x.com"))]),
            groups: None,
        })
        .unwrap();
        assert_eq!(n.users.unwrap().len(), 1);
    }

    #[test]
    fn tombstone_sharing_an_email_with_an_active_user_is_dropped_in_either_order() {
        for order in [0, 1] {
            let mut dead = user("old", Some("a@x.com"));
            dead.deleted = true;
            let live = user("new", Some("a@x.com"));
            let users = if order == 0 {
                vec![dead, live]
            } else {
                vec![live, dead]
            };
            let n = normalize(Snapshot {
                users: Some(users),
                groups: None,
            })
            .unwrap();
            let users = n.users.unwrap();
            assert_eq!(users.len(), 1);
            assert_eq!(&*users[0].external_id, "new");
        }
    }

    #[test]
    fn every_duplicate_email_is_listed_with_its_entries() {
        let users: Vec<DirUser> = (0..5)
            .flat_map(|i| {
                [
                    user(&format!("a{i}"), Some(&format!("dup{i}@x.com"))),
                    user(&format!("b{i}"), Some(&format!("DUP{i}@x.com"))),
                ]
            })
            .chain([user("c0", Some("dup0@x.com"))])
            .collect();
        let err = normalize(Snapshot {
            users: Some(users),
            groups: None,
        })
        .unwrap_err();
        assert_eq!(err.collisions.len(), 5);
        assert_eq!(
            err.collisions[0],
            (
                "dup0@x.com".to_string(),
                vec!["cn=a0".into(), "cn=b0".into(), "cn=c0".into()]
            )
        );
        let msg = err.to_string();
        assert!(msg.contains("dup4@x.com: cn=a4 | cn=b4"), "{msg}");
    }

    #[test]
    fn same_external_id_twice_skips_the_second() {
        let n = normalize(Snapshot {
            users: Some(vec![user("1", Some("a@x.com")), user("1", Some("b@x.com"))]),
            groups: None,
        })
        .unwrap();
        assert_eq!(n.users.unwrap().len(), 1);
        assert!(n.skipped[0].reason.contains("already used"));
    }
}
