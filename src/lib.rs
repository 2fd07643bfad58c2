//! Directory Connector: keeps a Bitwarden organization's members and groups in step with a
//! company directory. The library holds every part; `main.rs` only starts the CLI (or, later,
//! the window). The window is the default-on `gui` feature: without it the build has no
//! eframe/egui and every command still works.

pub mod bitwarden;
pub mod bwdc;
pub mod cli;
pub mod config;
#[allow(
    clippy::too_many_lines,
    reason = "sync_inner, push and their neighbours are being split into the stages of src/sync (issue 27, another change); this allow leaves with them"
)]
pub mod connector;
pub mod datadir;
pub mod engine;
pub mod errors;
#[cfg(feature = "gui")]
pub mod gui;
pub mod logging;
pub mod net;
pub mod platform;
pub mod progress;
pub mod secrets;
pub mod service;
pub mod sources;
pub mod store;
pub mod sync;
pub mod winservice;

// Dependencies that Cargo's `unused_crate_dependencies` lint would report here, said once:
/// The global allocator of the binary (`main.rs`); the library itself allocates through it.
use mimalloc as _;
/// Dev-dependencies that the integration tests use and the unit tests do not.
#[cfg(test)]
use {base64 as _, egui_kittest as _};

/// The version sent to the server and shown to the admin.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A scoped thread's result; its panic goes on in the joining thread (as if the work had run
/// there).
pub(crate) fn joined<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Installs the process-wide rustls crypto provider (aws-lc-rs). Safe to call more than once.
pub fn install_crypto_provider() {
    // An Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Environment variable naming a stage at which a debug build panics (tests of the panic path:
/// `sync-start`, `after-batch`, `output`). Release builds have no such stage.
pub const TEST_PANIC_ENV: &str = "DIRECTORY_CONNECTOR_TEST_PANIC";

/// Panics when [`TEST_PANIC_ENV`] names `stage` (debug builds only).
#[cfg(debug_assertions)]
#[allow(
    clippy::panic,
    reason = "the panic is the point: tests of the crash path start it here"
)]
pub fn test_panic_point(stage: &str) {
    if std::env::var(TEST_PANIC_ENV).is_ok_and(|v| v == stage) {
        panic!("test panic at stage `{stage}` ({TEST_PANIC_ENV})");
    }
}

/// Panics when [`TEST_PANIC_ENV`] names `stage` (debug builds only).
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn test_panic_point(_stage: &str) {}
