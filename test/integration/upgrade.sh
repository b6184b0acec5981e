#!/usr/bin/env bash
# ALTER EXTENSION credits UPDATE from 1.0 to 1.1, with data.
#
#   1. In a scratch database, CREATE EXTENSION credits VERSION '1.0' and use
#      every 1.0 feature through the 1.0 functions, which run the frozen 1.0
#      code of the installed (1.1) library: accounts (default and explicit
#      signup grants), deductions and purchases with and without keys,
#      holds (captured, released, expired, open, reserving expiring
#      grants), grants (non-expiring, expiring, expired), charges,
#      subscriptions and renewals, a rebuild.
#   2. ALTER EXTENSION credits UPDATE.
#   3. Then: credit_verify_all() is empty; every balance and available
#      balance is unchanged; the ledger's 1.0 columns are unchanged; keys
#      used under 1.0 still return their original result; every function
#      of 1.1 works (each is called; a function this script does not call
#      fails the test); and the upgraded schema equals a fresh 1.1 install
#      in another scratch database: pg_dump --schema-only --binary-upgrade
#      of both (which dumps each member object with its owner, grants,
#      comment and SET clause), with only the OIDs and the order of grants
#      normalised, plus the rows the extension's own scripts put in its
#      configuration tables (prices and plans valid from -infinity).
#
# Needs PGHOST/PGPORT/PGUSER of a superuser on a server with the extension
# installed (the stack's env).  On failure, prints what differs.
set -euo pipefail
BIN=${CREDITS_PGBIN:-/usr/lib/postgresql/15/bin}
OLD=credits_upgrade_old
NEW=credits_upgrade_new
TMP=$(mktemp -d)
cleanup() {
	[ -n "${KEEP_TMP:-}" ] || rm -rf "$TMP"
	psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $OLD WITH (FORCE)" \
		-c "DROP DATABASE IF EXISTS $NEW WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

fail() { echo "FAIL: upgrade: $*"; exit 1; }
q() { psql -X -At -v ON_ERROR_STOP=1 "$@"; }

# The last section (privileges, ownership, search_path) is the same text in
# the install and the upgrade script.
REPO=$(cd "$(dirname "$0")/../.." && pwd)
last_section() { sed -n '/^-- Section: privileges, ownership and search_path/,$p' "$1"; }
if ! diff -u <(last_section "$REPO/sql/credits.sql") <(last_section "$REPO/sql/credits--1.0--1.1.sql"); then
	fail "the last section of sql/credits--1.0--1.1.sql differs from sql/credits.sql's (diff above): copy it"
fi
[ -n "$(last_section "$REPO/sql/credits.sql")" ] || fail "sql/credits.sql has no section 'privileges, ownership and search_path'"

q -d postgres -c "DROP DATABASE IF EXISTS $OLD WITH (FORCE)" -c "DROP DATABASE IF EXISTS $NEW WITH (FORCE)" >/dev/null
q -d postgres -c "CREATE DATABASE $OLD" -c "CREATE DATABASE $NEW" >/dev/null

# --- 1. a 1.0 database with data from every feature ----------------------
# Each statement is its own transaction (psql autocommit), so the ones that
# decide by now() see time pass.
q -d "$OLD" >/dev/null <<'SQL'
CREATE EXTENSION credits VERSION '1.0';
SELECT credits.credit_init('up-a');
SELECT credits.credit_init('up-b', 500, '{"plan": "x"}');
SELECT credits.credit_init('up-zero', 0);
SELECT credits.credit_deduct('up-a', 10, 'chat_message', '{"tokens": 42}');
SELECT credits.credit_deduct('up-a', 5, 'chat_message', '{}', 'up-k1');
SELECT credits.credit_add('up-b', 25, 'purchase', '{}', 'up-k2');
SELECT credits.credit_add('up-c', 7, 'purchase');
SELECT credits.credit_add('up-ü "quoted"', 3, 'bonus');
-- holds: captured (keyed), released, open, expired
SELECT credits.credit_hold('up-b', 100, 'video_generation', '{"job": 1}', '1 hour', 'up-h1');
SELECT credits.credit_capture((SELECT id FROM credits.holds WHERE idempotency_key = 'up-h1'), 60, '{"s": 6}', 'up-cap1');
SELECT credits.credit_release(hold_id) FROM credits.credit_hold('up-b', 20, 'chat_message');
SELECT credits.credit_hold('up-b', 30, 'training_job', '{}', '1 day', 'up-h3');
SELECT credits.credit_hold('up-a', 10, 'chat_message', '{}', '1 second');
-- grants: non-expiring, expiring (keyed), expiring soon; a hold and a
-- deduction that draw on them
SELECT credits.credit_grant('up-g', 50, 'promo');
SELECT credits.credit_grant('up-g', 40, 'promo', now() + interval '1 day', '{}', 'up-gk');
SELECT credits.credit_grant('up-g', 30, 'trial', now() + interval '1 second');
SELECT credits.credit_hold('up-g', 20, 'video_generation', '{}', '1 hour', 'up-gh');
SELECT credits.credit_deduct('up-g', 15, 'chat_message');
-- metered charges
SELECT credits.credit_charge('up-b', 'llm_tokens', 4001, '{}', 'up-ch1');
SELECT credits.credit_charge('up-b', 'chat_message', 2);
-- plans: subscriptions, a renewal a month on
SELECT credits.credit_subscribe('up-s', 'pro');
SELECT credits.credit_subscribe('up-e', 'enterprise', now() + interval '3 months');
SELECT credits.credit_subscribe('up-f', 'free');
SELECT credits.credit_renew(now() + interval '1 month 1 hour');
-- a damaged cache, rebuilt (an account_events row)
UPDATE credits.accounts SET balance = 1 WHERE user_id = 'up-c';
SELECT credits.credit_rebuild('up-c');
-- expiry: the 1-second hold and grant
SELECT pg_sleep(1.5);
SELECT credits.credit_expire_holds();
SELECT credits.credit_expire_grants();
SQL

[ "$(q -d "$OLD" -c "SELECT extversion FROM pg_extension WHERE extname = 'credits'")" = 1.0 ] ||
	fail "the scratch database is not at 1.0"
# every kind of row is there
kinds=$(q -d "$OLD" -c "SELECT string_agg(DISTINCT action, ',' ORDER BY action) FROM credits.ledger")
for k in init chat_message purchase bonus video_generation grant expire llm_tokens rebuild; do
	[ "$k" = rebuild ] && continue
	[[ ",$kinds," == *",$k,"* ]] || fail "1.0 data has no ledger row of action $k (has $kinds)"
done
[ "$(q -d "$OLD" -c "SELECT string_agg(DISTINCT status, ',' ORDER BY status) FROM credits.holds")" = captured,expired,open,released ] ||
	fail "1.0 data lacks a hold state"
[ "$(q -d "$OLD" -c "SELECT count(*) FROM credits.allowances")" -ge 5 ] || fail "1.0 data has too few allowances"
[ "$(q -d "$OLD" -c "SELECT count(*) FROM credits.grants WHERE expired > 0")" -ge 1 ] || fail "1.0 data has no expired grant"
[ "$(q -d "$OLD" -c "SELECT count(*) FROM credits.grants WHERE reserved > 0")" -ge 1 ] || fail "1.0 data has no reserved grant"
[ "$(q -d "$OLD" -c "SELECT count(*) FROM credits.account_events WHERE event = 'rebuild'")" = 1 ] || fail "1.0 data has no rebuild"
[ "$(q -d "$OLD" -c "SELECT count(*) FROM credits.credit_verify_all()")" = 0 ] || fail "1.0 data is inconsistent before the upgrade"

# balances, available balances and the ledger's 1.0 columns
snapshot() {
	q -d "$OLD" -c "SELECT user_id, credits.credit_balance(user_id), credits.credit_available(user_id) FROM credits.accounts ORDER BY user_id" \
		-c "SELECT id, user_id, amount, balance_after, action, metadata, idempotency_key, created_at FROM credits.ledger ORDER BY id" \
		-c "SELECT id, user_id, amount, status, expires_at, grant_ids, grant_amounts, captured FROM credits.holds ORDER BY id" \
		-c "SELECT id, user_id, amount, expires_at, remaining, reserved, expired FROM credits.grants ORDER BY id" \
		-c "SELECT user_id, plan, period_start, period_end, allowance, carried FROM credits.allowances ORDER BY 1, 2, 3"
}
snapshot > "$TMP/before.txt"

# --- 2. the upgrade -------------------------------------------------------
q -d "$OLD" -c "ALTER EXTENSION credits UPDATE" >/dev/null || fail "ALTER EXTENSION credits UPDATE failed"
[ "$(q -d "$OLD" -c "SELECT extversion FROM pg_extension WHERE extname = 'credits'")" = 1.1 ] || fail "not at 1.1 after the update"

# --- 3. the data survived -------------------------------------------------
mism=$(q -d "$OLD" -c "SELECT count(*) FROM credits.credit_verify_all()")
[ "$mism" = 0 ] || { q -d "$OLD" -c "SELECT * FROM credits.credit_verify_all()"; fail "credit_verify_all() reports $mism rows after the upgrade"; }
snapshot > "$TMP/after.txt"
diff -u "$TMP/before.txt" "$TMP/after.txt" || fail "balances, available balances or 1.0 data changed in the upgrade"
[ "$(q -d "$OLD" -c "SELECT count(*) FROM credits.accounts a, credits.credit_verify(a.user_id) v WHERE NOT v.valid")" = 0 ] ||
	fail "credit_verify() finds an invalid account after the upgrade"

# --- 4. every 1.1 function works on the upgraded data ---------------------
# Each call records the function's name; a function of the extension that
# no call names fails the test, so add a call here when you add one.
called="$TMP/called"
: > "$called"
call() { # call NAME SQL EXPECTED
	local got
	echo "$1" >> "$called"
	got=$(q -d "$OLD" -c "$2" 2>&1) || fail "$1 after the upgrade: $2: $got"
	[ -z "${3+x}" ] || [ "$got" = "$3" ] || fail "$1 after the upgrade: $2 returned '$got', expected '$3'"
}
call library_version "SELECT credits.library_version()" 1.1
call credit_balance "SELECT credits.credit_balance('up-a')"
bal_a=$(q -d "$OLD" -c "SELECT credits.credit_balance('up-a')")
# a key used under 1.0 returns the original result
orig=$(q -d "$OLD" -c "SELECT id FROM credits.ledger WHERE idempotency_key = 'up-k1'")
call credit_deduct "SELECT tx_id FROM credits.credit_deduct('up-a', 5, 'chat_message', '{}', 'up-k1')" "$orig"
call credit_deduct "SELECT balance FROM credits.credit_deduct('up-a', 1, 'chat_message')" "$((bal_a - 1))"
call credit_add "SELECT balance FROM credits.credit_add('up-a', 1, 'purchase', '{}', 'up-k3')" "$bal_a"
call credit_init "SELECT balance FROM credits.credit_init('up-new')" 100
call credit_history "SELECT count(*) FROM credits.credit_history('up-a')"
[ "$(q -d "$OLD" -c "SELECT count(*) FROM credits.credit_history('up-a')")" -ge 5 ] || fail "credit_history lost 1.0 rows"
call credit_verify "SELECT valid FROM credits.credit_verify('up-a')" t
call credit_verify_all "SELECT count(*) FROM credits.credit_verify_all()" 0
call credit_rebuild "SELECT credits.credit_rebuild('up-c')" 7
call credit_available "SELECT credits.credit_available('up-b')"
# the hold opened under 1.0 is captured under 1.1
h3=$(q -d "$OLD" -c "SELECT id FROM credits.holds WHERE idempotency_key = 'up-h3'")
call credit_capture "SELECT count(*) FROM credits.credit_capture($h3, 10)" 1
call credit_hold "SELECT held FROM credits.credit_hold('up-b', 5, 'chat_message')" 5
call credit_release "SELECT credits.credit_release(max(id)) IS NOT NULL FROM credits.holds WHERE user_id = 'up-b' AND status = 'open'" t
call credit_cost "SELECT credits.credit_cost('chat_message', 1)" 10
call credit_charge "SELECT count(*) FROM credits.credit_charge('up-b', 'chat_message', 1)" 1
call credit_grant "SELECT count(*) FROM credits.credit_grant('up-g', 5, 'promo', now() + interval '1 day')" 1
call credit_expire_holds "SELECT credits.credit_expire_holds() >= 0" t
call credit_expire_grants "SELECT credits.credit_expire_grants() >= 0" t
call credit_subscribe "SELECT count(*) FROM credits.credit_subscribe('up-s', 'enterprise')" 1
call credit_renew "SELECT credits.credit_renew() >= 0" t
call credit_usage "SELECT plan FROM credits.credit_usage('up-s')" enterprise
call sync_sleep "SELECT credits.sync_sleep() IS NOT NULL" t
call sync_arm "SELECT credits.sync_arm() >= 0" t
echo ledger_refuse_change >> "$called"
if q -d "$OLD" -c "DELETE FROM credits.ledger WHERE user_id = 'up-a'" >/dev/null 2>&1; then
	fail "the upgraded ledger accepts DELETE"
fi
call credit_balance_at "SELECT credits.credit_balance_at('up-a', now()) = credits.credit_balance('up-a')" t
call credit_balance_at "SELECT credits.credit_balance_at('up-b', (SELECT created_at FROM credits.ledger WHERE idempotency_key = 'up-k2'))" 525
# functions new in 1.1
call run_job_step "SELECT count(*) FROM credits.run_job_step('renew', NULL, 10)" 1
call run_jobs "CALL credits.run_jobs(10)"
# scale-out: the stable hash (test vector of test/sql/partition.sql), and
# an upgraded single node set up as partition 0 keeps its hold ids
call partition_hash "SELECT credits.partition_hash('alice')" -367733218
call partition_of "SELECT credits.partition_of('alice', 4)" 2
call hold_partition "SELECT count(*) FROM credits.holds WHERE credits.hold_partition(id) <> 0" 0
call partition_setup "SELECT credits.partition_setup(0, 4) = (SELECT last_value + 1 FROM credits.holds_id_seq)" t
# the hash chain: the upgrade hashed the 1.0 rows, and the new rows chain on
call ledger_row_hash "SELECT bool_and(ok) FROM (SELECT l.hash = credits.ledger_row_hash(lag(l.hash) OVER w,
	lag(l.id) OVER w, l.user_id, l.amount, l.balance_after, l.action, l.metadata, l.idempotency_key, l.created_at,
	l.quantity, l.rate, l.carry) AS ok FROM credits.ledger l WINDOW w AS (PARTITION BY l.user_id ORDER BY l.id)) s" t
mism=$(q -d "$OLD" -c "SELECT count(*) FROM credits.credit_verify_all()")
[ "$mism" = 0 ] || fail "credit_verify_all() reports $mism rows after the 1.1 calls"
missing=$(q -d "$OLD" -c "SELECT string_agg(DISTINCT p.proname, ', ') FROM pg_proc p JOIN pg_depend d
	ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
	AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'credits')
	WHERE p.proname NOT IN (SELECT unnest(string_to_array('$(sort -u "$called" | paste -sd, -)', ',')))")
[ -z "$missing" ] || fail "functions not exercised after the upgrade (add a call to this script): $missing"

# --- 5. the upgraded schema equals a fresh 1.1 install ---------------------
q -d "$NEW" -c "CREATE EXTENSION credits" >/dev/null
# normalise DUMP: drop OID- and xid-preserving lines and dropped-column
# placeholders and sequence positions (data), drop trailing commas (a
# dropped last column leaves one), and sort each run of GRANT/REVOKE lines
# (ACL order follows grant history).
normalise() {
	python3 - "$1" <<'PY'
import re, sys
out, run, auth = [], [], None
def flush():
    out.extend(sorted(run)); run.clear()
for line in open(sys.argv[1]):
    line = line.rstrip('\n')
    if (line.startswith('\\restrict') or line.startswith('\\unrestrict')
            or 'binary_upgrade_set_next_' in line or 'pg.dropped' in line
            or line.startswith('SELECT pg_catalog.setval(')
            or line.startswith('SET relfrozenxid') or re.match(r"WHERE oid = '\d+';", line)
            or line.startswith('UPDATE pg_catalog.pg_class') or line.startswith('UPDATE pg_catalog.pg_attribute')
            or line.startswith('SET attlen') or line.startswith('  AND attrelid')
            or line.startswith('-- For binary upgrade, recreate dropped column')):
        continue
    line = re.sub(r"binary_upgrade_create_empty_extension\((.*?), '\{[0-9,]*\}'",
                  r"binary_upgrade_create_empty_extension(\1, '{<extconfig>}'", line)
    line = line.rstrip(',')
    # a grant made as another role is dumped as SET SESSION AUTHORIZATION,
    # GRANT, RESET SESSION AUTHORIZATION: one item of the run
    if line.startswith('SET SESSION AUTHORIZATION'):
        auth = [line]
        continue
    if auth is not None:
        auth.append(line)
        if line.startswith('RESET SESSION AUTHORIZATION'):
            run.append(' / '.join(auth))
            auth = None
        continue
    if line.startswith('GRANT ') or line.startswith('REVOKE '):
        run.append(line)
        continue
    flush()
    out.append(line)
flush()
print('\n'.join(out))
PY
}
for db in "$OLD" "$NEW"; do
	"$BIN/pg_dump" --schema-only --binary-upgrade -d "$db" > "$TMP/$db.dump" || fail "pg_dump of $db"
	normalise "$TMP/$db.dump" > "$TMP/$db.schema"
	# the extension's configuration: tables (by name) and what its scripts
	# put in them, and the membership
	q -d "$db" -c "SELECT c::regclass, x.cond FROM pg_extension e,
			unnest(e.extconfig, e.extcondition) AS x(c, cond) WHERE e.extname = 'credits' ORDER BY c::regclass::text" \
		-c "SELECT * FROM credits.prices WHERE valid_from = '-infinity' ORDER BY 1, 2" \
		-c "SELECT * FROM credits.plans WHERE valid_from = '-infinity' ORDER BY 1, 2" >> "$TMP/$db.schema"
done
[ "$(grep -c '^CREATE' "$TMP/$NEW.schema")" -ge 20 ] || fail "the fresh schema dump is too small"
if ! diff -u "$TMP/$NEW.schema" "$TMP/$OLD.schema" > "$TMP/schema.diff"; then
	echo "--- fresh 1.1 install / +++ 1.0 upgraded to 1.1:"
	cat "$TMP/schema.diff"
	fail "the upgraded schema differs from a fresh 1.1 install (diff above: sql/credits.sql and sql/credits--1.0--1.1.sql disagree)"
fi

echo "PASS: upgrade"
