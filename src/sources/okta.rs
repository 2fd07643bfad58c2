//! Okta source (REST API v1): users (active and deprovisioned), groups and each group's users,
//! with `Link: rel="next"` paging, `SSWS` token auth (API tokens do not expire while used), and a
//! rate-limit budget that waits for the window to reset before the org's limit is reached
//! (`X-Rate-Limit-*` headers). A native user query is sent as `search` (Okta's `filter` knows
//! only status, lastUpdated, id and a few profile fields, and refuses `profile.*` otherwise with
//! E0000031); search results include DEPROVISIONED users, so they are read once.
//!
//! The fast lane's feed is the System Log (`GET /api/v1/logs` since a time, ascending, only
//! the user lifecycle, profile and group membership events); each user it names is read once
//! (`GET /api/v1/users/{id}`, or a `search` by id with the native query), each group once
//! (`GET /api/v1/groups/{id}`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use reqwest::header::HeaderMap;

use super::feed::{Change, Cursor, Event, EventLog, NotAllowed, Poll, Seen};
use super::filter::Filter;
use super::http::{Api, Auth, Page};
use crate::config::{OktaConfig, SyncConfig};
use crate::engine::{DirGroup, DirUser, Id, Snapshot};
use crate::progress::Progress;

pub struct OktaSource {
    pub okta: OktaConfig,
    pub sync: SyncConfig,
    pub token: String,
    pub ca_file: Option<PathBuf>,
}

/// A user from an Okta user object; `None` when it has no id. `SUSPENDED` is disabled,
/// `DEPROVISIONED` deleted.
pub fn user_of(u: &serde_json::Value) -> Option<DirUser> {
    let id = u["id"].as_str()?;
    let status = u["status"].as_str().unwrap_or_default();
    Some(DirUser {
        reference_id: id.to_string(),
        external_id: Id::from(id),
        email: u["profile"]["email"].as_str().map(str::to_string),
        disabled: status == "SUSPENDED",
        deleted: status == "DEPROVISIONED",
        unreadable: None,
        immutable_id: None,
    })
}

/// The `rel="next"` URL of a `Link` header.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all("link")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find(|part| part.contains("rel=\"next\""))
        .and_then(|part| {
            let start = part.find('<')? + 1;
            let end = part.find('>')?;
            Some(part[start..end].trim().to_string())
        })
}

/// How long to wait so that `reserve_percent` of the window's calls stay unused.
fn budget_wait(headers: &HeaderMap, reserve_percent: u32) -> Option<Duration> {
    let num = |k: &str| super::http::header_num(headers, k);
    let limit = num("x-rate-limit-limit")?;
    let remaining = num("x-rate-limit-remaining")?;
    // Okta's reset is an epoch second; its windows are a minute long
    let reset = (num("x-rate-limit-reset")? - chrono::Utc::now().timestamp()).max(0);
    super::http::budget_wait(
        limit,
        remaining,
        Duration::from_secs(reset as u64),
        reserve_percent,
        Duration::from_secs(61),
    )
}

/// The System Log events that can change who is in the organization: a user's lifecycle,
/// profile (the email) and group memberships,
/// <https://developer.okta.com/docs/reference/api/event-types/>.
pub const LOG_EVENTS: [&str; 11] = [
    "user.lifecycle.create",
    "user.lifecycle.activate",
    "user.lifecycle.deactivate",
    "user.lifecycle.reactivate",
    "user.lifecycle.suspend",
    "user.lifecycle.unsuspend",
    "user.lifecycle.delete.initiated",
    "user.lifecycle.delete.completed",
    "user.account.update_profile",
    "group.user_membership.add",
    "group.user_membership.remove",
];

/// The feed's events of one System Log event: one per user or group it targets.
pub fn events_of(e: &serde_json::Value) -> Vec<Event> {
    let (Some(uuid), Some(at)) = (
        e["uuid"].as_str(),
        e["published"]
            .as_str()
            .and_then(|p| chrono::DateTime::parse_from_rfc3339(p).ok()),
    ) else {
        return Vec::new();
    };
    let kind = e["eventType"].as_str().unwrap_or_default();
    let deleted = kind.starts_with("user.lifecycle.delete") || kind == "user.lifecycle.deactivate";
    let targets = e["target"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    targets
        .iter()
        .filter_map(|t| {
            let id = t["id"].as_str()?;
            let (id, deleted) = match t["type"].as_str()? {
                "User" => (id.to_string(), deleted),
                "UserGroup" => (format!("group:{id}"), false),
                _ => return None,
            };
            Some(Event {
                id: format!("{uuid}/{id}"),
                at: at.with_timezone(&chrono::Utc),
                change: Change {
                    dn: None,
                    id: Some(id),
                    deleted,
                    at: None,
                },
            })
        })
        .collect()
}

impl OktaSource {
    fn api(&self) -> anyhow::Result<Api> {
        let mut api = Api::new("Okta", self.ca_file.as_deref())?;
        api.auth = Auth::Fixed(format!("SSWS {}", self.token));
        Ok(api)
    }

    /// Which directory a fast-lane cursor belongs to (the org and the filters).
    pub fn feed_directory(&self) -> String {
        format!(
            "okta|{}|{}|{}",
            self.base(),
            self.sync.user_filter.as_deref().unwrap_or_default(),
            self.sync.group_filter.as_deref().unwrap_or_default()
        )
    }

    /// The fast lane's look: the System Log's events since the cursor (a minute read again
    /// for events logged late).
    pub async fn poll_feed(&self, cursor: Option<&Cursor>) -> anyhow::Result<Poll> {
        let api = self.api()?;
        let log = EventLog {
            directory: self.feed_directory(),
            feed: "okta-log",
            overlap: chrono::Duration::seconds(60),
        };
        super::feed::poll_events(&log, cursor, |from| self.log_since(&api, from)).await
    }

    /// The System Log's events of [`LOG_EVENTS`] from `from`, oldest first; the listing ends
    /// at an empty page (a polling query always has a `next` link),
    /// <https://developer.okta.com/docs/reference/api/system-log/>.
    async fn log_since(
        &self,
        api: &Api,
        from: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<Vec<Event>> {
        let mut u = url::Url::parse(&format!("{}/logs", self.base()))
            .map_err(|e| anyhow!("okta.org_url: {e}"))?;
        let filter = LOG_EVENTS
            .iter()
            .map(|e| format!("eventType eq \"{e}\""))
            .collect::<Vec<_>>()
            .join(" or ");
        u.query_pairs_mut()
            .append_pair(
                "since",
                &from.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            )
            .append_pair("sortOrder", "ASCENDING")
            .append_pair("limit", "1000")
            .append_pair("filter", &filter);
        let raw = match self.list(api, u.to_string()).await {
            Ok(raw) => raw,
            Err(e) => {
                // the message names no time or URL: the lane says it once while it stays
                if let Some(r) = super::http::refused(&e).filter(|r| r.status == 403) {
                    return Err(NotAllowed(format!(
                        "this Okta API token may not read the System Log (HTTP 403{}); its \
                         admin needs the Report (read-only) administrator role or more",
                        r.code
                            .as_deref()
                            .map(|c| format!(" {c}"))
                            .unwrap_or_default()
                    ))
                    .into());
                }
                return Err(e);
            }
        };
        Ok(raw.iter().flat_map(events_of).collect())
    }

    /// Reads each changed user or group once: a user as it is now (through the native query
    /// when there is one: a user it no longer matches is gone), a group when it is synced; a
    /// 404 is gone.
    pub async fn confirm(&self, changes: &[Change]) -> anyhow::Result<Vec<Seen>> {
        let api = self.api()?;
        let user_filter = Filter::parse(self.sync.user_filter.as_deref());
        let group_filter = Filter::parse(self.sync.group_filter.as_deref());
        let mut out = Vec::with_capacity(changes.len());
        for c in changes {
            let Some(id) = c.id.as_deref() else { continue };
            if let Some(g) = id.strip_prefix("group:") {
                let found = api
                    .get_optional(&format!("{}/groups/{g}", self.base()))
                    .await?;
                let name = found
                    .as_ref()
                    .and_then(|a| a.json["profile"]["name"].as_str());
                out.push(Seen::group(&self.sync, &group_filter, g, name));
                continue;
            }
            let raw = match user_filter.query.as_deref() {
                Some(q) => {
                    let search = format!("id eq \"{id}\" and ({q})");
                    let found = self
                        .list(&api, self.url("users", Some(("search", &search)))?)
                        .await?;
                    found.into_iter().next()
                }
                // a deleted user is 404 E0000007
                None => api
                    .get_optional(&format!("{}/users/{id}", self.base()))
                    .await?
                    .map(|a| a.json),
            };
            out.push(Seen::user(raw.as_ref().and_then(user_of), &user_filter, c));
        }
        Ok(out)
    }

    fn base(&self) -> String {
        format!(
            "{}/api/v1",
            self.okta
                .org_url
                .as_deref()
                .unwrap_or_default()
                .trim()
                .trim_end_matches('/')
        )
    }

    /// Every item of a listing, following `Link: rel="next"`.
    async fn list(&self, api: &Api, first: String) -> anyhow::Result<Vec<serde_json::Value>> {
        let reserve = self.okta.rate_limit_reserve_percent;
        api.list(first, |u, a| {
            let serde_json::Value::Array(items) = a.json else {
                return Err(anyhow!("Okta: GET {u}: the answer is not a list"));
            };
            let wait = budget_wait(&a.headers, reserve);
            if let Some(wait) = wait {
                tracing::info!("Okta: rate-limit budget low; waiting {wait:?} for the reset");
            }
            // an empty page ends the listing whatever the Link header says
            let next = if items.is_empty() {
                None
            } else {
                next_link(&a.headers)
            };
            Ok(Page { items, next, wait })
        })
        .await
    }

    /// A listing URL with `limit` and an optional query parameter (`filter` or `search`).
    fn url(&self, path: &str, query: Option<(&str, &str)>) -> anyhow::Result<String> {
        let mut u = url::Url::parse(&format!("{}/{path}", self.base()))
            .map_err(|e| anyhow!("okta.org_url: {e}"))?;
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("limit", "200");
            if let Some((k, v)) = query {
                q.append_pair(k, v);
            }
        }
        Ok(u.to_string())
    }

    /// The users: with a native query one `search` (it matches any status, DEPROVISIONED
    /// included); without, the list (which leaves DEPROVISIONED users out) and the
    /// DEPROVISIONED ones by `filter`.
    /// <https://developer.okta.com/docs/api/openapi/okta-management/management/tag/User/#tag/User/operation/listUsers>
    async fn raw_users(
        &self,
        api: &Api,
        query: Option<&str>,
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        if let Some(q) = query {
            return self
                .list(api, self.url("users", Some(("search", q)))?)
                .await;
        }
        let mut raw = self.list(api, self.url("users", None)?).await?;
        raw.extend(
            self.list(
                api,
                self.url("users", Some(("filter", "status eq \"DEPROVISIONED\"")))?,
            )
            .await?,
        );
        Ok(raw)
    }

    pub async fn fetch(&self, progress: &dyn Progress) -> anyhow::Result<Snapshot> {
        let api = self.api()?;
        let user_filter = Filter::parse(self.sync.user_filter.as_deref());
        let group_filter = Filter::parse(self.sync.group_filter.as_deref());
        let mut users: Vec<DirUser> = Vec::new();
        if self.sync.users {
            progress.stage("Reading Okta users");
            let raw = self.raw_users(&api, user_filter.query.as_deref()).await?;
            progress.count(raw.len() as u64);
            // a user both listed and found deprovisioned comes once (ids borrowed from `raw`)
            let mut seen = std::collections::HashSet::new();
            for u in &raw {
                if !u["id"].as_str().is_some_and(|id| seen.insert(id)) {
                    continue;
                }
                let Some(user) = user_of(u) else { continue };
                if !user_filter.passes(user.email.as_deref()) {
                    continue;
                }
                users.push(user);
            }
        }
        let mut groups: Vec<DirGroup> = Vec::new();
        if self.sync.groups {
            progress.stage("Reading Okta groups");
            let raw = self
                .list(
                    &api,
                    self.url(
                        "groups",
                        group_filter.query.as_deref().map(|q| ("filter", q)),
                    )?,
                )
                .await?;
            let total = raw.len();
            for (i, g) in raw.into_iter().enumerate() {
                let Some(id) = g["id"].as_str() else { continue };
                let name = g["profile"]["name"].as_str().map(str::to_string);
                if !group_filter.passes(name.as_deref()) {
                    continue;
                }
                progress.stage(&format!("Reading Okta group members ({}/{total})", i + 1));
                let members = self
                    .list(&api, self.url(&format!("groups/{id}/users"), None)?)
                    .await?;
                groups.push(DirGroup {
                    reference_id: id.to_string(),
                    external_id: id.to_string(),
                    name,
                    user_members: members
                        .iter()
                        .filter_map(|m| m["id"].as_str().map(Id::from))
                        .collect(),
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
    use reqwest::header::HeaderValue;

    #[test]
    fn a_system_log_event_names_its_users_and_groups() {
        let e = serde_json::json!({"uuid": "u1", "published": "2026-12-07T10:00:00.000Z",
            "eventType": "group.user_membership.add",
            "target": [{"id": "00u1", "type": "User"}, {"id": "00g1", "type": "UserGroup"},
                       {"id": "app", "type": "AppInstance"}]});
        let got: Vec<_> = events_of(&e)
            .into_iter()
            .map(|e| (e.id, e.change.id.unwrap_or_default(), e.change.deleted))
            .collect();
        assert_eq!(
            got,
            [
                ("u1/00u1".into(), "00u1".into(), false),
                ("u1/group:00g1".into(), "group:00g1".into(), false)
            ]
        );
        let d = serde_json::json!({"uuid": "u2", "published": "2026-12-07T10:00:01Z",
            "eventType": "user.lifecycle.delete.completed", "target": [{"id": "00u2", "type": "User"}]});
        assert!(events_of(&d)[0].change.deleted);
    }

    #[test]
    fn link_header_next() {
        let mut h = HeaderMap::new();
        h.append(
            "link",
            HeaderValue::from_static("<https://x.okta.com/api/v1/users?limit=2>; rel=\"self\""),
        );
        h.append(
            "link",
            HeaderValue::from_static(
                "<https://x.okta.com/api/v1/users?after=abc&limit=2>; rel=\"next\"",
            ),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://x.okta.com/api/v1/users?after=abc&limit=2")
        );
        assert_eq!(next_link(&HeaderMap::new()), None);
    }

    #[test]
    fn budget_waits_only_near_the_limit() {
        let mut h = HeaderMap::new();
        let reset = (chrono::Utc::now().timestamp() + 5).to_string();
        h.insert("x-rate-limit-limit", HeaderValue::from_static("600"));
        h.insert("x-rate-limit-remaining", HeaderValue::from_static("300"));
        h.insert("x-rate-limit-reset", HeaderValue::from_str(&reset).unwrap());
        assert_eq!(budget_wait(&h, 10), None);
        h.insert("x-rate-limit-remaining", HeaderValue::from_static("50"));
        let w = budget_wait(&h, 10).unwrap();
        assert!(
            w >= Duration::from_secs(4) && w <= Duration::from_secs(7),
            "{w:?}"
        );
    }
}
