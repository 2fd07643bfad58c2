//! LDAP source (OpenLDAP, Active Directory, any RFC 4511 server): simple bind over plain LDAP,
//! StartTLS or LDAPS, paged subtree searches streamed entry by entry, users and groups mapped as
//! upstream (externalId = objectGUID or DN; members by DN, `uniqueMember` or `memberUid`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use ldap3::adapters::PagedResults;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry, SearchOptions};

use super::Progress;
use crate::config::{Encryption, LdapConfig, SyncConfig};
use crate::engine::{DirGroup, DirUser, Snapshot};

/// Everything the LDAP source needs.
pub struct LdapSource {
    pub ldap: LdapConfig,
    pub sync: SyncConfig,
    pub password: String,
}

/// The LDAP URL for a config.
pub fn url(cfg: &LdapConfig) -> String {
    let scheme = if cfg.encryption == Encryption::Ldaps {
        "ldaps"
    } else {
        "ldap"
    };
    format!(
        "{scheme}://{}:{}",
        cfg.hostname.as_deref().unwrap_or_default().trim(),
        cfg.effective_port()
    )
}

/// Builds a search base from an optional path and the root path.
pub fn search_base(path: Option<&str>, root: &str) -> String {
    match path.map(str::trim).filter(|p| !p.is_empty()) {
        Some(p) => format!("{p},{}", root.trim()),
        None => root.trim().to_string(),
    }
}

/// `(&(objectClass=X)<filter>)`.
pub fn search_filter(object_class: &str, extra: Option<&str>) -> String {
    match extra.map(str::trim).filter(|f| !f.is_empty()) {
        Some(f) => format!("(&(objectClass={object_class}){f})"),
        None => format!("(objectClass={object_class})"),
    }
}

/// A canonical DN for matching: lower case, no spaces around separators.
pub fn normalize_dn(dn: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in dn.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            cur.push(c);
            escaped = true;
        } else if c == ',' || c == ';' {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
        .iter()
        .map(|rdn| {
            let rdn = rdn.trim();
            match rdn.split_once('=') {
                Some((a, v)) => format!("{}={}", a.trim(), v.trim()).to_lowercase(),
                None => rdn.to_lowercase(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Microsoft's textual GUID from the 16 raw bytes of `objectGUID`.
pub fn guid_to_string(b: &[u8]) -> Option<String> {
    if b.len() != 16 {
        return None;
    }
    Some(format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3],
        b[2],
        b[1],
        b[0],
        b[5],
        b[4],
        b[7],
        b[6],
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    ))
}

fn attr<'e>(e: &'e SearchEntry, name: &str) -> Option<&'e Vec<String>> {
    e.attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn first<'e>(e: &'e SearchEntry, name: &str) -> Option<&'e str> {
    attr(e, name).and_then(|v| v.first()).map(String::as_str)
}

fn object_guid(e: &SearchEntry) -> Option<String> {
    if let Some(v) = e
        .bin_attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("objectGUID"))
        .and_then(|(_, v)| v.first())
    {
        return guid_to_string(v);
    }
    // A GUID whose bytes happen to be valid UTF-8 arrives as text.
    first(e, "objectGUID").and_then(|s| guid_to_string(s.as_bytes()))
}

/// Strips the optional `#'0101'B` unique identifier of a `uniqueMember` value.
fn strip_unique_id(v: &str) -> &str {
    if let Some(pos) = v.rfind("#'")
        && v.ends_with("'B")
    {
        return &v[..pos];
    }
    v
}

/// Turns an LDAP error into a sentence (AD's bind data codes, certificate failures).
pub fn describe_error(e: &LdapError) -> String {
    if let LdapError::LdapResult { result } = e {
        let text = result.text.trim();
        let ad = [
            ("data 52e", "wrong user name or password"),
            ("data 525", "the user does not exist"),
            ("data 530", "the account may not log on at this time"),
            (
                "data 531",
                "the account may not log on from this workstation",
            ),
            ("data 532", "the password has expired"),
            ("data 533", "the account is disabled"),
            ("data 701", "the account has expired"),
            ("data 773", "the user must change the password"),
            ("data 775", "the account is locked out"),
        ];
        for (code, sentence) in ad {
            if text.contains(code) {
                return format!("{sentence} (LDAP result {}: {text})", result.rc);
            }
        }
        let what = match result.rc {
            3 => "the server's time limit was exceeded",
            4 => "the server's size limit was exceeded",
            8 => "the server requires a protected connection (use starttls or ldaps)",
            10 => "the server answered with a referral, which is not followed",
            13 => "the server requires a protected connection (use starttls or ldaps)",
            32 => "the search base does not exist",
            34 => "the DN is not valid",
            48 => "inappropriate authentication",
            49 => "invalid credentials: wrong bind DN or password",
            50 => "insufficient access rights",
            51 | 52 => "the server is busy or unavailable",
            _ => "the server returned an error",
        };
        return if text.is_empty() {
            format!("{what} (LDAP result {})", result.rc)
        } else {
            format!("{what} (LDAP result {}: {text})", result.rc)
        };
    }
    let mut chain = Vec::new();
    let mut src: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = src {
        chain.push(s.to_string());
        src = s.source();
    }
    let all = chain.join(": ");
    let cert = if all.contains("UnknownIssuer") {
        Some(
            "the server certificate is signed by an unknown issuer: set ldap.ca_file to the CA that signed it",
        )
    } else if all.contains("NotValidForName") || all.contains("NotValidForNameContext") {
        Some("the server certificate does not match the host name in ldap.hostname")
    } else if all.contains("Expired") {
        Some("the server certificate has expired")
    } else if all.contains("NotValidYet") {
        Some("the server certificate is not valid yet")
    } else if all.contains("invalid peer certificate") || all.contains("InvalidCertificate") {
        Some("the server certificate was rejected")
    } else {
        None
    };
    match cert {
        Some(c) => format!("TLS: {c} ({all})"),
        None if matches!(e, LdapError::Timeout { .. }) => format!("timed out ({all})"),
        None => all,
    }
}

fn tls_config(cfg: &LdapConfig) -> anyhow::Result<Option<Arc<rustls::ClientConfig>>> {
    let Some(ca) = &cfg.ca_file else {
        return Ok(None);
    };
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            anyhow!(
                "ldap.ca_file {}: cannot read PEM certificates: {e}",
                ca.display()
            )
        })?;
    if certs.is_empty() {
        anyhow::bail!("ldap.ca_file {}: no certificate found", ca.display());
    }
    for c in certs {
        roots
            .add(c)
            .map_err(|e| anyhow!("ldap.ca_file {}: {e}", ca.display()))?;
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(Arc::new(config)))
}

/// One search: what it is for (named in errors), base, filter and attributes.
struct Query<'q> {
    what: &'q str,
    base: &'q str,
    filter: &'q str,
    attrs: &'q [String],
}

/// Reads entries one by one; `on_entry` sees each. Server-side limits are errors.
async fn search_each(
    ldap: &mut Ldap,
    cfg: &LdapConfig,
    q: Query<'_>,
    progress: &dyn Progress,
    mut on_entry: impl FnMut(SearchEntry),
) -> anyhow::Result<u64> {
    let Query {
        what,
        base,
        filter,
        attrs,
    } = q;
    let timeout = Duration::from_secs(cfg.timeout_seconds);
    let ctx = || format!("LDAP {what} search in `{base}` with filter `{filter}`");
    tracing::info!("{what} search: {base} => {filter}");
    ldap.with_timeout(timeout).with_search_options(
        SearchOptions::new().timelimit(cfg.timeout_seconds.min(i32::MAX as u64) as i32),
    );
    let attrs: Vec<&str> = attrs.iter().map(String::as_str).collect();
    let started = if cfg.paged_search {
        ldap.streaming_search_with(
            PagedResults::new(cfg.page_size.clamp(1, i32::MAX as u32) as i32),
            base,
            Scope::Subtree,
            filter,
            attrs,
        )
        .await
    } else {
        ldap.streaming_search(base, Scope::Subtree, filter, attrs)
            .await
    };
    let mut stream = started
        .map_err(|e| anyhow!(describe_error(&e)))
        .with_context(ctx)?;
    let mut n = 0u64;
    loop {
        match stream.next().await {
            Ok(Some(entry)) => {
                if entry.is_ref() || entry.is_intermediate() {
                    continue; // referrals are not chased
                }
                on_entry(SearchEntry::construct(entry));
                n += 1;
                if n.is_multiple_of(1000) {
                    progress.count(n);
                }
            }
            Ok(None) => break,
            Err(e) => return Err(anyhow!(describe_error(&e))).with_context(ctx),
        }
    }
    let res = stream.finish().await;
    match res.rc {
        0 => {}
        4 => {
            return Err(anyhow!(
                "the server's size limit cut the result after {n} entries; turn on \
                 ldap.paged_search or raise the server's limit for the bind user"
            ))
            .with_context(ctx);
        }
        3 => {
            return Err(anyhow!(
                "the server's time limit cut the result after {n} entries; narrow the filter \
                 or raise the limit"
            ))
            .with_context(ctx);
        }
        _ => {
            return Err(anyhow!(describe_error(&LdapError::LdapResult {
                result: res
            })))
            .with_context(ctx);
        }
    }
    progress.count(n);
    Ok(n)
}

impl LdapSource {
    async fn connect(&self) -> anyhow::Result<Ldap> {
        let cfg = &self.ldap;
        let url = url(cfg);
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(Duration::from_secs(cfg.timeout_seconds))
            .set_starttls(cfg.encryption == Encryption::Starttls);
        if cfg.skip_cert_verification && cfg.encryption != Encryption::None {
            tracing::warn!(
                "ldap.skip_cert_verification is on: the LDAP server's certificate is NOT \
                 verified, so anyone on the network path can read the bind password"
            );
            settings = settings.set_no_tls_verify(true);
        } else if let Some(tls) = tls_config(cfg)? {
            settings = settings.set_config(tls);
        }
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &url)
            .await
            .map_err(|e| anyhow!(describe_error(&e)))
            .with_context(|| format!("connecting to {url}"))?;
        ldap3::drive!(conn);
        let user = cfg.username.as_deref().unwrap_or_default();
        ldap.with_timeout(Duration::from_secs(cfg.timeout_seconds));
        ldap.simple_bind(user, &self.password)
            .await
            .and_then(|r| r.success())
            .map_err(|e| anyhow!(describe_error(&e)))
            .with_context(|| format!("LDAP bind to {url} as `{user}` failed"))?;
        Ok(ldap)
    }

    /// Binds and unbinds: the connection test.
    pub async fn check(&self) -> anyhow::Result<()> {
        let mut ldap = self.connect().await?;
        let _ = ldap.unbind().await;
        Ok(())
    }

    /// Reads users and groups as configured.
    pub async fn fetch(&self, progress: &dyn Progress) -> anyhow::Result<Snapshot> {
        let mut ldap = self.connect().await?;
        let result = self.fetch_with(&mut ldap, progress).await;
        let _ = ldap.unbind().await;
        result
    }

    async fn fetch_with(
        &self,
        ldap: &mut Ldap,
        progress: &dyn Progress,
    ) -> anyhow::Result<Snapshot> {
        let cfg = &self.ldap;
        let s = &self.sync;
        let root = cfg.root_path.as_deref().unwrap_or_default();
        let email_attr = cfg.user_email_attribute(s).to_string();
        let prefix_attr = cfg.email_prefix_attribute(s).to_string();
        let suffix = s.email_suffix.clone().unwrap_or_default();
        let use_prefix = s.use_email_prefix_suffix;

        // Users: read once, both for syncing and for resolving group members.
        let mut users: Vec<DirUser> = Vec::new();
        let mut by_dn: HashMap<String, String> = HashMap::new();
        let mut by_uid: HashMap<String, String> = HashMap::new();
        if s.users || s.groups {
            progress.stage("Reading users");
            let mut attrs = vec![
                email_attr.clone(),
                "objectGUID".to_string(),
                "userAccountControl".to_string(),
                "uid".to_string(),
            ];
            if use_prefix {
                attrs.push(prefix_attr.clone());
            }
            let base = search_base(s.user_path.as_deref(), root);
            let filter = search_filter(cfg.user_object_class(s), s.user_filter.as_deref());
            let q = Query {
                what: "user",
                base: &base,
                filter: &filter,
                attrs: &attrs,
            };
            search_each(ldap, cfg, q, progress, |e| {
                let external_id = object_guid(&e).unwrap_or_else(|| e.dn.clone());
                let disabled = first(&e, "userAccountControl")
                    .and_then(|v| v.trim().parse::<i64>().ok())
                    .is_some_and(|v| v & 0x2 != 0);
                let mut email = first(&e, &email_attr).map(str::to_string);
                if email.as_deref().is_none_or(|m| m.trim().is_empty()) && use_prefix {
                    email = first(&e, &prefix_attr).map(|p| format!("{}{suffix}", p.trim()));
                }
                if s.groups {
                    by_dn.insert(normalize_dn(&e.dn), external_id.clone());
                    if let Some(uid) = first(&e, "uid") {
                        by_uid.insert(uid.trim().to_lowercase(), external_id.clone());
                    }
                }
                if s.users {
                    users.push(DirUser {
                        reference_id: e.dn,
                        external_id,
                        email,
                        disabled,
                        deleted: false,
                    });
                }
            })
            .await?;
        }

        let mut groups: Vec<DirGroup> = Vec::new();
        if s.groups {
            progress.stage("Reading groups");
            let name_attr = cfg.group_name_attribute(s).to_string();
            let member_attr = cfg.member_attribute(s).to_string();
            let attrs = vec![
                name_attr.clone(),
                "cn".to_string(),
                member_attr.clone(),
                "objectGUID".to_string(),
            ];
            let base = search_base(s.group_path.as_deref(), root);
            let filter = search_filter(cfg.group_object_class(s), s.group_filter.as_deref());
            let q = Query {
                what: "group",
                base: &base,
                filter: &filter,
                attrs: &attrs,
            };
            search_each(ldap, cfg, q, progress, |e| {
                let external_id = object_guid(&e).unwrap_or_else(|| e.dn.clone());
                let name = first(&e, &name_attr)
                    .or_else(|| first(&e, "cn"))
                    .map(str::to_string);
                let mut user_members = Vec::new();
                let mut group_members = Vec::new();
                for v in attr(&e, &member_attr).into_iter().flatten() {
                    let v = strip_unique_id(v.trim());
                    if v.contains('=') {
                        let dn = normalize_dn(v);
                        match by_dn.get(&dn) {
                            Some(ext) => user_members.push(ext.clone()),
                            None => group_members.push(dn),
                        }
                    } else if let Some(ext) = by_uid.get(&v.to_lowercase()) {
                        user_members.push(ext.clone());
                    }
                }
                groups.push(DirGroup {
                    reference_id: normalize_dn(&e.dn),
                    external_id,
                    name,
                    user_members,
                    group_members,
                });
            })
            .await?;
        }
        Ok(Snapshot {
            users: s.users.then_some(users),
            groups: s.groups.then_some(groups),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_are_normalized() {
        assert_eq!(
            normalize_dn("CN=Shiela Harada, OU=Peons , dc=Bitwarden,DC=com"),
            "cn=shiela harada,ou=peons,dc=bitwarden,dc=com"
        );
        assert_eq!(normalize_dn(r"cn=Doe\, John,dc=x"), r"cn=doe\, john,dc=x");
    }

    #[test]
    fn guid_is_in_microsoft_order() {
        let bytes = [
            0x78, 0x56, 0x34, 0x12, 0x34, 0x12, 0x78, 0x56, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc,
            0xde, 0xf0,
        ];
        assert_eq!(
            guid_to_string(&bytes).unwrap(),
            "12345678-1234-5678-1234-56789abcdef0"
        );
        assert_eq!(guid_to_string(&[1, 2, 3]), None);
    }

    #[test]
    fn bases_and_filters() {
        assert_eq!(
            search_base(Some("ou=People "), "dc=x,dc=com"),
            "ou=People,dc=x,dc=com"
        );
        assert_eq!(search_base(Some(""), "dc=x"), "dc=x");
        assert_eq!(search_filter("person", None), "(objectClass=person)");
        assert_eq!(
            search_filter("person", Some("(cn=a*)")),
            "(&(objectClass=person)(cn=a*))"
        );
        assert_eq!(strip_unique_id("cn=a,dc=x#'0101'B"), "cn=a,dc=x");
        assert_eq!(strip_unique_id("cn=a#b,dc=x"), "cn=a#b,dc=x");
    }
}
