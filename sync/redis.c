/*-------------------------------------------------------------------------
 *
 * redis.c
 *		credits-sync's Redis side: the connection, the apply script, the
 *		cursor and the status hash.
 *
 * Layout (every key starts with the configured prefix, "" by default):
 *	balance:<user>	string, accounts.balance
 *	txs:<user>		sorted set of the newest N ledger rows; score = created_at
 *					in epoch ms, member = compact JSON of the row
 *	available:<user> string, credits.credit_available(user)
 *	held:<user>		string, sum of the user's open, unexpired holds
 *	sync:version	hash, user -> accounts.version last written (balance:)
 *	sync:asof		hash, user -> "<version> <as_of>" of the last written
 *					available: and held: (as_of: epoch us they are for)
 *	sync:checked	string, epoch us: every hold or grant that expired up
 *					to then has been applied to available: and held:
 *	sync:cursor		string "<epoch> <window> <prev> [<cur> <ltxid> <lid>
 *					<etxid> <eid>]": everything visible in snapshot prev
 *					(and, inside cur, up to the given (txid, id) positions)
 *					has been applied
 *	sync:rebuild	set of the tokens of rebuilds in progress
 *	sync:status		hash, the daemon's state (see status.c)
 * User ids are opaque bytes: keys are passed to Redis with explicit
 * lengths, never through a format string.
 *
 * Every write of rows goes through one Lua script (APPLY_LUA), so each call
 * is atomic.  The script first checks that Redis holds exactly the cursor
 * (and sync:checked) the daemon wrote or read last, or for a rebuild, that
 * its token is in sync:rebuild; after FLUSHALL, an empty restart, a
 * rollback (a replica promoted, a restored dump) or another daemon's write
 * the check fails, nothing is written, and the daemon resumes from what
 * Redis holds.  Then,
 * per user, it writes the balance only if the version is newer than the
 * one in sync:version, and available/held only if (version, as_of) is
 * greater than the pair in sync:asof: time alone changes them at one
 * version, as a hold or grant passes its expiry (equal versions or pairs
 * rewrite a missing or mistyped key; the versions of all the call's users
 * are read with two HMGETs and written with one MSET and two HSETs),
 * ZADDs the rows (idempotent: a row's member and score never change) and
 * trims to the newest N.  The cursor is set last, by the same call.  A txs
 * key of another type (WRONGTYPE) is deleted, and the daemon rewrites it
 * from PostgreSQL; any other error aborts the call before the cursor moves.
 *
 * A batch too large for one call is split; the calls that do not carry the
 * cursor are sent first (pipelined) and the cursor's call only after all of
 * them succeeded, so the cursor never covers a row that failed to apply.
 *
 * Any error (I/O, timeout, error reply) drops the connection; the caller
 * reconnects with backoff and re-reads the cursor.
 *
 * Calls: main.c calls in; this file calls only status.c (errors, values
 * refused as older) and log.c.  It knows nothing of PostgreSQL: a
 * SyncBatch is plain C strings (batch.c), and libpq is not included.
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

/* Limits of one script call */
#define CALL_MAX_MEMBERS	10000
#define CALL_MAX_BYTES		(8 * 1024 * 1024)

/*
 * KEYS[1] cursor, KEYS[2] version hash, KEYS[3] rebuild token set, KEYS[4]
 * as_of hash, KEYS[5] checked time, then per user: nv value keys and its
 * txs key.
 * ARGV[1] mode (b, r, R or f: see ApplyMode), ARGV[2] the whole cursor
 * the daemon last wrote or read (b) or the rebuild token (r, R, f),
 * ARGV[3] new cursor or '', ARGV[4] window, ARGV[5] nv, ARGV[6] nb (the
 * first nb values are guarded by the version alone, the rest by (version,
 * as_of)), ARGV[7] new checked time or '', ARGV[8] the checked time
 * the daemon last wrote or read ('' for no check), then per user: id, version (''
 * if none), as_of, nv values, number of rows, (score, member) pairs.
 * Returns {'OK', number of values refused as older than Redis's, ids whose
 * txs key had to be deleted...} or {'STALE'}.
 */
static const char APPLY_LUA[] =
"local mode, epoch, cursor = ARGV[1], ARGV[2], ARGV[3]\n"
"local window, nv, nb = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])\n"
"local checked, expect_checked = ARGV[7], ARGV[8]\n"
"if mode == 'b' then\n"
"  if redis.pcall('GET', KEYS[1]) ~= epoch then return {'STALE'} end\n"
"  if expect_checked ~= '' and redis.pcall('GET', KEYS[5]) ~= expect_checked then\n"
"    return {'STALE'}\n"
"  end\n"
"else\n"
"  if redis.call('TYPE', KEYS[3]).ok ~= 'set' or\n"
"     redis.call('SISMEMBER', KEYS[3], epoch) == 0 then\n"
"    return {'STALE'}\n"
"  end\n"
"end\n"
"for _, h in ipairs({KEYS[2], KEYS[4]}) do\n"
"  local t = redis.call('TYPE', h).ok\n"
"  if t ~= 'hash' and t ~= 'none' then redis.call('DEL', h) end\n"
"end\n"
"local users, fields = {}, {}\n"
"local k, a = 6, 9\n"
"while a <= #ARGV do\n"
"  local u = {uid = ARGV[a], ver = ARGV[a + 1], asof = ARGV[a + 2], vals = a + 3, k = k}\n"
"  a = a + 3 + nv\n"
"  u.txs = KEYS[k + nv]\n"
"  k = k + nv + 1\n"
"  u.n = tonumber(ARGV[a])\n"
"  u.tx = a + 1\n"
"  a = a + 1 + 2 * u.n\n"
"  if u.ver ~= '' then\n"
"    fields[#fields + 1] = u.uid\n"
"    u.f = #fields\n"
"  end\n"
"  users[#users + 1] = u\n"
"end\n"
"local have, dhave = {}, {}\n"
"for i = 1, #fields, 1000 do\n"
"  local last = math.min(i + 999, #fields)\n"
"  local r = redis.call('HMGET', KEYS[2], unpack(fields, i, last))\n"
"  for j = 1, #r do have[i + j - 1] = r[j] end\n"
"  r = redis.call('HMGET', KEYS[4], unpack(fields, i, last))\n"
"  for j = 1, #r do dhave[i + j - 1] = r[j] end\n"
"end\n"
"local function missing(u, from, to)\n"
"  for i = from, to do\n"
"    if redis.call('TYPE', KEYS[u.k + i]).ok ~= 'string' then return true end\n"
"  end\n"
"  return false\n"
"end\n"
"local out, refused, sets, vsets, dsets = {'OK', 0}, 0, {}, {}, {}\n"
"for _, u in ipairs(users) do\n"
"  if u.f then\n"
"    local v = tonumber(u.ver)\n"
"    local h = tonumber(have[u.f] or '-1')\n"
"    if mode == 'R' then h = -1 end\n"
"    if h > v then refused = refused + 1 end\n"
"    if h < v or (h == v and missing(u, 0, nb - 1)) then\n"
"      for i = 0, nb - 1 do\n"
"        sets[#sets + 1] = KEYS[u.k + i]\n"
"        sets[#sets + 1] = ARGV[u.vals + i]\n"
"      end\n"
"      vsets[#vsets + 1] = u.uid\n"
"      vsets[#vsets + 1] = u.ver\n"
"    end\n"
"    local dv, dt, t = -1, -1, tonumber(u.asof)\n"
"    if dhave[u.f] then\n"
"      local x, y = string.match(dhave[u.f], '^(%d+) (%d+)$')\n"
"      if x then dv, dt = tonumber(x), tonumber(y) end\n"
"    end\n"
"    if mode == 'R' then dv, dt = -1, -1 end\n"
"    if dv > v or (dv == v and dt > t) then refused = refused + 1 end\n"
"    if nb < nv and (dv < v or (dv == v and (dt < t or\n"
"        (dt == t and missing(u, nb, nv - 1))))) then\n"
"      for i = nb, nv - 1 do\n"
"        sets[#sets + 1] = KEYS[u.k + i]\n"
"        sets[#sets + 1] = ARGV[u.vals + i]\n"
"      end\n"
"      dsets[#dsets + 1] = u.uid\n"
"      dsets[#dsets + 1] = u.ver .. ' ' .. u.asof\n"
"    end\n"
"  end\n"
"end\n"
"for i = 1, #sets, 1000 do redis.call('MSET', unpack(sets, i, math.min(i + 999, #sets))) end\n"
"for i = 1, #vsets, 1000 do redis.call('HSET', KEYS[2], unpack(vsets, i, math.min(i + 999, #vsets))) end\n"
"for i = 1, #dsets, 1000 do redis.call('HSET', KEYS[4], unpack(dsets, i, math.min(i + 999, #dsets))) end\n"
"for _, u in ipairs(users) do\n"
"  local i, added = 0, 0\n"
"  if mode == 'R' and u.ver ~= '' then redis.call('DEL', u.txs) end\n"
"  while i < u.n do\n"
"    local m = math.min(u.n - i, 500)\n"
"    local from, to = u.tx + 2 * i, u.tx + 2 * (i + m) - 1\n"
"    local r = redis.pcall('ZADD', u.txs, unpack(ARGV, from, to))\n"
"    if type(r) == 'table' and r.err then\n"
"      if not string.find(r.err, 'WRONGTYPE', 1, true) then return r end\n"
"      redis.call('DEL', u.txs)\n"
"      if mode == 'b' then out[#out + 1] = u.uid end\n"
"      r = redis.call('ZADD', u.txs, unpack(ARGV, from, to))\n"
"    end\n"
"    added = added + r\n"
"    i = i + m\n"
"  end\n"
"  if added > 0 or (mode ~= 'b' and u.ver ~= '') then\n"
"    redis.call('ZREMRANGEBYRANK', u.txs, 0, -(window + 1))\n"
"  end\n"
"end\n"
"if cursor ~= '' then redis.call('SET', KEYS[1], cursor) end\n"
"if checked ~= '' then redis.call('SET', KEYS[5], checked) end\n"
"if mode == 'f' then redis.call('SREM', KEYS[3], epoch) end\n"
"out[2] = refused\n"
"return out\n";

/* Redis keys of the per-account values, in the order of SyncUser.values */
static const char *const sync_value_keys[SYNC_NVALUES] = {"balance:", "available:", "held:"};

static redisContext *ctx = NULL;
static char script_sha[41];
static char *prefix = NULL;
static size_t prefix_len = 0;
static int window = DEFAULT_WINDOW;
static char *key_cursor = NULL;
static char *key_version = NULL;
static char *key_rebuild = NULL;
static char *key_status = NULL;
static char *key_asof = NULL;
static char *key_checked = NULL;

/* Growable argv for redisAppendCommandArgv */
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
	return ctx != NULL;
}

/* Any time. */
void
redis_disconnect(void)
{
	if (ctx != NULL)
	{
		redisFree(ctx);
		ctx = NULL;
	}
}

/*
 * ctx is open; reply is what redisCommand/redisGetReply returned.  False
 * (after logging) if it is missing or an error; frees it then.
 */
static bool
reply_ok(redisReply *reply, const char *what)
{
	if (reply == NULL)
	{
		redis_fail(what, ctx->errstr[0] ? ctx->errstr : "no reply");
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
	free(key_version);
	free(key_rebuild);
	free(key_status);
	free(key_asof);
	free(key_checked);
	prefix = key_cursor = key_version = key_rebuild = key_status = NULL;
	key_asof = key_checked = NULL;
}

/* cfg is loaded.  Builds the fixed key names. */
static bool
set_keys(const SyncConfig *cfg)
{
	free_keys();
	prefix = strdup(cfg->prefix);
	if (prefix == NULL)
		return false;
	prefix_len = strlen(prefix);
	window = cfg->window;
	key_cursor = make_key("sync:cursor");
	key_version = make_key("sync:version");
	key_rebuild = make_key("sync:rebuild");
	key_status = make_key("sync:status");
	key_asof = make_key("sync:asof");
	key_checked = make_key("sync:checked");
	return key_cursor && key_version && key_rebuild && key_status &&
		key_asof && key_checked;
}

/* cfg is loaded; not connected.  Connects (without loading the script). */
static bool
connect_only(const SyncConfig *cfg)
{
	struct timeval tv = {cfg->connect_timeout, 0};
	redisReply *reply;

	if (cfg->redis_host[0] == '/')
		ctx = redisConnectUnixWithTimeout(cfg->redis_host, tv);
	else
		ctx = redisConnectWithTimeout(cfg->redis_host, cfg->redis_port, tv);
	if (ctx == NULL || ctx->err)
	{
		redis_fail("connect", ctx ? ctx->errstr : "out of memory");
		redis_disconnect();
		return false;
	}
	if (redisSetTimeout(ctx, tv) != REDIS_OK)
	{
		redis_fail("connect", "could not set the timeout");
		redis_disconnect();
		return false;
	}
	if (cfg->redis_host[0] != '/')
		redisEnableKeepAlive(ctx);

	if (cfg->redis_password != NULL && cfg->redis_password[0] != '\0')
	{
		reply = redisCommand(ctx, "AUTH %b", cfg->redis_password,
							 strlen(cfg->redis_password));
		if (!reply_ok(reply, "AUTH"))
			goto fail;
		freeReplyObject(reply);
	}
	if (cfg->redis_db != 0)
	{
		reply = redisCommand(ctx, "SELECT %d", cfg->redis_db);
		if (!reply_ok(reply, "SELECT"))
			goto fail;
		freeReplyObject(reply);
	}
	if (!set_keys(cfg))
	{
		redis_fail("connect", "out of memory");
		goto fail;
	}
	return true;

fail:
	redis_disconnect();
	return false;
}

/*
 * ctx is open.  False (after a clear error) if Redis's maxmemory-policy
 * may evict the daemon's keys, which have no TTL: an allkeys-* policy.  An
 * evicted txs:<user> would stay truncated, an evicted balance:<user> would
 * stay missing until the user's next change, and an evicted sync:version
 * would let an older balance be written.  noeviction and volatile-*
 * policies never evict them.  A Redis that refuses CONFIG (renamed, ACL)
 * gets a warning.
 */
static bool
eviction_safe(void)
{
	redisReply *reply = redisCommand(ctx, "CONFIG GET maxmemory-policy");
	bool		ok = true;

	if (reply == NULL)
		return true;			/* the next command reports the I/O error */
	if (reply->type == REDIS_REPLY_ERROR)
		log_warning("Redis: CONFIG GET maxmemory-policy: %s; make sure the policy is noeviction or volatile-*",
					reply->str);
	else if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
			 reply->element[1]->type == REDIS_REPLY_STRING &&
			 strncmp(reply->element[1]->str, "allkeys-", 8) == 0)
	{
		log_error("Redis maxmemory-policy is %s, which can evict credits-sync's keys (they have no TTL), leaving balances and rows missing or stale; set maxmemory-policy to noeviction (or a volatile-* policy)",
				  reply->element[1]->str);
		status_error(SIDE_REDIS, "Redis maxmemory-policy %s can evict credits-sync's keys",
					 reply->element[1]->str);
		ok = false;
	}
	freeReplyObject(reply);
	return ok;
}

/*
 * cfg is loaded; not connected.  Connects and loads the script.  RS_STALE
 * means refused: Redis may evict the daemon's keys.
 */
RedisStatus
redis_connect(const SyncConfig *cfg)
{
	redisReply *reply;

	if (!connect_only(cfg))
		return RS_ERROR;
	if (!eviction_safe())
	{
		redis_disconnect();
		return RS_STALE;
	}
	reply = redisCommand(ctx, "SCRIPT LOAD %b", APPLY_LUA, sizeof(APPLY_LUA) - 1);
	if (!reply_ok(reply, "SCRIPT LOAD"))
	{
		redis_disconnect();
		return RS_ERROR;
	}
	if (reply->type != REDIS_REPLY_STRING || reply->len != 40)
	{
		freeReplyObject(reply);
		redis_fail("SCRIPT LOAD", "unexpected reply");
		redis_disconnect();
		return RS_ERROR;
	}
	memcpy(script_sha, reply->str, 40);
	script_sha[40] = '\0';
	freeReplyObject(reply);
	if (cfg->redis_host[0] == '/')
		log_info("connected to Redis at %s (db %d)", cfg->redis_host, cfg->redis_db);
	else
		log_info("connected to Redis at %s:%d (db %d)", cfg->redis_host,
				 cfg->redis_port, cfg->redis_db);
	return RS_OK;
}

/*
 * redis_connected(); key is one of the fixed keys.  *value gets its value
 * (malloc'd), or NULL when it is missing or not a string.
 */
static RedisStatus
get_string(const char *key, const char *what, char **value)
{
	redisReply *reply;

	*value = NULL;
	reply = redisCommand(ctx, "GET %b", key, strlen(key));
	if (reply == NULL)
	{
		redis_fail(what, ctx->errstr);
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
	else if (reply->type == REDIS_REPLY_ERROR)
		log_warning("Redis: %s: %s; ignoring it", what, reply->str);
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

	reply = redisCommand(ctx, "TYPE %b", key_rebuild, strlen(key_rebuild));
	if (!reply_ok(reply, "TYPE"))
		goto fail;
	if (reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "set") != 0 &&
		strcmp(reply->str, "none") != 0)
	{
		freeReplyObject(reply);
		log_warning("Redis: %s is not a set; deleting it", key_rebuild);
		reply = redisCommand(ctx, "DEL %b", key_rebuild, strlen(key_rebuild));
		if (!reply_ok(reply, "DEL"))
			goto fail;
	}
	freeReplyObject(reply);
	reply = redisCommand(ctx, "SADD %b %b", key_rebuild, strlen(key_rebuild),
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

/* One user's share of a call: rows [tx_first, tx_first + tx_count). */
typedef struct Piece
{
	const SyncUser *u;
	int			tx_first;
	int			tx_count;
	bool		with_values;
} Piece;

/* One script call: pieces [first, first + count) */
typedef struct Call
{
	int			first;
	int			count;
} Call;

/* calls is valid.  Starts a new, empty call after the current one. */
static bool
new_call(Call **calls, int *ncalls, int *ccap, int first_piece)
{
	if (*ncalls == *ccap)
	{
		Call	   *c = realloc(*calls, sizeof(Call) * (size_t) (*ccap * 2));

		if (c == NULL)
			return false;
		*calls = c;
		*ccap *= 2;
	}
	(*calls)[*ncalls].first = first_piece;
	(*calls)[*ncalls].count = 0;
	(*ncalls)++;
	return true;
}

/*
 * b is a filled batch.  Splits it into pieces and calls within the limits
 * (a call always takes at least one row, however big); *pieces and *calls
 * are malloc'd, and there is always at least one call.
 */
static bool
plan_calls(const SyncBatch *b, Piece **pieces, int *npieces, Call **calls,
		   int *ncalls)
{
	int			pcap = b->nusers + 8;
	int			ccap = 8;
	int			members = 0;
	size_t		bytes = 0;

	*npieces = 0;
	*ncalls = 0;
	*pieces = malloc(sizeof(Piece) * (size_t) pcap);
	*calls = malloc(sizeof(Call) * (size_t) ccap);
	if (*pieces == NULL || *calls == NULL || !new_call(calls, ncalls, &ccap, 0))
		return false;

	for (int i = 0; i < b->nusers; i++)
	{
		const SyncUser *u = &b->users[i];
		int			done = 0;
		bool		first = true;

		while (first || done < u->tx_count)
		{
			int			take = 0;
			size_t		pbytes = u->uid_len + 64;
			int			cur_count = (*calls)[*ncalls - 1].count;
			Piece	   *p;

			while (done + take < u->tx_count && members + take < CALL_MAX_MEMBERS)
			{
				size_t		mb = b->txs[u->tx_first + done + take].member_len + 24;

				if ((take > 0 || cur_count > 0) && bytes + pbytes + mb > CALL_MAX_BYTES)
					break;
				pbytes += mb;
				take++;
			}
			if (take == 0 && done < u->tx_count && cur_count > 0)
			{
				if (!new_call(calls, ncalls, &ccap, *npieces))
					return false;
				members = 0;
				bytes = 0;
				continue;
			}
			if (*npieces == pcap)
			{
				Piece	   *np = realloc(*pieces, sizeof(Piece) * (size_t) (pcap * 2));

				if (np == NULL)
					return false;
				*pieces = np;
				pcap *= 2;
			}
			p = &(*pieces)[(*npieces)++];
			p->u = u;
			p->tx_first = u->tx_first + done;
			p->tx_count = take;
			p->with_values = first;
			(*calls)[*ncalls - 1].count++;
			first = false;
			done += take;
			members += take;
			bytes += pbytes;
		}
	}
	return true;
}

/*
 * ctx is open.  Appends one script call for pieces [first, first+count)
 * to the pipeline.  keybuf/numbuf receive the strings the argv points to;
 * they must outlive the append (hiredis copies the arguments, so they can
 * be freed right after).
 */
static bool
append_call(const SyncBatch *b, const Piece *pieces, int first, int count,
			ApplyMode mode, const char *epoch, const char *cursor,
			const char *checked, const char *expect_checked, bool use_eval)
{
	Argv		keys = {0};
	Argv		args = {0};
	Argv		all = {0};
	char	   *keybuf = NULL;
	char	   *numbuf = NULL;
	size_t		keybytes = 0;
	size_t		koff = 0;
	char		modestr[2] = {(char) mode, '\0'};
	char		winstr[16];
	char		nvstr[16];
	char		nbstr[16];
	char		numkeys[16];
	bool		ok = false;

	snprintf(winstr, sizeof(winstr), "%d", window);
	snprintf(nvstr, sizeof(nvstr), "%d", SYNC_NVALUES);
	snprintf(nbstr, sizeof(nbstr), "%d", SYNC_NVERSIONED);

	for (int i = first; i < first + count; i++)
	{
		keybytes += (SYNC_NVALUES + 1) * (prefix_len + pieces[i].u->uid_len) + 4;
		for (int v = 0; v < SYNC_NVALUES; v++)
			keybytes += strlen(sync_value_keys[v]);
	}
	keybuf = malloc(keybytes + 1);
	numbuf = malloc((size_t) (count + 1) * 16);
	if (keybuf == NULL || numbuf == NULL)
		goto done;

	if (!argv_push(&keys, key_cursor, strlen(key_cursor)) ||
		!argv_push(&keys, key_version, strlen(key_version)) ||
		!argv_push(&keys, key_rebuild, strlen(key_rebuild)) ||
		!argv_push(&keys, key_asof, strlen(key_asof)) ||
		!argv_push(&keys, key_checked, strlen(key_checked)) ||
		!argv_push(&args, modestr, 1) ||
		!argv_push(&args, epoch, strlen(epoch)) ||
		!argv_push(&args, cursor ? cursor : "", cursor ? strlen(cursor) : 0) ||
		!argv_push(&args, winstr, strlen(winstr)) ||
		!argv_push(&args, nvstr, strlen(nvstr)) ||
		!argv_push(&args, nbstr, strlen(nbstr)) ||
		!argv_push(&args, checked ? checked : "", checked ? strlen(checked) : 0) ||
		!argv_push(&args, expect_checked ? expect_checked : "",
				   expect_checked ? strlen(expect_checked) : 0))
		goto done;

	for (int i = first; i < first + count; i++)
	{
		const Piece *p = &pieces[i];
		const SyncUser *u = p->u;
		char	   *num = numbuf + (size_t) (i - first) * 16;

		for (int v = 0; v <= SYNC_NVALUES; v++)
		{
			const char *name = v < SYNC_NVALUES ? sync_value_keys[v] : "txs:";
			size_t		nlen = strlen(name);
			char	   *k = keybuf + koff;

			memcpy(k, prefix, prefix_len);
			memcpy(k + prefix_len, name, nlen);
			memcpy(k + prefix_len + nlen, u->uid, u->uid_len);
			koff += prefix_len + nlen + u->uid_len;
			if (!argv_push(&keys, k, prefix_len + nlen + u->uid_len))
				goto done;
		}

		if (!argv_push(&args, u->uid, u->uid_len))
			goto done;
		if (p->with_values && u->version != NULL)
		{
			if (!argv_push(&args, u->version, strlen(u->version)) ||
				!argv_push(&args, u->as_of, strlen(u->as_of)))
				goto done;
			for (int v = 0; v < SYNC_NVALUES; v++)
				if (!argv_push(&args, u->values[v], strlen(u->values[v])))
					goto done;
		}
		else
		{
			if (!argv_push(&args, "", 0) || !argv_push(&args, "", 0))
				goto done;
			for (int v = 0; v < SYNC_NVALUES; v++)
				if (!argv_push(&args, "", 0))
					goto done;
		}
		snprintf(num, 16, "%d", p->tx_count);
		if (!argv_push(&args, num, strlen(num)))
			goto done;
		for (int t = p->tx_first; t < p->tx_first + p->tx_count; t++)
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
	else if (!argv_push(&all, "EVALSHA", 7) || !argv_push(&all, script_sha, 40))
		goto done;
	if (!argv_push(&all, numkeys, strlen(numkeys)))
		goto done;
	for (int i = 0; i < keys.n; i++)
		if (!argv_push(&all, keys.v[i], keys.len[i]))
			goto done;
	for (int i = 0; i < args.n; i++)
		if (!argv_push(&all, args.v[i], args.len[i]))
			goto done;

	ok = redisAppendCommandArgv(ctx, all.n, all.v, all.len) == REDIS_OK;

done:
	if (!ok)
		redis_fail("apply", "could not build the command (out of memory)");
	argv_free(&keys);
	argv_free(&args);
	argv_free(&all);
	free(keybuf);
	free(numbuf);
	return ok;
}

/* ctx is open.  Appends HSET sync:status with nfields field/value pairs. */
static bool
append_status(const char *const *fields, int nfields)
{
	Argv		a = {0};
	bool		ok;

	ok = argv_push(&a, "HSET", 4) && argv_push(&a, key_status, strlen(key_status));
	for (int i = 0; ok && i < 2 * nfields; i++)
		ok = argv_push(&a, fields[i], strlen(fields[i]));
	ok = ok && redisAppendCommandArgv(ctx, a.n, a.v, a.len) == REDIS_OK;
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
 * ctx is open; one script reply is due.  Reads it: sets *noscript on a
 * NOSCRIPT error, *stale on STALE, adds the ids to repair to repairs.
 */
static RedisStatus
read_call_reply(bool *noscript, bool *stale, RepairList *repairs)
{
	redisReply *reply = NULL;
	RedisStatus st = RS_OK;

	*noscript = false;
	if (redisGetReply(ctx, (void **) &reply) != REDIS_OK || reply == NULL)
	{
		redis_fail("apply", ctx->errstr[0] ? ctx->errstr : "no reply");
		return RS_ERROR;
	}
	if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0)
		*noscript = true;
	else if (reply->type == REDIS_REPLY_ERROR)
	{
		redis_fail("apply", reply->str);
		st = RS_ERROR;
	}
	else if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
			 reply->element[0]->type != REDIS_REPLY_STRING)
	{
		redis_fail("apply", "unexpected reply from the script");
		st = RS_ERROR;
	}
	else if (strcmp(reply->element[0]->str, "STALE") == 0)
		*stale = true;
	else if (reply->elements < 2 || reply->element[1]->type != REDIS_REPLY_INTEGER)
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

/* ctx is open; an HSET of the status hash is due.  Reads its reply. */
static RedisStatus
read_status_reply(void)
{
	redisReply *reply = NULL;

	if (redisGetReply(ctx, (void **) &reply) != REDIS_OK || reply == NULL)
	{
		redis_fail("HSET status", ctx->errstr[0] ? ctx->errstr : "no reply");
		return RS_ERROR;
	}
	if (reply->type == REDIS_REPLY_ERROR)
	{
		/* A mistyped status key must not stop syncing. */
		log_warning("Redis: HSET %s: %s; deleting it", key_status, reply->str);
		freeReplyObject(reply);
		reply = redisCommand(ctx, "DEL %b", key_status, strlen(key_status));
		if (!reply_ok(reply, "DEL status"))
			return RS_ERROR;
	}
	freeReplyObject(reply);
	return RS_OK;
}

/*
 * ctx is open.  Sends calls [from, to) pipelined (the last one of the
 * batch with the cursor), then the status HSET if given, and reads all
 * replies; calls refused with NOSCRIPT are sent again with EVAL.
 */
static RedisStatus
send_calls(const SyncBatch *b, const Piece *pieces, const Call *calls,
		   int ncalls, int from, int to, ApplyMode mode, const char *epoch,
		   const char *expect_checked, const char *cursor,
		   const char *const *status, int nstatus, bool *stale,
		   RepairList *repairs)
{
	bool	   *again = calloc((size_t) (to - from) + 1, sizeof(bool));
	RedisStatus st = RS_OK;
	int			nagain = 0;

	if (again == NULL)
	{
		redis_fail("apply", "out of memory");
		return RS_ERROR;
	}
	for (int c = from; c < to; c++)
	{
		if (!append_call(b, pieces, calls[c].first, calls[c].count, mode, epoch,
						 c == ncalls - 1 ? cursor : NULL,
						 c == ncalls - 1 && b->checked[0] ? b->checked : NULL,
						 expect_checked, false))
		{
			free(again);
			return RS_ERROR;
		}
	}
	if (nstatus > 0 && !append_status(status, nstatus))
	{
		free(again);
		return RS_ERROR;
	}
	for (int c = from; c < to && st != RS_ERROR; c++)
	{
		RedisStatus r = read_call_reply(&again[c - from], stale, repairs);

		if (r != RS_OK)
			st = r;
		if (again[c - from])
			nagain++;
	}
	if (st == RS_OK && nstatus > 0)
		st = read_status_reply();

	if (st == RS_OK && nagain > 0)
	{
		log_info("Redis: script not cached (SCRIPT FLUSH or restart?); sending it with EVAL");
		for (int c = from; c < to && st == RS_OK; c++)
		{
			if (again[c - from] &&
				!append_call(b, pieces, calls[c].first, calls[c].count, mode,
							 epoch, c == ncalls - 1 ? cursor : NULL,
							 c == ncalls - 1 && b->checked[0] ? b->checked : NULL,
							 expect_checked, true))
				st = RS_ERROR;
		}
		for (int c = from; c < to && st == RS_OK; c++)
		{
			bool		noscript;

			if (!again[c - from])
				continue;
			st = read_call_reply(&noscript, stale, repairs);
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
 * redis_connected(); b is a filled batch (may have no users).  Applies it
 * with the script in the given mode; epoch is the whole cursor text the
 * caller last wrote or read (mode b: compare-and-set, so a Redis that went
 * back, or another daemon's write, is noticed) or the rebuild token (r, R,
 * f); expect_checked (mode b, or NULL) likewise sync:checked.  cursor (or NULL) is stored by the last
 * call, sent only after the others succeeded.  The nstatus field/value
 * pairs in status are written to sync:status in the same pipeline.  Users
 * whose txs key had the wrong type are added to repairs (or NULL).  On
 * RS_ERROR the connection has been dropped.
 */
RedisStatus
redis_apply(const SyncBatch *b, ApplyMode mode, const char *epoch,
			const char *expect_checked, const char *cursor,
			const char *const *status, int nstatus, RepairList *repairs)
{
	Piece	   *pieces = NULL;
	Call	   *calls = NULL;
	int			npieces,
				ncalls;
	bool		stale = false;
	RedisStatus st;

	if (!plan_calls(b, &pieces, &npieces, &calls, &ncalls))
	{
		redis_fail("apply", "out of memory");
		st = RS_ERROR;
	}
	else
	{
		st = RS_OK;
		if (ncalls > 1)
			st = send_calls(b, pieces, calls, ncalls, 0, ncalls - 1, mode, epoch,
							expect_checked, cursor, NULL, 0, &stale, repairs);
		if (st == RS_OK && !stale)
			st = send_calls(b, pieces, calls, ncalls, ncalls - 1, ncalls, mode,
							epoch, expect_checked, cursor, status, nstatus,
							&stale, repairs);
		if (st == RS_OK && stale)
			st = RS_STALE;
	}
	if (st == RS_ERROR)
		redis_disconnect();
	free(pieces);
	free(calls);
	return st;
}

/*
 * redis_connected(); *scan is "0" (malloc'd) to start.  Reads the next
 * page of user ids from sync:version (every user whose values were ever
 * written) into *uids (n malloc'd strings, in a malloc'd array); *scan
 * becomes the next HSCAN cursor, "0" when done.
 */
RedisStatus
redis_scan_users(char **scan, char ***uids, int *n)
{
	redisReply *reply;
	redisReply *items;

	*uids = NULL;
	*n = 0;
	reply = redisCommand(ctx, "HSCAN %b %s COUNT 1000", key_version,
						 strlen(key_version), *scan);
	if (!reply_ok(reply, "HSCAN"))
		goto fail;
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
		reply->element[0]->type != REDIS_REPLY_STRING ||
		reply->element[1]->type != REDIS_REPLY_ARRAY)
	{
		freeReplyObject(reply);
		redis_fail("HSCAN", "unexpected reply");
		goto fail;
	}
	free(*scan);
	*scan = strdup(reply->element[0]->str);
	items = reply->element[1];
	*uids = calloc(items->elements / 2 + 1, sizeof(char *));
	if (*scan == NULL || *uids == NULL)
	{
		freeReplyObject(reply);
		redis_fail("HSCAN", "out of memory");
		goto fail;
	}
	for (size_t i = 0; i + 1 < items->elements; i += 2)
	{
		redisReply *f = items->element[i];

		/* A user id cannot contain NUL (a PostgreSQL text cannot) */
		if (f->type != REDIS_REPLY_STRING || memchr(f->str, '\0', f->len) != NULL)
			continue;
		(*uids)[*n] = strdup(f->str);
		if ((*uids)[*n] == NULL)
		{
			freeReplyObject(reply);
			redis_fail("HSCAN", "out of memory");
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
 * redis_connected(); uids has n NUL-terminated ids.  Deletes the keys of
 * the users with gone[i] set (their account does not exist: PostgreSQL's
 * history went back) and their sync:version and sync:asof entries.
 */
RedisStatus
redis_forget_users(char **uids, const bool *gone, int n)
{
	int			sent = 0;

	for (int i = 0; i < n; i++)
	{
		Argv		a = {0};
		char	   *keys[SYNC_NVALUES + 1];
		bool		ok = true;

		if (!gone[i])
			continue;
		memset(keys, 0, sizeof(keys));
		ok = argv_push(&a, "DEL", 3);
		for (int v = 0; ok && v <= SYNC_NVALUES; v++)
		{
			const char *name = v < SYNC_NVALUES ? sync_value_keys[v] : "txs:";
			size_t		len = prefix_len + strlen(name) + strlen(uids[i]);

			keys[v] = malloc(len + 1);
			ok = keys[v] != NULL;
			if (ok)
			{
				snprintf(keys[v], len + 1, "%s%s%s", prefix, name, uids[i]);
				ok = argv_push(&a, keys[v], len);
			}
		}
		ok = ok && redisAppendCommandArgv(ctx, a.n, a.v, a.len) == REDIS_OK;
		ok = ok && redisAppendCommand(ctx, "HDEL %b %b", key_version, strlen(key_version),
									  uids[i], strlen(uids[i])) == REDIS_OK;
		ok = ok && redisAppendCommand(ctx, "HDEL %b %b", key_asof, strlen(key_asof),
									  uids[i], strlen(uids[i])) == REDIS_OK;
		argv_free(&a);
		for (int v = 0; v <= SYNC_NVALUES; v++)
			free(keys[v]);
		if (!ok)
		{
			redis_fail("forget users", "could not build the command");
			redis_disconnect();
			return RS_ERROR;
		}
		sent += 3;
	}
	for (int i = 0; i < sent; i++)
	{
		redisReply *reply = NULL;

		if (redisGetReply(ctx, (void **) &reply) != REDIS_OK ||
			!reply_ok(reply, "forget users"))
		{
			redis_disconnect();
			return RS_ERROR;
		}
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

	if (!append_status(fields, nfields) ||
		redisGetReply(ctx, (void **) &reply) != REDIS_OK)
	{
		redis_fail("HSET status", ctx->errstr);
		redis_disconnect();
		return RS_ERROR;
	}
	if (!reply_ok(reply, "HSET status"))
		return RS_ERROR;
	freeReplyObject(reply);
	return RS_OK;
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

	if (!connect_only(cfg))
		return 1;
	reply = redisCommand(ctx, "HGETALL %b", key_status, strlen(key_status));
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
