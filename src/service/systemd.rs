//! systemd notifications (`Type=notify`): READY=1 once the service is set up, STATUS= with the
//! last outcome, WATCHDOG=1 at half of `WATCHDOG_USEC`, STOPPING=1 on the way out. Nothing is
//! sent when `NOTIFY_SOCKET` is not set, and outside Unix.

#[cfg(unix)]
fn send(state: &[sd_notify::NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!("sending a notification to systemd (NOTIFY_SOCKET) failed: {e}");
    }
}

/// READY=1.
pub fn ready() {
    #[cfg(unix)]
    send(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("started; first run in progress"),
    ]);
}

/// STATUS=… (one line).
pub fn status(line: &str) {
    #[cfg(unix)]
    {
        let line: String = line
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        send(&[sd_notify::NotifyState::Status(&line)]);
    }
    #[cfg(not(unix))]
    let _ = line;
}

/// STOPPING=1.
pub fn stopping() {
    #[cfg(unix)]
    send(&[sd_notify::NotifyState::Stopping]);
}

/// When systemd watches this process (`WatchdogSec=`), sends WATCHDOG=1 at half of the interval
/// until stopped.
pub fn spawn_watchdog(stop: super::StopHandle) -> Option<tokio::task::JoinHandle<()>> {
    #[cfg(unix)]
    {
        let every = sd_notify::watchdog_enabled()? / 2;
        std::env::var_os("NOTIFY_SOCKET")?;
        Some(tokio::spawn(async move {
            loop {
                send(&[sd_notify::NotifyState::Watchdog]);
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = stop.stopped() => return,
                }
            }
        }))
    }
    #[cfg(not(unix))]
    {
        let _ = stop;
        None
    }
}
