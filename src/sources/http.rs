//! HTTP for the cloud directories: one reqwest client (proxy from `HTTPS_PROXY`/`NO_PROXY`,
//! optional extra CA from `server.ca_file`), JSON GETs and token POSTs with bounded retries on
//! connection errors, 429 (`Retry-After`, Okta's `X-Rate-Limit-Reset`, OneLogin's
//! `X-RateLimit-Reset`), 5xx and Google's 403 quota errors; an access token renewed before it
//! expires and once when the API refuses it (401); and a request recorder for `test --explain`.
//! Errors name the source, the request and the status; no secret is ever part of a request's
//! description (tokens travel in headers and bodies only).

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};

use crate::net::{RetryPolicy, describe_transport, retry_after};

/// The longest wait a server may ask for (`Retry-After`, rate-limit reset) unless configured.
pub const DEFAULT_MAX_SERVER_WAIT: Duration = Duration::from_secs(300);

/// `test --explain`: every request made while recording (method and URL, in order).
static RECORDER: Mutex<Option<Vec<String>>> = Mutex::new(None);

/// Starts recording the requests the sources make (see [`recorded_requests`]).
pub fn start_recording() {
    if let Ok(mut r) = RECORDER.lock() {
        *r = Some(Vec::new());
    }
}

/// The requests made since [`start_recording`]; recording stops.
pub fn recorded_requests() -> Vec<String> {
    RECORDER
        .lock()
        .ok()
        .and_then(|mut r| r.take())
        .unwrap_or_default()
}

fn record(what: &str) {
    if let Ok(mut r) = RECORDER.lock()
        && let Some(list) = r.as_mut()
    {
        list.push(what.to_string());
    }
}

/// How a source authenticates its API calls.
pub enum Auth {
    /// No `Authorization` header (token requests themselves).
    None,
    /// A fixed `Authorization` value (Okta's `SSWS` API token: it does not expire).
    Fixed(String),
    /// An OAuth access token, fetched by `request` and sent as `scheme` + token; renewed shortly
    /// before `expires_in` runs out and once when an API call answers 401.
    OAuth(OAuth),
}

pub struct OAuth {
    /// The token request as named in errors and `--explain` ("POST https://…/token").
    pub what: String,
    /// Builds the token request (Google signs a fresh assertion each time).
    pub request: Box<dyn Fn() -> anyhow::Result<RequestBuilder> + Send + Sync>,
    /// "Bearer " (Graph, Google) or "bearer:" (OneLogin).
    pub scheme: &'static str,
}

struct Session {
    header: String,
    /// When to fetch a new token (some time before it expires).
    renew_at: Option<Instant>,
}

/// A client for one directory API.
pub struct Api {
    pub http: reqwest::Client,
    /// Named in every error: "Okta", "Microsoft Graph", …
    pub source: &'static str,
    pub retry: RetryPolicy,
    /// The longest `Retry-After` (or rate-limit reset) honoured; a longer one fails the run
    /// with a message naming the wait.
    pub max_server_wait: Duration,
    /// The setting that raises `max_server_wait`, named in that message.
    pub max_server_wait_key: &'static str,
    pub auth: Auth,
    session: tokio::sync::Mutex<Option<Session>>,
}

/// A JSON answer with its headers.
pub struct Answer {
    pub json: serde_json::Value,
    pub headers: HeaderMap,
}

/// One page of a listing, as a vendor's page reader makes it from the answer.
pub struct Page {
    pub items: Vec<serde_json::Value>,
    /// The next page's URL; `None` on the last page.
    pub next: Option<String>,
    /// A pause before the next request (Okta's and OneLogin's rate-limit budgets).
    pub wait: Option<Duration>,
}

/// A request the API refused: its status and the vendor's error code, for callers that react to
/// particular refusals (an expired delta link). Displays as the full error sentence.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    /// The vendor's error code (`syncStateNotFound`, `E0000031`, …) when the body has one.
    pub code: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refused {}

/// The refusal behind an error from [`Api`], if it was one.
pub fn refused(e: &anyhow::Error) -> Option<&Refused> {
    e.downcast_ref::<Refused>()
}

/// Okta's reset time (epoch seconds) as a wait from now.
fn okta_reset(headers: &HeaderMap) -> Option<Duration> {
    let reset: i64 = header_num(headers, "x-rate-limit-reset")?;
    let now = chrono::Utc::now().timestamp();
    Some(Duration::from_secs((reset - now).max(0) as u64))
}

/// OneLogin's reset: seconds remaining in the window.
fn onelogin_reset(headers: &HeaderMap) -> Option<Duration> {
    let secs: i64 = header_num(headers, "x-ratelimit-reset")?;
    Some(Duration::from_secs(secs.max(0) as u64))
}

pub fn header_num(headers: &HeaderMap, name: &str) -> Option<i64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// Google's quota reasons (403 with `error.errors[].reason`), which mean "slow down", not
/// "permission missing": <https://developers.google.com/workspace/admin/directory/v1/limits>.
const GOOGLE_QUOTA_REASONS: [&str; 3] = [
    "userRateLimitExceeded",
    "rateLimitExceeded",
    "quotaExceeded",
];

/// Whether a refusal is Google's "slow down" 403.
fn is_quota_error(status: StatusCode, body: &str) -> bool {
    status == StatusCode::FORBIDDEN
        && serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .as_ref()
            .and_then(google_reason)
            .is_some_and(|r| GOOGLE_QUOTA_REASONS.contains(&r))
}

/// The first `error.errors[].reason` of a Google error body.
fn google_reason(v: &serde_json::Value) -> Option<&str> {
    v.pointer("/error/errors/0/reason")?.as_str()
}

/// The vendor's error code from a JSON body (Graph, OAuth, Okta, Google shapes).
fn error_code(body: &str) -> Option<String> {
    let v = serde_json::from_str::<serde_json::Value>(body).ok()?;
    let pick = |ptr: &str| v.pointer(ptr).and_then(|x| x.as_str()).map(str::to_string);
    google_reason(&v)
        .map(str::to_string)
        .or_else(|| pick("/error/code"))
        .or_else(|| pick("/error"))
        .or_else(|| pick("/errorCode"))
}

/// The vendor's error text from a JSON body (Graph, OAuth, Okta, Google, OneLogin shapes), else
/// the raw text.
fn error_text(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return body.chars().take(300).collect();
    };
    let pick = |ptr: &str| v.pointer(ptr).and_then(|x| x.as_str()).map(str::to_string);
    let code = error_code(body);
    let message = pick("/error/message")
        .or_else(|| pick("/error_description"))
        .or_else(|| pick("/errorSummary"))
        .or_else(|| pick("/status/message"))
        .or_else(|| pick("/message"))
        .map(|m| m.lines().next().unwrap_or_default().to_string());
    match (code, message) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        (None, Some(m)) => m,
        (None, None) => body.chars().take(300).collect(),
    }
}

/// A failed send: the refusal (when the server answered) or another error.
enum Failure {
    Refused(Refused),
    Other(anyhow::Error),
}

impl From<Failure> for anyhow::Error {
    fn from(f: Failure) -> anyhow::Error {
        match f {
            Failure::Refused(r) => anyhow::Error::new(r),
            Failure::Other(e) => e,
        }
    }
}

/// The token's lifetime from `expires_in` (a number, or a string of one).
fn expires_in(json: &serde_json::Value) -> Option<Duration> {
    let secs = match &json["expires_in"] {
        serde_json::Value::Number(n) => n.as_u64()?,
        serde_json::Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// When to renew a token that lives `life`: two minutes before it expires, or a quarter of its
/// lifetime before for short-lived tokens.
fn renew_after(life: Duration) -> Duration {
    life.saturating_sub((life / 4).min(Duration::from_secs(120)))
}

impl Api {
    pub fn new(source: &'static str, ca_file: Option<&Path>) -> anyhow::Result<Api> {
        let b = reqwest::Client::builder()
            .user_agent(format!("directory-connector/{}", crate::VERSION))
            .timeout(Duration::from_secs(300));
        let b = crate::net::with_network(b, ca_file)?;
        Ok(Api {
            http: b.build().context("building the HTTP client")?,
            source,
            retry: RetryPolicy::from_env(),
            max_server_wait: DEFAULT_MAX_SERVER_WAIT,
            max_server_wait_key: "",
            auth: Auth::None,
            session: tokio::sync::Mutex::new(None),
        })
    }

    /// How long to wait before retrying a refused request, or `None` when it must not be
    /// retried. `body` is the answer's text (Google's quota errors are 403s).
    fn retry_wait(
        &self,
        what: &str,
        status: StatusCode,
        headers: &HeaderMap,
        body: &str,
        attempt: u32,
    ) -> Result<Option<(Duration, String)>, Failure> {
        if is_quota_error(status, body) {
            // exponential backoff, as Google asks
            let why = format!("HTTP 403 {}", error_text(body));
            return Ok(Some((self.retry.backoff(attempt - 1), why)));
        }
        if status != StatusCode::TOO_MANY_REQUESTS && !status.is_server_error() {
            return Ok(None);
        }
        // the rate-limit reset headers come with every answer; they mean "wait" only on a 429
        let limited = status == StatusCode::TOO_MANY_REQUESTS;
        let asked = retry_after(headers)
            .map(|w| (w, "Retry-After"))
            .or_else(|| {
                limited
                    .then(|| okta_reset(headers).map(|w| (w, "X-Rate-Limit-Reset")))
                    .flatten()
            })
            .or_else(|| {
                limited
                    .then(|| onelogin_reset(headers).map(|w| (w, "X-RateLimit-Reset")))
                    .flatten()
            });
        match asked {
            Some((wait, header)) if wait > self.max_server_wait => Err(Failure::Other(anyhow!(
                "{}: {what}: HTTP {}: the server asks to wait {} s ({header}), longer than the \
                     {} s allowed{}",
                self.source,
                status.as_u16(),
                wait.as_secs(),
                self.max_server_wait.as_secs(),
                if self.max_server_wait_key.is_empty() {
                    String::new()
                } else {
                    format!(" (raise `{}` to wait that long)", self.max_server_wait_key)
                }
            ))),
            Some((wait, header)) => Ok(Some((
                wait,
                format!(
                    "HTTP {} with {header}: {} s",
                    status.as_u16(),
                    wait.as_secs()
                ),
            ))),
            None => Ok(Some((
                self.retry.backoff(attempt - 1),
                format!("HTTP {}", status.as_u16()),
            ))),
        }
    }

    /// Sends with retries; `what` names the request in errors ("GET https://…/users").
    async fn send_inner(
        &self,
        what: &str,
        make: &(dyn Fn() -> anyhow::Result<RequestBuilder> + Send + Sync),
    ) -> Result<Answer, Failure> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let last = attempt >= self.retry.max_attempts;
            match make().map_err(Failure::Other)?.send().await {
                Err(e) => {
                    let msg = describe_transport(&e);
                    if last {
                        return Err(Failure::Other(anyhow!(
                            "{}: {what}: {msg} (gave up after {attempt} attempts)",
                            self.source
                        )));
                    }
                    let wait = self.retry.backoff(attempt - 1);
                    tracing::warn!("{}: {what}: {msg}; retrying in {wait:?}", self.source);
                    tokio::time::sleep(wait).await;
                }
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    if status.is_success() {
                        let text = resp.text().await.map_err(|e| {
                            Failure::Other(anyhow!(
                                "{}: {what}: reading the answer: {e}",
                                self.source
                            ))
                        })?;
                        let json = serde_json::from_str(&text).map_err(|e| {
                            Failure::Other(anyhow!(
                                "{}: {what}: the answer is not JSON: {e}",
                                self.source
                            ))
                        })?;
                        return Ok(Answer { json, headers });
                    }
                    let body = resp.text().await.unwrap_or_default();
                    if !last
                        && let Some((wait, why)) =
                            self.retry_wait(what, status, &headers, &body, attempt)?
                    {
                        tracing::warn!(
                            "{}: {what}: {why}; waiting {:.1} s before retrying (attempt {} of {})",
                            self.source,
                            wait.as_secs_f64(),
                            attempt + 1,
                            self.retry.max_attempts
                        );
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    let hint = match status {
                        _ if is_quota_error(status, &body) => {
                            " (the API quota is used up: raise it or sync less often)"
                        }
                        StatusCode::UNAUTHORIZED => {
                            " (the credentials were refused: check the secret and that it has not expired)"
                        }
                        StatusCode::FORBIDDEN => {
                            " (the credentials lack a permission this call needs)"
                        }
                        _ => "",
                    };
                    return Err(Failure::Refused(Refused {
                        status: status.as_u16(),
                        code: error_code(&body),
                        message: format!(
                            "{}: {what} failed with HTTP {}: {}{hint}",
                            self.source,
                            status.as_u16(),
                            error_text(&body)
                        ),
                    }));
                }
            }
        }
    }

    /// Sends a request (recorded for `--explain`) with retries.
    pub async fn send(
        &self,
        what: &str,
        make: impl Fn() -> RequestBuilder + Send + Sync,
    ) -> anyhow::Result<Answer> {
        record(what);
        let make = move || Ok(make());
        Ok(self.send_inner(what, &make).await?)
    }

    /// The `Authorization` value for the next call: the current token, or a new one when there
    /// is none, it is about to expire, or `renew` (the API refused it).
    async fn authorization(&self, renew: bool) -> anyhow::Result<Option<String>> {
        let oauth = match &self.auth {
            Auth::None => return Ok(None),
            Auth::Fixed(v) => return Ok(Some(v.clone())),
            Auth::OAuth(o) => o,
        };
        let mut session = self.session.lock().await;
        if let Some(s) = session.as_ref()
            && !renew
            && s.renew_at.is_none_or(|t| Instant::now() < t)
        {
            return Ok(Some(s.header.clone()));
        }
        if session.is_some() {
            tracing::info!(
                "{}: {}; getting a new access token",
                self.source,
                if renew {
                    "the access token was refused"
                } else {
                    "the access token is about to expire"
                }
            );
        }
        record(&oauth.what);
        let answer = self.send_inner(&oauth.what, &*oauth.request).await?;
        let token = answer.json["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                anyhow!(
                    "{}: {}: no access_token in the answer",
                    self.source,
                    oauth.what
                )
            })?;
        crate::logging::register_secret(token);
        let header = format!("{}{token}", oauth.scheme);
        let renew_at = expires_in(&answer.json).map(|life| Instant::now() + renew_after(life));
        *session = Some(Session {
            header: header.clone(),
            renew_at,
        });
        Ok(Some(header))
    }

    /// Signs in now (so a wrong secret fails before anything is read).
    pub async fn sign_in(&self) -> anyhow::Result<()> {
        self.authorization(false).await.map(|_| ())
    }

    /// GET a JSON document that may not be there: `None` when the API answers 404.
    pub async fn get_optional(&self, url: &str) -> anyhow::Result<Option<Answer>> {
        match self.get(url).await {
            Ok(a) => Ok(Some(a)),
            Err(e) if refused(&e).is_some_and(|r| r.status == 404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// GET a JSON document, authorized; a 401 renews an OAuth token once and tries again.
    pub async fn get(&self, url: &str) -> anyhow::Result<Answer> {
        let what = format!("GET {url}");
        let mut renewed = false;
        loop {
            let auth = self.authorization(renewed).await?;
            if !renewed {
                // after a token request this call may need, as a sync makes them
                record(&what);
            }
            let make = || {
                let mut b = self.http.get(url).header("Accept", "application/json");
                if let Some(a) = &auth {
                    b = b.header("Authorization", a);
                }
                Ok(b)
            };
            match self.send_inner(&what, &make).await {
                Err(Failure::Refused(r))
                    if r.status == 401 && !renewed && matches!(self.auth, Auth::OAuth(_)) =>
                {
                    tracing::info!(
                        "{}: {what}: HTTP 401 ({}); signing in again",
                        self.source,
                        r.code.as_deref().unwrap_or("refused")
                    );
                    renewed = true;
                }
                other => return Ok(other?),
            }
        }
    }

    /// Every item of a paged listing: GETs `first`, then each next page `page` finds in an
    /// answer (the vendors differ only in where the items and the next link are).
    pub async fn list(
        &self,
        first: String,
        mut page: impl FnMut(&str, Answer) -> anyhow::Result<Page>,
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        let mut out = Vec::new();
        self.walk(first, |u, a| {
            let p = page(u, a)?;
            out.extend(p.items);
            Ok((p.next, p.wait))
        })
        .await?;
        Ok(out)
    }

    /// Follows a listing page by page; `each` gets every answer and returns the next URL and a
    /// pause before it.
    pub async fn walk(
        &self,
        first: String,
        mut each: impl FnMut(&str, Answer) -> anyhow::Result<(Option<String>, Option<Duration>)>,
    ) -> anyhow::Result<()> {
        let mut url = Some(first);
        while let Some(u) = url.take() {
            let answer = self.get(&u).await?;
            let (next, wait) = each(&u, answer)?;
            if let Some(wait) = wait {
                tokio::time::sleep(wait).await;
            }
            url = next;
        }
        Ok(())
    }
}

/// How long to wait so that `reserve_percent` of a rate-limit window's calls stay unused, from
/// its limit, the calls remaining and the time until it resets; `None` while enough remain.
pub fn budget_wait(
    limit: i64,
    remaining: i64,
    reset: Duration,
    reserve_percent: u32,
    max: Duration,
) -> Option<Duration> {
    if remaining * 100 > limit * i64::from(reserve_percent) {
        return None;
    }
    Some((reset + Duration::from_secs(1)).min(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_error_texts() {
        assert_eq!(
            error_text(
                r#"{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges.\nmore"}}"#
            ),
            "Authorization_RequestDenied: Insufficient privileges."
        );
        assert_eq!(
            error_text(
                r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret.\r\nTrace"}"#
            ),
            "invalid_client: AADSTS7000215: Invalid client secret.\r".trim_end_matches('\r')
        );
        assert_eq!(
            error_text(r#"{"errorCode":"E0000011","errorSummary":"Invalid token provided"}"#),
            "E0000011: Invalid token provided"
        );
        assert_eq!(
            error_text(
                r#"{"error":{"code":403,"message":"Not Authorized to access this resource/api","errors":[{"reason":"forbidden"}]}}"#
            ),
            "forbidden: Not Authorized to access this resource/api"
        );
        assert_eq!(
            error_text(
                r#"{"status":{"error":true,"code":401,"message":"Authentication Failure"}}"#
            ),
            "Authentication Failure"
        );
        assert_eq!(error_text("plain"), "plain");
    }

    #[test]
    fn which_refusals_are_retried_and_how_long_after() {
        use reqwest::header::HeaderValue;
        let mut api = Api::new("Test", None).unwrap();
        api.max_server_wait = Duration::from_secs(100);
        api.max_server_wait_key = "x.max";
        let wait = |status: u16, headers: &[(&'static str, &'static str)], body: &str| {
            let mut h = HeaderMap::new();
            for (k, v) in headers {
                h.insert(*k, HeaderValue::from_static(v));
            }
            let status = StatusCode::from_u16(status).unwrap();
            match api.retry_wait("GET u", status, &h, body, 1) {
                Ok(w) => Ok(w.map(|(d, _)| d)),
                Err(Failure::Other(e)) => Err(e.to_string()),
                Err(Failure::Refused(r)) => Err(r.message),
            }
        };
        let backoff = Some(api.retry.backoff(0));
        assert_eq!(
            wait(429, &[("retry-after", "7")], ""),
            Ok(Some(Duration::from_secs(7)))
        );
        let e = wait(429, &[("retry-after", "120")], "").unwrap_err();
        assert!(e.contains("120 s") && e.contains("x.max"), "{e}");
        // OneLogin's reset (seconds) means "wait" on a 429 only
        assert_eq!(wait(503, &[("x-ratelimit-reset", "3000")], ""), Ok(backoff));
        assert!(wait(429, &[("x-ratelimit-reset", "3000")], "").is_err());
        assert_eq!(
            wait(429, &[("x-ratelimit-reset", "3")], ""),
            Ok(Some(Duration::from_secs(3)))
        );
        let quota =
            r#"{"error":{"code":403,"message":"Quota","errors":[{"reason":"quotaExceeded"}]}}"#;
        assert_eq!(wait(403, &[], quota), Ok(backoff));
        let denied = r#"{"error":{"code":403,"message":"Not Authorized","errors":[{"reason":"forbidden"}]}}"#;
        assert_eq!(wait(403, &[], denied), Ok(None));
        assert_eq!(wait(404, &[], ""), Ok(None));
    }

    #[test]
    fn tokens_are_renewed_before_they_expire() {
        assert_eq!(
            renew_after(Duration::from_secs(3599)),
            Duration::from_secs(3479)
        );
        assert_eq!(renew_after(Duration::from_secs(4)), Duration::from_secs(3));
        assert_eq!(
            expires_in(&serde_json::json!({"expires_in": "3600"})),
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn budget_waits_only_near_the_limit() {
        let max = Duration::from_secs(3600);
        assert_eq!(budget_wait(600, 300, Duration::from_secs(5), 10, max), None);
        assert_eq!(
            budget_wait(600, 50, Duration::from_secs(5), 10, max),
            Some(Duration::from_secs(6))
        );
        assert_eq!(
            budget_wait(
                5000,
                0,
                Duration::from_secs(900),
                10,
                Duration::from_secs(60)
            ),
            Some(Duration::from_secs(60))
        );
    }
}
