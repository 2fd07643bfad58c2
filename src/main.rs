//! Entry point: with a subcommand the CLI; with none the desktop window.

/// mimalloc: fewer cycles and less fragmentation than glibc's allocator for the many small
/// strings of a large directory. (`--features system-alloc` keeps the system allocator, for
/// heap profilers such as valgrind's massif.)
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    directory_connector::install_crypto_provider();
    std::process::exit(directory_connector::cli::run());
}
