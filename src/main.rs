//! Entry point: with a subcommand the CLI; with none the window (for now, the help).

fn main() {
    directory_connector::install_crypto_provider();
    std::process::exit(directory_connector::cli::run());
}
