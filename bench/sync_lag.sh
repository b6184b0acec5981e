#!/usr/bin/env bash
# bench/sync_lag.sh: credits-sync's commit-to-visible-in-Redis lag, p50 and
# p99, at 1,000 deductions/s and at full rate.
#
# Runs against the stack (.run/env, or CREDITS_RUN_DIR) and the daemon it
# runs, which it starts if needed.  bench/sync_lag.c does the measuring:
# asynchronous credit_deduct calls on SYNC_LAG_USERS accounts (lag-1..,
# opened here), and a Redis subscription to the keyspace events of their
# balance:<user> keys; lag = event received - COMMIT acknowledged, on one
# monotonic clock.  A user has one deduction in flight at a time, so each
# event belongs to one deduction.  notify-keyspace-events is set to K$ for
# the run and restored after.
#
# SYNC_LAG_SECONDS (10) per load, SYNC_LAG_CLIENTS (16) at full rate.
# Prints a table; also written to bench/results/sync_lag.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUN_DIR=${CREDITS_RUN_DIR:-$ROOT/.run}
[ -s "$RUN_DIR/env" ] || .ci/stack.sh up >/dev/null
# shellcheck disable=SC1091
. "$RUN_DIR/env"
export PGHOST PGPORT PGUSER PGDATABASE REDIS_HOST REDIS_PORT

SECS=${SYNC_LAG_SECONDS:-10}
USERS=${SYNC_LAG_USERS:-10000}
FULL_CLIENTS=${SYNC_LAG_CLIENTS:-16}
OUT=$ROOT/bench/results
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/credits-sync-lag.XXXXXX)
rcli() { redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" "$@"; }

pidfile=$RUN_DIR/credits-sync.pid
alive() { [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }
alive || .ci/stack.sh up >/dev/null
alive || { echo "sync_lag: credits-sync is not running (see $RUN_DIR/credits-sync.log)" >&2; exit 1; }

cc -O2 -Wall -I"$(pg_config --includedir)" -o "$WORK/sync_lag" bench/sync_lag.c -lpq -lhiredis

have=$(psql -X -Atc "SELECT count(*) FROM credits.accounts WHERE user_id LIKE 'lag-%'")
if [ "$have" -lt "$USERS" ]; then
  psql -X -q -v ON_ERROR_STOP=1 -c "SELECT count(*) FROM generate_series(1, $USERS) g,
    LATERAL credits.credit_add('lag-' || g, 1000000000000, 'bench_seed')" >/dev/null
  sleep 1
fi

old_events=$(rcli --raw CONFIG GET notify-keyspace-events | sed -n 2p)
restore() {
  rcli CONFIG SET notify-keyspace-events "$old_events" >/dev/null || true
  rm -rf "$WORK"
}
trap restore EXIT
rcli CONFIG SET notify-keyspace-events 'K$' >/dev/null

run() { # label rate clients
  local r
  r=$("$WORK/sync_lag" --rate "$2" --clients "$3" --seconds "$SECS" --users "$USERS" --warmup 1)
  IFS=$'\t' read -r rate samples p50 p99 max unseen <<<"$r"
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$rate" "$samples" "$p50" "$p99" "$max" "$unseen"
}

{
  echo "credits-sync lag: COMMIT acknowledged to the client -> balance:<user> set in Redis (keyspace event);"
  echo "$SECS s per load (first second dropped), $USERS accounts, durable commits, $(nproc) cores shared by PostgreSQL, Redis, the daemon and the load"
  echo
  echo "| load | deductions/s | samples | lag p50 ms | lag p99 ms | max ms | never seen |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  run "1,000/s (4 clients)" 1000 4
  run "full rate ($FULL_CLIENTS clients)" 0 "$FULL_CLIENTS"
} | tee "$OUT/sync_lag.md"
