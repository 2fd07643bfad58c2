//! HTTP for the cloud directories: one reqwest client (proxy from `HTTPS_PROXY`/`NO_PROXY`,
//! optional extra CA from `server.ca_file`), JSON GETs and form POSTs with bounded retries on
//! connection errors, 429 (`Retry-After`, or Okta's `X-Rate-Limit-Reset`) and 5xx. Errors name
//! the source, the request and the status.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow};
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};

use crate::bitwarden::RetryPolicy;
use crate::bitwarden::client::{describe_transport, retry_after};

/// A client for one directory API.
pub struct Api {
    pub http: reqwest::Client,
    /// Named in every error: "Okta", "Microsoft Graph", …
    pub source: &'static str,
    pub retry: RetryPolicy,
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
    /// A pause before the next request (Okta's rate-limit budget).
    pub wait: Option<Duration>,
}

/// Okta's reset time (epoch seconds) as a wait from now.
fn rate_limit_reset(headers: &HeaderMap) -> Option<Duration> {
    let reset: i64 = headers
        .get("x-rate-limit-reset")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let now = chrono::Utc::now().timestamp();
    Some(Duration::from_secs((reset - now).max(0) as u64))
}

/// The vendor's error text from a JSON body (Graph, OAuth, Okta shapes), else the raw text.
fn error_text(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return body.chars().take(300).collect();
    };
    let pick = |ptr: &str| v.pointer(ptr).and_then(|x| x.as_str()).map(str::to_string);
    let code = pick("/error/code")
        .or_else(|| pick("/error"))
        .or_else(|| pick("/errorCode"));
    let message = pick("/error/message")
        .or_else(|| pick("/error_description"))
        .or_else(|| pick("/errorSummary"))
        .or_else(|| pick("/message"))
        .map(|m| m.lines().next().unwrap_or_default().to_string());
    match (code, message) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        (None, Some(m)) => m,
        (None, None) => body.chars().take(300).collect(),
    }
}

impl Api {
    pub fn new(source: &'static str, ca_file: Option<&Path>) -> anyhow::Result<Api> {
        let b = reqwest::Client::builder()
            .user_agent(format!("directory-connector/{}", crate::VERSION))
            .timeout(Duration::from_secs(300));
        let b = crate::bitwarden::client::with_network(b, ca_file)?;
        Ok(Api {
            http: b.build().context("building the HTTP client")?,
            source,
            retry: RetryPolicy::from_env(),
        })
    }

    /// Sends with retries; `what` names the request in errors ("GET https://…/users").
    pub async fn send(
        &self,
        what: &str,
        make: impl Fn() -> RequestBuilder,
    ) -> anyhow::Result<Answer> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let last = attempt >= self.retry.max_attempts;
            match make().send().await {
                Err(e) => {
                    let msg = describe_transport(&e);
                    if last {
                        return Err(anyhow!(
                            "{}: {what}: {msg} (gave up after {attempt} attempts)",
                            self.source
                        ));
                    }
                    let wait = self.retry.backoff(attempt - 1);
                    tracing::warn!("{}: {what}: {msg}; retrying in {wait:?}", self.source);
                    tokio::time::sleep(wait).await;
                }
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_success() {
                        let headers = resp.headers().clone();
                        let text = resp.text().await.map_err(|e| {
                            anyhow!("{}: {what}: reading the answer: {e}", self.source)
                        })?;
                        let json = serde_json::from_str(&text).map_err(|e| {
                            anyhow!("{}: {what}: the answer is not JSON: {e}", self.source)
                        })?;
                        return Ok(Answer { json, headers });
                    }
                    let retryable =
                        status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    if retryable && !last {
                        let wait = retry_after(&resp)
                            .or_else(|| rate_limit_reset(resp.headers()))
                            .unwrap_or_else(|| self.retry.backoff(attempt - 1))
                            .min(self.retry.max_delay);
                        tracing::warn!(
                            "{}: {what}: HTTP {}; retrying in {wait:?}",
                            self.source,
                            status.as_u16()
                        );
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    let body = resp.text().await.unwrap_or_default();
                    let hint = match status {
                        StatusCode::UNAUTHORIZED => {
                            " (the credentials were refused: check the secret and that it has not expired)"
                        }
                        StatusCode::FORBIDDEN => {
                            " (the credentials lack a permission this call needs)"
                        }
                        _ => "",
                    };
                    return Err(anyhow!(
                        "{}: {what} failed with HTTP {}: {}{hint}",
                        self.source,
                        status.as_u16(),
                        error_text(&body)
                    ));
                }
            }
        }
    }

    /// Sends a token request and returns its `access_token`.
    pub async fn access_token(
        &self,
        what: &str,
        make: impl Fn() -> RequestBuilder,
    ) -> anyhow::Result<String> {
        let a = self.send(what, make).await?;
        a.json["access_token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("{}: {what}: no access_token in the answer", self.source))
    }

    /// GET a JSON document with extra headers.
    /// Every item of a paged listing: GETs `first`, then each next page `page` finds in an
    /// answer (the vendors differ only in where the items and the next link are).
    pub async fn list(
        &self,
        first: String,
        auth: (&str, &str),
        mut page: impl FnMut(&str, Answer) -> anyhow::Result<Page>,
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        let mut out = Vec::new();
        let mut url = Some(first);
        while let Some(u) = url.take() {
            let answer = self.get(&u, auth).await?;
            let Page { items, next, wait } = page(&u, answer)?;
            out.extend(items);
            if let Some(wait) = wait {
                tokio::time::sleep(wait).await;
            }
            url = next;
        }
        Ok(out)
    }

    pub async fn get(&self, url: &str, auth: (&str, &str)) -> anyhow::Result<Answer> {
        let what = format!("GET {url}");
        self.send(&what, || {
            self.http
                .get(url)
                .header(auth.0, auth.1)
                .header("Accept", "application/json")
        })
        .await
    }
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
        assert_eq!(error_text("plain"), "plain");
    }
}
