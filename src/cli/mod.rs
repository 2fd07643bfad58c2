//! The command-line interface: argument parsing, one function per command, exit codes
//! (0 synced or unchanged, 1 failed, 2 configuration or usage error, 3 refused by the guard).

mod output;

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config;
use crate::connector::{Connector, SyncOptions};
use crate::datadir;
use crate::errors::{ConfigError, exit_code};
use crate::store::SyncKind;

/// Keeps a Bitwarden organization's members and groups in step with a company directory.
#[derive(Debug, Parser)]
#[command(
    name = "directory-connector",
    version,
    about,
    long_about = None,
    after_help = "Without a command, opens the desktop window on the same data directory."
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
    },
    /// Read the directory and push the changes to Bitwarden.
    Sync {
        /// Push even when the mass-removal guard refuses (this run only).
        #[arg(long)]
        allow_mass_removal: bool,
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
    /// organization (or, on a server without a read API, is a full push).
    ClearCache,
    /// The most recent sync runs.
    History {
        /// How many runs to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// What the organization has that the directory does not explain (read-only; needs a server
    /// with the public API's read side).
    Drift,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Set a key. Secrets (ldap.password) are prompted for, read from standard input, or given as env:NAME / file:PATH.
    Set { key: String, value: Option<String> },
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
}

/// Runs the CLI and returns the process exit code.
pub fn run() -> i32 {
    let cli = Cli::parse();
    let data_dir = match datadir::resolve(cli.data_dir.as_deref()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e:#}");
            return 2;
        }
    };
    if let Err(e) = datadir::ensure(&data_dir) {
        eprintln!("error: {e:#}");
        return 1;
    }
    let _guard = crate::logging::init(Some(&data_dir), cli.verbose);
    let Some(command) = cli.command else {
        // no subcommand: the desktop window
        return match crate::gui::run(&data_dir) {
            Ok(()) => 0,
            Err(e) => {
                let msg = crate::logging::redact(&format!("{e:#}"));
                eprintln!("error: the window could not be opened: {msg}");
                eprintln!("(every operation is also available from the command line: --help)");
                1
            }
        };
    };
    let out = output::Output::new(cli.json);
    let result = dispatch(&command, &data_dir, &out);
    match result {
        Ok(code) => code,
        Err(e) => {
            let msg = crate::logging::redact(&format!("{e:#}"));
            tracing::error!(target: crate::logging::FILE_ONLY, "{msg}");
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({"success": false, "exit_code": exit_code(&e), "message": msg})
                );
            } else {
                eprintln!("error: {msg}");
            }
            exit_code(&e)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn dispatch(
    command: &Command,
    data_dir: &std::path::Path,
    out: &output::Output,
) -> anyhow::Result<i32> {
    match command {
        Command::DataFile => {
            out.line(&config::config_path(data_dir).display().to_string());
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
        Command::Test { explain } => {
            let conn = Connector::open(data_dir)?;
            let progress = output::Spinner::new(out.interactive());
            if *explain {
                crate::sources::http::start_recording();
            }
            let report = runtime()?.block_on(conn.test(&progress));
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
        Command::Sync { allow_mass_removal } => {
            let conn = Connector::open(data_dir)?;
            let progress = output::Spinner::new(out.interactive());
            let report = runtime()?.block_on(conn.sync(
                SyncOptions {
                    allow_mass_removal: *allow_mass_removal,
                    lock_held: false,
                },
                &progress,
            ));
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
        Command::ClearCache => {
            Connector::open(data_dir)?.clear_cache()?;
            out.message(
                "The sync cache has been cleared.",
                "The next sync sends everything.",
            );
            Ok(0)
        }
        Command::History { limit } => {
            let runs = Connector::open(data_dir)?.store()?.list_runs(*limit)?;
            out.history(&runs);
            Ok(0)
        }
        Command::Drift => {
            let conn = Connector::open(data_dir)?;
            let progress = output::Spinner::new(out.interactive());
            let drift = runtime()?.block_on(conn.drift(&progress));
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
            let (key, kind) = config::key_info(key)?;
            if kind == config::KeyKind::Secret
                && value
                    .as_deref()
                    .is_none_or(|v| crate::secrets::SecretRef::parse(v).is_none())
            {
                if value.is_some() {
                    // typed_value refuses literal secrets with the full explanation
                    config::set_value(data_dir, key, value.as_deref())?;
                }
                let secret = read_secret(key)?;
                let conn = Connector::open(data_dir)?;
                conn.secrets
                    .set(key, &secret)
                    .with_context(|| format!("storing `{key}` in {}", conn.secrets.describe()))?;
                // A reference left in the file would win over the store.
                config::set_value(data_dir, key, None)?;
                out.message(
                    &format!("Saved setting `{key}`."),
                    &format!("kept in {}", conn.secrets.describe()),
                );
                return Ok(0);
            }
            let Some(value) = value else {
                return Err(ConfigError(format!("`config set {key}` needs a value")).into());
            };
            config::set_value(data_dir, key, Some(value))?;
            out.message(&format!("Saved setting `{key}`."), "");
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
            let problems = conn.validate(&cfg);
            out.problems(&problems);
            Ok(if problems.is_empty() { 0 } else { 2 })
        }
        ConfigCommand::Keys => {
            out.keys();
            Ok(0)
        }
    }
}

/// A value from the environment, else a prompt on the terminal, else a line from stdin.
fn env_or_prompt(var: &str, what: &str, secret: bool) -> anyhow::Result<String> {
    if let Ok(v) = std::env::var(var)
        && !v.trim().is_empty()
    {
        return Ok(v);
    }
    let label = format!("{what} ({var})");
    if secret {
        return read_secret(&label);
    }
    if std::io::stdin().is_terminal() {
        eprint!("{what}: ");
        std::io::stderr().flush()?;
    }
    read_line(&label)
}

fn read_line(what: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let line = line.trim_end_matches(['\r', '\n']).to_string();
    if line.trim().is_empty() {
        return Err(ConfigError(format!("no value given for {what}")).into());
    }
    Ok(line)
}

/// A secret from a no-echo prompt on a terminal, or the first line of standard input.
fn read_secret(what: &str) -> anyhow::Result<String> {
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
        return Err(ConfigError("an empty secret was given".into()).into());
    }
    crate::logging::register_secret(&v);
    Ok(v)
}
