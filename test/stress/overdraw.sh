#!/usr/bin/env bash
# Stress: 32 connections overdraw one account at once.
#
# The account starts with 3200 credits.  32 psql clients, released together
# at one instant, each try 25 deductions of 10 (800 tries for 320
# affordable ones), every deduction its own transaction, as an application
# would run them.  Exactly 320 must succeed, every failure must be CR001
# (insufficient credits), and afterwards the balance is 0, the ledger sums
# to 0, its rows step the balance down 3190, 3180, ..., 0 in id order (no
# lost update), and credit_verify_all() is empty.
#
# Runs in its own database (credits_stress, created afresh) on the stack
# described by ${CREDITS_RUN_DIR:-<repo>/.run}/env.  Prints PASS or FAIL.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RUN_DIR=${CREDITS_RUN_DIR:-$REPO/.run}
# shellcheck disable=SC1091
. "$RUN_DIR/env"
export PGHOST PGPORT PGUSER
PSQL=/usr/lib/postgresql/15/bin/psql
DB=credits_stress
CLIENTS=${STRESS_CLIENTS:-32}
TRIES=${STRESS_TRIES:-25}
AMOUNT=10
START=3200
EXPECT=$((START / AMOUNT))
USER_ID="stress overdraw 'ü'"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

fails=0
check() {
  local what=$1 have=$2 want=$3
  if [ "$have" = "$want" ]; then
    echo "ok: $what ($have)"
  else
    echo "not ok: $what: have '$have', want '$want'"
    fails=$((fails + 1))
  fi
}

# q SQL: runs SQL (from stdin, so that :'u' is interpolated) and prints the
# unaligned result.
q() { printf '%s\n' "$1" | "$PSQL" -X -q -v ON_ERROR_STOP=1 -d "$DB" -tA -v u="$USER_ID"; }

"$PSQL" -X -q -v ON_ERROR_STOP=1 -d postgres -c "SET client_min_messages = warning" \
  -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
q "SET client_min_messages = warning; CREATE EXTENSION credits"
q "SELECT balance FROM credits.credit_init(:'u', $START)" >/dev/null

# Every client waits for the same instant, then runs TRIES autocommit
# deductions; psql goes on after errors (ON_ERROR_STOP off).  Verbose errors
# carry the SQLSTATE: "ERROR:  CR001: insufficient credits".
start_at=$(q "SELECT clock_timestamp() + interval '2 seconds'")
{
  echo '\set VERBOSITY verbose'
  echo "SELECT pg_sleep_until('$start_at') \\g /dev/null"
  for _ in $(seq 1 "$TRIES"); do
    echo "SELECT 'ok' AS r FROM credits.credit_deduct(:'u', $AMOUNT, 'stress', '{}');"
  done
} >"$WORK/client.sql"

echo "overdraw: $CLIENTS clients x $TRIES deductions of $AMOUNT on a balance of $START"
pids=()
for c in $(seq 1 "$CLIENTS"); do
  "$PSQL" -X -q -tA -d "$DB" -v u="$USER_ID" -f "$WORK/client.sql" \
    >"$WORK/out.$c" 2>"$WORK/err.$c" &
  pids+=($!)
done
client_failed=0
for pid in "${pids[@]}"; do
  wait "$pid" || client_failed=$((client_failed + 1))
done

ok=$(cat "$WORK"/out.* | grep -c '^ok$' || true)
cr001=$(cat "$WORK"/err.* | grep -c '^psql:.*ERROR:  CR001: insufficient credits' || true)
other=$(cat "$WORK"/err.* | grep 'ERROR:' | grep -v 'ERROR:  CR001: insufficient credits' || true)

check "psql clients that exited non-zero" "$client_failed" 0
check "deductions that succeeded" "$ok" "$EXPECT"
check "deductions refused with CR001" "$cr001" $((CLIENTS * TRIES - EXPECT))
check "other errors" "${other:-none}" none
check "DETAIL of a refusal" "$(cat "$WORK"/err.* | grep -m1 '^DETAIL:' || true)" "DETAIL:  required=$AMOUNT available=0"
check "balance" "$(q "SELECT credits.credit_balance(:'u')")" 0
check "sum of the ledger" "$(q "SELECT sum(amount) FROM credits.ledger WHERE user_id = :'u'")" 0
check "ledger rows of the stress" "$(q "SELECT count(*) FROM credits.ledger WHERE user_id = :'u' AND action = 'stress'")" "$EXPECT"
check "every deduction is -$AMOUNT" "$(q "SELECT count(*) FROM credits.ledger WHERE user_id = :'u' AND action = 'stress' AND amount <> -$AMOUNT")" 0
# in id order, balance_after steps down by exactly AMOUNT from START
check "rows whose balance_after does not follow the previous row" "$(q "
  SELECT count(*) FROM (
    SELECT balance_after, lag(balance_after) OVER (ORDER BY id) AS prev, amount
      FROM credits.ledger WHERE user_id = :'u') s
   WHERE prev IS NOT NULL AND balance_after <> prev + amount")" 0
check "lowest balance_after" "$(q "SELECT min(balance_after) FROM credits.ledger WHERE user_id = :'u'")" 0
check "credit_verify" "$(q "SELECT valid FROM credits.credit_verify(:'u')")" t
check "credit_verify_all() rows" "$(q "SELECT count(*) FROM credits.credit_verify_all()")" 0

"$PSQL" -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || true

if [ "$fails" -eq 0 ]; then
  echo "PASS: overdraw ($ok of $((CLIENTS * TRIES)) deductions succeeded, balance 0)"
  exit 0
fi
echo "FAIL: overdraw ($fails checks failed)"
for f in "$WORK"/err.*; do
  grep -v 'CR001\|^DETAIL\|^HINT\|^LOCATION' "$f" | head -n 5 || true
done
exit 1
