#!/usr/bin/env bash
# Integration tests of credits-sync against a real PostgreSQL and a real
# redis-server, with fault injection.
#
#   test/sync/run.sh [TEST...]     (default: every test; names below)
#
# Starts its own stack with .ci/stack.sh under a temporary CREDITS_RUN_DIR
# (free ports), stops the daemon the stack starts, and runs its own daemons
# (sync/credits-sync, built by `make`).  Each test uses its own key prefix,
# so tests never see each other's Redis keys.  Every convergence check is
# test/sync/check.c: balance = credit_balance(u) and txs:<u> = exactly the
# newest N rows for EVERY account, no keys for unknown users, within 2 s.
#
# Prints one line per test and a final "N passed, N failed"; exits 1 if any
# test failed.  Set KEEP=1 to keep the run directory (kept anyway on failure).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=$REPO/sync/credits-sync
PGBIN=${CREDITS_PGBIN:-/usr/lib/postgresql/15/bin}
T=$(mktemp -d /tmp/credits-sync-test.XXXXXX)
chmod 755 "$T"
export CREDITS_RUN_DIR=$T/run
unset CREDITS_PGPORT CREDITS_REDIS_PORT CREDITS_SYNC_REDIS_CLUSTER CREDITS_SYNC_PARTITION REDIS_CLUSTER_NODES

PASSED=0
FAILED=0
FAILED_NAMES=()
declare -A DPID=()
CURRENT=""
PREFIX=""
WINDOW=1000
TEST_FAILED=0
TEST_NO=0

say() { printf '%s\n' "$*"; }
note() { printf '    %s\n' "$*"; }

# Marks the current test failed, with a reason.
fail() {
  TEST_FAILED=1
  printf '    FAIL: %s\n' "$*"
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

cleanup() {
  local name
  for name in "${!DPID[@]}"; do
    kill -KILL "${DPID[$name]}" 2>/dev/null || true
  done
  jobs -p | xargs -r kill 2>/dev/null || true
  local f
  for f in "$T"/*.cluster/redis.pid; do
    [ -s "$f" ] && kill "$(tr -dc 0-9 <"$f")" 2>/dev/null
  done
  [ -d "$T/rcluster" ] && "$REPO/.ci/redis_cluster.sh" down "$T/rcluster" >/dev/null 2>&1
  "$REPO/.ci/stack.sh" down >"$T/stack-down.log" 2>&1 || true
  if [ "${KEEP:-0}" = 1 ] || [ "$FAILED" -gt 0 ]; then
    say "run directory kept: $T"
  else
    rm -rf "$T"
    [ -z "${PGROOT:-}" ] || [[ "$PGROOT" != /tmp/credits-pg-* ]] || rm -rf "$PGROOT"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- stack ---------------------------------------------------------------

[ -x "$BIN" ] || { say "credits-sync is not built: run make"; say "0 passed, 1 failed"; exit 1; }

if ! "$REPO/.ci/stack.sh" up >"$T/stack-up.log" 2>&1; then
  cat "$T/stack-up.log"
  say "0 passed, 1 failed"
  exit 1
fi
# The stack starts a daemon of its own (prefix none); the tests run theirs.
if [ -s "$CREDITS_RUN_DIR/credits-sync.pid" ]; then
  pid=$(tr -dc 0-9 <"$CREDITS_RUN_DIR/credits-sync.pid")
  if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q credits-sync; then
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  fi
  rm -f "$CREDITS_RUN_DIR/credits-sync.pid"
fi
set -a
# shellcheck disable=SC1091
. "$CREDITS_RUN_DIR/env"
set +a
PGROOT=$(cat "$CREDITS_RUN_DIR/pg.dir")
PGDATA_DIR=$PGROOT/data

if [ -z "$(psql -X -At -c "SELECT extversion FROM pg_extension WHERE extname = 'credits'" 2>/dev/null)" ]; then
  cat "$T/stack-up.log"
  say "the credits extension is not installed (make install)"
  say "0 passed, 1 failed"
  exit 1
fi

CHECK=$T/check
if ! cc -O1 -g -Wall -Wextra -I"$(pg_config --includedir)" -DCREDITS_SYNC_VERSION='"check"' -o "$CHECK" \
  "$REPO/test/sync/check.c" "$REPO/sync/keyslot.c" "$REPO/sync/partition.c" -lpq -lhiredis 2>"$T/check-build.log"; then
  cat "$T/check-build.log"
  say "0 passed, 1 failed"
  exit 1
fi

# --- helpers -------------------------------------------------------------

# sql ARGS...: psql; an error fails the current test.
sql() {
  PGOPTIONS="-c lock_timeout=10s -c statement_timeout=120s" psql -X -q -At -v ON_ERROR_STOP=1 "$@"
  local rc=$?
  [ $rc -eq 0 ] || fail "psql failed (status $rc)"
  return $rc
}
rcli() { redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" "$@"; }

# start_daemon NAME [ARGS...]: runs a daemon with this test's prefix and
# window, and waits until it has a cursor (rebuilt or resumed).
start_daemon() {
  local name=$1 log
  shift
  log=$T/$CURRENT.$name.log
  "$BIN" --prefix "$PREFIX" --window "$WINDOW" --pidfile "$T/$CURRENT.$name.pid" \
    "$@" </dev/null >>"$log" 2>&1 &
  DPID[$name]=$!
  wait_log "$name" 'rebuild done|resuming from cursor' 10 ||
    fail "daemon $name did not start (see $log)"
}

# wait_log NAME REGEX SECONDS: waits for a line in the daemon's log.
wait_log() {
  local log=$T/$CURRENT.$1.log i
  for i in $(seq 1 $(($3 * 20))); do
    grep -Eq -- "$2" "$log" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

# log_count NAME REGEX: how many log lines match.
log_count() { grep -Ec -- "$2" "$T/$CURRENT.$1.log" 2>/dev/null || true; }

alive() { kill -0 "${DPID[$1]}" 2>/dev/null; }

# stop_daemon NAME: SIGTERM, and the exit status must be 0.
stop_daemon() {
  local pid=${DPID[$1]} rc
  kill -TERM "$pid" 2>/dev/null
  wait "$pid"
  rc=$?
  unset "DPID[$1]"
  [ "$rc" -eq 0 ] || fail "daemon $1 exited with status $rc after SIGTERM"
}

kill9_daemon() {
  kill -KILL "${DPID[$1]}" 2>/dev/null
  wait "${DPID[$1]}" 2>/dev/null
  unset "DPID[$1]"
}

# converged_within WHAT [MS [CHECK ARGS...]]: WHAT (Redis, as check.c
# finds it from the environment) must match PostgreSQL within MS (default
# 2000) ms; check.c gets the extra arguments.
converged_within() {
  local what=$1 ms=${2:-2000} out rc
  shift
  [ $# -gt 0 ] && shift
  out=$("$CHECK" --prefix "$PREFIX" --window "$WINDOW" --timeout-ms "$ms" "$@" 2>&1)
  rc=$?
  note "$(head -n 1 <<<"$out")"
  if [ $rc -ne 0 ]; then
    fail "$what did not converge"
    sed 's/^/      /' <<<"$out" | tail -n +2 | head -n 12
    return 1
  fi
}

# converge [MS]: Redis must match PostgreSQL within MS (default 2000) ms.
converge() { converged_within Redis "$@"; }

# users PREFIX N BALANCE: opens accounts PREFIX1..PREFIXN.
users() {
  sql -c "SELECT count(*) FROM generate_series(1, $2) i,
            LATERAL credits.credit_init('$1' || i, $3)" >/dev/null
}

# writer NAME USERPREFIX NUSERS SECONDS RATE: background deductions by
# pgbench (2 clients), RATE per second in total.
writer() {
  local name=$1
  printf '\\set u random(1, %d)\nSELECT credits.credit_deduct(%s || :u, 1, %s);\n' \
    "$3" "'$2'" "'w'" >"$T/$CURRENT.$name.sql"
  "$PGBIN/pgbench" -n -c 2 -j 1 -T "$4" -R "$5" -f "$T/$CURRENT.$name.sql" \
    >"$T/$CURRENT.$name.out" 2>&1 &
  DPID[$name]=$!
}

wait_writer() {
  wait "${DPID[$1]}"
  local rc=$?
  unset "DPID[$1]"
  [ $rc -eq 0 ] || fail "writer $1 failed: $(tail -n 3 "$T/$CURRENT.$1.out")"
  grep -q 'number of failed transactions: 0 ' "$T/$CURRENT.$1.out" ||
    fail "writer $1 had failed transactions"
}

# status_field NAME: a field of this test's sync:status hash.
status_field() { rcli --raw HGET "${PREFIX}sync:status" "$1"; }

redis_restart_empty() {
  local pid i
  pid=$(tr -dc 0-9 <"$CREDITS_RUN_DIR/redis.pid")
  rcli SHUTDOWN NOSAVE >/dev/null 2>&1
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  sleep "${1:-0}"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
    --pidfile "$CREDITS_RUN_DIR/redis.pid" --logfile "$CREDITS_RUN_DIR/redis.log" \
    --dir "$CREDITS_RUN_DIR" --save "" --appendonly no >/dev/null
  for i in $(seq 1 100); do [ "$(rcli PING 2>/dev/null)" = PONG ] && break; sleep 0.05; done
}

pg_restart() {
  (cd / && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 60 -s \
    -l "$PGDATA_DIR/postgresql.log" restart) || fail "pg_ctl restart failed"
  head -n 1 "$PGDATA_DIR/postmaster.pid" >"$CREDITS_RUN_DIR/postgres.pid"
}

pg_ctl_do() {
  (cd / && runuser -u postgres -- "$PGBIN/pg_ctl" -D "${2:-$PGDATA_DIR}" -m fast -w -t 60 -s \
    -l "${2:-$PGDATA_DIR}/postgresql.log" "$1") || fail "pg_ctl $1 failed"
  [ "$1" = stop ] || head -n 1 "${2:-$PGDATA_DIR}/postmaster.pid" >"$CREDITS_RUN_DIR/postgres.pid"
}

# metrics_valid FILE: FILE is Prometheus text format 0.0.4 as credits-sync
# writes it: every line a "# HELP name text", a "# TYPE name type" or a
# sample "name{label="value",...} value"; names credits_sync_*, label
# values escaped (\\, \", \n only), values numbers; a metric's HELP and
# TYPE come once, before its samples, which are together; no sample twice;
# the file ends with a newline.  Prints what is wrong; false if anything.
metrics_valid() {
  [ -s "$1" ] || { echo "$1 is missing or empty"; return 1; }
  [ "$(tail -c 1 "$1" | od -An -c | tr -d ' ')" = '\n' ] || { echo "no newline at the end"; return 1; }
  awk '
    function bad(m) { printf "line %d: %s: %s\n", NR, m, $0; err = 1 }
    BEGIN { name = "[a-zA-Z_:][a-zA-Z0-9_:]*"
            lval = "\"([^\"\\\\\n]|\\\\[\\\\\"n])*\""
            label = "[a-zA-Z_][a-zA-Z0-9_]*=" lval
            num = "^(-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?|NaN|[-+]Inf)$" }
    /^# HELP / {
      n = $3
      if (n !~ ("^" name "$")) bad("bad name")
      if (n in help) bad("second HELP")
      if (n in seen) bad("HELP after samples")
      help[n] = 1; next
    }
    /^# TYPE / {
      n = $3
      if (NF != 4 || $4 !~ /^(counter|gauge|untyped)$/) bad("bad TYPE")
      if (n in type) bad("second TYPE")
      if (n in seen) bad("TYPE after samples")
      if (!(n in help)) bad("TYPE before HELP")
      type[n] = $4; next
    }
    /^#/ { bad("unknown comment"); next }
    {
      if (!match($0, "^" name)) { bad("no metric name"); next }
      n = substr($0, 1, RLENGTH); rest = substr($0, RLENGTH + 1)
      if (n !~ /^credits_sync_/) bad("name without the credits_sync_ prefix")
      series = n
      if (substr(rest, 1, 1) == "{") {
        if (!match(rest, "^\\{(" label "(," label ")*)?\\}")) { bad("bad labels"); next }
        series = n substr(rest, 1, RLENGTH); rest = substr(rest, RLENGTH + 1)
      }
      if (substr(rest, 1, 1) != " " || substr(rest, 2) !~ num) bad("bad value")
      if (!(n in type) || !(n in help)) bad("sample before its HELP and TYPE")
      if (n != last && (n in seen)) bad("samples of one metric apart")
      if (series in samples) bad("sample twice")
      if (type[n] == "counter" && substr(rest, 2) + 0 < 0) bad("negative counter")
      samples[series] = 1; seen[n] = 1; last = n; count++
    }
    END { if (count == 0) { print "no samples"; err = 1 }; exit err }
  ' "$1"
}

# metric FILE SERIES: the value of one sample (name and labels exactly as
# written), or nothing.
metric() { awk -v s="$2" 'index($0, s " ") == 1 { print substr($0, length(s) + 2) }' "$1"; }

# wait_metric FILE SERIES MIN MS: waits until SERIES >= MIN; false after MS.
wait_metric() {
  local t0 v
  t0=$(now_ms)
  while :; do
    v=$(metric "$1" "$2")
    [ -n "$v" ] && [ "${v%%.*}" -ge "$3" ] && return 0
    [ $(($(now_ms) - t0)) -lt "$4" ] || return 1
    sleep 0.05
  done
}

# --- tests -----------------------------------------------------------------

# Rows reach Redis, with the documented layout; the daemon reports its state.
test_basic() {
  users b- 20 100000
  # global keys of the layout before Redis Cluster: deleted by the rebuild
  rcli HSET "${PREFIX}sync:version" b-1 1 >/dev/null
  rcli SET "${PREFIX}sync:cursor" "old" >/dev/null
  start_daemon d
  [ "$(rcli EXISTS "${PREFIX}sync:version" "${PREFIX}sync:cursor")" = 0 ] ||
    fail "the old layout's sync:version and sync:cursor were not deleted"
  [ "$(log_count d 'deleted 2 keys of the key layout before Redis Cluster')" = 1 ] ||
    fail "the deletion of the old layout's keys was not logged"
  sql -c "SELECT credits.credit_deduct('b-' || (i % 20 + 1), i, 'chat_message',
            jsonb_build_object('n', i, 'note', 'row ' || i))
          FROM generate_series(1, 200) i" >/dev/null
  sql -c "SELECT credits.credit_add('b-1', 5, 'refund')" >/dev/null
  converge || return
  local m
  m=$(rcli --raw ZRANGE "${PREFIX}txs:b-1" -1 -1)
  [[ "$m" =~ ^\{\"id\":\ *[0-9]+,\"amount\":5,\"balance\":[0-9]+,\"action\":\"refund\",\"metadata\":\{\},\"created_at\":\"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+\+00:00\"\}$ ]] ||
    fail "newest member of txs:b-1 is not the documented JSON: $m"
  local f
  for f in rows_synced lag_ms last_error reconnects cursor updated_at pid; do
    "$BIN" --status --prefix "$PREFIX" | grep -q "^$f: " || fail "--status lacks $f"
  done
  [ "$(status_field pid)" = "${DPID[d]}" ] || fail "status pid is not the daemon's"
  # the status is written at most every 100 ms while busy, and when caught up
  local i
  for i in $(seq 1 20); do [ "$(status_field rows_synced)" -ge 201 ] && break; sleep 0.05; done
  [ "$(status_field rows_synced)" -ge 201 ] || fail "rows_synced $(status_field rows_synced) < 201"
  # the status of the caught-up poll follows the last busy page's within 100 ms
  for i in $(seq 1 20); do [ "$(status_field lag_ms)" = 0 ] && break; sleep 0.05; done
  [ "$(status_field lag_ms)" = 0 ] || fail "lag_ms is $(status_field lag_ms) when caught up"
  [ "$("$BIN" --version)" = "credits-sync $(sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" "$REPO/credits.control")" ] ||
    fail "--version does not print credits.control's version"
  stop_daemon d
  [ ! -e "$T/$CURRENT.d.pid" ] || fail "pidfile left behind after SIGTERM"
}

# An idle daemon is woken by NOTIFY, not by its safety poll (set to 30 s).
test_wakeup() {
  users k- 3 1000
  start_daemon d --poll-interval 30000
  converge || return
  local i t0 t1 worst=0 bal
  for i in 1 2 3 4 5; do
    sleep 0.3
    bal=$(sql -c "SELECT balance FROM credits.credit_deduct('k-1', 1, 'w')")
    t0=$(now_ms)
    while [ "$(rcli --raw GET "${PREFIX}balance:k-1")" != "$bal" ]; do
      t1=$(now_ms)
      [ $((t1 - t0)) -lt 5000 ] || break
      sleep 0.005
    done
    t1=$(now_ms)
    [ $((t1 - t0)) -gt "$worst" ] && worst=$((t1 - t0))
  done
  note "worst wake-up latency seen from bash: ${worst} ms"
  [ "$worst" -lt 1000 ] || fail "an idle daemon took ${worst} ms to see a commit (NOTIFY not working?)"
  stop_daemon d
}

# A steady stream of writers (4 clients, 600/s in all) never leaves a
# moment when no writer is committing.  The daemon must still go to sleep
# only when no commit can have missed its wake-up flag (src/wakeup.c):
# a commit that missed it would wait for the safety poll, set to 3 s here.
# bench/sync_lag.c measures COMMIT acknowledged -> keyspace event of
# <prefix>balance:lag-<n>.  Then, under writers that never pause,
# credits.sync_arm() itself must return 0 (every writer that could have
# missed the flag has finished) each time, and quickly: it waits for the
# writers of the epochs before it, not for a moment with none committing
# (which it used to count, so it returned more than 0 here).
test_steady_stream() {
  local r rate samples p50 p99 max unseen old_events
  cc -O2 -Wall -I"$(pg_config --includedir)" -o "$T/sync_lag" "$REPO/bench/sync_lag.c" -lpq -lhiredis ||
    { fail "bench/sync_lag.c does not compile"; return; }
  users lag- 200 1000000
  start_daemon d --poll-interval 3000
  converge || return
  old_events=$(rcli --raw CONFIG GET notify-keyspace-events | sed -n 2p)
  rcli CONFIG SET notify-keyspace-events 'K$' >/dev/null
  r=$(REDIS_HOST=$REDIS_HOST REDIS_PORT=$REDIS_PORT "$T/sync_lag" --rate 600 --clients 4 \
        --seconds 8 --users 200 --warmup 1 --prefix "$PREFIX")
  rcli CONFIG SET notify-keyspace-events "$old_events" >/dev/null
  IFS=$'\t' read -r rate samples p50 p99 max unseen <<<"$r"
  note "steady stream: $rate/s, $samples samples, lag p50 $p50 ms, p99 $p99 ms, max $max ms, unseen $unseen"
  [ "${samples:-0}" -gt 1000 ] || fail "too few samples ($samples): the load did not run"
  [ "${unseen:-1}" -eq 0 ] || fail "$unseen deductions never reached Redis"
  awk -v m="${max:-99999}" 'BEGIN { exit !(m < 1000) }' ||
    fail "a commit waited ${max} ms: it missed the wake-up and waited for the safety poll"
  awk -v p="${p99:-99999}" 'BEGIN { exit !(p < 250) }' ||
    fail "lag p99 ${p99} ms under a steady stream"
  converge

  local wpid arms nonzero t0 t1 i
  printf '\\set u random(1, 200)\nSELECT credits.credit_deduct(%s || :u, 1, %s);\n' "'lag-'" "'w'" >"$T/$CURRENT.w.sql"
  "$PGBIN/pgbench" -n -c 4 -j 2 -T 20 -f "$T/$CURRENT.w.sql" >"$T/$CURRENT.w.out" 2>&1 &
  wpid=$!
  sleep 1
  t0=$(now_ms)
  local args=()
  for i in $(seq 1 40); do args+=(-c "SELECT credits.sync_arm()"); done
  arms=$(sql "${args[@]}")
  t1=$(now_ms)
  kill "$wpid" 2>/dev/null; wait "$wpid" 2>/dev/null
  nonzero=$(grep -cv '^0$' <<<"$arms")
  note "sync_arm() under 4 unpaced writers: $nonzero of 40 calls returned more than 0, $((t1 - t0)) ms for all 40"
  [ "$nonzero" -eq 0 ] || fail "sync_arm() returned writers still committing under a steady stream: $(tr '\n' ' ' <<<"$arms")"
  [ $((t1 - t0)) -lt 4000 ] || fail "40 sync_arm() calls took $((t1 - t0)) ms"
  converge
  stop_daemon d
}

# A prepared transaction never sends the wake-up (PREPARE ends the
# transaction for src/wakeup.c, and COMMIT PREPARED runs no pre-commit for
# its work): an idle daemon finds its row at its safety poll, 2 s here,
# and not before the commit.
test_prepared_transaction() {
  users pt- 2 1000
  start_daemon d --poll-interval 2000
  converge || return
  sleep 0.5
  sql -c "BEGIN" -c "SELECT credits.credit_deduct('pt-1', 7, 'prepared')" \
    -c "PREPARE TRANSACTION 'credits_sync_pt'" >/dev/null || return
  sleep 2.5
  [ "$(rcli --raw GET "${PREFIX}balance:pt-1")" = 1000 ] ||
    fail "balance:pt-1 changed before COMMIT PREPARED"
  local t0 t1
  sql -c "COMMIT PREPARED 'credits_sync_pt'" >/dev/null || return
  t0=$(now_ms)
  while [ "$(rcli --raw GET "${PREFIX}balance:pt-1")" != 993 ]; do
    [ $(($(now_ms) - t0)) -lt 5000 ] || break
    sleep 0.01
  done
  t1=$(now_ms)
  note "the prepared transaction's row reached Redis $((t1 - t0)) ms after COMMIT PREPARED (safety poll 2000 ms)"
  [ $((t1 - t0)) -lt 3000 ] || fail "the prepared transaction's row took $((t1 - t0)) ms (safety poll 2000 ms)"
  converge
  stop_daemon d
}

# A transaction that took a lower id commits after later ones: its row
# still arrives (a max(id) cursor would skip it).
test_out_of_order() {
  users o- 5 1000
  start_daemon d
  mkfifo "$T/$CURRENT.fifo"
  sql <"$T/$CURRENT.fifo" >"$T/$CURRENT.held" 2>&1 &
  local hpid=$! fd i held_id later_id
  exec {fd}>"$T/$CURRENT.fifo"
  echo "BEGIN; SELECT tx_id FROM credits.credit_deduct('o-1', 7, 'held', '{\"held\": true}');" >&"$fd"
  for i in $(seq 1 100); do grep -Eq '^[0-9]+$' "$T/$CURRENT.held" && break; sleep 0.05; done
  held_id=$(grep -E '^[0-9]+$' "$T/$CURRENT.held" | head -n 1)
  [ -n "$held_id" ] || { fail "the held transaction did not run"; exec {fd}>&-; return; }
  sql -c "SELECT credits.credit_deduct('o-' || (i % 4 + 2), 1, 'later') FROM generate_series(1, 30) i" >/dev/null
  later_id=$(sql -c "SELECT max(id) FROM credits.ledger WHERE user_id LIKE 'o-%'")
  [ "$later_id" -gt "$held_id" ] || fail "later rows did not get higher ids"
  converge || { exec {fd}>&-; return; }
  rcli --raw ZRANGE "${PREFIX}txs:o-1" 0 -1 | grep -qE "\"id\": *$held_id," &&
    fail "uncommitted row $held_id is in Redis"
  sleep 0.3
  echo "COMMIT;" >&"$fd"
  exec {fd}>&-
  wait "$hpid"
  converge || return
  rcli --raw ZRANGE "${PREFIX}txs:o-1" 0 -1 | grep -qE "\"id\": *$held_id," ||
    fail "row $held_id, committed out of order, never reached Redis"
  stop_daemon d
}

# cpu_ticks PID...: the sum of utime + stime of the processes, in ticks.
cpu_ticks() {
  local p t=0
  for p in "$@"; do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}

# A transaction held open for a long time (one that wrote a row, and one
# in another database) while 10,000 rows are written: every row arrives,
# the held row after its commit, and an idle daemon stays idle (its CPU
# and its backend's does not grow with the rows written since the old
# transaction began).
test_long_transaction() {
  # a database of its own, so that its rows do not slow the other tests
  local -x PGDATABASE=sync_test_lt
  sql -d postgres -c "DROP DATABASE IF EXISTS $PGDATABASE" -c "CREATE DATABASE $PGDATABASE" >/dev/null || return
  sql -c "CREATE EXTENSION credits" >/dev/null || return
  users lt- 20 100000000
  start_daemon d --dbname "dbname=$PGDATABASE"
  mkfifo "$T/$CURRENT.fifo" "$T/$CURRENT.fifo2"
  sql <"$T/$CURRENT.fifo" >"$T/$CURRENT.held" 2>&1 &
  local hpid=$! fd fd2 hpid2 i held_id
  exec {fd}>"$T/$CURRENT.fifo"
  echo "BEGIN; SELECT tx_id FROM credits.credit_deduct('lt-1', 7, 'held open');" >&"$fd"
  sql -d postgres <"$T/$CURRENT.fifo2" >/dev/null 2>&1 &
  hpid2=$!
  exec {fd2}>"$T/$CURRENT.fifo2"
  echo "BEGIN; SELECT txid_current();" >&"$fd2"
  for i in $(seq 1 100); do grep -Eq '^[0-9]+$' "$T/$CURRENT.held" && break; sleep 0.05; done
  held_id=$(grep -E '^[0-9]+$' "$T/$CURRENT.held" | head -n 1)
  [ -n "$held_id" ] || { fail "the held transaction did not run"; exec {fd}>&- {fd2}>&-; return; }
  for i in $(seq 1 ${LONG_TX_BATCHES:-4}); do
    sql -c "SELECT credits.credit_deduct('lt-' || (g % 19 + 2), 1, 'while held') FROM generate_series(1, 2500) g" >/dev/null ||
      { exec {fd}>&- {fd2}>&-; return; }
  done
  converge 10000 || { exec {fd}>&- {fd2}>&-; return; }
  # idle, with both transactions still open: measure 3 s of CPU
  local bpid t0 t1 ticks hz
  bpid=$(sql -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'credits-sync'
                  AND pid <> pg_backend_pid() AND query NOT LIKE '%pg_stat_activity%' LIMIT 1")
  sleep 1
  hz=$(getconf CLK_TCK)
  t0=$(cpu_ticks "${DPID[d]}" "$bpid")
  sleep 3
  t1=$(cpu_ticks "${DPID[d]}" "$bpid")
  ticks=$((t1 - t0))
  note "idle CPU of the daemon and its backend with two old transactions open: $((ticks * 1000 / (3 * hz) / 10)).$((ticks * 1000 / (3 * hz) % 10))% of a core ($ticks ticks in 3 s)"
  [ $((ticks * 100)) -le $((3 * hz * 5)) ] || fail "an idle daemon used more than 5% of a core while an old transaction was open"
  echo "COMMIT;" >&"$fd"
  echo "COMMIT;" >&"$fd2"
  exec {fd}>&- {fd2}>&-
  wait "$hpid" "$hpid2"
  converge || return
  rcli --raw ZRANGE "${PREFIX}txs:lt-1" 0 -1 | grep -qE "\"id\": *$held_id," ||
    fail "row $held_id of the transaction held open never reached Redis"
  stop_daemon d
  sql -d postgres -c "DROP DATABASE $PGDATABASE" >/dev/null
}

# kill -9 while writes go on, restart: resumes from the cursor, misses nothing.
test_kill9() {
  users x- 50 1000000
  start_daemon d
  writer w x- 50 4 400
  sleep 1
  kill9_daemon d
  sleep 1
  start_daemon d
  wait_writer w
  converge || return
  [ "$(log_count d 'resuming from cursor')" -ge 1 ] || fail "restart did not resume from the cursor"
  [ "$(log_count d 'rebuilding Redis')" -eq 1 ] || fail "restart rebuilt instead of resuming"
  # a resumed daemon reports a real state
  for i in $(seq 1 40); do [ "$(status_field state)" = running ] && break; sleep 0.05; done
  [ "$(status_field state)" = running ] || fail "a resumed daemon reports state '$(status_field state)'"
  stop_daemon d
}

# A daemon that is down (stopped or not yet started) while writes commit;
# and notifications lost while its connection is gone.
test_lost_notifications() {
  users n- 20 1000000
  sql -c "SELECT credits.credit_deduct('n-' || (i % 20 + 1), 1, 'before') FROM generate_series(1, 300) i" >/dev/null
  start_daemon d          # started after the writes: no notification ever reached it
  converge || return
  stop_daemon d
  sql -c "SELECT credits.credit_deduct('n-' || (i % 20 + 1), 1, 'while down') FROM generate_series(1, 300) i" >/dev/null
  start_daemon d
  converge || return
  # Cut the daemon's connection while writes go on: notifications sent
  # meanwhile are lost with it.
  writer w n- 20 3 300
  sleep 0.5
  sql -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE application_name = 'credits-sync' AND pid <> pg_backend_pid()" >/dev/null
  sleep 0.5
  sql -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE application_name = 'credits-sync' AND pid <> pg_backend_pid()" >/dev/null
  wait_writer w
  converge || return
  alive d || fail "daemon died"
  [ "$(status_field reconnects)" -ge 1 ] || fail "status shows no reconnect"
  stop_daemon d
}

# PostgreSQL restarts under the daemon while writes go on before and after.
test_pg_restart() {
  users p- 20 1000000
  start_daemon d
  sql -c "SELECT credits.credit_deduct('p-' || (i % 20 + 1), 1, 'before') FROM generate_series(1, 200) i" >/dev/null
  pg_restart
  sql -c "SELECT credits.credit_deduct('p-' || (i % 20 + 1), 1, 'after') FROM generate_series(1, 200) i" >/dev/null
  converge || return
  alive d || fail "daemon died"
  [ "$(status_field reconnects)" -ge 1 ] || fail "status shows no reconnect"
  [ "$(log_count d 'PostgreSQL: ')" -ge 1 ] || fail "the lost connection was not logged"
  stop_daemon d
}

# copy_pgdata / restore_pgdata: a cold copy of the data directory (the
# server is stopped for it and started again), and putting it back.
copy_pgdata() {
  pg_ctl_do stop
  rm -rf "$T/pgcopy"
  cp -a "$PGDATA_DIR" "$T/pgcopy" || { fail "could not copy the data directory"; pg_ctl_do start; return 1; }
  pg_ctl_do start
}
restore_pgdata() {
  pg_ctl_do stop
  rm -rf "$PGDATA_DIR"
  cp -a "$T/pgcopy" "$PGDATA_DIR" || { fail "could not restore the copy"; return 1; }
  rm -rf "$T/pgcopy"
  pg_ctl_do start
}

# deduct_each PREFIX NUSERS N WHAT: N deductions of 1 from PREFIX1..NUSERS,
# one transaction each.
deduct_each() {
  local i
  for i in $(seq 1 "$3"); do
    echo "SELECT credits.credit_deduct('$1$((i % $2 + 1))', 1, '$4 $i');"
  done | sql >/dev/null
}

# PostgreSQL goes back in time under a running daemon and a running Redis:
# a cold copy of the data directory, taken earlier, is restored, and fewer
# rows are written than were lost (so ids and txids are reused).  The
# daemon must notice (WAL position and next xid below its cursor's),
# rebuild replacing every value whatever its version, and drop the keys of
# a user that no longer exists.
test_restore_old_copy() {
  users rw- 10 1000
  start_daemon d
  sql -c "SELECT credits.credit_deduct('rw-' || (i % 10 + 1), 1, 'before copy') FROM generate_series(1, 100) i" >/dev/null
  converge || return
  copy_pgdata || return
  # the future that will be lost: 300 transactions, and a new user
  deduct_each rw- 10 300 lost || return
  sql -c "SELECT credits.credit_init('rw-lost', 500)" >/dev/null
  sql -c "SELECT credits.credit_deduct('rw-lost', 7, 'lost')" >/dev/null
  converge || return
  [ -n "$(rcli --raw GET "${PREFIX}balance:rw-lost")" ] || fail "rw-lost never reached Redis"
  # restore the old copy
  restore_pgdata || return
  # fewer writes than were lost: ids, txids and versions are reused
  sql -c "SELECT credits.credit_deduct('rw-2', 3, 'after restore')" >/dev/null
  sql -c "SELECT credits.credit_deduct('rw-1', 2, 'after restore')" >/dev/null
  wait_log d 'history does not extend' 10 || fail "the daemon did not notice the restore"
  sql -c "SELECT credits.credit_deduct('rw-' || (i % 3 + 1), 1, 'after restore') FROM generate_series(1, 4) i" >/dev/null
  converge 5000 || return
  [ -z "$(rcli --raw GET "${PREFIX}balance:rw-lost")" ] || fail "balance:rw-lost survived the restore"
  alive d || fail "daemon died"
  stop_daemon d
}

# The same restore, but with the daemon stopped meanwhile and more written
# after the restore than was lost, so that the restored cluster's WAL
# position and next xid have passed the cursor's before the daemon looks:
# only the cursor's anchor (the newest ledger row it applied, with its
# hash) shows that this history is not the one the cursor followed.
test_restore_more_writes() {
  users rm- 10 1000
  start_daemon d
  sql -c "SELECT credits.credit_deduct('rm-' || (i % 10 + 1), 1, 'before copy') FROM generate_series(1, 100) i" >/dev/null
  converge || return
  copy_pgdata || return
  deduct_each rm- 10 200 lost || return
  sql -c "SELECT credits.credit_init('rm-lost', 500)" >/dev/null
  converge || return
  stop_daemon d
  restore_pgdata || return
  # more than was lost, one transaction each: past the cursor's LSN and xid
  deduct_each rm- 10 1200 'after restore' || return
  start_daemon d
  wait_log d 'history does not extend' 10 || fail "the daemon did not notice the restore"
  converge 5000 || return
  [ -z "$(rcli --raw GET "${PREFIX}balance:rm-lost")" ] || fail "balance:rm-lost survived the restore"
  stop_daemon d
}

# A streaming standby made with pg_basebackup: a daemon pointed at it
# refuses it (a clear error, nothing written) and waits.  The standby is
# then left behind while the primary writes on (more rows, a new user),
# and promoted after the primary stops (a failover that loses the last
# commits).  The daemon, switched to it by SIGHUP, sees the new timeline
# and rebuilds: Redis equals the new primary, the lost user's keys are
# gone.  The old primary is started again for the tests that follow.
test_standby_failover() {
  users sb- 10 100000
  local sb=$PGROOT/standby sport=$((PGPORT + 1)) conf=$T/$CURRENT.conf
  while port_in_use "$sport"; do sport=$((sport + 1)); done
  printf "dbname = 'host=127.0.0.1 port=%s dbname=%s user=%s'\n" "$PGPORT" "$PGDATABASE" "$PGUSER" >"$conf"
  start_daemon d --config "$conf"
  sql -c "SELECT credits.credit_deduct('sb-' || (i % 10 + 1), 1, 'kept') FROM generate_series(1, 50) i" >/dev/null
  converge || return
  rm -rf "$sb"
  (cd / && runuser -u postgres -- "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$PGPORT" -U postgres \
    -D "$sb" -R -X stream -c fast) >"$T/$CURRENT.basebackup" 2>&1 ||
    { fail "pg_basebackup failed: $(tail -n 2 "$T/$CURRENT.basebackup")"; return; }
  (cd / && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$sb" -w -t 60 -s -l "$sb/postgresql.log" \
    -o "-p $sport -c unix_socket_directories='$PGROOT'" start) || { fail "the standby did not start"; return; }
  # a daemon pointed at the standby refuses it and writes nothing
  "$BIN" --prefix "${PREFIX}standby:" --dbname "host=127.0.0.1 port=$sport dbname=$PGDATABASE" \
    >"$T/$CURRENT.s.log" 2>&1 &
  DPID[s]=$!
  wait_log s 'is a standby' 10 || fail "the daemon on a standby did not say so"
  sleep 1
  alive s || fail "the daemon on a standby exited"
  [ "$(log_count s 'is a standby')" -eq 1 ] || fail "the standby refusal was logged more than once"
  [ -z "$(rcli --raw KEYS "${PREFIX}standby:*")" ] || fail "the daemon on a standby wrote to Redis"
  kill9_daemon s
  # the standby falls behind: stopped while the primary writes on
  (cd / && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$sb" -m fast -w -s stop)
  sql -c "SELECT credits.credit_deduct('sb-' || (i % 10 + 1), 1, 'lost') FROM generate_series(1, 100) i" >/dev/null
  for i in $(seq 1 50); do echo "SELECT credits.credit_deduct('sb-1', 1, 'lost');"; done | sql >/dev/null
  sql -c "SELECT credits.credit_init('sb-lost', 500)" >/dev/null
  converge || return
  # failover: the primary stops, the standby is promoted and written to
  pg_ctl_do stop
  (cd / && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$sb" -w -t 60 -s -l "$sb/postgresql.log" \
    -o "-p $sport -c unix_socket_directories='$PGROOT'" start) || { fail "the standby did not restart"; pg_ctl_do start; return; }
  (cd / && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$sb" -w -t 60 -s promote) || fail "promote failed"
  PGPORT=$sport sql -c "SELECT credits.credit_deduct('sb-2', 3, 'new primary')" >/dev/null
  printf "dbname = 'host=127.0.0.1 port=%s dbname=%s user=%s'\n" "$sport" "$PGDATABASE" "$PGUSER" >"$conf"
  kill -HUP "${DPID[d]}"
  wait_log d 'history does not extend' 10 || fail "the daemon did not notice the failover"
  PGPORT=$sport sql -c "SELECT credits.credit_deduct('sb-' || (i % 3 + 1), 1, 'new primary') FROM generate_series(1, 4) i" >/dev/null
  PGPORT=$sport converge 5000
  [ -z "$(rcli --raw GET "${PREFIX}balance:sb-lost")" ] || fail "balance:sb-lost survived the failover"
  alive d || fail "daemon died"
  stop_daemon d
  (cd / && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$sb" -m fast -w -s stop)
  rm -rf "$sb"
  pg_ctl_do start
}

# port_in_use PORT: something listens on it, or any TCP socket (a client's
# ephemeral port, in any state) is bound to it, which also stops a server
# from binding it.
port_in_use() {
  local hex
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
  hex=$(printf '%04X' "$1")
  awk -v p=":$hex" 'FNR > 1 && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# wait_synced PORT: waits until the Redis on PORT is a replica whose
# initial sync is done.
wait_synced() {
  local i info
  for i in $(seq 1 200); do
    info=$(redis-cli -h 127.0.0.1 -p "$1" INFO replication 2>/dev/null | tr -d '\r')
    grep -q '^master_link_status:up' <<<"$info" &&
      grep -q '^master_sync_in_progress:0' <<<"$info" && return 0
    sleep 0.05
  done
  fail "Redis on port $1 did not finish its sync"
  return 1
}

# Redis goes back under a live connection: a replica is cut off (REPLICAOF
# NO ONE) while the daemon goes on writing to the primary; then the
# primary resyncs from it (the replica's older data replaces its own, the
# daemon's connection stays open) and becomes a primary again.  The
# daemon's next write must notice that Redis no longer holds its cursor
# and resume from the older one Redis holds: the rows of the lost writes
# come back.
test_redis_rollback() {
  users rb- 10 100000
  start_daemon d
  sql -c "SELECT credits.credit_deduct('rb-' || (i % 10 + 1), 1, 'kept') FROM generate_series(1, 100) i" >/dev/null
  converge || return
  local rport=$((REDIS_PORT + 1)) cur_kept
  while redis-cli -h 127.0.0.1 -p "$rport" PING >/dev/null 2>&1; do rport=$((rport + 1)); done
  redis-server --bind 127.0.0.1 --port "$rport" --daemonize yes --pidfile "$T/$CURRENT.replica.pid" \
    --logfile "$T/$CURRENT.replica.log" --dir "$T" --dbfilename "$CURRENT.rdb" --save "" \
    --appendonly no --replicaof 127.0.0.1 "$REDIS_PORT" >/dev/null
  wait_synced "$rport" || return
  # frozen at a state with a cursor covering the 'kept' rows
  cur_kept=$(rcli --raw GET "${PREFIX}{sync}:cursor")
  for _ in $(seq 1 100); do
    [ "$(redis-cli -p "$rport" --raw GET "${PREFIX}{sync}:cursor")" = "$cur_kept" ] && break
    sleep 0.02
  done
  redis-cli -p "$rport" REPLICAOF NO ONE >/dev/null
  cur_kept=$(redis-cli -p "$rport" --raw GET "${PREFIX}{sync}:cursor")
  sql -c "SELECT credits.credit_deduct('rb-' || (i % 10 + 1), 1, 'lost in Redis') FROM generate_series(1, 100) i" >/dev/null
  converge || return
  kill -STOP "${DPID[d]}"
  rcli REPLICAOF 127.0.0.1 "$rport" >/dev/null
  wait_synced "$REDIS_PORT" || { kill -CONT "${DPID[d]}"; return; }
  rcli REPLICAOF NO ONE >/dev/null
  [ "$(rcli --raw GET "${PREFIX}{sync}:cursor")" = "$cur_kept" ] || fail "Redis did not go back"
  kill -CONT "${DPID[d]}"
  sql -c "SELECT credits.credit_deduct('rb-' || (i % 10 + 1), 1, 'after') FROM generate_series(1, 20) i" >/dev/null
  converge 5000
  wait_log d 'not the one this daemon wrote last' 1 || fail "the rollback was not logged"
  redis-cli -p "$rport" SHUTDOWN NOSAVE >/dev/null 2>&1
  alive d || fail "daemon died"
  [ "$(log_count d 'connected to Redis')" -eq 1 ] || note "the daemon reconnected to Redis: the connection was not kept"
  stop_daemon d
}

# stop_stack_daemon: stops the daemon .ci/stack.sh starts (prefix none).
stop_stack_daemon() {
  local pid
  [ -s "$CREDITS_RUN_DIR/credits-sync.pid" ] || return 0
  pid=$(tr -dc 0-9 <"$CREDITS_RUN_DIR/credits-sync.pid")
  if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q credits-sync; then
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  fi
  rm -f "$CREDITS_RUN_DIR/credits-sync.pid"
}

# PostgreSQL's postmaster is killed with -9 under load; `.ci/stack.sh up`
# restarts it on the same port (its stale socket file does not count as
# busy), crash recovery leaves a ledger that verifies clean, and the
# running daemon reconnects and converges.
test_pg_crash() {
  users cr- 20 1000000
  start_daemon d
  writer w cr- 20 5 300
  sleep 1.5
  local pid port_before=$PGPORT i
  pid=$(head -n 1 "$PGDATA_DIR/postmaster.pid")
  kill -KILL "$pid"
  wait "${DPID[w]}" 2>/dev/null
  unset "DPID[w]"
  for i in $(seq 1 100); do pgrep -u postgres -f "$PGDATA_DIR" >/dev/null || break; sleep 0.05; done
  # A killed postmaster stays a zombie (no cmdline, so pgrep misses it)
  # until its parent reaps it, and PostgreSQL refuses to start while the
  # pid in postmaster.pid still exists: wait for it to be gone.
  for i in $(seq 1 200); do [ -e "/proc/$pid" ] || break; sleep 0.05; done
  [ ! -e "/proc/$pid" ] || note "the killed postmaster $pid was not reaped within 10 s"
  [ -e "$PGROOT/.s.PGSQL.$PGPORT" ] || note "no stale socket file was left (the test shows less)"
  "$REPO/.ci/stack.sh" up >"$T/$CURRENT.stack-up.log" 2>&1 || { fail "stack up after the crash failed"; cat "$T/$CURRENT.stack-up.log"; return; }
  stop_stack_daemon
  [ "$(sed -n 's/^PGPORT=//p' "$CREDITS_RUN_DIR/env")" = "$port_before" ] ||
    { fail "PostgreSQL came back on port $(sed -n 's/^PGPORT=//p' "$CREDITS_RUN_DIR/env"), not $port_before"; return; }
  [ "$(sql -c "SELECT count(*) FROM credits.credit_verify_all()")" = 0 ] || fail "the ledger does not verify after the crash"
  sql -c "SELECT credits.credit_deduct('cr-' || (i % 20 + 1), 1, 'after') FROM generate_series(1, 20) i" >/dev/null
  converge 10000 || return
  alive d || fail "daemon died"
  stop_daemon d
}

# Redis restarts empty: the daemon notices and rebuilds.
test_redis_restart() {
  users r- 20 1000000
  start_daemon d
  sql -c "SELECT credits.credit_deduct('r-' || (i % 20 + 1), 1, 'before') FROM generate_series(1, 200) i" >/dev/null
  converge || return
  writer w r- 20 3 300
  sleep 1
  redis_restart_empty 0.5
  wait_writer w
  converge || return
  [ "$(log_count d 'rebuild done')" -ge 2 ] || fail "no rebuild after the empty restart"
  # and once more while idle
  redis_restart_empty 0
  converge || return
  alive d || fail "daemon died"
  stop_daemon d
}

# FLUSHALL while idle and while writing: detected, rebuilt.  While
# writing, the page in flight may land in the flushed Redis before its
# cursor call fails; the rebuild after it keeps the version guards, so no
# balance goes up and no version goes down (the monitor).
test_flushall() {
  users f- 20 1000000
  start_daemon d
  sql -c "SELECT credits.credit_deduct('f-' || (i % 20 + 1), 1, 'x') FROM generate_series(1, 200) i" >/dev/null
  converge || return
  sleep 0.6
  rcli FLUSHALL >/dev/null
  converge || return
  writer w f- 20 3 400
  "$CHECK" --monitor --duration-ms 2800 --prefix "$PREFIX" $(printf 'f-%d ' $(seq 1 20)) \
    >"$T/$CURRENT.monitor" 2>&1 &
  local mon=$!
  sleep 1
  rcli FLUSHALL >/dev/null
  sleep 0.7
  rcli FLUSHALL >/dev/null
  wait_writer w
  wait "$mon" || fail "a value went back across a flush: $(head -n 3 "$T/$CURRENT.monitor")"
  note "$(tail -n 1 "$T/$CURRENT.monitor")"
  converge || return
  [ "$(log_count d 'rebuild done')" -ge 3 ] || fail "fewer rebuilds than flushes"
  stop_daemon d
}

# Two daemons at once, one repeatedly frozen in the middle of its work:
# no balance ever goes up, no version ever goes down, no (version, as_of)
# of available:/held: goes down (short holds expire meanwhile), and they
# converge.
test_two_daemons() {
  users t- 10 1000000
  start_daemon a
  start_daemon b
  writer w t- 10 5 600
  local mon i
  "$CHECK" --monitor --duration-ms 5500 --prefix "$PREFIX" t-1 t-2 t-3 t-4 t-5 t-6 t-7 t-8 t-9 t-10 \
    >"$T/$CURRENT.monitor" 2>&1 &
  mon=$!
  for i in $(seq 1 20); do
    kill -STOP "${DPID[b]}"
    # holds that expire within a second: available:/held: change with time
    [ $((i % 5)) -eq 1 ] && sql -c "SELECT credits.credit_hold('t-' || u, 5, 'x', ttl => '0.7 seconds')
      FROM generate_series(1, 10) u" >/dev/null
    sleep 0.1
    kill -CONT "${DPID[b]}"
    sleep 0.1
  done
  wait_writer w
  wait "$mon" || fail "a balance went back: $(head -n 3 "$T/$CURRENT.monitor")"
  note "$(tail -n 1 "$T/$CURRENT.monitor")"
  converge || return
  alive a || fail "daemon a died"
  alive b || fail "daemon b died"
  stop_daemon a
  stop_daemon b
  local refused
  refused=$(grep -ho 'stale writes refused: [0-9]*' "$T/$CURRENT.a.log" "$T/$CURRENT.b.log" |
    awk '{ s += $4 } END { print s + 0 }')
  note "stale writes refused by the version check: $refused"
}

# Aborted transactions never appear: not their rows, not their new users.
test_aborted() {
  users a- 5 1000
  start_daemon d
  sql -c "BEGIN; SELECT credits.credit_deduct('a-1', 10, 'aborted'); SELECT credits.credit_init('ghost-1', 50); ROLLBACK;" >/dev/null
  sql -c "SELECT credits.credit_deduct('a-2', 1, 'ok')" >/dev/null
  # an aborted transaction holding a lower id while later ones commit
  mkfifo "$T/$CURRENT.fifo"
  sql <"$T/$CURRENT.fifo" >"$T/$CURRENT.held" 2>&1 &
  local hpid=$! fd i
  exec {fd}>"$T/$CURRENT.fifo"
  echo "BEGIN; SELECT tx_id FROM credits.credit_deduct('a-3', 5, 'aborted'); SELECT credits.credit_init('ghost-2', 5);" >&"$fd"
  for i in $(seq 1 100); do grep -Eq '^[0-9]+$' "$T/$CURRENT.held" && break; sleep 0.05; done
  sql -c "SELECT credits.credit_deduct('a-' || (i % 2 + 4), 1, 'later') FROM generate_series(1, 20) i" >/dev/null
  echo "ROLLBACK;" >&"$fd"
  exec {fd}>&-
  wait "$hpid"
  converge || return
  [ -z "$(rcli --raw KEYS "${PREFIX}*ghost*")" ] || fail "an aborted user has keys in Redis"
  rcli --raw ZRANGE "${PREFIX}txs:a-1" 0 -1 | grep -q '"aborted"' && fail "an aborted row is in Redis"
  rcli --raw ZRANGE "${PREFIX}txs:a-3" 0 -1 | grep -q '"aborted"' && fail "an aborted row is in Redis"
  stop_daemon d
}

# Odd user ids and big metadata: keys are exact bytes, nothing breaks.
test_odd_ids() {
  start_daemon d
  sql <<'EOF' >/dev/null
CREATE TEMP TABLE odd(id text);
INSERT INTO odd VALUES (repeat('é', 128)), (repeat('z', 256)), ('with space'), ('  padded  '),
  ('O''Brien "quoted"'), ('ユーザー🙂'), ('colon:user:1'), (E'new\nline'), (E'tab\there'),
  ('\\backslash'), ('balance:nested'), ('txs:nested'), ('*glob?[x]'), ('{"json": 1}'), ('%b %s %n');
SELECT credits.credit_init(id, 1000000) FROM odd;
SELECT credits.credit_deduct(id, 3, 'odd action "quoted"\n',
         jsonb_build_object('id', id, 'q', E'he said "hi"\n\t\\', 'u', 'ü🙂', 'nested', '{"a": [1, 2.50, {"b": null}]}'::jsonb))
  FROM odd;
SELECT credits.credit_deduct(repeat('z', 256), 1, 'big', jsonb_build_object('blob', repeat('x', 60000)));
SELECT credits.credit_deduct(repeat('z', 256), 1, 'big', jsonb_build_object('blob', repeat('y', 60000), 'n', 1));
EOF
  converge 4000 || return
  [ "$(rcli --raw EXISTS "${PREFIX}balance:$(printf 'new\nline')")" = 1 ] ||
    fail "key for the id with a newline is not exact"
  [ "$(rcli --raw GET "${PREFIX}balance:$(printf 'z%.0s' $(seq 1 256))")" = 999995 ] ||
    fail "balance of the 256-byte id"
  alive d || fail "daemon died"
  stop_daemon d
}

# Keys of the wrong type (someone else's writes) are logged, replaced, and
# syncing goes on.
test_wrong_type() {
  users y- 5 1000
  start_daemon d
  sql -c "SELECT credits.credit_deduct('y-' || i, 1, 'x') FROM generate_series(1, 5) i" >/dev/null
  converge || return
  rcli SET "${PREFIX}txs:y-1" "not a zset" >/dev/null
  rcli DEL "${PREFIX}balance:y-2" >/dev/null
  rcli RPUSH "${PREFIX}balance:y-2" "a list" >/dev/null
  rcli DEL "${PREFIX}txs:y-3" >/dev/null
  rcli HSET "${PREFIX}txs:y-3" f v >/dev/null
  rcli SET "${PREFIX}sync:status" "not a hash" >/dev/null
  sql -c "SELECT credits.credit_deduct('y-' || i, 1, 'after') FROM generate_series(1, 5) i" >/dev/null
  converge || return
  [ "$(log_count d 'had the wrong type')" -eq 2 ] || fail "the wrong txs types were not logged"
  [ "$(log_count d 'HSET .*sync:status.*deleting it')" -eq 1 ] || fail "the wrong status type was not logged"
  # companions (version guards) of the wrong type count as missing
  rcli HSET "{${PREFIX}balance:y-1}:v" f v >/dev/null
  rcli SADD "{${PREFIX}available:y-2}:v" x >/dev/null
  rcli SET "{${PREFIX}held:y-3}:v" "not a version" >/dev/null
  sql -c "SELECT credits.credit_deduct('y-' || i, 1, 'again') FROM generate_series(1, 5) i" >/dev/null
  converge || return
  alive d || fail "daemon died"
  stop_daemon d
}

# A small window with ties (rows of one transaction share created_at), and
# a window change (the daemon rebuilds with the new N).
test_window() {
  WINDOW=3
  users v- 4 100000
  start_daemon d
  sql -c "SELECT credits.credit_deduct('v-' || (i % 4 + 1), 1, 'tie') FROM generate_series(1, 40) i" >/dev/null
  sql -c "SELECT credits.credit_deduct('v-1', 1, 'solo')" >/dev/null
  sql -c "BEGIN; SELECT credits.credit_deduct('v-2', 1, 'tie2') FROM generate_series(1, 9); COMMIT;" >/dev/null
  converge 10000 || return
  [ "$(rcli ZCARD "${PREFIX}txs:v-1")" = 3 ] || fail "txs:v-1 does not hold exactly 3 rows"
  stop_daemon d
  WINDOW=5
  start_daemon d
  converge 10000 || return
  [ "$(log_count d 'window changed from 3 to 5')" = 1 ] || fail "window change not noticed"
  [ "$(rcli ZCARD "${PREFIX}txs:v-1")" = 5 ] || fail "txs:v-1 does not hold exactly 5 rows"
  # rows of v-4 in distinct milliseconds: the rebuild for a smaller window
  # reads exactly rows that Redis already has
  for i in 1 2 3 4 5 6; do
    sql -c "SELECT credits.credit_deduct('v-4', 1, 'solo $i')" >/dev/null
    sleep 0.01
  done
  converge 10000 || return
  stop_daemon d
  # lowering the window trims every txs key
  WINDOW=2
  start_daemon d
  converge 10000 || return
  [ "$(rcli ZCARD "${PREFIX}txs:v-4")" = 2 ] || fail "lowering the window to 2 left $(rcli ZCARD "${PREFIX}txs:v-4") rows in txs:v-4"
  stop_daemon d
}

# SIGHUP reloads the config file; SIGTERM lets the current batch finish.
test_signals() {
  users h- 10 1000000
  printf 'log_level = info\n' >"$T/$CURRENT.conf"
  start_daemon d --config "$T/$CURRENT.conf"
  printf '# reloaded\nlog_level = debug\n' >"$T/$CURRENT.conf"
  kill -HUP "${DPID[d]}"
  wait_log d 'reloading the configuration' 5 || fail "SIGHUP not handled"
  sql -c "SELECT credits.credit_deduct('h-' || (i % 10 + 1), 1, 'x') FROM generate_series(1, 50) i" >/dev/null
  wait_log d 'DEBUG:  applied' 5 || fail "log level not reloaded to debug"
  printf 'window = banana\n' >"$T/$CURRENT.conf"
  kill -HUP "${DPID[d]}"
  wait_log d 'keeping the previous one' 5 || fail "a bad config file was not refused"
  alive d || fail "a bad config file on reload killed the daemon"
  # SIGTERM in the middle of a write stream: exits 0, and a restart resumes.
  writer w h- 10 2 500
  sleep 1
  stop_daemon d
  wait_writer w
  [ "$(status_field state)" = stopped ] || fail "state is not 'stopped' after SIGTERM"
  start_daemon d
  converge || return
  stop_daemon d
}

# A daemon built for another extension version refuses to run (exit 2).
test_version_refusal() {
  local other=$T/credits-sync-other rc
  cc -O1 -D_GNU_SOURCE -DCREDITS_SYNC_VERSION='"0.0-test"' -I"$(pg_config --includedir)" \
    -o "$other" "$REPO"/sync/*.c -lpq -lhiredis 2>"$T/$CURRENT.build" ||
    { fail "could not build a daemon for version 0.0-test"; return; }
  timeout 20 "$other" --prefix "$PREFIX" >"$T/$CURRENT.other.log" 2>&1
  rc=$?
  [ $rc -eq 2 ] || fail "an unknown extension version gave exit status $rc, not 2"
  grep -q 'is not supported by credits-sync 0.0-test' "$T/$CURRENT.other.log" ||
    fail "the refusal was not logged"
  [ -z "$(rcli --raw KEYS "${PREFIX}*")" ] || fail "the refusing daemon wrote to Redis"
}

# A Redis whose maxmemory-policy can evict the daemon's keys (allkeys-*)
# is refused with a clear error (exit 2, nothing written); noeviction and
# volatile-* are accepted.
test_eviction_policy() {
  local old rc
  old=$(rcli --raw CONFIG GET maxmemory-policy | tail -n 1)
  rcli CONFIG SET maxmemory-policy allkeys-lru >/dev/null
  timeout 20 "$BIN" --prefix "$PREFIX" >"$T/$CURRENT.d.log" 2>&1
  rc=$?
  rcli CONFIG SET maxmemory-policy "$old" >/dev/null
  [ $rc -eq 2 ] || fail "maxmemory-policy allkeys-lru gave exit status $rc, not 2"
  grep -q 'maxmemory-policy is allkeys-lru, which can evict' "$T/$CURRENT.d.log" ||
    fail "the refusal was not logged"
  [ -z "$(rcli --raw KEYS "${PREFIX}*")" ] || fail "the refusing daemon wrote to Redis"
  rcli CONFIG SET maxmemory-policy volatile-lru >/dev/null
  start_daemon d
  rcli CONFIG SET maxmemory-policy "$old" >/dev/null
  converge || return
  stop_daemon d
}

# credits-sync 1.1 refuses a database whose extension is still 1.0 (it
# reads bigint txids and calls sync_arm()): exit 2, nothing written.
test_version_1_0() {
  local db=sync_test_v10 rc
  sql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null || return
  sql -d "$db" -c "CREATE EXTENSION credits VERSION '1.0'" >/dev/null || return
  timeout 20 "$BIN" --prefix "$PREFIX" --dbname "dbname=$db" --metrics-file "$T/$CURRENT.prom" \
    >"$T/$CURRENT.d.log" 2>&1
  rc=$?
  [ $rc -eq 2 ] || fail "extension 1.0 gave exit status $rc, not 2"
  grep -q 'version 1.0 is not supported by credits-sync' "$T/$CURRENT.d.log" ||
    fail "the refusal was not logged"
  # the metrics written at exit name the version seen and the refusal
  [ "$(metric "$T/$CURRENT.prom" 'credits_sync_extension_info{version="1.0"}')" = 1 ] ||
    fail "the metrics do not show extension version 1.0"
  [ "$(metric "$T/$CURRENT.prom" 'credits_sync_state{state="refused"}')" = 1 ] &&
    [ "$(metric "$T/$CURRENT.prom" credits_sync_up)" = 0 ] || fail "the metrics do not show the refusal"
  grep -q '^credits_sync_last_error_info{side="postgres",message="unsupported extension version 1.0"} 1$' "$T/$CURRENT.prom" ||
    fail "the metrics' last error is not the refusal"
  [ -z "$(rcli --raw KEYS "${PREFIX}*")" ] || fail "the refusing daemon wrote to Redis"
  sql -d postgres -c "DROP DATABASE $db" >/dev/null
}

# The metrics file (--metrics-file): valid text format, replaced
# atomically; rows_applied_total grows by exactly the rows written; a
# killed Redis connection, Redis restarted empty and a killed PostgreSQL
# connection show in reconnects_total, errors_total, last_error and
# rebuilds_total; the file written at exit says up 0.  The format checker
# itself must reject broken files.
test_metrics() {
  local mf=$T/$CURRENT.prom i r0 r1 p1 e0 e1 c0 c1 rb0 rb1 pe0 pc0 ts
  # the checker can fail
  printf '# HELP credits_sync_a x\n# TYPE credits_sync_a gauge\ncredits_sync_a 1\n' >"$T/$CURRENT.good"
  metrics_valid "$T/$CURRENT.good" >/dev/null || fail "the format checker rejects a valid file"
  printf 'credits_sync_a 1\n# HELP credits_sync_a x\n# TYPE credits_sync_a gauge\n' >"$T/$CURRENT.bad1"
  printf '# HELP credits_sync_a x\n# TYPE credits_sync_a gauge\ncredits_sync_a{m="a"b"} 1\n' >"$T/$CURRENT.bad2"
  printf '# HELP credits_sync_a x\n# TYPE credits_sync_a gauge\ncredits_sync_a{m="a\\tb"} 1\n' >"$T/$CURRENT.bad3"
  printf '# HELP credits_sync_a x\n# TYPE credits_sync_a counter\ncredits_sync_a one\n' >"$T/$CURRENT.bad4"
  printf '# HELP other_a x\n# TYPE other_a gauge\nother_a 1\n' >"$T/$CURRENT.bad5"
  printf '# HELP credits_sync_a x\n# TYPE credits_sync_a gauge\ncredits_sync_a 1\ncredits_sync_a 2\n' >"$T/$CURRENT.bad6"
  for i in 1 2 3 4 5 6; do
    metrics_valid "$T/$CURRENT.bad$i" >/dev/null && fail "the format checker accepts bad file $i"
  done

  users m- 10 1000000
  start_daemon d --metrics-file "$mf"
  wait_metric "$mf" 'credits_sync_state{state="running"}' 1 3000 || { fail "no metrics file saying running"; return; }
  metrics_valid "$mf" >"$T/$CURRENT.valid" || { fail "invalid metrics file: $(head -n 3 "$T/$CURRENT.valid")"; return; }
  [ "$(metric "$mf" credits_sync_up)" = 1 ] || fail "credits_sync_up is not 1"
  [ "$(metric "$mf" 'credits_sync_rebuilds_total{reason="no_cursor"}')" = 1 ] || fail "the first rebuild is not counted as no_cursor"
  [ "$(metric "$mf" 'credits_sync_extension_info{version="'"$(sql -c "SELECT extversion FROM pg_extension WHERE extname = 'credits'")"'"}')" = 1 ] ||
    fail "the extension version seen is not in the metrics"
  ls "$T/$CURRENT".prom.*.tmp >/dev/null 2>&1 && fail "a temporary file is left next to the metrics file"

  # rows applied: exactly the rows written
  r0=$(metric "$mf" credits_sync_rows_applied_total)
  sql -c "SELECT credits.credit_deduct('m-' || (i % 10 + 1), 1, 'x') FROM generate_series(1, 150) i" >/dev/null
  sql -c "SELECT credits.credit_add('m-' || i, 2, 'refund') FROM generate_series(1, 7) i" >/dev/null
  converge || return
  wait_metric "$mf" credits_sync_rows_applied_total $((r0 + 157)) 3000
  r1=$(metric "$mf" credits_sync_rows_applied_total)
  [ "$r1" -eq $((r0 + 157)) ] || fail "rows_applied_total went from $r0 to $r1 after 157 rows"
  p1=$(metric "$mf" credits_sync_pages_total)
  [ "$p1" -ge 1 ] && [ "$p1" -le 157 ] || fail "pages_total is $p1 after 157 rows"
  [ "$(status_field rows_synced)" = "$r1" ] || fail "--status says $(status_field rows_synced) rows, the metrics $r1"
  wait_metric "$mf" credits_sync_lag_milliseconds 0 3000 || fail "no lag gauge"
  [ "$(metric "$mf" 'credits_sync_last_error_timestamp_seconds')" = 0.000 ] || fail "a last error without any error"
  [ -z "$(grep '^credits_sync_last_error_info' "$mf")" ] || fail "a last error without any error"

  # Redis goes away for a moment and comes back empty
  e0=$(metric "$mf" 'credits_sync_errors_total{side="redis"}')
  c0=$(metric "$mf" 'credits_sync_reconnects_total{side="redis"}')
  rb0=$(metric "$mf" 'credits_sync_rebuilds_total{reason="no_cursor"}')
  ts=$(date +%s)
  redis_restart_empty 0.5
  converge || return
  wait_metric "$mf" 'credits_sync_reconnects_total{side="redis"}' $((c0 + 1)) 3000 || fail "Redis reconnects did not increase"
  wait_metric "$mf" 'credits_sync_rebuilds_total{reason="no_cursor"}' $((rb0 + 1)) 3000 || fail "the rebuild after the empty restart is not counted"
  e1=$(metric "$mf" 'credits_sync_errors_total{side="redis"}')
  [ "$e1" -gt "$e0" ] || fail "Redis errors did not increase ($e0 -> $e1)"
  grep -q '^credits_sync_last_error_info{side="redis",message="Redis: .*"} 1$' "$mf" ||
    fail "last error is not a Redis error: $(grep '^credits_sync_last_error_info' "$mf")"
  [ "$(metric "$mf" credits_sync_last_error_timestamp_seconds | cut -d. -f1)" -ge "$ts" ] ||
    fail "last error timestamp $(metric "$mf" credits_sync_last_error_timestamp_seconds) is before the restart ($ts)"
  metrics_valid "$mf" >"$T/$CURRENT.valid" || fail "invalid metrics file after an error: $(head -n 3 "$T/$CURRENT.valid")"

  # the PostgreSQL connection is killed
  pe0=$(metric "$mf" 'credits_sync_errors_total{side="postgres"}')
  pc0=$(metric "$mf" 'credits_sync_reconnects_total{side="postgres"}')
  sql -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE application_name = 'credits-sync' AND pid <> pg_backend_pid()" >/dev/null
  sql -c "SELECT credits.credit_deduct('m-1', 1, 'after')" >/dev/null
  converge || return
  wait_metric "$mf" 'credits_sync_reconnects_total{side="postgres"}' $((pc0 + 1)) 3000 || fail "PostgreSQL reconnects did not increase"
  wait_metric "$mf" 'credits_sync_errors_total{side="postgres"}' $((pe0 + 1)) 3000 || fail "PostgreSQL errors did not increase"
  grep -q '^credits_sync_last_error_info{side="postgres",message="PostgreSQL: .*"} 1$' "$mf" ||
    fail "last error is not a PostgreSQL error: $(grep '^credits_sync_last_error_info' "$mf")"
  # --status is unchanged: reconnects is the sum of both sides
  [ "$(status_field reconnects)" -eq $(($(metric "$mf" 'credits_sync_reconnects_total{side="redis"}') + $(metric "$mf" 'credits_sync_reconnects_total{side="postgres"}'))) ] ||
    fail "--status reconnects $(status_field reconnects) is not the sum of the sides"

  stop_daemon d
  metrics_valid "$mf" >"$T/$CURRENT.valid" || fail "invalid metrics file at exit: $(head -n 3 "$T/$CURRENT.valid")"
  [ "$(metric "$mf" credits_sync_up)" = 0 ] || fail "the file written at exit does not say up 0"
  [ "$(metric "$mf" 'credits_sync_state{state="stopped"}')" = 1 ] || fail "the file written at exit does not say stopped"

  # the environment variable; errors while Redis cannot be reached; an
  # unwritable path is logged once and does not stop the daemon
  CREDITS_SYNC_METRICS_FILE=$T/$CURRENT.env.prom "$BIN" --prefix "$PREFIX" --redis-port 1 \
    </dev/null >"$T/$CURRENT.env.log" 2>&1 &
  DPID[env]=$!
  wait_metric "$T/$CURRENT.env.prom" 'credits_sync_errors_total{side="redis"}' 2 5000 ||
    fail "CREDITS_SYNC_METRICS_FILE: no Redis errors counted while Redis is unreachable"
  [ "$(metric "$T/$CURRENT.env.prom" 'credits_sync_state{state="starting"}')" = 1 ] || fail "state is not starting while Redis is unreachable"
  stop_daemon env
  "$BIN" --prefix "$PREFIX" --metrics-file "$T/no/such/dir/m.prom" </dev/null >"$T/$CURRENT.bad.log" 2>&1 &
  DPID[bad]=$!
  sleep 2.5
  alive bad || fail "an unwritable metrics file stopped the daemon"
  [ "$(grep -c 'could not create the metrics file' "$T/$CURRENT.bad.log")" = 1 ] ||
    fail "an unwritable metrics file is not logged exactly once"
  stop_daemon bad
}

# Calls in sync/ only go down (sync/layering.sh, also run by make): the
# real objects pass; an upward call, a call between pg.c and redis.c,
# libpq in redis.c or a bottom module calling up each make it fail.
test_layering() {
  local d=$T/$CURRENT.src inc out
  inc=$(pg_config --includedir)
  grep -n 'libpq-fe\.h\|PGresult\|PQ[a-z]' "$REPO/sync/redis.c" "$REPO/sync/credits_sync.h" &&
    fail "redis.c or credits_sync.h mention libpq"
  grep -n 'set_last_error' "$REPO"/sync/*.c && fail "set_last_error is back"
  out=$(cd "$REPO/sync" && CPPFLAGS="-D_GNU_SOURCE -DCREDITS_SYNC_VERSION=\"x\" -I$inc" sh layering.sh . 2>&1) ||
    fail "sync/ breaks its layering: $out"
  # a copy of sync/ built once; each case rebuilds the one file it changes
  mkdir -p "$d.base" "$T/src"
  cp "$REPO"/sync/*.c "$REPO"/sync/*.h "$REPO"/sync/layering.sh "$d.base"/
  # sync/partition.c includes ../src/partition_hash.h: the copies ($d.base,
  # $d) sit in $T, so $T/src is their ../src
  cp "$REPO/src/partition_hash.h" "$T/src/"
  (cd "$d.base" && for f in *.c; do cc -O0 -c -D_GNU_SOURCE -DCREDITS_SYNC_VERSION='"x"' -I"$inc" "$f" || exit 1; done) \
    >"$T/$CURRENT.build" 2>&1 || { fail "could not build sync/: $(head -n 3 "$T/$CURRENT.build")"; return; }
  # layering_case FILE LINE EXPECTED: LINE appended to a copy of FILE must
  # make the check fail with a message matching EXPECTED.
  layering_case() {
    rm -rf "$d"
    cp -r "$d.base" "$d"
    printf '%s\n' "$2" >>"$d/$1"
    (cd "$d" && cc -O0 -c -D_GNU_SOURCE -DCREDITS_SYNC_VERSION='"x"' -I"$inc" "$1") \
      >"$T/$CURRENT.build" 2>&1 || { fail "could not build the case for $1: $(head -n 3 "$T/$CURRENT.build")"; return; }
    out=$(cd "$d" && CPPFLAGS="-D_GNU_SOURCE -DCREDITS_SYNC_VERSION=\"x\" -I$inc" sh layering.sh . 2>&1) &&
      { fail "the layering check accepts $1 with: $2"; return; }
    grep -Eq -- "$3" <<<"$out" || fail "the layering check did not say '$3' for $1: $out"
  }
  layering_case pg.c 'int layering_probe(void); int layering_probe(void) { return (int) got_sigterm; }' \
    'pg\.c uses got_sigterm, defined in main\.c'
  layering_case redis.c '#include <libpq-fe.h>' 'redis\.c includes libpq-fe\.h'
  layering_case redis.c 'int layering_probe(void); int layering_probe(void) { return (int) snapshot_valid(NULL); }' \
    'redis\.c uses snapshot_valid, defined in pg\.c'
  layering_case status.c 'void layering_probe(void); void layering_probe(void) { metrics_write(NULL, false); }' \
    'status\.c uses metrics_write, defined in metrics\.c'
  layering_case main.c 'int layering_probe(void); int layering_probe(void) { return rc_masters(); }' \
    'main\.c uses rc_masters, defined in cluster\.c'
  layering_case cluster.c 'int layering_probe(void); int layering_probe(void) { return (int) redis_connected(); }' \
    'cluster\.c uses redis_connected, defined in redis\.c'
  layering_case pg.c '#include <hiredis/hiredis.h>' 'pg\.c includes hiredis'
  rm -rf "$d" "$d.base"
}

# wait_value KEY EXPECTED MS: waits until GET <prefix>KEY = EXPECTED; fails
# the test (naming the value seen) after MS ms.
wait_value() {
  local t0 v
  t0=$(now_ms)
  while :; do
    v=$(rcli --raw GET "${PREFIX}$1")
    [ "$v" = "$2" ] && return 0
    if [ $(($(now_ms) - t0)) -ge "$3" ]; then
      fail "$1 is '$v', not $2, after $3 ms"
      return 1
    fi
    sleep 0.02
  done
}

# available:/held: follow holds: create, capture (less, more), release;
# the daemon runs as a login role that only has credits_reader.
test_holds() {
  users hold- 3 1000
  sql -c "DO \$\$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'sync_test_reader') THEN
              CREATE ROLE sync_test_reader LOGIN IN ROLE credits_reader;
            END IF; END \$\$" >/dev/null
  start_daemon d --dbname "dbname=$PGDATABASE user=sync_test_reader"
  converge || return
  wait_value available:hold-1 1000 2000 && wait_value held:hold-1 0 2000 || return
  local id id2
  id=$(sql -c "SELECT hold_id FROM credits.credit_hold('hold-1', 300, 'video_generation')")
  wait_value available:hold-1 700 2000 && wait_value held:hold-1 300 2000 || return
  [ "$(rcli --raw GET "${PREFIX}balance:hold-1")" = 1000 ] || fail "a hold changed balance:hold-1"
  sql -c "SELECT credits.credit_capture($id, 200)" >/dev/null
  wait_value available:hold-1 800 2000 && wait_value held:hold-1 0 2000 || return
  wait_value balance:hold-1 800 2000 || return
  id=$(sql -c "SELECT hold_id FROM credits.credit_hold('hold-1', 100, 'x')")
  id2=$(sql -c "SELECT hold_id FROM credits.credit_hold('hold-1', 50, 'x')")
  wait_value available:hold-1 650 2000 && wait_value held:hold-1 150 2000 || return
  sql -c "SELECT credits.credit_release($id)" >/dev/null
  wait_value available:hold-1 750 2000 && wait_value held:hold-1 50 2000 || return
  sql -c "SELECT credits.credit_capture($id2, 80)" >/dev/null
  wait_value available:hold-1 720 2000 && wait_value held:hold-1 0 2000 || return
  wait_value balance:hold-1 720 2000 || return
  # holds of several users in one transaction
  sql -c "SELECT credits.credit_hold('hold-' || i, 10 * i, 'x') FROM generate_series(2, 3) i" >/dev/null
  converge || return
  wait_value available:hold-3 970 0 && wait_value held:hold-3 30 0 || return
  alive d || fail "daemon died"
  stop_daemon d
}

# Time alone changes available:/held: (no write, no job): an expiring hold
# and an expiring grant are followed within 2 s of their expiry; then a
# FLUSHALL rebuild and a restart (replay from an old cursor) restore them.
test_expiry() {
  users exp- 3 1000
  start_daemon d
  converge || return
  local id exp cur0 chk0
  cur0=$(rcli --raw GET "${PREFIX}{sync}:cursor")
  chk0=$(rcli --raw GET "${PREFIX}{sync}:checked")
  [ -n "$chk0" ] || fail "no sync:checked after the rebuild"
  id=$(sql -c "SELECT hold_id FROM credits.credit_hold('exp-1', 400, 'video_generation', ttl => '5 seconds')")
  exp=$(sql -c "SELECT floor(extract(epoch FROM expires_at) * 1000)::int8 FROM credits.holds WHERE id = $id")
  sql -c "SELECT credits.credit_grant('exp-2', 500, 'promo', now() + interval '5 seconds')" >/dev/null
  wait_value available:exp-1 600 2000 && wait_value held:exp-1 400 2000 || return
  wait_value available:exp-2 1500 2000 && wait_value balance:exp-2 1500 2000 || return
  local left=$((exp - $(now_ms)))
  [ "$left" -gt 300 ] || note "warning: only $left ms before the expiry when checked"
  # still counting until the expiry, then back within 2 s of it
  [ "$(rcli --raw GET "${PREFIX}available:exp-1")" = 600 ] || fail "available:exp-1 changed before the expiry"
  while [ "$(now_ms)" -lt "$exp" ]; do sleep 0.02; done
  wait_value available:exp-1 1000 2000 && wait_value held:exp-1 0 2000 || return
  note "hold expiry reached Redis $(($(now_ms) - exp)) ms after expires_at"
  wait_value available:exp-2 1000 2000 || return
  [ "$(rcli --raw GET "${PREFIX}balance:exp-2")" = 1500 ] ||
    fail "balance:exp-2 changed, but no expiry was posted"
  [ "$(sql -c "SELECT status FROM credits.holds WHERE id = $id")" = open ] ||
    fail "the hold was closed by something: the test would not show a time-only change"
  [ "$(sql -c "SELECT count(*) FROM credits.ledger WHERE user_id = 'exp-2' AND action = 'expire'")" = 0 ] ||
    fail "the grant's expiry was posted: the test would not show a time-only change"
  converge || return
  # a rebuild writes them too
  rcli FLUSHALL >/dev/null
  converge || return
  wait_value available:exp-2 1000 0 || return
  # posting the expiry is a write: balance follows, available stays
  sql -c "SELECT credits.credit_expire_grants()" >/dev/null
  wait_value balance:exp-2 1000 2000 && wait_value available:exp-2 1000 0 || return
  stop_daemon d
  # replay: an old cursor and an old sync:checked of this epoch replay
  # every event and expiry; nothing goes back, everything converges
  local ep
  ep=$(rcli --raw GET "${PREFIX}{sync}:cursor" | cut -d' ' -f1)
  [ -n "$cur0" ] && rcli SET "${PREFIX}{sync}:cursor" "$ep ${cur0#* }" >/dev/null
  rcli SET "${PREFIX}{sync}:checked" "$chk0" >/dev/null
  "$CHECK" --monitor --duration-ms 1500 --prefix "$PREFIX" exp-1 exp-2 exp-3 \
    >"$T/$CURRENT.monitor" 2>&1 &
  local mon=$!
  sleep 0.2
  start_daemon d
  wait "$mon" || fail "a value went back on replay: $(head -n 3 "$T/$CURRENT.monitor")"
  [ "$(log_count d 'rebuild done')" -eq 2 ] || fail "the restart rebuilt instead of replaying"
  converge || return
  stop_daemon d
}

# The checker and the monitor do fail on a wrong Redis (each check can fail).
test_checks_can_fail() {
  users c- 3 1000
  start_daemon d
  sql -c "SELECT credits.credit_deduct('c-' || i, 1, 'x') FROM generate_series(1, 3) i" >/dev/null
  converge || return
  stop_daemon d
  local m
  rcli SET "${PREFIX}balance:c-1" 12345 >/dev/null
  "$CHECK" --prefix "$PREFIX" --timeout-ms 0 >/dev/null && fail "checker missed a wrong balance"
  rcli SET "${PREFIX}balance:c-1" "$(sql -c "SELECT credits.credit_balance('c-1')")" >/dev/null
  "$CHECK" --prefix "$PREFIX" --timeout-ms 0 >/dev/null || fail "checker fails a correct Redis"
  m=$(rcli --raw ZRANGE "${PREFIX}txs:c-2" -1 -1)
  rcli ZREM "${PREFIX}txs:c-2" "$m" >/dev/null
  "$CHECK" --prefix "$PREFIX" --timeout-ms 0 >/dev/null && fail "checker missed a missing row"
  rcli ZADD "${PREFIX}txs:c-2" 1 "$m" >/dev/null
  "$CHECK" --prefix "$PREFIX" --timeout-ms 0 >/dev/null && fail "checker missed a wrong score"
  rcli ZADD "${PREFIX}txs:c-2" "$(sql -c "SELECT floor(extract(epoch FROM created_at) * 1000) FROM credits.ledger WHERE user_id = 'c-2' ORDER BY id DESC LIMIT 1")" "$m" >/dev/null
  "$CHECK" --prefix "$PREFIX" --timeout-ms 0 >/dev/null || fail "checker fails a repaired Redis"
  # same id and score, different content
  m=$(rcli --raw ZRANGE "${PREFIX}txs:c-3" -1 -1)
  local score
  score=$(rcli --raw ZSCORE "${PREFIX}txs:c-3" "$m")
  rcli ZREM "${PREFIX}txs:c-3" "$m" >/dev/null
  rcli ZADD "${PREFIX}txs:c-3" "$score" "${m/\"action\":\"x\"/\"action\":\"y\"}" >/dev/null
  "$CHECK" --prefix "$PREFIX" --timeout-ms 0 >/dev/null && fail "checker missed a wrong member"
  rcli ZREM "${PREFIX}txs:c-3" "${m/\"action\":\"x\"/\"action\":\"y\"}" >/dev/null
  rcli ZADD "${PREFIX}txs:c-3" "$score" "${m/,/, }" >/dev/null
  "$CHECK" --prefix "$PREFIX" --timeout-ms 0 >/dev/null && fail "checker missed a member that is not compact"
  rcli ZREM "${PREFIX}txs:c-3" "${m/,/, }" >/dev/null
  rcli ZADD "${PREFIX}txs:c-3" "$score" "$m" >/dev/null
  "$CHECK" --prefix "$PREFIX" --timeout-ms 0 >/dev/null || fail "checker fails a repaired Redis"
  rcli SET "${PREFIX}available:c-1" 12345 >/dev/null
  "$CHECK" --prefix "$PREFIX" --timeout-ms 0 >/dev/null && fail "checker missed a wrong available"
  rcli SET "${PREFIX}available:c-1" "$(sql -c "SELECT credits.credit_available('c-1')")" >/dev/null
  rcli SET "${PREFIX}held:c-2" 1 >/dev/null
  "$CHECK" --prefix "$PREFIX" --timeout-ms 0 >/dev/null && fail "checker missed a wrong held"
  rcli DEL "${PREFIX}held:c-2" >/dev/null
  "$CHECK" --prefix "$PREFIX" --timeout-ms 0 >/dev/null && fail "checker missed a missing held"
  rcli SET "${PREFIX}held:c-2" 0 >/dev/null
  "$CHECK" --prefix "$PREFIX" --timeout-ms 0 >/dev/null || fail "checker fails a repaired Redis"
  rcli SET "${PREFIX}held:nobody" 1 >/dev/null
  "$CHECK" --prefix "$PREFIX" --timeout-ms 0 >/dev/null && fail "checker missed a held key of no account"
  rcli DEL "${PREFIX}held:nobody" >/dev/null
  rcli SET "${PREFIX}balance:nobody" 1 >/dev/null
  "$CHECK" --prefix "$PREFIX" --timeout-ms 0 >"$T/$CURRENT.out" && fail "checker missed a key of no account"
  grep -q 'belongs to no account' "$T/$CURRENT.out" || fail "checker did not name the key of no account"
  rcli DEL "${PREFIX}balance:nobody" >/dev/null
  "$CHECK" --prefix "$PREFIX" --timeout-ms 0 >/dev/null || fail "checker fails a repaired Redis"
  rcli SET "{${PREFIX}held:nobody}:v" "1 1" >/dev/null
  "$CHECK" --prefix "$PREFIX" --timeout-ms 0 >/dev/null && fail "checker missed a companion of no account"
  rcli DEL "{${PREFIX}held:nobody}:v" >/dev/null
  rcli SET "{9}:v:${PREFIX}balance:no}body" 1 >/dev/null
  "$CHECK" --prefix "$PREFIX" --timeout-ms 0 >/dev/null && fail "checker missed a companion {T}:v:K of no account"
  rcli FLUSHALL >/dev/null
  "$CHECK" --prefix "$PREFIX" --timeout-ms 0 >/dev/null && fail "checker missed an empty Redis"
  # the monitor: a balance that goes up is a regression
  rcli SET "{${PREFIX}balance:c-1}:v" 5 >/dev/null
  rcli SET "${PREFIX}balance:c-1" 10 >/dev/null
  "$CHECK" --monitor --duration-ms 1500 --prefix "$PREFIX" c-1 >"$T/$CURRENT.mon" 2>&1 &
  local mon=$!
  sleep 0.5
  rcli SET "${PREFIX}balance:c-1" 11 >/dev/null
  wait $mon && fail "monitor missed a balance going up"
  # ... and so is a (version, as_of) of available:/held: that goes down
  rcli SET "{${PREFIX}available:c-1}:v" "5 2000" >/dev/null
  "$CHECK" --monitor --duration-ms 1500 --prefix "$PREFIX" c-1 >"$T/$CURRENT.mon" 2>&1 &
  mon=$!
  sleep 0.5
  rcli SET "{${PREFIX}available:c-1}:v" "5 1999" >/dev/null
  wait $mon && fail "monitor missed an as_of going back"
}

# The daemon under valgrind: rebuild, batches, a flush, a wrong-type key,
# SIGHUP, a lost PostgreSQL connection, SIGTERM: no errors, no leaks.
test_valgrind() {
  command -v valgrind >/dev/null || { fail "valgrind is not installed"; return; }
  users g- 10 1000000
  local log=$T/$CURRENT.d.log vg=$T/$CURRENT.valgrind rc
  valgrind --leak-check=full --errors-for-leak-kinds=definite,possible \
    --error-exitcode=1 --log-file="$vg" \
    "$BIN" --prefix "$PREFIX" --window "$WINDOW" --log-level debug </dev/null >>"$log" 2>&1 &
  DPID[d]=$!
  wait_log d 'rebuild done' 60 || fail "daemon under valgrind did not start"
  sql -c "SELECT credits.credit_deduct('g-' || (i % 10 + 1), 1, 'vg', jsonb_build_object('i', i)) FROM generate_series(1, 300) i" >/dev/null
  converge 10000 || true
  rcli SET "${PREFIX}txs:g-1" oops >/dev/null
  sql -c "SELECT credits.credit_deduct('g-1', 1, 'vg')" >/dev/null
  converge 10000 || true
  sql -c "SELECT credits.credit_hold('g-2', 5, 'vg', ttl => '0.5 seconds')" >/dev/null
  sleep 0.6
  converge 10000 || true
  kill -HUP "${DPID[d]}"
  rcli FLUSHALL >/dev/null
  sql -c "SELECT credits.credit_deduct('g-' || (i % 10 + 1), 1, 'vg2') FROM generate_series(1, 100) i" >/dev/null
  converge 10000 || true
  sql -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE application_name = 'credits-sync' AND pid <> pg_backend_pid()" >/dev/null
  sql -c "SELECT credits.credit_deduct('g-' || (i % 10 + 1), 1, 'vg3') FROM generate_series(1, 100) i" >/dev/null
  converge 10000 || true
  kill -TERM "${DPID[d]}"
  wait "${DPID[d]}"
  rc=$?
  unset "DPID[d]"
  note "$(grep -E 'ERROR SUMMARY|definitely lost|possibly lost|All heap blocks' "$vg" | sed 's/^==[0-9]*== //' | tr '\n' ';')"
  [ $rc -eq 0 ] || fail "valgrind exit status $rc (see $vg)"
  grep -q 'ERROR SUMMARY: 0 errors' "$vg" || fail "valgrind reported errors (see $vg)"
}

# cluster_start: a redis-server in cluster mode on a free loopback port
# ($CPORT; its cluster bus is on CPORT + 10000, so below 55536) that owns
# all 16384 slots, with cluster_state:ok.
cluster_start() {
  local d=$T/$CURRENT.cluster i
  CPORT=$((46000 + REDIS_PORT % 1000))
  while port_in_use "$CPORT" || port_in_use $((CPORT + 10000)); do CPORT=$((CPORT + 1)); done
  mkdir -p "$d"
  redis-server --bind 127.0.0.1 --port "$CPORT" --cluster-enabled yes \
    --cluster-config-file "$d/nodes.conf" --dir "$d" --daemonize yes \
    --pidfile "$d/redis.pid" --logfile "$d/redis.log" --save "" --appendonly no >/dev/null ||
    { fail "could not start redis-server in cluster mode"; return 1; }
  for i in $(seq 1 100); do [ "$(redis-cli -p "$CPORT" PING 2>/dev/null)" = PONG ] && break; sleep 0.05; done
  [ "$(redis-cli -p "$CPORT" CLUSTER ADDSLOTSRANGE 0 16383)" = OK ] ||
    { fail "CLUSTER ADDSLOTSRANGE failed"; return 1; }
  for i in $(seq 1 200); do
    redis-cli -p "$CPORT" CLUSTER INFO | tr -d '\r' | grep -q '^cluster_state:ok$' && return 0
    sleep 0.05
  done
  fail "the cluster-mode Redis never reached cluster_state:ok"
  return 1
}

cluster_stop() { redis-cli -p "$CPORT" SHUTDOWN NOSAVE >/dev/null 2>&1; }

# The daemon's hash slots (sync/keyslot.c) are Redis Cluster's: CLUSTER
# KEYSLOT of a cluster-mode redis-server, for a few hundred keys with hash
# tags, empty, nested and unbalanced braces; and every companion key the
# daemon names is in its key's slot.
# The cursor's anchor as sync/batch.c reads and writes it: test/sync/anchor.c
# checks a table of inputs, malformed and hostile values of {sync}:cursor
# among them (overflowing ids, signs, blanks, a hash of the wrong length or
# case), against the one text form each must give or its refusal.
test_anchor_parse() {
  cc -O1 -Wall -Wextra -Werror -D_GNU_SOURCE -DCREDITS_SYNC_VERSION='"0.0-test"' \
    -I"$REPO/sync" -I"$(pg_config --includedir)" -o "$T/anchor" \
    "$REPO/test/sync/anchor.c" "$REPO/sync/batch.c" >"$T/$CURRENT.build" 2>&1 ||
    { fail "test/sync/anchor.c does not build: $(head -n 3 "$T/$CURRENT.build")"; return; }
  local out
  out=$("$T/anchor") || fail "$out"
  note "$(tail -n 1 <<<"$out")"
}

# The txs:<user> member the daemon builds (sync/batch.c member_format)
# is byte for byte, with its score, what it stored when PostgreSQL built
# the JSON (json_build_object, compacted, the id right-aligned): for every
# ledger row of the test database, actions and metadata with quotes,
# backslashes, control characters and non-ASCII text, and created_at from
# 4713 BC to 294276 AD (fractions with and without trailing zeros, leap
# days, the infinities): test/sync/member.c.  (The score is not compared
# for the infinities, which PostgreSQL cannot turn into a number, nor past
# the year 294246, where its extract(epoch) rounds to milliseconds.)
test_member_format() {
  cc -O1 -Wall -Wextra -Werror -D_GNU_SOURCE -DCREDITS_SYNC_VERSION='"0.0-test"' \
    -I"$REPO/sync" -I"$(pg_config --includedir)" -o "$T/member" \
    "$REPO/test/sync/member.c" "$REPO/sync/batch.c" >"$T/$CURRENT.build" 2>&1 ||
    { fail "test/sync/member.c does not build: $(head -n 3 "$T/$CURRENT.build")"; return; }
  sql -c "SELECT count(*) FROM generate_series(1, 50) g,
            LATERAL credits.credit_add('member-' || g, 100, 'purchase',
              jsonb_build_object('g', g, 'note', E'tab\\there \"q\" back\\\\slash ü \\u0001'))" >/dev/null || return
  sql -F $'\t' -c "SET TimeZone = 'UTC'" -c "
    WITH r(id, amount, balance, action, metadata, created_at) AS (
      SELECT id, amount, balance_after, action, metadata, created_at FROM credits.ledger
      UNION ALL
      SELECT v.* FROM (VALUES
        (1::bigint, -5::bigint, 0::bigint, 'chat', '{}'::jsonb, '2026-12-01 10:00:00+00'::timestamptz),
        (22, 7, 7, E'a\"b\\\\c\\nd\\re\\tf\\bg\\fh\\u0001\\u001fi\\u007fj', '{\"k\": [1, 2.50, null, true], \"s\": \"x y\"}', '2000-02-29 23:59:59.999999+00'),
        (333, 1, 2, 'ü €', '{\"nested\": {\"a\": {\"b\": \"c d\"}}}', '1900-03-01 00:00:00.1+00'),
        (4444, 1, 2, '', '{}', '2100-02-28 12:34:56.000100+00'),
        (55555, 1, 2, ' ', '{}', '0001-01-01 00:00:00+00'),
        (666666, 1, 2, 'x', '{}', '0001-12-31 23:59:59.5+00 BC'),
        (7777777, 1, 2, 'x', '{}', '4713-11-24 00:00:00+00 BC'),
        (88888888, 1, 2, 'x', '{}', '9999-12-31 23:59:59.999999+00'),
        (999999999, 1, 2, 'x', '{}', '10000-01-01 00:00:00+00'),
        (1234567890123456789, 1, 2, 'x', '{}', '294276-12-31 23:59:59.999999+00'),
        (9223372036854775807, -9223372036854775808, 9223372036854775807, 'x', '{}', '1970-01-01 00:00:00+00'),
        (12, 1, 2, 'x', '{}', '1969-12-31 23:59:59.999+00'),
        (13, 1, 2, 'x', '{}', 'infinity'),
        (14, 1, 2, 'x', '{}', '-infinity')) v
      UNION ALL
      SELECT 1000 + g, g, g, 'r', '{}',
             '2000-01-01 00:00:00+00'::timestamptz
             + make_interval(days => (floor(random() * 108451000) - 2451000)::int)
             + make_interval(secs => (CASE g % 3 WHEN 0 THEN floor(random() * 86400000000) / 1e6
                                             WHEN 1 THEN floor(random() * 86400000) / 1e3
                                             ELSE floor(random() * 86400) END)::float8)
        FROM generate_series(1, 3000) g)
    SELECT encode(convert_to(id::text, 'UTF8'), 'hex'),
           encode(convert_to(amount::text || ',' || balance::text || ',' || action, 'UTF8'), 'hex'),
           encode(convert_to(metadata::text, 'UTF8'), 'hex'),
           timestamptz_send(created_at)::text,
           encode(convert_to(json_build_object('id', id, 'amount', amount, 'balance', balance,
             'action', action, 'metadata', metadata, 'created_at', created_at)::text, 'UTF8'), 'hex'),
           CASE WHEN isfinite(created_at) AND created_at < '294247-01-01 00:00:00+00'
                THEN floor(extract(epoch FROM created_at) * 1000)::int8::text ELSE '-' END
      FROM r" >"$T/$CURRENT.rows" || return
  local out
  out=$("$T/member" <"$T/$CURRENT.rows") || fail "$out"
  note "$(tail -n 1 <<<"$out")"
}

test_keyslot() {
  cluster_start || return
  local keys=(123456789 foo '{user1000}.following' '{}' '{}x' 'a{}b' '{a}' 'a{b}c' '{{x}}'
    '{a{b}c}' 'a{}{b}' '}{' '{a' 'a}' '{' '}' '}{a}' '{}{a}' 'balance:a}b' 'balance:{x}'
    'x{y}z{w}' 't1:balance:{"json": 1}' 'ü{é}' '{ユーザー}🙂' "$(printf 'z%.0s' $(seq 1 300))")
  local alphabet='ab{}:x1' i j k len out slot comp want=() bad=0 tagged=0
  for i in $(seq 1 300); do
    k="" len=$((RANDOM % 14 + 1))
    for ((j = 0; j < len; j++)); do k+=${alphabet:$((RANDOM % ${#alphabet})):1}; done
    keys+=("$k")
  done
  out=$("$BIN" --keyslot "${keys[@]}") || { fail "credits-sync --keyslot failed"; cluster_stop; return; }
  [ "$(wc -l <<<"$out")" -eq "${#keys[@]}" ] || { fail "--keyslot printed $(wc -l <<<"$out") lines for ${#keys[@]} keys"; cluster_stop; return; }
  # CLUSTER KEYSLOT of each key and of its companion, in one redis-cli
  # (every byte hex-escaped in a quoted argument)
  i=0
  while IFS=$'\t' read -r slot comp; do
    printf '%s\0%s\0' "${keys[$i]}" "$comp"
    i=$((i + 1))
  done <<<"$out" | /usr/bin/python3 -c '
import sys
for k in sys.stdin.buffer.read().split(b"\0")[:-1]:
    print("CLUSTER KEYSLOT \"" + "".join("\\x%02x" % b for b in k) + "\"")' >"$T/$CURRENT.cmds"
  mapfile -t want < <(redis-cli -p "$CPORT" <"$T/$CURRENT.cmds")
  [ "${#want[@]}" -eq $((2 * ${#keys[@]})) ] || { fail "redis-cli answered ${#want[@]} lines for $((2 * ${#keys[@]})) commands"; cluster_stop; return; }
  i=0
  while IFS=$'\t' read -r slot comp; do
    k=${keys[$i]}
    [[ "$k" =~ \{[^}]+\} ]] && tagged=$((tagged + 1))
    if [ "$slot" != "${want[$((2 * i))]}" ] || [ "${want[$((2 * i + 1))]}" != "${want[$((2 * i))]}" ]; then
      bad=$((bad + 1))
      [ $bad -le 5 ] && fail "key '$k': slot $slot, CLUSTER KEYSLOT ${want[$((2 * i))]}; companion '$comp' in slot ${want[$((2 * i + 1))]}"
    fi
    i=$((i + 1))
  done <<<"$out"
  note "${#keys[@]} keys ($tagged with a hash tag), $bad differences"
  # the companion of a key without "}" is "{K}:v"
  [ "$("$BIN" --keyslot 't1:balance:u-1' | cut -f2)" = '{t1:balance:u-1}:v' ] ||
    fail "the companion of t1:balance:u-1 is not {t1:balance:u-1}:v"
  cluster_stop
}

# The daemon against a Redis in cluster mode (one node owning every slot,
# so no routing is needed, but a script call whose keys span two slots is
# refused with CROSSSLOT): first, that the old layout's calls are refused
# here; then rows,
# holds and expiries of many users (ids with braces share slots, so one
# call carries several users), a mistyped txs key, a FLUSHALL during
# writes, a history rebuild that replaces everything and deletes a gone
# user's keys, and a new prefix: Redis equals PostgreSQL each time and the
# daemon logs no error.
test_cluster() {
  cluster_start || return
  local out c=(redis-cli -p "$CPORT") log=$T/$CURRENT.d.log
  out=$("${c[@]}" EVAL "redis.call('SET', KEYS[1], 1); return redis.call('SET', KEYS[2], 1)" 2 \
    "${PREFIX}balance:u-1" "${PREFIX}balance:u-2" 2>&1)
  grep -q CROSSSLOT <<<"$out" || fail "two users' keys in one call were not refused: $out"
  out=$("${c[@]}" EVAL "return redis.call('HSET', KEYS[2], 'u-1', 1)" 2 \
    "${PREFIX}balance:u-1" "${PREFIX}sync:version" 2>&1)
  grep -q CROSSSLOT <<<"$out" || fail "a user's key with a global key was not refused: $out"
  [ "$("${c[@]}" DBSIZE)" = 0 ] || fail "a refused call wrote"

  users cl- 300 1000000
  sql -c "SELECT credits.credit_init(id, 1000) FROM unnest(ARRAY['{x}', 'a}b', '{}', 'cl{7}a', 'cl{7}b', 'cl{7}c', '{\"json\": 1}']) id" >/dev/null
  REDIS_PORT=$CPORT start_daemon d --redis-port "$CPORT"
  sql -c "SELECT credits.credit_deduct(u, 1, 'c', jsonb_build_object('i', i))
          FROM generate_series(1, 3) i, (SELECT user_id u FROM credits.accounts WHERE user_id LIKE 'cl%' OR user_id LIKE '%{%' OR user_id LIKE '%}%') a" >/dev/null
  sql -c "SELECT credits.credit_hold('cl-' || i, 5, 'h', ttl => '1 second') FROM generate_series(1, 20) i" >/dev/null
  sql -c "SELECT credits.credit_grant('cl{7}a', 50, 'promo', now() + interval '1 second')" >/dev/null
  REDIS_PORT=$CPORT converge 4000 || return
  # one slot for every key of cl{7}a, cl{7}b, cl{7}c and their companions
  [ "$("${c[@]}" CLUSTER COUNTKEYSINSLOT "$("${c[@]}" CLUSTER KEYSLOT 7)")" -ge 21 ] ||
    fail "the keys of the users tagged {7} are not in one slot"
  [ "$("${c[@]}" --raw GET "{${PREFIX}balance:cl-1}:v")" = "$(sql -c "SELECT version FROM credits.accounts WHERE user_id = 'cl-1'")" ] ||
    fail "the companion {${PREFIX}balance:cl-1}:v does not hold cl-1's version"
  # expiries followed, a mistyped txs key repaired, writes while flushed
  sleep 1.2
  REDIS_PORT=$CPORT converge 4000 || return
  "${c[@]}" SET "${PREFIX}txs:cl-2" oops >/dev/null
  sql -c "SELECT credits.credit_deduct('cl-2', 1, 'after oops')" >/dev/null
  REDIS_PORT=$CPORT converge 4000 || return
  [ "$(log_count d 'txs key of user "cl-2" had the wrong type')" = 1 ] || fail "the mistyped txs key was not repaired and logged"
  writer w cl- 300 3 300
  sleep 1
  "${c[@]}" FLUSHALL >/dev/null
  wait_writer w
  REDIS_PORT=$CPORT converge 4000 || return
  [ "$(log_count d 'rebuild done')" -ge 2 ] || fail "no rebuild after FLUSHALL"
  # a history rebuild (the cursor names another system): replaces every
  # value, and deletes the keys and companions of a user without account
  stop_daemon d
  "${c[@]}" SET "${PREFIX}balance:ghost{1}" 5 >/dev/null
  "${c[@]}" SET "$("$BIN" --keyslot "${PREFIX}balance:ghost{1}" | cut -f2)" 9 >/dev/null
  "${c[@]}" SET "{${PREFIX}held:ghost-2}:v" "9 9" >/dev/null
  "${c[@]}" SET "{${PREFIX}balance:cl-3}:v" 999999999 >/dev/null
  out=$("${c[@]}" --raw GET "${PREFIX}{sync}:cursor")
  "${c[@]}" SET "${PREFIX}{sync}:cursor" "$(awk '{ sub(/^[0-9]+/, "1", $3); print }' <<<"$out")" >/dev/null
  REDIS_PORT=$CPORT start_daemon d --redis-port "$CPORT"
  wait_log d 'history does not extend' 1 || fail "the changed system identifier was not noticed"
  REDIS_PORT=$CPORT converge 4000 || return
  [ "$("${c[@]}" --raw GET "{${PREFIX}balance:cl-3}:v")" != 999999999 ] || fail "the history rebuild kept a version from the future"
  stop_daemon d
  # a new prefix: a rebuild from scratch
  PREFIX="${PREFIX}p2:"
  REDIS_PORT=$CPORT start_daemon d --redis-port "$CPORT"
  REDIS_PORT=$CPORT converge 4000 || return
  stop_daemon d
  grep -n 'ERROR' "$log" | head -n 3 | sed 's/^/      /'
  [ "$(grep -c 'ERROR' "$log")" = 0 ] || fail "the daemon logged errors against the cluster-mode Redis"
  grep -q 'CROSSSLOT\|same slot' "$T/$CURRENT.cluster/redis.log" "$log" && fail "a CROSSSLOT error was seen"
  cluster_stop
}

# --- Redis Cluster (3 masters, 1 replica each) ------------------------------

# rcluster_up: the run's Redis Cluster (.ci/redis_cluster.sh, one for every
# test that uses it; a node a test killed comes back as a replica), its
# nodes in RC_NODES, host:port,...  Ports from CREDITS_TEST_REDIS_CLUSTER_PORT
# and the 5 after it, else the first 6 free ones from 46100 (bus ports
# + 10000).  cluster-node-timeout is 1 s, so a failover takes a few.
RC_DIR=$T/rcluster
rcluster_up() {
  if [ ! -s "$RC_DIR/ports" ]; then
    local base=${CREDITS_TEST_REDIS_CLUSTER_PORT:-46100} i busy
    while :; do
      busy=0
      for i in 0 1 2 3 4 5; do
        if port_in_use $((base + i)) || port_in_use $((base + i + 10000)); then busy=1; fi
      done
      [ $busy = 0 ] && break
      base=$((base + 6))
    done
    export CREDITS_REDIS_CLUSTER_PORT=$base
  fi
  CREDITS_REDIS_CLUSTER_NODE_TIMEOUT=1000 "$REPO/.ci/redis_cluster.sh" up "$RC_DIR" >"$T/$CURRENT.rcluster.log" 2>&1 ||
    { fail "the Redis Cluster did not start: $(tail -n 3 "$T/$CURRENT.rcluster.log")"; return 1; }
  RC_NODES=$("$REPO/.ci/redis_cluster.sh" nodes "$RC_DIR")
  RC_PORTS=$(cat "$RC_DIR/ports")
}

# rc ARGS...: redis-cli in cluster mode (follows MOVED/ASK) on a live node.
rc() {
  local p
  for p in $RC_PORTS; do
    if [ "$(redis-cli -p "$p" PING 2>/dev/null)" = PONG ]; then redis-cli -c -p "$p" "$@"; return; fi
  done
  return 1
}

# master_of SLOT: "<node id> <port>" of the master serving SLOT.
master_of() {
  local p out
  for p in $RC_PORTS; do
    out=$(redis-cli -p "$p" CLUSTER NODES 2>/dev/null | awk -v s="$1" '
      $3 ~ /master/ && $3 !~ /fail/ {
        for (i = 9; i <= NF; i++) {
          if ($i ~ /^\[/) continue
          n = split($i, r, "-"); lo = r[1] + 0; hi = (n == 2 ? r[2] : r[1]) + 0
          if (s >= lo && s <= hi) { split($2, a, "[:@]"); print $1, a[2]; exit }
        }
      }')
    [ -n "$out" ] && { echo "$out"; return 0; }
  done
  return 1
}

# masters: "<node id> <port>" of every live master.
masters() {
  local p
  for p in $RC_PORTS; do
    if [ "$(redis-cli -p "$p" PING 2>/dev/null)" = PONG ]; then
      redis-cli -p "$p" CLUSTER NODES | awk '$3 ~ /master/ && $3 !~ /fail/ { split($2, a, "[:@]"); print $1, a[2] }'
      return
    fi
  done
}

# cconverge MS [CHECK ARGS...]: like converge, against the cluster.
cconverge() { REDIS_CLUSTER_NODES=$RC_NODES converged_within "the Redis Cluster" "$@"; }

# keys_per_master: "port:DBSIZE ..." of the live masters.
keys_per_master() {
  local id p out=""
  while read -r id p; do out+="$p:$(redis-cli -p "$p" DBSIZE) "; done < <(masters)
  echo "$out"
}

# The daemon writing into a Redis Cluster (3 masters, 1 replica each) with
# 1,500 users, so keys are on every master: equal to PostgreSQL after a
# steady write load during which the daemon is killed with -9 and started
# again (it resumes from the cursor, no rebuild); every master holds keys;
# rows per second mirrored, standalone and cluster, in the same run.
test_rcluster_sync() {
  rcluster_up || return
  users rs- 1500 1000000
  start_daemon d --redis-cluster "$RC_NODES" --metrics-file "$T/$CURRENT.prom"
  grep -q 'connected to Redis Cluster: 3 masters' "$T/$CURRENT.d.log" || fail "the daemon did not find the 3 masters"
  writer w rs- 1500 6 400
  sleep 1.5
  kill9_daemon d
  sleep 0.5
  start_daemon d --redis-cluster "$RC_NODES"
  # the network dropping under the daemon: every master closes its
  # connections (CLIENT KILL), 10 times, between or inside pages (a page's
  # data on some masters, its cursor call not sent or lost)
  local id p k
  for k in $(seq 1 10); do
    sleep 0.2
    while read -r id p; do redis-cli -p "$p" CLIENT KILL TYPE normal >/dev/null; done < <(masters)
  done
  wait_writer w
  cconverge 5000 || return
  [ "$(log_count d 'resuming from cursor')" -ge 2 ] || fail "restart or reconnects did not resume from the cursor"
  [ "$(log_count d 'rebuilding Redis')" -eq 1 ] || fail "restart or reconnects rebuilt instead of resuming"
  note "reconnects after CLIENT KILL: $(log_count d 'connected to Redis Cluster') connects"
  local km
  km=$(keys_per_master)
  note "keys per master: $km"
  grep -Eq '^([0-9]+:[1-9][0-9]* ){3}$' <<<"$km" || fail "not every master holds keys: $km"
  [ "$(rc --raw HGET "${PREFIX}sync:status" state)" = running ] || fail "sync:status in the cluster does not say running"
  "$BIN" --prefix "$PREFIX" --redis-cluster "$RC_NODES" --status >"$T/$CURRENT.status" 2>&1 ||
    fail "--status against the cluster failed: $(head -n 2 "$T/$CURRENT.status")"
  stop_daemon d
  grep 'ERROR' "$T/$CURRENT.d.log" | grep -v 'Connection reset\|Server closed the connection\|Broken pipe' |
    head -n 3 | sed 's/^/      /'
  [ "$(grep 'ERROR' "$T/$CURRENT.d.log" | grep -vc 'Connection reset\|Server closed the connection\|Broken pipe')" = 0 ] ||
    fail "the daemon logged errors other than the killed connections"

  # Throughput: two daemons (standalone Redis, the cluster), each with its
  # cursor just before the same 20,000 rows (one transaction), started one
  # after the other: the time until sync:status counts them all.
  local mode t0 ms n base=$PREFIX
  for mode in standalone cluster; do
    PREFIX="${base}tp$mode:"
    if [ $mode = cluster ]; then start_daemon "tp$mode" --redis-cluster "$RC_NODES"; else start_daemon "tp$mode"; fi
    stop_daemon "tp$mode"
  done
  sql -c "SELECT count(*) FROM generate_series(1, 20000) i, LATERAL credits.credit_deduct('rs-' || (i % 1500 + 1), 1, 'bulk')" >/dev/null
  for mode in standalone cluster; do
    PREFIX="${base}tp$mode:"
    t0=$(now_ms)
    if [ $mode = cluster ]; then start_daemon "tp$mode" --redis-cluster "$RC_NODES"; else start_daemon "tp$mode"; fi
    while [ $(($(now_ms) - t0)) -lt 30000 ]; do
      if [ $mode = cluster ]; then n=$(rc --raw HGET "${PREFIX}sync:status" rows_synced); else n=$(status_field rows_synced); fi
      [ "${n:-0}" -ge 20000 ] && break
      sleep 0.01
    done
    ms=$(($(now_ms) - t0))
    [ "${n:-0}" -ge 20000 ] || fail "$mode: only ${n:-0} of 20000 rows after $ms ms"
    note "$mode: 20000 rows (1500 users) mirrored in $ms ms from start: $((20000000 / (ms > 0 ? ms : 1))) rows/s"
    stop_daemon "tp$mode"
  done
  PREFIX=$base
}

# A Redis master is killed (kill -9 of its redis-server, by pid) while the
# daemon writes; its replica is promoted by the cluster (cluster-node-
# timeout 1 s): the daemon follows it and Redis equals PostgreSQL.  The
# master killed is the one holding the daemon's cursor.  Before moving the
# cursor the daemon WAITs for each written master's replica, so the
# promoted replica has every row the cursor counts.
test_rcluster_failover() {
  rcluster_up || return
  users rf- 1000 1000000
  start_daemon d --redis-cluster "$RC_NODES" --max-backoff 200
  writer w rf- 1000 6 300
  sleep 1.5
  local slot id port pid np="" t0 i
  slot=$(rc CLUSTER KEYSLOT "${PREFIX}{sync}:cursor")
  read -r id port < <(master_of "$slot")
  pid=$(tr -dc 0-9 <"$RC_DIR/$port/redis.pid")
  [ -n "$pid" ] || { fail "no pid for the master on port $port"; return; }
  t0=$(now_ms)
  kill -KILL "$pid"
  for i in $(seq 1 300); do
    np=$(master_of "$slot" | cut -d' ' -f2)
    [ -n "$np" ] && [ "$np" != "$port" ] && break
    sleep 0.05
  done
  [ -n "$np" ] && [ "$np" != "$port" ] || { fail "no replica took over slot $slot"; return; }
  note "master $port killed; replica $np took over in $(($(now_ms) - t0)) ms"
  wait_writer w
  cconverge 10000 || return
  alive d || fail "the daemon died"
  [ "$(log_count d 'connected to Redis Cluster')" -ge 2 ] || fail "the daemon did not reconnect to the cluster"
  # a replica killed: the daemon's WAIT for it fails until the cluster
  # marks it failed (cluster-node-timeout), then it goes on without it
  local rport
  rport=$(redis-cli -p "$np" CLUSTER NODES | awk '$3 ~ /slave/ && $3 !~ /fail/ { split($2, a, "[:@]"); print a[2]; exit }')
  [ -n "$rport" ] || { fail "no live replica left"; return; }
  kill -KILL "$(tr -dc 0-9 <"$RC_DIR/$rport/redis.pid")"
  sql -c "SELECT count(*) FROM generate_series(1, 3000) i, LATERAL credits.credit_deduct('rf-' || (i % 1000 + 1), 1, 'r')" >/dev/null
  cconverge 10000 || return
  note "replica $rport killed: $(log_count d 'replicas of .* acknowledged') WAITs short of a replica"
  stop_daemon d
  rcluster_up || return   # the killed nodes come back as replicas
}

# A promoted replica that lacks acknowledged writes: a master acknowledges
# a user's new balance while its replica is cut off (SIGSTOP of the
# replica's redis-server, its link closed by CLIENT KILL TYPE replica);
# the daemon's WAIT falls short, so the cursor does not count that page
# while the replica is listed; once the cluster marks it failed the page
# goes through without it; then the master is killed, the replica comes
# back and is promoted without the write.  The daemon sees a former
# replica serving slots and rebuilds (keeping the version guards), so Redis
# equals PostgreSQL.  A daemon that trusted the master's acknowledgement
# alone left the user's old balance there for good (tried by hand).
test_rcluster_wait() {
  rcluster_up || return
  users rw- 50 1000000
  start_daemon d --redis-cluster "$RC_NODES" --max-backoff 200
  local cslot cport u="" slot mid mport rport i t0
  cslot=$(rc CLUSTER KEYSLOT "${PREFIX}{sync}:cursor")
  cport=$(master_of "$cslot" | cut -d' ' -f2)
  # a user whose balance: key is on a master that does not hold the cursor
  for i in $(seq 1 50); do
    slot=$("$BIN" --keyslot "${PREFIX}balance:rw-$i" | cut -f1)
    read -r mid mport < <(master_of "$slot")
    [ "$mport" != "$cport" ] && { u=rw-$i; break; }
  done
  [ -n "$u" ] || { fail "no user off the cursor's master"; return; }
  rport=$(redis-cli -p "$mport" CLUSTER NODES | awk -v m="$mid" '$4 == m && $3 ~ /slave/ && $3 !~ /fail/ { split($2, a, "[:@]"); print a[2]; exit }')
  [ -n "$rport" ] || { fail "the master on $mport has no replica"; return; }
  local rpid
  rpid=$(tr -dc 0-9 <"$RC_DIR/$rport/redis.pid")
  # the replica stopped and its link closed: the master's next writes
  # reach no replica (the bytes of an open link would wait in the stopped
  # replica's socket buffer and arrive after all)
  kill -STOP "$rpid"
  redis-cli -p "$mport" CLIENT KILL TYPE replica >/dev/null
  sleep 0.3
  sql -c "SELECT credits.credit_deduct('$u', 777, 'while the replica sleeps')" >/dev/null
  sleep 1.5
  [ "$(log_count d 'replicas of .* acknowledged')" -ge 1 ] || fail "no WAIT fell short while the replica slept"
  kill -KILL "$(tr -dc 0-9 <"$RC_DIR/$mport/redis.pid")"
  t0=$(now_ms)
  sleep 0.5
  kill -CONT "$rpid"
  for i in $(seq 1 300); do
    [ "$(master_of "$slot" | cut -d' ' -f2)" = "$rport" ] && break
    sleep 0.05
  done
  [ "$(master_of "$slot" | cut -d' ' -f2)" = "$rport" ] || { fail "the stalled replica was not promoted"; return; }
  note "master $mport killed while its replica $rport slept; $rport promoted after $(($(now_ms) - t0)) ms"
  cconverge 10000 || return
  [ "$(log_count d 'replica was promoted: rebuilding')" -ge 1 ] || fail "the failover did not make the daemon rebuild"
  stop_daemon d
  rcluster_up || return
}

# Readers use ioredis' Cluster client with the key names unchanged:
# test/sync/ioredis_cluster.mjs reads balance:, available:, held: and the
# newest txs: member of 300 users (keys on every master) through it and
# compares them with PostgreSQL (ioredis from clients/node, installed by
# its build.sh as the client suite does).
test_rcluster_ioredis() {
  rcluster_up || return
  if [ ! -f "$REPO/clients/node/node_modules/ioredis/package.json" ]; then
    "$REPO/clients/node/build.sh" >"$T/$CURRENT.npm" 2>&1 || { fail "clients/node/build.sh failed: $(tail -n 3 "$T/$CURRENT.npm")"; return; }
  fi
  users ri- 300 1000
  sql -c "SELECT credits.credit_deduct('ri-' || i, i, 'r') FROM generate_series(1, 300) i" >/dev/null
  sql -c "SELECT credits.credit_hold('ri-' || i, 7, 'h') FROM generate_series(1, 300, 3) i" >/dev/null
  start_daemon d --redis-cluster "$RC_NODES"
  cconverge 5000 || return
  sql -F $'\t' -c "SELECT a.user_id, credits.credit_balance(a.user_id), credits.credit_available(a.user_id),
      (SELECT coalesce(sum(h.amount), 0) FROM credits.holds h WHERE h.user_id = a.user_id AND h.status = 'open' AND h.expires_at > now()),
      (SELECT max(l.id) FROM credits.ledger l WHERE l.user_id = a.user_id)
    FROM credits.accounts a WHERE a.user_id LIKE 'ri-%'" >"$T/$CURRENT.tsv"
  local out
  out=$(REDIS_CLUSTER_NODES=$RC_NODES node "$REPO/test/sync/ioredis_cluster.mjs" "$PREFIX" <"$T/$CURRENT.tsv" 2>&1) ||
    fail "ioredis Cluster read differs: $out"
  note "$out"
  # and it can fail: one value changed behind the daemon's back
  rc SET "${PREFIX}balance:ri-7" 12345 >/dev/null
  REDIS_CLUSTER_NODES=$RC_NODES node "$REPO/test/sync/ioredis_cluster.mjs" "$PREFIX" <"$T/$CURRENT.tsv" >/dev/null 2>&1 &&
    fail "the ioredis check did not see a changed balance"
  stop_daemon d
}

# A slot is migrated between masters while the daemon writes into it
# (CLUSTER SETSLOT IMPORTING/MIGRATING, MIGRATE of a few keys at a time,
# SETSLOT NODE): the users 'mg{7}1'..'mg{7}30' have every key in one slot
# (hash tag 7).  The daemon follows TRYAGAIN, ASK (keys already moved) and
# MOVED (after SETSLOT NODE, unless its once-a-second topology read came
# first), and Redis equals PostgreSQL.
test_rcluster_migrate() {
  rcluster_up || return
  sql -c "SELECT credits.credit_init('mg{7}' || i, 1000000) FROM generate_series(1, 30) i" >/dev/null
  users rm- 200 1000000
  start_daemon d --redis-cluster "$RC_NODES" --max-backoff 100 --metrics-file "$T/$CURRENT.prom"
  local slot sid sport did dport keys k n=0
  slot=$(rc CLUSTER KEYSLOT 7)
  read -r sid sport < <(master_of "$slot")
  read -r did dport < <(masters | awk -v s="$sport" '$2 != s' | head -n 1)
  # writes to the slot until 0.5 s after its move (however long that takes)
  (while [ ! -e "$T/$CURRENT.stop" ]; do
     sql -c "SELECT credits.credit_deduct('mg{7}' || (1 + (random() * 29)::int), 1, 'm')" >/dev/null
   done) &
  local wpid=$!
  sleep 0.5
  redis-cli -p "$dport" CLUSTER SETSLOT "$slot" IMPORTING "$sid" >/dev/null
  redis-cli -p "$sport" CLUSTER SETSLOT "$slot" MIGRATING "$did" >/dev/null
  # 20 keys per MIGRATE, as redis-cli --cluster reshard moves them (it
  # moves 10), with a pause between: the slot's keys are split meanwhile
  while keys=$(redis-cli -p "$sport" CLUSTER GETKEYSINSLOT "$slot" 20) && [ -n "$keys" ]; do
    # shellcheck disable=SC2086
    redis-cli -p "$sport" MIGRATE 127.0.0.1 "$dport" "" 0 5000 KEYS $keys >/dev/null
    n=$((n + $(wc -w <<<"$keys")))
    sleep 0.05
  done
  # every key moved, the slot still MIGRATING: writes are ASKed to the target
  sleep 1
  while read -r k k; do
    redis-cli -p "$k" CLUSTER SETSLOT "$slot" NODE "$did" >/dev/null
  done < <(masters)
  note "slot $slot ($n keys) moved from port $sport to $dport"
  sleep 0.5
  touch "$T/$CURRENT.stop"
  wait "$wpid"
  sql -c "SELECT credits.credit_deduct('mg{7}' || i, 1, 'after') FROM generate_series(1, 30) i" >/dev/null
  cconverge 5000 || return
  [ "$(redis-cli -p "$dport" CLUSTER COUNTKEYSINSLOT "$slot")" -gt 0 ] || fail "no key in slot $slot on its new master"
  wait_metric "$T/$CURRENT.prom" 'credits_sync_redis_redirects_total{kind="ask"}' 1 2500 ||
    fail "no ASK followed"
  # The new owner is learnt from a MOVED, or from the topology the daemon
  # reads again (at most every second) before a write reached the old one
  wait_metric "$T/$CURRENT.prom" 'credits_sync_redis_redirects_total{kind="moved"}' 1 1500 ||
    wait_metric "$T/$CURRENT.prom" 'credits_sync_redis_topology_reads_total' 3 100 ||
    fail "neither a MOVED nor a topology read told the daemon the slot's new master"
  note "pages failed and replayed while the slot was split: $(log_count d 'still redirected after')"
  note "redirections followed: moved $(metric "$T/$CURRENT.prom" 'credits_sync_redis_redirects_total{kind="moved"}'), ask $(metric "$T/$CURRENT.prom" 'credits_sync_redis_redirects_total{kind="ask"}'); topology reads $(metric "$T/$CURRENT.prom" credits_sync_redis_topology_reads_total)"
  stop_daemon d
}

# The shared partition hash (src/partition_hash.h, compiled into
# credits-sync by sync/partition.c) gives the fixed test vectors
# and the same values as the extension's credits.partition_hash() (FNV-1a
# 32 then fmix32, signed); the partition of 4 is its low 2 bits.
test_partition_hash() {
  local out want
  out=$("$BIN" --partition-hash u1 alice '' 'ü' 00000000-0000-4000-8000-000000000000 | tr '\t\n' ' ')
  want='612938007 3 -367733218 2 -1421968373 3 -1050830394 2 1564448355 3 '
  [ "$out" = "$want" ] || fail "partition hashes: got '$out', want '$want'"
  # and the extension's credits.partition_hash() agrees, on 300 more ids
  local ids=(u1 alice '' 'ü' 00000000-0000-4000-8000-000000000000) i
  for i in $(seq 1 300); do ids+=("id-$i-$RANDOM"); done
  out=$("$BIN" --partition-hash "${ids[@]}" | cut -f1 | tr '\n' ' ')
  want=$(printf '%s\n' "${ids[@]}" | sql -c "CREATE TEMP TABLE ph(i serial, u text)" -c "COPY ph(u) FROM STDIN" \
    -c "SELECT credits.partition_hash(u) FROM ph ORDER BY i" | tr '\n' ' ')
  [ "$out" = "$want" ] || fail "sync/partition.c and credits.partition_hash() differ"
  "$BIN" --partition 4/4 --version >/dev/null 2>&1 && fail "--partition 4/4 was accepted"
  "$BIN" --partition 1/3 --version >/dev/null 2>&1 && fail "--partition 1/3 was accepted"
  "$BIN" --partition 3/4 --version >/dev/null 2>&1 || fail "--partition 3/4 was refused"
}

# Two databases (partitions 0 and 1 of 2, each holding only its users),
# one daemon each (--partition), one prefix, one Redis Cluster: each has
# its own global keys ({sync:P/N}:cursor, ...), both mirrors are right, a
# history rebuild of one (replacing, deleting keys of users without an
# account) deletes its own partition's stray keys and leaves the other
# partition's keys alone (and the 1.0 layout's sync:* keys); a daemon given
# the wrong partition writes nothing and exits 2; and a history rebuild
# of an empty database deletes nothing.
test_rcluster_partitions() {
  rcluster_up || return
  local dba=sync_test_pa dbb=sync_test_pb ida=() idb=() i u p
  sql -d postgres -c "DROP DATABASE IF EXISTS $dba" -c "CREATE DATABASE $dba" \
    -c "DROP DATABASE IF EXISTS $dbb" -c "CREATE DATABASE $dbb" >/dev/null || return
  PGDATABASE=$dba sql -c "CREATE EXTENSION credits" >/dev/null || return
  PGDATABASE=$dbb sql -c "CREATE EXTENSION credits" >/dev/null || return
  while IFS=$'\t' read -r u p; do
    if [ $((p & 1)) = 0 ]; then ida+=("$u"); else idb+=("$u"); fi
  done < <(for i in $(seq 1 400); do printf 'pp-%d\t' "$i"; "$BIN" --partition-hash "pp-$i" | cut -f2; done)
  PGDATABASE=$dba sql -c "SELECT count(*) FROM unnest(string_to_array('$(IFS=,; echo "${ida[*]}")', ',')) u, LATERAL credits.credit_init(u, 100000)" >/dev/null
  PGDATABASE=$dbb sql -c "SELECT count(*) FROM unnest(string_to_array('$(IFS=,; echo "${idb[*]}")', ',')) u, LATERAL credits.credit_init(u, 100000)" >/dev/null
  note "${#ida[@]} users in partition 0, ${#idb[@]} in partition 1"
  start_daemon a --redis-cluster "$RC_NODES" --dbname "dbname=$dba" --partition 0/2
  start_daemon b --redis-cluster "$RC_NODES" --dbname "dbname=$dbb" --partition 1/2
  for i in 1 2 3; do
    PGDATABASE=$dba sql -c "SELECT credits.credit_deduct(user_id, 1, 'a') FROM credits.accounts" >/dev/null
    PGDATABASE=$dbb sql -c "SELECT credits.credit_deduct(user_id, 1, 'b') FROM credits.accounts" >/dev/null
  done
  PGDATABASE=$dba cconverge 5000 --partition 0/2 || return
  PGDATABASE=$dbb cconverge 5000 --partition 1/2 || return
  [ "$(rc EXISTS "${PREFIX}{sync:0/2}:cursor")$(rc EXISTS "${PREFIX}{sync:1/2}:cursor")$(rc EXISTS "${PREFIX}{sync}:cursor")" = 110 ] ||
    fail "the global keys are not per partition"
  [ "$(rc --raw HGET "${PREFIX}sync:status:1/2" state)" = running ] || fail "no sync:status:1/2"
  stop_daemon b

  # strays: a key of a partition-0 user without an account (a's to
  # delete), and one of a partition-1 user (not a's)
  local g0="" g1="" gu
  for i in $(seq 1 50); do
    gu="ghost-$i"
    p=$("$BIN" --partition-hash "$gu" | cut -f2)
    if [ $((p & 1)) = 0 ] && [ -z "$g0" ]; then g0=$gu; fi
    if [ $((p & 1)) = 1 ] && [ -z "$g1" ]; then g1=$gu; fi
  done
  rc SET "${PREFIX}balance:$g0" 5 >/dev/null
  rc SET "${PREFIX}balance:$g1" 5 >/dev/null
  rc SET "${PREFIX}sync:version" 1.0 >/dev/null   # the 1.0 layout's: nobody's partition's
  # a's history rebuild: its cursor names another system
  stop_daemon a
  local out
  out=$(rc --raw GET "${PREFIX}{sync:0/2}:cursor")
  rc SET "${PREFIX}{sync:0/2}:cursor" "$(awk '{ sub(/^[0-9]+/, "1", $3); print }' <<<"$out")" >/dev/null
  start_daemon a --redis-cluster "$RC_NODES" --dbname "dbname=$dba" --partition 0/2
  wait_log a 'history does not extend' 2 || fail "the changed system identifier was not noticed"
  wait_log a 'deleted the keys of 1 users' 5 || fail "a's rebuild did not delete exactly its one stray user"
  PGDATABASE=$dba cconverge 5000 --partition 0/2 || return
  [ "$(rc EXISTS "${PREFIX}balance:$g1")" = 1 ] || fail "a's rebuild deleted a key of partition 1"
  [ "$(rc EXISTS "${PREFIX}sync:version")" = 1 ] || fail "a's rebuild deleted the 1.0 layout's sync:version"
  rc DEL "${PREFIX}balance:$g1" >/dev/null
  rc DEL "${PREFIX}sync:version" >/dev/null
  PGDATABASE=$dbb cconverge 2000 --partition 1/2 || return

  # the wrong partition: a daemon on a's database told it is partition 1
  local before after rc_c
  before=$(rc --raw GET "${PREFIX}{sync:1/2}:cursor")
  timeout 20 "$BIN" --prefix "$PREFIX" --redis-cluster "$RC_NODES" --dbname "dbname=$dba" \
    --partition 1/2 >"$T/$CURRENT.c.log" 2>&1 </dev/null
  rc_c=$?
  [ $rc_c = 2 ] || fail "a daemon on the wrong partition exited with $rc_c, not 2"
  grep -q 'is in partition 0/2, not in --partition 1/2' "$T/$CURRENT.c.log" || fail "no clear error for the wrong partition"
  after=$(rc --raw GET "${PREFIX}{sync:1/2}:cursor")
  [ "$before" = "$after" ] || fail "the daemon on the wrong partition moved partition 1's cursor"
  PGDATABASE=$dbb cconverge 2000 --partition 1/2 || return
  stop_daemon a

  # an empty database given partition 0's P/N (a wrong --dbname): its
  # history rebuild deletes nothing of partition 0
  local dbe=sync_test_pe
  sql -d postgres -c "DROP DATABASE IF EXISTS $dbe" -c "CREATE DATABASE $dbe" >/dev/null || return
  PGDATABASE=$dbe sql -c "CREATE EXTENSION credits" >/dev/null || return
  rc SET "${PREFIX}balance:$g0" 5 >/dev/null
  out=$(rc --raw GET "${PREFIX}{sync:0/2}:cursor")
  rc SET "${PREFIX}{sync:0/2}:cursor" "$(awk '{ sub(/^[0-9]+/, "1", $3); print }' <<<"$out")" >/dev/null
  start_daemon e --redis-cluster "$RC_NODES" --dbname "dbname=$dbe" --partition 0/2
  wait_log e 'this database has no account: not deleting' 5 || fail "an empty database's history rebuild did not refuse to delete"
  [ "$(rc EXISTS "${PREFIX}balance:$g0")$(rc EXISTS "${PREFIX}balance:${ida[0]}")" = 11 ] ||
    fail "an empty database's history rebuild deleted keys of partition 0"
  stop_daemon e
  sql -d postgres -c "DROP DATABASE $dba" -c "DROP DATABASE $dbb" -c "DROP DATABASE $dbe" >/dev/null
}

ALL_TESTS=(basic wakeup steady_stream prepared_transaction out_of_order kill9 lost_notifications pg_restart pg_crash restore_old_copy restore_more_writes standby_failover redis_restart redis_rollback
  flushall two_daemons aborted odd_ids wrong_type window signals version_refusal version_1_0 eviction_policy
  holds expiry metrics layering checks_can_fail anchor_parse member_format keyslot cluster partition_hash rcluster_sync rcluster_migrate rcluster_partitions rcluster_failover rcluster_wait rcluster_ioredis
  long_transaction valgrind)

run_test() {
  local name=$1 t0
  TEST_NO=$((TEST_NO + 1))
  CURRENT=$name
  PREFIX="t$TEST_NO:"
  WINDOW=1000
  TEST_FAILED=0
  t0=$(now_ms)
  "test_$name"
  local d
  for d in "${!DPID[@]}"; do
    kill -KILL "${DPID[$d]}" 2>/dev/null
    wait "${DPID[$d]}" 2>/dev/null
    unset "DPID[$d]"
  done
  if [ "$TEST_FAILED" -eq 0 ]; then
    PASSED=$((PASSED + 1))
    say "ok - $name ($(($(now_ms) - t0)) ms)"
  else
    FAILED=$((FAILED + 1))
    FAILED_NAMES+=("$name")
    say "not ok - $name ($(($(now_ms) - t0)) ms; logs in $T/$name.*)"
  fi
}

if [ $# -gt 0 ]; then
  TESTS=("$@")
else
  TESTS=("${ALL_TESTS[@]}")
fi
for t in "${TESTS[@]}"; do
  if ! declare -F "test_$t" >/dev/null; then
    say "unknown test $t (tests: ${ALL_TESTS[*]})"
    FAILED=$((FAILED + 1))
    continue
  fi
  run_test "$t"
done

[ "$FAILED" -eq 0 ] || say "failed: ${FAILED_NAMES[*]}"
say "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
