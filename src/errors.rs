//! Error kinds that decide the CLI exit code: configuration problems (2), refusals by the
//! mass-removal guard (3); everything else is a failure (1).

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

/// Exit code for an error: 2 configuration, 3 refused, 1 anything else.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if err.downcast_ref::<ConfigError>().is_some() {
        2
    } else if err.downcast_ref::<Refused>().is_some() {
        3
    } else {
        1
    }
}

/// The full message of an error with its causes, `outer: inner: innermost`.
pub fn full_message(err: &anyhow::Error) -> String {
    format!("{err:#}")
}
