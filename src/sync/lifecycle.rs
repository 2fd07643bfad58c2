//! Stage 4b, the member API: the plan's renames, restores and revokes (see
//! [`crate::engine::lifecycle`]), one request each through the request budget, after the member
//! guard and before the import. Each is recorded once the server confirmed it: a revoke's time
//! (the grace period counts from it), a restore (its record goes), a rename (the cache and the
//! immutable id follow the new externalId). A 400 that names the state asked for ("Already
//! revoked.", "Already active.") is that state; a 404 is a member already gone, said and
//! recorded; any other refusal is kept and fails the run at its end, naming the member, while
//! the rest of the sync goes on.

use anyhow::Context;

use super::SyncRun;
use crate::bitwarden::members::{ALREADY_ACTIVE, ALREADY_REVOKED, LAST_OWNER, MemberAnswer};
use crate::engine::Plan;
use crate::engine::diff::{MemberAction, MemberChange};
use crate::errors::Failure;
use crate::sources::Progress;
use crate::store::{RunRecord, Store};

/// What the member API stage leaves for the end of the run.
#[derive(Debug, Default)]
pub(crate) struct MemberApiOutcome {
    /// The server refused these (each a sentence naming the member and the server's reason).
    pub(crate) refused: Vec<String>,
}

/// Revoke times to write to the store (externalId → the time, or `None`: forget it), written
/// every [`RECORDS_AT_ONCE`] answers and when the stage ends however it ends. A record lost
/// in between (the process killed) only restarts that member's grace period: never earlier.
#[derive(Default)]
struct Records(Vec<(String, Option<String>)>);

/// How many revoke-time changes are written together.
const RECORDS_AT_ONCE: usize = 100;

impl Records {
    fn set(&mut self, ext: String, at: String) {
        self.0.push((ext, Some(at)));
    }
    /// Starts the clock unless it started before.
    fn start(&mut self, ext: String, at: String) {
        self.0.push((ext, Some(format!("?{at}"))));
    }
    fn forget(&mut self, ext: String) {
        self.0.push((ext, None));
    }
    fn flush(&mut self, store: &Store) -> anyhow::Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        let changes = std::mem::take(&mut self.0);
        store
            .update_kept(|k| {
                for (ext, at) in changes {
                    match at {
                        // `?`: only where no time is recorded yet
                        Some(t) if t.starts_with('?') => {
                            k.revoked_at
                                .entry(ext)
                                .or_insert_with(|| t[1..].to_string());
                        }
                        Some(t) => {
                            k.revoked_at.insert(ext, t);
                        }
                        None => {
                            k.revoked_at.remove(&ext);
                        }
                    }
                }
            })
            .context("recording the revoke times the server confirmed")
    }
}

/// Carries out the plan's member API actions. Returns the refusals; an error ends the run (a
/// request that failed, or a stop).
pub(crate) async fn run(
    ctx: &SyncRun<'_>,
    store: &mut Store,
    record: &mut RunRecord,
    plan: &mut Plan,
) -> anyhow::Result<MemberApiOutcome> {
    let todo: Vec<usize> = (0..plan.members.len())
        .filter(|&i| plan.members[i].uses_member_api())
        .collect();
    let mut out = MemberApiOutcome::default();
    let mut records = Records::default();
    let result = each(ctx, store, record, plan, &todo, &mut out, &mut records).await;
    // whatever happened, what the server confirmed is recorded
    let flushed = records.flush(store);
    result?;
    flushed?;
    if !todo.is_empty() {
        crate::test_panic_point("after-member-api");
    }
    Ok(out)
}

/// The requests of [`run`], in the plan's order.
async fn each(
    ctx: &SyncRun<'_>,
    store: &mut Store,
    record: &mut RunRecord,
    plan: &mut Plan,
    todo: &[usize],
    out: &mut MemberApiOutcome,
    records: &mut Records,
) -> anyhow::Result<()> {
    let total = todo.len();
    for (n, &i) in todo.iter().enumerate() {
        if ctx.cancel.is_cancelled() || ctx.progress.cancelled() {
            return Err(Failure::Interrupted(format!(
                "sync stopped before member request {}/{total}; the ones before it were \
                 applied and recorded, and the next sync does the rest",
                n + 1
            ))
            .into());
        }
        let m = plan.members[i].clone();
        let n_renamed_before = record.server.as_ref().map_or(0, |s| s.renamed);
        ctx.progress.stage(&format!(
            "{} {} ({}/{total})",
            match m.action {
                MemberAction::Revoke(_) => "Revoking",
                MemberAction::Restore => "Restoring",
                _ => "Renaming",
            },
            m.email,
            n + 1
        ));
        ctx.progress.set_fraction(n as f32 / total as f32);
        let gone = one(ctx, store, record, &m, (out, records))
            .await
            .with_context(|| format!("{} {} ({})", m.action.label(), m.email, m.external_id))?;
        let planned = &mut plan.members[i];
        if gone {
            // said and recorded; the import must not take it for someone to invite: a leaver
            // is sent as removed (nothing there to remove), a returner or a moved entry as
            // the newcomer it now is
            planned.member_id = None;
            planned.previous_external_id = None;
            planned.action = match planned.action {
                MemberAction::Revoke(reason) => MemberAction::Remove(reason),
                _ => MemberAction::Invite,
            };
            continue;
        }
        if planned.action == MemberAction::Rename && !store_renamed(record, n_renamed_before) {
            // not renamed: the import lists the member as the organization has it (its new
            // externalId would be taken for a new person), and the next sync tries again
            if let Some(old) = planned.previous_external_id.take() {
                planned.external_id = old;
                planned.action = MemberAction::Resend;
                planned.member_id = None;
            }
        }
        if records.0.len() >= RECORDS_AT_ONCE {
            records.flush(store)?;
        }
    }
    Ok(())
}

/// Whether the request just made renamed a member (the run's count went up).
fn store_renamed(record: &RunRecord, before: u64) -> bool {
    record.server.as_ref().map_or(0, |s| s.renamed) > before
}

/// One member request, recorded as the server answered it. Returns whether the member is gone.
#[allow(
    clippy::too_many_lines,
    reason = "one match over the server's answers (done, already so, refused, gone, an old server) for the three requests; each arm records what that answer means"
)]
async fn one(
    ctx: &SyncRun<'_>,
    store: &mut Store,
    record: &mut RunRecord,
    m: &MemberChange,
    (out, records): (&mut MemberApiOutcome, &mut Records),
) -> anyhow::Result<bool> {
    let Some(id) = m.member_id.as_deref() else {
        return Ok(false);
    };
    let server = record.server.get_or_insert_with(Default::default);
    let answer = match m.action {
        MemberAction::Revoke(_) => ctx.client.revoke_member(id).await?,
        MemberAction::Restore => ctx.client.restore_member(id).await?,
        _ => match ctx.client.read_member(id).await? {
            (_, Some(details)) => {
                ctx.client
                    .rename_member(id, &details, &m.external_id)
                    .await?
            }
            (answer, None) => answer,
        },
    };
    record.requests += 1;
    if answer == MemberAnswer::Gone
        && matches!(m.action, MemberAction::Revoke(_) | MemberAction::Restore)
        && ctx.client.member_details(id).await?.is_some()
    {
        // the member is there: it is the endpoint that is missing
        return Err(Failure::Config(format!(
            "the server answered 404 to {} {} although the member is in the organization: it \
             has no member revoke and restore API (a self-hosted server older than 2026.1). \
             Update the server, or set sync.remove_revoked_after_days = 0 to remove departing \
             members at once",
            m.action.label(),
            m.email
        ))
        .into());
    }
    let now = chrono::Utc::now().to_rfc3339();
    let ext = m.external_id.clone();
    match (m.action, answer) {
        (_, MemberAnswer::Gone) => {
            tracing::warn!(
                "{} ({}) is no longer in the organization (HTTP 404): removed outside the \
                 connector; recorded as gone",
                m.email,
                m.previous_external_id.as_deref().unwrap_or(&ext)
            );
            store.forget_member(m.previous_external_id.as_deref().unwrap_or(&ext))?;
            records.forget(ext);
            return Ok(true);
        }
        (MemberAction::Revoke(_), MemberAnswer::Done) => {
            server.revoked += 1;
            records.set(ext, now);
        }
        (MemberAction::Revoke(_), MemberAnswer::Refused(msg)) if msg.contains(ALREADY_REVOKED) => {
            // revoked already (by hand, or by a run that did not record it): the clock starts
            // now unless it started before
            records.start(ext, now);
        }
        (MemberAction::Revoke(_), MemberAnswer::Refused(msg)) if msg.contains(LAST_OWNER) => {
            // an owner the server keeps: the state it names, not a failed sync
            tracing::warn!(
                "{} was not revoked: the server keeps the organization's last confirmed owner \
                 ({msg}); {}",
                m.email,
                crate::engine::diff::OWNER_ADVICE
            );
        }
        (MemberAction::Restore, MemberAnswer::Done) => {
            server.restored += 1;
            records.forget(ext);
        }
        (MemberAction::Restore, MemberAnswer::Refused(msg)) if msg.contains(ALREADY_ACTIVE) => {
            records.forget(ext);
        }
        (MemberAction::Rename, MemberAnswer::Done) => {
            server.renamed += 1;
            if let Some(old) = &m.previous_external_id {
                store.rename_member(old, &ext, &m.email)?;
            }
        }
        (action, MemberAnswer::Refused(msg)) => {
            server.member_refusals += 1;
            let what = match action {
                MemberAction::Revoke(_) => "revoking",
                MemberAction::Restore => "restoring",
                _ => "renaming",
            };
            let left = match action {
                MemberAction::Revoke(_) => "it keeps its access",
                MemberAction::Restore => "it stays revoked",
                _ => "it keeps its old externalId",
            };
            tracing::warn!("{what} {} was refused by the server: {msg}", m.email);
            out.refused.push(format!(
                "{what} {} ({ext}) was refused by the server: {msg}; {left}",
                m.email
            ));
        }
        (_, MemberAnswer::Done) => {}
    }
    Ok(false)
}
