//! Validation of a whole configuration: every problem, each with the key it is about. What is
//! checked depends on the purpose: a one-shot `sync` or `test` is not blocked by settings only
//! the schedule reads; `config validate`, the Settings form and the window's automatic syncs
//! check those too. Ranges and URL rules come from the key table (the same checks as
//! `config set`), so a hand-edited file is held to the same rules.

use serde::Serialize;

use super::SecretRef;
use super::keys::SCHEDULE_KEYS;
use super::{Config, DirectoryType, Encryption, KEYS, KeyKind, values};

/// One validation problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

fn problem(out: &mut Vec<Problem>, key: &str, message: impl Into<String>) {
    out.push(Problem {
        key: key.into(),
        message: message.into(),
    });
}

fn blank(v: &Option<String>) -> bool {
    v.as_deref().is_none_or(|s| s.trim().is_empty())
}

/// What a configuration is checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A one-shot `test`, `sync` or `drift`: what it reads, not the schedule settings.
    Run,
    /// Every setting, the schedule too: `config validate`, the Settings form and the window's
    /// automatic syncs.
    Everything,
}

/// Every problem in the config, each with its key (the schedule settings too). `secret_known`
/// tells whether the directory's secret (LDAP password, API key or token) is in the secret
/// store (it is not in the file).
pub fn validate(cfg: &Config, secret_known: bool, plaintext_opt_in: bool) -> Vec<Problem> {
    validate_for(cfg, secret_known, plaintext_opt_in, Purpose::Everything)
}

/// The problems of the schedule settings only (checked before automatic syncs start).
pub fn schedule_problems(cfg: &Config) -> Vec<Problem> {
    let mut p = Vec::new();
    table_checks(cfg, &mut p, |key| SCHEDULE_KEYS.contains(&key));
    p
}

/// Whole numbers outside their range, bad URLs and host names, for the keys `wanted` picks:
/// the same rules `config set` applies, for values written by hand or by an older version.
fn table_checks(cfg: &Config, p: &mut Vec<Problem>, wanted: impl Fn(&str) -> bool) {
    let Ok(json) = serde_json::to_value(cfg) else {
        return;
    };
    for (key, kind, _) in KEYS {
        if !wanted(key) {
            continue;
        }
        let (section, field) = key.split_once('.').unwrap_or((key, ""));
        let v = &json[section][field];
        if v.is_null() {
            continue;
        }
        let result = match kind {
            KeyKind::Int(range) => values::check_int(key, *range, &v.to_string()).map(|_| ()),
            KeyKind::Url => v
                .as_str()
                .map_or(Ok(()), |u| values::check_url(key, u).map(|_| ())),
            KeyKind::Host => v
                .as_str()
                .filter(|h| !h.trim().is_empty())
                .map_or(Ok(()), |h| values::check_host(key, h).map(|_| ())),
            _ => Ok(()),
        };
        if let Err(message) = result {
            problem(p, key, message);
        }
    }
}

/// The problems that matter for `purpose`, each with its key.
#[allow(
    clippy::too_many_lines,
    reason = "one check per rule, section by section, under one purpose filter: the list of rules reads as one"
)]
pub fn validate_for(
    cfg: &Config,
    secret_known: bool,
    plaintext_opt_in: bool,
    purpose: Purpose,
) -> Vec<Problem> {
    let mut p = Vec::new();
    // the common sections, the chosen directory's own, and the schedule when asked for
    let directory = cfg.directory.kind.map(|k| match k {
        DirectoryType::Ldap => "ldap.",
        DirectoryType::Entra => "entra.",
        DirectoryType::Google => "google.",
        DirectoryType::Okta => "okta.",
        DirectoryType::Onelogin => "onelogin.",
    });
    table_checks(cfg, &mut p, |key| {
        let section_used = key.starts_with("server.")
            || key.starts_with("sync.")
            || directory.is_some_and(|d| key.starts_with(d));
        section_used && (purpose == Purpose::Everything || !SCHEDULE_KEYS.contains(&key))
    });
    for (key, v) in [
        ("server.ca_file", &cfg.server.ca_file),
        ("ldap.ca_file", &cfg.ldap.ca_file),
        ("ldap.client_cert_file", &cfg.ldap.client_cert_file),
        ("ldap.client_key_file", &cfg.ldap.client_key_file),
    ] {
        if let Some(path) = v
            && !path.is_file()
        {
            problem(&mut p, key, format!("file not found: {}", path.display()));
        }
    }
    match cfg.directory.kind {
        None => problem(
            &mut p,
            "directory.type",
            format!(
                "no directory configured; choose one of {}",
                DirectoryType::ALL.join(", ")
            ),
        ),
        Some(DirectoryType::Ldap) => validate_ldap(cfg, secret_known, plaintext_opt_in, &mut p),
        Some(DirectoryType::Entra) => {
            let e = &cfg.entra;
            if blank(&e.tenant) {
                problem(&mut p, "entra.tenant", "required: the tenant id or domain");
            }
            if blank(&e.application_id) {
                problem(
                    &mut p,
                    "entra.application_id",
                    "required: the application (client) id",
                );
            }
            secret_problem(&mut p, "entra.key", &e.key, secret_known, plaintext_opt_in);
        }
        Some(DirectoryType::Okta) => {
            let o = &cfg.okta;
            if blank(&o.org_url) {
                problem(
                    &mut p,
                    "okta.org_url",
                    "required: the Okta organization URL, e.g. https://company.okta.com",
                );
            }
            secret_problem(
                &mut p,
                "okta.token",
                &o.token,
                secret_known,
                plaintext_opt_in,
            );
        }
        Some(DirectoryType::Onelogin) => {
            let o = &cfg.onelogin;
            if blank(&o.client_id) {
                problem(&mut p, "onelogin.client_id", "required: the API client id");
            }
            secret_problem(
                &mut p,
                "onelogin.client_secret",
                &o.client_secret,
                secret_known,
                plaintext_opt_in,
            );
        }
        Some(DirectoryType::Google) => {
            let g = &cfg.google;
            if blank(&g.domain) && blank(&g.customer) {
                problem(
                    &mut p,
                    "google.domain",
                    "required: the primary domain (or set google.customer)",
                );
            }
            if blank(&g.admin_user) {
                problem(
                    &mut p,
                    "google.admin_user",
                    "required: a super-admin email for domain-wide delegation",
                );
            }
            secret_problem(&mut p, "google.key", &g.key, secret_known, plaintext_opt_in);
        }
    }
    let s = &cfg.sync;
    if !s.users && !s.groups {
        problem(
            &mut p,
            "sync.users",
            "neither sync.users nor sync.groups is on: nothing to sync",
        );
    }
    for e in &s.protected_emails {
        if let Err(message) = values::check_email_entry("sync.protected_emails", e) {
            problem(&mut p, "sync.protected_emails", message);
        }
    }
    if s.use_email_prefix_suffix && blank(&s.email_suffix) {
        problem(
            &mut p,
            "sync.email_suffix",
            "required when sync.use_email_prefix_suffix is on, e.g. @company.com",
        );
    }
    for (key, v) in [
        ("sync.user_filter", &s.user_filter),
        ("sync.group_filter", &s.group_filter),
    ] {
        let Some(f) = v.as_deref().filter(|f| !f.trim().is_empty()) else {
            continue;
        };
        let result = match cfg.directory.kind {
            Some(DirectoryType::Ldap) | None => check_ldap_filter(f),
            Some(kind) => check_cloud_filter(kind, key == "sync.user_filter", f),
        };
        if let Err(e) = result {
            problem(&mut p, key, e);
        }
    }
    p
}

/// The cloud filter language: `keyword:values` then `|` and the vendor's query. An unknown
/// keyword would silently mean "no filter" upstream; here it is an error.
pub fn check_cloud_filter(kind: DirectoryType, users: bool, f: &str) -> Result<(), String> {
    let set = f.split('|').next().unwrap_or_default();
    if set.trim().is_empty() {
        return Ok(());
    }
    let parts: Vec<&str> = set.split(':').collect();
    if parts.len() != 2 {
        return Err(format!(
            "expected `include:a,b` or `exclude:a,b` before any `|`, not `{}`",
            set.trim()
        ));
    }
    let keyword = parts[0].trim().to_lowercase();
    let mut allowed = vec!["include", "exclude"];
    if kind == DirectoryType::Entra && users {
        allowed.extend(["includegroup", "excludegroup"]);
    }
    if kind == DirectoryType::Entra && !users {
        // upstream's group filter keywords for administrative units
        allowed.extend(["includeadministrativeunit", "excludeadministrativeunit"]);
    }
    if allowed.contains(&keyword.as_str()) {
        Ok(())
    } else {
        Err(format!(
            "unknown filter keyword `{}`: use {}",
            parts[0].trim(),
            allowed.join(", ")
        ))
    }
}

/// A secret key's problem: a literal secret in the file without the opt-in, or missing.
fn secret_problem(
    p: &mut Vec<Problem>,
    key: &str,
    value: &Option<String>,
    known: bool,
    plaintext_opt_in: bool,
) {
    match value {
        Some(v) if SecretRef::parse(v).is_none() && !plaintext_opt_in => problem(
            p,
            key,
            format!(
                "config.toml holds a plaintext secret; move it to the secret store with \
                 `config set {key}`, use env:NAME or file:PATH, or opt in with \
                 DIRECTORY_CONNECTOR_PLAINTEXT_SECRETS=true"
            ),
        ),
        Some(_) => {}
        None if !known => problem(
            p,
            key,
            format!("not set: run `config set {key}` (prompts) or set it to env:NAME or file:PATH"),
        ),
        None => {}
    }
}

fn validate_ldap(cfg: &Config, secret_known: bool, plaintext_opt_in: bool, p: &mut Vec<Problem>) {
    let l = &cfg.ldap;
    if blank(&l.hostname) {
        problem(p, "ldap.hostname", "required: the LDAP server's host name");
    }
    if blank(&l.root_path) {
        problem(
            p,
            "ldap.root_path",
            "required: the base DN, e.g. dc=company,dc=com",
        );
    }
    for (key, v) in [
        ("ldap.root_path", &l.root_path),
        ("sync.user_path", &cfg.sync.user_path),
        ("sync.group_path", &cfg.sync.group_path),
    ] {
        if let Some(message) = v
            .as_deref()
            .and_then(|v| value_problem(key, v, Some(DirectoryType::Ldap)))
        {
            problem(p, key, message);
        }
    }
    if blank(&l.username) {
        problem(
            p,
            "ldap.username",
            "required: the DN (or DOMAIN\\user) to bind as",
        );
    }
    secret_problem(
        p,
        "ldap.password",
        &l.password,
        secret_known,
        plaintext_opt_in,
    );
    match (&l.client_cert_file, &l.client_key_file) {
        (Some(_), None) => problem(
            p,
            "ldap.client_key_file",
            "required with ldap.client_cert_file: the certificate's private key",
        ),
        (None, Some(_)) => problem(
            p,
            "ldap.client_cert_file",
            "required with ldap.client_key_file: the client certificate",
        ),
        _ => {}
    }
    if l.client_cert_file.is_some() && l.encryption == Encryption::None {
        problem(
            p,
            "ldap.client_cert_file",
            "a client certificate needs ldap.encryption = starttls or ldaps",
        );
    }
    if (l.deleted_objects || l.in_chain_membership) && !l.ad {
        let key = if l.deleted_objects {
            "ldap.deleted_objects"
        } else {
            "ldap.in_chain_membership"
        };
        problem(p, key, "only for Active Directory: set ldap.ad = true");
    }
}

/// A syntax check of an LDAP filter that says what is wrong: parentheses that do not balance
/// (with the column of an extra `)` or how many `(` are left open), a filter not wrapped in
/// parentheses, two filters side by side, or an empty `()`.
pub fn check_ldap_filter(f: &str) -> Result<(), String> {
    let f = f.trim();
    let mut depth: i64 = 0;
    let mut escaped = false;
    let mut closed_at_top = 0;
    let mut previous = ' ';
    for (i, c) in f.chars().enumerate() {
        if escaped {
            escaped = false;
            previous = c;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '(' => depth += 1,
            ')' => {
                if previous == '(' {
                    return Err(format!(
                        "an empty `()` at column {i} of the LDAP filter `{f}`: put a condition \
                         inside, e.g. (cn=Sales*)"
                    ));
                }
                depth -= 1;
                if depth < 0 {
                    return Err(format!(
                        "unbalanced parentheses: the `)` at column {} of the LDAP filter `{f}` \
                         closes nothing",
                        i + 1
                    ));
                }
                if depth == 0 {
                    closed_at_top += 1;
                }
            }
            _ => {}
        }
        previous = c;
    }
    if depth > 0 {
        let s = if depth == 1 { "" } else { "es" };
        return Err(format!(
            "unbalanced parentheses: {depth} `(` not closed in the LDAP filter `{f}`; add \
             {depth} closing parenthes{s} `)`"
        ));
    }
    if !f.starts_with('(') || !f.ends_with(')') {
        return Err(format!(
            "an LDAP filter must be in parentheses, e.g. (cn=Sales*): `{f}`"
        ));
    }
    if closed_at_top > 1 {
        return Err(format!(
            "the LDAP filter `{f}` is several filters side by side: combine them with (&…) or \
             (|…), e.g. (&(cn=a*)(mail=*))"
        ));
    }
    Ok(())
}

/// The problem of one key's value on its own, beyond its type: a DN that is not one, an LDAP
/// filter that does not parse (when the directory is LDAP). `config set` refuses these, and
/// validation reports them, with the same message.
pub fn value_problem(key: &str, raw: &str, directory: Option<DirectoryType>) -> Option<String> {
    if raw.trim().is_empty() {
        return None;
    }
    if values::DN_KEYS.contains(&key) {
        return values::check_dn(key, raw).err();
    }
    if (key == "sync.user_filter" || key == "sync.group_filter")
        && directory == Some(DirectoryType::Ldap)
    {
        return check_ldap_filter(raw).err();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 28 item 5: `(mail=*` was told "must be in parentheses".
    #[test]
    fn ldap_filters_get_a_precise_message() {
        let e = check_ldap_filter("(mail=*").unwrap_err();
        assert!(
            e.starts_with("unbalanced parentheses") && e.contains("1 `(` not closed"),
            "{e}"
        );
        let e = check_ldap_filter("(&(a=1)(b=2)").unwrap_err();
        assert!(e.contains("1 `(` not closed"), "{e}");
        let e = check_ldap_filter("(a=1))").unwrap_err();
        assert!(
            e.contains("column 6") && e.contains("closes nothing"),
            "{e}"
        );
        let e = check_ldap_filter("mail=*").unwrap_err();
        assert!(e.contains("must be in parentheses"), "{e}");
        let e = check_ldap_filter("(a=1)(b=2)").unwrap_err();
        assert!(e.contains("side by side"), "{e}");
        assert!(check_ldap_filter("()").unwrap_err().contains("empty"));
        for good in ["(cn=Sales*)", "(&(a=1)(|(b=2)(c=\\29)))", " (mail=*) "] {
            assert_eq!(check_ldap_filter(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn a_root_path_that_is_no_dn_is_a_problem_of_its_field() {
        let mut cfg = Config::default();
        cfg.directory.kind = Some(DirectoryType::Ldap);
        cfg.ldap.root_path = Some("abc".into());
        cfg.sync.user_path = Some("ou=People".into());
        cfg.sync.user_filter = Some("(mail=*".into());
        let p = validate(&cfg, true, false);
        let of = |k: &str| p.iter().find(|p| p.key == k).map(|p| p.message.clone());
        assert!(of("ldap.root_path").unwrap().contains("not a DN"), "{p:?}");
        assert_eq!(of("sync.user_path"), None);
        assert!(
            of("sync.user_filter").unwrap().contains("unbalanced"),
            "{p:?}"
        );
    }

    /// `config set` refuses the same values, naming the key.
    #[test]
    fn config_set_refuses_a_bad_dn_and_an_unbalanced_ldap_filter() {
        let path = std::path::Path::new("config.toml");
        let apply = |text: &str, key: &str, v: &str| {
            super::super::apply_changes(path, text, &[(key, Some(v))]).map(|_| ())
        };
        let e = apply("", "ldap.root_path", "abc").unwrap_err().to_string();
        assert!(e.contains("`ldap.root_path` is not a DN"), "{e}");
        let ldap = "[directory]\ntype = \"ldap\"\n";
        let e = apply(ldap, "sync.user_filter", "(mail=*")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`sync.user_filter`: unbalanced"), "{e}");
        assert!(apply(ldap, "sync.user_filter", "(mail=*)").is_ok());
        assert!(apply("", "sync.user_path", "ou=People").is_ok());
    }
}
