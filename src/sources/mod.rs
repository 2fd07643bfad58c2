//! Directory sources. Each reads its directory and returns one [`Snapshot`]; none knows about
//! Bitwarden.

pub mod ldap;

use crate::engine::Snapshot;

/// Progress of a long stage: a message and how many entries were read so far.
pub trait Progress: Send + Sync {
    fn stage(&self, message: &str);
    fn count(&self, n: u64);
}

/// A progress sink that ignores everything.
pub struct NoProgress;

impl Progress for NoProgress {
    fn stage(&self, _: &str) {}
    fn count(&self, _: u64) {}
}

/// What a source offers to the connector.
pub type FetchResult = anyhow::Result<Snapshot>;
