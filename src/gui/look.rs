//! How the window looks and what it remembers of it: the Light theme's colours (WCAG AA
//! contrast for text, text-field borders and unticked checkboxes), and the theme and window
//! size kept across restarts in `window.toml` in the data directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The Light theme: egui's, with borders on fields, checkboxes and buttons, and text colours
/// dark enough for 4.5:1 on the light backgrounds.
pub fn light_visuals() -> egui::Visuals {
    let mut v = egui::Visuals::light();
    let border = egui::Color32::from_gray(100);
    // text fields and unticked checkboxes: a dark border on the white and light grey
    v.widgets.inactive.bg_stroke = egui::Stroke::new(1.0, border);
    v.widgets.noninteractive.fg_stroke.color = egui::Color32::from_gray(60);
    v.widgets.inactive.fg_stroke.color = egui::Color32::from_gray(40);
    v.weak_text_color = Some(egui::Color32::from_gray(100));
    v.error_fg_color = egui::Color32::from_rgb(180, 0, 0);
    v.warn_fg_color = egui::Color32::from_rgb(160, 70, 0);
    v.hyperlink_color = egui::Color32::from_rgb(0, 90, 170);
    v
}

/// What the window remembers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Remembered {
    /// "light" or "dark".
    pub theme: Option<String>,
    /// The inner size of the window, in points.
    pub width: Option<f32>,
    pub height: Option<f32>,
}

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("window.toml")
}

impl Remembered {
    /// What was remembered; nothing when the file is missing or unreadable.
    pub fn load(data_dir: &Path) -> Remembered {
        std::fs::read_to_string(path(data_dir))
            .ok()
            .and_then(|t| toml::from_str(&t).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, data_dir: &Path) -> anyhow::Result<()> {
        let text = toml::to_string(self)?;
        crate::datadir::write_atomic(&path(data_dir), text.as_bytes())
    }

    pub fn theme(&self) -> Option<egui::Theme> {
        match self.theme.as_deref() {
            Some("light") => Some(egui::Theme::Light),
            Some("dark") => Some(egui::Theme::Dark),
            _ => None,
        }
    }

    /// The remembered size, when it is a usable one.
    pub fn size(&self) -> Option<egui::Vec2> {
        match (self.width, self.height) {
            (Some(w), Some(h)) if w >= 200.0 && h >= 150.0 && w < 20_000.0 && h < 20_000.0 => {
                Some(egui::vec2(w, h))
            }
            _ => None,
        }
    }
}

/// Watches the theme and the window size, and writes them when they change (a resize once it
/// has rested for a second).
pub struct Memory {
    data_dir: PathBuf,
    written: Remembered,
    pending: Option<(Remembered, Instant)>,
    /// The remembered theme was applied (on the first frame, after whatever set one up).
    applied: bool,
}

impl Memory {
    /// The Light theme's colours; the remembered theme is applied on the first frame (the size is
    /// given to the window at its start).
    pub fn start(ctx: &egui::Context, data_dir: &Path) -> Memory {
        ctx.set_visuals_of(egui::Theme::Light, light_visuals());
        Memory {
            data_dir: data_dir.to_path_buf(),
            written: Remembered::load(data_dir),
            pending: None,
            applied: false,
        }
    }

    /// Called each frame.
    pub fn frame(&mut self, ctx: &egui::Context) {
        if !self.applied {
            self.applied = true;
            if let Some(theme) = self.written.theme() {
                ctx.set_theme(theme);
                return;
            }
        }
        let mut now = self.written.clone();
        now.theme = Some(
            match ctx.theme() {
                egui::Theme::Light => "light",
                egui::Theme::Dark => "dark",
            }
            .to_string(),
        );
        if let Some(r) = ctx.input(|i| i.viewport().inner_rect) {
            now.width = Some(r.width().round());
            now.height = Some(r.height().round());
        }
        if now == self.written {
            self.pending = None;
            return;
        }
        let theme_changed = now.theme != self.written.theme;
        let since = match &self.pending {
            Some((p, at)) if *p == now => *at,
            _ => Instant::now(),
        };
        if theme_changed || since.elapsed() >= Duration::from_secs(1) {
            self.write(now);
        } else {
            self.pending = Some((now, since));
            ctx.request_repaint_after(Duration::from_millis(1100));
        }
    }

    /// Writes what is pending (on exit).
    pub fn flush(&mut self) {
        if let Some((p, _)) = self.pending.take() {
            self.write(p);
        }
    }

    fn write(&mut self, now: Remembered) {
        if let Err(e) = now.save(&self.data_dir) {
            tracing::warn!("the window's theme and size could not be remembered: {e:#}");
        }
        self.written = now;
        self.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_theme_and_size_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Remembered::load(dir.path()), Remembered::default());
        let r = Remembered {
            theme: Some("light".into()),
            width: Some(900.0),
            height: Some(600.0),
        };
        r.save(dir.path()).unwrap();
        let back = Remembered::load(dir.path());
        assert_eq!(back.theme(), Some(egui::Theme::Light));
        assert_eq!(back.size(), Some(egui::vec2(900.0, 600.0)));
        std::fs::write(dir.path().join("window.toml"), "not toml [").unwrap();
        assert_eq!(Remembered::load(dir.path()), Remembered::default());
    }
}
