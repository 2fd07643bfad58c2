//! Stage 7, recording: what a run leaves behind once the server confirmed it (the groups that
//! left the directory, the pending email changes, the last-sync times, the sources' state), and
//! the run's outcome in the history, whatever happened.

use crate::bitwarden::BitwardenClient;
use crate::config::Config;
use crate::engine::Plan;
use crate::errors::Failure;
use crate::store::{RunOutcome, RunRecord, StagedState, Store, SyncKind};

use super::SyncReport;
use super::push::applied_message;

/// Before the verification: the groups that left the directory are marked, and (where the
/// organization cannot be read) the pending email changes kept, so that a member with one is
/// never sent, even after `clear-cache`.
pub(crate) fn before_verify(
    store: &mut Store,
    plan: &Plan,
    no_read_api: bool,
) -> anyhow::Result<()> {
    store.mark_groups_left(&plan.stale_groups)?;
    if no_read_api && plan.users_synced {
        store.set_email_pins(&plan.email_changes)?;
    }
    Ok(())
}

/// A run that went through: the last-sync times (`started`), the sources' state, and the cache
/// scope as the last synced one.
pub(crate) fn confirm(
    cfg: &Config,
    store: &Store,
    started: &str,
    source_state: &StagedState,
) -> anyhow::Result<()> {
    if cfg.sync.users {
        store.set_last_sync(SyncKind::Users, started)?;
    }
    if cfg.sync.groups {
        store.set_last_sync(SyncKind::Groups, started)?;
    }
    source_state.commit(store)?;
    store.remember_scope()
}

/// Records the run's outcome in the history (its counts, the requests it sent, its error) and
/// returns its result, with the server's use filled in.
pub(crate) fn finish(
    store: &mut Store,
    record: &mut RunRecord,
    client: Option<&BitwardenClient>,
    result: anyhow::Result<SyncReport>,
) -> anyhow::Result<SyncReport> {
    let run_id = record.id;
    // stopped between stages: the message says what was applied
    let result = result.map_err(|e| match e.downcast_ref::<Failure>() {
        Some(Failure::Stopped) => anyhow::Error::new(Failure::Interrupted(format!(
            "sync interrupted; {}",
            applied_message(record.requests)
        ))),
        _ => e,
    });
    if let Ok((m, _)) = store.cache_counts() {
        record.members_after = m as u64;
    }
    if let (Some(c), Some(server)) = (client, record.server.as_mut()) {
        server.requests = c.stats();
        tracing::info!("sync {run_id}: {}", server.requests.describe());
    }
    let result = result.map(|mut report| {
        report.server = record.server.clone().unwrap_or_default();
        report
    });
    match &result {
        Ok(report) => {
            record.outcome = report.outcome;
            let p = &report.plan;
            tracing::info!(
                "sync {run_id} plan: {} invited, {} removed, {} group(s) changed, {} member(s) \
                 and {} group(s) unchanged (baseline: {})",
                p.invites(),
                p.removals(),
                p.groups.len(),
                p.unchanged_members,
                p.unchanged_groups,
                p.baseline.describe()
            );
            tracing::info!(
                "sync {run_id} finished: {} ({} request(s))",
                report.outcome.as_str(),
                report.requests
            );
        }
        Err(e) => {
            record.outcome = if matches!(e.downcast_ref::<Failure>(), Some(Failure::Refused(_))) {
                RunOutcome::Refused
            } else if matches!(e.downcast_ref::<Failure>(), Some(Failure::Interrupted(_))) {
                RunOutcome::Interrupted
            } else {
                RunOutcome::Failed
            };
            record.error = Some(crate::logging::redact(&format!("{e:#}")));
            tracing::info!("sync {run_id} finished: {}", record.outcome.as_str());
        }
    }
    if let Err(e) = store.finish_run(record) {
        tracing::error!("recording the run failed: {e:#}");
    }
    result
}
