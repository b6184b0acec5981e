/*-------------------------------------------------------------------------
 *
 * check.c
 *		Test tool for credits-sync: compares Redis with PostgreSQL.
 *
 *	check [--prefix P] [--window N] [--timeout-ms T]
 *		Exit 0 as soon as Redis matches PostgreSQL (retrying every 20 ms
 *		until T ms have passed), else print the differences and exit 1.
 *		"Matches" means, for every row of credits.accounts:
 *		  - GET <P>balance:<u> equals credits.credit_balance(u);
 *		  - GET <P>available:<u> equals credits.credit_available(u), and
 *			GET <P>held:<u> the sum of u's open holds not yet expired (both
 *			recomputed at every retry, so expiries must be followed);
 *		  - ZRANGE <P>txs:<u> holds exactly the ids of the newest N ledger
 *			rows, newest by (created_at in ms, then Redis's member order,
 *			which for these members is the byte order of id || ',');
 *		  - every member is compact JSON (no whitespace outside strings) except
 *			its id, right-aligned in 19 characters
 *			and equal, as jsonb, to the row's {id, amount, balance, action,
 *			metadata, created_at}, with the score = created_at in epoch ms;
 *		and no <P>balance:*, available:*, held:* or <P>txs:* key, nor a
 *		companion of one ("{K}:v" or "{T}:v:K", see sync/keyslot.c), exists
 *		for a user without an account (an aborted transaction's user, say);
 *		with --partition P/N, only keys of users of partition P of N
 *		(sync/partition.c) count there: other databases' daemons write the
 *		others.
 *
 *	check --monitor --duration-ms D [--prefix P] USER...
 *		Polls the users' balance and the companions of balance:, available:
 *		and held: for D ms and exits 1 if any of them ever goes up (balance)
 *		or down (version; the (version, as_of) pairs of available:/held:).
 *		For workloads that only deduct.
 *
 * PostgreSQL from the PG* environment, Redis from REDIS_HOST/REDIS_PORT,
 * or, when REDIS_CLUSTER_NODES (host:port,...) is set, a Redis Cluster:
 * each read goes to its slot's master (CLUSTER SLOTS, read again at every
 * retry) and SCAN visits every master.
 * User ids are handled as byte strings throughout.  Built with
 * sync/keyslot.c, for the companion names.
 *
 *-------------------------------------------------------------------------
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

/* sync/keyslot.c */
#define KEY_COMPANION_MAX(len)	((len) + 16)
extern size_t key_companion(char *dst, const char *key, size_t len);
extern int	key_slot(const char *key, size_t len);

/* sync/partition.c */
extern int	partition_of(const char *uid, size_t len, int count);
extern bool partition_parse(const char *s, int *index, int *count);
static int	part_index = 0,
			part_count = 0;	/* --partition p/n: keys of other users are not ours */

typedef struct User
{
	char	   *uid;
	size_t		uid_len;
	char	   *balance;
	char	   *available;
	char	   *held;
	char	   *ids;			/* expected ids, ascending, comma-separated */
} User;

static const char *prefix = "";
static size_t prefix_len = 0;
static int	window = 1000;
static PGconn *pg;
static redisContext *rc;

/* Redis Cluster: one context per master; which one each pipelined read went to */
#define MAX_MASTERS 32
static bool cluster = false;
static redisContext *masters[MAX_MASTERS];
static int	nmasters = 0;
static short slot_master[16384];
static int *sent = NULL;
static int	nsent = 0,
			sent_cap = 0,
			nread = 0;
static int	problems;
static char report[1 << 16];
static size_t report_len;

/* Any time. */
static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Records one difference (the first 20 are kept for the report). */
static void
problem(const char *fmt,...)
{
	va_list		ap;

	problems++;
	if (problems > 20 || report_len >= sizeof(report) - 256)
		return;
	va_start(ap, fmt);
	report_len += (size_t) vsnprintf(report + report_len, sizeof(report) - report_len, fmt, ap);
	va_end(ap);
	report[report_len++] = '\n';
	report[report_len] = '\0';
}

/* Printable form of a user id (static buffer, one at a time). */
static const char *
q(const char *s, size_t len)
{
	static char buf[600];
	size_t		n = 0;

	for (size_t i = 0; i < len && n < sizeof(buf) - 8; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c < 0x20 || c == 0x7f || c == '\\')
			n += (size_t) snprintf(buf + n, sizeof(buf) - n, "\\x%02x", c);
		else
			buf[n++] = (char) c;
	}
	buf[n] = '\0';
	return buf;
}

/* Exits on a fatal setup error. */
static void
die(const char *what, const char *msg)
{
	fprintf(stderr, "check: %s: %s\n", what, msg);
	exit(2);
}

static void die(const char *what, const char *msg);

/* Cluster mode: (re)reads CLUSTER SLOTS and connects to every master. */
static void
cluster_map(void)
{
	const char *nodes = getenv("REDIS_CLUSTER_NODES");
	char	   *list = strdup(nodes);
	redisReply *r = NULL;

	for (int i = 0; i < nmasters; i++)
		redisFree(masters[i]);
	nmasters = 0;
	for (char *tok = strtok(list, ","); tok != NULL && r == NULL; tok = strtok(NULL, ","))
	{
		char	   *colon = strrchr(tok, ':');
		redisContext *c;
		struct timeval tv = {1, 0};

		if (colon == NULL)
			continue;
		*colon = '\0';
		c = redisConnectWithTimeout(tok, atoi(colon + 1), tv);
		if (c == NULL || c->err)
		{
			if (c)
				redisFree(c);
			continue;
		}
		r = redisCommand(c, "CLUSTER SLOTS");
		if (r != NULL && r->type != REDIS_REPLY_ARRAY)
		{
			freeReplyObject(r);
			r = NULL;
		}
		redisFree(c);
	}
	free(list);
	if (r == NULL)
		die("Redis", "no node of REDIS_CLUSTER_NODES answers CLUSTER SLOTS");
	for (int s = 0; s < 16384; s++)
		slot_master[s] = 0;
	for (size_t e = 0; e < r->elements; e++)
	{
		redisReply *range = r->element[e];
		redisReply *m = range->element[2];
		int			k;
		char		host[256];

		snprintf(host, sizeof(host), "%s", m->element[0]->str);
		for (k = 0; k < nmasters; k++)
			if (strcmp(masters[k]->tcp.host, host) == 0 &&
				masters[k]->tcp.port == (int) m->element[1]->integer)
				break;
		if (k == nmasters)
		{
			if (nmasters == MAX_MASTERS)
				die("Redis", "too many masters");
			masters[nmasters] = redisConnect(host, (int) m->element[1]->integer);
			if (masters[nmasters] == NULL || masters[nmasters]->err)
				die("Redis", "cannot connect to a master");
			nmasters++;
		}
		for (long long s = range->element[0]->integer; s <= range->element[1]->integer; s++)
			slot_master[s] = (short) k;
	}
	freeReplyObject(r);
	nsent = nread = 0;
}

/* Appends a command reading key k (kl bytes): to rc, or to k's master. */
static void
app(const char *k, size_t kl, const char *fmt,...)
{
	va_list		ap;
	redisContext *c = rc;
	int			m = 0;

	if (cluster)
	{
		m = slot_master[key_slot(k, kl)];
		c = masters[m];
		if (nsent == sent_cap)
		{
			sent_cap = sent_cap ? 2 * sent_cap : 1024;
			sent = realloc(sent, sizeof(int) * (size_t) sent_cap);
		}
		sent[nsent++] = m;
	}
	va_start(ap, fmt);
	redisvAppendCommand(c, fmt, ap);
	va_end(ap);
}

/* The next reply of the pipeline, in the order of app(). */
static int
getr(redisReply **r)
{
	redisContext *c = rc;

	if (cluster)
		c = masters[sent[nread++]];
	if (redisGetReply(c, (void **) r) != REDIS_OK)
		die("Redis", c->errstr);
	return REDIS_OK;
}

/* Connects to both; exits on failure. */
static void
connect_all(void)
{
	const char *host = getenv("REDIS_HOST");
	const char *port = getenv("REDIS_PORT");
	PGresult   *res;

	pg = PQconnectdb("");
	if (PQstatus(pg) != CONNECTION_OK)
		die("PostgreSQL", PQerrorMessage(pg));
	res = PQexec(pg, "SET TimeZone = 'UTC'");
	PQclear(res);
	if (getenv("REDIS_CLUSTER_NODES") != NULL && getenv("REDIS_CLUSTER_NODES")[0] != '\0')
	{
		cluster = true;
		cluster_map();
		return;
	}
	rc = redisConnect(host ? host : "127.0.0.1", port ? atoi(port) : 6379);
	if (rc == NULL || rc->err)
		die("Redis", rc ? rc->errstr : "out of memory");
}

/* key = prefix + name + uid, malloc'd; *len gets its length */
static char *
key(const char *name, const char *uid, size_t uid_len, size_t *len)
{
	size_t		nl = strlen(name);
	char	   *k = malloc(prefix_len + nl + uid_len + 1);

	memcpy(k, prefix, prefix_len);
	memcpy(k + prefix_len, name, nl);
	memcpy(k + prefix_len + nl, uid, uid_len);
	*len = prefix_len + nl + uid_len;
	k[*len] = '\0';
	return k;
}

/* name + uid's companion key (malloc'd); *len gets its length */
static char *
companion(const char *name, const char *uid, size_t uid_len, size_t *len)
{
	size_t		kl;
	char	   *k = key(name, uid, uid_len, &kl);
	char	   *c = malloc(KEY_COMPANION_MAX(kl) + 1);

	*len = key_companion(c, k, kl);
	c[*len] = '\0';
	free(k);
	return c;
}

/* The 19 characters at p are blanks, then at least one digit, then digits. */
static bool
id_aligned(const char *p)
{
	int			i = 0;

	while (i < 19 && p[i] == ' ')
		i++;
	if (i == 19)
		return false;
	for (; i < 19; i++)
		if (p[i] < '0' || p[i] > '9')
			return false;
	return true;
}

/* True if s (len bytes) has whitespace outside JSON string literals. */
static bool
has_loose_space(const char *s, size_t len)
{
	bool		in_str = false,
				esc = false;

	for (size_t i = 0; i < len; i++)
	{
		char		c = s[i];

		if (in_str)
		{
			if (esc)
				esc = false;
			else if (c == '\\')
				esc = true;
			else if (c == '"')
				in_str = false;
		}
		else if (c == '"')
			in_str = true;
		else if (c == ' ' || c == '\n' || c == '\t' || c == '\r')
			return true;
	}
	return false;
}

static int
cmp_int64(const void *a, const void *b)
{
	int64_t		x = *(const int64_t *) a,
				y = *(const int64_t *) b;

	return (x > y) - (x < y);
}

static int
cmp_user(const void *a, const void *b)
{
	const User *x = a,
			   *y = b;
	size_t		n = x->uid_len < y->uid_len ? x->uid_len : y->uid_len;
	int			c = memcmp(x->uid, y->uid, n);

	if (c != 0)
		return c;
	return (x->uid_len > y->uid_len) - (x->uid_len < y->uid_len);
}

/* Appends s to a growable buffer, escaped as a PostgreSQL array element. */
static void
array_add(char **buf, size_t *len, size_t *cap, const char *s, size_t slen)
{
	if (*len + 2 * slen + 8 > *cap)
	{
		*cap = (*len + 2 * slen + 8) * 2;
		*buf = realloc(*buf, *cap);
	}
	if (*len > 1)
		(*buf)[(*len)++] = ',';
	(*buf)[(*len)++] = '"';
	for (size_t i = 0; i < slen; i++)
	{
		if (s[i] == '"' || s[i] == '\\')
			(*buf)[(*len)++] = '\\';
		(*buf)[(*len)++] = s[i];
	}
	(*buf)[(*len)++] = '"';
	(*buf)[*len] = '\0';
}

/* One comparison; returns the number of problems found. */
static int
check_once(void)
{
	const char *params[1];
	char		wbuf[16];
	PGresult   *res;
	int			n;
	User	   *users;
	char	   *members = NULL,
			   *scores = NULL;
	size_t		mlen = 0,
				mcap = 0,
				slen = 0,
				scap = 0;
	unsigned long long cursor = 0;

	problems = 0;
	report_len = 0;
	report[0] = '\0';
	if (cluster)
		cluster_map();

	snprintf(wbuf, sizeof(wbuf), "%d", window);
	params[0] = wbuf;
	res = PQexecParams(pg,
					   "SELECT a.user_id, credits.credit_balance(a.user_id)::text,"
					   " coalesce((SELECT string_agg(x.id::text, ',' ORDER BY x.id) FROM ("
					   "   SELECT l.id FROM credits.ledger l WHERE l.user_id = a.user_id"
					   "   ORDER BY floor(extract(epoch FROM l.created_at) * 1000) DESC,"
					   "            (l.id::text || ',') COLLATE \"C\" DESC"
					   "   LIMIT $1::int) x), ''),"
					   " credits.credit_available(a.user_id)::text,"
					   " (SELECT coalesce(sum(h.amount), 0) FROM credits.holds h"
					   "   WHERE h.user_id = a.user_id AND h.status = 'open'"
					   "     AND h.expires_at > now())::text"
					   " FROM credits.accounts a",
					   1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		die("expected state", PQresultErrorMessage(res));
	n = PQntuples(res);
	users = calloc((size_t) n + 1, sizeof(User));
	for (int i = 0; i < n; i++)
	{
		users[i].uid = PQgetvalue(res, i, 0);
		users[i].uid_len = (size_t) PQgetlength(res, i, 0);
		users[i].balance = PQgetvalue(res, i, 1);
		users[i].ids = PQgetvalue(res, i, 2);
		users[i].available = PQgetvalue(res, i, 3);
		users[i].held = PQgetvalue(res, i, 4);
	}
	qsort(users, (size_t) n, sizeof(User), cmp_user);

	/* Pipelined reads of every user's keys */
	for (int i = 0; i < n; i++)
	{
		size_t		bl,
					tl;
		char	   *bk = key("balance:", users[i].uid, users[i].uid_len, &bl);
		char	   *tk = key("txs:", users[i].uid, users[i].uid_len, &tl);

		size_t		al,
					hl;
		char	   *ak = key("available:", users[i].uid, users[i].uid_len, &al);
		char	   *hk = key("held:", users[i].uid, users[i].uid_len, &hl);

		app(bk, bl, "GET %b", bk, bl);
		app(tk, tl, "ZRANGE %b 0 -1 WITHSCORES", tk, tl);
		app(ak, al, "GET %b", ak, al);
		app(hk, hl, "GET %b", hk, hl);
		free(bk);
		free(tk);
		free(ak);
		free(hk);
	}
	members = malloc(mcap = 1024);
	scores = malloc(scap = 1024);
	strcpy(members, "{");
	strcpy(scores, "{");
	mlen = slen = 1;

	for (int i = 0; i < n; i++)
	{
		redisReply *r1 = NULL,
				   *r2 = NULL,
				   *r3 = NULL,
				   *r4 = NULL;
		User	   *u = &users[i];

		getr(&r1);
		getr(&r2);
		getr(&r3);
		getr(&r4);

		if (r3->type != REDIS_REPLY_STRING)
			problem("user \"%s\": available key %s (expected %s)", q(u->uid, u->uid_len),
					r3->type == REDIS_REPLY_NIL ? "missing" : "not a string", u->available);
		else if (strcmp(r3->str, u->available) != 0)
			problem("user \"%s\": available %s in Redis, %s in PostgreSQL",
					q(u->uid, u->uid_len), r3->str, u->available);
		if (r4->type != REDIS_REPLY_STRING)
			problem("user \"%s\": held key %s (expected %s)", q(u->uid, u->uid_len),
					r4->type == REDIS_REPLY_NIL ? "missing" : "not a string", u->held);
		else if (strcmp(r4->str, u->held) != 0)
			problem("user \"%s\": held %s in Redis, %s in PostgreSQL",
					q(u->uid, u->uid_len), r4->str, u->held);
		freeReplyObject(r3);
		freeReplyObject(r4);

		if (r1->type != REDIS_REPLY_STRING)
			problem("user \"%s\": balance key %s (expected %s)", q(u->uid, u->uid_len),
					r1->type == REDIS_REPLY_NIL ? "missing" : "not a string", u->balance);
		else if (strcmp(r1->str, u->balance) != 0)
			problem("user \"%s\": balance %s in Redis, %s in PostgreSQL",
					q(u->uid, u->uid_len), r1->str, u->balance);

		if (r2->type != REDIS_REPLY_ARRAY)
			problem("user \"%s\": txs key is not a sorted set (%s)", q(u->uid, u->uid_len),
					r2->type == REDIS_REPLY_ERROR ? r2->str : "?");
		else
		{
			size_t		cnt = r2->elements / 2;
			int64_t    *ids = calloc(cnt + 1, sizeof(int64_t));
			char	   *got = calloc(cnt * 21 + 2, 1);
			size_t		gl = 0;

			for (size_t j = 0; j < cnt; j++)
			{
				redisReply *m = r2->element[2 * j];
				redisReply *s = r2->element[2 * j + 1];

				if (strncmp(m->str, "{\"id\":", 6) != 0)
					problem("user \"%s\": member does not start with {\"id\": : %.80s",
							q(u->uid, u->uid_len), m->str);
				ids[j] = strtoll(m->str + 6, NULL, 10);
				if (m->len < 26 || m->str[25] != ',' || !id_aligned(m->str + 6))
					problem("user \"%s\": member's id is not right-aligned in 19 characters: %.80s",
							q(u->uid, u->uid_len), m->str);
				else if (has_loose_space(m->str + 25, (size_t) m->len - 25))
					problem("user \"%s\": member is not compact JSON: %.120s",
							q(u->uid, u->uid_len), m->str);
				array_add(&members, &mlen, &mcap, m->str, (size_t) m->len);
				array_add(&scores, &slen, &scap, s->str, (size_t) s->len);
			}
			qsort(ids, cnt, sizeof(int64_t), cmp_int64);
			for (size_t j = 0; j < cnt; j++)
				gl += (size_t) sprintf(got + gl, "%s%" PRId64, j ? "," : "", ids[j]);
			got[gl] = '\0';
			if (strcmp(got, u->ids) != 0)
				problem("user \"%s\": txs ids [%.300s] in Redis, newest %d in PostgreSQL [%.300s]",
						q(u->uid, u->uid_len), got, window, u->ids);
			free(ids);
			free(got);
		}
		freeReplyObject(r1);
		freeReplyObject(r2);
	}

	/* Member contents, compared as jsonb by PostgreSQL */
	if (problems == 0 && mlen > 1)
	{
		const char *p2[2];
		PGresult   *r;

		members[mlen++] = '}';
		members[mlen] = '\0';
		scores[slen++] = '}';
		scores[slen] = '\0';
		p2[0] = members;
		p2[1] = scores;
		r = PQexecParams(pg,
						 "SELECT m.member FROM unnest($1::text[], $2::text[]) AS m(member, score)"
						 " LEFT JOIN credits.ledger l ON l.id = (m.member::jsonb->>'id')::bigint"
						 " WHERE l.id IS NULL"
						 "    OR m.member::jsonb IS DISTINCT FROM jsonb_build_object("
						 "        'id', l.id, 'amount', l.amount, 'balance', l.balance_after,"
						 "        'action', l.action, 'metadata', l.metadata,"
						 "        'created_at', to_json(l.created_at))"
						 "    OR m.score::numeric <> floor(extract(epoch FROM l.created_at) * 1000)"
						 " LIMIT 5",
						 2, NULL, p2, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_TUPLES_OK)
			problem("member contents: %s", PQresultErrorMessage(r));
		else
			for (int i = 0; i < PQntuples(r); i++)
				problem("member differs from its ledger row: %.200s", PQgetvalue(r, i, 0));
		PQclear(r);
	}
	free(members);
	free(scores);

	/* No keys for users without an account (on every master) */
	for (int mi = 0; mi < (cluster ? nmasters : 1); mi++)
	do
	{
		redisReply *r = redisCommand(cluster ? masters[mi] : rc, "SCAN %llu COUNT 1000", cursor);

		if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2)
			die("Redis", "SCAN failed");
		cursor = strtoull(r->element[0]->str, NULL, 10);
		for (size_t j = 0; j < r->element[1]->elements; j++)
		{
			redisReply *k = r->element[1]->element[j];
			const char *names[4] = {"balance:", "txs:", "available:", "held:"};
			const char *ks = k->str;
			size_t		kl = (size_t) k->len;

			/* a companion: check the reader key named in it */
			if (kl > 4 && ks[0] == '{' && memcmp(ks + kl - 3, "}:v", 3) == 0 &&
				memchr(ks, '}', kl - 3) == NULL)
			{
				ks++;
				kl -= 4;
			}
			else if (kl > 0 && ks[0] == '{')
			{
				const char *close = memchr(ks, '}', kl);

				if (close != NULL && (size_t) (close - ks) + 4 <= kl &&
					memcmp(close, "}:v:", 4) == 0)
				{
					kl -= (size_t) (close - ks) + 4;
					ks = close + 4;
				}
			}
			if (kl < prefix_len || memcmp(ks, prefix, prefix_len) != 0)
				continue;
			for (int t = 0; t < 4; t++)
			{
				size_t		nl = strlen(names[t]);
				User		probe;

				if (kl - prefix_len < nl ||
					memcmp(ks + prefix_len, names[t], nl) != 0)
					continue;
				probe.uid = (char *) (ks + prefix_len + nl);
				probe.uid_len = kl - prefix_len - nl;
				if (part_count > 0 &&
					partition_of(probe.uid, probe.uid_len, part_count) != part_index)
					continue;
				if (bsearch(&probe, users, (size_t) n, sizeof(User), cmp_user) == NULL)
					problem("key \"%s\" belongs to no account", q(k->str, (size_t) k->len));
			}
		}
		freeReplyObject(r);
	} while (cursor != 0);

	free(users);
	PQclear(res);
	return problems;
}

/*
 * d is a reply to GET of an available: or held: companion of user uid
 * ("<version> <as_of>"), *ver and *asof the pair seen last.  Counts a
 * step back in *bad (printing the first ones) or moves the pair.
 */
static void
monitor_pair(redisReply *d, const char *uid, const char *what,
			 long long *ver, long long *asof, int *bad)
{
	long long	dv = 0,
				da = 0;

	if (d->type != REDIS_REPLY_STRING)
		return;
	if (sscanf(d->str, "%lld %lld", &dv, &da) != 2)
	{
		if ((*bad)++ < 10)
			printf("user %s: malformed %s companion \"%s\"\n", uid, what, d->str);
	}
	else if (dv < *ver || (dv == *ver && da < *asof))
	{
		if ((*bad)++ < 10)
			printf("user %s went back: %s (version, as_of) (%lld, %lld) -> (%lld, %lld)\n",
				   uid, what, *ver, *asof, dv, da);
	}
	else
	{
		*ver = dv;
		*asof = da;
	}
}

/* --monitor: see the header. */
static int
monitor(int argc, char **argv, int first, int duration)
{
	int			nu = argc - first;
	long long  *bal = calloc((size_t) nu, sizeof(long long));
	long long  *ver = calloc((size_t) nu, sizeof(long long));
	long long  *pairs = calloc((size_t) nu * 4, sizeof(long long));
	bool	   *seen = calloc((size_t) nu, sizeof(bool));
	int64_t		end = now_ms() + duration;
	long		polls = 0;
	int			bad = 0;

	while (now_ms() < end)
	{
		for (int i = 0; i < nu; i++)
		{
			const char *u = argv[first + i];
			size_t		bl,
						vl,
						al,
						hl;
			char	   *bk = key("balance:", u, strlen(u), &bl);
			char	   *vk = companion("balance:", u, strlen(u), &vl);
			char	   *ak = companion("available:", u, strlen(u), &al);
			char	   *hk = companion("held:", u, strlen(u), &hl);

			redisAppendCommand(rc, "GET %b", bk, bl);
			redisAppendCommand(rc, "GET %b", vk, vl);
			redisAppendCommand(rc, "GET %b", ak, al);
			redisAppendCommand(rc, "GET %b", hk, hl);
			free(bk);
			free(vk);
			free(ak);
			free(hk);
		}
		for (int i = 0; i < nu; i++)
		{
			redisReply *b = NULL,
					   *v = NULL,
					   *a = NULL,
					   *h = NULL;

			if (redisGetReply(rc, (void **) &b) != REDIS_OK ||
				redisGetReply(rc, (void **) &v) != REDIS_OK ||
				redisGetReply(rc, (void **) &a) != REDIS_OK ||
				redisGetReply(rc, (void **) &h) != REDIS_OK)
				die("Redis", rc->errstr);
			monitor_pair(a, argv[first + i], "available", &pairs[4 * i], &pairs[4 * i + 1], &bad);
			monitor_pair(h, argv[first + i], "held", &pairs[4 * i + 2], &pairs[4 * i + 3], &bad);
			freeReplyObject(a);
			freeReplyObject(h);
			if (b->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING)
			{
				long long	bv = atoll(b->str),
							vv = atoll(v->str);

				if (seen[i] && (bv > bal[i] || vv < ver[i]))
				{
					if (bad++ < 10)
						printf("user %s went back: balance %lld -> %lld, version %lld -> %lld\n",
							   argv[first + i], bal[i], bv, ver[i], vv);
				}
				bal[i] = bv;
				ver[i] = vv;
				seen[i] = true;
			}
			freeReplyObject(b);
			freeReplyObject(v);
		}
		polls++;
	}
	printf("monitor: %ld polls of %d users, %d regressions\n", polls, nu, bad);
	free(bal);
	free(ver);
	free(pairs);
	free(seen);
	return bad ? 1 : 0;
}

int
main(int argc, char **argv)
{
	int			timeout = 2000;
	int			duration = 0;
	bool		mon = false;
	int			i;
	int64_t		start;

	for (i = 1; i < argc; i++)
	{
		if (strcmp(argv[i], "--prefix") == 0 && i + 1 < argc)
			prefix = argv[++i];
		else if (strcmp(argv[i], "--window") == 0 && i + 1 < argc)
			window = atoi(argv[++i]);
		else if (strcmp(argv[i], "--timeout-ms") == 0 && i + 1 < argc)
			timeout = atoi(argv[++i]);
		else if (strcmp(argv[i], "--partition") == 0 && i + 1 < argc)
		{
			if (!partition_parse(argv[++i], &part_index, &part_count))
				die("usage", "--partition P/N");
		}
		else if (strcmp(argv[i], "--duration-ms") == 0 && i + 1 < argc)
			duration = atoi(argv[++i]);
		else if (strcmp(argv[i], "--monitor") == 0)
			mon = true;
		else
			break;
	}
	prefix_len = strlen(prefix);
	connect_all();
	if (mon)
		return monitor(argc, argv, i, duration);
	if (i != argc)
		die("usage", "check [--prefix P] [--window N] [--timeout-ms T]");

	start = now_ms();
	for (;;)
	{
		if (check_once() == 0)
		{
			printf("converged in %" PRId64 " ms\n", now_ms() - start);
			return 0;
		}
		if (now_ms() - start >= timeout)
			break;
		usleep(20000);
	}
	printf("NOT converged after %d ms: %d differences, first ones:\n%s",
		   timeout, problems, report);
	return 1;
}
