//! Settings tab: the Bitwarden server, the directory type, every field of its configuration,
//! the sync options, the schedule and the alerts, built from the same key table as `config set`
//! (same names, help and validation). Every problem of the form is checked as it is typed, with
//! the checks `config set` and `config validate` make, and shown under its field in the form's
//! words; Save writes every change that is valid and names the fields it could not save.
//! Secrets go to the secret store, never into `config.toml`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::app::App;
use super::labels;
use crate::config::{self, DirectoryType, KEYS, KeyKind, SecretRef};
use crate::secrets::SecretStore;

pub struct Settings {
    /// Current text of each field (bools as "true"/"false").
    pub draft: BTreeMap<&'static str, String>,
    saved: BTreeMap<&'static str, String>,
    /// Whether each secret is in the store.
    secret_stored: BTreeMap<&'static str, bool>,
    /// Every problem of the form as it stands, by key, in the form's words.
    pub problems: BTreeMap<String, String>,
    /// Changed fields whose value is refused on its own (type, range, DN, filter): Save keeps
    /// them in the form, unsaved.
    refused: BTreeSet<&'static str>,
    /// Every problem is shown (after a Save); before, only those of the fields changed.
    show_all: bool,
    /// The draft the problems were computed for.
    checked: Option<BTreeMap<&'static str, String>>,
    /// What an empty field means (its default), by key.
    hints: BTreeMap<&'static str, String>,
    /// Why `config.toml` could not be read (the form then shows defaults).
    pub load_error: Option<String>,
}

/// The keys the Settings tab edits: all of them.
fn form_keys() -> impl Iterator<Item = &'static (&'static str, KeyKind, &'static str)> {
    KEYS.iter()
}

fn kind_of(key: &str) -> KeyKind {
    KEYS.iter()
        .find(|(k, _, _)| *k == key)
        .map_or(KeyKind::Str, |(_, kind, _)| *kind)
}

impl Settings {
    pub fn load(data_dir: &Path, secrets: &dyn SecretStore) -> Settings {
        Settings::from_loaded(config::load(data_dir), secrets)
    }

    /// The form for a config as read from disk; a read error is kept and shown, not dropped.
    pub fn from_loaded(
        loaded: anyhow::Result<config::Config>,
        secrets: &dyn SecretStore,
    ) -> Settings {
        let (cfg, load_error) = match loaded {
            Ok(c) => (c, None),
            Err(e) => (config::Config::default(), Some(format!("{e:#}"))),
        };
        let mut draft = BTreeMap::new();
        let mut secret_stored = BTreeMap::new();
        for (key, kind, _) in form_keys() {
            let v = config::get_value(&cfg, key).ok().flatten();
            let v = match (kind, v) {
                (KeyKind::Bool, v) => v.unwrap_or_else(|| "false".into()),
                (KeyKind::Secret, v) => {
                    secret_stored.insert(*key, matches!(secrets.get(key), Ok(Some(_))));
                    v.unwrap_or_default()
                }
                (_, v) => v.unwrap_or_default(),
            };
            draft.insert(*key, v);
        }
        Settings {
            saved: draft.clone(),
            draft,
            secret_stored,
            problems: BTreeMap::new(),
            refused: BTreeSet::new(),
            show_all: false,
            checked: None,
            hints: BTreeMap::new(),
            load_error,
        }
    }

    /// What the empty field of `key` shows (its default, or what leaving it empty means).
    pub fn hint(&self, key: &str) -> Option<&str> {
        self.hints.get(key).map(String::as_str)
    }

    pub fn is_dirty(&self) -> bool {
        self.draft != self.saved
    }

    /// The changes to write (secrets typed in clear apart: they go to the store).
    #[allow(
        clippy::type_complexity,
        reason = "two plain lists: the file's changes and the secrets to store"
    )]
    fn changes(
        &self,
    ) -> (
        Vec<(&'static str, Option<String>)>,
        Vec<(&'static str, String)>,
    ) {
        let mut changes = Vec::new();
        let mut secrets = Vec::new();
        for (key, kind, _) in form_keys() {
            let new = self.draft.get(key).cloned().unwrap_or_default();
            let old = self.saved.get(key).cloned().unwrap_or_default();
            if new == old {
                continue;
            }
            let trimmed = new.trim().to_string();
            if *kind == KeyKind::Secret && SecretRef::parse(&trimmed).is_none() {
                if !trimmed.is_empty() {
                    secrets.push((*key, new));
                    // a reference left in the file would win over the store
                    changes.push((*key, None));
                }
                continue;
            }
            changes.push((*key, (!trimmed.is_empty()).then_some(trimmed)));
        }
        (changes, secrets)
    }

    /// Whether a problem of `key` is shown: every one after a Save, else a changed field's.
    fn shown(&self, key: &str) -> bool {
        self.show_all || self.draft.get(key) != self.saved.get(key)
    }

    /// Computes every problem of the draft, as `config set` (each value on its own) and
    /// `config validate` (the whole file, the service's settings too) would see it. Runs when
    /// the draft changed since the last check.
    pub fn check(&mut self, data_dir: &Path, secrets: &dyn SecretStore) {
        if self.checked.as_ref() == Some(&self.draft) {
            return;
        }
        let store = secrets.describe();
        let dir_text = self
            .draft
            .get("directory.type")
            .map(|t| t.trim().to_string())
            .unwrap_or_default();
        let directory =
            serde_json::from_value::<DirectoryType>(serde_json::Value::String(dir_text.clone()))
                .ok();
        let mut problems: BTreeMap<String, String> = BTreeMap::new();
        let mut add = |key: &str, message: &str| {
            let words = labels::problem(key, kind_of(key), message, &store);
            problems
                .entry(key.to_string())
                .and_modify(|m| {
                    if !m.contains(&words) {
                        m.push('\n');
                        m.push_str(&words);
                    }
                })
                .or_insert(words);
        };
        let (changes, typed_secrets) = self.changes();
        let mut refused = BTreeSet::new();
        let mut valid: Vec<(&str, Option<&str>)> = Vec::new();
        for (key, value) in &changes {
            if let Some(v) = value {
                let own = config::check_value(key, v)
                    .err()
                    .or_else(|| config::value_problem(key, v, directory));
                if let Some(message) = own {
                    add(key, &message);
                    refused.insert(*key);
                    continue;
                }
            }
            valid.push((key, value.as_deref()));
        }
        let path = config::config_path(data_dir);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut hints = BTreeMap::new();
        match config::apply_changes(&path, &text, &valid) {
            Ok((_, cfg, _)) => {
                let secret_key = directory.and_then(|_| {
                    let prefix = format!("{dir_text}.");
                    KEYS.iter()
                        .find(|(k, kind, _)| *kind == KeyKind::Secret && k.starts_with(&prefix))
                        .map(|(k, _, _)| *k)
                });
                let known = secret_key.is_none_or(|k| {
                    self.secret_stored.get(k).copied().unwrap_or(false)
                        || typed_secrets.iter().any(|(t, _)| *t == k)
                });
                let mut all = config::validate_for(
                    &cfg,
                    known,
                    crate::secrets::plaintext_opt_in(),
                    config::Purpose::Everything,
                );
                all.extend(crate::service::settings_problems(&cfg));
                for p in all {
                    if !refused.contains(p.key.as_str()) {
                        add(&p.key, &p.message);
                    }
                }
                for (key, _, _) in form_keys() {
                    let default = config::default_value(&cfg, key);
                    let hint = match (default, labels::empty_means(key)) {
                        (Some(d), _) if !d.is_empty() => d,
                        (_, Some(m)) => m.to_string(),
                        _ => continue,
                    };
                    hints.insert(*key, hint);
                }
            }
            Err(e) if self.load_error.is_none() => {
                add("", &format!("{e:#}"));
            }
            Err(_) => {}
        }
        self.problems = problems;
        self.refused = refused;
        self.hints = hints;
        self.checked = Some(self.draft.clone());
    }
}

/// Saves every valid change; a field refused on its own stays in the form, marked. Returns the
/// message for the banner: `Err` when something was not saved.
fn save(app: &mut App) -> Result<String, String> {
    let data_dir = app.opts.data_dir.clone();
    app.settings.check(&data_dir, app.opts.secrets.as_ref());
    let s = &app.settings;
    let (changes, secrets) = s.changes();
    let refused: Vec<(&'static str, String)> = s
        .refused
        .iter()
        .map(|k| (*k, s.draft.get(k).cloned().unwrap_or_default()))
        .collect();
    let refs: Vec<(&str, Option<&str>)> = changes
        .iter()
        .filter(|(k, _)| !s.refused.contains(k))
        .map(|(k, v)| (*k, v.as_deref()))
        .collect();
    if !refs.is_empty() {
        config::set_values(&data_dir, &refs)
            .map_err(|e| labels::in_words(&format!("Settings not saved: {e:#}")))?;
    }
    for (key, value) in &secrets {
        app.opts.secrets.set(key, value).map_err(|e| {
            format!(
                "{} could not be stored in {}: {e:#}",
                labels::label(key),
                app.opts.secrets.describe()
            )
        })?;
    }
    let mut fresh = Settings::load(&data_dir, app.opts.secrets.as_ref());
    fresh.show_all = true;
    for (key, value) in &refused {
        fresh.draft.insert(key, value.clone());
    }
    fresh.check(&data_dir, app.opts.secrets.as_ref());
    let names = |keys: Vec<&str>| {
        keys.iter()
            .map(|k| labels::label(k).to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let remaining: Vec<&str> = fresh.problems.keys().map(String::as_str).collect();
    let n = remaining.len();
    let listed = names(remaining);
    app.settings = fresh;
    if !refused.is_empty() {
        let which = names(refused.iter().map(|(k, _)| *k).collect());
        return Err(format!(
            "Not saved: {which}. Fix the marked fields and Save again; the other changes were saved."
        ));
    }
    Ok(if n == 0 {
        "Settings saved.".to_string()
    } else {
        format!("Settings saved, but {n} problem(s) remain: {listed}. See the marked fields.")
    })
}

/// One field: its label, its control and, when shown, its problem. In a grid (two columns) or
/// stacked (the label above the control, for a narrow window).
fn field(
    ui: &mut egui::Ui,
    s: &mut Settings,
    key: &'static str,
    kind: KeyKind,
    help: &str,
    grid: bool,
) {
    let hover = labels::hover(help);
    let label = if grid {
        ui.label(labels::label(key))
    } else {
        ui.add(egui::Label::new(labels::label(key)).wrap())
    }
    .on_hover_text(&hover);
    let width = if grid {
        360.0
    } else {
        ui.available_width().clamp(60.0, 360.0)
    };
    let hint = s.hints.get(key).cloned().unwrap_or_default();
    let value = s.draft.entry(key).or_default();
    match kind {
        KeyKind::Bool => {
            let mut b = value == "true";
            if ui
                .checkbox(&mut b, "")
                .labelled_by(label.id)
                .on_hover_text(&hover)
                .changed()
            {
                *value = b.to_string();
            }
        }
        KeyKind::Enum(options) => {
            ui.horizontal_wrapped(|ui| {
                for o in options {
                    ui.radio_value(value, (*o).to_string(), labels::option(key, o))
                        .on_hover_text(&hover);
                }
            });
        }
        KeyKind::Secret => {
            let stored = s.secret_stored.get(key).copied().unwrap_or(false);
            let hint = if stored {
                "stored - type to replace"
            } else {
                "not set"
            };
            ui.add(
                egui::TextEdit::singleline(value)
                    .password(true)
                    .hint_text(hint)
                    .desired_width(width),
            )
            .labelled_by(label.id)
            .on_hover_text(&hover);
        }
        _ => {
            ui.add(
                egui::TextEdit::singleline(value)
                    .hint_text(hint)
                    .desired_width(width),
            )
            .labelled_by(label.id)
            .on_hover_text(&hover);
        }
    }
    if grid {
        ui.end_row();
    }
    if let Some(p) = s.problems.get(key).filter(|_| s.shown(key)) {
        let color = ui.visuals().error_fg_color;
        if grid {
            ui.label("");
        }
        ui.add(egui::Label::new(egui::RichText::new(p).color(color)).wrap());
        if grid {
            ui.end_row();
        }
    }
    if !grid {
        ui.add_space(4.0);
    }
}

/// The keys `wanted` picks, grouped in their sections (a sub-heading and a grid each).
fn sections(ui: &mut egui::Ui, s: &mut Settings, id: &str, wanted: impl Fn(&str) -> bool) {
    // narrow window: labels above their fields, so nothing is cut off on the right
    let grid = ui.available_width() >= 640.0;
    let groups: Vec<(&str, Vec<_>)> = labels::SECTIONS
        .iter()
        .map(|section| {
            let keys: Vec<_> = form_keys()
                .filter(|(k, _, _)| wanted(k) && labels::section(k) == *section)
                .collect();
            (*section, keys)
        })
        .filter(|(_, keys)| !keys.is_empty())
        .collect();
    let titled = groups.len() > 1;
    for (section, keys) in groups {
        if titled {
            ui.add_space(4.0);
            ui.strong(section);
        }
        if grid {
            egui::Grid::new(format!("{id}{section}"))
                .num_columns(2)
                .spacing([12.0, 4.0])
                .show(ui, |ui| {
                    for (key, kind, help) in keys {
                        field(ui, s, key, *kind, help, true);
                    }
                });
        } else {
            for (key, kind, help) in keys {
                field(ui, s, key, *kind, help, false);
            }
        }
    }
}

pub(super) fn ui(app: &mut App, ui: &mut egui::Ui) {
    app.settings
        .check(&app.opts.data_dir, app.opts.secrets.as_ref());
    ui.horizontal_wrapped(|ui| {
        if ui
            .add_enabled(app.settings.is_dirty(), egui::Button::new("Save"))
            .clicked()
        {
            match save(app) {
                Ok(msg) if app.settings.problems.is_empty() => app.info(msg),
                Ok(msg) => app.error(msg),
                Err(e) => app.error(e),
            }
        }
        if ui
            .add_enabled(app.settings.is_dirty(), egui::Button::new("Revert"))
            .clicked()
        {
            app.settings = Settings::load(&app.opts.data_dir, app.opts.secrets.as_ref());
        }
        if app.settings.is_dirty() {
            ui.label("Unsaved changes");
        }
    });
    ui.separator();
    if let Some(e) = &app.settings.load_error {
        ui.add(
            egui::Label::new(
                egui::RichText::new(format!(
                    "config.toml could not be read, so defaults are shown: {}",
                    super::words::text(e)
                ))
                .color(ui.visuals().error_fg_color),
            )
            .wrap(),
        );
    }
    let s = &mut app.settings;
    for key in ["directory.type", ""] {
        if let Some(p) = s.problems.get(key).filter(|_| s.shown(key)) {
            let color = ui.visuals().error_fg_color;
            ui.add(egui::Label::new(egui::RichText::new(p).color(color)).wrap());
        }
    }
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show(ui, |ui| form(ui, s));
    if s.checked.as_ref() != Some(&s.draft) {
        // a field changed in this frame: its marks follow in the next
        ui.ctx().request_repaint();
    }
}

/// The form's headings, top to bottom: the server, the directory, the sync, the schedule and
/// the alerts.
fn form(ui: &mut egui::Ui, s: &mut Settings) {
    ui.heading("Bitwarden server");
    ui.add(
        egui::Label::new(
            "Changing the server keeps you logged in: the API key is sent to the new server at \
             the next operation.",
        )
        .wrap(),
    );
    sections(ui, s, "server", |k| k.starts_with("server."));
    ui.add_space(8.0);
    let dir = s.draft.get("directory.type").cloned().unwrap_or_default();
    ui.heading("Directory");
    sections(ui, s, "directory", |k| k == "directory.type");
    let section = match dir.as_str() {
        "ldap" => Some(("ldap.", "LDAP / Active Directory")),
        "entra" => Some(("entra.", "Microsoft Entra ID")),
        "okta" => Some(("okta.", "Okta")),
        "onelogin" => Some(("onelogin.", "OneLogin")),
        "google" => Some(("google.", "Google Workspace")),
        _ => None,
    };
    match section {
        _ if dir.is_empty() => {
            ui.label("Choose the directory type, then fill in its connection.");
        }
        None => {
            ui.label(format!(
                "The {dir} directory is not supported by this build yet."
            ));
        }
        Some((prefix, title)) => {
            ui.heading(title);
            sections(ui, s, prefix, |k| k.starts_with(prefix));
        }
    }
    ui.add_space(8.0);
    ui.heading("Sync");
    sections(ui, s, "sync.", |k| {
        k.starts_with("sync.") && !config::SCHEDULE_KEYS.contains(&k)
    });
    ui.add_space(8.0);
    ui.heading("Schedule");
    sections(ui, s, "schedule", |k| {
        config::SCHEDULE_KEYS.contains(&k) || k.starts_with("service.")
    });
    ui.add_space(8.0);
    ui.heading("Alerts");
    sections(ui, s, "alerts", |k| k.starts_with("notify."));
}
