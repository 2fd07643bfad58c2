//! HTTP client for the Bitwarden public API: client-credentials token (kept in the process
//! until five minutes before it expires) and the import request, every request paced by the
//! server's request budget ([`super::budget`]), with bounded retries on connection errors and
//! 5xx. A refusal (429) pauses the whole budget for its `Retry-After`; the second refusal of a
//! run ends it ([`RateLimited`]), and the cloud's block of the IP address (a 403 that is not
//! the API's JSON) ends it at once ([`Blocked`]), before a fourth request could be refused.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};

use super::budget::{Budget, Kind, Limits, RequestStats};
use super::urls::Urls;
use super::wire::{TokenResponse, error_message};
use crate::errors::Failure;
use crate::logging::register_secret;
use crate::net::{RetryPolicy, describe_transport, retry_after};

/// The organization API key.
#[derive(Clone)]
pub struct ApiKey {
    pub client_id: String,
    pub client_secret: String,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKey({}, ********)", self.client_id)
    }
}

impl ApiKey {
    /// Checks the form `organization.<uuid>` and registers the secret for log redaction.
    pub fn new(client_id: &str, client_secret: &str) -> anyhow::Result<ApiKey> {
        let client_id = client_id.trim();
        let client_secret = client_secret.trim();
        if client_id.is_empty() {
            return Err(Failure::Config("client id is required".into()).into());
        }
        if client_secret.is_empty() {
            return Err(Failure::Config("client secret is required".into()).into());
        }
        let Some(org) = client_id.strip_prefix("organization.") else {
            return Err(Failure::Config(format!(
                "`{client_id}` is not an organization API key: the client id must look like \
                 organization.<id> (Admin Console > Settings > Organization info > API key)"
            ))
            .into());
        };
        if uuid::Uuid::parse_str(org).is_err() {
            return Err(Failure::Config(format!(
                "invalid client id `{client_id}`: `{org}` is not a GUID"
            ))
            .into());
        }
        register_secret(client_secret);
        Ok(ApiKey {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
        })
    }

    /// The organization id inside the client id.
    pub fn organization_id(&self) -> &str {
        self.client_id
            .strip_prefix("organization.")
            .unwrap_or(&self.client_id)
    }
}

/// A failed call, with the HTTP status when there was one.
#[derive(Debug)]
pub struct ApiError {
    pub status: Option<u16>,
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "HTTP {s}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}
impl std::error::Error for ApiError {}

/// How long the cloud blocks an address (`AzureQueueBlockIpService`).
pub const BLOCK_LIFTED_AFTER: Duration = Duration::from_secs(15 * 60);

/// How long a refused token request waits when the server does not say (Vaultwarden's login
/// limit lets one login a minute through once its burst is spent, and sends no `Retry-After`).
pub const LOGIN_WAIT: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct Token {
    value: String,
    refresh_after: Instant,
}

/// Tokens kept in this process, by identity URL and client id: the service and the window
/// keep theirs across runs until five minutes before it expires (a CLI run is one process).
type TokenCache = Mutex<std::collections::HashMap<(String, String), Token>>;

fn tokens() -> &'static TokenCache {
    static TOKENS: OnceLock<TokenCache> = OnceLock::new();
    TOKENS.get_or_init(Default::default)
}

/// Talks to one Bitwarden server for one organization.
pub struct BitwardenClient {
    http: reqwest::Client,
    urls: Urls,
    key: ApiKey,
    device_id: String,
    retry: RetryPolicy,
    /// Held while a token is asked for, so that requests at once ask once.
    token: tokio::sync::Mutex<()>,
    budget: Arc<Budget>,
    /// This client's requests (a client lives for one run).
    stats: Mutex<RequestStats>,
    refusals: AtomicU64,
    /// The run's requests waiting for the budget: how many, since when, and the time during
    /// which at least one waited.
    waits: Mutex<(u32, Option<Instant>, Duration)>,
    /// Cancels the run's waits (for the budget, a pause, a retry) at once.
    cancel: tokio_util::sync::CancellationToken,
    /// The request being retried, for the status line (see [`BitwardenClient::retrying`]).
    retrying: Mutex<Option<(u32, Option<Instant>)>>,
}

/// A request being retried, as the status line shows it: "attempt 2 of 5, next in 40 s".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retrying {
    /// The attempt that waits to be sent, or is in flight (from 2).
    pub attempt: u32,
    pub of: u32,
    /// How long until it is sent (`None`: it is in flight).
    pub next_in: Option<Duration>,
}

impl std::fmt::Display for Retrying {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "attempt {} of {}", self.attempt, self.of)?;
        match self.next_in {
            Some(d) => write!(f, ", next in {} s", d.as_secs_f64().ceil() as u64),
            None => Ok(()),
        }
    }
}

/// Clears the client's retry state when a request's retries end, whichever way.
struct RetryShown<'a>(&'a Mutex<Option<(u32, Option<Instant>)>>);

impl RetryShown<'_> {
    fn set(&self, state: Option<(u32, Option<Instant>)>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = state;
    }
}

impl Drop for RetryShown<'_> {
    fn drop(&mut self) {
        self.set(None);
    }
}

fn os_name() -> (&'static str, &'static str, &'static str) {
    // (Device-Type, User-Agent OS, deviceName)
    if cfg!(target_os = "windows") {
        ("6", "WINDOWS", "windows")
    } else if cfg!(target_os = "macos") {
        ("7", "MACOS", "macos")
    } else {
        ("8", "LINUX", "linux")
    }
}

/// Builds the HTTP client used for Bitwarden (proxy from the environment, optional extra CA).
pub fn http_client(ca_file: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let (device_type, os, _) = os_name();
    let mut headers = HeaderMap::new();
    headers.insert("Device-Type", HeaderValue::from_static(device_type));
    headers.insert(
        "Bitwarden-Client-Name",
        HeaderValue::from_static("connector"),
    );
    headers.insert(
        "Bitwarden-Client-Version",
        HeaderValue::from_static(crate::VERSION),
    );
    let b = reqwest::Client::builder()
        .user_agent(format!("Bitwarden_DC/{} ({os})", crate::VERSION))
        .default_headers(headers)
        .timeout(Duration::from_secs(15 * 60))
        // A redirect is never followed: reqwest would resend a POST as a GET (an import
        // "answered" by some other page), and the token and the API key would go to an address
        // the admin did not configure. A 3xx is an error that names where it pointed.
        .redirect(reqwest::redirect::Policy::none());
    let b = crate::net::with_network(b, ca_file)?;
    b.build().context("building the HTTP client")
}

impl BitwardenClient {
    pub fn new(
        urls: Urls,
        key: ApiKey,
        device_id: String,
        ca_file: Option<&Path>,
        retry: RetryPolicy,
        limits: Limits,
    ) -> anyhow::Result<BitwardenClient> {
        let budget = Budget::shared(&urls.api, limits);
        Ok(BitwardenClient {
            http: http_client(ca_file)?,
            urls,
            key,
            device_id,
            retry,
            token: tokio::sync::Mutex::new(()),
            budget,
            stats: Mutex::new(RequestStats::default()),
            refusals: AtomicU64::new(0),
            waits: Mutex::new((0, None, Duration::ZERO)),
            cancel: tokio_util::sync::CancellationToken::new(),
            retrying: Mutex::new(None),
        })
    }

    /// The request being retried, if one is: which attempt, and how long until it is sent.
    pub fn retrying(&self) -> Option<Retrying> {
        let (attempt, at) = (*self.retrying.lock().unwrap_or_else(|p| p.into_inner()))?;
        Some(Retrying {
            attempt,
            of: self.retry.max_attempts,
            next_in: at.map(|t| t.saturating_duration_since(Instant::now())),
        })
    }

    /// The budget this client's requests are paced by.
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// The requests this client sent, by kind.
    pub fn stats(&self) -> RequestStats {
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (_, since, total) = *self.waits.lock().unwrap_or_else(|p| p.into_inner());
        let now = since.map_or(Duration::ZERO, |t| t.elapsed());
        stats.waited_ms = (total + now).as_millis() as u64;
        stats
    }

    /// The token that cancels this client's waits ([`BitwardenClient::cancel`]).
    pub fn cancel_token(&self) -> tokio_util::sync::CancellationToken {
        self.cancel.clone()
    }

    /// Stops every wait of this client's requests (for the budget, a 429's pause, a retry):
    /// they end with an [`Interrupted`] error, and nothing more is sent.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Waits `d`, unless the run is cancelled first.
    async fn sleep(&self, d: Duration, what: &str) -> anyhow::Result<()> {
        tokio::select! {
            () = tokio::time::sleep(d) => Ok(()),
            () = self.cancel.cancelled() => Err(anyhow!(Failure::Interrupted(format!(
                "{what}: stopped while waiting, before it was sent"
            )))),
        }
    }

    /// Waits until the budget lets a request of `kind` to `url` go (and records it). The time
    /// during which any request of the run waits is counted once.
    async fn acquire(&self, kind: Kind, url: &str, what: &str) -> anyhow::Result<()> {
        let mut waiting = false;
        let result = loop {
            if self.cancel.is_cancelled() {
                break Err(anyhow!(Failure::Interrupted(format!(
                    "{what}: stopped before it was sent"
                ))));
            }
            let wait = self.budget.try_send(kind, url, Instant::now());
            if wait.is_zero() {
                break Ok(());
            }
            if !waiting {
                waiting = true;
                let mut w = self.waits.lock().unwrap_or_else(|p| p.into_inner());
                w.0 += 1;
                if w.0 == 1 {
                    w.1 = Some(Instant::now());
                }
            }
            if wait >= self.budget.scaled(Duration::from_secs(60)) {
                // a block of this IP address or a long 429 pause (maybe recorded by another
                // process of the data directory): said where a one-shot command shows it
                tracing::warn!(
                    "{what}: waiting {} s before sending: the server refused or blocked this IP \
                     address recently (a block is lifted after about 15 minutes); Ctrl-C stops",
                    wait.as_secs_f64().ceil()
                );
            } else if wait >= Duration::from_secs(1) {
                tracing::info!(
                    "waiting {} s for the request budget ({})",
                    wait.as_secs_f64().ceil(),
                    self.budget.limits().describe()
                );
            }
            if let Err(e) = self.sleep(wait, what).await {
                self.budget.stop_waiting();
                break Err(e);
            }
        };
        if waiting {
            let mut w = self.waits.lock().unwrap_or_else(|p| p.into_inner());
            w.0 = w.0.saturating_sub(1);
            if w.0 == 0
                && let Some(since) = w.1.take()
            {
                w.2 += since.elapsed();
            }
        }
        result
    }

    fn with_stats(&self, f: impl FnOnce(&mut RequestStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn token_key(&self) -> (String, String) {
        (self.urls.identity.clone(), self.key.client_id.clone())
    }

    pub fn urls(&self) -> &Urls {
        &self.urls
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends a request built by `build` when the budget lets it go, retrying connection errors
    /// and 5xx. A 429 pauses the whole budget for its `Retry-After` (a refused token request
    /// without one: [`LOGIN_WAIT`]) and is sent again; the run's second 429 is a
    /// [`RateLimited`] error. A 403 that is not the API's JSON is the cloud's block of this IP
    /// address: a [`Blocked`] error at once, and the budget holds every request of the process
    /// until the block is lifted. Returns the final response (any other status) or the last
    /// transport error.
    pub(crate) async fn send_with_retry(
        &self,
        what: &str,
        kind: Kind,
        url: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        let mut attempt = 0u32;
        let shown = RetryShown(&self.retrying);
        loop {
            attempt += 1;
            if attempt > 1 {
                shown.set(Some((attempt, None)));
            }
            let last = attempt >= self.retry.max_attempts;
            self.acquire(kind, url, what).await?;
            self.with_stats(|s| kind.count_in(s));
            match build().send().await {
                Ok(resp) => {
                    let status = resp.status();
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        self.with_stats(|s| s.refusals += 1);
                        let refusals = self.refusals.fetch_add(1, Ordering::SeqCst) + 1;
                        // (the server rounds `Retry-After` to the nearest second: a second
                        // more never comes back early into the same window)
                        let wait = retry_after(resp.headers())
                            .map(|d| {
                                let d = d.min(Duration::from_secs(300)) + Duration::from_secs(1);
                                self.budget.scaled(d)
                            })
                            .unwrap_or_else(|| match kind {
                                Kind::Token => self.retry.scaled(LOGIN_WAIT),
                                _ => self.retry.backoff(attempt - 1),
                            });
                        self.budget.pause(wait);
                        if refusals >= 2 {
                            return Err(anyhow!(Failure::RateLimited(format!(
                                "{what}: the server refused {refusals} requests of this run \
                                 for coming too fast (HTTP 429); the run stops here. {}",
                                self.refusal_advice(kind)
                            ))));
                        }
                        tracing::warn!(
                            "{what}: HTTP 429 (too many requests), every request waits {:.1}s",
                            wait.as_secs_f64()
                        );
                        continue;
                    }
                    if status == StatusCode::FORBIDDEN && !is_json(&resp) {
                        self.budget.pause(self.budget.scaled(BLOCK_LIFTED_AFTER));
                        return Err(anyhow!(Failure::Blocked(format!(
                            "{what}: the server refused this IP address (HTTP 403 from the \
                             server's edge, not the API): the Bitwarden cloud blocks an address \
                             that sent too many requests, for every browser and app behind \
                             it, and lifts such a block after about 15 minutes. Nothing more \
                             was sent. Wait, then look for other clients behind the same IP \
                             address"
                        ))));
                    }
                    if !status.is_server_error() || last {
                        return Ok(resp);
                    }
                    let wait = retry_after(resp.headers())
                        .map(|d| self.budget.scaled(d.min(Duration::from_secs(300))))
                        .unwrap_or_else(|| self.retry.backoff(attempt - 1));
                    tracing::warn!(
                        "{what}: HTTP {status}, retrying in {:.1}s (attempt {attempt}/{})",
                        wait.as_secs_f64(),
                        self.retry.max_attempts
                    );
                    shown.set(Some((attempt + 1, Some(Instant::now() + wait))));
                    self.sleep(wait, what).await?;
                }
                Err(e) => {
                    if last {
                        return Err(anyhow!(ApiError {
                            status: None,
                            message: format!(
                                "{} (gave up after {attempt} attempts)",
                                describe_transport(&e)
                            ),
                        }));
                    }
                    let wait = self.retry.backoff(attempt - 1);
                    tracing::warn!(
                        "{what}: {}, retrying in {:.1}s (attempt {attempt}/{})",
                        describe_transport(&e),
                        wait.as_secs_f64(),
                        self.retry.max_attempts
                    );
                    shown.set(Some((attempt + 1, Some(Instant::now() + wait))));
                    self.sleep(wait, what).await?;
                }
            }
        }
    }

    /// What the second refusal of a run says about the server's limit and what to do.
    fn refusal_advice(&self, kind: Kind) -> String {
        let limits = self.budget.limits();
        match limits.mode {
            super::budget::Mode::None if kind == Kind::Token => "This server limits logins: \
                 Vaultwarden lets one login a minute through once a burst of 10 is spent, \
                 counted per client address (its LOGIN_RATELIMIT_SECONDS and \
                 LOGIN_RATELIMIT_MAX_BURST settings). Wait a minute before the next run, or \
                 raise those settings on the server"
                .to_string(),
            super::budget::Mode::None => "This server (or a proxy in front of it) limits \
                 requests, and the connector does not pace them (server.rate_limits none). Set \
                 server.rate_limits shared and server.max_requests_per_second / \
                 server.max_requests_per_minute below the server's limit"
                .to_string(),
            _ => format!(
                "More refusals could get this IP address blocked (the Bitwarden cloud blocks \
                 an address for 15 minutes after more than 10 refusals in 5 minutes, for every \
                 browser and app behind it). The connector's processes on this data directory \
                 share one request budget ({}), so the requests refused came with others from \
                 the same IP address: look for other clients behind it (another connector, \
                 scripts using the API key). If an edge in front of the server counts every \
                 request together, set server.rate_limits shared",
                limits.describe()
            ),
        }
    }

    /// An access token, from the cache or a new client-credentials request.
    pub async fn token(&self) -> anyhow::Result<String> {
        let _asking = self.token.lock().await;
        let key = self.token_key();
        let kept = tokens()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        if let Some(t) = kept
            && Instant::now() < t.refresh_after
        {
            return Ok(t.value);
        }
        let url = format!("{}/connect/token", self.urls.identity);
        let (device_type, _, device_name) = os_name();
        let scope = if self.key.client_id.starts_with("organization") {
            "api.organization"
        } else {
            "api"
        };
        let form = [
            ("scope", scope),
            ("client_id", self.key.client_id.as_str()),
            ("deviceType", device_type),
            ("deviceIdentifier", self.device_id.as_str()),
            ("deviceName", device_name),
            ("grant_type", "client_credentials"),
            ("client_secret", self.key.client_secret.as_str()),
        ];
        let resp = self
            .send_with_retry("token request", Kind::Token, &url, || {
                self.http
                    .post(&url)
                    .header("Accept", "application/json")
                    .timeout(Duration::from_secs(60))
                    .form(&form)
            })
            .await
            .with_context(|| format!("getting an access token from {url}"))?;
        let status = resp.status();
        let resp_location = location(&resp);
        let body = resp
            .text()
            .await
            .with_context(|| format!("reading the token response from {url}"))?;
        if !status.is_success() {
            let msg = error_message(status.as_u16(), &body);
            let message = if status.is_redirection() {
                redirect_message(status, &resp_location)
            } else if status == StatusCode::BAD_REQUEST || status == StatusCode::UNAUTHORIZED {
                format!(
                    "the organization API key was rejected ({msg}); check the client id and \
                     secret (Admin Console > Settings > Organization info > API key)"
                )
            } else {
                msg
            };
            return Err(anyhow!(ApiError {
                status: Some(status.as_u16()),
                message,
            }))
            .with_context(|| format!("getting an access token from {url}"));
        }
        let tr: TokenResponse = serde_json::from_str(&body)
            .with_context(|| format!("the token response from {url} is not valid JSON"))?;
        register_secret(&tr.access_token);
        let lifetime = Duration::from_secs(tr.expires_in);
        let refresh_after = Instant::now() + lifetime.saturating_sub(Duration::from_secs(300));
        tokens().lock().unwrap_or_else(|p| p.into_inner()).insert(
            key,
            Token {
                value: tr.access_token.clone(),
                refresh_after,
            },
        );
        Ok(tr.access_token)
    }

    /// Forgets the kept token.
    pub async fn drop_token(&self) {
        let _asking = self.token.lock().await;
        tokens()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.token_key());
    }

    /// `POST /public/organization/import` with a JSON body. A 401 gets one fresh token.
    pub async fn import(&self, body: &[u8]) -> anyhow::Result<()> {
        let url = format!("{}/public/organization/import", self.urls.api);
        let mut fresh_token_tried = false;
        loop {
            let token = self.token().await?;
            let resp = self
                .send_with_retry("import", Kind::Import, &url, || {
                    self.http
                        .post(&url)
                        .bearer_auth(&token)
                        .header("Content-Type", "application/json; charset=utf-8")
                        .body(body.to_vec())
                })
                .await
                .with_context(|| format!("POST {url}"))?;
            let status = resp.status();
            if status == StatusCode::OK {
                return Ok(());
            }
            let resp_location = location(&resp);
            let text = resp.text().await.unwrap_or_default();
            if (status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN)
                && !fresh_token_tried
            {
                fresh_token_tried = true;
                self.drop_token().await;
                continue;
            }
            let message = match status {
                s if s.is_redirection() => redirect_message(s, &resp_location),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => format!(
                    "the server refused the API key's token ({}); check that the API key is \
                     current and that the organization may use Directory Connector",
                    error_message(status.as_u16(), &text)
                ),
                _ => error_message(status.as_u16(), &text),
            };
            return Err(anyhow!(ApiError {
                status: Some(status.as_u16()),
                message,
            }))
            .with_context(|| format!("POST {url}"));
        }
    }
}

/// Whether an answer is the API's JSON (an error of the API, not of the edge in front of it).
fn is_json(resp: &reqwest::Response) -> bool {
    resp.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"))
}

/// Where a redirect points (`Location`), if it says.
pub(crate) fn location(resp: &reqwest::Response) -> Option<String> {
    let v = resp.headers().get("location")?.to_str().ok()?;
    Some(v.chars().take(300).collect())
}

/// The error of an answer that redirects (never followed).
pub(crate) fn redirect_message(status: StatusCode, location: &Option<String>) -> String {
    format!(
        "the server answered {status} (a redirect to {}); requests to the Bitwarden server are \
         never redirected, so nothing was sent there: set server.url (or the API and identity \
         URLs) to the address the server really answers on",
        location.as_deref().unwrap_or("an address it did not name")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_form_is_checked() {
        let k = ApiKey::new(
            " organization.3f0c0f4e-7d2a-4a57-9d1c-1a2b3c4d5e6f ",
            "s3cretvalue",
        )
        .unwrap();
        assert_eq!(k.organization_id(), "3f0c0f4e-7d2a-4a57-9d1c-1a2b3c4d5e6f");
        assert!(format!("{k:?}").contains("********"));
        assert!(ApiKey::new("user.3f0c0f4e-7d2a-4a57-9d1c-1a2b3c4d5e6f", "x").is_err());
        assert!(ApiKey::new("organization.nope", "x").is_err());
        assert!(ApiKey::new("organization.3f0c0f4e-7d2a-4a57-9d1c-1a2b3c4d5e6f", " ").is_err());
    }

    /// A server that answers every request with `answer` (a whole HTTP response), counting them.
    async fn answering(answer: &'static str) -> (String, Arc<AtomicU64>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let count = Arc::new(AtomicU64::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                seen.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf).await;
                let _ = c.write_all(answer.as_bytes()).await;
            }
        });
        (url, count)
    }

    fn client_of(url: &str) -> BitwardenClient {
        client_with(url, Limits::default())
    }

    fn client_with(url: &str, limits: Limits) -> BitwardenClient {
        let key = ApiKey::new(
            "organization.3f0c0f4e-7d2a-4a57-9d1c-1a2b3c4d5e6f",
            "s3cretvalue",
        )
        .unwrap();
        let urls = Urls {
            api: format!("{url}/api"),
            identity: format!("{url}/identity"),
        };
        let retry = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        };
        BitwardenClient::new(urls, key, "dev".into(), None, retry, limits).unwrap()
    }

    /// The cloud's block of the IP (a 403 HTML page): one request, no retry and no new token,
    /// and every later request of the process (the service's next run) waits until it is lifted.
    #[tokio::test]
    async fn a_block_stops_at_once_and_holds_the_process_until_it_is_lifted() {
        let (url, count) = answering(
            "HTTP/1.1 403 Forbidden\r\ncontent-type: text/html\r\ncontent-length: 20\r\n\
             connection: close\r\n\r\n<html>blocked</html>",
        )
        .await;
        let client = client_of(&url);
        let e = client.token().await.unwrap_err();
        assert!(
            matches!(e.downcast_ref::<Failure>(), Some(Failure::Blocked(_))),
            "{e:#}"
        );
        let msg = format!("{e:#}");
        assert!(
            msg.contains("refused this IP address") && msg.contains("15 minutes"),
            "{msg}"
        );
        assert_eq!(count.load(Ordering::SeqCst), 1);
        // a later run of this process (another client of the server) waits for the block
        let later = client_of(&url);
        assert!(later.budget().waiting().is_none());
        let wait = tokio::time::timeout(Duration::from_millis(300), later.token()).await;
        assert!(wait.is_err(), "still waiting for the budget");
        assert!(later.budget().waiting().unwrap() > Duration::from_secs(14 * 60));
        assert_eq!(count.load(Ordering::SeqCst), 1, "nothing more was sent");
    }

    /// The second 429 of a run ends it; the first pauses every request for its Retry-After.
    #[tokio::test]
    async fn the_second_refusal_of_a_run_ends_it() {
        let (url, count) = answering(
            "HTTP/1.1 429 Too Many Requests\r\nretry-after: 0\r\ncontent-type: application/json\r\n\
             content-length: 2\r\nconnection: close\r\n\r\n{}",
        )
        .await;
        let client = client_of(&url);
        let e = client.token().await.unwrap_err();
        assert!(
            matches!(e.downcast_ref::<Failure>(), Some(Failure::RateLimited(_))),
            "{e:#}"
        );
        // a server without the cloud's limits (Vaultwarden): its own login limit is named
        let msg = format!("{e:#}");
        assert!(msg.contains("LOGIN_RATELIMIT_SECONDS"), "{msg}");
        assert!(!msg.contains("Bitwarden cloud"), "{msg}");
        assert_eq!(count.load(Ordering::SeqCst), 2);
        assert_eq!(client.stats().refusals, 2);
        assert_eq!(client.stats().token, 2);
        // against the cloud's limits, the cloud's block is what more refusals risk
        let (url, _) = answering(
            "HTTP/1.1 429 Too Many Requests\r\nretry-after: 0\r\ncontent-type: application/json\r\n\
             content-length: 2\r\nconnection: close\r\n\r\n{}",
        )
        .await;
        let cloud = Limits {
            mode: super::super::budget::Mode::Cloud,
            per_second: 0,
            per_minute: 1000,
        };
        let e = client_with(&url, cloud).token().await.unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("blocks") && msg.contains("15 minutes"),
            "{msg}"
        );
    }

    /// A stop during a 429's pause ends the wait at once, and the request is never sent.
    #[tokio::test]
    async fn a_stop_ends_a_pause_at_once_and_sends_nothing_more() {
        let (url, count) = answering(
            "HTTP/1.1 429 Too Many Requests\r\nretry-after: 300\r\ncontent-type: application/json\r\n\
             content-length: 2\r\nconnection: close\r\n\r\n{}",
        )
        .await;
        let client = Arc::new(client_of(&url));
        let asking = tokio::spawn({
            let client = client.clone();
            async move { client.token().await }
        });
        // the first request is refused, and the pause begins
        let t0 = Instant::now();
        while client.budget().waiting().is_none() && count.load(Ordering::SeqCst) == 0 {
            assert!(t0.elapsed() < Duration::from_secs(10), "no request arrived");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(2), asking)
            .await
            .expect("the stop ended the pause")
            .unwrap();
        let e = ended.unwrap_err();
        assert!(
            matches!(e.downcast_ref::<Failure>(), Some(Failure::Interrupted(_))),
            "{e:#}"
        );
        assert_eq!(count.load(Ordering::SeqCst), 1, "nothing more was sent");
    }
}
