//! More tab: version, data directory, Clear Sync Cache and Log out (both confirmed first), and
//! the recent lines of the log file.

use std::path::{Path, PathBuf};

use super::app::App;
use super::worker::Job;

pub struct More {
    confirm_clear: bool,
    confirm_logout: bool,
    pub log_lines: Vec<String>,
    log_dir: PathBuf,
}

impl More {
    pub fn new(data_dir: &Path) -> More {
        let mut m = More {
            confirm_clear: false,
            confirm_logout: false,
            log_lines: Vec::new(),
            log_dir: crate::logging::log_dir(data_dir),
        };
        m.reload_log();
        m
    }

    /// The last 200 lines of the newest log file.
    pub fn reload_log(&mut self) {
        let newest = std::fs::read_dir(&self.log_dir)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("directory-connector")
            })
            .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok());
        self.log_lines = newest
            .and_then(|e| std::fs::read_to_string(e.path()).ok())
            .map(|text| {
                let lines: Vec<String> = text.lines().map(str::to_string).collect();
                let skip = lines.len().saturating_sub(200);
                // in the window's words (the file keeps the CLI's)
                lines
                    .into_iter()
                    .skip(skip)
                    .map(|l| super::words::text(&l))
                    .collect()
            })
            .unwrap_or_default();
    }
}

fn confirm(ui: &mut egui::Ui, id: &str, title: &str, text: &str, yes: &str) -> Option<bool> {
    let modal = egui::Modal::new(egui::Id::unique(id)).show(ui.ctx(), |ui| {
        ui.heading(title);
        ui.label(text);
        let mut choice = None;
        ui.horizontal(|ui| {
            if ui.button(yes).clicked() {
                choice = Some(true);
            }
            if ui.button("Cancel").clicked() {
                choice = Some(false);
            }
        });
        choice
    });
    match modal.inner {
        Some(c) => Some(c),
        None if modal.should_close() => Some(false),
        None => None,
    }
}

pub(super) fn ui(app: &mut App, ui: &mut egui::Ui) {
    egui::Grid::new("about").num_columns(2).show(ui, |ui| {
        ui.label("Version");
        ui.label(env!("CARGO_PKG_VERSION"));
        ui.end_row();
        ui.label("Data directory");
        ui.label(app.opts.data_dir.display().to_string());
        ui.end_row();
        ui.label("Secrets kept in");
        ui.label(app.opts.secrets.describe());
        ui.end_row();
    });
    ui.add_space(8.0);
    let busy = app.worker.busy().is_some();
    ui.horizontal(|ui| {
        if ui
            .add_enabled(!busy, egui::Button::new("Clear Sync Cache"))
            .clicked()
        {
            app.more.confirm_clear = true;
        }
        if ui.button("Log Out").clicked() {
            app.more.confirm_logout = true;
        }
        super::bwdc_import::button(app, ui);
    });
    if app.more.confirm_clear {
        match confirm(
            ui,
            "confirm-clear",
            "Clear the sync cache?",
            "The next sync sends every user and group again (nothing is removed).",
            "Clear",
        ) {
            Some(true) => {
                app.more.confirm_clear = false;
                app.start(Job::ClearCache);
            }
            Some(false) => app.more.confirm_clear = false,
            None => {}
        }
    }
    if app.more.confirm_logout {
        match confirm(
            ui,
            "confirm-logout",
            "Log out?",
            "The organization API key is removed from this computer. Settings are kept.",
            "Log out",
        ) {
            Some(true) => {
                app.more.confirm_logout = false;
                app.logout();
            }
            Some(false) => app.more.confirm_logout = false,
            None => {}
        }
    }
    ui.separator();
    ui.horizontal(|ui| {
        ui.heading("Recent log");
        if ui.button("Reload").clicked() {
            app.more.reload_log();
        }
    });
    egui::ScrollArea::vertical()
        .stick_to_bottom(true)
        .auto_shrink([false, false])
        .show(ui, |ui| {
            for l in &app.more.log_lines {
                ui.monospace(l);
            }
            if app.more.log_lines.is_empty() {
                ui.label("No log lines yet.");
            }
        });
}
