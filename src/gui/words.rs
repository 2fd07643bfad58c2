//! The window's own words for what the core says. An error becomes one sentence of what
//! happened, a hint naming the field (or the button) to check, and the full chain of causes,
//! each said once, folded under "Details". Any other text from the core (a guard's refusal, a
//! plan's warnings, a run's error in the history, the import's summary) has its CLI commands,
//! `--flags` and config keys replaced by the window's buttons, field labels and tabs.

use crate::errors::{Cause, Failure, Side};

/// An error as the window shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Said {
    /// What happened, one sentence.
    pub what: String,
    /// Which field or button to check.
    pub hint: Option<String>,
    /// Every cause, each once ("Details").
    pub details: Option<String>,
}

/// What the CLI's commands are in the window (the command's first word, without
/// `directory-connector`).
fn command_in_window(cmd: &str) -> Option<String> {
    let mut words = cmd.split_whitespace();
    let first = words.next()?;
    let first = if first == "directory-connector" {
        words.next()?
    } else {
        first
    };
    let rest: Vec<&str> = words.collect();
    Some(match first {
        "sync" if rest.contains(&"--allow-mass-removal") => {
            "Sync anyway (this once) on the Dashboard".to_string()
        }
        "sync" => "Sync Now on the Dashboard".to_string(),
        "test" | "drift" => "Test Now on the Dashboard".to_string(),
        "login" => "Log In (with the organization API key)".to_string(),
        "logout" => "Log Out on the More tab".to_string(),
        "clear-cache" => "Clear Sync Cache on the More tab".to_string(),
        "import-bwdc" => "Import from Bitwarden Directory Connector on the More tab".to_string(),
        "history" => "the History table on the Dashboard".to_string(),
        "config" => match rest.as_slice() {
            ["set" | "get", key, ..] if is_config_key(key) => {
                format!("\u{201c}{}\u{201d} in Settings", super::labels::label(key))
            }
            _ => "the Settings tab".to_string(),
        },
        "service" => "the service (see the README)".to_string(),
        _ => return None,
    })
}

fn is_config_key(word: &str) -> bool {
    crate::config::KEYS.iter().any(|(k, _, _)| *k == word)
}

/// A command-line flag in the window's words.
fn flag_in_window(flag: &str) -> String {
    match flag {
        "allow-mass-removal" => "Sync anyway (this once)".to_string(),
        "force" => "\u{201c}Replace this connector's configuration\u{201d}".to_string(),
        "dry-run" => "Preview".to_string(),
        "data-dir" => "another data directory".to_string(),
        "json" => "JSON output".to_string(),
        other => other.replace('-', " "),
    }
}

/// Whole phrases of the CLI's advice and what the window says instead.
const PHRASES: &[(&str, &str)] = &[
    (
        "run `sync --allow-mass-removal` once",
        "click Sync anyway (this once) on the Dashboard",
    ),
    (
        "allow it once with --allow-mass-removal",
        "allow it once with Sync anyway (this once) on the Dashboard",
    ),
    (
        "--allow-mass-removal allows it once",
        "Sync anyway (this once) on the Dashboard allows it once",
    ),
    (
        "run `directory-connector login`",
        "log in with the organization API key",
    ),
    ("(prompts)", ""),
];

/// Text from the core in the window's words: no CLI command, `--flag`, backtick-quoted
/// command or config key is left (keys become their labels, commands their buttons).
pub fn text(message: &str) -> String {
    let mut out = message.to_string();
    for (cli, window) in PHRASES {
        out = out.replace(cli, window);
    }
    // backtick-quoted spans: a command becomes its button, anything else a quoted value
    let mut done = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(start) = rest.find('`') {
        let Some(len) = rest[start + 1..].find('`') else {
            break;
        };
        done.push_str(&rest[..start]);
        let inner = &rest[start + 1..start + 1 + len];
        match command_in_window(inner) {
            Some(words) => done.push_str(&words),
            None if is_config_key(inner) => {
                done.push_str(&format!("\u{201c}{}\u{201d}", super::labels::label(inner)));
            }
            None => done.push_str(&format!("\u{201c}{inner}\u{201d}")),
        }
        rest = &rest[start + 2 + len..];
    }
    // a lone backtick is no quote
    done.push_str(&rest.replace('`', "'"));
    let mut out = super::labels::in_words(&done);
    // `directory-connector COMMAND` left bare
    while let Some(at) = out.find("directory-connector ") {
        let tail = &out[at..];
        let end = tail.find([',', ';', ')', '.', '\n']).unwrap_or(tail.len());
        let words = command_in_window(&tail[..end]).unwrap_or_else(|| "this program".into());
        out.replace_range(at..at + end, &words);
    }
    // `--flag` left bare
    while let Some(at) = out.find("--") {
        let tail = &out[at + 2..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .unwrap_or(tail.len());
        let words = flag_in_window(&tail[..end]);
        out.replace_range(at..at + 2 + end, &words);
    }
    out
}

/// The button a job was started by.
pub fn button(job: &str) -> &str {
    match job {
        "Log in" => "Log In",
        "Test" => "Test Now",
        "Sync" => "Sync Now",
        "Clear sync cache" => "Clear Sync Cache",
        "Start sync" => "Start Sync",
        "Stop sync" => "Stop Sync",
        "Refresh" => "Reading the status",
        other => other,
    }
}

/// "300 invited, 2 removed, 1 group changed".
pub fn changes(invited: u64, (revoked, restored): (u64, u64), removed: u64, groups: u64) -> String {
    let mut lifecycle = String::new();
    if revoked > 0 {
        lifecycle.push_str(&format!("{revoked} revoked, "));
    }
    if restored > 0 {
        lifecycle.push_str(&format!("{restored} restored, "));
    }
    format!(
        "{invited} invited, {lifecycle}{removed} removed, {groups} group{} changed",
        if groups == 1 { "" } else { "s" }
    )
}

/// A message as a sentence: a capital first letter and a full stop.
pub fn sentence(s: &str) -> String {
    let s = s.trim();
    if s.is_empty() {
        return String::new();
    }
    let mut c = s.chars();
    let mut out: String = match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    };
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

/// An error in the window's words. `job` is the operation's name ([`button`] names it);
/// `ldap`: the directory is LDAP (its hint names Server Hostname and Server Port).
pub fn error(job: &str, err: &anyhow::Error, ldap: bool) -> Said {
    let directory_fields = if ldap {
        "Server Hostname and Server Port in Settings (Directory, Connection)"
    } else {
        "the directory's Connection settings in Settings"
    };
    let button = button(job);
    let details = crate::errors::causes(err);
    let details = (!details.is_empty()).then(|| text(&details.join(": ")));
    let side = if job == "Log in" {
        Side::Bitwarden
    } else {
        crate::errors::side(err)
    };
    let server = match side {
        Side::Directory => "the directory server",
        Side::Bitwarden => "the Bitwarden server",
        Side::Unknown => "the server",
    };
    let fields = match side {
        Side::Directory => format!(
            "Check {directory_fields}, and that the directory server is running."
        ),
        Side::Bitwarden => "Check Bitwarden server URL in Settings (Bitwarden server), and that the server is running.".to_string(),
        Side::Unknown => format!(
            "Check {directory_fields}, and Bitwarden server URL in Settings (Bitwarden server)."
        ),
    };
    let (what, hint) = match (err.downcast_ref::<Failure>(), crate::errors::cause(err)) {
        (Some(Failure::Refused(reason)), _) => (
            format!("{button} was refused by the guard: nothing was sent."),
            Some(sentence(&text(reason))),
        ),
        (Some(Failure::Config(reason)), _) => {
            let mut lines = reason.lines();
            let first = lines.next().unwrap_or_default().trim_end_matches(':');
            let rest: Vec<String> = lines.map(|l| sentence(&text(l))).collect();
            let mut hint = rest.join(" ");
            if !hint.is_empty() {
                hint.push(' ');
            }
            hint.push_str("Check the marked fields in Settings.");
            (
                sentence(&format!("{button} cannot start: {}", text(first))),
                Some(hint),
            )
        }
        (Some(Failure::RateLimited(_)), _) => (
            format!("{button} stopped: the Bitwarden server refused requests for coming too fast."),
            Some("Wait a few minutes before the next sync; lower Most requests a second in Settings (Request budget) if it happens again.".to_string()),
        ),
        (Some(Failure::Blocked(_)), _) => (
            format!("{button} stopped: the Bitwarden server refused this computer's address."),
            Some("Wait until the block is lifted (up to 15 minutes) before the next sync.".to_string()),
        ),
        (_, Cause::ConnectionRefused) => (
            format!("{button} could not connect to {server}: the connection was refused."),
            Some(fields),
        ),
        (_, Cause::UnknownHost) => (
            format!("{button} could not find {server}: the host name is not known."),
            Some(fields),
        ),
        (_, Cause::TimedOut) => (
            format!("{button} stopped: {server} did not answer in time."),
            Some(fields),
        ),
        (_, Cause::Tls) => (
            format!("{button} could not connect securely to {server}: its certificate was not accepted."),
            Some(match side {
                Side::Bitwarden => "Check Server CA certificates (PEM) in Settings (Bitwarden server).".to_string(),
                _ => "Check the TLS settings in Settings (Directory, TLS): Certificate CA Chain (PEM) and the encrypted connection.".to_string(),
            }),
        ),
        (_, Cause::InvalidApiKey) => (
            "The Bitwarden server refused the API key.".to_string(),
            Some(if job == "Log in" {
                "Check the API key (Client ID and Client secret): copy both again from the Admin Console, Settings > Organization info > API key.".to_string()
            } else {
                "Check the API key (Client ID and Client secret): Log Out on the More tab, then log in with the key from the Admin Console, Settings > Organization info > API key.".to_string()
            }),
        ),
        (_, Cause::DirectoryCredentials) => (
            format!("{button} could not sign in to the directory: the server refused the username or password."),
            Some("Check Username and Password in Settings (Directory, Account).".to_string()),
        ),
        _ => (
            format!("{button} failed: {}", sentence(&text(&err.to_string()))),
            None,
        ),
    };
    Said {
        what,
        hint,
        details,
    }
}

/// A run's result in the history: "Synced: 300 invited, 2 removed, 1 group changed".
pub fn run_result(r: &crate::store::RunRecord) -> String {
    let lifecycle = r
        .server
        .as_ref()
        .map_or((0, 0), |s| (s.revoked, s.restored));
    let changes = changes(r.invited, lifecycle, r.removed, r.groups_changed);
    let result = run_outcome(r, &changes);
    if r.kind == "fast lane" {
        format!("Fast lane: {result}")
    } else {
        result
    }
}

fn run_outcome(r: &crate::store::RunRecord, changes: &str) -> String {
    use crate::store::RunOutcome;
    match r.outcome {
        RunOutcome::Synced => format!("Synced: {changes}"),
        RunOutcome::Unchanged => "Unchanged: nothing to send".to_string(),
        RunOutcome::Refused => "Refused by the guard: nothing sent".to_string(),
        RunOutcome::Running => "Running".to_string(),
        RunOutcome::Failed if r.requests == 0 => "Failed: nothing sent".to_string(),
        RunOutcome::Failed => format!("Failed after {} request(s): {changes}", r.requests),
        RunOutcome::Interrupted if r.requests == 0 => "Stopped: nothing sent".to_string(),
        RunOutcome::Interrupted => {
            format!("Stopped after {} request(s): {changes}", r.requests)
        }
    }
}

/// The fast lane's line on the Dashboard ("Watching for changes every 60 s; last change
/// 18:42: 1 leaver (…)"), `None` when it is off.
pub fn lane(
    l: &crate::service::lane::LaneView,
    local_time: impl Fn(&str) -> String,
) -> Option<String> {
    let change = match (&l.last_change, &l.last_change_what) {
        (Some(t), Some(w)) => format!("; last change seen {}: {}", local_time(t), text(w)),
        _ => String::new(),
    };
    let state = match l.state.as_str() {
        "off" | "" => return None,
        "watching" => "Watching for changes".to_string(),
        "no_feed" => format!(
            "No change feed ({}): a full sync every 10 looks",
            text(&l.message)
        ),
        "stopped_by_guard" => format!("Watching stopped: {}", text(&l.message)),
        "fallen_back" => format!("Reading everything once: {}", text(&l.message)),
        _ => format!("Watching for changes failed: {}", text(&l.message)),
    };
    let detail = match l.state.as_str() {
        "watching" => l
            .message
            .strip_prefix("watching the directory's change feed")
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .map(|m| format!(" ({m})"))
            .unwrap_or_default(),
        _ => String::new(),
    };
    Some(format!("{state}{detail}{change}"))
}

/// Members after a run, "—" when the run did not count them (it failed, was refused or
/// stopped).
pub fn members_after(r: &crate::store::RunRecord) -> String {
    use crate::store::RunOutcome;
    match r.outcome {
        RunOutcome::Synced | RunOutcome::Unchanged => r.members_after.to_string(),
        _ => "\u{2014}".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the window must never show: a `--flag`, a backtick-quoted command, the program's
    /// name before a command, a config key.
    fn cli_in(s: &str) -> Option<String> {
        if s.contains("--") || s.contains('`') || s.contains("directory-connector ") {
            return Some(s.to_string());
        }
        crate::config::KEYS
            .iter()
            .find(|(k, _, _)| s.contains(k))
            .map(|(k, _, _)| format!("{k} in {s}"))
    }

    #[test]
    fn the_clis_advice_becomes_the_windows_buttons_and_labels() {
        for (cli, window) in [
            (
                "refusing to remove 3 members (more than sync.max_removals = 1); if the changes \
                 are intended, run `sync --allow-mass-removal` once",
                "click Sync anyway (this once) on the Dashboard",
            ),
            (
                "not set: run `config set ldap.password` (prompts) or set it to env:NAME",
                "\u{201c}Password\u{201d} in Settings",
            ),
            (
                "Use --force to replace its configuration, --dry-run to see the result, or \
                 --data-dir for another directory",
                "Preview",
            ),
            (
                "Next steps: 1. directory-connector import-bwdc (without --dry-run) to import",
                "Import from Bitwarden Directory Connector",
            ),
            (
                "the database is damaged. Run `directory-connector clear-cache`: it moves it",
                "Clear Sync Cache on the More tab",
            ),
            (
                "`ldap.port` must be a number",
                "\u{201c}Server Port\u{201d}",
            ),
        ] {
            let said = text(cli);
            assert_eq!(cli_in(&said), None, "{cli} -> {said}");
            assert!(said.contains(window), "{cli} -> {said}");
        }
    }

    #[test]
    fn a_refused_connection_names_the_fields_and_says_its_cause_once() {
        let io = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        );
        let e = anyhow::Error::new(io)
            .context("I/O error: Connection refused (os error 111)")
            .context("connecting to ldap://127.0.0.1:1")
            .context("reading the directory");
        let said = error("Test", &e, true);
        assert_eq!(
            said.what,
            "Test Now could not connect to the directory server: the connection was refused."
        );
        let hint = said.hint.unwrap_or_default();
        assert!(hint.contains("Server Hostname and Server Port"), "{hint}");
        let details = said.details.unwrap_or_default();
        assert_eq!(
            details.matches("Connection refused").count(),
            1,
            "{details}"
        );
        // the Bitwarden server's, at login
        let e = anyhow::anyhow!("login failed: HTTP 400: invalid_client");
        let said = error("Log in", &e, true);
        assert_eq!(said.what, "The Bitwarden server refused the API key.");
        assert!(said.hint.unwrap_or_default().contains("Client ID"));
    }

    #[test]
    fn the_history_says_what_a_run_did() {
        let mut r = crate::store::RunRecord::new(1, "sync");
        r.outcome = crate::store::RunOutcome::Synced;
        (r.invited, r.removed, r.groups_changed, r.members_after) = (300, 2, 1, 298);
        assert_eq!(
            run_result(&r),
            "Synced: 300 invited, 2 removed, 1 group changed"
        );
        assert_eq!(members_after(&r), "298");
        r.outcome = crate::store::RunOutcome::Failed;
        assert_eq!(run_result(&r), "Failed: nothing sent");
        assert_eq!(members_after(&r), "\u{2014}");
    }
}
