//! Stage 6, verifying: where the organization can be read, it is read back after a push (the
//! member list and every group sent), the cache is made what it shows (only the rows that
//! differ), and the run fails when it does not show what the server accepted. A short member
//! list read back is not written to the cache.

use std::collections::HashSet;

use anyhow::{Context, anyhow};

use super::SyncRun;
use super::organization::log_read;
use super::plan::OrgState;
use super::push::MembersAfter;
use crate::engine::{GuardLimits, Organization, Plan, check_member_list};
use crate::sources::Progress;
use crate::store::{RunRecord, Store};

/// Reads the organization back when something was pushed, records what it shows in the cache,
/// and checks it. Members the server removed on its own (`overwriteExisting`) are counted in
/// `record.removed`.
pub(crate) async fn run(
    ctx: &SyncRun<'_>,
    store: &mut Store,
    record: &mut RunRecord,
    plan: &Plan,
    mut org: OrgState,
    members_after: Option<MembersAfter>,
) -> anyhow::Result<()> {
    let pushed = !plan.is_empty();
    let read_back;
    let mut verified = Vec::new();
    let after = if pushed {
        ctx.progress.stage("Verifying the organization");
        let read = read_back_after(ctx, &mut org.org, plan, members_after).await?;
        // a short member list is not written to the cache (it would lose its members)
        if let Some(reason) = read_back_short(&org.org, &read.0, plan, ctx.limits) {
            anyhow::bail!(
                "the organization's member list read back after the push looks incomplete: \
                 {reason}. The sync cache keeps what the server confirmed batch by batch and is \
                 not changed by this read; the next sync reads the organization again"
            );
        }
        verified = read.1;
        read_back = read.0;
        record.removed += removed_by_server(&org.org, &read_back, plan);
        &read_back
    } else {
        &org.org
    };
    let started = std::time::Instant::now();
    let (wrote, problems) = if pushed {
        record_read_back(&org, after, plan, store)?
    } else {
        let wrote = store.replace_cache(&org.digest, || org.org.baseline())?;
        (wrote, Vec::new())
    };
    if wrote {
        tracing::info!(
            "the sync cache now holds what the organization shows ({:.2}s)",
            started.elapsed().as_secs_f64()
        );
    }
    // when each group's members were last read from the server
    let now = chrono::Utc::now().to_rfc3339();
    let read_now: Vec<&str> = org
        .fresh
        .iter()
        .chain(&verified)
        .map(String::as_str)
        .collect();
    store.set_groups_read_at(&read_now, Some(&now))?;
    if let Some(server) = record.server.as_mut() {
        server.groups_verified = verified
            .iter()
            .filter(|e| plan.groups.iter().any(|g| g.external_id == **e))
            .count() as u64;
        server.groups_pending = 0;
    }
    if problems.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = problems.iter().take(10).map(String::as_str).collect();
    anyhow::bail!(
        "the organization does not show {} change(s) the server accepted:\n  {}{}\nThe sync \
         cache records what the organization shows; the next sync tries again.",
        problems.len(),
        shown.join("\n  "),
        if problems.len() > 10 {
            format!("\n  … and {} more", problems.len() - 10)
        } else {
            String::new()
        }
    )
}

/// Reads the organization back after a push: the member list (already read back while the
/// groups went out, when it was) and every group sent; the others keep their members from the
/// read before. Returns it and the groups (externalIds) read.
async fn read_back_after(
    ctx: &SyncRun<'_>,
    before: &mut Organization,
    plan: &Plan,
    members_after: Option<MembersAfter>,
) -> anyhow::Result<(Organization, Vec<String>)> {
    let changed: HashSet<&str> = plan.groups.iter().map(|g| g.external_id.as_str()).collect();
    let no = &crate::sources::NoProgress;
    let started = std::time::Instant::now();
    let read = match members_after {
        Some(members) => match members? {
            Some(members) => ctx
                .client
                .read_organization_after_members(no, members, before, &changed, None)
                .await
                .map(Some),
            None => Ok(None),
        },
        None => {
            ctx.client
                .read_organization_after(no, before, &changed, None)
                .await
        }
    }
    .context("reading the organization back after the push")?
    .ok_or_else(|| anyhow!("the server's read API disappeared during the sync"))?;
    log_read(Some(&read.0), started);
    Ok(read)
}

/// Makes the cache what the organization read back after a push shows, and checks that it shows
/// the plan: whether the cache was written, and the problems found. Nothing else runs at this
/// point of a sync, so the work is spread over two threads: the digest and the member rows
/// beside the groups' references, then the check beside the cache's writing.
fn record_read_back(
    before: &OrgState,
    after: &Organization,
    plan: &Plan,
    store: &mut Store,
) -> anyhow::Result<(bool, Vec<String>)> {
    // The cache held `before` and then took the batches' writes: only the rows where the
    // read-back differs from that are written.
    let incremental = before.held && !plan.overwrite_existing;
    let member_rows = || {
        let written = plan.members.iter().flat_map(|m| {
            let email = (!m.is_removal()).then_some(m.email.as_str());
            // a rename's old externalId left the cache with it
            let old = m.previous_external_id.as_deref().map(|o| (o, None));
            std::iter::once((m.external_id.as_str(), email)).chain(old)
        });
        after.member_row_changes(&before.org, written)
    };
    let (digest, rows, refs) = std::thread::scope(|s| {
        let digest = s.spawn(|| after.digest());
        let rows = incremental.then(|| s.spawn(member_rows));
        // the read-back's groups, resolved once for the cache's rows and the check
        let refs = after.group_refs();
        (crate::joined(digest), rows.map(crate::joined), refs)
    });
    std::thread::scope(|s| {
        let check = s.spawn(|| after.verify_with(plan, &refs));
        let wrote = match rows {
            Some(rows) => store.load_group_fingerprints().and_then(|held| {
                tracing::debug!(
                    "cache rows to correct after the push: {} member upsert(s), {} member \
                     delete(s)",
                    rows.upserts.len(),
                    rows.deletes.len()
                );
                let groups = refs.row_changes(held);
                tracing::debug!(
                    "cache rows to correct after the push: {} group(s) to write, {} to drop",
                    groups.upserts.len(),
                    groups.deletes.len()
                );
                store.write_cache_rows(&digest, &rows, &groups)?;
                Ok(true)
            }),
            None => store.replace_cache(&digest, || after.baseline_with(&refs)),
        };
        let problems = crate::joined(check);
        let wrote = wrote.context("writing what the organization shows to the sync cache")?;
        Ok((wrote, problems))
    })
}

/// The externalIds of an organization's members.
fn with_ext(o: &Organization) -> HashSet<&str> {
    o.members
        .iter()
        .filter_map(|m| m.external_id.as_deref())
        .collect()
}

/// The externalIds a plan takes out of the organization: its removals, and the old
/// externalIds of its renames.
fn removals(plan: &Plan) -> HashSet<&str> {
    plan.members
        .iter()
        .filter_map(|m| match m.is_removal() {
            true => Some(m.external_id.as_str()),
            false => m.previous_external_id.as_deref(),
        })
        .collect()
}

/// The members with an externalId the organization held before a push with `overwriteExisting`
/// that it no longer shows, and that the plan did not remove itself: the server removed them
/// because the push did not list them.
fn removed_by_server(before: &Organization, after: &Organization, plan: &Plan) -> u64 {
    if !plan.overwrite_existing {
        return 0;
    }
    let (now, planned) = (with_ext(after), removals(plan));
    with_ext(before)
        .into_iter()
        .filter(|e| !now.contains(e) && !planned.contains(e))
        .count() as u64
}

/// Why the member list read back after a push is taken for a short answer, if it is: more
/// members with an externalId are missing from it than the plan removed, by more than
/// `sync.max_removal_percent` (the same check as the list read before the plan).
fn read_back_short(
    before: &Organization,
    after: &Organization,
    plan: &Plan,
    limits: GuardLimits,
) -> Option<String> {
    // (with overwriteExisting the server also removes members the plan did not know: a member
    // list short of them is what the admin asked for)
    if plan.overwrite_existing {
        return None;
    }
    let (was, now, removed) = (with_ext(before), with_ext(after), removals(plan));
    // the members the organization held before and the plan kept
    let expected = was.iter().filter(|e| !removed.contains(*e)).count();
    let kept = was
        .iter()
        .filter(|e| !removed.contains(*e) && now.contains(*e))
        .count();
    check_member_list(expected, kept, limits)
}
