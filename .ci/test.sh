#!/usr/bin/env bash
# Runs every test against the local stack (make test runs `make dev-up`
# first, then this).
#
#   1. pg_regress (test/sql) and isolation specs (test/specs): make installcheck
#   2. pgTAP (test/pgtap/*.sql) with pg_prove, in a fresh database credits_tap
#   3. every executable test/stress/*.sh and test/integration/*.sh
#   4. test/sync/run.sh, when present (credits-sync integration suite)
#   5. clients/node/test.sh, when present (@credits/client, the Node client)
#   6. examples/nextjs/test.sh, when present (the Next.js example app)
#   7. test/cluster/run.sh: the scale-out cluster (PL/Proxy, 4 partitions on
#      2 instances); it starts the cluster and stops it again afterwards
#
# Each part reports PASS or FAIL and a failing part never skips the others.
# pg_regress tests, isolation specs, pgTAP files and stress scripts count one
# each; the sync and Node suites count one each.  The last line is
# `N passed, N failed`, and the exit status is non-zero if anything failed.
#
# CREDITS_TEST_ONLY="regress isolation pgtap stress integration sync client nextjs cluster"
# picks parts ("node" means both client and nextjs).
# CREDITS_TEST_TIMEOUT (seconds, default 1200) bounds each part (CI has 90
# minutes in all).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
RUN_DIR=${CREDITS_RUN_DIR:-$REPO/.run}
PGBIN=${CREDITS_PGBIN:-/usr/lib/postgresql/15/bin}
PARTS=${CREDITS_TEST_ONLY:-regress isolation pgtap stress integration sync client nextjs cluster}
PART_TIMEOUT=${CREDITS_TEST_TIMEOUT:-1200}
LOG_DIR=$RUN_DIR/test-logs

if [ ! -s "$RUN_DIR/env" ]; then
  echo "test: no $RUN_DIR/env: start the stack first (make dev-up)" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
set -a
# shellcheck disable=SC1091
. "$RUN_DIR/env"
set +a
mkdir -p "$LOG_DIR"

passed=0
failed=0
summary=()

banner() { printf '\n==== %s ====\n' "$*"; }

# record NAME NPASS NFAIL: adds to the totals and the summary table.
record() {
  local name=$1 np=$2 nf=$3 verdict=PASS
  passed=$((passed + np))
  failed=$((failed + nf))
  [ "$nf" -eq 0 ] || verdict=FAIL
  summary+=("$(printf '%-4s %-34s %3d passed, %3d failed' "$verdict" "$name" "$np" "$nf")")
  echo "---- $verdict: $name ($np passed, $nf failed)"
}

wanted() { [[ " $PARTS " == *" $1 "* ]]; }

# run_logged LOG CMD...: runs CMD within the part timeout, output to the
# terminal and to LOG; returns CMD's status.
run_logged() {
  local logf=$1
  shift
  timeout -k 30 "$PART_TIMEOUT" "$@" 2>&1 | tee "$logf"
  return "${PIPESTATUS[0]}"
}

psql_db() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

# --- 0. the stack is there ------------------------------------------------
banner "stack"
if ! psql_db -d "$PGDATABASE" -tAc "SELECT extversion FROM pg_extension WHERE extname = 'credits'" | grep -q .; then
  echo "test: database $PGDATABASE on port $PGPORT has no extension credits (see make dev-up's output)"
  record "stack: extension credits" 0 1
fi
"$REPO/.ci/stack.sh" status

# --- 1. pg_regress and isolation ------------------------------------------
# Each run separately (an override empties the other list), so a failure in
# one does not skip the other.

# pg_regress_part NAME LOGNAME DIFFS MAKEVARS...
pg_regress_part() {
  local name=$1 logname=$2 diffs=$3 rc np nf total
  shift 3
  banner "$name"
  rm -f "$diffs"
  run_logged "$LOG_DIR/$logname.log" make --no-print-directory installcheck "$@"
  rc=$?
  # "All 8 tests passed." / "2 of 8 tests failed." (and "..., 1 of these
  # failures ignored.")
  if total=$(grep -oE 'All [0-9]+ tests passed' "$LOG_DIR/$logname.log" | grep -oE '[0-9]+'); then
    np=$total nf=0
  elif grep -qE '[0-9]+ of [0-9]+ tests failed' "$LOG_DIR/$logname.log"; then
    nf=$(grep -oE '[0-9]+ of [0-9]+ tests failed' "$LOG_DIR/$logname.log" | head -n1 | awk '{print $1}')
    total=$(grep -oE '[0-9]+ of [0-9]+ tests failed' "$LOG_DIR/$logname.log" | head -n1 | awk '{print $3}')
    np=$((total - nf))
  else
    np=0 nf=1
  fi
  if [ "$rc" -ne 0 ] && [ "$nf" -eq 0 ]; then
    nf=1
  fi
  if [ -s "$diffs" ]; then
    echo "---- $diffs:"
    cat "$diffs"
  fi
  record "$name" "$np" "$nf"
}

if wanted regress; then
  if ls test/sql/*.sql >/dev/null 2>&1; then
    pg_regress_part "pg_regress (test/sql)" regress regression.diffs ISOLATION=
  else
    echo "test: no test/sql/*.sql"
  fi
fi
if wanted isolation; then
  if ls test/specs/*.spec >/dev/null 2>&1; then
    pg_regress_part "isolation (test/specs)" isolation output_iso/regression.diffs REGRESS=
  else
    echo "test: no test/specs/*.spec"
  fi
fi

# --- 2. pgTAP -------------------------------------------------------------
if wanted pgtap; then
  banner "pgTAP (test/pgtap)"
  tapdb=credits_tap
  files=(test/pgtap/*.sql)
  if [ ! -e "${files[0]}" ]; then
    echo "test: no test/pgtap/*.sql"
    record "pgTAP" 0 1
  elif ! { psql_db -d postgres -c "DROP DATABASE IF EXISTS $tapdb WITH (FORCE)" &&
    psql_db -d postgres -c "CREATE DATABASE $tapdb" &&
    psql_db -d "$tapdb" -c "CREATE EXTENSION credits" -c "CREATE EXTENSION pgtap"; }; then
    echo "test: could not create database $tapdb with extensions credits and pgtap"
    record "pgTAP" 0 "${#files[@]}"
  else
    np=0 nf=0
    for f in "${files[@]}"; do
      if run_logged "$LOG_DIR/pgtap-$(basename "$f" .sql).log" \
        pg_prove --psql-bin "$PGBIN/psql" -d "$tapdb" --failures "$f"; then
        np=$((np + 1))
      else
        nf=$((nf + 1))
        echo "---- FAIL: $f"
      fi
    done
    record "pgTAP (${#files[@]} files)" "$np" "$nf"
    psql_db -d postgres -c "DROP DATABASE IF EXISTS $tapdb WITH (FORCE)" || true
  fi
fi

# --- 3. stress and integration scripts ----------------------------------------
# scripts KIND: runs every test/KIND/*.sh, one count each.
scripts() {
  local kind=$1 f
  for f in test/"$kind"/*.sh; do
    [ -e "$f" ] || continue
    if [ ! -x "$f" ]; then
      echo "test: $f is not executable: counted as failed"
      record "$kind: $(basename "$f")" 0 1
      continue
    fi
    banner "$kind: $f"
    if run_logged "$LOG_DIR/$kind-$(basename "$f" .sh).log" "$f"; then
      record "$kind: $(basename "$f")" 1 0
    else
      record "$kind: $(basename "$f")" 0 1
    fi
  done
}
wanted stress && scripts stress
wanted integration && scripts integration

# --- 4 to 6. suites owned by the sync and Node parts ------------------------
# suite NAME SCRIPT: runs SCRIPT (with bash if it is not executable).
suite() {
  local name=$1 script=$2
  [ -e "$script" ] || { echo "test: no $script: $name skipped"; return 0; }
  banner "$name: $script"
  if [ -x "$script" ]; then
    run_logged "$LOG_DIR/$name.log" "$script"
  else
    run_logged "$LOG_DIR/$name.log" bash "$script"
  fi
  if [ $? -eq 0 ]; then
    record "$name ($script)" 1 0
  else
    record "$name ($script)" 0 1
  fi
}

wanted sync && suite sync test/sync/run.sh
{ wanted client || wanted node; } && suite client clients/node/test.sh
{ wanted nextjs || wanted node; } && suite nextjs examples/nextjs/test.sh
wanted cluster && suite cluster test/cluster/run.sh

# --- summary ------------------------------------------------------------------
banner "summary"
for line in "${summary[@]}"; do
  echo "$line"
done
echo "logs in $LOG_DIR"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
