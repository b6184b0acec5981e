# Shared by the stress scripts (sourced, not run: test.sh runs only *.sh).
#
# The caller sets DB, USER_ID and START, then calls stress_setup; check,
# q, stress_wait, check_ledger_chain and stress_finish follow.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RUN_DIR=${CREDITS_RUN_DIR:-$REPO/.run}
# shellcheck disable=SC1091
. "$RUN_DIR/env"
export PGHOST PGPORT PGUSER
PSQL=${CREDITS_PGBIN:-/usr/lib/postgresql/15/bin}/psql
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

fails=0

# check WHAT HAVE WANT: one assertion, counted in $fails.
check() {
  local what=$1 have=$2 want=$3
  if [ "$have" = "$want" ]; then
    echo "ok: $what ($have)"
  else
    echo "not ok: $what: have '$have', want '$want'"
    fails=$((fails + 1))
  fi
}

# q SQL: runs SQL (from stdin, so that :'u' is interpolated) in $DB and
# prints the unaligned result.
q() { printf '%s\n' "$1" | "$PSQL" -X -q -v ON_ERROR_STOP=1 -d "$DB" -tA -v u="$USER_ID"; }

# stress_setup: a fresh $DB with the extension and $USER_ID opened with
# $START credits; sets start_at, an instant 2 s ahead that every client
# waits for, so that they are released together.
stress_setup() {
  "$PSQL" -X -q -v ON_ERROR_STOP=1 -d postgres -c "SET client_min_messages = warning" \
    -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
  q "SET client_min_messages = warning; CREATE EXTENSION credits"
  q "SELECT balance FROM credits.credit_init(:'u', $START)" >/dev/null
  start_at=$(q "SELECT clock_timestamp() + interval '2 seconds'")
}

# stress_wait PID...: waits for every client; sets client_failed to the
# number that exited non-zero.
stress_wait() {
  local pid
  client_failed=0
  for pid in "$@"; do
    wait "$pid" || client_failed=$((client_failed + 1))
  done
}

# check_ledger_chain: in id order every row's balance_after is the previous
# one plus its amount (no lost update), and the account is consistent.
check_ledger_chain() {
  check "rows whose balance_after does not follow the previous row" "$(q "
    SELECT count(*) FROM (
      SELECT balance_after, lag(balance_after) OVER (ORDER BY id) AS prev, amount
        FROM credits.ledger WHERE user_id = :'u') s
     WHERE prev IS NOT NULL AND balance_after <> prev + amount")" 0
  check "credit_verify_all() rows" "$(q "SELECT count(*) FROM credits.credit_verify_all()")" 0
}

# stress_finish NAME SUMMARY: drops $DB, prints PASS or FAIL; returns 0 on
# PASS.
stress_finish() {
  "$PSQL" -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || true
  if [ "$fails" -eq 0 ]; then
    echo "PASS: $1 ($2)"
    return 0
  fi
  echo "FAIL: $1 ($fails checks failed)"
  return 1
}
