//! Entry point: with a subcommand the CLI; with none the desktop window.

#![allow(
    unused_crate_dependencies,
    reason = "the binary only starts the library; the dependencies are the library's, and the lint checks them there"
)]

/// mimalloc: fewer cycles and less fragmentation than glibc's allocator for the many small
/// strings of a large directory. (`--features system-alloc` keeps the system allocator, for
/// heap profilers such as valgrind's massif.)
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    no_huge_pages();
    // Windows: a double-click gives up the console Windows made for us (see src/platform.rs)
    directory_connector::platform::detach_own_console(std::env::args_os().len() > 1);
    directory_connector::install_crypto_provider();
    std::process::exit(directory_connector::cli::run());
}

/// Transparent huge pages off for this process. mimalloc asks for them, and each first touch of
/// a 2 MB page then makes the kernel zero all of it: at 100,000 users that doubled the system
/// time of a sync (0.5 s against 0.25 s) and added ~18 MB to peak memory. The connector's heap
/// is short-lived and touched once, so small pages serve it better.
#[cfg(target_os = "linux")]
fn no_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and touches no memory of ours.
    let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if r != 0 {
        // older kernels: nothing is lost but some speed
        eprintln!("note: could not turn off transparent huge pages for this process");
    }
}

#[cfg(not(target_os = "linux"))]
fn no_huge_pages() {}
