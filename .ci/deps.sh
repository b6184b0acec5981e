#!/usr/bin/env bash
# Installs the Debian packages the project needs to build, run and test.
#
# Idempotent: when everything is already installed it only checks (no
# network).  Otherwise it runs `apt-get update` once and installs the
# missing packages.  Meant for a fresh Debian 12 machine, as root.
#
# To add a package, append it to CREDITS_PACKAGES below (one line each, with
# a word on who needs it).  Extra packages can also be passed through the
# environment: CREDITS_EXTRA_PACKAGES="chromium chromium-driver" .ci/deps.sh
set -euo pipefail

CREDITS_PACKAGES=(
  # the extension: build against and run on PostgreSQL 15
  postgresql-15
  postgresql-client-15            # psql, pgbench's client side, pg_isolation_regress
  postgresql-server-dev-15        # pg_config, PGXS, server headers
  libssl-dev                      # OpenSSL headers: src/chain.c's SHA-256
  postgresql-15-pgtap             # pgTAP tests
  postgresql-15-plproxy           # the scale-out proxy (.ci/cluster.sh, test/cluster)
  libtap-parser-sourcehandler-pgtap-perl   # pg_prove
  # credits-sync: libpq + hiredis
  libpq-dev
  libhiredis-dev
  redis-server
  redis-tools                     # redis-cli (demo, sync tests)
  # toolchain and test tools
  build-essential
  pkg-config
  valgrind
  python3                         # test/model: the reference model and fuzzer, the bank test
  python3-psycopg2
  util-linux                      # runuser (run PostgreSQL as user postgres)
  procps                          # ps, used by the stack's status report
  ca-certificates
)

read -r -a extra <<<"${CREDITS_EXTRA_PACKAGES:-}"
packages=("${CREDITS_PACKAGES[@]}" "${extra[@]}")

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  if [ "$status" != "installed" ]; then
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "deps: all ${#packages[@]} packages installed"
  exit 0
fi

echo "deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: must run as root to install packages (or install them yourself): ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# Installing postgresql-15 may create and start Debian's own cluster on port
# 5432.  The project never uses it and never stops it: the local stack
# (.ci/stack.sh) runs its own server on its own port.
apt-get install -y -q --no-install-recommends "${missing[@]}"

still=()
for pkg in "${missing[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "installed" ] || still+=("$pkg")
done
if [ "${#still[@]}" -ne 0 ]; then
  echo "deps: still missing after apt-get install: ${still[*]}" >&2
  exit 1
fi
echo "deps: done"
