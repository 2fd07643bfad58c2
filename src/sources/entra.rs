//! Microsoft Entra ID source (Microsoft Graph v1.0): client-credentials token (renewed before it
//! expires and once on a 401), users with `$select` and `@odata.nextLink` paging, deleted users
//! from a replayed `/users/delta` link (kept between runs in [`super::SourceState`]) or, without
//! a usable link, from `/directory/deletedItems`, groups with their direct members read per group
//! (nesting is flattened by the engine), and the filter keywords of upstream §4.2
//! (`include`/`exclude` emails, `includeGroup`/`excludeGroup` with transitive user members,
//! secondary `excludeGroup`/`exclude` after `includeGroup`, and the group filter's
//! `includeAdministrativeUnit`/`excludeAdministrativeUnit`).

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;

use super::filter::Filter;
use super::http::{Api, Auth, OAuth, Page};
use crate::config::{EntraConfig, SyncConfig};
use crate::engine::{DirGroup, DirUser, Id, Snapshot};
use crate::progress::Progress;

const USER_FIELDS: &str = "id,mail,userPrincipalName,displayName,accountEnabled,userType";
const USER_TYPE: &str = "#microsoft.graph.user";
const GROUP_TYPE: &str = "#microsoft.graph.group";

pub struct EntraSource {
    pub entra: EntraConfig,
    pub sync: SyncConfig,
    pub key: String,
    pub ca_file: Option<PathBuf>,
    /// Kept between runs (the delta link); see [`super::SourceState`].
    pub state: std::sync::Arc<dyn super::SourceState>,
}

/// A user from a Graph object; `None` for objects without an id. `@removed` marks a user
/// deleted since the delta link was issued (`changed`: in the recycle bin; `deleted`: gone for
/// good), <https://learn.microsoft.com/en-us/graph/delta-query-users>.
pub fn user_of(v: &serde_json::Value) -> Option<DirUser> {
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
    let deleted = matches!(
        v["@removed"]["reason"].as_str(),
        Some("changed") | Some("deleted")
    );
    Some(DirUser {
        reference_id: id.to_string(),
        external_id: Id::from(id),
        email: email.map(str::to_string),
        disabled: v["accountEnabled"].as_bool() == Some(false),
        deleted,
        unreadable: None,
        immutable_id: None,
    })
}

/// Adds one Graph member object to a group: a user or a nested group (other object types, and
/// objects without an id, are left out).
pub fn add_member(group: &mut DirGroup, m: &serde_json::Value) {
    let Some(mid) = m["id"].as_str() else {
        return;
    };
    match m["@odata.type"].as_str() {
        Some(USER_TYPE) => group.user_members.push(Id::from(mid)),
        Some(GROUP_TYPE) => group.group_members.push(mid.to_string()),
        _ => {}
    }
}

/// Whether a Graph object is a guest account (`userType eq 'Guest'`).
fn is_guest(v: &serde_json::Value) -> bool {
    v["userType"]
        .as_str()
        .is_some_and(|t| t.eq_ignore_ascii_case("guest"))
}

/// Users without a usable email (none, or a `…#EXT#…` UPN) cannot be members.
fn invalid(u: &DirUser) -> bool {
    !u.disabled && !u.deleted && u.email.as_deref().is_none_or(|e| e.contains('#'))
}

/// Whether a member object is a user: the `@odata.type` Graph puts on directory objects (an
/// object without one came from a user-typed listing).
fn is_user_object(v: &serde_json::Value) -> bool {
    v["@odata.type"].as_str().is_none_or(|t| t == USER_TYPE)
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

/// Whether a refused delta link has to be replaced by a full read: Graph answers an expired
/// link with `syncStateNotFound` (400) or `resyncRequired`, or 410 Gone,
/// <https://learn.microsoft.com/en-us/graph/delta-query-overview#synchronization-reset>.
fn delta_expired(e: &anyhow::Error) -> bool {
    super::http::refused(e).is_some_and(|r| {
        r.status == 410
            || r.code.as_deref().is_some_and(|c| {
                c.eq_ignore_ascii_case("syncStateNotFound")
                    || c.eq_ignore_ascii_case("resyncRequired")
            })
    })
}

/// Graph's page reader: the items under `value`, the next link, and the delta link if any.
fn graph_page(
    u: &str,
    mut a: super::http::Answer,
) -> anyhow::Result<(Vec<serde_json::Value>, Option<String>, Option<String>)> {
    let serde_json::Value::Array(items) = a.json["value"].take() else {
        return Err(anyhow!(
            "Microsoft Graph: GET {u}: no `value` list in the answer"
        ));
    };
    let next = a.json["@odata.nextLink"].as_str().map(str::to_string);
    let delta = a.json["@odata.deltaLink"].as_str().map(str::to_string);
    Ok((items, next, delta))
}

impl EntraSource {
    fn graph(&self, path: &str) -> String {
        format!("{}/v1.0/{path}", self.entra.graph_base())
    }

    /// The API client, signing in with the client secret.
    fn api(&self) -> anyhow::Result<Api> {
        let mut api = Api::new("Microsoft Entra ID", self.ca_file.as_deref())?;
        api.max_server_wait = self
            .entra
            .max_retry_after_seconds
            .map(Duration::from_secs)
            .unwrap_or(super::http::DEFAULT_MAX_SERVER_WAIT);
        api.max_server_wait_key = "entra.max_retry_after_seconds";
        let tenant = self.entra.tenant.as_deref().unwrap_or_default().trim();
        let url = format!("{}/{tenant}/oauth2/v2.0/token", self.entra.login_base());
        let form = [
            (
                "client_id".to_string(),
                self.entra
                    .application_id
                    .as_deref()
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            ),
            ("client_secret".to_string(), self.key.clone()),
            ("grant_type".to_string(), "client_credentials".to_string()),
            ("scope".to_string(), self.entra.scope()),
        ];
        let http = api.http.clone();
        api.auth = Auth::OAuth(OAuth {
            what: format!("POST {url}"),
            request: Box::new(move || Ok(http.post(&url).form(&form))),
            scheme: "Bearer ",
        });
        Ok(api)
    }

    /// Every item of a Graph listing, following `@odata.nextLink`.
    async fn list(&self, api: &Api, first: String) -> anyhow::Result<Vec<serde_json::Value>> {
        api.list(first, |u, a| {
            let (items, next, _) = graph_page(u, a)?;
            Ok(Page {
                items,
                next,
                wait: None,
            })
        })
        .await
    }

    /// Every item of a delta round and the delta link its last page ends with.
    async fn delta(
        &self,
        api: &Api,
        first: String,
    ) -> anyhow::Result<(Vec<serde_json::Value>, Option<String>)> {
        let mut items = Vec::new();
        let mut link = None;
        api.walk(first, |u, a| {
            let (page, next, delta) = graph_page(u, a)?;
            items.extend(page);
            if delta.is_some() {
                link = delta;
            }
            Ok((next, None))
        })
        .await?;
        Ok((items, link))
    }

    /// The state key of the delta link: the tenant, the Graph endpoint and the user filter
    /// (another scope must not replay this one's link).
    fn delta_key(&self) -> String {
        format!(
            "entra.users.delta_link|{}|{}|{}",
            self.entra.tenant.as_deref().unwrap_or_default().trim(),
            self.entra.graph_base(),
            self.sync.user_filter.as_deref().unwrap_or_default().trim()
        )
    }

    /// The users deleted since the last successful sync: the saved delta link replayed (its
    /// `@removed` entries), or, with no link or an expired one, the recycle bin
    /// (`/directory/deletedItems/microsoft.graph.user`) and a new link from now on
    /// (`$deltatoken=latest`). The new link is staged: kept only if the sync succeeds.
    async fn deleted_users(&self, api: &Api) -> anyhow::Result<Vec<serde_json::Value>> {
        let key = self.delta_key();
        if let Some(link) = self.state.get(&key) {
            match self.delta(api, link).await {
                Ok((items, next_link)) => {
                    if let Some(l) = next_link {
                        self.state.stage(&key, &l);
                    }
                    return Ok(items
                        .into_iter()
                        .filter(|o| o.get("@removed").is_some())
                        .collect());
                }
                Err(e) if delta_expired(&e) => {
                    tracing::info!(
                        "Microsoft Entra ID: the saved delta link has expired ({e:#}); reading \
                         the deleted users instead"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        // the link first: a user deleted meanwhile is in both rather than in neither
        let (_, link) = self
            .delta(
                api,
                self.graph(&format!(
                    "users/delta?$select={USER_FIELDS}&$deltatoken=latest"
                )),
            )
            .await?;
        let deleted = self
            .list(
                api,
                self.graph(&format!(
                    "directory/deletedItems/microsoft.graph.user?$select={USER_FIELDS}"
                )),
            )
            .await?;
        if let Some(l) = link {
            self.state.stage(&key, &l);
        }
        Ok(deleted
            .into_iter()
            .map(|mut o| {
                o["@removed"] = serde_json::json!({"reason": "changed"});
                o
            })
            .collect())
    }

    /// Which directory a fast-lane cursor belongs to (the tenant, Graph, the user filter).
    pub fn feed_directory(&self) -> String {
        format!("entra|{}", self.delta_key())
    }

    /// A delta link from now on (`$deltatoken=latest`: no users, only the link).
    async fn delta_from_now(&self, api: &Api) -> anyhow::Result<String> {
        let url = self.graph(&format!(
            "users/delta?$select={USER_FIELDS}&$deltatoken=latest"
        ));
        let (_, link) = self.delta(api, url).await?;
        link.ok_or_else(|| anyhow!("Microsoft Graph: /users/delta answered without a delta link"))
    }

    /// Whether group changes matter to the sync: groups are synced, or the user filter names
    /// groups (`includeGroup`/`excludeGroup`: a member added or removed joins or leaves).
    fn groups_matter(&self) -> bool {
        self.sync.groups
            || self
                .sync
                .user_filter
                .as_deref()
                .is_some_and(|f| f.to_ascii_lowercase().contains("group"))
    }

    /// A `/groups/delta` link from now on (`$deltatoken=latest`), when groups matter.
    async fn group_delta_from_now(&self, api: &Api) -> anyhow::Result<Option<String>> {
        if !self.groups_matter() {
            return Ok(None);
        }
        let url = self.graph("groups/delta?$select=displayName,members&$deltatoken=latest");
        let (_, link) = self.delta(api, url).await?;
        link.map(Some)
            .ok_or_else(|| anyhow!("Microsoft Graph: /groups/delta answered without a delta link"))
    }

    /// The fast lane's look: the cursor's `/users/delta` link replayed (the users changed since
    /// it was issued, `@removed` ones as deleted) and, when groups matter, its `/groups/delta`
    /// link (each group whose name or members changed, `members@delta`, or that was removed),
    /// or links from now on when there are none. An expired link (`syncStateNotFound`, 410) is
    /// a reset.
    pub async fn poll_feed(
        &self,
        cursor: Option<&super::feed::Cursor>,
    ) -> anyhow::Result<super::feed::Poll> {
        use super::feed::{Change, Cursor, Poll};
        let api = self.api()?;
        let directory = self.feed_directory();
        let fresh = |link: String, group_link: Option<String>| Cursor {
            directory: directory.clone(),
            feed: "entra-delta".into(),
            link: Some(link),
            group_link,
            ..Cursor::default()
        };
        let Some((kept, link)) = cursor
            .filter(|c| c.directory == directory && c.feed == "entra-delta")
            .and_then(|c| Some((c, c.link.clone()?)))
        else {
            let link = self.delta_from_now(&api).await?;
            let groups = self.group_delta_from_now(&api).await?;
            return Ok(Poll::Started(fresh(link, groups)));
        };
        let api = &api;
        let expired = |e: anyhow::Error| async move {
            if !delta_expired(&e) {
                return Err(e);
            }
            Ok(Poll::Reset {
                reason: format!(
                    "Microsoft Entra ID: the saved delta link has expired ({e:#}): a full read"
                ),
                cursor: fresh(
                    self.delta_from_now(api).await?,
                    self.group_delta_from_now(api).await?,
                ),
            })
        };
        let (items, next) = match self.delta(api, link.clone()).await {
            Ok(round) => round,
            Err(e) => return expired(e).await,
        };
        let mut changes: Vec<Change> = items
            .iter()
            .filter(|o| o.get("@odata.type").is_none() || is_user_object(o))
            .filter_map(|o| {
                Some(Change {
                    dn: None,
                    id: Some(o["id"].as_str()?.to_string()),
                    deleted: o.get("@removed").is_some(),
                    at: None,
                })
            })
            .collect();
        // the groups: replayed when kept, started now when groups came to matter
        let group_link = match kept.group_link.clone() {
            Some(glink) if self.groups_matter() => match self.delta(api, glink.clone()).await {
                Ok((groups, gnext)) => {
                    changes.extend(groups.iter().filter_map(|g| {
                        Some(Change {
                            dn: None,
                            id: Some(format!("group:{}", g["id"].as_str()?)),
                            deleted: g.get("@removed").is_some(),
                            at: None,
                        })
                    }));
                    Some(gnext.unwrap_or(glink))
                }
                Err(e) => return expired(e).await,
            },
            _ => self.group_delta_from_now(api).await?,
        };
        Ok(Poll::Changes {
            changes,
            cursor: fresh(next.unwrap_or(link), group_link),
        })
    }

    /// Reads each changed user once (`GET /users/{id}`): what it is now; a 404 is gone.
    pub async fn confirm(
        &self,
        changes: &[super::feed::Change],
    ) -> anyhow::Result<Vec<super::feed::Seen>> {
        use super::feed::Seen;
        let api = self.api()?;
        let mut out = Vec::with_capacity(changes.len());
        let mut group_filter = None;
        for c in changes {
            let Some(id) = c.id.as_deref() else { continue };
            if let Some(g) = id.strip_prefix("group:") {
                let filter = match &group_filter {
                    Some(f) => f,
                    None => group_filter.insert(self.group_filter(&api).await?),
                };
                out.push(self.confirm_group(&api, g, filter).await?);
                continue;
            }
            // a deleted user is in the recycle bin, not under /users: 404
            let url = self.graph(&format!("users/{id}?$select={USER_FIELDS}"));
            let found = api.get_optional(&url).await?;
            let user = found.as_ref().and_then(|a| user_of(&a.json));
            out.push(Seen::user(user, &Filter::parse(None), c));
        }
        Ok(out)
    }

    /// What a changed group is now: a group the sync reads (synced by the group filter, or
    /// named by the user filter), or gone (removed, or one the sync does not read).
    async fn confirm_group(
        &self,
        api: &Api,
        id: &str,
        group_filter: &Filter,
    ) -> anyhow::Result<super::feed::Seen> {
        use super::feed::Seen;
        let url = self.graph(&format!("groups/{id}?$select=id,displayName"));
        let found = api.get_optional(&url).await?;
        let Some(name) = found
            .as_ref()
            .and_then(|a| a.json["displayName"].as_str())
            .map(str::to_lowercase)
        else {
            return Ok(Seen::gone(id));
        };
        // the user filter names groups by id (`includeGroup:<id>,…`, `excludeGroup:<id>`)
        let user_filter = Filter::parse(self.sync.user_filter.as_deref());
        let gid = id.to_lowercase();
        let named_by_users = user_filter
            .keyword
            .as_deref()
            .is_some_and(|k| k.contains("group"))
            && user_filter.values.contains(&gid)
            || secondary(&user_filter, "excludegroup").contains(&gid);
        let synced = self.sync.groups && group_filter.passes(Some(&name));
        Ok(if synced || named_by_users {
            Seen::Group(id.to_string())
        } else {
            Seen::gone(id)
        })
    }

    /// The user objects among the transitive members of the groups (the
    /// `transitiveMembers/microsoft.graph.user` cast leaves out nested groups, contacts, devices
    /// and service principals), and their ids.
    async fn transitive_users(
        &self,
        api: &Api,
        group_ids: &HashSet<String>,
    ) -> anyhow::Result<(Vec<serde_json::Value>, HashSet<String>)> {
        let mut objects = Vec::new();
        let mut ids = HashSet::new();
        let mut sorted: Vec<&String> = group_ids.iter().collect();
        sorted.sort();
        for g in sorted {
            let url = self.graph(&format!(
                "groups/{g}/transitiveMembers/microsoft.graph.user?$select={USER_FIELDS}"
            ));
            for o in self.list(api, url).await? {
                if is_user_object(&o)
                    && let Some(id) = o["id"].as_str()
                    && ids.insert(id.to_string())
                {
                    objects.push(o);
                }
            }
        }
        Ok((objects, ids))
    }

    /// The lower-cased names of the groups in administrative units.
    async fn unit_group_names(&self, api: &Api, units: &[String]) -> anyhow::Result<Vec<String>> {
        let mut names = Vec::new();
        for unit in units {
            let url = self.graph(&format!("directory/administrativeUnits/{unit}/members"));
            for m in self.list(api, url).await? {
                if m["@odata.type"].as_str() == Some(GROUP_TYPE)
                    && let Some(name) = m["displayName"].as_str()
                {
                    names.push(name.trim().to_lowercase());
                }
            }
        }
        Ok(names)
    }

    async fn read_users(&self, api: &Api, user_filter: &Filter) -> anyhow::Result<Vec<DirUser>> {
        let keyword = user_filter.keyword.as_deref().unwrap_or_default();
        let listed: HashSet<String> = user_filter.values.iter().cloned().collect();
        let all_users = || self.graph(&format!("users?$select={USER_FIELDS}"));
        let (raw, excluded_ids, excluded_emails) = match keyword {
            "includegroup" => {
                let (objects, _) = self.transitive_users(api, &listed).await?;
                let (_, ex) = self
                    .transitive_users(api, &secondary(user_filter, "excludeGroup"))
                    .await?;
                (objects, ex, secondary(user_filter, "exclude"))
            }
            "excludegroup" => {
                let (_, ex) = self.transitive_users(api, &listed).await?;
                (self.list(api, all_users()).await?, ex, HashSet::new())
            }
            _ => (
                self.list(api, all_users()).await?,
                HashSet::new(),
                HashSet::new(),
            ),
        };
        let mut users = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        for o in &raw {
            let Some(u) = user_of(o) else { continue };
            if excluded_ids.contains(&*u.external_id)
                || !seen.insert(u.external_id.to_string())
                || !user_filter.passes(u.email.as_deref())
                || (is_guest(o) && !self.entra.include_guests)
                || invalid(&u)
                || u.email
                    .as_deref()
                    .is_some_and(|e| excluded_emails.contains(&e.trim().to_lowercase()))
            {
                continue;
            }
            users.push(u);
        }
        for o in &self.deleted_users(api).await? {
            // a replayed link names a deleted user by id only: without an email the set filter
            // cannot judge it, and a removal by externalId only touches a member this
            // connector synced
            if let Some(u) = user_of(o)
                && u.deleted
                && (u.email.is_none() || user_filter.passes(u.email.as_deref()))
                && seen.insert(u.external_id.to_string())
            {
                users.push(u);
            }
        }
        Ok(users)
    }

    /// The group filter, with administrative units turned into the names of their groups.
    async fn group_filter(&self, api: &Api) -> anyhow::Result<Filter> {
        let f = Filter::parse(self.sync.group_filter.as_deref());
        let keyword = match f.keyword.as_deref() {
            Some("includeadministrativeunit") => "include",
            Some("excludeadministrativeunit") => "exclude",
            _ => return Ok(f),
        };
        let names = self.unit_group_names(api, &f.values).await?;
        Ok(Filter {
            keyword: Some(keyword.to_string()),
            values: names,
            ..f
        })
    }

    pub async fn fetch(&self, progress: &dyn Progress) -> anyhow::Result<Snapshot> {
        let api = self.api()?;
        progress.stage("Signing in to Microsoft Entra ID");
        api.sign_in().await?;
        let user_filter = Filter::parse(self.sync.user_filter.as_deref());
        let mut users: Vec<DirUser> = Vec::new();
        if self.sync.users {
            progress.stage("Reading Entra ID users");
            users = self.read_users(&api, &user_filter).await?;
            progress.count(users.len() as u64);
        }
        let group_filter = if self.sync.groups {
            self.group_filter(&api).await?
        } else {
            Filter::default()
        };
        let mut groups: Vec<DirGroup> = Vec::new();
        if self.sync.groups {
            progress.stage("Reading Entra ID groups");
            let raw = self
                .list(&api, self.graph("groups?$select=id,displayName"))
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
                    .list(&api, self.graph(&format!("groups/{id}/members?$select=id")))
                    .await?;
                let mut group = DirGroup::new(id, name);
                for m in &members {
                    add_member(&mut group, m);
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
        assert!(is_guest(&serde_json::json!({"userType": "Guest"})));
        assert!(!is_guest(&serde_json::json!({"userType": "Member"})));
        assert!(is_user_object(
            &serde_json::json!({"@odata.type": "#microsoft.graph.user"})
        ));
        assert!(!is_user_object(
            &serde_json::json!({"@odata.type": "#microsoft.graph.device"})
        ));
    }

    #[test]
    fn expired_delta_links_are_recognized() {
        let refused = |status: u16, code: Option<&str>| {
            anyhow::Error::new(super::super::http::Refused {
                status,
                code: code.map(str::to_string),
                message: String::new(),
            })
        };
        assert!(delta_expired(&refused(400, Some("syncStateNotFound"))));
        assert!(delta_expired(&refused(410, None)));
        assert!(delta_expired(&refused(400, Some("resyncRequired"))));
        assert!(!delta_expired(&refused(
            403,
            Some("Authorization_RequestDenied")
        )));
        assert!(!delta_expired(&anyhow!("connection refused")));
        let u =
            user_of(&serde_json::json!({"id": "5", "@removed": {"reason": "deleted"}})).unwrap();
        assert!(u.deleted && u.email.is_none());
    }

    #[test]
    fn the_delta_link_key_names_the_scope() {
        let mut source = EntraSource {
            entra: EntraConfig::default(),
            sync: SyncConfig::default(),
            key: String::new(),
            ca_file: None,
            state: std::sync::Arc::new(super::super::NoState),
        };
        source.entra.tenant = Some("a.onmicrosoft.com".into());
        let a = source.delta_key();
        source.sync.user_filter = Some("include:x@y.z".into());
        let b = source.delta_key();
        source.entra.tenant = Some("b.onmicrosoft.com".into());
        let c = source.delta_key();
        assert!(
            a != b
                && b != c
                && a.contains("a.onmicrosoft.com")
                && a.contains("graph.microsoft.com")
        );
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
