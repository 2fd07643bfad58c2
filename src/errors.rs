//! Error kinds that decide the CLI exit code: configuration problems (2), refusals by the
//! mass-removal guard (3), a run stopped by a signal (130 SIGINT, 143 SIGTERM); everything else
//! is a failure (1).

/// The failures that decide an exit code, a run's outcome and how the front ends word it. Any
/// other error is a plain failure (exit 1). Found through `anyhow`'s context layers with
/// `err.downcast_ref::<Failure>()`.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A configuration or usage problem: the admin has to change a setting or the command line
    /// (exit 2).
    #[error("{0}")]
    Config(String),
    /// A guard refused to push: too many removals, a short answer, an empty directory over a
    /// full baseline (exit 3).
    #[error("{0}")]
    Refused(String),
    /// Stopped by a signal or the window's stop at a safe point; the message says what was
    /// applied (exit 130, or 143 for SIGTERM).
    #[error("{0}")]
    Interrupted(String),
    /// Stopped between two stages of a sync; the run's record turns it into an
    /// [`Failure::Interrupted`] that says what was applied.
    #[error("stopped")]
    Stopped,
    /// The server refused two requests of the run for coming too fast (HTTP 429): the run stops
    /// before more refusals get the IP address blocked (exit 1).
    #[error("{0}")]
    RateLimited(String),
    /// The server (the cloud's edge) refused this IP address: a 403 that is not the API's JSON
    /// (exit 1).
    #[error("{0}")]
    Blocked(String),
}

/// Shorthand for `Err(Failure::Config(..).into())`.
pub fn config_err<T>(msg: impl Into<String>) -> anyhow::Result<T> {
    Err(Failure::Config(msg.into()).into())
}

/// Exit code of a run stopped by SIGINT (128 + 2, as shells report it).
pub const EXIT_SIGINT: i32 = 130;
/// Exit code of a run stopped by SIGTERM (128 + 15).
pub const EXIT_SIGTERM: i32 = 143;

/// Exit code for an error: 2 configuration, 3 refused, 130 interrupted, 1 anything else.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    match err.downcast_ref::<Failure>() {
        Some(Failure::Config(_)) => 2,
        Some(Failure::Refused(_)) => 3,
        Some(Failure::Interrupted(_) | Failure::Stopped) => EXIT_SIGINT,
        Some(Failure::RateLimited(_) | Failure::Blocked(_)) | None => 1,
    }
}

/// Whether an error comes from an SQLite file that is damaged or is no database at all.
pub fn is_corrupt_database(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        matches!(
            e.downcast_ref::<rusqlite::Error>(),
            Some(rusqlite::Error::SqliteFailure(f, _))
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
                )
        )
    })
}

/// The full message of an error with its causes, `outer: inner: innermost`.
pub fn full_message(err: &anyhow::Error) -> String {
    format!("{err:#}")
}

/// The cause an error's chain shows, as far as a front end words it differently (the window
/// names the field to check). Found by [`cause`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Nothing listens at the host and port: the connection was refused.
    ConnectionRefused,
    /// The host name does not resolve.
    UnknownHost,
    /// The server did not answer in time.
    TimedOut,
    /// The server's certificate was not accepted (TLS).
    Tls,
    /// The Bitwarden server refused the organization API key (`invalid_client`).
    InvalidApiKey,
    /// The directory refused the bind's username or password (LDAP result 49).
    DirectoryCredentials,
    /// Anything else.
    Other,
}

/// Which server an error concerns, as its chain says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The directory (LDAP, or a cloud directory's API).
    Directory,
    /// The Bitwarden server.
    Bitwarden,
    Unknown,
}

/// The cause of an error: an I/O error's kind in its chain, else the words of its messages.
pub fn cause(err: &anyhow::Error) -> Cause {
    for e in err.chain() {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return Cause::ConnectionRefused,
                std::io::ErrorKind::TimedOut => return Cause::TimedOut,
                _ => {}
            }
        }
    }
    let all = format!("{err:#}").to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| all.contains(w));
    if has(&["invalid_client"]) {
        Cause::InvalidApiKey
    } else if has(&["connection refused"]) {
        Cause::ConnectionRefused
    } else if has(&["invalid credentials", "rc=49"]) {
        Cause::DirectoryCredentials
    } else if has(&[
        "failed to lookup address",
        "name or service not known",
        "dns error",
        "no such host",
    ]) {
        Cause::UnknownHost
    } else if has(&["certificate", "invalidcertificate", "unknownissuer"]) {
        Cause::Tls
    } else if has(&["timed out", "timeout"]) {
        Cause::TimedOut
    } else {
        Cause::Other
    }
}

/// Which server an error's chain names: the directory's (LDAP, a directory read) or
/// Bitwarden's (its token, import or read API).
pub fn side(err: &anyhow::Error) -> Side {
    let all = format!("{err:#}").to_lowercase();
    let directory = ["ldap", "reading the directory", "directory server", "bind"]
        .iter()
        .any(|w| all.contains(w));
    let bitwarden = ["bitwarden", "token", "organization", "import"]
        .iter()
        .any(|w| all.contains(w));
    match (directory, bitwarden) {
        (true, _) => Side::Directory,
        (false, true) => Side::Bitwarden,
        (false, false) => Side::Unknown,
    }
}

/// The messages of an error's chain, outermost first, each cause said once: a message that
/// an earlier one already contains (a context that quotes its source, or the same I/O error
/// wrapped twice) is left out.
pub fn causes(err: &anyhow::Error) -> Vec<String> {
    let mut kept: Vec<String> = Vec::new();
    for e in err.chain() {
        let msg = e.to_string();
        let msg = msg.trim();
        if msg.is_empty() || kept.iter().any(|k| k.contains(msg)) {
            continue;
        }
        kept.push(dedupe_repeats(msg));
    }
    kept
}

/// "a: b: b" says `b` once ("Connection refused (os error 111): Connection refused (os error
/// 111)" is one cause).
fn dedupe_repeats(msg: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in msg.split(": ") {
        if parts.last() != Some(&p) {
            parts.push(p);
        }
    }
    parts.join(": ")
}
