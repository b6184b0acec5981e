#!/usr/bin/env bash
# Stress: deductions racing idempotent purchases on one account.
#
# The account starts with 1000 credits.  Released together, 16 clients try
# 30 deductions of 7 each, while 16 others make 10 purchases of 3 each and
# send every purchase twice with the same idempotency key, as a retrying
# payment webhook would.  Which deductions succeed depends on the timing, so
# the checks are the invariants:
#   * each retry returns the tx_id of its first call, and exactly 160
#     purchase rows exist (one per key);
#   * every refused deduction is CR001; the succeeded ones are exactly the
#     deduction rows of the ledger;
#   * balance = 1000 + 160*3 - 7*(succeeded) >= 0, equal to the ledger sum,
#     and every row's balance_after follows the previous row in id order;
#   * credit_verify_all() is empty.
#
# Runs in its own database (credits_stress_mixed, created afresh) on the
# stack described by ${CREDITS_RUN_DIR:-<repo>/.run}/env.  Prints PASS or FAIL.
DB=credits_stress_mixed
SPENDERS=16
SPEND_TRIES=30
SPEND=7
PAYERS=16
PAYMENTS=10
PAY=3
START=1000
USER_ID="stress mixed ✓"
# shellcheck source=test/stress/common.bash
. "$(dirname "${BASH_SOURCE[0]}")/common.bash"

stress_setup
{
  echo '\set VERBOSITY verbose'
  echo "SELECT pg_sleep_until('$start_at') \\g /dev/null"
  for _ in $(seq 1 "$SPEND_TRIES"); do
    echo "SELECT 'spent' FROM credits.credit_deduct(:'u', $SPEND, 'stress_spend');"
  done
} >"$WORK/spender.sql"
for c in $(seq 1 "$PAYERS"); do
  {
    echo '\set VERBOSITY verbose'
    echo "SELECT pg_sleep_until('$start_at') \\g /dev/null"
    for i in $(seq 1 "$PAYMENTS"); do
      for try in first retry; do
        echo "SELECT '$try', 'pay-$c-$i', tx_id FROM credits.credit_add(:'u', $PAY, 'stress_purchase', '{}', 'pay-$c-$i');"
      done
    done
  } >"$WORK/payer.$c.sql"
done

echo "mixed: $SPENDERS clients x $SPEND_TRIES deductions of $SPEND, $PAYERS clients x $PAYMENTS purchases of $PAY (each sent twice)"
pids=()
for c in $(seq 1 "$SPENDERS"); do
  "$PSQL" -X -q -tA -F ' ' -d "$DB" -v u="$USER_ID" -f "$WORK/spender.sql" >"$WORK/spend.out.$c" 2>"$WORK/spend.err.$c" &
  pids+=($!)
done
for c in $(seq 1 "$PAYERS"); do
  "$PSQL" -X -q -tA -F ' ' -d "$DB" -v u="$USER_ID" -f "$WORK/payer.$c.sql" >"$WORK/pay.out.$c" 2>"$WORK/pay.err.$c" &
  pids+=($!)
done
stress_wait "${pids[@]}"

spent=$(cat "$WORK"/spend.out.* | grep -c '^spent$' || true)
refused=$(cat "$WORK"/spend.err.* | grep -c 'ERROR:  CR001: insufficient credits' || true)
other=$(cat "$WORK"/spend.err.* "$WORK"/pay.err.* | grep 'ERROR:' | grep -v 'ERROR:  CR001: insufficient credits' | head -n 3 || true)
payments=$((PAYERS * PAYMENTS))
# "first KEY TXID" and "retry KEY TXID": every key's two tx_ids must agree
mismatched=$(cat "$WORK"/pay.out.* | awk '
  $1 == "first" { first[$2] = $3 }
  $1 == "retry" { retry[$2] = $3 }
  END {
    n = 0
    for (k in first) if (!(k in retry) || retry[k] != first[k]) n++
    for (k in retry) if (!(k in first)) n++
    print n
  }')
answered=$(cat "$WORK"/pay.out.* | grep -c '^first ' || true)

check "psql clients that exited non-zero" "$client_failed" 0
check "other errors" "${other:-none}" none
check "deductions answered (succeeded + CR001)" $((spent + refused)) $((SPENDERS * SPEND_TRIES))
check "purchases answered" "$answered" "$payments"
check "retries whose tx_id differs from the first call's" "$mismatched" 0
check "purchase rows in the ledger" "$(q "SELECT count(*) FROM credits.ledger WHERE user_id = :'u' AND action = 'stress_purchase'")" "$payments"
check "deduction rows in the ledger" "$(q "SELECT count(*) FROM credits.ledger WHERE user_id = :'u' AND action = 'stress_spend'")" "$spent"
want_balance=$((START + payments * PAY - spent * SPEND))
check "balance" "$(q "SELECT credits.credit_balance(:'u')")" "$want_balance"
check "sum of the ledger" "$(q "SELECT sum(amount) FROM credits.ledger WHERE user_id = :'u'")" "$want_balance"
check_ledger_chain
check "negative balance_after" "$(q "SELECT count(*) FROM credits.ledger WHERE user_id = :'u' AND balance_after < 0")" 0

stress_finish mixed "$spent deductions and $payments purchases, balance $want_balance"
