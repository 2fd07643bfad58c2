//! Stage 5, pushing: the plan's import requests, one at a time and pipelined (while batch i is in
//! flight, the next body is encoded and the previous, confirmed, batch is written to the cache).
//! Members that fill requests of their own go out early, while the groups are still being read;
//! the member list is read back while the group requests go out (they do not change it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;

use super::SyncRun;
use super::organization::Background;
use crate::bitwarden::wire::ImportRequest;
use crate::engine::batch::{BATCH_SIZE, MEMBER_REF_BUDGET, group_batches, member_batches};
use crate::engine::{Batch, OrgMember, Organization, Plan, build_batches};
use crate::errors::Failure;
use crate::sources::Progress;
use crate::store::{RunRecord, Store};

/// The member list read back after the member requests (`None`: the server has no read API).
pub(crate) type MembersAfter = anyhow::Result<Option<Vec<OrgMember>>>;

/// What the run has applied, for messages.
pub(crate) fn applied_message(done: u64) -> String {
    match done {
        0 => "nothing was applied".to_string(),
        n => format!("requests 1-{n} were applied and recorded; the next sync sends the rest"),
    }
}

/// Says a push is going on (a stop waits for the request in flight) until dropped, whichever
/// way the push ends.
struct Pushing<'a>(&'a AtomicBool);

impl Drop for Pushing<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// The batches of one push, what they are called in messages, and whom to tell once every
/// batch with members is confirmed.
pub(crate) struct Push<'p> {
    pub(crate) plan: &'p Plan,
    pub(crate) batches: &'p [Batch],
    pub(crate) what: &'p str,
    pub(crate) members_done: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Sends a push's batches. A batch is recorded (cache and run counts) only after the server
/// confirmed it; a stop between two batches records the confirmed one and ends the push.
pub(crate) async fn send(
    ctx: &SyncRun<'_>,
    store: &mut Store,
    record: &mut RunRecord,
    progress: &dyn Progress,
    push: Push<'_>,
) -> anyhow::Result<()> {
    let Push {
        plan,
        batches,
        what,
        mut members_done,
    } = push;
    ctx.pushing.store(true, Ordering::SeqCst);
    let _pushing = Pushing(ctx.pushing);
    let total = batches.len();
    let invite = ctx.cfg.sync.invite_users_after_provisioning;
    let encode = |b: &Batch| -> anyhow::Result<Vec<u8>> {
        ImportRequest::from_batch(plan, b, invite)
            .to_json()
            .context("encoding the import request")
    };
    let commit = |store: &mut Store, record: &mut RunRecord, j: usize| {
        commit_batch(plan, &batches[j], (what, j, total), store, record)
    };
    let mut body = match batches.first() {
        Some(b) => encode(b)?,
        None => Vec::new(),
    };
    // told once the last batch with members is confirmed (at once when none has members)
    let last_with_members = batches.iter().rposition(|b| !b.members.is_empty());
    let mut members_confirmed = |i: Option<usize>| {
        if i == last_with_members
            && let Some(done) = members_done.take()
        {
            let _ = done.send(());
        }
    };
    members_confirmed(None);
    let mut confirmed: Option<usize> = None;
    for (i, b) in batches.iter().enumerate() {
        if ctx.cancel.is_cancelled() || progress.cancelled() {
            if let Some(j) = confirmed.take() {
                commit(store, record, j)?;
            }
            return Err(Failure::Interrupted(format!(
                "sync stopped before {what} {}/{total}: {}",
                i + 1,
                applied_message(record.requests)
            ))
            .into());
        }
        progress.set_fraction(i as f32 / total as f32);
        progress.stage(&format!(
            "Pushing {what} {}/{total} ({} members, {} groups)",
            i + 1,
            b.members.len(),
            b.groups.len()
        ));
        let previous = confirmed.take();
        let (sent, next, recorded) = tokio::join!(
            ctx.client.import(&body),
            async { batches.get(i + 1).map(encode).transpose() },
            async {
                match previous {
                    Some(j) => commit(store, record, j),
                    None => Ok(()),
                }
            }
        );
        recorded?;
        sent.with_context(|| {
            format!(
                "import {what} {}/{total} ({} members, {} groups) failed; {}",
                i + 1,
                b.members.len(),
                b.groups.len(),
                applied_message(record.requests)
            )
        })?;
        confirmed = Some(i);
        members_confirmed(Some(i));
        record.requests += 1;
        record.bytes_pushed += body.len() as u64;
        if let Some(next) = next? {
            body = next;
        }
    }
    if let Some(j) = confirmed.take() {
        commit(store, record, j)?;
    }
    Ok(())
}

/// Records a batch the server confirmed: in the cache, and what it applied in the run's counts.
/// `at`: the batches' name, this one's index and their number.
fn commit_batch(
    plan: &Plan,
    b: &Batch,
    (what, j, total): (&str, usize, usize),
    store: &mut Store,
    record: &mut RunRecord,
) -> anyhow::Result<()> {
    use crate::engine::diff::MemberAction;
    let members = &plan.members[b.members.clone()];
    let count = |f: &dyn Fn(&crate::engine::MemberChange) -> bool| {
        members.iter().filter(|m| f(m)).count() as u64
    };
    record.invited += count(&|m| m.action == MemberAction::Invite);
    let removals = count(&|m| m.is_removal());
    // done by the import: a rename matched by email, and where the import revokes
    // (Vaultwarden), its revokes and restores
    let server = record.server.get_or_insert_with(Default::default);
    server.renamed += count(&|m| m.action == MemberAction::Rename && m.member_id.is_none());
    if plan.import_revokes {
        server.revoked += removals;
        server.restored += count(&|m| m.action == MemberAction::Restore);
    } else {
        record.removed += removals;
    }
    record.groups_changed += b.groups.len() as u64;
    if let Err(e) = store.record_progress(record) {
        tracing::warn!("recording the run's counts after {what} {}: {e:#}", j + 1);
    }
    store
        .commit_batch(
            members,
            &plan.groups[b.groups.clone()],
            b.overwrite_existing,
        )
        .with_context(|| {
            format!(
                "recording {what} {}/{total} (confirmed by the server) in the sync cache; the \
                 next sync sends it again",
                j + 1
            )
        })?;
    if plan.import_revokes {
        note_import_revokes(store, members);
    }
    crate::test_panic_point("after-batch");
    Ok(())
}

/// Where the import revokes (Vaultwarden), what a confirmed batch revoked and restored is
/// recorded like a revoke of the member API: a returner is then shown as restored.
fn note_import_revokes(store: &Store, members: &[crate::engine::MemberChange]) {
    let now = chrono::Utc::now().to_rfc3339();
    let changed = store.update_kept(|k| {
        for m in members {
            if m.is_removal() {
                k.revoked_at.insert(m.external_id.clone(), now.clone());
            } else if m.action == crate::engine::diff::MemberAction::Restore {
                k.revoked_at.remove(&m.external_id);
            }
        }
    });
    if let Err(e) = changed {
        tracing::warn!("recording the members the import revoked or restored: {e:#}");
    }
}

/// Whether the member half goes out before the groups are read: members that fill a request
/// on their own (members and groups go in separate requests anyway, see `build_batches`).
pub(crate) fn goes_early(plan: &Plan) -> bool {
    plan.members.len() >= BATCH_SIZE && !plan.overwrite_existing
}

/// Pushes the member half now; where the organization can be read, starts reading its member
/// list back while the groups are still being read (the group requests do not change it).
pub(crate) async fn early(
    ctx: &SyncRun<'_>,
    store: &mut Store,
    record: &mut RunRecord,
    progress: &dyn Progress,
    plan: &Plan,
    readable: bool,
) -> anyhow::Result<Option<Background<Option<Vec<OrgMember>>>>> {
    let batches = member_batches(plan.members.len(), BATCH_SIZE, true);
    let push = Push {
        plan,
        batches: &batches,
        what: "member batch",
        members_done: None,
    };
    send(ctx, store, record, progress, push).await?;
    Ok(readable.then(|| {
        let client = Arc::clone(&ctx.client);
        Background(tokio::spawn(async move {
            client.read_members(&crate::sources::NoProgress).await
        }))
    }))
}

/// Pushes what is left of the plan (all of it, or the groups after an early member push).
/// Returns the member list read back (`None`: nothing to read back).
pub(crate) async fn rest(
    ctx: &SyncRun<'_>,
    store: &mut Store,
    record: &mut RunRecord,
    plan: &Plan,
    early: Option<Option<Background<Option<Vec<OrgMember>>>>>,
    before: Option<&Organization>,
) -> anyhow::Result<Option<MembersAfter>> {
    let batches = match early {
        Some(_) => group_batches(plan, BATCH_SIZE, MEMBER_REF_BUDGET, true),
        None => build_batches(plan, BATCH_SIZE, MEMBER_REF_BUDGET).map_err(Failure::Config)?,
    };
    let what = if early.is_some() {
        "group batch"
    } else {
        "batch"
    };
    // Once every member request is confirmed, the member list is read back while the group
    // requests go out. A sync that changes no member keeps the list it read before.
    let (members_done, members_sent) = tokio::sync::oneshot::channel();
    let push = Push {
        plan,
        batches: &batches,
        what,
        members_done: Some(members_done),
    };
    let push = send(ctx, store, record, ctx.progress, push);
    let read_back = async {
        let before = before?;
        if plan.members.is_empty() {
            return Some(Ok(Some(before.members.clone())));
        }
        if let Some(Some(read)) = early {
            return Some(read.finish("reading the member list back").await);
        }
        members_sent.await.ok()?;
        Some(ctx.client.read_members(&crate::sources::NoProgress).await)
    };
    let (sent, read) = tokio::join!(push, read_back);
    sent?;
    Ok(read)
}
