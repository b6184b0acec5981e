#!/usr/bin/env bash
# Tests of the Node example app against the running dev stack (make dev-up).
#
#   examples/node/test.sh [test files...]
#
# Installs what it needs (npm ci, Debian's chromium), generates the Prisma
# client, starts the app on a free port, runs `node --test`, stops the app
# by pid, and exits non-zero on any failure.  Reads the stack's environment
# from ${CREDITS_RUN_DIR:-<repo>/.run}/env.  Artefacts (app log, screenshot)
# go to ${CREDITS_TEST_OUTPUT:-$RUN_DIR/test-output}/node.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
RUN_DIR=${CREDITS_RUN_DIR:-$REPO/.run}
OUT=${CREDITS_TEST_OUTPUT:-$RUN_DIR/test-output}/node

log() { echo "examples/node: $*"; }
die() { echo "examples/node: ERROR: $*" >&2; exit 1; }

[ -s "$RUN_DIR/env" ] || die "no $RUN_DIR/env: start the stack first (make dev-up)"
set -a
# shellcheck disable=SC1091
. "$RUN_DIR/env"
set +a

command -v node >/dev/null || die "node is not installed"
[ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ] || die "Node.js 20 or later is needed"

if [ ! -x /usr/bin/chromium ]; then
  log "installing Debian's chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi

cd "$HERE"
log "npm ci"
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
# Prisma 7's CLI would download a schema engine; generate does not need it.
PRISMA_SCHEMA_ENGINE_BINARY=/bin/false npx --no-install prisma generate >/dev/null

mkdir -p "$OUT"
PORT_FILE=$OUT/app.port
rm -f "$PORT_FILE"
PORT=0 PORT_FILE=$PORT_FILE node src/server.mjs >"$OUT/app.log" 2>&1 &
APP_PID=$!
stop_app() {
  if kill -0 "$APP_PID" 2>/dev/null; then
    kill -TERM "$APP_PID" 2>/dev/null || true
    wait "$APP_PID" 2>/dev/null || true
  fi
}
trap stop_app EXIT

for _ in $(seq 1 100); do
  [ -s "$PORT_FILE" ] && break
  kill -0 "$APP_PID" 2>/dev/null || { cat "$OUT/app.log" >&2; die "the app exited at start"; }
  sleep 0.1
done
[ -s "$PORT_FILE" ] || { cat "$OUT/app.log" >&2; die "the app did not start listening"; }
export APP_URL="http://127.0.0.1:$(cat "$PORT_FILE")"
export TEST_OUTPUT=$OUT
log "app (pid $APP_PID) on $APP_URL"

if [ $# -eq 0 ]; then
  set -- test/*.test.mjs
fi
# One file at a time: the machine is small and the browser test is heavy.
status=0
node --test --test-concurrency=1 "$@" || status=$?
if [ "$status" -ne 0 ]; then
  log "tests failed; last lines of the app log:"
  tail -n 30 "$OUT/app.log" >&2 || true
fi
exit "$status"
