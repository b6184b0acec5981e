#!/usr/bin/env bash
# Moving partition 1 to the other instance while the others take writes
# (README, Scale-out: moving a partition).  Needs a running cluster
# (.ci/cluster.sh up; test/cluster/run.sh calls this).
#
#   * writers on partitions 0, 2 and 3 (through the proxy) never fail, and
#     succeed while the move runs;
#   * a writer on partition 1 retries each keyed credit_add until it
#     succeeds (writes to the partition fail while it moves); afterwards
#     each of its keys was applied exactly once;
#   * after the move, partition 1 is on the other instance, its balances
#     are what the writes made them, credit_verify_all() is empty, a hold
#     placed before the move is captured after it, and new hold ids are
#     still in partition 1's range;
#   * then it moves back (so the cluster keeps its layout).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PGBIN=${CREDITS_PGBIN:-/usr/lib/postgresql/15/bin}
CLUSTER_DIR=${CREDITS_CLUSTER_DIR:-$REPO/.run/cluster}
export PATH="$PGBIN:$PATH"
set -a
# shellcheck disable=SC1091
. "$CLUSTER_DIR/env"
set +a
APP=credits_cluster_test_app
RUN=$(date +%s)-$$
P=1
W=$CLUSTER_DIR/move-test.$$
mkdir -p "$W"

fail() { echo "not ok - move: $*"; stop_writers; exit 1; }
pass() { echo "ok - move: $*"; }
q() { psql -X -At -v ON_ERROR_STOP=1 "$@"; }
qa() { q -U "$APP" "$@"; }
qp() { # qp P SQL...: partition P's database, where the placement file says
	local p=$1 i
	i=$(awk -v p="$1" '$1 == p { print $2 }' "$CLUSTER_DIR/placement")
	shift
	q -h 127.0.0.1 -p "$(cat "$CLUSTER_DIR/pg$i.port")" -d "credits_p$p" "$@"
}
now_ms() { date +%s%3N; }

q -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$APP') THEN
	CREATE ROLE $APP LOGIN; END IF; END \$\$" -c "SET client_min_messages = warning" -c "GRANT credits_app TO $APP" >/dev/null

# one user on each partition
for p in 0 1 2 3; do
	U[$p]=$(qa -c "SELECT 'move-$RUN-' || i FROM generate_series(1, 100) i WHERE credits.partition_of('move-$RUN-' || i) = $p LIMIT 1")
	qa -c "SELECT credits.credit_init('${U[$p]}', 1000)" >/dev/null
done
hold_before=$(qa -c "SELECT hold_id FROM credits.credit_hold('${U[$P]}', 100, 'chat_message')")

# writers: partitions 0, 2, 3 deduct 1 in a loop and log every result;
# partition 1 adds 1 with key k<i>, retried until it succeeds
writer() {
	local p=$1 t
	while [ ! -e "$W/stop" ]; do
		t=$(now_ms)
		if qa -c "SELECT 1 FROM credits.credit_deduct('${U[$p]}', 1, 'chat_message')" >/dev/null 2>>"$W/err$p"; then
			echo "ok $t" >>"$W/w$p"
		else
			echo "fail $t" >>"$W/w$p"
		fi
	done
}
keyed_writer() {
	local p=$1 i=0
	while [ ! -e "$W/stop" ]; do
		i=$((i + 1))
		until qa -c "SELECT 1 FROM credits.credit_add('${U[$p]}', 1, 'purchase', '{}', 'k$i')" >/dev/null 2>>"$W/err$p"; do
			echo "retry $(now_ms)" >>"$W/w$p"
			sleep 0.05
		done
		echo "ok $(now_ms) k$i" >>"$W/w$p"
	done
}
pids=()
stop_writers() {
	touch "$W/stop"
	local pid
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	pids=()
}
for p in 0 2 3; do
	writer $p &
	pids+=($!)
done
keyed_writer $P &
pids+=($!)

sleep 2
from=$(awk -v p=$P '$1 == p { print $2 }' "$CLUSTER_DIR/placement")
to=$((1 - from))
t0=$(now_ms)
"$REPO/.ci/cluster.sh" move $P $to || fail ".ci/cluster.sh move $P $to failed"
t1=$(now_ms)
sleep 2
stop_writers
echo "move: partition $P from instance $from to $to took $((t1 - t0)) ms"

for p in 0 2 3; do
	nf=$(grep -c '^fail' "$W/w$p")
	during=$(awk -v a="$t0" -v b="$t1" '$1 == "ok" && $2 >= a && $2 <= b' "$W/w$p" | wc -l)
	[ "$nf" = 0 ] || { head -5 "$W/err$p"; fail "partition $p: $nf writes failed during the move"; }
	[ "$during" -gt 0 ] || fail "partition $p: no write succeeded while the move ran"
	pass "partition $p took $during writes during the move, none failed"
	n=$(grep -c '^ok' "$W/w$p")
	got=$(qa -c "SELECT credits.credit_balance('${U[$p]}')")
	[ "$got" = $((1000 - n)) ] || fail "partition $p: balance $got, expected $((1000 - n))"
done
retries=$(grep -c '^retry' "$W/w$P")
keys=$(grep -c '^ok' "$W/w$P")
pass "partition $P's writer retried $retries times while it moved and completed $keys keyed adds"
[ "$(awk -v b="$t1" '$1 == "ok" && $2 > b' "$W/w$P" | wc -l)" -gt 0 ] || fail "no write to partition $P succeeded after the move"

[ "$(awk -v p=$P '$1 == p { print $2 }' "$CLUSTER_DIR/placement")" = "$to" ] || fail "the placement file does not say instance $to"
[ "$(q -c "SELECT conninfo FROM credits_proxy.placement WHERE partition = $P")" = \
	"dbname=credits_p$P host=127.0.0.1 port=$(cat "$CLUSTER_DIR/pg$to.port")" ] || fail "the proxy does not route partition $P to instance $to"
pass "the proxy routes partition $P to instance $to"
bal=$(qa -c "SELECT credits.credit_balance('${U[$P]}')")
[ "$bal" = $((1000 + keys)) ] || fail "partition $P: balance $bal, expected $((1000 + keys)) (each key once)"
[ "$(qp $P -c "SELECT count(*) FROM credits.ledger WHERE user_id = '${U[$P]}' AND idempotency_key IS NOT NULL")" = "$keys" ] ||
	fail "partition $P: the ledger has another number of keyed rows than $keys"
pass "partition $P's balance is 1000 + $keys: every keyed add applied once"
[ "$(q -U credits_cluster_test_ops -c "SELECT count(*) FROM credits.credit_verify_all()")" = 0 ] || fail "credit_verify_all() is not empty"
[ "$(qp $P -c "SELECT count(*) FROM credits.credit_verify_all()")" = 0 ] || fail "credit_verify_all() on the moved partition is not empty"
pass "credit_verify_all() is empty, on the proxy and on the moved partition"
[ "$(qa -c "SELECT balance FROM credits.credit_capture($hold_before, 60)")" = $((1000 + keys - 60)) ] ||
	fail "the hold placed before the move was not captured after it"
h=$(qa -c "SELECT hold_id FROM credits.credit_hold('${U[$P]}', 1, 'chat_message')")
[ "$(q -c "SELECT credits.hold_partition($h) = $P AND $h > $hold_before")" = t ] || fail "a new hold id $h is not in partition $P's range after $hold_before"
pass "a hold placed before the move is captured after it; new hold ids continue in partition $P's range"
# the retired copy on the source is read-only and renamed; drop it
old=$(q -h 127.0.0.1 -p "$(cat "$CLUSTER_DIR/pg$from.port")" -d postgres -c "SELECT datname FROM pg_database WHERE datname LIKE 'credits_p${P}_moved_%' ORDER BY 1 DESC LIMIT 1")
[ -n "$old" ] || fail "no retired copy credits_p${P}_moved_* on instance $from"
[ "$(q -h 127.0.0.1 -p "$(cat "$CLUSTER_DIR/pg$from.port")" -d "$old" -c "SHOW default_transaction_read_only")" = on ] ||
	fail "the retired copy $old is not read-only"
q -h 127.0.0.1 -p "$(cat "$CLUSTER_DIR/pg$from.port")" -d postgres -c "DROP DATABASE $old" >/dev/null
pass "the retired copy on instance $from was read-only (dropped now)"
# and back (the cluster keeps its 2 + 2 layout; a second move of the same
# partition, to the instance it came from)
bal=$(qa -c "SELECT credits.credit_balance('${U[$P]}')")
"$REPO/.ci/cluster.sh" move $P "$from" >/dev/null || fail "moving partition $P back to instance $from failed"
[ "$(qa -c "SELECT credits.credit_balance('${U[$P]}')")" = "$bal" ] || fail "the balance changed in the move back"
[ "$(qp $P -c "SELECT count(*) FROM credits.credit_verify_all()")" = 0 ] || fail "credit_verify_all() after the move back is not empty"
old=$(q -h 127.0.0.1 -p "$(cat "$CLUSTER_DIR/pg$to.port")" -d postgres -c "SELECT datname FROM pg_database WHERE datname LIKE 'credits_p${P}_moved_%' ORDER BY 1 DESC LIMIT 1")
[ -z "$old" ] || q -h 127.0.0.1 -p "$(cat "$CLUSTER_DIR/pg$to.port")" -d postgres -c "DROP DATABASE $old" >/dev/null
pass "partition $P moved back to instance $from"
rm -rf "$W"
