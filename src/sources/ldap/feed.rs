//! The LDAP change feeds of the fast lane (see [`crate::sources::feed`]), and the one read per
//! changed entry that confirms a hint.
//!
//! * OpenLDAP and any RFC 4533 provider (`syncprov`): a `refreshOnly` content-synchronisation
//!   search under the Root Path with the stored cookie. The control is sent critical, so a
//!   server without the overlay refuses it (never a plain search of everything). The feed
//!   starts with a search that matches nothing, which costs the server nothing but gives the
//!   cookie. Deleted entries come as RFC 4533 ID sets (the provider's `syncprov-sessionlog`).
//!   A provider that cannot answer from its session log (no log, or a cookie older than it)
//!   sends its whole content instead (a present phase): that, or a cookie it does not take,
//!   is a reset: a full read, then the feed starts again.
//! * Active Directory: `uSNChanged` above the stored USN and at most the rootDSE's
//!   `highestCommittedUSN` (an indexed attribute, any subtree, any account), users and groups
//!   under the domain root, and the Deleted Objects container (show-deleted control) when
//!   `ldap.deleted_objects` is on. USNs are one domain controller's: its `invocationID` is
//!   kept, and another one (a restore from backup, or another DC behind the name) resets the
//!   feed.
//! * Active Directory, for an account that cannot list Deleted Objects but may replicate
//!   directory changes: DirSync (control `1.2.840.113556.1.4.841`) with the stored cookie,
//!   started with a search that matches nothing. On AD it returns the deleted accounts too;
//!   until it has returned one (Samba's DirSync hides them from such an account), the full read
//!   every ten looks still stands in for the deletions. A cookie it refuses moves the feed to
//!   `uSNChanged`.
//! * The doorbell ([`LdapSource::doorbell`]): a persistent search the server answers as changes
//!   happen (RFC 4533 `refreshAndPersist` from the stored cookie; AD's change notification
//!   control), so that the service looks at once instead of at the next period. It only rings:
//!   what changed is read by the look, as without it.

use std::time::Duration;

use anyhow::{Context, anyhow};
use ldap3::controls::{RawControl, SyncDone, SyncInfo, SyncState};
use ldap3::{Ldap, LdapError, Scope};

use super::entry::Entry;
use super::{
    LdapSource, Query, SHOW_DELETED_OID, critical, describe_error, domain_root, guid_to_string,
    normalize_dn, object_guid, search_base, search_each, search_filter, url,
};
use crate::progress::NoProgress;
use crate::sources::feed::{
    Change, Cursor, Poll, Seen, from_hex, generalized_time, to_hex, uuid_text,
};

const SYNC_REQUEST_OID: &str = "1.3.6.1.4.1.4203.1.9.1.1";
const SYNC_STATE_OID: &str = "1.3.6.1.4.1.4203.1.9.1.2";
const SYNC_DONE_OID: &str = "1.3.6.1.4.1.4203.1.9.1.3";
/// Active Directory's DirSync control,
/// <https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-adts/2213a7f2-0a36-483c-b2a4-8574d53aa1e3>.
const DIRSYNC_OID: &str = "1.2.840.113556.1.4.841";
/// The most a DirSync answer may hold (bytes); more comes with `moreResults`.
const DIRSYNC_MAX_BYTES: i64 = 1_048_576;
/// Active Directory's change notification control (`LDAP_SERVER_NOTIFICATION_OID`),
/// <https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-adts/7de3b0b1-6aab-4537-b1a2-7b4cd4cab8ab>.
const NOTIFICATION_OID: &str = "1.2.840.113556.1.4.528";
const INSUFFICIENT_ACCESS: u32 = 50;
const UNWILLING_TO_PERFORM: u32 = 53;
/// RFC 4533's e-syncRefreshRequired: the cookie is too old, start again.
const SYNC_REFRESH_REQUIRED: u32 = 4096;
/// unavailableCriticalExtension: the server has no content synchronisation for this search.
const UNAVAILABLE_CRITICAL_EXTENSION: u32 = 12;
const NO_SUCH_OBJECT: u32 = 32;
const SIZE_LIMIT: u32 = 4;
const PROTOCOL_ERROR: u32 = 2;
const OTHER: u32 = 80;

/// What a poll of a content-synchronisation search found, before it becomes a [`Poll`].
#[derive(Default)]
struct SyncRead {
    changes: Vec<Change>,
    /// The server answered with a present phase (its whole content, the entries not listed to
    /// be taken as deleted): it cannot give the changes since the cookie from its session log.
    present_phase: bool,
    cookie: Option<Vec<u8>>,
}

impl LdapSource {
    /// Which directory a cursor belongs to: the kind of feed, the server and the Root Path.
    pub fn feed_directory(&self) -> String {
        format!(
            "ldap|{}|{}",
            url(&self.ldap),
            normalize_dn(self.ldap.root_path.as_deref().unwrap_or_default())
        )
    }

    /// One look at the change feed: AD's USNs, else RFC 4533 content synchronisation.
    pub async fn poll_feed(&self, cursor: Option<&Cursor>) -> anyhow::Result<Poll> {
        let mut ldap = self.connect().await?;
        let result = if self.ldap.ad {
            self.poll_ad(&mut ldap, cursor).await
        } else {
            self.poll_syncrepl(&mut ldap, cursor).await
        };
        let _ = ldap.unbind().await;
        result
    }

    /// A content-synchronisation poll (see the module doc). A cookie the server does not
    /// take (it answers without one, with its whole content, or with an error) is a reset.
    async fn poll_syncrepl(
        &self,
        ldap: &mut Ldap,
        cursor: Option<&Cursor>,
    ) -> anyhow::Result<Poll> {
        let directory = self.feed_directory();
        let fresh = |cookie: Option<Vec<u8>>| Cursor {
            directory: directory.clone(),
            feed: "syncrepl".into(),
            cookie: cookie.map(|c| to_hex(&c)),
            ..Cursor::default()
        };
        let cookie = cursor
            .filter(|c| c.directory == directory && c.feed == "syncrepl")
            .and_then(|c| c.cookie.as_deref())
            .and_then(from_hex)
            .filter(|c| !c.is_empty());
        let start = async |ldap: &mut Ldap| -> anyhow::Result<Result<Cursor, String>> {
            Ok(match self.sync_search(ldap, None).await? {
                Ok(read) => match read.cookie.filter(|c| !c.is_empty()) {
                    Some(c) => Ok(fresh(Some(c))),
                    None => Err(
                        "the LDAP server answered the change feed's search without a cookie"
                            .to_string(),
                    ),
                },
                Err(why) => Err(why),
            })
        };
        let Some(cookie) = cookie else {
            return Ok(match start(ldap).await? {
                Ok(c) => Poll::Started(c),
                Err(why) => Poll::Unavailable(why),
            });
        };
        let why = match self.sync_search(ldap, Some(cookie.clone())).await? {
            Ok(read) => match read.cookie.filter(|c| !c.is_empty()) {
                Some(c) if !read.present_phase => {
                    return Ok(Poll::Changes {
                        changes: read.changes,
                        cursor: fresh(Some(c)),
                    });
                }
                // nothing changed: the server keeps the cookie it was given (RFC 4533's
                // cookie is optional in the Sync Done control)
                None if !read.present_phase && read.changes.is_empty() => {
                    return Ok(Poll::Changes {
                        changes: Vec::new(),
                        cursor: fresh(Some(cookie)),
                    });
                }
                Some(_) => "the server's session log no longer reaches the stored cookie (it \
                            sent its whole content): a full read"
                    .to_string(),
                None => "the server did not take the stored cookie (it answered with entries \
                         and without a cookie): a full read"
                    .to_string(),
            },
            Err(why) => why,
        };
        // start again: the full read covers what was missed
        Ok(match start(ldap).await? {
            Ok(c) => Poll::Reset {
                reason: why,
                cursor: c,
            },
            Err(e) => Poll::Unavailable(e),
        })
    }

    /// One `refreshOnly` search. Without a cookie it matches nothing (it only gets the cookie).
    /// `Ok(Err(why))`: the server refused the synchronisation (no `syncprov`, or the cookie).
    async fn sync_search(
        &self,
        ldap: &mut Ldap,
        cookie: Option<Vec<u8>>,
    ) -> anyhow::Result<Result<SyncRead, String>> {
        let cfg = &self.ldap;
        let base = cfg.root_path.as_deref().unwrap_or_default().to_string();
        let start = cookie.is_none();
        let filter = if start {
            "(!(objectClass=*))"
        } else {
            "(objectClass=*)"
        };
        let control = sync_control(ldap3::controls::RefreshMode::RefreshOnly, cookie);
        let ctx = || format!("LDAP change feed (content synchronisation) under `{base}`");
        ldap.with_timeout(Duration::from_secs(cfg.timeout_seconds))
            .with_controls(vec![control]);
        let mut stream = ldap
            .streaming_search(&base, Scope::Subtree, filter, vec!["modifyTimestamp"])
            .await
            .map_err(|e| anyhow!(describe_error(&e)))
            .with_context(ctx)?;
        let mut read = SyncRead::default();
        loop {
            let entry = match stream.next().await {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(e) => return Err(anyhow!(describe_error(&e))).with_context(ctx),
            };
            if entry.is_intermediate() {
                let info = std::panic::catch_unwind(|| ldap3::controls::parse_syncinfo(entry))
                    .map_err(|_| anyhow!("the server sent a Sync Info message that cannot be read"))
                    .with_context(ctx)?;
                read.take_info(info);
                continue;
            }
            if entry.is_ref() {
                continue;
            }
            let state = entry
                .1
                .iter()
                .find(|c| c.1.ctype == SYNC_STATE_OID)
                .and_then(|c| c.1.val.clone());
            let Some(state) = state else { continue };
            let state = std::panic::catch_unwind(|| {
                <SyncState as ldap3::controls::ControlParser>::parse(&state)
            })
            .map_err(|_| anyhow!("the server sent a Sync State control that cannot be read"))
            .with_context(ctx)?;
            let e = Entry::from_raw(entry.0).ok();
            read.take_entry(state, e);
        }
        let res = stream.finish().await;
        sync_done(res, start, &base, read).with_context(ctx)
    }

    /// An AD poll (see the module doc).
    /// The domain controller's highest committed USN and its `invocationID`
    /// (`Ok(Err(why))`: not a DC, or not readable by this account).
    async fn dc_state(&self, ldap: &mut Ldap) -> anyhow::Result<Result<(u64, String), String>> {
        let cfg = &self.ldap;
        let timeout = Duration::from_secs(cfg.timeout_seconds);
        let ctx = "LDAP change feed: reading the domain controller's highestCommittedUSN";
        let (entries, _) = ldap
            .with_timeout(timeout)
            .search(
                "",
                Scope::Base,
                "(objectClass=*)",
                vec!["highestCommittedUSN", "dsServiceName"],
            )
            .await
            .and_then(|r| r.success())
            .map_err(|e| anyhow!(describe_error(&e)))
            .context(ctx)?;
        let root_dse = entries
            .into_iter()
            .next()
            .and_then(|e| Entry::from_raw(e.0).ok());
        let highest = root_dse
            .as_ref()
            .and_then(|e| e.first_text("highestCommittedUSN").ok().flatten())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let service = root_dse
            .as_ref()
            .and_then(|e| e.first_text("dsServiceName").ok().flatten())
            .map(str::to_string);
        let (Some(highest), Some(service)) = (highest, service) else {
            return Ok(Err(
                "the server's rootDSE has no highestCommittedUSN or dsServiceName: not an \
                 Active Directory domain controller, so no USN change feed"
                    .into(),
            ));
        };
        let (entries, _) = ldap
            .with_timeout(timeout)
            .search(
                &service,
                Scope::Base,
                "(objectClass=*)",
                vec!["invocationId"],
            )
            .await
            .and_then(|r| r.success())
            .map_err(|e| anyhow!(describe_error(&e)))
            .with_context(|| {
                format!("LDAP change feed: reading the invocationID of `{service}`")
            })?;
        let invocation = entries
            .into_iter()
            .next()
            .and_then(|e| Entry::from_raw(e.0).ok())
            .and_then(|e| e.first_bytes("invocationId").and_then(guid_to_string));
        let Some(invocation) = invocation else {
            return Ok(Err(format!(
                "{service} has no readable invocationID for this account: USNs cannot be \
                 trusted across a restore, so no USN change feed"
            )));
        };
        Ok(Ok((highest, invocation)))
    }

    /// The doorbell: holds a persistent search under the Root Path (OpenLDAP: RFC 4533
    /// `refreshAndPersist` from the cursor's cookie, so that its refresh sends only what changed
    /// since; AD: the change notification control on the domain) and calls `ring` for each entry
    /// the server sends, until the server ends the search. `Ok(why it ended)`; `Ok(None)`
    /// without a cookie yet (OpenLDAP: a persistent search without one would send everything).
    /// No timeout: the search is meant to last.
    pub async fn doorbell(
        &self,
        cursor: Option<&Cursor>,
        ring: &(dyn Fn() + Send + Sync),
    ) -> anyhow::Result<Option<String>> {
        let cfg = &self.ldap;
        let root = cfg.root_path.as_deref().unwrap_or_default();
        let (base, control) = if cfg.ad {
            (domain_root(root).to_string(), critical(NOTIFICATION_OID))
        } else {
            let Some(cookie) = cursor
                .filter(|c| c.directory == self.feed_directory() && c.feed == "syncrepl")
                .and_then(|c| c.cookie.as_deref())
                .and_then(from_hex)
            else {
                return Ok(None);
            };
            let mode = ldap3::controls::RefreshMode::RefreshAndPersist;
            (root.to_string(), sync_control(mode, Some(cookie)))
        };
        let mut ldap = self.connect().await?;
        ldap.with_controls(vec![control]);
        let ctx = || format!("the fast lane's persistent search under `{base}`");
        let mut stream = ldap
            .streaming_search(&base, Scope::Subtree, "(objectClass=*)", vec!["1.1"])
            .await
            .map_err(|e| anyhow!(describe_error(&e)))
            .with_context(ctx)?;
        loop {
            match stream.next().await {
                Ok(Some(e)) if !e.is_intermediate() && !e.is_ref() => ring(),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return Err(anyhow!(describe_error(&e))).with_context(ctx),
            }
        }
        let res = stream.finish().await;
        let _ = ldap.unbind().await;
        Ok(Some(if res.rc == 0 {
            "the server ended the persistent search".to_string()
        } else {
            describe_error(&LdapError::LdapResult { result: res })
        }))
    }

    /// An AD poll: the kept cursor's feed; to start, DirSync for an account that may
    /// replicate but cannot list Deleted Objects, else `uSNChanged` (see the module doc).
    async fn poll_ad(&self, ldap: &mut Ldap, cursor: Option<&Cursor>) -> anyhow::Result<Poll> {
        let directory = self.feed_directory();
        let kept = cursor.filter(|c| c.directory == directory);
        match kept.map(|c| c.feed.as_str()) {
            Some("dirsync") => return self.poll_dirsync(ldap, kept).await,
            Some("usn") => return self.poll_usn(ldap, kept).await,
            _ => {}
        }
        self.start_ad(ldap, None).await
    }

    /// Starts an AD feed (`reason`: why it starts again, for a reset).
    async fn start_ad(&self, ldap: &mut Ldap, reason: Option<String>) -> anyhow::Result<Poll> {
        if !self.deleted_objects_visible(ldap).await?
            && let Some(cursor) = self.dirsync_from_now(ldap).await?
        {
            return Ok(match reason {
                Some(reason) => Poll::Reset { reason, cursor },
                None => Poll::Started(cursor),
            });
        }
        match (self.poll_usn(ldap, None).await?, reason) {
            (Poll::Started(cursor), Some(reason)) => Ok(Poll::Reset { reason, cursor }),
            (poll, _) => Ok(poll),
        }
    }

    /// A DirSync cursor from now on (a search that matches nothing gives the cookie), or
    /// `None` when this account may not use DirSync (no right to replicate directory changes).
    async fn dirsync_from_now(&self, ldap: &mut Ldap) -> anyhow::Result<Option<Cursor>> {
        let Ok((_, invocation)) = self.dc_state(ldap).await? else {
            return Ok(None);
        };
        let Some(read) = self.dirsync(ldap, &[], "(!(objectClass=*))").await? else {
            return Ok(None);
        };
        Ok(Some(Cursor {
            directory: self.feed_directory(),
            feed: "dirsync".into(),
            cookie: Some(to_hex(&read.1)),
            invocation_id: Some(invocation),
            deletions_hidden: true,
            ..Cursor::default()
        }))
    }

    /// One DirSync poll with the cursor's cookie: the users and groups whose watched
    /// attributes changed, deleted ones included (those this account is shown).
    async fn poll_dirsync(&self, ldap: &mut Ldap, cursor: Option<&Cursor>) -> anyhow::Result<Poll> {
        let Some(c) = cursor else {
            return self.start_ad(ldap, None).await;
        };
        let invocation = match self.dc_state(ldap).await? {
            Ok((_, i)) => i,
            Err(why) => return Ok(Poll::Unavailable(why)),
        };
        if c.invocation_id.as_deref() != Some(invocation.as_str()) {
            let reason = format!(
                "the domain controller's invocationID changed ({} → {invocation}): it was \
                 restored from a backup or another controller answers: a full read",
                c.invocation_id.as_deref().unwrap_or("none")
            );
            return self.start_ad(ldap, Some(reason)).await;
        }
        let cookie = c.cookie.as_deref().and_then(from_hex).unwrap_or_default();
        let s = &self.sync;
        let filter = format!(
            "(|(objectClass={})(objectClass={}))",
            self.ldap.user_object_class(s),
            self.ldap.group_object_class(s)
        );
        let Some((changes, cookie)) = self.dirsync(ldap, &cookie, &filter).await? else {
            // uSNChanged from now on: a DirSync that refuses what it just gave would otherwise
            // cost a full read every look (DirSync is tried again after `clear-cache`)
            let reason = "the domain controller refused the stored DirSync cookie: a full \
                          read, then the feed goes on with uSNChanged";
            return match self.poll_usn(ldap, None).await? {
                Poll::Started(cursor) => Ok(Poll::Reset {
                    reason: reason.into(),
                    cursor,
                }),
                other => Ok(other),
            };
        };
        let mut next = c.clone();
        next.cookie = Some(to_hex(&cookie));
        // a tombstone seen shows this account is shown them
        if changes.iter().any(|c| c.deleted) {
            next.deletions_hidden = false;
        }
        Ok(Poll::Changes {
            changes,
            cursor: next,
        })
    }

    /// DirSync searches under the domain root from `cookie` until the server has no more:
    /// the changed entries and the cookie after them; `None` when the server refuses (no
    /// right, or a cookie it does not take).
    async fn dirsync(
        &self,
        ldap: &mut Ldap,
        cookie: &[u8],
        filter: &str,
    ) -> anyhow::Result<Option<(Vec<Change>, Vec<u8>)>> {
        let cfg = &self.ldap;
        let root = domain_root(cfg.root_path.as_deref().unwrap_or_default()).to_string();
        // the attributes whose change matters: those the sync reads, the account's state,
        // group members, a deletion, a rename or move
        let mut attrs = super::UserMapping::new(cfg, &self.sync).attrs();
        for a in [
            "objectGUID",
            "userAccountControl",
            "member",
            "isDeleted",
            "name",
        ] {
            if !attrs.iter().any(|x| x.eq_ignore_ascii_case(a)) {
                attrs.push(a.to_string());
            }
        }
        let attrs: Vec<&str> = attrs.iter().map(String::as_str).collect();
        let mut cookie = cookie.to_vec();
        let mut changes = Vec::new();
        // a bound on the rounds (each is up to DIRSYNC_MAX_BYTES)
        for _ in 0..1_000 {
            let result = ldap
                .with_timeout(Duration::from_secs(cfg.timeout_seconds))
                .with_controls(vec![dirsync_control(&cookie)])
                .search(&root, Scope::Subtree, filter, attrs.clone())
                .await
                .map_err(|e| anyhow!(describe_error(&e)))
                .with_context(|| format!("LDAP change feed: DirSync under {root}"))?;
            let ldap3::SearchResult(entries, res) = result;
            match res.rc {
                0 => {}
                INSUFFICIENT_ACCESS
                | UNAVAILABLE_CRITICAL_EXTENSION
                | UNWILLING_TO_PERFORM
                | PROTOCOL_ERROR
                | OTHER => return Ok(None),
                _ => {
                    return Err(anyhow!(describe_error(&LdapError::LdapResult {
                        result: res
                    })))
                    .with_context(|| format!("LDAP change feed: DirSync under {root}"));
                }
            }
            for e in entries {
                if e.is_ref() || e.is_intermediate() {
                    continue;
                }
                let Ok(e) = Entry::from_raw(e.0) else {
                    continue;
                };
                let deleted = e
                    .first_text("isDeleted")
                    .ok()
                    .flatten()
                    .is_some_and(|v| v.eq_ignore_ascii_case("TRUE"));
                changes.push(ad_change(e, deleted));
            }
            let Some((more, next)) = res
                .ctrls
                .iter()
                .find(|c| c.1.ctype == DIRSYNC_OID)
                .and_then(|c| c.1.val.as_deref())
                .and_then(dirsync_answer)
            else {
                return Err(anyhow!(
                    "the domain controller answered DirSync without its control"
                ));
            };
            cookie = next;
            if !more {
                return Ok(Some((changes, cookie)));
            }
        }
        Err(anyhow!(
            "DirSync kept saying there is more: stopped after 1,000 rounds"
        ))
    }

    async fn poll_usn(&self, ldap: &mut Ldap, cursor: Option<&Cursor>) -> anyhow::Result<Poll> {
        let directory = self.feed_directory();
        let (highest, invocation) = match self.dc_state(ldap).await? {
            Ok(state) => state,
            Err(why) => return Ok(Poll::Unavailable(why)),
        };
        let mut fresh = Cursor {
            directory: directory.clone(),
            feed: "usn".into(),
            usn: Some(highest),
            invocation_id: Some(invocation.clone()),
            ..Cursor::default()
        };
        let Some(last) = cursor
            .filter(|c| c.directory == directory && c.feed == "usn")
            .and_then(|c| {
                c.usn
                    .map(|u| (u, c.invocation_id.clone(), c.deletions_hidden))
            })
        else {
            fresh.deletions_hidden = !self.deleted_objects_visible(ldap).await?;
            return Ok(Poll::Started(fresh));
        };
        let (usn, known, hidden) = last;
        fresh.deletions_hidden = hidden;
        if known.as_deref() != Some(invocation.as_str()) {
            fresh.deletions_hidden = !self.deleted_objects_visible(ldap).await?;
            return Ok(Poll::Reset {
                reason: format!(
                    "the domain controller's invocationID changed ({} → {invocation}): it was \
                     restored from a backup or another controller answers, so its USNs are not \
                     comparable: a full read",
                    known.as_deref().unwrap_or("none")
                ),
                cursor: fresh,
            });
        }
        if highest <= usn {
            return Ok(Poll::Changes {
                changes: Vec::new(),
                cursor: fresh,
            });
        }
        let changes = self.read_usn_changes(ldap, usn + 1, highest).await?;
        // a tombstone seen shows this account can list them
        if changes.iter().any(|c| c.deleted) {
            fresh.deletions_hidden = false;
        }
        Ok(Poll::Changes {
            changes,
            cursor: fresh,
        })
    }

    /// Whether this account sees a deleted account in the Deleted Objects container (on AD
    /// and Samba only privileged accounts can list it; for the others it looks empty). An
    /// empty container reads as not seen, until the feed finds a tombstone in it.
    async fn deleted_objects_visible(&self, ldap: &mut Ldap) -> anyhow::Result<bool> {
        let cfg = &self.ldap;
        let root = domain_root(cfg.root_path.as_deref().unwrap_or_default()).to_string();
        let base = format!("CN=Deleted Objects,{root}");
        let show_deleted = critical(SHOW_DELETED_OID);
        let result = ldap
            .with_timeout(Duration::from_secs(cfg.timeout_seconds))
            .with_controls(vec![show_deleted])
            .with_search_options(ldap3::SearchOptions::new().sizelimit(1))
            .search(&base, Scope::OneLevel, "(isDeleted=TRUE)", vec!["1.1"])
            .await
            .map_err(|e| anyhow!(describe_error(&e)))
            .with_context(|| format!("LDAP change feed: looking into {base}"))?;
        let ldap3::SearchResult(entries, res) = result;
        Ok((res.rc == 0 || res.rc == SIZE_LIMIT) && !entries.is_empty())
    }

    /// Users and groups changed within the USN range, and the deleted ones (those this account
    /// can see).
    async fn read_usn_changes(
        &self,
        ldap: &mut Ldap,
        from: u64,
        to: u64,
    ) -> anyhow::Result<Vec<Change>> {
        let cfg = &self.ldap;
        let s = &self.sync;
        let root = domain_root(cfg.root_path.as_deref().unwrap_or_default()).to_string();
        let range = format!("(uSNChanged>={from})(uSNChanged<={to})");
        let filter = format!(
            "(&(|(objectClass={})(objectClass={})){range})",
            cfg.user_object_class(s),
            cfg.group_object_class(s)
        );
        let attrs = vec!["objectGUID".to_string(), "whenChanged".to_string()];
        let mut changes = Vec::new();
        let q = Query::new("changed entry", &root, &filter, &attrs);
        search_each(ldap, cfg, q, &NoProgress, |e| {
            if let Ok(e) = e {
                changes.push(ad_change(e, false));
            }
        })
        .await?;
        // deletions are looked for whether or not the full sync reads deleted users: a
        // deleted account is a leaver either way (a failed look is said, not fatal)
        {
            let base = format!("CN=Deleted Objects,{root}");
            let filter = format!("(&(isDeleted=TRUE){range})");
            let mut q = Query::new("deleted entry", &base, &filter, &attrs);
            q.controls.push(critical(SHOW_DELETED_OID));
            let found = search_each(ldap, cfg, q, &NoProgress, |e| {
                if let Ok(e) = e {
                    changes.push(ad_change(e, true));
                }
            })
            .await;
            if let Err(e) = found {
                tracing::warn!(
                    "fast lane: the Deleted Objects container cannot be read ({e:#}): a deleted \
                     account is seen by the next full sync only"
                );
            }
        }
        Ok(changes)
    }

    /// Reads each changed entry once, over one connection: what it is now.
    pub async fn confirm(&self, changes: &[Change]) -> anyhow::Result<Vec<Seen>> {
        let mut ldap = self.connect().await?;
        let mut out = Vec::with_capacity(changes.len());
        for c in changes {
            let seen = self.confirm_one(&mut ldap, c).await;
            match seen {
                Ok(s) => out.push(s),
                Err(e) => {
                    let _ = ldap.unbind().await;
                    return Err(e);
                }
            }
        }
        let _ = ldap.unbind().await;
        Ok(out)
    }

    async fn confirm_one(&self, ldap: &mut Ldap, c: &Change) -> anyhow::Result<Seen> {
        let cfg = &self.ldap;
        let s = &self.sync;
        let gone = || Seen::Gone {
            dn: c.dn.clone(),
            id: c.id.clone(),
        };
        // AD finds an entry by its GUID wherever it moved; elsewhere the DN is the key
        let target = match (&c.dn, &c.id) {
            (_, Some(id)) if cfg.ad => format!("<GUID={id}>"),
            (Some(dn), _) => dn.clone(),
            _ => return Ok(gone()),
        };
        let root = cfg.root_path.as_deref().unwrap_or_default();
        let mapping = super::UserMapping::new(cfg, s);
        let user_base = normalize_dn(&search_base(s.user_path.as_deref(), root));
        let group_base = normalize_dn(&search_base(s.group_path.as_deref(), root));
        let user_filter = search_filter(cfg.user_object_class(s), s.user_filter.as_deref());
        let group_filter = search_filter(cfg.group_object_class(s), s.group_filter.as_deref());
        let mut attrs = mapping.attrs();
        attrs.push("objectClass".into());
        let under = |dn: &str, base: &str| {
            let dn = normalize_dn(dn);
            base.is_empty() || dn == base || dn.ends_with(&format!(",{base}"))
        };
        if s.users
            && let Some(e) = self.read_one(ldap, &target, &user_filter, &attrs).await?
            && under(&e.dn, &user_base)
        {
            return Ok(Seen::User(mapping.to_user(Ok(e), false)));
        }
        if s.groups
            && let Some(e) = self.read_one(ldap, &target, &group_filter, &attrs).await?
            && under(&e.dn, &group_base)
        {
            let id = object_guid(&e).unwrap_or_else(|| e.dn.clone());
            return Ok(Seen::Group(id));
        }
        Ok(gone())
    }

    /// A base read of one entry with a filter: `None` when it is not there or does not match.
    async fn read_one(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        filter: &str,
        attrs: &[String],
    ) -> anyhow::Result<Option<Entry>> {
        let timeout = Duration::from_secs(self.ldap.timeout_seconds);
        let attrs: Vec<&str> = attrs.iter().map(String::as_str).collect();
        let result = ldap
            .with_timeout(timeout)
            .search(dn, Scope::Base, filter, attrs)
            .await
            .map_err(|e| anyhow!(describe_error(&e)))
            .with_context(|| format!("LDAP read of the changed entry `{dn}`"))?;
        let ldap3::SearchResult(entries, res) = result;
        match res.rc {
            0 => Ok(entries
                .into_iter()
                .find(|e| !e.is_ref() && !e.is_intermediate())
                .and_then(|e| Entry::from_raw(e.0).ok())),
            NO_SUCH_OBJECT => Ok(None),
            _ => Err(anyhow!(describe_error(&LdapError::LdapResult {
                result: res
            })))
            .with_context(|| format!("LDAP read of the changed entry `{dn}`")),
        }
    }
}

/// The change an AD entry found by its `uSNChanged` stands for: by its GUID, when
/// `whenChanged` says; a tombstone's DN (`CN=…\0ADEL:…`) is not kept.
fn ad_change(e: Entry, deleted: bool) -> Change {
    Change {
        id: object_guid(&e),
        at: e
            .first_text("whenChanged")
            .ok()
            .flatten()
            .and_then(generalized_time),
        dn: (!deleted).then_some(e.dn),
        deleted,
    }
}

/// The RFC 4533 Sync Request control, critical: a server without `syncprov` must refuse, not
/// answer a plain search of everything.
fn sync_control(mode: ldap3::controls::RefreshMode, cookie: Option<Vec<u8>>) -> RawControl {
    let mut control = RawControl::from(ldap3::controls::SyncRequest {
        mode,
        cookie,
        reload_hint: false,
    });
    control.crit = true;
    debug_assert_eq!(control.ctype, SYNC_REQUEST_OID);
    control
}

/// The DirSync request control: flags 0 (the caller's right to replicate, not per-object
/// security), the most bytes per answer, and the cookie (empty: from the beginning).
fn dirsync_control(cookie: &[u8]) -> RawControl {
    use ldap3::asn1::{ASNTag, Integer, OctetString, Sequence, Tag, write};
    let value = Tag::Sequence(Sequence {
        inner: vec![
            Tag::Integer(Integer {
                inner: 0,
                ..Default::default()
            }),
            Tag::Integer(Integer {
                inner: DIRSYNC_MAX_BYTES,
                ..Default::default()
            }),
            Tag::OctetString(OctetString {
                inner: cookie.to_vec(),
                ..Default::default()
            }),
        ],
        ..Default::default()
    })
    .into_structure();
    let mut buf = bytes::BytesMut::with_capacity(cookie.len() + 16);
    // writing into memory does not fail
    let _ = write::encode_into(&mut buf, value);
    RawControl {
        ctype: DIRSYNC_OID.to_string(),
        crit: true,
        val: Some(buf.to_vec()),
    }
}

/// The DirSync response control: whether there is more, and the cookie
/// (`SEQUENCE { moreResults INTEGER, unused INTEGER, cookie OCTET STRING }`).
fn dirsync_answer(val: &[u8]) -> Option<(bool, Vec<u8>)> {
    use ldap3::asn1::{parse_tag, parse_uint};
    let (_, tag) = parse_tag(val).ok()?;
    let mut parts = tag.expect_constructed()?.into_iter();
    let more = parts.next()?.expect_primitive()?;
    let (_, more) = parse_uint(more.as_slice()).ok()?;
    let _unused = parts.next()?;
    let cookie = parts.next()?.expect_primitive()?;
    Some((more != 0, cookie))
}

/// The end of a content-synchronisation search: its result code and Sync Done control.
/// `Ok(Err(why))`: the server refused the synchronisation (no `syncprov`, or the cookie).
fn sync_done(
    res: ldap3::LdapResult,
    start: bool,
    base: &str,
    mut read: SyncRead,
) -> anyhow::Result<Result<SyncRead, String>> {
    match res.rc {
        0 => {}
        UNAVAILABLE_CRITICAL_EXTENSION => {
            return Ok(Err(format!(
                "the LDAP server offers no change feed (RFC 4533 content synchronisation, \
                 OpenLDAP's syncprov overlay) under {base} to this account"
            )));
        }
        SIZE_LIMIT if !start => {
            return Ok(Err(
                "more changes than the server returns to this account at once: a full read".into(),
            ));
        }
        // a cookie the server refuses (too old: e-syncRefreshRequired, or not its own)
        rc if !start && (rc == SYNC_REFRESH_REQUIRED || rc == PROTOCOL_ERROR || rc == OTHER) => {
            return Ok(Err(format!(
                "the server refused the stored cookie ({}): a full read",
                describe_error(&LdapError::LdapResult { result: res })
            )));
        }
        _ => {
            return Err(anyhow!(describe_error(&LdapError::LdapResult {
                result: res
            })));
        }
    }
    if let Some(done) = res.ctrls.iter().find(|c| c.1.ctype == SYNC_DONE_OID) {
        if let Some(val) = done.1.val.clone() {
            let done = std::panic::catch_unwind(|| {
                <SyncDone as ldap3::controls::ControlParser>::parse(&val)
            })
            .map_err(|_| anyhow!("the server sent a Sync Done control that cannot be read"))?;
            if done.cookie.is_some() {
                read.cookie = done.cookie;
            }
            if !start && !done.refresh_deletes {
                read.present_phase = true;
            }
        }
    } else if start {
        return Ok(Err(format!(
            "the LDAP server answered the change feed's search without its control: no \
             content synchronisation (RFC 4533) under {base}"
        )));
    }
    Ok(Ok(read))
}

impl SyncRead {
    fn take_info(&mut self, info: SyncInfo) {
        match info {
            SyncInfo::NewCookie(c) => self.cookie = Some(c),
            SyncInfo::RefreshDelete { cookie, .. } => {
                if cookie.is_some() {
                    self.cookie = cookie;
                }
            }
            SyncInfo::RefreshPresent { cookie, .. } => {
                if cookie.is_some() {
                    self.cookie = cookie;
                }
                self.present_phase = true;
            }
            SyncInfo::SyncIdSet {
                cookie,
                refresh_deletes,
                sync_uuids,
            } => {
                if cookie.is_some() {
                    self.cookie = cookie;
                }
                for u in sync_uuids {
                    let Some(id) = uuid_text(&u) else { continue };
                    let id = format!("entryUUID:{id}");
                    if refresh_deletes {
                        self.changes.push(Change {
                            dn: None,
                            id: Some(id),
                            deleted: true,
                            at: None,
                        });
                    } else {
                        self.present_phase = true;
                    }
                }
            }
        }
    }

    fn take_entry(&mut self, state: SyncState, e: Option<Entry>) {
        if state.cookie.is_some() {
            self.cookie = state.cookie;
        }
        let Some(uuid) = uuid_text(&state.entry_uuid) else {
            return;
        };
        let id = format!("entryUUID:{uuid}");
        match state.state {
            ldap3::controls::EntryState::Present => self.present_phase = true,
            ldap3::controls::EntryState::Add | ldap3::controls::EntryState::Modify => {
                let at = e.as_ref().and_then(|e| {
                    e.first_text("modifyTimestamp")
                        .ok()
                        .flatten()
                        .and_then(generalized_time)
                });
                self.changes.push(Change {
                    dn: e.map(|e| e.dn),
                    id: Some(id),
                    deleted: false,
                    at,
                });
            }
            ldap3::controls::EntryState::Delete => self.changes.push(Change {
                dn: e.map(|e| e.dn),
                id: Some(id),
                deleted: true,
                at: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn dirsync_controls_read_and_write_as_samba_sends_them() {
        // the response control of a real Samba AD DC (ldapsearch -E '!dirSync=0/0')
        let samba = base64::engine::general_purpose::STANDARD
            .decode(
                "MHQCAQACAQAEbE1TRFMDAAAAgAGKD5OG3QEAAAAAAAAAACgAAACiDwAAAAAAAAAAAAAAAAAAog8AAAAAAAD\
                 uE1PFx+LZQ5YsWZtk+fTsAQAAAAAAAAABAAAAAAAAAO4TU8XH4tlDlixZm2T59OyiDwAAAAAAAA==",
            )
            .unwrap();
        let (more, cookie) = dirsync_answer(&samba).unwrap();
        assert!(!more);
        assert_eq!(&cookie[..4], b"MSDS", "Samba's cookie header");
        assert_eq!(cookie.len(), 0x6c);
        // the request carries flags 0, the byte limit and the cookie, critical
        let c = dirsync_control(&cookie);
        assert!(c.crit);
        let v = c.val.unwrap();
        assert_eq!(
            (v[0], usize::from(v[1])),
            (0x30, v.len() - 2),
            "one SEQUENCE"
        );
        assert!(v.ends_with(&cookie));
        assert_eq!(dirsync_answer(b"\x30\x03\x02\x01\x01"), None, "no cookie");
    }
}
