//! Directory sources. Each reads its directory and returns one [`Snapshot`]; none knows about
//! Bitwarden.

pub mod entra;
pub mod filter;
pub mod google;
pub mod http;
pub mod ldap;
pub mod okta;
pub mod onelogin;

use crate::engine::Snapshot;

/// Progress of a long stage: a message and how many entries were read so far.
/// Where a source hands over its users as soon as they are read, before it reads the groups (a
/// sync starts pushing members meanwhile). `None`: users are not synced.
pub type UsersReady = tokio::sync::oneshot::Sender<Option<Vec<crate::engine::DirUser>>>;

pub trait Progress: Send + Sync {
    fn stage(&self, message: &str);
    fn count(&self, n: u64);
    /// Whether the caller asked to stop (the window is closing). A sync checks it between
    /// batches, so it stops on a batch boundary with the cache matching the server.
    fn cancelled(&self) -> bool {
        false
    }
    /// How far the push is, 0.0–1.0 (for a progress bar).
    fn set_fraction(&self, _fraction: f32) {}
}

/// A progress sink that ignores everything.
pub struct NoProgress;

impl Progress for NoProgress {
    fn stage(&self, _: &str) {}
    fn count(&self, _: u64) {}
}

/// State a source keeps between runs (e.g. Entra's delta link). Keys are the source's own; a
/// source puts whatever identifies its scope (tenant, filter) into the key. `get` returns what
/// the last successful sync staged; values given to `stage` are kept only when the sync they
/// belong to succeeds (the connector commits them after the push), so a failed sync or a `test`
/// never moves the state forward.
pub trait SourceState: Send + Sync {
    fn get(&self, key: &str) -> Option<String>;
    fn stage(&self, key: &str, value: &str);
}

/// No state: every run starts afresh (tests, and `test` when the store cannot be read).
pub struct NoState;

impl SourceState for NoState {
    fn get(&self, _: &str) -> Option<String> {
        None
    }
    fn stage(&self, _: &str, _: &str) {}
}

/// What a source offers to the connector.
pub type FetchResult = anyhow::Result<Snapshot>;
