//! Cuts a plan into import requests: at most 2000 members or 2000 groups each, members first,
//! `largeImport` when the push holds more than 2000 entries in all. Group requests also stay under
//! a budget of member references (a group is never split), so that no single body grows to tens
//! of megabytes and the requests can be pipelined.

use std::ops::Range;

use super::diff::Plan;

/// The server's limit per request.
pub const BATCH_SIZE: usize = 2000;

/// Member references (`memberExternalIds` entries) per request, about 4 MB of JSON; a group
/// with more members than this goes alone.
pub const MEMBER_REF_BUDGET: usize = 100_000;

/// One import request: slices of the plan's members and groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub members: Range<usize>,
    pub groups: Range<usize>,
    pub large_import: bool,
    pub overwrite_existing: bool,
}

/// Builds the batches for a plan: at most `batch_size` members or groups per request, and at
/// most `ref_budget` member references in a request's groups unless one group alone has more.
/// `Err` explains why `overwrite_existing` cannot be used.
pub fn build_batches(
    plan: &Plan,
    batch_size: usize,
    ref_budget: usize,
) -> Result<Vec<Batch>, String> {
    let (m, g) = (plan.members.len(), plan.groups.len());
    if plan.is_empty() {
        return Ok(Vec::new());
    }
    let refs: usize = plan.groups.iter().map(|g| g.members.len()).sum();
    // overwrite_existing needs everything in one request, however large its groups
    if m + g <= batch_size && (refs <= ref_budget || plan.overwrite_existing) {
        return Ok(vec![Batch {
            members: 0..m,
            groups: 0..g,
            large_import: false,
            overwrite_existing: plan.overwrite_existing,
        }]);
    }
    if plan.overwrite_existing {
        return Err(format!(
            "sync.overwrite_existing cannot be used with more than {batch_size} members and \
             groups ({m} members, {g} groups): it would make the server remove everyone who is \
             not in the first request. Turn it off (`config set sync.overwrite_existing false`); \
             use `clear-cache` for a full push and sync.remove_missing_users to remove members \
             who left the directory"
        ));
    }
    let large_import = m + g > batch_size;
    let mut out = member_batches(m, batch_size, large_import);
    out.extend(group_batches(plan, batch_size, ref_budget, large_import));
    Ok(out)
}

/// The member requests of a split push: `batch_size` members each.
pub fn member_batches(members: usize, batch_size: usize, large_import: bool) -> Vec<Batch> {
    (0..members)
        .step_by(batch_size.max(1))
        .map(|start| Batch {
            members: start..(start + batch_size).min(members),
            groups: 0..0,
            large_import,
            overwrite_existing: false,
        })
        .collect()
}

/// The group requests of a split push: at most `batch_size` groups and `ref_budget` member
/// references each (a larger group goes alone).
pub fn group_batches(
    plan: &Plan,
    batch_size: usize,
    ref_budget: usize,
    large_import: bool,
) -> Vec<Batch> {
    let g = plan.groups.len();
    let batch = |groups: Range<usize>| Batch {
        members: 0..0,
        groups,
        large_import,
        overwrite_existing: false,
    };
    let mut out = Vec::new();
    let (mut start, mut in_batch) = (0, 0);
    for (i, group) in plan.groups.iter().enumerate() {
        let n = group.members.len();
        if i > start && (i - start == batch_size || in_batch + n > ref_budget) {
            out.push(batch(start..i));
            (start, in_batch) = (i, 0);
        }
        in_batch += n;
    }
    if start < g {
        out.push(batch(start..g));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::diff::{GroupAction, GroupChange, MemberAction, MemberChange};

    fn plan(m: usize, g: usize, overwrite: bool) -> Plan {
        Plan {
            overwrite_existing: overwrite,
            members: (0..m)
                .map(|i| MemberChange {
                    external_id: i.to_string(),
                    email: format!("{i}@x.com"),
                    action: MemberAction::Invite,
                    member_id: None,
                    previous_external_id: None,
                })
                .collect(),
            groups: (0..g)
                .map(|i| GroupChange {
                    external_id: i.to_string(),
                    name: i.to_string(),
                    members: vec![],
                    fingerprint: String::new(),
                    action: GroupAction::Create,
                    previous_member_count: None,
                    previous_name: None,
                    removed_members: 0,
                    repairs_drift: false,
                })
                .collect(),
            ..Plan::default()
        }
    }

    #[test]
    fn small_push_is_one_request() {
        let b = build_batches(&plan(1500, 500, false), BATCH_SIZE, MEMBER_REF_BUDGET).unwrap();
        assert_eq!(b.len(), 1);
        assert!(!b[0].large_import);
        assert_eq!(b[0].members, 0..1500);
        assert_eq!(b[0].groups, 0..500);
    }

    #[test]
    fn upstream_example_11000_and_11000_is_12_requests() {
        let b = build_batches(&plan(11_000, 11_000, false), BATCH_SIZE, MEMBER_REF_BUDGET).unwrap();
        assert_eq!(b.len(), 12);
        assert!(b.iter().all(|b| b.large_import && !b.overwrite_existing));
        assert_eq!(b[5].members, 10_000..11_000);
        assert_eq!(b[6].groups, 0..2000);
        assert!(b[..6].iter().all(|b| b.groups.is_empty()));
    }

    #[test]
    fn just_over_the_limit_splits() {
        let b = build_batches(&plan(2000, 1, false), BATCH_SIZE, MEMBER_REF_BUDGET).unwrap();
        assert_eq!(b.len(), 2);
        assert!(b[0].large_import);
    }

    #[test]
    fn overwrite_with_several_batches_is_refused() {
        let e = build_batches(&plan(2001, 0, true), BATCH_SIZE, MEMBER_REF_BUDGET).unwrap_err();
        assert!(e.contains("overwrite_existing"), "{e}");
        let b = build_batches(&plan(10, 0, true), BATCH_SIZE, MEMBER_REF_BUDGET).unwrap();
        assert!(b[0].overwrite_existing);
    }

    #[test]
    fn empty_plan_has_no_batches() {
        assert!(
            build_batches(&plan(0, 0, false), BATCH_SIZE, MEMBER_REF_BUDGET)
                .unwrap()
                .is_empty()
        );
        // overwrite with an empty directory is still one (empty) request
        assert_eq!(
            build_batches(&plan(0, 0, true), BATCH_SIZE, MEMBER_REF_BUDGET)
                .unwrap()
                .len(),
            1
        );
    }

    fn sized(m: usize, sizes: &[usize], overwrite: bool) -> Plan {
        let mut p = plan(m, sizes.len(), overwrite);
        for (g, &n) in p.groups.iter_mut().zip(sizes) {
            g.members = (0..n)
                .map(|i| crate::engine::Id::from(i.to_string()))
                .collect();
        }
        p
    }

    #[test]
    fn group_requests_stay_under_the_reference_budget() {
        // 5 groups of 40 members with a budget of 100: 2 + 2 + 1 groups
        let b = build_batches(&sized(3, &[40; 5], false), BATCH_SIZE, 100).unwrap();
        let groups: Vec<_> = b.iter().map(|b| b.groups.clone()).collect();
        assert_eq!(groups, vec![0..0, 0..2, 2..4, 4..5]);
        assert_eq!(b[0].members, 0..3);
        // few entries in all: no largeImport
        assert!(b.iter().all(|b| !b.large_import));
        // a group over the budget goes alone, and is not split
        let b = build_batches(&sized(0, &[10, 250, 10], false), BATCH_SIZE, 100).unwrap();
        let groups: Vec<_> = b.iter().map(|b| b.groups.clone()).collect();
        assert_eq!(groups, vec![0..1, 1..2, 2..3]);
    }

    #[test]
    fn overwrite_keeps_one_request_whatever_the_references() {
        let b = build_batches(&sized(3, &[40; 5], true), BATCH_SIZE, 100).unwrap();
        assert_eq!(b.len(), 1);
        assert!(b[0].overwrite_existing);
        assert_eq!(b[0].groups, 0..5);
    }

    #[test]
    fn both_limits_apply_to_group_requests() {
        let b = build_batches(&sized(0, &[1; 4500], false), BATCH_SIZE, 100_000).unwrap();
        let groups: Vec<_> = b.iter().map(|b| b.groups.clone()).collect();
        assert_eq!(groups, vec![0..2000, 2000..4000, 4000..4500]);
        assert!(b.iter().all(|b| b.large_import));
    }
}
