//! The operations the front ends call: login, logout, test, drift, sync and clear cache. They
//! share the data directory, config, secret store and database; a sync's stages are in
//! [`crate::sync`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow};
use serde::Serialize;

use crate::bitwarden::{ApiKey, BitwardenClient, RetryPolicy, Urls};
use crate::config::{self, Config, DirectoryType};
use crate::datadir;
use crate::engine::diff::mark_drift_repairs;
use crate::engine::{Drift, Normalized, Plan, Snapshot, check_group_guard, check_guard, normalize};
use crate::errors::Failure;
use crate::secrets::{self, SecretStore};
use crate::sources::Progress;
use crate::store::{StagedState, Store};
use crate::sync::BudgetProgress;
pub use crate::sync::{OWNERS_UNSEEN, SyncOptions, SyncRead, SyncReport};

/// Secret-store keys.
pub const KEY_CLIENT_ID: &str = "bitwarden.client_id";
pub const KEY_CLIENT_SECRET: &str = "bitwarden.client_secret";
pub const KEY_LDAP_PASSWORD: &str = "ldap.password";

/// The connector for one data directory.
pub struct Connector {
    pub data_dir: PathBuf,
    pub secrets: Arc<dyn SecretStore>,
}

/// What `test` found.
#[derive(Debug, Serialize)]
pub struct TestReport {
    #[serde(skip)]
    pub normalized: Normalized,
    pub plan: Plan,
    /// Why a sync would be refused, if it would.
    pub refused: Option<String>,
    /// Why the plan was not made against the organization, when it was not.
    pub baseline_note: Option<String>,
    /// What the organization has that the directory does not explain (`None`: it could not be
    /// read).
    pub drift: Option<Drift>,
    /// Whether the fast lane has a change feed (`None`: `sync.watch_seconds` is 0).
    pub fast_lane: Option<String>,
}

impl Connector {
    /// Opens a data directory (created if needed) with the default secret store.
    pub fn open(data_dir: &Path) -> anyhow::Result<Connector> {
        datadir::ensure(data_dir)?;
        Ok(Connector {
            data_dir: data_dir.to_path_buf(),
            secrets: secrets::open_store(data_dir),
        })
    }

    /// Opens with a given secret store (tests).
    pub fn with_store(data_dir: &Path, store: Arc<dyn SecretStore>) -> anyhow::Result<Connector> {
        datadir::ensure(data_dir)?;
        Ok(Connector {
            data_dir: data_dir.to_path_buf(),
            secrets: store,
        })
    }

    pub fn config(&self) -> anyhow::Result<Config> {
        config::load(&self.data_dir)
    }

    pub fn store(&self) -> anyhow::Result<Store> {
        Store::open(&self.data_dir)
    }

    /// The API key: `BW_CLIENTID` / `BW_CLIENTSECRET` when both are set, else the stored login.
    pub fn api_key(&self) -> anyhow::Result<Option<ApiKey>> {
        if let (Ok(id), Ok(secret)) = (
            std::env::var("BW_CLIENTID"),
            std::env::var("BW_CLIENTSECRET"),
        ) && !id.trim().is_empty()
            && !secret.trim().is_empty()
        {
            return ApiKey::new(&id, &secret).map(Some);
        }
        let Some(id) = self.secrets.get(KEY_CLIENT_ID)? else {
            return Ok(None);
        };
        let Some(secret) = self.secrets.get(KEY_CLIENT_SECRET)? else {
            return Ok(None);
        };
        ApiKey::new(&id, &secret).map(Some)
    }

    fn require_api_key(&self) -> anyhow::Result<ApiKey> {
        self.api_key()?.ok_or_else(|| {
            Failure::Config(
                "not logged in: run `directory-connector login`, or set BW_CLIENTID and \
                 BW_CLIENTSECRET"
                    .into(),
            )
            .into()
        })
    }

    fn client(&self, cfg: &Config, key: ApiKey) -> anyhow::Result<BitwardenClient> {
        let store = self.store()?;
        let urls = Urls::from_config(&cfg.server);
        let client = BitwardenClient::new(
            urls.clone(),
            key,
            store.app_id()?,
            cfg.server.ca_file.as_deref(),
            RetryPolicy::from_env(),
            crate::bitwarden::Limits::for_server(&cfg.server, &urls),
        )?;
        // every process of the data directory (the service, the window, `test`) shares it
        client.budget().share_through(&self.data_dir);
        Ok(client)
    }

    /// Checks the key against the server (fetches a token) and stores it.
    pub async fn login(&self, key: ApiKey, store_key: bool) -> anyhow::Result<()> {
        let cfg = self.config()?;
        let client = self.client(&cfg, key.clone())?;
        client.token().await.context("login failed")?;
        if store_key {
            self.secrets
                .set(KEY_CLIENT_ID, &key.client_id)
                .and_then(|_| self.secrets.set(KEY_CLIENT_SECRET, &key.client_secret))
                .with_context(|| format!("storing the API key in {}", self.secrets.describe()))?;
        }
        Ok(())
    }

    /// Forgets the stored API key.
    pub fn logout(&self) -> anyhow::Result<()> {
        self.secrets.delete(KEY_CLIENT_ID)?;
        self.secrets.delete(KEY_CLIENT_SECRET)?;
        Ok(())
    }

    /// The directory's secret: its key and the value (or reference) in the config.
    fn directory_secret(cfg: &Config) -> Option<(&'static str, Option<&str>)> {
        match cfg.directory.kind? {
            DirectoryType::Ldap => Some((KEY_LDAP_PASSWORD, cfg.ldap.password.as_deref())),
            DirectoryType::Entra => Some(("entra.key", cfg.entra.key.as_deref())),
            DirectoryType::Okta => Some(("okta.token", cfg.okta.token.as_deref())),
            DirectoryType::Onelogin => Some((
                "onelogin.client_secret",
                cfg.onelogin.client_secret.as_deref(),
            )),
            DirectoryType::Google => Some(("google.key", cfg.google.key.as_deref())),
        }
    }

    /// Resolves the directory's secret (reference in the config, else the secret store).
    fn secret(&self, cfg: &Config) -> anyhow::Result<String> {
        let (key, value) = Self::directory_secret(cfg)
            .ok_or_else(|| Failure::Config("no directory configured".into()))?;
        secrets::resolve(self.secrets.as_ref(), key, value)?
            .ok_or_else(|| Failure::Config(format!("{key} is not set")).into())
    }

    /// Every configuration problem (the directory's secret is looked up in the store).
    pub fn validate(&self, cfg: &Config) -> Vec<config::Problem> {
        self.validate_for(cfg, config::Purpose::Everything)
    }

    /// The configuration problems that matter for `purpose`.
    pub fn validate_for(&self, cfg: &Config, purpose: config::Purpose) -> Vec<config::Problem> {
        let known = match Self::directory_secret(cfg) {
            Some((key, None)) => matches!(self.secrets.get(key), Ok(Some(_))),
            _ => true,
        };
        config::validate_for(cfg, known, secrets::plaintext_opt_in(), purpose)
    }

    /// The config, or a configuration error (`Failure::Config`) listing every problem a one-shot run cares about (the
    /// schedule settings are checked where automatic syncs start).
    pub fn checked_config(&self) -> anyhow::Result<Config> {
        let cfg = self.config()?;
        let problems = self.validate_for(&cfg, config::Purpose::Run);
        if !problems.is_empty() {
            let lines: Vec<String> = problems
                .iter()
                .map(|p| format!("  {}: {}", p.key, p.message))
                .collect();
            return Err(Failure::Config(format!(
                "the configuration has {} problem(s):\n{}",
                problems.len(),
                lines.join("\n")
            ))
            .into());
        }
        Ok(cfg)
    }

    /// Reads and normalizes the directory.
    pub async fn read_directory(
        &self,
        cfg: &Config,
        progress: &dyn Progress,
    ) -> anyhow::Result<Normalized> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        // `test` reads with the sources' state but never moves it forward
        let state = Arc::new(StagedState::load(&self.store()?)?);
        let groups =
            crate::sync::read_directory(cfg, self.secret(cfg), progress, tx, state).await?;
        // sent before the groups were read: here by now
        let users = rx
            .await
            .context("reading the directory ended without its users")?;
        progress.stage("Normalizing");
        normalize(Snapshot { users, groups })
            .map_err(|e| anyhow!(e).context("checking the directory's entries"))
    }

    /// The cache scope: one server and organization.
    fn scope(cfg: &Config, key: Option<&ApiKey>) -> Option<String> {
        key.map(|k| {
            format!(
                "{}|{}",
                Urls::from_config(&cfg.server).api,
                k.organization_id()
            )
        })
    }

    /// The store, working on the cache of the configured server and organization (else of the
    /// last successful sync).
    fn scoped_store(&self, cfg: &Config, key: Option<&ApiKey>) -> anyhow::Result<Store> {
        let mut store = self.store()?;
        if let Some(scope) = Self::scope(cfg, key) {
            store.set_scope(&scope);
        }
        Ok(store)
    }

    /// Reads the directory and shows what a sync would do, against the organization when it can
    /// be read (else the local cache). Pushes nothing, writes nothing.
    #[allow(
        clippy::too_many_lines,
        reason = "a sync's stages in order without the push (read, baseline, plan, lifecycle, guards, the fast lane's feed); each is a call, and they share the plan being built"
    )]
    pub async fn test(&self, progress: &dyn Progress) -> anyhow::Result<TestReport> {
        let cfg = self.checked_config()?;
        // a preview still works without the key; the note says why the cache was used
        let (key, key_problem) = match self.api_key() {
            Ok(k) => (k, None),
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        let store = self.scoped_store(&cfg, key.as_ref())?;
        let client = key.map(|k| self.client(&cfg, k)).transpose()?;
        let org = async {
            match &client {
                Some(c) => crate::sync::read_organization(c).await,
                None => Ok(None),
            }
        };
        let shown = BudgetProgress::new(progress);
        let work = shown.while_waiting(client.as_ref(), async {
            tokio::join!(self.read_directory(&cfg, &shown), org)
        });
        let (normalized, org) = until_stopped(progress, client.as_ref(), "test", work).await?;
        let normalized = normalized?;
        // the server answered that it has no read API (Vaultwarden): its import revokes
        let import_revokes = matches!((&org, &client), (Ok(None), Some(_)));
        let (org, baseline_note) = match (org, &client) {
            (Ok(Some(o)), _) => (Some(o), None),
            (Ok(None), Some(_)) => (
                None,
                Some("the server has no read API (Vaultwarden): the plan is made against the local sync cache".to_string()),
            ),
            (Ok(None), None) => (
                None,
                Some(match key_problem {
                    Some(e) => format!(
                        "the API key could not be read ({e}); the plan is made against the \
                         local sync cache"
                    ),
                    None => "not logged in: the plan is made against the local sync cache".into(),
                }),
            ),
            (Err(e), _) => (
                None,
                Some(format!(
                    "the organization could not be read ({e:#}); the plan is made against the \
                     local sync cache"
                )),
            ),
        };
        progress.stage("Comparing with the baseline");
        let sent = org
            .as_ref()
            .map(|_| store.load_group_fingerprints())
            .transpose()?;
        let (mut base, kind) = crate::sync::baseline(org.as_ref(), &store)?;
        // members, then the lifecycle (which keeps revoked members in their groups), then
        // the groups: as a sync plans them
        let mut opts = crate::sync::diff_options(&cfg, org.is_some());
        let (mut plan, desired) =
            crate::engine::diff::diff_members(normalized.users.as_deref(), &base, &opts);
        plan.baseline = kind;
        plan.import_revokes = import_revokes;
        if let Some(users) = &normalized.users {
            crate::sync::identities_and_lifecycle(
                &cfg,
                &store,
                &mut plan,
                (users, &mut base),
                org.as_ref(),
                false,
                Some(&mut opts.revoked_stay),
            )?;
        }
        crate::engine::diff::diff_groups(
            &mut plan,
            normalized.groups.as_deref(),
            desired.as_ref(),
            &base,
            &opts,
        );
        crate::sync::note_unknowns(&store, &mut plan);
        if let Some(sent) = &sent {
            mark_drift_repairs(&mut plan, sent);
            crate::sync::count_creates(&store, &mut plan)?;
        }
        let limits = crate::sync::limits(&cfg);
        let short = match &org {
            Some(o) => crate::sync::short_member_list(&store, o, &plan, limits)?,
            None => None,
        };
        let owners = match &org {
            Some(_) => None,
            None => crate::sync::owner_guard(&cfg, &store, &mut plan),
        };
        let refused = short
            .or_else(|| check_guard(&plan, limits))
            .or(owners)
            .or_else(|| check_group_guard(&plan, limits));
        let drift = org.as_ref().map(|o| o.drift(&normalized));
        let fast_lane = match self.secret(&cfg) {
            Ok(secret) => crate::sync::watch::availability(&cfg, secret).await,
            Err(_) => None,
        };
        Ok(TestReport {
            normalized,
            plan,
            refused,
            baseline_note,
            drift,
            fast_lane,
        })
    }

    /// What the organization has that the directory does not explain. Needs the read API.
    pub async fn drift(&self, progress: &dyn Progress) -> anyhow::Result<Drift> {
        let cfg = self.checked_config()?;
        let key = self.require_api_key()?;
        let client = self.client(&cfg, key)?;
        let shown = BudgetProgress::new(progress);
        let work = shown.while_waiting(Some(&client), async {
            tokio::join!(
                self.read_directory(&cfg, &shown),
                crate::sync::read_organization(&client)
            )
        });
        let (normalized, org) = until_stopped(progress, Some(&client), "drift", work).await?;
        let normalized = normalized?;
        let org = org?.ok_or_else(|| {
            anyhow!(
                "the server has no read API (GET /public/members answered 404; Vaultwarden has \
                 none): the drift report needs to read the organization"
            )
        })?;
        Ok(org.drift(&normalized))
    }

    /// Reads the directory, pushes the differences and records what the server confirmed (see
    /// [`crate::sync`] for the stages).
    pub async fn sync(
        &self,
        opts: SyncOptions,
        progress: &dyn Progress,
    ) -> anyhow::Result<SyncReport> {
        self.sync_keeping(opts, progress).await.0
    }

    /// [`Connector::sync`], also handing back what the run read and planned when
    /// `opts.keep_read` asks for it (the window's tables, a refused plan), whatever the outcome.
    pub async fn sync_keeping(
        &self,
        opts: SyncOptions,
        progress: &dyn Progress,
    ) -> (anyhow::Result<SyncReport>, Option<SyncRead>) {
        match self.sync_inputs(opts) {
            Ok((cfg, key, lock, store)) => {
                let inputs = crate::sync::Inputs {
                    data_dir: &self.data_dir,
                    cfg: &cfg,
                    opts,
                    client: self.client(&cfg, key),
                    secret: self.secret(&cfg),
                    store,
                };
                let out = crate::sync::run(inputs, progress).await;
                drop(lock);
                out
            }
            Err(e) => (Err(e), None),
        }
    }

    /// What a sync starts from: the checked configuration, the API key, the sync lock (unless
    /// the caller holds it) and the store on the organization's cache.
    fn sync_inputs(
        &self,
        opts: SyncOptions,
    ) -> anyhow::Result<(Config, ApiKey, Option<datadir::SyncLock>, Store)> {
        let cfg = self.checked_config()?;
        let key = self.require_api_key()?;
        let lock = if opts.lock_held {
            None
        } else {
            Some(datadir::acquire_sync_lock(&self.data_dir, "sync")?)
        };
        let store = self.scoped_store(&cfg, Some(&key))?;
        Ok((cfg, key, lock, store))
    }

    /// The fast lane's look at the directory's change feed ([`crate::sync::watch`]): reads
    /// the directory only. The caller keeps the returned cursor ([`Connector::keep_cursor`])
    /// once it has handled what the look found.
    pub async fn watch(&self) -> anyhow::Result<crate::sync::watch::Looked> {
        let cfg = self.checked_config()?;
        let key = self.api_key()?;
        let store = self.scoped_store(&cfg, key.as_ref())?;
        let secret = self.secret(&cfg)?;
        crate::sync::watch::look(&cfg, secret, &store).await
    }

    /// Holds the fast lane's doorbell (a persistent search where the directory offers one) and
    /// rings `ring` for each change the server sends; see [`crate::sync::watch::doorbell`].
    pub async fn doorbell(
        &self,
        ring: &(dyn Fn() + Send + Sync),
    ) -> anyhow::Result<crate::sync::watch::Doorbell> {
        let cfg = self.checked_config()?;
        if !crate::sync::watch::has_doorbell(&cfg) {
            return Ok(crate::sync::watch::Doorbell::Absent);
        }
        let cursor = {
            let key = self.api_key()?;
            let store = self.scoped_store(&cfg, key.as_ref())?;
            crate::sync::watch::load_cursor(&store)
        };
        let secret = self.secret(&cfg)?;
        crate::sync::watch::doorbell(&cfg, secret, cursor, ring).await
    }

    /// Keeps the fast lane's cursor for the configured server and organization.
    pub fn keep_cursor(&self, cursor: &crate::sources::feed::Cursor) -> anyhow::Result<()> {
        let cfg = self.config()?;
        let key = self.api_key()?;
        let store = self.scoped_store(&cfg, key.as_ref())?;
        crate::sync::watch::save_cursor(&store, cursor)
    }

    /// Empties the sync cache so the next sync is a full push.
    pub fn clear_cache(&self) -> anyhow::Result<()> {
        let lock = datadir::acquire_sync_lock(&self.data_dir, "clear-cache")?;
        self.clear_cache_locked(&lock)
    }

    /// Empties the sync cache like [`Connector::clear_cache`]; a database that cannot be read
    /// (damaged, or no database at all) is moved aside as `<name>.broken-<time>` and a new one is
    /// created. Returns where the damaged file went, if it was moved.
    pub fn clear_or_recreate_cache(&self) -> anyhow::Result<Option<PathBuf>> {
        let lock = datadir::acquire_sync_lock(&self.data_dir, "clear-cache")?;
        self.clear_or_recreate_cache_locked(&lock)
    }

    /// [`Connector::clear_or_recreate_cache`] under a sync lock the caller already holds (the
    /// window's Clear Sync Cache, while it polls).
    pub fn clear_or_recreate_cache_locked(
        &self,
        held: &datadir::SyncLock,
    ) -> anyhow::Result<Option<PathBuf>> {
        match self.clear_cache_locked(held) {
            Ok(()) => Ok(None),
            Err(e) if crate::errors::is_corrupt_database(&e) => {
                tracing::warn!("clear-cache: the database cannot be read ({e:#})");
                // Store::recreate logs where the file went
                let (_store, moved) = Store::recreate(&self.data_dir)?;
                Ok(Some(moved))
            }
            Err(e) => Err(e),
        }
    }

    /// Clears the cache (of the configured server and organization) under a sync lock the
    /// caller already holds (the window, while it polls). Pending email changes are kept (see
    /// [`Store::clear_cache`]).
    pub fn clear_cache_locked(&self, _held: &datadir::SyncLock) -> anyhow::Result<()> {
        let kept = self.cache_store()?.clear_cache(false)?;
        if kept > 0 {
            tracing::info!("clear-cache: {kept} pending email change(s) kept");
        }
        Ok(())
    }

    /// The pending email changes of the configured server and organization that `clear-cache`
    /// keeps: how many there were; `forget` drops them (the users changed their email in their
    /// accounts, so the next sync may send the new addresses).
    pub fn pending_email_changes(&self, forget: bool) -> anyhow::Result<usize> {
        let _lock = datadir::acquire_sync_lock(&self.data_dir, "clear-cache")?;
        let store = self.cache_store()?;
        let n = store.email_pins()?.len();
        if forget {
            store.set_email_pins(&[])?;
        }
        Ok(n)
    }

    /// The store on the cache `clear-cache` works on: the configured server and organization's,
    /// else the last synced one.
    fn cache_store(&self) -> anyhow::Result<Store> {
        let key = self.api_key().unwrap_or_else(|e| {
            tracing::warn!(
                "clear-cache: the API key could not be read ({e:#}); clearing the cache of the \
                 last synced organization"
            );
            None
        });
        let store = match self.config() {
            Ok(cfg) => self.scoped_store(&cfg, key.as_ref())?,
            Err(e) => {
                tracing::warn!(
                    "clear-cache: the configuration could not be read ({e:#}); clearing the \
                     cache of the last synced organization"
                );
                self.store()?
            }
        };
        Ok(store)
    }
}

/// Runs a read-only operation (`test`, `drift`) until it ends or the caller asks to stop: it is
/// dropped where it waits, and the client's waits (for the budget, a 429's pause, a retry) end at
/// once. Nothing was written, so nothing is left half done.
async fn until_stopped<T>(
    progress: &dyn Progress,
    client: Option<&BitwardenClient>,
    what: &str,
    work: impl std::future::Future<Output = T>,
) -> anyhow::Result<T> {
    let stop = async {
        while !progress.cancelled() {
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        if let Some(c) = client {
            c.cancel();
        }
    };
    tokio::select! {
        biased;
        out = work => Ok(out),
        () = stop => Err(crate::errors::Failure::Interrupted(format!("{what} stopped; nothing was written")).into()),
    }
}
