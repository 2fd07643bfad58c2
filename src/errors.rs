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
