#!/usr/bin/env bash
# Measures `test`, `drift` and `sync --reconcile` (after a first sync) at 20,000 users in 200
# groups against the fake server with the Bitwarden cloud's rate limits, counted per IP, method
# and path as the cloud counts them (tests/support/cloud_limits.rs, CloudLimits::cloud), for
# this build and, when given, an older checkout:
#
#   scripts/measure-cloud-limits.sh [OLD_CHECKOUT]
#
# OLD_CHECKOUT (e.g. a worktree of 4fce0f7, the client before issue 28) is built with its own
# target directory and run with the settings its client used against the cloud (one counter,
# 4 a second and 50 a minute); this build runs with `server.rate_limits cloud`. Each command
# starts in a fresh server minute. Prints one line a command: exit code, wall time, the requests
# the fake saw by kind, refusals and blocks.
#
# MEASURE_SCALE (default 1: real time) runs the fake's clock and the client's faster.
# Needs slapd (as the e2e tests do). Takes minutes: the old client paces 200 group reads at 50
# a minute.
#
# Measured on a 2-core machine at real time (debug builds; `scripts/measure-cloud-limits.sh
# /work/wt-old` with wt-old at 4fce0f7, this side at af974cc), wall time and requests:
#   command            before (4fce0f7)       after
#   sync (first)       12.3 s, 41 requests    6.0 s, 216 requests (all 200 groups read back)
#   test               244.2 s, 203           4.2 s, 203
#   drift              242.4 s, 203           3.9 s, 203
#   sync --reconcile   241.9 s, 203           2.1 s, 203
# No refusal, no block on either side.
set -euo pipefail
cd "$(dirname "$0")/.."

OLD=${1:-}
SCALE=${MEASURE_SCALE:-1}
measure() {
  DC_MEASURE_SCALE="$SCALE" nice -n 10 cargo test --test e2e \
    cloud_limits::measure_commands_at_20000_users_in_200_groups -- --ignored --nocapture --test-threads 1 \
    2>&1 | grep '^measure:'
}

nice -n 10 cargo test --test e2e --no-run
echo "== after (this checkout, $(git rev-parse --short HEAD))"
DC_MEASURE_BUDGET=cloud measure

if [ -n "$OLD" ]; then
  (cd "$OLD" && nice -n 10 cargo build --bin directory-connector)
  bin="$(cd "$OLD" && cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/debug/directory-connector"
  echo "== before ($OLD, $(git -C "$OLD" rev-parse --short HEAD))"
  DC_MEASURE_BIN="$bin" DC_MEASURE_BUDGET=legacy measure
fi
