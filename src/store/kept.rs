//! What `clear-cache` and a damaged database never take, per cache scope (server and
//! organization): the pending email changes (a member whose new address must never be sent
//! beside the old one) and each group's member count as the server last confirmed it (with no
//! baseline, a push that would shrink a group far below it is refused). A small JSON file
//! beside the database, `kept.json`, written whole to a temporary file and renamed into place.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The file's name in the data directory.
pub const KEPT_FILE: &str = "kept.json";

/// What is kept for one scope.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ScopeKept {
    /// Pending email changes: externalId → the email the server last confirmed.
    pub email_pins: BTreeMap<String, String>,
    /// Each group's member count as the server last confirmed it, by the group's externalId.
    pub group_sizes: BTreeMap<String, usize>,
    /// The admin allowed once a removal on a server that cannot show who is an owner, with no
    /// `sync.protected_emails` (see the owner guard).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub owners_acknowledged: bool,
    /// When the connector revoked each member it revoked (externalId → RFC 3339), until the
    /// member is restored or removed: the grace period of `sync.remove_revoked_after_days`
    /// counts from it. Kept by `clear-cache`; without it the clock starts again, never earlier.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub revoked_at: BTreeMap<String, String>,
}

impl ScopeKept {
    /// [`ScopeKept::revoked_at`] as times (an unreadable one is taken as now: the grace period
    /// starts again rather than end early).
    pub fn revoke_times(&self) -> BTreeMap<String, chrono::DateTime<chrono::Utc>> {
        let now = chrono::Utc::now();
        self.revoked_at
            .iter()
            .map(|(ext, t)| {
                let t = chrono::DateTime::parse_from_rfc3339(t)
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .unwrap_or(now);
                (ext.clone(), t)
            })
            .collect()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Kept {
    scopes: BTreeMap<String, ScopeKept>,
}

fn path(dir: &Path) -> PathBuf {
    dir.join(KEPT_FILE)
}

/// Reads the file (missing: nothing kept; unreadable: logged, nothing kept).
fn read(dir: &Path) -> Kept {
    let p = path(dir);
    match std::fs::read(&p) {
        Ok(raw) => serde_json::from_slice(&raw).unwrap_or_else(|e| {
            tracing::warn!("{} is unreadable ({e}); what it kept is lost", p.display());
            Kept::default()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Kept::default(),
        Err(e) => {
            tracing::warn!("{} cannot be read ({e})", p.display());
            Kept::default()
        }
    }
}

/// What is kept for `scope`.
pub fn load(dir: &Path, scope: &str) -> ScopeKept {
    read(dir).scopes.remove(scope).unwrap_or_default()
}

/// The scopes other than `scope` that keep pending email changes, with how many.
pub fn pins_elsewhere(dir: &Path, scope: &str) -> Vec<(String, usize)> {
    read(dir)
        .scopes
        .into_iter()
        .filter(|(s, k)| s != scope && !k.email_pins.is_empty())
        .map(|(s, k)| (s, k.email_pins.len()))
        .collect()
}

/// Changes what is kept for `scope` and writes the file (0600) when it changed.
pub fn update(dir: &Path, scope: &str, f: impl FnOnce(&mut ScopeKept)) -> anyhow::Result<()> {
    let mut all = read(dir);
    let entry = all.scopes.entry(scope.to_string()).or_default();
    let before = entry.clone();
    f(entry);
    if *entry == before {
        return Ok(());
    }
    if *entry == ScopeKept::default() {
        all.scopes.remove(scope);
    }
    let p = path(dir);
    let write = || -> anyhow::Result<()> {
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(&serde_json::to_vec_pretty(&all)?)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&p)?;
        crate::datadir::make_private(&p)?;
        Ok(())
    };
    write().with_context(|| format!("writing {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scope_keeps_its_own_and_an_unreadable_file_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path(), "a"), ScopeKept::default());
        update(dir.path(), "a", |k| {
            k.email_pins.insert("e1".into(), "old@x.com".into());
        })
        .unwrap();
        update(dir.path(), "b", |k| {
            k.group_sizes.insert("g".into(), 300);
        })
        .unwrap();
        assert_eq!(load(dir.path(), "a").email_pins["e1"], "old@x.com");
        assert_eq!(load(dir.path(), "b").group_sizes["g"], 300);
        assert_eq!(pins_elsewhere(dir.path(), "b"), [("a".to_string(), 1)]);
        update(dir.path(), "a", |k| k.email_pins.clear()).unwrap();
        assert!(pins_elsewhere(dir.path(), "b").is_empty());
        std::fs::write(dir.path().join(KEPT_FILE), "{not json").unwrap();
        assert_eq!(load(dir.path(), "b"), ScopeKept::default());
    }
}
