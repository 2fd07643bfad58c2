# Shell helpers shared by the scripts (sourced, not run).

# Runs a command up to 5 times, waiting longer after each failure (transient network errors).
retry() {
  local i
  for i in 1 2 3 4 5; do
    if "$@"; then return 0; fi
    echo "attempt $i failed: $*" >&2
    sleep $((i * 5))
  done
  return 1
}

# Installs the rustup target $1 when it is missing; fails when rustup is missing or the target
# cannot be downloaded. (grep without -q reads all of its input: no SIGPIPE under pipefail.)
ensure_rust_target() {
  if rustup target list --installed 2>/dev/null | grep -x "$1" >/dev/null; then
    return 0
  fi
  command -v rustup >/dev/null 2>&1 && retry rustup target add "$1"
}

# apt-get installs the packages given (with retries; sudo when not root), without their
# recommended packages unless the first argument is --with-recommends. Nothing given: nothing.
apt_install() {
  local recommends=(--no-install-recommends)
  if [ "${1:-}" = --with-recommends ]; then recommends=(); shift; fi
  [ $# -gt 0 ] || return 0
  local sudo=()
  if [ "$(id -u)" != 0 ]; then sudo=(sudo); fi
  echo "installing: $*" >&2
  retry "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  retry "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    "${recommends[@]}" "$@"
}
