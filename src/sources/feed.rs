//! The fast lane's change feeds: what changed in the directory since a cursor, read cheaply
//! between full syncs. A feed's changes are hints only: the fast lane (`sync::watch`) confirms
//! each with a read of that entry before anything is done about it.
//!
//! The feeds: OpenLDAP (and any server with RFC 4533 content synchronisation, `syncprov`) in
//! [`crate::sources::ldap::feed`] as `refreshOnly` with a stored cookie; Active Directory there
//! too, as `uSNChanged` above the stored USN, bounded by the rootDSE's `highestCommittedUSN`,
//! with the Deleted Objects container, on one domain controller whose `invocationID` is kept;
//! Entra ID in [`crate::sources::entra`], as Microsoft Graph's `/users/delta` with the saved
//! delta link; Okta (System Log), OneLogin (Events) and Google Workspace (the Reports API's
//! admin activity) as audit logs read since a stored time ([`poll_events`]).

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
    /// `syncrepl`, `usn`, `dirsync`, `entra-delta`, `okta-log`, `onelogin-events` or
    /// `google-reports`.
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
    /// Entra ID: the `/groups/delta` link to replay (`members@delta`), when groups matter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_link: Option<String>,
    /// AD: the domain controller's `invocationID`; another one means a restore from backup
    /// (or another DC), so the USNs mean nothing: a full read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<String>,
    /// AD: this account cannot list the Deleted Objects container, so the feed does not see
    /// an account deleted outright (a full read every ten looks does).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deletions_hidden: bool,
    /// Audit logs (Okta, OneLogin, Google): where the next read starts, less the log's
    /// overlap (the newest event time read, or the last read's start less the overlap).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// Audit logs: when the log was last read (a cursor not read for days is reset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_at: Option<DateTime<Utc>>,
    /// Audit logs: the ids of the events of the last read, so that the overlap read again
    /// for events the log files late does not count them twice.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub seen: Vec<String>,
    /// OneLogin: the ids of the event types the feed reads (read by name from
    /// `/api/1/events/types` when the feed starts).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<i64>,
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

impl Seen {
    /// Not there, or outside what the sync reads: named by the feed's id.
    pub fn gone(id: &str) -> Seen {
        Seen::Gone {
            dn: None,
            id: Some(id.to_string()),
        }
    }

    /// A group as the directory answers for it (`name`; `None`: not there): one the sync reads
    /// when groups are synced and the group filter passes its name, else gone.
    pub fn group(
        sync: &crate::config::SyncConfig,
        filter: &super::filter::Filter,
        id: &str,
        name: Option<&str>,
    ) -> Seen {
        match name {
            Some(n) if sync.groups && filter.passes(Some(n)) => Seen::Group(id.to_string()),
            _ => Seen::gone(id),
        }
    }

    /// The user a change names as the directory answers for it (`None`: not there): one the
    /// user filter passes, else gone under the change's names.
    pub fn user(
        user: Option<crate::engine::DirUser>,
        filter: &super::filter::Filter,
        change: &Change,
    ) -> Seen {
        match user.filter(|u| filter.passes(u.email.as_deref())) {
            Some(u) => Seen::User(u),
            None => Seen::Gone {
                dn: change.dn.clone(),
                id: change.id.clone(),
            },
        }
    }
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

/// One entry of a cloud directory's audit log, as a feed reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The log's id of the event (Okta's `uuid`, OneLogin's `id`, Google's `uniqueQualifier`).
    pub id: String,
    /// When the directory logged it.
    pub at: DateTime<Utc>,
    /// What it names: the user (`id`, or `email:<address>` where the log names users by
    /// email), or a group (`group:<id>`, or `group:<email>` for Google).
    pub change: Change,
}

/// An audit log as a feed: how it is named, how late it may file an event, how old a cursor
/// may be.
pub struct EventLog {
    /// Which directory a cursor belongs to (kind, org, filters).
    pub directory: String,
    /// `okta-log`, `onelogin-events`, `google-reports`.
    pub feed: &'static str,
    /// How far before the newest event time each look reads again: events the log files late
    /// (Okta and OneLogin: seconds; Google's Reports API: minutes).
    pub overlap: chrono::Duration,
}

/// A cursor older than this is not replayed (the logs keep weeks of events, but reading them
/// all costs more than the full read that replaces them).
pub const MAX_CURSOR_AGE_DAYS: i64 = 7;

/// Where [`poll_events`]' reader was refused: the account may not read the log.
#[derive(Debug)]
pub struct NotAllowed(pub String);

impl std::fmt::Display for NotAllowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotAllowed {}

impl EventLog {
    fn fresh(&self, since: DateTime<Utc>, read_at: DateTime<Utc>, seen: Vec<String>) -> Cursor {
        Cursor {
            directory: self.directory.clone(),
            feed: self.feed.to_string(),
            since: Some(since),
            read_at: Some(read_at),
            seen,
            ..Cursor::default()
        }
    }
}

/// One look at an audit log: `read(from)` gives the events logged at or after `from`. Without
/// a cursor (or another directory's) one read checks the log can be read and the feed starts
/// now; a cursor not read for more than [`MAX_CURSOR_AGE_DAYS`] is a reset. Otherwise the
/// events since the cursor's time less the log's overlap, less those already seen, are the
/// changes. The next read starts at the newest event, or at this read's start less the
/// overlap (a quiet log is not read again from its last event every time); every event this
/// read returned is remembered, so that one the log returns again (it filed it late) counts
/// once. A reader that fails with [`NotAllowed`] makes the feed unavailable.
pub async fn poll_events<F, Fut>(
    log: &EventLog,
    cursor: Option<&Cursor>,
    read: F,
) -> anyhow::Result<Poll>
where
    F: FnOnce(DateTime<Utc>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Vec<Event>>>,
{
    let now = Utc::now();
    let kept = cursor
        .filter(|c| c.directory == log.directory && c.feed == log.feed)
        .and_then(|c| Some((c.since?, c.read_at.or(c.since)?, &c.seen)));
    let (from, seen) = match kept {
        Some((_, read_at, _)) if now - read_at > chrono::Duration::days(MAX_CURSOR_AGE_DAYS) => {
            return Ok(Poll::Reset {
                reason: format!(
                    "the change feed was last read on {}, more than {MAX_CURSOR_AGE_DAYS} days \
                     ago: a full read",
                    read_at.format("%Y-%m-%d %H:%M UTC")
                ),
                cursor: log.fresh(now, now, Vec::new()),
            });
        }
        Some((since, _, seen)) => (since - log.overlap, seen.clone()),
        // a first look: read from now, to see that the log can be read at all
        None => (now, Vec::new()),
    };
    let events = match read(from).await {
        Ok(events) => events,
        Err(e) => {
            if let Some(n) = e.downcast_ref::<NotAllowed>() {
                return Ok(Poll::Unavailable(n.0.clone()));
            }
            return Err(e);
        }
    };
    let newest = events.iter().map(|e| e.at).max();
    let Some((since, _, _)) = kept else {
        let since = newest.map_or(now, |n| n.max(now));
        return Ok(Poll::Started(log.fresh(since, now, Vec::new())));
    };
    let since = [Some(since), newest, Some(now - log.overlap)]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(now);
    let next_seen = events.iter().map(|e| e.id.clone()).collect();
    let seen: std::collections::HashSet<String> = seen.into_iter().collect();
    let changes = events
        .into_iter()
        .filter(|e| !seen.contains(&e.id))
        .map(|e| Change {
            at: Some(e.at),
            ..e.change
        })
        .collect();
    Ok(Poll::Changes {
        changes,
        cursor: log.fresh(since, now, next_seen),
    })
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

    fn event(id: &str, at: DateTime<Utc>, user: &str) -> Event {
        Event {
            id: id.into(),
            at,
            change: Change {
                dn: None,
                id: Some(user.into()),
                deleted: false,
                at: None,
            },
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn an_audit_log_is_read_again_over_its_overlap_and_counts_each_event_once() {
        let log = EventLog {
            directory: "okta|x".into(),
            feed: "okta-log",
            overlap: chrono::Duration::seconds(60),
        };
        let now = Utc::now();
        // a first look reads from now and starts the feed
        let poll = block_on(poll_events(&log, None, |from| async move {
            assert!(Utc::now() - from < chrono::Duration::seconds(5));
            Ok(Vec::new())
        }))
        .unwrap();
        let Poll::Started(c) = poll else {
            panic!("{poll:?}")
        };
        // events: one seen already (in the overlap), one new, one filed late in the overlap
        let mut cursor = c.clone();
        cursor.since = Some(now - chrono::Duration::seconds(10));
        cursor.seen = vec!["e1".into()];
        let t = |s: i64| now - chrono::Duration::seconds(s);
        let poll = block_on(poll_events(&log, Some(&cursor), |from| async move {
            assert_eq!(from, t(70), "the cursor's time less the overlap");
            Ok(vec![
                event("e1", t(20), "ann"),
                event("e0", t(30), "late"),
                event("e2", t(5), "bob"),
            ])
        }))
        .unwrap();
        let Poll::Changes { changes, cursor } = poll else {
            panic!("{poll:?}")
        };
        let who: Vec<_> = changes.iter().filter_map(|c| c.id.as_deref()).collect();
        assert_eq!(who, ["late", "bob"]);
        assert_eq!(
            changes[1].at,
            Some(t(5)),
            "the event's time is the change's"
        );
        assert_eq!(cursor.since, Some(t(5)));
        assert_eq!(cursor.seen.len(), 3, "every event read is remembered");
        // the late one comes again (the log keeps returning it): counted once
        let poll = block_on(poll_events(&log, Some(&cursor), |_| async move {
            Ok(vec![event("e0", t(30), "late")])
        }))
        .unwrap();
        let Poll::Changes {
            changes: again,
            cursor: c2,
        } = poll
        else {
            panic!("{poll:?}")
        };
        assert!(again.is_empty(), "{again:?}");
        assert_eq!(c2.seen, ["e0"]);
        // a quiet log: the next read starts at this read's start less the overlap, and the
        // cursor stays young however long the log is quiet
        let mut quiet = cursor.clone();
        quiet.since = Some(now - chrono::Duration::days(MAX_CURSOR_AGE_DAYS + 2));
        quiet.read_at = Some(now - chrono::Duration::seconds(60));
        let poll = block_on(poll_events(&log, Some(&quiet), |_| async {
            Ok(Vec::new())
        }));
        let Ok(Poll::Changes { cursor: c3, .. }) = poll else {
            panic!("{poll:?}")
        };
        let since = c3.since.unwrap();
        assert!(since >= now - chrono::Duration::seconds(61), "{since}");
        // another directory's cursor starts again; an old one is a reset
        let mut other = cursor.clone();
        other.directory = "okta|y".into();
        let poll = block_on(poll_events(&log, Some(&other), |_| async {
            Ok(Vec::new())
        }));
        assert!(matches!(poll, Ok(Poll::Started(_))), "{poll:?}");
        let mut old = cursor.clone();
        old.read_at = Some(now - chrono::Duration::days(MAX_CURSOR_AGE_DAYS + 1));
        let poll = block_on(poll_events(&log, Some(&old), |_| async { Ok(Vec::new()) }));
        assert!(matches!(poll, Ok(Poll::Reset { .. })), "{poll:?}");
        // a refused read: no feed; another error: an error
        let poll = block_on(poll_events(&log, Some(&cursor), |_| async {
            Err(NotAllowed("no rights".into()).into())
        }));
        assert_eq!(poll.unwrap(), Poll::Unavailable("no rights".into()));
        let poll = block_on(poll_events(&log, Some(&cursor), |_| async {
            Err(anyhow::anyhow!("cut"))
        }));
        assert!(poll.is_err());
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
