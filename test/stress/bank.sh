#!/usr/bin/env bash
# The concurrent "bank" test (test/stress/bank.py): many sessions move
# credit at once; afterwards the sums, the balance_after chains, the
# idempotency keys and the available balances must all be right.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RUN_DIR=${CREDITS_RUN_DIR:-$REPO/.run}
set -a
# shellcheck disable=SC1091
. "$RUN_DIR/env"
set +a
exec /usr/bin/python3 "$REPO/test/stress/bank.py" --sessions "${BANK_SESSIONS:-16}" --ops "${BANK_OPS:-250}"
