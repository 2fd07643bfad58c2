//! Server URLs: US cloud by default, the EU cloud, or a self-hosted base (`/api`,
//! `/identity`), each overridable.

use crate::config::{ServerConfig, normalize_url};

/// The two endpoints the connector talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Urls {
    pub api: String,
    pub identity: String,
}

/// The default server.
pub const DEFAULT_SERVER: &str = "https://vault.bitwarden.com";

impl Urls {
    pub fn from_config(server: &ServerConfig) -> Urls {
        let base = server
            .url
            .as_deref()
            .map(normalize_url)
            .unwrap_or_else(|| DEFAULT_SERVER.to_string());
        let (api, identity) = match base.as_str() {
            "https://vault.bitwarden.com" | "https://bitwarden.com" => (
                "https://api.bitwarden.com".to_string(),
                "https://identity.bitwarden.com".to_string(),
            ),
            "https://vault.bitwarden.eu" | "https://bitwarden.eu" => (
                "https://api.bitwarden.eu".to_string(),
                "https://identity.bitwarden.eu".to_string(),
            ),
            _ => (format!("{base}/api"), format!("{base}/identity")),
        };
        Urls {
            api: server.api_url.as_deref().map(normalize_url).unwrap_or(api),
            identity: server
                .identity_url
                .as_deref()
                .map(normalize_url)
                .unwrap_or(identity),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(url: Option<&str>, api: Option<&str>) -> Urls {
        Urls::from_config(&ServerConfig {
            url: url.map(str::to_string),
            api_url: api.map(str::to_string),
            ..Default::default()
        })
    }

    #[test]
    fn cloud_regions_and_self_hosted() {
        assert_eq!(urls(None, None).api, "https://api.bitwarden.com");
        assert_eq!(urls(None, None).identity, "https://identity.bitwarden.com");
        assert_eq!(
            urls(Some("https://vault.bitwarden.eu"), None).api,
            "https://api.bitwarden.eu"
        );
        let u = urls(Some("https://bw.example.com/"), None);
        assert_eq!(u.api, "https://bw.example.com/api");
        assert_eq!(u.identity, "https://bw.example.com/identity");
        let u = urls(Some("bw.example.com"), Some("https://api.example.com"));
        assert_eq!(u.api, "https://api.example.com");
        assert_eq!(u.identity, "https://bw.example.com/identity");
    }
}
