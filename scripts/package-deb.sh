#!/usr/bin/env bash
# Builds the Debian package target/debian/directory-connector_<version>_<arch>.deb with cargo-deb
# (installed with `cargo install --locked` when missing): the release binary, the systemd unit
# (packaging/debian/directory-connector.service), the system user (postinst), the .desktop entry
# and icon, the man page and shell completions (generated from the binary itself).
# Usage: scripts/package-deb.sh [extra cargo-deb options]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
  echo "installing cargo-deb" >&2
  cargo install --locked cargo-deb
fi

target_dir="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked
bin="$target_dir/release/directory-connector"

# generated from the clap definition, so they match the binary
gen=packaging/generated
rm -rf "$gen" && mkdir -p "$gen"
"$bin" manpage | gzip -9n > "$gen/directory-connector.1.gz"
"$bin" completions bash > "$gen/directory-connector.bash"
"$bin" completions zsh > "$gen/_directory-connector"
"$bin" completions fish > "$gen/directory-connector.fish"

mkdir -p target/debian
# the release profile keeps line tables for profiling; the package ships a stripped binary
cargo deb --no-build --strip --output target/debian/ "$@"
ls -1 target/debian/*.deb
