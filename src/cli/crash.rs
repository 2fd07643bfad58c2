//! The panic hook: no panic reaches the user as Rust's "thread 'main' panicked" text. The hook
//! logs the panic and keeps the first one; the CLI, after catching the unwind (or at the end of
//! a command, when another thread panicked), prints one line (or the JSON failure), records the
//! run that was going as failed, and exits 1.

use std::path::PathBuf;
use std::sync::Mutex;

/// What the first panic of this process left.
#[derive(Debug, Clone)]
pub(super) struct PanicReport {
    /// "internal error (a bug): … at file:line", secrets redacted.
    pub message: String,
    /// The run that was going (data directory and run id).
    pub run: Option<(PathBuf, i64)>,
}

static REPORT: Mutex<Option<PanicReport>> = Mutex::new(None);

/// Installs the hook (replacing Rust's default one, which prints to stderr).
pub(super) fn install() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current()
            .name()
            .map(|n| format!(" (thread {n})"))
            .unwrap_or_default();
        let message = crate::logging::redact(&format!(
            "internal error (a bug in Directory Connector): {payload}{place}{thread}"
        ));
        tracing::error!(target: crate::logging::FILE_ONLY, "{message}");
        let report = PanicReport {
            message,
            run: crate::store::CurrentRun::get(),
        };
        if let Ok(mut r) = REPORT.lock()
            && r.is_none()
        {
            *r = Some(report);
        }
    }));
}

/// The first panic's report, if a panic happened.
pub(super) fn report() -> Option<PanicReport> {
    REPORT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// Records the run that the panic stopped as failed (a run already finished is left alone).
/// Returns the message to show, with a note when the run could not be recorded.
pub(super) fn record(report: &PanicReport) -> String {
    let Some((dir, id)) = &report.run else {
        return report.message.clone();
    };
    // a second panic here must not hide the first
    let recorded = std::panic::catch_unwind(|| {
        crate::store::Store::open(dir).and_then(|s| s.fail_unfinished_run(*id, &report.message))
    });
    match recorded {
        Ok(Ok(true)) => format!(
            "{}; the sync was recorded as failed in `history` with what it had applied",
            report.message
        ),
        Ok(Ok(false)) => report.message.clone(),
        Ok(Err(e)) => {
            tracing::error!("recording the run stopped by the panic failed: {e:#}");
            format!(
                "{}; the run could not be recorded ({e:#}); the next sync closes it",
                report.message
            )
        }
        Err(_) => report.message.clone(),
    }
}
