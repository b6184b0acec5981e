#!/usr/bin/env bash
# The roles are cluster-wide (README, Roles): what the README claims.
#
#   1. Two databases with the extension share the roles: one login role
#      granted credits_app spends in both, and both databases' objects are
#      owned by the same credits_owner.
#   2. REVOKE CONNECT ON DATABASE ... FROM PUBLIC keeps that login role out
#      of a database it has no CONNECT on.
#   3. CREATE EXTENSION refuses (SQLSTATE 0P000) existing roles that would
#      give more than its grants: a credits_owner that can log in, or
#      credits_app made a member of credits_ops; so does the update from
#      1.0, which then changes nothing (the roles are restored afterwards).
#   4. DROP EXTENSION leaves the roles.
#
# Needs PGHOST/PGPORT/PGUSER of a superuser (the stack's env); the stack's
# pg_hba trusts local TCP connections, so the login role needs no password.
set -euo pipefail
A=credits_roles_a
B=credits_roles_b
C=credits_roles_c
D=credits_roles_d
LOGIN=credits_roles_app_login
cleanup() {
	psql -X -q -d postgres -c "ALTER ROLE credits_owner NOLOGIN" \
		-c "REVOKE credits_ops FROM credits_app" >/dev/null 2>&1 || true
	for db in $A $B $C $D; do
		psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
	done
	psql -X -q -d postgres -c "DROP ROLE IF EXISTS $LOGIN" >/dev/null 2>&1 || true
}
trap cleanup EXIT

fail() { echo "FAIL: roles_cluster: $*"; exit 1; }
q() { psql -X -At -v ON_ERROR_STOP=1 "$@"; }

cleanup
for db in $A $B $C $D; do
	q -d postgres -c "CREATE DATABASE $db" >/dev/null
done
q -d $A -c "CREATE EXTENSION credits" >/dev/null
q -d $B -c "CREATE EXTENSION credits" >/dev/null
q -d postgres -c "CREATE ROLE $LOGIN LOGIN IN ROLE credits_app" >/dev/null

# 1. one role set for both databases
[ "$(q -U $LOGIN -d $A -c "SELECT balance FROM credits.credit_add('r', 5, 'purchase')")" = 5 ] ||
	fail "the login role cannot spend in $A"
[ "$(q -U $LOGIN -d $B -c "SELECT balance FROM credits.credit_add('r', 7, 'purchase')")" = 7 ] ||
	fail "the same login role cannot spend in $B"
for db in $A $B; do
	[ "$(q -d $db -c "SELECT DISTINCT proowner::regrole FROM pg_proc WHERE pronamespace = 'credits'::regnamespace")" = credits_owner ] ||
		fail "the functions of $db are not all owned by credits_owner"
done

# 2. REVOKE CONNECT keeps the role out of a database
q -d postgres -c "REVOKE CONNECT ON DATABASE $B FROM PUBLIC" >/dev/null
if out=$(q -U $LOGIN -d $B -c "SELECT 1" 2>&1); then
	fail "the login role still connects to $B after REVOKE CONNECT"
fi
[[ "$out" == *"permission denied for database"* ]] || fail "unexpected refusal: $out"
[ "$(q -U $LOGIN -d $A -c "SELECT credits.credit_balance('r')")" = 5 ] || fail "REVOKE CONNECT on $B affected $A"

# 3. existing roles that would give more are refused, not adopted
q -d $D -c "CREATE EXTENSION credits VERSION '1.0'" >/dev/null
q -d postgres -c "ALTER ROLE credits_owner LOGIN" >/dev/null
if out=$(q -v VERBOSITY=verbose -d $C -c "CREATE EXTENSION credits" 2>&1); then
	fail "CREATE EXTENSION adopted a credits_owner that can log in"
fi
[[ "$out" == *"0P000: role credits_owner has attributes"* ]] || fail "unexpected error: $out"
if out=$(q -v VERBOSITY=verbose -d $D -c "ALTER EXTENSION credits UPDATE" 2>&1); then
	fail "the update to 1.1 adopted a credits_owner that can log in"
fi
[[ "$out" == *"0P000: role credits_owner has attributes"* ]] || fail "unexpected error: $out"
[ "$(q -d $D -c "SELECT extversion FROM pg_extension WHERE extname = 'credits'")" = 1.0 ] ||
	fail "the refused update changed the extension's version"
q -d postgres -c "ALTER ROLE credits_owner NOLOGIN" -c "GRANT credits_ops TO credits_app" >/dev/null
if out=$(q -v VERBOSITY=verbose -d $C -c "CREATE EXTENSION credits" 2>&1); then
	fail "CREATE EXTENSION adopted a credits_app that is a member of credits_ops"
fi
[[ "$out" == *"0P000: role credits_app is a member of role credits_ops"* ]] || fail "unexpected error: $out"
q -d postgres -c "REVOKE credits_ops FROM credits_app" >/dev/null
q -d $C -c "CREATE EXTENSION credits" >/dev/null || fail "CREATE EXTENSION fails with the roles restored"
q -d $D -c "ALTER EXTENSION credits UPDATE" >/dev/null || fail "the update fails with the roles restored"

# 4. the roles outlive the extension
q -d $C -c "DROP EXTENSION credits" >/dev/null
[ "$(q -d postgres -c "SELECT count(*) FROM pg_roles WHERE rolname IN ('credits_app', 'credits_ops', 'credits_reader', 'credits_owner')")" = 4 ] ||
	fail "DROP EXTENSION dropped a role"

echo "PASS: roles_cluster"
