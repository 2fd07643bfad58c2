//! "Import from Bitwarden Directory Connector…" in the window (login screen and More): the
//! same import as the command line's, with a native Browse, a Preview that says whether Import
//! needs "Replace", a readable summary (the resulting config.toml folded away) and its next
//! steps as buttons.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::app::{App, Tab};
use super::words::{self, Said};
use crate::bwdc::{ImportOptions, OsKeychain, Report, import};

/// What the last Preview or Import showed.
pub struct Done {
    pub dry_run: bool,
    /// What happened, one sentence.
    pub headline: String,
    /// Whether Import needs "Replace" (a preview's answer), in words.
    pub replace: Option<String>,
    /// Titled lists: settings, secrets, changes, warnings, what was not imported.
    pub sections: Vec<(String, Vec<String>)>,
    /// The resulting config.toml (a preview's).
    pub toml: Option<String>,
    /// A secret could not be imported: it is typed in Settings (or at the login).
    pub secrets_missing: bool,
}

#[derive(Default)]
pub struct ImportPanel {
    pub open: bool,
    pub path: String,
    pub force: bool,
    /// The last preview or import, or its error.
    pub result: Option<Result<Done, Said>>,
    /// The folder a Browse dialog picked (it runs on a thread of its own: the window keeps
    /// drawing meanwhile); `Some(None)`: closed without a choice.
    browsing: Option<Arc<Mutex<Option<Option<PathBuf>>>>>,
}

/// The button that opens the import dialog.
pub(super) fn button(app: &mut App, ui: &mut egui::Ui) {
    if ui
        .button("Import from Bitwarden Directory Connector…")
        .on_hover_text(
            "Reads the official connector's data.json and secrets (never changes them) and \
             imports its settings; Preview shows the result first",
        )
        .clicked()
    {
        let p = &mut app.import;
        p.open = true;
        p.result = None;
        if p.path.is_empty() {
            p.path = crate::bwdc::default_upstream_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default();
        }
    }
}

/// Why Import needs "Replace": this connector already has settings or an API key.
fn configured(app: &App) -> Option<String> {
    let path = crate::config::config_path(&app.opts.data_dir);
    if let Ok(text) = std::fs::read_to_string(&path)
        && text.lines().any(|l| {
            let l = l.trim();
            !l.is_empty() && !l.starts_with('#')
        })
    {
        return Some("it has settings".to_string());
    }
    if matches!(
        app.opts.secrets.get(crate::connector::KEY_CLIENT_ID),
        Ok(Some(_))
    ) {
        return Some(format!(
            "an API key is stored in {}",
            app.opts.secrets.describe()
        ));
    }
    None
}

/// A key of this project (a setting or a secret) as the window names it.
fn named(key: &str) -> String {
    match key {
        crate::connector::KEY_CLIENT_ID => "Client ID (API key)".to_string(),
        crate::connector::KEY_CLIENT_SECRET => "Client secret (API key)".to_string(),
        k => super::labels::label(k).to_string(),
    }
}

/// The report in the window's words.
fn done(r: &Report, store: &str, replace: Option<String>) -> Done {
    let headline = if r.dry_run {
        format!(
            "Preview: nothing was written. From {}, this connector would be set up as below.",
            r.source.display()
        )
    } else {
        format!(
            "Imported from {}. The official connector's files were only read.",
            r.source.display()
        )
    };
    let mut sections = Vec::new();
    sections.push((
        format!("Settings ({})", r.settings.len()),
        r.settings
            .iter()
            .map(|s| {
                let value = match s.value.as_str() {
                    "true" => "yes",
                    "false" => "no",
                    v => super::labels::option(&s.key, v),
                };
                format!("{}: {value}", named(&s.key))
            })
            .collect(),
    ));
    let secrets: Vec<String> = r
        .secrets
        .iter()
        .map(|s| match (&s.problem, s.stored) {
            (None, true) => format!("{}: stored in {store}", named(&s.key)),
            (None, false) => format!("{}: found; Import stores it in {store}", named(&s.key)),
            (Some(p), _) => format!(
                "{}: not imported ({}); type it in Settings",
                named(&s.key),
                words::text(p)
            ),
        })
        .collect();
    sections.push((
        "Secrets".to_string(),
        if secrets.is_empty() {
            vec!["None found.".to_string()]
        } else {
            secrets
        },
    ));
    if !r.removed_secrets.is_empty() {
        sections.push((
            format!(
                "{} from {store} (the replaced configuration's)",
                if r.dry_run {
                    "Removed by Import"
                } else {
                    "Removed"
                }
            ),
            r.removed_secrets.iter().map(|k| named(k)).collect(),
        ));
    }
    let listed = |title: &str, lines: &[String]| {
        (
            title.to_string(),
            lines.iter().map(|l| words::text(l)).collect(),
        )
    };
    if !r.changes.is_empty() {
        sections.push(listed(
            "Changed so that this connector reads the directory as the official one did",
            &r.changes,
        ));
    }
    if !r.warnings.is_empty() {
        sections.push(listed("Warnings", &r.warnings));
    }
    if !r.not_imported.is_empty() {
        let lines: Vec<String> = r
            .not_imported
            .iter()
            .map(|s| format!("{}: {}", s.what, s.why))
            .collect();
        sections.push(listed("Not imported", &lines));
    }
    Done {
        dry_run: r.dry_run,
        headline,
        replace,
        sections,
        toml: r.dry_run.then(|| r.config_toml.clone()),
        secrets_missing: r.secrets.iter().any(|s| s.problem.is_some()),
    }
}

fn run(app: &mut App, dry_run: bool) {
    let existing = configured(app);
    if !dry_run
        && !app.import.force
        && let Some(why) = &existing
    {
        app.import.result = Some(Err(Said {
            what: format!("This connector is already set up ({why}): nothing was imported."),
            hint: Some(
                "Tick \u{201c}Replace this connector's configuration\u{201d} to replace it \
                 (Preview shows the result first)."
                    .to_string(),
            ),
            details: None,
        }));
        return;
    }
    let opts = ImportOptions {
        path: Some(app.import.path.trim().into()),
        dry_run,
        force: app.import.force,
    };
    let r = import(
        &opts,
        &app.opts.data_dir,
        app.opts.secrets.as_ref(),
        &OsKeychain,
    );
    let replace = match (&existing, app.import.force) {
        (Some(why), false) => Some(format!(
            "This connector is already set up ({why}): Import needs \u{201c}Replace this \
             connector's configuration\u{201d} ticked."
        )),
        (Some(why), true) => Some(format!(
            "This connector is already set up ({why}): Import replaces its configuration."
        )),
        (None, _) => Some("This connector is not set up yet: Import needs no Replace.".into()),
    };
    app.import.result = Some(match r {
        Ok(report) => {
            if !dry_run {
                tracing::info!(
                    "imported the official connector's settings from {} ({} settings)",
                    report.source.display(),
                    report.settings.len()
                );
                app.reload_after_import();
            }
            Ok(done(&report, &app.opts.secrets.describe(), replace))
        }
        Err(e) => {
            let mut said = words::error("Import", &e, false);
            said.what = crate::logging::redact(&said.what.replace("import-bwdc: ", ""));
            said.details = said.details.map(|d| crate::logging::redact(&d));
            Err(said)
        }
    });
    // the import's lines in the log
    app.more.reload_log();
}

/// Starts the native folder dialog on a thread of its own.
fn browse(p: &mut ImportPanel, ctx: &egui::Context) {
    let slot = Arc::new(Mutex::new(None));
    p.browsing = Some(Arc::clone(&slot));
    let start = PathBuf::from(p.path.trim());
    let ctx = ctx.clone();
    let spawned = std::thread::Builder::new()
        .name("dc-browse".into())
        .spawn(move || {
            let mut dialog =
                rfd::FileDialog::new().set_title("The official connector's data directory");
            if start.is_dir() {
                dialog = dialog.set_directory(&start);
            }
            let picked = dialog.pick_folder();
            if let Ok(mut s) = slot.lock() {
                *s = Some(picked);
            }
            ctx.request_repaint();
        });
    if spawned.is_err() {
        p.browsing = None;
    }
}

/// The folder the Browse dialog picked, once it closed.
fn browsed(p: &mut ImportPanel) {
    let picked = p
        .browsing
        .as_ref()
        .and_then(|slot| slot.lock().ok().and_then(|mut s| s.take()));
    if let Some(picked) = picked {
        p.browsing = None;
        if let Some(dir) = picked {
            p.path = dir.display().to_string();
            p.result = None;
        }
    }
}

/// What a click in the dialog asks for.
enum Action {
    Preview,
    Import,
    TestNow,
    Settings,
}

/// The result: the headline, whether Import needs Replace, the lists, the TOML folded away and
/// the next steps as buttons.
fn result_ui(ui: &mut egui::Ui, result: &Result<Done, Said>, logged_in: bool) -> Option<Action> {
    let mut action = None;
    match result {
        Err(said) => {
            let color = ui.visuals().error_fg_color;
            ui.add(egui::Label::new(egui::RichText::new(&said.what).color(color)).wrap());
            if let Some(h) = &said.hint {
                ui.add(egui::Label::new(h).wrap());
            }
            if let Some(d) = &said.details {
                egui::CollapsingHeader::new("Details")
                    .id_salt("import-error-details")
                    .show(ui, |ui| {
                        ui.add(egui::Label::new(d).wrap());
                    });
            }
        }
        Ok(d) => {
            ui.add(egui::Label::new(egui::RichText::new(&d.headline).strong()).wrap());
            if let Some(r) = &d.replace
                && d.dry_run
            {
                ui.add(egui::Label::new(r).wrap());
            }
            egui::ScrollArea::vertical()
                .max_height(300.0)
                .show(ui, |ui| {
                    for (title, lines) in &d.sections {
                        egui::CollapsingHeader::new(title)
                            .default_open(true)
                            .show(ui, |ui| {
                                for l in lines {
                                    ui.add(egui::Label::new(l).wrap());
                                }
                            });
                    }
                    if let Some(toml) = &d.toml {
                        egui::CollapsingHeader::new("The configuration file (config.toml)")
                            .default_open(false)
                            .show(ui, |ui| {
                                ui.monospace(toml);
                            });
                    }
                });
            ui.add_space(4.0);
            ui.label("Next steps:");
            ui.horizontal_wrapped(|ui| {
                if d.dry_run && ui.button("Import these settings").clicked() {
                    action = Some(Action::Import);
                }
                if d.secrets_missing && logged_in && ui.button("Open Settings").clicked() {
                    action = Some(Action::Settings);
                }
                if !d.dry_run && logged_in && ui.button("Test Now").clicked() {
                    action = Some(Action::TestNow);
                }
                if !d.dry_run && !logged_in {
                    ui.label("Log in with the organization API key, then click Test Now.");
                }
            });
        }
    }
    action
}

/// The dialog, when open.
pub(super) fn dialog(app: &mut App, ctx: &egui::Context) {
    if !app.import.open {
        return;
    }
    browsed(&mut app.import);
    let logged_in = app.status.as_ref().is_some_and(|s| s.logged_in);
    let mut open = true;
    let mut action = None;
    egui::Window::new("Import from Bitwarden Directory Connector")
        .open(&mut open)
        .collapsible(false)
        .default_width(640.0)
        .show(ctx, |ui| {
            let p = &mut app.import;
            ui.label("The official connector's data directory or its data.json:");
            ui.horizontal(|ui| {
                let l = ui.label("Official connector's data");
                let width = (ui.available_width() - 90.0).clamp(120.0, 460.0);
                ui.add(egui::TextEdit::singleline(&mut p.path).desired_width(width))
                    .labelled_by(l.id);
                let browsing = p.browsing.is_some();
                if ui
                    .add_enabled(!browsing, egui::Button::new("Browse…"))
                    .on_hover_text("Choose the folder in the system's file dialog")
                    .clicked()
                {
                    browse(p, ui.ctx());
                }
            });
            ui.checkbox(&mut p.force, "Replace this connector's configuration")
                .on_hover_text(
                    "Needed when this connector already has settings or an API key: they are \
                     replaced by the imported ones",
                );
            ui.horizontal(|ui| {
                if ui.button("Preview").clicked() {
                    action = Some(Action::Preview);
                }
                if ui.button("Import").clicked() {
                    action = Some(Action::Import);
                }
            });
            if let Some(result) = &p.result {
                ui.separator();
                if let Some(a) = result_ui(ui, result, logged_in) {
                    action = Some(a);
                }
            }
        });
    match action {
        Some(Action::Preview) => run(app, true),
        Some(Action::Import) => run(app, false),
        Some(Action::TestNow) => {
            app.import.open = false;
            app.tab = Tab::Dashboard;
            app.start(super::worker::Job::Test);
        }
        Some(Action::Settings) => {
            app.import.open = false;
            app.tab = Tab::Settings;
        }
        None => {}
    }
    if !open {
        app.import.open = false;
    }
}
