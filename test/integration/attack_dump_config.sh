#!/usr/bin/env bash
# Attack finding (helper `attack`): README says "pg_dump keeps every row you
# add" to credits.prices and credits.plans, but the extension marks them for
# dumping WHERE valid_from <> '-infinity', so a price or plan an operator
# adds "valid from always" ('-infinity', the natural choice for a new
# action or plan) is silently missing from a dump and lost by a restore
# (charges then fail with CR005, subscriptions and renewals with CR006).
# Expected (correct): both rows survive pg_dump + restore.  Fixed in 1.1: the
# dump conditions name the seeded rows (sql/credits.sql, billing section).
set -euo pipefail
BIN=${CREDITS_PGBIN:-/usr/lib/postgresql/15/bin}
SRC=credits_attack_dump_src
DST=credits_attack_dump_dst
q() { psql -X -At -v ON_ERROR_STOP=1 "$@"; }
cleanup() { q -d postgres -c "DROP DATABASE IF EXISTS $SRC WITH (FORCE)" -c "DROP DATABASE IF EXISTS $DST WITH (FORCE)" >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup
q -d postgres -c "CREATE DATABASE $SRC" -c "CREATE DATABASE $DST" >/dev/null
q -d "$SRC" >/dev/null <<'SQL'
CREATE EXTENSION credits;
INSERT INTO credits.prices (action, unit, rate, valid_from) VALUES ('atk_always', 'unit', 3, '-infinity');
INSERT INTO credits.plans (plan, allowance, valid_from) VALUES ('atk_always_plan', 50, '-infinity');
SQL
"$BIN/pg_dump" -d "$SRC" | q -d "$DST" >/dev/null 2>&1
got=$(q -d "$DST" -c "SELECT (SELECT count(*) FROM credits.prices WHERE action = 'atk_always') || ' ' ||
                             (SELECT count(*) FROM credits.plans WHERE plan = 'atk_always_plan')")
echo "after dump and restore: prices rows, plans rows = $got (want 1 1)"
[ "$got" = "1 1" ] || { echo "FAIL: attack_dump_config: rows added with valid_from '-infinity' were lost by pg_dump"; exit 1; }
echo ok
