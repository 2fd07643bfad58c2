//! The sync cache: members and groups as the server last confirmed them. Written one batch at a
//! time, in one transaction each, only after the server answered 200.

use anyhow::Context;
use rusqlite::params;

use super::Store;
use std::collections::HashSet;

use crate::engine::{Cache, CachedGroup, CachedMember, GroupChange, Id, MemberChange};

impl Store {
    /// Loads the whole cache.
    pub fn load_cache(&self) -> anyhow::Result<Cache> {
        let mut cache = Cache::default();
        let mut st = self
            .conn
            .prepare("SELECT external_id, email FROM members")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (id, email) = row?;
            cache.members.insert(id, CachedMember { email });
        }
        let mut st = self
            .conn
            .prepare("SELECT external_id, name, fingerprint, member_count, members FROM groups")?;
        // one shared copy of each id across all group lists
        let mut interner: HashSet<Id> = HashSet::new();
        let mut intern = |ids: Vec<String>| -> Vec<Id> {
            ids.into_iter()
                .map(|id| match interner.get(id.as_str()) {
                    Some(x) => Id::clone(x),
                    None => {
                        let x: Id = Id::from(id);
                        interner.insert(Id::clone(&x));
                        x
                    }
                })
                .collect()
        };
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let id: String = r.get(0)?;
            let members: Option<String> = r.get(4)?;
            let list = members.as_deref().and_then(|m| {
                serde_json::from_str::<Vec<String>>(m)
                    .inspect_err(|e| {
                        tracing::warn!(
                            "sync cache: the member list of group `{id}` is unreadable ({e}); \
                             its fingerprint decides whether it changed"
                        )
                    })
                    .ok()
            });
            let g = CachedGroup {
                name: r.get(1)?,
                fingerprint: r.get(2)?,
                member_count: r.get::<_, i64>(3)? as usize,
                members: list.map(&mut intern),
            };
            cache.groups.insert(id, g);
        }
        Ok(cache)
    }

    /// Records a confirmed batch: removed members leave the cache, the others are upserted.
    /// With `replace_members` (a confirmed `overwriteExisting` push) every member not in the
    /// batch is dropped too, as the server removed them.
    pub fn commit_batch(
        &mut self,
        members: &[MemberChange],
        groups: &[GroupChange],
        replace_members: bool,
    ) -> anyhow::Result<()> {
        let now = chrono::Utc::now().to_rfc3339();
        let tx = self
            .conn
            .transaction()
            .context("starting a cache transaction")?;
        if replace_members {
            tx.execute("DELETE FROM members", [])?;
        }
        {
            let mut upsert = tx.prepare(
                "INSERT INTO members(external_id, email, synced_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(external_id) DO UPDATE SET email = excluded.email, synced_at = excluded.synced_at",
            )?;
            let mut delete = tx.prepare("DELETE FROM members WHERE external_id = ?1")?;
            for m in members {
                if m.is_removal() {
                    delete.execute([&m.external_id])?;
                } else {
                    upsert.execute(params![m.external_id, m.email, now])?;
                }
            }
            let mut gup = tx.prepare(
                "INSERT INTO groups(external_id, name, fingerprint, member_count, synced_at, members)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(external_id) DO UPDATE SET name = excluded.name,
                   fingerprint = excluded.fingerprint, member_count = excluded.member_count,
                   synced_at = excluded.synced_at, members = excluded.members",
            )?;
            for g in groups {
                let members = serde_json::to_string(&g.members)?;
                gup.execute(params![
                    g.external_id,
                    g.name,
                    g.fingerprint,
                    g.members.len() as i64,
                    now,
                    members
                ])?;
            }
        }
        tx.commit().context("committing a cache transaction")?;
        Ok(())
    }

    /// Forgets groups the directory no longer returns.
    pub fn drop_groups(&mut self, ids: &[String]) -> anyhow::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut st = tx.prepare("DELETE FROM groups WHERE external_id = ?1")?;
            for id in ids {
                st.execute([id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Empties the cache and the last-sync times: the next sync is a full push.
    pub fn clear_cache(&mut self) -> anyhow::Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute_batch(
            "DELETE FROM members; DELETE FROM groups;
             DELETE FROM meta WHERE key IN ('last_user_sync', 'last_group_sync', 'cache_scope');",
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Number of cached members and groups.
    pub fn cache_counts(&self) -> anyhow::Result<(usize, usize)> {
        let m: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM members", [], |r| r.get(0))?;
        let g: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM groups", [], |r| r.get(0))?;
        Ok((m as usize, g as usize))
    }

    /// The cache belongs to one server and organization. When `scope` differs from the one the
    /// cache was written for, the cache is cleared (it describes another organization).
    pub fn ensure_cache_scope(&mut self, scope: &str) -> anyhow::Result<bool> {
        match self.meta_get("cache_scope")? {
            Some(s) if s == scope => Ok(false),
            None => {
                let (m, g) = self.cache_counts()?;
                if m + g > 0 {
                    self.clear_cache()?;
                }
                self.meta_set("cache_scope", Some(scope))?;
                Ok(m + g > 0)
            }
            Some(_) => {
                self.clear_cache()?;
                self.meta_set("cache_scope", Some(scope))?;
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::diff::{GroupAction, MemberAction, RemovalReason};

    fn m(id: &str, action: MemberAction) -> MemberChange {
        MemberChange {
            external_id: id.into(),
            email: format!("{id}@x.com"),
            action,
            previous_email: None,
        }
    }

    #[test]
    fn batches_commit_and_removals_delete() {
        let mut s = Store::open_in_memory().unwrap();
        s.commit_batch(
            &[m("a", MemberAction::Invite), m("b", MemberAction::Invite)],
            &[GroupChange {
                external_id: "g".into(),
                name: "G".into(),
                members: vec!["a".into()],
                fingerprint: "f1".into(),
                action: GroupAction::Create,
                previous_member_count: None,
            }],
            false,
        )
        .unwrap();
        s.commit_batch(
            &[m("b", MemberAction::Remove(RemovalReason::Deleted))],
            &[],
            false,
        )
        .unwrap();
        let c = s.load_cache().unwrap();
        assert_eq!(c.members.len(), 1);
        assert!(c.members.contains_key("a"));
        assert_eq!(c.groups["g"].fingerprint, "f1");
        assert_eq!(c.groups["g"].member_count, 1);
        s.commit_batch(&[m("c", MemberAction::Resend)], &[], true)
            .unwrap();
        let c = s.load_cache().unwrap();
        assert_eq!(c.members.keys().collect::<Vec<_>>(), vec!["c"]);
    }

    #[test]
    fn scope_change_clears_the_cache() {
        let mut s = Store::open_in_memory().unwrap();
        assert!(!s.ensure_cache_scope("api|org1").unwrap());
        s.commit_batch(&[m("a", MemberAction::Invite)], &[], false)
            .unwrap();
        s.set_last_sync(crate::store::SyncKind::Users, "t").unwrap();
        assert!(!s.ensure_cache_scope("api|org1").unwrap());
        assert_eq!(s.cache_counts().unwrap(), (1, 0));
        assert!(s.ensure_cache_scope("api|org2").unwrap());
        assert_eq!(s.cache_counts().unwrap(), (0, 0));
        assert_eq!(s.last_sync(crate::store::SyncKind::Users).unwrap(), None);
    }
}
