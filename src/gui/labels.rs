//! The Settings form in words: each config key's label (the official connector's wording where
//! it has one) and the section it belongs to. The key and its help are the hover text.

/// (key, section, label)
const LABELS: &[(&str, &str, &str)] = &[
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
    (
        "sync.interval_minutes",
        "Sync options",
        "Interval (minutes)",
    ),
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
    ("service.schedule", "Service", "Schedule (cron expression)"),
    (
        "service.jitter_seconds",
        "Service",
        "Random delay before each run (seconds)",
    ),
    (
        "service.metrics_listen",
        "Service",
        "Health and metrics address",
    ),
    ("notify.webhook_url", "Alerts", "Webhook URL"),
    ("notify.webhook_format", "Alerts", "Webhook format"),
    (
        "notify.stale_after_minutes",
        "Alerts",
        "Alert when no sync has succeeded for (minutes)",
    ),
    ("notify.smtp_url", "Alerts", "SMTP server"),
    ("notify.smtp_password", "Alerts", "SMTP password"),
    ("notify.email_from", "Alerts", "Alert email from"),
    ("notify.email_to", "Alerts", "Alert email to"),
];

/// Sections in the order the form shows them.
pub(super) const SECTIONS: &[&str] = &[
    "Connection",
    "TLS",
    "Account",
    "Active Directory",
    "Users",
    "Groups",
    "Sync options",
    "Safety",
    "Service",
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

/// The hover text: the config key and its help.
pub(super) fn hover(key: &str, help: &str) -> String {
    format!("{key}: {help}")
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
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_form_key_has_a_label_and_a_known_section() {
        for (key, _, _) in crate::config::KEYS
            .iter()
            .filter(|(k, _, _)| !k.starts_with("server."))
        {
            assert_ne!(super::label(key), *key, "{key} has no label");
            assert!(super::SECTIONS.contains(&super::section(key)) || *key == "directory.type");
        }
    }
}
