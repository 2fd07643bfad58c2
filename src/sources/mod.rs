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
/// Kept at their old path (the connector and the sources name them here); they live in
/// [`crate::progress`].
pub use crate::progress::{NoProgress, Progress};

/// Where a source hands over its users as soon as they are read, before it reads the groups (a
/// sync starts pushing members meanwhile). `None`: users are not synced.
pub type UsersReady = tokio::sync::oneshot::Sender<Option<Vec<crate::engine::DirUser>>>;

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
