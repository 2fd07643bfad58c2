//! The application: login screen, tab bar, error banner, polling timer, and the dispatch of
//! worker outcomes to the tabs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::dashboard::Dashboard;
use super::more::More;
use super::settings::Settings;
use super::worker::{Job, Outcome, Status, Worker};
use crate::config;
use crate::secrets::SecretStore;

/// How the window is started (tests pass a short polling interval).
pub struct AppOptions {
    pub data_dir: PathBuf,
    pub secrets: Arc<dyn SecretStore>,
    /// Overrides `sync.interval_minutes` (tests).
    pub poll_interval: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Dashboard,
    Settings,
    More,
}

/// Which Bitwarden server the login form points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerChoice {
    Us,
    Eu,
    SelfHosted,
}

struct LoginForm {
    client_id: String,
    client_secret: String,
    show_secret: bool,
    show_server: bool,
    server: ServerChoice,
    self_hosted_url: String,
    api_url: String,
    identity_url: String,
}

/// A notification at the bottom of the window, in a strip of its own (it covers nothing): an
/// error stays until dismissed, information goes away after [`INFO_SHOWN`].
pub struct Banner {
    /// What happened, one sentence.
    pub text: String,
    /// Which field or button to check.
    pub hint: Option<String>,
    /// Every cause, folded under "Details".
    pub details: Option<String>,
    pub error: bool,
    pub shown: Instant,
}

/// How long an information notification stays.
pub const INFO_SHOWN: Duration = Duration::from_secs(5);

/// How often the window reads the status again while idle (the service's runs, its tables).
const REFRESH_EVERY: Duration = Duration::from_secs(10);

pub struct App {
    pub opts: AppOptions,
    pub worker: Worker,
    pub tab: Tab,
    pub status: Option<Status>,
    pub banner: Option<Banner>,
    login: LoginForm,
    pub dashboard: Dashboard,
    pub settings: Settings,
    pub more: More,
    /// The "Import from Bitwarden Directory Connector…" dialog.
    pub import: super::bwdc_import::ImportPanel,
    /// Polling: when the next automatic sync runs (None = not polling).
    pub next_run: Option<Instant>,
    /// Polling: when the fast lane looks at the directory's change feed next.
    pub next_look: Option<Instant>,
    pub polling: bool,
    pub syncs_started_by_polling: usize,
    /// Stop Sync was pressed during a sync: release the lock when it ends.
    pending_stop: bool,
    /// The theme and window size, remembered across restarts.
    look: super::look::Memory,
    /// When the status was last asked for.
    refreshed: Instant,
}

impl App {
    pub fn new(ctx: &egui::Context, opts: AppOptions) -> App {
        let repaint_ctx = ctx.clone();
        let worker = Worker::start(
            opts.data_dir.clone(),
            Arc::clone(&opts.secrets),
            Arc::new(move || repaint_ctx.request_repaint()),
        );
        worker.send(Job::Refresh);
        // read once: the login form's server fields and the Settings form
        let loaded = config::load(&opts.data_dir);
        let banner = loaded.as_ref().err().map(|e| Banner {
            text: "The configuration (config.toml) could not be read: Settings shows defaults."
                .to_string(),
            hint: Some("Fix config.toml, or Save in Settings to write a new one.".to_string()),
            details: Some(super::words::text(&format!("{e:#}"))),
            error: true,
            shown: Instant::now(),
        });
        let cfg = loaded.as_ref().cloned().unwrap_or_default();
        let url = cfg.server.url.clone().unwrap_or_default();
        let server = match url.trim_end_matches('/') {
            "" | "https://vault.bitwarden.com" => ServerChoice::Us,
            "https://vault.bitwarden.eu" => ServerChoice::Eu,
            _ => ServerChoice::SelfHosted,
        };
        let settings = Settings::from_loaded(loaded, opts.secrets.as_ref());
        let more = More::new(&opts.data_dir);
        let look = super::look::Memory::start(ctx, &opts.data_dir);
        App {
            login: LoginForm {
                client_id: String::new(),
                client_secret: String::new(),
                show_secret: false,
                show_server: false,
                server,
                self_hosted_url: if server == ServerChoice::SelfHosted {
                    url
                } else {
                    String::new()
                },
                api_url: cfg.server.api_url.clone().unwrap_or_default(),
                identity_url: cfg.server.identity_url.clone().unwrap_or_default(),
            },
            opts,
            worker,
            tab: Tab::Dashboard,
            status: None,
            banner,
            dashboard: Dashboard::default(),
            settings,
            more,
            import: Default::default(),
            next_run: None,
            next_look: None,
            polling: false,
            syncs_started_by_polling: 0,
            pending_stop: false,
            look,
            refreshed: Instant::now(),
        }
    }

    /// An error that stays until dismissed (in the window's words: see [`super::words`]).
    pub fn error(&mut self, text: impl Into<String>) {
        self.banner = Some(Banner {
            text: super::words::text(&text.into()),
            hint: None,
            details: None,
            error: true,
            shown: Instant::now(),
        });
    }

    /// An error with its hint and details.
    pub fn said(&mut self, said: super::words::Said) {
        self.banner = Some(Banner {
            text: said.what,
            hint: said.hint,
            details: said.details,
            error: true,
            shown: Instant::now(),
        });
    }

    /// Information that goes away after [`INFO_SHOWN`].
    pub fn info(&mut self, text: impl Into<String>) {
        self.banner = Some(Banner {
            text: super::words::text(&text.into()),
            hint: None,
            details: None,
            error: false,
            shown: Instant::now(),
        });
    }

    /// Sends a job unless one is running (then says so).
    pub fn start(&mut self, job: Job) {
        if !job.quiet()
            && let Some(running) = self.worker.busy()
        {
            self.error(format!(
                "{} is still running: wait for it to finish, or Cancel it.",
                super::words::button(running)
            ));
            return;
        }
        if !job.quiet()
            && let Some(b) = &self.banner
            && !b.error
        {
            // the previous operation's information does not stay during the next one
            self.banner = None;
        }
        if !self.worker.send(job) {
            self.error("The background worker stopped: close the window and open it again.");
        }
    }

    /// The polling interval: the override, else `sync.interval_minutes` (minimum 5).
    pub fn poll_interval(&self) -> Duration {
        if let Some(d) = self.opts.poll_interval {
            return d;
        }
        let minutes = config::load(&self.opts.data_dir)
            .map(|c| c.sync.interval_minutes)
            .unwrap_or(5)
            .max(5);
        Duration::from_secs(u64::from(minutes) * 60)
    }

    pub fn start_polling(&mut self) {
        self.start(Job::StartPolling);
    }

    /// How often the fast lane looks while polling: `sync.watch_seconds` (`None`: 0, off).
    pub fn watch_interval(&self) -> Option<Duration> {
        let seconds = config::load(&self.opts.data_dir)
            .map(|c| c.sync.watch_seconds)
            .unwrap_or(crate::config::DEFAULT_WATCH_SECONDS);
        (seconds > 0).then(|| Duration::from_secs(seconds))
    }

    pub fn stop_polling(&mut self) {
        self.polling = false;
        self.next_run = None;
        self.next_look = None;
        if self.worker.busy().is_some() {
            // the lock is released after the running sync
            self.pending_stop = true;
        } else {
            self.start(Job::StopPolling);
        }
    }

    fn handle(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::LoggedIn => {
                self.login.client_secret.clear();
                self.info("Logged in: the API key was accepted and stored.");
            }
            Outcome::Refreshed(s) => {
                let known = self.status.as_ref().and_then(|old| old.problem.as_ref());
                if let Some(p) = &s.problem
                    && known != Some(p)
                {
                    self.error(p.clone());
                }
                self.dashboard.set_runs(&s.runs);
                self.status = Some(*s);
            }
            Outcome::Tables(t) => self.dashboard.set_tables(*t),
            Outcome::Tested(r) => {
                self.dashboard.set_tables(*r);
                self.info("Test complete: nothing was sent to Bitwarden.");
            }
            Outcome::Synced(r) => {
                let msg = match r.outcome {
                    crate::store::RunOutcome::Unchanged => {
                        "Sync complete: nothing to change.".to_string()
                    }
                    _ => format!(
                        "Sync complete: {} ({} request(s)).",
                        super::words::changes(
                            r.plan.invites() as u64,
                            (r.server.revoked, r.server.restored),
                            if r.plan.import_revokes {
                                0
                            } else {
                                r.plan.removals() as u64
                            },
                            r.plan.groups.len() as u64
                        ),
                        r.requests
                    ),
                };
                self.dashboard.set_sync(*r);
                self.info(msg);
                self.more.reload_log();
            }
            Outcome::CacheCleared => {
                self.info("The sync cache was cleared: the next sync sends everything.");
                self.start(Job::Refresh);
            }
            Outcome::PollingStarted => {
                self.polling = true;
                self.next_run = Some(Instant::now());
                self.next_look = self.watch_interval().map(|d| Instant::now() + d);
            }
            Outcome::PollingStopped => {
                self.polling = false;
                self.next_run = None;
                self.next_look = None;
            }
            Outcome::Cancelled { job, message } => {
                self.more.reload_log();
                self.info(format!(
                    "{} cancelled: {}",
                    super::words::button(job),
                    super::words::sentence(&message)
                ));
            }
            Outcome::Failed {
                job,
                message,
                said,
                refused,
            } => {
                if refused {
                    self.dashboard.refused = Some(message);
                }
                if job == "Start sync" {
                    self.polling = false;
                    self.next_run = None;
                    self.next_look = None;
                }
                self.more.reload_log();
                self.said(said);
            }
        }
    }

    fn poll_timer(&mut self, ctx: &egui::Context) {
        if self.pending_stop && self.worker.busy().is_none() {
            self.pending_stop = false;
            self.start(Job::StopPolling);
        }
        self.look_timer(ctx);
        let Some(at) = self.next_run else {
            return;
        };
        let now = Instant::now();
        if now >= at {
            if self.worker.busy().is_none() {
                self.syncs_started_by_polling += 1;
                self.start(Job::Sync {
                    allow_mass_removal: false,
                });
                self.next_run = Some(now + self.poll_interval());
            } else {
                ctx.request_repaint_after(Duration::from_millis(200));
            }
        } else {
            ctx.request_repaint_after(at - now);
        }
    }

    /// While polling, the fast lane's look at the change feed every `sync.watch_seconds`
    /// (after the running operation, if any).
    fn look_timer(&mut self, ctx: &egui::Context) {
        let Some(at) = self.next_look else {
            return;
        };
        let now = Instant::now();
        if now < at {
            ctx.request_repaint_after(at - now);
            return;
        }
        if self.worker.busy().is_some() {
            ctx.request_repaint_after(Duration::from_millis(200));
            return;
        }
        self.start(Job::Watch);
        self.next_look = self.watch_interval().map(|d| now + d);
    }

    /// An information notification past its time goes; an error stays.
    fn expire_banner(&mut self, ctx: &egui::Context) {
        if let Some(b) = &self.banner
            && !b.error
        {
            let left = INFO_SHOWN.saturating_sub(b.shown.elapsed());
            if left.is_zero() {
                self.banner = None;
            } else {
                ctx.request_repaint_after(left);
            }
        }
    }

    /// The notification: its text on the left, wrapped in its own width, the Dismiss button
    /// at the right in a column of its own (the text never runs under it); the hint below the
    /// text and the causes folded under "Details".
    fn banner_ui(&mut self, ui: &mut egui::Ui) {
        let Some(b) = &self.banner else {
            return;
        };
        let (fill, text_color) = if b.error {
            (
                egui::Color32::from_rgb(0xb0, 0x1e, 0x2a),
                egui::Color32::WHITE,
            )
        } else {
            (
                egui::Color32::from_rgb(0x17, 0x5d, 0xdc),
                egui::Color32::WHITE,
            )
        };
        let mut close = false;
        egui::Frame::new()
            .fill(fill)
            .inner_margin(8.0)
            .corner_radius(4.0)
            .show(ui, |ui| {
                ui.set_width(ui.available_width());
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Min), |ui| {
                    if ui.button("Dismiss").clicked() {
                        close = true;
                    }
                    ui.add_space(8.0);
                    ui.with_layout(egui::Layout::top_down(egui::Align::Min), |ui| {
                        ui.visuals_mut().override_text_color = Some(text_color);
                        ui.add(egui::Label::new(egui::RichText::new(&b.text).strong()).wrap());
                        if let Some(hint) = &b.hint {
                            ui.add(egui::Label::new(hint).wrap());
                        }
                        if let Some(details) = &b.details {
                            egui::CollapsingHeader::new("Details")
                                .id_salt("banner-details")
                                .show(ui, |ui| {
                                    egui::ScrollArea::vertical()
                                        .max_height(120.0)
                                        .show(ui, |ui| {
                                            ui.add(egui::Label::new(details).wrap());
                                        });
                                });
                        }
                    });
                });
            });
        if close {
            self.banner = None;
        }
    }

    #[allow(
        clippy::too_many_lines,
        reason = "immediate-mode UI: the login form's widgets laid out in order"
    )]
    fn login_ui(&mut self, ui: &mut egui::Ui) {
        ui.vertical_centered(|ui| {
            ui.add_space(30.0);
            ui.heading("Welcome to the Directory Connector");
            ui.label("Log in with an organization API key below.");
            ui.label("Find it in the Admin Console: Settings > Organization info > API key.");
            ui.add_space(12.0);
        });
        let busy = self.worker.busy().is_some();
        // Enter in a field of the form submits it, as the Log In button does
        let mut submitted = false;
        egui::Grid::new("login")
            .num_columns(2)
            .spacing([12.0, 8.0])
            .show(ui, |ui| {
                let l = ui.label("Client ID");
                let id = ui
                    .add(
                        egui::TextEdit::singleline(&mut self.login.client_id)
                            .hint_text("organization.xxxxxxxx-...")
                            .desired_width(380.0),
                    )
                    .labelled_by(l.id);
                submitted |= id.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                ui.end_row();
                let l = ui.label("Client secret");
                ui.horizontal(|ui| {
                    let secret = ui
                        .add(
                            egui::TextEdit::singleline(&mut self.login.client_secret)
                                .password(!self.login.show_secret)
                                .desired_width(380.0),
                        )
                        .labelled_by(l.id);
                    submitted |=
                        secret.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                    let toggle = if self.login.show_secret {
                        "Hide"
                    } else {
                        "Show"
                    };
                    if ui
                        .button(toggle)
                        .on_hover_text("Show or hide the client secret")
                        .clicked()
                    {
                        self.login.show_secret = !self.login.show_secret;
                    }
                });
                ui.end_row();
            });
        ui.add_space(8.0);
        ui.checkbox(&mut self.login.show_server, "Server settings");
        if self.login.show_server {
            egui::Frame::group(ui.style()).show(ui, |ui| {
                ui.horizontal(|ui| {
                    ui.radio_value(
                        &mut self.login.server,
                        ServerChoice::Us,
                        "bitwarden.com (US)",
                    );
                    ui.radio_value(
                        &mut self.login.server,
                        ServerChoice::Eu,
                        "bitwarden.eu (EU)",
                    );
                    ui.radio_value(
                        &mut self.login.server,
                        ServerChoice::SelfHosted,
                        "Self-hosted",
                    );
                });
                egui::Grid::new("server").num_columns(2).show(ui, |ui| {
                    if self.login.server == ServerChoice::SelfHosted {
                        let l = ui.label("Server URL");
                        ui.add(
                            egui::TextEdit::singleline(&mut self.login.self_hosted_url)
                                .hint_text("https://vault.example.com")
                                .desired_width(380.0),
                        )
                        .labelled_by(l.id);
                        ui.end_row();
                    }
                    let l = ui.label("Custom API URL (optional)");
                    ui.add(
                        egui::TextEdit::singleline(&mut self.login.api_url).desired_width(380.0),
                    )
                    .labelled_by(l.id);
                    ui.end_row();
                    let l = ui.label("Custom identity URL (optional)");
                    ui.add(
                        egui::TextEdit::singleline(&mut self.login.identity_url)
                            .desired_width(380.0),
                    )
                    .labelled_by(l.id);
                    ui.end_row();
                });
            });
        }
        ui.add_space(8.0);
        ui.horizontal(|ui| {
            if ui.add_enabled(!busy, egui::Button::new("Log In")).clicked() || (submitted && !busy)
            {
                self.submit_login();
            }
            if busy {
                ui.spinner();
                if ui.button("Cancel").clicked() {
                    self.worker.cancel();
                }
            }
        });
        // the login's messages right under its button, not at the bottom of the window
        ui.add_space(4.0);
        ui.scope(|ui| {
            ui.set_max_width(560.0);
            self.banner_ui(ui);
        });
        ui.add_space(16.0);
        ui.label("Switching from the official connector? Import its settings and secrets:");
        super::bwdc_import::button(self, ui);
    }

    /// After an import: the forms and the login state read again.
    pub fn reload_after_import(&mut self) {
        self.settings = Settings::load(&self.opts.data_dir, self.opts.secrets.as_ref());
        self.worker.send(Job::Refresh);
    }

    /// upstream's checks of the client id and secret, with its messages.
    fn login_problem(id: &str, secret: &str) -> Option<&'static str> {
        let id = id.trim();
        if id.is_empty() {
            return Some("Client Id is required.");
        }
        if !id.starts_with("organization") {
            return Some("Api Key must belong to an Organization");
        }
        if secret.trim().is_empty() {
            return Some("Client Secret is required.");
        }
        let guid = id.strip_prefix("organization.").unwrap_or_default();
        if uuid::Uuid::parse_str(guid).is_err() {
            return Some("Invalid Client Id provided.");
        }
        None
    }

    fn submit_login(&mut self) {
        let l = &self.login;
        let url = match l.server {
            ServerChoice::Us => None,
            ServerChoice::Eu => Some("https://vault.bitwarden.eu".to_string()),
            ServerChoice::SelfHosted => Some(l.self_hosted_url.trim().to_string()),
        };
        if l.server == ServerChoice::SelfHosted && url.as_deref().is_none_or(str::is_empty) {
            self.error("Server URL: enter the address of your Bitwarden server.");
            return;
        }
        if let Some(problem) = App::login_problem(&l.client_id, &l.client_secret) {
            self.error(problem);
            return;
        }
        let opt = |s: &str| {
            let s = s.trim();
            (!s.is_empty()).then(|| s.to_string())
        };
        let api = opt(&l.api_url);
        let identity = opt(&l.identity_url);
        let changes = [
            ("server.url", url.as_deref()),
            ("server.api_url", api.as_deref()),
            ("server.identity_url", identity.as_deref()),
        ];
        if let Err(e) = config::set_values(&self.opts.data_dir, &changes) {
            self.error(format!("Server settings: {e:#}"));
            return;
        }
        let job = Job::Login {
            client_id: l.client_id.trim().to_string(),
            client_secret: l.client_secret.trim().to_string(),
        };
        self.start(job);
    }

    /// The whole window, one frame.
    pub fn frame(&mut self, ui: &mut egui::Ui) {
        for o in self.worker.poll() {
            self.handle(o);
        }
        self.poll_timer(ui.ctx());
        if self.worker.busy().is_some() {
            ui.ctx().request_repaint_after(Duration::from_millis(100));
        }
        let logged_in = self.status.as_ref().map(|s| s.logged_in);
        self.look.frame(ui.ctx());
        self.expire_banner(ui.ctx());
        if logged_in == Some(true)
            && self.worker.busy().is_none()
            && self.refreshed.elapsed() >= REFRESH_EVERY
        {
            // the service's runs and tables show up without a click
            self.refreshed = Instant::now();
            self.worker.send(Job::Refresh);
        }
        if logged_in == Some(true) {
            ui.ctx().request_repaint_after(REFRESH_EVERY);
        }
        egui::Panel::top("top").show(ui, |ui| {
            // in a narrow window the theme switch goes to a second row, never over the tabs
            let theme = |ui: &mut egui::Ui| {
                let dark = ui.visuals().dark_mode;
                if ui.selectable_label(dark, "Dark").clicked() {
                    ui.ctx().set_theme(egui::Theme::Dark);
                }
                if ui.selectable_label(!dark, "Light").clicked() {
                    ui.ctx().set_theme(egui::Theme::Light);
                }
            };
            let fits = ui
                .horizontal(|ui| {
                    ui.heading("Directory Connector");
                    if logged_in == Some(true) {
                        ui.separator();
                        ui.selectable_value(&mut self.tab, Tab::Dashboard, "Dashboard");
                        ui.selectable_value(&mut self.tab, Tab::Settings, "Settings");
                        ui.selectable_value(&mut self.tab, Tab::More, "More");
                    }
                    let fits = ui.available_width() >= 110.0;
                    if fits {
                        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), theme);
                    }
                    fits
                })
                .inner;
            if !fits {
                ui.horizontal(theme);
            }
        });
        if logged_in != Some(false) && self.banner.is_some() {
            // a strip of its own at the bottom: the notification covers no control or field
            egui::Panel::bottom("notification")
                .frame(egui::Frame::new().inner_margin(6.0))
                .show(ui, |ui| self.banner_ui(ui));
        }
        egui::CentralPanel::default().show(ui, |ui| {
            if logged_in == Some(true) && self.tab == Tab::Settings {
                // the form scrolls by itself, and wraps in a narrow window
                super::settings::ui(self, ui);
                return;
            }
            // every control reachable in any window size: the page scrolls both ways when it
            // does not fit (the tables and the log scroll inside it)
            egui::ScrollArea::both()
                .id_salt("page")
                .auto_shrink([false, false])
                .show(ui, |ui| match logged_in {
                    None => {
                        ui.spinner();
                        ui.label("Loading...");
                    }
                    Some(false) => self.login_ui(ui),
                    Some(true) => match self.tab {
                        Tab::Dashboard => super::dashboard::ui(self, ui),
                        Tab::Settings => super::settings::ui(self, ui),
                        Tab::More => super::more::ui(self, ui),
                    },
                });
        });
        super::bwdc_import::dialog(self, ui.ctx());
    }

    /// Logs out: forgets the stored API key and stops polling.
    pub fn logout(&mut self) {
        if self.polling {
            self.stop_polling();
        }
        let conn = crate::connector::Connector::with_store(
            &self.opts.data_dir,
            Arc::clone(&self.opts.secrets),
        );
        match conn.and_then(|c| c.logout()) {
            Ok(()) => {
                if let Some(s) = &mut self.status {
                    s.logged_in = false;
                }
                // the next secret is typed hidden again
                self.login.show_secret = false;
                self.login.client_secret.clear();
                self.tab = Tab::Dashboard;
                self.info("Logged out: the API key was removed from the secret store.");
            }
            Err(e) => self.error(format!("Log out failed: {e:#}")),
        }
    }
}

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.frame(ui);
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        // stop polling and let a running sync end on a batch boundary
        self.next_run = None;
        self.next_look = None;
        self.look.flush();
        self.worker.shutdown(super::SHUTDOWN_WAIT);
    }
}
