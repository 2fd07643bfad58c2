//! Logging: `tracing` to stderr (level from `-v` or `RUST_LOG`) and to a daily-rotated file in
//! the data directory, with every known secret replaced by `[REDACTED]` before it is written.

use std::io::Write;
use std::path::Path;
use std::sync::RwLock;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remembers a secret value so that logs never show it.
pub fn register_secret(secret: &str) {
    if secret.len() < 4 {
        return; // too short to redact without mangling ordinary text
    }
    if let Ok(mut s) = SECRETS.write()
        && !s.iter().any(|x| x == secret)
    {
        s.push(secret.to_string());
    }
}

/// Replaces every registered secret in `text`.
pub fn redact(text: &str) -> String {
    let Ok(secrets) = SECRETS.read() else {
        return text.to_string();
    };
    let mut out = text.to_string();
    for s in secrets.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "[REDACTED]");
        }
    }
    out
}

/// A writer that redacts secrets from what passes through it.
pub struct Redacting<W: Write>(pub W);

impl<W: Write> Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Wraps a `MakeWriter` so every writer it makes redacts.
#[derive(Clone)]
pub struct RedactingMake<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for RedactingMake<M> {
    type Writer = Redacting<M::Writer>;
    fn make_writer(&'a self) -> Self::Writer {
        Redacting(self.0.make_writer())
    }
}

/// Target for events that go to the log file only (the CLI prints the error itself).
pub const FILE_ONLY: &str = "file_only";

/// Directory of the log files inside the data directory.
pub fn log_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("logs")
}

/// Keeps the file writer flushing until dropped.
pub type LogGuard = Option<tracing_appender::non_blocking::WorkerGuard>;

/// Sets up logging. `verbosity`: 0 warnings, 1 info, 2 debug, 3 trace (stderr); `RUST_LOG`
/// overrides. The file gets info and above (debug with `-vv`).
pub fn init(data_dir: Option<&Path>, verbosity: u8) -> LogGuard {
    let level = match verbosity {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let stderr_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{level},hyper=warn,rustls=warn,h2=warn,{FILE_ONLY}=off"
        ))
    });
    let stderr_layer = tracing_subscriber::fmt::layer()
        .with_writer(RedactingMake(std::io::stderr))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .with_filter(stderr_filter);

    let mut guard = None;
    let file_layer = data_dir.and_then(|d| {
        std::fs::create_dir_all(log_dir(d)).ok()?;
        let appender = tracing_appender::rolling::Builder::new()
            .rotation(tracing_appender::rolling::Rotation::DAILY)
            .filename_prefix("directory-connector")
            .filename_suffix("log")
            .max_log_files(7)
            .build(log_dir(d))
            .ok()?;
        let (nb, g) = tracing_appender::non_blocking(appender);
        guard = Some(g);
        let file_level = if verbosity >= 2 { "debug" } else { "info" };
        Some(
            tracing_subscriber::fmt::layer()
                .with_writer(RedactingMake(nb))
                .with_ansi(false)
                .with_filter(EnvFilter::new(format!(
                    "{file_level},hyper=warn,rustls=warn,h2=warn"
                ))),
        )
    });
    let _ = tracing_subscriber::registry()
        .with(stderr_layer)
        .with(file_layer)
        .try_init();
    guard
}

use tracing_subscriber::Layer;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_redacted() {
        register_secret("Sup3rSecret!");
        register_secret("abc"); // too short, ignored
        let mut out = Vec::new();
        {
            let mut w = Redacting(&mut out);
            write!(w, "bind with Sup3rSecret! failed; abc").unwrap();
        }
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s, "bind with [REDACTED] failed; abc");
    }
}
