#!/usr/bin/env bash
# Member-lifecycle scenarios against a REAL Vaultwarden (not the in-process fake) and a real
# OpenLDAP slapd, for the README's server table.
#
#   scripts/real-vaultwarden.sh [VAULTWARDEN_BIN] [CONNECTOR_BIN]
#
# VAULTWARDEN_BIN (or env VAULTWARDEN_BIN): a Vaultwarden server binary with SQLite support
#   (its `sqlite` Cargo feature), built by you from Vaultwarden's own sources and
#   documentation; this script does not build it. The web vault is not needed.
#   How long: building 1.37.2 (release profile with LTO turned off, nice -n 19, a 2-core
#   machine shared with another build) took 21 minutes from a cold cargo cache; this script
#   then runs in about 5 seconds. The first output line is the binary's --version.
# CONNECTOR_BIN (or env CONNECTOR_BIN): default target/debug/directory-connector.
# Needs: python3 (standard library only), /usr/sbin/slapd + slapadd, ldap-utils.
# KEEP=1 keeps the temporary directory (Vaultwarden's log and db.sqlite3, each sync's JSON);
# VERBOSE=1 says each sync's exit code on stderr.
#
# What it does (scripts/real_vaultwarden.py): slapd on a free loopback port with the test
# schema of tests/support/slapd.rs (dcTestAccount adds userAccountControl), ten people in
# ou=People and groups eng and staff; Vaultwarden on 127.0.0.1 with a temporary DATA_FOLDER,
# ORG_GROUPS_ENABLED=true, WEB_VAULT_ENABLED=false, SIGNUPS_ALLOWED=true,
# LOGIN_RATELIMIT_MAX_BURST=100; an owner (owner@example.com) registered through
# /identity/accounts/register, an organization through /api/organizations and its API key
# through /api/organizations/{id}/api-key. The connector gets a fresh data directory with
# sync.remove_missing_users, sync.remove_disabled and sync.protected_emails=owner@example.com,
# then syncs once, and again after each change (each line also says what the sync's JSON
# reported: its plan actions and counts):
#   1 leaver    the entry is deleted (and taken out of its groups, as AD does)
#   2 returner  the same entry is added back (same DN, same email) to the same groups
#   3 disabled  userAccountControl 514, then 512 again
#   4 moved     modrdn to ou=Moved,ou=People (same email), group members follow
#   5 member API GET /api/public/members, GET/POST /api/public/members/{id}[/revoke|/restore]
#   6 Vaultwarden alone: a raw import with deleted: true and no groups, then listed again
# and prints one line per scenario from Vaultwarden's db.sqlite3 (users_organizations,
# groups_users) and the owner's GET /api/organizations/{id}/users. Vaultwarden stores a revoked
# status as the status minus 128 (-128 invited, -127 accepted, -126 confirmed); its API says -1.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
vw="${1:-${VAULTWARDEN_BIN:-}}"
dc="${2:-${CONNECTOR_BIN:-$here/../target/debug/directory-connector}}"

if [[ -z "$vw" || ! -x "$vw" ]]; then
    echo "usage: $0 VAULTWARDEN_BIN [CONNECTOR_BIN] (no executable Vaultwarden binary given)" >&2
    exit 2
fi
if [[ ! -x "$dc" ]]; then
    echo "no connector binary at $dc (cargo build, or pass its path)" >&2
    exit 2
fi
for tool in python3 ldapmodify ldapsearch; do
    command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 2; }
done
[[ -x /usr/sbin/slapd ]] || command -v slapd >/dev/null || { echo "slapd is missing" >&2; exit 2; }

exec python3 "$here/real_vaultwarden.py" "$(realpath "$vw")" "$(realpath "$dc")"
