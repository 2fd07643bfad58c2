//! LDAP source (OpenLDAP, Active Directory, any RFC 4511 server): simple bind over plain LDAP,
//! StartTLS or LDAPS, paged subtree searches streamed entry by entry, users and groups mapped as
//! upstream (externalId = objectGUID or DN; members by DN, `uniqueMember` or `memberUid`).

pub mod dn;
pub mod entry;
pub mod feed;

use std::collections::HashMap;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use ldap3::adapters::PagedResults;
use ldap3::controls::RawControl;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchOptions};

pub use dn::normalize_dn;
use entry::{Entry, Unreadable};

use super::UsersReady;
use crate::config::{Encryption, LdapConfig, SyncConfig};
use crate::engine::{DirGroup, DirUser, Id, Snapshot};
use crate::progress::Progress;

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

/// The attributes that hold an entry's immutable id, by server: OpenLDAP's `entryUUID`
/// (RFC 4530), 389-ds's `nsUniqueId` and FreeIPA's `ipaUniqueID` (AD's is `objectGUID`, which
/// is the externalId there). The operational ones are returned only when asked for by name.
pub const IMMUTABLE_ID_ATTRS: [&str; 3] = ["entryUUID", "nsUniqueId", "ipaUniqueID"];

/// The entry's immutable id (the first of [`IMMUTABLE_ID_ATTRS`] it has), prefixed with the
/// attribute's name so that ids of two kinds never meet.
fn immutable_id(e: &Entry) -> Option<String> {
    IMMUTABLE_ID_ATTRS.iter().find_map(|a| {
        let v = e.first_text(a).ok().flatten()?.trim();
        (!v.is_empty()).then(|| format!("{a}:{}", v.to_ascii_lowercase()))
    })
}

fn object_guid(e: &Entry) -> Option<String> {
    // binary, or text when the GUID's bytes happen to be valid UTF-8: the same bytes
    e.first_bytes("objectGUID").and_then(guid_to_string)
}

/// The first value of a text attribute; a value that is not UTF-8 is `None` and its reason is
/// kept in `problem` (the first one found).
fn text<'e>(e: &'e Entry, name: &str, problem: &mut Option<String>) -> Option<&'e str> {
    match e.first_text(name) {
        Ok(v) => v,
        Err(reason) => {
            problem.get_or_insert(reason);
            None
        }
    }
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
    let lower = all.to_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
    let cert = if has(&["unknownissuer", "unknown issuer"]) {
        Some(
            "the server certificate is signed by an unknown issuer: set ldap.ca_file to the CA that signed it",
        )
    } else if has(&["notvalidforname", "not valid for name"]) {
        Some("the server certificate does not match the host name in ldap.hostname")
    } else if has(&["notvalidyet", "not valid yet", "not valid before"]) {
        Some("the server certificate is not valid yet")
    } else if has(&["expired"]) {
        Some("the server certificate has expired")
    } else if has(&["invalid peer certificate", "invalidcertificate"]) {
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

/// Reads every PEM certificate of `path`; `key` names the config key in errors.
fn read_certs(
    key: &str,
    path: &std::path::Path,
) -> anyhow::Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            anyhow!(
                "{key} {}: cannot read PEM certificates: {e}",
                path.display()
            )
        })?;
    if certs.is_empty() {
        anyhow::bail!("{key} {}: no certificate found", path.display());
    }
    Ok(certs)
}

/// Accepts any server certificate (`ldap.skip_cert_verification`), still checking that the
/// handshake signatures are sound.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS settings: trust (CA file, else the system's roots; or none with
/// `skip_cert_verification`) and the optional client certificate.
fn tls_config(cfg: &LdapConfig) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = &cfg.ca_file {
        for c in read_certs("ldap.ca_file", ca)? {
            roots
                .add(c)
                .map_err(|e| anyhow!("ldap.ca_file {}: {e}", ca.display()))?;
        }
    } else if !cfg.skip_cert_verification {
        let native = rustls_native_certs::load_native_certs();
        for c in native.certs {
            let _ = roots.add(c);
        }
        if roots.is_empty() {
            anyhow::bail!(
                "no trusted CA certificates on this system: set ldap.ca_file to the CA that \
                 signed the LDAP server's certificate"
            );
        }
    }
    let builder = rustls::ClientConfig::builder();
    let builder = if cfg.skip_cert_verification {
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    } else {
        builder.with_root_certificates(roots)
    };
    let config = match (&cfg.client_cert_file, &cfg.client_key_file) {
        (Some(cert), Some(key)) => {
            let chain = read_certs("ldap.client_cert_file", cert)?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                anyhow!(
                    "ldap.client_key_file {}: cannot read a PEM private key: {e}",
                    key.display()
                )
            })?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                anyhow!(
                    "ldap.client_cert_file {} does not match ldap.client_key_file {}: {e}",
                    cert.display(),
                    key.display()
                )
            })?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => anyhow::bail!("ldap.client_cert_file and ldap.client_key_file must be set together"),
    };
    Ok(Arc::new(config))
}

/// One search: what it is for (named in errors), base, filter and attributes.
struct Query<'q> {
    what: &'q str,
    base: &'q str,
    filter: &'q str,
    attrs: &'q [String],
    /// Extra request controls (AD's show-deleted).
    controls: Vec<RawControl>,
}

impl<'q> Query<'q> {
    fn new(what: &'q str, base: &'q str, filter: &'q str, attrs: &'q [String]) -> Self {
        Query {
            what,
            base,
            filter,
            attrs,
            controls: Vec::new(),
        }
    }
}

/// AD's Show Deleted control: tombstones are returned.
const SHOW_DELETED_OID: &str = "1.2.840.113556.1.4.417";

/// A critical control without a value (show-deleted, change notification): a server that does
/// not know it refuses the search instead of answering a plain one.
fn critical(oid: &str) -> RawControl {
    RawControl {
        ctype: oid.to_string(),
        crit: true,
        val: None,
    }
}
/// AD's transitive ("in chain") matching rule.
const IN_CHAIN_RULE: &str = "1.2.840.113556.1.4.1941";
/// AD refuses pages larger than this (MaxPageSize).
const AD_MAX_PAGE: u32 = 1000;

/// Escapes a value for use inside an LDAP filter (RFC 4515).
pub fn escape_filter_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '*' => out.push_str("\\2a"),
            '(' => out.push_str("\\28"),
            ')' => out.push_str("\\29"),
            '\\' => out.push_str("\\5c"),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

/// The base DN from its first `dc=` on (as upstream builds AD's special containers).
fn domain_root(root: &str) -> &str {
    let lower = root.to_ascii_lowercase();
    match lower.find("dc=") {
        Some(i) => root[i..].trim(),
        None => root.trim(),
    }
}

/// The values of the member attribute, plain or ranged (`member;range=0-1499`), and where the
/// next range starts when the server cut the list.
fn member_values<'e>(e: &'e Entry, member_attr: &str) -> (Vec<&'e [u8]>, Option<u64>) {
    let mut values = Vec::new();
    let mut next = None;
    for (k, v) in &e.attrs {
        let Some((name, options)) = k.split_once(';') else {
            if k.eq_ignore_ascii_case(member_attr) {
                values.extend(v.iter().map(Vec::as_slice));
            }
            continue;
        };
        if !name.eq_ignore_ascii_case(member_attr) {
            continue;
        }
        let range = options.split(';').find_map(|o| {
            o.strip_prefix("range=")
                .or_else(|| o.strip_prefix("Range="))
        });
        if let Some(range) = range {
            values.extend(v.iter().map(Vec::as_slice));
            if let Some((_, hi)) = range.split_once('-')
                && hi != "*"
                && let Ok(hi) = hi.parse::<u64>()
            {
                next = Some(hi + 1);
            }
        }
    }
    (values, next)
}

/// Reads entries one by one; `on_entry` sees each, or why it cannot be read (a DN that is not
/// UTF-8, a malformed entry). Server-side limits are errors.
async fn search_each(
    ldap: &mut Ldap,
    cfg: &LdapConfig,
    q: Query<'_>,
    progress: &dyn Progress,
    mut on_entry: impl FnMut(Result<Entry, Unreadable>),
) -> anyhow::Result<u64> {
    let Query {
        what,
        base,
        filter,
        attrs,
        controls,
    } = q;
    let timeout = Duration::from_secs(cfg.timeout_seconds);
    let ctx = || format!("LDAP {what} search in `{base}` with filter `{filter}`");
    tracing::info!("{what} search: {base} => {filter}");
    ldap.with_timeout(timeout).with_search_options(
        SearchOptions::new().timelimit(cfg.timeout_seconds.min(i32::MAX as u64) as i32),
    );
    if !controls.is_empty() {
        ldap.with_controls(controls);
    }
    let attrs: Vec<&str> = attrs.iter().map(String::as_str).collect();
    let page_size = if cfg.ad {
        cfg.page_size.clamp(1, AD_MAX_PAGE)
    } else {
        cfg.page_size.clamp(1, i32::MAX as u32)
    };
    let started = if cfg.paged_search {
        ldap.streaming_search_with(
            PagedResults::new(page_size as i32),
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
                on_entry(Entry::from_raw(entry.0));
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
        if cfg.encryption != Encryption::None {
            if cfg.skip_cert_verification {
                tracing::warn!(
                    "ldap.skip_cert_verification is on: the LDAP server's certificate is NOT \
                     verified, so anyone on the network path can read the bind password"
                );
                settings = settings.set_no_tls_verify(true);
            }
            let tls =
                tls_config(cfg).map_err(|e| crate::errors::Failure::Config(format!("{e:#}")))?;
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
        self.fetch_parts(progress, None).await
    }

    /// Reads the directory. With `users_ready`, the users go there as soon as they are read
    /// (and the snapshot holds none), before the groups are read.
    pub async fn fetch_parts(
        &self,
        progress: &dyn Progress,
        users_ready: Option<UsersReady>,
    ) -> anyhow::Result<Snapshot> {
        let mut ldap = self.connect().await?;
        let result = self.fetch_with(&mut ldap, progress, users_ready).await;
        let _ = ldap.unbind().await;
        result
    }

    /// Reads the directory in named steps over one connection: the users (which also fill the
    /// index that resolves group members), AD's deleted users, then the groups.
    async fn fetch_with(
        &self,
        ldap: &mut Ldap,
        progress: &dyn Progress,
        users_ready: Option<UsersReady>,
    ) -> anyhow::Result<Snapshot> {
        let s = &self.sync;
        let mapping = UserMapping::new(&self.ldap, s);
        let root = self.ldap.root_path.as_deref().unwrap_or_default();
        let user_search = UserSearch {
            base: search_base(s.user_path.as_deref(), root),
            filter: search_filter(self.ldap.user_object_class(s), s.user_filter.as_deref()),
        };
        // Users: read once, both for syncing and for resolving group members.
        let (mut users, index) = if s.users || s.groups {
            self.read_users(ldap, progress, &mapping, &user_search)
                .await?
        } else {
            (Vec::new(), UserIndex::default())
        };
        if s.users && self.ldap.ad && self.ldap.deleted_objects {
            self.read_deleted_users(ldap, progress, &mapping, &mut users)
                .await?;
        }
        let users = match users_ready {
            Some(tx) => {
                // a receiver that went away (the sync failed meanwhile) needs no users
                let _ = tx.send(s.users.then_some(users));
                None
            }
            None => s.users.then_some(users),
        };
        let groups = if s.groups {
            Some(
                self.read_groups(ldap, progress, &index, &user_search)
                    .await?,
            )
        } else {
            None
        };
        Ok(Snapshot { users, groups })
    }

    /// The users step: every user entry, kept when users are synced and indexed when groups
    /// are.
    async fn read_users(
        &self,
        ldap: &mut Ldap,
        progress: &dyn Progress,
        mapping: &UserMapping,
        search: &UserSearch,
    ) -> anyhow::Result<(Vec<DirUser>, UserIndex)> {
        let s = &self.sync;
        let mut users: Vec<DirUser> = Vec::new();
        let mut index = UserIndex::default();
        progress.stage("Reading users");
        let attrs = mapping.attrs();
        let q = Query::new("user", &search.base, &search.filter, &attrs);
        search_each(ldap, &self.ldap, q, progress, |e| {
            // an unreadable entry resolves no member: the member is listed as unmatched
            let keys = match &e {
                Ok(e) if s.groups => Some((
                    normalize_dn(&e.dn),
                    e.first_text("uid")
                        .ok()
                        .flatten()
                        .map(|u| u.trim().to_lowercase()),
                )),
                _ => None,
            };
            let user = mapping.to_user(e, false);
            if let Some((dn, uid)) = keys {
                index.by_dn.insert(dn, user.external_id.clone());
                if let Some(uid) = uid {
                    index.by_uid.insert(uid, user.external_id.clone());
                }
            }
            if s.users {
                users.push(user);
            }
        })
        .await?;
        Ok((users, index))
    }

    /// The deleted users step (AD's `Deleted Objects` container, with the show-deleted control):
    /// each tombstone is added to `users` as deleted.
    async fn read_deleted_users(
        &self,
        ldap: &mut Ldap,
        progress: &dyn Progress,
        mapping: &UserMapping,
        users: &mut Vec<DirUser>,
    ) -> anyhow::Result<()> {
        let cfg = &self.ldap;
        let root = cfg.root_path.as_deref().unwrap_or_default();
        progress.stage("Reading deleted users");
        let base = format!("CN=Deleted Objects,{}", domain_root(root));
        let filter = format!(
            "(&(objectClass={})(isDeleted=TRUE))",
            cfg.user_object_class(&self.sync)
        );
        let attrs = mapping.attrs();
        let mut q = Query::new("deleted user", &base, &filter, &attrs);
        q.controls.push(critical(SHOW_DELETED_OID));
        search_each(ldap, cfg, q, progress, |e| {
            users.push(mapping.to_user(e, true))
        })
        .await?;
        Ok(())
    }

    /// The groups step: the group search, then the rest of each member list the server cut,
    /// then (AD in-chain) each group's nested members as the server resolves them.
    async fn read_groups(
        &self,
        ldap: &mut Ldap,
        progress: &dyn Progress,
        index: &UserIndex,
        user_search: &UserSearch,
    ) -> anyhow::Result<Vec<DirGroup>> {
        progress.stage("Reading groups");
        let mapping = GroupMapping::new(&self.ldap, &self.sync);
        let mut resolver = MemberResolver::new(index);
        let mut read = self
            .search_groups(ldap, progress, &mapping, &mut resolver)
            .await?;
        self.read_more_members(ldap, &mapping, &mut resolver, &mut read)
            .await?;
        if mapping.in_chain {
            self.read_in_chain(ldap, progress, index, user_search, &mut read)
                .await?;
        }
        Ok(read.groups)
    }

    /// The group search: each group with the members its entry holds.
    async fn search_groups(
        &self,
        ldap: &mut Ldap,
        progress: &dyn Progress,
        mapping: &GroupMapping,
        resolver: &mut MemberResolver<'_>,
    ) -> anyhow::Result<GroupsRead> {
        let s = &self.sync;
        let root = self.ldap.root_path.as_deref().unwrap_or_default();
        let base = search_base(s.group_path.as_deref(), root);
        let filter = search_filter(self.ldap.group_object_class(s), s.group_filter.as_deref());
        let attrs = mapping.attrs();
        let mut read = GroupsRead::default();
        let q = Query::new("group", &base, &filter, &attrs);
        search_each(ldap, &self.ldap, q, progress, |e| {
            read.add(e, mapping, resolver);
        })
        .await?;
        Ok(read)
    }

    /// Ranged retrieval: asks for the rest of each cut member list, range by range.
    async fn read_more_members(
        &self,
        ldap: &mut Ldap,
        mapping: &GroupMapping,
        resolver: &mut MemberResolver<'_>,
        read: &mut GroupsRead,
    ) -> anyhow::Result<()> {
        let cfg = &self.ldap;
        let member_attr = &mapping.member_attr;
        let range = mapping.range;
        for (idx, dn, mut start) in std::mem::take(&mut read.more) {
            loop {
                let attr = format!("{member_attr};range={start}-{}", start + range - 1);
                let (entries, _result) = ldap
                    .with_timeout(Duration::from_secs(cfg.timeout_seconds))
                    .search(&dn, Scope::Base, "(objectClass=*)", vec![attr.as_str()])
                    .await
                    .and_then(|r| r.success())
                    .map_err(|e| anyhow!(describe_error(&e)))
                    .with_context(|| format!("LDAP read of members `{attr}` of group `{dn}`"))?;
                let Some(entry) = entries.into_iter().next() else {
                    break;
                };
                let e = match Entry::from_raw(entry.0) {
                    Ok(e) => e,
                    Err(u) => {
                        read.groups[idx].unreadable =
                            Some(format!("reading more members of {dn}: {}", u.reason));
                        break;
                    }
                };
                let (values, next) = member_values(&e, member_attr);
                let got = values.len();
                for v in values {
                    resolver.add(v, &mut read.groups[idx]);
                }
                match next {
                    Some(n) if got > 0 && n > start => start = n,
                    _ => break,
                }
            }
        }
        Ok(())
    }

    /// In-chain: the server resolves nesting; one user search per group, whose users replace
    /// the group's members.
    async fn read_in_chain(
        &self,
        ldap: &mut Ldap,
        progress: &dyn Progress,
        index: &UserIndex,
        user_search: &UserSearch,
        read: &mut GroupsRead,
    ) -> anyhow::Result<()> {
        progress.stage("Reading nested memberships");
        let attrs = vec!["1.1".to_string()];
        for (idx, dn) in &read.dns {
            let idx = *idx;
            let filter = format!(
                "(&{}(memberOf:{IN_CHAIN_RULE}:={}))",
                user_search.filter,
                escape_filter_value(dn)
            );
            let q = Query::new("nested member", &user_search.base, &filter, &attrs);
            let mut members: Vec<Id> = Vec::new();
            search_each(ldap, &self.ldap, q, &super::NoProgress, |e| {
                // an unreadable user was skipped when the users were read
                if let Ok(e) = e
                    && let Some(ext) = index.by_dn.get(&normalize_dn(&e.dn))
                {
                    members.push(ext.clone());
                }
            })
            .await?;
            read.groups[idx].user_members = members;
            read.groups[idx].group_members.clear();
        }
        Ok(())
    }
}

/// Where the users are searched (the in-chain searches use it again).
struct UserSearch {
    base: String,
    filter: String,
}

/// How a user entry becomes a [`DirUser`]: the attributes the config names.
struct UserMapping {
    email_attr: String,
    prefix_attr: String,
    suffix: String,
    use_prefix: bool,
}

impl UserMapping {
    fn new(cfg: &LdapConfig, s: &SyncConfig) -> Self {
        UserMapping {
            email_attr: cfg.user_email_attribute(s).to_string(),
            prefix_attr: cfg.email_prefix_attribute(s).to_string(),
            suffix: s.email_suffix.clone().unwrap_or_default(),
            use_prefix: s.use_email_prefix_suffix,
        }
    }

    /// The attributes a user search asks for.
    fn attrs(&self) -> Vec<String> {
        let mut attrs = vec![
            self.email_attr.clone(),
            "objectGUID".to_string(),
            "userAccountControl".to_string(),
            "uid".to_string(),
        ];
        attrs.extend(IMMUTABLE_ID_ATTRS.iter().map(|a| a.to_string()));
        if self.use_prefix {
            attrs.push(self.prefix_attr.clone());
        }
        attrs
    }

    /// The user of an entry (or of an entry that cannot be read, with the reason).
    fn to_user(&self, e: Result<Entry, Unreadable>, deleted: bool) -> DirUser {
        let e = match e {
            Ok(e) => e,
            Err(u) => {
                return DirUser {
                    external_id: u.dn.as_str().into(),
                    reference_id: u.dn,
                    email: None,
                    disabled: false,
                    deleted,
                    unreadable: Some(u.reason),
                    immutable_id: None,
                };
            }
        };
        let mut problem = None;
        let guid = object_guid(&e);
        // where the externalId is the DN, the entry's immutable id follows a move or a rename
        let immutable_id = match guid {
            Some(_) => None,
            None => immutable_id(&e),
        };
        let external_id = guid.unwrap_or_else(|| e.dn.clone());
        let disabled = text(&e, "userAccountControl", &mut problem)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .is_some_and(|v| v & 0x2 != 0);
        let mut email = text(&e, &self.email_attr, &mut problem).map(str::to_string);
        if email.as_deref().is_none_or(|m| m.trim().is_empty()) && self.use_prefix {
            email = text(&e, &self.prefix_attr, &mut problem)
                .map(|p| format!("{}{}", p.trim(), self.suffix));
        }
        DirUser {
            reference_id: e.dn,
            external_id: external_id.into(),
            email,
            disabled,
            deleted,
            unreadable: problem,
            immutable_id,
        }
    }
}

/// The users by normalised DN and by lower-case `uid`: what resolves a group's member values.
/// (foldhash: these maps see every user and every member value)
#[derive(Default)]
struct UserIndex {
    by_dn: FastMap<String, Id>,
    by_uid: FastMap<String, Id>,
}

/// Sorts a group's member values into users (found in the index) and group references.
struct MemberResolver<'i> {
    index: &'i UserIndex,
    /// each DN is made canonical in this reused buffer: most are only looked up
    canonical: String,
}

impl<'i> MemberResolver<'i> {
    fn new(index: &'i UserIndex) -> Self {
        MemberResolver {
            index,
            canonical: String::new(),
        }
    }

    /// Adds one member value to `group`. A value that names no user is kept as a group
    /// reference: normalization resolves it to a nested group or lists it as an unmatched
    /// member.
    fn add(&mut self, v: &[u8], group: &mut DirGroup) {
        let Ok(v) = std::str::from_utf8(v) else {
            group
                .group_members
                .push(normalize_dn(&dn::display_bytes(v)));
            return;
        };
        let v = strip_unique_id(v.trim());
        if v.contains('=') {
            dn::normalize_dn_into(v, &mut self.canonical);
            match self.index.by_dn.get(self.canonical.as_str()) {
                Some(ext) => group.user_members.push(ext.clone()),
                None => group.group_members.push(self.canonical.clone()),
            }
        } else if let Some(ext) = self.index.by_uid.get(&v.to_lowercase()) {
            group.user_members.push(ext.clone());
        } else if !v.is_empty() {
            group.group_members.push(v.to_string());
        }
    }
}

/// How group entries are read: the attributes the config names and how members come.
struct GroupMapping {
    name_attr: String,
    member_attr: String,
    /// AD resolves nesting itself: one user search per group instead of member values.
    in_chain: bool,
    /// AD cuts long `member` lists into ranges.
    ranged: bool,
    /// The size of a range asked for.
    range: u64,
}

impl GroupMapping {
    fn new(cfg: &LdapConfig, s: &SyncConfig) -> Self {
        let member_attr = cfg.member_attribute(s).to_string();
        GroupMapping {
            name_attr: cfg.group_name_attribute(s).to_string(),
            in_chain: cfg.ad && cfg.in_chain_membership,
            ranged: cfg.ad && member_attr.eq_ignore_ascii_case("member"),
            range: u64::from(cfg.member_range_size.max(1)),
            member_attr,
        }
    }

    /// The attributes a group search asks for.
    fn attrs(&self) -> Vec<String> {
        let mut attrs = vec![
            self.name_attr.clone(),
            "cn".to_string(),
            "objectGUID".to_string(),
        ];
        if !self.in_chain {
            attrs.push(if self.ranged {
                format!("{};range=0-{}", self.member_attr, self.range - 1)
            } else {
                self.member_attr.clone()
            });
        }
        attrs
    }
}

/// The groups as their search returned them, with what the later steps still have to read.
#[derive(Default)]
struct GroupsRead {
    groups: Vec<DirGroup>,
    /// groups whose member list the server cut: (index, DN, next range start)
    more: Vec<(usize, String, u64)>,
    /// raw DNs, for the in-chain searches: (index, DN)
    dns: Vec<(usize, String)>,
}

impl GroupsRead {
    /// Adds the group of one entry (or of an entry that cannot be read, with the reason).
    fn add(
        &mut self,
        e: Result<Entry, Unreadable>,
        mapping: &GroupMapping,
        resolver: &mut MemberResolver<'_>,
    ) {
        let e = match e {
            Ok(e) => e,
            Err(u) => {
                let mut group = DirGroup::new(&u.dn, None);
                group.unreadable = Some(u.reason);
                self.groups.push(group);
                return;
            }
        };
        let mut problem = None;
        let name = text(&e, &mapping.name_attr, &mut problem)
            .or_else(|| text(&e, "cn", &mut problem))
            .map(str::to_string);
        // a name that is not UTF-8 matters only when there is no other
        let unreadable = if name.is_none() { problem } else { None };
        let mut group = DirGroup {
            reference_id: normalize_dn(&e.dn),
            external_id: object_guid(&e).unwrap_or_else(|| e.dn.clone()),
            name,
            user_members: Vec::new(),
            group_members: Vec::new(),
            unreadable,
        };
        let (values, next) = member_values(&e, &mapping.member_attr);
        for v in values {
            resolver.add(v, &mut group);
        }
        if let Some(next) = next {
            self.more.push((self.groups.len(), e.dn.clone(), next));
        }
        if mapping.in_chain {
            self.dns.push((self.groups.len(), e.dn));
        }
        self.groups.push(group);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_are_escaped() {
        assert_eq!(
            escape_filter_value(r"CN=a*(b)\c,DC=x"),
            r"CN=a\2a\28b\29\5cc,DC=x"
        );
    }

    #[test]
    fn ranged_member_attributes_are_read_with_the_next_start() {
        let e = Entry {
            dn: "cn=g".into(),
            attrs: vec![
                (
                    "member;range=0-1".to_string(),
                    vec![b"a".to_vec(), b"b".to_vec()],
                ),
                ("cn".to_string(), vec![b"g".to_vec()]),
            ],
        };
        let (values, next) = member_values(&e, "member");
        assert_eq!(values.len(), 2);
        assert_eq!(next, Some(2));
        let last = Entry {
            dn: "cn=g".into(),
            attrs: vec![("member;range=2-*".to_string(), vec![b"c".to_vec()])],
        };
        assert_eq!(member_values(&last, "member"), (vec![&b"c"[..]], None));
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
