//! Fake cloud directory APIs with the vendors' documented behaviour, in-process on loopback:
//! Okta (`SSWS` token, `limit`/`after` paging with `Link: rel="next"`, deprovisioned users only
//! when filtered for, `X-Rate-Limit-*` headers, 429 with a reset time, Okta error bodies) and
//! Microsoft Graph with its token endpoint (client credentials, `@odata.nextLink` paging,
//! `/users/delta` with `@removed`, group members and transitive members, 429 with
//! `Retry-After`, OAuth and Graph error bodies).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde_json::{Value, json};

/// One directory user.
#[derive(Debug, Clone)]
pub struct CloudUser {
    pub id: String,
    pub email: String,
    /// Okta: ACTIVE, SUSPENDED, DEPROVISIONED. Graph: ACTIVE, DISABLED, DELETED.
    pub status: &'static str,
}

#[derive(Debug, Clone)]
pub struct CloudGroup {
    pub id: String,
    pub name: String,
    pub users: Vec<String>,
    pub groups: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Directory {
    /// Google: the service account's public key (PEM) that must have signed the assertion.
    pub google_public_key: String,
    pub users: Vec<CloudUser>,
    pub groups: Vec<CloudGroup>,
    /// Items per page at most (the client's `limit` may ask for fewer).
    pub page_size: usize,
    /// The next this-many requests answer 429.
    pub throttle: usize,
    /// Okta: calls allowed per rate-limit window (default 600); the window resets a second
    /// after each answer.
    pub rate_limit: usize,
    /// Every request's path and query, for assertions.
    pub requests: Vec<String>,
}

pub struct FakeCloud {
    pub url: String,
    pub dir: Arc<Mutex<Directory>>,
    _rt: tokio::runtime::Runtime,
}

pub const OKTA_TOKEN: &str = "00okta-token-value";
pub const ONELOGIN_ID: &str = "onelogin-client-id";
pub const ONELOGIN_SECRET: &str = "onelogin-client-secret";
pub const GOOGLE_ADMIN: &str = "admin@example.com";
pub const GOOGLE_SA: &str = "connector@project.iam.gserviceaccount.com";
pub const GRAPH_TENANT: &str = "contoso.onmicrosoft.com";
pub const GRAPH_APP: &str = "11111111-2222-3333-4444-555555555555";
pub const GRAPH_SECRET: &str = "graph~client~secret";

type S = (Arc<Mutex<Directory>>, String, Arc<AtomicUsize>);

impl FakeCloud {
    pub fn start(directory: Directory) -> FakeCloud {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = Arc::new(Mutex::new(Directory {
            page_size: if directory.page_size == 0 {
                2
            } else {
                directory.page_size
            },
            ..directory
        }));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state: S = (dir.clone(), url.clone(), Arc::new(AtomicUsize::new(0)));
        let app = Router::new()
            .route("/api/v1/users", get(okta_users))
            .route("/api/v1/groups", get(okta_groups))
            .route("/api/v1/groups/{id}/users", get(okta_group_users))
            .route("/{tenant}/oauth2/v2.0/token", post(graph_token))
            .route("/v1.0/users", get(graph_users))
            .route("/v1.0/users/delta", get(graph_delta))
            .route("/v1.0/groups", get(graph_groups))
            .route("/v1.0/groups/{id}/members", get(graph_members))
            .route("/v1.0/groups/{id}/transitiveMembers", get(graph_transitive))
            .route("/auth/oauth2/v2/token", post(onelogin_token))
            .route("/api/1/users", get(onelogin_users))
            .route("/api/1/roles", get(onelogin_roles))
            .route("/google/token", post(google_token))
            .route("/admin/directory/v1/users", get(google_users))
            .route("/admin/directory/v1/groups", get(google_groups))
            .route(
                "/admin/directory/v1/groups/{id}/members",
                get(google_members),
            )
            .with_state(state);
        rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeCloud { url, dir, _rt: rt }
    }

    pub fn dir(&self) -> std::sync::MutexGuard<'_, Directory> {
        self.dir.lock().expect("lock")
    }
}

/// Records the request, then answers for the fake when it throttles or the credentials are
/// wrong (`auth` is the vendor's check); `None` lets the handler answer.
fn record(
    dir: &mut Directory,
    path: &str,
    q: &HashMap<String, String>,
    h: &HeaderMap,
    auth: fn(&HeaderMap) -> Option<Response>,
) -> Option<Response> {
    let mut keys: Vec<_> = q.iter().collect();
    keys.sort();
    dir.requests.push(format!("{path} {keys:?}"));
    if dir.throttle > 0 {
        dir.throttle -= 1;
        let reset = chrono::Utc::now().timestamp() + 1;
        let mut resp = (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({"errorCode": "E0000047", "errorSummary": "API call exceeded rate limit due to too many requests.",
                        "error": {"code": "TooManyRequests", "message": "Too many requests"}})),
        )
            .into_response();
        let h = resp.headers_mut();
        if path.starts_with("/api/v1/") {
            // Okta: no Retry-After, the window's reset time instead
            h.insert("x-rate-limit-limit", "600".parse().expect("v"));
            h.insert("x-rate-limit-remaining", "0".parse().expect("v"));
            h.insert("x-rate-limit-reset", reset.to_string().parse().expect("v"));
        } else {
            h.insert("retry-after", "1".parse().expect("v"));
        }
        return Some(resp);
    }
    auth(h)
}

/// One page of `items` from offset `after` and the next offset, if any.
fn page<T: Clone>(items: &[T], q: &HashMap<String, String>, max: usize) -> (Vec<T>, Option<usize>) {
    let start: usize = q
        .get("after")
        .or(q.get("$skiptoken"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let limit = q
        .get("limit")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(max)
        .min(max)
        .max(1);
    let end = (start + limit).min(items.len());
    let slice = items.get(start..end).map(<[T]>::to_vec).unwrap_or_default();
    (slice, (end < items.len()).then_some(end))
}

// ---------- Okta ----------

fn okta_auth(h: &HeaderMap) -> Option<Response> {
    let ok =
        h.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("SSWS {OKTA_TOKEN}"));
    (!ok).then(|| {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"errorCode": "E0000011", "errorSummary": "Invalid token provided"})),
        )
            .into_response()
    })
}

fn okta_page(
    base: &str,
    path: &str,
    items: Vec<Value>,
    q: &HashMap<String, String>,
    max: usize,
    calls: &AtomicUsize,
    limit: usize,
) -> Response {
    let (slice, next) = page(&items, q, max);
    let n = calls.fetch_add(1, Ordering::SeqCst);
    let limit = if limit == 0 { 600 } else { limit };
    let mut headers = vec![
        ("x-rate-limit-limit".to_string(), limit.to_string()),
        (
            "x-rate-limit-remaining".to_string(),
            (limit.saturating_sub(n + 1)).to_string(),
        ),
        (
            "x-rate-limit-reset".to_string(),
            (chrono::Utc::now().timestamp() + 1).to_string(),
        ),
    ];
    let mut link = format!("<{base}{path}>; rel=\"self\"");
    if let Some(next) = next {
        let mut u = url::Url::parse(&format!("{base}{path}")).expect("url");
        {
            let mut qp = u.query_pairs_mut();
            for (k, v) in q.iter().filter(|(k, _)| k.as_str() != "after") {
                qp.append_pair(k, v);
            }
            qp.append_pair("after", &next.to_string());
        }
        link.push_str(&format!(", <{u}>; rel=\"next\""));
    }
    headers.push(("link".to_string(), link));
    let mut resp = Json(Value::Array(slice)).into_response();
    for (k, v) in headers {
        resp.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            v.parse().expect("value"),
        );
    }
    resp
}

fn okta_user(u: &CloudUser) -> Value {
    json!({"id": u.id, "status": u.status, "profile": {"email": u.email, "login": u.email}})
}

async fn okta_users(
    State((dir, base, calls)): State<S>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut d = dir.lock().expect("lock");
    if let Some(r) = record(&mut d, "/api/v1/users", &q, &h, okta_auth) {
        return r;
    }
    let filter = q.get("filter").cloned().unwrap_or_default();
    let deprovisioned = filter.contains("status eq \"DEPROVISIONED\"");
    let items: Vec<Value> = d
        .users
        .iter()
        .filter(|u| (u.status == "DEPROVISIONED") == deprovisioned)
        .map(okta_user)
        .collect();
    okta_page(
        &base,
        "/api/v1/users",
        items,
        &q,
        d.page_size,
        &calls,
        d.rate_limit,
    )
}

async fn okta_groups(
    State((dir, base, calls)): State<S>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut d = dir.lock().expect("lock");
    if let Some(r) = record(&mut d, "/api/v1/groups", &q, &h, okta_auth) {
        return r;
    }
    let items = d
        .groups
        .iter()
        .map(|g| json!({"id": g.id, "type": "OKTA_GROUP", "profile": {"name": g.name}}))
        .collect();
    okta_page(
        &base,
        "/api/v1/groups",
        items,
        &q,
        d.page_size,
        &calls,
        d.rate_limit,
    )
}

async fn okta_group_users(
    State((dir, base, calls)): State<S>,
    Path(id): Path<String>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut d = dir.lock().expect("lock");
    let path = format!("/api/v1/groups/{id}/users");
    if let Some(r) = record(&mut d, &path, &q, &h, okta_auth) {
        return r;
    }
    let Some(g) = d.groups.iter().find(|g| g.id == id) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"errorCode": "E0000007", "errorSummary": "Not found: Resource not found"})),
        )
            .into_response();
    };
    let items = g
        .users
        .iter()
        .filter_map(|uid| d.users.iter().find(|u| &u.id == uid))
        .map(okta_user)
        .collect();
    okta_page(&base, &path, items, &q, d.page_size, &calls, d.rate_limit)
}

// ---------- Microsoft Graph ----------

const GRAPH_TOKEN: &str = "graph-access-token";

async fn graph_token(
    Path(tenant): Path<String>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let ok = tenant == GRAPH_TENANT
        && f.get("client_id").map(String::as_str) == Some(GRAPH_APP)
        && f.get("client_secret").map(String::as_str) == Some(GRAPH_SECRET)
        && f.get("grant_type").map(String::as_str) == Some("client_credentials")
        && f.get("scope").map(String::as_str) == Some("https://graph.microsoft.com/.default");
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value.\r\nTrace ID: 0"})),
        )
            .into_response();
    }
    Json(json!({"token_type": "Bearer", "expires_in": 3599, "access_token": GRAPH_TOKEN}))
        .into_response()
}

fn graph_auth(h: &HeaderMap) -> Option<Response> {
    let ok = h.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {GRAPH_TOKEN}"));
    (!ok).then(|| {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"code": "InvalidAuthenticationToken", "message": "Access token is empty."}})),
        )
            .into_response()
    })
}

fn graph_user(u: &CloudUser) -> Value {
    let mut v = json!({"id": u.id, "mail": u.email, "userPrincipalName": u.email,
                       "displayName": u.id, "accountEnabled": u.status != "DISABLED",
                       "@odata.type": "#microsoft.graph.user"});
    if u.status == "DELETED" {
        v["@removed"] = json!({"reason": "changed"});
    }
    v
}

fn graph_page(
    base: &str,
    path: &str,
    items: Vec<Value>,
    q: &HashMap<String, String>,
    max: usize,
    delta: bool,
) -> Response {
    let (slice, next) = page(&items, q, max);
    let mut body = json!({"value": slice});
    match next {
        Some(n) => {
            let mut u = url::Url::parse(&format!("{base}{path}")).expect("url");
            {
                let mut qp = u.query_pairs_mut();
                for (k, v) in q.iter().filter(|(k, _)| k.as_str() != "$skiptoken") {
                    qp.append_pair(k, v);
                }
                qp.append_pair("$skiptoken", &n.to_string());
            }
            body["@odata.nextLink"] = json!(u.to_string());
        }
        None if delta => body["@odata.deltaLink"] = json!(format!("{base}{path}?$deltatoken=end")),
        None => {}
    }
    Json(body).into_response()
}

async fn graph_users(
    State((dir, base, _)): State<S>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut d = dir.lock().expect("lock");
    if let Some(r) = record(&mut d, "/v1.0/users", &q, &h, graph_auth) {
        return r;
    }
    let items = d
        .users
        .iter()
        .filter(|u| u.status != "DELETED")
        .map(graph_user)
        .collect();
    graph_page(&base, "/v1.0/users", items, &q, d.page_size, false)
}

async fn graph_delta(
    State((dir, base, _)): State<S>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut d = dir.lock().expect("lock");
    if let Some(r) = record(&mut d, "/v1.0/users/delta", &q, &h, graph_auth) {
        return r;
    }
    let items = d.users.iter().map(graph_user).collect();
    graph_page(&base, "/v1.0/users/delta", items, &q, d.page_size, true)
}

async fn graph_groups(
    State((dir, base, _)): State<S>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut d = dir.lock().expect("lock");
    if let Some(r) = record(&mut d, "/v1.0/groups", &q, &h, graph_auth) {
        return r;
    }
    let items = d
        .groups
        .iter()
        .map(|g| json!({"id": g.id, "displayName": g.name}))
        .collect();
    graph_page(&base, "/v1.0/groups", items, &q, d.page_size, false)
}

async fn graph_members(
    State((dir, base, _)): State<S>,
    Path(id): Path<String>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut d = dir.lock().expect("lock");
    let path = format!("/v1.0/groups/{id}/members");
    if let Some(r) = record(&mut d, &path, &q, &h, graph_auth) {
        return r;
    }
    let Some(g) = d.groups.iter().find(|g| g.id == id) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"code": "Request_ResourceNotFound", "message": "not found"}})),
        )
            .into_response();
    };
    let mut items: Vec<Value> = g
        .users
        .iter()
        .filter_map(|uid| {
            d.users
                .iter()
                .find(|u| &u.id == uid && u.status != "DELETED")
        })
        .map(graph_user)
        .collect();
    items.extend(
        g.groups
            .iter()
            .map(|gid| json!({"@odata.type": "#microsoft.graph.group", "id": gid})),
    );
    graph_page(&base, &path, items, &q, d.page_size, false)
}

async fn graph_transitive(
    State((dir, base, _)): State<S>,
    Path(id): Path<String>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut d = dir.lock().expect("lock");
    let path = format!("/v1.0/groups/{id}/transitiveMembers");
    if let Some(r) = record(&mut d, &path, &q, &h, graph_auth) {
        return r;
    }
    let mut ids: Vec<String> = Vec::new();
    let mut stack = vec![id];
    let mut seen = std::collections::HashSet::new();
    while let Some(gid) = stack.pop() {
        if !seen.insert(gid.clone()) {
            continue;
        }
        if let Some(g) = d.groups.iter().find(|g| g.id == gid) {
            ids.extend(g.users.iter().cloned());
            stack.extend(g.groups.iter().cloned());
        }
    }
    ids.sort();
    ids.dedup();
    let items = ids
        .iter()
        .filter_map(|uid| {
            d.users
                .iter()
                .find(|u| &u.id == uid && u.status != "DELETED")
        })
        .map(graph_user)
        .collect();
    graph_page(&base, &path, items, &q, d.page_size, false)
}

// ---------- OneLogin ----------

const ONELOGIN_TOKEN: &str = "onelogin-access-token";

async fn onelogin_token(h: HeaderMap, Json(body): Json<Value>) -> Response {
    use base64::Engine;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{ONELOGIN_ID}:{ONELOGIN_SECRET}"))
    );
    let ok = h.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str())
        && body["grant_type"] == "client_credentials";
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"status": {"error": true, "code": 401, "type": "Unauthorized", "message": "Authentication Failure"}})),
        )
            .into_response();
    }
    Json(json!({"access_token": ONELOGIN_TOKEN, "token_type": "bearer", "expires_in": 36000}))
        .into_response()
}

fn onelogin_page(
    base: &str,
    path: &str,
    items: Vec<Value>,
    q: &HashMap<String, String>,
    max: usize,
) -> Response {
    let start: usize = q.get("cursor").and_then(|v| v.parse().ok()).unwrap_or(0);
    let end = (start + max).min(items.len());
    let next = (end < items.len()).then(|| format!("{base}{path}?cursor={end}"));
    Json(json!({
        "status": {"error": false, "code": 200, "type": "success", "message": "Success"},
        "pagination": {"before_cursor": null, "after_cursor": next.as_ref().map(|_| end.to_string()),
                        "previous_link": null, "next_link": next},
        "data": items.get(start..end).map(<[Value]>::to_vec).unwrap_or_default(),
    }))
    .into_response()
}

fn onelogin_auth(h: &HeaderMap) -> Option<Response> {
    let ok = h.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("bearer:{ONELOGIN_TOKEN}"));
    (!ok).then(|| {
        (StatusCode::UNAUTHORIZED, Json(json!({"status": {"error": true, "code": 401, "type": "Unauthorized", "message": "Authentication Failure"}}))).into_response()
    })
}

async fn onelogin_users(
    State((dir, base, _)): State<S>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut d = dir.lock().expect("lock");
    if let Some(r) = record(&mut d, "/api/1/users", &q, &h, onelogin_auth) {
        return r;
    }
    let items = d
        .users
        .iter()
        .enumerate()
        .filter(|(_, u)| u.status != "DELETED")
        .map(|(i, u)| {
            let roles: Vec<u64> = d
                .groups
                .iter()
                .enumerate()
                .filter(|(_, g)| g.users.contains(&u.id))
                .map(|(gi, _)| 500 + gi as u64)
                .collect();
            json!({"id": 1000 + i as u64, "email": u.email, "username": u.id,
                   "status": if u.status == "DISABLED" { 2 } else { 1 }, "role_id": roles})
        })
        .collect();
    onelogin_page(&base, "/api/1/users", items, &q, d.page_size)
}

async fn onelogin_roles(
    State((dir, base, _)): State<S>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut d = dir.lock().expect("lock");
    if let Some(r) = record(&mut d, "/api/1/roles", &q, &h, onelogin_auth) {
        return r;
    }
    let items = d
        .groups
        .iter()
        .enumerate()
        .map(|(gi, g)| json!({"id": 500 + gi as u64, "name": g.name}))
        .collect();
    onelogin_page(&base, "/api/1/roles", items, &q, d.page_size)
}

// ---------- Google ----------

const GOOGLE_TOKEN: &str = "google-access-token";

async fn google_token(
    State((dir, base, _)): State<S>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let public = dir.lock().expect("lock").google_public_key.clone();
    let bad = |m: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": m})),
        )
            .into_response()
    };
    if f.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return bad("Invalid grant_type");
    }
    let Some(assertion) = f.get("assertion") else {
        return bad("Missing assertion");
    };
    let Ok(key) = jsonwebtoken::DecodingKey::from_rsa_pem(public.as_bytes()) else {
        return bad("no key configured");
    };
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&[format!("{base}/google/token")]);
    v.set_issuer(&[GOOGLE_SA]);
    match jsonwebtoken::decode::<Value>(assertion, &key, &v) {
        Ok(t) if t.claims["sub"] == GOOGLE_ADMIN
            && t.claims["scope"].as_str().is_some_and(|s| s.contains("admin.directory.user.readonly")) =>
        {
            Json(json!({"access_token": GOOGLE_TOKEN, "token_type": "Bearer", "expires_in": 3599})).into_response()
        }
        Ok(_) => (StatusCode::UNAUTHORIZED, Json(json!({"error": "unauthorized_client", "error_description": "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested."}))).into_response(),
        Err(_) => bad("Invalid JWT Signature."),
    }
}

fn google_auth(h: &HeaderMap) -> Option<Response> {
    let ok = h.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {GOOGLE_TOKEN}"));
    (!ok).then(|| {
        (StatusCode::UNAUTHORIZED, Json(json!({"error": {"code": 401, "message": "Request had invalid authentication credentials."}}))).into_response()
    })
}

fn google_page(
    field: &str,
    items: Vec<Value>,
    q: &HashMap<String, String>,
    max: usize,
) -> Response {
    let start: usize = q.get("pageToken").and_then(|v| v.parse().ok()).unwrap_or(0);
    let end = (start + max).min(items.len());
    let mut body =
        json!({ field: items.get(start..end).map(<[Value]>::to_vec).unwrap_or_default() });
    if end < items.len() {
        body["nextPageToken"] = json!(end.to_string());
    }
    Json(body).into_response()
}

async fn google_users(
    State((dir, _, _)): State<S>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut d = dir.lock().expect("lock");
    if let Some(r) = record(&mut d, "/admin/directory/v1/users", &q, &h, google_auth) {
        return r;
    }
    let deleted = q.get("showDeleted").map(String::as_str) == Some("true");
    let items = d
        .users
        .iter()
        .filter(|u| (u.status == "DELETED") == deleted)
        .map(|u| json!({"id": u.id, "primaryEmail": u.email, "emails": [{"address": u.email, "primary": true}],
                        "suspended": u.status == "DISABLED", "archived": false}))
        .collect();
    google_page("users", items, &q, d.page_size)
}

async fn google_groups(
    State((dir, _, _)): State<S>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut d = dir.lock().expect("lock");
    if let Some(r) = record(&mut d, "/admin/directory/v1/groups", &q, &h, google_auth) {
        return r;
    }
    let items = d
        .groups
        .iter()
        .map(|g| json!({"id": g.id, "name": g.name, "email": format!("{}@example.com", g.id)}))
        .collect();
    google_page("groups", items, &q, d.page_size)
}

async fn google_members(
    State((dir, _, _)): State<S>,
    Path(id): Path<String>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut d = dir.lock().expect("lock");
    let path = format!("/admin/directory/v1/groups/{id}/members");
    if let Some(r) = record(&mut d, &path, &q, &h, google_auth) {
        return r;
    }
    let Some(g) = d.groups.iter().find(|g| g.id == id) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"code": 404, "message": "Resource Not Found: groupKey"}})),
        )
            .into_response();
    };
    let mut items: Vec<Value> = g
        .users
        .iter()
        .map(|u| json!({"id": u, "type": "USER", "status": "ACTIVE", "role": "MEMBER"}))
        .collect();
    items.extend(
        g.groups
            .iter()
            .map(|gid| json!({"id": gid, "type": "GROUP", "role": "MEMBER"})),
    );
    google_page("members", items, &q, d.page_size)
}
