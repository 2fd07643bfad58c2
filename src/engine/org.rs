//! The organization as the server shows it (the public API's read side: members, groups and
//! each group's member ids), and what the engine makes of it: the baseline a plan is made
//! against, the drift report (what the organization has that the directory does not explain),
//! and the check after a push that the server applied the plan.

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use serde::Serialize;

use super::diff::{Cache, CachedGroup, CachedMember, GroupAction, Plan, group_fingerprint};
use super::model::Id;
use super::normalize::Normalized;

/// A member's status (`OrganizationUserStatusType`).
pub const STATUS_INVITED: i32 = 0;
pub const STATUS_ACCEPTED: i32 = 1;
pub const STATUS_CONFIRMED: i32 = 2;
pub const STATUS_REVOKED: i32 = -1;
/// A member's type (`OrganizationUserType`): owners are never removed by an import.
pub const TYPE_OWNER: i32 = 0;

/// One member as `GET /public/members` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrgMember {
    pub id: String,
    pub email: String,
    pub external_id: Option<String>,
    pub status: i32,
    pub kind: i32,
}

impl OrgMember {
    pub fn status_label(&self) -> &'static str {
        match self.status {
            STATUS_INVITED => "invited",
            STATUS_ACCEPTED => "accepted",
            STATUS_CONFIRMED => "confirmed",
            STATUS_REVOKED => "revoked",
            _ => "unknown",
        }
    }
}

/// One group as `GET /public/groups` lists it, with `GET /public/groups/{id}/member-ids`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrgGroup {
    pub id: String,
    pub name: String,
    pub external_id: Option<String>,
    /// Member ids (the organization's ids, not externalIds).
    pub member_ids: Vec<String>,
}

/// Everything the read side returned.
#[derive(Debug, Clone, Default)]
pub struct Organization {
    pub members: Vec<OrgMember>,
    pub groups: Vec<OrgGroup>,
}

/// How a group member without an externalId appears in a baseline member list: it can never
/// match a directory id, so a group holding one differs from the directory (the import replaces
/// the whole membership and would take it out).
fn unmanaged_ref(email: &str) -> Id {
    Id::from(format!("\u{1}{email}"))
}

/// Whether a baseline member reference stands for a member without an externalId.
pub fn is_unmanaged_ref(id: &str) -> bool {
    id.starts_with('\u{1}')
}

impl Organization {
    /// The organization as a [`Cache`]: members and groups keyed by externalId (those without
    /// one are not the connector's), each group with its members' externalIds.
    pub fn baseline(&self) -> Cache {
        let mut cache = Cache::default();
        cache.members.reserve(self.members.len());
        let mut by_id: HashMap<&str, Id> = HashMap::with_capacity(self.members.len());
        for m in &self.members {
            let email = m.email.trim().to_lowercase();
            match &m.external_id {
                Some(ext) if !ext.is_empty() => {
                    by_id.insert(&m.id, Id::from(ext.as_str()));
                    cache
                        .members
                        .entry(ext.clone())
                        .or_insert(CachedMember { email });
                }
                _ => {
                    by_id.insert(&m.id, unmanaged_ref(&email));
                }
            }
        }
        for g in &self.groups {
            let Some(ext) = g.external_id.as_ref().filter(|e| !e.is_empty()) else {
                continue;
            };
            let mut members: Vec<Id> = g
                .member_ids
                .iter()
                .filter_map(|id| by_id.get(id.as_str()).cloned())
                .collect();
            members.sort_unstable();
            members.dedup();
            cache.groups.insert(
                ext.clone(),
                CachedGroup {
                    name: g.name.clone(),
                    fingerprint: group_fingerprint(&g.name, &members),
                    member_count: members.len(),
                    members: Some(members),
                    synced_at: None,
                },
            );
        }
        cache
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
            for id in &g.member_ids {
                h.update(id.as_bytes());
                h.update([2u8]);
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
                owner: m.kind == TYPE_OWNER,
            };
            if m.status == STATUS_REVOKED {
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
    pub fn verify(&self, plan: &Plan) -> Vec<String> {
        let mut by_ext: HashMap<&str, &OrgMember> = HashMap::with_capacity(self.members.len());
        let mut ext_of: HashMap<&str, &str> = HashMap::with_capacity(self.members.len());
        for m in &self.members {
            if let Some(e) = m.external_id.as_deref() {
                by_ext.entry(e).or_insert(m);
                ext_of.insert(&m.id, e);
            }
        }
        let mut problems = Vec::new();
        for m in &plan.members {
            let found = by_ext.get(m.external_id.as_str());
            if m.is_removal() {
                if let Some(x) = found
                    && x.status != STATUS_REVOKED
                {
                    problems.push(format!(
                        "member {} ({}) is still in the organization after its removal was \
                         sent{}",
                        m.email,
                        m.external_id,
                        if x.kind == TYPE_OWNER {
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
        let groups: HashMap<&str, &OrgGroup> = self
            .groups
            .iter()
            .filter_map(|g| Some((g.external_id.as_deref()?, g)))
            .collect();
        for g in &plan.groups {
            let Some(found) = groups.get(g.external_id.as_str()) else {
                problems.push(format!(
                    "group `{}` ({}) is missing after the import: the server dropped it \
                     (Vaultwarden ignores groups unless ORG_GROUPS_ENABLED=true)",
                    g.name, g.external_id
                ));
                continue;
            };
            if found.name != g.name {
                problems.push(format!(
                    "group `{}` ({}) is still named `{}`: the server did not apply the \
                     rename (rename it in the admin console)",
                    g.name, g.external_id, found.name
                ));
            }
            let have: HashSet<&str> = found
                .member_ids
                .iter()
                .filter_map(|id| ext_of.get(id.as_str()).copied())
                .collect();
            let missing: Vec<&str> = g
                .members
                .iter()
                .map(|m| &**m)
                .filter(|m| by_ext.contains_key(m) && !have.contains(m))
                .collect();
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
            let want: HashSet<&str> = g.members.iter().map(|m| &**m).collect();
            let extra = have.iter().filter(|m| !want.contains(*m)).count();
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

    fn member(id: &str, email: &str, ext: Option<&str>, status: i32) -> OrgMember {
        OrgMember {
            id: id.into(),
            email: email.into(),
            external_id: ext.map(str::to_string),
            status,
            kind: 2,
        }
    }

    fn org() -> Organization {
        Organization {
            members: vec![
                member("m1", "A@x.com", Some("a"), STATUS_CONFIRMED),
                member("m2", "b@x.com", Some("b"), STATUS_REVOKED),
                member("m3", "manual@x.com", None, STATUS_INVITED),
                member("m4", "gone@x.com", Some("gone"), STATUS_ACCEPTED),
            ],
            groups: vec![
                OrgGroup {
                    id: "g1".into(),
                    name: "Eng".into(),
                    external_id: Some("eng".into()),
                    member_ids: vec!["m1".into(), "m3".into()],
                },
                OrgGroup {
                    id: "g2".into(),
                    name: "Hand made".into(),
                    external_id: None,
                    member_ids: vec!["m1".into()],
                },
            ],
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
        assert!(list.iter().any(|m| is_unmanaged_ref(m)));
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
                },
                MemberChange {
                    external_id: "gone".into(),
                    email: "gone@x.com".into(),
                    action: MemberAction::Remove(RemovalReason::Deleted),
                },
                MemberChange {
                    external_id: "b".into(),
                    email: "b@x.com".into(),
                    action: MemberAction::Remove(RemovalReason::Deleted),
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
