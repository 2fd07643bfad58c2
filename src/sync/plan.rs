//! Stage 3, planning: the member half as soon as the users are read (so that its requests can
//! go out while the groups are still being read), then the group half, both against the
//! baseline: the organization when it was read, else the sync cache.

use std::sync::Arc;

use anyhow::{Context, anyhow};

use super::organization::PreparedOrg;
use crate::config::Config;
use crate::engine::diff::MemberAction;
use crate::engine::diff::{
    Desired, count_creates_against_rows, diff_groups, diff_members, mark_drift_repairs,
    mark_unknown_replacements,
};
use crate::engine::lifecycle;
use crate::engine::normalize::{normalize_groups, normalize_users};
use crate::engine::{
    Baseline, Cache, DiffOptions, DirGroup, DirUser, NormUser, Normalized, Organization, Plan,
};
use crate::store::{RunRecord, Store};

/// How the plan is made. `org`: the baseline is the organization as read from the server.
pub(crate) fn diff_options(cfg: &Config, org: bool) -> DiffOptions {
    let resend_groups_before = (!org && cfg.sync.group_resend_hours > 0)
        .then(|| chrono::Utc::now() - chrono::Duration::hours(cfg.sync.group_resend_hours as i64));
    DiffOptions {
        remove_disabled: cfg.sync.remove_disabled,
        remove_missing_users: cfg.sync.remove_missing_users,
        overwrite_existing: cfg.sync.overwrite_existing,
        cascade_removals: org,
        protected: Arc::new(
            cfg.sync
                .protected_emails
                .iter()
                .map(|e| e.trim().to_lowercase())
                .filter(|e| !e.is_empty())
                .collect(),
        ),
        resend_groups_before,
        revoked_stay: Default::default(),
    }
}

/// The baseline a plan is made against: the organization when it was read, else the cache
/// (loaded only then).
pub(crate) fn baseline(
    org: Option<&Organization>,
    store: &Store,
) -> anyhow::Result<(Cache, Baseline)> {
    Ok(match org {
        Some(o) => (o.plan_baseline(), Baseline::Organization),
        None => {
            let local = store.load_cache()?;
            if local.members.is_empty() && local.groups.is_empty() {
                (local, Baseline::None)
            } else {
                (local, Baseline::Cache)
            }
        }
    })
}

/// Counts the groups `plan` creates against the cache's last confirmed rows of them (a short
/// group list must not blind the group guard). The rows are read only when the plan creates a
/// group.
pub(crate) fn count_creates(store: &Store, plan: &mut Plan) -> anyhow::Result<()> {
    if !plan
        .groups
        .iter()
        .any(|g| g.action == crate::engine::diff::GroupAction::Create)
    {
        return Ok(());
    }
    let rows = store
        .load_group_lists()
        .context("reading the sync cache's group rows")?
        .into_iter()
        .map(|(ext, l)| (ext, l.members))
        .collect();
    count_creates_against_rows(plan, &rows);
    Ok(())
}

/// What a plan with no baseline cannot see, said in it: the groups it sends may replace members
/// on the server (counted against their last confirmed sizes), and pending email changes kept
/// for another server or organization do not apply here.
pub(crate) fn note_unknowns(store: &Store, plan: &mut Plan) {
    if plan.baseline != Baseline::None {
        return;
    }
    let kept = store.kept();
    mark_unknown_replacements(plan, &kept.group_sizes);
    if kept.email_pins.is_empty()
        && let Some(dir) = &store.dir
    {
        for (scope, n) in crate::store::kept::pins_elsewhere(dir, store.scope()) {
            plan.warnings.push(format!(
                "{n} pending email change(s) are kept for another server or organization \
                 ({scope}); they do not apply to this one, so those members' new addresses may \
                 be sent here"
            ));
        }
    }
}

/// The organization a sync planned against, with its digest, whether the cache held it row for
/// row when it was read (before any batch wrote to the cache), and the groups read from it.
pub(crate) struct OrgState {
    pub(crate) org: Organization,
    pub(crate) digest: String,
    pub(crate) held: bool,
    pub(crate) fresh: Vec<String>,
}

/// The member half of the plan, and what the group half needs of it.
pub(crate) struct MemberPlan {
    pub(crate) plan: Plan,
    pub(crate) skipped: Vec<crate::engine::Skipped>,
    pub(crate) desired: Desired,
    pub(crate) base: Cache,
    pub(crate) diff_opts: DiffOptions,
    pub(crate) org: Option<OrgState>,
    /// The normalized users, kept for the caller (`None`: not asked for, else whether users
    /// are synced).
    pub(crate) kept_users: Option<Option<Vec<crate::engine::NormUser>>>,
}

/// Plans the members: `prepared` is the organization read (`None`: no read API), `users` the
/// directory's users (`None`: users are not synced). `keep`: the normalized users are kept for
/// the caller, else dropped once planned.
pub(crate) fn members(
    cfg: &Config,
    store: &Store,
    record: &mut RunRecord,
    prepared: Option<PreparedOrg>,
    users: Option<Vec<DirUser>>,
    keep: bool,
) -> anyhow::Result<MemberPlan> {
    let org = match prepared {
        Some(p) => {
            let held = store.cache_digest()?.as_deref() == Some(p.digest.as_str())
                || (p.org.baseline_is_empty() && store.cache_counts()? == (0, 0));
            Some((
                OrgState {
                    org: p.org,
                    digest: p.digest,
                    held,
                    fresh: p.read,
                },
                p.base,
            ))
        }
        None => None,
    };
    let (org, (mut base, kind)) = match org {
        Some((o, base)) => (Some(o), (base, Baseline::Organization)),
        None => (None, baseline(None, store)?),
    };
    let mut diff_opts = diff_options(cfg, org.is_some());
    let mut skipped = Vec::new();
    let users = users
        .map(|u| normalize_users(u, &mut skipped))
        .transpose()
        .map_err(|e| anyhow!(e).context("checking the directory's entries"))?;
    record.directory_users = users.as_ref().map_or(0, |u| u.len() as u64);
    let (mut plan, desired) = diff_members(users.as_deref(), &base, &diff_opts);
    // a sync without the organization: the server has no read API (Vaultwarden)
    plan.import_revokes = org.is_none();
    if let Some(users) = &users {
        identities_and_lifecycle(
            cfg,
            store,
            &mut plan,
            (users, &mut base),
            org.as_ref().map(|o| &o.org),
            true,
            Some(&mut diff_opts.revoked_stay),
        )?;
    }
    // the plan holds what it needs: the users go before the groups arrive (unless the caller
    // keeps them), and so do the baseline's members, which `diff_groups` reads only for
    // protected emails
    let kept_users = match keep {
        true => Some(users),
        false => {
            drop(users);
            None
        }
    };
    if diff_opts.protected.is_empty() {
        base.members = Default::default();
    }
    plan.baseline = kind;
    Ok(MemberPlan {
        plan,
        skipped,
        desired,
        base,
        diff_opts,
        org,
        kept_users,
    })
}

/// The member plan's renames (a directory entry that moved keeps its member) and, where the
/// organization was read and `sync.remove_revoked_after_days` is not 0, its lifecycle: revoke
/// instead of remove, removal after the grace period, restore on return (see
/// [`crate::engine::lifecycle`]). The immutable ids of users that are not being renamed are
/// recorded now; a rename's is recorded once the server confirmed it. `record` off (a preview:
/// `test`), nothing is written.
pub(crate) fn identities_and_lifecycle(
    cfg: &Config,
    store: &Store,
    plan: &mut Plan,
    (users, base): (&[NormUser], &mut Cache),
    org: Option<&Organization>,
    record: bool,
    stay: Option<&mut Arc<foldhash::HashSet<String>>>,
) -> anyhow::Result<()> {
    // A move or a rename shows in the plan as an invite; without one, and with the ids
    // recorded once, an unchanged sync reads and writes none of them.
    if users.iter().any(|u| u.immutable_id.is_some())
        && (plan.invites() > 0 || !store.has_identities()?)
    {
        let known = store.load_identities()?;
        lifecycle::pair_renames(plan, users, base, &known, org);
        lifecycle::follow_renames(base, plan);
        let renaming: std::collections::HashSet<&str> = plan
            .members
            .iter()
            .filter(|m| m.action == MemberAction::Rename)
            .map(|m| m.external_id.as_str())
            .collect();
        let settled = users
            .iter()
            .filter(|u| !u.deleted && !renaming.contains(&*u.external_id))
            .filter_map(|u| Some((u.immutable_id.as_deref()?, &*u.external_id)));
        if record {
            store.save_identities(settled, &known)?;
        }
    }
    if org.is_none() && plan.import_revokes {
        // the import revoked these members; listed again, it restores them
        let kept = store.kept();
        for m in &mut plan.members {
            if m.action == MemberAction::Invite && kept.revoked_at.contains_key(&m.external_id) {
                m.action = MemberAction::Restore;
            }
        }
        // as on the member API, a revoked member keeps its groups (the server keeps the rows;
        // a group push would take it out), unless departures are to be removed at once
        if cfg.sync.remove_revoked_after_days > 0
            && let Some(o) = stay
        {
            let revoked: foldhash::HashSet<String> = kept
                .revoked_at
                .into_keys()
                .chain(
                    plan.members
                        .iter()
                        .filter(|m| m.is_removal())
                        .map(|m| m.external_id.clone()),
                )
                .collect();
            if !revoked.is_empty() {
                *o = Arc::new(revoked);
            }
        }
        return Ok(());
    }
    let grace = cfg.sync.remove_revoked_after_days;
    let Some(org) = org.filter(|_| grace > 0) else {
        return Ok(());
    };
    let kept = store.kept();
    let revoked_at = kept.revoke_times();
    let now = chrono::Utc::now();
    let life = lifecycle::Lifecycle {
        grace_days: grace,
        now,
        revoked_at: &revoked_at,
        remove_disabled: cfg.sync.remove_disabled,
    };
    let records = lifecycle::apply(plan, org, Some(users), &life);
    if !records.stay_in_groups.is_empty()
        && let Some(o) = stay
    {
        *o = Arc::new(records.stay_in_groups.iter().cloned().collect());
    }
    if record && !(records.clock_starts.is_empty() && records.dropped.is_empty()) {
        store
            .update_kept(|k| {
                for ext in records.clock_starts {
                    k.revoked_at.entry(ext).or_insert_with(|| now.to_rfc3339());
                }
                for ext in records.dropped {
                    k.revoked_at.remove(&ext);
                }
            })
            .context("recording when revoked members' grace periods began")?;
    }
    Ok(())
}

/// Plans the groups into the member half's plan; returns the whole plan, the organization it
/// was made against, and the directory as normalized when the member half kept its users.
pub(crate) fn groups(
    store: &Store,
    record: &mut RunRecord,
    half: MemberPlan,
    groups: Option<Vec<DirGroup>>,
    progress: &dyn crate::sources::Progress,
) -> anyhow::Result<(Plan, Option<OrgState>, Option<Normalized>)> {
    let MemberPlan {
        mut plan,
        mut skipped,
        desired,
        base,
        diff_opts,
        org,
        kept_users,
    } = half;
    progress.stage("Normalizing groups");
    let groups = groups.map(|g| normalize_groups(g, &mut skipped));
    record.directory_groups = groups.as_ref().map_or(0, |g| g.len() as u64);
    progress.stage("Comparing groups with the baseline");
    diff_groups(
        &mut plan,
        groups.as_deref(),
        desired.as_ref(),
        &base,
        &diff_opts,
    );
    note_unknowns(store, &mut plan);
    if let (Some(o), Some(server)) = (&org, record.server.as_mut()) {
        server.groups_read = o.fresh.len() as u64;
    }
    if org.is_some() {
        // a group the organization did not list but the cache confirmed is counted against
        // its last confirmed row (a short group list must not blind the group guard)
        count_creates(store, &mut plan)?;
        mark_drift_repairs(&mut plan, &store.load_group_fingerprints()?);
    }
    let normalized = kept_users.map(|users| Normalized {
        users,
        groups,
        skipped,
    });
    Ok((plan, org, normalized))
}
