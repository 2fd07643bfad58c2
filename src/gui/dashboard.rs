//! Dashboard tab: last sync times, Test Now / Sync Now / Start Sync / Stop Sync, the running
//! stage with a progress bar, the guard's refusal with a one-time override, the baseline the plan
//! was made against, the results as searchable tables (users, groups, skipped, plan, drift) and
//! the run history with a chart.

use std::collections::HashMap;

use super::app::App;
use super::table::{self, Rows};
use super::worker::Job;
use crate::connector::{SyncReport, TestReport};
use crate::engine::Plan;
use crate::engine::diff::MemberAction;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum View {
    #[default]
    Users,
    Groups,
    Skipped,
    Plan,
    Drift,
    History,
}

#[derive(Default)]
pub struct Dashboard {
    pub view: View,
    pub query: String,
    pub users: Rows,
    pub groups: Rows,
    pub skipped: Rows,
    pub plan: Rows,
    /// What the organization has that the directory does not explain.
    pub drift: Rows,
    /// What the last plan was made against (and why, when not the organization).
    pub baseline: String,
    pub summary: String,
    /// The guard's refusal of the last sync.
    pub refused: Option<String>,
    /// The run history as table rows, and members after each sync (oldest first) for the
    /// chart: built when the status arrives, not every frame.
    pub history: Rows,
    pub history_points: Vec<(String, u64)>,
    confirm_override: bool,
}

fn plan_rows(plan: &Plan) -> Rows {
    let mut cells: Vec<Vec<String>> = plan
        .members
        .iter()
        .map(|m| {
            vec![
                m.action.label().to_string(),
                m.email.clone(),
                m.external_id.clone(),
            ]
        })
        .collect();
    cells.extend(plan.email_changes.iter().map(|e| {
        vec![
            "email change (not sent)".to_string(),
            e.directory_email.clone(),
            format!("the organization has {}", e.baseline_email),
        ]
    }));
    cells.extend(plan.kept.iter().map(|k| {
        let (email, why) = k.split_once(": ").unwrap_or((k.as_str(), ""));
        vec![
            "kept (not removed)".to_string(),
            email.to_string(),
            why.to_string(),
        ]
    }));
    cells.extend(plan.groups.iter().map(|g| {
        vec![
            format!("group: {}", g.label()),
            g.name.clone(),
            format!("{} members", g.members.len()),
        ]
    }));
    Rows::new(cells)
}

impl Dashboard {
    /// Rebuilds the history table and chart from the runs of a fresh status.
    pub fn set_runs(&mut self, runs: &[crate::store::RunRecord]) {
        self.history_points = runs
            .iter()
            .rev()
            .filter(|r| matches!(r.outcome.as_str(), "synced" | "unchanged"))
            .map(|r| (local_time(&r.started_at), r.members_after))
            .collect();
        self.history = Rows::new(
            runs.iter()
                .map(|r| {
                    vec![
                        local_time(&r.started_at),
                        r.outcome.as_str().to_string(),
                        format!(
                            "+{} ~{} -{} / {} groups",
                            r.invited, r.updated, r.removed, r.groups_changed
                        ),
                        r.members_after.to_string(),
                        r.error.clone().unwrap_or_default(),
                    ]
                })
                .collect(),
        );
    }

    #[allow(
        clippy::too_many_lines,
        reason = "fills each of the dashboard's tables from one test report in turn, over the same lookups"
    )]
    pub fn set_test(&mut self, r: TestReport) {
        let n = &r.normalized;
        let users = n.users.as_deref().unwrap_or_default();
        let actions: HashMap<&str, MemberAction> = r
            .plan
            .members
            .iter()
            .map(|m| (m.external_id.as_str(), m.action))
            .collect();
        let email_of: HashMap<&str, &str> = users
            .iter()
            .map(|u| {
                (
                    &*u.external_id,
                    u.email.as_deref().unwrap_or(u.reference_id.as_str()),
                )
            })
            .collect();
        self.users = Rows::new(
            users
                .iter()
                .map(|u| {
                    vec![
                        u.email.clone().unwrap_or_default(),
                        u.status().to_string(),
                        actions
                            .get(&*u.external_id)
                            .map_or("-", |a| a.label())
                            .to_string(),
                        u.external_id.to_string(),
                    ]
                })
                .collect(),
        );
        self.groups = Rows::new(
            n.groups
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(|g| {
                    let mut members: Vec<&str> = g
                        .members
                        .iter()
                        .map(|m| email_of.get(&**m).copied().unwrap_or(m))
                        .collect();
                    members.sort_unstable();
                    let shown = members
                        .iter()
                        .take(20)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ");
                    let more = if members.len() > 20 {
                        format!(" ... and {} more", members.len() - 20)
                    } else {
                        String::new()
                    };
                    vec![
                        g.name.clone(),
                        members.len().to_string(),
                        format!("{shown}{more}"),
                    ]
                })
                .collect(),
        );
        self.skipped = Rows::new(
            n.skipped
                .iter()
                .map(|s| {
                    vec![
                        format!("{:?}", s.kind).to_lowercase(),
                        s.reference_id.clone(),
                        s.reason.clone(),
                    ]
                })
                .collect(),
        );
        self.plan = plan_rows(&r.plan);
        let (enabled, disabled, deleted) = crate::engine::model::user_counts(users);
        self.summary = format!(
            "Test: {} users ({enabled} enabled, {disabled} disabled, {deleted} deleted), {} groups, {} skipped. {}.",
            users.len(),
            self.groups.len(),
            self.skipped.len(),
            r.plan.summary()
        );
        self.refused = r
            .refused
            .map(|reason| format!("A sync would be refused: {reason}"));
        self.baseline = format!("Baseline: {}.", r.plan.baseline.describe());
        if let Some(note) = &r.baseline_note {
            self.baseline.push_str(&format!(" ({note}.)"));
        }
        for w in &r.plan.warnings {
            self.baseline.push_str(&format!(" Warning: {w}."));
        }
        self.drift = match &r.drift {
            Some(d) => {
                self.baseline.push(' ');
                self.baseline.push_str(&d.summary());
                self.baseline.push('.');
                Rows::new(d.rows().into_iter().map(|r| r.to_vec()).collect())
            }
            None => Rows::default(),
        };
        self.query.clear();
        self.refilter();
    }

    pub fn set_sync(&mut self, r: SyncReport) {
        self.plan = plan_rows(&r.plan);
        self.summary = format!(
            "Sync {}. {}. {} requests, {} bytes pushed.",
            r.outcome.as_str(),
            r.plan.summary(),
            r.requests,
            r.bytes_pushed
        );
        self.refused = None;
        self.baseline = format!("Baseline: {}.", r.plan.baseline.describe());
        self.view = View::Plan;
        self.query.clear();
        self.refilter();
    }

    fn refilter(&mut self) {
        let q = self.query.clone();
        for rows in [
            &mut self.users,
            &mut self.groups,
            &mut self.skipped,
            &mut self.plan,
            &mut self.drift,
        ] {
            rows.filter(&q);
        }
    }
}

fn local_time(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|_| rfc3339.to_string())
}

/// A small line chart of organization members after each sync.
fn members_chart(ui: &mut egui::Ui, points: &[(String, u64)]) {
    let desired = egui::vec2(ui.available_width().min(640.0), 120.0);
    let (rect, response) = ui.allocate_exact_size(desired, egui::Sense::hover());
    let painter = ui.painter_at(rect);
    let visuals = ui.visuals();
    painter.rect_stroke(
        rect,
        4.0,
        visuals.widgets.noninteractive.bg_stroke,
        egui::StrokeKind::Inside,
    );
    if points.len() < 2 {
        painter.text(
            rect.center(),
            egui::Align2::CENTER_CENTER,
            "Members over time appear after two syncs",
            egui::FontId::proportional(13.0),
            visuals.weak_text_color(),
        );
        return;
    }
    let max = points.iter().map(|p| p.1).max().unwrap_or(1).max(1) as f32;
    let inner = rect.shrink(10.0);
    let step = inner.width() / (points.len() - 1) as f32;
    let line: Vec<egui::Pos2> = points
        .iter()
        .enumerate()
        .map(|(i, (_, v))| {
            egui::pos2(
                inner.left() + step * i as f32,
                inner.bottom() - inner.height() * (*v as f32 / max),
            )
        })
        .collect();
    painter.add(egui::Shape::line(
        line.clone(),
        egui::Stroke::new(2.0, visuals.selection.bg_fill),
    ));
    for p in &line {
        painter.circle_filled(*p, 2.5, visuals.selection.bg_fill);
    }
    painter.text(
        inner.left_top(),
        egui::Align2::LEFT_TOP,
        format!("{max} members"),
        egui::FontId::proportional(11.0),
        visuals.weak_text_color(),
    );
    response.on_hover_text(format!(
        "Members after each sync, from {} to {}",
        points.first().map(|p| p.0.as_str()).unwrap_or_default(),
        points.last().map(|p| p.0.as_str()).unwrap_or_default()
    ));
}

#[allow(
    clippy::too_many_lines,
    reason = "immediate-mode UI: the dashboard's panels laid out top to bottom, sharing the busy state"
)]
pub fn ui(app: &mut App, ui: &mut egui::Ui) {
    let busy = app.worker.busy();
    if let Some(alert) = app.status.as_ref().and_then(|s| s.service_alert.as_deref()) {
        ui.colored_label(ui.visuals().warn_fg_color, alert);
    }
    if let Some(s) = &app.status {
        ui.horizontal(|ui| {
            ui.label(format!(
                "Last user sync: {}",
                s.last_user_sync
                    .as_deref()
                    .map_or("never".into(), local_time)
            ));
            ui.separator();
            ui.label(format!(
                "Last group sync: {}",
                s.last_group_sync
                    .as_deref()
                    .map_or("never".into(), local_time)
            ));
            ui.separator();
            ui.label(format!(
                "Sync cache: {} members, {} groups",
                s.cached_members, s.cached_groups
            ));
        });
    }
    ui.add_space(4.0);
    ui.horizontal(|ui| {
        if ui
            .add_enabled(busy.is_none(), egui::Button::new("Test Now"))
            .on_hover_text("Read the directory and show what a sync would change; push nothing")
            .clicked()
        {
            app.start(Job::Test);
        }
        if ui
            .add_enabled(busy.is_none(), egui::Button::new("Sync Now"))
            .clicked()
        {
            app.start(Job::Sync {
                allow_mass_removal: false,
            });
        }
        ui.separator();
        if app.polling {
            if ui.button("Stop Sync").clicked() {
                app.stop_polling();
            }
            if let Some(at) = app.next_run {
                let secs = at
                    .saturating_duration_since(std::time::Instant::now())
                    .as_secs();
                let when = chrono::Local::now() + chrono::Duration::seconds(secs as i64);
                ui.label(format!("Next sync at {}", when.format("%H:%M:%S")));
            }
        } else if ui
            .add_enabled(busy.is_none(), egui::Button::new("Start Sync"))
            .on_hover_text(
                "Sync now and then every sync.interval_minutes while this window is open",
            )
            .clicked()
        {
            app.start_polling();
        }
    });
    if let Some(job) = busy {
        let a = app
            .worker
            .activity
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default();
        ui.horizontal(|ui| {
            ui.spinner();
            // before the stage, whose text changes: the button never moves under the cursor
            if ui
                .add_enabled(!app.worker.cancelling(), egui::Button::new("Cancel"))
                .on_hover_text(
                    "Stop now: a sync stops between two requests, and every batch the server \
                     confirmed stays recorded; the next sync sends the rest",
                )
                .clicked()
            {
                app.worker.cancel();
            }
            let count = if a.count > 0 {
                format!(" ({} entries)", a.count)
            } else {
                String::new()
            };
            ui.label(format!("{job}: {}{count}", a.stage));
        });
        if let Some(f) = a.fraction {
            ui.add(egui::ProgressBar::new(f).show_percentage());
        }
    }
    if let Some(reason) = app.dashboard.refused.clone() {
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.colored_label(ui.visuals().warn_fg_color, &reason);
            if ui
                .add_enabled(
                    busy.is_none(),
                    egui::Button::new("Sync anyway (this once)..."),
                )
                .clicked()
            {
                app.dashboard.confirm_override = true;
            }
        });
    }
    if app.dashboard.confirm_override {
        let modal = egui::Modal::new(egui::Id::unique("confirm-override")).show(ui.ctx(), |ui| {
            ui.heading("Override the guard?");
            ui.label(app.dashboard.refused.clone().unwrap_or_default());
            ui.label("This overrides the mass-removal and group guards for one sync only.");
            let mut choice = None;
            ui.horizontal(|ui| {
                if ui.button("Sync and remove").clicked() {
                    choice = Some(true);
                }
                if ui.button("Cancel").clicked() {
                    choice = Some(false);
                }
            });
            choice
        });
        match modal.inner {
            Some(true) => {
                app.dashboard.confirm_override = false;
                app.dashboard.refused = None;
                app.start(Job::Sync {
                    allow_mass_removal: true,
                });
            }
            Some(false) => app.dashboard.confirm_override = false,
            None if modal.should_close() => app.dashboard.confirm_override = false,
            None => {}
        }
    }
    if !app.dashboard.baseline.is_empty() {
        ui.add(egui::Label::new(&app.dashboard.baseline).wrap());
    }
    if !app.dashboard.summary.is_empty() {
        ui.add(egui::Label::new(&app.dashboard.summary).wrap());
    }
    ui.separator();
    let d = &mut app.dashboard;
    ui.horizontal(|ui| {
        ui.selectable_value(
            &mut d.view,
            View::Users,
            format!("Users ({})", d.users.len()),
        );
        ui.selectable_value(
            &mut d.view,
            View::Groups,
            format!("Groups ({})", d.groups.len()),
        );
        ui.selectable_value(
            &mut d.view,
            View::Skipped,
            format!("Skipped ({})", d.skipped.len()),
        );
        ui.selectable_value(&mut d.view, View::Plan, format!("Plan ({})", d.plan.len()));
        ui.selectable_value(
            &mut d.view,
            View::Drift,
            format!("Drift ({})", d.drift.len()),
        );
        ui.selectable_value(&mut d.view, View::History, "History");
        if d.view != View::History {
            ui.separator();
            let l = ui.label("Search");
            if ui
                .add(egui::TextEdit::singleline(&mut d.query).desired_width(220.0))
                .labelled_by(l.id)
                .changed()
            {
                d.refilter();
            }
        }
    });
    match d.view {
        View::Users => table::show(
            ui,
            "users",
            &["Email", "Status", "Action", "External id"],
            &d.users,
        ),
        View::Groups => table::show(
            ui,
            "groups",
            &["Group", "Members", "Member emails"],
            &d.groups,
        ),
        View::Skipped => table::show(ui, "skipped", &["Kind", "Entry", "Reason"], &d.skipped),
        View::Plan => table::show(
            ui,
            "plan",
            &["Action", "Member or group", "Detail"],
            &d.plan,
        ),
        View::Drift => table::show(
            ui,
            "drift",
            &["Drift", "Name", "External id", "Detail"],
            &d.drift,
        ),
        View::History => {
            members_chart(ui, &d.history_points);
            table::show(
                ui,
                "history",
                &["Started", "Outcome", "Changes", "Members after", "Error"],
                &d.history,
            );
        }
    }
}
