//! The mass-removal guard: refuses a push that would remove too many members, or that follows a
//! directory read which returned no users while the cache holds some.

use serde::Serialize;

use super::diff::Plan;

/// Default for `sync.max_removals`.
pub const DEFAULT_MAX_REMOVALS: u64 = 100;
/// Default for `sync.max_removal_percent`.
pub const DEFAULT_MAX_REMOVAL_PERCENT: u64 = 20;

/// The limits; 0 switches a limit off.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct GuardLimits {
    pub max_removals: u64,
    pub max_removal_percent: u64,
}

impl Default for GuardLimits {
    fn default() -> Self {
        GuardLimits {
            max_removals: DEFAULT_MAX_REMOVALS,
            max_removal_percent: DEFAULT_MAX_REMOVAL_PERCENT,
        }
    }
}

/// `Some(reason)` when the guard refuses the plan, with the numbers.
pub fn check_guard(plan: &Plan, limits: GuardLimits) -> Option<String> {
    let removals = plan.removals() as u64;
    let cached = plan.cached_members as u64;
    if plan.users_synced && plan.directory_users == 0 && cached > 0 {
        return Some(format!(
            "the directory returned no users while the cache holds {cached} member(s); \
             a sync now could remove everyone"
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::diff::{MemberAction, MemberChange, RemovalReason};

    fn plan(cached: usize, directory: usize, removals: usize) -> Plan {
        Plan {
            cached_members: cached,
            directory_users: directory,
            users_synced: true,
            members: (0..removals)
                .map(|i| MemberChange {
                    external_id: i.to_string(),
                    email: format!("{i}@x.com"),
                    action: MemberAction::Remove(RemovalReason::Missing),
                    previous_email: None,
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
        };
        assert!(check_guard(&plan(100, 1, 99), limits).is_none());
    }
}
