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
DB=credits_stress
CLIENTS=${STRESS_CLIENTS:-32}
TRIES=${STRESS_TRIES:-25}
AMOUNT=10
START=3200
EXPECT=$((START / AMOUNT))
USER_ID="stress overdraw 'ü'"
# shellcheck source=test/stress/common.bash
. "$(dirname "${BASH_SOURCE[0]}")/common.bash"

stress_setup

# Every client waits for start_at, then runs TRIES autocommit deductions;
# psql goes on after errors (ON_ERROR_STOP off).  Verbose errors carry the
# SQLSTATE: "ERROR:  CR001: insufficient credits".
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
stress_wait "${pids[@]}"

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
check_ledger_chain
check "lowest balance_after" "$(q "SELECT min(balance_after) FROM credits.ledger WHERE user_id = :'u'")" 0
check "credit_verify" "$(q "SELECT valid FROM credits.credit_verify(:'u')")" t

if stress_finish overdraw "$ok of $((CLIENTS * TRIES)) deductions succeeded, balance 0"; then
  exit 0
fi
for f in "$WORK"/err.*; do
  grep -v 'CR001\|^DETAIL\|^HINT\|^LOCATION' "$f" | head -n 5 || true
done
exit 1
