//! A fake Bitwarden server that keeps one organization in memory and applies the server's
//! import rules: token endpoint (form-encoded client credentials with device fields), invites,
//! removals (owners never), links by email, group create/update with membership replacement,
//! `overwriteExisting`, the 2000 limit without `largeImport`, validation errors, a seat limit,
//! 401, 429 with `Retry-After`, 5xx — and a network cut in front of it (a TCP proxy that drops
//! every connection while cut).
//!
//! It acts like one of two servers ([`ServerKind`]):
//! * **Bitwarden** (`ImportOrganizationUsersAndGroupsCommand`): members matched by externalId
//!   (else linked by email), removed on `deleted` (and so out of every group), groups renamed,
//!   and the public API's read side: `GET /public/members`, `GET /public/groups`,
//!   `GET /public/groups/{id}/member-ids` (shapes of `MemberResponseModel`,
//!   `GroupResponseModel`, `ListResponseModel`); and the member API of
//!   `src/Api/AdminConsole/Public/Controllers/MembersController.cs`: `GET` and `PUT
//!   /public/members/{id}` (a `PUT` replaces the direct collections with the body's and leaves
//!   the groups alone without `groups`), `POST …/revoke` (`RevokeOrganizationUsersValidator`:
//!   "Already revoked.", the last confirmed owner) and `POST …/restore`
//!   (`RestoreOrganizationUserCommand`: "Already active.", a seat limit), 404 for an unknown id.
//! * **Vaultwarden** (`src/api/core/public.rs`, `ldap_import`): no read side (404); members
//!   matched by email (an email change makes a second membership), `deleted` revokes and keeps
//!   the member's group rows (a restore brings them back), groups matched by externalId and never
//!   renamed, group members looked up by externalId, groups silently ignored unless
//!   `ORG_GROUPS_ENABLED`, no seat limit, `largeImport` ignored; a confirmed owner is revoked
//!   (`deleted`) or deleted (left out under `overwriteExisting`) only when another confirmed
//!   owner is left, the last one is kept, and the import answers 200 either way.
//!
//! Bitwarden mode can also apply the cloud's per-IP rate limits ([`Org::limits`], see
//! [`super::cloud_limits`]: counted per IP, method and path as the cloud does with
//! `CloudLimits::cloud()`, or in one counter per IP with the stress mode
//! `CloudLimits::shared_edge()`; `FAKE_BITWARDEN_CLOUD_LIMITS=<time scale>` turns them on for
//! every fake [`FakeBitwarden::start`] makes, `FAKE_BITWARDEN_LIMITS_MODE=shared` picks the
//! stress mode), and answer wrongly on purpose: the member list in pages
//! ([`Org::member_page_size`]) with a paging fault ([`PagingFault`]), a 404 on a group's member
//! ids, groups or members left out of the lists, an import answered with a redirect (recorded,
//! nothing applied; the `Location` answers 200 `{}` to whoever follows it), a token endpoint
//! that answers 429 without `Retry-After` for a while, and injected failures (a 429 with
//! `Retry-After`) on the group member-id reads from the n-th on; and member-id reads can reach
//! the rate limits late ([`Org::late_member_id_reads`], a slow network path).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::Path;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// Member statuses (`OrganizationUserStatusType`).
pub const INVITED: i32 = 0;
pub const CONFIRMED: i32 = 2;
pub const REVOKED: i32 = -1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member's id in the organization.
    pub id: String,
    pub email: String,
    pub external_id: Option<String>,
    /// An owner: Bitwarden never removes one by import; Vaultwarden keeps only the last
    /// *confirmed* owner ([`Org::make_owner`]).
    pub owner: bool,
    pub status: i32,
    /// The status a restore brings back (`GetPriorActiveOrganizationUserStatusType`).
    pub prior_status: i32,
    /// Direct collection access (`AssociationWithPermissionsResponseModel`: id, readOnly,
    /// hidePasswords, manage), replaced whole by `PUT /public/members/{id}`.
    pub collections: Vec<Value>,
}

impl Member {
    pub fn new(email: &str, external_id: Option<&str>) -> Member {
        Member {
            id: uuid::Uuid::new_v4().to_string(),
            email: email.to_string(),
            external_id: external_id.map(str::to_string),
            owner: false,
            status: INVITED,
            prior_status: INVITED,
            collections: Vec::new(),
        }
    }
}

/// One request to the member API, as received ("POST revoke <email>", "PUT <email>", …).
pub type MemberCall = String;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub external_id: Option<String>,
    /// Member ids.
    pub members: BTreeSet<String>,
}

/// Which real server the fake acts like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerKind {
    #[default]
    Bitwarden,
    /// `groups_enabled`: Vaultwarden's `ORG_GROUPS_ENABLED` (off by default there).
    Vaultwarden { groups_enabled: bool },
}

/// An injected failure for the next import (or token) request.
#[derive(Debug, Clone)]
pub enum Failure {
    Status(u16, String),
    RateLimited(u64),
}

/// One import request as received.
#[derive(Debug, Clone)]
pub struct ImportLog {
    pub bytes: usize,
    /// The body as received (parse it with [`ImportLog::body`]).
    pub raw: String,
    pub status: u16,
    /// Time the server spent on the request (parsing, checking, applying).
    pub seconds: f64,
}

/// An import body's members as (email, deleted).
pub fn member_changes(body: &Value) -> Vec<(String, bool)> {
    body["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["email"].as_str().expect("email").to_string(),
                m["deleted"].as_bool().expect("deleted"),
            )
        })
        .collect()
}

impl ImportLog {
    /// The body as JSON (`Null` if it is not JSON).
    pub fn body(&self) -> Value {
        serde_json::from_str(&self.raw).unwrap_or(Value::Null)
    }
}

#[derive(Debug, Default)]
pub struct Org {
    pub kind: ServerKind,
    /// A Bitwarden-like server that leaves existing group names alone (to see the connector's
    /// check after the push fail).
    pub ignore_renames: bool,
    pub client_id: String,
    pub client_secret: String,
    /// Keyed by email.
    pub members: BTreeMap<String, Member>,
    /// Keyed by group id.
    pub groups: BTreeMap<String, Group>,
    /// GET requests to the read side, by path.
    pub reads: Vec<String>,
    pub seat_limit: Option<usize>,
    pub tokens: HashSet<String>,
    pub token_requests: usize,
    pub imports: Vec<ImportLog>,
    pub import_failures: VecDeque<Failure>,
    pub token_failures: VecDeque<Failure>,
    /// Cut the network when the import after this many successful ones arrives.
    pub cut_after_imports: Option<usize>,
    pub successful_imports: usize,
    pub last_headers: Option<HeaderMap>,
    /// externalId → email of a member with it (kept with `members`, so a request need not scan
    /// the org).
    ext_index: foldhash::HashMap<String, String>,
    /// Benchmarks turn this on: the log keeps sizes and times, not the bodies.
    pub discard_bodies: bool,
    /// Import requests that have arrived (counted before `import_delay`).
    pub imports_started: usize,
    /// How long each import request waits before it is handled (a slow server, so that a test
    /// can signal the client while a request is in flight).
    pub import_delay: Option<std::time::Duration>,
    /// How long each revoke request waits before it is handled (the same, for a revoke).
    pub revoke_delay: Option<std::time::Duration>,
    /// The next this-many revoke requests are refused (400, as a validation error).
    pub revoke_refusals: usize,
    /// The cloud's rate limits (Bitwarden mode; `None`: no limits, as a self-hosted server).
    pub limits: Option<super::cloud_limits::CloudLimits>,
    /// `GET /public/members` answers in pages of this many members (`continuationToken`).
    pub member_page_size: Option<usize>,
    /// How the member list's paging goes wrong.
    pub paging_fault: Option<PagingFault>,
    /// Groups (by name) whose `GET /public/groups/{id}/member-ids` answers 404.
    pub member_ids_404: BTreeSet<String>,
    /// `GET /public/groups/{id}/member-ids` answers these, one a request, from the read numbered
    /// [`Org::member_ids_fail_from`] on (a 429 in the middle of the group reads).
    pub member_ids_failures: VecDeque<Failure>,
    /// How many member-id reads are answered before [`Org::member_ids_failures`] begin.
    pub member_ids_fail_from: usize,
    /// Member-id reads received (past the rate limits and the token check).
    pub member_id_reads: usize,
    /// Requests to the member API (`GET`/`PUT /public/members/{id}`, `POST …/revoke`,
    /// `…/restore`), in order, each as "METHOD action email".
    pub member_calls: Vec<MemberCall>,
    /// The member API's answers for these emails are a 400 with this message (a refusal the
    /// server's rules would give, e.g. a policy).
    pub member_refusals: BTreeMap<String, String>,
    /// Members (by email) removed by hand between the connector's read and its member API
    /// request: the request removes them (and their group rows) and answers 404.
    pub member_gone: BTreeSet<String>,
    /// The server runs self-hosted: a restore that needs a seat cannot add one
    /// (`OrganizationService.CanScaleAsync`).
    pub self_hosted: bool,
    /// When each of [`Org::member_ids_failures`] was answered: the server time of
    /// [`Org::limits`] (seconds), 0 without limits.
    pub member_ids_failed_at: Vec<f64>,
    /// Groups (by name) that `GET /public/groups` leaves out (a short group list).
    pub hidden_groups: BTreeSet<String>,
    /// Members (by email) that `GET /public/members` leaves out (a truncated list: their group
    /// rows still name them).
    pub hidden_members: BTreeSet<String>,
    /// Members (by email) that join [`Org::hidden_members`] once an import succeeds: the list
    /// read back after a push is short, the one read before it was not.
    pub hide_after_import: BTreeSet<String>,
    /// Every import is answered with this redirect status (301, 302, 307…) and a `Location`
    /// on the fake: recorded in `imports`, nothing applied.
    pub import_redirect: Option<u16>,
    /// Requests that arrived at a redirect's `Location` ("METHOD path").
    pub redirects_followed: Vec<String>,
    /// The token endpoint answers 429 without `Retry-After` for this long from the first token
    /// request after it is set (a proxy that strips the header; the cloud's token window).
    pub token_429_for: Option<std::time::Duration>,
    /// When the token endpoint's 429s of `token_429_for` began.
    pub token_429_since: Option<std::time::Instant>,
    /// The fake's URL (for a redirect's `Location`).
    pub base_url: String,
    /// The next member-id reads reach the rate limits this much later than sent, one delay a
    /// read (a slow network path: new connections' handshakes, where the reads after them go
    /// on kept-alive connections).
    pub late_member_id_reads: VecDeque<std::time::Duration>,
}

/// A member list whose paging goes wrong (pages are 1-based; page `n` is asked for with the
/// continuation token page `n - 1` sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PagingFault {
    /// Page `n` (2 or more) sends back the continuation token it was asked with.
    RepeatToken { page: usize },
    /// Page `from` sends the token of page `to` (`to` ≤ `from`, 2 or more): with `from: 3, to:
    /// 2` the tokens go A → B → A.
    Cycle { from: usize, to: usize },
    /// Page `n` (2 or more) answers 404.
    NotFound { page: usize },
}

impl Org {
    /// Empties the organization's members and groups (the log and credentials stay): the next
    /// sync meets a fresh organization.
    pub fn reset(&mut self) {
        self.members.clear();
        self.groups.clear();
        self.ext_index.clear();
    }
    /// Every membership's email (revoked ones too).
    pub fn emails(&self) -> BTreeSet<String> {
        self.members.keys().cloned().collect()
    }
    /// Emails of the members that are not revoked.
    pub fn active_emails(&self) -> BTreeSet<String> {
        self.members
            .values()
            .filter(|m| m.status != REVOKED)
            .map(|m| m.email.clone())
            .collect()
    }
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.values().find(|g| g.name == name)
    }
    pub fn group_mut(&mut self, name: &str) -> Option<&mut Group> {
        self.groups.values_mut().find(|g| g.name == name)
    }
    /// A group's members (revoked ones too: their rows are still there).
    pub fn group_members(&self, name: &str) -> impl Iterator<Item = &Member> {
        let ids = self.group(name).map(|g| &g.members);
        self.members
            .values()
            .filter(move |m| ids.is_some_and(|ids| ids.contains(&m.id)))
    }
    /// Emails of a group's members.
    pub fn group_emails(&self, name: &str) -> BTreeSet<String> {
        self.group_members(name).map(|m| m.email.clone()).collect()
    }
    /// externalIds of a group's members.
    pub fn group_external_ids(&self, name: &str) -> BTreeSet<String> {
        self.group_members(name)
            .filter_map(|m| m.external_id.clone())
            .collect()
    }
    /// Memberships with this externalId.
    pub fn with_external_id(&self, ext: &str) -> Vec<&Member> {
        self.members
            .values()
            .filter(|m| m.external_id.as_deref() == Some(ext))
            .collect()
    }
    fn reindex(&mut self) {
        let mut index = foldhash::HashMap::default();
        for m in self.members.values() {
            if let Some(e) = &m.external_id {
                index.entry(e.clone()).or_insert_with(|| m.email.clone());
            }
        }
        self.ext_index = index;
    }
    /// The user changes the email of their account (the membership keeps its id and groups).
    pub fn change_account_email(&mut self, old: &str, new: &str) {
        if let Some(mut m) = self.members.remove(old) {
            m.email = new.to_string();
            self.members.insert(new.to_string(), m);
        }
        self.reindex();
    }
    /// A member invited by hand in the web vault (no externalId).
    pub fn add_manual_member(&mut self, email: &str) {
        self.members
            .insert(email.to_string(), Member::new(email, None));
    }
    /// A group made by hand in the web vault (no externalId), with these members.
    pub fn add_manual_group(&mut self, name: &str, emails: &[&str]) {
        let members = emails
            .iter()
            .filter_map(|e| self.members.get(*e).map(|m| m.id.clone()))
            .collect();
        let id = uuid::Uuid::new_v4().to_string();
        self.groups.insert(
            id.clone(),
            Group {
                id,
                name: name.to_string(),
                external_id: None,
                members,
            },
        );
    }
    /// Takes a member out of a group by hand.
    pub fn remove_from_group(&mut self, group: &str, email: &str) {
        let Some(id) = self.members.get(email).map(|m| m.id.clone()) else {
            panic!("no member {email}");
        };
        let g = self.group_mut(group).expect("group");
        assert!(g.members.remove(&id), "{email} was not in {group}");
    }
    /// Makes a member a confirmed owner by hand (Vaultwarden protects only a confirmed owner:
    /// the last one is neither revoked nor deleted by an import).
    pub fn make_owner(&mut self, email: &str) {
        let m = self.members.get_mut(email).expect("member");
        m.owner = true;
        m.status = CONFIRMED;
    }
    /// Revokes a member by hand.
    pub fn revoke(&mut self, email: &str) {
        let m = self.members.get_mut(email).expect("member");
        if m.status != REVOKED {
            m.prior_status = m.status;
        }
        m.status = REVOKED;
    }
    /// Gives a member direct access to a collection by hand.
    pub fn grant_collection(&mut self, email: &str, collection: &str, read_only: bool) {
        let m = self.members.get_mut(email).expect("member");
        m.collections.push(json!({
            "id": collection, "readOnly": read_only, "hidePasswords": false, "manage": false,
        }));
    }
    /// The member with this id (its email key).
    fn email_of(&self, id: &str) -> Option<String> {
        self.members
            .values()
            .find(|m| m.id == id)
            .map(|m| m.email.clone())
    }
    /// The members as `GET /public/members` lists them (`ListResponseModel<MemberResponseModel>`),
    /// encoded from a copy taken under the lock: a hundred thousand members are tens of MB, and
    /// a real server answers other requests while it writes them.
    fn members_json(members: &[Member]) -> Vec<u8> {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct MemberOut<'a> {
            object: &'static str,
            id: &'a str,
            user_id: Option<&'a str>,
            name: Option<&'a str>,
            email: &'a str,
            two_factor_enabled: bool,
            status: i32,
            collections: Option<()>,
            reset_password_enrolled: bool,
            sso_external_id: Option<&'a str>,
            #[serde(rename = "type")]
            kind: i32,
            external_id: Option<&'a str>,
            permissions: Option<()>,
        }
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct ListOut<'a> {
            object: &'static str,
            data: Vec<MemberOut<'a>>,
            continuation_token: Option<()>,
        }
        let data = members
            .iter()
            .map(|m| MemberOut {
                object: "member",
                id: &m.id,
                user_id: None,
                name: None,
                email: &m.email,
                two_factor_enabled: false,
                status: m.status,
                collections: None,
                reset_password_enrolled: false,
                sso_external_id: None,
                kind: if m.owner { 0 } else { 2 },
                external_id: m.external_id.as_deref(),
                permissions: None,
            })
            .collect();
        serde_json::to_vec(&ListOut {
            object: "list",
            data,
            continuation_token: None,
        })
        .expect("members JSON")
    }
    /// The groups as `GET /public/groups` lists them.
    fn groups_json(&self) -> Value {
        let data: Vec<Value> = self
            .groups
            .values()
            .map(|g| {
                json!({
                    "object": "group",
                    "id": g.id,
                    "name": g.name,
                    "externalId": g.external_id,
                    "collections": [],
                })
            })
            .collect();
        json!({"object": "list", "data": data, "continuationToken": null})
    }
}

pub struct FakeBitwarden {
    pub url: String,
    pub org: Arc<Mutex<Org>>,
    cut: Arc<AtomicBool>,
    _rt: tokio::runtime::Runtime,
}

type Shared = (Arc<Mutex<Org>>, Arc<AtomicBool>);

impl FakeBitwarden {
    /// A fake acting like Vaultwarden (no read side; see [`ServerKind`]).
    pub fn vaultwarden(groups_enabled: bool) -> FakeBitwarden {
        let server = FakeBitwarden::start();
        server.org().kind = ServerKind::Vaultwarden { groups_enabled };
        // a self-hosted server has no rate limits (`src/Api/Startup.cs`)
        server.org().limits = None;
        server
    }

    pub fn start() -> FakeBitwarden {
        FakeBitwarden::start_with(ServerKind::Bitwarden, super::cloud_limits::from_env())
    }

    /// A fake acting like `kind`, with these rate limits (none for Vaultwarden, whatever is
    /// asked: a self-hosted server has none).
    pub fn start_with(
        kind: ServerKind,
        limits: Option<super::cloud_limits::CloudLimits>,
    ) -> FakeBitwarden {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let org = Arc::new(Mutex::new(Org {
            client_id: super::client_id(),
            client_secret: super::CLIENT_SECRET.into(),
            ..Org::default()
        }));
        let cut = Arc::new(AtomicBool::new(false));
        let state: Shared = (org.clone(), cut.clone());
        let app = Router::new()
            .route("/identity/connect/token", post(token))
            .route("/api/public/organization/import", post(import))
            .route("/api/public/members", get(read_members))
            .route("/api/public/groups", get(read_groups))
            .route("/api/public/groups/{id}/member-ids", get(read_member_ids))
            .route(
                "/api/public/members/{id}",
                get(read_member).put(update_member),
            )
            .route("/api/public/members/{id}/revoke", post(revoke_member))
            .route("/api/public/members/{id}/restore", post(restore_member))
            .route("/moved/{*rest}", get(followed).post(followed))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                limit_requests,
            ))
            .layer(axum::extract::DefaultBodyLimit::max(512 * 1024 * 1024))
            .with_state(state);
        let (backend, front) = rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let backend = l.local_addr().expect("addr");
            tokio::spawn(async move {
                // no Nagle delay on answers (a read of the organization is a thousand requests)
                let l = axum::serve::ListenerExt::tap_io(l, |tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                let app = app.into_make_service_with_connect_info::<SocketAddr>();
                let _ = axum::serve(l, app).await;
            });
            let front = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            (backend, front)
        });
        let url = format!("http://{}", front.local_addr().expect("addr"));
        rt.spawn(proxy(front, backend, cut.clone()));
        {
            let mut o = org.lock().expect("org lock");
            o.base_url = url.clone();
            o.kind = kind;
            o.limits = limits.filter(|_| kind == ServerKind::Bitwarden);
        }
        FakeBitwarden {
            url,
            org,
            cut,
            _rt: rt,
        }
    }

    pub fn org(&self) -> std::sync::MutexGuard<'_, Org> {
        self.org.lock().expect("org lock")
    }

    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }

    /// The body of the last import request.
    pub fn last_body(&self) -> Value {
        self.org().imports.last().expect("an import").body()
    }

    pub fn import_count(&self) -> usize {
        self.org().imports.len()
    }
}

/// Forwards TCP connections to the backend; while `cut` is set, drops them (both new ones and
/// those already open).
async fn proxy(front: tokio::net::TcpListener, backend: SocketAddr, cut: Arc<AtomicBool>) {
    loop {
        let Ok((mut client, _)) = front.accept().await else {
            return;
        };
        let _ = client.set_nodelay(true);
        if cut.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let cut = cut.clone();
        tokio::spawn(async move {
            let Ok(mut server) = tokio::net::TcpStream::connect(backend).await else {
                return;
            };
            let _ = server.set_nodelay(true);
            let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
            tokio::pin!(copy);
            loop {
                tokio::select! {
                    _ = &mut copy => return,
                    _ = tokio::time::sleep(std::time::Duration::from_millis(5)) => {
                        if cut.load(Ordering::SeqCst) {
                            return; // dropping both sockets cuts the connection
                        }
                    }
                }
            }
        });
    }
}

fn failure_response(f: Failure) -> Response {
    match f {
        Failure::Status(code, body) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            [("content-type", "application/json")],
            body,
        )
            .into_response(),
        Failure::RateLimited(secs) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", secs.to_string())],
            "",
        )
            .into_response(),
    }
}

async fn token(State((org, _)): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let mut org = org.lock().expect("lock");
    org.token_requests += 1;
    if let Some(f) = org.token_failures.pop_front() {
        return failure_response(f);
    }
    if let Some(d) = org.token_429_for {
        let since = *org
            .token_429_since
            .get_or_insert_with(std::time::Instant::now);
        if since.elapsed() < d {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("content-type", "application/json")],
                json!({"message": "Slow down! Too many requests. Try again in 1m."}).to_string(),
            )
                .into_response();
        }
    }
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "form expected").into_response();
    }
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    for k in [
        "deviceType",
        "deviceIdentifier",
        "deviceName",
        "client_id",
        "client_secret",
    ] {
        if form.get(k).is_none_or(|v| v.is_empty()) {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": "invalid_request", "error_description": format!("{k} is required")})),
            )
                .into_response();
        }
    }
    if form.get("grant_type").map(String::as_str) != Some("client_credentials")
        || form.get("scope").map(String::as_str) != Some("api.organization")
    {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_grant"})),
        )
            .into_response();
    }
    if form["client_id"] != org.client_id || form["client_secret"] != org.client_secret {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let token = format!("tok-{}", org.token_requests);
    org.tokens.insert(token.clone());
    axum::Json(json!({"access_token": token, "expires_in": 3600, "token_type": "Bearer"}))
        .into_response()
}

/// Checks the bearer token; `Some(response)` when the request must be refused.
fn refuse_read(org: &mut Org, headers: &HeaderMap, path: String) -> Option<Response> {
    org.reads.push(path);
    if matches!(org.kind, ServerKind::Vaultwarden { .. }) {
        // Vaultwarden implements only the import of the public API
        return Some(StatusCode::NOT_FOUND.into_response());
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !org.tokens.contains(auth) {
        return Some(StatusCode::UNAUTHORIZED.into_response());
    }
    None
}

async fn read_members(
    State((org, _)): State<Shared>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let mut org = org.lock().expect("lock");
    if let Some(r) = refuse_read(&mut org, &headers, "/public/members".into()) {
        return r;
    }
    if org.member_page_size.is_some()
        || org.paging_fault.is_some()
        || !org.hidden_members.is_empty()
    {
        return members_page(&org, uri.query());
    }
    let members: Vec<Member> = org.members.values().cloned().collect();
    drop(org);
    let body = Org::members_json(&members);
    ([("content-type", "application/json; charset=utf-8")], body).into_response()
}

async fn read_groups(State((org, _)): State<Shared>, headers: HeaderMap) -> Response {
    let mut org = org.lock().expect("lock");
    if let Some(r) = refuse_read(&mut org, &headers, "/public/groups".into()) {
        return r;
    }
    if !org.hidden_groups.is_empty() {
        let mut list = org.groups_json();
        if let Some(data) = list["data"].as_array_mut() {
            data.retain(|g| {
                !g["name"]
                    .as_str()
                    .is_some_and(|n| org.hidden_groups.contains(n))
            });
        }
        return axum::Json(list).into_response();
    }
    axum::Json(org.groups_json()).into_response()
}

async fn read_member_ids(
    State((org, _)): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut org = org.lock().expect("lock");
    if let Some(r) = refuse_read(
        &mut org,
        &headers,
        format!("/public/groups/{id}/member-ids"),
    ) {
        return r;
    }
    org.member_id_reads += 1;
    if org.member_id_reads > org.member_ids_fail_from
        && let Some(f) = org.member_ids_failures.pop_front()
    {
        let at = org.limits.as_ref().map_or(0.0, |l| l.now());
        org.member_ids_failed_at.push(at);
        return failure_response(f);
    }
    if org
        .groups
        .get(&id)
        .is_some_and(|g| org.member_ids_404.contains(&g.name))
    {
        return StatusCode::NOT_FOUND.into_response();
    }
    match org.groups.get(&id) {
        Some(g) => axum::Json(g.members.iter().collect::<Vec<_>>()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A 400 with the server's `ErrorResponseModel`.
fn bad_request(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"object": "error", "message": message, "errors": null})),
    )
        .into_response()
}

/// The member a member API request names, after the token check; `Err(response)`: 404 (no
/// such member, or Vaultwarden, which has no member API) or 401. `what` is logged.
#[allow(
    clippy::result_large_err,
    reason = "a test fake: the error is the answer to send, made once a request"
)]
fn member_call(
    org: &mut Org,
    headers: &HeaderMap,
    id: &str,
    what: &str,
) -> Result<String, Response> {
    if let Some(r) = refuse_read(org, headers, format!("/public/members/{id}")) {
        return Err(r);
    }
    let Some(email) = org.email_of(id) else {
        org.member_calls.push(format!("{what} (unknown id {id})"));
        return Err(StatusCode::NOT_FOUND.into_response());
    };
    org.member_calls.push(format!("{what} {email}"));
    if org.member_gone.contains(&email) {
        remove_members(org, |m| m.email == email);
        return Err(StatusCode::NOT_FOUND.into_response());
    }
    if let Some(msg) = org.member_refusals.get(&email) {
        return Err(bad_request(msg));
    }
    Ok(email)
}

/// `GET /public/members/{id}` (`MembersController.Get`): the member with its collections.
async fn read_member(
    State((org, _)): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut org = org.lock().expect("lock");
    let email = match member_call(&mut org, &headers, &id, "GET") {
        Ok(e) => e,
        Err(r) => return r,
    };
    let m = &org.members[&email];
    axum::Json(json!({
        "object": "member",
        "id": m.id,
        "email": m.email,
        "externalId": m.external_id,
        "status": m.status,
        "type": if m.owner { 0 } else { 2 },
        "collections": m.collections,
        "permissions": null,
    }))
    .into_response()
}

/// `PUT /public/members/{id}` (`MembersController.Put`, `MemberUpdateRequestModel`,
/// `UpdateOrganizationUserCommand`): sets the type and the externalId (none when omitted),
/// replaces the direct collection access with the body's (none when omitted), and leaves the
/// groups alone when `groups` is omitted.
async fn update_member(
    State((org, _)): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let mut org = org.lock().expect("lock");
    let email = match member_call(&mut org, &headers, &id, "PUT") {
        Ok(e) => e,
        Err(r) => return r,
    };
    let Ok(v) = serde_json::from_str::<Value>(&body) else {
        return bad_request("The request body is not valid JSON.");
    };
    let Some(kind) = v.get("type").and_then(Value::as_i64) else {
        return invalid(vec![("Type".into(), "The Type field is required.".into())]);
    };
    let ext = v
        .get("externalId")
        .and_then(Value::as_str)
        .map(str::to_string);
    if ext.as_ref().is_some_and(|e| e.chars().count() > 300) {
        return invalid(vec![(
            "ExternalId".into(),
            "The field ExternalId must be a string with a maximum length of 300.".into(),
        )]);
    }
    let collections = v
        .get("collections")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let groups = v.get("groups").and_then(Value::as_array).cloned();
    let member_id = {
        let m = org.members.get_mut(&email).expect("member");
        m.owner = kind == 0;
        m.external_id = ext;
        m.collections = collections;
        m.id.clone()
    };
    if let Some(groups) = groups {
        let ids: BTreeSet<String> = groups
            .iter()
            .filter_map(|g| g.as_str().map(str::to_string))
            .collect();
        for g in org.groups.values_mut() {
            if ids.contains(&g.id) {
                g.members.insert(member_id.clone());
            } else {
                g.members.remove(&member_id);
            }
        }
    }
    org.reindex();
    StatusCode::OK.into_response()
}

/// `POST /public/members/{id}/revoke` (`RevokeOrganizationUsersValidator`): "Already revoked."
/// for a revoked member, "Organization must have at least one confirmed owner." for the last
/// confirmed owner; the member keeps its groups and collections.
async fn revoke_member(
    State((org, _)): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let delay = org.lock().expect("lock").revoke_delay;
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let mut org = org.lock().expect("lock");
    if org.revoke_refusals > 0 {
        org.revoke_refusals -= 1;
        return invalid(vec![("id".into(), "Refused by the test.".into())]);
    }
    let email = match member_call(&mut org, &headers, &id, "POST revoke") {
        Ok(e) => e,
        Err(r) => return r,
    };
    let other_owner = org
        .members
        .values()
        .any(|m| m.email != email && m.owner && m.status == CONFIRMED);
    let m = org.members.get_mut(&email).expect("member");
    if m.status == REVOKED {
        return bad_request("Already revoked.");
    }
    if m.owner && !other_owner {
        return bad_request("Organization must have at least one confirmed owner.");
    }
    m.prior_status = m.status;
    m.status = REVOKED;
    StatusCode::OK.into_response()
}

/// `POST /public/members/{id}/restore` (`RestoreOrganizationUserCommand`): "Already active."
/// for a member that is not revoked; with no seat left, a self-hosted server cannot add one
/// ("Cannot autoscale on self-hosted instance.") and the cloud refuses past its autoscale
/// limit ("Seat limit has been reached."); else the member's prior status comes back.
async fn restore_member(
    State((org, _)): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut org = org.lock().expect("lock");
    let email = match member_call(&mut org, &headers, &id, "POST restore") {
        Ok(e) => e,
        Err(r) => return r,
    };
    if org.members[&email].status != REVOKED {
        return bad_request("Already active.");
    }
    if let Some(limit) = org.seat_limit {
        let occupied = org.members.values().filter(|m| m.status != REVOKED).count();
        if occupied >= limit {
            return bad_request(if org.self_hosted {
                "Cannot autoscale on self-hosted instance."
            } else {
                "Seat limit has been reached."
            });
        }
    }
    let m = org.members.get_mut(&email).expect("member");
    m.status = m.prior_status;
    StatusCode::OK.into_response()
}

fn invalid(errors: Vec<(String, String)>) -> Response {
    let mut map = serde_json::Map::new();
    for (k, v) in errors {
        if let Some(a) = map.entry(k).or_insert_with(|| json!([])).as_array_mut() {
            a.push(json!(v));
        }
    }
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"message": "The model state is invalid.", "validationErrors": map})),
    )
        .into_response()
}

fn valid_email(e: &str) -> bool {
    let parts: Vec<&str> = e.split('@').collect();
    parts.len() == 2 && !parts[0].is_empty() && parts[1].contains('.')
}

/// An import body in the shape the server binds (camelCase; fields optional so that a missing
/// one becomes a validation error, not a parse failure).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    #[serde(borrow)]
    members: Vec<BodyMember<'a>>,
    #[serde(borrow)]
    groups: Vec<BodyGroup<'a>>,
    overwrite_existing: bool,
    large_import: bool,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct BodyMember<'a> {
    #[serde(borrow)]
    email: Option<Cow<'a, str>>,
    #[serde(borrow)]
    external_id: Option<Cow<'a, str>>,
    #[serde(default)]
    deleted: bool,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct BodyGroup<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    external_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    member_external_ids: Option<Vec<Cow<'a, str>>>,
}

const EXT_MEMBER: &str =
    "The ExternalId field is required and must be a string of at most 300 characters.";
const EXT_GROUP: &str = "The ExternalId field is required.";
const NAME: &str = "The Name field is required (at most 100 characters).";
const MEMBER_IDS: &str = "must be an array of strings";

/// A body that does not bind to [`Body`]: the model-binding errors the server reports (a value of
/// the wrong type names its field), or 422 when it is not an import body at all.
fn binding_errors(body: &str) -> Response {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let (Some(members), Some(groups), Some(_), Some(_)) = (
        v.get("members").and_then(Value::as_array),
        v.get("groups").and_then(Value::as_array),
        v.get("overwriteExisting").and_then(Value::as_bool),
        v.get("largeImport").and_then(Value::as_bool),
    ) else {
        return (StatusCode::UNPROCESSABLE_ENTITY, "camelCase body expected").into_response();
    };
    let wrong = |x: &Value, k: &str| x.get(k).is_some_and(|f| !f.is_string() && !f.is_null());
    let mut errors = Vec::new();
    for (i, m) in members.iter().enumerate() {
        if wrong(m, "externalId") {
            errors.push((format!("Members[{i}].ExternalId"), EXT_MEMBER.to_string()));
        }
        if wrong(m, "email") {
            errors.push((
                format!("Members[{i}].Email"),
                "The Email field is required.".into(),
            ));
        }
    }
    for (i, g) in groups.iter().enumerate() {
        if wrong(g, "name") {
            errors.push((format!("Groups[{i}].Name"), NAME.into()));
        }
        if wrong(g, "externalId") {
            errors.push((format!("Groups[{i}].ExternalId"), EXT_GROUP.into()));
        }
        if !g
            .get("memberExternalIds")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().all(Value::is_string))
        {
            errors.push((format!("Groups[{i}].MemberExternalIds"), MEMBER_IDS.into()));
        }
    }
    if errors.is_empty() {
        errors.push(("$".into(), "The JSON value could not be converted.".into()));
    }
    invalid(errors)
}

async fn import(State((org, cut)): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let delay = {
        let mut o = org.lock().expect("lock");
        o.imports_started += 1;
        o.import_delay
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let cut_now = {
        let o = org.lock().expect("lock");
        o.cut_after_imports.is_some() && o.cut_after_imports == Some(o.successful_imports)
    };
    if cut_now {
        // The network goes down while this request is in flight: the proxy drops the
        // connection before any answer reaches the client, and nothing is applied.
        cut.store(true, Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let started = std::time::Instant::now();
    let mut org = org.lock().expect("lock");
    org.last_headers = Some(headers.clone());
    let (response, status) = apply_import(&mut org, &headers, &body);
    // the body is moved, not copied, into the log: imports can be tens of MB
    let bytes = body.len();
    let raw = if org.discard_bodies {
        String::new()
    } else {
        body
    };
    org.imports.push(ImportLog {
        bytes,
        raw,
        status,
        seconds: started.elapsed().as_secs_f64(),
    });
    if status == 200 {
        org.successful_imports += 1;
        let hide = std::mem::take(&mut org.hide_after_import);
        org.hidden_members.extend(hide);
    }
    response
}

/// Checks and applies one import body; returns the response and its status for the log.
#[allow(
    clippy::too_many_lines,
    reason = "the fake's import endpoint: each of the server's checks and answers in the order the real one makes them"
)]
fn apply_import(org: &mut Org, headers: &HeaderMap, body: &str) -> (Response, u16) {
    if let Some(code) = org.import_redirect {
        // a proxy or a moved server in front: nothing reaches the organization
        return (
            redirect_to_moved(code, &org.base_url, "/api/public/organization/import"),
            code,
        );
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !org.tokens.contains(auth) {
        return (StatusCode::UNAUTHORIZED.into_response(), 401);
    }
    if let Some(f) = org.import_failures.pop_front() {
        let status = match &f {
            Failure::Status(c, _) => *c,
            Failure::RateLimited(_) => 429,
        };
        return (failure_response(f), status);
    }
    // camelCase only, strings only (as Vaultwarden enforces)
    let parsed: Body = match serde_json::from_str(body) {
        Ok(b) => b,
        Err(_) => {
            let r = binding_errors(body);
            let status = r.status().as_u16();
            return (r, status);
        }
    };
    let Body {
        members,
        groups,
        overwrite_existing: overwrite,
        large_import: large,
    } = parsed;
    let ok_id = |s: &Option<Cow<str>>| {
        s.as_ref()
            .is_some_and(|s| !s.is_empty() && s.chars().count() <= 300)
    };
    let mut errors = Vec::new();
    for (i, m) in members.iter().enumerate() {
        if !ok_id(&m.external_id) {
            errors.push((format!("Members[{i}].ExternalId"), EXT_MEMBER.to_string()));
        }
        match m.email.as_deref() {
            Some(e) if e.chars().count() > 256 => errors.push((
                format!("Members[{i}].Email"),
                "The field Email must be a string with a maximum length of 256.".into(),
            )),
            Some(e) if !valid_email(e) => errors.push((
                format!("Members[{i}].Email"),
                "The Email field is not a valid e-mail address.".into(),
            )),
            Some(_) => {}
            None if m.deleted => {}
            None => errors.push((
                format!("Members[{i}].Email"),
                "The Email field is required.".into(),
            )),
        }
    }
    for (i, g) in groups.iter().enumerate() {
        if !g
            .name
            .as_ref()
            .is_some_and(|n| !n.is_empty() && n.chars().count() <= 100)
        {
            errors.push((format!("Groups[{i}].Name"), NAME.into()));
        }
        if !ok_id(&g.external_id) {
            errors.push((format!("Groups[{i}].ExternalId"), EXT_GROUP.into()));
        }
        if g.member_external_ids.is_none() {
            errors.push((format!("Groups[{i}].MemberExternalIds"), MEMBER_IDS.into()));
        }
    }
    if !errors.is_empty() {
        return (invalid(errors), 400);
    }
    if let ServerKind::Vaultwarden { groups_enabled } = org.kind {
        apply_vaultwarden(org, &members, &groups, overwrite, groups_enabled);
        return (StatusCode::OK.into_response(), 200);
    }
    // every id and email is now present
    let s = |v: &Option<Cow<str>>| v.as_deref().unwrap_or_default().to_string();
    let active: Vec<&BodyMember> = members.iter().filter(|m| !m.deleted).collect();
    if !large && (groups.len() > 2000 || active.len() > 2000) {
        return (
            (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"message": "You cannot import this much data at once."})),
            )
                .into_response(),
            400,
        );
    }
    // Seat limit: checked before anything is applied, only when the import invites someone,
    // against the occupied seats (revoked members hold none: `InviteOrganizationUsersCommand`,
    // `GetOccupiedSeatCountByOrganizationIdAsync`).
    if let Some(limit) = org.seat_limit {
        let new = active
            .iter()
            .filter(|m| {
                !org.ext_index
                    .contains_key(m.external_id.as_deref().unwrap_or_default())
                    && !org
                        .members
                        .contains_key(m.email.as_deref().unwrap_or_default())
            })
            .count();
        let removed = members.len() - active.len();
        let occupied = org.members.values().filter(|m| m.status != REVOKED).count();
        if new > 0 && occupied + new > limit + removed {
            return (
                (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({"message": format!("You have reached the maximum number of users ({limit}) for this plan.")})),
                )
                    .into_response(),
                400,
            );
        }
    }
    // Apply: removals, invites/links, overwrite, groups.
    let removed: foldhash::HashSet<String> = members
        .iter()
        .filter(|m| m.deleted)
        .map(|m| s(&m.external_id))
        .collect();
    if !removed.is_empty() {
        remove_members(org, |x| {
            x.external_id.as_ref().is_some_and(|e| removed.contains(e))
        });
    }
    // decide against the current org (borrowed), then apply
    enum Step {
        Link(String, String),
        Insert(String, String),
    }
    let steps: Vec<Step> = {
        let by_ext = &org.ext_index;
        let mut batch_ext: foldhash::HashSet<String> = Default::default();
        let mut batch_email: foldhash::HashSet<String> = Default::default();
        let mut steps = Vec::new();
        for m in &active {
            let ext = s(&m.external_id);
            let email = s(&m.email);
            if by_ext.contains_key(&ext) || batch_ext.contains(&ext) {
                continue; // existing member: the server keeps it as it is (its email too)
            }
            match org.members.get(&email) {
                Some(x) if x.external_id.is_none() && !batch_email.contains(&email) => {
                    batch_ext.insert(ext.clone());
                    batch_email.insert(email.clone());
                    steps.push(Step::Link(email, ext));
                }
                Some(_) => {}
                None if batch_email.contains(&email) => {}
                None => {
                    batch_ext.insert(ext.clone());
                    batch_email.insert(email.clone());
                    steps.push(Step::Insert(email, ext));
                }
            }
        }
        steps
    };
    for step in steps {
        match step {
            Step::Link(email, ext) => {
                if let Some(x) = org.members.get_mut(&email) {
                    x.external_id = Some(ext.clone());
                    org.ext_index.insert(ext, email);
                }
            }
            Step::Insert(email, ext) => {
                org.ext_index.insert(ext.clone(), email.clone());
                org.members
                    .insert(email.clone(), Member::new(&email, Some(&ext)));
            }
        }
    }
    if overwrite {
        let keep: foldhash::HashSet<String> = active.iter().map(|m| s(&m.external_id)).collect();
        remove_members(org, |x| {
            x.external_id.as_ref().is_some_and(|e| !keep.contains(e))
        });
    }
    apply_groups(org, &groups, !org.ignore_renames);
    (StatusCode::OK.into_response(), 200)
}

/// Removes the (non-owner) members `gone` selects, and their group rows (Bitwarden's cascade).
fn remove_members(org: &mut Org, gone: impl Fn(&Member) -> bool) {
    let mut ids: foldhash::HashSet<String> = Default::default();
    org.members.retain(|_, x| {
        let remove = !x.owner && gone(x);
        if remove {
            ids.insert(x.id.clone());
        }
        !remove
    });
    if ids.is_empty() {
        return;
    }
    org.reindex();
    for g in org.groups.values_mut() {
        g.members.retain(|id| !ids.contains(id));
    }
}

/// Creates or updates each group (matched by externalId), its membership replaced by the
/// members found by externalId.
fn apply_groups(org: &mut Org, groups: &[BodyGroup], rename: bool) {
    let s = |v: &Option<Cow<str>>| v.as_deref().unwrap_or_default().to_string();
    let mut by_ext: foldhash::HashMap<String, String> = org
        .groups
        .values()
        .filter_map(|g| Some((g.external_id.clone()?, g.id.clone())))
        .collect();
    for g in groups {
        let ext = s(&g.external_id);
        let members: BTreeSet<String> = g
            .member_external_ids
            .iter()
            .flatten()
            .filter_map(|e| org.ext_index.get(e.as_ref()))
            .filter_map(|email| org.members.get(email).map(|m| m.id.clone()))
            .collect();
        match by_ext.get(&ext).and_then(|id| org.groups.get_mut(id)) {
            Some(existing) => {
                if rename {
                    existing.name = s(&g.name);
                }
                existing.members = members;
            }
            None => {
                let id = uuid::Uuid::new_v4().to_string();
                by_ext.insert(ext.clone(), id.clone());
                org.groups.insert(
                    id.clone(),
                    Group {
                        id,
                        name: s(&g.name),
                        external_id: Some(ext),
                        members,
                    },
                );
            }
        }
    }
}

/// Vaultwarden's `ldap_import` (`src/api/core/public.rs`, 1.37): members matched by email;
/// `deleted` revokes (group rows stay); a listed revoked member is restored; groups only with
/// `ORG_GROUPS_ENABLED`, never renamed; `overwriteExisting` deletes the members whose externalId
/// is set and not listed (and their group rows: `Membership::delete` runs
/// `GroupUser::delete_all_by_member`). Owners: a *confirmed* owner is revoked (on `deleted`) or
/// deleted (under `overwriteExisting`) only while `Membership::count_confirmed_by_org_and_type(
/// org, MembershipType::Owner)` is more than 1, counted at that member (so a co-owner goes, the
/// last confirmed owner stays: "Can't revoke the last owner" / "Can't delete the last owner",
/// a warning in the server's log only); an owner who is not confirmed (invited, accepted,
/// revoked) goes like any member. The import answers 200 either way.
fn apply_vaultwarden(
    org: &mut Org,
    members: &[BodyMember],
    groups: &[BodyGroup],
    overwrite: bool,
    groups_enabled: bool,
) {
    let s = |v: &Option<Cow<str>>| v.as_deref().unwrap_or_default().to_string();
    // `x.atype == Owner && x.status == Confirmed` and the org's count of those is at most 1
    let last_owner = |org: &Org, x: &Member| {
        x.owner
            && x.status == CONFIRMED
            && org
                .members
                .values()
                .filter(|m| m.owner && m.status == CONFIRMED)
                .count()
                <= 1
    };
    for m in members {
        let email = s(&m.email);
        let ext = s(&m.external_id);
        if m.deleted {
            if let Some(x) = org.members.get(&email)
                && !last_owner(org, x)
                && let Some(x) = org.members.get_mut(&email)
            {
                x.status = REVOKED;
            }
        } else if let Some(x) = org.members.get_mut(&email) {
            if x.status == REVOKED {
                x.status = CONFIRMED;
            }
            x.external_id = Some(ext);
        } else {
            org.members
                .insert(email.clone(), Member::new(&email, Some(&ext)));
        }
    }
    org.reindex();
    if groups_enabled {
        apply_groups(org, groups, false);
    }
    if overwrite {
        let listed: foldhash::HashSet<String> = members.iter().map(|m| s(&m.external_id)).collect();
        // `Membership::find_by_org` order (here: by email), each checked when its turn comes
        let unlisted: Vec<String> = org
            .members
            .values()
            .filter(|x| x.external_id.as_ref().is_some_and(|e| !listed.contains(e)))
            .map(|x| x.email.clone())
            .collect();
        let mut ids: foldhash::HashSet<String> = Default::default();
        for email in unlisted {
            if last_owner(org, &org.members[&email]) {
                continue;
            }
            if let Some(x) = org.members.remove(&email) {
                ids.insert(x.id);
            }
        }
        for g in org.groups.values_mut() {
            g.members.retain(|id| !ids.contains(id));
        }
        org.reindex();
    }
}

/// One page of `GET /public/members` with the paging and the faults of [`Org::member_page_size`],
/// [`Org::paging_fault`] and [`Org::hidden_members`]. Continuation tokens are `page-<n>`.
fn members_page(org: &Org, query: Option<&str>) -> Response {
    let token = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "continuationToken")
            .map(|(_, v)| v.into_owned())
    });
    let page = match &token {
        None => 1,
        Some(t) => match t
            .strip_prefix("page-")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) if n >= 2 => n,
            _ => {
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({"message": "Invalid continuation token."})),
                )
                    .into_response();
            }
        },
    };
    if org.paging_fault == Some(PagingFault::NotFound { page }) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let listed: Vec<&Member> = org
        .members
        .values()
        .filter(|m| !org.hidden_members.contains(&m.email))
        .collect();
    let size = org.member_page_size.unwrap_or(usize::MAX).max(1);
    let from = (page - 1).saturating_mul(size);
    let chunk: Vec<Member> = listed
        .iter()
        .skip(from)
        .take(size)
        .map(|m| (*m).clone())
        .collect();
    let mut next = (from.saturating_add(size) < listed.len()).then_some(page + 1);
    match org.paging_fault {
        Some(PagingFault::RepeatToken { page: p }) if p == page => next = Some(page),
        Some(PagingFault::Cycle { from, to }) if from == page => next = Some(to),
        _ => {}
    }
    let mut list: Value = serde_json::from_slice(&Org::members_json(&chunk)).expect("members");
    list["continuationToken"] = next.map_or(Value::Null, |n| json!(format!("page-{n}")));
    axum::Json(list).into_response()
}

/// A redirect to `/moved<path>` on the fake, where [`followed`] answers.
fn redirect_to_moved(code: u16, base_url: &str, path: &str) -> Response {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::FOUND),
        [("location", format!("{base_url}/moved{path}"))],
        "",
    )
        .into_response()
}

/// A redirect's `Location`: answers 200 `{}` to any GET or POST (a client that follows the
/// redirect is fooled into taking it for the answer) and records the request.
async fn followed(
    State((org, _)): State<Shared>,
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> Response {
    org.lock()
        .expect("lock")
        .redirects_followed
        .push(format!("{method} {}", uri.path()));
    axum::Json(json!({})).into_response()
}

/// The cloud's rate limits in front of every route ([`Org::limits`]), keyed by client IP and,
/// as the cloud counts, by method and path (the query left out).
async fn limit_requests(
    State((org, _)): State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use super::cloud_limits::{CloudLimits, Kind, LOCALHOST};
    let ip = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map_or(LOCALHOST, |c| c.0.ip());
    let kind = Kind::of(req.method().as_str(), req.uri().path());
    if kind == Kind::MemberIds {
        let late = org.lock().expect("lock").late_member_id_reads.pop_front();
        if let Some(d) = late {
            tokio::time::sleep(d).await;
        }
    }
    let answer = org
        .lock()
        .expect("lock")
        .limits
        .as_mut()
        .map(|l| l.admit_request(ip, req.method().as_str(), req.uri().path()));
    if let Some(refused) = answer.and_then(CloudLimits::response) {
        return refused;
    }
    next.run(req).await
}
