//! The fast lane's look at the directory between full syncs (`sync.watch_seconds`): poll the
//! change feed ([`crate::sources::feed`]), confirm each changed entry with one read, and say
//! whether what changed needs the organization changed now: a leaver (deleted, disabled, out
//! of the filter), a returner (revoked by the connector, back), a changed email or a changed
//! group; a joiner only with `sync.watch_joiners`. Nothing here touches the Bitwarden server:
//! when the look says so, the caller runs a sync at once, which plans against the
//! organization read at that moment (never the cache alone) and passes the guards.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::config::{Config, DirectoryType};
use crate::sources::entra::EntraSource;
/// The feed's cursor, as the callers of a look keep it.
pub use crate::sources::feed::Cursor;
use crate::sources::feed::{Change, Poll, Seen};
use crate::sources::google::GoogleSource;
use crate::sources::ldap::LdapSource;
use crate::sources::okta::OktaSource;
use crate::sources::onelogin::OneLoginSource;
use crate::store::Store;

/// More changed entries than this in one look are not read one by one: the full sync reads
/// them all at once (a bulk change costs one full read, not thousands of small ones).
pub const MAX_CONFIRMED: usize = 2_000;

/// What one look found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Look {
    /// The feed starts now (no cursor, or another directory's).
    Started,
    /// Nothing that needs the organization changed now (`changes` entries were looked at;
    /// `joiners` wait for the next full sync).
    Quiet { changes: usize, joiners: usize },
    /// The organization must follow now: a sync at once.
    Act(Found),
    /// The cursor cannot be used (a cookie refused, a DC restored): a full read, then the feed
    /// starts again.
    Reset(String),
    /// This directory offers no feed to this account (or no directory is configured): why.
    Unavailable(String),
}

/// The changes that need a sync now, confirmed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// Users the connector synced that are now gone, disabled or outside the filter.
    pub leavers: Vec<String>,
    /// Users the connector revoked that are back.
    pub returners: Vec<String>,
    /// Users whose email changed, and groups that changed.
    pub changed: Vec<String>,
    /// Users new to the organization (acted on with `sync.watch_joiners`).
    pub joiners: Vec<String>,
    /// More changes than [`MAX_CONFIRMED`]: not read one by one.
    pub bulk: Option<usize>,
    /// The earliest time the directory gives for these changes (the detection time when it
    /// gives none): the fast lane's latency is measured from it.
    pub since: DateTime<Utc>,
}

impl Found {
    /// One line for the log and History: "1 leaver (uid=ann,…), 1 group changed".
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        let list = |v: &[String]| {
            let mut s: Vec<&str> = v.iter().take(3).map(String::as_str).collect();
            if v.len() > 3 {
                s.push("…");
            }
            s.join("; ")
        };
        if let Some(n) = self.bulk {
            parts.push(format!("{n} changed entries (a full read)"));
        }
        for (n, one, many, v) in [
            (self.leavers.len(), "leaver", "leavers", &self.leavers),
            (
                self.returners.len(),
                "returner",
                "returners",
                &self.returners,
            ),
            (self.changed.len(), "change", "changes", &self.changed),
            (self.joiners.len(), "joiner", "joiners", &self.joiners),
        ] {
            if n > 0 {
                let word = if n == 1 { one } else { many };
                parts.push(format!("{n} {word} ({})", list(v)));
            }
        }
        parts.join(", ")
    }
}

/// A look and the cursor to keep once what it found is handled.
#[derive(Debug, Clone)]
pub struct Looked {
    pub look: Look,
    pub cursor: Option<Cursor>,
}

impl Looked {
    /// What the feed cannot see (an AD account that cannot list Deleted Objects), if anything:
    /// a full read every ten looks covers it.
    pub fn blind_spot(&self) -> Option<String> {
        self.cursor.as_ref().and_then(Cursor::blind_spot)
    }
}

/// The meta key of the scope's cursor.
pub fn cursor_key(scope: &str) -> String {
    format!("feed_cursor:{scope}")
}

/// The stored cursor of the store's scope (`None`: none, or one that cannot be read).
pub fn load_cursor(store: &Store) -> Option<Cursor> {
    let raw = store.meta_get(&cursor_key(store.scope())).ok().flatten()?;
    serde_json::from_str(&raw).ok()
}

/// Keeps `cursor` for the store's scope.
pub fn save_cursor(store: &Store, cursor: &Cursor) -> anyhow::Result<()> {
    let raw = serde_json::to_string(cursor)?;
    store.meta_set(&cursor_key(store.scope()), Some(&raw))
}

/// Forgets the store's scope's cursor (`clear-cache`): the next look starts the feed again.
pub fn forget_cursor(store: &Store) -> anyhow::Result<()> {
    store.meta_set(&cursor_key(store.scope()), None)
}

/// A source with a change feed.
enum FeedSource {
    Ldap(LdapSource),
    Entra(EntraSource),
    Okta(OktaSource),
    OneLogin(OneLoginSource),
    Google(GoogleSource),
}

impl FeedSource {
    async fn poll(&self, cursor: Option<&Cursor>) -> anyhow::Result<Poll> {
        match self {
            FeedSource::Ldap(s) => s.poll_feed(cursor).await,
            FeedSource::Entra(s) => s.poll_feed(cursor).await,
            FeedSource::Okta(s) => s.poll_feed(cursor).await,
            FeedSource::OneLogin(s) => s.poll_feed(cursor).await,
            FeedSource::Google(s) => s.poll_feed(cursor).await,
        }
    }

    async fn confirm(&self, changes: &[Change]) -> anyhow::Result<Vec<Seen>> {
        match self {
            FeedSource::Ldap(s) => s.confirm(changes).await,
            FeedSource::Entra(s) => s.confirm(changes).await,
            FeedSource::Okta(s) => s.confirm(changes).await,
            FeedSource::OneLogin(s) => s.confirm(changes).await,
            FeedSource::Google(s) => s.confirm(changes).await,
        }
    }
}

/// A cursor's feed (`Cursor::feed`) in words, for `test`.
fn feed_name(feed: &str) -> &str {
    match feed {
        "syncrepl" => "RFC 4533 content synchronisation",
        "usn" => "Active Directory's uSNChanged",
        "dirsync" => "Active Directory's DirSync",
        "entra-delta" => "Microsoft Graph's /users/delta",
        "okta-log" => "Okta's System Log",
        "onelogin-events" => "OneLogin's Events API",
        "google-reports" => "Google's Reports API (admin activity)",
        other => other,
    }
}

/// The source of `cfg` (`None` when no directory is configured): every kind has a feed.
fn feed_source(cfg: &Config, secret: String) -> Option<FeedSource> {
    match cfg.directory.kind? {
        DirectoryType::Ldap => Some(FeedSource::Ldap(LdapSource {
            ldap: cfg.ldap.clone(),
            sync: cfg.sync.clone(),
            password: secret,
        })),
        DirectoryType::Entra => Some(FeedSource::Entra(EntraSource {
            entra: cfg.entra.clone(),
            sync: cfg.sync.clone(),
            key: secret,
            ca_file: cfg.server.ca_file.clone(),
            state: std::sync::Arc::new(crate::sources::NoState),
        })),
        DirectoryType::Okta => Some(FeedSource::Okta(OktaSource {
            okta: cfg.okta.clone(),
            sync: cfg.sync.clone(),
            token: secret,
            ca_file: cfg.server.ca_file.clone(),
        })),
        DirectoryType::Onelogin => Some(FeedSource::OneLogin(OneLoginSource {
            onelogin: cfg.onelogin.clone(),
            sync: cfg.sync.clone(),
            secret,
            ca_file: cfg.server.ca_file.clone(),
        })),
        DirectoryType::Google => Some(FeedSource::Google(GoogleSource {
            google: cfg.google.clone(),
            sync: cfg.sync.clone(),
            key_json: secret,
            ca_file: cfg.server.ca_file.clone(),
        })),
    }
}

/// Why there is no feed without a directory.
const NO_DIRECTORY: &str = "no directory is configured";

/// One look at the directory of `cfg` (see the module doc). `store` is on the organization's
/// scope: the cache says who the connector synced, the kept records who it revoked.
pub async fn look(cfg: &Config, secret: String, store: &Store) -> anyhow::Result<Looked> {
    let Some(source) = feed_source(cfg, secret) else {
        return Ok(Looked {
            look: Look::Unavailable(NO_DIRECTORY.into()),
            cursor: None,
        });
    };
    let cursor = load_cursor(store);
    let poll = source.poll(cursor.as_ref()).await?;
    let (changes, cursor) = match poll {
        Poll::Started(c) => {
            return Ok(Looked {
                look: Look::Started,
                cursor: Some(c),
            });
        }
        Poll::Reset { reason, cursor } => {
            return Ok(Looked {
                look: Look::Reset(reason),
                cursor: Some(cursor),
            });
        }
        Poll::Unavailable(why) => {
            return Ok(Looked {
                look: Look::Unavailable(why),
                cursor: None,
            });
        }
        Poll::Changes { changes, cursor } => (changes, cursor),
    };
    // the common look: nothing changed, nothing read from the store
    let quiet = |cursor| Looked {
        look: Look::Quiet {
            changes: 0,
            joiners: 0,
        },
        cursor: Some(cursor),
    };
    if changes.is_empty() {
        return Ok(quiet(cursor));
    }
    let known = Known::load(store)?;
    let changes = known.complete(changes);
    if changes.is_empty() {
        return Ok(quiet(cursor));
    }
    let now = Utc::now();
    let since = changes
        .iter()
        .filter_map(|c| c.at)
        .min()
        .unwrap_or(now)
        .min(now);
    if changes.len() > MAX_CONFIRMED {
        let found = Found {
            bulk: Some(changes.len()),
            since,
            ..Found::default()
        };
        return Ok(Looked {
            look: Look::Act(found),
            cursor: Some(cursor),
        });
    }
    let seen = source.confirm(&changes).await?;
    let mut found = known.classify(cfg, &seen);
    found.since = since;
    let act = !found.leavers.is_empty()
        || !found.returners.is_empty()
        || !found.changed.is_empty()
        || (cfg.sync.watch_joiners && !found.joiners.is_empty());
    let look = if act {
        Look::Act(found)
    } else {
        Look::Quiet {
            changes: changes.len(),
            joiners: found.joiners.len(),
        }
    };
    Ok(Looked {
        look,
        cursor: Some(cursor),
    })
}

/// Whether the fast lane has a change feed for the directory of `cfg`, in one sentence for
/// `test` and the window (`None` when `sync.watch_seconds` is 0). Costs the directory what a
/// feed's start costs: a search that matches nothing (LDAP, DirSync), base reads (AD), or a
/// token and one read of the log or the delta links (the cloud directories).
pub async fn availability(cfg: &Config, secret: String) -> Option<String> {
    let period = cfg.sync.watch_seconds;
    if period == 0 {
        return None;
    }
    let without = |why: String| {
        format!(
            "no change feed: {why}; a full read every {} s instead",
            period * 10
        )
    };
    let Some(source) = feed_source(cfg, secret) else {
        return Some(without(NO_DIRECTORY.into()));
    };
    Some(match source.poll(None).await {
        Ok(Poll::Unavailable(why)) => without(why),
        Ok(Poll::Started(c) | Poll::Reset { cursor: c, .. } | Poll::Changes { cursor: c, .. }) => {
            let feed = feed_name(&c.feed);
            let blind = c
                .blind_spot()
                .map(|b| format!("; but {b}: a full read every {} s finds it", period * 10))
                .unwrap_or_default();
            format!(
                "the directory's change feed ({feed}) is available: a change reaches the \
                 organization within about {period} s{blind}"
            )
        }
        Err(e) => without(format!("the change feed cannot be read ({e:#})")),
    })
}

/// What holding the fast lane's doorbell came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Doorbell {
    /// This directory has none (not LDAP or AD: the cloud feeds have no persistent form), or
    /// the lane is off.
    Absent,
    /// Not yet: no cursor to start from (OpenLDAP's starts from the cookie).
    NotYet,
    /// The server ended the persistent search: why.
    Ended(String),
}

/// Whether the directory of `cfg` may have a doorbell (LDAP or AD, the lane on).
pub fn has_doorbell(cfg: &Config) -> bool {
    cfg.directory.kind == Some(DirectoryType::Ldap) && cfg.sync.watch_seconds > 0
}

/// Holds the fast lane's doorbell for the LDAP directory of `cfg` (see
/// [`LdapSource::doorbell`]) until the server ends it.
pub async fn doorbell(
    cfg: &Config,
    secret: String,
    cursor: Option<Cursor>,
    ring: &(dyn Fn() + Send + Sync),
) -> anyhow::Result<Doorbell> {
    let source = LdapSource {
        ldap: cfg.ldap.clone(),
        sync: cfg.sync.clone(),
        password: secret,
    };
    Ok(match source.doorbell(cursor.as_ref(), ring).await? {
        Some(why) => Doorbell::Ended(why),
        None => Doorbell::NotYet,
    })
}

/// What the connector knows of the organization, from the store.
struct Known {
    /// Synced members: externalId → email.
    members: HashMap<String, String>,
    /// Synced groups' externalIds.
    groups: HashSet<String>,
    /// Members the connector revoked.
    revoked: HashSet<String>,
    /// Immutable id → externalId.
    identities: HashMap<String, String>,
}

impl Known {
    fn load(store: &Store) -> anyhow::Result<Known> {
        Ok(Known {
            members: store.cached_members()?,
            groups: store.load_group_lists()?.into_keys().collect(),
            revoked: store.kept().revoke_times().into_keys().collect(),
            identities: store.load_identities()?,
        })
    }

    /// The feed's changes with what it left implied (a deleted entry named by its entryUUID
    /// gets its DN, its externalId), each entry once.
    fn complete(&self, mut changes: Vec<Change>) -> Vec<Change> {
        // a log that names users by email (Google's): the synced member with that email
        let by_email: HashMap<String, &String> = if changes
            .iter()
            .any(|c| c.id.as_deref().is_some_and(|i| i.starts_with("email:")))
        {
            self.members
                .iter()
                .map(|(ext, email)| (format!("email:{}", email.trim().to_lowercase()), ext))
                .collect()
        } else {
            HashMap::new()
        };
        for c in &mut changes {
            if c.dn.is_none()
                && let Some(id) = &c.id
                && let Some(ext) = self
                    .identities
                    .get(id)
                    .or_else(|| by_email.get(id).copied())
            {
                c.dn = Some(ext.clone());
            }
        }
        let mut seen = HashSet::new();
        changes.retain(|c| {
            let key = c.dn.clone().or_else(|| c.id.clone()).unwrap_or_default();
            !key.is_empty() && seen.insert(key.to_ascii_lowercase())
        });
        changes
    }

    /// What each confirmed entry means for the organization.
    fn classify(&self, cfg: &Config, seen: &[Seen]) -> Found {
        let mut found = Found::default();
        // a user read under another name is not gone (an email renamed: the old one is not
        // found, the new one is the same user)
        let present: HashSet<String> = seen
            .iter()
            .filter_map(|s| match s {
                Seen::User(u) => Some(u.external_id.to_string()),
                _ => None,
            })
            .collect();
        for s in seen {
            match s {
                Seen::User(u) => {
                    let ext = u.external_id.to_string();
                    let email = u
                        .email
                        .as_deref()
                        .map(|e| e.trim().to_lowercase())
                        .filter(|e| !e.is_empty());
                    let active = !u.deleted && !u.disabled && email.is_some();
                    let synced = self.members.get(&ext);
                    let revoked = self.revoked.contains(&ext);
                    let name = u.reference_id.clone();
                    if active && revoked {
                        found.returners.push(name);
                    } else if active {
                        match synced {
                            None => found.joiners.push(name),
                            Some(was) if Some(was.trim().to_lowercase()) != email => {
                                found.changed.push(format!("{name} (email)"));
                            }
                            Some(_) => {}
                        }
                    } else if synced.is_some() && !revoked {
                        // a disabled entry is a leaver only where the sync acts on it
                        if !u.disabled || u.deleted || cfg.sync.remove_disabled {
                            found.leavers.push(name);
                        }
                    }
                }
                Seen::Group(id) => found.changed.push(format!("group {id}")),
                Seen::Gone { dn, id } => {
                    // the entry's keys: its DN (LDAP's externalId) and its id (AD's GUID)
                    let keys = || [dn, id].into_iter().flatten().map(String::as_str);
                    if keys().any(|k| present.contains(k)) {
                        continue;
                    }
                    let name = dn.clone().or_else(|| id.clone()).unwrap_or_default();
                    if keys().any(|k| self.members.contains_key(k) && !self.revoked.contains(k)) {
                        found.leavers.push(name);
                    } else if keys().any(|k| self.groups.contains(k)) {
                        found.changed.push(format!("group {name} (gone)"));
                    }
                }
            }
        }
        // a user read twice (a rename named both ways) is one change
        let mut once = HashSet::new();
        found.changed.retain(|c| once.insert(c.clone()));
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::DirUser;

    fn known() -> Known {
        Known {
            members: [
                ("uid=ann,dc=x".to_string(), "ann@x.test".to_string()),
                ("uid=bob,dc=x".to_string(), "bob@x.test".to_string()),
                ("uid=cy,dc=x".to_string(), "cy@x.test".to_string()),
            ]
            .into(),
            groups: ["cn=g,dc=x".to_string()].into(),
            revoked: ["uid=cy,dc=x".to_string()].into(),
            identities: [
                ("entryUUID:1".to_string(), "uid=ann,dc=x".to_string()),
                ("entryUUID:2".to_string(), "uid=bob,dc=x".to_string()),
            ]
            .into(),
        }
    }

    fn user(dn: &str, email: Option<&str>, disabled: bool) -> Seen {
        Seen::User(DirUser {
            reference_id: dn.into(),
            external_id: dn.into(),
            email: email.map(str::to_string),
            disabled,
            deleted: false,
            unreadable: None,
            immutable_id: None,
        })
    }

    #[test]
    fn a_deleted_uuid_gets_its_dn_and_each_entry_counts_once() {
        let k = known();
        let deleted = Change {
            dn: None,
            id: Some("entryUUID:2".into()),
            deleted: true,
            at: None,
        };
        let out = k.complete(vec![deleted.clone(), deleted]);
        assert_eq!(out.len(), 1, "each entry once");
        assert_eq!(out[0].dn.as_deref(), Some("uid=bob,dc=x"));
    }

    #[test]
    fn a_log_that_names_emails_finds_the_member_and_a_rename_is_no_leaver() {
        let k = known();
        let named = |id: &str| Change {
            dn: None,
            id: Some(id.into()),
            deleted: false,
            at: None,
        };
        let out = k.complete(vec![named("email:ann@x.test"), named("email:new@x.test")]);
        assert_eq!(out[0].dn.as_deref(), Some("uid=ann,dc=x"));
        assert_eq!(out[1].dn, None, "nobody synced has it");
        // ann renamed: her old email is not found, her new one is ann
        let seen = vec![
            Seen::Gone {
                dn: Some("uid=ann,dc=x".into()),
                id: Some("email:ann@x.test".into()),
            },
            user("uid=ann,dc=x", Some("ann2@x.test"), false),
        ];
        let f = k.classify(&Config::default(), &seen);
        assert!(f.leavers.is_empty(), "{f:?}");
        assert_eq!(f.changed, vec!["uid=ann,dc=x (email)"]);
    }

    #[test]
    fn only_what_the_organization_must_follow_acts() {
        let k = known();
        let mut cfg = Config::default();
        let seen = vec![
            // still there, same email: nothing
            user("uid=ann,dc=x", Some("Ann@X.test "), false),
            // gone: a leaver
            Seen::Gone {
                dn: Some("uid=bob,dc=x".into()),
                id: None,
            },
            // revoked by the connector and back: a returner
            user("uid=cy,dc=x", Some("cy@x.test"), false),
            // new: a joiner
            user("uid=dee,dc=x", Some("dee@x.test"), false),
            // a group
            Seen::Group("cn=g,dc=x".into()),
        ];
        let f = k.classify(&cfg, &seen);
        assert_eq!(f.leavers, vec!["uid=bob,dc=x"]);
        assert_eq!(f.returners, vec!["uid=cy,dc=x"]);
        assert_eq!(f.joiners, vec!["uid=dee,dc=x"]);
        assert_eq!(f.changed, vec!["group cn=g,dc=x"]);
        // disabled counts as a leaver only where the sync removes disabled users
        let disabled = [user("uid=ann,dc=x", Some("ann@x.test"), true)];
        assert!(k.classify(&cfg, &disabled).leavers.is_empty());
        cfg.sync.remove_disabled = true;
        assert_eq!(k.classify(&cfg, &disabled).leavers, vec!["uid=ann,dc=x"]);
        // an email change
        let moved = [user("uid=ann,dc=x", Some("ann2@x.test"), false)];
        assert_eq!(
            k.classify(&cfg, &moved).changed,
            vec!["uid=ann,dc=x (email)"]
        );
        assert!(
            f.summary().contains("1 leaver (uid=bob,dc=x)"),
            "{}",
            f.summary()
        );
    }
}
