//! Stage 4, guarding: the refusals that stop a sync before it pushes (or before its group half):
//! too many removals, a short member list, owners a server cannot show, and the group guard.
//! `--allow-mass-removal` overrides each for one run, logged. `test` shows the same refusals.

use anyhow::Context;

use super::SyncRun;
use crate::config::Config;
use crate::engine::{
    GuardLimits, Organization, Plan, check_group_guard, check_guard, check_short_member_list,
};
use crate::errors::Failure;
use crate::store::Store;

/// What a plan against a server without the read API says when it may remove members.
pub const OWNERS_UNSEEN: &str = "this server has no read API (Vaultwarden), so the connector \
     cannot see who is an owner: owners are protected only through sync.protected_emails. Add \
     the owners' addresses there (Vaultwarden revokes a co-owner the import marks deleted, and \
     keeps the last owner)";

/// The refusal of a guard, as the error a sync ends with (`applied`: member requests already
/// applied).
pub(crate) fn refusal(reason: &str, applied: u64) -> anyhow::Error {
    let pushed = match applied {
        0 => "Nothing was pushed.".to_string(),
        n => format!(
            "{n} member request(s) had been applied and recorded; the groups were not sent."
        ),
    };
    anyhow::Error::new(Failure::Refused(format!(
        "sync refused: {reason}. {pushed} Check the directory and the filters with `test`; if \
         the changes are intended, run `sync --allow-mass-removal` once"
    )))
}

/// Why the organization's member list is taken for a short answer, if it is (see
/// [`check_short_member_list`]). The cache is read only when the plan invites someone.
pub(crate) fn short_member_list(
    store: &Store,
    org: &Organization,
    plan: &Plan,
    limits: GuardLimits,
) -> anyhow::Result<Option<String>> {
    if !plan
        .members
        .iter()
        .any(|m| m.action == crate::engine::diff::MemberAction::Invite)
    {
        return Ok(None);
    }
    let cached = store
        .cached_members()
        .context("reading the sync cache's members")?;
    let emails = org
        .members
        .iter()
        .map(|m| m.email.trim().to_lowercase())
        .collect();
    Ok(check_short_member_list(&cached, &emails, plan, limits))
}

/// On a server that cannot show who is an owner (no read API: Vaultwarden), owners are
/// protected only through `sync.protected_emails`: the plan says so when it may remove members,
/// and a plan that removes someone is refused until that setting is made or the admin allowed
/// it once ([`acknowledge_owners`]).
pub(crate) fn owner_guard(cfg: &Config, store: &Store, plan: &mut Plan) -> Option<String> {
    let s = &cfg.sync;
    if !s.protected_emails.is_empty()
        || !(s.remove_missing_users || s.overwrite_existing || s.remove_disabled)
    {
        return None;
    }
    plan.warnings.push(OWNERS_UNSEEN.to_string());
    let removes = plan.removals() > 0 || plan.overwrite_existing;
    (removes && !store.kept().owners_acknowledged).then(|| {
        "this server cannot show who is an owner (it has no read API), and \
         sync.protected_emails is empty: the plan may remove an owner (Vaultwarden revokes a \
         co-owner). Set sync.protected_emails to the owners' addresses"
            .to_string()
    })
}

/// The admin allowed a removal with owners unseen once: later syncs only warn.
fn acknowledge_owners(store: &Store) {
    if let Err(e) = store.update_kept(|k| k.owners_acknowledged = true) {
        tracing::warn!("recording that removals with owners unseen were allowed: {e:#}");
    }
}

/// The departures warning of a sync is said once a day (`test` always says it): the service
/// would repeat it every run for as long as the cache is incomplete.
fn departures_once_a_day(store: &Store, plan: &mut Plan) {
    use crate::engine::diff::{NO_BASELINE_DEPARTURES, PARTIAL_CACHE_DEPARTURES};
    let is_departures = |w: &String| w == NO_BASELINE_DEPARTURES || w == PARTIAL_CACHE_DEPARTURES;
    if !plan.warnings.iter().any(is_departures) {
        return;
    }
    let key = format!("departures_said:{}", store.scope());
    let now = chrono::Utc::now();
    let said = store
        .meta_get(&key)
        .unwrap_or_else(|e| {
            tracing::warn!("reading when the departures warning was last said: {e:#}");
            None
        })
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
        .is_some_and(|t| now - t.with_timezone(&chrono::Utc) < chrono::Duration::hours(24));
    if said {
        plan.warnings.retain(|w| !is_departures(w));
        tracing::info!("departures cannot be detected (said once a day; see `test`)");
    } else if let Err(e) = store.meta_set(&key, Some(&now.to_rfc3339())) {
        tracing::warn!("recording when the departures warning was said: {e:#}");
    }
}

/// A refusal, unless the run may override it (logged).
fn refuse_unless_allowed(
    ctx: &SyncRun<'_>,
    what: &str,
    reason: String,
    applied: u64,
) -> anyhow::Result<()> {
    if ctx.opts.allow_mass_removal {
        tracing::warn!("{what} overridden with --allow-mass-removal: {reason}");
        Ok(())
    } else {
        Err(refusal(&reason, applied))
    }
}

/// The guards of the member half: the short member list (read API), the member guard, and
/// the owners a server cannot show (no read API).
pub(crate) fn members(
    ctx: &SyncRun<'_>,
    store: &Store,
    plan: &mut Plan,
    org: Option<&Organization>,
) -> anyhow::Result<()> {
    if let Some(o) = org
        && let Some(reason) = short_member_list(store, o, plan, ctx.limits)?
    {
        refuse_unless_allowed(ctx, "member list check", reason, 0)?;
    }
    if let Some(reason) = check_guard(plan, ctx.limits) {
        refuse_unless_allowed(ctx, "guard", reason, 0)?;
    }
    if org.is_none() {
        if let Some(reason) = owner_guard(ctx.cfg, store, plan) {
            refuse_unless_allowed(ctx, "owner guard", reason, 0)?;
            acknowledge_owners(store);
        }
        departures_once_a_day(store, plan);
    }
    Ok(())
}

/// The group guard, once the whole plan is made (`applied`: member requests already applied).
pub(crate) fn groups(ctx: &SyncRun<'_>, plan: &Plan, applied: u64) -> anyhow::Result<()> {
    match check_group_guard(plan, ctx.limits) {
        Some(reason) => refuse_unless_allowed(ctx, "group guard", reason, applied),
        None => Ok(()),
    }
}
