//! The desktop window (egui/eframe): login, then Dashboard, Settings and More tabs over a
//! background worker. It reads and writes the same config, secret store and database as the
//! CLI, so what one changes the other sees.

mod app;
mod bwdc_import;
pub mod dashboard;
mod labels;
pub mod look;
mod more;
mod settings;
mod table;
pub mod words;
pub mod worker;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use app::{App, AppOptions, INFO_SHOWN, Tab};
pub use dashboard::View;

/// The application icon (`assets/icon.png`), decoded for the window manager.
pub fn icon() -> Option<egui::IconData> {
    let bytes: &[u8] = include_bytes!("../../assets/icon.png");
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().ok()?;
    let mut buf = vec![0; reader.output_buffer_size()?];
    let info = reader.next_frame(&mut buf).ok()?;
    if info.color_type != png::ColorType::Rgba || info.bit_depth != png::BitDepth::Eight {
        return None;
    }
    buf.truncate(info.buffer_size());
    Some(egui::IconData {
        rgba: buf,
        width: info.width,
        height: info.height,
    })
}

/// Opens the window on a data directory and runs until it is closed.
pub fn run(data_dir: &Path) -> anyhow::Result<()> {
    let mut viewport = egui::ViewportBuilder::default()
        .with_title("Bitwarden Directory Connector")
        .with_app_id("directory-connector")
        .with_inner_size(
            look::Remembered::load(data_dir)
                .size()
                .unwrap_or(egui::vec2(1100.0, 760.0)),
        )
        .with_min_inner_size([720.0, 480.0]);
    match icon() {
        Some(icon) => viewport = viewport.with_icon(Arc::new(icon)),
        None => tracing::warn!("assets/icon.png is not an 8-bit RGBA PNG: no window icon"),
    }
    let native = eframe::NativeOptions {
        viewport,
        ..Default::default()
    };
    let opts = AppOptions {
        data_dir: data_dir.to_path_buf(),
        secrets: crate::secrets::open_store(data_dir),
        poll_interval: None,
    };
    eframe::run_native(
        "directory-connector",
        native,
        Box::new(move |cc| Ok(Box::new(App::new(&cc.egui_ctx, opts)))),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
}

/// How long closing the window waits for a running sync to reach a batch boundary.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(60);
