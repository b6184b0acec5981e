#!/usr/bin/env bash
# Tests of @credits/client against the running dev stack (make dev-up).
#
#   clients/node/test.sh [test files...]
#
# Installs what it needs (npm ci), generates the tests' Prisma client, builds
# the package (ESM, CJS, .d.ts), packs it and installs the tarball in a
# scratch project, type-checks the public API (tsc --noEmit on
# test/types/*.ts, whose @ts-expect-error lines must be rejected), and runs
# `node --test` on test/*.test.mjs.  Reads the stack's environment from
# ${CREDITS_RUN_DIR:-<repo>/.run}/env.  Exits non-zero on any failure.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
RUN_DIR=${CREDITS_RUN_DIR:-$REPO/.run}
OUT=${CREDITS_TEST_OUTPUT:-$RUN_DIR/test-output}/client

log() { echo "clients/node: $*"; }
die() { echo "clients/node: ERROR: $*" >&2; exit 1; }

[ -s "$RUN_DIR/env" ] || die "no $RUN_DIR/env: start the stack first (make dev-up)"
set -a
# shellcheck disable=SC1091
. "$RUN_DIR/env"
set +a

command -v node >/dev/null || die "node is not installed"
[ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ] || die "Node.js 20 or later is needed"

cd "$HERE"
./build.sh

mkdir -p "$OUT"
export TEST_OUTPUT=$OUT

if [ $# -eq 0 ]; then
  set -- test/*.test.mjs
fi
status=0
node --test --test-concurrency=1 "$@" || status=$?
exit "$status"
