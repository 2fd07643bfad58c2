//! A fake Bitwarden server that keeps one organization in memory and applies the server's
//! import rules: token endpoint (form-encoded client credentials with device fields), invites,
//! removals (owners never), links by email, group create/update with membership replacement,
//! `overwriteExisting`, the 2000 limit without `largeImport`, validation errors, a seat limit,
//! 401, 429 with `Retry-After`, 5xx — and a network cut in front of it (a TCP proxy that drops
//! every connection while cut).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub email: String,
    pub external_id: Option<String>,
    pub owner: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub members: BTreeSet<String>,
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
    pub client_id: String,
    pub client_secret: String,
    /// Keyed by email.
    pub members: BTreeMap<String, Member>,
    /// Keyed by externalId.
    pub groups: BTreeMap<String, Group>,
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
    /// externalIds of the members (kept with `members`, so a request need not scan the org).
    ext_index: foldhash::HashSet<String>,
    /// Benchmarks turn this on: the log keeps sizes and times, not the bodies.
    pub discard_bodies: bool,
}

impl Org {
    /// Empties the organization's members and groups (the log and credentials stay): the next
    /// sync meets a fresh organization.
    pub fn reset(&mut self) {
        self.members.clear();
        self.groups.clear();
        self.ext_index.clear();
    }
    pub fn emails(&self) -> BTreeSet<String> {
        self.members.keys().cloned().collect()
    }
    pub fn group_emails(&self, name: &str) -> BTreeSet<String> {
        let Some(g) = self.groups.values().find(|g| g.name == name) else {
            return BTreeSet::new();
        };
        self.members
            .values()
            .filter(|m| {
                m.external_id
                    .as_ref()
                    .is_some_and(|e| g.members.contains(e))
            })
            .map(|m| m.email.clone())
            .collect()
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
    pub fn start() -> FakeBitwarden {
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
            .layer(axum::extract::DefaultBodyLimit::max(512 * 1024 * 1024))
            .with_state(state);
        let (backend, front) = rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let backend = l.local_addr().expect("addr");
            tokio::spawn(async move {
                let _ = axum::serve(l, app).await;
            });
            let front = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            (backend, front)
        });
        let url = format!("http://{}", front.local_addr().expect("addr"));
        rt.spawn(proxy(front, backend, cut.clone()));
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
        if cut.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let cut = cut.clone();
        tokio::spawn(async move {
            let Ok(mut server) = tokio::net::TcpStream::connect(backend).await else {
                return;
            };
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
    }
    response
}

/// Checks and applies one import body; returns the response and its status for the log.
fn apply_import(org: &mut Org, headers: &HeaderMap, body: &str) -> (Response, u16) {
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
    // Seat limit: checked before anything is applied.
    if let Some(limit) = org.seat_limit {
        let new = active
            .iter()
            .filter(|m| {
                !org.ext_index
                    .contains(m.external_id.as_deref().unwrap_or_default())
                    && !org
                        .members
                        .contains_key(m.email.as_deref().unwrap_or_default())
            })
            .count();
        let removed = members.len() - active.len();
        if org.members.len() + new > limit + removed {
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
    // Apply: removals, invites/links/updates, overwrite, groups.
    let removed: foldhash::HashSet<String> = members
        .iter()
        .filter(|m| m.deleted)
        .map(|m| s(&m.external_id))
        .collect();
    if !removed.is_empty() {
        org.members
            .retain(|_, x| x.owner || x.external_id.as_ref().is_none_or(|e| !removed.contains(e)));
        org.ext_index = org
            .members
            .values()
            .filter_map(|m| m.external_id.clone())
            .collect();
        // a removed member leaves every group with it (the server's cascade)
        for g in org.groups.values_mut() {
            g.members.retain(|e| !removed.contains(e));
        }
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
            if by_ext.contains(&ext) || batch_ext.contains(&ext) {
                continue; // existing member: the server keeps it as it is
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
                    org.ext_index.insert(ext);
                }
            }
            Step::Insert(email, ext) => {
                org.ext_index.insert(ext.clone());
                org.members.insert(
                    email.clone(),
                    Member {
                        email,
                        external_id: Some(ext),
                        owner: false,
                    },
                );
            }
        }
    }
    if overwrite {
        let keep: foldhash::HashSet<String> = active.iter().map(|m| s(&m.external_id)).collect();
        org.members
            .retain(|_, x| x.owner || x.external_id.as_ref().is_none_or(|e| keep.contains(e)));
        for g in org.groups.values_mut() {
            g.members.retain(|e| keep.contains(e));
        }
        org.ext_index = org
            .members
            .values()
            .filter_map(|m| m.external_id.clone())
            .collect();
    }
    let known = &org.ext_index;
    let applied: Vec<(String, Group)> = groups
        .iter()
        .map(|g| {
            let members: BTreeSet<String> = g
                .member_external_ids
                .iter()
                .flatten()
                .filter(|e| known.contains(e.as_ref()))
                .map(|e| e.to_string())
                .collect();
            (
                s(&g.external_id),
                Group {
                    name: s(&g.name),
                    members,
                },
            )
        })
        .collect();
    org.groups.extend(applied);
    (StatusCode::OK.into_response(), 200)
}
