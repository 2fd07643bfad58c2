//! What every HTTP client of the app shares (Bitwarden and the cloud directories): the network
//! settings of a client (proxies, connect timeout, the extra CA file), bounded retries with
//! exponential backoff, `Retry-After`, and how a transport error is described. Neither
//! `bitwarden` nor `sources` imports the other; both build on this.

use std::path::Path;
use std::time::Duration;

use reqwest::header::HeaderMap;

use crate::errors::Failure;

/// Bounded retries with exponential backoff.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// Defaults (5 attempts, 1 s doubling, at most 60 s), tunable with
    /// `DIRECTORY_CONNECTOR_RETRIES` and `DIRECTORY_CONNECTOR_RETRY_BASE_MS`.
    pub fn from_env() -> RetryPolicy {
        let env_u64 = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
        RetryPolicy {
            max_attempts: env_u64("DIRECTORY_CONNECTOR_RETRIES")
                .map(|n| n.clamp(1, 20) as u32)
                .unwrap_or(5),
            base_delay: Duration::from_millis(
                env_u64("DIRECTORY_CONNECTOR_RETRY_BASE_MS").unwrap_or(1000),
            ),
            max_delay: Duration::from_secs(60),
        }
    }

    /// A wait of the server's, on the scale of the retry delays (`base_delay` of 1 s: as is).
    pub(crate) fn scaled(&self, d: Duration) -> Duration {
        d.mul_f64(self.base_delay.as_secs_f64())
            .min(self.max_delay.max(d))
    }

    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.min(10);
        (self.base_delay * factor).min(self.max_delay)
    }
}

/// The network settings every HTTP client of the app shares (Bitwarden and the cloud
/// directories): proxies from `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` (reqwest's defaults), a
/// connect timeout, rustls with the platform's roots, plus the CA file of `server.ca_file`.
pub fn with_network(
    mut b: reqwest::ClientBuilder,
    ca_file: Option<&Path>,
) -> anyhow::Result<reqwest::ClientBuilder> {
    b = b.connect_timeout(Duration::from_secs(30));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| Failure::Config(format!("server.ca_file {}: {e}", path.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            Failure::Config(format!(
                "server.ca_file {}: not a PEM certificate bundle: {e}",
                path.display()
            ))
        })?;
        if certs.is_empty() {
            return Err(Failure::Config(format!(
                "server.ca_file {}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            ))
            .into());
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    Ok(b)
}

/// `Retry-After` as seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// A transport error (no answer) in words: what failed and the innermost cause.
pub(crate) fn describe_transport(e: &reqwest::Error) -> String {
    let mut msg = if e.is_connect() {
        "cannot connect".to_string()
    } else if e.is_timeout() {
        "timed out".to_string()
    } else {
        "connection failed".to_string()
    };
    let mut src: Option<&dyn std::error::Error> = Some(e);
    let mut last = String::new();
    while let Some(s) = src {
        last = s.to_string();
        src = s.source();
    }
    if !last.is_empty() {
        msg.push_str(": ");
        msg.push_str(&last);
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
        };
        assert_eq!(p.backoff(0), Duration::from_secs(1));
        assert_eq!(p.backoff(2), Duration::from_secs(4));
        assert_eq!(p.backoff(8), Duration::from_secs(10));
    }
}
