//! Dashboard tab: last sync times, Test Now / Sync Now / Start Sync / Stop Sync, the running
//! stage with a progress bar, the guard's refusal with a one-time override, the baseline the plan
//! was made against, the results as searchable tables (users, groups, skipped, plan, drift) and
//! the run history with a chart.

use super::app::App;
use super::table::{self, Rows};
use super::words;
use super::worker::Job;
use crate::connector::{SyncReport, TestReport};
use crate::sync::tables::Tables;

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
    /// (when, as seconds since 1970; members after the sync).
    pub history_points: Vec<(f64, u64)>,
    confirm_override: bool,
    /// Which operation the tables are from, and when ("As of 10:42, Sync Now.").
    pub as_of: String,
    /// The tables' operation, time, and who the plan removes (the override dialog names
    /// them); the rows themselves are in the tables above.
    pub tables: Tables,
}

/// How the tables of a test are named.
pub const TEST_NOW: &str = "Test Now";

/// The tables of a test.
pub fn test_tables(r: &TestReport) -> Tables {
    let mut t = Tables::new(TEST_NOW);
    t.set_directory(&r.normalized, &r.plan);
    t.set_plan(&r.plan);
    t.set_drift(r.drift.as_ref());
    let users = r.normalized.users.as_deref().unwrap_or_default();
    let (enabled, disabled, deleted) = crate::engine::model::user_counts(users);
    t.summary = format!(
        "Test: {} users ({enabled} enabled, {disabled} disabled, {deleted} deleted), {} groups, {} skipped. {}.",
        users.len(),
        t.groups.len(),
        t.skipped.len(),
        r.plan.summary()
    );
    t.refused = r
        .refused
        .as_ref()
        .map(|reason| format!("A sync would be refused: {reason}"));
    t.baseline = format!("Baseline: {}.", r.plan.baseline.describe());
    if let Some(note) = &r.baseline_note {
        t.baseline.push_str(&format!(" ({note}.)"));
    }
    for w in &r.plan.warnings {
        t.baseline.push_str(&format!(" Warning: {w}."));
    }
    if let Some(d) = &r.drift {
        t.baseline.push_str(&format!(" {}.", d.summary()));
    }
    if let Some(lane) = &r.fast_lane {
        t.baseline
            .push_str(&format!(" Fast lane: {}.", words::text(lane)));
    }
    t
}

/// What the override dialog offers.
enum Choice {
    Sync,
    Cancel,
    ShowAll,
}

/// Who the refused plan removes and which groups lose members: the first names and the counts.
/// True when "Show all" was clicked.
fn refused_plan_ui(ui: &mut egui::Ui, t: &Tables) -> bool {
    let names = |list: &[String]| {
        let refs: Vec<&str> = list.iter().map(String::as_str).collect();
        crate::sync::tables::first_names(&refs)
    };
    if !t.removals.is_empty() {
        ui.strong(format!("{} member(s) would be removed:", t.removals.len()));
        ui.add(egui::Label::new(names(&t.removals)).wrap());
    }
    if !t.groups_losing.is_empty() {
        ui.strong(format!(
            "{} group(s) would lose members:",
            t.groups_losing.len()
        ));
        ui.add(egui::Label::new(names(&t.groups_losing)).wrap());
    }
    !t.removals.is_empty()
        && ui
            .button("Show all removals in the Plan tab")
            .on_hover_text("Close this and list every removal of the plan")
            .clicked()
}

/// "10:42" today, else the date too.
fn short_time(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| {
            let t = t.with_timezone(&chrono::Local);
            if t.date_naive() == chrono::Local::now().date_naive() {
                t.format("%H:%M").to_string()
            } else {
                t.format("%Y-%m-%d %H:%M").to_string()
            }
        })
        .unwrap_or_else(|_| rfc3339.to_string())
}

impl Dashboard {
    /// Rebuilds the history table and chart from the runs of a fresh status.
    pub fn set_runs(&mut self, runs: &[crate::store::RunRecord]) {
        self.history_points = runs
            .iter()
            .rev()
            .filter(|r| matches!(r.outcome.as_str(), "synced" | "unchanged"))
            .filter_map(|r| {
                let at = chrono::DateTime::parse_from_rfc3339(&r.started_at).ok()?;
                Some((at.timestamp() as f64, r.members_after))
            })
            .collect();
        let sort = self.history.sorted;
        self.history = Rows::new(
            runs.iter()
                .map(|r| {
                    vec![
                        local_time(&r.started_at),
                        words::run_result(r),
                        words::members_after(r),
                        r.error.as_deref().map(words::text).unwrap_or_default(),
                    ]
                })
                .collect(),
        );
        if let Some((column, descending)) = sort {
            self.history.sorted = Some((column, !descending));
            self.history.sort_by(column);
        }
    }

    /// Shows the last operation's tables (a test, a sync, a refused sync, or the saved copy
    /// when the window starts).
    pub fn set_tables(&mut self, mut t: Tables) {
        self.users = Rows::new(std::mem::take(&mut t.users));
        self.groups = Rows::new(std::mem::take(&mut t.groups));
        self.skipped = Rows::new(std::mem::take(&mut t.skipped));
        self.plan = Rows::new(std::mem::take(&mut t.plan));
        self.drift = Rows::new(std::mem::take(&mut t.drift));
        if t.refused.is_some() && t.operation != TEST_NOW {
            // a refused sync: the plan it refused
            self.view = View::Plan;
        }
        self.summary = words::sentence(&words::text(&t.summary));
        self.baseline = words::text(&t.baseline);
        self.refused = t.refused.clone();
        self.as_of = format!(
            "As of {}, {}.",
            short_time(&t.at),
            if t.operation.is_empty() {
                "an earlier run"
            } else {
                &t.operation
            }
        );
        if t.truncated {
            self.as_of
                .push_str(" (The saved copy keeps the first rows of each table.)");
        }
        self.tables = t;
        self.query.clear();
        self.refilter();
    }

    /// Shows a test's report (what the worker does off the frame's thread, for benches and
    /// snapshots).
    pub fn set_test(&mut self, r: TestReport) {
        self.set_tables(test_tables(&r));
    }

    /// A sync went through: its tables follow ([`Dashboard::set_tables`]); the Plan tab shows.
    pub fn set_sync(&mut self, _r: SyncReport) {
        self.view = View::Plan;
    }

    /// "Show all": the Plan tab, filtered to the removals.
    pub fn show_removals(&mut self) {
        self.view = View::Plan;
        self.query = "remove (".to_string();
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

/// Organization members after each sync over time: a time axis in local time and a member
/// axis, each labelled.
fn members_chart(ui: &mut egui::Ui, points: &[(f64, u64)]) {
    if points.len() < 2 {
        ui.add_sized(
            [ui.available_width().min(640.0), 40.0],
            egui::Label::new(
                egui::RichText::new("Members over time appear after two syncs.")
                    .color(ui.visuals().weak_text_color()),
            ),
        );
        return;
    }
    let line: Vec<[f64; 2]> = points.iter().map(|(t, n)| [*t, *n as f64]).collect();
    let when = |secs: f64| {
        chrono::DateTime::from_timestamp(secs as i64, 0).map(|t| t.with_timezone(&chrono::Local))
    };
    let span = points.last().map_or(0.0, |p| p.0) - points.first().map_or(0.0, |p| p.0);
    let format = if span > 2.0 * 86_400.0 {
        "%m-%d"
    } else if span > 3_600.0 {
        "%H:%M"
    } else {
        "%H:%M:%S"
    };
    let color = ui.visuals().selection.bg_fill;
    egui_plot::Plot::new("members-chart")
        .height(160.0)
        .width(ui.available_width().min(720.0))
        .x_axis_label("Time")
        .y_axis_label("Members")
        .x_axis_formatter(move |mark, _| {
            when(mark.value).map_or(String::new(), |t| t.format(format).to_string())
        })
        .y_axis_formatter(|mark, _| format!("{}", mark.value.round() as i64))
        .label_formatter(move |pos| {
            let egui_plot::HoverPosition::NearDataPoint { position, .. } = pos else {
                return None;
            };
            let at =
                when(position.x).map_or(String::new(), |t| t.format("%Y-%m-%d %H:%M").to_string());
            Some(format!("{at}: {} members", position.y.round() as i64))
        })
        .include_y(0.0)
        .allow_zoom(false)
        .allow_scroll(false)
        .allow_drag(false)
        .allow_boxed_zoom(false)
        .allow_double_click_reset(false)
        .show(ui, |plot| {
            plot.line(egui_plot::Line::new("Members", line.clone()).color(color));
            plot.points(
                egui_plot::Points::new("Syncs", line)
                    .radius(3.0)
                    .color(color),
            );
        })
        .response
        .widget_info(|| {
            egui::WidgetInfo::labeled(
                egui::Role::Figure,
                true,
                "Members over time (axes: Time, Members)",
            )
        });
}

#[allow(
    clippy::too_many_lines,
    reason = "immediate-mode UI: the dashboard's panels laid out top to bottom, sharing the busy state"
)]
pub fn ui(app: &mut App, ui: &mut egui::Ui) {
    let busy = app.worker.busy();
    if let Some(alert) = app.status.as_ref().and_then(|s| s.service_alert.as_deref()) {
        ui.colored_label(ui.visuals().warn_fg_color, words::text(alert));
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
        if let Some(line) = s.lane.as_ref().and_then(|l| words::lane(l, local_time)) {
            ui.label(line);
        }
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
                "Sync now, then again every Interval (minutes) of Settings while this window is \
                 open",
            )
            .clicked()
        {
            app.start_polling();
        }
    });
    status_area(app, ui, busy);
    if app.dashboard.confirm_override {
        let modal = egui::Modal::new(egui::Id::unique("confirm-override")).show(ui.ctx(), |ui| {
            ui.heading("Override the guard?");
            ui.add(
                egui::Label::new(words::sentence(&words::text(
                    app.dashboard.refused.as_deref().unwrap_or_default(),
                )))
                .wrap(),
            );
            let mut choice = None;
            if refused_plan_ui(ui, &app.dashboard.tables) {
                choice = Some(Choice::ShowAll);
            }
            ui.label("This overrides the mass-removal and group guards for one sync only.");
            ui.horizontal(|ui| {
                if ui.button("Sync and remove").clicked() {
                    choice = Some(Choice::Sync);
                }
                if ui.button("Cancel").clicked() {
                    choice = Some(Choice::Cancel);
                }
            });
            choice
        });
        match modal.inner {
            Some(Choice::ShowAll) => {
                app.dashboard.confirm_override = false;
                app.dashboard.show_removals();
            }
            Some(Choice::Sync) => {
                app.dashboard.confirm_override = false;
                app.dashboard.refused = None;
                app.start(Job::Sync {
                    allow_mass_removal: true,
                });
            }
            Some(Choice::Cancel) => app.dashboard.confirm_override = false,
            None if modal.should_close() => app.dashboard.confirm_override = false,
            None => {}
        }
    }
    ui.separator();
    let d = &mut app.dashboard;
    ui.horizontal(|ui| {
        ui.selectable_value(
            &mut d.view,
            View::Users,
            format!("Users ({})", d.users.count()),
        );
        ui.selectable_value(
            &mut d.view,
            View::Groups,
            format!("Groups ({})", d.groups.count()),
        );
        ui.selectable_value(
            &mut d.view,
            View::Skipped,
            format!("Skipped ({})", d.skipped.count()),
        );
        ui.selectable_value(
            &mut d.view,
            View::Plan,
            format!("Plan ({})", d.plan.count()),
        );
        ui.selectable_value(
            &mut d.view,
            View::Drift,
            format!("Drift ({})", d.drift.count()),
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
                // the tabs' counts, drawn before the field, follow in the next frame
                ui.ctx().request_repaint();
            }
        }
    });
    // which operation the tables are from, under the tabs: a result that arrives moves no tab
    if d.view != View::History {
        if !d.as_of.is_empty() {
            ui.strong(&d.as_of);
        }
        if !d.baseline.is_empty() {
            ui.add(egui::Label::new(&d.baseline).wrap());
        }
        if !d.summary.is_empty() {
            ui.add(egui::Label::new(&d.summary).wrap());
        }
    }
    match d.view {
        View::Users => table::show(
            ui,
            "users",
            &["Email", "Status", "Action", "External id"],
            &mut d.users,
        ),
        View::Groups => table::show(
            ui,
            "groups",
            &["Group", "Members", "Member emails"],
            &mut d.groups,
        ),
        View::Skipped => table::show(ui, "skipped", &["Kind", "Entry", "Reason"], &mut d.skipped),
        View::Plan => table::show(
            ui,
            "plan",
            &["Action", "Member or group", "Detail"],
            &mut d.plan,
        ),
        View::Drift => table::show(
            ui,
            "drift",
            &["Drift", "Name", "External id", "Detail"],
            &mut d.drift,
        ),
        View::History => {
            members_chart(ui, &d.history_points);
            table::show(
                ui,
                "history",
                &["Started", "Result", "Members after", "Error"],
                &mut d.history,
            );
        }
    }
}

/// The height kept for the status area: the running operation (its stage, Cancel and the
/// sync's bar) or the guard's refusal with its override. It is there when idle too, so that
/// nothing below moves when an operation starts or ends.
const STATUS_AREA: f32 = 58.0;

/// The status area: what runs, or why the last sync was refused, in a space of fixed height.
fn status_area(app: &mut App, ui: &mut egui::Ui, busy: Option<&'static str>) {
    let width = ui.available_width();
    let (rect, _) = ui.allocate_exact_size(egui::vec2(width, STATUS_AREA), egui::Sense::hover());
    let mut area = ui.new_child(
        egui::UiBuilder::new()
            .max_rect(rect)
            .layout(egui::Layout::top_down(egui::Align::Min)),
    );
    area.set_clip_rect(rect.intersect(ui.clip_rect()));
    let ui = &mut area;
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
            ui.add(
                egui::Label::new(format!("{}: {}{count}", words::button(job), a.stage)).truncate(),
            );
        });
        if let Some(f) = a.fraction {
            ui.add(egui::ProgressBar::new(f).show_percentage());
        }
        return;
    }
    let Some(reason) = app.dashboard.refused.clone() else {
        return;
    };
    let reason = words::sentence(&words::text(&reason));
    ui.horizontal(|ui| {
        if ui
            .button("Sync anyway (this once)...")
            .on_hover_text("Shows who would be removed, then asks once more")
            .clicked()
        {
            app.dashboard.confirm_override = true;
        }
        ui.add(
            egui::Label::new(egui::RichText::new(&reason).color(ui.visuals().warn_fg_color))
                .wrap_mode(egui::TextWrapMode::Wrap)
                .halign(egui::Align::Min),
        )
        .on_hover_text(&reason);
    });
}
