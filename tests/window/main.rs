//! The tests of the window (the `gui` feature) in one binary: `gui` drives the real widgets with
//! egui_kittest, `gui_snapshots` compares each screen with `tests/snapshots/*.png` (rendered on
//! the CPU with wgpu over Mesa's lavapipe), `window` starts the real window under Xvfb.
//! `cargo test --test window gui_snapshots::` runs one module. See `tests/e2e/main.rs` for the
//! rules of a shared test process and of a test that cannot start what it needs.

// Lints of Cargo.toml's [lints] table that do not fit a test crate (see clippy.toml):
#![allow(
    unused_crate_dependencies,
    reason = "a test crate sees every dependency of the package and uses a few of them"
)]
#![allow(
    unreachable_pub,
    reason = "a test crate exports nothing; `pub` in tests/support says what a test may use"
)]
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed step panics (clippy.toml exempts only the #[test] functions, not their helpers)"
)]

#[path = "../support/mod.rs"]
mod support;

mod fast_lane;
mod gui;
mod gui_snapshots;
mod own_words;
mod window;
