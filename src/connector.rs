//! The operations both front ends call: login, logout, test, sync, clear cache. They share the
//! data directory, config, secret store and database.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow};
use serde::Serialize;

use crate::bitwarden::read::Known;
use crate::bitwarden::wire::ImportRequest;
use crate::bitwarden::{ApiKey, BitwardenClient, RetryPolicy, Urls};
use crate::config::{self, Config, DirectoryType};
use crate::datadir;
use crate::engine::batch::{BATCH_SIZE, MEMBER_REF_BUDGET, group_batches, member_batches};
use crate::engine::diff::{
    count_creates_against_rows, diff_groups, diff_members, mark_drift_repairs,
};
use crate::engine::normalize::{normalize_groups, normalize_users};
use crate::engine::{
    Baseline, Batch, Cache, DiffOptions, DirGroup, Drift, GuardLimits, Normalized, Organization,
    Plan, Snapshot, build_batches, check_group_guard, check_guard, check_member_list,
    check_short_member_list, diff, normalize,
};
use crate::errors::{ConfigError, Interrupted, Refused};
use crate::joined;
use crate::secrets::{self, SecretStore};
use crate::sources::entra::EntraSource;
use crate::sources::google::GoogleSource;
use crate::sources::ldap::LdapSource;
use crate::sources::okta::OktaSource;
use crate::sources::onelogin::OneLoginSource;
use crate::sources::{Progress, SourceState, UsersReady};
use crate::store::{RunOutcome, RunRecord, ServerUse, StagedState, Store, SyncKind};

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
}

/// What `sync` did.
#[derive(Debug, Serialize)]
pub struct SyncReport {
    pub outcome: RunOutcome,
    pub plan: Plan,
    pub requests: usize,
    pub bytes_pushed: u64,
    pub run_id: i64,
    /// What the run asked of the Bitwarden server.
    pub server: ServerUse,
}

/// Options of one sync run.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncOptions {
    pub allow_mass_removal: bool,
    /// The caller already holds the data directory's sync lock (the window, while it polls).
    pub lock_held: bool,
    /// Kept for `sync --reconcile`: every sync reads every group's members from the server now,
    /// so it changes nothing.
    pub reconcile: bool,
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
            ConfigError(
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
            .ok_or_else(|| ConfigError("no directory configured".into()))?;
        secrets::resolve(self.secrets.as_ref(), key, value)?
            .ok_or_else(|| ConfigError(format!("{key} is not set")).into())
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

    /// The config, or a ConfigError listing every problem a one-shot run cares about (the
    /// schedule settings are checked where automatic syncs start).
    pub fn checked_config(&self) -> anyhow::Result<Config> {
        let cfg = self.config()?;
        let problems = self.validate_for(&cfg, config::Purpose::Run);
        if !problems.is_empty() {
            let lines: Vec<String> = problems
                .iter()
                .map(|p| format!("  {}: {}", p.key, p.message))
                .collect();
            return Err(ConfigError(format!(
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
        let groups = self.read_parts(cfg, progress, tx, state).await?;
        // sent before the groups were read: here by now
        let users = rx
            .await
            .context("reading the directory ended without its users")?;
        progress.stage("Normalizing");
        normalize(Snapshot { users, groups })
            .map_err(|e| anyhow!(e).context("checking the directory's entries"))
    }

    /// Reads the directory: the users go to `users_ready` as soon as they are read (the LDAP
    /// source reads groups after that; the cloud sources filter users by group, so they hand
    /// them over at the end), the groups are returned.
    async fn read_parts(
        &self,
        cfg: &Config,
        progress: &dyn Progress,
        users_ready: UsersReady,
        state: Arc<dyn SourceState>,
    ) -> anyhow::Result<Option<Vec<DirGroup>>> {
        let mut users_ready = Some(users_ready);
        let kind = cfg
            .directory
            .kind
            .ok_or_else(|| ConfigError("no directory configured".into()))?;
        let secret = self.secret(cfg)?;
        let sync = cfg.sync.clone();
        let ca_file = cfg.server.ca_file.clone();
        let fetched = match kind {
            DirectoryType::Ldap => {
                let source = LdapSource {
                    ldap: cfg.ldap.clone(),
                    sync,
                    password: secret,
                };
                source.fetch_parts(progress, users_ready.take()).await
            }
            DirectoryType::Okta => {
                let source = OktaSource {
                    okta: cfg.okta.clone(),
                    sync,
                    token: secret,
                    ca_file,
                };
                source.fetch(progress).await
            }
            DirectoryType::Entra => {
                let source = EntraSource {
                    entra: cfg.entra.clone(),
                    sync,
                    key: secret,
                    ca_file,
                    state,
                };
                source.fetch(progress).await
            }
            DirectoryType::Onelogin => {
                let source = OneLoginSource {
                    onelogin: cfg.onelogin.clone(),
                    sync,
                    secret,
                    ca_file,
                };
                source.fetch(progress).await
            }
            DirectoryType::Google => {
                let source = GoogleSource {
                    google: cfg.google.clone(),
                    sync,
                    key_json: secret,
                    ca_file,
                };
                source.fetch(progress).await
            }
        };
        let mut snapshot = fetched.context("reading the directory")?;
        if let Some(tx) = users_ready.take() {
            let _ = tx.send(snapshot.users.take());
        }
        Ok(snapshot.groups)
    }

    /// How the plan is made. `org`: the baseline is the organization as read from the server.
    fn diff_options(cfg: &Config, org: bool) -> DiffOptions {
        let resend_groups_before = (!org && cfg.sync.group_resend_hours > 0).then(|| {
            (chrono::Utc::now() - chrono::Duration::hours(cfg.sync.group_resend_hours as i64))
                .to_rfc3339()
        });
        DiffOptions {
            remove_disabled: cfg.sync.remove_disabled,
            remove_missing_users: cfg.sync.remove_missing_users,
            overwrite_existing: cfg.sync.overwrite_existing,
            cascade_removals: org,
            protected: Arc::new(
                cfg.sync
                    .protected_emails
                    .iter()
                    .map(|e| e.trim().to_lowercase())
                    .filter(|e| !e.is_empty())
                    .collect(),
            ),
            resend_groups_before,
        }
    }

    fn limits(cfg: &Config) -> GuardLimits {
        GuardLimits {
            max_removals: cfg.sync.max_removals,
            max_removal_percent: cfg.sync.max_removal_percent,
            max_group_removal_percent: cfg.sync.max_group_removal_percent,
        }
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

    /// Reads the organization (logged, not shown: the directory read owns the status line).
    async fn read_org(client: &BitwardenClient) -> anyhow::Result<Option<Organization>> {
        Self::logged_read(client.read_organization(&crate::sources::NoProgress)).await
    }

    /// Reads the organization on a task of its own and prepares its baseline and digest there
    /// (off the thread that handles the directory's entries, so that both go on at once on a
    /// machine with two cores or more). The task stops when the handle is dropped.
    fn spawn_org_read(
        client: Arc<BitwardenClient>,
        known: Option<tokio::task::JoinHandle<anyhow::Result<Known>>>,
    ) -> Background<Option<PreparedOrg>> {
        Background(tokio::spawn(async move {
            let started = std::time::Instant::now();
            let known = async {
                match known {
                    None => Ok(None),
                    Some(task) => task
                        .await
                        .context("reading the sync cache's group rows")?
                        .context("reading the sync cache's group rows")
                        .map(Some),
                }
            };
            let read = client
                .read_organization_knowing(&crate::sources::NoProgress, known)
                .await?;
            Self::log_read(read.as_ref().map(|(org, _)| org), started);
            let Some((org, read)) = read else {
                return Ok(None);
            };
            tracing::debug!(
                "group member lists read from the server: {} (the others from the sync cache)",
                read.len()
            );
            let prepared = tokio::task::spawn_blocking(move || {
                let digest = org.digest();
                let base = org.plan_baseline();
                PreparedOrg {
                    org,
                    digest,
                    base,
                    read,
                }
            })
            .await
            .context("preparing the organization's baseline")?;
            Ok(Some(prepared))
        }))
    }

    /// Logs how long a read of the organization took and what it found.
    async fn logged_read(
        read: impl std::future::Future<Output = anyhow::Result<Option<Organization>>>,
    ) -> anyhow::Result<Option<Organization>> {
        let started = std::time::Instant::now();
        let org = read.await?;
        Self::log_read(org.as_ref(), started);
        Ok(org)
    }

    /// Logs how long a read of the organization took and what it found.
    fn log_read(org: Option<&Organization>, started: std::time::Instant) {
        match org {
            Some(o) => tracing::info!(
                "read the organization: {} members, {} groups in {:.2}s",
                o.members.len(),
                o.groups.len(),
                started.elapsed().as_secs_f64()
            ),
            None => tracing::info!(
                "the server has no read API (GET /public/members: 404); the plan is made \
                 against the local sync cache"
            ),
        }
    }

    /// Counts the groups `plan` creates against the cache's last confirmed rows of them (a
    /// short group list must not blind the group guard). The rows are read only when the plan
    /// creates a group.
    fn count_creates(store: &Store, plan: &mut Plan) -> anyhow::Result<()> {
        if !plan
            .groups
            .iter()
            .any(|g| g.action == crate::engine::diff::GroupAction::Create)
        {
            return Ok(());
        }
        let rows = store
            .load_group_lists()
            .context("reading the sync cache's group rows")?
            .into_iter()
            .map(|(ext, l)| (ext, l.members))
            .collect();
        count_creates_against_rows(plan, &rows);
        Ok(())
    }

    /// Why the organization's member list is taken for a short answer, if it is (see
    /// [`check_short_member_list`]). The cache is read only when the plan invites someone.
    fn short_member_list(
        store: &Store,
        org: &Organization,
        plan: &Plan,
        limits: GuardLimits,
    ) -> anyhow::Result<Option<String>> {
        if !plan
            .members
            .iter()
            .any(|m| m.action == crate::engine::diff::MemberAction::Invite)
        {
            return Ok(None);
        }
        let cached = store
            .cached_members()
            .context("reading the sync cache's members")?;
        let emails = org
            .members
            .iter()
            .map(|m| m.email.trim().to_lowercase())
            .collect();
        Ok(check_short_member_list(&cached, &emails, plan, limits))
    }

    /// On a server that cannot show who is an owner (no read API: Vaultwarden), owners are
    /// protected only through `sync.protected_emails`: the plan says so when it may remove
    /// members, and a plan that removes someone is refused until that setting is made or the
    /// admin allowed it once ([`Connector::acknowledge_owners`]).
    fn owner_guard(cfg: &Config, store: &Store, plan: &mut Plan) -> Option<String> {
        let s = &cfg.sync;
        if !s.protected_emails.is_empty()
            || !(s.remove_missing_users || s.overwrite_existing || s.remove_disabled)
        {
            return None;
        }
        plan.warnings.push(OWNERS_UNSEEN.to_string());
        let removes = plan.removals() > 0 || plan.overwrite_existing;
        (removes && !store.kept().owners_acknowledged).then(|| {
            "this server cannot show who is an owner (it has no read API), and \
             sync.protected_emails is empty: the plan may remove an owner (Vaultwarden revokes a \
             co-owner). Set sync.protected_emails to the owners' addresses"
                .to_string()
        })
    }

    /// The admin allowed a removal with owners unseen once: later syncs only warn.
    fn acknowledge_owners(store: &Store) {
        if let Err(e) = store.update_kept(|k| k.owners_acknowledged = true) {
            tracing::warn!("recording that removals with owners unseen were allowed: {e:#}");
        }
    }

    /// The departures warning of a sync is said once a day (`test` always says it): the service
    /// would repeat it every run for as long as the cache is incomplete.
    fn departures_once_a_day(store: &Store, plan: &mut Plan) {
        use crate::engine::diff::{NO_BASELINE_DEPARTURES, PARTIAL_CACHE_DEPARTURES};
        let is_departures =
            |w: &String| w == NO_BASELINE_DEPARTURES || w == PARTIAL_CACHE_DEPARTURES;
        if !plan.warnings.iter().any(is_departures) {
            return;
        }
        let key = format!("departures_said:{}", store.scope());
        let now = chrono::Utc::now();
        let said = store
            .meta_get(&key)
            .ok()
            .flatten()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            .is_some_and(|t| now - t.with_timezone(&chrono::Utc) < chrono::Duration::hours(24));
        if said {
            plan.warnings.retain(|w| !is_departures(w));
            tracing::info!("departures cannot be detected (said once a day; see `test`)");
        } else if let Err(e) = store.meta_set(&key, Some(&now.to_rfc3339())) {
            tracing::warn!("recording when the departures warning was said: {e:#}");
        }
    }

    /// What a plan with no baseline cannot see, said in it: the groups it sends may replace
    /// members on the server (counted against their last confirmed sizes), and pending email
    /// changes kept for another server or organization do not apply here.
    fn note_unknowns(store: &Store, plan: &mut Plan) {
        if plan.baseline != Baseline::None {
            return;
        }
        let kept = store.kept();
        crate::engine::diff::mark_unknown_replacements(plan, &kept.group_sizes);
        if kept.email_pins.is_empty()
            && let Some(dir) = &store.dir
        {
            for (scope, n) in crate::store::kept::pins_elsewhere(dir, store.scope()) {
                plan.warnings.push(format!(
                    "{n} pending email change(s) are kept for another server or organization \
                     ({scope}); they do not apply to this one, so those members' new \
                     addresses may be sent here"
                ));
            }
        }
    }

    /// The baseline a plan is made against: the organization when it was read, else the cache
    /// (loaded only then).
    fn baseline(org: Option<&Organization>, store: &Store) -> anyhow::Result<(Cache, Baseline)> {
        Ok(match org {
            Some(o) => (o.plan_baseline(), Baseline::Organization),
            None => {
                let local = store.load_cache()?;
                if local.members.is_empty() && local.groups.is_empty() {
                    (local, Baseline::None)
                } else {
                    (local, Baseline::Cache)
                }
            }
        })
    }

    /// Reads the directory and shows what a sync would do, against the organization when it can
    /// be read (else the local cache). Pushes nothing, writes nothing.
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
                Some(c) => Self::read_org(c).await,
                None => Ok(None),
            }
        };
        let shown = BudgetProgress::new(progress);
        let (normalized, org) = shown
            .while_waiting(client.as_ref(), async {
                tokio::join!(self.read_directory(&cfg, &shown), org)
            })
            .await;
        let normalized = normalized?;
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
        let (base, kind) = Self::baseline(org.as_ref(), &store)?;
        let mut plan = diff(&normalized, &base, &Self::diff_options(&cfg, org.is_some()));
        plan.baseline = kind;
        Self::note_unknowns(&store, &mut plan);
        if let Some(sent) = &sent {
            mark_drift_repairs(&mut plan, sent);
            Self::count_creates(&store, &mut plan)?;
        }
        let limits = Self::limits(&cfg);
        let short = match &org {
            Some(o) => Self::short_member_list(&store, o, &plan, limits)?,
            None => None,
        };
        let owners = match &org {
            Some(_) => None,
            None => Self::owner_guard(&cfg, &store, &mut plan),
        };
        let refused = short
            .or_else(|| check_guard(&plan, limits))
            .or(owners)
            .or_else(|| check_group_guard(&plan, limits));
        let drift = org.as_ref().map(|o| o.drift(&normalized));
        Ok(TestReport {
            normalized,
            plan,
            refused,
            baseline_note,
            drift,
        })
    }

    /// What the organization has that the directory does not explain. Needs the read API.
    pub async fn drift(&self, progress: &dyn Progress) -> anyhow::Result<Drift> {
        let cfg = self.checked_config()?;
        let key = self.require_api_key()?;
        let client = self.client(&cfg, key)?;
        let shown = BudgetProgress::new(progress);
        let (normalized, org) = shown
            .while_waiting(Some(&client), async {
                tokio::join!(self.read_directory(&cfg, &shown), Self::read_org(&client))
            })
            .await;
        let normalized = normalized?;
        let org = org?.ok_or_else(|| {
            anyhow!(
                "the server has no read API (GET /public/members answered 404; Vaultwarden has \
                 none): the drift report needs to read the organization"
            )
        })?;
        Ok(org.drift(&normalized))
    }

    /// Reads the directory, pushes the differences and records what the server confirmed.
    pub async fn sync(
        &self,
        opts: SyncOptions,
        progress: &dyn Progress,
    ) -> anyhow::Result<SyncReport> {
        let cfg = self.checked_config()?;
        let key = self.require_api_key()?;
        let _lock = if opts.lock_held {
            None
        } else {
            Some(datadir::acquire_sync_lock(&self.data_dir, "sync")?)
        };
        let mut store = self.scoped_store(&cfg, Some(&key))?;
        let run_id = store.start_run("sync")?;
        let _current = crate::store::CurrentRun::set(&self.data_dir, run_id);
        tracing::info!("sync {run_id} started");
        let mut record = RunRecord::new(run_id, "sync");
        record.server = Some(ServerUse::default());
        let pushing = std::sync::atomic::AtomicBool::new(false);
        // (a client that cannot be made, e.g. a bad server.ca_file, fails the run as recorded)
        let (client, mut client_error) = match self.client(&cfg, key) {
            Ok(c) => (Some(Arc::new(c)), None),
            Err(e) => (None, Some(e)),
        };
        let shown = BudgetProgress::new(progress);
        let result = {
            let inner = async {
                let Some(client) = client.clone() else {
                    return Err(client_error
                        .take()
                        .unwrap_or_else(|| anyhow!("the Bitwarden client could not be made")));
                };
                self.sync_inner(
                    &cfg,
                    client,
                    opts,
                    &mut store,
                    &mut record,
                    &shown,
                    &pushing,
                )
                .await
            };
            // Asked to stop: a push stops by itself after the request in flight (between two
            // batches); any other stage (reading, verifying) is dropped where it waits. A wait
            // for the request budget shows on the status line.
            let stop = async {
                loop {
                    if progress.cancelled() {
                        // a wait (for the budget, a 429's pause, a retry) ends at once; a
                        // request in flight is answered first
                        if let Some(c) = &client {
                            c.cancel();
                        }
                        if !pushing.load(std::sync::atomic::Ordering::SeqCst) {
                            break;
                        }
                    }
                    if let Some(c) = &client {
                        shown.show_wait(c.budget().waiting());
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(25)).await;
                }
            };
            tokio::select! {
                biased;
                r = inner => r,
                () = stop => Err(Interrupted(String::new()).into()),
            }
        };
        let result = result.map_err(|e| match e.downcast_ref::<Interrupted>() {
            Some(i) if i.0.is_empty() => anyhow::Error::new(Interrupted(format!(
                "sync interrupted; {}",
                applied_message(record.requests)
            ))),
            _ => e,
        });
        if let Ok((m, _)) = store.cache_counts() {
            record.members_after = m as u64;
        }
        if let (Some(c), Some(server)) = (&client, record.server.as_mut()) {
            server.requests = c.stats();
            tracing::info!("sync {run_id}: {}", server.requests.describe());
        }
        let result = result.map(|mut report| {
            report.server = record.server.clone().unwrap_or_default();
            report
        });
        match &result {
            Ok(report) => {
                record.outcome = report.outcome;
                let p = &report.plan;
                tracing::info!(
                    "sync {run_id} plan: {} invited, {} removed, {} group(s) changed, {} member(s) \
                     and {} group(s) unchanged (baseline: {})",
                    p.invites(),
                    p.removals(),
                    p.groups.len(),
                    p.unchanged_members,
                    p.unchanged_groups,
                    p.baseline.describe()
                );
                tracing::info!(
                    "sync {run_id} finished: {} ({} request(s))",
                    report.outcome.as_str(),
                    report.requests
                );
            }
            Err(e) => {
                record.outcome = if e.downcast_ref::<Refused>().is_some() {
                    RunOutcome::Refused
                } else if e.downcast_ref::<Interrupted>().is_some() {
                    RunOutcome::Interrupted
                } else {
                    RunOutcome::Failed
                };
                record.error = Some(crate::logging::redact(&format!("{e:#}")));
                tracing::info!("sync {run_id} finished: {}", record.outcome.as_str());
            }
        }
        if let Err(e) = store.finish_run(&record) {
            tracing::error!("recording the run failed: {e:#}");
        }
        result
    }

    /// The refusal of a guard, as the error a sync ends with.
    fn refusal(reason: &str, applied: u64) -> anyhow::Error {
        let pushed = match applied {
            0 => "Nothing was pushed.".to_string(),
            n => format!(
                "{n} member request(s) had been applied and recorded; the groups were not sent."
            ),
        };
        anyhow::Error::new(Refused(format!(
            "sync refused: {reason}. {pushed} Check the directory and the filters with `test`; \
             if the changes are intended, run `sync --allow-mass-removal` once"
        )))
    }

    #[allow(clippy::too_many_arguments)]
    async fn sync_inner(
        &self,
        cfg: &Config,
        client: Arc<BitwardenClient>,
        opts: SyncOptions,
        store: &mut Store,
        record: &mut RunRecord,
        progress: &dyn Progress,
        pushing: &std::sync::atomic::AtomicBool,
    ) -> anyhow::Result<SyncReport> {
        crate::test_panic_point("sync-start");
        let started = chrono::Utc::now().to_rfc3339();
        progress.stage("Signing in to Bitwarden");
        client.token().await?;
        // every group's members are read: the organization is the baseline in full
        let org_read = Self::spawn_org_read(client.clone(), None);
        let invite = cfg.sync.invite_users_after_provisioning;
        let limits = Self::limits(cfg);
        let (users_tx, users_rx) = tokio::sync::oneshot::channel();
        let shared = SharedProgress::new(progress);
        let source_state = Arc::new(StagedState::load(store)?);
        let read = async {
            let r = self
                .read_parts(cfg, &shared.read(), users_tx, source_state.clone())
                .await;
            shared.read_done();
            r
        };
        // The member half: as soon as the users are read (and the organization), their plan is
        // made and checked by the guard, and when the push needs several requests anyway, the
        // member requests go out while the groups are still being read.
        let members = async {
            let prepared = org_read.finish("reading the organization").await?;
            // whether the cache holds this organization, row for row (before any batch writes)
            let held = match &prepared {
                Some(p) => {
                    let held = store.cache_digest()?.as_deref() == Some(p.digest.as_str())
                        || (p.org.baseline_is_empty() && store.cache_counts()? == (0, 0));
                    Some((p.digest.clone(), held))
                }
                None => None,
            };
            let (org, fresh, (base, kind)) = match prepared {
                Some(p) => (Some(p.org), p.read, (p.base, Baseline::Organization)),
                None => (None, Vec::new(), Self::baseline(None, store)?),
            };
            let diff_opts = Self::diff_options(cfg, org.is_some());
            let Ok(users) = users_rx.await else {
                return Ok(None); // the read failed before the users: its error is reported
            };
            let mut skipped = Vec::new();
            let users = users
                .map(|u| normalize_users(u, &mut skipped))
                .transpose()
                .map_err(|e| anyhow!(e).context("checking the directory's entries"))?;
            record.directory_users = users.as_ref().map_or(0, |u| u.len() as u64);
            let (mut plan, desired) = diff_members(users.as_deref(), &base, &diff_opts);
            // the plan holds what it needs: the users go before the groups arrive, and so do
            // the baseline's members, which `diff_groups` reads only for protected emails
            drop(users);
            let mut base = base;
            if diff_opts.protected.is_empty() {
                base.members = Default::default();
            }
            plan.baseline = kind;
            // a member list much shorter than what the cache confirmed is a short answer
            if let Some(o) = &org
                && let Some(reason) = Self::short_member_list(store, o, &plan, limits)?
            {
                if opts.allow_mass_removal {
                    tracing::warn!(
                        "member list check overridden with --allow-mass-removal: {reason}"
                    );
                } else {
                    return Err(Self::refusal(&reason, 0));
                }
            }
            if let Some(reason) = check_guard(&plan, limits) {
                if opts.allow_mass_removal {
                    tracing::warn!("guard overridden with --allow-mass-removal: {reason}");
                } else {
                    return Err(Self::refusal(&reason, 0));
                }
            }
            if org.is_none() {
                if let Some(reason) = Self::owner_guard(cfg, store, &mut plan) {
                    if opts.allow_mass_removal {
                        tracing::warn!(
                            "owner guard overridden with --allow-mass-removal: {reason}"
                        );
                        Self::acknowledge_owners(store);
                    } else {
                        return Err(Self::refusal(&reason, 0));
                    }
                }
                Self::departures_once_a_day(store, &mut plan);
            }
            // Members that fill a request on their own: members and groups go in separate
            // requests anyway (`build_batches`), so the member requests go out now.
            let early = plan.members.len() >= BATCH_SIZE && !plan.overwrite_existing;
            let mut members_read_back = None;
            if early {
                let push = shared.push();
                let batches = member_batches(plan.members.len(), BATCH_SIZE, true);
                let pushed = Self::push(
                    &client,
                    &plan,
                    &batches,
                    "member batch",
                    invite,
                    store,
                    record,
                    &push,
                    pushing,
                    None,
                )
                .await;
                shared.push_done();
                pushed?;
                // the member list is read back while the groups are still being read (the
                // group requests do not change it)
                if org.is_some() {
                    let client = client.clone();
                    members_read_back = Some(Background(tokio::spawn(async move {
                        client.read_members(&crate::sources::NoProgress).await
                    })));
                }
            }
            Ok(Some((
                skipped,
                plan,
                desired,
                base,
                diff_opts,
                (org, fresh),
                early,
                held,
                members_read_back,
            )))
        };
        // A member half that fails (the guard refuses, a request fails) ends the sync at once:
        // the group read is dropped. A read that ends first (or fails) waits for the member
        // requests in flight, so that every confirmed batch is recorded.
        let (groups, members) = {
            let mut read = std::pin::pin!(read);
            let mut members = std::pin::pin!(members);
            tokio::select! {
                m = &mut members => {
                    let m = m?;
                    (read.await, m)
                }
                g = &mut read => (g, members.await?),
            }
        };
        let groups = groups.map_err(|e| match record.requests {
            0 => e,
            n => e.context(format!(
                "{n} member request(s) had been applied and recorded; the next sync sends \
                 the groups"
            )),
        })?;
        let Some((
            mut skipped,
            mut plan,
            desired,
            base,
            diff_opts,
            (mut org, fresh),
            early,
            held,
            members_read_back,
        )) = members
        else {
            anyhow::bail!("reading the directory ended without its users");
        };
        progress.stage("Normalizing groups");
        let groups = groups.map(|g| normalize_groups(g, &mut skipped));
        record.directory_groups = groups.as_ref().map_or(0, |g| g.len() as u64);
        progress.stage("Comparing groups with the baseline");
        diff_groups(
            &mut plan,
            groups.as_deref(),
            desired.as_ref(),
            &base,
            &diff_opts,
        );
        Self::note_unknowns(store, &mut plan);
        if let Some(server) = record.server.as_mut() {
            server.groups_read = fresh.len() as u64;
        }
        // a group the organization did not list but the cache confirmed is counted against its
        // last confirmed row (a short group list must not blind the group guard)
        if org.is_some() {
            Self::count_creates(store, &mut plan)?;
        }
        if org.is_some() {
            mark_drift_repairs(&mut plan, &store.load_group_fingerprints()?);
        }
        drop((base, desired, groups, skipped));
        if let Some(reason) = check_group_guard(&plan, limits) {
            if opts.allow_mass_removal {
                tracing::warn!("group guard overridden with --allow-mass-removal: {reason}");
            } else {
                return Err(Self::refusal(&reason, record.requests));
            }
        }
        let pushed = !plan.is_empty();
        let mut members_after = None;
        if pushed {
            let batches = if early {
                group_batches(&plan, BATCH_SIZE, MEMBER_REF_BUDGET, true)
            } else {
                build_batches(&plan, BATCH_SIZE, MEMBER_REF_BUDGET).map_err(ConfigError)?
            };
            let what = if early { "group batch" } else { "batch" };
            // Once every member request is confirmed, the member list is read back while the
            // group requests go out (they do not change it). A sync that changes no member
            // keeps the list it read before.
            let (members_done, members_sent) = tokio::sync::oneshot::channel();
            let push = Self::push(
                &client,
                &plan,
                &batches,
                what,
                invite,
                store,
                record,
                progress,
                pushing,
                Some(members_done),
            );
            let read_back = async {
                let before = org.as_ref()?;
                if plan.members.is_empty() {
                    return Some(Ok(Some(before.members.clone())));
                }
                if let Some(read) = members_read_back {
                    return Some(read.finish("reading the member list back").await);
                }
                members_sent.await.ok()?;
                Some(client.read_members(&crate::sources::NoProgress).await)
            };
            let (sent, read) = tokio::join!(push, read_back);
            sent?;
            members_after = read;
        }
        if progress.cancelled() {
            // stopped after the last request: everything was applied, the check is skipped
            return Err(Interrupted(String::new()).into());
        }
        store.mark_groups_left(&plan.stale_groups)?;
        if org.is_none() && plan.users_synced {
            // kept by `clear-cache`: a member with a pending email change is never sent
            store.set_email_pins(&plan.email_changes)?;
        }
        // Where the organization can be read, the cache records what it shows, and a push is
        // checked against it.
        if let (Some(before), Some((digest, held))) = (&mut org, held) {
            let before = Before {
                org: before,
                digest,
                held,
            };
            let mut by_server = 0;
            let verified = Self::verify_and_record(
                &client,
                before,
                members_after,
                &plan,
                pushed,
                &fresh,
                record.server.as_mut(),
                store,
                progress,
                limits,
                &mut by_server,
            )
            .await;
            // members the server removed on its own (overwriteExisting) count as removed
            record.removed += by_server;
            verified?;
        }
        if cfg.sync.users {
            store.set_last_sync(SyncKind::Users, &started)?;
        }
        if cfg.sync.groups {
            store.set_last_sync(SyncKind::Groups, &started)?;
        }
        source_state.commit(store)?;
        store.remember_scope()?;
        Ok(SyncReport {
            outcome: if pushed {
                RunOutcome::Synced
            } else {
                RunOutcome::Unchanged
            },
            plan,
            requests: record.requests as usize,
            bytes_pushed: record.bytes_pushed,
            run_id: record.id,
            server: ServerUse::default(),
        })
    }

    /// After a sync against a readable organization: reads it back when something was pushed,
    /// makes the cache what it shows, and fails when it does not show what the server accepted.
    #[allow(clippy::too_many_arguments)]
    async fn verify_and_record(
        client: &BitwardenClient,
        before: Before<'_>,
        members_after: Option<anyhow::Result<Option<Vec<crate::engine::OrgMember>>>>,
        plan: &Plan,
        pushed: bool,
        fresh: &[String],
        server: Option<&mut ServerUse>,
        store: &mut Store,
        progress: &dyn Progress,
        limits: GuardLimits,
        by_server: &mut u64,
    ) -> anyhow::Result<()> {
        let read_back;
        let mut verified = Vec::new();
        let after = if pushed {
            progress.stage("Verifying the organization");
            // every group sent is read back
            let changed: std::collections::HashSet<&str> =
                plan.groups.iter().map(|g| g.external_id.as_str()).collect();
            let no = &crate::sources::NoProgress;
            let started = std::time::Instant::now();
            let read = match members_after {
                Some(members) => match members? {
                    Some(members) => client
                        .read_organization_after_members(no, members, before.org, &changed, None)
                        .await
                        .map(Some),
                    None => Ok(None),
                },
                None => {
                    client
                        .read_organization_after(no, before.org, &changed, None)
                        .await
                }
            }
            .context("reading the organization back after the push")?
            .ok_or_else(|| anyhow!("the server's read API disappeared during the sync"))?;
            Self::log_read(Some(&read.0), started);
            // a short member list is not written to the cache (it would lose its members)
            if let Some(reason) = read_back_short(before.org, &read.0, plan, limits) {
                anyhow::bail!(
                    "the organization's member list read back after the push looks incomplete: \
                     {reason}. The \
                     sync cache keeps what the server confirmed batch by batch and is not \
                     changed by this read; the next sync reads the organization again"
                );
            }
            verified = read.1;
            read_back = read.0;
            *by_server = removed_by_server(before.org, &read_back, plan);
            &read_back
        } else {
            &*before.org
        };
        let started = std::time::Instant::now();
        let (wrote, problems) = if pushed {
            Self::record_read_back(&before, after, plan, store)?
        } else {
            let wrote = store.replace_cache(&before.digest, || before.org.baseline())?;
            (wrote, Vec::new())
        };
        if wrote {
            tracing::info!(
                "the sync cache now holds what the organization shows ({:.2}s)",
                started.elapsed().as_secs_f64()
            );
        }
        // when each group's members were last read from the server
        let now = chrono::Utc::now().to_rfc3339();
        let read_now: Vec<&str> = fresh.iter().chain(&verified).map(String::as_str).collect();
        store.set_groups_read_at(&read_now, Some(&now))?;
        if let Some(server) = server {
            server.groups_verified = verified
                .iter()
                .filter(|e| plan.groups.iter().any(|g| g.external_id == **e))
                .count() as u64;
            server.groups_pending = 0;
        }
        if problems.is_empty() {
            return Ok(());
        }
        let shown: Vec<&str> = problems.iter().take(10).map(String::as_str).collect();
        anyhow::bail!(
            "the organization does not show {} change(s) the server accepted:\n  {}{}\n\
             The sync cache records what the organization shows; the next sync tries again.",
            problems.len(),
            shown.join("\n  "),
            if problems.len() > 10 {
                format!("\n  … and {} more", problems.len() - 10)
            } else {
                String::new()
            }
        )
    }

    /// Makes the cache what the organization read back after a push shows, and checks that it
    /// shows the plan: whether the cache was written, and the problems found. Nothing else runs
    /// at this point of a sync, so the work is spread over two threads: the digest and the
    /// member rows beside the groups' references, then the check beside the cache's writing.
    fn record_read_back(
        before: &Before<'_>,
        after: &Organization,
        plan: &Plan,
        store: &mut Store,
    ) -> anyhow::Result<(bool, Vec<String>)> {
        // The cache held `before` and then took the batches' writes: only the rows where the
        // read-back differs from that are written.
        let incremental = before.held && !plan.overwrite_existing;
        let member_rows = || {
            let written = plan.members.iter().map(|m| {
                let email = (!m.is_removal()).then_some(m.email.as_str());
                (m.external_id.as_str(), email)
            });
            after.member_row_changes(before.org, written)
        };
        let (digest, rows, refs) = std::thread::scope(|s| {
            let digest = s.spawn(|| after.digest());
            let rows = incremental.then(|| s.spawn(member_rows));
            // the read-back's groups, resolved once for the cache's rows and the check
            let refs = after.group_refs();
            (joined(digest), rows.map(joined), refs)
        });
        std::thread::scope(|s| {
            let check = s.spawn(|| after.verify_with(plan, &refs));
            let wrote = match rows {
                Some(rows) => store.load_group_fingerprints().and_then(|held| {
                    tracing::debug!(
                        "cache rows to correct after the push: {} member upsert(s), {} member \
                         delete(s)",
                        rows.upserts.len(),
                        rows.deletes.len()
                    );
                    let groups = refs.row_changes(held);
                    tracing::debug!(
                        "cache rows to correct after the push: {} group(s) to write, {} to drop",
                        groups.upserts.len(),
                        groups.deletes.len()
                    );
                    store.write_cache_rows(&digest, &rows, &groups)?;
                    Ok(true)
                }),
                None => store.replace_cache(&digest, || after.baseline_with(&refs)),
            };
            let problems = joined(check);
            let wrote = wrote.context("writing what the organization shows to the sync cache")?;
            Ok((wrote, problems))
        })
    }

    /// Sends `batches` of a plan, one request at a time, pipelined: while batch i is in flight,
    /// the next body is encoded and the previous (confirmed) batch is written to the cache. A
    /// batch is recorded only after the server confirmed it. `what` names the batches in
    /// messages; `record` counts requests across calls. `members_done` is told when every batch
    /// with members is confirmed.
    #[allow(clippy::too_many_arguments)]
    async fn push(
        client: &BitwardenClient,
        plan: &Plan,
        batches: &[Batch],
        what: &str,
        invite: bool,
        store: &mut Store,
        record: &mut RunRecord,
        progress: &dyn Progress,
        pushing: &std::sync::atomic::AtomicBool,
        mut members_done: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> anyhow::Result<()> {
        /// Says a push is going on (a stop request waits for the request in flight) until
        /// dropped, whichever way the push ends.
        struct Pushing<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Pushing<'_> {
            fn drop(&mut self) {
                self.0.store(false, std::sync::atomic::Ordering::SeqCst);
            }
        }
        pushing.store(true, std::sync::atomic::Ordering::SeqCst);
        let _pushing = Pushing(pushing);
        let total = batches.len();
        let encode = |b: &Batch| -> anyhow::Result<Vec<u8>> {
            ImportRequest::from_batch(plan, b, invite)
                .to_json()
                .context("encoding the import request")
        };
        // A confirmed batch is recorded in the cache, and what it applied in the run's counts.
        let commit = |store: &mut Store, record: &mut RunRecord, j: usize| -> anyhow::Result<()> {
            let b = &batches[j];
            let members = &plan.members[b.members.clone()];
            record.invited += members
                .iter()
                .filter(|m| m.action == crate::engine::diff::MemberAction::Invite)
                .count() as u64;
            record.removed += members.iter().filter(|m| m.is_removal()).count() as u64;
            record.groups_changed += b.groups.len() as u64;
            if let Err(e) = store.record_progress(record) {
                tracing::warn!("recording the run's counts after {what} {}: {e:#}", j + 1);
            }
            store
                .commit_batch(
                    members,
                    &plan.groups[b.groups.clone()],
                    b.overwrite_existing,
                )
                .with_context(|| {
                    format!(
                        "recording {what} {}/{total} (confirmed by the server) in the sync \
                         cache; the next sync sends it again",
                        j + 1
                    )
                })?;
            crate::test_panic_point("after-batch");
            Ok(())
        };
        let applied = applied_message;
        let mut body = match batches.first() {
            Some(b) => encode(b)?,
            None => Vec::new(),
        };
        // told once the last batch with members is confirmed (at once when none has members)
        let last_with_members = batches.iter().rposition(|b| !b.members.is_empty());
        let mut members_confirmed = |i: Option<usize>| {
            if i == last_with_members
                && let Some(done) = members_done.take()
            {
                let _ = done.send(());
            }
        };
        members_confirmed(None);
        let mut confirmed: Option<usize> = None;
        for (i, b) in batches.iter().enumerate() {
            if progress.cancelled() {
                if let Some(j) = confirmed.take() {
                    commit(store, record, j)?;
                }
                return Err(Interrupted(format!(
                    "sync stopped before {what} {}/{total}: {}",
                    i + 1,
                    applied(record.requests)
                ))
                .into());
            }
            progress.set_fraction(i as f32 / total as f32);
            progress.stage(&format!(
                "Pushing {what} {}/{total} ({} members, {} groups)",
                i + 1,
                b.members.len(),
                b.groups.len()
            ));
            let previous = confirmed.take();
            let (sent, next, recorded) = tokio::join!(
                client.import(&body),
                async { batches.get(i + 1).map(encode).transpose() },
                async {
                    match previous {
                        Some(j) => commit(store, record, j),
                        None => Ok(()),
                    }
                }
            );
            recorded?;
            sent.with_context(|| {
                format!(
                    "import {what} {}/{total} ({} members, {} groups) failed; {}",
                    i + 1,
                    b.members.len(),
                    b.groups.len(),
                    applied(record.requests)
                )
            })?;
            confirmed = Some(i);
            members_confirmed(Some(i));
            record.requests += 1;
            record.bytes_pushed += body.len() as u64;
            if let Some(next) = next? {
                body = next;
            }
        }
        if let Some(j) = confirmed.take() {
            commit(store, record, j)?;
        }
        Ok(())
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

/// What a plan against a server without the read API says when it may remove members.
pub const OWNERS_UNSEEN: &str = "this server has no read API (Vaultwarden), so the connector \
     cannot see who is an owner: owners are protected only through sync.protected_emails. Add \
     the owners' addresses there (Vaultwarden revokes a co-owner the import marks deleted, and \
     keeps the last owner)";

/// What an error leaves behind, counted over every request of a sync.
/// The organization a sync read before its push, with its digest and whether the cache held
/// it row for row at that moment.
struct Before<'a> {
    /// (the read-back takes the member ids of the groups it does not ask for again)
    org: &'a mut Organization,
    digest: String,
    held: bool,
}

/// The organization as read at the start of a sync, with what the plan needs of it.
struct PreparedOrg {
    org: Organization,
    digest: String,
    base: Cache,
    /// The groups (externalIds) whose members were read from the server; the others' came
    /// from the sync cache.
    read: Vec<String>,
}

/// A read running on a task of its own (the organization's, started by
/// [`Connector::spawn_org_read`], or the member list's after an early member push); dropping
/// it stops the read.
struct Background<T>(tokio::task::JoinHandle<anyhow::Result<T>>);

impl<T> Background<T> {
    /// Waits for the read; `what` names it if the task ended without an answer.
    async fn finish(mut self, what: &str) -> anyhow::Result<T> {
        match (&mut self.0).await {
            Ok(r) => r,
            Err(e) => Err(anyhow!("{what} stopped: {e}")),
        }
    }
}

impl<T> Drop for Background<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The members with an externalId the organization held before a push with `overwriteExisting`
/// that it no longer shows, and that the plan did not remove itself: the server removed them
/// because the push did not list them.
fn removed_by_server(before: &Organization, after: &Organization, plan: &Plan) -> u64 {
    if !plan.overwrite_existing {
        return 0;
    }
    let now: std::collections::HashSet<&str> = after
        .members
        .iter()
        .filter_map(|m| m.external_id.as_deref())
        .collect();
    let planned: std::collections::HashSet<&str> = plan
        .members
        .iter()
        .filter(|m| m.is_removal())
        .map(|m| m.external_id.as_str())
        .collect();
    before
        .members
        .iter()
        .filter_map(|m| m.external_id.as_deref())
        .filter(|e| !now.contains(e) && !planned.contains(e))
        .count() as u64
}

/// Why the member list read back after a push is taken for a short answer, if it is: more
/// members with an externalId are missing from it than the plan removed, by more than
/// `sync.max_removal_percent` (the same check as the list read before the plan).
fn read_back_short(
    before: &Organization,
    after: &Organization,
    plan: &Plan,
    limits: GuardLimits,
) -> Option<String> {
    fn with_ext(o: &Organization) -> std::collections::HashSet<&str> {
        o.members
            .iter()
            .filter_map(|m| m.external_id.as_deref())
            .collect()
    }
    let (was, now) = (with_ext(before), with_ext(after));
    let removed: std::collections::HashSet<&str> = plan
        .members
        .iter()
        .filter(|m| m.is_removal())
        .map(|m| m.external_id.as_str())
        .collect();
    // the members the organization held before and the plan kept
    let expected = was.iter().filter(|e| !removed.contains(*e)).count();
    let kept = was
        .iter()
        .filter(|e| !removed.contains(*e) && now.contains(*e))
        .count();
    // (with overwriteExisting the server also removes members the plan did not know: a
    // member list short of them is what the admin asked for)
    if plan.overwrite_existing {
        return None;
    }
    check_member_list(expected, kept, limits)
}

fn applied_message(done: u64) -> String {
    match done {
        0 => "nothing was applied".to_string(),
        n => format!("requests 1-{n} were applied and recorded; the next sync sends the rest"),
    }
}

/// The run's progress, which also shows a wait for the request budget ("waiting 12 s for the
/// request budget") while it lasts, and then the stage again.
struct BudgetProgress<'a> {
    inner: &'a dyn Progress,
    /// The last stage shown, and whether a wait is shown instead.
    state: std::sync::Mutex<(String, Option<u64>)>,
}

impl<'a> BudgetProgress<'a> {
    fn new(inner: &'a dyn Progress) -> BudgetProgress<'a> {
        BudgetProgress {
            inner,
            state: Default::default(),
        }
    }

    /// Runs `work`, showing the waits of `client`'s request budget meanwhile.
    async fn while_waiting<T>(
        &self,
        client: Option<&BitwardenClient>,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let Some(client) = client else {
            return work.await;
        };
        let mut work = std::pin::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return out,
                () = tokio::time::sleep(std::time::Duration::from_millis(100)) => {
                    self.show_wait(client.budget().waiting());
                }
            }
        }
    }

    /// Shows a wait of `left` (from a second on), or the stage again once it is over.
    fn show_wait(&self, left: Option<std::time::Duration>) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match left.filter(|d| d.as_secs_f64() >= 1.0) {
            Some(d) => {
                let secs = d.as_secs_f64().ceil() as u64;
                if st.1 != Some(secs) {
                    st.1 = Some(secs);
                    self.inner
                        .stage(&format!("Waiting {secs} s for the request budget"));
                }
            }
            None => {
                if st.1.take().is_some() {
                    self.inner.stage(&st.0);
                }
            }
        }
    }
}

impl Progress for BudgetProgress<'_> {
    fn stage(&self, message: &str) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.0 = message.to_string();
        st.1 = None;
        self.inner.stage(message);
    }
    fn count(&self, n: u64) {
        self.inner.count(n);
    }
    fn cancelled(&self) -> bool {
        self.inner.cancelled()
    }
    fn set_fraction(&self, fraction: f32) {
        self.inner.set_fraction(fraction);
    }
}

/// Progress while the member requests go out during the group read: the push owns the status
/// line; the read's stage and count are kept (and logged) and shown again once the push is done,
/// if the read is still going.
struct SharedProgress<'a> {
    inner: &'a dyn Progress,
    state: std::sync::Mutex<SharedState>,
}

#[derive(Default)]
struct SharedState {
    pushing: bool,
    /// The read's last stage and count; `None` once the read is over.
    read: Option<(String, Option<u64>)>,
}

/// The read's side of a [`SharedProgress`].
struct ReadSide<'s, 'a>(&'s SharedProgress<'a>);
/// The push's side of a [`SharedProgress`].
struct PushSide<'s, 'a>(&'s SharedProgress<'a>);

impl<'a> SharedProgress<'a> {
    fn new(inner: &'a dyn Progress) -> SharedProgress<'a> {
        SharedProgress {
            inner,
            state: std::sync::Mutex::new(SharedState::default()),
        }
    }
    fn read(&self) -> ReadSide<'_, 'a> {
        ReadSide(self)
    }
    fn push(&self) -> PushSide<'_, 'a> {
        PushSide(self)
    }
    fn with<T>(&self, f: impl FnOnce(&mut SharedState) -> T) -> T {
        // a poisoned lock only means a panicking thread held it: the state is still usable
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut s)
    }
    fn read_done(&self) {
        self.with(|s| s.read = None);
    }
    fn push_done(&self) {
        let read = self.with(|s| {
            s.pushing = false;
            s.read.clone()
        });
        if let Some((stage, count)) = read {
            self.inner.stage(&stage);
            if let Some(n) = count {
                self.inner.count(n);
            }
        }
    }
}

impl Progress for ReadSide<'_, '_> {
    fn stage(&self, message: &str) {
        let pushing = self.0.with(|s| {
            s.read = Some((message.to_string(), None));
            s.pushing
        });
        if pushing {
            tracing::info!("{message}");
        } else {
            self.0.inner.stage(message);
        }
    }
    fn count(&self, n: u64) {
        let pushing = self.0.with(|s| {
            if let Some((_, count)) = &mut s.read {
                *count = Some(n);
            }
            s.pushing
        });
        if !pushing {
            self.0.inner.count(n);
        }
    }
    fn cancelled(&self) -> bool {
        self.0.inner.cancelled()
    }
}

impl Progress for PushSide<'_, '_> {
    fn stage(&self, message: &str) {
        self.0.with(|s| s.pushing = true);
        self.0.inner.stage(message);
    }
    fn count(&self, n: u64) {
        self.0.inner.count(n);
    }
    fn cancelled(&self) -> bool {
        self.0.inner.cancelled()
    }
    fn set_fraction(&self, fraction: f32) {
        self.0.inner.set_fraction(fraction);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records what reaches the status line.
    #[derive(Default)]
    struct Shown(Mutex<Vec<String>>);
    impl Progress for Shown {
        fn stage(&self, message: &str) {
            self.0.lock().unwrap().push(message.to_string());
        }
        fn count(&self, n: u64) {
            self.0.lock().unwrap().push(format!("#{n}"));
        }
    }

    #[test]
    fn the_push_owns_the_status_line_and_the_read_comes_back_after_it() {
        let shown = Shown::default();
        let shared = SharedProgress::new(&shown);
        let (read, push) = (shared.read(), shared.push());
        read.stage("Reading users");
        read.count(1000);
        push.stage("Pushing member batch 1/2");
        read.stage("Reading groups");
        read.count(500);
        push.stage("Pushing member batch 2/2");
        shared.push_done();
        read.count(900);
        assert_eq!(
            *shown.0.lock().unwrap(),
            [
                "Reading users",
                "#1000",
                "Pushing member batch 1/2",
                "Pushing member batch 2/2",
                "Reading groups",
                "#500",
                "#900"
            ]
        );
    }

    #[test]
    fn a_finished_read_is_not_shown_again() {
        let shown = Shown::default();
        let shared = SharedProgress::new(&shown);
        let (read, push) = (shared.read(), shared.push());
        read.stage("Reading groups");
        push.stage("Pushing member batch 1/1");
        shared.read_done();
        shared.push_done();
        assert_eq!(
            *shown.0.lock().unwrap(),
            ["Reading groups", "Pushing member batch 1/1"]
        );
    }
}
