//! The member lifecycle: active → revoked → removed, and back. Where the server has the member
//! API (Bitwarden cloud and self-hosted), a member the plan would remove is revoked instead, and
//! removed only once it has stayed gone for the grace period (`sync.remove_revoked_after_days`);
//! a member the connector revoked that comes back is restored in place. A member whose directory
//! entry moved (the same immutable id under a new DN) is renamed, not replaced. Pure: the sync
//! stages read the organization and the store and carry out what this decides.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use foldhash::{HashMap, HashMapExt, HashSet};

use super::diff::{Cache, MemberAction, MemberChange, Plan};
use super::normalize::NormUser;
use super::org::{MemberStatus, OrgMember, Organization};

/// How the plan treats departures.
#[derive(Debug, Clone)]
pub struct Lifecycle<'a> {
    /// `sync.remove_revoked_after_days`: 0 removes at once (no revoke).
    pub grace_days: u32,
    pub now: DateTime<Utc>,
    /// When the connector revoked each member it revoked (externalId → time), from the store.
    pub revoked_at: &'a BTreeMap<String, DateTime<Utc>>,
    /// `sync.remove_disabled`: a disabled user is a departure.
    pub remove_disabled: bool,
}

/// What the store must change for the lifecycle, besides what the server confirms.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LifecycleRecords {
    /// Departures found already revoked with no recorded time (revoked by hand, or the record
    /// was lost): the grace period starts now, never earlier.
    pub clock_starts: Vec<String>,
    /// Records of members that are no longer revoked in the organization, or no longer in it.
    pub dropped: Vec<String>,
    /// Members revoked by this plan or waiting for the grace period: they stay in the groups
    /// the baseline has them in (a revoked member keeps its groups until it is removed).
    pub stay_in_groups: Vec<String>,
}

/// The days left of a grace period that began at `since` (0: over).
pub fn days_left(since: DateTime<Utc>, now: DateTime<Utc>, grace_days: u32) -> i64 {
    let end = since + chrono::Duration::days(i64::from(grace_days));
    let left = end - now;
    if left <= chrono::Duration::zero() {
        0
    } else {
        // a part of a day counts as a day
        (left.num_seconds() + 86_399) / 86_400
    }
}

/// Turns the plan's removals into revokes, removals after the grace period and waits, and adds
/// the restores, against the organization as read (`org`). Only for a server with the member API
/// and `grace_days > 0`; the caller checks both.
pub fn apply(
    plan: &mut Plan,
    org: &Organization,
    users: Option<&[NormUser]>,
    life: &Lifecycle,
) -> LifecycleRecords {
    let mut by_ext: HashMap<&str, &OrgMember> = HashMap::with_capacity(org.members.len());
    for m in &org.members {
        if let Some(e) = m.external_id.as_deref() {
            by_ext.entry(e).or_insert(m);
        }
    }
    let mut records = LifecycleRecords::default();
    departures(plan, &by_ext, life, &mut records);
    if let Some(users) = users {
        restores(plan, users, &by_ext, life);
    }
    // a record whose member is no longer revoked (restored by hand) or no longer there
    for ext in life.revoked_at.keys() {
        let revoked = by_ext
            .get(ext.as_str())
            .is_some_and(|m| m.status == MemberStatus::Revoked);
        if !revoked {
            records.dropped.push(ext.clone());
        }
    }
    records
}

/// Each removal: a revoke (the member is active), a removal (revoked by the connector at least
/// the grace period ago), or a wait (revoked more recently, or with no recorded time: the clock
/// starts now).
fn departures(
    plan: &mut Plan,
    by_ext: &HashMap<&str, &OrgMember>,
    life: &Lifecycle,
    records: &mut LifecycleRecords,
) {
    let overwrite = plan.overwrite_existing;
    let mut waiting = Vec::new();
    let mut kept = Vec::with_capacity(plan.members.len());
    for mut m in std::mem::take(&mut plan.members) {
        let MemberAction::Remove(reason) = m.action else {
            kept.push(m);
            continue;
        };
        let Some(found) = by_ext.get(m.external_id.as_str()) else {
            // not in the organization: the import's `deleted` changes nothing there
            kept.push(m);
            continue;
        };
        if found.status != MemberStatus::Revoked {
            m.action = MemberAction::Revoke(reason);
            m.member_id = Some(found.id.clone());
            records.stay_in_groups.push(m.external_id.clone());
            kept.push(m);
            continue;
        }
        let since = life.revoked_at.get(&m.external_id).copied();
        let left = since.map(|s| days_left(s, life.now, life.grace_days));
        if left == Some(0) {
            // the grace period is over: removed by the import, as before
            kept.push(m);
            continue;
        }
        if since.is_none() {
            records.clock_starts.push(m.external_id.clone());
        }
        records.stay_in_groups.push(m.external_id.clone());
        let days = left.unwrap_or(i64::from(life.grace_days));
        waiting.push(format!(
            "{}: revoked ({}), removed in {days} day(s) if it stays {}",
            m.email,
            match since {
                Some(s) => format!("since {}", s.format("%Y-%m-%d")),
                None => "by hand or before this record; the grace period starts now".into(),
            },
            match reason {
                super::diff::RemovalReason::Disabled => "disabled",
                _ => "out of the directory",
            }
        ));
        if overwrite {
            // listed, so that overwriteExisting keeps it
            m.action = MemberAction::Resend;
            kept.push(m);
        } else {
            plan.unchanged_members += 1;
        }
    }
    plan.members = kept;
    plan.pending_removals.extend(waiting);
}

/// Each user the directory keeps (not deleted, not a disabled departure) whom the connector
/// revoked: restored. A member revoked by hand (no record) stays revoked (the drift report
/// lists it).
fn restores(
    plan: &mut Plan,
    users: &[NormUser],
    by_ext: &HashMap<&str, &OrgMember>,
    life: &Lifecycle,
) {
    if life.revoked_at.is_empty() {
        return;
    }
    let planned: HashMap<String, usize> = plan
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| (m.external_id.clone(), i))
        .collect();
    let mut seen: HashSet<&str> = HashSet::default();
    for u in users {
        if u.deleted || (u.disabled && life.remove_disabled) || u.email.is_none() {
            continue;
        }
        let ext = &*u.external_id;
        if !life.revoked_at.contains_key(ext) || !seen.insert(ext) {
            continue;
        }
        let Some(found) = by_ext
            .get(ext)
            .filter(|m| m.status == MemberStatus::Revoked)
        else {
            continue;
        };
        match planned.get(ext) {
            Some(&i) => {
                let m = &mut plan.members[i];
                if matches!(m.action, MemberAction::Resend | MemberAction::Invite) {
                    m.action = MemberAction::Restore;
                    m.member_id = Some(found.id.clone());
                }
            }
            None => {
                plan.unchanged_members = plan.unchanged_members.saturating_sub(1);
                let mut m = MemberChange::new(
                    ext,
                    found.email.trim().to_lowercase(),
                    MemberAction::Restore,
                );
                m.member_id = Some(found.id.clone());
                plan.members.push(m);
            }
        }
    }
}

/// Pairs a new directory user with the baseline member it used to be: the same immutable id
/// (`identities`: immutable id → the externalId it had) under a new externalId (a DN moved or
/// renamed), while the old externalId is gone from the directory. The invite becomes a rename
/// of that member, and whatever the plan did with the old externalId (a removal or a revoke of
/// someone who left) is dropped. `org`: the member ids, where the organization was read.
pub fn pair_renames(
    plan: &mut Plan,
    users: &[NormUser],
    cache: &Cache,
    identities: &std::collections::HashMap<String, String>,
    org: Option<&Organization>,
) {
    if identities.is_empty() {
        return;
    }
    let in_directory: HashSet<&str> = users.iter().map(|u| &*u.external_id).collect();
    let immutable: HashMap<&str, &str> = users
        .iter()
        .filter_map(|u| Some((&*u.external_id, u.immutable_id.as_deref()?)))
        .collect();
    let member_ids: HashMap<&str, &str> = org
        .map(|o| {
            o.members
                .iter()
                .filter_map(|m| Some((m.external_id.as_deref()?, m.id.as_str())))
                .collect()
        })
        .unwrap_or_default();
    let mut renamed_from: HashSet<String> = HashSet::default();
    for m in &mut plan.members {
        if m.action != MemberAction::Invite {
            continue;
        }
        let Some(old) = immutable
            .get(m.external_id.as_str())
            .and_then(|id| identities.get(*id))
        else {
            continue;
        };
        if *old == m.external_id || in_directory.contains(old.as_str()) {
            continue;
        }
        let Some(cached) = cache.members.get(old) else {
            continue;
        };
        if org.is_some() && !member_ids.contains_key(old.as_str()) {
            continue;
        }
        m.action = MemberAction::Rename;
        m.email.clone_from(&cached.email);
        m.previous_external_id = Some(old.clone());
        m.member_id = member_ids.get(old.as_str()).map(|s| s.to_string());
        renamed_from.insert(old.clone());
    }
    if !renamed_from.is_empty() {
        plan.members
            .retain(|m| m.action == MemberAction::Rename || !renamed_from.contains(&m.external_id));
    }
}

/// Makes the baseline's group rows follow the plan's renames: a renamed member's old
/// externalId becomes its new one, so that the group diff sees the same member (the server's
/// group rows hold member ids, which a rename keeps) and neither the group guard nor a group
/// push takes it for a member out and a member in.
pub fn follow_renames(base: &mut Cache, plan: &Plan) {
    let renames: HashMap<&str, &str> = plan
        .members
        .iter()
        .filter(|m| m.action == MemberAction::Rename)
        .filter_map(|m| Some((m.previous_external_id.as_deref()?, m.external_id.as_str())))
        .collect();
    if renames.is_empty() {
        return;
    }
    for g in base.groups.values_mut() {
        let Some(members) = g.members.as_mut() else {
            continue;
        };
        let mut changed = false;
        for id in members.iter_mut() {
            if let Some(new) = renames.get(&**id) {
                *id = super::model::Id::from(*new);
                changed = true;
            }
        }
        if changed {
            members.sort_unstable();
            if !g.fingerprint.is_empty() {
                g.fingerprint = super::diff::group_fingerprint(&g.name, members);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::diff::RemovalReason;
    use crate::engine::org::MemberType;

    fn member(id: &str, ext: &str, status: MemberStatus) -> OrgMember {
        OrgMember {
            id: id.into(),
            email: format!("{ext}@x.com"),
            external_id: Some(ext.into()),
            status,
            kind: MemberType::User,
        }
    }

    fn user(ext: &str) -> NormUser {
        NormUser {
            reference_id: ext.into(),
            external_id: ext.into(),
            email: Some(format!("{ext}@x.com")),
            disabled: false,
            deleted: false,
            unreadable: None,
            immutable_id: None,
        }
    }

    fn removal(ext: &str) -> MemberChange {
        MemberChange::new(
            ext,
            format!("{ext}@x.com"),
            MemberAction::Remove(RemovalReason::Missing),
        )
    }

    fn now() -> DateTime<Utc> {
        "2026-12-07T12:00:00Z".parse().expect("time")
    }

    #[test]
    fn an_active_leaver_is_revoked_and_a_revoked_one_waits_or_goes() {
        let org = Organization {
            members: vec![
                member("1", "a", MemberStatus::Confirmed),
                member("2", "b", MemberStatus::Revoked),
                member("3", "c", MemberStatus::Revoked),
                member("4", "d", MemberStatus::Revoked),
            ],
            groups: vec![],
        };
        let mut plan = Plan {
            members: vec![removal("a"), removal("b"), removal("c"), removal("d")],
            ..Plan::default()
        };
        let mut at = BTreeMap::new();
        at.insert("b".to_string(), now() - chrono::Duration::days(31));
        at.insert("c".to_string(), now() - chrono::Duration::days(3));
        let life = Lifecycle {
            grace_days: 30,
            now: now(),
            revoked_at: &at,
            remove_disabled: false,
        };
        let records = apply(&mut plan, &org, Some(&[]), &life);
        let actions: Vec<(&str, MemberAction)> = plan
            .members
            .iter()
            .map(|m| (m.external_id.as_str(), m.action))
            .collect();
        assert_eq!(
            actions,
            vec![
                ("a", MemberAction::Revoke(RemovalReason::Missing)),
                ("b", MemberAction::Remove(RemovalReason::Missing)),
            ]
        );
        assert_eq!(plan.members[0].member_id.as_deref(), Some("1"));
        assert_eq!(
            plan.pending_removals.len(),
            2,
            "{:?}",
            plan.pending_removals
        );
        assert!(plan.pending_removals[0].contains("removed in 27 day(s)"));
        // d has no record: its clock starts now, never earlier
        assert_eq!(records.clock_starts, vec!["d".to_string()]);
        assert!(plan.pending_removals[1].contains("removed in 30 day(s)"));
        assert_eq!(plan.departures(), 2);
    }

    #[test]
    fn a_returner_the_connector_revoked_is_restored_and_a_hand_revoke_is_left_alone() {
        let org = Organization {
            members: vec![
                member("1", "a", MemberStatus::Revoked),
                member("2", "b", MemberStatus::Revoked),
            ],
            groups: vec![],
        };
        let mut plan = Plan {
            unchanged_members: 2,
            ..Plan::default()
        };
        let mut at = BTreeMap::new();
        at.insert("a".to_string(), now());
        let life = Lifecycle {
            grace_days: 30,
            now: now(),
            revoked_at: &at,
            remove_disabled: false,
        };
        let records = apply(&mut plan, &org, Some(&[user("a"), user("b")]), &life);
        assert_eq!(plan.members.len(), 1);
        assert_eq!(plan.members[0].action, MemberAction::Restore);
        assert_eq!(plan.members[0].member_id.as_deref(), Some("1"));
        assert_eq!(plan.unchanged_members, 1);
        assert!(records.dropped.is_empty());
        assert!(plan.summary().contains("restore 1"), "{}", plan.summary());
    }

    #[test]
    fn a_moved_entry_is_renamed_and_its_old_removal_dropped() {
        let mut cache = Cache::default();
        cache.members.insert(
            "cn=a,ou=old".into(),
            crate::engine::diff::CachedMember {
                email: "a@x.com".into(),
            },
        );
        let mut moved = user("cn=a,ou=new");
        moved.immutable_id = Some("entryUUID:1".into());
        let mut plan = Plan {
            members: vec![
                MemberChange::new("cn=a,ou=new", "a@x.com", MemberAction::Invite),
                removal("cn=a,ou=old"),
            ],
            ..Plan::default()
        };
        let org = Organization {
            members: vec![member("9", "cn=a,ou=old", MemberStatus::Confirmed)],
            groups: vec![],
        };
        let ids = std::collections::HashMap::from([(
            "entryUUID:1".to_string(),
            "cn=a,ou=old".to_string(),
        )]);
        pair_renames(&mut plan, &[moved], &cache, &ids, Some(&org));
        assert_eq!(plan.members.len(), 1);
        let m = &plan.members[0];
        assert_eq!(m.action, MemberAction::Rename);
        assert_eq!(m.previous_external_id.as_deref(), Some("cn=a,ou=old"));
        assert_eq!(m.member_id.as_deref(), Some("9"));
    }

    #[test]
    fn days_left_rounds_a_part_day_up_and_ends_at_zero() {
        let t = now();
        assert_eq!(days_left(t, t, 30), 30);
        assert_eq!(days_left(t - chrono::Duration::hours(1), t, 30), 30);
        assert_eq!(days_left(t - chrono::Duration::days(30), t, 30), 0);
        assert_eq!(days_left(t - chrono::Duration::days(45), t, 30), 0);
    }
}
