//! OneLogin source (API v1, OAuth2 v2 token): users and roles (OneLogin's groups, as upstream)
//! with `pagination.next_link` cursor paging. Role members are the users whose `role_id` lists
//! the role. externalIds are always strings (Vaultwarden rejects numbers).

use std::path::PathBuf;

use anyhow::anyhow;

use super::Progress;
use super::filter::Filter;
use super::http::{Api, Page};
use crate::config::{OneLoginConfig, SyncConfig};
use crate::engine::{DirGroup, DirUser, Id, Snapshot};

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

impl OneLoginSource {
    async fn token(&self, api: &Api) -> anyhow::Result<String> {
        let url = format!("{}/auth/oauth2/v2/token", self.onelogin.base());
        let id = self
            .onelogin
            .client_id
            .as_deref()
            .unwrap_or_default()
            .trim();
        api.access_token(&format!("POST {url}"), || {
            api.http
                .post(&url)
                .basic_auth(id, Some(&self.secret))
                .header("Accept", "application/json")
                .json(&serde_json::json!({"grant_type": "client_credentials"}))
        })
        .await
    }

    /// Every item of a listing, following `pagination.next_link`.
    async fn list(
        &self,
        api: &Api,
        token: &str,
        first: String,
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        let auth = format!("bearer:{token}");
        api.list(first, ("Authorization", &auth), |u, mut a| {
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
            Ok(Page {
                items,
                next: a.json["pagination"]["next_link"]
                    .as_str()
                    .filter(|l| !l.is_empty())
                    .map(str::to_string),
                wait: None,
            })
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
        let api = Api::new("OneLogin", self.ca_file.as_deref())?;
        progress.stage("Signing in to OneLogin");
        let token = self.token(&api).await?;
        let user_filter = Filter::parse(self.sync.user_filter.as_deref());
        let group_filter = Filter::parse(self.sync.group_filter.as_deref());
        let suffix = self.sync.email_suffix.clone().unwrap_or_default();
        let mut users: Vec<DirUser> = Vec::new();
        let mut raw_users: Vec<serde_json::Value> = Vec::new();
        if self.sync.users || self.sync.groups {
            progress.stage("Reading OneLogin users");
            raw_users = self
                .list(
                    &api,
                    &token,
                    self.url("users", user_filter.query.as_deref()),
                )
                .await?;
            progress.count(raw_users.len() as u64);
            for u in &raw_users {
                let Some(id) = id_string(&u["id"]) else {
                    continue;
                };
                let mut email = u["email"].as_str().map(str::to_string);
                if !email.as_deref().is_some_and(looks_like_email)
                    && let Some(name) = u["username"].as_str().filter(|n| !n.is_empty())
                {
                    if looks_like_email(name) {
                        email = Some(name.to_string());
                    } else if self.sync.use_email_prefix_suffix && !suffix.is_empty() {
                        email = Some(format!("{name}{suffix}"));
                    }
                }
                if !user_filter.passes(email.as_deref()) {
                    continue;
                }
                users.push(DirUser {
                    reference_id: id.clone(),
                    external_id: Id::from(id),
                    email,
                    disabled: u["status"].as_i64() == Some(2),
                    deleted: false,
                });
            }
        }
        let mut groups: Vec<DirGroup> = Vec::new();
        if self.sync.groups {
            progress.stage("Reading OneLogin roles");
            let roles = self
                .list(
                    &api,
                    &token,
                    self.url("roles", group_filter.query.as_deref()),
                )
                .await?;
            for r in roles {
                let Some(id) = id_string(&r["id"]) else {
                    continue;
                };
                let name = r["name"].as_str().map(str::to_string);
                if !group_filter.passes(name.as_deref()) {
                    continue;
                }
                let members = raw_users
                    .iter()
                    .filter(|u| {
                        u["role_id"].as_array().is_some_and(|ids| {
                            ids.iter()
                                .any(|x| id_string(x).as_deref() == Some(id.as_str()))
                        })
                    })
                    .filter_map(|u| id_string(&u["id"]).map(Id::from))
                    .collect();
                groups.push(DirGroup {
                    reference_id: id.clone(),
                    external_id: id,
                    name,
                    user_members: members,
                    group_members: Vec::new(),
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
