#!/usr/bin/env bash
# CI's package check: builds the Debian package (scripts/package-deb.sh, or takes the .deb given
# as the argument), checks its contents with dpkg-deb -c, installs it with dpkg -i, runs the
# installed binary, checks the system user and the unit (systemd-analyze verify, when there is
# one), then purges the package and checks that the user is gone. Needs root (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

if [ $# -gt 0 ]; then
  deb="$1"
else
  ./scripts/package-deb.sh
  deb=$(ls -1t target/debian/directory-connector_*.deb | head -1)
fi
echo "checking $deb"

contents=$(dpkg-deb -c "$deb")
for f in ./usr/bin/directory-connector \
         ./usr/lib/systemd/system/directory-connector.service \
         ./usr/share/man/man1/directory-connector.1.gz \
         ./usr/share/applications/directory-connector.desktop \
         ./usr/share/bash-completion/completions/directory-connector \
         ./usr/share/zsh/vendor-completions/_directory-connector \
         ./usr/share/fish/vendor_completions.d/directory-connector.fish \
         ./etc/default/directory-connector; do
  grep -qF " $f" <<<"$contents" || { echo "missing from the package: $f" >&2; exit 1; }
done
# (captured first: `grep -q` quits at the first match, and with pipefail the writer's SIGPIPE
# would fail the pipeline)
info=$(dpkg-deb -I "$deb")
grep -q "Package: directory-connector" <<<"$info" || { echo "bad control file" >&2; exit 1; }

if dpkg -s directory-connector >/dev/null 2>&1; then
  echo "directory-connector is already installed here; not touching it" >&2
  exit 1
fi
trap '$SUDO dpkg --purge directory-connector >/dev/null 2>&1 || true' EXIT
$SUDO dpkg -i "$deb"
/usr/bin/directory-connector --version
getent passwd directory-connector >/dev/null || { echo "postinst made no system user" >&2; exit 1; }
[ "$(stat -c %a /etc/default/directory-connector)" = 600 ] || {
  echo "/etc/default/directory-connector is not 0600" >&2; exit 1; }
if command -v systemd-analyze >/dev/null 2>&1; then
  out=$(systemd-analyze verify --man=no /usr/lib/systemd/system/directory-connector.service 2>&1) || true
  if [ -n "$out" ]; then echo "systemd-analyze verify: $out" >&2; exit 1; fi
  echo "systemd-analyze verify: clean"
else
  echo "systemd-analyze is not installed: the unit is checked by tests/e2e/package_deb.rs only"
fi
$SUDO dpkg --purge directory-connector
trap - EXIT
if getent passwd directory-connector >/dev/null; then
  echo "purge left the system user" >&2; exit 1
fi
[ ! -e /usr/bin/directory-connector ] || { echo "purge left the binary" >&2; exit 1; }
echo "package check passed: $deb"
