//! The Settings form in words: each config key's label (the official connector's wording where
//! it has one) and the section it belongs to. The key's help, in the form's words, is the hover
//! text.

/// (key, section, label)
const LABELS: &[(&str, &str, &str)] = &[
    // the Bitwarden server
    ("server.url", "Server", "Bitwarden server URL"),
    ("server.ca_file", "Server", "Server CA certificates (PEM)"),
    ("server.api_url", "Advanced", "Custom API URL"),
    ("server.identity_url", "Advanced", "Custom identity URL"),
    ("server.rate_limits", "Request budget", "Count requests"),
    (
        "server.max_requests_per_second",
        "Request budget",
        "Most requests a second",
    ),
    (
        "server.max_requests_per_minute",
        "Request budget",
        "Most requests a minute",
    ),
    ("directory.type", "Directory", "Type"),
    // LDAP
    ("ldap.hostname", "Connection", "Server Hostname"),
    ("ldap.port", "Connection", "Server Port"),
    ("ldap.root_path", "Connection", "Root Path"),
    ("ldap.ad", "Connection", "This server uses Active Directory"),
    (
        "ldap.paged_search",
        "Connection",
        "This server pages search results",
    ),
    ("ldap.page_size", "Connection", "Page size"),
    ("ldap.timeout_seconds", "Connection", "Timeout (seconds)"),
    (
        "ldap.encryption",
        "TLS",
        "This server uses an encrypted connection",
    ),
    ("ldap.ca_file", "TLS", "Certificate CA Chain (PEM)"),
    ("ldap.client_cert_file", "TLS", "Certificate (PEM)"),
    (
        "ldap.client_key_file",
        "TLS",
        "Certificate Private Key (PEM)",
    ),
    (
        "ldap.skip_cert_verification",
        "TLS",
        "Do not verify server certificates (not recommended)",
    ),
    ("ldap.username", "Account", "Username"),
    ("ldap.password", "Account", "Password"),
    (
        "ldap.deleted_objects",
        "Active Directory",
        "Remove deleted users",
    ),
    (
        "ldap.in_chain_membership",
        "Active Directory",
        "Resolve nested groups on the server",
    ),
    (
        "ldap.member_range_size",
        "Active Directory",
        "Members per request",
    ),
    // Entra ID
    ("entra.cloud", "Connection", "Identity Authority"),
    ("entra.tenant", "Connection", "Tenant"),
    ("entra.application_id", "Account", "Application Id"),
    ("entra.key", "Account", "Secret Key"),
    ("entra.include_guests", "Users", "Sync guest accounts"),
    ("entra.login_url", "Advanced", "Login URL"),
    ("entra.graph_url", "Advanced", "Graph URL"),
    (
        "entra.max_retry_after_seconds",
        "Advanced",
        "Longest throttling wait (seconds)",
    ),
    // Okta
    ("okta.org_url", "Connection", "Organization URL"),
    ("okta.token", "Account", "Token"),
    (
        "okta.rate_limit_reserve_percent",
        "Advanced",
        "Rate limit reserve (%)",
    ),
    // OneLogin
    ("onelogin.region", "Connection", "Region"),
    ("onelogin.client_id", "Account", "Client ID"),
    ("onelogin.client_secret", "Account", "Client Secret"),
    ("onelogin.api_url", "Advanced", "API URL"),
    (
        "onelogin.rate_limit_reserve_percent",
        "Advanced",
        "Rate limit reserve (%)",
    ),
    // Google
    ("google.domain", "Connection", "Domain"),
    ("google.customer", "Connection", "Customer Id"),
    ("google.admin_user", "Account", "Admin User"),
    ("google.key", "Account", "JSON Key File"),
    ("google.api_url", "Advanced", "Admin SDK URL"),
    ("google.token_url", "Advanced", "Token URL"),
    // sync
    ("sync.users", "Users", "Sync users"),
    ("sync.user_filter", "Users", "User Filter"),
    ("sync.user_path", "Users", "User Path"),
    ("sync.user_object_class", "Users", "User Object Class"),
    ("sync.user_email_attribute", "Users", "User Email Attribute"),
    (
        "sync.use_email_prefix_suffix",
        "Users",
        "If a user has no email address, combine a username prefix with a suffix value to form an email",
    ),
    (
        "sync.email_prefix_attribute",
        "Users",
        "Email Prefix Attribute",
    ),
    ("sync.email_suffix", "Users", "Email Suffix"),
    ("sync.groups", "Groups", "Sync groups"),
    ("sync.group_filter", "Groups", "Group Filter"),
    ("sync.group_path", "Groups", "Group Path"),
    ("sync.group_object_class", "Groups", "Group Object Class"),
    (
        "sync.group_name_attribute",
        "Groups",
        "Group Name Attribute",
    ),
    ("sync.member_attribute", "Groups", "Member Attribute"),
    ("sync.interval_minutes", "Schedule", "Interval (minutes)"),
    (
        "sync.remove_disabled",
        "Sync options",
        "Remove disabled users during sync",
    ),
    (
        "sync.remove_missing_users",
        "Sync options",
        "Remove users the directory no longer returns",
    ),
    (
        "sync.invite_users_after_provisioning",
        "Sync options",
        "Automatically send email invitations",
    ),
    (
        "sync.large_import",
        "Sync options",
        "More than 2000 users or groups are expected to sync.",
    ),
    (
        "sync.overwrite_existing",
        "Sync options",
        "Remove and re-add organization users during the next sync (For debugging purposes)",
    ),
    (
        "sync.remove_revoked_after_days",
        "Sync options",
        "Remove revoked members after (days)",
    ),
    (
        "sync.watch_seconds",
        "Sync options",
        "Watch for changes every (seconds, 0: off)",
    ),
    (
        "sync.watch_joiners",
        "Sync options",
        "Invite joiners as soon as they are seen",
    ),
    ("sync.max_removals", "Safety", "Most removals per sync"),
    (
        "sync.max_removal_percent",
        "Safety",
        "Most removals per sync (% of members)",
    ),
    (
        "sync.max_group_removal_percent",
        "Safety",
        "Most members taken out of groups (%)",
    ),
    ("sync.protected_emails", "Safety", "Protected emails"),
    (
        "sync.group_resend_hours",
        "Safety",
        "Send groups again after (hours, servers without a read API)",
    ),
    (
        "sync.reconcile_hours",
        "Safety",
        "Re-read every group from the server within (hours)",
    ),
    // the service mode (`directory-connector service`)
    (
        "service.schedule",
        "Schedule",
        "Service schedule (cron expression)",
    ),
    (
        "service.jitter_seconds",
        "Schedule",
        "Random delay before each run (seconds)",
    ),
    (
        "service.metrics_listen",
        "Schedule",
        "Health and metrics address",
    ),
    ("notify.webhook_url", "Webhook", "Webhook URL"),
    ("notify.webhook_format", "Webhook", "Webhook format"),
    (
        "notify.stale_after_minutes",
        "Alerts",
        "Alert when no sync has succeeded for (minutes)",
    ),
    ("notify.smtp_url", "Email", "SMTP server"),
    ("notify.smtp_password", "Email", "SMTP password"),
    ("notify.email_from", "Email", "Alert email from"),
    ("notify.email_to", "Email", "Alert email to"),
];

/// Sections in the order the form shows them.
pub(super) const SECTIONS: &[&str] = &[
    "Directory",
    "Server",
    "Request budget",
    "Connection",
    "TLS",
    "Account",
    "Active Directory",
    "Users",
    "Groups",
    "Sync options",
    "Safety",
    "Schedule",
    "Webhook",
    "Email",
    "Alerts",
    "Advanced",
];

/// The label of a key (the key itself when it has none).
pub(super) fn label(key: &str) -> &str {
    LABELS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, _, l)| *l)
        .unwrap_or(key)
}

/// The section of a key ("Advanced" when it has none).
pub(super) fn section(key: &str) -> &'static str {
    LABELS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, s, _)| *s)
        .unwrap_or("Advanced")
}

/// The hover text: the key's help in the form's words (the window names no config key).
pub(super) fn hover(help: &str) -> String {
    super::words::sentence(&super::words::text(help))
}

/// The words for a choice of an enum key (upstream's where it has them).
pub(super) fn option<'a>(key: &str, value: &'a str) -> &'a str {
    match (key, value) {
        ("directory.type", "ldap") => "Active Directory / LDAP",
        ("directory.type", "entra") => "Entra ID",
        ("directory.type", "google") => "G Suite (Google)",
        ("directory.type", "okta") => "Okta",
        ("directory.type", "onelogin") => "OneLogin",
        ("ldap.encryption", "none") => "No",
        ("ldap.encryption", "starttls") => "Use TLS (STARTTLS)",
        ("ldap.encryption", "ldaps") => "Use SSL (LDAPS)",
        ("entra.cloud", "public") => "Entra Id Public",
        ("entra.cloud", "government") => "Entra Id Government",
        ("onelogin.region", "us") => "US",
        ("onelogin.region", "eu") => "EU",
        ("notify.webhook_format", "json") => "JSON",
        ("notify.webhook_format", "slack") => "Slack",
        ("notify.webhook_format", "teams") => "Microsoft Teams",
        ("server.rate_limits", "cloud") => "As the Bitwarden cloud",
        ("server.rate_limits", "shared") => "One counter",
        ("server.rate_limits", "none") => "No limit",
        _ => value,
    }
}

/// A message in the form's words: each config key it names (`ldap.port`, or bare) becomes the
/// field's label in quotes.
pub(super) fn in_words(message: &str) -> String {
    let mut keys: Vec<&str> = crate::config::KEYS.iter().map(|(k, _, _)| *k).collect();
    // longest first: `sync.user_path` before a key that is its prefix
    keys.sort_by_key(|k| std::cmp::Reverse(k.len()));
    let mut out = message.to_string();
    for key in keys {
        if !out.contains(key) {
            continue;
        }
        let quoted = format!("\u{201c}{}\u{201d}", label(key));
        out = out.replace(&format!("`{key}`"), &quoted);
        out = out.replace(key, &quoted);
    }
    out
}

/// A problem shown under its field: in the form's words, and for a secret, what to do in the
/// window (type it, or give a reference) rather than a command.
pub(super) fn problem(
    key: &str,
    kind: crate::config::KeyKind,
    message: &str,
    store: &str,
) -> String {
    if kind == crate::config::KeyKind::Secret {
        if message.starts_with("not set") {
            return format!(
                "Not set: type it here (it is kept in {store}), or give env:NAME or file:PATH."
            );
        }
        if message.contains("plaintext secret") {
            return format!(
                "config.toml holds this secret in clear: type it here to move it to {store}, or \
                 give env:NAME or file:PATH."
            );
        }
    }
    let words = super::words::text(message);
    // the field's own label leading its message says nothing more
    let own = format!("\u{201c}{}\u{201d}", label(key));
    match words.strip_prefix(&own) {
        Some(rest) => {
            let rest = rest.trim_start_matches([':', ' ']);
            let mut c = rest.chars();
            c.next()
                .map_or(String::new(), |f| f.to_uppercase().chain(c).collect())
        }
        None => words,
    }
}

/// A hint for an empty field beyond its default value (what leaving it empty means).
pub(super) fn empty_means(key: &str) -> Option<&'static str> {
    Some(match key {
        "server.api_url" | "server.identity_url" => "from the server URL",
        "server.ca_file" | "ldap.ca_file" => "the system's certificates",
        "service.schedule" => "none: every Interval (minutes), e.g. 0 */2 * * *",
        "service.metrics_listen" => "off, e.g. 127.0.0.1:9464",
        "notify.webhook_url" => "off, e.g. https://hooks.slack.com/services/…",
        "notify.smtp_url" => "off, e.g. smtps://alerts@mail.company.com:465",
        "notify.email_to" => "e.g. it@company.com, ops@company.com",
        "sync.user_filter" | "sync.group_filter" => "none, e.g. (cn=Sales*)",
        "sync.user_path" => "the Root Path, e.g. ou=People",
        "sync.group_path" => "the Root Path, e.g. ou=Groups",
        "ldap.root_path" => "e.g. dc=company,dc=com",
        "ldap.hostname" => "e.g. ad.company.com",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn messages_name_the_label_not_the_key() {
        let m = super::in_words("`ldap.port` must be a whole number from 1 to 65535, not `abc`");
        assert_eq!(
            m,
            "\u{201c}Server Port\u{201d} must be a whole number from 1 to 65535, not `abc`"
        );
        let p = super::problem(
            "ldap.port",
            crate::config::KeyKind::Int(crate::config::IntRange::new(1, 65535)),
            "`ldap.port` must be a whole number from 1 to 65535, not `abc`",
            "the store",
        );
        assert_eq!(
            p,
            "Must be a whole number from 1 to 65535, not \u{201c}abc\u{201d}"
        );
        assert!(super::in_words("set sync.user_path").contains("User Path"));
    }

    #[test]
    fn every_form_key_has_a_label_and_a_known_section() {
        for (key, _, _) in crate::config::KEYS {
            assert_ne!(super::label(key), *key, "{key} has no label");
            assert!(super::SECTIONS.contains(&super::section(key)) || *key == "directory.type");
        }
    }
}
