//! Directory sources. Each reads its directory and returns one [`Snapshot`]; none knows about
//! Bitwarden.

pub mod entra;
pub mod feed;
pub mod filter;
pub mod google;
pub mod http;
pub mod ldap;
pub mod okta;
pub mod onelogin;

use crate::engine::Snapshot;
/// Kept at their old path (the connector and the sources name them here); they live in
/// [`crate::engine::run`].
pub use crate::engine::run::{NoState, SourceState};
/// Kept at their old path (the connector and the sources name them here); they live in
/// [`crate::progress`].
pub use crate::progress::{NoProgress, Progress};

/// Where a source hands over its users as soon as they are read, before it reads the groups (a
/// sync starts pushing members meanwhile). `None`: users are not synced.
pub type UsersReady = tokio::sync::oneshot::Sender<Option<Vec<crate::engine::DirUser>>>;

/// What a source offers to the connector.
pub type FetchResult = anyhow::Result<Snapshot>;
