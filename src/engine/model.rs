//! What a directory source returns: users, groups, direct memberships and nested-group
//! references, before any normalization.

use std::sync::Arc;

use serde::Serialize;

/// A user's externalId, shared (not copied) by every group list that names the user: at
/// 100,000 users in several groups each, copies would dominate memory.
pub type Id = Arc<str>;

/// A group member's reference, as a plan, the organization's baseline and the sync cache name
/// it: the member's externalId, or, for a member without one (invited by hand; not the
/// connector's to manage), its email. Both kinds are kept in one string ([`Id`]); only this
/// type builds that string and tells the kinds apart, so the encoding (an unmanaged reference
/// starts with a character no directory id holds) is written down once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberRef<'a> {
    /// The member's externalId.
    External(&'a str),
    /// The lowercase email of a member without an externalId.
    Unmanaged(&'a str),
}

impl<'a> MemberRef<'a> {
    /// What starts the stored form of an unmanaged reference.
    const UNMANAGED: char = '\u{1}';

    /// The stored form of the reference of a member with `external_id` (none, or empty: an
    /// unmanaged member, by its `email`).
    pub fn key_of(external_id: Option<&'a str>, email: &str) -> std::borrow::Cow<'a, str> {
        match external_id.filter(|e| !e.is_empty()) {
            Some(ext) => std::borrow::Cow::Borrowed(ext),
            None => std::borrow::Cow::Owned(format!(
                "{}{}",
                Self::UNMANAGED,
                email.trim().to_lowercase()
            )),
        }
    }

    /// [`MemberRef::key_of`] as a shared [`Id`].
    pub fn id_of(external_id: Option<&str>, email: &str) -> Id {
        Id::from(MemberRef::key_of(external_id, email).as_ref())
    }

    /// Which kind of reference a stored one is.
    pub fn parse(stored: &'a str) -> MemberRef<'a> {
        match stored.strip_prefix(Self::UNMANAGED) {
            Some(email) => MemberRef::Unmanaged(email),
            None => MemberRef::External(stored),
        }
    }

    /// Whether a stored reference stands for a member without an externalId. It can never
    /// match a directory id, so a group holding one differs from the directory (the import
    /// replaces the whole membership and would take it out).
    pub fn is_unmanaged(stored: &str) -> bool {
        matches!(MemberRef::parse(stored), MemberRef::Unmanaged(_))
    }
}

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
    /// The entry's immutable id where the directory has one besides the externalId (LDAP:
    /// `entryUUID`, `nsUniqueId` or `ipaUniqueID`, where the externalId is the DN): a moved or
    /// renamed entry keeps it, so the member is renamed, not replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub immutable_id: Option<String>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_ref_is_its_external_id_or_its_email_and_reads_back_as_such() {
        let ext = MemberRef::id_of(Some("uid=a,dc=x"), "A@x.com");
        assert_eq!(MemberRef::parse(&ext), MemberRef::External("uid=a,dc=x"));
        let none = MemberRef::id_of(None, " Manual@X.com ");
        assert_eq!(
            MemberRef::parse(&none),
            MemberRef::Unmanaged("manual@x.com")
        );
        assert!(MemberRef::is_unmanaged(&none) && !MemberRef::is_unmanaged(&ext));
        // an empty externalId is none
        assert_eq!(
            MemberRef::id_of(Some(""), "b@x.com"),
            MemberRef::id_of(None, "b@x.com")
        );
        // no directory id can be taken for an unmanaged reference
        assert!(!MemberRef::is_unmanaged("manual@x.com"));
    }
}
