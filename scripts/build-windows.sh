#!/usr/bin/env bash
# Cross-builds the Windows binary on Debian/Ubuntu:
#   <target dir>/x86_64-pc-windows-gnu/release/directory-connector.exe
#   <target dir>/x86_64-pc-windows-gnu/release/directory-connector-<version>-windows-x86_64.zip
#     (the exe, README.md, LICENSE)
#   <target dir>/x86_64-pc-windows-gnu/wine/bcryptprimitives.dll (test setup for Wine 8 only,
#     never shipped: see scripts/wine/bcryptprimitives.c)
# <target dir> is $CARGO_TARGET_DIR when set, else ./target. Installs what it needs (the rustup
# target, MinGW-w64, nasm, cmake, zip) with retries; exits non-zero with a message when the Rust
# target cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-pc-windows-gnu
. scripts/lib.sh

if ! ensure_rust_target "$TARGET"; then
  echo "build-windows.sh: cannot install the Rust target $TARGET (rustup missing, or no" \
       "access to static.rust-lang.org); no Windows binary was built" >&2
  exit 3
fi

missing=()
command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || missing+=(gcc-mingw-w64-x86-64)
command -v nasm >/dev/null 2>&1 || missing+=(nasm)
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v zip >/dev/null 2>&1 || missing+=(zip)
apt_install "${missing[@]}"

cargo build --locked --release --target "$TARGET" --bin directory-connector

out="${CARGO_TARGET_DIR:-$PWD/target}/$TARGET"
exe="$out/release/directory-connector.exe"
[ -f "$exe" ] || { echo "build-windows.sh: $exe was not produced" >&2; exit 1; }

# Wine 8 lacks bcryptprimitives.dll (ProcessPrng), which Rust's std needs: a stand-in for tests
mkdir -p "$out/wine"
x86_64-w64-mingw32-gcc -shared -O2 -o "$out/wine/bcryptprimitives.dll" \
  scripts/wine/bcryptprimitives.c scripts/wine/bcryptprimitives.def -ladvapi32

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
zipfile="$out/release/directory-connector-$version-windows-x86_64.zip"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp "$exe" README.md LICENSE "$stage/"
rm -f "$zipfile"
(cd "$stage" && zip -q -X "$zipfile" directory-connector.exe README.md LICENSE)
echo "built $exe"
echo "built $zipfile"
