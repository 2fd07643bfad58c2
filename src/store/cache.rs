//! The sync cache: members and groups as the server last confirmed them, one cache per scope
//! (API URL and organization). Written one batch at a time, in one transaction each, only after
//! the server answered 200, or replaced as a whole by what the organization shows when it can be
//! read.

use anyhow::Context;
use rusqlite::params;

use super::Store;
use std::collections::{HashMap, HashSet};

use crate::engine::{
    Cache, CachedGroup, CachedMember, GroupChange, GroupRows, Id, MemberChange, MemberRows,
};

const MEMBER_UPSERT: &str =
    "INSERT INTO members(scope, external_id, email, synced_at) VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT(scope, external_id) DO UPDATE SET email = excluded.email,
       synced_at = excluded.synced_at";
const MEMBER_DELETE: &str = "DELETE FROM members WHERE scope = ?1 AND external_id = ?2";
/// A group row; `?8` keeps the mark of a group that left the directory (1: a row the
/// organization shows) or clears it (0: a group the directory has, sent and confirmed).
const GROUP_UPSERT: &str =
    "INSERT INTO groups(scope, external_id, name, fingerprint, member_count, synced_at, members)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
     ON CONFLICT(scope, external_id) DO UPDATE SET name = excluded.name,
       fingerprint = excluded.fingerprint, member_count = excluded.member_count,
       synced_at = excluded.synced_at, members = excluded.members,
       left_directory = left_directory AND ?8";
const GROUP_DELETE: &str = "DELETE FROM groups WHERE scope = ?1 AND external_id = ?2";
const GROUP_LEFT: &str =
    "UPDATE groups SET left_directory = 1 WHERE scope = ?1 AND external_id = ?2";

/// A cached group's member list and when it was last read from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupList {
    /// References ([`crate::engine::MemberRef`]: externalIds, or the email of a member without one; one shared
    /// copy of each across the groups).
    pub members: Vec<Id>,
    /// RFC 3339.
    pub read_at: Option<String>,
}

/// The stored form of each row's member list ([`encode_members`]); many lists (a sync that
/// changed most groups) are encoded on two threads.
fn encode_lists(rows: &[(String, CachedGroup)]) -> Vec<Option<Vec<u8>>> {
    let encode = |rows: &[(String, CachedGroup)]| -> Vec<Option<Vec<u8>>> {
        rows.iter()
            .map(|(_, c)| c.members.as_deref().map(encode_members))
            .collect()
    };
    let refs: usize = rows.iter().map(|(_, c)| c.member_count).sum();
    if refs < 50_000 {
        return encode(rows);
    }
    let (first, second) = rows.split_at(rows.len() / 2);
    std::thread::scope(|s| {
        let second = s.spawn(|| encode(second));
        let mut lists = encode(first);
        lists.extend(crate::joined(second));
        lists
    })
}

/// A group's member list as the cache stores it (a BLOB): an LZ4 block, its size first, of each
/// externalId's byte length (LEB128) and bytes. Sorted DNs share most of their text, so a list
/// takes a fraction of its JSON, and a sync that changes many groups writes that much less.
/// Lists that earlier versions stored as JSON text are still read ([`decode_members`]).
pub(crate) fn encode_members<S: AsRef<str>>(ids: &[S]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(ids.iter().map(|i| i.as_ref().len() + 2).sum());
    for id in ids {
        let id = id.as_ref().as_bytes();
        let mut n = id.len();
        while n >= 0x80 {
            raw.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        raw.push(n as u8);
        raw.extend_from_slice(id);
    }
    lz4_flex::compress_prepend_size(&raw)
}

/// A stored member list: a BLOB of [`encode_members`], JSON text (earlier versions), or NULL
/// (none kept).
pub(crate) fn decode_members(
    value: rusqlite::types::ValueRef,
) -> Result<Option<Vec<String>>, String> {
    use rusqlite::types::ValueRef;
    let blob = match value {
        ValueRef::Null => return Ok(None),
        ValueRef::Text(json) => {
            return serde_json::from_slice::<Vec<String>>(json)
                .map(Some)
                .map_err(|e| e.to_string());
        }
        ValueRef::Blob(b) => b,
        other => {
            return Err(format!(
                "a {:?} where a list was expected",
                other.data_type()
            ));
        }
    };
    // LZ4 expands at most 255 times: a larger size is damage, not a list
    let size = blob
        .get(..4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
        .ok_or("a truncated list")?;
    if size > blob.len().saturating_mul(255) {
        return Err("a damaged list (its size is impossible)".into());
    }
    let raw = lz4_flex::decompress_size_prepended(blob).map_err(|e| e.to_string())?;
    let mut ids = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let (mut n, mut shift) = (0usize, 0u32);
        loop {
            let b = *raw.get(at).ok_or("a truncated list")?;
            at += 1;
            n |= usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 28 {
                return Err("a damaged list (a length too long)".into());
            }
        }
        let id = raw
            .get(at..at.saturating_add(n))
            .ok_or("a truncated list")?;
        ids.push(String::from_utf8(id.to_vec()).map_err(|e| e.to_string())?);
        at += n;
    }
    Ok(Some(ids))
}

/// The scope whose cache was last written is the one shown when no other is chosen.
fn remember_scope(tx: &rusqlite::Transaction, scope: &str) -> rusqlite::Result<usize> {
    tx.execute(
        "INSERT INTO meta(key, value) VALUES ('cache_scope', ?1)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [scope],
    )
}

/// The meta key saying the scope's cache holds every member ([`Cache::complete`]).
fn complete_key(scope: &str) -> String {
    format!("cache_complete:{scope}")
}

/// The meta key of the scope's pending email changes ([`Cache::email_pins`]).
fn pins_key(scope: &str) -> String {
    format!("email_pins:{scope}")
}

impl Store {
    /// Loads the whole cache of the current scope.
    pub fn load_cache(&self) -> anyhow::Result<Cache> {
        let mut cache = Cache::default();
        for (id, email) in self.cached_members()? {
            cache.members.insert(id, CachedMember { email });
        }
        let mut st = self.conn.prepare(
            "SELECT external_id, name, fingerprint, member_count, members, synced_at,
                    left_directory
             FROM groups WHERE scope = ?1",
        )?;
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
        let mut rows = st.query([&self.scope])?;
        while let Some(r) = rows.next()? {
            let id: String = r.get(0)?;
            let list = decode_members(r.get_ref(4)?).unwrap_or_else(|e| {
                tracing::warn!(
                    "sync cache: the member list of group `{id}` is unreadable ({e}); its \
                     fingerprint decides whether it changed"
                );
                None
            });
            let g = CachedGroup {
                name: r.get(1)?,
                fingerprint: r.get(2)?,
                member_count: r.get::<_, i64>(3)? as usize,
                members: list.map(&mut intern),
                // (a time that does not parse is taken as long ago: the group is sent again)
                synced_at: Some(
                    chrono::DateTime::parse_from_rfc3339(&r.get::<_, String>(5)?)
                        .map_or(chrono::DateTime::<chrono::Utc>::MIN_UTC, |t| {
                            t.with_timezone(&chrono::Utc)
                        }),
                ),
                left_directory: r.get(6)?,
            };
            cache.groups.insert(id, g);
        }
        cache.complete = self.meta_get(&complete_key(&self.scope))?.is_some();
        cache.email_pins = self.email_pins()?.into_iter().collect();
        Ok(cache)
    }

    /// The pending email changes of the current scope (externalId → the email the server last
    /// confirmed), kept by [`Store::clear_cache`].
    pub fn email_pins(&self) -> anyhow::Result<HashMap<String, String>> {
        let Some(raw) = self.meta_get(&pins_key(&self.scope))? else {
            // a database moved aside when damaged took its record: the kept file has them
            return Ok(self.kept().email_pins.into_iter().collect());
        };
        Ok(serde_json::from_str(&raw).unwrap_or_else(|e| {
            tracing::warn!("sync cache: the pending email changes are unreadable ({e}); dropped");
            HashMap::new()
        }))
    }

    /// Records the pending email changes of a plan made against a server that cannot be read
    /// back (only they are kept; none clears the record).
    pub fn set_email_pins(&self, changes: &[crate::engine::EmailChange]) -> anyhow::Result<()> {
        let pins: std::collections::BTreeMap<&str, &str> = changes
            .iter()
            .map(|c| (c.external_id.as_str(), c.baseline_email.as_str()))
            .collect();
        let value = (!pins.is_empty())
            .then(|| serde_json::to_string(&pins))
            .transpose()
            .context("encoding the pending email changes")?;
        // kept outside the database too, where a damaged database cannot take them
        self.update_kept(|k| {
            k.email_pins = pins
                .iter()
                .map(|(e, m)| (e.to_string(), m.to_string()))
                .collect();
        })
        .context("keeping the pending email changes")?;
        self.meta_set(&pins_key(&self.scope), value.as_deref())
    }

    /// What the data directory keeps for the current scope outside the database.
    pub fn kept(&self) -> super::kept::ScopeKept {
        match &self.dir {
            Some(dir) => super::kept::load(dir, &self.scope),
            None => Default::default(),
        }
    }

    /// Changes what the data directory keeps for the current scope outside the database.
    pub fn update_kept(&self, f: impl FnOnce(&mut super::kept::ScopeKept)) -> anyhow::Result<()> {
        match &self.dir {
            Some(dir) => super::kept::update(dir, &self.scope, f),
            None => Ok(()),
        }
    }

    /// Each cached group's fingerprint (what the connector last sent), by externalId.
    /// Each cached group's member list (references, as [`Store::load_cache`] reads them) and
    /// when its members were last read from the server (`None`: never, or sent since and not
    /// read back). A sync takes the members of the groups it does not read from here.
    pub fn load_group_lists(&self) -> anyhow::Result<HashMap<String, GroupList>> {
        let mut st = self
            .conn
            .prepare("SELECT external_id, members, read_at FROM groups WHERE scope = ?1")?;
        let mut rows = st.query([&self.scope])?;
        let mut out = HashMap::new();
        let mut interner: HashSet<Id> = HashSet::new();
        while let Some(r) = rows.next()? {
            let id: String = r.get(0)?;
            // a row without a readable list is read from the server
            if let Ok(Some(members)) = decode_members(r.get_ref(1)?) {
                let members = members
                    .into_iter()
                    .map(|m| match interner.get(m.as_str()) {
                        Some(x) => Id::clone(x),
                        None => {
                            let x = Id::from(m);
                            interner.insert(Id::clone(&x));
                            x
                        }
                    })
                    .collect();
                out.insert(
                    id,
                    GroupList {
                        members,
                        read_at: r.get(2)?,
                    },
                );
            }
        }
        Ok(out)
    }

    /// Records when these groups' members were read from the server (`None`: they were sent
    /// and not read back, so the reconcile reads them first).
    pub fn set_groups_read_at(
        &mut self,
        groups: &[&str],
        when: Option<&str>,
    ) -> anyhow::Result<()> {
        if groups.is_empty() {
            return Ok(());
        }
        let scope = self.scope.clone();
        let tx = self.conn.transaction()?;
        {
            let mut st =
                tx.prepare("UPDATE groups SET read_at = ?3 WHERE scope = ?1 AND external_id = ?2")?;
            for g in groups {
                st.execute(params![scope, g, when])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn load_group_fingerprints(&self) -> anyhow::Result<HashMap<String, String>> {
        let mut st = self
            .conn
            .prepare("SELECT external_id, fingerprint FROM groups WHERE scope = ?1")?;
        let rows = st.query_map([&self.scope], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
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
        let scope = self.scope.clone();
        let tx = self
            .conn
            .transaction()
            .context("starting a cache transaction")?;
        if replace_members {
            tx.execute("DELETE FROM members WHERE scope = ?1", [&scope])?;
            // the server removed every member not listed: the cache now holds all of them
            tx.execute(
                "INSERT INTO meta(key, value) VALUES (?1, 'true')
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [complete_key(&scope)],
            )?;
        }
        {
            let mut upsert = tx.prepare(MEMBER_UPSERT)?;
            let mut delete = tx.prepare(MEMBER_DELETE)?;
            for m in members {
                if m.is_removal() {
                    delete.execute(params![scope, m.external_id])?;
                } else {
                    // a rename: the old externalId's row goes (a server that matches members
                    // by email would take it for a leaver and revoke the member)
                    if let Some(old) = &m.previous_external_id {
                        delete.execute(params![scope, old])?;
                    }
                    upsert.execute(params![scope, m.external_id, m.email, now])?;
                }
            }
            let mut gup = tx.prepare(GROUP_UPSERT)?;
            for g in groups {
                let members = encode_members(&g.members);
                gup.execute(params![
                    scope,
                    g.external_id,
                    g.name,
                    g.fingerprint,
                    g.members.len() as i64,
                    now,
                    members,
                    false // sent: the directory has it
                ])?;
            }
        }
        tx.execute(
            "DELETE FROM meta WHERE key = ?1",
            [format!("cache_digest:{scope}")],
        )?;
        remember_scope(&tx, &scope)?;
        tx.commit().context("committing a cache transaction")?;
        // a member removed after its grace period has no revoke time to keep any more
        if members.iter().any(MemberChange::is_removal)
            && let Err(e) = self.update_kept(|k| {
                if k.revoked_at.is_empty() {
                    return;
                }
                for m in members.iter().filter(|m| m.is_removal()) {
                    k.revoked_at.remove(&m.external_id);
                }
            })
        {
            tracing::warn!("forgetting the revoke times of removed members: {e:#}");
        }
        // each group's confirmed size, kept where `clear-cache` does not take it
        if !groups.is_empty()
            && let Err(e) = self.update_kept(|k| {
                for g in groups {
                    k.group_sizes.insert(g.external_id.clone(), g.members.len());
                }
            })
        {
            tracing::warn!("keeping the groups' confirmed sizes: {e:#}");
        }
        Ok(())
    }

    /// The digest of the organization the current scope's cache was last made to hold
    /// ([`Store::replace_cache`]); gone once a batch writes to it.
    pub fn cache_digest(&self) -> anyhow::Result<Option<String>> {
        self.meta_get(&format!("cache_digest:{}", self.scope))
    }

    /// Makes the current scope's cache hold `cache` (what the organization shows), writing only
    /// the rows that differ; nothing at all when `digest` says the cache already holds it.
    /// Returns whether it wrote.
    /// `build` is called only when the cache does not hold it yet.
    pub fn replace_cache(
        &mut self,
        digest: &str,
        build: impl FnOnce() -> Cache,
    ) -> anyhow::Result<bool> {
        if self.cache_digest()?.as_deref() == Some(digest) {
            return Ok(false);
        }
        let cache = build();
        let mut held: HashMap<String, String> = {
            let mut st = self
                .conn
                .prepare("SELECT external_id, email FROM members WHERE scope = ?1")?;
            let rows = st.query_map([&self.scope], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<_>>()
                .context("reading the sync cache's members")?
        };
        let mut rows = MemberRows::default();
        for (id, c) in cache.members {
            if held.remove(&id).as_deref() != Some(c.email.as_str()) {
                rows.upserts.push((id, c.email));
            }
        }
        rows.deletes = held.into_keys().collect();
        let mut held_groups = self
            .load_group_fingerprints()
            .context("reading the sync cache's groups")?;
        let mut groups = GroupRows::default();
        for (id, c) in cache.groups {
            if held_groups.remove(&id).as_deref() != Some(c.fingerprint.as_str()) {
                groups.upserts.push((id, c));
            }
        }
        groups.deletes = held_groups.into_keys().collect();
        self.write_cache_rows(digest, &rows, &groups)?;
        Ok(true)
    }

    /// Writes member and group rows already known to differ (see
    /// [`crate::engine::Organization::member_row_changes`] and
    /// [`crate::engine::org::GroupRefs::row_changes`]), then records `digest` as the
    /// organization the cache now holds.
    pub fn write_cache_rows(
        &mut self,
        digest: &str,
        members: &MemberRows,
        groups: &GroupRows,
    ) -> anyhow::Result<()> {
        let scope = self.scope.clone();
        let now = chrono::Utc::now().to_rfc3339();
        let lists = encode_lists(&groups.upserts);
        let tx = self
            .conn
            .transaction()
            .context("starting a cache transaction")?;
        {
            let mut upsert = tx.prepare(MEMBER_UPSERT)?;
            for (id, email) in &members.upserts {
                upsert.execute(params![scope, id, email, now])?;
            }
            let mut delete = tx.prepare(MEMBER_DELETE)?;
            for id in &members.deletes {
                delete.execute(params![scope, id])?;
            }
            let mut gup = tx.prepare(GROUP_UPSERT)?;
            for ((id, c), list) in groups.upserts.iter().zip(lists) {
                gup.execute(params![
                    scope,
                    id,
                    c.name,
                    c.fingerprint,
                    c.member_count as i64,
                    now,
                    list,
                    true // as the organization shows it: a mark is kept
                ])?;
            }
            let mut gdel = tx.prepare(GROUP_DELETE)?;
            for id in &groups.deletes {
                gdel.execute(params![scope, id])?;
            }
        }
        tx.execute(
            "INSERT INTO meta(key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![format!("cache_digest:{scope}"), digest],
        )?;
        // what the organization shows: every member
        tx.execute(
            "INSERT INTO meta(key, value) VALUES (?1, 'true')
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [complete_key(&scope)],
        )?;
        remember_scope(&tx, &scope)?;
        tx.commit().context("committing a cache transaction")?;
        Ok(())
    }

    /// Marks groups the directory no longer returns ([`Plan::stale_groups`]). They stay in the
    /// cache as the organization keeps them (the import cannot delete a group), so a group that
    /// comes back is compared with what it has there.
    ///
    /// [`Plan::stale_groups`]: crate::engine::Plan::stale_groups
    pub fn mark_groups_left(&mut self, ids: &[String]) -> anyhow::Result<()> {
        let scope = self.scope.clone();
        let tx = self.conn.transaction()?;
        {
            let mut st = tx.prepare(GROUP_LEFT)?;
            for id in ids {
                st.execute(params![scope, id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Empties the current scope's cache and the last-sync times: the next sync is a full push
    /// (or, where the organization can be read, starts from the organization). The pending
    /// email changes are kept unless `forget_email_changes`: on a server that matches members
    /// by email, the full push would otherwise send the new address as a second membership.
    /// Returns how many pending email changes were kept.
    pub fn clear_cache(&mut self, forget_email_changes: bool) -> anyhow::Result<usize> {
        let scope = self.scope.clone();
        let kept = if forget_email_changes {
            self.meta_set(&pins_key(&scope), None)?;
            self.update_kept(|k| k.email_pins.clear())?;
            0
        } else {
            self.email_pins()?.len()
        };
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM members WHERE scope = ?1", [&scope])?;
        tx.execute("DELETE FROM groups WHERE scope = ?1", [&scope])?;
        tx.execute(
            "DELETE FROM meta WHERE key IN ('last_user_sync', 'last_group_sync', ?1, ?2, ?3, ?4)",
            [
                format!("cache_digest:{scope}"),
                complete_key(&scope),
                // a cleared cache says its departures warning again
                format!("departures_said:{scope}"),
                // the fast lane's change feed starts again (its key: sync::watch::cursor_key)
                format!("feed_cursor:{scope}"),
            ],
        )?;
        tx.commit()?;
        Ok(kept)
    }

    /// The cached members of the current scope: externalId → email.
    pub fn cached_members(&self) -> anyhow::Result<HashMap<String, String>> {
        let mut st = self
            .conn
            .prepare("SELECT external_id, email FROM members WHERE scope = ?1")?;
        let rows = st.query_map([&self.scope], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Number of cached members and groups of the current scope.
    pub fn cache_counts(&self) -> anyhow::Result<(usize, usize)> {
        let m: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM members WHERE scope = ?1",
            [&self.scope],
            |r| r.get(0),
        )?;
        let g: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM groups WHERE scope = ?1",
            [&self.scope],
            |r| r.get(0),
        )?;
        Ok((m as usize, g as usize))
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
            member_id: None,
            previous_external_id: None,
        }
    }

    /// Group `g` (`G`), created with member `a`.
    fn group_g() -> GroupChange {
        GroupChange {
            external_id: "g".into(),
            name: "G".into(),
            members: vec!["a".into()],
            fingerprint: "f1".into(),
            action: GroupAction::Create,
            previous_member_count: None,
            previous_name: None,
            removed_members: 0,
            repairs_drift: false,
        }
    }

    #[test]
    fn batches_commit_and_removals_delete() {
        let mut s = Store::open_in_memory().unwrap();
        s.commit_batch(
            &[m("a", MemberAction::Invite), m("b", MemberAction::Invite)],
            &[group_g()],
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
    fn a_group_that_left_the_directory_is_kept_marked_until_sent_again() {
        let mut s = Store::open_in_memory().unwrap();
        let g = group_g();
        s.commit_batch(
            &[m("a", MemberAction::Invite)],
            std::slice::from_ref(&g),
            false,
        )
        .unwrap();
        s.mark_groups_left(&["g".into(), "unknown".into()]).unwrap();
        let c = s.load_cache().unwrap();
        assert_eq!(c.groups.len(), 1, "kept, as the organization keeps it");
        assert!(c.groups["g"].left_directory);
        assert_eq!(c.groups["g"].members.as_deref(), Some(&["a".into()][..]));
        s.commit_batch(&[], &[g], false).unwrap();
        assert!(!s.load_cache().unwrap().groups["g"].left_directory);
    }

    #[test]
    fn each_scope_has_its_own_cache() {
        let mut s = Store::open_in_memory().unwrap();
        s.set_scope("api|org1");
        s.commit_batch(&[m("a", MemberAction::Invite)], &[], false)
            .unwrap();
        s.set_scope("typo|org1");
        assert_eq!(s.cache_counts().unwrap(), (0, 0));
        s.clear_cache(false).unwrap();
        s.set_scope("api|org1");
        assert_eq!(
            s.cache_counts().unwrap(),
            (1, 0),
            "another scope is never touched"
        );
    }

    /// A cache holds every member only after a confirmed `overwriteExisting` push (or as the
    /// organization shows it); `clear-cache` ends that, and keeps the pending email changes
    /// unless told to forget them.
    #[test]
    fn completeness_and_pending_email_changes_across_clear_cache() {
        let mut s = Store::open_in_memory().unwrap();
        s.set_scope("api|org1");
        s.commit_batch(&[m("a", MemberAction::Invite)], &[], false)
            .unwrap();
        assert!(
            !s.load_cache().unwrap().complete,
            "a first sync proves nothing"
        );
        s.commit_batch(&[m("a", MemberAction::Resend)], &[], true)
            .unwrap();
        assert!(s.load_cache().unwrap().complete);
        s.commit_batch(&[m("b", MemberAction::Invite)], &[], false)
            .unwrap();
        assert!(s.load_cache().unwrap().complete, "kept by later pushes");
        s.set_email_pins(&[crate::engine::EmailChange {
            external_id: "a".into(),
            baseline_email: "a@x.com".into(),
            directory_email: "a2@x.com".into(),
        }])
        .unwrap();
        assert_eq!(s.clear_cache(false).unwrap(), 1);
        let c = s.load_cache().unwrap();
        assert!(!c.complete && c.members.is_empty());
        assert_eq!(c.email_pins.get("a").map(String::as_str), Some("a@x.com"));
        assert_eq!(s.clear_cache(true).unwrap(), 0);
        assert!(s.load_cache().unwrap().email_pins.is_empty());
        // the organization's rows: every member
        assert!(s.replace_cache("d", Cache::default).unwrap());
        assert!(s.load_cache().unwrap().complete);
    }

    /// Many member references are encoded on two threads: every list still lands on its row.
    #[test]
    fn large_group_rows_are_written_each_with_its_own_list() {
        let mut s = Store::open_in_memory().unwrap();
        let mut c = Cache::default();
        for g in 0..5 {
            let members: Vec<Id> = (0..12_000)
                .map(|i| Id::from(format!("cn=u{i},ou=g{g}")))
                .collect();
            c.groups.insert(
                format!("g{g}"),
                CachedGroup {
                    name: format!("G{g}"),
                    fingerprint: format!("f{g}"),
                    member_count: members.len(),
                    members: Some(members),
                    synced_at: None,
                    left_directory: false,
                },
            );
        }
        assert!(s.replace_cache("d", || c.clone()).unwrap());
        let loaded = s.load_cache().unwrap();
        assert_eq!(loaded.groups.len(), 5);
        for (ext, g) in &c.groups {
            assert_eq!(loaded.groups[ext].members, g.members, "{ext}");
            assert_eq!(loaded.groups[ext].fingerprint, g.fingerprint, "{ext}");
        }
    }

    #[test]
    fn replace_writes_only_when_the_organization_changed() {
        let mut s = Store::open_in_memory().unwrap();
        s.set_scope("api|org1");
        let mut c = Cache::default();
        c.members.insert(
            "a".into(),
            CachedMember {
                email: "a@x.com".into(),
            },
        );
        assert!(s.replace_cache("d1", || c.clone()).unwrap());
        assert!(!s.replace_cache("d1", || c.clone()).unwrap());
        assert_eq!(s.cache_counts().unwrap(), (1, 0));
        // a confirmed batch invalidates the digest
        s.commit_batch(&[m("b", MemberAction::Invite)], &[], false)
            .unwrap();
        assert!(s.replace_cache("d1", || c.clone()).unwrap());
        assert_eq!(s.cache_counts().unwrap(), (1, 0));
        // rows that already match are not rewritten
        let at = |s: &Store| -> String {
            s.conn
                .query_row(
                    "SELECT synced_at FROM members WHERE external_id = 'a'",
                    [],
                    |r| r.get(0),
                )
                .unwrap()
        };
        s.conn
            .execute("UPDATE members SET synced_at = 'then'", [])
            .unwrap();
        c.members.insert(
            "z".into(),
            CachedMember {
                email: "z@x.com".into(),
            },
        );
        assert!(s.replace_cache("d2", || c.clone()).unwrap());
        assert_eq!(s.cache_counts().unwrap(), (2, 0));
        assert_eq!(at(&s), "then");
    }

    #[test]
    fn a_version_2_database_keeps_its_cache_under_its_scope() {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::store::db_path(dir.path());
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE members (external_id TEXT PRIMARY KEY, email TEXT NOT NULL,
                 synced_at TEXT NOT NULL);
             CREATE TABLE groups (external_id TEXT PRIMARY KEY, name TEXT NOT NULL,
                 fingerprint TEXT NOT NULL, member_count INTEGER NOT NULL, synced_at TEXT NOT NULL,
                 members TEXT);
             CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,
                 started_at TEXT NOT NULL, ended_at TEXT, outcome TEXT NOT NULL,
                 invited INTEGER NOT NULL DEFAULT 0, updated INTEGER NOT NULL DEFAULT 0,
                 removed INTEGER NOT NULL DEFAULT 0, groups_changed INTEGER NOT NULL DEFAULT 0,
                 directory_users INTEGER NOT NULL DEFAULT 0,
                 directory_groups INTEGER NOT NULL DEFAULT 0,
                 members_after INTEGER NOT NULL DEFAULT 0, requests INTEGER NOT NULL DEFAULT 0,
                 bytes_pushed INTEGER NOT NULL DEFAULT 0, error TEXT);
             INSERT INTO meta VALUES ('cache_scope', 'api|org1');
             INSERT INTO members VALUES ('a', 'a@x.com', 't');
             INSERT INTO groups VALUES ('g', 'G', 'f', 1, 't', '[\"a\"]');
             PRAGMA user_version = 2;",
        )
        .unwrap();
        drop(conn);
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.scope(), "api|org1");
        let c = s.load_cache().unwrap();
        assert_eq!(c.members["a"].email, "a@x.com");
        assert_eq!(c.groups["g"].members.as_ref().unwrap().len(), 1);
        assert!(!c.groups["g"].left_directory);
    }

    #[test]
    fn member_lists_are_stored_compressed_and_read_back() {
        use rusqlite::types::ValueRef;
        let long = "x".repeat(300); // a length of two LEB128 bytes
        let ids = vec![
            String::new(),
            "cn=Zoë,ou=People,dc=example,dc=com".to_string(),
            long,
        ];
        let blob = encode_members(&ids);
        assert_eq!(decode_members(ValueRef::Blob(&blob)), Ok(Some(ids)));
        let empty: [&str; 0] = [];
        assert_eq!(
            decode_members(ValueRef::Blob(&encode_members(&empty))),
            Ok(Some(vec![]))
        );
        // a thousand DNs take a small part of their JSON
        let dns: Vec<String> = (0..1000)
            .map(|i| format!("uid=user{i:06},ou=People,dc=example,dc=com"))
            .collect();
        let json = serde_json::to_string(&dns).unwrap();
        assert!(encode_members(&dns).len() * 3 < json.len());
        assert_eq!(
            decode_members(ValueRef::Text(json.as_bytes())),
            Ok(Some(dns))
        );
        assert_eq!(decode_members(ValueRef::Null), Ok(None));
    }

    #[test]
    fn a_damaged_member_list_is_an_error_not_a_panic() {
        use rusqlite::types::ValueRef;
        let blob = encode_members(&["cn=a,dc=x", "cn=b,dc=x"]);
        let mut damaged: Vec<Vec<u8>> = vec![
            vec![],
            vec![1, 2],
            blob[..blob.len() - 1].to_vec(),
            // a size no LZ4 block of this length can have
            [&u32::MAX.to_le_bytes()[..], &blob[4..]].concat(),
        ];
        // lengths that run past the end, and bytes that are not UTF-8
        damaged.push(lz4_flex::compress_prepend_size(&[9, b'a']));
        damaged.push(lz4_flex::compress_prepend_size(&[0xff; 8]));
        damaged.push(lz4_flex::compress_prepend_size(&[1, 0xff]));
        for d in &damaged {
            assert!(
                decode_members(ValueRef::Blob(d)).is_err(),
                "{d:?} was read as a list"
            );
        }
        assert!(decode_members(ValueRef::Integer(3)).is_err());
        assert!(decode_members(ValueRef::Text(b"not json")).is_err());
    }

    #[test]
    fn a_damaged_member_list_leaves_the_fingerprint_to_decide() {
        let mut s = Store::open_in_memory().unwrap();
        s.commit_batch(&[], &[], false).unwrap();
        s.conn
            .execute(
                "INSERT INTO groups(scope, external_id, name, fingerprint, member_count,
                 synced_at, members) VALUES (?1, 'g', 'G', 'f', 2, 't', x'00ff00ff')",
                [s.scope.clone()],
            )
            .unwrap();
        let c = s.load_cache().unwrap();
        assert_eq!(c.groups["g"].members, None);
        assert_eq!(c.groups["g"].fingerprint, "f");
    }
}
