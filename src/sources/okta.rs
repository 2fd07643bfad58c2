//! Okta source (REST API v1): users (active and deprovisioned), groups and each group's users,
//! with `Link: rel="next"` paging, `SSWS` token auth (API tokens do not expire while used), and a
//! rate-limit budget that waits for the window to reset before the org's limit is reached
//! (`X-Rate-Limit-*` headers). A native user query is sent as `search` (Okta's `filter` knows
//! only status, lastUpdated, id and a few profile fields, and refuses `profile.*` otherwise with
//! E0000031); search results include DEPROVISIONED users, so they are read once.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use reqwest::header::HeaderMap;

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

impl OktaSource {
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
        let mut api = Api::new("Okta", self.ca_file.as_deref())?;
        api.auth = Auth::Fixed(format!("SSWS {}", self.token));
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
