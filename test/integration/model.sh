#!/usr/bin/env bash
# The reference model (test/model/model.py) against the extension: a few
# seeds of random operations, every result and SQLSTATE compared
# (test/model/fuzz.py; `make fuzz SEEDS=... OPS=...` runs long).  Then the
# same with a deliberately broken model, which must disagree: the
# comparison is not vacuous (one process runs the three mutants: fee: an off-by-one in priced charges;
# drawdown: grants drawn latest-expiring first; hold_expiry: holds expire
# an hour late).
#
# Needs PGHOST/PGPORT/PGUSER of a superuser (the stack's .run/env) and
# Debian's python3 with python3-psycopg2 (.ci/deps.sh installs them).
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RUN_DIR=${CREDITS_RUN_DIR:-$REPO/.run}
set -a
# shellcheck disable=SC1091
. "$RUN_DIR/env"
set +a
PY=/usr/bin/python3
FUZZ=$REPO/test/model/fuzz.py
fails=0

if ! "$PY" "$FUZZ" --seeds "${MODEL_SEEDS:-1,2,3}" --ops "${MODEL_OPS:-1000}" --shrink-seconds 60; then
  echo "not ok: the extension disagrees with the model (reproduction above)"
  fails=$((fails + 1))
else
  echo "ok: the extension agrees with the model"
fi

mutants=fee,drawdown,hold_expiry
if "$PY" "$FUZZ" --seeds 1 --ops 600 --mutate "$mutants" >"$RUN_DIR/model-mutant.log" 2>&1; then
  echo "ok: every broken model ($mutants) disagrees with the extension"
else
  echo "not ok: a broken model went unnoticed:"
  grep "mutant" "$RUN_DIR/model-mutant.log"
  fails=$((fails + 1))
fi

if [ "$fails" -eq 0 ]; then
  echo "PASS: model"
  exit 0
fi
echo "FAIL: model ($fails checks failed)"
exit 1
