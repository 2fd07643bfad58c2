//! The integration tests in one binary, so that `tests/support`, the library and the HTTP stack
//! compile and link once (issue 27 item 6; ripgrep's layout): the real binary against slapd, a
//! Samba AD DC, the fake Bitwarden and cloud servers, the service, the Windows build under Wine,
//! and the pure ones (properties, the model of the engine, LDAP parsing, the layers of `src/`,
//! the Debian package's parts). One module per former `tests/<name>.rs`, so a test's path says
//! where it lives: `cargo test --test e2e ldap::` runs the LDAP ones,
//! `cargo test --test e2e -- --exact ldap::config_commands` one test.
//!
//! The tests share one process and run on parallel threads: a test never changes the process's
//! environment, current directory, umask or signal handlers (a child gets its environment from
//! `support::Env`, its umask in `pre_exec`), and what must exist once (the Samba DC, the test
//! CA, the Wine prefix) is behind a `OnceLock` in `support` or its module.
//!
//! A test that cannot start what it needs fails under CI (`CI=true`) naming it, and outside CI
//! says on stderr that it skipped (`support::unavailable`); the one deliberate opt-out is
//! `DIRECTORY_CONNECTOR_SKIP_WINDOWS_TESTS=1` for the Windows binary's tests.

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

// against a real Active Directory (Samba)
mod ad;
// the layers of src/ (ARCHITECTURE.md's table)
mod architecture;
mod baseline;
mod bwdc;
mod cloud;
mod cloud_limits;
// the fast lane: the service watching slapd's change feed (syncprov)
mod fast_lane;
mod hardening_cli;
mod hardening_config;
mod large;
mod ldap;
mod ldap_hostile;
mod ldap_variants;
mod lifecycle;
// pure: random directories and organizations through the engine against a model
mod model_engine;
// the Debian package's parts
mod package_deb;
// pure: DN and entry parsing
mod prop_ldap;
// pure: filters, config, vendor JSON, import bodies
mod properties;
mod server_answers;
#[cfg(unix)]
mod service;
// the Windows binary under Wine (DIRECTORY_CONNECTOR_SKIP_WINDOWS_TESTS=1 skips them)
mod windows;
