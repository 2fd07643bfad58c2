//! The command-line interface: argument parsing, one function per command, exit codes
//! (0 synced or unchanged, 1 failed, 2 configuration or usage error, 3 refused by the guard,
//! 130/143 stopped by SIGINT/SIGTERM). With `--json` every answer, failures included, is JSON.

mod bwdc;
mod crash;
mod generate;
mod output;

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config;
use crate::connector::{Connector, SyncOptions};
use crate::datadir;
use crate::errors::{EXIT_SIGINT, EXIT_SIGTERM, Failure, exit_code};
use crate::store::SyncKind;
use output::errln;

/// What `--help` says last: what happens without a command.
#[cfg(feature = "gui")]
const AFTER_HELP: &str = "Without a command, opens the desktop window on the same data directory.";
#[cfg(not(feature = "gui"))]
const AFTER_HELP: &str = "This build has no desktop window (built without the `gui` feature).";

/// Keeps a Bitwarden organization's members and groups in step with a company directory.
#[derive(Debug, Parser)]
#[command(
    name = "directory-connector",
    version,
    about,
    long_about = None,
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Data directory (config, database, logs). Default: the platform's app-data folder.
    #[arg(
        long,
        global = true,
        env = "DIRECTORY_CONNECTOR_DATA_DIR",
        value_name = "DIR"
    )]
    pub data_dir: Option<PathBuf>,
    /// Print JSON for scripts instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output on stderr (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// bwdc compatibility: print upstream's JSON envelope {"success":…,"data":…} (BW_RESPONSE).
    #[arg(long, global = true, env = "BW_RESPONSE", hide_env = true)]
    pub response: bool,
    /// bwdc compatibility: print only a message's raw field (BW_RAW).
    #[arg(long, global = true, env = "BW_RAW", hide_env = true)]
    pub raw: bool,
    /// bwdc compatibility: indent JSON output (BW_PRETTY).
    #[arg(long, global = true, env = "BW_PRETTY", hide_env = true)]
    pub pretty: bool,
    /// bwdc compatibility: print nothing on stdout and no handled errors (BW_QUIET).
    #[arg(long, global = true, env = "BW_QUIET", hide_env = true)]
    pub quiet: bool,
    /// bwdc compatibility: never prompt (BW_NOINTERACTION).
    #[arg(long, global = true, env = "BW_NOINTERACTION", hide_env = true)]
    pub nointeraction: bool,
    /// bwdc compatibility: exit 0 even when the command failed (BW_CLEANEXIT).
    #[arg(long, global = true, env = "BW_CLEANEXIT", hide_env = true)]
    pub cleanexit: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store the organization API key (from BW_CLIENTID / BW_CLIENTSECRET or a prompt) after checking it.
    Login,
    /// Forget the stored API key.
    Logout,
    /// Read the directory and show what a sync would change. Pushes nothing.
    Test {
        /// Instead of the changes, list every request made to the directory's API (method and
        /// URL; no secrets), to check the app's permissions before the first sync.
        #[arg(long)]
        explain: bool,
        /// bwdc compatibility ("test since the last sync"): accepted; this connector always
        /// reads the whole directory.
        #[arg(short = 'l', long)]
        last: bool,
    },
    /// Read the directory and push the changes to Bitwarden.
    Sync {
        /// Push even when the mass-removal guard refuses (this run only).
        #[arg(long)]
        allow_mass_removal: bool,
        /// Read every group's members from the server (paced by the request budget), instead of
        /// the rolling reconcile's slice and the groups the plan takes members out of.
        #[arg(long)]
        reconcile: bool,
    },
    /// Time of the last successful user or group sync.
    LastSync {
        #[arg(value_parser = ["users", "groups"])]
        object: String,
    },
    /// Read and change the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print the path of the configuration file.
    DataFile,
    /// Forget what was synced with this server and organization: the next sync starts from the
    /// organization (or, on a server without a read API, is a full push). Pending email changes
    /// are kept.
    ClearCache {
        /// Also forget the pending email changes (once each user changed their email in their
        /// account): the next sync sends the new addresses.
        #[arg(long)]
        forget_email_changes: bool,
    },
    /// The most recent sync runs.
    History {
        /// How many runs to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// What the organization has that the directory does not explain (read-only; needs a server
    /// with the public API's read side).
    Drift,
    /// Import the official Bitwarden Directory Connector's settings and secrets (its data.json;
    /// its files are only read). Prints what was imported, what was not and why.
    ImportBwdc {
        /// Its data directory or data.json. Default: BITWARDENCLI_CONNECTOR_APPDATA_DIR, else
        /// the platform folder (Linux ~/.config/Bitwarden Directory Connector).
        path: Option<PathBuf>,
        /// Print the resulting config.toml and the summary; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Replace the configuration of an already configured data directory.
        #[arg(long)]
        force: bool,
    },
    /// Run unattended in the foreground: sync now and then on the schedule (`service.schedule`
    /// or `sync.interval_minutes`) until SIGTERM/SIGINT, with health, metrics and alerts.
    /// On Windows, `service install|uninstall|start|stop` manage the Windows service.
    Service {
        #[command(subcommand)]
        action: Option<ServiceAction>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff), for packagers.
    #[command(hide = true)]
    Manpage,
}

/// `service` subcommands: the Windows service (see [`crate::winservice`]).
#[derive(Subcommand, Debug, Clone, Copy)]
pub enum ServiceAction {
    /// Register the Windows service (LocalSystem, automatic start, data directory under
    /// %ProgramData%); needs an elevated prompt.
    Install,
    /// Stop and remove the Windows service (its data directory is kept).
    Uninstall,
    /// Start the Windows service and wait until it runs.
    Start,
    /// Ask the Windows service to stop after the request in flight, and wait until it has.
    Stop,
    /// Run under the Service Control Manager (the SCM starts this).
    #[command(hide = true)]
    Scm,
}

impl From<ServiceAction> for crate::winservice::Action {
    fn from(a: ServiceAction) -> Self {
        use crate::winservice::Action;
        match a {
            ServiceAction::Install => Action::Install,
            ServiceAction::Uninstall => Action::Uninstall,
            ServiceAction::Start => Action::Start,
            ServiceAction::Stop => Action::Stop,
            ServiceAction::Scm => Action::Scm,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Set a key. Secrets (ldap.password) are prompted for, read from standard input, or given as env:NAME / file:PATH.
    Set {
        key: String,
        /// The value (a negative number such as -1 is a value, not an option).
        #[arg(allow_negative_numbers = true)]
        value: Option<String>,
    },
    /// Print one key's value.
    Get { key: String },
    /// Remove a key (back to its default).
    Unset { key: String },
    /// Print the whole configuration, secrets masked.
    Show,
    /// List every problem in the configuration.
    Validate,
    /// List every key with its help.
    Keys,
    /// bwdc compatibility: `config SETTING [VALUE]` with upstream's settings (`server URL`,
    /// `directory 0`–`4`, `ldap.password`, `gsuite.key`, `entra.key`, `okta.token`,
    /// `onelogin.secret`, `sync.inviteUsersAfterProvisioning`) or this connector's keys.
    #[command(external_subcommand)]
    Upstream(Vec<String>),
}

/// Whether `--json` is among the raw arguments (before `--`): usage errors and panics answer in
/// JSON even when the command line cannot be parsed.
fn json_requested() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

/// Prints a failure: `{"success": false, "exit_code": N, "message": …}` on stdout with
/// `--json`, else `error: …` on stderr. A closed stdout is not an error here (nothing is left to
/// tell).
fn print_failure(json: bool, code: i32, msg: &str) {
    if json {
        let _ = writeln!(std::io::stdout().lock(), "{}", failure_json(code, msg));
    } else {
        errln!("error: {msg}");
    }
}

/// `--nointeraction` / BW_NOINTERACTION: never prompt.
static NO_INTERACTION: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The signal that asked this process to stop (its exit code: 130 SIGINT, 143 SIGTERM), 0 none.
static STOP_SIGNAL: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Runs the CLI and returns the process exit code.
pub fn run() -> i32 {
    crash::install();
    let json = json_requested();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let compat = bwdc::Compat::from_raw_args();
            let shown = matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            );
            if !json && !shown && compat.active() {
                // bwdc compatibility: a usage error is a failure like any other (the envelope
                // with --response, exit 1, or 0 with --cleanexit)
                let text = e.render().to_string();
                let msg = text
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .trim_start_matches("error: ");
                return bwdc::fail(&compat, msg);
            }
            if !json || shown {
                // help and version as usual; a closed stdout ends the text quietly
                let _ = e.print();
                return e.exit_code();
            }
            let text = e.render().to_string();
            let msg = text.trim().trim_start_matches("error: ");
            print_failure(true, 2, msg);
            return 2;
        }
    };
    let json = cli.json;
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_parsed(cli))) {
        Ok(code) => match crash::report() {
            // another thread panicked and the command went on: the panic decides
            Some(report) => {
                print_failure(json, 1, &crash::record(&report));
                1
            }
            None => code,
        },
        Err(_) => {
            let msg = match crash::report() {
                Some(report) => crash::record(&report),
                None => "internal error (a bug in Directory Connector)".to_string(),
            };
            print_failure(json, 1, &msg);
            1
        }
    }
}

fn run_parsed(cli: Cli) -> i32 {
    let compat = bwdc::Compat::from_cli(&cli);
    // before a command runs: in bwdc mode a failure like any other
    let early_failure = |msg: &str| {
        if compat.active() && !cli.json && cli.command.is_some() {
            bwdc::fail(&compat, msg)
        } else {
            print_failure(cli.json, 2, msg);
            2
        }
    };
    let data_dir = match datadir::resolve(cli.data_dir.as_deref()) {
        Ok(d) => d,
        Err(e) => return early_failure(&format!("{e:#}")),
    };
    if let Err(e) = datadir::ensure(&data_dir) {
        return early_failure(&format!(
            "{e:#} (choose another one with --data-dir or DIRECTORY_CONNECTOR_DATA_DIR)"
        ));
    }
    let _guard = crate::logging::init(Some(&data_dir), cli.verbose);
    NO_INTERACTION.store(cli.nointeraction, std::sync::atomic::Ordering::SeqCst);
    let Some(command) = cli.command else {
        // no subcommand: the desktop window
        return open_window(&data_dir, cli.json);
    };
    if compat.active()
        && !cli.json
        && let Some(code) = bwdc::dispatch(&command, &data_dir, &compat)
    {
        return code;
    }
    let out = output::Output::new(cli.json);
    let result = dispatch(&command, &data_dir, &out);
    crate::test_panic_point("output");
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            let mut msg = crate::logging::redact(&format!("{e:#}"));
            if crate::errors::is_corrupt_database(&e) && !msg.contains("clear-cache") {
                msg = format!("{msg}: {}", crate::store::corrupt_message(&data_dir));
            }
            let mut code = exit_code(&e);
            let interrupted = matches!(e.downcast_ref::<Failure>(), Some(Failure::Interrupted(_)));
            if interrupted {
                // the signal decides the exit code (130 when none is known)
                let name = match STOP_SIGNAL.load(std::sync::atomic::Ordering::SeqCst) {
                    EXIT_SIGTERM => {
                        code = EXIT_SIGTERM;
                        "SIGTERM"
                    }
                    EXIT_SIGINT => "SIGINT",
                    _ => "a stop request",
                };
                msg = format!("interrupted by {name}: {msg}");
            }
            tracing::error!(target: crate::logging::FILE_ONLY, "{msg}");
            if cli.json {
                out.json_value(&failure_json(code, &msg));
            } else if interrupted {
                errln!("{msg}");
            } else {
                errln!("error: {msg}");
            }
            code
        }
    };
    match out.finish() {
        None => code,
        Some(e) => {
            tracing::warn!(target: crate::logging::FILE_ONLY, "writing to standard output failed: {e}");
            if cli.json {
                // a script reading the JSON got nothing whole: never a success
                errln!(
                    "error: the JSON answer could not be written to standard output ({e}); what \
                     the command did is done (a sync is recorded in `history`)"
                );
                if code == 0 { 1 } else { code }
            } else if e.kind() == std::io::ErrorKind::BrokenPipe {
                // the reader went away (`| head`): stop quietly, as other tools do
                code
            } else {
                errln!("error: writing to standard output failed: {e}");
                if code == 0 { 1 } else { code }
            }
        }
    }
}

/// The JSON answer of a failure (the README's contract for scripts).
fn failure_json(code: i32, msg: &str) -> serde_json::Value {
    serde_json::json!({"success": false, "exit_code": code, "message": msg})
}

/// Watches SIGINT and SIGTERM during a sync: the first asks the sync to stop after the request
/// in flight (see [`STOP_SIGNAL`]); a second one ends the process at once (the run is closed as
/// interrupted when the next one starts).
#[cfg(unix)]
fn watch_signals() {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut int, mut term) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!("cannot watch SIGINT/SIGTERM ({e}); a signal ends the sync at once");
            return;
        }
    };
    tokio::spawn(async move {
        loop {
            let code = tokio::select! {
                _ = int.recv() => EXIT_SIGINT,
                _ = term.recv() => EXIT_SIGTERM,
            };
            let first = STOP_SIGNAL
                .compare_exchange(
                    0,
                    code,
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::SeqCst,
                )
                .is_ok();
            if first {
                tracing::info!(
                    target: crate::logging::FILE_ONLY,
                    "stop requested: the sync stops after the request in flight (a second signal \
                     stops at once)"
                );
            } else {
                errln!(
                    "interrupted again: stopping at once; the run is recorded as interrupted \
                     when the next one starts"
                );
                std::process::exit(code);
            }
        }
    });
}

/// Outside Unix only Ctrl-C (Ctrl-Break and console close end the process at once).
#[cfg(not(unix))]
fn watch_signals() {
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            let first = STOP_SIGNAL
                .compare_exchange(
                    0,
                    EXIT_SIGINT,
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::SeqCst,
                )
                .is_ok();
            if !first {
                errln!("interrupted again: stopping at once");
                std::process::exit(EXIT_SIGINT);
            }
        }
    });
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Opens the desktop window and returns the exit code once it is closed.
#[cfg(feature = "gui")]
fn open_window(data_dir: &std::path::Path, _json: bool) -> i32 {
    match crate::gui::run(data_dir) {
        Ok(()) => 0,
        Err(e) => {
            let msg = crate::logging::redact(&format!("{e:#}"));
            errln!("error: the window could not be opened: {msg}");
            errln!("(every operation is also available from the command line: --help)");
            1
        }
    }
}

/// A build without the `gui` feature has no window: it says so, with the exit code of a usage
/// error.
#[cfg(not(feature = "gui"))]
fn open_window(_data_dir: &std::path::Path, json: bool) -> i32 {
    print_failure(
        json,
        2,
        "this build of Directory Connector has no desktop window (it was built without the \
         `gui` feature); run one of its commands instead (--help lists them)",
    );
    2
}

#[allow(
    clippy::too_many_lines,
    reason = "one short match arm per CLI command: the match is the command table"
)]
fn dispatch(
    command: &Command,
    data_dir: &std::path::Path,
    out: &output::Output,
) -> anyhow::Result<i32> {
    match command {
        Command::DataFile => {
            let path = config::config_path(data_dir).display().to_string();
            if out.json {
                out.json_value(&serde_json::json!({"success": true, "path": path}));
            } else {
                out.line(&path);
            }
            Ok(0)
        }
        Command::Config(c) => config_command(c, data_dir, out),
        Command::Login => {
            let conn = Connector::open(data_dir)?;
            let id = env_or_prompt("BW_CLIENTID", "client id", false)?;
            let secret = env_or_prompt("BW_CLIENTSECRET", "client secret", true)?;
            let key = crate::bitwarden::ApiKey::new(&id, &secret)?;
            runtime()?.block_on(conn.login(key.clone(), true))?;
            out.message(
                "You are logged in!",
                &format!("organization {}", key.organization_id()),
            );
            Ok(0)
        }
        Command::Logout => {
            Connector::open(data_dir)?.logout()?;
            out.message("You have logged out.", "");
            Ok(0)
        }
        Command::Test { explain, .. } => {
            let conn = Connector::open(data_dir)?;
            // Ctrl-C and SIGTERM stop it as they stop a sync (exit 130 / 143)
            let progress = output::Spinner::new(out.interactive()).stopped_by(&STOP_SIGNAL);
            if *explain {
                crate::sources::http::start_recording();
            }
            let report = runtime()?.block_on(async {
                watch_signals();
                conn.test(&progress).await
            });
            progress.finish();
            if *explain {
                // listed even when a request failed: the list ends with the refused one
                out.requests(&crate::sources::http::recorded_requests(), report.is_ok());
            }
            let report = report?;
            if !*explain {
                out.test_report(&report);
            }
            Ok(0)
        }
        Command::Sync {
            allow_mass_removal,
            reconcile,
        } => {
            let conn = Connector::open(data_dir)?;
            let progress = output::Spinner::new(out.interactive()).stopped_by(&STOP_SIGNAL);
            let report = runtime()?.block_on(async {
                watch_signals();
                conn.sync(
                    SyncOptions {
                        allow_mass_removal: *allow_mass_removal,
                        lock_held: false,
                        reconcile: *reconcile,
                        keep_read: false,
                        fast_lane: false,
                    },
                    &progress,
                )
                .await
            });
            progress.finish();
            out.sync_report(&report?);
            Ok(0)
        }
        Command::LastSync { object } => {
            let store = Connector::open(data_dir)?.store()?;
            let kind = if object == "users" {
                SyncKind::Users
            } else {
                SyncKind::Groups
            };
            let v = store.last_sync(kind)?;
            if out.json {
                out.json_value(&serde_json::json!({ "object": object, "last_sync": v }));
            } else if let Some(v) = v {
                out.line(&v);
            }
            Ok(0)
        }
        Command::ClearCache {
            forget_email_changes,
        } => {
            let conn = Connector::open(data_dir)?;
            match conn.clear_or_recreate_cache()? {
                None => {
                    let pending = conn.pending_email_changes(*forget_email_changes)?;
                    let detail = match (pending, *forget_email_changes) {
                        (0, _) => "The next sync sends everything.".to_string(),
                        (n, true) => format!(
                            "The next sync sends everything; {n} pending email change(s) were \
                             forgotten, so their new addresses are sent."
                        ),
                        (n, false) => format!(
                            "The next sync sends everything except {n} member(s) with a pending \
                             email change: the server may still have their old address, and a \
                             server that matches members by email (Vaultwarden) would make the \
                             new one a second membership. Once the users changed their email \
                             in their accounts, run `clear-cache --forget-email-changes`."
                        ),
                    };
                    out.message("The sync cache has been cleared.", &detail)
                }
                Some(moved) => {
                    // the pending email changes are kept outside the database
                    let pending = conn.pending_email_changes(*forget_email_changes)?;
                    let kept = match (pending, *forget_email_changes) {
                        (0, _) => String::new(),
                        (n, true) => format!(" {n} pending email change(s) were forgotten."),
                        (n, false) => format!(
                            " {n} pending email change(s) were kept (the data directory keeps \
                             them outside the database): those members are not sent until \
                             `clear-cache --forget-email-changes`."
                        ),
                    };
                    out.message(
                        "The database could not be read; a new one was created.",
                        &format!(
                            "The damaged file was moved to {}. The sync cache and the run \
                             history start empty: the next sync plans against the organization \
                             where the server can be read back (Bitwarden), and sends everything \
                             where it cannot (Vaultwarden).{kept}",
                            moved.display()
                        ),
                    )
                }
            }
            Ok(0)
        }
        Command::History { limit } => {
            let conn = Connector::open(data_dir)?;
            let store = conn.store()?;
            let runs = store.list_runs(*limit)?;
            let lane = crate::service::lane::view(&conn);
            out.history(
                &runs,
                &crate::service::alerts::recent(&store),
                lane.as_ref(),
            );
            Ok(0)
        }
        Command::Completions { shell } => generate::completions(*shell),
        Command::Manpage => generate::manpage(),
        Command::Service {
            action: Some(action),
        } => {
            let msg = crate::winservice::run_action((*action).into(), data_dir)?;
            if !msg.is_empty() {
                out.message(&msg, "");
            }
            Ok(0)
        }
        Command::Service { action: None } => {
            let stop = crate::service::StopHandle::new();
            runtime()?.block_on(async {
                watch_signals();
                // the CLI's signal watcher decides; the service stops after the request in flight
                let on_signal = stop.clone();
                tokio::spawn(async move {
                    while STOP_SIGNAL.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                    on_signal.stop();
                });
                crate::service::run_async(crate::service::ServiceOptions::new(data_dir), stop).await
            })?;
            Ok(0)
        }
        Command::ImportBwdc {
            path,
            dry_run,
            force,
        } => bwdc::import_command(
            &crate::bwdc::ImportOptions {
                path: path.clone(),
                dry_run: *dry_run,
                force: *force,
            },
            data_dir,
            out,
        ),
        Command::Drift => {
            let conn = Connector::open(data_dir)?;
            let progress = output::Spinner::new(out.interactive()).stopped_by(&STOP_SIGNAL);
            let drift = runtime()?.block_on(async {
                watch_signals();
                conn.drift(&progress).await
            });
            progress.finish();
            out.drift_report(&drift?);
            Ok(0)
        }
    }
}

fn config_command(
    c: &ConfigCommand,
    data_dir: &std::path::Path,
    out: &output::Output,
) -> anyhow::Result<i32> {
    match c {
        ConfigCommand::Set { key, value } => {
            let (key, detail) = set_key(data_dir, key, value.as_deref())?;
            out.message(&format!("Saved setting `{key}`."), &detail);
            Ok(0)
        }
        ConfigCommand::Upstream(args) => {
            let (key, value) = bwdc::upstream_setting(args)?;
            let (key, detail) = set_key(data_dir, &key, value.as_deref())?;
            out.message(&format!("Saved setting `{key}`."), &detail);
            Ok(0)
        }
        ConfigCommand::Get { key } => {
            let cfg = config::load(data_dir)?;
            let (key, kind) = config::key_info(key)?;
            let mut v = config::get_value(&cfg, key)?;
            if v.is_none() && kind == config::KeyKind::Secret {
                let conn = Connector::open(data_dir)?;
                if matches!(conn.secrets.get(key), Ok(Some(_))) {
                    v = Some(format!("******** (in {})", conn.secrets.describe()));
                }
            }
            if out.json {
                out.json_value(&serde_json::json!({ "key": key, "value": v }));
            } else if let Some(v) = v {
                out.line(&v);
            }
            Ok(0)
        }
        ConfigCommand::Unset { key } => {
            let (key, kind) = config::key_info(key)?;
            config::set_value(data_dir, key, None)?;
            if kind == config::KeyKind::Secret {
                Connector::open(data_dir)?.secrets.delete(key)?;
            }
            out.message(&format!("Removed setting `{key}`."), "");
            Ok(0)
        }
        ConfigCommand::Show => {
            let cfg = config::load(data_dir)?;
            if out.json {
                let text = config::show(&cfg)?;
                let v: toml::Value =
                    toml::from_str(&text).context("re-reading the configuration")?;
                out.json_value(&serde_json::to_value(v)?);
            } else {
                out.line(config::show(&cfg)?.trim_end());
            }
            Ok(0)
        }
        ConfigCommand::Validate => {
            let conn = Connector::open(data_dir)?;
            let cfg = conn.config()?;
            let mut problems = conn.validate(&cfg);
            problems.extend(crate::service::settings_problems(&cfg));
            out.problems(&problems);
            Ok(if problems.is_empty() { 0 } else { 2 })
        }
        ConfigCommand::Keys => {
            out.keys();
            Ok(0)
        }
    }
}

/// `config set KEY [VALUE]`: a secret (no value, or an env:/file: reference) goes to the secret
/// store, prompted for or read from standard input; anything else to the file. The key as
/// spelled in the configuration, and where a secret is kept (else empty).
fn set_key(
    data_dir: &std::path::Path,
    key: &str,
    value: Option<&str>,
) -> anyhow::Result<(&'static str, String)> {
    let (key, kind) = config::key_info(key)?;
    if kind == config::KeyKind::Secret
        && value.is_none_or(|v| crate::config::SecretRef::parse(v).is_none())
    {
        if value.is_some() {
            // typed_value refuses literal secrets with the full explanation
            config::set_value(data_dir, key, value)?;
        }
        let secret = read_secret(key)?;
        let conn = Connector::open(data_dir)?;
        conn.secrets
            .set(key, &secret)
            .with_context(|| format!("storing `{key}` in {}", conn.secrets.describe()))?;
        // A reference left in the file would win over the store.
        config::set_value(data_dir, key, None)?;
        return Ok((key, format!("kept in {}", conn.secrets.describe())));
    }
    let Some(value) = value else {
        return Err(Failure::Config(format!("`config set {key}` needs a value")).into());
    };
    config::set_value(data_dir, key, Some(value))?;
    Ok((key, String::new()))
}

/// A value from the environment, else a prompt on the terminal, else a line from stdin.
fn env_or_prompt(var: &str, what: &str, secret: bool) -> anyhow::Result<String> {
    if let Ok(v) = std::env::var(var)
        && !v.trim().is_empty()
    {
        return Ok(v);
    }
    let label = format!("{what} ({var})");
    if NO_INTERACTION.load(std::sync::atomic::Ordering::SeqCst) && std::io::stdin().is_terminal() {
        return Err(Failure::Config(format!(
            "{what} is required: set {var} (--nointeraction: no prompt)"
        ))
        .into());
    }
    if secret {
        return read_secret(&label);
    }
    if std::io::stdin().is_terminal() {
        let mut e = std::io::stderr().lock();
        let _ = write!(e, "{what}: ").and_then(|()| e.flush());
    }
    read_line(&label)
}

fn read_line(what: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let line = line.trim_end_matches(['\r', '\n']).to_string();
    if line.trim().is_empty() {
        return Err(Failure::Config(format!("no value given for {what}")).into());
    }
    Ok(line)
}

/// A secret from a no-echo prompt on a terminal, or the first line of standard input.
fn read_secret(what: &str) -> anyhow::Result<String> {
    if NO_INTERACTION.load(std::sync::atomic::Ordering::SeqCst) && std::io::stdin().is_terminal() {
        return Err(Failure::Config(format!(
            "{what}: no value given, and --nointeraction forbids a prompt (pipe it on standard \
             input)"
        ))
        .into());
    }
    let v = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("{what}: "))
            .context("reading the secret from the terminal")?
    } else {
        // piped: the whole input (a JSON key file spans lines), without the final newline
        let mut all = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut all)
            .with_context(|| format!("reading {what} from standard input"))?;
        all.trim_end_matches(['\r', '\n']).to_string()
    };
    if v.is_empty() {
        return Err(Failure::Config("an empty secret was given".into()).into());
    }
    crate::logging::register_secret(&v);
    Ok(v)
}
