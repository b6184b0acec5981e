#!/usr/bin/env bash
# Tests of the Next.js example against the running dev stack (make dev-up).
#
#   examples/nextjs/test.sh [test files...]
#
# Builds @credits/client (clients/node), installs this app (npm ci, which
# installs the client as a packed copy, see .npmrc), generates the Prisma
# client, runs `next build` offline with telemetry off, starts the built app
# on a free port as a login role granted credits_app and credits_reader,
# runs `node --test` (the routes over HTTP, the page in Debian's headless
# chromium through playwright-core), and stops the app by pid.  Screenshots
# and the app log go to ${CREDITS_TEST_OUTPUT:-$RUN_DIR/test-output}/nextjs.
# npm ci and next build are skipped when their inputs did not change since
# the last run (stamps in node_modules/.credits-ci and .next/credits-build).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
RUN_DIR=${CREDITS_RUN_DIR:-$REPO/.run}
OUT=${CREDITS_TEST_OUTPUT:-$RUN_DIR/test-output}/nextjs
PGBIN=${CREDITS_PGBIN:-/usr/lib/postgresql/15/bin}
APP_ROLE=credits_nextjs_app
export NEXT_TELEMETRY_DISABLED=1

log() { echo "examples/nextjs: $*"; }
die() { echo "examples/nextjs: ERROR: $*" >&2; exit 1; }

[ -s "$RUN_DIR/env" ] || die "no $RUN_DIR/env: start the stack first (make dev-up)"
set -a
# shellcheck disable=SC1091
. "$RUN_DIR/env"
set +a

command -v node >/dev/null || die "node is not installed"
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=9)?0:1)' ||
  die "Node.js 20.9 or later is needed"

if [ ! -x /usr/bin/chromium ]; then
  log "installing Debian's chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi

# digest FILES...: one hash of the files' contents.
digest() { cat "$@" | sha256sum | cut -c1-32; }

log "building @credits/client"
"$REPO/clients/node/build.sh"

cd "$HERE"
# npm ci again only when the lockfile or the client's build changed (the
# client is installed as a packed copy of clients/node).
stamp=$(digest package-lock.json $(find "$REPO/clients/node/dist" -type f | sort))
if [ "$(cat node_modules/.credits-ci 2>/dev/null)" != "$stamp" ]; then
  log "npm ci"
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
  PRISMA_SCHEMA_ENGINE_BINARY=/bin/false npx --no-install prisma generate >/dev/null
  echo "$stamp" >node_modules/.credits-ci
fi
# next build again only when a source changed.
build=$(digest <(echo "$stamp") package.json next.config.mjs tsconfig.json $(find app components lib prisma -type f | sort))
if [ "$(cat .next/credits-build 2>/dev/null)" != "$build" ]; then
  log "next build"
  node node_modules/next/dist/bin/next build
  echo "$build" >.next/credits-build
fi

# The app's login role: spends (credits_app) and reads the per-day view
# (credits_reader), nothing else.
"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -d "$PGDATABASE" <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$APP_ROLE') THEN
    CREATE ROLE $APP_ROLE LOGIN;
  END IF;
END \$\$;
GRANT credits_app, credits_reader TO $APP_ROLE;
SQL

mkdir -p "$OUT"
PORT=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
PGUSER=$APP_ROLE node node_modules/next/dist/bin/next start -H 127.0.0.1 -p "$PORT" >"$OUT/app.log" 2>&1 &
APP_PID=$!
stop_app() {
  if kill -0 "$APP_PID" 2>/dev/null; then
    kill -TERM "$APP_PID" 2>/dev/null || true
    wait "$APP_PID" 2>/dev/null || true
  fi
}
trap stop_app EXIT

export APP_URL="http://127.0.0.1:$PORT"
for _ in $(seq 1 150); do
  curl -s -o /dev/null "$APP_URL/api/credits/balance" && break
  kill -0 "$APP_PID" 2>/dev/null || { cat "$OUT/app.log" >&2; die "the app exited at start"; }
  sleep 0.2
done
curl -s -o /dev/null "$APP_URL/api/credits/balance" || { cat "$OUT/app.log" >&2; die "the app did not start listening"; }
export TEST_OUTPUT=$OUT
log "app (pid $APP_PID) on $APP_URL"

if [ $# -eq 0 ]; then
  set -- test/*.test.mjs
fi
status=0
node --test --test-concurrency=1 "$@" || status=$?
if [ "$status" -ne 0 ]; then
  log "tests failed; last lines of the app log:"
  tail -n 30 "$OUT/app.log" >&2 || true
fi
exit "$status"
