//! The guards: refuse a push that would remove too many members (counted against the baseline:
//! the organization, or the cache), that follows a directory read which returned no users while
//! the baseline has some, that could remove members with no baseline at all, that lets the
//! server remove members (`overwriteExisting`) the baseline may not know, or that would empty a
//! group, take too many members out of one group or too many member references out of the
//! groups it changes, or (with no baseline) send groups without members.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::diff::{Baseline, MemberAction, Plan};

/// Default for `sync.max_removals`.
pub const DEFAULT_MAX_REMOVALS: u64 = 100;
/// Default for `sync.max_removal_percent`.
pub const DEFAULT_MAX_REMOVAL_PERCENT: u64 = 20;

/// Default for `sync.max_group_removal_percent`.
pub const DEFAULT_MAX_GROUP_REMOVAL_PERCENT: u64 = 50;

/// The limits; 0 switches a limit off.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct GuardLimits {
    pub max_removals: u64,
    pub max_removal_percent: u64,
    pub max_group_removal_percent: u64,
}

impl Default for GuardLimits {
    fn default() -> Self {
        GuardLimits {
            max_removals: DEFAULT_MAX_REMOVALS,
            max_removal_percent: DEFAULT_MAX_REMOVAL_PERCENT,
            max_group_removal_percent: DEFAULT_MAX_GROUP_REMOVAL_PERCENT,
        }
    }
}

/// `Some(reason)` when the guard refuses the member half of the plan, with the numbers.
pub fn check_guard(plan: &Plan, limits: GuardLimits) -> Option<String> {
    // revokes count as removals: both end someone's access
    let removals = plan.departures() as u64;
    let verb = if plan.revokes() > 0 {
        "revoke or remove"
    } else {
        "remove"
    };
    let cached = plan.cached_members as u64;
    let base = match plan.baseline {
        Baseline::Organization => "the organization has",
        _ => "the cache holds",
    };
    if plan.users_synced && plan.directory_users == 0 && cached > 0 {
        return Some(format!(
            "the directory returned no users while {base} {cached} member(s); \
             a sync now could remove everyone"
        ));
    }
    if plan.baseline == Baseline::None && (plan.overwrite_existing || removals > 0) {
        return Some(format!(
            "there is nothing to count removals against: the local sync cache is empty and the \
             server cannot be read back, and this push can remove members ({}); check the plan \
             with `test` first",
            if plan.overwrite_existing {
                "sync.overwrite_existing lets the server remove every member not listed".to_string()
            } else {
                format!("{removals} removal(s)")
            }
        ));
    }
    if plan.overwrite_existing && !plan.baseline_complete {
        return Some(
            "sync.overwrite_existing lets the server remove every member with an externalId \
             that this push does not list, and the plan cannot count them: the server cannot be \
             read back, and the local sync cache was started without a baseline (first sync, \
             clear-cache or another server.url), so it may miss members the server has. Once \
             allowed, the cache holds what the server kept and later pushes are counted"
                .to_string(),
        );
    }
    if limits.max_removals > 0 && removals > limits.max_removals {
        return Some(format!(
            "the sync would {verb} {removals} member(s), more than sync.max_removals = {}",
            limits.max_removals
        ));
    }
    // One removal is always allowed, so that small organizations can offboard a person.
    if limits.max_removal_percent > 0
        && cached > 0
        && removals > 1
        && removals * 100 > limits.max_removal_percent * cached
    {
        return Some(format!(
            "the sync would {verb} {removals} of {cached} member(s) ({:.1}%), more than \
             sync.max_removal_percent = {}%",
            removals as f64 * 100.0 / cached as f64,
            limits.max_removal_percent
        ));
    }
    None
}

/// Groups with fewer members than this before a change are judged with the others only (one
/// or two departures from a small group are ordinary), never on their own.
pub const GROUP_GUARD_FLOOR: usize = 5;

/// A member list read from the server against what it should hold: `expected` members, of
/// which `read` are in it. More than `sync.max_removal_percent` of them missing (and at least 5)
/// is taken for a short answer of the server rather than removals made by hand: a cache made
/// from it would lose members. 0 turns it off with the member guard.
pub fn check_member_list(expected: usize, read: usize, limits: GuardLimits) -> Option<String> {
    let lost = expected.saturating_sub(read) as u64;
    let pct = limits.max_removal_percent;
    if pct == 0 || lost < 5 || lost * 100 <= pct * expected as u64 {
        return None;
    }
    Some(format!(
        "{lost} of the {expected} members it should hold are not in it, more than \
         sync.max_removal_percent = {pct}%"
    ))
}

/// The organization's member list against the sync cache, counted where it changes the plan:
/// the members the cache confirmed (`cached`: externalId → email) that the organization no
/// longer lists (neither by externalId nor by email: `org_emails`, lowercase) and that the
/// plan would therefore invite again, because the directory still lists them. Members gone from
/// both the organization and the directory (an offboarding done in both places) do not count.
/// More than `sync.max_removal_percent` of the confirmed members (and at least 5) is taken for a
/// short answer of the server: a plan made from it would invite them again.
pub fn check_short_member_list(
    cached: &HashMap<String, String>,
    org_emails: &HashSet<String>,
    plan: &Plan,
    limits: GuardLimits,
) -> Option<String> {
    let pct = limits.max_removal_percent;
    if pct == 0 || cached.is_empty() {
        return None;
    }
    let missing: Vec<&str> = plan
        .members
        .iter()
        .filter(|m| m.action == MemberAction::Invite && cached.contains_key(&m.external_id))
        .filter(|m| !org_emails.contains(&m.email.trim().to_lowercase()))
        .map(|m| m.email.as_str())
        .collect();
    let lost = missing.len() as u64;
    let total = cached.len();
    if lost < 5 || lost * 100 <= pct * total as u64 {
        return None;
    }
    let shown: Vec<&str> = missing.iter().take(5).copied().collect();
    Some(format!(
        "the organization's member list looks incomplete: {lost} of the {total} members the \
         sync cache confirmed are not in it although the directory still lists them ({}{}), \
         more than sync.max_removal_percent = {pct}%. A short answer from the server is not \
         used. If they were removed in the Admin Console on purpose, --allow-mass-removal \
         once invites these {lost} members again",
        shown.join(", "),
        if missing.len() > shown.len() {
            ", …"
        } else {
            ""
        }
    ))
}

/// `Some(reason)` when the group guard refuses the group half of the plan: a group the baseline
/// has members in would be emptied; one group of at least [`GROUP_GUARD_FLOOR`] members, or the
/// groups the plan changes together, would lose more than `max_group_removal_percent` of their
/// member references; or, with no baseline to compare with, the directory read gives groups
/// without members (most of them empty, or no users at all).
pub fn check_group_guard(plan: &Plan, limits: GuardLimits) -> Option<String> {
    let pct = limits.max_group_removal_percent;
    if pct == 0 {
        return None;
    }
    recreated_group(plan)
        .or_else(|| without_baseline(plan, pct))
        .or_else(|| emptied_groups(plan))
        .or_else(|| gutted_group(plan, pct))
        .or_else(|| groups_loss(plan, pct))
}

/// What most often makes a directory read give groups without their members.
const EMPTY_GROUP_CAUSES: &str = "a typo in sync.member_attribute or sync.user_path, or a user \
                                  or group filter that leaves the members out";

/// Whether `removed` of `before` is more than `pct` percent.
fn over(removed: u64, before: u64, pct: u64) -> bool {
    before > 0 && removed * 100 > pct * before
}

/// A group the plan creates although the sync cache confirmed it with members (see
/// `count_creates_against_rows`): the organization's group list does not have it. Deleted by
/// hand, or a short answer from the server; sending it may take out members the guard cannot
/// see, so a person decides.
fn recreated_group(plan: &Plan) -> Option<String> {
    let g = plan.groups.iter().find(|g| {
        g.action == crate::engine::diff::GroupAction::Create
            && g.previous_member_count.is_some_and(|n| n > 0)
    })?;
    Some(format!(
        "the organization's group list does not have group `{}`, which the sync cache \
         confirmed with {} member(s); the server's answer may be incomplete. If the group \
         was deleted in the Admin Console on purpose, it is created again with \
         --allow-mass-removal",
        g.name,
        g.previous_member_count.unwrap_or(0)
    ))
}

/// With no baseline to compare with: no users but groups, most groups empty, or a group
/// replaced on the server with far fewer members than it last confirmed.
fn without_baseline(plan: &Plan, pct: u64) -> Option<String> {
    if plan.baseline != Baseline::None || plan.groups.is_empty() {
        return None;
    }
    let causes = EMPTY_GROUP_CAUSES;
    if plan.users_synced && plan.directory_users == 0 {
        return Some(format!(
            "the directory returned no users but {} group(s), and there is no baseline to \
             compare with (the local sync cache is empty and the server cannot be read \
             back): the groups would be sent without members and emptied on the server. \
             Likely causes: {causes}",
            plan.groups.len()
        ));
    }
    let empty: Vec<&str> = plan
        .groups
        .iter()
        .filter(|g| g.members.is_empty())
        .map(|g| g.name.as_str())
        .collect();
    let total = plan.groups.len() as u64;
    if let Some(first) = empty.first()
        && (empty.len() as u64 == total || over(empty.len() as u64, total, pct))
    {
        return Some(format!(
            "{} of {total} group(s) read from the directory have no members (e.g. \
             `{first}`), more than sync.max_group_removal_percent = {pct}%, and there is no \
             baseline to compare with (the local sync cache is empty and the server cannot \
             be read back): the groups would be emptied on the server. Likely causes: \
             {causes}",
            empty.len()
        ));
    }
    // a group replaced on the server with far fewer members than it last confirmed
    let g = plan.groups.iter().find(|g| {
        g.action == crate::engine::diff::GroupAction::Replace
            && g.previous_member_count.is_some_and(|before| {
                before >= GROUP_GUARD_FLOOR && over(g.removed_members as u64, before as u64, pct)
            })
    })?;
    let before = g.previous_member_count.unwrap_or_default();
    Some(format!(
        "group `{}` would be sent with {} member(s), but the server last confirmed {before} \
         in it, and there is no baseline to compare with (the local sync cache is empty \
         and the server cannot be read back). The import replaces a group's members: {} \
         member(s) would lose the group and the collections it gives, more than \
         sync.max_group_removal_percent = {pct}%. Likely causes: {causes}. If the \
         directory is right, allow it once with --allow-mass-removal",
        g.name,
        g.members.len(),
        g.removed_members
    ))
}

/// Groups the baseline has members in that the plan would empty.
fn emptied_groups(plan: &Plan) -> Option<String> {
    let emptied: Vec<&str> = plan
        .groups
        .iter()
        .filter(|g| g.members.is_empty() && g.removed_members > 0)
        .map(|g| g.name.as_str())
        .collect();
    let first = emptied.first()?;
    Some(format!(
        "the sync would empty {} group(s) (e.g. `{first}`); a wrong group filter or \
         sync.member_attribute reads groups without members",
        emptied.len()
    ))
}

/// Each group on its own: a large loss in one group is not diluted by the others.
fn gutted_group(plan: &Plan, pct: u64) -> Option<String> {
    let g = plan.groups.iter().find(|g| {
        g.previous_member_count.is_some_and(|before| {
            before >= GROUP_GUARD_FLOOR && over(g.removed_members as u64, before as u64, pct)
        })
    })?;
    let before = g.previous_member_count.unwrap_or_default();
    Some(format!(
        "the sync would take {} of {before} member(s) ({:.1}%) out of group `{}`, more than \
         sync.max_group_removal_percent = {pct}%; {EMPTY_GROUP_CAUSES}",
        g.removed_members,
        g.removed_members as f64 * 100.0 / before as f64,
        g.name
    ))
}

/// The groups the plan changes together.
fn groups_loss(plan: &Plan, pct: u64) -> Option<String> {
    let (removed, before) = plan
        .groups
        .iter()
        .filter_map(|g| Some((g.removed_members as u64, g.previous_member_count? as u64)))
        .fold((0, 0), |(r, b), (gr, gb)| (r + gr, b + gb));
    if !over(removed, before, pct) {
        return None;
    }
    Some(format!(
        "the sync would take {removed} of {before} member reference(s) ({:.1}%) out of the \
         groups it changes, more than sync.max_group_removal_percent = {pct}%",
        removed as f64 * 100.0 / before as f64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_list_much_shorter_than_the_cache_is_refused() {
        let limits = GuardLimits {
            max_removal_percent: 10,
            ..GuardLimits::default()
        };
        let refused = check_member_list(50, 19, limits).unwrap();
        assert!(refused.contains("31 of the 50"), "{refused}");
        assert!(
            check_member_list(50, 46, limits).is_none(),
            "4: below the floor"
        );
        assert!(check_member_list(100, 90, limits).is_none(), "10%: within");
        assert!(check_member_list(100, 89, limits).is_some());
        assert!(check_member_list(0, 0, limits).is_none());
        let off = GuardLimits {
            max_removal_percent: 0,
            ..limits
        };
        assert!(check_member_list(50, 0, off).is_none());
    }

    /// Only the members whose absence changes the plan count: confirmed by the cache, not in
    /// the organization by externalId nor by email, and still in the directory (invited again).
    #[test]
    fn a_short_member_list_counts_only_the_members_the_plan_would_invite_again() {
        let limits = GuardLimits {
            max_removal_percent: 10,
            ..GuardLimits::default()
        };
        let cached: HashMap<String, String> = (0..50)
            .map(|i| (format!("e{i}"), format!("u{i}@x.com")))
            .collect();
        let invite = |i: usize| MemberChange {
            external_id: format!("e{i}"),
            email: format!("U{i}@x.com"),
            action: MemberAction::Invite,
            member_id: None,
            previous_external_id: None,
        };
        // 20 confirmed members gone from the organization, the directory still lists them
        let mut p = plan(50, 50, 0);
        p.members = (0..20).map(invite).collect();
        let r = check_short_member_list(&cached, &HashSet::new(), &p, limits).unwrap();
        assert!(
            r.contains("20 of the 50") && r.contains("invites these 20"),
            "{r}"
        );
        // the directory agrees that they are gone: nothing is invited, nothing to refuse
        let p = plan(50, 30, 0);
        assert!(check_short_member_list(&cached, &HashSet::new(), &p, limits).is_none());
        // members whose externalId was cleared by hand are listed by email
        let mut p = plan(50, 50, 0);
        p.members = (0..20).map(invite).collect();
        let listed: HashSet<String> = (0..20).map(|i| format!("u{i}@x.com")).collect();
        assert!(check_short_member_list(&cached, &listed, &p, limits).is_none());
        // new members are not missing ones
        let mut p = plan(50, 70, 0);
        p.members = (100..120).map(invite).collect();
        assert!(check_short_member_list(&cached, &HashSet::new(), &p, limits).is_none());
        // within the percentage, and switched off
        let mut p = plan(50, 50, 0);
        p.members = (0..5).map(invite).collect();
        assert!(check_short_member_list(&cached, &HashSet::new(), &p, limits).is_none());
        let mut p = plan(50, 50, 0);
        p.members = (0..20).map(invite).collect();
        let off = GuardLimits {
            max_removal_percent: 0,
            ..limits
        };
        assert!(check_short_member_list(&cached, &HashSet::new(), &p, off).is_none());
    }
    use crate::engine::diff::{GroupAction, GroupChange, MemberChange, RemovalReason};

    fn plan(cached: usize, directory: usize, removals: usize) -> Plan {
        Plan {
            baseline: Baseline::Cache,
            cached_members: cached,
            directory_users: directory,
            users_synced: true,
            members: (0..removals)
                .map(|i| MemberChange {
                    external_id: i.to_string(),
                    email: format!("{i}@x.com"),
                    action: MemberAction::Remove(RemovalReason::Missing),
                    member_id: None,
                    previous_external_id: None,
                })
                .collect(),
            ..Plan::default()
        }
    }

    #[test]
    fn empty_directory_over_full_cache_is_refused() {
        let r = check_guard(&plan(10, 0, 0), GuardLimits::default()).unwrap();
        assert!(r.contains("no users"), "{r}");
        assert!(check_guard(&plan(0, 0, 0), GuardLimits::default()).is_none());
    }

    #[test]
    fn count_limit() {
        let limits = GuardLimits {
            max_removals: 5,
            max_removal_percent: 0,
            ..GuardLimits::default()
        };
        assert!(check_guard(&plan(1000, 995, 5), limits).is_none());
        let r = check_guard(&plan(1000, 994, 6), limits).unwrap();
        assert!(
            r.contains("remove 6 member(s)") && r.contains("max_removals = 5"),
            "{r}"
        );
    }

    #[test]
    fn percent_limit() {
        let limits = GuardLimits {
            max_removals: 0,
            max_removal_percent: 10,
            ..GuardLimits::default()
        };
        assert!(check_guard(&plan(100, 90, 10), limits).is_none());
        let r = check_guard(&plan(100, 89, 11), limits).unwrap();
        assert!(r.contains("11 of 100") && r.contains("11.0%"), "{r}");
        // a single removal is always allowed
        assert!(check_guard(&plan(3, 2, 1), limits).is_none());
    }

    #[test]
    fn zero_disables_both_limits() {
        let limits = GuardLimits {
            max_removals: 0,
            max_removal_percent: 0,
            max_group_removal_percent: 0,
        };
        assert!(check_guard(&plan(100, 1, 99), limits).is_none());
    }

    #[test]
    fn without_a_baseline_nothing_that_can_remove_goes_through() {
        let mut p = plan(0, 10, 1);
        p.baseline = Baseline::None;
        let r = check_guard(&p, GuardLimits::default()).unwrap();
        assert!(r.contains("nothing to count removals against"), "{r}");
        let mut p = plan(0, 10, 0);
        p.baseline = Baseline::None;
        assert!(check_guard(&p, GuardLimits::default()).is_none());
        p.overwrite_existing = true;
        assert!(
            check_guard(&p, GuardLimits::default())
                .unwrap()
                .contains("overwrite_existing")
        );
        // an empty organization is a baseline: a first sync with removals is fine
        let mut p = plan(0, 10, 1);
        p.baseline = Baseline::Organization;
        assert!(check_guard(&p, GuardLimits::default()).is_none());
    }

    fn group(name: &str, before: usize, after: usize) -> GroupChange {
        GroupChange {
            external_id: name.into(),
            name: name.into(),
            members: (0..after).map(|i| i.to_string().into()).collect(),
            fingerprint: String::new(),
            action: GroupAction::Update,
            previous_member_count: Some(before),
            previous_name: None,
            removed_members: before.saturating_sub(after),
            repairs_drift: false,
        }
    }

    #[test]
    fn group_guard_refuses_emptied_groups_and_large_losses() {
        let limits = GuardLimits::default();
        let mut p = plan(10, 10, 0);
        p.groups = vec![group("A", 10, 9), group("B", 4, 2)];
        assert!(check_group_guard(&p, limits).is_none(), "3 of 14 is fine");
        p.groups.push(group("C", 3, 0));
        let r = check_group_guard(&p, limits).unwrap();
        assert!(r.contains("empty 1 group(s)") && r.contains("`C`"), "{r}");
        // each group within the limit (B is below the floor), together over it
        p.groups = vec![group("A", 10, 5), group("B", 4, 1)];
        let r = check_group_guard(&p, limits).unwrap();
        assert!(r.contains("8 of 14") && r.contains("57.1%"), "{r}");
        let off = GuardLimits {
            max_group_removal_percent: 0,
            ..limits
        };
        assert!(check_group_guard(&p, off).is_none());
        // new groups are not losses
        p.groups = vec![GroupChange {
            previous_member_count: None,
            action: GroupAction::Create,
            ..group("N", 0, 0)
        }];
        assert!(check_group_guard(&p, limits).is_none());
    }

    /// Issue 23 item 7: one gutted group is refused however many members the other changed
    /// groups keep (the total over all groups diluted it).
    #[test]
    fn group_guard_judges_each_group_on_its_own() {
        let limits = GuardLimits::default();
        let mut p = plan(500, 500, 0);
        p.groups = vec![group("Big", 400, 399), group("Team", 40, 1)];
        let r = check_group_guard(&p, limits).expect("40 -> 1 must be refused");
        assert!(
            r.contains("39 of 40") && r.contains("`Team`") && r.contains("97.5%"),
            "{r}"
        );
        // at the limit is fine; small groups are judged with the others only
        p.groups = vec![group("Big", 400, 399), group("Team", 40, 20)];
        assert!(check_group_guard(&p, limits).is_none());
        p.groups = vec![group("Big", 400, 399), group("Tiny", 4, 1)];
        assert!(check_group_guard(&p, limits).is_none());
        p.groups = vec![group("Big", 400, 399), group("Five", 5, 2)];
        assert!(check_group_guard(&p, limits).unwrap().contains("`Five`"));
        let off = GuardLimits {
            max_group_removal_percent: 0,
            ..limits
        };
        p.groups = vec![group("Big", 400, 399), group("Team", 40, 1)];
        assert!(check_group_guard(&p, off).is_none());
    }

    fn new_group(name: &str, members: usize) -> GroupChange {
        GroupChange {
            previous_member_count: None,
            action: GroupAction::Create,
            ..group(name, 0, members)
        }
    }

    /// Issue 23 item 2: with no baseline, a directory read that gives groups without members
    /// (no users at all, or most groups empty) would empty the server's groups: refused.
    #[test]
    fn without_a_baseline_empty_groups_are_refused() {
        let limits = GuardLimits::default();
        let mut p = plan(0, 0, 0);
        p.baseline = Baseline::None;
        p.groups = vec![new_group("A", 0), new_group("B", 0)];
        let r = check_group_guard(&p, limits).expect("no users");
        assert!(
            r.contains("no users") && r.contains("member_attribute") && r.contains("user_path"),
            "{r}"
        );
        // users, but every group empty (a member_attribute typo)
        p.directory_users = 10;
        let r = check_group_guard(&p, limits).expect("all groups empty");
        assert!(
            r.contains("2 of 2 group(s)") && r.contains("member_attribute"),
            "{r}"
        );
        // a single group, empty
        p.groups = vec![new_group("A", 0)];
        assert!(check_group_guard(&p, limits).is_some());
        // one empty group of five (upstream's fixture has one) is fine
        p.groups = (0..4).map(|i| new_group(&format!("G{i}"), 3)).collect();
        p.groups.push(new_group("Cleaners", 0));
        assert!(check_group_guard(&p, limits).is_none());
        // three of five is more than 50%
        p.groups[0].members.clear();
        p.groups[1].members.clear();
        assert!(check_group_guard(&p, limits).unwrap().contains("3 of 5"));
        // a baseline decides by what it has, not by this rule
        p.baseline = Baseline::Cache;
        assert!(check_group_guard(&p, limits).is_none());
        // nothing to send, nothing to refuse
        let mut p = plan(0, 0, 0);
        p.baseline = Baseline::None;
        assert!(check_group_guard(&p, limits).is_none());
    }

    /// Issue 23 item 4: `overwrite_existing` against a cache that may miss members the server
    /// has cannot be counted: refused; once the cache is complete it is counted as usual.
    #[test]
    fn overwrite_existing_needs_a_complete_baseline() {
        let mut p = plan(117, 117, 0);
        p.overwrite_existing = true;
        let r = check_guard(&p, GuardLimits::default()).expect("incomplete cache");
        assert!(
            r.contains("overwrite_existing") && r.contains("cannot count"),
            "{r}"
        );
        p.baseline_complete = true;
        assert!(check_guard(&p, GuardLimits::default()).is_none());
        let mut p = plan(10, 10, 0);
        p.baseline = Baseline::Organization;
        p.baseline_complete = true;
        p.overwrite_existing = true;
        assert!(check_guard(&p, GuardLimits::default()).is_none());
    }
}
