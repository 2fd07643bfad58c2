//! Each directory entry's immutable id (LDAP `entryUUID`, `nsUniqueId`, `ipaUniqueID`) beside
//! the externalId it had at the last sync that completed, per cache scope: a DN that moved or
//! was renamed is found again by it (see [`crate::engine::lifecycle::pair_renames`]). Written
//! only after a sync completed, only the rows that changed; `clear-cache` keeps them (they are
//! the directory's, not what the server confirmed).

use std::collections::HashMap;

use anyhow::Context;
use rusqlite::params;

use super::Store;

impl Store {
    /// The immutable ids of the current scope: immutable id → externalId.
    pub fn load_identities(&self) -> anyhow::Result<HashMap<String, String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT immutable_id, external_id FROM identities WHERE scope = ?1")?;
        let rows = stmt.query_map([&self.scope], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<HashMap<_, _>, _>>()
            .context("reading the directory's immutable ids")
    }

    /// Whether the current scope has any immutable id recorded.
    pub fn has_identities(&self) -> anyhow::Result<bool> {
        self.conn
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM identities WHERE scope = ?1)",
                [&self.scope],
                |r| r.get(0),
            )
            .context("reading the directory's immutable ids")
    }

    /// Records each (immutable id, externalId) pair where it changed (`known`: what
    /// [`Store::load_identities`] returned). Returns how many rows were written.
    pub fn save_identities<'u>(
        &self,
        pairs: impl Iterator<Item = (&'u str, &'u str)>,
        known: &HashMap<String, String>,
    ) -> anyhow::Result<usize> {
        let changed: Vec<(&str, &str)> = pairs
            .filter(|(id, ext)| known.get(*id).map(String::as_str) != Some(*ext))
            .collect();
        if changed.is_empty() {
            return Ok(0);
        }
        let scope = self.scope.clone();
        let tx = self.conn.unchecked_transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO identities(scope, immutable_id, external_id) VALUES (?1, ?2, ?3)
                 ON CONFLICT(scope, immutable_id) DO UPDATE SET external_id = excluded.external_id",
            )?;
            for (id, ext) in &changed {
                stmt.execute(params![scope, id, ext])?;
            }
        }
        tx.commit()
            .context("recording the directory's immutable ids")?;
        Ok(changed.len())
    }
}

impl Store {
    /// A rename the server confirmed: the cache's row and the immutable id follow the member
    /// from `old` to `new` (its externalIds).
    pub fn rename_member(&self, old: &str, new: &str, email: &str) -> anyhow::Result<()> {
        let now = chrono::Utc::now().to_rfc3339();
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "DELETE FROM members WHERE scope = ?1 AND external_id = ?2",
            params![self.scope, old],
        )?;
        tx.execute(
            "INSERT INTO members(scope, external_id, email, synced_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(scope, external_id) DO UPDATE SET email = excluded.email,
               synced_at = excluded.synced_at",
            params![self.scope, new, email, now],
        )?;
        tx.execute(
            "UPDATE identities SET external_id = ?3 WHERE scope = ?1 AND external_id = ?2",
            params![self.scope, old, new],
        )?;
        tx.execute(
            "DELETE FROM meta WHERE key = ?1",
            [format!("cache_digest:{}", self.scope)],
        )?;
        tx.commit().context("recording a rename in the sync cache")
    }

    /// A member the server says is gone (404): it leaves the cache.
    pub fn forget_member(&self, external_id: &str) -> anyhow::Result<()> {
        self.conn
            .execute(
                "DELETE FROM members WHERE scope = ?1 AND external_id = ?2",
                params![self.scope, external_id],
            )
            .context("recording a member gone from the organization in the sync cache")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::NormUser;

    fn user(ext: &str, id: Option<&str>) -> NormUser {
        NormUser {
            reference_id: ext.into(),
            external_id: ext.into(),
            email: Some("a@x.com".into()),
            disabled: false,
            deleted: false,
            unreadable: None,
            immutable_id: id.map(str::to_string),
        }
    }

    #[test]
    fn only_changed_ids_are_written_and_a_move_replaces_the_old_dn() {
        let mut s = Store::open_in_memory().unwrap();
        s.set_scope("x");
        s.rename_member("nobody", "cn=z", "z@x.com").unwrap();
        s.set_scope("x");
        let users = [user("cn=a,ou=1", Some("entryUUID:1")), user("cn=b", None)];
        let pairs = |us: &'static [NormUser]| {
            us.iter()
                .filter_map(|u| Some((u.immutable_id.as_deref()?, &*u.external_id)))
        };
        let users: &'static [NormUser] = Box::leak(Box::new(users));
        assert_eq!(s.save_identities(pairs(users), &HashMap::new()).unwrap(), 1);
        let known = s.load_identities().unwrap();
        assert!(s.has_identities().unwrap());
        assert_eq!(known["entryUUID:1"], "cn=a,ou=1");
        assert_eq!(s.save_identities(pairs(users), &known).unwrap(), 0);
        let moved: &'static [NormUser] =
            Box::leak(Box::new([user("cn=a,ou=2", Some("entryUUID:1"))]));
        assert_eq!(s.save_identities(pairs(moved), &known).unwrap(), 1);
        assert_eq!(s.load_identities().unwrap()["entryUUID:1"], "cn=a,ou=2");
        s.set_scope("y");
        assert!(s.load_identities().unwrap().is_empty());
        assert!(!s.has_identities().unwrap());
    }
}
