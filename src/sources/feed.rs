//! The fast lane's change feeds: what changed in the directory since a cursor, read cheaply
//! between full syncs. A feed's changes are hints only: the fast lane (`sync::watch`) confirms
//! each with a read of that entry before anything is done about it.
//!
//! The feeds: OpenLDAP (and any server with RFC 4533 content synchronisation, `syncprov`) in
//! [`crate::sources::ldap::feed`] as `refreshOnly` with a stored cookie; Active Directory there
//! too, as `uSNChanged` above the stored USN, bounded by the rootDSE's `highestCommittedUSN`,
//! with the Deleted Objects container, on one domain controller whose `invocationID` is kept;
//! Entra ID in [`crate::sources::entra`], as Microsoft Graph's `/users/delta` with the saved
//! delta link.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a feed stopped reading: stored per directory and server (`store` meta
/// `feed_cursor:<scope>`), kept across restarts, forgotten by `clear-cache`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cursor {
    /// The directory it belongs to (kind, server, base): another directory's cursor is not
    /// used.
    pub directory: String,
    /// `syncrepl`, `usn` or `entra-delta`.
    pub feed: String,
    /// The RFC 4533 cookie (as the server gave it, hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// AD: the highest committed USN read so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usn: Option<u64>,
    /// Entra ID: the `/users/delta` link to replay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// AD: the domain controller's `invocationID`; another one means a restore from backup
    /// (or another DC), so the USNs mean nothing: a full read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<String>,
    /// AD: this account cannot list the Deleted Objects container, so the feed does not see
    /// an account deleted outright (a full read every ten looks does).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deletions_hidden: bool,
}

impl Cursor {
    /// What this feed cannot see, in one sentence (`None`: nothing).
    pub fn blind_spot(&self) -> Option<String> {
        self.deletions_hidden.then(|| {
            "this account sees no deleted account in the Deleted Objects container (only \
             privileged accounts can list it), so an account deleted outright may not be in \
             the change feed"
                .to_string()
        })
    }
}

/// One changed entry, as the feed names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The entry's DN where the feed gives it.
    pub dn: Option<String>,
    /// The entry's id where the feed gives it: AD's `objectGUID` (the externalId there), or
    /// the stored form of an immutable id (`entryUUID:<uuid>`).
    pub id: Option<String>,
    /// The feed says the entry was deleted.
    pub deleted: bool,
    /// When the directory says it changed (`modifyTimestamp`, `whenChanged`), if it says.
    pub at: Option<DateTime<Utc>>,
}

/// What one changed entry is now, read from the directory.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// A user entry the user search finds, as it reads now (disabled or not).
    User(crate::engine::DirUser),
    /// A group entry the group search finds: its externalId.
    Group(String),
    /// Not there, or outside both searches: the change's DN and id as the feed named them.
    Gone {
        dn: Option<String>,
        id: Option<String>,
    },
}

/// What one look at a feed found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    /// There was no cursor: this one starts the feed now (the last full sync covered the past).
    Started(Cursor),
    /// The changes since the cursor (none when nothing changed), and the cursor after them.
    Changes {
        changes: Vec<Change>,
        cursor: Cursor,
    },
    /// The cursor cannot be used any more (a cookie refused, a domain controller restored):
    /// a full read is needed; `cursor` starts the feed again after it.
    Reset { reason: String, cursor: Cursor },
    /// This directory offers no feed to this account (no `syncprov`, no rights): why.
    Unavailable(String),
}

/// Hex of bytes (a cookie kept as text).
pub fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Bytes of hex (`None` when it is not hex).
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// An RFC 4533 entryUUID (16 bytes) in its text form, as `entryUUID` is read.
pub fn uuid_text(b: &[u8]) -> Option<String> {
    if b.len() != 16 {
        return None;
    }
    let h = to_hex(b);
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// An LDAP generalized time (`20261207181500Z`, `20261207181500.0Z`) as UTC.
pub fn generalized_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    let digits = s.get(0..14)?;
    let t = chrono::NaiveDateTime::parse_from_str(digits, "%Y%m%d%H%M%S").ok()?;
    Some(t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_what_is_not_hex() {
        let b = b"rid=000,csn=20261207\x00\xff";
        assert_eq!(from_hex(&to_hex(b)).as_deref(), Some(&b[..]));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
    }

    #[test]
    fn uuids_and_times_read_as_the_directory_writes_them() {
        let b: Vec<u8> = (0u8..16).collect();
        assert_eq!(
            uuid_text(&b).as_deref(),
            Some("00010203-0405-0607-0809-0a0b0c0d0e0f")
        );
        assert_eq!(uuid_text(&b[..3]), None);
        let t = generalized_time("20261207181500.0Z").map(|t| t.to_rfc3339());
        assert_eq!(t.as_deref(), Some("2026-12-07T18:15:00+00:00"));
        assert_eq!(generalized_time("yesterday"), None);
    }
}
