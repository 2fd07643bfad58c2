#!/usr/bin/env bash
# Type-checks the macOS build on Linux: `cargo check --locked --target aarch64-apple-darwin`.
#
# What this verifies: every line of Rust — the project's, with its `cfg(target_os = "macos")`
# code (the Keychain store, the paths), and its dependencies' (apple-native-keyring-store,
# winit's and glutin's macOS back ends, …) — compiles for macOS.
# What it does not: the C parts (aws-lc for TLS, the bundled SQLite) need Apple's SDK, which a
# Linux machine does not have, so their build scripts get a stand-in C compiler that only writes
# empty object files. `cargo check` never links, so nothing is built from those files; no macOS
# binary is made or run.
#
# Installs the rustup target when missing (with retries). When it cannot be installed (no rustup,
# or no access to static.rust-lang.org) the check is skipped with a message, exit 0.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=aarch64-apple-darwin
. scripts/lib.sh

if ! ensure_rust_target "$TARGET"; then
  echo "check-macos.sh: SKIPPED: cannot install the Rust target $TARGET (rustup missing, or" \
       "no access to static.rust-lang.org); the macOS code was not checked" >&2
  exit 0
fi

# a fixed place under the target dir: the build scripts re-run when the compiler's path changes
stub="${CARGO_TARGET_DIR:-$PWD/target}/check-macos"
mkdir -p "$stub"
# the stand-in C compiler: an empty object file wherever one is asked for (-o FILE, -oFILE,
# or the MSVC-style -FoFILE that cc-rs uses for a compiler it does not recognise)
cat >"$stub/cc" <<'EOF'
#!/bin/sh
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out="$2"; shift 2 ;;
    -o*) out="${1#-o}"; shift ;;
    -Fo*) out="${1#-Fo}"; shift ;;
    /Fo*) out="${1#/Fo}"; shift ;;
    *) shift ;;
  esac
done
if [ -n "$out" ]; then : >"$out"; fi
exit 0
EOF
chmod +x "$stub/cc"

CC_aarch64_apple_darwin="$stub/cc" CXX_aarch64_apple_darwin="$stub/cc" \
  cargo check --locked --target "$TARGET"
echo "check-macos.sh: the Rust code compiles for $TARGET (C parts not compiled: see the script)"
