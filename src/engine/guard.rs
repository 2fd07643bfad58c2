//! The guards: refuse a push that would remove too many members (counted against the baseline:
//! the organization, or the cache), that follows a directory read which returned no users while
//! the baseline has some, that could remove members with no baseline at all, or that would empty
//! a group or take too many member references out of the groups it changes.

use serde::Serialize;

use super::diff::{Baseline, Plan};

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
    let removals = plan.removals() as u64;
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
    if limits.max_removals > 0 && removals > limits.max_removals {
        return Some(format!(
            "the sync would remove {removals} member(s), more than sync.max_removals = {}",
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
            "the sync would remove {removals} of {cached} member(s) ({:.1}%), more than \
             sync.max_removal_percent = {}%",
            removals as f64 * 100.0 / cached as f64,
            limits.max_removal_percent
        ));
    }
    None
}

/// `Some(reason)` when the group guard refuses the group half of the plan: a group the baseline
/// has members in would be emptied, or the groups the plan changes would lose more than
/// `max_group_removal_percent` of their member references.
pub fn check_group_guard(plan: &Plan, limits: GuardLimits) -> Option<String> {
    if limits.max_group_removal_percent == 0 {
        return None;
    }
    let emptied: Vec<&str> = plan
        .groups
        .iter()
        .filter(|g| g.members.is_empty() && g.removed_members > 0)
        .map(|g| g.name.as_str())
        .collect();
    if let Some(first) = emptied.first() {
        return Some(format!(
            "the sync would empty {} group(s) (e.g. `{first}`); a wrong group filter or \
             sync.member_attribute reads groups without members",
            emptied.len()
        ));
    }
    let (removed, before) = plan
        .groups
        .iter()
        .filter_map(|g| Some((g.removed_members as u64, g.previous_member_count? as u64)))
        .fold((0, 0), |(r, b), (gr, gb)| (r + gr, b + gb));
    if before > 0 && removed * 100 > limits.max_group_removal_percent * before {
        return Some(format!(
            "the sync would take {removed} of {before} member reference(s) ({:.1}%) out of the \
             groups it changes, more than sync.max_group_removal_percent = {}%",
            removed as f64 * 100.0 / before as f64,
            limits.max_group_removal_percent
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::diff::{
        GroupAction, GroupChange, MemberAction, MemberChange, RemovalReason,
    };

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
        p.groups = vec![group("A", 10, 4), group("B", 10, 5)];
        let r = check_group_guard(&p, limits).unwrap();
        assert!(r.contains("11 of 20") && r.contains("55.0%"), "{r}");
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
}
