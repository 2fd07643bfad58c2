//! Stage 1, reading the directory: the configured source reads its users and groups. The users
//! go out as soon as they are read (the LDAP source reads groups after that; the cloud sources
//! filter users by group, so they hand them over at the end), so that the member half of the
//! plan can start while the groups are still being read.

use std::sync::Arc;

use anyhow::Context;

use crate::config::{Config, DirectoryType};
use crate::engine::DirGroup;
use crate::errors::Failure;
use crate::sources::entra::EntraSource;
use crate::sources::google::GoogleSource;
use crate::sources::ldap::LdapSource;
use crate::sources::okta::OktaSource;
use crate::sources::onelogin::OneLoginSource;
use crate::sources::{Progress, SourceState, UsersReady};

/// Reads the directory of `cfg` with its secret: the users go to `users_ready`, the groups are
/// returned.
pub(crate) async fn read(
    cfg: &Config,
    secret: anyhow::Result<String>,
    progress: &dyn Progress,
    users_ready: UsersReady,
    state: Arc<dyn SourceState>,
) -> anyhow::Result<Option<Vec<DirGroup>>> {
    let mut users_ready = Some(users_ready);
    let kind = cfg
        .directory
        .kind
        .ok_or_else(|| Failure::Config("no directory configured".into()))?;
    let secret = secret?;
    let sync = cfg.sync.clone();
    let ca_file = cfg.server.ca_file.clone();
    let fetched = match kind {
        DirectoryType::Ldap => {
            let source = LdapSource {
                ldap: cfg.ldap.clone(),
                sync,
                password: secret,
            };
            source.fetch_parts(progress, users_ready.take()).await
        }
        DirectoryType::Okta => {
            let source = OktaSource {
                okta: cfg.okta.clone(),
                sync,
                token: secret,
                ca_file,
            };
            source.fetch(progress).await
        }
        DirectoryType::Entra => {
            let source = EntraSource {
                entra: cfg.entra.clone(),
                sync,
                key: secret,
                ca_file,
                state,
            };
            source.fetch(progress).await
        }
        DirectoryType::Onelogin => {
            let source = OneLoginSource {
                onelogin: cfg.onelogin.clone(),
                sync,
                secret,
                ca_file,
            };
            source.fetch(progress).await
        }
        DirectoryType::Google => {
            let source = GoogleSource {
                google: cfg.google.clone(),
                sync,
                key_json: secret,
                ca_file,
            };
            source.fetch(progress).await
        }
    };
    let mut snapshot = fetched.context("reading the directory")?;
    if let Some(tx) = users_ready.take() {
        let _ = tx.send(snapshot.users.take());
    }
    Ok(snapshot.groups)
}
