/*-------------------------------------------------------------------------
 *
 * pg.c
 *		credits-sync's PostgreSQL side: the connection, the version check,
 *		LISTEN, and the queries that read the outbox.
 *
 * Outbox reading is pgq's snapshot technique.  Every row of credits.ledger
 * and credits.account_events carries the id of the transaction that wrote
 * it (txid).  A batch consists of the rows whose transaction is visible in
 * snapshot cur and not in snapshot prev, where prev is the cursor (the cur
 * of the last complete batch).  A transaction in progress at cur is not
 * visible in cur, so its rows belong to a later batch: commits out of id
 * order are never skipped, and aborted transactions are never visible.
 *
 * One page is one statement, so it needs no explicit transaction: cur is
 * taken by the statement that reads the first page of a batch, and later
 * pages of the same batch filter by that cur's text.  The rows of a
 * committed transaction never change (the ledger is append-only), so a
 * later statement sees exactly the same rows.  Pages are ordered by
 * (txid, id), the order of the txid indexes.
 *
 * Pages are read the way pgq reads its queue (SQL_OUTBOX): the
 * transactions prev listed in progress that cur sees, by equality, plus
 * the range from prev's xmax to cur's.  A transaction held open (or
 * prepared) for hours costs each poll nothing but one entry in the
 * snapshots' lists; its rows are read by the first batch whose cur sees
 * it committed.
 *
 * A page also returns the accounts rows (balance, version, and available
 * and held as of the statement's now()) of every user it touches, read by
 * the same statement; they may be newer than cur, which is harmless
 * because Redis refuses older versions (and older (version, as_of) pairs).
 *
 * Expiries write nothing, so they are not in the outbox: SQL_EXPIRED finds
 * the users whose open hold or grant with credit passed its expires_at
 * since the last look, and reads their accounts the same way.
 *
 * A rebuild reads, in one REPEATABLE READ transaction, every account and
 * its newest rows, and then continues from that transaction's snapshot.
 *
 * Nothing here touches Redis.  All functions expect to be called from the
 * main loop only; any failure drops the connection (the caller reconnects
 * with backoff), so no half-done protocol state survives an error.
 *
 * Calls: main.c calls in; this file calls only status.c (errors, the
 * extension version seen), batch.c and log.c.  The batches it returns are
 * copied out of the PGresult into plain strings, so no libpq type leaves
 * this file.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "credits_sync.h"

/* Extension versions this daemon knows how to read. */
static const char *const known_versions[] = {
	CREDITS_SYNC_VERSION,
	NULL
};

static PGconn *conn = NULL;
static bool warned_not_preloaded = false;
static bool was_standby = false;	/* the last connect found a standby */

/* Budget of metadata bytes per page, so that huge metadata cannot blow up memory */
#define PAGE_BYTE_BUDGET "16777216"

/*
 * A ledger row's columns n, t, o, from which member_format() (batch.c)
 * builds its txs:<user> member and score in the daemon: created_at as
 * timestamptz_send gives it (bytea_output is hex for the session), the
 * metadata's text form, and "amount,balance_after,action".  Formatting the
 * JSON here rather than with json_build_object() for every row saves
 * PostgreSQL about a quarter of the instructions a page costs it.
 */
#define SQL_TX_COLUMNS(t) \
	"pg_catalog.timestamptz_send(" t ".created_at)::text, " t ".metadata::text," \
	" " t ".amount::text || ',' || " t ".balance_after::text || ',' || " t ".action"

/*
 * The columns a, b, n, t, o of the 'a' row of accounts row t (an alias
 * with every column): available (= credits.credit_available(user_id),
 * called only when the account has holds or expiring grants, the
 * function's own shortcut), held (open holds not yet expired), version,
 * balance and as_of, now() in epoch microseconds: the time available and
 * held are computed for.  now() is the transaction's start, the time
 * credit_available compares expires_at with; for the one-statement queries
 * it is that statement's start.
 */
#define SQL_ACCOUNT(t) \
	"(CASE WHEN " t ".held = 0 AND " t ".expiring = 0 THEN " t ".balance" \
	" ELSE credits.credit_available(" t ".user_id) END)::text," \
	" (CASE WHEN " t ".held = 0 THEN 0 ELSE (" \
	"   SELECT coalesce(sum(h.amount), 0) FROM credits.holds h" \
	"    WHERE h.user_id = " t ".user_id AND h.status = 'open'" \
	"      AND h.expires_at > now())::int8 END)::text," \
	" " t ".version::text, " t ".balance::text," \
	" (extract(epoch FROM now()) * 1000000)::int8::text"

/*
 * Result rows of every batch query have seven text columns (k, user_id, a,
 * b, n, t, o), ordered by user_id then k, with k:
 *	's'	one row, user_id NULL: a = more ledger rows in cur, b = more events,
 *		t = cur, o = the WAL insert position (page); or
 *		a = more users due, t = the expiry time checked up to, in epoch
 *		microseconds (expiry query)
 *	'a'	accounts row: n = version, t = balance, a = available, b = held,
 *		o = as_of (see SQL_ACCOUNT)
 *	'e'	account_events row: a = txid, b = id
 *	'l'	ledger row: a = txid (NULL when read for a rebuild), b = id, and
 *		n, t, o as SQL_TX_COLUMNS gives them
 */
/*
 * One part of a page: the rows of tbl (alias t) after position (pt, pi)
 * in (txid, id) order whose transaction is visible in cur and not in prev.
 * Read the way pgq reads its queue: the transactions listed in progress
 * in prev that cur sees (s.done, by equality on txid) and the range
 * [xmax of prev, xmax of cur) filtered by cur's list.  Nothing below
 * prev's xmax is scanned but the rows of s.done, so a poll costs the new
 * rows only, however old the oldest transaction in progress is.
 */
#define SQL_OUTBOX(tbl, t, cols, pt, pi) \
	"  SELECT q.* FROM s CROSS JOIN LATERAL (" \
	"   (SELECT " cols " FROM " tbl " " t \
	"     WHERE " t ".txid = ANY (s.done)" \
	"       AND (" t ".txid, " t ".id) > (" pt ", " pi ")" \
	"     ORDER BY " t ".txid, " t ".id LIMIT $7::int8)" \
	"   UNION ALL" \
	"   (SELECT " cols " FROM " tbl " " t \
	"     WHERE (" t ".txid, " t ".id) > (greatest(" pt ", s.lo - 1)," \
	"            CASE WHEN " pt " < s.lo THEN 9223372036854775807 ELSE " pi " END)" \
	"       AND " t ".txid < s.hi AND txid_visible_in_snapshot(" t ".txid, s.cur)" \
	"     ORDER BY " t ".txid, " t ".id LIMIT $7::int8)" \
	"  ) q ORDER BY q.txid, q.id LIMIT $7::int8"

/*
 * A ledger row's chain hash in hex, "-" when it is not 32 bytes (none, or
 * tampered with: the anchor check then compares "-" with "-", and
 * credit_verify() is what reports the row).
 */
#define SQL_HASH_HEX(t) \
	"CASE WHEN octet_length(" t ".hash) = 32 THEN encode(" t ".hash, 'hex') ELSE '-' END"

/*
 * The anchor (SyncAnchor's text form) of ledger rows l and account events
 * e: the newest (largest id) of each, with the ledger row's chain hash in
 * hex (SQL_HASH_HEX) and the event's txid.
 */
#define SQL_ANCHOR(l, e) \
	"(coalesce((SELECT x.id::text || ':' || " SQL_HASH_HEX("x") \
	"   FROM credits.ledger x WHERE x.id = (SELECT max(p.id) FROM " l " p)), '')" \
	" || '/' ||" \
	" coalesce((SELECT y.id::text || ':' || y.txid::text" \
	"   FROM " e " y ORDER BY y.id DESC LIMIT 1), ''))"

#define SQL_PAGE \
	"WITH s AS MATERIALIZED (" \
	"  SELECT p.prev, p.cur, txid_snapshot_xmax(p.prev) AS lo," \
	"         txid_snapshot_xmax(p.cur) AS hi," \
	"         ARRAY(SELECT x FROM txid_snapshot_xip(p.prev) x" \
	"                WHERE txid_visible_in_snapshot(x, p.cur)) AS done" \
	"    FROM (SELECT $1::txid_snapshot AS prev," \
	"          coalesce($2::txid_snapshot, txid_current_snapshot()) AS cur) p)," \
	" pl_all AS MATERIALIZED (" \
	"  SELECT r.*, sum(r.size) OVER (ORDER BY r.txid, r.id) AS run FROM (" \
	SQL_OUTBOX("credits.ledger", "l", "l.txid, l.id, l.user_id, l.amount," \
			   " l.balance_after, l.action, l.metadata, l.created_at," \
			   " pg_column_size(l.metadata) AS size", \
			   "$3::int8", "$4::int8") \
	"  ) r)," \
	" pl AS MATERIALIZED (" \
	"  SELECT * FROM pl_all WHERE run - size < " PAGE_BYTE_BUDGET ")," \
	" pe AS MATERIALIZED (" \
	SQL_OUTBOX("credits.account_events", "e", "e.id, e.txid, e.user_id", \
			   "$5::int8", "$6::int8") ")," \
	" u AS (SELECT user_id FROM pl UNION SELECT user_id FROM pe)" \
	"SELECT * FROM (" \
	" SELECT 's' AS k, NULL::text AS user_id," \
	"        ((SELECT count(*) FROM pl_all) >= $7::int8 OR" \
	"         (SELECT count(*) FROM pl) < (SELECT count(*) FROM pl_all))::text AS a," \
	"        ((SELECT count(*) FROM pe) >= $7::int8)::text AS b," \
	"        " SQL_ANCHOR("pl", "pe") " AS n," \
	"        s.cur::text AS t," \
	"        (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8::text AS o FROM s" \
	" UNION ALL" \
	" SELECT 'a', a.user_id, " SQL_ACCOUNT("a") \
	"   FROM u CROSS JOIN LATERAL (" \
	"    SELECT * FROM credits.accounts a WHERE a.user_id = u.user_id LIMIT 1) a" \
	" UNION ALL" \
	" SELECT 'e', pe.user_id, pe.txid::text, pe.id::text, NULL, NULL, NULL FROM pe" \
	" UNION ALL" \
	" SELECT 'l', pl.user_id, pl.txid::text, pl.id::text, " \
	SQL_TX_COLUMNS("pl") " FROM pl" \
	") x ORDER BY x.user_id COLLATE \"C\" NULLS FIRST, x.k"

/*
 * The newest rows of the users in CTE a: every row at or after the
 * millisecond of the window-th newest, so that the ties Redis orders by
 * member are all there; the Lua script trims to exactly window rows.
 */
#define SQL_NEWEST(where, limit) \
	"WITH a AS MATERIALIZED (" \
	"  SELECT * FROM credits.accounts" \
	"   WHERE " where " ORDER BY user_id LIMIT " limit ")" \
	"SELECT * FROM (" \
	" SELECT 'a' AS k, a.user_id, " SQL_ACCOUNT("a") " FROM a" \
	" UNION ALL" \
	" SELECT 'l', a.user_id, NULL, l.id::text, " SQL_TX_COLUMNS("l") \
	"   FROM a CROSS JOIN LATERAL (" \
	"    SELECT l.* FROM credits.ledger l" \
	"     WHERE l.user_id = a.user_id" \
	"       AND l.created_at >= coalesce((" \
	"        SELECT date_trunc('milliseconds', l2.created_at)" \
	"          FROM credits.ledger l2 WHERE l2.user_id = a.user_id" \
	"         ORDER BY l2.created_at DESC, l2.id DESC" \
	"        OFFSET $3::int8 - 1 LIMIT 1), '-infinity')) l" \
	") x ORDER BY x.user_id, x.k"

/*
 * Expiries: the accounts of users with an open hold or an unexpired grant
 * (credit left or reserved) whose expires_at passed in (lo, upto], lo =
 * $1 (epoch microseconds), upto = now(), or when more than $2 expiries
 * are due, the $2-th one (all ties included, so paging by upto skips
 * nothing).  Their available and held changed without any write.  The
 * indexes holds_open_expiry_idx and grants_due_idx serve both scans.
 */
#define SQL_HOLDS_DUE(lo, hi) \
	"SELECT h.user_id, h.expires_at FROM credits.holds h" \
	" WHERE h.status = 'open' AND h.expires_at > " lo " AND h.expires_at <= " hi
#define SQL_GRANTS_DUE(lo, hi) \
	"SELECT g.user_id, g.expires_at FROM credits.grants g" \
	" WHERE (g.remaining > 0 OR g.reserved > 0)" \
	"   AND g.expires_at > " lo " AND g.expires_at <= " hi
#define SQL_EXPIRED \
	"WITH s AS MATERIALIZED (" \
	"  SELECT '1970-01-01 00:00:00+00'::timestamptz" \
	"         + $1::int8 * interval '1 microsecond' AS lo, now() AS hi)," \
	" d AS MATERIALIZED (" \
	"  SELECT q.expires_at FROM s CROSS JOIN LATERAL (" \
	"   (" SQL_HOLDS_DUE("s.lo", "s.hi") " ORDER BY h.expires_at LIMIT $2::int8)" \
	"   UNION ALL" \
	"   (" SQL_GRANTS_DUE("s.lo", "s.hi") " ORDER BY g.expires_at LIMIT $2::int8)" \
	"  ) q ORDER BY q.expires_at LIMIT $2::int8)," \
	" e AS MATERIALIZED (" \
	"  SELECT s.lo, s.hi, CASE WHEN (SELECT count(*) FROM d) >= $2::int8" \
	"   THEN (SELECT max(d.expires_at) FROM d) ELSE s.hi END AS upto FROM s)," \
	" u AS (" \
	"  SELECT q.user_id FROM e CROSS JOIN LATERAL (" SQL_HOLDS_DUE("e.lo", "e.upto") ") q" \
	"  UNION" \
	"  SELECT q.user_id FROM e CROSS JOIN LATERAL (" SQL_GRANTS_DUE("e.lo", "e.upto") ") q)" \
	"SELECT * FROM (" \
	" SELECT 's' AS k, NULL::text AS user_id, (e.upto < e.hi)::text AS a," \
	"        NULL::text AS b, NULL::text AS n," \
	"        (extract(epoch FROM e.upto) * 1000000)::int8::text AS t," \
	"        NULL::text AS o FROM e" \
	" UNION ALL" \
	" SELECT 'a', a.user_id, " SQL_ACCOUNT("a") \
	"   FROM u CROSS JOIN LATERAL (" \
	"    SELECT * FROM credits.accounts a WHERE a.user_id = u.user_id LIMIT 1) a" \
	") x ORDER BY x.user_id NULLS FIRST, x.k"

#define SQL_REBUILD_CHUNK	SQL_NEWEST("user_id > $1::text", "$2::int8")
#define SQL_USER			SQL_NEWEST("user_id = $1::text", "$2::int8")

/*
 * Of the user ids in $1 (a text[]), the positions (from 1) of those
 * without an account: their keys
 * are left over from a history that PostgreSQL no longer has.
 */
#define SQL_GONE \
	"SELECT x.i::text FROM unnest($1::text[]) WITH ORDINALITY x(u, i)" \
	" WHERE NOT EXISTS (SELECT FROM credits.accounts a WHERE a.user_id = x.u)"

/*
 * Where this server's history is: system identifier, timeline (of the WAL
 * being written, from the name of its segment), WAL insert position and
 * the next transaction id.  Also whether it is a standby, which reads
 * nothing else.
 */
#define SQL_HISTORY \
	"SELECT pg_is_in_recovery()::text," \
	" (SELECT system_identifier FROM pg_control_system())::text," \
	" CASE WHEN NOT pg_is_in_recovery() THEN" \
	"  ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int8::text END," \
	" CASE WHEN NOT pg_is_in_recovery() THEN" \
	"  (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8::text END," \
	" txid_snapshot_xmax(txid_current_snapshot())::text"

/*
 * What this server has under the anchor's ids: the ledger row's chain hash
 * in hex ("-" if it is not 32 bytes) and the event's txid, NULL where no
 * such row exists.
 */
#define SQL_ANCHOR_CHECK \
	"SELECT (SELECT " SQL_HASH_HEX("l") " FROM credits.ledger l" \
	"         WHERE l.id = $1::int8)," \
	"       (SELECT e.txid::text FROM credits.account_events e WHERE e.id = $2::int8)"

/* Prepared once per connection */
static const struct
{
	const char *name;
	const char *sql;
}			statements[] = {
	{"page", SQL_PAGE},
	{"rebuild_chunk", SQL_REBUILD_CHUNK},
	{"user", SQL_USER},
	{"expired", SQL_EXPIRED},
	{"gone", SQL_GONE},
	{"history", SQL_HISTORY},
	{"anchor", SQL_ANCHOR_CHECK},
};

/* Column numbers of the batch queries */
enum
{
	COL_K, COL_USER, COL_A, COL_B, COL_N, COL_T, COL_O, NCOLS
};

/* ------------------------------------------------------------------ */

/* Records a failure in the log and the status (status.c); drops nothing. */
static void
pg_fail(const char *what, const char *msg)
{
	log_error("PostgreSQL: %s: %s", what, msg);
	status_error(SIDE_POSTGRES, "PostgreSQL: %s: %s", what, msg);
}

/* conn is open.  Runs sql (no parameters), expecting status ok. */
static bool
exec_simple(const char *sql, ExecStatusType ok, PGresult **out)
{
	PGresult   *res = PQexec(conn, sql);

	if (res == NULL || PQresultStatus(res) != ok)
	{
		pg_fail(sql, res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
		PQclear(res);
		return false;
	}
	if (out)
		*out = res;
	else
		PQclear(res);
	return true;
}

/* Any time. */
bool
pg_connected(void)
{
	return conn != NULL;
}

/* Any time. */
void
pg_disconnect(void)
{
	if (conn != NULL)
	{
		PQfinish(conn);
		conn = NULL;
	}
}

/* pg_connected(). */
int
pg_socket(void)
{
	return PQsocket(conn);
}

/*
 * Not connected.  Connects, checks the extension version, prepares the
 * statements and LISTENs.  PGS_FATAL means the version is not supported.
 */
PgStatus
pg_connect(const SyncConfig *cfg)
{
	const char *keys[4];
	const char *vals[4];
	char		timeout[16];
	PGresult   *res;
	const char *ver;
	bool		known = false;

	snprintf(timeout, sizeof(timeout), "%d", cfg->connect_timeout);
	keys[0] = "connect_timeout";
	vals[0] = timeout;
	keys[1] = "fallback_application_name";
	vals[1] = "credits-sync";
	keys[2] = "dbname";
	vals[2] = cfg->dbname;		/* NULL: libpq's environment and defaults */
	keys[3] = NULL;
	vals[3] = NULL;

	conn = PQconnectdbParams(keys, vals, 1);
	if (conn == NULL || PQstatus(conn) != CONNECTION_OK)
	{
		pg_fail("connect", conn ? PQerrorMessage(conn) : "out of memory");
		pg_disconnect();
		return PGS_RETRY;
	}

	/*
	 * The batch queries are planned once: their plans (index scans on
	 * (txid, id) and on the primary keys) do not depend on the parameters,
	 * and custom plans would cost more to plan than to run.
	 */
	if (!exec_simple("SET search_path = pg_catalog; SET TimeZone = 'UTC';"
					 " SET bytea_output = 'hex';"
					 " SET statement_timeout = 0;"
					 " SET idle_in_transaction_session_timeout = 0;"
					 " SET plan_cache_mode = force_generic_plan",
					 PGRES_COMMAND_OK, NULL))
		goto retry;

	if (!exec_simple("SELECT extversion FROM pg_catalog.pg_extension"
					 " WHERE extname = 'credits'", PGRES_TUPLES_OK, &res))
		goto retry;
	if (PQntuples(res) != 1)
	{
		PQclear(res);
		pg_fail("connect", "extension \"credits\" is not installed in this database");
		goto retry;
	}
	ver = PQgetvalue(res, 0, 0);
	status_set_extension_version(ver);
	for (int i = 0; known_versions[i] != NULL; i++)
		if (strcmp(ver, known_versions[i]) == 0)
			known = true;
	if (!known)
	{
		log_error("extension \"credits\" version %s is not supported by credits-sync %s; install the matching credits-sync",
				  ver, CREDITS_SYNC_VERSION);
		status_error(SIDE_POSTGRES, "unsupported extension version %s", ver);
		PQclear(res);
		pg_disconnect();
		return PGS_FATAL;
	}
	PQclear(res);

	for (size_t i = 0; i < sizeof(statements) / sizeof(statements[0]); i++)
	{
		res = PQprepare(conn, statements[i].name, statements[i].sql, 0, NULL);
		if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
		{
			pg_fail("prepare", res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
			PQclear(res);
			goto retry;
		}
		PQclear(res);
	}

	{
		PgHistory	h;
		PgStatus	st = pg_read_history(&h);

		if (st != PGS_OK)
		{
			pg_disconnect();
			return st;
		}
	}
	was_standby = false;

	if (!exec_simple("LISTEN " SYNC_CHANNEL, PGRES_COMMAND_OK, NULL))
		goto retry;

	log_info("connected to PostgreSQL (database \"%s\", server %d, extension credits %s)",
			 PQdb(conn), PQserverVersion(conn), CREDITS_SYNC_VERSION);
	return PGS_OK;

retry:
	pg_disconnect();
	return PGS_RETRY;
}

/* pg_connected().  Reads pending notifications; *count gets how many. */
PgStatus
pg_take_notifies(int *count)
{
	PGnotify   *n;

	*count = 0;
	if (!PQconsumeInput(conn))
	{
		pg_fail("wait for notification", PQerrorMessage(conn));
		return PGS_RETRY;
	}
	while ((n = PQnotifies(conn)) != NULL)
	{
		(*count)++;
		PQfreemem(n);
	}
	return PGS_OK;
}

/*
 * pg_connected(), no transaction open.  Arms the writers' NOTIFY
 * (credits.sync_arm()); *committing gets the number of writers that were
 * between reading the flag and the end of their commit when it was set (0
 * when wake-ups are not coalesced: then every writer notifies).
 * poll_interval is only for the warning.
 */
PgStatus
pg_sync_arm(int poll_interval, int *committing)
{
	PGresult   *res;
	int			n;

	*committing = 0;
	if (!exec_simple("SELECT credits.sync_arm()", PGRES_TUPLES_OK, &res))
		return PGS_RETRY;
	n = PQntuples(res) == 1 ? atoi(PQgetvalue(res, 0, 0)) : 0;
	if (n < 0 && !warned_not_preloaded)
	{
		log_warning("credits.sync_arm() returned %d: wake-ups are not coalesced (credits is not in shared_preload_libraries, so every writing transaction sends a NOTIFY, correct but slower; or no wake-up slot was free, so the daemon relies on its poll every %d ms)",
					n, poll_interval);
		warned_not_preloaded = true;
	}
	if (n > 0)
		*committing = n;
	PQclear(res);
	return PGS_OK;
}

/* ------------------------------------------------------------------ */

/* s is NUL-terminated.  True if it looks like pg_snapshot text. */
bool
snapshot_valid(const char *s)
{
	int			colons = 0;
	const char *p = s;

	if (s == NULL || *s == '\0')
		return false;
	for (; *p; p++)
	{
		if (*p == ':')
			colons++;
		else if (!(*p >= '0' && *p <= '9') && !(*p == ',' && colons == 2))
			return false;
	}
	return colons == 2 && s[0] != ':';
}

/* snapshot_valid(s). */
uint64_t
snapshot_xmin(const char *s)
{
	return strtoull(s, NULL, 10);
}

/* snapshot_valid(s). */
uint64_t
snapshot_xmax(const char *s)
{
	return strtoull(strchr(s, ':') + 1, NULL, 10);
}

/*
 * Count an outbox row of res (txid in COL_A, id in COL_B) and move the
 * page's last position (*txid, *id) up to it.
 */
static void
note_position(const PGresult *res, int r, int *rows, uint64_t *txid, int64_t *id)
{
	uint64_t	t = strtoull(PQgetvalue(res, r, COL_A), NULL, 10);
	int64_t		i = strtoll(PQgetvalue(res, r, COL_B), NULL, 10);

	(*rows)++;
	if (t > *txid || (t == *txid && i > *id))
	{
		*txid = t;
		*id = i;
	}
}

/*
 * b->strings has room for column c of row r of res and its NUL.  Copies
 * it there (at *off, which moves past it); returns the copy.
 */
static const char *
keep(SyncBatch *b, size_t *off, const PGresult *res, int r, int c)
{
	size_t		len = (size_t) PQgetlength(res, r, c);
	char	   *d = b->strings + *off;

	memcpy(d, PQgetvalue(res, r, c), len);
	d[len] = '\0';
	*off += len + 1;
	return d;
}

/*
 * res is a successful result of a batch query (see the column layout
 * above); b is zeroed.  Copies its rows into b, grouped by user; res stays
 * the caller's.
 */
static bool
batch_fill(SyncBatch *b, const PGresult *res)
{
	int			nrows = PQntuples(res);
	size_t		bytes = 1;
	int			nl = 0;
	size_t		off = 0;

	if (PQnfields(res) != NCOLS)
	{
		pg_fail("read batch", "unexpected result shape");
		return false;
	}

	/* Room for every column but k, each with a NUL, and the members' ids */
	for (int r = 0; r < nrows; r++)
	{
		for (int c = COL_USER; c < NCOLS; c++)
			bytes += (size_t) PQgetlength(res, r, c) + 1;
		if (PQgetvalue(res, r, COL_K)[0] == 'l')
		{
			bytes += member_room((size_t) PQgetlength(res, r, COL_O),
								 (size_t) PQgetlength(res, r, COL_T)) + 24;
			nl++;
		}
	}
	b->strings = malloc(bytes);
	b->txs = malloc(sizeof(SyncTx) * (size_t) (nl + 1));
	b->users_cap = nrows + 1;
	b->users = malloc(sizeof(SyncUser) * (size_t) b->users_cap);
	if (b->strings == NULL || b->txs == NULL || b->users == NULL)
	{
		pg_fail("read batch", "out of memory");
		return false;
	}
	b->txs_cap = nl + 1;

	for (int r = 0; r < nrows; r++)
	{
		char		k = PQgetvalue(res, r, COL_K)[0];
		const char *uid;
		size_t		uid_len;
		SyncUser   *u;

		if (k == 's')
		{
			b->cur = strdup(PQgetvalue(res, r, COL_T));
			if (b->cur == NULL)
				return false;
			b->ledger_more = strcmp(PQgetvalue(res, r, COL_A), "true") == 0;
			b->event_more = strcmp(PQgetvalue(res, r, COL_B), "true") == 0;
			if (!PQgetisnull(res, r, COL_O))
				b->lsn = strtoull(PQgetvalue(res, r, COL_O), NULL, 10);
			if (!PQgetisnull(res, r, COL_N) &&
				!anchor_parse(PQgetvalue(res, r, COL_N), &b->anchor))
			{
				pg_fail("read page", "malformed anchor");
				return false;
			}
			continue;
		}

		uid = PQgetvalue(res, r, COL_USER);
		uid_len = (size_t) PQgetlength(res, r, COL_USER);
		u = b->nusers > 0 ? &b->users[b->nusers - 1] : NULL;
		if (u == NULL || u->uid_len != uid_len || memcmp(u->uid, uid, uid_len) != 0)
		{
			u = &b->users[b->nusers++];
			memset(u, 0, sizeof(*u));
			u->uid = keep(b, &off, res, r, COL_USER);
			u->uid_len = uid_len;
			u->tx_first = b->ntxs;
			b->bytes += uid_len;
		}

		switch (k)
		{
			case 'a':
				u->version = keep(b, &off, res, r, COL_N);
				u->values[0] = keep(b, &off, res, r, COL_T);
				u->values[1] = keep(b, &off, res, r, COL_A);
				u->values[2] = keep(b, &off, res, r, COL_B);
				u->as_of = keep(b, &off, res, r, COL_O);
				break;
			case 'e':
				note_position(res, r, &b->event_rows, &b->event_txid, &b->event_id);
				break;
			case 'l':
				{
					SyncTx	   *tx = &b->txs[b->ntxs++];
					char	   *dst = b->strings + off;
					int64_t		score;
					int			n;

					tx->member = dst;
					tx->member_len =
						member_format(dst, PQgetvalue(res, r, COL_B),
									  PQgetvalue(res, r, COL_O),
									  (size_t) PQgetlength(res, r, COL_O),
									  PQgetvalue(res, r, COL_T),
									  (size_t) PQgetlength(res, r, COL_T),
									  PQgetvalue(res, r, COL_N), &score);
					if (tx->member_len == 0)
					{
						pg_fail("read batch", "malformed ledger row");
						return false;
					}
					dst[tx->member_len] = '\0';
					off += tx->member_len + 1;
					b->bytes += tx->member_len;
					n = snprintf(b->strings + off, 24, "%" PRId64, score);
					tx->score = b->strings + off;
					off += (size_t) n + 1;
					u->tx_count++;
					if (score > b->newest_ms)
						b->newest_ms = score;
					if (!PQgetisnull(res, r, COL_A))
						note_position(res, r, &b->ledger_rows, &b->ledger_txid,
									  &b->ledger_id);
					break;
				}
			default:
				pg_fail("read batch", "unexpected row kind");
				return false;
		}
	}
	return true;
}

/*
 * conn is open; params has nparams NUL-terminated text values (a text
 * parameter cannot contain NUL, nor can a user id).  Runs a prepared batch
 * query into b.
 */
static PgStatus
exec_batch(const char *stmt, int nparams, const char *const *params,
		   SyncBatch *b)
{
	PGresult   *res;

	memset(b, 0, sizeof(*b));
	res = PQexecPrepared(conn, stmt, nparams, params, NULL, NULL, 0);
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		pg_fail(stmt, res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
		PQclear(res);
		return PGS_RETRY;
	}
	if (!batch_fill(b, res))
	{
		PQclear(res);
		batch_clear(b);
		return PGS_RETRY;
	}
	PQclear(res);
	return PGS_OK;
}

/*
 * pg_connected(), no transaction open; c->prev is a valid snapshot.  Reads
 * the next page of the outbox into b (zeroed by this function).  With
 * c->cur NULL the page starts a new batch and b->cur is its snapshot.
 * b->ledger_more / b->event_more say whether rows remain in cur.
 */
PgStatus
pg_read_page(const SyncCursor *c, int batch_size, SyncBatch *b)
{
	char		lt[24],
				li[24],
				et[24],
				ei[24],
				lim[16];
	const char *params[7];
	PgStatus	st;

	if (c->cur != NULL)
	{
		snprintf(lt, sizeof(lt), "%" PRIu64, c->ledger_txid);
		snprintf(li, sizeof(li), "%" PRId64, c->ledger_id);
		snprintf(et, sizeof(et), "%" PRIu64, c->event_txid);
		snprintf(ei, sizeof(ei), "%" PRId64, c->event_id);
	}
	else
	{
		/* A new batch starts at its beginning (see SQL_OUTBOX) */
		snprintf(lt, sizeof(lt), "0");
		snprintf(li, sizeof(li), "0");
		snprintf(et, sizeof(et), "0");
		snprintf(ei, sizeof(ei), "0");
	}
	snprintf(lim, sizeof(lim), "%d", batch_size);
	params[0] = c->prev;
	params[1] = c->cur;
	params[2] = lt;
	params[3] = li;
	params[4] = et;
	params[5] = ei;
	params[6] = lim;

	st = exec_batch("page", 7, params, b);
	if (st != PGS_OK)
		return st;
	if (b->cur == NULL)
	{
		pg_fail("read page", "no snapshot row");
		batch_clear(b);
		return PGS_RETRY;
	}
	/* Positions not advanced by this page stay where they were. */
	if (b->ledger_rows == 0)
	{
		b->ledger_txid = strtoull(lt, NULL, 10);
		b->ledger_id = strtoll(li, NULL, 10);
	}
	if (b->event_rows == 0)
	{
		b->event_txid = strtoull(et, NULL, 10);
		b->event_id = strtoll(ei, NULL, 10);
	}
	return PGS_OK;
}

/*
 * pg_connected(), no transaction open.  Opens the rebuild's REPEATABLE
 * READ transaction; *snapshot (malloc'd) gets its snapshot, as_of its
 * now() in epoch microseconds (the as_of of every value the rebuild reads)
 * and *lsn the WAL insert position.
 */
PgStatus
pg_rebuild_begin(char **snapshot, char *as_of, size_t as_of_size,
				 uint64_t *lsn, SyncAnchor *anchor)
{
	PGresult   *res;
	bool		ok;

	*snapshot = NULL;
	if (!exec_simple("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
					 PGRES_COMMAND_OK, NULL))
		return PGS_RETRY;
	if (!exec_simple("SELECT pg_current_snapshot()::text,"
					 " (extract(epoch FROM now()) * 1000000)::int8::text,"
					 " (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8::text, "
					 SQL_ANCHOR("credits.ledger", "credits.account_events"),
					 PGRES_TUPLES_OK, &res))
		return PGS_RETRY;
	*snapshot = strdup(PQgetvalue(res, 0, 0));
	snprintf(as_of, as_of_size, "%s", PQgetvalue(res, 0, 1));
	*lsn = strtoull(PQgetvalue(res, 0, 2), NULL, 10);
	ok = anchor_parse(PQgetvalue(res, 0, 3), anchor);
	PQclear(res);
	if (!ok)
	{
		pg_fail("begin rebuild", "malformed anchor");
		return PGS_RETRY;
	}
	return *snapshot ? PGS_OK : PGS_RETRY;
}

/*
 * Inside the rebuild transaction.  Reads the next nusers accounts after
 * user id after (NUL-terminated; "" for the first chunk) with their newest
 * rows.  b->nusers == 0 means done.
 */
PgStatus
pg_rebuild_chunk(const char *after, int nusers, int window, SyncBatch *b)
{
	char		n[16],
				w[16];
	const char *params[3];

	snprintf(n, sizeof(n), "%d", nusers);
	snprintf(w, sizeof(w), "%d", window);
	params[0] = after;
	params[1] = n;
	params[2] = w;
	return exec_batch("rebuild_chunk", 3, params, b);
}

/* Inside the rebuild transaction. */
PgStatus
pg_rebuild_end(void)
{
	return exec_simple("COMMIT", PGRES_COMMAND_OK, NULL) ? PGS_OK : PGS_RETRY;
}

/*
 * pg_connected(), no transaction open; uid is NUL-terminated.  Reads one
 * user's account and newest rows (to rewrite a txs key that had the wrong
 * type).
 */
PgStatus
pg_read_user(const char *uid, int window, SyncBatch *b)
{
	char		w[16];
	const char *params[3];

	snprintf(w, sizeof(w), "%d", window);
	params[0] = uid;
	params[1] = "1";
	params[2] = w;
	return exec_batch("user", 3, params, b);
}

/*
 * pg_connected(), no transaction open; since is a decimal number of epoch
 * microseconds.  Reads the accounts of the users with a hold or grant
 * that expired after since (at most about limit expiries; see
 * SQL_EXPIRED) into b, with b->checked = the time checked up to and
 * b->ledger_more = more expiries are due before now().
 */
PgStatus
pg_read_expired(const char *since, int limit, SyncBatch *b)
{
	char		lim[16];
	const char *params[2];
	PgStatus	st;

	snprintf(lim, sizeof(lim), "%d", limit);
	params[0] = since;
	params[1] = lim;
	st = exec_batch("expired", 2, params, b);
	if (st != PGS_OK)
		return st;
	if (b->cur == NULL || strlen(b->cur) >= sizeof(b->checked))
	{
		pg_fail("read expiries", "no time row");
		batch_clear(b);
		return PGS_RETRY;
	}
	strcpy(b->checked, b->cur);
	return PGS_OK;
}

/*
 * pg_connected(), no transaction open.  Reads where the server's history
 * is (see SQL_HISTORY) into *h.  A standby is PGS_RETRY, after a clear
 * error: on a hot standby a snapshot does not list the primary's
 * transactions in progress, so reading it could skip rows.
 */
PgStatus
pg_read_history(PgHistory *h)
{
	PGresult   *res = PQexecPrepared(conn, "history", 0, NULL, NULL, NULL, 0);

	memset(h, 0, sizeof(*h));
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
	{
		pg_fail("read history", res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
		PQclear(res);
		return PGS_RETRY;
	}
	if (strcmp(PQgetvalue(res, 0, 0), "true") == 0)
	{
		if (!was_standby)
			log_error("PostgreSQL server %s:%s is a standby (pg_is_in_recovery()): credits-sync reads only a primary; retrying",
				  PQhost(conn), PQport(conn));
		status_error(SIDE_POSTGRES, "PostgreSQL is a standby (pg_is_in_recovery()): credits-sync reads only a primary");
		was_standby = true;
		PQclear(res);
		return PGS_STANDBY;
	}
	snprintf(h->sysid, sizeof(h->sysid), "%s", PQgetvalue(res, 0, 1));
	h->tli = (uint32_t) strtoul(PQgetvalue(res, 0, 2), NULL, 10);
	h->lsn = strtoull(PQgetvalue(res, 0, 3), NULL, 10);
	h->next_xid = strtoull(PQgetvalue(res, 0, 4), NULL, 10);
	PQclear(res);
	return PGS_OK;
}

/*
 * pg_connected().  Checks that this server still has the rows anchor a
 * names (the newest ledger row and account event the cursor applied),
 * unchanged.  PGS_OK with why empty if so (or if a names none); PGS_OK
 * with why set to the difference if not: this is not the history the
 * cursor followed, although its WAL position and next xid may have passed
 * the cursor's (a restored copy written to for longer than what it lost).
 */
PgStatus
pg_check_anchor(const SyncAnchor *a, char *why, size_t why_size)
{
	char		lid[24],
				eid[24];
	const char *params[2] = {lid, eid};
	PGresult   *res;

	why[0] = '\0';
	if (a->lid <= 0 && a->eid <= 0)
		return PGS_OK;
	snprintf(lid, sizeof(lid), "%" PRId64, a->lid);
	snprintf(eid, sizeof(eid), "%" PRId64, a->eid);
	res = PQexecPrepared(conn, "anchor", 2, params, NULL, NULL, 0);
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
	{
		pg_fail("check anchor", res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
		PQclear(res);
		return PGS_RETRY;
	}
	if (a->lid > 0 && PQgetisnull(res, 0, 0))
		snprintf(why, why_size, "ledger row %" PRId64 ", the newest the cursor applied, does not exist",
				 a->lid);
	else if (a->lid > 0 && strcmp(PQgetvalue(res, 0, 0), a->lhash) != 0)
		snprintf(why, why_size, "ledger row %" PRId64 " is not the one the cursor applied (its hash differs)",
				 a->lid);
	else if (a->eid > 0 && PQgetisnull(res, 0, 1))
		snprintf(why, why_size, "account event %" PRId64 ", the newest the cursor applied, does not exist",
				 a->eid);
	else if (a->eid > 0 && strtoull(PQgetvalue(res, 0, 1), NULL, 10) != a->etxid)
		snprintf(why, why_size, "account event %" PRId64 " is not the one the cursor applied (its txid differs)",
				 a->eid);
	PQclear(res);
	return PGS_OK;
}

/*
 * *buf (malloc'd, *cap bytes) holds *len bytes.  Appends s (NUL-terminated) to a text[] literal being built
 * in *buf, quoted; false when out of memory.
 */
static bool
array_append(char **buf, size_t *len, size_t *cap, const char *s)
{
	size_t		need = *len + 2 * strlen(s) + 4;

	if (need > *cap)
	{
		size_t		ncap = need * 2;
		char	   *n = realloc(*buf, ncap);

		if (n == NULL)
			return false;
		*buf = n;
		*cap = ncap;
	}
	(*buf)[*len] = *len == 0 ? '{' : ',';
	(*len)++;
	(*buf)[(*len)++] = '"';
	for (const char *p = s; *p; p++)
	{
		if (*p == '"' || *p == '\\')
			(*buf)[(*len)++] = '\\';
		(*buf)[(*len)++] = *p;
	}
	(*buf)[(*len)++] = '"';
	return true;
}

/*
 * Inside the rebuild transaction; uids are n NUL-terminated user ids.
 * Sets gone[i] for those without an account in the rebuild's snapshot.
 */
PgStatus
pg_users_gone(char **uids, int n, bool *gone)
{
	char	   *buf = NULL;
	size_t		len = 0,
				cap = 0;
	const char *params[1];
	PGresult   *res;

	memset(gone, 0, sizeof(bool) * (size_t) n);
	if (n == 0)
		return PGS_OK;
	for (int i = 0; i < n; i++)
		if (!array_append(&buf, &len, &cap, uids[i]))
		{
			free(buf);
			pg_fail("gone users", "out of memory");
			return PGS_RETRY;
		}
	buf[len++] = '}';
	buf[len] = '\0';
	params[0] = buf;
	res = PQexecPrepared(conn, "gone", 1, params, NULL, NULL, 0);
	free(buf);
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		pg_fail("gone users", res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
		PQclear(res);
		return PGS_RETRY;
	}
	for (int r = 0; r < PQntuples(res); r++)
	{
		long		i = strtol(PQgetvalue(res, r, 0), NULL, 10);

		if (i >= 1 && i <= n)
			gone[i - 1] = true;
	}
	PQclear(res);
	return PGS_OK;
}
