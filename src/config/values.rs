//! Checks of single values, shared by `config set` (refused at once, exit 2) and validation of a
//! whole file (hand-edited or older): whole numbers in their range, `http(s)` URLs with a host
//! and no credentials, bare LDAP host names, single email addresses in email lists, and
//! parse-error locations that never quote the
//! file's text (it may hold secrets).

use std::ops::Range;

use super::keys::IntRange;

/// A whole number for `key` within `range`; the message names the key and the range.
pub fn check_int(key: &str, range: IntRange, raw: &str) -> Result<i64, String> {
    match raw.trim().parse::<i64>() {
        Ok(n) if range.contains(n) => Ok(n),
        _ => Err(format!(
            "`{key}` must be a whole number {}, not `{}`",
            range.describe(),
            raw.trim()
        )),
    }
}

/// A URL that passed [`check_url`], with a warning to show when it is plain `http://` to
/// another machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedUrl {
    pub url: String,
    pub warning: Option<String>,
}

fn credentials_error(key: &str) -> String {
    format!(
        "`{key}` must not contain a user name or password (`user:password@`): it would be shown \
         by `config show`, in errors and in the log. Give the URL without them"
    )
}

/// Checks a URL setting: `http://` or `https://` with a host, no user name or password. A bare
/// host (`vault.example.com`, `localhost:8080`) gets `https://`; trailing slashes are dropped.
/// Any other scheme (`ftp://`, `mailto:`) is refused rather than rewritten. The message never
/// repeats a value that holds credentials.
pub fn check_url(key: &str, raw: &str) -> Result<CheckedUrl, String> {
    let v = raw.trim().trim_end_matches('/');
    if v.is_empty() {
        return Err(format!(
            "`{key}` is empty: give an https:// URL, e.g. https://vault.example.com"
        ));
    }
    let rest = v.split_once("://").map_or(v, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if v.contains("://") && authority.contains('@') {
        return Err(credentials_error(key));
    }
    let full = match v.split_once("://") {
        Some((scheme, _)) => {
            let s = scheme.to_ascii_lowercase();
            if s != "http" && s != "https" {
                return Err(format!(
                    "`{key}` must be an http:// or https:// URL, not `{scheme}://`: `{v}`"
                ));
            }
            v.to_string()
        }
        None => {
            // `mailto:a`, `ftp:x` name another scheme; `host:8080` is a host with a port
            if let Some((before, after)) = v.split_once(':') {
                let port = after.split(['/', '?', '#']).next().unwrap_or_default();
                let is_port = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
                if !is_port && !before.contains(['.', '[']) {
                    // `mailto:a@b` and `admin:password@host` look alike: show neither value
                    return Err(format!(
                        "`{key}` must be an http:// or https:// URL with a host and no user \
                         name or password; `{before}:` is not a scheme it accepts"
                    ));
                }
            }
            if authority.contains('@') {
                return Err(credentials_error(key));
            }
            format!("https://{v}")
        }
    };
    let url =
        url::Url::parse(&full).map_err(|e| format!("`{key}` is not a valid URL ({e}): `{v}`"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(credentials_error(key));
    }
    let host = match url.host() {
        Some(h) if !h.to_string().is_empty() => h,
        _ => return Err(format!("`{key}` has no host name: `{v}`")),
    };
    let warning = (url.scheme() == "http" && !is_loopback(&host)).then(|| {
        format!(
            "`{key}` uses http:// to {host}, which is not this machine: the API key, tokens and \
             directory data would travel unencrypted. Use https://"
        )
    });
    Ok(CheckedUrl { url: full, warning })
}

fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => {
            let d = d.to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// Checks a bare host name (`ldap.hostname`): no scheme (the scheme comes from
/// `ldap.encryption`), no port (`ldap.port`), no path and no credentials. IPv6 addresses are
/// written in brackets.
pub fn check_host(key: &str, raw: &str) -> Result<String, String> {
    let h = raw.trim();
    if h.is_empty() {
        return Err(format!(
            "`{key}` is empty: give a host name, e.g. ad.company.com"
        ));
    }
    if h.contains('@') {
        return Err(credentials_error(key));
    }
    if let Some((scheme, _)) = h.split_once("://") {
        return Err(format!(
            "`{key}` is a host name, not a URL: leave out `{scheme}://` (ldap.encryption chooses \
             ldap, StartTLS or ldaps) and give the port in ldap.port"
        ));
    }
    if h.parse::<std::net::Ipv6Addr>().is_ok() {
        return Err(format!(
            "`{key}`: write an IPv6 address in brackets, e.g. [{h}]"
        ));
    }
    if !h.starts_with('[') && h.contains(':') {
        return Err(format!(
            "`{key}` is a host name without a port: give the port in ldap.port, not `{h}`"
        ));
    }
    if h.contains(['/', '?', '#']) || h.contains(char::is_whitespace) {
        return Err(format!("`{key}` is not a host name: `{h}`"));
    }
    url::Host::parse(h).map_err(|e| format!("`{key}` is not a valid host name ({e}): `{h}`"))?;
    Ok(h.to_string())
}

/// What an unset key means, as a value (`ldap.port` is 389, or 636 with LDAPS; the object
/// classes and attributes follow `ldap.ad`): the window shows it in the empty field.
pub fn default_value(cfg: &super::Config, key: &str) -> Option<String> {
    let l = &cfg.ldap;
    let v = match key {
        "server.url" => "https://vault.bitwarden.com".to_string(),
        "server.max_requests_per_second" => "4".to_string(),
        "server.max_requests_per_minute" => "50".to_string(),
        "ldap.port" => {
            let mut unset = l.clone();
            unset.port = None;
            unset.effective_port().to_string()
        }
        "sync.user_object_class" => l.user_object_class(&super::SyncConfig::default()).into(),
        "sync.group_object_class" => l.group_object_class(&super::SyncConfig::default()).into(),
        "sync.user_email_attribute" => l.user_email_attribute(&super::SyncConfig::default()).into(),
        "sync.group_name_attribute" => l.group_name_attribute(&super::SyncConfig::default()).into(),
        "sync.member_attribute" => l.member_attribute(&super::SyncConfig::default()).into(),
        "sync.email_prefix_attribute" => l
            .email_prefix_attribute(&super::SyncConfig::default())
            .into(),
        "notify.email_from" => "directory-connector@<this host>".to_string(),
        _ => {
            return super::get_value(&super::Config::default(), key)
                .ok()
                .flatten();
        }
    };
    Some(v)
}

/// The keys whose value is an LDAP distinguished name: the base DN and the paths under it.
pub const DN_KEYS: &[&str] = &["ldap.root_path", "sync.user_path", "sync.group_path"];

/// Checks a distinguished name (RFC 4514): comma-separated `attribute=value` parts, e.g.
/// `dc=company,dc=com` or `ou=People`. Escapes (`\,`, `\2C`) and quoted values are read as
/// such. The message names the key and the part that is wrong.
pub fn check_dn(key: &str, raw: &str) -> Result<(), String> {
    let dn = raw.trim();
    if dn.is_empty() {
        return Ok(());
    }
    let example = if key == "ldap.root_path" {
        "dc=company,dc=com"
    } else {
        "ou=People"
    };
    for rdn in split_unescaped(dn, ',') {
        for ava in split_unescaped(&rdn, '+') {
            let ava = ava.trim();
            let Some((attr, value)) = ava.split_once('=') else {
                return Err(if ava.is_empty() {
                    format!(
                        "`{key}` is not a DN: it has an empty part between commas (`{dn}`); \
                         write attribute=value parts, e.g. {example}"
                    )
                } else {
                    format!(
                        "`{key}` is not a DN: `{ava}` has no `=`; write attribute=value parts \
                         separated by commas, e.g. {example}"
                    )
                });
            };
            let attr = attr.trim();
            let name_ok = attr.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && attr.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            let oid_ok = !attr.is_empty()
                && attr
                    .split('.')
                    .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if !name_ok && !oid_ok {
                return Err(format!(
                    "`{key}` is not a DN: `{attr}` in `{ava}` is not an attribute name; \
                     write attribute=value parts, e.g. {example}"
                ));
            }
            if value.trim().is_empty() {
                return Err(format!(
                    "`{key}` is not a DN: `{ava}` has no value after `=`, e.g. {example}"
                ));
            }
        }
    }
    Ok(())
}

/// `s` cut at each `sep` that is neither escaped with a backslash nor inside double quotes;
/// an unterminated quote or a trailing backslash keeps the rest in the last part.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut escaped = false;
    let mut quoted = false;
    for c in s.chars() {
        let last = parts.len() - 1;
        if escaped {
            escaped = false;
            parts[last].push(c);
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                parts[last].push(c);
            }
            '"' => {
                quoted = !quoted;
                parts[last].push(c);
            }
            c if c == sep && !quoted => parts.push(String::new()),
            c => parts[last].push(c),
        }
    }
    parts
}

/// Checks one entry of an email list (`sync.protected_emails`): a single plain email address.
/// Entries are separated by commas (`config set`) or are the items of a TOML array (the file);
/// an entry that holds another separator (`a@x.com;b@x.com`), white space, no `@`, a wildcard
/// (`*@company.com`, matched as written, so it would protect no one) or any other character
/// that is not part of a plain address is refused, naming the value.
pub(super) fn check_email_entry(key: &str, raw: &str) -> Result<String, String> {
    let e = raw.trim().to_lowercase();
    if e.contains(['*', '?', '%']) {
        return Err(format!(
            "`{key}`: `{}` is a pattern, and only plain addresses are accepted (an entry is \
             compared with each member's email as written, so a wildcard protects no one): list \
             each address, e.g. `ceo@company.com, cfo@company.com`",
            raw.trim()
        ));
    }
    let plain = e.split_once('@').is_some_and(|(local, domain)| {
        local
            .chars()
            .all(|c| c.is_alphanumeric() || ".+-_'!#$&=^`{|}~/".contains(c))
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '.' || c == '-')
    });
    if plain && crate::engine::normalize::is_valid_email(&e) {
        return Ok(e);
    }
    let hint = if e.contains([';', ' ', '\t', '\n', '|']) && e.matches('@').count() > 1 {
        " (separate several addresses with commas, e.g. `a@company.com, b@company.com`)"
    } else {
        ""
    };
    Err(format!(
        "`{key}`: `{}` is not an email address, so it would protect no one{hint}",
        raw.trim()
    ))
}

/// 1-based line and column of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Where a parse error is: "line L, column C" (and the key when given), never the text.
pub fn location(text: &str, span: Option<Range<usize>>, key: Option<&str>) -> String {
    let mut out = match span {
        Some(s) => {
            let (line, col) = line_column(text, s.start);
            format!("line {line}, column {col}")
        }
        None => "unknown position".to_string(),
    };
    if let Some(k) = key.filter(|k| !k.is_empty()) {
        out.push_str(&format!(", key `{k}`"));
    }
    out
}

/// Best effort: the dotted key whose value or name is on the line holding `offset`.
pub fn key_at(text: &str, offset: usize) -> Option<String> {
    // an error at the very end (a truncated file) is about the last line
    let offset = offset.min(text.len().saturating_sub(1));
    let mut section = String::new();
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.starts_with('[') && trimmed.ends_with(']') {
            section = trimmed.trim_matches(['[', ']']).trim().to_string();
        }
        if offset >= pos && offset < pos + line.len() {
            if let Some((k, _)) = trimmed.split_once('=') {
                let k = k.trim();
                return Some(if section.is_empty() {
                    k.to_string()
                } else {
                    format!("{section}.{k}")
                });
            }
            return (!section.is_empty()).then_some(section);
        }
        pos += line.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_of_other_schemes_or_with_credentials_are_refused() {
        for bad in [
            "ftp://x",
            "mailto:a@b.com",
            "file:///etc/passwd",
            "ldap://host",
            "ftp:x",
        ] {
            let e = check_url("server.url", bad).unwrap_err();
            assert!(e.contains("http:// or https://"), "{bad}: {e}");
        }
        for bad in [
            "https://admin:hunter2@vault.example.com",
            "admin:hunter2@vault.example.com",
            "http://admin@127.0.0.1:8080",
        ] {
            let e = check_url("server.url", bad).unwrap_err();
            assert!(e.contains("user name or password"), "{bad}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
        for bad in ["http://", "https://", "http://:8080"] {
            assert!(check_url("server.url", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn http_to_another_host_warns_and_bare_hosts_get_https() {
        let ok = |raw: &str| check_url("server.url", raw).unwrap();
        assert_eq!(ok(" vault.example.com/ ").url, "https://vault.example.com");
        assert_eq!(ok("localhost:8080").url, "https://localhost:8080");
        assert_eq!(ok("http://x:8080//").url, "http://x:8080");
        assert!(ok("http://x:8080").warning.unwrap().contains("unencrypted"));
        for local in [
            "http://127.0.0.1:8080",
            "http://localhost",
            "http://[::1]:80",
        ] {
            assert_eq!(ok(local).warning, None, "{local}");
        }
        assert_eq!(ok("https://vault.example.com").warning, None);
    }

    #[test]
    fn ranges_name_the_key_and_the_bounds() {
        let port = IntRange::new(1, 65535);
        assert_eq!(check_int("ldap.port", port, "389"), Ok(389));
        for bad in ["0", "-1", "70000", "abc", ""] {
            let e = check_int("ldap.port", port, bad).unwrap_err();
            assert!(
                e.contains("ldap.port") && e.contains("from 1 to 65535"),
                "{e}"
            );
        }
        let interval = IntRange::off_or(5, 10_080);
        assert!(check_int("sync.interval_minutes", interval, "0").is_ok());
        assert!(check_int("sync.interval_minutes", interval, "1").is_err());
    }

    #[test]
    fn ldap_host_names_are_bare() {
        assert_eq!(
            check_host("ldap.hostname", " ad.example.com ").unwrap(),
            "ad.example.com"
        );
        assert!(check_host("ldap.hostname", "[::1]").is_ok());
        assert!(check_host("ldap.hostname", "127.0.0.1").is_ok());
        for bad in ["ldaps://ad", "ad:389", "::1", "a b", "u:pw@ad", "ad/x", ""] {
            assert!(check_host("ldap.hostname", bad).is_err(), "{bad}");
        }
    }

    /// Issue 23 item 8: entries that protect no one are refused, naming the value.
    #[test]
    fn email_entries_are_single_addresses() {
        let key = "sync.protected_emails";
        assert_eq!(
            check_email_entry(key, " CEO@Company.com ").unwrap(),
            "ceo@company.com"
        );
        let e = check_email_entry(key, "a@x.com;b@x.com").unwrap_err();
        assert!(
            e.contains("`a@x.com;b@x.com`") && e.contains("commas") && e.contains(key),
            "{e}"
        );
        for bad in [
            "a@x.com b@x.com",
            "boss",
            "boss@",
            "@x.com",
            "a b@x.com",
            "a@x",
        ] {
            assert!(check_email_entry(key, bad).is_err(), "{bad}");
        }
    }

    /// Issue 26 item 10: `*@company.com` was accepted, and protected no one.
    #[test]
    fn email_entries_are_plain_addresses_not_patterns() {
        let key = "sync.protected_emails";
        for pattern in [
            "*@company.com",
            "ceo*@company.com",
            "ce?@company.com",
            "%@company.com",
        ] {
            let e = check_email_entry(key, pattern).unwrap_err();
            assert!(
                e.contains(&format!("`{pattern}`"))
                    && e.contains("plain addresses")
                    && e.contains(key),
                "{e}"
            );
        }
        for bad in [
            "<ceo@company.com>",
            "\"ceo\"@company.com",
            "ceo@company.com,",
            "ceo@[10.0.0.1]",
            "ceo(x)@company.com",
            "ceo@company_com.com",
        ] {
            let e = check_email_entry(key, bad).unwrap_err();
            assert!(e.contains(&format!("`{bad}`")), "{e}");
        }
        for good in [
            "first.last+tag@company.com",
            "o'brien@sub.company.co.uk",
            "jörg@company.de",
        ] {
            assert!(check_email_entry(key, good).is_ok(), "{good}");
        }
    }

    /// Issue 28 item 5: a Root Path of `abc` was accepted.
    #[test]
    fn dns_are_attribute_value_parts() {
        for good in [
            "dc=example,dc=com",
            "OU=Sales, DC=corp, DC=example",
            "ou=People",
            "cn=Smith\\, John,ou=People",
            "cn=\"a,b\",dc=x",
            "cn=a+uid=b,dc=x",
            "2.5.4.3=x,dc=y",
            "",
        ] {
            assert_eq!(check_dn("ldap.root_path", good), Ok(()), "{good}");
        }
        let e = check_dn("ldap.root_path", "abc").unwrap_err();
        assert!(
            e.contains("`abc` has no `=`") && e.contains("dc=company,dc=com"),
            "{e}"
        );
        let e = check_dn("sync.user_path", "ou=People,").unwrap_err();
        assert!(e.contains("empty part"), "{e}");
        let e = check_dn("sync.user_path", "ou=").unwrap_err();
        assert!(e.contains("no value"), "{e}");
        let e = check_dn("sync.group_path", "o u=x").unwrap_err();
        assert!(e.contains("not an attribute name"), "{e}");
    }

    #[test]
    fn locations_are_lines_and_columns() {
        let t = "a = 1\n[x]\nbé = \"q\n";
        assert_eq!(line_column(t, 0), (1, 1));
        assert_eq!(line_column(t, 10), (3, 1));
        assert_eq!(line_column(t, 16), (3, 6));
        assert_eq!(key_at(t, 16).as_deref(), Some("x.bé"));
        let truncated = "[ldap]\nhostname = \"ad.exa";
        assert_eq!(
            key_at(truncated, truncated.len()).as_deref(),
            Some("ldap.hostname")
        );
        assert_eq!(
            location(t, Some(16..17), Some("x.b")),
            "line 3, column 6, key `x.b`"
        );
    }
}
