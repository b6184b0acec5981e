/*-------------------------------------------------------------------------
 *
 * spi.c
 *		Prepared statements: every query the extension runs, in one table.
 *
 * Each statement is parsed once per backend and kept with SPI_keepplan.
 * Every table name in them is schema-qualified, and every statement is
 * prepared and executed under search_path = pg_catalog, pg_temp, so a
 * caller's search_path can never redirect an operator, function or type
 * (test/pgtap/04_search_path.sql).  The functions' SET clause pins it for
 * the whole call; credits_pin_search_path() checks, and pins it itself for
 * a caller without the clause (search_path.c).  Pinning only while
 * preparing would not be enough: the plan cache re-analyses a saved
 * statement under the search_path current when it next runs.
 *
 * Every SPI return code is checked; an unexpected one is a can't-happen
 * and uses elog.  Callers bracket their work with credits_connect() and
 * credits_finish(), so each call's SPI memory is freed when it returns.
 *
 *-------------------------------------------------------------------------
 */
#include "credits.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/memutils.h"

typedef struct CreditsStatement
{
	const char *sql;
	int			nargs;
	Oid			argtypes[13];
	int			expect;			/* SPI_OK_* code on success */
	SPIPlanPtr	plan;
} CreditsStatement;

/*
 * The hash chain (src/chain.c).  CHAIN_SET is the SET clause, in an UPDATE
 * of accounts row a, that assigns the user's next ledger row its id (the
 * ledger's sequence), its created_at (now, the clock the caller read just
 * before the statement, but never before the user's previous row:
 * last_tx_at) and its hash (from last_hash, the previous row's id
 * last_tx_id, and the row's fields), and records them as the account's
 * last_*.  Every column reference is to the row's version before the
 * UPDATE, so the hash chains from the previous row without a sub-select,
 * and the created_at it hashes is the one stored (now is a parameter, the
 * same in both places).  The UPDATE holds the account row lock; if another
 * transaction changed the row before the lock was taken, the executor
 * evaluates the SET clause again on the newest row version (EvalPlanQual),
 * with a new id, so ids, and created_at, follow the row-lock order
 * (test/specs/history_lock_order.spec).
 * ROW_HASH recomputes the hash of ledger row l from the hash and id of the
 * row before it in window w (the user's rows by id).
 */
#define CHAIN_SET(now, amount, balance_after, action, metadata, key, quantity, rate, carry) \
	"last_tx_id = pg_catalog.nextval('credits.ledger_id_seq'::pg_catalog.regclass)," \
	" last_tx_at = GREATEST(" now ", a.last_tx_at)," \
	" last_hash = credits.ledger_row_hash(a.last_hash, a.last_tx_id, a.user_id, " amount ", " balance_after "," \
	" " action ", " metadata ", " key ", GREATEST(" now ", a.last_tx_at), " quantity ", " rate ", " carry ")"
#define ROW_HASH \
	"credits.ledger_row_hash(pg_catalog.lag(l.hash) OVER w, pg_catalog.lag(l.id) OVER w," \
	" l.user_id, l.amount, l.balance_after, l.action, l.metadata, l.idempotency_key," \
	" l.created_at, l.quantity, l.rate, l.carry)"

/*
 * The unkeyed deduction: one UPDATE that locks, checks and changes the row.
 * The check subtracts every open hold (expired ones too), which is never
 * more permissive than the exact rule; when it fails, the caller re-checks
 * with CQ_LOCK_ACCOUNT and settles the account (settle.c).  Accounts with expiring
 * grants (expiring > 0) never match: their deductions must also draw the
 * grants down, which the caller's locked path does (settle.c).
 */
static CreditsStatement statements[CQ__COUNT] = {
	[CQ_DEDUCT_FAST] = {
		"UPDATE credits.accounts SET balance = balance - $2, version = version + 1,"
		" updated_at = pg_catalog.now()"
		" WHERE user_id = $1 AND balance - held >= $2 AND expiring = 0 RETURNING balance",
		2, {TEXTOID, INT8OID}, SPI_OK_UPDATE_RETURNING
	},
	/*
	 * the same, advancing the hash chain and inserting the ledger row in
	 * one statement: credit_deduct's fast path.  One statement, so that
	 * the INSERT's executor start (the ledger's indexes opened, its plan
	 * initialised) runs before the UPDATE takes the row lock, not while
	 * other deductions of the account wait for it.  No row when the
	 * guarded UPDATE matched nothing (nothing is written then).  $5: the
	 * clock.
	 */
	[CQ_DEDUCT_POST] = {
		"WITH a AS (UPDATE credits.accounts a SET balance = a.balance - $2, version = a.version + 1,"
		" updated_at = pg_catalog.now(), " CHAIN_SET("$5", "-$2", "a.balance - $2", "$3", "$4", "NULL", "NULL", "NULL", "NULL")
		" WHERE a.user_id = $1 AND a.balance - a.held >= $2 AND a.expiring = 0"
		" RETURNING a.balance, a.last_tx_id, a.last_tx_at, a.last_hash)"
		" INSERT INTO credits.ledger (id, user_id, amount, balance_after, action,"
		" metadata, idempotency_key, created_at, hash)"
		" SELECT a.last_tx_id, $1, -$2, a.balance, $3, $4, NULL, a.last_tx_at, a.last_hash FROM a"
		" RETURNING balance_after, id, created_at",
		5, {TEXTOID, INT8OID, TEXTOID, JSONBOID, TIMESTAMPTZOID}, SPI_OK_INSERT_RETURNING
	},
	[CQ_DEDUCT_LOCKED] = {
		"UPDATE credits.accounts SET balance = balance - $2, version = version + 1,"
		" updated_at = pg_catalog.now()"
		" WHERE user_id = $1 RETURNING balance",
		2, {TEXTOID, INT8OID}, SPI_OK_UPDATE_RETURNING
	},
	[CQ_ADD_UPSERT] = {
		"INSERT INTO credits.accounts AS a (user_id, balance) VALUES ($1, $2)"
		" ON CONFLICT (user_id) DO UPDATE SET balance = a.balance + excluded.balance,"
		" version = a.version + 1, updated_at = pg_catalog.now()"
		" WHERE a.balance <= 9223372036854775807 - excluded.balance"
		" RETURNING a.balance",
		2, {TEXTOID, INT8OID}, SPI_OK_INSERT_RETURNING
	},
	[CQ_LOCK_ACCOUNT] = {
		"SELECT balance, held, expiring FROM credits.accounts WHERE user_id = $1 FOR UPDATE",
		1, {TEXTOID}, SPI_OK_SELECT
	},
	/* a job's lock: no row if another transaction holds it */
	[CQ_LOCK_ACCOUNT_SKIP] = {
		"SELECT balance, held, expiring FROM credits.accounts WHERE user_id = $1"
		" FOR UPDATE SKIP LOCKED",
		1, {TEXTOID}, SPI_OK_SELECT
	},
	[CQ_OPEN_ACCOUNT] = {
		"INSERT INTO credits.accounts (user_id, balance) VALUES ($1, 0)"
		" ON CONFLICT (user_id) DO NOTHING",
		1, {TEXTOID}, SPI_OK_INSERT
	},
	[CQ_INIT_ACCOUNT] = {
		"INSERT INTO credits.accounts (user_id, balance) VALUES ($1, $2)"
		" ON CONFLICT (user_id) DO NOTHING RETURNING balance",
		2, {TEXTOID, INT8OID}, SPI_OK_INSERT_RETURNING
	},
	[CQ_INIT_EXISTING] = {
		"SELECT l.id, a.balance, l.created_at FROM credits.accounts a"
		" LEFT JOIN LATERAL (SELECT id, created_at FROM credits.ledger"
		"  WHERE user_id = a.user_id ORDER BY created_at, id LIMIT 1) l ON true"
		" WHERE a.user_id = $1",
		1, {TEXTOID}, SPI_OK_SELECT
	},
	/* an idempotency key's binding and result (idempotency.c) */
	[CQ_FIND_KEY] = {
		"SELECT operation, amount, quantity, action, expires_at, hold_id,"
		" tx_id, balance, available, result, created_at"
		" FROM credits.idempotency_keys WHERE user_id = $1 AND key = $2",
		2, {TEXTOID, TEXTOID}, SPI_OK_SELECT
	},
	[CQ_KEY_RECORD] = {
		"INSERT INTO credits.idempotency_keys (user_id, key, operation, amount,"
		" quantity, action, expires_at, hold_id, tx_id, balance, available, result,"
		" created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,"
		" coalesce($13, pg_catalog.now()))",
		13, {TEXTOID, TEXTOID, TEXTOID, INT8OID, NUMERICOID, TEXTOID, TIMESTAMPTZOID,
		INT8OID, INT8OID, INT8OID, INT8OID, JSONBOID, TIMESTAMPTZOID}, SPI_OK_INSERT
	},
	/*
	 * advance the locked account's chain and insert the ledger row; $7-$9: a
	 * charge's quantity, rate and carry (NULL otherwise); $10: the clock
	 */
	[CQ_POST] = {
		"WITH a AS (UPDATE credits.accounts a SET "
		CHAIN_SET("$10", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9")
		"  WHERE a.user_id = $1 RETURNING a.last_tx_id, a.last_tx_at, a.last_hash)"
		" INSERT INTO credits.ledger (id, user_id, amount, balance_after, action,"
		" metadata, idempotency_key, created_at, hash, quantity, rate, carry)"
		" SELECT a.last_tx_id, $1, $2, $3, $4, $5, $6, a.last_tx_at, a.last_hash,"
		" $7, $8, $9 FROM a"
		" RETURNING id, created_at",
		10, {TEXTOID, INT8OID, INT8OID, TEXTOID, JSONBOID, TEXTOID,
		NUMERICOID, NUMERICOID, NUMERICOID, TIMESTAMPTZOID},
		SPI_OK_INSERT_RETURNING
	},
	[CQ_BALANCE] = {
		"SELECT balance FROM credits.accounts WHERE user_id = $1",
		1, {TEXTOID}, SPI_OK_SELECT
	},
	/* the balance after the user's last row with created_at <= $2 */
	[CQ_BALANCE_AT] = {
		"SELECT coalesce((SELECT l.balance_after FROM credits.ledger l"
		"  WHERE l.user_id = a.user_id AND l.created_at <= $2"
		"  ORDER BY l.created_at DESC, l.id DESC LIMIT 1), 0)"
		" FROM credits.accounts a WHERE a.user_id = $1",
		2, {TEXTOID, TIMESTAMPTZOID}, SPI_OK_SELECT
	},
	/*
	 * credit_history: newest first in ledger order, (created_at, id), which
	 * is id order for every row 1.1 wrote (created_at never goes backwards
	 * along ids); ledger_user_time_idx serves it.  CQ_HISTORY_BEFORE: the
	 * rows before the user's row $5 in that order.
	 */
	[CQ_HISTORY_PAGE] = {
		"SELECT id, user_id, amount, balance_after, action, metadata,"
		" idempotency_key, created_at FROM credits.ledger"
		" WHERE user_id = $1 AND created_at >= $3 AND created_at < $4"
		" ORDER BY created_at DESC, id DESC LIMIT $2",
		4, {TEXTOID, INT4OID, TIMESTAMPTZOID, TIMESTAMPTZOID}, SPI_OK_SELECT
	},
	[CQ_HISTORY_BEFORE] = {
		"SELECT id, user_id, amount, balance_after, action, metadata,"
		" idempotency_key, created_at FROM credits.ledger"
		" WHERE user_id = $1 AND created_at >= $3 AND created_at < $4"
		" AND created_at <= (SELECT c.created_at FROM credits.ledger c"
		"  WHERE c.id = $5 AND c.user_id = $1)"
		" AND (created_at < (SELECT c.created_at FROM credits.ledger c"
		"  WHERE c.id = $5 AND c.user_id = $1) OR id < $5)"
		" ORDER BY created_at DESC, id DESC LIMIT $2",
		5, {TEXTOID, INT4OID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID}, SPI_OK_SELECT
	},
	[CQ_VERIFY] = {
		"SELECT a.balance, (SELECT pg_catalog.sum(amount) FROM credits.ledger"
		"  WHERE user_id = a.user_id)::pg_catalog.int8"
		" FROM credits.accounts a WHERE a.user_id = $1",
		1, {TEXTOID}, SPI_OK_SELECT
	},
	/*
	 * The first break in user $1's hash chain (id, problem), if any: a row
	 * whose hash does not match its fields and the previous row's hash and
	 * id, a row after the account's last_tx_id, the row last_tx_id missing,
	 * or its hash differing from last_hash.
	 */
	[CQ_VERIFY_CHAIN] = {
		"WITH r AS (SELECT l.id, l.hash, l.hash IS NOT DISTINCT FROM "
		ROW_HASH " AS ok"
		"  FROM credits.ledger l WHERE l.user_id = $1 WINDOW w AS (ORDER BY l.id)),"
		" a AS (SELECT last_tx_id, last_hash FROM credits.accounts WHERE user_id = $1)"
		" SELECT id, problem FROM ("
		"  SELECT r.id, 1 AS prio, 'hash mismatch' AS problem FROM r WHERE NOT r.ok"
		"  UNION ALL SELECT r.id, 2, 'row not in chain' FROM r, a"
		"   WHERE r.id > coalesce(a.last_tx_id, 0)"
		"  UNION ALL SELECT a.last_tx_id, 3, 'newest row missing' FROM a"
		"   WHERE a.last_tx_id IS NOT NULL AND NOT EXISTS (SELECT FROM r WHERE r.id = a.last_tx_id)"
		"  UNION ALL SELECT r.id, 4, 'chain head mismatch' FROM r, a"
		"   WHERE r.id = a.last_tx_id AND r.hash IS DISTINCT FROM a.last_hash"
		" ) x ORDER BY id, prio LIMIT 1",
		1, {TEXTOID}, SPI_OK_SELECT
	},
	/*
	 * Every account whose cache differs from its ledger or whose chain is
	 * broken (the first break, as in CQ_VERIFY_CHAIN), and every ledger
	 * user without an account.
	 */
	[CQ_VERIFY_ALL_CHAIN] = {
		"WITH r AS (SELECT l.user_id, l.id, l.hash IS NOT DISTINCT FROM "
		ROW_HASH " AS ok"
		"  FROM credits.ledger l WINDOW w AS (PARTITION BY l.user_id ORDER BY l.id)),"
		" bad AS ("
		"  SELECT r.user_id, r.id, 1 AS prio, 'hash mismatch' AS problem FROM r WHERE NOT r.ok"
		"  UNION ALL SELECT r.user_id, r.id, 2, 'row not in chain' FROM r"
		"   LEFT JOIN credits.accounts a ON a.user_id = r.user_id"
		"   WHERE r.id > coalesce(a.last_tx_id, 0)"
		"  UNION ALL SELECT a.user_id, a.last_tx_id, 3, 'newest row missing' FROM credits.accounts a"
		"   WHERE a.last_tx_id IS NOT NULL AND NOT EXISTS (SELECT FROM credits.ledger l"
		"    WHERE l.id = a.last_tx_id AND l.user_id = a.user_id)"
		"  UNION ALL SELECT a.user_id, a.last_tx_id, 4, 'chain head mismatch' FROM credits.accounts a"
		"   JOIN credits.ledger l ON l.id = a.last_tx_id AND l.user_id = a.user_id"
		"   WHERE l.hash IS DISTINCT FROM a.last_hash),"
		" f AS (SELECT DISTINCT ON (user_id) user_id, id, problem FROM bad"
		"  ORDER BY user_id, id, prio),"
		" s AS (SELECT user_id, pg_catalog.sum(amount)::pg_catalog.int8 AS total"
		"  FROM credits.ledger GROUP BY user_id)"
		" SELECT coalesce(a.user_id, s.user_id), a.balance, coalesce(s.total, 0), f.id, f.problem"
		" FROM credits.accounts a FULL JOIN s ON s.user_id = a.user_id"
		" LEFT JOIN f ON f.user_id = coalesce(a.user_id, s.user_id)"
		" WHERE a.balance IS DISTINCT FROM coalesce(s.total, 0) OR f.user_id IS NOT NULL"
		" ORDER BY 1",
		0, {InvalidOid}, SPI_OK_SELECT
	},
	[CQ_REBUILD] = {
		"UPDATE credits.accounts SET balance = $2, version = version + 1,"
		" updated_at = pg_catalog.now() WHERE user_id = $1",
		2, {TEXTOID, INT8OID}, SPI_OK_UPDATE
	},
	[CQ_INSERT_EVENT] = {
		"INSERT INTO credits.account_events (user_id, event, detail)"
		" VALUES ($1, $2, $3)",
		3, {TEXTOID, TEXTOID, JSONBOID}, SPI_OK_INSERT
	},

	/*
	 * Billing: holds, grants, prices, plans, usage.  Every one runs with the
	 * account row already locked by the caller, except the read-only ones
	 * (CQ_ACTIVE_HELD is also read under the lock), the lookups that find
	 * which account to lock (CQ_HOLD_USER, CQ_USERS_DUE_*, CQ_SUBS_DUE) and
	 * CQ_PRICE / CQ_PLAN, which read configuration.
	 */
	[CQ_ACTIVE_HELD] = {
		"SELECT coalesce(pg_catalog.sum(amount), 0)::pg_catalog.int8 FROM credits.holds"
		" WHERE user_id = $1 AND status = 'open' AND expires_at > $2",
		2, {TEXTOID, TIMESTAMPTZOID}, SPI_OK_SELECT
	},
	/* balance, unexpired holds, unspent credit of expired, unposted grants */
	[CQ_AVAILABLE] = {
		"SELECT a.balance,"
		" CASE WHEN a.held = 0 THEN 0 ELSE"
		"  (SELECT coalesce(pg_catalog.sum(h.amount), 0) FROM credits.holds h"
		"   WHERE h.user_id = a.user_id AND h.status = 'open'"
		"   AND h.expires_at > $2)::pg_catalog.int8 END,"
		" CASE WHEN a.expiring = 0 THEN 0 ELSE"
		"  ((SELECT coalesce(pg_catalog.sum(g.remaining), 0) FROM credits.grants g"
		"    WHERE g.user_id = a.user_id AND g.expires_at <= $2"
		"    AND g.remaining > 0)"
		"  + (SELECT coalesce(pg_catalog.sum(r.amount), 0) FROM credits.holds h"
		"     CROSS JOIN LATERAL ROWS FROM (pg_catalog.unnest(h.grant_ids),"
		"      pg_catalog.unnest(h.grant_amounts)) AS r(grant_id, amount)"
		"     JOIN credits.grants g ON g.id = r.grant_id"
		"     WHERE h.user_id = a.user_id AND h.status = 'open'"
		"     AND h.expires_at <= $2"
		"     AND g.expires_at <= $2))::pg_catalog.int8 END"
		" FROM credits.accounts a WHERE a.user_id = $1",
		2, {TEXTOID, TIMESTAMPTZOID}, SPI_OK_SELECT
	},
	[CQ_EXPIRE_HOLDS] = {
		"WITH h AS (UPDATE credits.holds SET status = 'expired', closed_at = pg_catalog.now()"
		"  WHERE user_id = $1 AND status = 'open' AND expires_at <= $2"
		"  RETURNING id, amount, grant_ids, grant_amounts)"
		" SELECT id, amount, grant_ids, grant_amounts FROM h ORDER BY id",
		2, {TEXTOID, TIMESTAMPTZOID}, SPI_OK_SELECT
	},
	/* give back reserved credit: reserved -= res, remaining += ret */
	[CQ_UNRESERVE] = {
		"UPDATE credits.grants g SET reserved = g.reserved - u.res,"
		" remaining = g.remaining + u.ret"
		" FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2),"
		"  pg_catalog.unnest($3)) AS u(id, res, ret)"
		" WHERE g.id = u.id",
		3, {INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID}, SPI_OK_UPDATE
	},
	[CQ_HOLD_ACCOUNT] = {
		"UPDATE credits.accounts SET held = held + $2, expiring = expiring + $3,"
		" version = version + 1, updated_at = pg_catalog.now()"
		" WHERE user_id = $1 RETURNING balance, held, expiring",
		3, {TEXTOID, INT8OID, INT8OID}, SPI_OK_UPDATE_RETURNING
	},
	/* the outbox row of a change to held, with the account's new state */
	[CQ_HOLD_EVENT] = {
		"INSERT INTO credits.account_events (user_id, event, detail)"
		" SELECT a.user_id, $2, pg_catalog.jsonb_build_object('hold_id', h.id,"
		"  'amount', h.amount, 'action', h.action, 'status', h.status,"
		"  'expires_at', h.expires_at, 'captured', h.captured,"
		"  'tx_id', h.capture_tx_id, 'balance', a.balance, 'held', a.held,"
		"  'version', a.version)"
		" FROM credits.accounts a, credits.holds h WHERE a.user_id = $1 AND h.id = $3",
		3, {TEXTOID, TEXTOID, INT8OID}, SPI_OK_INSERT
	},
	[CQ_DUE_GRANTS] = {
		"SELECT id, remaining, pg_catalog.jsonb_build_object('grant_id', id,"
		" 'source', source, 'expires_at', expires_at)"
		" FROM credits.grants WHERE user_id = $1 AND expires_at <= $2"
		" AND remaining > 0 ORDER BY expires_at, id",
		2, {TEXTOID, TIMESTAMPTZOID}, SPI_OK_SELECT
	},
	/* move $3 of grant $2's remaining credit to expired, off the balance */
	[CQ_EXPIRE_GRANT] = {
		"WITH g AS (UPDATE credits.grants SET remaining = remaining - $3,"
		"  expired = expired + $3 WHERE id = $2 AND user_id = $1 RETURNING id)"
		" UPDATE credits.accounts SET balance = balance - $3, expiring = expiring - $3,"
		" version = version + 1, updated_at = pg_catalog.now()"
		" WHERE user_id = $1 AND EXISTS (SELECT FROM g) RETURNING balance, held, expiring",
		3, {TEXTOID, INT8OID, INT8OID}, SPI_OK_UPDATE_RETURNING
	},
	[CQ_GRANT_CLOSE] = {
		"UPDATE credits.grants SET expires_at = LEAST(expires_at, $3)"
		" WHERE id = $1 AND user_id = $2 AND expires_at IS NOT NULL"
		" RETURNING remaining, expired, pg_catalog.jsonb_build_object('grant_id', id,"
		" 'source', source, 'expires_at', expires_at)",
		3, {INT8OID, TEXTOID, TIMESTAMPTZOID}, SPI_OK_UPDATE_RETURNING
	},
	/*
	 * Spend $2 from a settled account, drawing up to $3 of it from unexpired
	 * grants, soonest-expiring first (ties by id); the rest is non-expiring.
	 */
	[CQ_SPEND] = {
		"WITH c AS (SELECT id, remaining,"
		"  pg_catalog.sum(remaining) OVER (ORDER BY expires_at, id) AS upto"
		"  FROM credits.grants WHERE user_id = $1 AND expires_at > $4"
		"  AND remaining > 0),"
		" d AS (SELECT id, LEAST(remaining::pg_catalog.numeric, $3 - (upto - remaining))"
		"  ::pg_catalog.int8 AS take FROM c WHERE upto - remaining < $3),"
		" g AS (UPDATE credits.grants gr SET remaining = gr.remaining - d.take"
		"  FROM d WHERE gr.id = d.id RETURNING d.take)"
		" UPDATE credits.accounts SET balance = balance - $2,"
		" expiring = expiring - (SELECT coalesce(pg_catalog.sum(take), 0) FROM g)::pg_catalog.int8,"
		" version = version + 1, updated_at = pg_catalog.now()"
		" WHERE user_id = $1 RETURNING balance",
		4, {TEXTOID, INT8OID, INT8OID, TIMESTAMPTZOID}, SPI_OK_UPDATE_RETURNING
	},
	/* reserve up to $2 from unexpired grants the same way, for a hold */
	[CQ_RESERVE] = {
		"WITH c AS (SELECT id, remaining,"
		"  pg_catalog.sum(remaining) OVER (ORDER BY expires_at, id) AS upto"
		"  FROM credits.grants WHERE user_id = $1 AND expires_at > $3"
		"  AND remaining > 0),"
		" d AS (SELECT id, LEAST(remaining::pg_catalog.numeric, $2 - (upto - remaining))"
		"  ::pg_catalog.int8 AS take FROM c WHERE upto - remaining < $2),"
		" g AS (UPDATE credits.grants gr SET remaining = gr.remaining - d.take,"
		"  reserved = gr.reserved + d.take FROM d WHERE gr.id = d.id"
		"  RETURNING gr.id, gr.expires_at, d.take)"
		" SELECT coalesce(pg_catalog.array_agg(id ORDER BY expires_at, id), '{}'),"
		" coalesce(pg_catalog.array_agg(take ORDER BY expires_at, id), '{}'),"
		" coalesce(pg_catalog.sum(take), 0)::pg_catalog.int8 FROM g",
		3, {TEXTOID, INT8OID, TIMESTAMPTZOID}, SPI_OK_SELECT
	},
	/* expires_at = $10 + ttl $5, in UTC (whatever the session's TimeZone) */
	[CQ_HOLD_INSERT] = {
		"INSERT INTO credits.holds (user_id, amount, action, metadata, expires_at,"
		" idempotency_key, grant_ids, grant_amounts, available_after)"
		" VALUES ($1, $2, $3, $4, (($10 AT TIME ZONE 'UTC') + $5) AT TIME ZONE 'UTC',"
		" $6, $7, $8, $9) RETURNING id",
		10, {TEXTOID, INT8OID, TEXTOID, JSONBOID, INTERVALOID, TEXTOID,
		INT8ARRAYOID, INT8ARRAYOID, INT8OID, TIMESTAMPTZOID}, SPI_OK_INSERT_RETURNING
	},
	[CQ_HOLD_USER] = {
		"SELECT user_id FROM credits.holds WHERE id = $1",
		1, {INT8OID}, SPI_OK_SELECT
	},
	/* a hold, and the ledger metadata of its capture with metadata $2 */
	[CQ_HOLD_GET] = {
		"SELECT user_id, amount, action, status, expires_at <= $3,"
		" grant_ids, grant_amounts, captured, capture_tx_id, capture_key,"
		" metadata || $2 || pg_catalog.jsonb_build_object('hold_id', id, 'held', amount),"
		" expires_at FROM credits.holds WHERE id = $1",
		3, {INT8OID, JSONBOID, TIMESTAMPTZOID}, SPI_OK_SELECT
	},
	[CQ_HOLD_CLOSE] = {
		"UPDATE credits.holds SET status = $2, closed_at = pg_catalog.now(),"
		" captured = $3, capture_tx_id = $4, capture_key = $5"
		" WHERE id = $1 AND status = 'open'",
		5, {INT8OID, TEXTOID, INT8OID, INT8OID, TEXTOID}, SPI_OK_UPDATE
	},
	[CQ_LEDGER_ROW] = {
		"SELECT balance_after, created_at FROM credits.ledger WHERE id = $1",
		1, {INT8OID}, SPI_OK_SELECT
	},
	[CQ_USERS_DUE_HOLDS] = {
		"SELECT DISTINCT user_id FROM credits.holds"
		" WHERE status = 'open' AND expires_at <= $1 AND user_id > $2"
		" ORDER BY user_id LIMIT $3",
		3, {TIMESTAMPTZOID, TEXTOID, INT4OID}, SPI_OK_SELECT
	},
	[CQ_USERS_DUE_GRANTS] = {
		"SELECT DISTINCT user_id FROM credits.grants"
		" WHERE expires_at <= $1 AND (remaining > 0 OR reserved > 0) AND user_id > $2"
		" ORDER BY user_id LIMIT $3",
		3, {TIMESTAMPTZOID, TEXTOID, INT4OID}, SPI_OK_SELECT
	},
	/* add $2 to the balance, $3 of it expiring; opens the account */
	[CQ_GRANT_UPSERT] = {
		"INSERT INTO credits.accounts AS a (user_id, balance, expiring) VALUES ($1, $2, $3)"
		" ON CONFLICT (user_id) DO UPDATE SET balance = a.balance + excluded.balance,"
		" expiring = a.expiring + excluded.expiring,"
		" version = a.version + 1, updated_at = pg_catalog.now()"
		" WHERE a.balance <= 9223372036854775807 - excluded.balance"
		" RETURNING a.balance",
		3, {TEXTOID, INT8OID, INT8OID}, SPI_OK_INSERT_RETURNING
	},
	/* the grant row, and the metadata of its ledger row */
	[CQ_GRANT_INSERT] = {
		"INSERT INTO credits.grants (user_id, source, amount, expires_at, remaining,"
		" reserved, expired, metadata, idempotency_key)"
		" VALUES ($1, $2, $3, $4, CASE WHEN $4 IS NULL THEN NULL ELSE $3 END,"
		" CASE WHEN $4 IS NULL THEN NULL ELSE 0 END,"
		" CASE WHEN $4 IS NULL THEN NULL ELSE 0 END, $5, $6)"
		" RETURNING id, $5 || pg_catalog.jsonb_build_object('grant_id', id,"
		" 'source', source, 'expires_at', expires_at)",
		6, {TEXTOID, TEXTOID, INT8OID, TIMESTAMPTZOID, JSONBOID, TEXTOID},
		SPI_OK_INSERT_RETURNING
	},

	/*
	 * The price of $2 units of action $1 in force now: the cost (NULL if it
	 * exceeds bigint) and metadata $3 with the price used.
	 */
	[CQ_PRICE] = {
		"SELECT c.cost, c.carry, p.rate, p.per_call,"
		" $3 || pg_catalog.jsonb_build_object('price',"
		"  pg_catalog.jsonb_build_object('rate', p.rate, 'unit', p.unit,"
		"  'quantity', $2, 'rounding', p.rounding, 'per_call', p.per_call,"
		"  'valid_from', p.valid_from)), c.carry = x.before"
		" FROM (SELECT unit, rate, rounding, per_call, valid_from FROM credits.prices"
		"  WHERE action = $1 AND valid_from <= $5"
		"  ORDER BY valid_from DESC LIMIT 1) p"
		" CROSS JOIN LATERAL (SELECT $2 * p.rate AS exact,"
		"  CASE WHEN NOT p.per_call THEN coalesce((SELECT carry FROM credits.carries"
		"   WHERE user_id = $4 AND action = $1), 0) END AS before) x"
		" CROSS JOIN LATERAL (SELECT CASE WHEN NOT p.per_call AND $4 IS NOT NULL"
		"  THEN pg_catalog.floor(x.before + x.exact)"
		"  WHEN p.rounding = 'up' THEN pg_catalog.ceil(x.exact)"
		"  WHEN p.rounding = 'down' THEN pg_catalog.floor(x.exact)"
		"  ELSE pg_catalog.round(x.exact) END AS raw) r"
		" CROSS JOIN LATERAL (SELECT CASE WHEN r.raw <= 9223372036854775807"
		"  THEN r.raw::pg_catalog.int8 END AS cost,"
		"  pg_catalog.trim_scale(x.before + x.exact - r.raw) AS carry) c",
		5, {TEXTOID, NUMERICOID, JSONBOID, TEXTOID, TIMESTAMPTZOID}, SPI_OK_SELECT
	},
	/* a metered charge's carry after it; the account row is locked */
	[CQ_CARRY_SET] = {
		"INSERT INTO credits.carries AS c (user_id, action, carry, updated_at)"
		" VALUES ($1, $2, $3, pg_catalog.now())"
		" ON CONFLICT (user_id, action) DO UPDATE SET carry = excluded.carry,"
		" updated_at = excluded.updated_at",
		3, {TEXTOID, TEXTOID, NUMERICOID}, SPI_OK_INSERT
	},

	[CQ_PLAN] = {
		"SELECT allowance, period::pg_catalog.interval, policy, rollover_cap FROM credits.plans"
		" WHERE plan = $1 AND valid_from <= $2 ORDER BY valid_from DESC LIMIT 1",
		2, {TEXTOID, TIMESTAMPTZOID}, SPI_OK_SELECT
	},
	[CQ_SUB_INSERT] = {
		"INSERT INTO credits.subscriptions (user_id, plan, ends_at, anchor, renews_at)"
		" VALUES ($1, $2, $3, $4, $4)"
		" ON CONFLICT (user_id) DO NOTHING RETURNING user_id",
		4, {TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID}, SPI_OK_INSERT_RETURNING
	},
	[CQ_SUB_LOCK] = {
		"SELECT plan, ends_at, anchor, cycle, grant_id, renews_at, period_end"
		" FROM credits.subscriptions"
		" WHERE user_id = $1 FOR UPDATE",
		1, {TEXTOID}, SPI_OK_SELECT
	},
	/* a new plan: same anchor, no period granted yet, due now ($4) */
	[CQ_SUB_SET_PLAN] = {
		"UPDATE credits.subscriptions SET plan = $2, ends_at = $3,"
		" cycle = -1, period_start = NULL, period_end = NULL,"
		" grant_id = NULL, renews_at = $4, updated_at = pg_catalog.now()"
		" WHERE user_id = $1",
		4, {TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID}, SPI_OK_UPDATE
	},
	/*
	 * a new ends_at ($2) for the same plan; the current allowance, if it has
	 * not expired by $3, now expires at the period's end or at $2 if sooner
	 */
	[CQ_SUB_SET_END] = {
		"WITH s AS (UPDATE credits.subscriptions SET ends_at = $2,"
		"  renews_at = CASE WHEN period_end IS NULL THEN renews_at"
		"   ELSE LEAST(period_end, $2) END,"
		"  updated_at = pg_catalog.now() WHERE user_id = $1 RETURNING grant_id, period_end)"
		" UPDATE credits.grants g SET expires_at = LEAST(s.period_end, $2)"
		" FROM s WHERE g.id = s.grant_id AND g.user_id = $1 AND g.expires_at > $3",
		3, {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID}, SPI_OK_UPDATE
	},
	/* the next $3 subscriptions due by $1 after user $2 (not locked) */
	[CQ_SUBS_DUE] = {
		"SELECT user_id FROM credits.subscriptions WHERE renews_at <= $1 AND user_id > $2"
		" ORDER BY user_id LIMIT $3",
		3, {TIMESTAMPTZOID, TEXTOID, INT4OID}, SPI_OK_SELECT
	},
	/* a subscribe key: its binding and original result */
	[CQ_SUB_KEY_FIND] = {
		"SELECT plan, ends_at, period_start, period_end, granted, balance"
		" FROM credits.subscription_keys WHERE user_id = $1 AND idempotency_key = $2",
		2, {TEXTOID, TEXTOID}, SPI_OK_SELECT
	},
	[CQ_SUB_KEY_INSERT] = {
		"INSERT INTO credits.subscription_keys (user_id, idempotency_key, plan, ends_at,"
		" period_start, period_end, granted, balance) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
		8, {TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
		INT8OID, INT8OID}, SPI_OK_INSERT
	},
	/* one chunk of a job, for credits.run_jobs() (jobs.c) */
	[CQ_JOB_STEP] = {
		"SELECT last_user_id, accounts, items, skipped, failed"
		" FROM credits.run_job_step($1, $2, $3)",
		3, {TEXTOID, TEXTOID, INT4OID}, SPI_OK_SELECT
	},
	/* a job's failure on one account (jobs.c) */
	[CQ_JOB_FAILURE] = {
		"INSERT INTO credits.job_failures (job, user_id, sqlstate, message, detail)"
		" VALUES ($1, $2, $3, $4, $5)",
		5, {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID}, SPI_OK_INSERT
	},
	[CQ_ALLOWANCE_INSERT] = {
		"INSERT INTO credits.allowances (user_id, plan, period_start, period_end, allowance)"
		" VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1",
		5, {TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID},
		SPI_OK_INSERT_RETURNING
	},
	/* record the carried credit; returns the allowance grant's metadata */
	[CQ_ALLOWANCE_SET] = {
		"UPDATE credits.allowances SET carried = $4"
		" WHERE user_id = $1 AND plan = $2 AND period_start = $3"
		" RETURNING pg_catalog.jsonb_build_object('plan', plan,"
		" 'period_start', period_start, 'period_end', period_end,"
		" 'allowance', allowance, 'carried', carried)",
		4, {TEXTOID, TEXTOID, TIMESTAMPTZOID, INT8OID}, SPI_OK_UPDATE_RETURNING
	},
	[CQ_ALLOWANCE_GRANT] = {
		"UPDATE credits.allowances SET grant_id = $4, tx_id = $5"
		" WHERE user_id = $1 AND plan = $2 AND period_start = $3",
		5, {TEXTOID, TEXTOID, TIMESTAMPTZOID, INT8OID, INT8OID}, SPI_OK_UPDATE
	},
	[CQ_SUB_ADVANCE] = {
		"UPDATE credits.subscriptions SET plan = $2, ends_at = $3, anchor = $4,"
		" cycle = $5, period_start = $6, period_end = $7, grant_id = $8,"
		" renews_at = LEAST($7, $3), updated_at = pg_catalog.now() WHERE user_id = $1",
		8, {TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID,
		TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID}, SPI_OK_UPDATE
	},
	/* plan, plan end, period start, spent and tokens this period and ever */
	/* the sums are numeric: a bigint could overflow (README, credit_usage) */
	[CQ_USAGE] = {
		"WITH s AS (SELECT plan, ends_at, period_start,"
		"  ends_at <= $2 AND plan <> 'free' AS lapsed"
		"  FROM credits.subscriptions WHERE user_id = $1),"
		" p AS (SELECT coalesce((SELECT period_start FROM s),"
		"  pg_catalog.date_trunc('month', $2, 'UTC')) AS start),"
		" l AS (SELECT amount, created_at,"
		"  CASE WHEN pg_catalog.jsonb_typeof(metadata -> 'tokens') = 'number'"
		"   THEN (metadata ->> 'tokens')::pg_catalog.numeric"
		"   WHEN action = 'llm_tokens' AND quantity IS NOT NULL THEN quantity"
		"   WHEN action = 'llm_tokens'"
		"    AND pg_catalog.jsonb_typeof(metadata #> '{price,quantity}') = 'number'"
		"   THEN (metadata #>> '{price,quantity}')::pg_catalog.numeric"
		"   ELSE 0 END AS tokens"
		"  FROM credits.ledger WHERE user_id = $1 AND (amount < 0 OR quantity IS NOT NULL)"
		"  AND action <> 'expire')"
		" SELECT (SELECT CASE WHEN lapsed THEN 'free' ELSE plan END FROM s),"
		" (SELECT CASE WHEN lapsed THEN NULL ELSE ends_at END FROM s), p.start,"
		" coalesce(pg_catalog.sum(-l.amount) FILTER (WHERE l.created_at >= p.start), 0),"
		" coalesce(pg_catalog.sum(-l.amount), 0),"
		" coalesce(pg_catalog.round(pg_catalog.sum(l.tokens) FILTER (WHERE l.created_at >= p.start)), 0),"
		" coalesce(pg_catalog.round(pg_catalog.sum(l.tokens)), 0)"
		" FROM p LEFT JOIN l ON true GROUP BY p.start",
		2, {TEXTOID, TIMESTAMPTZOID}, SPI_OK_SELECT
	},
};

/*
 * Prepare and keep statement st under the pinned search_path (see
 * search_path.c).  Caller is connected.
 */
static SPIPlanPtr
prepare_statement(CreditsStatement *st)
{
	SPIPlanPtr	plan;
	int			nest = credits_pin_search_path();

	plan = SPI_prepare(st->sql, st->nargs, st->argtypes);
	credits_unpin_search_path(nest);

	if (plan == NULL)
		elog(ERROR, "credits: SPI_prepare failed for \"%s\": %s",
			 st->sql, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "credits: SPI_keepplan failed");
	return plan;
}

/* Connect to SPI.  Every call must be matched by credits_finish(). */
void
credits_connect(void)
{
	int			rc = SPI_connect();

	if (rc != SPI_OK_CONNECT)
		elog(ERROR, "credits: SPI_connect failed: %s", SPI_result_code_string(rc));
}

/* Disconnect from SPI, freeing the call's SPI memory. */
void
credits_finish(void)
{
	int			rc = SPI_finish();

	if (rc != SPI_OK_FINISH)
		elog(ERROR, "credits: SPI_finish failed: %s", SPI_result_code_string(rc));
}

/*
 * Run statement q; returns SPI_processed.  Caller must be connected.
 * read_only is true only for functions declared STABLE.
 */
uint64
credits_exec(CreditsQuery q, Datum *values, const char *nulls,
			 bool read_only, long tcount)
{
	CreditsStatement *st = &statements[q];
	int			rc;
	int			nest;

	Assert(q >= 0 && q < CQ__COUNT);
	if (st->plan == NULL)
		st->plan = prepare_statement(st);

	nest = credits_pin_search_path();
	rc = SPI_execute_plan(st->plan, values, nulls, read_only, tcount);
	credits_unpin_search_path(nest);
	if (rc != st->expect)
		elog(ERROR, "credits: unexpected SPI result %s for \"%s\"",
			 SPI_result_code_string(rc), st->sql);
	return SPI_processed;
}

/* Column col (1-based) of result row row (0-based).  Caller is connected. */
Datum
credits_get(int row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
						 col, isnull);
}

/* A NOT NULL bigint column of the last result. */
int64
credits_get_int64(int row, int col)
{
	bool		isnull;
	Datum		d = credits_get(row, col, &isnull);

	if (isnull)
		elog(ERROR, "credits: unexpected null in column %d", col);
	return DatumGetInt64(d);
}
