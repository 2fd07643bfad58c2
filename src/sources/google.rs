//! Google Workspace source (Admin SDK Directory API v1): a service-account JSON key signs an
//! RS256 JWT for the admin it acts as (domain-wide delegation), exchanged for a token that is
//! renewed before it expires (and once on a 401); users (active, then deleted), groups and
//! members with `pageToken` paging; suspended and archived users are disabled; nested groups are
//! resolved by the engine. Quota errors (403 `userRateLimitExceeded`, `rateLimitExceeded`,
//! `quotaExceeded`) and 503 `backendError` are retried with backoff by [`super::http`].
//!
//! The fast lane's feed is the Reports API's admin activity (`activities.list`, application
//! `admin`, since a time, ten minutes read again: Google files these events "near real time
//! (couple of minutes)"), with a token of its own for the Reports scope, so that a service
//! account without it still syncs; each user it names is read once by email (or through the
//! native query), each group once; an address Google will not show (another customer's, 403)
//! is left out.

use std::path::PathBuf;

use anyhow::{Context, anyhow};

use super::feed::{Change, Cursor, Event, EventLog, NotAllowed, Poll, Seen};
use super::filter::Filter;
use super::http::{Api, Auth, OAuth, Page};
use crate::config::{GoogleConfig, SyncConfig};
use crate::engine::{DirGroup, DirUser, Id, Snapshot};
use crate::errors::Failure;
use crate::progress::Progress;

const SCOPES: &str = "https://www.googleapis.com/auth/admin.directory.user.readonly \
https://www.googleapis.com/auth/admin.directory.group.readonly \
https://www.googleapis.com/auth/admin.directory.group.member.readonly";

/// The fast lane's scope (its own token: the sync does not need it),
/// <https://developers.google.com/admin-sdk/reports/reference/rest/v1/activities/list>.
pub const REPORTS_SCOPE: &str = "https://www.googleapis.com/auth/admin.reports.audit.readonly";

/// The admin activity events that can change who is in the organization (user settings:
/// created, deleted, suspended, archived, renamed; group settings: members added or removed),
/// <https://developers.google.com/admin-sdk/reports/v1/appendix/activity/admin-user-settings>,
/// <https://developers.google.com/admin-sdk/reports/v1/appendix/activity/admin-group-settings>.
pub const WATCHED_EVENTS: [&str; 11] = [
    "CREATE_USER",
    "DELETE_USER",
    "UNDELETE_USER",
    "SUSPEND_USER",
    "UNSUSPEND_USER",
    "ARCHIVE_USER",
    "UNARCHIVE_USER",
    "RENAME_USER",
    "CHANGE_USER_PRIMARY_EMAIL",
    "ADD_GROUP_MEMBER",
    "REMOVE_GROUP_MEMBER",
];

/// The feed's events of one activity: for each watched event, the users it names by email
/// (`USER_EMAIL`, and a rename's `NEW_VALUE`) and the group (`GROUP_EMAIL`).
pub fn events_of(a: &serde_json::Value) -> Vec<Event> {
    let (Some(q), Some(at)) = (
        a["id"]["uniqueQualifier"]
            .as_str()
            .map(str::to_string)
            .or_else(|| a["id"]["uniqueQualifier"].as_i64().map(|n| n.to_string())),
        a["id"]["time"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()),
    ) else {
        return Vec::new();
    };
    let at = at.with_timezone(&chrono::Utc);
    let mut out = Vec::new();
    let events = a["events"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (n, e) in events.iter().enumerate() {
        let name = e["name"].as_str().unwrap_or_default();
        if !WATCHED_EVENTS.contains(&name) {
            continue;
        }
        let params = e["parameters"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        for p in params {
            let (Some(key), Some(value)) = (p["name"].as_str(), p["value"].as_str()) else {
                continue;
            };
            let value = value.trim().to_lowercase();
            let target = match key {
                "USER_EMAIL" => format!("email:{value}"),
                "NEW_VALUE" if name == "RENAME_USER" || name == "CHANGE_USER_PRIMARY_EMAIL" => {
                    format!("email:{value}")
                }
                "GROUP_EMAIL" => format!("group:{value}"),
                _ => continue,
            };
            // `uniqueQualifier` is unique among the events of one time only
            out.push(Event {
                id: format!("{}/{q}/{n}/{target}", at.to_rfc3339()),
                at,
                change: Change {
                    dn: None,
                    id: Some(target),
                    deleted: name == "DELETE_USER",
                    at: None,
                },
            });
        }
    }
    out
}

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

/// A refused Reports API read as the feed's [`NotAllowed`]: a missing scope or privilege (a
/// quota 403 left after the retries is not one).
fn reports_denied(e: &anyhow::Error) -> Option<NotAllowed> {
    let r = super::http::refused(e)?;
    let denied = r.status == 401
        || matches!(
            r.code.as_deref(),
            Some("insufficientPermissions" | "forbidden" | "unauthorized_client" | "authError")
        );
    denied.then(|| {
        NotAllowed(format!(
            "the service account may not read the Reports API (HTTP {}{}): allow it the scope \
             {REPORTS_SCOPE} in domain-wide delegation, for an admin with the Reports privilege",
            r.status,
            r.code
                .as_deref()
                .map(|c| format!(" {c}"))
                .unwrap_or_default()
        ))
    })
}

/// What Google answers for one user or group the feed names.
enum Lookup {
    Found(serde_json::Value),
    /// 404: not there (deleted, or renamed without an alias).
    NotFound,
    /// 403: not this customer's to show (an external member's address).
    Hidden,
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

    /// The signed assertion for `scope` and the token URL it is for.
    fn assertion(&self, scope: &str) -> anyhow::Result<(String, String)> {
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
            scope,
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
        self.api_for(SCOPES)
    }

    /// The API client with a token for `scope`.
    fn api_for(&self, scope: &'static str) -> anyhow::Result<Api> {
        let mut api = Api::new("Google", self.ca_file.as_deref())?;
        // checked now: a bad key is a configuration error, named before any request
        let (_, url) = self.assertion(scope)?;
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
                let (jwt, _) = signer.assertion(scope)?;
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

    /// Which directory a fast-lane cursor belongs to (the API, the domain or customer, the
    /// filters).
    pub fn feed_directory(&self) -> String {
        format!(
            "google|{}|{}|{}|{}|{}",
            self.api_base(),
            self.google.domain.as_deref().unwrap_or_default(),
            self.google.customer.as_deref().unwrap_or_default(),
            self.sync.user_filter.as_deref().unwrap_or_default(),
            self.sync.group_filter.as_deref().unwrap_or_default()
        )
    }

    /// The fast lane's look: the admin activity since the cursor (ten minutes read again).
    pub async fn poll_feed(&self, cursor: Option<&Cursor>) -> anyhow::Result<Poll> {
        let api = self.api_for(REPORTS_SCOPE)?;
        let log = EventLog {
            directory: self.feed_directory(),
            feed: "google-reports",
            overlap: chrono::Duration::minutes(10),
        };
        super::feed::poll_events(&log, cursor, |from| self.activity_since(&api, from)).await
    }

    /// The admin activities from `from` (every page), as the feed's events.
    async fn activity_since(
        &self,
        api: &Api,
        from: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<Vec<Event>> {
        let mut u = url::Url::parse(&format!(
            "{}/admin/reports/v1/activity/users/all/applications/admin",
            self.api_base()
        ))
        .map_err(|e| anyhow!("google.api_url: {e}"))?;
        u.query_pairs_mut()
            .append_pair(
                "startTime",
                &from.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            )
            .append_pair("maxResults", "1000");
        let raw = self
            .list(api, u, "items")
            .await
            .map_err(|e| match reports_denied(&e) {
                Some(n) => n.into(),
                None => e,
            })?;
        Ok(raw.iter().flat_map(events_of).collect())
    }

    /// Reads each changed user (by email, through the native query when there is one: a user
    /// it no longer matches is gone) or group once; not found is gone.
    pub async fn confirm(&self, changes: &[Change]) -> anyhow::Result<Vec<Seen>> {
        let api = self.api()?;
        let user_filter = Filter::parse(self.sync.user_filter.as_deref());
        let group_filter = Filter::parse(self.sync.group_filter.as_deref());
        let mut out = Vec::with_capacity(changes.len());
        for c in changes {
            let Some(id) = c.id.as_deref() else { continue };
            if let Some(g) = id.strip_prefix("group:") {
                let found = match self
                    .get_one(&api, self.url(&format!("groups/{g}"), &[])?)
                    .await?
                {
                    Lookup::Found(j) => Some(j),
                    Lookup::NotFound => None,
                    Lookup::Hidden => continue,
                };
                // named by its email in the log, by its id in the organization
                let gid = found.as_ref().and_then(|j| j["id"].as_str()).unwrap_or(g);
                let name = found.as_ref().and_then(|j| j["name"].as_str());
                out.push(Seen::group(&self.sync, &group_filter, gid, name));
                continue;
            }
            let Some(email) = id.strip_prefix("email:") else {
                out.push(Seen::user(None, &user_filter, c));
                continue;
            };
            let raw = match user_filter.query.as_deref() {
                Some(q) => {
                    let query = format!("email:{email} {q}");
                    let extra = [("query", query.as_str())];
                    let found = self.list(&api, self.url("users", &extra)?, "users").await?;
                    found.into_iter().next()
                }
                None => match self
                    .get_one(&api, self.url(&format!("users/{email}"), &[])?)
                    .await?
                {
                    Lookup::Found(j) => Some(j),
                    Lookup::NotFound => None,
                    // not this customer's user (an external group member): nobody synced
                    Lookup::Hidden => continue,
                },
            };
            let user = raw.as_ref().and_then(|u| user_of(u, false));
            out.push(Seen::user(user, &user_filter, c));
        }
        Ok(out)
    }

    /// One object, as Google answers for it.
    async fn get_one(&self, api: &Api, url: url::Url) -> anyhow::Result<Lookup> {
        match api.get_optional(url.as_str()).await {
            Ok(Some(a)) => Ok(Lookup::Found(a.json)),
            Ok(None) => Ok(Lookup::NotFound),
            Err(e) if super::http::refused(&e).is_some_and(|r| r.status == 403) => {
                tracing::debug!("fast lane: Google will not show {url}: left out");
                Ok(Lookup::Hidden)
            }
            Err(e) => Err(e),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_admin_activity_names_users_by_email_and_a_rename_both_ways() {
        let a = serde_json::json!({"id": {"time": "2026-12-07T10:00:00.000Z",
                                          "uniqueQualifier": "-42"},
            "events": [
                {"type": "USER_SETTINGS", "name": "RENAME_USER", "parameters": [
                    {"name": "USER_EMAIL", "value": "Ann@X.test"},
                    {"name": "NEW_VALUE", "value": "ann2@x.test"}]},
                {"type": "USER_SETTINGS", "name": "CHANGE_LAST_NAME", "parameters": [
                    {"name": "USER_EMAIL", "value": "bob@x.test"}]},
                {"type": "GROUP_SETTINGS", "name": "ADD_GROUP_MEMBER", "parameters": [
                    {"name": "USER_EMAIL", "value": "cy@x.test"},
                    {"name": "GROUP_EMAIL", "value": "staff@x.test"}]}]});
        let got: Vec<_> = events_of(&a)
            .into_iter()
            .filter_map(|e| e.change.id)
            .collect();
        assert_eq!(
            got,
            [
                "email:ann@x.test",
                "email:ann2@x.test",
                "email:cy@x.test",
                "group:staff@x.test"
            ],
            "a field the sync does not read is no change"
        );
    }
}
