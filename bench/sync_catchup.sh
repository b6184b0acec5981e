#!/usr/bin/env bash
# bench/sync_catchup.sh: how fast credits-sync catches up after downtime
# (target: at least 20,000 ledger rows/s).
#
# Against the stack (.run/env, or CREDITS_RUN_DIR): stops the stack's
# daemon (SIGTERM; its cursor stays in Redis), commits SYNC_CATCHUP_ROWS
# deductions (200,000) on SYNC_CATCHUP_USERS accounts (catchup-1.., 10,000)
# from two sessions, ten per transaction, then starts the daemon again the
# way the stack does and times it from launch until its sync:status says
# it has applied them all.  The daemon is left running.
#
# With SYNC_CATCHUP_REBUILD=1 it also times a cold rebuild: a second daemon
# with a fresh key prefix (bench-rebuild:) fills an empty key space from
# every account; its keys are deleted afterwards.
#
# The CPU the catch-up costs per row (target: 20 us in all) is read from
# /proc (utime + stime): the daemon's and its PostgreSQL backend's since
# launch, and Redis's over the same time.
#
# Prints a table; also written to bench/results/sync_catchup.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUN_DIR=${CREDITS_RUN_DIR:-$ROOT/.run}
[ -s "$RUN_DIR/env" ] || .ci/stack.sh up >/dev/null
# shellcheck disable=SC1091
. "$RUN_DIR/env"
export PGHOST PGPORT PGUSER PGDATABASE REDIS_HOST REDIS_PORT

ROWS=${SYNC_CATCHUP_ROWS:-200000}
USERS=${SYNC_CATCHUP_USERS:-10000}
OUT=$ROOT/bench/results
mkdir -p "$OUT"
BIN=$ROOT/sync/credits-sync
[ -x "$BIN" ] || BIN=$(command -v credits-sync)
pidfile=$RUN_DIR/credits-sync.pid
log=$RUN_DIR/credits-sync.log
rcli() { redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" "$@"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
alive() { [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

alive || .ci/stack.sh up >/dev/null
alive || { echo "sync_catchup: credits-sync is not running (see $log)" >&2; exit 1; }

have=$(psql -X -Atc "SELECT count(*) FROM credits.accounts WHERE user_id LIKE 'catchup-%'")
if [ "$have" -lt "$USERS" ]; then
  psql -X -q -v ON_ERROR_STOP=1 -c "SELECT count(*) FROM generate_series(1, $USERS) g,
    LATERAL credits.credit_add('catchup-' || g, 1000000000000, 'bench_seed')" >/dev/null
fi
sleep 1

# Down: SIGTERM, the daemon finishes its batch and exits.
pid=$(cat "$pidfile")
kill -TERM "$pid"
while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done

# The backlog, committed while the daemon is down.
t0=$(now_ms)
for s in 1 2; do
  psql -X -q -v ON_ERROR_STOP=1 -c "SET synchronous_commit = off" -c "
    DO \$\$
    BEGIN
      FOR i IN 1..$((ROWS / 2)) LOOP
        PERFORM credits.credit_deduct('catchup-' || (1 + (i * 7919 + $s) % $USERS), 1,
                                      'catchup', '{\"bench\": \"sync_catchup\"}');
        IF i % 10 = 0 THEN COMMIT; END IF;
      END LOOP;
    END \$\$" &
done
wait
t1=$(now_ms)
backlog=$(( (ROWS / 2) * 2 ))

# Up again, as the stack starts it; timed until every row is applied.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
redis_pid=$(cat "$RUN_DIR/redis.pid")
redis0=$(ticks "$redis_pid")
start=$(now_ms)
(
  set -a
  # shellcheck disable=SC1091
  . "$RUN_DIR/env"
  set +a
  exec setsid "$BIN" --pidfile "$pidfile" </dev/null >>"$log" 2>&1
) &
newpid=$!
done_ms=""
while :; do
  if [ "$(rcli --raw HGET sync:status pid)" = "$newpid" ]; then
    if [ "$(rcli --raw HGET sync:status rebuilds)" != 0 ]; then
      echo "sync_catchup: the daemon found no cursor in Redis and rebuilt instead of catching up; run again" >&2
      exit 1
    fi
    synced=$(rcli --raw HGET sync:status rows_synced)
    if [ "${synced:-0}" -ge "$backlog" ]; then
      done_ms=$(now_ms)
      break
    fi
  fi
  kill -0 "$newpid" 2>/dev/null || { echo "sync_catchup: the daemon exited (see $log)" >&2; exit 1; }
  [ $(($(now_ms) - start)) -lt 600000 ] || { echo "sync_catchup: no catch-up after 10 minutes" >&2; exit 1; }
  sleep 0.01
done
redis1=$(ticks "$redis_pid")
daemon_t=$(ticks "$newpid")
backend=$(psql -X -Atc "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'credits-sync%' AND backend_type = 'client backend' ORDER BY backend_start DESC LIMIT 1")
backend_t=$(ticks "$backend")
hz=$(getconf CLK_TCK)
us_row() { awk -v t="$1" -v hz="$hz" -v n="$backlog" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }'; }
cpu_pg=$(us_row "$backend_t"); cpu_redis=$(us_row $((redis1 - redis0))); cpu_daemon=$(us_row "$daemon_t")
cpu_total=$(us_row $((backend_t + redis1 - redis0 + daemon_t)))
printf 'mirror_cpu\tcatch-up\t%s\n' "$cpu_total" >>"$OUT/sync_targets.tsv"
secs=$(awk -v a="$start" -v b="$done_ms" 'BEGIN { printf "%.2f", (b - a) / 1000 }')
rate=$(awk -v n="$backlog" -v a="$start" -v b="$done_ms" 'BEGIN { printf "%.0f", n * 1000 / (b - a) }')

rebuild_row=""
if [ "${SYNC_CATCHUP_REBUILD:-0}" = 1 ]; then
  rlog=$(mktemp /tmp/credits-sync-rebuild.XXXXXX)
  "$BIN" --prefix bench-rebuild: >"$rlog" 2>&1 &
  rpid=$!
  while ! grep -q 'rebuild done' "$rlog"; do
    kill -0 "$rpid" 2>/dev/null || { cat "$rlog" >&2; exit 1; }
    sleep 0.1
  done
  kill -TERM "$rpid"
  wait "$rpid" || true
  # "rebuild done: A accounts, R rows in M ms"
  read -r accts rrows rms < <(sed -n 's/.*rebuild done: \([0-9]*\) accounts, \([0-9]*\) rows in \([0-9]*\) ms.*/\1 \2 \3/p' "$rlog" | tail -n 1)
  rebuild_row=$(awk -v a="$accts" -v r="$rrows" -v m="$rms" \
    'BEGIN { printf "| cold rebuild into an empty key space | %d accounts, %d rows | %.2f | %.0f |", a, r, m / 1000, r * 1000 / (m > 0 ? m : 1) }')
  # its keys, and the companions of its value keys ({bench-rebuild:balance:<u>}:v)
  { rcli --scan --pattern 'bench-rebuild:*'; rcli --scan --pattern '{bench-rebuild:*'; } |
    xargs -r -n 500 -d '\n' redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" UNLINK >/dev/null
  rm -f "$rlog"
fi

{
  echo "credits-sync catch-up: $backlog deductions committed while the daemon was down (in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1000 }') s),"
  echo "$USERS accounts, timed from the daemon's launch until sync:status counts them all; target >= 20,000 rows/s"
  echo
  echo "| case | rows | seconds | rows/s |"
  echo "|---|---:|---:|---:|"
  echo "| catch-up after downtime | $backlog | $secs | $rate |"
  [ -z "$rebuild_row" ] || echo "$rebuild_row"
  echo
  echo "| CPU per row, catch-up | PostgreSQL backend | Redis | daemon | total (target <= 20 us) |"
  echo "|---|---:|---:|---:|---:|"
  echo "| us | $cpu_pg | $cpu_redis | $cpu_daemon | $cpu_total |"
} | tee "$OUT/sync_catchup.md"
