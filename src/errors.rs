//! Error kinds that decide the CLI exit code: configuration problems (2), refusals by the
//! mass-removal guard (3), a run stopped by a signal (130 SIGINT, 143 SIGTERM); everything else
//! is a failure (1).

use std::fmt;

/// A configuration or usage problem: the admin has to change a setting or the command line.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Shorthand for `Err(ConfigError(..).into())`.
pub fn config_err<T>(msg: impl Into<String>) -> anyhow::Result<T> {
    Err(ConfigError(msg.into()).into())
}

/// The guard refused to push (too many removals, or an empty directory over a full cache).
#[derive(Debug)]
pub struct Refused(pub String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// The run was stopped by a signal (or the window closing) on a batch boundary.
#[derive(Debug)]
pub struct Interrupted(pub String);

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Interrupted {}

/// Exit code of a run stopped by SIGINT (128 + 2, as shells report it).
pub const EXIT_SIGINT: i32 = 130;
/// Exit code of a run stopped by SIGTERM (128 + 15).
pub const EXIT_SIGTERM: i32 = 143;

/// Exit code for an error: 2 configuration, 3 refused, 130 interrupted, 1 anything else.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if err.downcast_ref::<ConfigError>().is_some() {
        2
    } else if err.downcast_ref::<Refused>().is_some() {
        3
    } else if err.downcast_ref::<Interrupted>().is_some() {
        EXIT_SIGINT
    } else {
        1
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
