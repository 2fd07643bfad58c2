//! One sync run, as named stages, each in its own module and each handing the next a named
//! value:
//!
//! 1. [`directory`]: read the directory (the users go out as soon as they are read);
//! 2. [`organization`]: read the organization (every group's members), beside it;
//! 3. [`plan`]: plan the members as soon as the users and the organization are in, then the
//!    groups;
//! 4. [`guard`]: refuse what must not be pushed without a person's say-so;
//!    [`lifecycle`]: then the member API's renames, restores and revokes;
//! 5. [`push`]: send the batches (the members early when they fill requests of their own);
//! 6. [`verify`]: read the organization back, make the cache what it shows, check it;
//! 7. [`record`]: the run's outcome in the history, the last-sync times, the sources' state.
//!
//! [`SyncRun`] holds what every stage shares: the configuration, the options, the Bitwarden
//! client (with its request budget), the guard limits, the progress and the cancellation token
//! that every stage, budget wait and retry honours. The connector (`connector.rs`) opens
//! the data directory, takes the sync lock and hands a run its inputs.

mod directory;
mod guard;
mod lifecycle;
mod organization;
mod plan;
mod progress;
mod push;
mod record;
pub mod tables;
mod verify;
pub mod watch;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub(crate) use directory::read as read_directory;
pub use guard::OWNERS_UNSEEN;
pub(crate) use guard::{owner_guard, short_member_list};
pub(crate) use organization::read as read_organization;
pub(crate) use plan::{
    baseline, count_creates, diff_options, identities_and_lifecycle, note_unknowns,
};
pub(crate) use progress::BudgetProgress;

use crate::bitwarden::BitwardenClient;
use crate::config::Config;
use crate::engine::{GuardLimits, Plan};
use crate::errors::Failure;
use crate::sources::Progress;
use crate::store::{RunOutcome, RunRecord, ServerUse, StagedState, Store};

/// What `sync` did.
#[derive(Debug, Serialize)]
pub struct SyncReport {
    pub outcome: RunOutcome,
    pub plan: Plan,
    pub requests: usize,
    pub bytes_pushed: u64,
    pub run_id: i64,
    /// What the run asked of the Bitwarden server.
    pub server: ServerUse,
}

/// Options of one sync run.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncOptions {
    pub allow_mass_removal: bool,
    /// The caller already holds the data directory's sync lock (the window, while it polls).
    pub lock_held: bool,
    /// Kept for `sync --reconcile`: every sync reads every group's members from the server now,
    /// so it changes nothing.
    pub reconcile: bool,
    /// Keep what the run read and planned for the caller ([`SyncRead`]: the window's tables).
    /// Off, the users are dropped as soon as the member plan is made (the CLI's memory use).
    pub keep_read: bool,
    /// The run is the fast lane's (a change seen in the directory's feed): recorded with the
    /// kind `fast lane`.
    pub fast_lane: bool,
}

/// What a run read and planned, kept when [`SyncOptions::keep_read`] asks for it: the
/// directory as normalized, the organization's drift, and the plan the guard refused.
#[derive(Debug, Default)]
pub struct SyncRead {
    /// The directory, normalized (`None`: the run ended before the groups were read).
    pub normalized: Option<crate::engine::Normalized>,
    /// What the organization has that the directory does not explain, as read, less the
    /// members the run removed (`None`: not read, or the server has no read API).
    pub drift: Option<crate::engine::Drift>,
    /// The plan a guard refused (the run ended with `Failure::Refused`).
    pub refused_plan: Option<Plan>,
    /// The groups of the baseline that a plan refused by the member guard would take members
    /// out of (its groups were not planned yet): "Staff: 2 out".
    pub groups_losing: Option<Vec<String>>,
}

/// The guard limits of a configuration.
pub(crate) fn limits(cfg: &Config) -> GuardLimits {
    GuardLimits {
        max_removals: cfg.sync.max_removals,
        max_removal_percent: cfg.sync.max_removal_percent,
        max_group_removal_percent: cfg.sync.max_group_removal_percent,
    }
}

/// What the connector hands a run.
pub(crate) struct Inputs<'a> {
    pub(crate) data_dir: &'a Path,
    pub(crate) cfg: &'a Config,
    pub(crate) opts: SyncOptions,
    /// The Bitwarden client (an error: it could not be made, e.g. a bad `server.ca_file`; the
    /// run fails with it, recorded).
    pub(crate) client: anyhow::Result<BitwardenClient>,
    /// The directory's secret (an error fails the run when the directory is read).
    pub(crate) secret: anyhow::Result<String>,
    /// The store, on the cache of the run's server and organization.
    pub(crate) store: Store,
}

/// What every stage of a run shares.
pub(crate) struct SyncRun<'a> {
    pub(crate) cfg: &'a Config,
    pub(crate) opts: SyncOptions,
    pub(crate) client: Arc<BitwardenClient>,
    pub(crate) limits: GuardLimits,
    /// The run's progress (it shows the waits for the request budget).
    pub(crate) progress: &'a BudgetProgress<'a>,
    /// Cancels the run: every stage checks it, and the client's budget waits and retries end
    /// at once.
    pub(crate) cancel: CancellationToken,
    /// A push is going on: a stop waits for the request in flight.
    pub(crate) pushing: &'a AtomicBool,
    /// What the run read and planned, when the caller asked to keep it.
    pub(crate) kept: std::sync::Mutex<SyncRead>,
    /// Member API requests the server refused: the run fails with them at its end.
    pub(crate) refused: std::sync::Mutex<Vec<String>>,
}

impl SyncRun<'_> {
    /// Keeps `f`'s part of what the run read (only when the caller asked).
    pub(crate) fn keep(&self, f: impl FnOnce(&mut SyncRead)) {
        if self.opts.keep_read {
            f(&mut self.kept.lock().unwrap_or_else(|p| p.into_inner()));
        }
    }
}

/// Runs a sync: records the run in the history whatever happens, and returns what it did, with
/// what it read and planned when [`SyncOptions::keep_read`] asked for it (also when it failed or
/// was refused).
pub(crate) async fn run(
    input: Inputs<'_>,
    progress: &dyn Progress,
) -> (anyhow::Result<SyncReport>, Option<SyncRead>) {
    let Inputs {
        data_dir,
        cfg,
        opts,
        client,
        secret,
        mut store,
    } = input;
    let kind = if opts.fast_lane { "fast lane" } else { "sync" };
    let run_id = match store.start_run(kind) {
        Ok(id) => id,
        Err(e) => return (Err(e), None),
    };
    let _current = crate::store::CurrentRun::set(data_dir, run_id);
    tracing::info!("sync {run_id} started");
    let mut record = RunRecord::new(run_id, kind);
    record.server = Some(ServerUse::default());
    let pushing = AtomicBool::new(false);
    let shown = BudgetProgress::new(progress);
    let (client, result, kept) = match client {
        Err(e) => (None, Err(e), None),
        Ok(client) => {
            let client = Arc::new(client);
            let run = SyncRun {
                cfg,
                opts,
                client: Arc::clone(&client),
                limits: limits(cfg),
                progress: &shown,
                cancel: client.cancel_token(),
                pushing: &pushing,
                kept: Default::default(),
                refused: Default::default(),
            };
            let result = run
                .until_stopped(progress, stages(&run, &mut store, &mut record, secret))
                .await;
            let kept = opts
                .keep_read
                .then(|| run.kept.into_inner().unwrap_or_else(|p| p.into_inner()));
            (Some(client), result, kept)
        }
    };
    (
        record::finish(&mut store, &mut record, client.as_deref(), result),
        kept,
    )
}

impl SyncRun<'_> {
    /// Runs `work` until it ends or the caller asks to stop: a push stops by itself after the
    /// request in flight (between two batches); any other stage (reading, verifying) is dropped
    /// where it waits, and every wait for the request budget, a 429's pause or a retry ends at
    /// once. A wait for the request budget shows on the status line meanwhile.
    async fn until_stopped<T>(
        &self,
        caller: &dyn Progress,
        work: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        let stop = async {
            loop {
                if caller.cancelled() {
                    self.cancel.cancel();
                }
                if self.cancel.is_cancelled()
                    && !self.pushing.load(std::sync::atomic::Ordering::SeqCst)
                {
                    break;
                }
                self.progress.show_client(&self.client);
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
        };
        tokio::select! {
            biased;
            r = work => r,
            () = stop => Err(Failure::Stopped.into()),
        }
    }
}

/// What an early member push leaves: the member list being read back (`None`: no read API).
type Early = Option<organization::Background<Option<Vec<crate::engine::OrgMember>>>>;

/// The member half: as soon as the users are read (and the organization), their plan is made
/// and checked by the guard, and when the push needs several requests anyway, the member
/// requests go out while the groups are still being read (`Some` early push). `None`: the
/// directory read failed before the users (its error is reported).
async fn member_half(
    run: &SyncRun<'_>,
    store: &mut Store,
    record: &mut RunRecord,
    org_read: organization::Background<Option<organization::PreparedOrg>>,
    users_rx: tokio::sync::oneshot::Receiver<Option<Vec<crate::engine::DirUser>>>,
    shared: &progress::SharedProgress<'_>,
) -> anyhow::Result<Option<(plan::MemberPlan, Option<Early>)>> {
    let prepared = org_read.finish("reading the organization").await?;
    let Ok(users) = users_rx.await else {
        return Ok(None);
    };
    let mut half = plan::members(run.cfg, store, record, prepared, users, run.opts.keep_read)?;
    let guarded = guard::members(
        run,
        store,
        &mut half.plan,
        half.org.as_ref().map(|o| &o.org),
    );
    if guarded.is_err() {
        run.keep(|k| {
            k.groups_losing = Some(tables::groups_losing_in(&half.base, &half.plan));
            k.refused_plan = Some(half.plan.clone());
            // the users it read (the groups were not read yet)
            k.normalized = Some(crate::engine::Normalized {
                users: half.kept_users.clone().flatten(),
                groups: None,
                skipped: half.skipped.clone(),
            });
        });
    }
    guarded?;
    if !push::goes_early(&half.plan) {
        // the member API waits for the group guard, with the import
        return Ok(Some((half, None)));
    }
    // the member requests go out now: renames before the import lists the new externalIds
    member_api(run, store, record, &mut half.plan).await?;
    let readable = half.org.is_some();
    let pushed = push::early(run, store, record, &shared.push(), &half.plan, readable).await;
    shared.push_done();
    Ok(Some((half, Some(pushed?))))
}

/// Stage 4b: the plan's renames, restores and revokes through the member API; the server's
/// refusals are kept for the end of the run.
async fn member_api(
    run: &SyncRun<'_>,
    store: &mut Store,
    record: &mut RunRecord,
    plan: &mut Plan,
) -> anyhow::Result<()> {
    let done = lifecycle::run(run, store, record, plan).await?;
    run.refused
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(done.refused);
    Ok(())
}

/// Stages 1 to 4 of the member half: the directory and the organization are read at once, and
/// the members are planned, guarded and (when they fill requests of their own) pushed while the
/// groups are still being read. Returns the directory's groups, the member half's plan and what
/// an early push left.
async fn read_both(
    run: &SyncRun<'_>,
    store: &mut Store,
    record: &mut RunRecord,
    secret: anyhow::Result<String>,
    source_state: &Arc<StagedState>,
) -> anyhow::Result<(
    Option<Vec<crate::engine::DirGroup>>,
    plan::MemberPlan,
    Option<Early>,
)> {
    let org_read = organization::spawn(Arc::clone(&run.client));
    let (users_tx, users_rx) = tokio::sync::oneshot::channel();
    let shared = progress::SharedProgress::new(run.progress);
    let read = async {
        let r = directory::read(
            run.cfg,
            secret,
            &shared.read(),
            users_tx,
            source_state.clone(),
        )
        .await;
        shared.read_done();
        r
    };
    let members = member_half(run, store, record, org_read, users_rx, &shared);
    // A member half that fails (the guard refuses, a request fails) ends the sync at once: the
    // group read is dropped. A read that ends first (or fails) waits for the member requests in
    // flight, so that every confirmed batch is recorded.
    let (groups, members) = {
        let mut read = std::pin::pin!(read);
        let mut members = std::pin::pin!(members);
        tokio::select! {
            m = &mut members => {
                let m = m?;
                (read.await, m)
            }
            g = &mut read => (g, members.await?),
        }
    };
    let groups = groups.map_err(|e| match record.requests {
        0 => e,
        n => e.context(format!(
            "{n} member request(s) had been applied and recorded; the next sync sends the groups"
        )),
    })?;
    let Some((half, early)) = members else {
        anyhow::bail!("reading the directory ended without its users");
    };
    Ok((groups, half, early))
}

/// The stages of one run, in order (see the module doc).
async fn stages(
    run: &SyncRun<'_>,
    store: &mut Store,
    record: &mut RunRecord,
    secret: anyhow::Result<String>,
) -> anyhow::Result<SyncReport> {
    crate::test_panic_point("sync-start");
    let started = chrono::Utc::now().to_rfc3339();
    run.progress.stage("Signing in to Bitwarden");
    run.client.token().await?;
    let source_state = Arc::new(StagedState::load(store)?);
    let (groups, half, early) = read_both(run, store, record, secret, &source_state).await?;
    let (mut plan, org, normalized) = plan::groups(store, record, half, groups, run.progress)?;
    if let Some(n) = normalized {
        let drift = org.as_ref().map(|o| o.org.drift(&n));
        run.keep(|k| {
            k.normalized = Some(n);
            k.drift = drift;
        });
    }
    let guarded = guard::groups(run, &plan, record.requests);
    if guarded.is_err() {
        run.keep(|k| k.refused_plan = Some(plan.clone()));
    }
    guarded?;
    if early.is_none() {
        member_api(run, store, record, &mut plan).await?;
    }
    let members_after = match plan.is_empty() {
        true => None,
        false => {
            push::rest(
                run,
                store,
                record,
                &plan,
                early,
                org.as_ref().map(|o| &o.org),
            )
            .await?
        }
    };
    if run.cancel.is_cancelled() || run.progress.cancelled() {
        // stopped after the last request: everything was applied, the check is skipped
        return Err(Failure::Stopped.into());
    }
    record::before_verify(store, &plan, org.is_none())?;
    if let Some(org) = org {
        verify::run(run, store, record, &plan, org, members_after).await?;
    }
    record::confirm(run.cfg, store, &started, &source_state)?;
    run.keep(|k| {
        if let Some(d) = &mut k.drift {
            d.forget_removed(&plan);
        }
    });
    let refused = std::mem::take(&mut *run.refused.lock().unwrap_or_else(|p| p.into_inner()));
    if !refused.is_empty() {
        anyhow::bail!(
            "the server refused {} member request(s); everything else was applied and \
             recorded: {}",
            refused.len(),
            refused.join("; ")
        );
    }
    Ok(SyncReport {
        outcome: if plan.is_empty() {
            RunOutcome::Unchanged
        } else {
            RunOutcome::Synced
        },
        plan,
        requests: record.requests as usize,
        bytes_pushed: record.bytes_pushed,
        run_id: record.id,
        server: ServerUse::default(),
    })
}
