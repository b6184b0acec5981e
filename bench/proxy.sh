#!/usr/bin/env bash
# Deductions per second through the PL/Proxy proxy against direct calls to
# one partition-like database, alternating in one run (README, Scale-out).
# Needs the cluster (.ci/cluster.sh up).  Prints each run and the median
# ratio proxy/direct.
#
#   bench/proxy.sh [ROUNDS] [SECONDS] [CLIENTS]
#
# proxy:  credits.credit_deduct on the proxy database, 4,000 users spread
#         over the 4 partitions (2 instances on this machine)
# raw:    the same through credits_remote.credit_deduct, the PL/Proxy
#         function without the wrapper that re-raises errors unprefixed
#         (the wrapper's cost)
# direct: credits.credit_deduct on database credits_bench (the extension,
#         1,000 users) on instance 0, as an app connected to one partition
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGBIN=${CREDITS_PGBIN:-/usr/lib/postgresql/15/bin}
CLUSTER_DIR=${CREDITS_CLUSTER_DIR:-$REPO/.run/cluster}
ROUNDS=${1:-3}
SECS=${2:-20}
CLIENTS=${3:-8}
set -a
# shellcheck disable=SC1091
. "$CLUSTER_DIR/env"
set +a
q() { "$PGBIN/psql" -X -At -v ON_ERROR_STOP=1 "$@"; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

q -c "SELECT count(*) FROM generate_series(1, 4000) i, credits.credit_add('bench-' || i, 1000000000, 'purchase')" >/dev/null
# raw: the superuser running pgbench calls the PL/Proxy function directly,
# which looks up a user mapping for it (for this run only)
q -c "CREATE USER MAPPING IF NOT EXISTS FOR CURRENT_USER SERVER credits OPTIONS (user 'credits_part_app')" >/dev/null
trap 'q -c "DROP USER MAPPING IF EXISTS FOR CURRENT_USER SERVER credits" >/dev/null 2>&1 || true; rm -rf "$W"' EXIT
q -d postgres -c "DROP DATABASE IF EXISTS credits_bench" -c "CREATE DATABASE credits_bench" >/dev/null
q -d credits_bench -c "CREATE EXTENSION credits" \
	-c "SELECT count(*) FROM generate_series(1, 1000) i, credits.credit_add('bench-' || i, 1000000000, 'purchase')" >/dev/null
cat >"$W/proxy.sql" <<'SQL'
\set i random(1, 4000)
SELECT balance FROM credits.credit_deduct('bench-' || :i, 1, 'chat_message');
SQL
cat >"$W/raw.sql" <<'SQL'
\set i random(1, 4000)
SELECT balance FROM credits_remote.credit_deduct('bench-' || :i, 1, 'chat_message');
SQL
cat >"$W/direct.sql" <<'SQL'
\set i random(1, 1000)
SELECT balance FROM credits.credit_deduct('bench-' || :i, 1, 'chat_message');
SQL
run() { # run NAME DB
	"$PGBIN/pgbench" -n -M prepared -c "$CLIENTS" -j 2 -T "$SECS" -f "$W/$1.sql" "$2" 2>&1 |
		sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | grep . || { echo "bench/proxy.sh: pgbench $1 failed" >&2; exit 1; }
}
: >"$W/ratios"
: >"$W/raw_ratios"
for r in $(seq 1 "$ROUNDS"); do
	p=$(run proxy "$PGDATABASE")
	w=$(run raw "$PGDATABASE")
	d=$(run direct credits_bench)
	echo "round $r: proxy $p/s, raw PL/Proxy $w/s, direct $d/s; proxy/direct $(echo "scale=3; $p / $d" | bc), raw/direct $(echo "scale=3; $w / $d" | bc)"
	echo "scale=3; $p / $d" | bc >>"$W/ratios"
	echo "scale=3; $w / $d" | bc >>"$W/raw_ratios"
done
median() { sort -n "$1" | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
echo "median ratio proxy/direct: $(median "$W/ratios"), raw PL/Proxy/direct: $(median "$W/raw_ratios")"
q -d postgres -c "DROP DATABASE credits_bench" >/dev/null
