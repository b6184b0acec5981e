#!/usr/bin/env bash
# bench/sync_lag.sh: credits-sync's commit-to-visible-in-Redis lag, p50 and
# p99, at 1,000 deductions/s and at full rate; then the same at 1,000/s
# while a transaction that started SYNC_LAG_OLD_SECONDS (60) earlier is
# still open (rows were written after it began); and the CPU the idle
# daemon and its PostgreSQL backend use together, without and with that
# old transaction (targets: lag p99 <= 10 ms, idle < 2% of a core).
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
OLD_SECS=${SYNC_LAG_OLD_SECONDS:-60}
IDLE_SECS=${SYNC_LAG_IDLE_SECONDS:-10}
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
old_pid=""
end_old() {
  [ -n "$old_pid" ] || return 0
  psql -X -q -Atc "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'bench-old-transaction'" >/dev/null || true
  wait "$old_pid" 2>/dev/null || true
  old_pid=""
}
restore() {
  rcli CONFIG SET notify-keyspace-events "$old_events" >/dev/null || true
  end_old
  rm -rf "$WORK"
}
trap restore EXIT
rcli CONFIG SET notify-keyspace-events 'K$' >/dev/null

run() { # label rate clients
  local r
  r=$("$WORK/sync_lag" --rate "$2" --clients "$3" --seconds "$SECS" --users "$USERS" --warmup 1)
  IFS=$'\t' read -r rate samples p50 p99 max unseen <<<"$r"
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$rate" "$samples" "$p50" "$p99" "$max" "$unseen"
  printf 'lag_p99\t%s\t%s\n' "$1" "$p99" >>"$OUT/sync_targets.tsv"
}

# idle LABEL: CPU of the daemon and its backend over IDLE_SECS with no
# writes, in % of one core (utime + stime from /proc, in clock ticks).
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# of_core TICKS: TICKS of CPU over IDLE_SECS, in % of one core
of_core() { awk -v t="$1" -v hz="$(getconf CLK_TCK)" -v s="$IDLE_SECS" 'BEGIN { printf "%.2f", t * 100 / hz / s }'; }
idle() {
  local d b d0 b0 d1 b1 pct
  d=$(cat "$pidfile")
  b=$(psql -X -Atc "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'credits-sync%' AND backend_type = 'client backend' LIMIT 1")
  sleep 1
  d0=$(ticks "$d"); b0=$(ticks "$b")
  sleep "$IDLE_SECS"
  d1=$(ticks "$d"); b1=$(ticks "$b")
  pct=$(of_core $(( (d1 - d0) + (b1 - b0) )))
  printf '| idle: %s | %s%% | %s%% | %s%% |\n' "$1" "$(of_core $((d1 - d0)))" "$(of_core $((b1 - b0)))" "$pct"
  printf 'idle_cpu\t%s\t%s\n' "$1" "$pct" >>"$OUT/sync_targets.tsv"
}

: >"$OUT/sync_targets.tsv"
{
  echo "credits-sync lag: COMMIT acknowledged to the client -> balance:<user> set in Redis (keyspace event);"
  echo "$SECS s per load (first second dropped), $USERS accounts, durable commits, $(nproc) cores shared by PostgreSQL, Redis, the daemon and the load"
  echo
  echo "| load | deductions/s | samples | lag p50 ms | lag p99 ms | max ms | never seen |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  run "1,000/s (4 clients)" 1000 4
  run "full rate ($FULL_CLIENTS clients)" 0 "$FULL_CLIENTS"

  # A transaction left open (it has an xid), then rows written after it.
  PGAPPNAME=bench-old-transaction psql -X -q -c "BEGIN" -c "SELECT txid_current()" -c "SELECT pg_sleep(3600)" >/dev/null 2>&1 &
  old_pid=$!
  old_start=$(date +%s)
  "$WORK/sync_lag" --rate 0 --clients 4 --seconds "$SECS" --users "$USERS" --warmup 0 >/dev/null
  while [ $(( $(date +%s) - old_start )) -lt "$OLD_SECS" ]; do sleep 1; done
  run "1,000/s (4 clients), a ${OLD_SECS} s old transaction open" 1000 4
  echo
  echo "| idle ($IDLE_SECS s, no writes) | daemon, % of a core | its backend | together |"
  echo "|---|---:|---:|---:|"
  idle "a ${OLD_SECS}+ s old transaction open"
  end_old

  idle "no transaction open"
} | tee "$OUT/sync_lag.md"
