//! Stage 2, reading the organization: its member list, its group list and every group's
//! members, on a task of its own, with its baseline and digest prepared there (off the thread
//! that handles the directory's entries, so that both go on at once).

use std::sync::Arc;

use anyhow::{Context, anyhow};

use crate::bitwarden::BitwardenClient;
use crate::engine::{Cache, Organization};

/// The organization as read at the start of a sync, with what the plan needs of it.
pub(crate) struct PreparedOrg {
    pub(crate) org: Organization,
    pub(crate) digest: String,
    pub(crate) base: Cache,
    /// The groups (externalIds) whose members were read from the server.
    pub(crate) read: Vec<String>,
}

/// A read running on a task of its own (the organization's, or the member list's after an
/// early member push); dropping it stops the read.
pub(crate) struct Background<T>(pub(crate) tokio::task::JoinHandle<anyhow::Result<T>>);

impl<T> Background<T> {
    /// Waits for the read; `what` names it if the task ended without an answer.
    pub(crate) async fn finish(mut self, what: &str) -> anyhow::Result<T> {
        match (&mut self.0).await {
            Ok(r) => r,
            Err(e) => Err(anyhow!("{what} stopped: {e}")),
        }
    }
}

impl<T> Drop for Background<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts reading the organization (`None` from the task: the server has no read API).
pub(crate) fn spawn(client: Arc<BitwardenClient>) -> Background<Option<PreparedOrg>> {
    Background(tokio::spawn(async move {
        let started = std::time::Instant::now();
        let read = client
            .read_organization_knowing(&crate::sources::NoProgress, async { Ok(None) })
            .await?;
        log_read(read.as_ref().map(|(org, _)| org), started);
        let Some((org, read)) = read else {
            return Ok(None);
        };
        let prepared = tokio::task::spawn_blocking(move || {
            let digest = org.digest();
            let base = org.plan_baseline();
            PreparedOrg {
                org,
                digest,
                base,
                read,
            }
        })
        .await
        .context("preparing the organization's baseline")?;
        Ok(Some(prepared))
    }))
}

/// Reads the organization (logged, not shown: the directory read owns the status line).
pub(crate) async fn read(client: &BitwardenClient) -> anyhow::Result<Option<Organization>> {
    let started = std::time::Instant::now();
    let org = client
        .read_organization(&crate::sources::NoProgress)
        .await?;
    log_read(org.as_ref(), started);
    Ok(org)
}

/// Logs how long a read of the organization took and what it found.
pub(crate) fn log_read(org: Option<&Organization>, started: std::time::Instant) {
    match org {
        Some(o) => tracing::info!(
            "read the organization: {} members, {} groups in {:.2}s",
            o.members.len(),
            o.groups.len(),
            started.elapsed().as_secs_f64()
        ),
        None => tracing::info!(
            "the server has no read API (GET /public/members: 404); the plan is made against \
             the local sync cache"
        ),
    }
}
