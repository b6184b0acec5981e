#!/usr/bin/env bash
# make demo: plays a short scenario against the local stack through psql and
# prints what happened: a signup, a chat message, a purchase retried with
# its idempotency key, priced charges, a video and a training job paid
# through holds, usage, an insufficient-credits error with its SQLSTATE,
# DETAIL and HINT, the history, and, when credits-sync runs, the same
# account as Redis readers see it.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_DIR=${CREDITS_RUN_DIR:-$REPO/.run}
[ -s "$RUN_DIR/env" ] || { echo "demo: no $RUN_DIR/env: run 'make dev-up' first" >&2; exit 1; }
set -a
# shellcheck disable=SC1091
. "$RUN_DIR/env"
set +a
PSQL=${CREDITS_PGBIN:-/usr/lib/postgresql/15/bin}/psql

# A new user each run (signup is idempotent, so a fixed id would only show
# the first run's grant).  The id has a quote, a space and unicode: ids are
# opaque strings.
RUN_ID=$(date +%H%M%S)
DEMO_USER="zoë o'brien #$RUN_ID"

if [ -t 1 ]; then
  title() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
  title() { printf '\n== %s\n' "$*"; }
fi

# sql TEXT: runs TEXT in psql with :'u' (the user) and :'run' set, tables
# aligned without footers, stopping at the first unexpected error.
sql() {
  printf '%s\n' "$1" | "$PSQL" -X -q -v ON_ERROR_STOP=1 -P footer=off \
    -v u="$DEMO_USER" -v run="$RUN_ID" 2>&1
}

echo "credits demo against PostgreSQL 127.0.0.1:$PGPORT (database $PGDATABASE)"
echo "user id: $DEMO_USER"

title "1. signup: credit_init grants the default credits (credits.default_credits)"
sql "SELECT tx_id, balance, created_at FROM credits.credit_init(:'u', NULL, '{\"source\": \"signup webhook\"}');"
echo "   the webhook is retried; credit_init grants nothing twice and returns the current state:"
sql "SELECT tx_id, balance FROM credits.credit_init(:'u');"

title "2. a chat message: credit_deduct 10, action chat_message"
sql "SELECT tx_id, balance FROM credits.credit_deduct(:'u', 10, 'chat_message', '{\"app\": \"chat\", \"tokens\": 1830}');"

title "3. a purchase of 500 credits, with an idempotency key"
sql "SELECT tx_id, balance FROM credits.credit_add(:'u', 500, 'purchase', jsonb_build_object('order', 'ord_' || :'run'), 'purchase-ord-' || :'run');"
echo "   the payment webhook retries with the same key: same tx_id, nothing added:"
sql "SELECT tx_id, balance FROM credits.credit_add(:'u', 500, 'purchase', jsonb_build_object('order', 'ord_' || :'run'), 'purchase-ord-' || :'run');"

title "4. priced actions: credit_charge looks the price up in credits.prices"
echo "   a chat message (10 each) and a complex canvas (75), each with an idempotency key:"
sql "SELECT tx_id, balance FROM credits.credit_charge(:'u', 'chat_message', 1, '{\"app\": \"chat\"}', 'chat-' || :'run');
SELECT tx_id, balance FROM credits.credit_charge(:'u', 'canvas_generation_complex', 1, '{\"app\": \"canvas\"}', 'canvas-' || :'run');"
echo "   the price used is recorded in the ledger row:"
sql "SELECT action, amount, metadata->'price' AS price FROM credits.ledger
      WHERE user_id = :'u' AND action = 'canvas_generation_complex';"

title "5. video: hold the estimate (30 s at 10/s), capture the 21.4 s rendered"
sql "SELECT hold_id, held, available FROM credits.credit_hold(:'u', credits.credit_cost('video_generation', 30),
       'video_generation', '{\"video\": \"v-1\"}', '15 minutes', 'video-' || :'run') \\gset
SELECT :hold_id AS hold_id, :held AS held, :available AS available;
SELECT credits.credit_available(:'u') AS available_while_rendering;
SELECT tx_id, balance FROM credits.credit_capture(:hold_id, credits.credit_cost('video_generation', 21.4),
       '{\"seconds\": 21.4}', 'video-done-' || :'run');
SELECT status, amount AS held, captured FROM credits.holds WHERE id = :hold_id;"

title "6. training: hold 0.2 GPU-hours, capture 0.17 when the job's webhook arrives"
sql "SELECT hold_id FROM credits.credit_hold(:'u', credits.credit_cost('training_job', 0.2),
       'training_job', '{\"job\": \"t-1\"}', '6 hours', 'train-' || :'run') \\gset
SELECT tx_id, balance FROM credits.credit_capture(:hold_id, credits.credit_cost('training_job', 0.17),
       '{\"gpu_hours\": 0.17}', 'train-done-' || :'run');"

title "7. usage this period and over the lifetime: credit_usage"
sql "SELECT balance, available, held, plan, spent_period, spent_lifetime FROM credits.credit_usage(:'u');"

title "8. more than the balance: the error an app turns into HTTP 402"
sql "SELECT set_config('demo.user', :'u', false) \\g /dev/null
DO \$\$
DECLARE
	state text; msg text; detail text; hint text;
BEGIN
	PERFORM credits.credit_deduct(current_setting('demo.user'), 100000, 'training_job');
	RAISE NOTICE 'unexpected: the deduction went through';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
		detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
	RAISE NOTICE E'\n   SQLSTATE %\n   message  %\n   DETAIL   %\n   HINT     %', state, msg, detail, hint;
END
\$\$;" | sed 's/^NOTICE:  *$//; /^$/d'
echo "   the balance is unchanged:"
sql "SELECT credits.credit_balance(:'u') AS balance;"

title "9. history, newest first: credit_history"
sql "SELECT id, amount, balance_after, action, metadata, idempotency_key, created_at
       FROM credits.credit_history(:'u');"
sql "SELECT valid, cached, calculated FROM credits.credit_verify(:'u');"

title "10. what Redis readers see (credits-sync)"
sync_pid=$(head -n1 "$RUN_DIR/credits-sync.pid" 2>/dev/null || true)
if [ -z "${REDIS_PORT:-}" ] || [ -z "$sync_pid" ] || ! kill -0 "$sync_pid" 2>/dev/null; then
  echo "   credits-sync is not running: skipped"
else
  want=$(printf '%s\n' "SELECT credits.credit_balance(:'u');" |
    "$PSQL" -X -q -tA -v u="$DEMO_USER")
  have=""
  for _ in $(seq 1 40); do
    have=$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" --raw GET "balance:$DEMO_USER" || true)
    [ "$have" = "$want" ] && break
    sleep 0.05
  done
  echo "   redis-cli GET \"balance:$DEMO_USER\""
  echo "   ${have:-(nil)}"
  echo "   redis-cli ZREVRANGE \"txs:$DEMO_USER\" 0 2   (newest first)"
  redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" --raw ZREVRANGE "txs:$DEMO_USER" 0 2 | sed 's/^/   /'
  if [ "$have" != "$want" ]; then
    echo "   (Redis has not caught up with PostgreSQL's balance $want within 2 s)"
  fi
fi
echo
