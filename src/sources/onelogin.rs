//! OneLogin source (API v1, OAuth2 v2 token renewed before it expires and once on a 401): users
//! and roles (OneLogin's groups, as upstream) with `pagination.next_link` cursor paging, and a
//! rate-limit budget like Okta's from the `X-RateLimit-Limit/Remaining/Reset` headers (the reset
//! is in seconds from now). Role members are the users whose `role_id` lists the role.
//! externalIds are always strings (Vaultwarden rejects numbers).
//!
//! The fast lane's feed is the Events API (`GET /api/1/events` since a time, only the event
//! types that change users and role assignments, chosen by name from `/api/1/events/types`);
//! each user it names is read once (`GET /api/1/users?id=`), each role once.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;

use super::feed::{Change, Cursor, Event, EventLog, NotAllowed, Poll, Seen};
use super::filter::Filter;
use super::http::{Api, Auth, OAuth, Page};
use crate::config::{OneLoginConfig, SyncConfig};
use crate::engine::{DirGroup, DirUser, Id, Snapshot};
use crate::progress::Progress;

pub struct OneLoginSource {
    pub onelogin: OneLoginConfig,
    pub sync: SyncConfig,
    pub secret: String,
    pub ca_file: Option<PathBuf>,
}

fn looks_like_email(s: &str) -> bool {
    let s = s.trim();
    match s.split_once('@') {
        Some((a, b)) => !a.is_empty() && b.contains('.') && !s.contains(char::is_whitespace),
        None => false,
    }
}

/// A JSON id (number or string) as a string.
fn id_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// A user from a OneLogin user object; `None` when it has no id. Without an email-like
/// `email`, an email-like `username` is taken, else (`suffix`: `sync.use_email_prefix_suffix`
/// with a suffix) the username with the suffix. Status 2 is suspended (disabled).
pub fn user_of(u: &serde_json::Value, suffix: Option<&str>) -> Option<DirUser> {
    let id = id_string(&u["id"])?;
    let mut email = u["email"].as_str().map(str::to_string);
    if !email.as_deref().is_some_and(looks_like_email)
        && let Some(name) = u["username"].as_str().filter(|n| !n.is_empty())
    {
        if looks_like_email(name) {
            email = Some(name.to_string());
        } else if let Some(suffix) = suffix.filter(|s| !s.is_empty()) {
            email = Some(format!("{name}{suffix}"));
        }
    }
    Some(DirUser {
        reference_id: id.clone(),
        external_id: Id::from(id),
        email,
        disabled: u["status"].as_i64() == Some(2),
        deleted: false,
        unreadable: None,
        immutable_id: None,
    })
}

/// The ids of the users whose `role_id` lists the role.
pub fn role_members(role: &str, raw_users: &[serde_json::Value]) -> Vec<Id> {
    raw_users
        .iter()
        .filter(|u| {
            u["role_id"]
                .as_array()
                .is_some_and(|ids| ids.iter().any(|x| id_string(x).as_deref() == Some(role)))
        })
        .filter_map(|u| id_string(&u["id"]).map(Id::from))
        .collect()
}

/// How long to wait so that `reserve_percent` of the hour's calls stay unused: OneLogin sends
/// the limit, the calls remaining and the seconds until the reset,
/// <https://developers.onelogin.com/api-docs/1/oauth20-tokens/get-rate-limit>.
fn budget_wait(
    headers: &reqwest::header::HeaderMap,
    reserve_percent: u32,
    max: Duration,
) -> Option<Duration> {
    let num = |k: &str| super::http::header_num(headers, k);
    let limit = num("x-ratelimit-limit")?;
    let remaining = num("x-ratelimit-remaining")?;
    let reset = num("x-ratelimit-reset")?.max(0) as u64;
    super::http::budget_wait(
        limit,
        remaining,
        Duration::from_secs(reset),
        reserve_percent,
        max,
    )
}

/// Whether an event type (by its name in `/api/1/events/types`) can change who is in the
/// organization: a user created, changed, activated, suspended, deactivated or deleted, or a
/// role given or taken (not sign-ins, password changes, apps),
/// <https://developers.onelogin.com/api-docs/1/events/event-types>.
pub fn watched_event_type(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    n.contains("USER")
        && !n.contains("PASSWORD")
        && [
            "CREATED",
            "DELETED",
            "ACTIVATED",
            "SUSPEND",
            "UPDATED",
            "ROLE",
        ]
        .iter()
        .any(|k| n.contains(k))
}

/// The feed's events of one OneLogin event: its user, and its role when it names one.
pub fn events_of(e: &serde_json::Value) -> Vec<Event> {
    let (Some(id), Some(at)) = (
        id_string(&e["id"]),
        e["created_at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()),
    ) else {
        return Vec::new();
    };
    let at = at.with_timezone(&chrono::Utc);
    let user = id_string(&e["user_id"]).map(|u| (u, false));
    let role = id_string(&e["role_id"]).map(|r| (format!("group:{r}"), false));
    user.into_iter()
        .chain(role)
        .map(|(target, deleted)| Event {
            id: format!("{id}/{target}"),
            at,
            change: Change {
                dn: None,
                id: Some(target),
                deleted,
                at: None,
            },
        })
        .collect()
}

impl OneLoginSource {
    /// Which directory a fast-lane cursor belongs to (the API and the filters).
    pub fn feed_directory(&self) -> String {
        format!(
            "onelogin|{}|{}|{}",
            self.onelogin.base(),
            self.sync.user_filter.as_deref().unwrap_or_default(),
            self.sync.group_filter.as_deref().unwrap_or_default()
        )
    }

    /// A refused call as the feed's [`NotAllowed`] (401 or 403 after the token was renewed:
    /// the API credential's scope does not reach events), else the error itself.
    fn not_allowed(e: anyhow::Error) -> anyhow::Error {
        match super::http::refused(&e).filter(|r| r.status == 401 || r.status == 403) {
            Some(r) => NotAllowed(format!(
                "this OneLogin API credential may not read events (HTTP {}); it needs the \
                 \"Read All\" scope",
                r.status
            ))
            .into(),
            None => e,
        }
    }

    /// The ids of the event types the feed reads ([`watched_event_type`]).
    async fn event_types(&self, api: &Api) -> anyhow::Result<Vec<i64>> {
        let types = self
            .list(api, self.url("events/types", None))
            .await
            .map_err(Self::not_allowed)?;
        Ok(types
            .iter()
            .filter(|t| t["name"].as_str().is_some_and(watched_event_type))
            .filter_map(|t| t["id"].as_i64())
            .collect())
    }

    /// The fast lane's look: the events since the cursor (a minute read again for events
    /// logged late). The event types are read when the feed starts and kept in the cursor.
    pub async fn poll_feed(&self, cursor: Option<&Cursor>) -> anyhow::Result<Poll> {
        let api = self.api()?;
        let directory = self.feed_directory();
        let kept = cursor
            .filter(|c| c.directory == directory && !c.event_types.is_empty())
            .map(|c| c.event_types.clone());
        let types = match kept {
            Some(t) => t,
            None => match self.event_types(&api).await {
                Ok(t) if t.is_empty() => {
                    return Ok(Poll::Unavailable(
                        "OneLogin lists no event type for users or roles".into(),
                    ));
                }
                Ok(t) => t,
                Err(e) => match e.downcast::<NotAllowed>() {
                    Ok(n) => return Ok(Poll::Unavailable(n.0)),
                    Err(e) => return Err(e),
                },
            },
        };
        let log = EventLog {
            directory,
            feed: "onelogin-events",
            overlap: chrono::Duration::seconds(60),
        };
        let poll =
            super::feed::poll_events(&log, cursor, |from| self.events_since(&api, from, &types))
                .await?;
        let with_types = |mut c: Cursor| {
            c.event_types = types.clone();
            c
        };
        Ok(match poll {
            Poll::Started(c) => Poll::Started(with_types(c)),
            Poll::Changes { changes, cursor } => Poll::Changes {
                changes,
                cursor: with_types(cursor),
            },
            Poll::Reset { reason, cursor } => Poll::Reset {
                reason,
                cursor: with_types(cursor),
            },
            other => other,
        })
    }

    /// The events of `types` since `from`, oldest first,
    /// <https://developers.onelogin.com/api-docs/1/events/get-events>.
    async fn events_since(
        &self,
        api: &Api,
        from: chrono::DateTime<chrono::Utc>,
        types: &[i64],
    ) -> anyhow::Result<Vec<Event>> {
        let types: Vec<String> = types.iter().map(i64::to_string).collect();
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair(
                "since",
                &from.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            )
            .append_pair("event_type_id", &types.join(","))
            .append_pair("sort", "+id")
            .finish();
        let raw = self
            .list(api, self.url("events", Some(&query)))
            .await
            .map_err(Self::not_allowed)?;
        Ok(raw.iter().flat_map(events_of).collect())
    }

    /// Reads each changed user or role once (`users?id=` with the native query, so that a
    /// user it no longer matches is gone; `roles?id=`): a user as it is now, a role when it
    /// is synced; not found is gone.
    pub async fn confirm(&self, changes: &[Change]) -> anyhow::Result<Vec<Seen>> {
        let api = self.api()?;
        let user_filter = Filter::parse(self.sync.user_filter.as_deref());
        let group_filter = Filter::parse(self.sync.group_filter.as_deref());
        let suffix = self.sync.email_suffix.clone().unwrap_or_default();
        let suffix = self.sync.use_email_prefix_suffix.then_some(suffix.as_str());
        let mut out = Vec::with_capacity(changes.len());
        for c in changes {
            let Some(id) = c.id.as_deref() else { continue };
            let enc =
                |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
            if let Some(r) = id.strip_prefix("group:") {
                let q = format!("id={}", enc(r));
                let found = self.list(&api, self.url("roles", Some(&q))).await?;
                let name = found
                    .iter()
                    .find(|x| id_string(&x["id"]).as_deref() == Some(r))
                    .and_then(|x| x["name"].as_str());
                out.push(Seen::group(&self.sync, &group_filter, r, name));
                continue;
            }
            let q = match user_filter.query.as_deref() {
                Some(extra) => format!("id={}&{extra}", enc(id)),
                None => format!("id={}", enc(id)),
            };
            let found = self.list(&api, self.url("users", Some(&q))).await?;
            let user = found
                .iter()
                .find(|x| id_string(&x["id"]).as_deref() == Some(id))
                .and_then(|x| user_of(x, suffix));
            out.push(Seen::user(user, &user_filter, c));
        }
        Ok(out)
    }

    /// The API client, signing in with the client id and secret.
    fn api(&self) -> anyhow::Result<Api> {
        let mut api = Api::new("OneLogin", self.ca_file.as_deref())?;
        let url = format!("{}/auth/oauth2/v2/token", self.onelogin.base());
        let id = self
            .onelogin
            .client_id
            .as_deref()
            .unwrap_or_default()
            .trim()
            .to_string();
        let secret = self.secret.clone();
        let http = api.http.clone();
        let token_url = url.clone();
        api.auth = Auth::OAuth(OAuth {
            what: format!("POST {url}"),
            request: Box::new(move || {
                Ok(http
                    .post(&token_url)
                    .basic_auth(&id, Some(&secret))
                    .header("Accept", "application/json")
                    .json(&serde_json::json!({"grant_type": "client_credentials"})))
            }),
            scheme: "bearer:",
        });
        Ok(api)
    }

    /// Every item of a listing, following `pagination.next_link`.
    async fn list(&self, api: &Api, first: String) -> anyhow::Result<Vec<serde_json::Value>> {
        let reserve = self.onelogin.rate_limit_reserve_percent;
        let max = api.max_server_wait;
        api.list(first, |u, mut a| {
            let code = a.json["status"]["code"].as_i64().unwrap_or(200);
            if code != 200 {
                return Err(anyhow!(
                    "OneLogin: GET {u}: status {code}: {}",
                    a.json["status"]["message"]
                        .as_str()
                        .unwrap_or("API call failed")
                ));
            }
            let serde_json::Value::Array(items) = a.json["data"].take() else {
                return Err(anyhow!("OneLogin: GET {u}: no `data` list in the answer"));
            };
            let next = a.json["pagination"]["next_link"]
                .as_str()
                .filter(|l| !l.is_empty())
                .map(str::to_string);
            let wait = budget_wait(&a.headers, reserve, max);
            if let Some(w) = wait {
                tracing::info!(
                    "OneLogin: rate-limit budget low; waiting {} s for the reset",
                    w.as_secs()
                );
            }
            Ok(Page { items, next, wait })
        })
        .await
    }

    fn url(&self, path: &str, query: Option<&str>) -> String {
        let base = format!("{}/api/1/{path}", self.onelogin.base());
        match query {
            Some(q) => format!("{base}?{q}"),
            None => base,
        }
    }

    pub async fn fetch(&self, progress: &dyn Progress) -> anyhow::Result<Snapshot> {
        let api = self.api()?;
        progress.stage("Signing in to OneLogin");
        api.sign_in().await?;
        let user_filter = Filter::parse(self.sync.user_filter.as_deref());
        let group_filter = Filter::parse(self.sync.group_filter.as_deref());
        let suffix = self.sync.email_suffix.clone().unwrap_or_default();
        let mut users: Vec<DirUser> = Vec::new();
        let mut raw_users: Vec<serde_json::Value> = Vec::new();
        if self.sync.users || self.sync.groups {
            progress.stage("Reading OneLogin users");
            raw_users = self
                .list(&api, self.url("users", user_filter.query.as_deref()))
                .await?;
            progress.count(raw_users.len() as u64);
            let suffix = self.sync.use_email_prefix_suffix.then_some(suffix.as_str());
            for u in &raw_users {
                let Some(user) = user_of(u, suffix) else {
                    continue;
                };
                if !user_filter.passes(user.email.as_deref()) {
                    continue;
                }
                users.push(user);
            }
        }
        let mut groups: Vec<DirGroup> = Vec::new();
        if self.sync.groups {
            progress.stage("Reading OneLogin roles");
            let roles = self
                .list(&api, self.url("roles", group_filter.query.as_deref()))
                .await?;
            for r in roles {
                let Some(id) = id_string(&r["id"]) else {
                    continue;
                };
                let name = r["name"].as_str().map(str::to_string);
                if !group_filter.passes(name.as_deref()) {
                    continue;
                }
                let members = role_members(&id, &raw_users);
                groups.push(DirGroup {
                    reference_id: id.clone(),
                    external_id: id,
                    name,
                    user_members: members,
                    group_members: Vec::new(),
                    unreadable: None,
                });
            }
        }
        Ok(super::filter::snapshot(
            &self.sync,
            users,
            groups,
            &group_filter,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_feed_reads_user_and_role_events_only() {
        for (name, watched) in [
            ("CREATED_USER", true),
            ("DELETED_USER", true),
            ("DEACTIVATED_USER", true),
            ("USER_ASSIGNED_ROLE", true),
            ("USER_LOGGED_INTO_ONELOGIN", false),
            ("USER_CHANGED_PASSWORD", false),
            ("APP_ADDED_TO_ROLE", false),
            ("USER_ASSUMED_USER", false),
        ] {
            assert_eq!(watched_event_type(name), watched, "{name}");
        }
        let e = serde_json::json!({"id": 77, "created_at": "2026-12-07T10:00:00.123Z",
                                   "event_type_id": 4, "user_id": 1003, "role_id": 501});
        let got: Vec<_> = events_of(&e)
            .into_iter()
            .map(|e| (e.id, e.change.id.unwrap_or_default()))
            .collect();
        assert_eq!(
            got,
            [
                ("77/1003".to_string(), "1003".to_string()),
                ("77/group:501".to_string(), "group:501".to_string())
            ]
        );
        assert!(
            events_of(&serde_json::json!({"id": 1})).is_empty(),
            "no time"
        );
    }

    #[test]
    fn ids_are_strings_and_emails_are_checked() {
        assert_eq!(
            id_string(&serde_json::json!(12345)).as_deref(),
            Some("12345")
        );
        assert_eq!(id_string(&serde_json::json!("abc")).as_deref(), Some("abc"));
        assert_eq!(id_string(&serde_json::json!(null)), None);
        assert!(looks_like_email("a@b.co"));
        assert!(!looks_like_email("alice"));
        assert!(!looks_like_email("a @b.co"));
    }
}
