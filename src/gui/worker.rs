//! The window's background worker: one thread with a tokio runtime runs every operation (login,
//! test, sync, clear cache, status) one at a time, so the frame never blocks. Progress goes to a
//! shared slot the window reads each frame; results come back over a channel, each followed by
//! a repaint request.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::bitwarden::ApiKey;
use crate::connector::{Connector, SyncOptions, SyncRead, SyncReport};
use crate::datadir::{self, SyncLock};
use crate::errors::Failure;
use crate::progress::Progress;
use crate::secrets::SecretStore;
use crate::store::{RunRecord, SyncKind};
use crate::sync::tables::Tables;

/// What the window asks for.
#[derive(Debug, Clone)]
pub enum Job {
    Login {
        client_id: String,
        client_secret: String,
    },
    Test,
    Sync {
        allow_mass_removal: bool,
    },
    ClearCache,
    Refresh,
    /// Takes the data directory's sync lock for as long as the window polls, so a CLI sync
    /// started meanwhile is refused instead of running twice.
    StartPolling,
    StopPolling,
    /// While polling: one look at the directory's change feed (the fast lane), and a sync at
    /// once when it finds a change the organization must follow.
    Watch,
}

impl Job {
    /// Reading the status: it runs behind the window's back (every few seconds, to show the
    /// service's runs), so it neither shows on the status line nor disables a button.
    pub fn quiet(&self) -> bool {
        matches!(self, Job::Refresh | Job::Watch)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Job::Login { .. } => "Log in",
            Job::Test => "Test",
            Job::Sync { .. } => SYNC,
            Job::ClearCache => "Clear sync cache",
            Job::Refresh => "Refresh",
            Job::StartPolling => "Start sync",
            Job::StopPolling => "Stop sync",
            Job::Watch => "Watch",
        }
    }
}

/// The state the dashboard shows besides results.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub logged_in: bool,
    pub last_user_sync: Option<String>,
    pub last_group_sync: Option<String>,
    pub runs: Vec<RunRecord>,
    pub cached_members: usize,
    pub cached_groups: usize,
    /// Why the database could not be read (damaged): the window still opens, shows this and
    /// offers Clear Sync Cache, which moves the file aside.
    pub problem: Option<String>,
    /// The service's last alert when it is not a recovery (`directory-connector service`).
    pub service_alert: Option<String>,
    /// The fast lane's state, the service's or the window's own.
    pub lane: Option<crate::service::lane::LaneView>,
}

/// What the worker answers.
pub enum Outcome {
    LoggedIn,
    /// A test's tables.
    Tested(Box<Tables>),
    Synced(Box<SyncReport>),
    /// The tables of a sync (after its outcome), of a refused sync, or saved by the last run
    /// (when the window starts).
    Tables(Box<Tables>),
    CacheCleared,
    Refreshed(Box<Status>),
    PollingStarted,
    PollingStopped,
    Failed {
        job: &'static str,
        /// The error's full message (redacted), as the log has it.
        message: String,
        /// The error in the window's words.
        said: super::words::Said,
        /// The mass-removal guard refused the sync.
        refused: bool,
    },
    /// Cancel was clicked and the job stopped; the message says what was applied.
    Cancelled {
        job: &'static str,
        message: String,
    },
}

/// Progress of the running job, read by the window each frame.
#[derive(Debug, Clone, Default)]
pub struct Activity {
    pub job: Option<&'static str>,
    pub stage: String,
    pub count: u64,
    /// How far the whole operation is, 0.0–1.0: for a sync, from reading through verifying,
    /// never going back ([`overall`]).
    pub fraction: Option<f32>,
}

impl Activity {
    /// Shows `job` at `stage` (`bar`: with the sync's bar); a new operation resets Cancel (an
    /// earlier click does not stop it).
    fn begin(&mut self, cancel: &AtomicBool, job: &'static str, stage: String, bar: bool) {
        if self.job.is_none() {
            cancel.store(false, Ordering::SeqCst);
        }
        *self = Activity {
            job: Some(job),
            stage,
            count: 0,
            fraction: bar.then_some(0.0),
        };
    }
}

/// The share of the whole sync each pushing stage covers (from, to): reading takes the first
/// 30 %, the member requests the next 30 %, the group requests 30 % more, the check after the
/// push the rest.
fn stage_span(stage: &str) -> Option<(f32, f32)> {
    [
        ("Pushing member batch", (0.30, 0.60)),
        ("Pushing group batch", (0.60, 0.90)),
        ("Pushing batch", (0.30, 0.90)),
        ("Verifying", (0.90, 0.99)),
    ]
    .iter()
    .find(|(prefix, _)| stage.starts_with(prefix))
    .map(|(_, span)| *span)
}

/// "Pushing member batch 2/5 (…)": 1 of 5 done, 0.2.
fn batch_done(stage: &str) -> Option<f32> {
    let word = stage.split_whitespace().find(|w| w.contains('/'))?;
    let (i, n) = word.split_once('/')?;
    let (i, n): (f32, f32) = (i.parse().ok()?, n.parse().ok()?);
    (n > 0.0).then(|| ((i - 1.0) / n).clamp(0.0, 1.0))
}

/// The sync's bar after `stage`: where the stage puts it, never lower than it was (`current`).
/// A stage that is not a push or the check (reading, signing in, a wait) moves it a little
/// within the first 30 %.
pub fn overall(current: f32, stage: &str) -> f32 {
    let next = match stage_span(stage) {
        Some((from, to)) => from + (to - from) * batch_done(stage).unwrap_or(0.0),
        None if current < 0.27 => current + 0.03,
        None => current,
    };
    next.max(current).min(1.0)
}

struct GuiProgress {
    activity: Arc<Mutex<Activity>>,
    /// Cancel was clicked: the running job stops (reset when the next job starts).
    cancel: Arc<AtomicBool>,
    /// The window is closing: every job stops.
    closing: Arc<AtomicBool>,
    repaint: Arc<dyn Fn() + Send + Sync>,
}

impl Progress for GuiProgress {
    fn stage(&self, message: &str) {
        tracing::info!("{message}");
        if let Ok(mut a) = self.activity.lock() {
            a.stage = message.to_string();
            a.count = 0;
            if a.job == Some(SYNC) || a.job == Some(LANE_SYNC) {
                a.fraction = Some(overall(a.fraction.unwrap_or(0.0), message));
            }
        }
        (self.repaint)();
    }
    fn count(&self, n: u64) {
        if let Ok(mut a) = self.activity.lock() {
            a.count = n;
        }
        (self.repaint)();
    }
    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst) || self.closing.load(Ordering::SeqCst)
    }
    fn set_fraction(&self, _fraction: f32) {
        // a push's own share (it starts at 0 for the group requests): the bar follows the
        // stages instead, over the whole sync (see `overall`)
    }
}

/// The name of a sync job (its bar covers the whole run).
const SYNC: &str = "Sync";

/// The fast lane's sync while the window polls: shown like a sync (its bar, Cancel), named as
/// the lane's.
pub const LANE_SYNC: &str = "Fast lane";

/// Handle to the worker thread.
pub struct Worker {
    jobs: Option<mpsc::Sender<Job>>,
    outcomes: mpsc::Receiver<Outcome>,
    pub activity: Arc<Mutex<Activity>>,
    cancel: Arc<AtomicBool>,
    closing: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts the worker for a data directory. `repaint` wakes the window up.
    pub fn start(
        data_dir: PathBuf,
        secrets: Arc<dyn SecretStore>,
        repaint: Arc<dyn Fn() + Send + Sync>,
    ) -> Worker {
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let (out_tx, out_rx) = mpsc::channel::<Outcome>();
        let activity = Arc::new(Mutex::new(Activity::default()));
        let cancel = Arc::new(AtomicBool::new(false));
        let closing = Arc::new(AtomicBool::new(false));
        let progress = GuiProgress {
            activity: Arc::clone(&activity),
            cancel: Arc::clone(&cancel),
            closing: Arc::clone(&closing),
            repaint: Arc::clone(&repaint),
        };
        let thread = std::thread::Builder::new()
            .name("dc-worker".into())
            .spawn(move || run(data_dir, secrets, jobs_rx, out_tx, progress, repaint))
            .ok();
        Worker {
            jobs: Some(jobs_tx),
            outcomes: out_rx,
            activity,
            cancel,
            closing,
            thread,
        }
    }

    /// Cancels the running job: a test or a login is dropped where it waits, a sync stops
    /// between two requests (every batch the server confirmed stays recorded), and every wait
    /// for the request budget, a 429's pause or a retry ends at once.
    pub fn cancel(&self) {
        if let Ok(mut a) = self.activity.lock()
            && let Some(job) = a.job
        {
            self.cancel.store(true, Ordering::SeqCst);
            a.stage = format!("Cancelling {}...", super::words::button(job));
        }
    }

    /// Whether Cancel was clicked for the running job.
    pub fn cancelling(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// Queues a job; false when the worker is gone. A quiet job (reading the status) shows
    /// nothing and disables nothing.
    pub fn send(&self, job: Job) -> bool {
        if job.quiet() {
            return self.jobs.as_ref().is_some_and(|tx| tx.send(job).is_ok());
        }
        if let Ok(mut a) = self.activity.lock() {
            let stage = format!("{}...", super::words::button(job.name()));
            a.begin(
                &self.cancel,
                job.name(),
                stage,
                matches!(job, Job::Sync { .. }),
            );
        }
        self.jobs.as_ref().is_some_and(|tx| tx.send(job).is_ok())
    }

    /// Outcomes that arrived since the last call.
    pub fn poll(&self) -> Vec<Outcome> {
        self.outcomes.try_iter().collect()
    }

    pub fn busy(&self) -> Option<&'static str> {
        self.activity.lock().ok().and_then(|a| a.job)
    }

    /// Stops cleanly: a running sync ends at its next batch boundary (the cache matches what the
    /// server confirmed), then the thread exits. Waits at most `timeout`.
    pub fn shutdown(&mut self, timeout: Duration) {
        self.closing.store(true, Ordering::SeqCst);
        self.jobs = None; // closes the channel: the loop ends after the current job
        if let Some(t) = self.thread.take() {
            let started = Instant::now();
            while !t.is_finished() && started.elapsed() < timeout {
                std::thread::sleep(Duration::from_millis(20));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                tracing::warn!("the worker did not stop within {timeout:?}");
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(30));
    }
}

fn status(conn: &Connector) -> anyhow::Result<Status> {
    // an unreadable secret store shows the login screen; logging in then names the store's error
    let logged_in = match conn.api_key() {
        Ok(key) => key.is_some(),
        Err(e) => {
            tracing::warn!("reading the API key from the secret store failed: {e:#}");
            false
        }
    };
    let store = match conn.store() {
        Ok(s) => s,
        Err(e) if crate::errors::is_corrupt_database(&e) => {
            return Ok(Status {
                logged_in,
                last_user_sync: None,
                last_group_sync: None,
                runs: Vec::new(),
                cached_members: 0,
                cached_groups: 0,
                service_alert: None,
                lane: None,
                problem: Some(super::words::text(&crate::logging::redact(&format!(
                    "{e:#}"
                )))),
            });
        }
        Err(e) => return Err(e),
    };
    let (cached_members, cached_groups) = store.cache_counts()?;
    Ok(Status {
        problem: None,
        service_alert: crate::service::alerts::banner(&store),
        lane: crate::service::lane::view(conn),
        logged_in,
        last_user_sync: store.last_sync(SyncKind::Users)?,
        last_group_sync: store.last_sync(SyncKind::Groups)?,
        runs: store.list_runs(200)?,
        cached_members,
        cached_groups,
    })
}

/// The tables of a sync, when it kept what it read.
fn sync_tables(
    operation: &str,
    report: Option<&SyncReport>,
    read: Option<SyncRead>,
    refused: Option<String>,
) -> Option<Tables> {
    crate::sync::tables::of_sync(operation, report, read?, refused)
}

/// The saved tables' file as last seen: it changes when the window saves its own or the
/// service saves a run's.
#[derive(Default)]
struct SavedTables {
    modified: Option<std::time::SystemTime>,
}

impl SavedTables {
    fn modified(data_dir: &std::path::Path) -> Option<std::time::SystemTime> {
        std::fs::metadata(data_dir.join(crate::sync::tables::FILE))
            .and_then(|m| m.modified())
            .ok()
    }

    /// The saved tables, when the file changed since it was last seen.
    fn newer(&mut self, data_dir: &std::path::Path) -> Option<Tables> {
        let now = SavedTables::modified(data_dir);
        if now.is_none() || now == self.modified {
            return None;
        }
        self.modified = now;
        Tables::load(data_dir)
    }

    /// The file as it is now counts as seen (the window wrote it).
    fn saw(&mut self, data_dir: &std::path::Path) {
        self.modified = SavedTables::modified(data_dir);
    }
}

/// Saves the tables for the next start of the window (a failure is logged: the window still
/// shows them).
fn save(tables: &Tables, data_dir: &std::path::Path) {
    if let Err(e) = tables.save(data_dir) {
        tracing::warn!("{e:#}");
    }
}

/// Runs `work` until it ends or Cancel is clicked: then it is dropped where it waits (it writes
/// nothing before the server answered).
async fn cancellable<T>(
    progress: &GuiProgress,
    what: &str,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let stop = async {
        while !progress.cancelled() {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    };
    tokio::select! {
        biased;
        out = work => out,
        () = stop => Err(Failure::Interrupted(format!("{what} cancelled; nothing was stored")).into()),
    }
}

fn failed(job: &'static str, e: &anyhow::Error, data_dir: &std::path::Path) -> Outcome {
    let message = crate::logging::redact(&format!("{e:#}"));
    if matches!(
        e.downcast_ref::<Failure>(),
        Some(Failure::Interrupted(_) | Failure::Stopped)
    ) {
        tracing::info!("{job} cancelled: {message}");
        return Outcome::Cancelled {
            job,
            message: super::words::text(&message),
        };
    }
    tracing::error!("{job}: {message}");
    let ldap = crate::config::load(data_dir)
        .ok()
        .and_then(|c| c.directory.kind)
        == Some(crate::config::DirectoryType::Ldap);
    let mut said = super::words::error(job, e, ldap);
    said.what = crate::logging::redact(&said.what);
    said.hint = said.hint.map(|h| crate::logging::redact(&h));
    said.details = said.details.map(|d| crate::logging::redact(&d));
    Outcome::Failed {
        job,
        message,
        said,
        refused: matches!(e.downcast_ref::<Failure>(), Some(Failure::Refused(_))),
    }
}

/// A sync in the worker (Sync Now, Start Sync's timer, the fast lane): its outcome, and its
/// tables (saved for the next start).
fn sync_job(
    runtime: &tokio::runtime::Runtime,
    conn: &Connector,
    progress: &GuiProgress,
    data_dir: &std::path::Path,
    opts: SyncOptions,
    operation: &str,
) -> (Outcome, Option<Tables>) {
    let name = SYNC;
    let mut tables = None;
    let (r, read) = runtime.block_on(conn.sync_keeping(opts, progress));
    let outcome = match r {
        Ok(r) => {
            tables = sync_tables(operation, Some(&r), read, None);
            Outcome::Synced(Box::new(r))
        }
        Err(e) => {
            let o = failed(name, &e, data_dir);
            if let Outcome::Failed {
                message,
                refused: true,
                ..
            } = &o
            {
                tables = sync_tables(operation, None, read, Some(message.clone()));
            }
            o
        }
    };
    if let Some(t) = &tables {
        save(t, data_dir);
    }
    (outcome, tables)
}

#[allow(
    clippy::too_many_lines,
    reason = "the worker thread: its set-up, then one match arm per job the window sends"
)]
fn run(
    data_dir: PathBuf,
    secrets: Arc<dyn SecretStore>,
    jobs: mpsc::Receiver<Job>,
    out: mpsc::Sender<Outcome>,
    progress: GuiProgress,
    repaint: Arc<dyn Fn() + Send + Sync>,
) {
    let activity = Arc::clone(&progress.activity);
    // the job that ended clears the status line (not a quiet job's: a job sent meanwhile waits
    // behind it and shows already)
    let finish = |o: Outcome, job: &str| {
        // the outcome first: a frame that sees the job ended finds its outcome
        let _ = out.send(o);
        if let Ok(mut a) = activity.lock()
            && a.job == Some(job)
        {
            *a = Activity::default();
        }
        repaint();
    };
    let send = |o: Outcome| {
        let _ = out.send(o);
        repaint();
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            finish(
                failed(
                    "Start",
                    &anyhow::anyhow!("starting the async runtime: {e}"),
                    &data_dir,
                ),
                "Start",
            );
            return;
        }
    };
    let conn = match Connector::with_store(&data_dir, secrets) {
        Ok(c) => c,
        Err(e) => {
            finish(failed("Start", &e, &data_dir), "Start");
            return;
        }
    };
    // the last run's tables as the window starts, then whenever the service saves newer ones
    let mut seen = SavedTables::default();
    if let Some(t) = seen.newer(&data_dir) {
        send(Outcome::Tables(Box::new(t)));
    }
    let mut polling_lock: Option<SyncLock> = None;
    // the fast lane while the window polls (as the service's: its metrics are not served)
    let mut lane = crate::service::lane::Lane::new();
    let lane_status = crate::service::Status::empty();
    let mut lane_alerts = crate::service::alerts::Alerts::new(chrono::Utc::now());
    while let Ok(job) = jobs.recv() {
        let name = job.name();
        let mut tables: Option<Tables> = None;
        let outcome = match job {
            Job::Login {
                client_id,
                client_secret,
            } => {
                let r = ApiKey::new(&client_id, &client_secret).and_then(|key| {
                    runtime.block_on(cancellable(&progress, "log in", conn.login(key, true)))
                });
                match r {
                    Ok(()) => Outcome::LoggedIn,
                    Err(e) => failed(name, &e, &data_dir),
                }
            }
            Job::Test => match runtime.block_on(conn.test(&progress)) {
                Ok(r) => {
                    let t = super::dashboard::test_tables(&r);
                    drop(r);
                    save(&t, &data_dir);
                    Outcome::Tested(Box::new(t))
                }
                Err(e) => failed(name, &e, &data_dir),
            },
            Job::Sync { allow_mass_removal } => {
                let opts = SyncOptions {
                    allow_mass_removal,
                    lock_held: polling_lock.is_some(),
                    reconcile: false,
                    keep_read: true,
                    fast_lane: false,
                };
                // polling holds the lock: the sync was started by Start Sync's timer
                let operation = match polling_lock {
                    Some(_) => "Start Sync",
                    None => "Sync Now",
                };
                let (outcome, t) = sync_job(&runtime, &conn, &progress, &data_dir, opts, operation);
                tables = t;
                outcome
            }
            Job::Watch => {
                let cfg = conn.config().ok();
                let next = match &cfg {
                    Some(cfg) if polling_lock.is_some() => {
                        runtime.block_on(lane.tick(&conn, cfg, &lane_status, &mut lane_alerts))
                    }
                    _ => crate::service::lane::Next::Wait,
                };
                match next {
                    crate::service::lane::Next::Wait => match status(&conn) {
                        Ok(s) => Outcome::Refreshed(Box::new(s)),
                        Err(e) => failed(name, &e, &data_dir),
                    },
                    crate::service::lane::Next::SyncNow(why) => {
                        tracing::info!("fast lane: a sync now ({why})");
                        // shown as a running sync, with its bar and Cancel (unless an operation
                        // the window started shows already)
                        let shown = match activity.lock() {
                            Ok(mut a) if a.job.is_none() => {
                                a.begin(
                                    &progress.cancel,
                                    LANE_SYNC,
                                    format!("Fast lane: {why}"),
                                    true,
                                );
                                true
                            }
                            _ => false,
                        };
                        repaint();
                        let opts = SyncOptions {
                            allow_mass_removal: false,
                            lock_held: polling_lock.is_some(),
                            reconcile: false,
                            keep_read: true,
                            fast_lane: true,
                        };
                        let started = std::time::Instant::now();
                        let newest = || {
                            conn.store()
                                .and_then(|st| st.list_runs(1))
                                .ok()
                                .and_then(|r| r.into_iter().next())
                        };
                        let before = newest().map(|r| r.id);
                        let (outcome, t) =
                            sync_job(&runtime, &conn, &progress, &data_dir, opts, "Fast lane");
                        tables = t;
                        // the lane's own run, if it started (else the newest is an older one)
                        let record = newest().filter(|r| before.is_none_or(|b| r.id > b));
                        if record.is_none() {
                            lane.sync_not_finished(cfg.as_ref(), "did not start");
                        }
                        if let Some(record) = record {
                            // the lane's own run: its record is what the lane reads
                            let f = crate::service::Finished {
                                record,
                                report: None,
                                duration: started.elapsed(),
                            };
                            runtime.block_on(lane.after_run(
                                &conn,
                                cfg.as_ref(),
                                &lane_status,
                                &mut lane_alerts,
                                &f,
                            ));
                        }
                        if shown && let Ok(mut a) = activity.lock() {
                            *a = Activity::default();
                        }
                        outcome
                    }
                }
            }
            Job::ClearCache => {
                // a damaged database is moved aside and a new one made, as with the CLI
                let r = match &polling_lock {
                    Some(lock) => conn.clear_or_recreate_cache_locked(lock),
                    None => conn.clear_or_recreate_cache(),
                };
                match r {
                    Ok(_) => Outcome::CacheCleared,
                    Err(e) => failed(name, &e, &data_dir),
                }
            }
            Job::Refresh => {
                if let Some(t) = seen.newer(&data_dir) {
                    send(Outcome::Tables(Box::new(t)));
                }
                match status(&conn) {
                    Ok(s) => Outcome::Refreshed(Box::new(s)),
                    Err(e) => failed(name, &e, &data_dir),
                }
            }
            Job::StartPolling => {
                // the schedule settings only block automatic syncs, so they are checked here
                let schedule = conn.config().and_then(|cfg| {
                    let problems = crate::config::schedule_problems(&cfg);
                    match problems.first() {
                        Some(p) => Err(Failure::Config(format!("{}: {}", p.key, p.message)).into()),
                        None => Ok(()),
                    }
                });
                if let Err(e) = schedule {
                    failed(name, &e, &data_dir)
                } else if polling_lock.is_some() {
                    Outcome::PollingStarted
                } else {
                    match datadir::acquire_sync_lock(&data_dir, "the window is polling") {
                        Ok(l) => {
                            polling_lock = Some(l);
                            Outcome::PollingStarted
                        }
                        Err(e) => failed(name, &e, &data_dir),
                    }
                }
            }
            Job::StopPolling => {
                polling_lock = None;
                Outcome::PollingStopped
            }
        };
        finish(outcome, name);
        if let Some(t) = tables {
            send(Outcome::Tables(Box::new(t)));
        }
        if matches!(name, "Test" | SYNC) {
            // the window's own tables are not read back as the service's
            seen.saw(&data_dir);
        }
        // keep the dashboard's times and history current after every operation
        if matches!(name, "Sync" | "Clear sync cache" | "Log in")
            && let Ok(s) = status(&conn)
        {
            send(Outcome::Refreshed(Box::new(s)));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sync_bar_runs_from_reading_to_verifying_and_never_goes_back() {
        let stages = [
            "Signing in to Bitwarden",
            "Reading users",
            "Reading the organization's members",
            "Pushing member batch 1/2 (2000 members, 0 groups)",
            "Reading groups",
            "Pushing member batch 2/2 (500 members, 0 groups)",
            "Reading groups",
            "Normalizing groups",
            "Pushing group batch 1/2 (0 members, 10 groups)",
            "Pushing group batch 2/2 (0 members, 10 groups)",
            "Verifying the organization",
        ];
        let mut bar = 0.0;
        let mut seen = Vec::new();
        for s in stages {
            let next = super::overall(bar, s);
            assert!(next >= bar, "{s}: {next} < {bar}");
            bar = next;
            seen.push(bar);
        }
        assert!(seen[3] >= 0.3 && seen[8] >= 0.6 && bar >= 0.9, "{seen:?}");
        assert!(bar < 1.0);
    }
}
