#!/usr/bin/env bash
# Runs the whole test suite. On a fresh Debian/Ubuntu machine it first installs what the tests
# need (OpenLDAP slapd and ldap-utils, openssl, a Samba AD DC, python3-aiosmtpd, Xvfb + Mesa +
# ImageMagick for the real window's screenshot, GNOME Keyring + libsecret-tools for a private
# Secret Service, systemd-analyze, Wine for the Windows binary) with apt-get,
# retrying transient failures; then cross-builds the Windows binary (scripts/build-windows.sh)
# unless DIRECTORY_CONNECTOR_SKIP_WINDOWS_TESTS=1, and type-checks the macOS build
# (scripts/check-macos.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib.sh

missing=()
[ -x /usr/sbin/slapd ] || command -v slapd >/dev/null 2>&1 || missing+=(slapd)
command -v ldapsearch >/dev/null 2>&1 || missing+=(ldap-utils)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
[ -f /etc/ldap/schema/inetorgperson.schema ] || missing+=(slapd)
# Samba AD DC for the Active Directory tests (samba-ad-provision named: no recommends here)
command -v samba >/dev/null 2>&1 || missing+=(samba-ad-dc)
command -v samba-tool >/dev/null 2>&1 || missing+=(samba-ad-provision)
[ -d /usr/share/samba/setup ] || missing+=(samba-ad-provision)
command -v ldbsearch >/dev/null 2>&1 || missing+=(ldb-tools)
command -v kinit >/dev/null 2>&1 || missing+=(krb5-user)
# the real window under a virtual display, and its screenshot (GL through Mesa's llvmpipe)
command -v Xvfb >/dev/null 2>&1 || missing+=(xvfb xauth)
command -v xwininfo >/dev/null 2>&1 || missing+=(x11-utils)
command -v import >/dev/null 2>&1 || missing+=(imagemagick)
lib=/usr/lib/$(uname -m)-linux-gnu
{ [ -e "$lib/libGL.so.1" ] && [ -e "$lib/libEGL.so.1" ] && [ -e "$lib/dri/swrast_dri.so" ] \
  && [ -e "$lib/libGLX_mesa.so.0" ]; } || missing+=(libgl1 libglx-mesa0 libgl1-mesa-dri libegl1 libegl-mesa0)
[ -e "$lib/libxkbcommon-x11.so.0" ] && [ -e "$lib/libxkbcommon.so.0" ] || missing+=(libxkbcommon-x11-0 libxkbcommon0)
# winit opens these at run time (Xcursor is pulled in by none of the packages above)
for pair in libX11.so.6:libx11-6 libX11-xcb.so.1:libx11-xcb1 libXcursor.so.1:libxcursor1 \
            libXrandr.so.2:libxrandr2 libXi.so.6:libxi6; do
  [ -e "$lib/${pair%%:*}" ] || missing+=("${pair##*:}")
done
# image snapshots render on the CPU with wgpu over Mesa's lavapipe (Vulkan)
[ -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] || [ -e /usr/share/vulkan/icd.d/lvp_icd.aarch64.json ] || missing+=(mesa-vulkan-drivers)
[ -e "$lib/libvulkan.so.1" ] || missing+=(libvulkan1)
# a private Secret Service (D-Bus + GNOME Keyring) holding the official connector's keychain
# entries for import-bwdc (tests/support/secret_service.rs)
command -v dbus-daemon >/dev/null 2>&1 || missing+=(dbus-daemon)
command -v gnome-keyring-daemon >/dev/null 2>&1 || missing+=(gnome-keyring)
command -v secret-tool >/dev/null 2>&1 || missing+=(libsecret-tools)
# a real SMTP server for the service's alert emails (tests/e2e/service.rs)
/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || missing+=(python3-aiosmtpd)
# systemd-analyze verifies the unit (tests/e2e/package_deb.rs: without it the test fails under CI)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
# the Windows binary's tests run it under Wine (skipped only with
# DIRECTORY_CONNECTOR_SKIP_WINDOWS_TESTS=1; scripts/build-windows.sh installs the cross tools)
wine=()
if [ "${DIRECTORY_CONNECTOR_SKIP_WINDOWS_TESTS:-}" != 1 ]; then
  [ -x /usr/lib/wine/wine64 ] || command -v wine64 >/dev/null 2>&1 || wine=(wine64)
fi

if [ ${#missing[@]} -gt 0 ]; then
  apt_install "${missing[@]}" ca-certificates
fi
# Wine with its recommended libraries (GL, D-Bus, GnuTLS, …), as the Windows tests were run
apt_install --with-recommends "${wine[@]}"

if [ "${DIRECTORY_CONNECTOR_SKIP_WINDOWS_TESTS:-}" != 1 ]; then
  ./scripts/build-windows.sh
fi
# the macOS code type-checks (cargo check for aarch64-apple-darwin; C parts not compiled)
./scripts/check-macos.sh

cargo test --locked "$@"
