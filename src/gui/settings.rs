//! Settings tab: the directory type, every field of its configuration and every sync option,
//! built from the same key table as `config set` (same names, help and validation). Save writes
//! all changes at once; problems are shown next to the field they name. Secrets go to the
//! secret store, never into `config.toml`.

use std::collections::BTreeMap;
use std::path::Path;

use super::app::App;
use super::labels;
use crate::config::{self, KEYS, KeyKind, SecretRef};
use crate::secrets::SecretStore;

pub struct Settings {
    /// Current text of each field (bools as "true"/"false").
    pub draft: BTreeMap<&'static str, String>,
    saved: BTreeMap<&'static str, String>,
    /// Whether each secret is in the store.
    secret_stored: BTreeMap<&'static str, bool>,
    /// Problems by key, from the last save.
    pub problems: BTreeMap<String, String>,
    /// Why `config.toml` could not be read (the form then shows defaults).
    pub load_error: Option<String>,
}

/// The keys the Settings tab edits (server keys are on the login screen).
fn form_keys() -> impl Iterator<Item = &'static (&'static str, KeyKind, &'static str)> {
    const PREFIXES: [&str; 6] = ["ldap.", "entra.", "okta.", "onelogin.", "google.", "sync."];
    KEYS.iter()
        .filter(|(k, _, _)| PREFIXES.iter().any(|p| k.starts_with(p)) || *k == "directory.type")
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
            load_error,
        }
    }

    pub fn is_dirty(&self) -> bool {
        self.draft != self.saved
    }
}

/// Saves every changed field; returns the message for the banner.
fn save(app: &mut App) -> Result<String, String> {
    let data_dir = app.opts.data_dir.clone();
    let s = &mut app.settings;
    let mut changes: Vec<(&str, Option<String>)> = Vec::new();
    let mut secrets: Vec<(&str, String)> = Vec::new();
    for (key, kind, _) in form_keys() {
        let new = s.draft.get(key).cloned().unwrap_or_default();
        let old = s.saved.get(key).cloned().unwrap_or_default();
        if new == old {
            continue;
        }
        let trimmed = new.trim().to_string();
        if *kind == KeyKind::Secret && SecretRef::parse(&trimmed).is_none() {
            if !trimmed.is_empty() {
                secrets.push((key, new));
                // a reference left in the file would win over the store
                changes.push((key, None));
            }
            continue;
        }
        changes.push((key, (!trimmed.is_empty()).then_some(trimmed)));
    }
    let refs: Vec<(&str, Option<&str>)> = changes.iter().map(|(k, v)| (*k, v.as_deref())).collect();
    if !refs.is_empty() {
        config::set_values(&data_dir, &refs).map_err(|e| format!("Settings not saved: {e:#}"))?;
    }
    for (key, value) in &secrets {
        app.opts.secrets.set(key, value).map_err(|e| {
            format!(
                "`{key}` could not be stored in {}: {e:#}",
                app.opts.secrets.describe()
            )
        })?;
    }
    let mut fresh = Settings::load(&data_dir, app.opts.secrets.as_ref());
    let conn = crate::connector::Connector::with_store(
        &data_dir,
        std::sync::Arc::clone(&app.opts.secrets),
    )
    .map_err(|e| format!("{e:#}"))?;
    let cfg = conn.config().map_err(|e| format!("{e:#}"))?;
    let problems = conn.validate(&cfg);
    fresh.problems = problems
        .iter()
        .map(|p| (p.key.clone(), p.message.clone()))
        .collect();
    let n = problems.len();
    app.settings = fresh;
    Ok(if n == 0 {
        "Settings saved.".to_string()
    } else {
        format!("Settings saved, but {n} problem(s) remain: see the fields marked below.")
    })
}

fn field(ui: &mut egui::Ui, s: &mut Settings, key: &'static str, kind: KeyKind, help: &str) {
    let hover = labels::hover(key, help);
    let label = ui.label(labels::label(key)).on_hover_text(&hover);
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
            ui.horizontal(|ui| {
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
                    .desired_width(360.0),
            )
            .labelled_by(label.id)
            .on_hover_text(&hover);
        }
        _ => {
            ui.add(egui::TextEdit::singleline(value).desired_width(360.0))
                .labelled_by(label.id)
                .on_hover_text(&hover);
        }
    }
    ui.end_row();
    if let Some(p) = s.problems.get(key) {
        ui.label("");
        ui.colored_label(ui.visuals().error_fg_color, p);
        ui.end_row();
    }
}

/// The keys starting with `prefix`, grouped in their sections (a heading and a grid each).
fn sections(ui: &mut egui::Ui, s: &mut Settings, prefix: &str) {
    for section in labels::SECTIONS {
        let keys: Vec<_> = form_keys()
            .filter(|(k, _, _)| k.starts_with(prefix) && labels::section(k) == *section)
            .collect();
        if keys.is_empty() {
            continue;
        }
        ui.add_space(4.0);
        ui.strong(*section);
        egui::Grid::new(format!("{prefix}{section}"))
            .num_columns(2)
            .spacing([12.0, 4.0])
            .show(ui, |ui| {
                for (key, kind, help) in keys {
                    field(ui, s, key, *kind, help);
                }
            });
    }
}

pub(super) fn ui(app: &mut App, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
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
        ui.colored_label(
            ui.visuals().error_fg_color,
            format!("config.toml could not be read, so defaults are shown: {e}"),
        );
    }
    let s = &mut app.settings;
    if let Some(p) = s.problems.get("directory.type") {
        ui.colored_label(ui.visuals().error_fg_color, p);
    }
    egui::ScrollArea::vertical().show(ui, |ui| {
        let dir = s.draft.get("directory.type").cloned().unwrap_or_default();
        ui.heading("Directory");
        egui::Grid::new("directory-grid")
            .num_columns(2)
            .spacing([12.0, 4.0])
            .show(ui, |ui| {
                for (key, kind, help) in form_keys().filter(|(k, _, _)| *k == "directory.type") {
                    field(ui, s, key, *kind, help);
                }
            });
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
                sections(ui, s, prefix);
            }
        }
        ui.add_space(8.0);
        ui.heading("Sync");
        sections(ui, s, "sync.");
    });
}
