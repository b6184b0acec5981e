/*-------------------------------------------------------------------------
 *
 * redis.c
 *		credits-sync's Redis side: the connection, the apply scripts, the
 *		cursor and the status hash.
 *
 * Layout (every key starts with the configured prefix P, "" by default):
 *	P balance:<user>	string, accounts.balance
 *	P available:<user>	string, credits.credit_available(user)
 *	P held:<user>		string, sum of the user's open, unexpired holds
 *	P txs:<user>		sorted set of the newest N ledger rows; score =
 *						created_at in epoch ms, member = compact JSON of the row
 *	companions			one per value key K above, in K's hash slot
 *						(keyslot.c: "{K}:v", or "{T}:v:K" when K has a "}"):
 *						for balance: the accounts.version last written, for
 *						available: and held: "<version> <as_of>" (as_of:
 *						epoch us they are for)
 *	P {sync}:cursor		string "<epoch> <window> <history> <prev> [<cur>
 *						<ltxid> <lid> <etxid> <eid>]": everything visible in
 *						snapshot prev (and, inside cur, up to the given (txid,
 *						id) positions) has been applied
 *	P {sync}:checked	string, epoch us: every hold or grant that expired up
 *						to then has been applied to available: and held:
 *	P {sync}:rebuild	set of the tokens of rebuilds in progress
 *	P sync:status		hash, the daemon's state (see status.c)
 * User ids are opaque bytes: keys are passed to Redis with explicit
 * lengths, never through a format string.
 *
 * Ready for Redis Cluster: no script call, and no command, touches keys of
 * two hash slots.  Every key a script touches is in its KEYS.  A batch is
 * applied in two steps:
 *
 *	1. Data (APPLY_LUA): one call per slot.  Each value key goes with its
 *	   companion; the call for a slot carries every such key of the batch
 *	   in that slot (several users only when they share it).  Rows need no
 *	   script: MULTI, ZADD, ZREMRANGEBYRANK, EXEC on the txs key (a script
 *	   only for a replacing rebuild, which empties the key first).  All of
 *	   a batch's calls are pipelined, then every reply is read.  A
 *	   value is written only if its version (balance:), or (version, as_of)
 *	   (available:, held:), is greater than its companion's: time alone
 *	   changes available/held at one version, as a hold or grant passes its
 *	   expiry (an equal one rewrites a missing or mistyped key).  Rows are
 *	   ZADDed (idempotent: a row's member and score never change), then the
 *	   key is trimmed to the newest N.  So every data call is idempotent and
 *	   a replay changes nothing.  These calls check no cursor: they may land
 *	   in a Redis that was flushed or rolled back since, where they write
 *	   true values of PostgreSQL under their guards, and step 2 notices.
 *	2. The cursor (CURSOR_LUA), only after every data reply was OK: the
 *	   global keys share the hash tag {sync}, so one call compares the whole
 *	   cursor (and sync:checked) with what the daemon wrote or read last and
 *	   sets the new ones; for a rebuild it checks the rebuild's token
 *	   instead.  On a mismatch (FLUSHALL, an empty restart, a rollback, a
 *	   replica promoted, another daemon's write) it writes nothing, and the
 *	   daemon resumes from what Redis holds, or rebuilds.  A crash between
 *	   the steps leaves the old cursor: the batch is replayed.
 *
 * A txs key of another type (WRONGTYPE) is deleted, and the daemon rewrites
 * it from PostgreSQL; any other error reply drops the connection before the
 * cursor moves.  Any error (I/O, timeout, error reply) drops the
 * connection; the caller reconnects with backoff and re-reads the cursor.
 *
 * Calls: main.c calls in; this file calls only status.c (errors, values
 * refused as older), keyslot.c (slots, companion names) and log.c.  It
 * knows nothing of PostgreSQL: a SyncBatch is plain C strings (batch.c),
 * and libpq is not included.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "credits_sync.h"


/* Limits of one data call */
#define CALL_MAX_MEMBERS	10000
#define CALL_MAX_BYTES		(8 * 1024 * 1024)

/*
 * Units of one data call to a standalone Redis, which has no slots: about
 * 200 users' three values.  Each call costs Redis a fixed overhead (the
 * command, the script's lookup and its arguments' conversion), which is
 * paid once for them all; and a call this size blocks Redis for well under
 * a millisecond.  A Redis Cluster gets one call per slot (plan_calls).
 */
#define CALL_STANDALONE_UNITS	600

/*
 * One call per hash slot: every key in KEYS is in one slot.
 * ARGV[1] mode: b (batch: report mistyped txs keys), r (rebuild: also trim
 * keys that got no new row) or R (rebuild replacing: also ignore the
 * companions' versions), ARGV[2] window, then units, each taking its keys
 * from KEYS in order:
 *	v|d, value, version, as_of		KEYS: value key, its companion.  v: guarded
 *		by the version alone (companion "<version>"); d: by (version,
 *		as_of) (companion "<version> <as_of>")
 *	t|T, user id, n, n (score, member) pairs	KEYS: the txs key.  T: delete
 *		it first (the first piece of a replacing rebuild)
 * Returns {'OK', number of values refused as older than Redis's, ids whose
 * txs key had to be deleted...}.
 */
static const char APPLY_LUA[] =
"local mode, window = ARGV[1], tonumber(ARGV[2])\n"
"local out, refused, a, k = {'OK', 0}, 0, 3, 1\n"
"while a <= #ARGV do\n"
"  local t = ARGV[a]\n"
"  if t == 't' or t == 'T' then\n"
"    local key, uid, n = KEYS[k], ARGV[a + 1], tonumber(ARGV[a + 2])\n"
"    local first = a + 3\n"
"    k, a = k + 1, first + 2 * n\n"
"    if t == 'T' then redis.call('DEL', key) end\n"
"    local i, added = 0, 0\n"
"    while i < n do\n"
"      local m = math.min(n - i, 500)\n"
"      local from, to = first + 2 * i, first + 2 * (i + m) - 1\n"
"      local r = redis.pcall('ZADD', key, unpack(ARGV, from, to))\n"
"      if type(r) == 'table' and r.err then\n"
"        if not string.find(r.err, 'WRONGTYPE', 1, true) then return r end\n"
"        redis.call('DEL', key)\n"
"        if mode == 'b' then out[#out + 1] = uid end\n"
"        r = redis.call('ZADD', key, unpack(ARGV, from, to))\n"
"      end\n"
"      added = added + r\n"
"      i = i + m\n"
"    end\n"
"    if added > 0 or mode ~= 'b' then\n"
"      redis.call('ZREMRANGEBYRANK', key, 0, -(window + 1))\n"
"    end\n"
"  else\n"
"    local key, comp = KEYS[k], KEYS[k + 1]\n"
"    local val, ver, asof = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]\n"
"    k, a = k + 2, a + 4\n"
"    local v, s, hv, hs = tonumber(ver), tonumber(asof), -1, -1\n"
"    if mode ~= 'R' then\n"
"      local c = redis.pcall('GET', comp)\n"
"      if type(c) == 'string' then\n"
"        if t == 'v' then\n"
"          hv = tonumber(string.match(c, '^(%d+)$') or '-1')\n"
"        else\n"
"          local x, y = string.match(c, '^(%d+) (%d+)$')\n"
"          if x then hv, hs = tonumber(x), tonumber(y) end\n"
"        end\n"
"      end\n"
"    end\n"
"    local newer = hv < v or (t == 'd' and hv == v and hs < s)\n"
"    local same = hv == v and (t == 'v' or hs == s)\n"
"    if not newer and not same then refused = refused + 1 end\n"
"    if newer or (same and redis.call('TYPE', key).ok ~= 'string') then\n"
"      if t == 'v' then\n"
"        redis.call('MSET', key, val, comp, ver)\n"
"      else\n"
"        redis.call('MSET', key, val, comp, ver .. ' ' .. asof)\n"
"      end\n"
"    end\n"
"  end\n"
"end\n"
"out[2] = refused\n"
"return out\n";

/*
 * The global keys, one slot (hash tag {sync}): KEYS[1] cursor, KEYS[2]
 * checked time, KEYS[3] rebuild token set.  ARGV[1] mode: b (compare the
 * whole cursor with ARGV[2], and sync:checked with ARGV[5] unless it is
 * ''), r (check only that the rebuild token ARGV[2] is registered) or f
 * (the same, then unregister it: the rebuild's end); ARGV[3] new cursor or
 * '', ARGV[4] new checked time or ''.  Returns 'OK', or 'STALE' having
 * written nothing.
 */
static const char CURSOR_LUA[] =
"local mode, expect, cursor, checked, expect_checked = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]\n"
"if mode == 'b' then\n"
"  if redis.pcall('GET', KEYS[1]) ~= expect then return 'STALE' end\n"
"  if expect_checked ~= '' and redis.pcall('GET', KEYS[2]) ~= expect_checked then\n"
"    return 'STALE'\n"
"  end\n"
"elseif redis.call('TYPE', KEYS[3]).ok ~= 'set' or\n"
"       redis.call('SISMEMBER', KEYS[3], expect) == 0 then\n"
"  return 'STALE'\n"
"end\n"
"if cursor ~= '' then redis.call('SET', KEYS[1], cursor) end\n"
"if checked ~= '' then redis.call('SET', KEYS[2], checked) end\n"
"if mode == 'f' then redis.call('SREM', KEYS[3], expect) end\n"
"return 'OK'\n";

/* Redis keys of the per-account values, in the order of SyncUser.values */
static const char *const sync_value_keys[SYNC_NVALUES] = {"balance:", "available:", "held:"};

/* Global keys of the layout before Redis Cluster, deleted by a rebuild */
static const char *const legacy_keys[] = {
	"sync:version", "sync:asof", "sync:cursor", "sync:checked", "sync:rebuild"
};

static char apply_sha[41];
static char cursor_sha[41];
static char *prefix = NULL;
static size_t prefix_len = 0;
static int	window = DEFAULT_WINDOW;
static char *key_cursor = NULL;
static char *key_rebuild = NULL;
static char *key_status = NULL;
static char *key_checked = NULL;
static int	slot_cursor = 0;		/* the slot of the {sync} keys */
static int	slot_status = 0;
static int	part_index = 0;		/* --partition p/n; part_count 0 if none */
static int	part_count = 0;
static bool rows_plain = true;	/* rows as MULTI/EXEC, not in script calls */
static bool sort_by_slot = true;	/* unit_cmp: by slot first (Redis Cluster) */

/* Growable argv for rc_append */
typedef struct Argv
{
	const char **v;
	size_t	   *len;
	int			n;
	int			cap;
} Argv;

/* ------------------------------------------------------------------ */

/* Records a failure in the log and the status (status.c). */
static void
redis_fail(const char *what, const char *msg)
{
	log_error("Redis: %s: %s", what, msg);
	status_error(SIDE_REDIS, "Redis: %s: %s", what, msg);
}

/* Any time. */
bool
redis_connected(void)
{
	return rc_connected();
}

/* Any time. */
void
redis_disconnect(void)
{
	rc_disconnect();
}

/*
 * Connected; reply is what rc_command/rc_get_reply returned.  False
 * (after logging) if it is missing or an error; frees it then.
 */
static bool
reply_ok(redisReply *reply, const char *what)
{
	if (reply == NULL)
	{
		redis_fail(what, rc_errstr());
		return false;
	}
	if (reply->type == REDIS_REPLY_ERROR)
	{
		redis_fail(what, reply->str);
		freeReplyObject(reply);
		return false;
	}
	return true;
}

/* name is NUL-terminated.  Returns malloc'd prefix + name. */
static char *
make_key(const char *name)
{
	size_t		n = strlen(name);
	char	   *k = malloc(prefix_len + n + 1);

	if (k == NULL)
		return NULL;
	memcpy(k, prefix, prefix_len);
	memcpy(k + prefix_len, name, n + 1);
	return k;
}

/* Frees the key names built by set_keys. */
static void
free_keys(void)
{
	free(prefix);
	free(key_cursor);
	free(key_rebuild);
	free(key_status);
	free(key_checked);
	prefix = key_cursor = key_rebuild = key_status = key_checked = NULL;
}

/*
 * cfg is loaded.  Builds the fixed key names: the ones a script call
 * touches together share the hash tag {sync}; sync:status is written alone.
 */
static bool
set_keys(const SyncConfig *cfg)
{
	free_keys();
	prefix = strdup(cfg->prefix);
	if (prefix == NULL)
		return false;
	prefix_len = strlen(prefix);
	window = cfg->window;
	part_index = cfg->part_index;
	part_count = cfg->part_count;
	if (part_count > 0)
	{
		/* One set per partition: "{sync:<p>/<n>}:cursor", "sync:status:<p>/<n>" */
		char		name[64];

		snprintf(name, sizeof(name), "{sync:%d/%d}:cursor", part_index, part_count);
		key_cursor = make_key(name);
		snprintf(name, sizeof(name), "{sync:%d/%d}:rebuild", part_index, part_count);
		key_rebuild = make_key(name);
		snprintf(name, sizeof(name), "sync:status:%d/%d", part_index, part_count);
		key_status = make_key(name);
		snprintf(name, sizeof(name), "{sync:%d/%d}:checked", part_index, part_count);
		key_checked = make_key(name);
	}
	else
	{
		key_cursor = make_key("{sync}:cursor");
		key_rebuild = make_key("{sync}:rebuild");
		key_status = make_key("sync:status");
		key_checked = make_key("{sync}:checked");
	}
	if (!(key_cursor && key_rebuild && key_status && key_checked))
		return false;
	slot_cursor = key_slot(key_cursor, strlen(key_cursor));
	slot_status = key_slot(key_status, strlen(key_status));
	return true;
}

/* The scripts every connection loads (cluster.c), in this order */
static const char *const script_texts[] = {APPLY_LUA, CURSOR_LUA};
static const size_t script_lens[] = {sizeof(APPLY_LUA) - 1, sizeof(CURSOR_LUA) - 1};

/*
 * cfg is loaded; not connected.  Connects (cluster.c: one node, or every
 * master of a Redis Cluster), loading the scripts.  RS_STALE means
 * refused: Redis may evict the daemon's keys.
 */
static RedisStatus
connect_only(const SyncConfig *cfg, bool quiet)
{
	RedisStatus st;

	if (!set_keys(cfg))
	{
		redis_fail("connect", "out of memory");
		return RS_ERROR;
	}
	rc_set_scripts(script_texts, script_lens, 2);
	st = rc_connect(cfg, quiet);
	if (st == RS_ERROR)
		redis_fail("connect", rc_errstr());
	if (st != RS_OK)
		return st;
	memcpy(apply_sha, rc_script_sha(0), 41);
	memcpy(cursor_sha, rc_script_sha(1), 41);
	/* In a cluster, MULTI/EXEC cannot be redirected: rows go in scripts */
	rows_plain = !rc_is_cluster();
	return RS_OK;
}

/*
 * cfg is loaded; not connected.  Connects and loads the scripts.  RS_STALE
 * means refused: Redis may evict the daemon's keys.
 */
RedisStatus
redis_connect(const SyncConfig *cfg)
{
	return connect_only(cfg, false);
}

/*
 * redis_connected(); key is one of the fixed keys.  *value gets its value
 * (malloc'd), or NULL when it is missing or not a string.  Any other error
 * reply (CLUSTERDOWN, LOADING) fails: RS_ERROR, disconnected.
 */
static RedisStatus
get_string(const char *key, const char *what, char **value)
{
	redisReply *reply;

	*value = NULL;
	reply = rc_command(key_slot(key, strlen(key)), "GET %b", key, strlen(key));
	if (reply == NULL)
	{
		redis_fail(what, rc_errstr());
		redis_disconnect();
		return RS_ERROR;
	}
	if (reply->type == REDIS_REPLY_STRING)
	{
		*value = malloc((size_t) reply->len + 1);
		if (*value == NULL)
		{
			freeReplyObject(reply);
			redis_disconnect();
			return RS_ERROR;
		}
		memcpy(*value, reply->str, (size_t) reply->len);
		(*value)[reply->len] = '\0';
	}
	else if (reply->type == REDIS_REPLY_ERROR &&
			 strncmp(reply->str, "WRONGTYPE", 9) == 0)
		log_warning("Redis: %s: %s; ignoring it", what, reply->str);
	else if (reply->type == REDIS_REPLY_ERROR)
	{
		/* CLUSTERDOWN, LOADING, ...: not a missing key (that rebuilds) */
		redis_fail(what, reply->str);
		freeReplyObject(reply);
		redis_disconnect();
		return RS_ERROR;
	}
	freeReplyObject(reply);
	return RS_OK;
}

/*
 * redis_connected().  *value gets the cursor (malloc'd), or NULL when the
 * key is missing or not a string.
 */
RedisStatus
redis_get_cursor(char **value)
{
	return get_string(key_cursor, "GET cursor", value);
}

/*
 * redis_connected().  *value gets sync:checked (malloc'd): expiries up to
 * that time (epoch us) are applied; NULL when missing or not a string.
 */
RedisStatus
redis_get_checked(char **value)
{
	return get_string(key_checked, "GET checked", value);
}

/* redis_connected().  Registers a rebuild's token in sync:rebuild. */
RedisStatus
redis_rebuild_register(const char *token)
{
	redisReply *reply;

	reply = rc_command(slot_cursor, "TYPE %b", key_rebuild, strlen(key_rebuild));
	if (!reply_ok(reply, "TYPE"))
		goto fail;
	if (reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "set") != 0 &&
		strcmp(reply->str, "none") != 0)
	{
		freeReplyObject(reply);
		log_warning("Redis: %s is not a set; deleting it", key_rebuild);
		reply = rc_command(slot_cursor, "DEL %b", key_rebuild, strlen(key_rebuild));
		if (!reply_ok(reply, "DEL"))
			goto fail;
	}
	freeReplyObject(reply);
	reply = rc_command(slot_cursor, "SADD %b %b", key_rebuild, strlen(key_rebuild),
						 token, strlen(token));
	if (!reply_ok(reply, "SADD"))
		goto fail;
	freeReplyObject(reply);
	return RS_OK;

fail:
	redis_disconnect();
	return RS_ERROR;
}

/* ------------------------------------------------------------------ */

/* a is valid.  Appends one argument (not copied). */
static bool
argv_push(Argv *a, const char *s, size_t len)
{
	if (a->n == a->cap)
	{
		int			cap = a->cap ? a->cap * 2 : 256;
		const char **v = realloc(a->v, sizeof(*v) * (size_t) cap);
		size_t	   *l;

		if (v == NULL)
			return false;
		a->v = v;
		l = realloc(a->len, sizeof(*l) * (size_t) cap);
		if (l == NULL)
			return false;
		a->len = l;
		a->cap = cap;
	}
	a->v[a->n] = s;
	a->len[a->n] = len;
	a->n++;
	return true;
}

/* a is valid. */
static void
argv_free(Argv *a)
{
	free(a->v);
	free(a->len);
	memset(a, 0, sizeof(*a));
}

/*
 * One unit of a data call: a value key with its companion (type 'v' or
 * 'd'), or rows [tx_first, tx_first + tx_count) of a txs key ('t', or 'T'
 * to delete the key first).  Key names are offsets into the plan's keys.
 */
typedef struct Unit
{
	int			slot;
	int			order;			/* position in the batch, for a stable sort */
	char		type;
	int			value;			/* index into SyncUser.values ('v', 'd') */
	const SyncUser *u;
	int			tx_first;
	int			tx_count;
	size_t		key;
	size_t		key_len;
	size_t		comp;
	size_t		comp_len;
	size_t		bytes;			/* estimated size of its arguments */
} Unit;

/* One data call: units [first, first + count), all in one slot */
typedef struct Call
{
	int			first;
	int			count;
} Call;

/* The data calls of one batch */
typedef struct Plan
{
	char	   *keys;			/* every key name, back to back */
	size_t		keys_len;
	size_t		keys_cap;
	Unit	   *units;
	int			nunits;
	int			units_cap;
	Call	   *calls;
	int			ncalls;
	int			nscript;		/* units [0, nscript) are in calls, the
								 * others ('t') are sent as plain commands */
} Plan;

/* p is valid. */
static void
plan_free(Plan *p)
{
	free(p->keys);
	free(p->units);
	free(p->calls);
	memset(p, 0, sizeof(*p));
}

/*
 * p->keys has room for the name (reserved by plan_calls).  Appends prefix
 * + name + uid; *off and *len get where it is.
 */
static void
plan_key(Plan *p, const char *name, const SyncUser *u, size_t *off, size_t *len)
{
	size_t		nlen = strlen(name);
	char	   *k = p->keys + p->keys_len;

	memcpy(k, prefix, prefix_len);
	memcpy(k + prefix_len, name, nlen);
	memcpy(k + prefix_len + nlen, u->uid, u->uid_len);
	*off = p->keys_len;
	*len = prefix_len + nlen + u->uid_len;
	p->keys_len += *len;
}

/* p is valid.  A new unit at the end (zeroed but for order), or NULL. */
static Unit *
plan_unit(Plan *p)
{
	Unit	   *n;

	if (p->nunits == p->units_cap)
	{
		int			cap = p->units_cap ? p->units_cap * 2 : 64;
		Unit	   *u = realloc(p->units, sizeof(Unit) * (size_t) cap);

		if (u == NULL)
			return NULL;
		p->units = u;
		p->units_cap = cap;
	}
	n = &p->units[p->nunits];
	memset(n, 0, sizeof(*n));
	n->order = p->nunits++;
	return n;
}

/*
 * Orders units: those of script calls first, by slot for a Redis Cluster
 * (sort_by_slot), then the plain ones ('t'); then by their position in the
 * batch.
 */
static int
unit_cmp(const void *a, const void *b)
{
	const Unit *x = a,
			   *y = b;

	if ((rows_plain && x->type == 't') != (rows_plain && y->type == 't'))
		return x->type == 't' ? 1 : -1;
	if (sort_by_slot && x->slot != y->slot)
		return x->slot < y->slot ? -1 : 1;
	return (x->order > y->order) - (x->order < y->order);
}

/*
 * b is a filled batch.  Builds the data calls of b in mode: the units of
 * every user (its values, if it has an account row, and its rows, in pieces
 * within the limits of one call; a replacing rebuild also empties the txs
 * key of a user without rows).  For a Redis Cluster they are sorted by slot
 * and packed into one call per slot; for a standalone Redis, which has no
 * slots, they stay in batch order (a user's values next to each other) and
 * go CALL_STANDALONE_UNITS to a call.  Either way a call stays within the
 * limits of one call, but always takes at least one unit, however big.  Rows of a txs key that is not to be
 * emptied first ('t') need no script: they are left out of the calls and
 * sent as plain commands (append_rows).  False if out of memory.
 */
static bool
plan_calls(const SyncBatch *b, ApplyMode mode, Plan *p)
{
	size_t		need = 0;
	int			members = 0;
	size_t		bytes = 0;
	bool		cluster;

	memset(p, 0, sizeof(*p));
	for (int i = 0; i < b->nusers; i++)
	{
		size_t		ulen = prefix_len + b->users[i].uid_len;

		need += prefix_len + strlen("txs:") + b->users[i].uid_len;
		for (int v = 0; v < SYNC_NVALUES; v++)
		{
			size_t		klen = ulen + strlen(sync_value_keys[v]);

			need += klen + KEY_COMPANION_MAX(klen);
		}
	}
	p->keys = malloc(need + 1);
	if (p->keys == NULL)
		return false;
	p->keys_cap = need;

	for (int i = 0; i < b->nusers; i++)
	{
		const SyncUser *u = &b->users[i];
		size_t		txs_key,
					txs_len;
		int			done = 0;
		bool		first = true;

		if (u->version != NULL)
		{
			for (int v = 0; v < SYNC_NVALUES; v++)
			{
				Unit	   *n = plan_unit(p);

				if (n == NULL)
					return false;
				n->type = v < SYNC_NVERSIONED ? 'v' : 'd';
				n->value = v;
				n->u = u;
				plan_key(p, sync_value_keys[v], u, &n->key, &n->key_len);
				n->comp = p->keys_len;
				n->comp_len = key_companion(p->keys + p->keys_len, p->keys + n->key,
											n->key_len);
				p->keys_len += n->comp_len;
				n->slot = key_slot(p->keys + n->key, n->key_len);
				n->bytes = n->key_len + n->comp_len + strlen(u->values[v]) +
					strlen(u->version) + strlen(u->as_of) + 64;
			}
		}
		if (u->tx_count == 0 && !(mode == APPLY_REPLACE && u->version != NULL))
			continue;
		plan_key(p, "txs:", u, &txs_key, &txs_len);
		while (first || done < u->tx_count)
		{
			Unit	   *n = plan_unit(p);
			int			take = 0;
			size_t		ubytes = txs_len + u->uid_len + 64;

			if (n == NULL)
				return false;
			while (done + take < u->tx_count && take < CALL_MAX_MEMBERS)
			{
				size_t		mb = b->txs[u->tx_first + done + take].member_len + 24;

				if (take > 0 && ubytes + mb > CALL_MAX_BYTES)
					break;
				ubytes += mb;
				take++;
			}
			n->type = (mode == APPLY_REPLACE && first) ? 'T' : 't';
			n->u = u;
			n->tx_first = u->tx_first + done;
			n->tx_count = take;
			n->key = txs_key;
			n->key_len = txs_len;
			n->slot = key_slot(p->keys + txs_key, txs_len);
			n->bytes = ubytes;
			done += take;
			first = false;
		}
	}

	cluster = rc_is_cluster();
	sort_by_slot = cluster;
	qsort(p->units, (size_t) p->nunits, sizeof(Unit), unit_cmp);
	p->calls = malloc(sizeof(Call) * (size_t) (p->nunits + 1));
	if (p->calls == NULL)
		return false;
	p->nscript = p->nunits;
	for (int i = 0; i < p->nunits; i++)
	{
		const Unit *n = &p->units[i];
		Call	   *c = p->ncalls > 0 ? &p->calls[p->ncalls - 1] : NULL;

		if (rows_plain && n->type == 't')
		{
			p->nscript = i;
			break;
		}
		if (c == NULL ||
			(cluster ? p->units[c->first].slot != n->slot :
			 c->count >= CALL_STANDALONE_UNITS) ||
			members + n->tx_count > CALL_MAX_MEMBERS ||
			bytes + n->bytes > CALL_MAX_BYTES)
		{
			c = &p->calls[p->ncalls++];
			c->first = i;
			c->count = 0;
			members = 0;
			bytes = 0;
		}
		c->count++;
		members += n->tx_count;
		bytes += n->bytes;
	}
	return true;
}

/*
 * Connected.  Appends the data call c of plan p to the pipeline, with
 * EVALSHA or (use_eval) EVAL.  hiredis copies the arguments.
 */
static bool
append_call(const SyncBatch *b, const Plan *p, const Call *c, ApplyMode mode,
			bool use_eval)
{
	Argv		keys = {0};
	Argv		args = {0};
	Argv		all = {0};
	char	   *numbuf = malloc((size_t) (c->count + 1) * 16);
	char		modestr[2] = {(char) (mode == APPLY_REPLACE ? 'R' :
									  mode == APPLY_BATCH ? 'b' : 'r'), '\0'};
	char		winstr[16];
	char		numkeys[16];
	bool		ok = false;

	snprintf(winstr, sizeof(winstr), "%d", window);
	if (numbuf == NULL ||
		!argv_push(&args, modestr, 1) ||
		!argv_push(&args, winstr, strlen(winstr)))
		goto done;

	for (int i = c->first; i < c->first + c->count; i++)
	{
		const Unit *n = &p->units[i];
		const SyncUser *u = n->u;
		char	   *num = numbuf + (size_t) (i - c->first) * 16;

		if (!argv_push(&keys, p->keys + n->key, n->key_len) ||
			!argv_push(&args, &n->type, 1))
			goto done;
		if (n->type == 'v' || n->type == 'd')
		{
			if (!argv_push(&keys, p->keys + n->comp, n->comp_len) ||
				!argv_push(&args, u->values[n->value], strlen(u->values[n->value])) ||
				!argv_push(&args, u->version, strlen(u->version)) ||
				!argv_push(&args, u->as_of, strlen(u->as_of)))
				goto done;
			continue;
		}
		snprintf(num, 16, "%d", n->tx_count);
		if (!argv_push(&args, u->uid, u->uid_len) ||
			!argv_push(&args, num, strlen(num)))
			goto done;
		for (int t = n->tx_first; t < n->tx_first + n->tx_count; t++)
		{
			if (!argv_push(&args, b->txs[t].score, strlen(b->txs[t].score)) ||
				!argv_push(&args, b->txs[t].member, b->txs[t].member_len))
				goto done;
		}
	}

	snprintf(numkeys, sizeof(numkeys), "%d", keys.n);
	if (use_eval)
	{
		if (!argv_push(&all, "EVAL", 4) ||
			!argv_push(&all, APPLY_LUA, sizeof(APPLY_LUA) - 1))
			goto done;
	}
	else if (!argv_push(&all, "EVALSHA", 7) || !argv_push(&all, apply_sha, 40))
		goto done;
	if (!argv_push(&all, numkeys, strlen(numkeys)))
		goto done;
	for (int i = 0; i < keys.n; i++)
		if (!argv_push(&all, keys.v[i], keys.len[i]))
			goto done;
	for (int i = 0; i < args.n; i++)
		if (!argv_push(&all, args.v[i], args.len[i]))
			goto done;

	ok = rc_append(p->units[c->first].slot, all.n, all.v, all.len);

done:
	if (!ok)
		redis_fail("apply", "could not build the command (out of memory)");
	argv_free(&keys);
	argv_free(&args);
	argv_free(&all);
	free(numbuf);
	return ok;
}

/*
 * Connected.  Appends the call of the global keys (CURSOR_LUA): mode b
 * compares the cursor with expect (and sync:checked with expect_checked
 * unless NULL), mode r or f checks the rebuild token expect; sets cursor
 * and checked unless NULL; f also unregisters the token.
 */
static bool
append_cursor_call(char mode, const char *expect, const char *cursor,
				   const char *checked, const char *expect_checked,
				   bool use_eval)
{
	const char *v[11];
	size_t		len[11];
	int			n = 0;
	char		modestr[2] = {mode, '\0'};

#define PUSH(s, l) (v[n] = (s), len[n] = (l), n++)
	if (use_eval)
	{
		PUSH("EVAL", 4);
		PUSH(CURSOR_LUA, sizeof(CURSOR_LUA) - 1);
	}
	else
	{
		PUSH("EVALSHA", 7);
		PUSH(cursor_sha, 40);
	}
	PUSH("3", 1);
	PUSH(key_cursor, strlen(key_cursor));
	PUSH(key_checked, strlen(key_checked));
	PUSH(key_rebuild, strlen(key_rebuild));
	PUSH(modestr, 1);
	PUSH(expect, strlen(expect));
	PUSH(cursor ? cursor : "", cursor ? strlen(cursor) : 0);
	PUSH(checked ? checked : "", checked ? strlen(checked) : 0);
	PUSH(expect_checked ? expect_checked : "", expect_checked ? strlen(expect_checked) : 0);
#undef PUSH
	if (!rc_append(slot_cursor, n, v, len))
	{
		redis_fail("apply", rc_errstr());
		return false;
	}
	return true;
}

/*
 * Connected.  Appends the plain commands of a 't' unit: MULTI, ZADD of
 * its rows, ZREMRANGEBYRANK to the newest window, EXEC (one key, so one
 * slot; atomic, so readers never see more than window rows).  Cheaper
 * than a script call, and idempotent like it.
 */
static bool
append_rows(const SyncBatch *b, const Plan *p, const Unit *n)
{
	Argv		a = {0};
	char		stop[24];
	bool		ok;

	snprintf(stop, sizeof(stop), "%d", -(window + 1));
	ok = rc_append_fmt(n->slot, "MULTI") &&
		argv_push(&a, "ZADD", 4) && argv_push(&a, p->keys + n->key, n->key_len);
	for (int t = n->tx_first; ok && t < n->tx_first + n->tx_count; t++)
		ok = argv_push(&a, b->txs[t].score, strlen(b->txs[t].score)) &&
			argv_push(&a, b->txs[t].member, b->txs[t].member_len);
	ok = ok && rc_append(n->slot, a.n, a.v, a.len) &&
		rc_append_fmt(n->slot, "ZREMRANGEBYRANK %b 0 %s", p->keys + n->key,
					  n->key_len, stop) &&
		rc_append_fmt(n->slot, "EXEC");
	argv_free(&a);
	if (!ok)
		redis_fail("apply", "could not build the command (out of memory)");
	return ok;
}

/*
 * Connected; the four replies of append_rows are due.  Reads them; sets
 * *wrongtype if the key was of another type (nothing was written then).
 */
static RedisStatus
read_rows_reply(bool *wrongtype)
{
	RedisStatus st = RS_OK;

	*wrongtype = false;
	for (int i = 0; i < 4 && st == RS_OK; i++)
	{
		redisReply *reply = NULL;

		if (!rc_get_reply(&reply) || reply == NULL)
		{
			redis_fail("apply", rc_errstr());
			return RS_ERROR;
		}
		if (reply->type == REDIS_REPLY_ERROR)
		{
			redis_fail("apply", reply->str);
			st = RS_ERROR;
		}
		else if (i == 3 && (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2))
		{
			redis_fail("apply", "unexpected reply to EXEC");
			st = RS_ERROR;
		}
		else if (i == 3)
		{
			for (size_t e = 0; e < 2 && st == RS_OK; e++)
			{
				redisReply *r = reply->element[e];

				if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "WRONGTYPE", 9) == 0)
					*wrongtype = true;
				else if (r->type != REDIS_REPLY_INTEGER)
				{
					redis_fail("apply", r->type == REDIS_REPLY_ERROR ? r->str :
							   "unexpected reply to ZADD");
					st = RS_ERROR;
				}
			}
		}
		freeReplyObject(reply);
	}
	return st;
}

/* Connected.   Appends HSET sync:status with nfields field/value pairs. */
static bool
append_status(const char *const *fields, int nfields)
{
	Argv		a = {0};
	bool		ok;

	ok = argv_push(&a, "HSET", 4) && argv_push(&a, key_status, strlen(key_status));
	for (int i = 0; ok && i < 2 * nfields; i++)
		ok = argv_push(&a, fields[i], strlen(fields[i]));
	ok = ok && rc_append(slot_status, a.n, a.v, a.len);
	argv_free(&a);
	return ok;
}

/* r is valid; uid has len bytes.  Appends a copy. */
static bool
repair_add(RepairList *r, const char *uid, size_t len)
{
	char	   *c;

	for (int i = 0; i < r->n; i++)
		if (r->lens[i] == len && memcmp(r->uids[i], uid, len) == 0)
			return true;
	if (r->n == r->cap)
	{
		int			cap = r->cap ? r->cap * 2 : 8;
		char	  **u = realloc(r->uids, sizeof(*u) * (size_t) cap);
		size_t	   *l;

		if (u == NULL)
			return false;
		r->uids = u;
		l = realloc(r->lens, sizeof(*l) * (size_t) cap);
		if (l == NULL)
			return false;
		r->lens = l;
		r->cap = cap;
	}
	c = malloc(len + 1);
	if (c == NULL)
		return false;
	memcpy(c, uid, len);
	c[len] = '\0';
	r->uids[r->n] = c;
	r->lens[r->n] = len;
	r->n++;
	return true;
}

/* r is valid. */
void
repair_list_clear(RepairList *r)
{
	for (int i = 0; i < r->n; i++)
		free(r->uids[i]);
	free(r->uids);
	free(r->lens);
	memset(r, 0, sizeof(*r));
}


/*
 * Connected; one data call's reply is due.  Reads it: sets *noscript on
 * a NOSCRIPT error, adds the ids to repair to repairs.
 */
static RedisStatus
read_call_reply(bool *noscript, RepairList *repairs)
{
	redisReply *reply = NULL;
	RedisStatus st = RS_OK;

	*noscript = false;
	if (!rc_get_reply(&reply) || reply == NULL)
	{
		redis_fail("apply", rc_errstr());
		return RS_ERROR;
	}
	if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0)
		*noscript = true;
	else if (reply->type == REDIS_REPLY_ERROR)
	{
		redis_fail("apply", reply->str);
		st = RS_ERROR;
	}
	else if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
			 reply->element[0]->type != REDIS_REPLY_STRING ||
			 strcmp(reply->element[0]->str, "OK") != 0 ||
			 reply->element[1]->type != REDIS_REPLY_INTEGER)
	{
		redis_fail("apply", "unexpected reply from the script");
		st = RS_ERROR;
	}
	else
	{
		status_stale_refused(reply->element[1]->integer);
		for (size_t e = 2; e < reply->elements; e++)
		{
			redisReply *r = reply->element[e];

			if (r->type == REDIS_REPLY_STRING && repairs != NULL &&
				!repair_add(repairs, r->str, (size_t) r->len))
			{
				redis_fail("apply", "out of memory");
				st = RS_ERROR;
			}
		}
	}
	freeReplyObject(reply);
	return st;
}

/*
 * Connected; the cursor call's reply is due.  Reads it: *noscript on a
 * NOSCRIPT error, *stale when the script found another cursor or no token.
 */
static RedisStatus
read_cursor_reply(bool *noscript, bool *stale)
{
	redisReply *reply = NULL;
	RedisStatus st = RS_OK;

	*noscript = false;
	if (!rc_get_reply(&reply) || reply == NULL)
	{
		redis_fail("cursor", rc_errstr());
		return RS_ERROR;
	}
	if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0)
		*noscript = true;
	else if (reply->type == REDIS_REPLY_ERROR)
	{
		redis_fail("cursor", reply->str);
		st = RS_ERROR;
	}
	else if (reply->type == REDIS_REPLY_STRING && strcmp(reply->str, "STALE") == 0)
		*stale = true;
	else if (reply->type != REDIS_REPLY_STRING || strcmp(reply->str, "OK") != 0)
	{
		redis_fail("cursor", "unexpected reply from the script");
		st = RS_ERROR;
	}
	freeReplyObject(reply);
	return st;
}

/* Connected; an HSET of the status hash is due.  Reads its reply. */
static RedisStatus
read_status_reply(void)
{
	redisReply *reply = NULL;

	if (!rc_get_reply(&reply) || reply == NULL)
	{
		redis_fail("HSET status", rc_errstr());
		return RS_ERROR;
	}
	if (reply->type == REDIS_REPLY_ERROR)
	{
		/* A mistyped status key must not stop syncing. */
		log_warning("Redis: HSET %s: %s; deleting it", key_status, reply->str);
		freeReplyObject(reply);
		reply = rc_command(slot_status, "DEL %b", key_status, strlen(key_status));
		if (!reply_ok(reply, "DEL status"))
			return RS_ERROR;
	}
	freeReplyObject(reply);
	return RS_OK;
}

/*
 * Connected.  Step 1: sends every data call of p, and the plain commands
 * of its 't' units, pipelined, then reads every reply; calls refused with
 * NOSCRIPT are sent again with EVAL.
 */
static RedisStatus
send_data(const SyncBatch *b, const Plan *p, ApplyMode mode, RepairList *repairs)
{
	bool	   *again;
	bool	   *wrong;
	RedisStatus st = RS_OK;
	int			nagain = 0;

	if (p->nunits == 0)
		return RS_OK;
	again = calloc((size_t) p->nunits * 2, sizeof(bool));
	if (again == NULL)
	{
		redis_fail("apply", "out of memory");
		return RS_ERROR;
	}
	wrong = again + p->nunits;
	for (int c = 0; c < p->ncalls && st == RS_OK; c++)
		if (!append_call(b, p, &p->calls[c], mode, false))
			st = RS_ERROR;
	for (int i = p->nscript; i < p->nunits && st == RS_OK; i++)
		if (!append_rows(b, p, &p->units[i]))
			st = RS_ERROR;
	for (int c = 0; c < p->ncalls && st == RS_OK; c++)
	{
		st = read_call_reply(&again[c], repairs);
		nagain += again[c];
	}
	for (int i = p->nscript; i < p->nunits && st == RS_OK; i++)
		st = read_rows_reply(&wrong[i]);
	/* A txs key of another type: deleted and written again; repaired */
	for (int i = p->nscript; i < p->nunits && st == RS_OK; i++)
	{
		const Unit *n = &p->units[i];
		redisReply *reply;
		bool		still;

		if (!wrong[i])
			continue;
		reply = rc_command(n->slot, "DEL %b", p->keys + n->key, n->key_len);
		if (!reply_ok(reply, "DEL"))
			st = RS_ERROR;
		else
		{
			freeReplyObject(reply);
			if (!append_rows(b, p, n))
				st = RS_ERROR;
			else
				st = read_rows_reply(&still);
			if (st == RS_OK && still)
			{
				redis_fail("apply", "txs key of the wrong type after DEL");
				st = RS_ERROR;
			}
			if (st == RS_OK && mode == APPLY_BATCH && repairs != NULL &&
				!repair_add(repairs, n->u->uid, n->u->uid_len))
			{
				redis_fail("apply", "out of memory");
				st = RS_ERROR;
			}
		}
	}
	if (st == RS_OK && nagain > 0)
	{
		log_info("Redis: script not cached (SCRIPT FLUSH or restart?); sending it with EVAL");
		for (int c = 0; c < p->ncalls && st == RS_OK; c++)
			if (again[c] && !append_call(b, p, &p->calls[c], mode, true))
				st = RS_ERROR;
		for (int c = 0; c < p->ncalls && st == RS_OK; c++)
		{
			bool		noscript;

			if (!again[c])
				continue;
			st = read_call_reply(&noscript, repairs);
			if (st == RS_OK && noscript)
			{
				redis_fail("apply", "NOSCRIPT reply to EVAL");
				st = RS_ERROR;
			}
		}
	}
	free(again);
	return st;
}

/*
 * Connected.  Step 2: the cursor call (see append_cursor_call), then the
 * status HSET if given, pipelined; a NOSCRIPT reply is retried with EVAL.
 */
static RedisStatus
send_cursor(char mode, const char *expect, const char *cursor,
			const char *checked, const char *expect_checked,
			const char *const *status, int nstatus, bool *stale)
{
	bool		noscript = false;
	RedisStatus st;

	if (!append_cursor_call(mode, expect, cursor, checked, expect_checked, false) ||
		(nstatus > 0 && !append_status(status, nstatus)))
		return RS_ERROR;
	st = read_cursor_reply(&noscript, stale);
	if (st == RS_OK && nstatus > 0)
		st = read_status_reply();
	if (st == RS_OK && noscript)
	{
		log_info("Redis: script not cached (SCRIPT FLUSH or restart?); sending it with EVAL");
		if (!append_cursor_call(mode, expect, cursor, checked, expect_checked, true))
			return RS_ERROR;
		st = read_cursor_reply(&noscript, stale);
		if (st == RS_OK && noscript)
		{
			redis_fail("cursor", "NOSCRIPT reply to EVAL");
			st = RS_ERROR;
		}
	}
	return st;
}

/*
 * redis_connected(); b is a filled batch (may have no users).  Applies it
 * in the given mode: first its data, one call per hash slot, pipelined;
 * then, only if every data call succeeded, one call on the global keys.
 * That call compares and sets: in mode b, epoch is the whole cursor text
 * the caller last wrote or read and expect_checked (or NULL) likewise
 * sync:checked (a Redis that went back, was flushed, or another daemon's
 * write is noticed: RS_STALE, and the cursor is not moved); in modes r, R
 * and f, epoch is the rebuild token, which must still be registered.
 * cursor (or NULL) and b->checked (unless empty) are stored by that call.
 * In mode b with neither, there is no such call (the values written are
 * guarded and true whatever the cursor).  The nstatus field/value pairs in
 * status are written to sync:status after that call (or after the data).
 * Users whose txs key had the wrong type are added to repairs (or NULL).
 * On RS_ERROR the connection has been dropped.
 */
RedisStatus
redis_apply(const SyncBatch *b, ApplyMode mode, const char *epoch,
			const char *expect_checked, const char *cursor,
			const char *const *status, int nstatus, RepairList *repairs)
{
	Plan		p;
	bool		stale = false;
	const char *checked = b->checked[0] ? b->checked : NULL;
	RedisStatus st;

	if (!plan_calls(b, mode, &p))
	{
		redis_fail("apply", "out of memory");
		st = RS_ERROR;
	}
	else
		st = send_data(b, &p, mode, repairs);
	if (st == RS_OK && (mode != APPLY_BATCH || cursor != NULL || checked != NULL) &&
		!rc_wait_replicas())
	{
		/* A master that dies now could lose data the cursor counts */
		redis_fail("WAIT", rc_errstr());
		st = RS_ERROR;
	}
	if (st == RS_OK)
	{
		if (mode != APPLY_BATCH || cursor != NULL || checked != NULL)
			st = send_cursor(mode == APPLY_BATCH ? 'b' : mode == APPLY_FINISH ? 'f' : 'r',
							 epoch, cursor, checked,
							 mode == APPLY_BATCH ? expect_checked : NULL,
							 status, nstatus, &stale);
		else if (nstatus > 0)
		{
			if (!append_status(status, nstatus))
				st = RS_ERROR;
			else
				st = read_status_reply();
		}
	}
	if (st == RS_OK && stale)
		st = RS_STALE;
	if (st == RS_ERROR)
		redis_disconnect();
	plan_free(&p);
	return st;
}

/*
 * key (len bytes) is a key name from SCAN.  If it is one of this prefix's
 * reader keys or companions, *uid and *uid_len get the user id in it.
 */
static bool
key_user(const char *key, size_t len, const char **uid, size_t *uid_len)
{
	const char *k = key;
	size_t		n = len;

	if (n > 4 && k[0] == '{' && memcmp(k + n - 3, "}:v", 3) == 0 &&
		memchr(k, '}', n - 3) == NULL)
	{
		/* "{K}:v" */
		k++;
		n -= 4;
	}
	else if (n > 0 && k[0] == '{')
	{
		/* "{T}:v:K", T decimal */
		const char *close = memchr(k, '}', n);

		if (close == NULL || (size_t) (close - k) + 4 > n ||
			memcmp(close, "}:v:", 4) != 0)
			return false;
		n -= (size_t) (close - k) + 4;
		k = close + 4;
	}
	if (n < prefix_len || memcmp(k, prefix, prefix_len) != 0)
		return false;
	k += prefix_len;
	n -= prefix_len;
	for (int v = 0; v <= SYNC_NVALUES; v++)
	{
		const char *name = v < SYNC_NVALUES ? sync_value_keys[v] : "txs:";
		size_t		nlen = strlen(name);

		if (n >= nlen && memcmp(k, name, nlen) == 0)
		{
			*uid = k + nlen;
			*uid_len = n - nlen;
			return true;
		}
	}
	return false;
}

/*
 * redis_connected(); *scan is "0" (malloc'd) to start.  Reads the next
 * page of SCAN and puts into *uids (n malloc'd strings, in a malloc'd
 * array) the ids of the users that have reader keys or companions under
 * this prefix (an id may come more than once), and, with --partition,
 * only of users of this partition; *scan becomes the next position, "0"
 * when done.  One pass visits the whole keyspace: in a Redis Cluster,
 * every master in turn (the position is "<master>:<SCAN cursor>"; a
 * topology change during the pass may hide keys from it).
 */
RedisStatus
redis_scan_users(char **scan, char ***uids, int *n)
{
	redisReply *reply;
	redisReply *items;
	const char *cur = *scan;
	const char *colon = strchr(*scan, ':');
	int			master = 0;
	char		next[64];

	*uids = NULL;
	*n = 0;
	if (colon != NULL)
	{
		master = atoi(*scan);
		cur = colon + 1;
	}
	reply = rc_master_command(master, "SCAN %s COUNT 1000", cur);
	if (!reply_ok(reply, "SCAN"))
		goto fail;
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
		reply->element[0]->type != REDIS_REPLY_STRING ||
		reply->element[1]->type != REDIS_REPLY_ARRAY)
	{
		freeReplyObject(reply);
		redis_fail("SCAN", "unexpected reply");
		goto fail;
	}
	if (strcmp(reply->element[0]->str, "0") == 0)
	{
		if (rc_is_cluster() && master + 1 < rc_masters())
			snprintf(next, sizeof(next), "%d:0", master + 1);
		else
			snprintf(next, sizeof(next), "0");
	}
	else if (rc_is_cluster())
		snprintf(next, sizeof(next), "%d:%.40s", master, reply->element[0]->str);
	else
		snprintf(next, sizeof(next), "%.60s", reply->element[0]->str);
	free(*scan);
	*scan = strdup(next);
	items = reply->element[1];
	*uids = calloc(items->elements + 1, sizeof(char *));
	if (*scan == NULL || *uids == NULL)
	{
		freeReplyObject(reply);
		redis_fail("SCAN", "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < items->elements; i++)
	{
		redisReply *k = items->element[i];
		const char *uid;
		size_t		len;

		/* A user id cannot contain NUL (a PostgreSQL text cannot) */
		if (k->type != REDIS_REPLY_STRING ||
			!key_user(k->str, (size_t) k->len, &uid, &len) ||
			memchr(uid, '\0', len) != NULL)
			continue;
		/* Another partition's user: its daemon's, not ours */
		if (part_count > 0 && partition_of(uid, len, part_count) != part_index)
			continue;
		(*uids)[*n] = strndup(uid, len);
		if ((*uids)[*n] == NULL)
		{
			freeReplyObject(reply);
			redis_fail("SCAN", "out of memory");
			goto fail;
		}
		(*n)++;
	}
	freeReplyObject(reply);
	return RS_OK;

fail:
	redis_disconnect();
	return RS_ERROR;
}

/*
 * Connected.  Appends DEL of prefix + name + uid and, if comp, of its
 * companion: one key per command (they are in different slots).
 */
static bool
append_forget(const char *name, const char *uid, bool comp, int *sent)
{
	size_t		len = prefix_len + strlen(name) + strlen(uid);
	char	   *k = malloc(len + 1);
	char	   *c = malloc(KEY_COMPANION_MAX(len) + 1);
	bool		ok = k != NULL && c != NULL;

	if (ok)
	{
		snprintf(k, len + 1, "%s%s%s", prefix, name, uid);
		ok = rc_append_fmt(key_slot(k, len), "DEL %b", k, len);
		(*sent)++;
	}
	if (ok && comp)
	{
		size_t		clen = key_companion(c, k, len);

		ok = rc_append_fmt(key_slot(c, clen), "DEL %b", c, clen);
		(*sent)++;
	}
	free(k);
	free(c);
	return ok;
}

/*
 * redis_connected(); uids has n NUL-terminated ids.  Deletes the keys and
 * companions of the users with gone[i] set (their account does not exist:
 * PostgreSQL's history went back).
 */
RedisStatus
redis_forget_users(char **uids, const bool *gone, int n)
{
	int			sent = 0;

	for (int i = 0; i < n; i++)
	{
		bool		ok = true;

		if (!gone[i])
			continue;
		for (int v = 0; ok && v < SYNC_NVALUES; v++)
			ok = append_forget(sync_value_keys[v], uids[i], true, &sent);
		if (!ok || !append_forget("txs:", uids[i], false, &sent))
		{
			redis_fail("forget users", "could not build the command");
			redis_disconnect();
			return RS_ERROR;
		}
	}
	for (int i = 0; i < sent; i++)
	{
		redisReply *reply = NULL;

		if (!rc_get_reply(&reply) || !reply_ok(reply, "forget users"))
		{
			redis_disconnect();
			return RS_ERROR;
		}
		freeReplyObject(reply);
	}
	return RS_OK;
}

/*
 * redis_connected().  Deletes the global keys of the layout before Redis
 * Cluster (sync:version, sync:asof, sync:cursor, sync:checked,
 * sync:rebuild under this prefix), one UNLINK each; *deleted gets how many
 * existed.
 */
RedisStatus
redis_forget_legacy(int *deleted)
{
	int			n = (int) (sizeof(legacy_keys) / sizeof(legacy_keys[0]));

	*deleted = 0;
	/* They were one daemon's, before partitions: not this one's to delete */
	if (part_count > 0)
		return RS_OK;
	for (int i = 0; i < n; i++)
	{
		size_t		len = prefix_len + strlen(legacy_keys[i]);
		char	   *k = malloc(len + 1);
		bool		ok = k != NULL;

		if (ok)
		{
			snprintf(k, len + 1, "%s%s", prefix, legacy_keys[i]);
			ok = rc_append_fmt(key_slot(k, len), "UNLINK %b", k, len);
			free(k);
		}
		if (!ok)
		{
			redis_fail("UNLINK", "could not build the command");
			redis_disconnect();
			return RS_ERROR;
		}
	}
	for (int i = 0; i < n; i++)
	{
		redisReply *reply = NULL;

		if (!rc_get_reply(&reply) || !reply_ok(reply, "UNLINK"))
		{
			redis_disconnect();
			return RS_ERROR;
		}
		if (reply->type == REDIS_REPLY_INTEGER)
			*deleted += (int) reply->integer;
		freeReplyObject(reply);
	}
	return RS_OK;
}

/*
 * redis_connected().  Writes nfields field/value pairs to sync:status
 * (used outside batches, e.g. at shutdown).
 */
RedisStatus
redis_write_status(const char *const *fields, int nfields)
{
	redisReply *reply = NULL;

	if (!append_status(fields, nfields) || !rc_get_reply(&reply))
	{
		redis_fail("HSET status", rc_errstr());
		redis_disconnect();
		return RS_ERROR;
	}
	if (!reply_ok(reply, "HSET status"))
		return RS_ERROR;
	freeReplyObject(reply);
	return RS_OK;
}

/*
 * Any time.  True once after a failover was seen in the Redis Cluster
 * (cluster.c): the promoted replica may lack some of the last writes.
 */
bool
redis_failover_seen(void)
{
	return rc_take_failover();
}

/* Fields of sync:status, in the order --status prints them */
static const char *const status_order[] = {
	"state", "rows_synced", "lag_ms", "last_error", "reconnects", "rebuilds",
	"stale_refused", "cursor", "updated_at", "started_at", "pid", "version"
};

/*
 * cfg is loaded, not connected.  Prints sync:status (one "field: value"
 * line each) for --status.  Returns the exit status: 0, or 1 if Redis is
 * unreachable or the hash does not exist.
 */
int
redis_print_status(const SyncConfig *cfg)
{
	redisReply *reply;
	int			rc = 1;

	if (connect_only(cfg, true) != RS_OK)
		return 1;
	reply = rc_command(slot_status, "HGETALL %b", key_status, strlen(key_status));
	if (reply_ok(reply, "HGETALL"))
	{
		if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0)
		{
			bool	   *done = calloc(reply->elements, sizeof(bool));

			/* Documented fields first, in their order, then any others */
			for (int f = 0; f <= (int) (sizeof(status_order) / sizeof(status_order[0])); f++)
			{
				for (size_t i = 0; done && i + 1 < reply->elements; i += 2)
				{
					redisReply *k = reply->element[i];
					redisReply *v = reply->element[i + 1];

					if (done[i] ||
						(f < (int) (sizeof(status_order) / sizeof(status_order[0])) &&
						 strcmp(k->str, status_order[f]) != 0))
						continue;
					printf("%.*s: %.*s\n", (int) k->len, k->str, (int) v->len, v->str);
					done[i] = true;
				}
			}
			free(done);
			rc = 0;
		}
		else
			fprintf(stderr, "credits-sync: no status in Redis (key %s): is the daemon running?\n",
					key_status);
		freeReplyObject(reply);
	}
	redis_disconnect();
	free_keys();
	return rc;
}
