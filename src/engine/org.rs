//! The organization as the server shows it (the public API's read side: members, groups and
//! each group's member ids), and what the engine makes of it: the baseline a plan is made
//! against, the drift report (what the organization has that the directory does not explain),
//! and the check after a push that the server applied the plan.

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use serde::Serialize;

use super::diff::{Cache, CachedGroup, CachedMember, GroupAction, Plan, group_fingerprint};
use super::model::{Id, MemberRef};
use super::normalize::Normalized;

/// From this many members, [`Organization::group_refs`] uses a second thread.
const PARALLEL_FROM: usize = 20_000;

/// A member's status (`OrganizationUserStatusType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberStatus {
    Invited,
    Accepted,
    Confirmed,
    Revoked,
    /// A code this version does not know (a newer server's).
    Other(i32),
}

impl MemberStatus {
    /// The status of the server's code.
    pub fn from_code(code: i32) -> MemberStatus {
        match code {
            0 => MemberStatus::Invited,
            1 => MemberStatus::Accepted,
            2 => MemberStatus::Confirmed,
            -1 => MemberStatus::Revoked,
            other => MemberStatus::Other(other),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            MemberStatus::Invited => "invited",
            MemberStatus::Accepted => "accepted",
            MemberStatus::Confirmed => "confirmed",
            MemberStatus::Revoked => "revoked",
            MemberStatus::Other(_) => "unknown",
        }
    }
}

/// A member's type (`OrganizationUserType`): owners are never removed by an import, and a plan
/// never removes them (see [`crate::engine::diff::OWNER_ADVICE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberType {
    Owner,
    Admin,
    User,
    Manager,
    Custom,
    /// A code this version does not know (a newer server's).
    Other(i32),
}

impl MemberType {
    /// The type of the server's code (a member listed without one is a User).
    pub fn from_code(code: i32) -> MemberType {
        match code {
            0 => MemberType::Owner,
            1 => MemberType::Admin,
            2 => MemberType::User,
            3 => MemberType::Manager,
            4 => MemberType::Custom,
            other => MemberType::Other(other),
        }
    }
}

/// One member as `GET /public/members` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrgMember {
    pub id: String,
    pub email: String,
    pub external_id: Option<String>,
    pub status: MemberStatus,
    pub kind: MemberType,
}

impl OrgMember {
    pub fn status_label(&self) -> &'static str {
        self.status.label()
    }
}

/// One group as `GET /public/groups` lists it, with `GET /public/groups/{id}/member-ids`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrgGroup {
    pub id: String,
    pub name: String,
    pub external_id: Option<String>,
    /// Member ids (the organization's ids, not externalIds).
    pub member_ids: MemberIds,
}

/// A group's member ids (the organization's ids of its members; their order does not matter).
/// A lowercase hyphenated GUID, the form of every id a Bitwarden server sends, is kept as its
/// number: 16 bytes instead of a 36-character string, and an organization's groups can name
/// hundreds of thousands of members. Any other id is kept as its string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberIds {
    guids: Vec<u128>,
    others: Vec<String>,
}

impl MemberIds {
    pub fn push(&mut self, id: &str) {
        match IdKey::of(id) {
            IdKey::Guid(g) => self.guids.push(g),
            IdKey::Other(s) => self.others.push(s.to_string()),
        }
    }

    pub fn len(&self) -> usize {
        self.guids.len() + self.others.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Each id as a key (GUIDs first).
    pub fn keys(&self) -> impl Iterator<Item = IdKey<'_>> {
        let guids = self.guids.iter().map(|&g| IdKey::Guid(g));
        guids.chain(self.others.iter().map(|s| IdKey::Other(s)))
    }

    /// Puts the ids in one order whatever order they came in (the server's, or the sync cache's
    /// references): the organization's digest then depends on the members only.
    pub fn sort(&mut self) {
        self.guids.sort_unstable();
        self.others.sort_unstable();
    }

    /// Keeps the ids for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(IdKey) -> bool) {
        self.guids.retain(|&g| keep(IdKey::Guid(g)));
        self.others.retain(|s| keep(IdKey::Other(s)));
    }
}

impl<S: AsRef<str>> FromIterator<S> for MemberIds {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> MemberIds {
        let mut ids = MemberIds::default();
        for id in iter {
            ids.push(id.as_ref());
        }
        ids
    }
}

/// A list of strings, as `GET /public/groups/{id}/member-ids` sends it: each id is classified
/// as it is parsed (no list of strings is built first).
impl<'de> serde::Deserialize<'de> for MemberIds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<MemberIds, D::Error> {
        use serde::de::{DeserializeSeed, SeqAccess, Visitor};
        use std::fmt;
        struct List;
        struct Into<'a>(&'a mut MemberIds);
        impl<'de> Visitor<'de> for List {
            type Value = MemberIds;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of member ids")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MemberIds, A::Error> {
                let mut ids = MemberIds::default();
                while seq.next_element_seed(Into(&mut ids))?.is_some() {}
                Ok(ids)
            }
        }
        impl<'de> DeserializeSeed<'de> for Into<'_> {
            type Value = ();
            fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                d.deserialize_str(self)
            }
        }
        impl<'de> Visitor<'de> for Into<'_> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member id")
            }
            fn visit_str<E: serde::de::Error>(self, id: &str) -> Result<(), E> {
                self.0.push(id);
                Ok(())
            }
        }
        d.deserialize_seq(List)
    }
}

/// The ids as strings, each as the server wrote it.
impl Serialize for MemberIds {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.keys().map(|k| match k {
            IdKey::Guid(g) => uuid::Uuid::from_u128(g).hyphenated().to_string(),
            IdKey::Other(o) => o.to_string(),
        }))
    }
}

/// Everything the read side returned.
#[derive(Debug, Clone, Default)]
pub struct Organization {
    pub members: Vec<OrgMember>,
    pub groups: Vec<OrgGroup>,
}

/// A member id as a map key. Bitwarden's member ids are GUIDs, written lowercase and
/// hyphenated; such an id is kept as its number, which hashes and compares without reading the
/// string (the organization's maps hold 100,000 members and see every group reference). Any
/// other id keeps its string. Two ids are equal keys exactly when their strings are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdKey<'a> {
    Guid(u128),
    Other(&'a str),
}

impl<'a> IdKey<'a> {
    pub fn of(id: &'a str) -> IdKey<'a> {
        Self::guid(id).map_or(IdKey::Other(id), IdKey::Guid)
    }

    /// The number of a lowercase hyphenated GUID (`8-4-4-4-12` hex digits), else `None`. The
    /// uuid crate also reads other spellings of one GUID (upper case, braces, no hyphens), which
    /// must stay distinct keys: only the one it writes back unchanged is a number.
    fn guid(id: &str) -> Option<u128> {
        let u = uuid::Uuid::try_parse(id).ok()?;
        let mut canonical = [0u8; uuid::fmt::Hyphenated::LENGTH];
        (u.hyphenated().encode_lower(&mut canonical).as_bytes() == id.as_bytes())
            .then(|| u.as_u128())
    }
}

/// A member's email as the cache keeps it.
fn cache_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A baseline group row.
fn group_row(name: &str, sorted_members: &[&Id], fingerprint: String) -> CachedGroup {
    CachedGroup {
        name: name.to_string(),
        fingerprint,
        member_count: sorted_members.len(),
        members: Some(sorted_members.iter().map(|m| Id::clone(m)).collect()),
        synced_at: None,
        left_directory: false,
    }
}

/// Group rows to write to the cache ([`GroupRefs::row_changes`]).
#[derive(Debug, Default)]
pub struct GroupRows {
    /// externalId and row
    pub upserts: Vec<(String, CachedGroup)>,
    /// externalIds of cached groups the organization no longer has
    pub deletes: Vec<String>,
}

/// Member rows to write to the cache ([`Organization::member_row_changes`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MemberRows {
    /// externalId and email
    pub upserts: Vec<(String, String)>,
    pub deletes: Vec<String>,
}

impl Organization {
    /// The organization as a [`Cache`]: members and groups keyed by externalId (those without
    /// one are not the connector's), each group with its members' externalIds.
    pub fn baseline(&self) -> Cache {
        self.baseline_with(&self.group_refs())
    }

    /// [`Organization::baseline`] to make a plan against: its group rows have their member
    /// lists but no fingerprint (empty). The diff compares member lists; only a row written to
    /// the cache needs one, and hashing every group's members is a tenth of an unchanged sync.
    pub fn plan_baseline(&self) -> Cache {
        let refs = self.group_refs();
        let mut cache = self.baseline_members();
        cache.groups = refs.rows_for(false);
        cache
    }

    /// [`Organization::baseline`] with this organization's [`GroupRefs`], already built.
    pub fn baseline_with(&self, refs: &GroupRefs) -> Cache {
        let mut cache = self.baseline_members();
        cache.groups = refs.rows();
        cache
    }

    /// The members of [`Organization::baseline`] (and no group).
    fn baseline_members(&self) -> Cache {
        let mut cache = Cache {
            complete: true,
            ..Cache::default()
        };
        cache.members.reserve(self.members.len());
        for m in &self.members {
            if let Some(ext) = m.external_id.as_ref().filter(|e| !e.is_empty()) {
                if m.kind == MemberType::Owner {
                    cache.owners.insert(ext.clone());
                }
                cache
                    .members
                    .entry(ext.clone())
                    .or_insert_with(|| CachedMember {
                        email: cache_email(&m.email),
                    });
            }
        }
        cache
    }

    /// The groups of [`Organization::baseline`] alone (externalId → row).
    #[cfg(test)]
    pub fn group_rows(&self) -> HashMap<String, CachedGroup> {
        self.group_refs().rows()
    }

    /// The group rows a cache must change to hold this organization's baseline (see
    /// [`GroupRefs::row_changes`]).
    #[cfg(test)]
    pub fn group_row_changes(&self, held: std::collections::HashMap<String, String>) -> GroupRows {
        self.group_refs().row_changes(held)
    }

    /// The groups the baseline keeps, with their members' references resolved once
    /// ([`GroupRefs`]). In a large organization the sorted table of references is made on a
    /// second thread while the groups' member ids are matched with the members.
    pub fn group_refs(&self) -> GroupRefs<'_> {
        self.group_refs_in(self.members.len() >= PARALLEL_FROM)
    }

    /// [`Organization::group_refs`] on one thread or two.
    fn group_refs_in(&self, two_threads: bool) -> GroupRefs<'_> {
        fn group_ext(g: &OrgGroup) -> Option<&str> {
            g.external_id.as_deref().filter(|e| !e.is_empty())
        }
        // two groups with one externalId: the last one listed is kept
        let last: HashMap<&str, usize> = self
            .groups
            .iter()
            .enumerate()
            .filter_map(|(i, g)| Some((group_ext(g)?, i)))
            .collect();
        let kept: Vec<(&str, &OrgGroup)> = self
            .groups
            .iter()
            .enumerate()
            .filter_map(|(i, g)| {
                let ext = group_ext(g)?;
                (last.get(ext) == Some(&i)).then_some((ext, g))
            })
            .collect();
        let ((table, rank_of), members) = if two_threads {
            std::thread::scope(|s| {
                let table = s.spawn(|| self.reference_table());
                let members = self.group_member_indices(&kept);
                (crate::joined(table), members)
            })
        } else {
            (self.reference_table(), self.group_member_indices(&kept))
        };
        let groups = kept
            .into_iter()
            .zip(members)
            .map(|((ext, g), indices)| {
                let mut ranks: Vec<u32> = indices.iter().map(|&i| rank_of[i as usize]).collect();
                ranks.sort_unstable();
                ranks.dedup();
                (ext, g, ranks)
            })
            .collect();
        GroupRefs { table, groups }
    }

    /// Every member's reference once, sorted, and each member's rank in it. A group's members
    /// are then sorted and deduplicated by their rank (a number) rather than by comparing
    /// strings, and its row shares the references instead of copying them.
    fn reference_table(&self) -> (Vec<Id>, Vec<u32>) {
        let mut refs: Vec<(Id, u32)> = self
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let r: Id = MemberRef::id_of(m.external_id.as_deref(), &m.email);
                (r, i as u32)
            })
            .collect();
        refs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        // equal references (two members with one externalId) share a rank
        let mut table: Vec<Id> = Vec::with_capacity(refs.len());
        let mut rank_of = vec![0u32; self.members.len()];
        for (r, i) in refs {
            if table.last() != Some(&r) {
                table.push(r);
            }
            rank_of[i as usize] = (table.len() - 1) as u32;
        }
        (table, rank_of)
    }

    /// Each kept group's members, as indices into `self.members`. GUIDs (every id a Bitwarden
    /// server sends) are sorted by number and merged with the groups' member ids, sorted too: a
    /// 100,000-entry map looked up at random for every reference costs a cache miss each. Other
    /// ids go through a map. (A member id listed twice, which servers do not do, keeps its first
    /// member.)
    fn group_member_indices(&self, kept: &[(&str, &OrgGroup)]) -> Vec<Vec<u32>> {
        let mut guids: Vec<(u128, u32)> = Vec::with_capacity(self.members.len());
        let mut others: HashMap<&str, u32> = HashMap::new();
        for (i, m) in self.members.iter().enumerate() {
            match IdKey::of(&m.id) {
                IdKey::Guid(g) => guids.push((g, i as u32)),
                IdKey::Other(s) => {
                    others.entry(s).or_insert(i as u32);
                }
            }
        }
        guids.sort_by_key(|e| e.0);
        guids.dedup_by_key(|e| e.0);
        let mut members: Vec<Vec<u32>> = kept
            .iter()
            .map(|(_, g)| Vec::with_capacity(g.member_ids.len()))
            .collect();
        // the groups' GUID member ids, a bounded chunk of groups at a time
        const CHUNK: usize = 1 << 16;
        let mut pairs: Vec<(u128, u32)> = Vec::new();
        let mut start = 0;
        while start < kept.len() {
            pairs.clear();
            let mut end = start;
            while end < kept.len() && (end == start || pairs.len() < CHUNK) {
                for id in kept[end].1.member_ids.keys() {
                    match id {
                        IdKey::Guid(g) => pairs.push((g, end as u32)),
                        IdKey::Other(s) => members[end].extend(others.get(s)),
                    }
                }
                end += 1;
            }
            pairs.sort_unstable_by_key(|p| p.0);
            let mut known = guids.iter().peekable();
            for &(g, slot) in &pairs {
                while known.next_if(|k| k.0 < g).is_some() {}
                if let Some(&&(k, index)) = known.peek()
                    && k == g
                {
                    members[slot as usize].push(index);
                }
            }
            start = end;
        }
        members
    }

    /// Whether the baseline has no member and no group (nothing the connector manages).
    pub fn baseline_is_empty(&self) -> bool {
        let managed = |e: &Option<String>| e.as_deref().is_some_and(|e| !e.is_empty());
        !self.members.iter().any(|m| managed(&m.external_id))
            && !self.groups.iter().any(|g| managed(&g.external_id))
    }

    /// The member rows a cache must change to hold this organization's baseline, given that it
    /// held `before`'s baseline and then took `written` (externalId and email as the push
    /// recorded them, `None` for a removal). The same rows a comparison of the whole cache with
    /// [`Organization::baseline`] finds, without reading the cache or building the baseline.
    pub fn member_row_changes<'a>(
        &'a self,
        before: &'a Organization,
        written: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> MemberRows {
        /// What the cache holds for one externalId.
        enum Held<'a> {
            /// an organization's email, as listed (not yet in the cache's form)
            Listed(&'a str),
            /// an email as the push wrote it
            Written(&'a str),
            Gone,
        }
        let managed = |m: &'a OrgMember| {
            m.external_id
                .as_deref()
                .filter(|e| !e.is_empty())
                .map(|e| (e, m.email.as_str()))
        };
        let mut held: HashMap<&str, Held> = HashMap::with_capacity(before.members.len());
        for (ext, email) in before.members.iter().filter_map(managed) {
            held.entry(ext).or_insert(Held::Listed(email));
        }
        for (ext, email) in written {
            held.insert(ext, email.map_or(Held::Gone, Held::Written));
        }
        let mut rows = MemberRows::default();
        let mut seen: HashSet<&str> = HashSet::with_capacity(self.members.len());
        for (ext, email) in self.members.iter().filter_map(managed) {
            if !seen.insert(ext) {
                continue; // the first member with an externalId is the one the baseline keeps
            }
            let same = match held.remove(ext) {
                Some(Held::Listed(old)) => old == email || cache_email(old) == cache_email(email),
                Some(Held::Written(old)) => old == cache_email(email),
                Some(Held::Gone) | None => false,
            };
            if !same {
                rows.upserts.push((ext.to_string(), cache_email(email)));
            }
        }
        rows.deletes = held
            .into_iter()
            .filter(|(_, h)| !matches!(h, Held::Gone))
            .map(|(ext, _)| ext.to_string())
            .collect();
        rows
    }

    /// A digest of everything the baseline is made of, to tell whether the cache already holds
    /// it (stable across runs as long as the server lists in the same order).
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for m in &self.members {
            for part in [
                m.id.as_str(),
                m.email.as_str(),
                m.external_id.as_deref().unwrap_or("\u{1}"),
            ] {
                h.update(part.as_bytes());
                h.update([0u8]);
            }
        }
        h.update([1u8]);
        for g in &self.groups {
            for part in [
                g.id.as_str(),
                g.name.as_str(),
                g.external_id.as_deref().unwrap_or("\u{1}"),
            ] {
                h.update(part.as_bytes());
                h.update([0u8]);
            }
            for id in g.member_ids.keys() {
                match id {
                    IdKey::Guid(g) => h.update(g.to_le_bytes()),
                    IdKey::Other(s) => {
                        h.update(s.as_bytes());
                        h.update([2u8]);
                    }
                }
            }
        }
        hex::encode(&h.finalize()[..16])
    }

    /// What the organization has that the directory does not explain.
    pub fn drift(&self, directory: &Normalized) -> Drift {
        let mut known_users: HashSet<&str> = HashSet::new();
        if let Some(users) = &directory.users {
            known_users.extend(users.iter().map(|u| &*u.external_id));
        }
        let mut known_groups: HashSet<&str> = HashSet::new();
        if let Some(groups) = &directory.groups {
            known_groups.extend(groups.iter().map(|g| g.external_id.as_str()));
        }
        let mut d = Drift::default();
        for m in &self.members {
            let entry = || DriftMember {
                email: m.email.clone(),
                external_id: m.external_id.clone(),
                status: m.status_label(),
                owner: m.kind == MemberType::Owner,
            };
            if m.status == MemberStatus::Revoked {
                d.revoked_members.push(entry());
            }
            match m.external_id.as_deref().filter(|e| !e.is_empty()) {
                None => d.members_without_external_id.push(entry()),
                Some(e) if directory.users.is_some() && !known_users.contains(e) => {
                    d.members_unknown_to_directory.push(entry())
                }
                Some(_) => {}
            }
        }
        if directory.groups.is_some() {
            for g in &self.groups {
                let known = g
                    .external_id
                    .as_deref()
                    .is_some_and(|e| known_groups.contains(e));
                if !known {
                    d.groups_unknown_to_directory.push(DriftGroup {
                        name: g.name.clone(),
                        external_id: g.external_id.clone(),
                        members: g.member_ids.len(),
                    });
                }
            }
        }
        d
    }

    /// Checks that the organization (read after a push) shows what the plan sent. Each problem
    /// is a sentence naming the object and the likely cause.
    #[cfg(test)]
    pub fn verify(&self, plan: &Plan) -> Vec<String> {
        self.verify_with(plan, &self.group_refs())
    }

    /// Checks that the organization (read after a push) shows what the plan sent, given its
    /// [`GroupRefs`]. Each problem is a sentence naming the object and the likely cause.
    pub fn verify_with(&self, plan: &Plan, refs: &GroupRefs) -> Vec<String> {
        let mut by_ext: HashMap<&str, &OrgMember> = HashMap::with_capacity(self.members.len());
        for m in &self.members {
            if let Some(e) = m.external_id.as_deref() {
                by_ext.entry(e).or_insert(m);
            }
        }
        let mut problems = member_problems(plan, &by_ext);
        let groups: HashMap<&str, usize> = refs
            .groups
            .iter()
            .enumerate()
            .map(|(i, (ext, _, _))| (*ext, i))
            .collect();
        for g in &plan.groups {
            let Some(&slot) = groups.get(g.external_id.as_str()) else {
                problems.push(format!(
                    "group `{}` ({}) is missing after the import: the server dropped it \
                     (Vaultwarden ignores groups unless ORG_GROUPS_ENABLED=true)",
                    g.name, g.external_id
                ));
                continue;
            };
            let (_, found, ranks) = &refs.groups[slot];
            if found.name != g.name {
                problems.push(format!(
                    "group `{}` ({}) is still named `{}`: the server did not apply the \
                     rename (rename it in the admin console)",
                    g.name, g.external_id, found.name
                ));
            }
            // The group's members with an externalId and the ones sent, both sorted: one
            // merge finds those missing and those left over.
            let mut want: Vec<&str> = g.members.iter().map(|m| &**m).collect();
            if !want.is_sorted() {
                want.sort_unstable();
            }
            let mut have = ranks
                .iter()
                .map(|&r| &*refs.table[r as usize])
                .filter(|r| !MemberRef::is_unmanaged(r))
                .peekable();
            let mut missing: Vec<&str> = Vec::new();
            let mut extra = 0usize;
            let mut last: Option<&str> = None;
            for &w in &want {
                while let Some(h) = have.next_if(|h| *h < w) {
                    extra += usize::from(Some(h) != last);
                }
                if have.peek() != Some(&w) && by_ext.contains_key(w) {
                    missing.push(w);
                }
                last = Some(w);
            }
            extra += have.filter(|h| Some(*h) != last).count();
            if !missing.is_empty() {
                problems.push(format!(
                    "group `{}` ({}) lacks {} member(s) it was sent with, e.g. {}: the server \
                     did not apply the membership",
                    g.name,
                    g.external_id,
                    missing.len(),
                    missing[0]
                ));
            }
            if extra > 0 && g.action != GroupAction::Create {
                problems.push(format!(
                    "group `{}` ({}) still has {extra} member(s) the sync took out: the \
                     server did not replace the membership",
                    g.name, g.external_id
                ));
            }
        }
        problems
    }
}

/// What the organization read back after a push does not show of the plan's members: a removal
/// not applied, a member the import skipped.
fn member_problems(plan: &Plan, by_ext: &HashMap<&str, &OrgMember>) -> Vec<String> {
    let mut problems = Vec::new();
    for m in &plan.members {
        let found = by_ext.get(m.external_id.as_str());
        if m.is_removal() {
            if let Some(x) = found
                && x.status != MemberStatus::Revoked
            {
                problems.push(format!(
                    "member {} ({}) is still in the organization after its removal was \
                     sent{}",
                    m.email,
                    m.external_id,
                    if x.kind == MemberType::Owner {
                        ": owners are never removed by a sync"
                    } else {
                        ""
                    }
                ));
            }
        } else if found.is_none() {
            problems.push(format!(
                "member {} ({}) is not in the organization after the import: the server \
                 skipped it (is another member already using that email with a different \
                 externalId, or is the seat limit reached?)",
                m.email, m.external_id
            ));
        }
    }
    problems
}

/// The groups the baseline keeps (those with an externalId; of two with one externalId, the
/// last listed), each with its members' references (see [`MemberRef`]), sorted and without
/// repeats. Built once per organization read, for the cache's rows and for the check after a
/// push.
pub struct GroupRefs<'a> {
    /// every member's reference once, sorted
    table: Vec<Id>,
    /// externalId, group, and its members as indices into `table` (sorted, no repeats)
    groups: Vec<(&'a str, &'a OrgGroup, Vec<u32>)>,
}

impl<'a> GroupRefs<'a> {
    /// Calls `f` with each group: its externalId, the group and its members' references.
    pub fn each(&self, mut f: impl FnMut(&'a str, &'a OrgGroup, &[&Id])) {
        let mut members: Vec<&Id> = Vec::new();
        for (ext, g, ranks) in &self.groups {
            members.clear();
            members.extend(ranks.iter().map(|&r| &self.table[r as usize]));
            f(ext, g, &members);
        }
    }

    /// Every group's baseline row (externalId → row).
    pub fn rows(&self) -> HashMap<String, CachedGroup> {
        self.rows_for(true)
    }

    /// [`GroupRefs::rows`], with their fingerprints or without (empty).
    fn rows_for(&self, fingerprints: bool) -> HashMap<String, CachedGroup> {
        let mut rows = HashMap::with_capacity(self.groups.len());
        self.each(|ext, g, members| {
            let fingerprint = match fingerprints {
                true => group_fingerprint(&g.name, members),
                false => String::new(),
            };
            rows.insert(ext.to_string(), group_row(&g.name, members, fingerprint));
        });
        rows
    }

    /// The group rows a cache must change to hold this baseline, given each cached group's
    /// fingerprint (`held`, by externalId): rows to write, and cached groups the organization
    /// no longer has. A row is built only where the fingerprint differs.
    /// (In a large organization, half of the groups are done on a second thread.)
    pub fn row_changes(&self, held: std::collections::HashMap<String, String>) -> GroupRows {
        self.row_changes_in(held, self.table.len() >= PARALLEL_FROM)
    }

    /// [`GroupRefs::row_changes`] on one thread or two.
    fn row_changes_in(
        &self,
        held: std::collections::HashMap<String, String>,
        two_threads: bool,
    ) -> GroupRows {
        type Part<'p, 'a> = &'p [(&'a str, &'a OrgGroup, Vec<u32>)];
        let changed = |part: Part<'_, 'a>| {
            let mut upserts = Vec::new();
            let mut members: Vec<&Id> = Vec::new();
            for (ext, g, ranks) in part {
                members.clear();
                members.extend(ranks.iter().map(|&r| &self.table[r as usize]));
                let fingerprint = group_fingerprint(&g.name, &members);
                if held.get(*ext).map(String::as_str) != Some(fingerprint.as_str()) {
                    upserts.push((ext.to_string(), group_row(&g.name, &members, fingerprint)));
                }
            }
            upserts
        };
        let upserts = if two_threads {
            let (first, second) = self.groups.split_at(self.groups.len() / 2);
            std::thread::scope(|s| {
                let second = s.spawn(|| changed(second));
                let mut upserts = changed(first);
                upserts.extend(crate::joined(second));
                upserts
            })
        } else {
            changed(&self.groups)
        };
        let kept: HashSet<&str> = self.groups.iter().map(|(ext, _, _)| *ext).collect();
        let deletes = held
            .into_keys()
            .filter(|ext| !kept.contains(ext.as_str()))
            .collect();
        GroupRows { upserts, deletes }
    }
}

/// A member in the drift report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftMember {
    pub email: String,
    pub external_id: Option<String>,
    pub status: &'static str,
    pub owner: bool,
}

/// A group in the drift report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftGroup {
    pub name: String,
    pub external_id: Option<String>,
    pub members: usize,
}

/// What the organization has that the directory does not explain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Drift {
    /// Invited by hand (or before the connector): a sync never touches them.
    pub members_without_external_id: Vec<DriftMember>,
    /// externalIds the directory no longer returns (left the scope, or deleted without a trace).
    pub members_unknown_to_directory: Vec<DriftMember>,
    pub revoked_members: Vec<DriftMember>,
    /// Groups made by hand, or whose externalId the directory no longer has.
    pub groups_unknown_to_directory: Vec<DriftGroup>,
}

impl Drift {
    /// Takes out the members `plan` removed (by externalId, or by email for a member without
    /// one): after a sync, the drift is what the organization has left.
    pub fn forget_removed(&mut self, plan: &Plan) {
        let removed: HashSet<&str> = plan
            .members
            .iter()
            .filter(|m| matches!(m.action, crate::engine::diff::MemberAction::Remove(_)))
            .flat_map(|m| [m.external_id.as_str(), m.email.as_str()])
            .filter(|s| !s.is_empty())
            .collect();
        let kept = |m: &DriftMember| {
            !removed.contains(m.email.as_str())
                && !m
                    .external_id
                    .as_deref()
                    .is_some_and(|e| removed.contains(e))
        };
        self.members_without_external_id.retain(kept);
        self.members_unknown_to_directory.retain(kept);
        self.revoked_members.retain(kept);
    }

    pub fn is_empty(&self) -> bool {
        self.members_without_external_id.is_empty()
            && self.members_unknown_to_directory.is_empty()
            && self.revoked_members.is_empty()
            && self.groups_unknown_to_directory.is_empty()
    }

    /// One line with the four counts.
    pub fn summary(&self) -> String {
        format!(
            "Drift: {} member(s) without externalId, {} member(s) the directory does not have, \
             {} revoked member(s), {} group(s) unknown to the directory",
            self.members_without_external_id.len(),
            self.members_unknown_to_directory.len(),
            self.revoked_members.len(),
            self.groups_unknown_to_directory.len()
        )
    }

    /// Every entry as (kind, name, externalId, detail) rows, for tables.
    pub fn rows(&self) -> Vec<[String; 4]> {
        let member = |kind: &str, m: &DriftMember| {
            [
                kind.to_string(),
                m.email.clone(),
                m.external_id.clone().unwrap_or_default(),
                format!("{}{}", m.status, if m.owner { ", owner" } else { "" }),
            ]
        };
        let mut rows = Vec::new();
        rows.extend(
            self.members_without_external_id
                .iter()
                .map(|m| member("member without externalId", m)),
        );
        rows.extend(
            self.members_unknown_to_directory
                .iter()
                .map(|m| member("member not in the directory", m)),
        );
        rows.extend(
            self.revoked_members
                .iter()
                .map(|m| member("revoked member", m)),
        );
        rows.extend(self.groups_unknown_to_directory.iter().map(|g| {
            [
                "group unknown to the directory".to_string(),
                g.name.clone(),
                g.external_id.clone().unwrap_or_default(),
                format!("{} member(s)", g.members),
            ]
        }));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::diff::{GroupChange, MemberAction, MemberChange, RemovalReason};
    use crate::engine::normalize::{NormGroup, NormUser};

    /// A group's members read from the server and the same members taken from the sync cache
    /// come in different orders; once sorted (as every read does), the digest is the same, so
    /// an unchanged sync does not rewrite the cache.
    #[test]
    fn sorted_member_ids_make_the_digest_independent_of_their_order() {
        let a = "3f0c0f4e-7d2a-4a57-9d1c-1a2b3c4d5e6f";
        let b = "00000000-0000-4000-8000-000000000001";
        let mut one = org();
        let mut two = org();
        one.groups[0].member_ids = [a, b, "m3"].into_iter().collect();
        two.groups[0].member_ids = ["m3", b, a].into_iter().collect();
        assert_ne!(one.digest(), two.digest());
        one.groups[0].member_ids.sort();
        two.groups[0].member_ids.sort();
        assert_eq!(one.digest(), two.digest());
    }

    fn member(id: &str, email: &str, ext: Option<&str>, status: MemberStatus) -> OrgMember {
        OrgMember {
            id: id.into(),
            email: email.into(),
            external_id: ext.map(str::to_string),
            status,
            kind: MemberType::User,
        }
    }

    fn org() -> Organization {
        Organization {
            members: vec![
                member("m1", "A@x.com", Some("a"), MemberStatus::Confirmed),
                member("m2", "b@x.com", Some("b"), MemberStatus::Revoked),
                member("m3", "manual@x.com", None, MemberStatus::Invited),
                member("m4", "gone@x.com", Some("gone"), MemberStatus::Accepted),
            ],
            groups: vec![
                OrgGroup {
                    id: "g1".into(),
                    name: "Eng".into(),
                    external_id: Some("eng".into()),
                    member_ids: ["m1", "m3"].into_iter().collect(),
                },
                OrgGroup {
                    id: "g2".into(),
                    name: "Hand made".into(),
                    external_id: None,
                    member_ids: ["m1"].into_iter().collect(),
                },
            ],
        }
    }

    #[test]
    fn a_guid_key_is_its_number_and_any_other_id_its_string() {
        let a = "3f0c0f4e-7d2a-4a57-9d1c-1a2b3c4d5e6f";
        assert_eq!(
            IdKey::of(a),
            IdKey::Guid(0x3f0c0f4e_7d2a_4a57_9d1c_1a2b3c4d5e6f)
        );
        assert_ne!(
            IdKey::of(a),
            IdKey::of("3f0c0f4e-7d2a-4a57-9d1c-1a2b3c4d5e6e")
        );
        // not the canonical form: kept as strings, so distinct strings stay distinct keys
        for other in [
            "3F0C0F4E-7D2A-4A57-9D1C-1A2B3C4D5E6F",
            "{3f0c0f4e-7d2a-4a57-9d1c-1a2b3c4d5e6f}",
            "3f0c0f4e7d2a4a579d1c1a2b3c4d5e6f",
            "3f0c0f4e-7d2a-4a57-9d1c-1a2b3c4d5e6g",
            "3f0c0f4e+7d2a-4a57-9d1c-1a2b3c4d5e6f",
            "m1",
        ] {
            assert_eq!(IdKey::of(other), IdKey::Other(other));
        }
    }

    #[test]
    fn baseline_keys_by_external_id_and_marks_unmanaged_group_members() {
        let c = org().baseline();
        assert_eq!(c.members.len(), 3);
        assert_eq!(c.members["a"].email, "a@x.com");
        assert_eq!(c.groups.len(), 1, "groups without externalId are not ours");
        let eng = &c.groups["eng"];
        let list = eng.members.as_ref().unwrap();
        assert_eq!(list.len(), 2);
        assert!(list.iter().any(|m| &**m == "a"));
        assert!(list.iter().any(|m| MemberRef::is_unmanaged(m)));
        // the baseline a plan is made against: the same rows, without fingerprints
        let p = org().plan_baseline();
        assert_eq!(p.members.len(), 3);
        assert_eq!(p.groups["eng"].members, eng.members);
        assert_eq!(p.groups["eng"].name, "Eng");
        assert_eq!(p.groups["eng"].fingerprint, "");
        assert_eq!(eng.fingerprint.len(), 32);
    }

    #[test]
    fn drift_lists_what_the_directory_does_not_explain() {
        let n = Normalized {
            users: Some(vec![NormUser {
                reference_id: "cn=a".into(),
                external_id: "a".into(),
                email: Some("a@x.com".into()),
                disabled: false,
                deleted: false,
                unreadable: None,
                immutable_id: None,
            }]),
            groups: Some(vec![NormGroup {
                reference_id: "cn=eng".into(),
                external_id: "eng".into(),
                name: "Eng".into(),
                members: vec![],
            }]),
            skipped: vec![],
        };
        let d = org().drift(&n);
        assert_eq!(d.members_without_external_id.len(), 1);
        let unknown: Vec<&str> = d
            .members_unknown_to_directory
            .iter()
            .map(|m| m.email.as_str())
            .collect();
        assert_eq!(unknown, ["b@x.com", "gone@x.com"]);
        assert_eq!(d.revoked_members.len(), 1);
        assert_eq!(d.groups_unknown_to_directory.len(), 1);
        assert_eq!(d.rows().len(), 5);
        assert!(!d.is_empty());
    }

    #[test]
    fn verify_names_what_the_server_did_not_apply() {
        let plan = Plan {
            members: vec![
                MemberChange {
                    external_id: "new".into(),
                    email: "new@x.com".into(),
                    action: MemberAction::Invite,
                    member_id: None,
                    previous_external_id: None,
                },
                MemberChange {
                    external_id: "gone".into(),
                    email: "gone@x.com".into(),
                    action: MemberAction::Remove(RemovalReason::Deleted),
                    member_id: None,
                    previous_external_id: None,
                },
                MemberChange {
                    external_id: "b".into(),
                    email: "b@x.com".into(),
                    action: MemberAction::Remove(RemovalReason::Deleted),
                    member_id: None,
                    previous_external_id: None,
                },
            ],
            groups: vec![
                GroupChange {
                    external_id: "eng".into(),
                    name: "Engineering".into(),
                    members: vec!["new".into()],
                    fingerprint: String::new(),
                    action: GroupAction::Update,
                    previous_member_count: Some(2),
                    previous_name: Some("Eng".into()),
                    removed_members: 1,
                    repairs_drift: false,
                },
                GroupChange {
                    external_id: "ops".into(),
                    name: "Ops".into(),
                    members: vec![],
                    fingerprint: String::new(),
                    action: GroupAction::Create,
                    previous_member_count: None,
                    previous_name: None,
                    removed_members: 0,
                    repairs_drift: false,
                },
            ],
            ..Plan::default()
        };
        let problems = org().verify(&plan);
        let text = problems.join("\n");
        assert!(
            text.contains("new@x.com (new) is not in the organization"),
            "{text}"
        );
        assert!(
            text.contains("gone@x.com (gone) is still in the organization"),
            "{text}"
        );
        // a revoked member counts as removed (Vaultwarden's semantics)
        assert!(!text.contains("b@x.com"), "{text}");
        assert!(text.contains("still named `Eng`"), "{text}");
        assert!(text.contains("still has 1 member(s)"), "{text}");
        assert!(text.contains("`Ops` (ops) is missing"), "{text}");
        assert_eq!(problems.len(), 5, "{text}");
    }
}

#[cfg(test)]
mod row_change_tests {
    //! The row changes written after a push make the cache exactly what a whole comparison with
    //! the read-back's baseline would.
    use super::*;
    use crate::engine::diff::GroupChange;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn arb_org() -> impl Strategy<Value = Organization> {
        let member = (
            0..4usize, // email
            prop::option::of(prop::sample::select(vec!["", "e0", "e1", "e2", "e3", "e4"])),
            any::<bool>(), // upper-case email
        );
        (
            prop::collection::vec(member, 0..8),
            prop::collection::vec(
                (
                    prop::option::of(prop::sample::select(vec!["", "g0", "g1", "g2"])),
                    0..2usize,
                    prop::collection::vec(0..10usize, 0..6),
                ),
                0..4,
            ),
        )
            .prop_map(|(members, groups)| Organization {
                members: members
                    .into_iter()
                    .enumerate()
                    .map(|(i, (email, ext, upper))| {
                        let email = format!(" user{email}@x.com");
                        OrgMember {
                            id: member_id(i),
                            email: if upper { email.to_uppercase() } else { email },
                            external_id: ext.map(str::to_string),
                            status: MemberStatus::Confirmed,
                            kind: MemberType::User,
                        }
                    })
                    .collect(),
                groups: groups
                    .into_iter()
                    .enumerate()
                    .map(|(i, (ext, name, ids))| OrgGroup {
                        id: format!("g{i}"),
                        name: format!("Group {name}"),
                        external_id: ext.map(str::to_string),
                        member_ids: ids.into_iter().map(member_id).collect(),
                    })
                    .collect(),
            })
    }

    /// Member ids of both kinds: GUIDs (resolved by the sorted merge) and other strings.
    fn member_id(i: usize) -> String {
        if i.is_multiple_of(2) {
            format!("00000000-0000-4000-8000-{i:012x}")
        } else {
            format!("m{i}")
        }
    }

    fn members_of(cache: &Cache) -> BTreeMap<String, String> {
        cache
            .members
            .iter()
            .map(|(k, v)| (k.clone(), v.email.clone()))
            .collect()
    }

    fn fingerprints(groups: &HashMap<String, CachedGroup>) -> BTreeMap<String, String> {
        groups
            .iter()
            .map(|(k, v)| (k.clone(), v.fingerprint.clone()))
            .collect()
    }

    proptest! {
        #[test]
        fn written_rows_make_the_cache_the_read_back(
            before in arb_org(),
            after in arb_org(),
            written in prop::collection::vec(
                (prop::sample::select(vec!["e0", "e1", "e2", "e5"]),
                 prop::option::of(prop::sample::select(vec!["user0@x.com", "user1@x.com"]))),
                0..4,
            ),
        ) {
            // the cache held `before`, then took the push's writes
            let mut cache = members_of(&before.baseline());
            for (ext, email) in &written {
                match email {
                    Some(e) => cache.insert(ext.to_string(), e.to_string()),
                    None => cache.remove(*ext),
                };
            }
            let rows = after.member_row_changes(&before, written.iter().map(|(x, e)| (*x, *e)));
            for (ext, email) in &rows.upserts {
                prop_assert_ne!(cache.get(ext), Some(email), "a row that matched was rewritten");
                cache.insert(ext.clone(), email.clone());
            }
            for ext in &rows.deletes {
                prop_assert!(cache.remove(ext).is_some(), "a missing row was deleted");
            }
            prop_assert_eq!(cache, members_of(&after.baseline()));

            let expected = after.group_rows();
            for two_threads in [false, true] {
                let mut groups = fingerprints(&before.group_rows());
                let held = groups.clone().into_iter().collect();
                let changes = after.group_refs_in(two_threads).row_changes_in(held, two_threads);
                for (ext, row) in &changes.upserts {
                    prop_assert_eq!(Some(row), expected.get(ext));
                    prop_assert_ne!(groups.get(ext), Some(&row.fingerprint));
                    groups.insert(ext.clone(), row.fingerprint.clone());
                }
                for ext in &changes.deletes {
                    prop_assert!(groups.remove(ext).is_some());
                }
                prop_assert_eq!(&groups, &fingerprints(&expected), "two threads: {}", two_threads);
            }
        }
    }

    proptest! {
        /// Each group's references are those a plain lookup of every member id finds.
        #[test]
        fn group_refs_are_what_a_lookup_of_each_member_id_finds(org in arb_org()) {
            let by_id: HashMap<&str, String> = org
                .members
                .iter()
                .map(|m| {
                    let r = MemberRef::key_of(m.external_id.as_deref(), &m.email).into_owned();
                    (m.id.as_str(), r)
                })
                .collect();
            let mut expected: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
            for g in &org.groups {
                let Some(ext) = g.external_id.as_deref().filter(|e| !e.is_empty()) else {
                    continue;
                };
                // (the ids as strings again: the lookup is by the server's spelling)
                let ids: Vec<String> = serde_json::from_value(
                    serde_json::to_value(&g.member_ids).unwrap(),
                )
                .unwrap();
                let mut refs: Vec<String> = ids
                    .iter()
                    .filter_map(|id| by_id.get(id.as_str()).cloned())
                    .collect();
                refs.sort();
                refs.dedup();
                expected.insert(ext.to_string(), (g.name.clone(), refs));
            }
            for two_threads in [false, true] {
                let rows: BTreeMap<String, (String, Vec<String>)> = org
                    .group_refs_in(two_threads)
                    .rows()
                    .into_iter()
                    .map(|(ext, row)| {
                        let members = row.members.unwrap_or_default();
                        (ext, (row.name, members.iter().map(|m| m.to_string()).collect()))
                    })
                    .collect();
                prop_assert_eq!(&rows, &expected, "two threads: {}", two_threads);
            }
        }
    }

    #[test]
    fn verify_counts_missing_and_leftover_members_once() {
        let guid = |n: u8| format!("00000000-0000-4000-8000-0000000000{n:02x}");
        let m = |id: String, ext: Option<&str>| OrgMember {
            id,
            email: format!("{}@x.com", ext.unwrap_or("manual")),
            external_id: ext.map(str::to_string),
            status: MemberStatus::Confirmed,
            kind: MemberType::User,
        };
        let org = Organization {
            members: vec![
                m(guid(1), Some("a")),
                m(guid(2), None),
                m(guid(3), Some("c")),
                m("other-id".into(), Some("d")),
            ],
            groups: vec![OrgGroup {
                id: "g1".into(),
                name: "Eng".into(),
                external_id: Some("eng".into()),
                member_ids: [guid(3), guid(2), guid(1), guid(1)].into_iter().collect(),
            }],
        };
        let plan = Plan {
            groups: vec![GroupChange {
                external_id: "eng".into(),
                name: "Eng".into(),
                // sent twice, and one the organization does not have (not the group's fault)
                members: vec!["a".into(), "a".into(), "d".into(), "x".into()],
                fingerprint: String::new(),
                action: GroupAction::Update,
                previous_member_count: Some(3),
                previous_name: None,
                removed_members: 1,
                repairs_drift: false,
            }],
            ..Plan::default()
        };
        let problems = org.verify(&plan);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("lacks 1 member(s) it was sent with, e.g. d"));
        // `c` is left over; the member without an externalId is not the connector's
        assert!(problems[1].contains("still has 1 member(s)"));
    }

    #[test]
    fn an_unchanged_organization_needs_no_row() {
        let org = Organization {
            members: vec![OrgMember {
                id: "m1".into(),
                email: "A@x.com".into(),
                external_id: Some("a".into()),
                status: MemberStatus::Confirmed,
                kind: MemberType::User,
            }],
            groups: vec![OrgGroup {
                id: "g1".into(),
                name: "Eng".into(),
                external_id: Some("eng".into()),
                member_ids: ["m1"].into_iter().collect(),
            }],
        };
        let rows = org.member_row_changes(&org, [("a", Some("a@x.com"))]);
        assert_eq!(rows, MemberRows::default());
        let held = fingerprints(&org.group_rows()).into_iter().collect();
        let groups = org.group_row_changes(held);
        assert!(groups.upserts.is_empty() && groups.deletes.is_empty());
        // an invite the organization does not show is taken out again
        let rows = org.member_row_changes(&org, [("new", Some("new@x.com"))]);
        assert_eq!(rows.deletes, vec!["new".to_string()]);
    }
}
