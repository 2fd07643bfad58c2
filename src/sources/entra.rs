//! Microsoft Entra ID source (Microsoft Graph v1.0): client-credentials token, users with
//! `$select` and `@odata.nextLink` paging, soft-deleted users from `/users/delta`, groups with
//! their direct members read per group (nesting is flattened by the engine), and the filter
//! keywords of upstream §4.2 (`include`/`exclude` emails, `includeGroup`/`excludeGroup` with
//! transitive members, secondary `excludeGroup`/`exclude` after `includeGroup`).

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::anyhow;

use super::Progress;
use super::filter::Filter;
use super::http::{Api, Page};
use crate::config::{EntraConfig, SyncConfig};
use crate::engine::{DirGroup, DirUser, Id, Snapshot};

const USER_SELECT: &str = "$select=id,mail,userPrincipalName,displayName,accountEnabled";

pub struct EntraSource {
    pub entra: EntraConfig,
    pub sync: SyncConfig,
    pub key: String,
    pub ca_file: Option<PathBuf>,
    /// Kept between runs (the delta link); see [`super::SourceState`].
    pub state: std::sync::Arc<dyn super::SourceState>,
}

/// A user from a Graph object; `None` for objects without an id.
fn user_of(v: &serde_json::Value) -> Option<DirUser> {
    let id = v["id"].as_str()?;
    let mail = v["mail"].as_str().map(str::trim).filter(|m| !m.is_empty());
    let upn = v["userPrincipalName"]
        .as_str()
        .map(str::trim)
        .filter(|m| !m.is_empty());
    let email = match (mail, upn) {
        (Some(m), Some(u)) if m.contains("onmicrosoft.com") => Some(u),
        (Some(m), _) => Some(m),
        (None, u) => u,
    };
    let deleted = v["@removed"]["reason"].as_str() == Some("changed");
    Some(DirUser {
        reference_id: id.to_string(),
        external_id: Id::from(id),
        email: email.map(str::to_string),
        disabled: v["accountEnabled"].as_bool() == Some(false),
        deleted,
    })
}

/// Guest accounts (`…#EXT#…`) and users without an email cannot be members.
fn invalid(u: &DirUser) -> bool {
    !u.disabled && !u.deleted && u.email.as_deref().is_none_or(|e| e.contains('#'))
}

/// The values of `keyword:` clauses among the filter's further segments.
fn secondary(filter: &Filter, keyword: &str) -> HashSet<String> {
    filter
        .query
        .iter()
        .chain(filter.extra.iter())
        .filter_map(|seg| {
            let (k, v) = seg.split_once(':')?;
            (k.trim().eq_ignore_ascii_case(keyword)).then_some(v)
        })
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_lowercase())
        .filter(|v| !v.is_empty())
        .collect()
}

impl EntraSource {
    fn graph(&self, path: &str) -> String {
        format!("{}/v1.0/{path}", self.entra.graph_base())
    }

    async fn token(&self, api: &Api) -> anyhow::Result<String> {
        let tenant = self.entra.tenant.as_deref().unwrap_or_default().trim();
        let url = format!("{}/{tenant}/oauth2/v2.0/token", self.entra.login_base());
        let form = [
            (
                "client_id",
                self.entra
                    .application_id
                    .as_deref()
                    .unwrap_or_default()
                    .trim(),
            ),
            ("client_secret", self.key.as_str()),
            ("grant_type", "client_credentials"),
            ("scope", &self.entra.scope()),
        ];
        api.access_token(&format!("POST {url}"), || api.http.post(&url).form(&form))
            .await
    }

    /// Every item of a Graph listing, following `@odata.nextLink`; the last page's deltaLink
    /// is not kept (every run reads the full delta).
    async fn list(
        &self,
        api: &Api,
        token: &str,
        first: String,
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        let auth = format!("Bearer {token}");
        api.list(first, ("Authorization", &auth), |u, mut a| {
            let serde_json::Value::Array(items) = a.json["value"].take() else {
                return Err(anyhow!(
                    "Microsoft Graph: GET {u}: no `value` list in the answer"
                ));
            };
            Ok(Page {
                items,
                next: a.json["@odata.nextLink"].as_str().map(str::to_string),
                wait: None,
            })
        })
        .await
    }

    async fn transitive_user_ids(
        &self,
        api: &Api,
        token: &str,
        group_ids: &HashSet<String>,
    ) -> anyhow::Result<(Vec<serde_json::Value>, HashSet<String>)> {
        let mut objects = Vec::new();
        let mut ids = HashSet::new();
        let mut sorted: Vec<&String> = group_ids.iter().collect();
        sorted.sort();
        for g in sorted {
            let url = self.graph(&format!("groups/{g}/transitiveMembers?{USER_SELECT}"));
            for o in self.list(api, token, url).await? {
                if let Some(id) = o["id"].as_str()
                    && ids.insert(id.to_string())
                {
                    objects.push(o);
                }
            }
        }
        Ok((objects, ids))
    }

    pub async fn fetch(&self, progress: &dyn Progress) -> anyhow::Result<Snapshot> {
        let api = Api::new("Microsoft Entra ID", self.ca_file.as_deref())?;
        progress.stage("Signing in to Microsoft Entra ID");
        let token = self.token(&api).await?;
        let user_filter = Filter::parse(self.sync.user_filter.as_deref());
        let group_filter = Filter::parse(self.sync.group_filter.as_deref());
        let mut users: Vec<DirUser> = Vec::new();
        if self.sync.users {
            progress.stage("Reading Entra ID users");
            let keyword = user_filter.keyword.as_deref().unwrap_or_default();
            let listed: HashSet<String> = user_filter.values.iter().cloned().collect();
            let (raw, excluded_ids, excluded_emails) = match keyword {
                "includegroup" => {
                    let (objects, _) = self.transitive_user_ids(&api, &token, &listed).await?;
                    let (_, ex) = self
                        .transitive_user_ids(&api, &token, &secondary(&user_filter, "excludeGroup"))
                        .await?;
                    (objects, ex, secondary(&user_filter, "exclude"))
                }
                "excludegroup" => {
                    let (_, ex) = self.transitive_user_ids(&api, &token, &listed).await?;
                    let all = self
                        .list(&api, &token, self.graph(&format!("users?{USER_SELECT}")))
                        .await?;
                    (all, ex, HashSet::new())
                }
                _ => {
                    let all = self
                        .list(&api, &token, self.graph(&format!("users?{USER_SELECT}")))
                        .await?;
                    (all, HashSet::new(), HashSet::new())
                }
            };
            let mut seen: HashSet<String> = HashSet::new();
            for o in &raw {
                let Some(u) = user_of(o) else { continue };
                if excluded_ids.contains(&*u.external_id)
                    || !seen.insert(u.external_id.to_string())
                    || !user_filter.passes(u.email.as_deref())
                    || invalid(&u)
                    || u.email
                        .as_deref()
                        .is_some_and(|e| excluded_emails.contains(&e.trim().to_lowercase()))
                {
                    continue;
                }
                users.push(u);
            }
            progress.stage("Reading deleted Entra ID users");
            let delta = self
                .list(
                    &api,
                    &token,
                    self.graph(&format!("users/delta?{USER_SELECT}")),
                )
                .await?;
            for o in &delta {
                if let Some(u) = user_of(o)
                    && u.deleted
                    && user_filter.passes(u.email.as_deref())
                    && seen.insert(u.external_id.to_string())
                {
                    users.push(u);
                }
            }
            progress.count(users.len() as u64);
        }
        let mut groups: Vec<DirGroup> = Vec::new();
        if self.sync.groups {
            progress.stage("Reading Entra ID groups");
            let raw = self
                .list(&api, &token, self.graph("groups?$select=id,displayName"))
                .await?;
            let mut seen: HashSet<String> = HashSet::new();
            let total = raw.len();
            for (i, g) in raw.iter().enumerate() {
                let Some(id) = g["id"].as_str() else { continue };
                let name = g["displayName"].as_str().map(str::to_string);
                if !seen.insert(id.to_string()) || !group_filter.passes(name.as_deref()) {
                    continue;
                }
                progress.stage(&format!(
                    "Reading Entra ID group members ({}/{total})",
                    i + 1
                ));
                let members = self
                    .list(
                        &api,
                        &token,
                        self.graph(&format!("groups/{id}/members?$select=id")),
                    )
                    .await?;
                let mut group = DirGroup::new(id, name);
                for m in members {
                    let Some(mid) = m["id"].as_str() else {
                        continue;
                    };
                    match m["@odata.type"].as_str() {
                        Some("#microsoft.graph.user") => group.user_members.push(Id::from(mid)),
                        Some("#microsoft.graph.group") => group.group_members.push(mid.to_string()),
                        _ => {}
                    }
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
    fn users_from_graph_objects() {
        let u = user_of(&serde_json::json!({"id": "1", "mail": null, "userPrincipalName": "a@x.com", "accountEnabled": false})).unwrap();
        assert_eq!(u.email.as_deref(), Some("a@x.com"));
        assert!(u.disabled);
        let u = user_of(&serde_json::json!({"id": "2", "mail": "b@tenant.onmicrosoft.com", "userPrincipalName": "b@x.com"})).unwrap();
        assert_eq!(u.email.as_deref(), Some("b@x.com"));
        let u =
            user_of(&serde_json::json!({"id": "3", "@removed": {"reason": "changed"}})).unwrap();
        assert!(u.deleted);
        let guest = user_of(&serde_json::json!({"id": "4", "userPrincipalName": "g_y.com#EXT#@t.onmicrosoft.com", "accountEnabled": true})).unwrap();
        assert!(invalid(&guest));
    }

    #[test]
    fn secondary_clauses() {
        let f = Filter::parse(Some("includeGroup:g1|excludeGroup:G2, g3|exclude:A@x.com"));
        assert_eq!(
            secondary(&f, "excludeGroup"),
            ["g2", "g3"].iter().map(|s| s.to_string()).collect()
        );
        assert_eq!(
            secondary(&f, "exclude"),
            ["a@x.com"].iter().map(|s| s.to_string()).collect()
        );
    }
}
