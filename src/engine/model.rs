//! What a directory source returns: users, groups, direct memberships and nested-group
//! references, before any normalization.

use std::sync::Arc;

use serde::Serialize;

/// A user's externalId, shared (not copied) by every group list that names the user: at
/// 100,000 users in several groups each, copies would dominate memory.
pub type Id = Arc<str>;

/// A user as read from the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirUser {
    /// Id inside the directory (LDAP: the DN), used to resolve relations and shown to the admin.
    pub reference_id: String,
    /// Stable id sent to Bitwarden (AD objectGUID, else DN; cloud: object id).
    pub external_id: Id,
    /// Email as read, not yet trimmed or lower-cased.
    pub email: Option<String>,
    pub disabled: bool,
    pub deleted: bool,
    /// Why the entry cannot be synced, found while reading it (a DN or attribute that is not
    /// UTF-8); normalization skips it with this reason.
    #[serde(skip)]
    pub unreadable: Option<String>,
}

impl DirUser {
    /// "deleted", "disabled" or "enabled", as the front ends show it.
    pub fn status(&self) -> &'static str {
        if self.deleted {
            "deleted"
        } else if self.disabled {
            "disabled"
        } else {
            "enabled"
        }
    }
}

/// How many users are enabled, disabled and deleted.
pub fn user_counts(users: &[DirUser]) -> (usize, usize, usize) {
    users
        .iter()
        .fold((0, 0, 0), |(e, di, de), u| match u.status() {
            "deleted" => (e, di, de + 1),
            "disabled" => (e, di + 1, de),
            _ => (e + 1, di, de),
        })
}

/// A group as read from the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirGroup {
    pub reference_id: String,
    pub external_id: String,
    pub name: Option<String>,
    /// externalIds of users that are direct members.
    pub user_members: Vec<Id>,
    /// referenceIds of groups that are direct members (nested groups). A reference that
    /// matches no group read is listed as a skipped member.
    pub group_members: Vec<String>,
    /// Why the entry cannot be synced, found while reading it; normalization skips it.
    #[serde(skip)]
    pub unreadable: Option<String>,
}

impl DirGroup {
    /// A group whose id is both its reference and its externalId (the cloud directories), with
    /// no members yet.
    pub fn new(id: &str, name: Option<String>) -> DirGroup {
        DirGroup {
            reference_id: id.to_string(),
            external_id: id.to_string(),
            name,
            user_members: Vec::new(),
            group_members: Vec::new(),
            unreadable: None,
        }
    }
}

/// Everything one run read from the directory. `None` means that object type is not synced.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub users: Option<Vec<DirUser>>,
    pub groups: Option<Vec<DirGroup>>,
}
