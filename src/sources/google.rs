//! Google Workspace source (Admin SDK Directory API v1): a service-account JSON key signs an
//! RS256 JWT for the admin it acts as (domain-wide delegation), exchanged for a token that is
//! renewed before it expires (and once on a 401); users (active, then deleted), groups and
//! members with `pageToken` paging; suspended and archived users are disabled; nested groups are
//! resolved by the engine. Quota errors (403 `userRateLimitExceeded`, `rateLimitExceeded`,
//! `quotaExceeded`) and 503 `backendError` are retried with backoff by [`super::http`].

use std::path::PathBuf;

use anyhow::{Context, anyhow};

use super::filter::Filter;
use super::http::{Api, Auth, OAuth, Page};
use crate::config::{GoogleConfig, SyncConfig};
use crate::engine::{DirGroup, DirUser, Id, Snapshot};
use crate::errors::Failure;
use crate::progress::Progress;

const SCOPES: &str = "https://www.googleapis.com/auth/admin.directory.user.readonly \
https://www.googleapis.com/auth/admin.directory.group.readonly \
https://www.googleapis.com/auth/admin.directory.group.member.readonly";

pub struct GoogleSource {
    pub google: GoogleConfig,
    pub sync: SyncConfig,
    /// The service account's JSON key file, as text.
    pub key_json: String,
    pub ca_file: Option<PathBuf>,
}

/// A user from a Directory API user object (`deleted`: read with `showDeleted`); `None` when it
/// has no id, or when an active user has no `emails` (an account without a mailbox).
pub fn user_of(u: &serde_json::Value, deleted: bool) -> Option<DirUser> {
    let id = u["id"].as_str()?;
    if !deleted && u.get("emails").is_none() {
        return None;
    }
    Some(DirUser {
        reference_id: id.to_string(),
        external_id: Id::from(id),
        email: u["primaryEmail"].as_str().map(str::to_string),
        disabled: u["suspended"].as_bool() == Some(true) || u["archived"].as_bool() == Some(true),
        deleted,
        unreadable: None,
        immutable_id: None,
    })
}

/// Adds one Directory API member object to a group: an active user, a nested group, or (type
/// `CUSTOMER`, the whole domain) every user read.
pub fn add_member(group: &mut DirGroup, m: &serde_json::Value, users: &[DirUser]) {
    let Some(mid) = m["id"].as_str() else {
        return;
    };
    match m["type"].as_str().map(str::to_ascii_uppercase).as_deref() {
        Some("USER") if m["status"].as_str() == Some("ACTIVE") => {
            group.user_members.push(Id::from(mid))
        }
        Some("GROUP") => group.group_members.push(mid.to_string()),
        Some("CUSTOMER") => group
            .user_members
            .extend(users.iter().map(|u| Id::clone(&u.external_id))),
        _ => {}
    }
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

impl GoogleSource {
    fn api_base(&self) -> String {
        self.google
            .api_url
            .as_deref()
            .unwrap_or("https://admin.googleapis.com")
            .trim_end_matches('/')
            .to_string()
    }

    /// The signed assertion and the token URL it is for.
    fn assertion(&self) -> anyhow::Result<(String, String)> {
        let key: serde_json::Value = serde_json::from_str(self.key_json.trim()).map_err(|e| {
            Failure::Config(format!(
                "google.key: not a service-account JSON key file: {e}"
            ))
        })?;
        let email = key["client_email"].as_str().ok_or_else(|| {
            Failure::Config("google.key: the key file has no client_email".into())
        })?;
        let pem = key["private_key"]
            .as_str()
            .ok_or_else(|| Failure::Config("google.key: the key file has no private_key".into()))?
            .replace("\\n", "\n");
        let token_url = self
            .google
            .token_url
            .clone()
            .or_else(|| key["token_uri"].as_str().map(str::to_string))
            .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into());
        let signing = jsonwebtoken::EncodingKey::from_rsa_pem(pem.trim_start().as_bytes())
            .map_err(|_| {
                Failure::Config("google.key: the private_key is not a valid RSA key".into())
            })?;
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iss: email,
            sub: self.google.admin_user.as_deref().unwrap_or_default().trim(),
            scope: SCOPES,
            aud: &token_url,
            iat: now,
            exp: now + 3600,
        };
        let jwt = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &signing,
        )
        .context("signing the Google service-account assertion")?;
        Ok((jwt, token_url))
    }

    /// The API client; each token request carries a freshly signed assertion.
    fn api(&self) -> anyhow::Result<Api> {
        let mut api = Api::new("Google", self.ca_file.as_deref())?;
        // checked now: a bad key is a configuration error, named before any request
        let (_, url) = self.assertion()?;
        let http = api.http.clone();
        let key_json = self.key_json.clone();
        let google = self.google.clone();
        let token_url = url.clone();
        api.auth = Auth::OAuth(OAuth {
            what: format!("POST {url}"),
            request: Box::new(move || {
                let signer = GoogleSource {
                    google: google.clone(),
                    sync: SyncConfig::default(),
                    key_json: key_json.clone(),
                    ca_file: None,
                };
                let (jwt, _) = signer.assertion()?;
                let form = [
                    (
                        "grant_type".to_string(),
                        "urn:ietf:params:oauth:grant-type:jwt-bearer".to_string(),
                    ),
                    ("assertion".to_string(), jwt),
                ];
                Ok(http.post(&token_url).form(&form))
            }),
            scheme: "Bearer ",
        });
        Ok(api)
    }

    fn url(&self, path: &str, extra: &[(&str, &str)]) -> anyhow::Result<url::Url> {
        let mut u = url::Url::parse(&format!("{}/admin/directory/v1/{path}", self.api_base()))
            .map_err(|e| anyhow!("google.api_url: {e}"))?;
        {
            let mut q = u.query_pairs_mut();
            for (k, v) in [
                ("domain", &self.google.domain),
                ("customer", &self.google.customer),
            ] {
                if let Some(v) = v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                    q.append_pair(k, v);
                }
            }
            for (k, v) in extra {
                q.append_pair(k, v);
            }
        }
        Ok(u)
    }

    /// Every item under `field` of a listing, following `nextPageToken`.
    async fn list(
        &self,
        api: &Api,
        first: url::Url,
        field: &str,
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        api.list(first.to_string(), |_, mut a| {
            // a page without the field has no items (Google leaves it out when empty)
            let items = match a.json[field].take() {
                serde_json::Value::Array(items) => items,
                _ => Vec::new(),
            };
            let next = a.json["nextPageToken"]
                .as_str()
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let mut u = first.clone();
                    u.query_pairs_mut().append_pair("pageToken", p);
                    u.to_string()
                });
            Ok(Page {
                items,
                next,
                wait: None,
            })
        })
        .await
    }

    pub async fn fetch(&self, progress: &dyn Progress) -> anyhow::Result<Snapshot> {
        let api = self.api()?;
        progress.stage("Signing in to Google");
        api.sign_in().await?;
        let user_filter = Filter::parse(self.sync.user_filter.as_deref());
        let group_filter = Filter::parse(self.sync.group_filter.as_deref());
        let mut users: Vec<DirUser> = Vec::new();
        if self.sync.users {
            progress.stage("Reading Google users");
            let mut extra: Vec<(&str, &str)> = vec![("maxResults", "500")];
            if let Some(q) = &user_filter.query {
                extra.push(("query", q));
            }
            for deleted in [false, true] {
                let mut e = extra.clone();
                if deleted {
                    e.push(("showDeleted", "true"));
                }
                let raw = self.list(&api, self.url("users", &e)?, "users").await?;
                for u in &raw {
                    let Some(user) = user_of(u, deleted) else {
                        continue;
                    };
                    if !user_filter.passes(user.email.as_deref()) {
                        continue;
                    }
                    users.push(user);
                }
            }
            progress.count(users.len() as u64);
        }
        let mut groups: Vec<DirGroup> = Vec::new();
        if self.sync.groups {
            progress.stage("Reading Google groups");
            let mut extra: Vec<(&str, &str)> = vec![("maxResults", "200")];
            if let Some(q) = &group_filter.query {
                extra.push(("query", q));
            }
            let raw = self
                .list(&api, self.url("groups", &extra)?, "groups")
                .await?;
            for g in raw {
                let Some(id) = g["id"].as_str() else { continue };
                let name = g["name"].as_str().map(str::to_string);
                if !group_filter.passes(name.as_deref()) {
                    continue;
                }
                let members = self
                    .list(
                        &api,
                        self.url(&format!("groups/{id}/members"), &[])?,
                        "members",
                    )
                    .await?;
                let mut group = DirGroup::new(id, name);
                for m in &members {
                    add_member(&mut group, m, &users);
                }
                groups.push(group);
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
