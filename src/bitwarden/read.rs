//! The read side of the public API, with the organization API key: `GET /public/members`,
//! `GET /public/groups` and `GET /public/groups/{id}/member-ids` (fetched concurrently, with a
//! bound). A 404 on the member list means the server has no read side (Vaultwarden).

use anyhow::{Context, anyhow};
use futures_util::{StreamExt, TryStreamExt};
use reqwest::StatusCode;
use serde::Deserialize;

use super::budget::Kind;
use super::client::{ApiError, BitwardenClient, location, redirect_message};
use super::wire::error_message;
use crate::engine::MemberRef;
use crate::engine::org::{IdKey, MemberIds};
use crate::engine::org::{MemberStatus, MemberType};
use crate::engine::{OrgGroup, OrgMember, Organization};
use crate::progress::Progress;

/// How many group member lists are fetched at once.
pub const MEMBER_ID_CONCURRENCY: usize = 8;

/// The most pages a list is read in before the read is stopped as incomplete (the server sends
/// a few thousand entries a page).
pub const MAX_PAGES: usize = 10_000;

/// The most entries a list may have (far beyond any organization).
pub const MAX_LIST_ENTRIES: usize = 5_000_000;

/// `ListResponseModel<T>`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListResponse<T> {
    data: Vec<T>,
    #[serde(default)]
    continuation_token: Option<String>,
}

/// `MemberResponseModel` (the fields the connector uses).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MemberModel {
    id: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    external_id: Option<String>,
    status: i32,
    #[serde(rename = "type", default)]
    kind: Option<i32>,
}

/// A member as the connector keeps it, made from each `MemberResponseModel` as it is parsed
/// (the organization's list can hold 100,000 members: no second list is built).
struct Member(OrgMember);

impl<'de> Deserialize<'de> for Member {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = MemberModel::deserialize(d)?;
        Ok(Member(OrgMember {
            id: m.id,
            email: m.email.unwrap_or_default(),
            external_id: m.external_id.filter(|e| !e.is_empty()),
            status: MemberStatus::from_code(m.status),
            kind: MemberType::from_code(m.kind.unwrap_or(2)),
        }))
    }
}

/// `GroupResponseModel` (the fields the connector uses).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupModel {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    external_id: Option<String>,
}

/// What a read takes as known instead of asking the server: each group's member references
/// by the group's externalId ([`MemberRef`]s: the sync cache's rows), from the last confirmed rows or from what was just sent.
#[derive(Debug, Default, Clone)]
pub struct Known {
    pub lists: std::collections::HashMap<String, Vec<crate::engine::model::Id>>,
}

impl Known {
    /// Each member's reference and its id.
    fn resolver(members: &[OrgMember]) -> foldhash::HashMap<std::borrow::Cow<'_, str>, &str> {
        let mut map = foldhash::HashMap::default();
        map.reserve(members.len());
        for m in members {
            let r = MemberRef::key_of(m.external_id.as_deref(), &m.email);
            map.entry(r).or_insert(m.id.as_str());
        }
        map
    }
}

/// A response's body in one buffer, sized from `Content-Length` when the server sends it. (The
/// member list can be tens of megabytes: `Response::bytes` would hold the chunks and their
/// copy at once.)
async fn read_body(mut resp: reqwest::Response) -> reqwest::Result<Vec<u8>> {
    const MAX_RESERVED: u64 = 256 << 20;
    let reserve = resp.content_length().unwrap_or(0).min(MAX_RESERVED);
    let mut body = Vec::with_capacity(reserve as usize);
    while let Some(chunk) = resp.chunk().await? {
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl BitwardenClient {
    /// `GET {api}{path}` as JSON; `Ok(None)` on 404. A 401/403 gets one fresh token.
    async fn get_json<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        kind: Kind,
    ) -> anyhow::Result<Option<T>> {
        let url = format!("{}{path}", self.urls().api);
        let mut fresh_token_tried = false;
        loop {
            let token = self.token().await?;
            let resp = self
                .send_with_retry(&format!("GET {path}"), kind, &url, || {
                    self.http().get(&url).bearer_auth(&token)
                })
                .await
                .with_context(|| format!("GET {url}"))?;
            let status = resp.status();
            if status == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if status.is_redirection() {
                return Err(anyhow!(ApiError {
                    status: Some(status.as_u16()),
                    message: redirect_message(status, &location(&resp)),
                }))
                .with_context(|| format!("GET {url}"));
            }
            let body = read_body(resp)
                .await
                .with_context(|| format!("reading the answer to GET {url}"))?;
            if status.is_success() {
                let parsed = if body.len() > 1 << 20 {
                    // A large answer (the member list: tens of MB) is parsed on the blocking
                    // pool, so that the requests sharing this task (a push's group requests
                    // beside its read-back) go on meanwhile.
                    let size = body.len();
                    let started = std::time::Instant::now();
                    let parsed =
                        tokio::task::spawn_blocking(move || serde_json::from_slice::<T>(&body))
                            .await
                            .with_context(|| format!("parsing the answer to GET {url}"))?;
                    tracing::debug!(
                        "GET {path}: {size} bytes parsed in {:.3}s",
                        started.elapsed().as_secs_f64()
                    );
                    parsed
                } else {
                    serde_json::from_slice(&body)
                };
                return parsed
                    .map(Some)
                    .with_context(|| format!("the answer to GET {url} is not what the API sends"));
            }
            if (status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN)
                && !fresh_token_tried
            {
                fresh_token_tried = true;
                self.drop_token().await;
                continue;
            }
            return Err(anyhow!(ApiError {
                status: Some(status.as_u16()),
                message: error_message(status.as_u16(), &String::from_utf8_lossy(&body)),
            }))
            .with_context(|| format!("GET {url}"));
        }
    }

    /// Every page of a list endpoint (`continuationToken`); `None` when its first page answers
    /// 404 (no read side). Anything short of the whole list is an error, never a shorter list:
    /// a 404 after the first page, a continuation token the server sent before (a cycle would
    /// repeat pages, or never end), more than [`MAX_PAGES`] pages or [`MAX_LIST_ENTRIES`]
    /// entries.
    async fn get_list<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        kind: Kind,
    ) -> anyhow::Result<Option<Vec<T>>> {
        let mut all = Vec::new();
        let mut next: Option<String> = None;
        let mut seen: std::collections::HashSet<String> = Default::default();
        for page_no in 1..=MAX_PAGES {
            let page_path = match &next {
                Some(t) => format!(
                    "{path}?continuationToken={}",
                    url::form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>()
                ),
                None => path.to_string(),
            };
            let page = match self.get_json::<ListResponse<T>>(&page_path, kind).await? {
                Some(page) => page,
                None if page_no == 1 => return Ok(None),
                None => anyhow::bail!(
                    "GET {path}: page {page_no} answered 404 after {} entries; the list is \
                     incomplete, so the read failed",
                    all.len()
                ),
            };
            all.extend(page.data);
            if all.len() > MAX_LIST_ENTRIES {
                anyhow::bail!(
                    "GET {path}: the server listed more than {MAX_LIST_ENTRIES} entries; the \
                     read was stopped as incomplete"
                );
            }
            match page.continuation_token.filter(|t| !t.is_empty()) {
                None => return Ok(Some(all)),
                Some(t) => {
                    if !seen.insert(t.clone()) {
                        anyhow::bail!(
                            "GET {path}: page {page_no} sent a continuation token the server had \
                             sent before (after {} entries); such a list repeats pages or never \
                             ends, so the read failed",
                            all.len()
                        );
                    }
                    next = Some(t);
                }
            }
        }
        anyhow::bail!(
            "GET {path}: the list did not end within {MAX_PAGES} pages ({} entries); the read \
             was stopped as incomplete",
            all.len()
        )
    }

    /// The organization's members and groups with their member ids; `None` when the server has
    /// no read side.
    pub async fn read_organization(
        &self,
        progress: &dyn Progress,
    ) -> anyhow::Result<Option<Organization>> {
        Ok(self
            .read_organization_knowing(progress, async { Ok(None) })
            .await?
            .map(|(org, _)| org))
    }

    /// [`BitwardenClient::read_organization`], taking the members of the groups in `known` (by
    /// externalId: member references, see [`Known`]) from there instead of asking the server.
    /// Groups without an externalId are not asked either (a sync does not use their members).
    /// Also returns the externalIds of the groups whose members were read. `known` is awaited
    /// while the member list is read (the sync loads it from its cache meanwhile).
    pub async fn read_organization_knowing(
        &self,
        progress: &dyn Progress,
        known: impl std::future::Future<Output = anyhow::Result<Option<Known>>>,
    ) -> anyhow::Result<Option<(Organization, Vec<String>)>> {
        let (members, known) = tokio::join!(self.read_members(progress), known);
        let Some(members) = members? else {
            return Ok(None);
        };
        let known = known?;
        self.read_groups_since(progress, members, None, known.as_ref())
            .await
            .map(Some)
    }

    /// Reads the organization again after a push. Only the groups the push sent (`changed`, by
    /// externalId) and groups `before` did not have are asked for their member ids, except
    /// those in `known` (sent, and not verified this run: they take what was sent); every other
    /// group takes its member ids from `before` (which is left without them), less the members
    /// that have left the organization (a removal takes a member out of its groups). Also
    /// returns the externalIds of the groups whose members were read.
    pub async fn read_organization_after(
        &self,
        progress: &dyn Progress,
        before: &mut Organization,
        changed: &std::collections::HashSet<&str>,
        known: Option<&Known>,
    ) -> anyhow::Result<Option<(Organization, Vec<String>)>> {
        let Some(members) = self.read_members(progress).await? else {
            return Ok(None);
        };
        self.read_groups_since(progress, members, Some((before, changed)), known)
            .await
            .map(Some)
    }

    /// Reads the organization again after a push whose member list was read already (`members`,
    /// from [`BitwardenClient::read_members`] once the last member request was confirmed: group
    /// requests do not change it). Otherwise as [`BitwardenClient::read_organization_after`].
    pub async fn read_organization_after_members(
        &self,
        progress: &dyn Progress,
        members: Vec<OrgMember>,
        before: &mut Organization,
        changed: &std::collections::HashSet<&str>,
        known: Option<&Known>,
    ) -> anyhow::Result<(Organization, Vec<String>)> {
        self.read_groups_since(progress, members, Some((before, changed)), known)
            .await
    }

    /// The member ids of one group (`name` for messages): a 404 is an error (the group was
    /// listed).
    pub async fn read_group_member_ids(&self, id: &str, name: &str) -> anyhow::Result<MemberIds> {
        let path = format!("/public/groups/{id}/member-ids");
        self.get_json::<MemberIds>(&path, Kind::MemberIds)
            .await
            .with_context(|| format!("reading the members of group `{name}`"))?
            // A group the list just named and whose members cannot be found: deleted
            // meanwhile, or a server that answers wrongly. Either way the read does not
            // show this group's members, and an empty list would blind the group guard.
            .ok_or_else(|| {
                anyhow!(
                    "reading the members of group `{name}`: GET {path} answered 404 although \
                     the group list names it; the organization changed during the read or the \
                     server answered inconsistently, so the read failed (the next sync reads \
                     it again)"
                )
            })
    }

    /// The organization's members; `None` when the server has no read side.
    pub async fn read_members(
        &self,
        progress: &dyn Progress,
    ) -> anyhow::Result<Option<Vec<OrgMember>>> {
        progress.stage("Reading the organization's members");
        let Some(members) = self
            .get_list::<Member>("/public/members", Kind::Members)
            .await
            .context("reading the organization's members")?
        else {
            return Ok(None);
        };
        progress.count(members.len() as u64);
        // a newtype's unwrapping reuses the list's memory
        let members: Vec<OrgMember> = members.into_iter().map(|m| m.0).collect();
        let mut ids: foldhash::HashSet<IdKey> = Default::default();
        ids.reserve(members.len());
        if let Some(twice) = members.iter().find(|m| !ids.insert(IdKey::of(&m.id))) {
            anyhow::bail!(
                "reading the organization's members: member {} ({}) is listed twice; the \
                 server's list is inconsistent (pages repeated?), so the read failed",
                twice.id,
                twice.email
            );
        }
        Ok(Some(members))
    }

    /// The organization's groups and their member ids, with `members` as read before.
    async fn read_groups_since(
        &self,
        progress: &dyn Progress,
        members: Vec<OrgMember>,
        since: Option<(&mut Organization, &std::collections::HashSet<&str>)>,
        known: Option<&Known>,
    ) -> anyhow::Result<(Organization, Vec<String>)> {
        let groups = self.list_groups(progress).await?;
        let total = groups.len();
        // the members of the read before that have left the organization since (few, even
        // when the organization is large: a lookup in this set stays cheap)
        let present: foldhash::HashSet<IdKey> = members.iter().map(|m| IdKey::of(&m.id)).collect();
        let departed = departed_since(since.as_ref().map(|(before, _)| &**before), &present);
        let departed: foldhash::HashSet<IdKey> = departed.keys().collect();
        let groups = kept_member_ids(groups, since, known, &members, &departed);
        let read: Vec<String> = groups
            .iter()
            .filter(|(_, kept)| kept.is_none())
            .filter_map(|(g, _)| g.external_id.clone().filter(|e| !e.is_empty()))
            .collect();
        let mut groups = self.complete_member_ids(groups).await?;
        progress.count(total as u64);
        sort_groups(&mut groups)?;
        check_members_listed(&groups, &read, &present, members.len())?;
        drop(present);
        Ok((Organization { members, groups }, read))
    }

    /// The organization's group list (without members): a 404 is an error.
    async fn list_groups(&self, progress: &dyn Progress) -> anyhow::Result<Vec<GroupModel>> {
        progress.stage("Reading the organization's groups");
        self.get_list::<GroupModel>("/public/groups", Kind::Groups)
            .await
            .context("reading the organization's groups")?
            .ok_or_else(|| {
                anyhow!("reading the organization's groups: GET /public/groups answered 404")
            })
    }

    /// Each group with its member ids: those it kept, or else the server's (asked
    /// concurrently).
    async fn complete_member_ids(
        &self,
        groups: Vec<(GroupModel, Option<MemberIds>)>,
    ) -> anyhow::Result<Vec<OrgGroup>> {
        futures_util::stream::iter(groups)
            .map(|(g, kept)| async move {
                if let Some(ids) = kept {
                    return anyhow::Ok(OrgGroup {
                        id: g.id,
                        name: g.name.unwrap_or_default(),
                        external_id: g.external_id.filter(|e| !e.is_empty()),
                        member_ids: ids,
                    });
                }
                let ids = self
                    .read_group_member_ids(&g.id, g.name.as_deref().unwrap_or(&g.id))
                    .await?;
                anyhow::Ok(OrgGroup {
                    id: g.id,
                    name: g.name.unwrap_or_default(),
                    external_id: g.external_id.filter(|e| !e.is_empty()),
                    member_ids: ids,
                })
            })
            .buffer_unordered(MEMBER_ID_CONCURRENCY)
            .try_collect()
            .await
    }
}

/// The members of the read before (`before`) that the organization no longer lists
/// (`present`). A first sync's organization had no group to keep: nothing to look up.
fn departed_since(
    before: Option<&Organization>,
    present: &foldhash::HashSet<IdKey<'_>>,
) -> MemberIds {
    match before {
        Some(before) if !before.groups.is_empty() => before
            .members
            .iter()
            .filter(|m| !present.contains(&IdKey::of(&m.id)))
            .map(|m| m.id.as_str())
            .collect(),
        _ => MemberIds::default(),
    }
}

/// The member ids each group keeps from the read before (`since`: the groups this sync did not
/// send, without the members that have `departed` since) or knows from the sync cache
/// (`known`, by the members' references); `None`: ask the server.
fn kept_member_ids(
    groups: Vec<GroupModel>,
    since: Option<(&mut Organization, &std::collections::HashSet<&str>)>,
    known: Option<&Known>,
    members: &[OrgMember],
    departed: &foldhash::HashSet<IdKey<'_>>,
) -> Vec<(GroupModel, Option<MemberIds>)> {
    // the member ids of the groups whose members are known (by their references)
    let resolve = known
        .filter(|k| !k.lists.is_empty())
        .map(|_| Known::resolver(members));
    let known_ids = |g: &GroupModel| -> Option<MemberIds> {
        let ext = g.external_id.as_deref().filter(|e| !e.is_empty());
        let Some(ext) = ext else {
            // a sync does not use the members of a group it does not manage
            return known.is_some().then(MemberIds::default);
        };
        let refs = known?.lists.get(ext)?;
        let resolve = resolve.as_ref()?;
        let mut ids = MemberIds::default();
        // a reference no member has any more: the member has left (and so the group)
        for id in refs.iter().filter_map(|r| resolve.get(&**r)) {
            ids.push(id);
        }
        Some(ids)
    };
    match since {
        None => groups
            .into_iter()
            .map(|g| {
                let ids = known_ids(&g);
                (g, ids)
            })
            .collect(),
        Some((before, changed)) => groups
            .into_iter()
            .map(|g| {
                let sent = g
                    .external_id
                    .as_deref()
                    .is_some_and(|e| changed.contains(e));
                // `before.groups` is sorted by id
                let at = before
                    .groups
                    .binary_search_by(|b| b.id.as_str().cmp(&g.id))
                    .ok()
                    .filter(|_| !sent);
                let kept = at.map(|at| {
                    let mut ids = std::mem::take(&mut before.groups[at].member_ids);
                    if !departed.is_empty() {
                        ids.retain(|id| !departed.contains(&id));
                    }
                    ids
                });
                let kept = kept.or_else(|| known_ids(&g));
                (g, kept)
            })
            .collect(),
    }
}

/// Puts the groups in id order and each one's member ids in order (the answers arrive in any
/// order, and so do a group's member ids); a group listed twice fails the read.
fn sort_groups(groups: &mut [OrgGroup]) -> anyhow::Result<()> {
    groups.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    for g in groups.iter_mut() {
        g.member_ids.sort();
    }
    if let Some(w) = groups.windows(2).find(|w| w[0].id == w[1].id) {
        anyhow::bail!(
            "reading the organization's groups: group `{}` ({}) is listed twice; the \
             server's list is inconsistent, so the read failed",
            w[0].name,
            w[0].id
        );
    }
    Ok(())
}

/// A group member the member list does not have (`present`, of `listed` members): the member
/// list is short (or the organization changed during the read). Either way the read does not
/// show the organization, and a plan or cache made from it would be wrong. Only the groups
/// whose members were asked for (`read`) are checked: those whose members were known or kept
/// hold members of this list only.
fn check_members_listed(
    groups: &[OrgGroup],
    read: &[String],
    present: &foldhash::HashSet<IdKey<'_>>,
    listed: usize,
) -> anyhow::Result<()> {
    let asked: std::collections::HashSet<&str> = read.iter().map(String::as_str).collect();
    let asked = |g: &OrgGroup| g.external_id.as_deref().is_none_or(|e| asked.contains(e));
    for g in groups.iter().filter(|g| asked(g)) {
        if let Some(unknown) = g.member_ids.keys().find(|id| !present.contains(id)) {
            let unknown = match unknown {
                IdKey::Guid(n) => uuid::Uuid::from_u128(n).to_string(),
                IdKey::Other(s) => s.to_string(),
            };
            anyhow::bail!(
                "reading the organization: group `{}` has member {unknown}, which the \
                 member list ({listed} members) does not have; the member list is incomplete or \
                 the organization changed during the read, so the read failed (the next \
                 sync reads it again)",
                g.name,
            );
        }
    }
    Ok(())
}
