//! "Import from Bitwarden Directory Connector…" in the window (login screen and More): the
//! same import as `import-bwdc`, with a preview (dry run) and the same summary.

use super::app::App;
use crate::bwdc::{ImportOptions, OsKeychain, import, summary};

#[derive(Default)]
pub struct ImportPanel {
    pub open: bool,
    pub path: String,
    pub force: bool,
    /// The summary of the last preview or import, or its error.
    pub result: Option<Result<Vec<String>, String>>,
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

fn run(app: &mut App, dry_run: bool) {
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
    app.import.result = Some(match r {
        Ok(report) => {
            if !dry_run {
                app.reload_after_import();
            }
            Ok(summary(&report, &app.opts.secrets.describe()))
        }
        Err(e) => Err(crate::logging::redact(&format!("{e:#}"))),
    });
}

/// The dialog, when open.
pub(super) fn dialog(app: &mut App, ctx: &egui::Context) {
    if !app.import.open {
        return;
    }
    let mut open = true;
    let mut action = None;
    egui::Window::new("Import from Bitwarden Directory Connector")
        .open(&mut open)
        .collapsible(false)
        .default_width(640.0)
        .show(ctx, |ui| {
            let p = &mut app.import;
            ui.label("The official connector's data directory or its data.json:");
            let l = ui.label("Data directory");
            ui.add(egui::TextEdit::singleline(&mut p.path).desired_width(560.0))
                .labelled_by(l.id);
            ui.checkbox(
                &mut p.force,
                "Replace this connector's configuration (--force)",
            );
            ui.horizontal(|ui| {
                if ui.button("Preview").clicked() {
                    action = Some(true);
                }
                if ui.button("Import").clicked() {
                    action = Some(false);
                }
            });
            match &p.result {
                None => {}
                Some(Err(e)) => {
                    ui.colored_label(ui.visuals().error_fg_color, e);
                }
                Some(Ok(lines)) => {
                    egui::ScrollArea::vertical()
                        .max_height(360.0)
                        .show(ui, |ui| {
                            for line in lines {
                                ui.monospace(line);
                            }
                        });
                }
            }
        });
    if let Some(dry_run) = action {
        run(app, dry_run);
    }
    if !open {
        app.import.open = false;
    }
}
