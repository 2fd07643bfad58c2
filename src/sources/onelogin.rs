//! OneLogin source (API v1, OAuth2 v2 token renewed before it expires and once on a 401): users
//! and roles (OneLogin's groups, as upstream) with `pagination.next_link` cursor paging, and a
//! rate-limit budget like Okta's from the `X-RateLimit-Limit/Remaining/Reset` headers (the reset
//! is in seconds from now). Role members are the users whose `role_id` lists the role.
//! externalIds are always strings (Vaultwarden rejects numbers).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;

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

impl OneLoginSource {
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
