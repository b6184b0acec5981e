#!/usr/bin/env bash
# The 1.0 -> 1.1 upgrade moves 1.0's idempotency keys (ledger, holds,
# captures, grants) into credits.idempotency_keys, bound to what each was
# used for, so retries that straddle the upgrade still return the original
# result.  1.0 data is written straight into the tables (the 1.1 library
# does not serve 1.0's keyed functions), as 1.0's functions wrote it.
#
# Needs PGHOST/PGPORT/PGUSER of a superuser (the stack's env).
set -euo pipefail
DB=credits_upgrade_keys
trap 'psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true' EXIT

fail() { echo "FAIL: $*"; exit 1; }
q() { psql -X -At -v ON_ERROR_STOP=1 -d "$DB" "$@"; }

psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null 2>&1
q >/dev/null <<'SQL'
CREATE EXTENSION credits VERSION '1.0';
INSERT INTO credits.accounts (user_id, balance, held, expiring) VALUES ('u', 94010, 0, 9);
INSERT INTO credits.ledger (id, user_id, amount, balance_after, action, metadata, idempotency_key) VALUES
 (1, 'u', 100000, 100000, 'init', '{}', NULL),
 (2, 'u', -1, 99999, 'training_job', '{"price":{"quantity":5}}', 'K'),
 (3, 'u', -500, 99499, 'training_job', '{"price":{"rate":1000,"unit":"gpu_hour","quantity":0.5,"rounding":"up","valid_from":"-infinity"}}', 'CH'),
 (4, 'u', 7, 99506, 'purchase', '{}', 'A'),
 (5, 'u', 9, 99515, 'grant', '{"grant_id":1}', 'G'),
 (6, 'u', -4, 99511, 'chat_message', '{"hold_id":1,"held":10}', 'C'),
 (7, 'u', -5501, 94010, 'training_job', '{"price":{"rate":1000,"unit":"gpu_hour","quantity":5.5,"rounding":"up","valid_from":"-infinity"}}', 'D2');
SELECT setval('credits.ledger_id_seq', 7);
INSERT INTO credits.grants (id, user_id, source, amount, expires_at, remaining, reserved, expired, idempotency_key)
 VALUES (1, 'u', 'promo', 9, now() + interval '1 day', 9, 0, 0, 'G');
INSERT INTO credits.holds (id, user_id, amount, action, idempotency_key, status, expires_at,
						   available_after, closed_at, captured, capture_tx_id, capture_key)
 VALUES (1, 'u', 10, 'chat_message', 'H', 'captured', now() + interval '1 hour', 99505, now(), 4, 6, 'C');
ALTER EXTENSION credits UPDATE TO '1.1';
SQL

got=$(q -F' ' -c "SELECT key, operation, coalesce(amount::text, '-'), coalesce(quantity::text, '-'),
						  coalesce(action, '-'), coalesce(hold_id::text, '-'), coalesce(tx_id::text, '-')
					 FROM credits.idempotency_keys ORDER BY key")
want="A add 7 - purchase - 4
C capture 4 - - 1 6
CH charge - 0.5 training_job - 3
D2 deduct 5501 - training_job - 7
G grant 9 - promo - 5
H hold 10 - chat_message 1 -
K deduct 1 - training_job - 2"
[ "$got" = "$want" ] || fail "migrated keys differ:
$got
want:
$want"

# retries across the upgrade return the original results ...
[ "$(q -c "SELECT tx_id FROM credits.credit_deduct('u', 1, 'training_job', '{}', 'K')")" = 2 ] || fail "deduct retry"
[ "$(q -c "SELECT tx_id FROM credits.credit_charge('u', 'training_job', 0.5, '{}', 'CH')")" = 3 ] || fail "charge retry"
[ "$(q -c "SELECT tx_id FROM credits.credit_capture(1, 4, '{}', 'C')")" = 6 ] || fail "capture retry"
[ "$(q -c "SELECT hold_id FROM credits.credit_hold('u', 10, 'chat_message', '{}', '1 hour', 'H')")" = 1 ] || fail "hold retry"
[ "$(q -c "SELECT tx_id FROM credits.credit_grant('u', 9, 'promo', (SELECT expires_at FROM credits.grants WHERE id = 1), '{}', 'G')")" = 5 ] || fail "grant retry"
# ... and the deduction whose metadata looked like a price is not a charge
state=$(psql -X -At -d "$DB" -c "SELECT credits.credit_charge('u', 'training_job', 5, '{}', 'K')" 2>&1 || true)
case "$state" in *"idempotency key reused"*) ;; *) fail "charge with a deduction's key: $state" ;; esac
[ "$(q -c "SELECT count(*) FROM credits.ledger")" = 7 ] || fail "a retry wrote a ledger row"
echo "ok: 1.0 keys migrated and retried across the upgrade"
