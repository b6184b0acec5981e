#!/usr/bin/env bash
# Installs the package's development dependencies (npm ci, skipped when
# package-lock.json has not changed since the last install), generates the
# tests' Prisma client and builds dist/ (ESM, CJS, .d.ts).  Used by test.sh
# and by examples/nextjs/test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
stamp=$(sha256sum package-lock.json | cut -c1-32)
if [ "$(cat node_modules/.credits-ci 2>/dev/null)" != "$stamp" ]; then
  echo "clients/node: npm ci"
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
  PRISMA_SCHEMA_ENGINE_BINARY=/bin/false npx --no-install prisma generate --schema test/prisma/schema.prisma >/dev/null
  echo "$stamp" >node_modules/.credits-ci
fi
echo "clients/node: build"
node scripts/build.mjs
