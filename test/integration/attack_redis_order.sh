#!/usr/bin/env bash
# Attack finding (a hostile review of 1.1), fixed: rows written in the same
# millisecond have the same score (created_at in epoch ms), and Redis orders
# them by member bytes.  Members began {"id":N,... so id 99999 sorted after
# id 100002 and ZREVRANGE (newest first) was out of ledger order whenever
# ids crossed a power of ten.  credits-sync now right-aligns the id in 19
# characters; ZREVRANGE must return the rows in descending id order.
#
# Needs the stack (PGHOST/PGPORT/PGDATABASE of a superuser, REDIS_PORT) with
# credits-sync running against PGDATABASE.  Moves ledger_id_seq forward
# only (to just below the next power of ten), never back.
set -euo pipefail
q() { psql -X -At -v ON_ERROR_STOP=1 "$@"; }
[ -n "${REDIS_PORT:-}" ] || { echo "attack_redis_order: no REDIS_PORT: skipped"; exit 0; }
R() { redis-cli -h "${REDIS_HOST:-127.0.0.1}" -p "$REDIS_PORT" "$@"; }
user="atk-order-$$-$RANDOM"
q -c "SELECT setval('credits.ledger_id_seq',
        (10 ^ (length((pg_catalog.nextval('credits.ledger_id_seq') + 10)::text)))::bigint - 3)" >/dev/null
# five rows of one user in one statement: within the same millisecond or two
q -c "SELECT (credits.credit_add('$user', 1, 'a' || g)).tx_id FROM generate_series(1, 5) g" >/dev/null
want=$(q -c "SELECT string_agg(id::text, ' ' ORDER BY id DESC) FROM credits.ledger WHERE user_id = '$user'")
for _ in $(seq 1 100); do
	[ "$(R ZCARD "txs:$user")" = 5 ] && break
	sleep 0.1
done
got=$(R ZREVRANGE "txs:$user" 0 -1 | sed -E 's/^\{"id": *([0-9]+),.*/\1/' | tr '\n' ' ' | sed 's/ $//')
echo "ledger order (newest first): $want"
echo "txs:$user (ZREVRANGE):       $got"
[ "$got" = "$want" ] || { echo "FAIL: attack_redis_order: txs:<user> is not in ledger order"; exit 1; }
echo "ok"
