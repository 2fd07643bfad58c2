//! `directory-connector service`: the connector as a long-running foreground process (systemd,
//! a container, a Windows service wrapper). It syncs at start and then on its schedule
//! (`service.schedule` as a cron expression, else `sync.interval_minutes`, plus up to
//! `service.jitter_seconds` of random delay), re-reading and validating the configuration before
//! every run: a bad configuration fails that run (recorded in `history`), not the service.
//!
//! The service uses the same data directory, configuration, secret store and database as the
//! CLI and the window, and holds the data directory's sync lock for as long as it runs, so a
//! CLI `sync` (or the window's polling) is refused naming the service.
//!
//! Around the runs: `/healthz` and `/metrics` on `service.metrics_listen` ([`http`]), alerts by
//! webhook and email on failures, guard refusals, recoveries and stale syncs ([`alerts`]), and
//! systemd notifications when `NOTIFY_SOCKET` is set ([`systemd`]).
//!
//! # Running it from other code
//!
//! [`run`] (blocking, its own async runtime) and [`run_async`] run the whole service until its
//! [`StopHandle`] is stopped. A stop request lets the request in flight finish (a push stops on
//! a batch boundary), records the run as `interrupted`, and then `run` returns `Ok(())`. This is
//! the entry point for a Windows Service Control Manager wrapper: create a [`StopHandle`], call
//! [`run`] on a thread, and call [`StopHandle::stop`] from the SCM's stop/shutdown control:
//!
//! ```no_run
//! use directory_connector::service::{ServiceOptions, StopHandle};
//! let stop = StopHandle::new();
//! let for_scm = stop.clone(); // call for_scm.stop() on SERVICE_CONTROL_STOP
//! let opts = ServiceOptions::new(std::path::Path::new("C:\\ProgramData\\directory-connector"));
//! let result = directory_connector::service::run(opts, stop);
//! ```
//!
//! `run` returns an error only when the service cannot start at all (the data directory is
//! locked by another sync, the metrics address cannot be bound); failures of single runs are
//! recorded and reported, never returned. A configuration file that does not parse is such a
//! failure too, at start as later: the run is recorded as failed naming the file, alerts go where
//! the last readable configuration sent them, and `/healthz` is served on the address found on
//! the file's `metrics_listen` line (else from the first run that can read the file).
//!
//! On Unix a SIGHUP does not end the service: it re-reads the configuration at once, says whether
//! the next run would fail on it, and plans the next run on its schedule.

pub mod alerts;
pub mod http;
pub mod lane;
pub mod status;
pub mod systemd;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;

use crate::config::{self, Config, Problem, schedule};
use crate::connector::{Connector, SyncOptions, SyncReport};
use crate::datadir;
use crate::progress::Progress;
use crate::secrets::SecretStore;
use crate::store::{RunOutcome, RunRecord};

pub use status::Status;

/// What the sync lock file says while the service holds it (a refused CLI sync quotes it).
pub const LOCK_HOLDER: &str = "the service `directory-connector service` is running";

/// Asks a running service to stop; cloned freely, shared between threads.
#[derive(Clone, Default)]
pub struct StopHandle(Arc<StopInner>);

#[derive(Default)]
struct StopInner {
    stopped: AtomicBool,
    notify: tokio::sync::Notify,
}

impl StopHandle {
    pub fn new() -> StopHandle {
        StopHandle::default()
    }
    /// Asks the service to stop: the request in flight finishes, the run is recorded, then the
    /// service returns.
    pub fn stop(&self) {
        self.0.stopped.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }
    pub fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::SeqCst)
    }
    /// Waits until [`StopHandle::stop`] is called (at once when it was).
    pub async fn stopped(&self) {
        loop {
            let notified = self.0.notify.notified();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }
}

/// How the service runs.
pub struct ServiceOptions {
    pub data_dir: PathBuf,
    /// The secret store (default: the platform's, as for the CLI and the window).
    pub secrets: Option<Arc<dyn SecretStore>>,
}

impl ServiceOptions {
    pub fn new(data_dir: &Path) -> ServiceOptions {
        ServiceOptions {
            data_dir: data_dir.to_path_buf(),
            secrets: None,
        }
    }
}

/// Runs the service on its own async runtime until `stop` is stopped (see the module doc).
pub fn run(opts: ServiceOptions, stop: StopHandle) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run_async(opts, stop))
}

/// The progress of a service run: stages go to the log, a stop request cancels the run.
struct RunProgress(StopHandle);

impl Progress for RunProgress {
    fn stage(&self, message: &str) {
        tracing::info!("{message}");
    }
    fn count(&self, _: u64) {}
    fn cancelled(&self) -> bool {
        self.0.is_stopped()
    }
}

/// The problems that fail a service run: those of a one-shot sync, the schedule's and the
/// service's own settings.
pub fn config_problems(conn: &Connector, cfg: &Config) -> Vec<Problem> {
    let mut p = conn.validate_for(cfg, config::Purpose::Run);
    p.extend(config::schedule_problems(cfg));
    p.extend(settings_problems(cfg));
    p
}

/// Problems of the `[service]` and `[notify]` settings (cron expression, listen address, SMTP
/// URL), each with its key.
pub fn settings_problems(cfg: &Config) -> Vec<Problem> {
    let mut p = Vec::new();
    let mut add = |key: &str, message: String| {
        p.push(Problem {
            key: key.to_string(),
            message,
        })
    };
    for (key, kind, _) in config::KEYS {
        if let config::KeyKind::Int(range) = kind
            && (key.starts_with("service.") || key.starts_with("notify."))
            && let Ok(Some(v)) = config::get_value(cfg, key)
            && let Err(e) = config::check_int(key, *range, &v)
        {
            add(key, e);
        }
    }
    if let Err(e) = schedule::Schedule::from_config(cfg) {
        add("service.schedule", e);
    }
    if let Some(listen) = &cfg.service.metrics_listen
        && let Err(e) = http::parse_listen(listen)
    {
        add("service.metrics_listen", e);
    }
    if let Some(url) = &cfg.notify.smtp_url
        && let Err(e) = alerts::parse_smtp_url(url)
    {
        add("notify.smtp_url", e);
    }
    if !cfg.notify.email_to.is_empty() && cfg.notify.smtp_url.is_none() {
        add(
            "notify.smtp_url",
            "notify.email_to is set but no mail server is: set notify.smtp_url".into(),
        );
    }
    if let Some(u) = &cfg.notify.webhook_url
        && let Err(e) = config::check_url("notify.webhook_url", u)
    {
        add("notify.webhook_url", e);
    }
    p
}

/// The configuration for a run, or a configuration error (`Failure::Config`) listing every problem.
fn run_config(conn: &Connector) -> anyhow::Result<Config> {
    let cfg = conn.config()?;
    let problems = config_problems(conn, &cfg);
    if problems.is_empty() {
        return Ok(cfg);
    }
    let lines: Vec<String> = problems
        .iter()
        .map(|p| format!("  {}: {}", p.key, p.message))
        .collect();
    Err(crate::errors::Failure::Config(format!(
        "the configuration has {} problem(s):\n{}",
        problems.len(),
        lines.join("\n")
    ))
    .into())
}

/// One finished run: its record as stored, and the report when it succeeded.
pub struct Finished {
    pub record: RunRecord,
    pub report: Option<SyncReport>,
    pub duration: std::time::Duration,
}

/// One run: checks the configuration and the login, syncs, and makes sure a run record exists
/// whatever happened (a run that fails before the sync starts is recorded here).
async fn one_run(conn: &Connector, stop: &StopHandle, fast_lane: bool) -> anyhow::Result<Finished> {
    let started = std::time::Instant::now();
    let store = conn.store()?;
    let before = store.list_runs(1)?.first().map(|r| r.id);
    let result = match run_config(conn) {
        Err(e) => Err(e),
        Ok(_) => match conn.api_key() {
            Ok(Some(_)) => {
                let progress = RunProgress(stop.clone());
                let opts = SyncOptions {
                    allow_mass_removal: false,
                    lock_held: true,
                    reconcile: false,
                    // the window shows the service's last run
                    keep_read: true,
                    fast_lane,
                };
                let (result, read) = conn.sync_keeping(opts, &progress).await;
                save_tables(&conn.data_dir, &result, read);
                result
            }
            Ok(None) => Err(crate::errors::Failure::Config(
                "not logged in: run `directory-connector login` as the service's user, or set \
                 BW_CLIENTID and BW_CLIENTSECRET in the service's environment"
                    .into(),
            )
            .into()),
            Err(e) => Err(e),
        },
    };
    let latest = store.list_runs(1)?.into_iter().next();
    let record = match latest {
        Some(r) if Some(r.id) != before => r,
        _ => {
            // the sync never started a run (configuration, login, database): record it here
            let kind = if fast_lane { "fast lane" } else { "sync" };
            let id = store.start_run(kind)?;
            let mut r = RunRecord::new(id, kind);
            r.outcome = RunOutcome::Failed;
            if let Err(e) = &result {
                r.error = Some(crate::logging::redact(&format!("{e:#}")));
            }
            store.finish_run(&r)?;
            store
                .list_runs(1)?
                .into_iter()
                .next()
                .context("reading back the recorded run")?
        }
    };
    Ok(Finished {
        record,
        report: result.ok(),
        duration: started.elapsed(),
    })
}

/// Saves the tables of a run (what it read and planned, or the plan the guard refused) for
/// the window, as the window saves its own ("As of 10:42, service run."). A failure is logged.
fn save_tables(
    data_dir: &Path,
    result: &anyhow::Result<SyncReport>,
    read: Option<crate::sync::SyncRead>,
) {
    let refused = match result {
        Err(e)
            if matches!(
                e.downcast_ref::<crate::errors::Failure>(),
                Some(crate::errors::Failure::Refused(_))
            ) =>
        {
            Some(crate::logging::redact(&format!("{e:#}")))
        }
        _ => None,
    };
    let tables = read.and_then(|read| {
        crate::sync::tables::of_sync(SERVICE_RUN, result.as_ref().ok(), read, refused)
    });
    if let Some(t) = tables
        && let Err(e) = t.save(data_dir)
    {
        tracing::warn!("{e:#}");
    }
}

/// How the window names the tables of a service run.
pub const SERVICE_RUN: &str = "service run";

/// A one-line summary of a run for the log and systemd's STATUS=.
fn summary(f: &Finished) -> String {
    let r = &f.record;
    match r.outcome {
        RunOutcome::Synced => format!(
            "synced: {} invited, {} removed, {} group(s) changed",
            r.invited, r.removed, r.groups_changed
        ),
        RunOutcome::Unchanged => "unchanged".to_string(),
        other => format!(
            "{}: {}",
            other.as_str(),
            r.error.as_deref().unwrap_or("no detail")
        ),
    }
}

/// The address of `service.metrics_listen` in a configuration file that does not parse: each
/// line is read on its own, so a syntax error elsewhere does not hide it (`None` when the file
/// cannot be read or the line is not there or is itself broken).
fn listen_in_unreadable_config(data_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(config::config_path(data_dir)).ok()?;
    let mut table = String::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[') {
            // `[service]`, `[[x]]`, `[service] # comment`
            table = header
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            continue;
        }
        let Ok(parsed) = toml::from_str::<toml::Table>(line) else {
            continue;
        };
        let value = match table.as_str() {
            "service" => parsed.get("metrics_listen"),
            "" => parsed.get("service").and_then(|s| s.get("metrics_listen")),
            _ => None,
        };
        if let Some(v) = value.and_then(toml::Value::as_str) {
            return Some(v.to_string());
        }
    }
    None
}

/// Resolves on every SIGHUP (never where there is none). While it exists, a SIGHUP does not end
/// the process.
struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    fn new() -> Hangup {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::hangup()) {
                Ok(s) => Hangup { signal: Some(s) },
                Err(e) => {
                    tracing::warn!("cannot watch SIGHUP ({e}); a SIGHUP ends the service");
                    Hangup { signal: None }
                }
            }
        }
        #[cfg(not(unix))]
        Hangup {}
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(s) = &mut self.signal
            && s.recv().await.is_some()
        {
            return;
        }
        std::future::pending::<()>().await;
    }
}

/// When the next run is due under `cfg` (the configuration as read now, `None` when it cannot
/// be read: then the last good schedule applies), told to `status` too.
fn plan_next(
    cfg: Option<&Config>,
    last_schedule: &mut schedule::Schedule,
    status: &Status,
) -> chrono::DateTime<chrono::Utc> {
    if let Some(s) = cfg.and_then(|c| schedule::Schedule::from_config(c).ok()) {
        *last_schedule = s;
    }
    let jitter = cfg.map_or(0, |c| c.service.jitter_seconds);
    let now = chrono::Utc::now();
    let next = last_schedule.next_after(now) + schedule::jitter(jitter);
    status.set_schedule(last_schedule.period(now), next);
    next
}

/// Starts the HTTP server on the configuration's address, if it names one; a failure is logged.
async fn late_server(
    cfg: Option<&Config>,
    status: &Arc<Status>,
    stop: &StopHandle,
) -> Option<http::Server> {
    let listen = cfg?.service.metrics_listen.as_deref()?;
    match http::serve(listen, status.clone(), stop.clone()).await {
        Ok(s) => {
            say(&format!("health and metrics on http://{}", s.addr));
            Some(s)
        }
        Err(e) => {
            let msg = format!("{e:#}");
            tracing::error!("{msg}");
            say(&format!("error: {msg}"));
            None
        }
    }
}

fn at(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Runs the service until `stop` is stopped (see the module doc).
#[allow(
    clippy::too_many_lines,
    reason = "the service's start-up (signals, lock, status, listener, schedule) and its main loop in order; the steps share the run's state"
)]
pub async fn run_async(opts: ServiceOptions, stop: StopHandle) -> anyhow::Result<()> {
    // first, so that a SIGHUP never ends the service
    let mut hangup = Hangup::new();
    let conn = match &opts.secrets {
        Some(s) => Connector::with_store(&opts.data_dir, s.clone())?,
        None => Connector::open(&opts.data_dir)?,
    };
    let _lock = datadir::acquire_sync_lock(&opts.data_dir, LOCK_HOLDER)
        .context("the service cannot start")?;
    let started_at = chrono::Utc::now();
    let status = Arc::new(Status::from_history(&conn.store()?)?);
    // The listener is set up once, at start (a change needs a restart). A file that does not
    // parse fails the runs, not the start: its address is looked for line by line, and when it
    // is not found the server starts with the first run that can read the file.
    let first = conn.config();
    let (listen, mut listen_later) = match &first {
        Ok(c) => (c.service.metrics_listen.clone(), false),
        Err(e) => {
            let found = listen_in_unreadable_config(&opts.data_dir);
            tracing::error!(
                "the configuration cannot be read: {}; health and metrics {}",
                crate::logging::redact(&format!("{e:#}")),
                match &found {
                    Some(l) => format!("on {l} (read from its line alone)"),
                    None => "start once it can be read".into(),
                }
            );
            let later = found.is_none();
            (found, later)
        }
    };
    let mut server = match listen {
        Some(l) => Some(http::serve(&l, status.clone(), stop.clone()).await?),
        None => None,
    };
    // the last configuration that could be read: where alerts go while the file is broken
    let mut good_cfg = first.ok();
    systemd::ready();
    let watchdog = systemd::spawn_watchdog(stop.clone());
    let mut alerts = alerts::Alerts::new(started_at);
    let mut last_schedule = schedule::Schedule::default();
    tracing::info!(
        "service started on {} (process {})",
        opts.data_dir.display(),
        std::process::id()
    );
    say(&format!(
        "service started on {}{}",
        opts.data_dir.display(),
        server
            .as_ref()
            .map(|s| format!("; health and metrics on http://{}", s.addr))
            .unwrap_or_default()
    ));
    let mut lane = lane::Lane::new();
    // the lane's doorbell: a persistent search that rings as the directory changes
    let bell = Arc::new(tokio::sync::Notify::new());
    let doorbell = tokio::spawn(lane::doorbell(
        opts.data_dir.clone(),
        opts.secrets.clone(),
        bell.clone(),
        stop.clone(),
    ));
    // the next run is the fast lane's (it leaves the schedule as it was)
    let mut fast = false;
    let mut next = chrono::Utc::now();
    'service: loop {
        if stop.is_stopped() {
            break;
        }
        let was_fast = fast;
        let finished = one_run(&conn, &stop, fast).await;
        let cfg = conn.config().ok();
        if cfg.is_some() {
            good_cfg = cfg.clone();
        }
        if listen_later && server.is_none() && good_cfg.is_some() {
            listen_later = false;
            server = late_server(good_cfg.as_ref(), &status, &stop).await;
        }
        if !fast || next <= chrono::Utc::now() {
            next = plan_next(cfg.as_ref(), &mut last_schedule, &status);
        }
        fast = false;
        match &finished {
            Ok(f) => {
                lane.after_run(&conn, good_cfg.as_ref(), &status, &mut alerts, f)
                    .await;
            }
            Err(_) if was_fast => lane.sync_not_finished(good_cfg.as_ref(), "was not recorded"),
            Err(_) => {}
        }
        match finished {
            Ok(f) => {
                let line = summary(&f);
                say(&format!(
                    "run {}: {line}; next run at {}",
                    f.record.id,
                    at(next)
                ));
                status.record(&f, conn.store().ok().as_ref());
                systemd::status(&format!("last run {line}"));
                match &good_cfg {
                    Some(cfg) => alerts.after_run(&conn, cfg, &f).await,
                    None => tracing::warn!(
                        "no alert is sent: the configuration could not be read since the service \
                         started, so where alerts go is not known"
                    ),
                }
            }
            Err(e) => {
                let msg = crate::logging::redact(&format!("{e:#}"));
                tracing::error!("the run could not be recorded: {msg}");
                say(&format!("error: the run could not be recorded: {msg}"));
                systemd::status(&format!("last run failed: {msg}"));
            }
        }
        if let Some(cfg) = &good_cfg {
            alerts.check_stale(&conn, cfg, &status).await;
        }
        // wait for the next run; a SIGHUP re-reads the configuration and plans it again
        loop {
            let wait = (next - chrono::Utc::now())
                .to_std()
                .unwrap_or(std::time::Duration::ZERO);
            let look_in = lane.next_look_in(good_cfg.as_ref());
            if good_cfg.as_ref().is_some_and(|c| c.sync.watch_seconds == 0) {
                lane.off(&conn, &status);
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => break,
                () = lane::until_look(look_in.unwrap_or_default(), &bell), if look_in.is_some() => {
                    if let Some(cfg) = good_cfg.clone()
                        && let lane::Next::SyncNow(why) =
                            lane.tick(&conn, &cfg, &status, &mut alerts).await
                    {
                        tracing::info!("fast lane: a sync now ({why})");
                        fast = true;
                        break;
                    }
                }
                () = stop.stopped() => break 'service,
                () = hangup.recv() => {
                    match conn.config() {
                        Ok(c) => {
                            let problems = config_problems(&conn, &c);
                            next = plan_next(Some(&c), &mut last_schedule, &status);
                            good_cfg = Some(c);
                            if listen_later && server.is_none() {
                                listen_later = false;
                                server = late_server(good_cfg.as_ref(), &status, &stop).await;
                            }
                            let verdict = if problems.is_empty() {
                                String::new()
                            } else {
                                let list: Vec<String> = problems
                                    .iter()
                                    .map(|p| format!("{}: {}", p.key, p.message))
                                    .collect();
                                format!(" (the run will fail: {})", list.join("; "))
                            };
                            say(&format!(
                                "SIGHUP: configuration re-read; next run at {}{verdict}",
                                at(next)
                            ));
                        }
                        Err(e) => say(&format!(
                            "SIGHUP: the configuration cannot be read ({}); the next run at {} \
                             fails unless it is fixed",
                            crate::logging::redact(&format!("{e:#}")),
                            at(next)
                        )),
                    }
                }
            }
        }
    }
    systemd::stopping();
    say("service stopped");
    doorbell.abort();
    if let Some(w) = watchdog {
        w.abort();
    }
    if let Some(s) = server {
        s.shutdown().await;
    }
    Ok(())
}

/// One line on standard error (the journal under systemd); a closed stderr is ignored.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listen_address_is_found_in_a_file_that_does_not_parse() {
        let dir = tempfile::tempdir().unwrap();
        let path = config::config_path(dir.path());
        let found = |text: &str| {
            std::fs::write(&path, text).unwrap();
            listen_in_unreadable_config(dir.path())
        };
        assert_eq!(found(""), None);
        assert_eq!(
            found(
                "[sync]\ninterval_minutes = = 5\n[service] # health\nmetrics_listen = \"127.0.0.1:9464\"\n"
            ),
            Some("127.0.0.1:9464".into())
        );
        assert_eq!(
            found("service.metrics_listen = 'localhost:1'\n[ldap\n"),
            Some("localhost:1".into())
        );
        // another table's key of the same name, or the line itself broken
        assert_eq!(found("[notify]\nmetrics_listen = \"x:1\"\n[[[\n"), None);
        assert_eq!(
            found("[service]\nmetrics_listen = \"127.0.0.1:9464\n"),
            None
        );
    }
}
