/*-------------------------------------------------------------------------
 *
 * cluster.c
 *		credits-sync's Redis connections: one node, or a Redis Cluster
 *		routed by hash slot.
 *
 * redis.c builds commands and reads their replies; this file decides
 * where each command goes and brings back its final reply.  The caller
 * names the hash slot of every command (keyslot.c), appends any number of
 * them (rc_append), then reads every reply in the order of the appends
 * (rc_get_reply).  Standalone (a Redis that is not in cluster mode) there
 * is one connection, and this is hiredis's pipelining, unchanged.
 *
 * Cluster mode (--redis-cluster host:port,..., or a configured node whose
 * INFO says cluster_enabled:1): CLUSTER SLOTS, read from any known node,
 * maps each slot to its master; there is one connection per master
 * (connected when first needed, with the connect timeout).  The commands
 * of one round are appended to their masters' connections, every output
 * buffer is flushed, then every reply is read.  A reply
 *	-MOVED <slot> <host:port>	updates the slot's master, re-reads the
 *								topology, and the command is sent again
 *								there in the next round;
 *	-ASK <slot> <host:port>		the command is sent again there, after
 *								ASKING (the slot is being migrated; the map
 *								is not changed);
 *	-TRYAGAIN					(a multi-key call while its slot's keys are
 *								split by a migration) sent again to the same
 *								node after a short sleep.
 * Up to REDIRECT_ROUNDS rounds; then, and on any I/O error, the whole
 * pipeline fails and the caller drops every connection: main.c reconnects
 * with its capped backoff, which re-reads the topology from any known node
 * (the configured ones and every node of the last topology), so a
 * failover (a replica promoted after its master died) is followed once
 * the cluster has promoted it.  CLUSTERDOWN and every other error reply
 * are returned to the caller like any reply.
 *
 * Every data command is idempotent, so sending one again is safe;
 * redis.c sends the cursor call only after every data reply came back OK.
 * In cluster mode, before that call, rc_wait_replicas() runs WAIT on
 * every master written to since the last WAIT, for as many replicas as
 * the topology (read again if older than a second) lists for it: a master that dies after acknowledging a
 * page's data but before its replica has it would otherwise lose data
 * that the cursor, on another master, already counts as applied.
 *
 * Every new connection is authenticated (AUTH), checked for an evicting
 * maxmemory-policy (refused: the daemon's keys have no TTL), and has the
 * registered scripts loaded (SCRIPT LOAD; a NOSCRIPT reply is handled by
 * redis.c anyway).
 *
 * Calls: redis.c calls in; this file calls status.c (errors, redirection
 * counters), log.c, and hiredis.  Nothing of PostgreSQL.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "credits_sync.h"

#define REDIRECT_ROUNDS		16	/* rounds of MOVED/ASK/TRYAGAIN per pipeline */
#define WAIT_TIMEOUT_MS		1000	/* WAIT for replicas before a cursor call */
#define TOPOLOGY_MAX_AGE_MS	1000	/* re-read before a WAIT if older */
#define MAX_SCRIPTS			4

typedef struct Node
{
	char	   *host;
	int			port;
	redisContext *ctx;
	bool		master;			/* a master in the last topology read */
	char		seen;			/* role in the last topology that listed it:
								 * 'm'aster, 'r'eplica, or 0 */
	int			replicas;		/* replicas the topology lists for it */
	bool		written;		/* commands sent since the last WAIT */
} Node;

/* One command of the pipeline */
typedef struct Pending
{
	char	   *cmd;			/* formatted (RESP) */
	size_t		len;
	int			node;
	bool		asking;			/* send ASKING first */
	bool		outstanding;	/* sent, reply not read */
	redisReply *reply;			/* final reply, until handed out */
} Pending;

static bool cluster_mode = false;
static Node *nodes = NULL;
static int	nnodes = 0;
static int	slot_node[KEY_SLOTS];
static bool connected = false;

static Pending *pend = NULL;
static int	npend = 0;
static int	pend_cap = 0;
static int	next_reply = 0;		/* next index rc_get_reply hands out */
static int	resolved = 0;		/* [0, resolved) have their final reply */

/* Settings of the current connection */
static char *password = NULL;
static int	dbnum = 0;
static struct timeval timeout;

static const char *scripts[MAX_SCRIPTS];
static size_t script_lens[MAX_SCRIPTS];
static char script_shas[MAX_SCRIPTS][41];
static int	nscripts = 0;

static char errbuf[512];
static char *seeds = NULL;		/* the settings the nodes were found from */
static int64_t topology_ms = 0;	/* now_ms() of the last topology read */
static bool failover = false;	/* a replica became a master */

/* ------------------------------------------------------------------ */

/* Records the error text rc_errstr() returns. */
static void
set_err(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
	va_end(ap);
}

/* Any time: the last connection or routing error. */
const char *
rc_errstr(void)
{
	return errbuf[0] ? errbuf : "no reply";
}

/* Any time. */
bool
rc_connected(void)
{
	return connected;
}

/* Any time: true when talking to a Redis Cluster. */
bool
rc_is_cluster(void)
{
	return cluster_mode;
}

/* Frees every command and reply of the pipeline. */
static void
pend_reset(void)
{
	for (int i = 0; i < npend; i++)
	{
		free(pend[i].cmd);
		if (pend[i].reply != NULL)
			freeReplyObject(pend[i].reply);
	}
	npend = next_reply = resolved = 0;
}

/* Closes one node's connection. */
static void
node_close(Node *n)
{
	if (n->ctx != NULL)
	{
		redisFree(n->ctx);
		n->ctx = NULL;
	}
	n->written = false;
}

/* Any time.  Closes every connection and forgets the pipeline. */
void
rc_disconnect(void)
{
	for (int i = 0; i < nnodes; i++)
		node_close(&nodes[i]);
	pend_reset();
	free(pend);
	pend = NULL;
	pend_cap = 0;
	connected = false;
}

/* host is NUL-terminated.  Index of the node host:port, added if new; -1 if out of memory. */
static int
node_find(const char *host, int port)
{
	Node	   *n;

	for (int i = 0; i < nnodes; i++)
		if (nodes[i].port == port && strcmp(nodes[i].host, host) == 0)
			return i;
	n = realloc(nodes, sizeof(Node) * (size_t) (nnodes + 1));
	if (n == NULL)
		return -1;
	nodes = n;
	n = &nodes[nnodes];
	memset(n, 0, sizeof(*n));
	n->host = strdup(host);
	n->port = port;
	if (n->host == NULL)
		return -1;
	return nnodes++;
}

/* "host:port" (len bytes) into host (hostsize bytes) and *port. */
static bool
parse_addr(const char *s, size_t len, char *host, size_t hostsize, int *port)
{
	const char *colon = NULL;
	char	   *end;
	long		p;
	char		num[8];

	for (size_t i = 0; i < len; i++)
		if (s[i] == ':')
			colon = s + i;
	if (colon == NULL || (size_t) (colon - s) >= hostsize ||
		(size_t) (s + len - colon - 1) >= sizeof(num) || colon + 1 == s + len)
		return false;
	memcpy(host, s, (size_t) (colon - s));
	host[colon - s] = '\0';
	memcpy(num, colon + 1, (size_t) (s + len - colon - 1));
	num[s + len - colon - 1] = '\0';
	p = strtol(num, &end, 10);
	if (*end != '\0' || p < 1 || p > 65535)
		return false;
	*port = (int) p;
	return true;
}

/*
 * n is not connected.  Connects with the timeout, authenticates, selects
 * the database (standalone), checks the eviction policy and loads the
 * scripts.  RS_STALE: refused (an evicting policy); RS_ERROR: failed
 * (the error is in rc_errstr()).
 */
static RedisStatus
node_open(Node *n)
{
	redisReply *r;

	if (n->host[0] == '/')
		n->ctx = redisConnectUnixWithTimeout(n->host, timeout);
	else
		n->ctx = redisConnectWithTimeout(n->host, n->port, timeout);
	if (n->ctx == NULL || n->ctx->err)
	{
		set_err("connect to %s:%d: %s", n->host, n->port,
				n->ctx ? n->ctx->errstr : "out of memory");
		node_close(n);
		return RS_ERROR;
	}
	if (redisSetTimeout(n->ctx, timeout) != REDIS_OK)
	{
		set_err("connect to %s:%d: could not set the timeout", n->host, n->port);
		node_close(n);
		return RS_ERROR;
	}
	if (n->host[0] != '/')
		redisEnableKeepAlive(n->ctx);

#define NODE_CMD(what, ...) \
	do { \
		r = redisCommand(n->ctx, __VA_ARGS__); \
		if (r == NULL || r->type == REDIS_REPLY_ERROR) \
		{ \
			set_err("%s on %s:%d: %s", what, n->host, n->port, \
					r ? r->str : n->ctx->errstr); \
			if (r) freeReplyObject(r); \
			node_close(n); \
			return RS_ERROR; \
		} \
	} while (0)

	if (password != NULL && password[0] != '\0')
	{
		NODE_CMD("AUTH", "AUTH %b", password, strlen(password));
		freeReplyObject(r);
	}
	if (dbnum != 0)
	{
		NODE_CMD("SELECT", "SELECT %d", dbnum);
		freeReplyObject(r);
	}

	/*
	 * The daemon's keys have no TTL: an allkeys-* policy could evict a
	 * companion (letting an older value in) or a txs: key.  A Redis that
	 * refuses CONFIG (renamed, ACL) gets a warning.
	 */
	r = redisCommand(n->ctx, "CONFIG GET maxmemory-policy");
	if (r == NULL)
	{
		set_err("CONFIG GET on %s:%d: %s", n->host, n->port, n->ctx->errstr);
		node_close(n);
		return RS_ERROR;
	}
	if (r->type == REDIS_REPLY_ERROR)
		log_warning("Redis: CONFIG GET maxmemory-policy: %s; make sure the policy is noeviction or volatile-*",
					r->str);
	else if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
			 r->element[1]->type == REDIS_REPLY_STRING &&
			 strncmp(r->element[1]->str, "allkeys-", 8) == 0)
	{
		log_error("Redis maxmemory-policy is %s, which can evict credits-sync's keys (they have no TTL), leaving balances and rows missing or stale; set maxmemory-policy to noeviction (or a volatile-* policy)",
				  r->element[1]->str);
		status_error(SIDE_REDIS, "Redis maxmemory-policy %s can evict credits-sync's keys",
					 r->element[1]->str);
		set_err("maxmemory-policy %s on %s:%d", r->element[1]->str, n->host, n->port);
		freeReplyObject(r);
		node_close(n);
		return RS_STALE;
	}
	freeReplyObject(r);

	for (int i = 0; i < nscripts; i++)
	{
		NODE_CMD("SCRIPT LOAD", "SCRIPT LOAD %b", scripts[i], script_lens[i]);
		if (r->type != REDIS_REPLY_STRING || r->len != 40 ||
			(script_shas[i][0] != '\0' && memcmp(script_shas[i], r->str, 40) != 0))
		{
			set_err("SCRIPT LOAD on %s:%d: unexpected reply", n->host, n->port);
			freeReplyObject(r);
			node_close(n);
			return RS_ERROR;
		}
		memcpy(script_shas[i], r->str, 40);
		script_shas[i][40] = '\0';
		freeReplyObject(r);
	}
#undef NODE_CMD
	return RS_OK;
}

/*
 * Reads CLUSTER SLOTS from node i (connected, nothing outstanding) into
 * the slot map; masters not in it lose their connection.  False on any
 * failure (the map is kept then).
 */
static bool
topology_from(int i)
{
	redisReply *r = redisCommand(nodes[i].ctx, "CLUSTER SLOTS");
	int			map[KEY_SLOTS];
	bool	   *master;
	int			covered = 0;

	if (r == NULL || r->type != REDIS_REPLY_ARRAY)
	{
		set_err("CLUSTER SLOTS on %s:%d: %s", nodes[i].host, nodes[i].port,
				r == NULL ? nodes[i].ctx->errstr :
				r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
		if (r == NULL)
			node_close(&nodes[i]);
		if (r != NULL)
			freeReplyObject(r);
		return false;
	}
	for (int s = 0; s < KEY_SLOTS; s++)
		map[s] = -1;
	for (size_t e = 0; e < r->elements; e++)
	{
		redisReply *range = r->element[e];
		redisReply *m;
		char		host[256];
		int			k;

		if (range->type != REDIS_REPLY_ARRAY || range->elements < 3 ||
			range->element[0]->type != REDIS_REPLY_INTEGER ||
			range->element[1]->type != REDIS_REPLY_INTEGER ||
			range->element[2]->type != REDIS_REPLY_ARRAY ||
			range->element[2]->elements < 2 ||
			range->element[2]->element[0]->type != REDIS_REPLY_STRING ||
			range->element[2]->element[1]->type != REDIS_REPLY_INTEGER ||
			range->element[0]->integer < 0 ||
			range->element[1]->integer >= KEY_SLOTS ||
			range->element[0]->integer > range->element[1]->integer)
		{
			set_err("CLUSTER SLOTS on %s:%d: unexpected reply", nodes[i].host, nodes[i].port);
			freeReplyObject(r);
			return false;
		}
		m = range->element[2];
		/* An empty or unknown endpoint means the node we asked's host */
		snprintf(host, sizeof(host), "%s",
				 m->element[0]->len == 0 || strcmp(m->element[0]->str, "?") == 0 ?
				 nodes[i].host : m->element[0]->str);
		k = node_find(host, (int) m->element[1]->integer);
		if (k < 0)
		{
			set_err("out of memory");
			freeReplyObject(r);
			return false;
		}
		nodes[k].replicas = (int) range->elements - 3;
		if (nodes[k].seen == 'r')
		{
			log_warning("Redis Cluster: %s:%d, a replica, is now a master (a failover): it may lack writes its old master acknowledged",
						nodes[k].host, nodes[k].port);
			failover = true;
		}
		nodes[k].seen = 'm';
		/* Replicas: known nodes to read the topology from, and failovers */
		for (size_t e2 = 3; e2 < range->elements; e2++)
		{
			redisReply *rep = range->element[e2];
			int			j;

			if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 2 ||
				rep->element[0]->type != REDIS_REPLY_STRING ||
				rep->element[1]->type != REDIS_REPLY_INTEGER)
				continue;
			snprintf(host, sizeof(host), "%s",
					 rep->element[0]->len == 0 || strcmp(rep->element[0]->str, "?") == 0 ?
					 nodes[i].host : rep->element[0]->str);
			j = node_find(host, (int) rep->element[1]->integer);
			if (j >= 0)
				nodes[j].seen = 'r';
		}
		for (long long s = range->element[0]->integer; s <= range->element[1]->integer; s++)
			map[s] = k;
		covered += (int) (range->element[1]->integer - range->element[0]->integer + 1);
	}
	freeReplyObject(r);
	master = calloc((size_t) nnodes + 1, sizeof(bool));
	if (master == NULL)
	{
		set_err("out of memory");
		return false;
	}
	memcpy(slot_node, map, sizeof(map));
	for (int s = 0; s < KEY_SLOTS; s++)
		if (map[s] >= 0)
			master[map[s]] = true;
	for (int k = 0; k < nnodes; k++)
	{
		nodes[k].master = master[k];
		if (!master[k] && k != i)
			node_close(&nodes[k]);
	}
	free(master);
	if (covered < KEY_SLOTS)
		log_warning("Redis Cluster: %d of %d hash slots have no master", KEY_SLOTS - covered, KEY_SLOTS);
	return true;
}

/*
 * Nothing outstanding.  Re-reads the topology from any known node: the
 * connected ones first, then the others (the configured ones and every
 * node of earlier topologies), connecting as needed.
 */
static bool
topology_refresh(void)
{
	status_cluster_event(CLUSTER_TOPOLOGY);
	topology_ms = now_ms();
	for (int pass = 0; pass < 2; pass++)
	{
		for (int i = 0; i < nnodes; i++)
		{
			if ((pass == 0) != (nodes[i].ctx != NULL))
				continue;
			if (nodes[i].ctx == NULL)
			{
				redisContext *c;

				/* A plain connection: it is only asked CLUSTER SLOTS */
				c = nodes[i].host[0] == '/' ?
					redisConnectUnixWithTimeout(nodes[i].host, timeout) :
					redisConnectWithTimeout(nodes[i].host, nodes[i].port, timeout);
				if (c == NULL || c->err)
				{
					if (c != NULL)
						redisFree(c);
					continue;
				}
				redisSetTimeout(c, timeout);
				if (password != NULL && password[0] != '\0')
				{
					redisReply *r = redisCommand(c, "AUTH %b", password, strlen(password));

					if (r == NULL || r->type == REDIS_REPLY_ERROR)
					{
						if (r != NULL)
							freeReplyObject(r);
						redisFree(c);
						continue;
					}
					freeReplyObject(r);
				}
				nodes[i].ctx = c;
				if (topology_from(i))
				{
					/* Not set up for commands: close unless a master */
					node_close(&nodes[i]);
					return true;
				}
				node_close(&nodes[i]);
				continue;
			}
			if (topology_from(i))
				return true;
		}
	}
	return false;
}

/*
 * The node that serves slot (or node 0 standalone, or for slot -1),
 * connected; -1 on failure.
 */
static int
node_for_slot(int slot)
{
	int			i = 0;

	if (cluster_mode && slot >= 0)
	{
		i = slot_node[slot];
		if (i < 0)
		{
			/* No master known: any one answers MOVED or CLUSTERDOWN */
			for (i = 0; i < nnodes && !nodes[i].master; i++)
				;
			if (i == nnodes)
				i = 0;
		}
	}
	if (i >= nnodes)
	{
		set_err("no Redis node");
		return -1;
	}
	if (nodes[i].ctx == NULL && node_open(&nodes[i]) != RS_OK)
		return -1;
	return i;
}

/* Appends pending command p to its node's output buffer (after ASKING). */
static bool
pend_send(Pending *p)
{
	Node	   *n = &nodes[p->node];

	if (n->ctx == NULL && node_open(n) != RS_OK)
		return false;
	if ((p->asking && redisAppendCommand(n->ctx, "ASKING") != REDIS_OK) ||
		redisAppendFormattedCommand(n->ctx, p->cmd, p->len) != REDIS_OK)
	{
		set_err("could not build the command (out of memory)");
		return false;
	}
	n->written = true;
	p->outstanding = true;
	return true;
}

/* Takes cmd (len bytes, formatted, malloc'd by hiredis) into the pipeline for slot. */
static bool
pend_add(int slot, char *cmd, size_t len)
{
	Pending    *p;
	int			node;

	if (!connected)
	{
		redisFreeCommand(cmd);
		set_err("not connected");
		return false;
	}
	if (next_reply == npend)
		pend_reset();
	if (npend == pend_cap)
	{
		int			cap = pend_cap ? pend_cap * 2 : 64;
		Pending    *np = realloc(pend, sizeof(Pending) * (size_t) cap);

		if (np == NULL)
		{
			redisFreeCommand(cmd);
			set_err("out of memory");
			return false;
		}
		pend = np;
		pend_cap = cap;
	}
	node = node_for_slot(slot);
	if (node < 0)
	{
		redisFreeCommand(cmd);
		return false;
	}
	p = &pend[npend++];
	memset(p, 0, sizeof(*p));
	p->cmd = cmd;
	p->len = len;
	p->node = node;
	return pend_send(p);
}

/* Connected.  Appends one command (argv) for a key in slot (-1: any node). */
bool
rc_append(int slot, int argc, const char **argv, const size_t *argvlen)
{
	char	   *cmd = NULL;
	int			len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);

	if (len < 0)
	{
		set_err("could not build the command (out of memory)");
		return false;
	}
	return pend_add(slot, cmd, (size_t) len);
}

/* Connected.  Appends the command fmt/ap (hiredis format) for slot. */
static bool
pend_add_fmtv(int slot, const char *fmt, va_list ap)
{
	char	   *cmd = NULL;
	int			len = redisvFormatCommand(&cmd, fmt, ap);

	if (len < 0)
	{
		set_err("could not build the command (out of memory)");
		return false;
	}
	return pend_add(slot, cmd, (size_t) len);
}

/* Connected.  Appends one command (hiredis format) for a key in slot (-1: any node). */
bool
rc_append_fmt(int slot, const char *fmt,...)
{
	va_list		ap;
	bool		ok;

	va_start(ap, fmt);
	ok = pend_add_fmtv(slot, fmt, ap);
	va_end(ap);
	return ok;
}

/* Is reply the error "<word> ..."? */
static bool
is_error(const redisReply *r, const char *word)
{
	size_t		n = strlen(word);

	return r->type == REDIS_REPLY_ERROR && (size_t) r->len > n &&
		strncmp(r->str, word, n) == 0 && r->str[n] == ' ';
}

/*
 * -MOVED/-ASK <slot> <host:port>: *node gets the target (added to the
 * nodes if new), *slot the slot.
 */
static bool
parse_redirect(const redisReply *r, int *slot, int *node)
{
	const char *s = strchr(r->str, ' ');
	const char *a;
	char		host[256];
	int			port;
	long		sl;
	char	   *end;

	if (s == NULL)
		return false;
	sl = strtol(s + 1, &end, 10);
	if (end == s + 1 || *end != ' ' || sl < 0 || sl >= KEY_SLOTS)
		return false;
	a = end + 1;
	if (!parse_addr(a, strlen(a), host, sizeof(host), &port))
		return false;
	/* "MOVED 3999 :6381" (no host): the node that answered's host */
	if (host[0] == '\0')
		return false;
	*slot = (int) sl;
	*node = node_find(host, port);
	return *node >= 0;
}

/*
 * Reads the replies of every outstanding command, following redirections
 * in rounds (see the file header), until each has its final reply.
 * False on an I/O error or too many rounds: the caller drops everything.
 */
static bool
resolve(void)
{
	for (int round = 0;; round++)
	{
		bool		again = false;
		bool		moved = false;
		bool		tryagain = false;

		/* Flush every output buffer first, so that all nodes work at once */
		for (int i = 0; i < nnodes; i++)
		{
			int			done = 0;

			while (nodes[i].ctx != NULL && !done)
				if (redisBufferWrite(nodes[i].ctx, &done) != REDIS_OK)
				{
					set_err("%s:%d: %s", nodes[i].host, nodes[i].port, nodes[i].ctx->errstr);
					return false;
				}
		}
		for (int k = resolved; k < npend; k++)
		{
			Pending    *p = &pend[k];
			Node	   *n = &nodes[p->node];
			redisReply *r = NULL;

			if (!p->outstanding)
				continue;
			if (n->ctx == NULL)
			{
				set_err("%s:%d: connection lost", n->host, n->port);
				return false;
			}
			if (p->asking)
			{
				if (redisGetReply(n->ctx, (void **) &r) != REDIS_OK || r == NULL)
				{
					set_err("%s:%d: %s", n->host, n->port, n->ctx->errstr);
					return false;
				}
				if (r->type == REDIS_REPLY_ERROR)
				{
					set_err("ASKING on %s:%d: %s", n->host, n->port, r->str);
					freeReplyObject(r);
					return false;
				}
				freeReplyObject(r);
				r = NULL;
			}
			if (redisGetReply(n->ctx, (void **) &r) != REDIS_OK || r == NULL)
			{
				set_err("%s:%d: %s", n->host, n->port,
						n->ctx->errstr[0] ? n->ctx->errstr : "no reply");
				return false;
			}
			p->outstanding = false;
			p->reply = r;
		}

		for (int k = resolved; k < npend; k++)
		{
			Pending    *p = &pend[k];
			redisReply *r = p->reply;
			int			slot,
						node;

			if (r == NULL || r->type != REDIS_REPLY_ERROR)
				continue;
			if (is_error(r, "MOVED") && parse_redirect(r, &slot, &node))
			{
				log_debug("Redis Cluster: %s", r->str);
				status_cluster_event(CLUSTER_MOVED);
				slot_node[slot] = node;
				p->node = node;
				p->asking = false;
				moved = true;
			}
			else if (is_error(r, "ASK") && parse_redirect(r, &slot, &node))
			{
				log_debug("Redis Cluster: %s", r->str);
				status_cluster_event(CLUSTER_ASK);
				p->node = node;
				p->asking = true;
			}
			else if (strncmp(r->str, "TRYAGAIN", 8) == 0)
			{
				log_debug("Redis Cluster: %s", r->str);
				tryagain = true;
				/* keep p->asking: the keys are still being migrated */
			}
			else
				continue;
			freeReplyObject(r);
			p->reply = NULL;
			again = true;
		}
		if (!again)
			break;
		if (round + 1 >= REDIRECT_ROUNDS)
		{
			set_err("still redirected after %d rounds (MOVED/ASK/TRYAGAIN)", REDIRECT_ROUNDS);
			return false;
		}
		if (moved && !topology_refresh())
			log_warning("Redis Cluster: could not re-read the topology: %s", rc_errstr());
		if (tryagain)
		{
			struct timespec ts = {0, (long) (round < 5 ? 5 << round : 100) * 1000000L};

			nanosleep(&ts, NULL);
		}
		for (int k = resolved; k < npend; k++)
			if (pend[k].reply == NULL && !pend[k].outstanding && !pend_send(&pend[k]))
				return false;
	}
	resolved = npend;
	return true;
}

/*
 * Connected; commands were appended.  *reply gets the final reply of the
 * next command in the order of the appends (the caller frees it).  False
 * on failure (the error is in rc_errstr(); the caller disconnects).
 */
bool
rc_get_reply(redisReply **reply)
{
	*reply = NULL;
	if (!connected || next_reply >= npend)
	{
		set_err(connected ? "no command pending" : "not connected");
		return false;
	}
	if (next_reply >= resolved && !resolve())
		return false;
	*reply = pend[next_reply].reply;
	pend[next_reply].reply = NULL;
	next_reply++;
	return true;
}

/*
 * Connected, every earlier reply read.  Sends one command (hiredis
 * format) for a key in slot (-1: any node) and returns its final reply, or
 * NULL (see rc_errstr()).
 */
redisReply *
rc_command(int slot, const char *fmt,...)
{
	va_list		ap;
	bool		ok;
	redisReply *r;

	va_start(ap, fmt);
	ok = pend_add_fmtv(slot, fmt, ap);
	va_end(ap);
	if (!ok || !rc_get_reply(&r))
		return NULL;
	return r;
}

/* Connected.  How many masters the topology has (1 standalone). */
int
rc_masters(void)
{
	int			m = 0;

	if (!cluster_mode)
		return 1;
	for (int i = 0; i < nnodes; i++)
		m += nodes[i].master;
	return m;
}

/*
 * Connected, nothing pending.  Sends one command (hiredis format) to the
 * m-th master (0 <= m < rc_masters()), with no redirection: for SCAN.
 */
redisReply *
rc_master_command(int m, const char *fmt,...)
{
	va_list		ap;
	redisReply *r;
	int			i = 0;

	if (cluster_mode)
	{
		for (i = 0; i < nnodes; i++)
			if (nodes[i].master && m-- == 0)
				break;
	}
	if (i >= nnodes)
	{
		set_err("no such master (the topology changed)");
		return NULL;
	}
	if (nodes[i].ctx == NULL && node_open(&nodes[i]) != RS_OK)
		return NULL;
	va_start(ap, fmt);
	r = redisvCommand(nodes[i].ctx, fmt, ap);
	va_end(ap);
	if (r == NULL)
		set_err("%s:%d: %s", nodes[i].host, nodes[i].port, nodes[i].ctx->errstr);
	return r;
}

/*
 * Connected, every reply read.  In cluster mode, WAITs on every master
 * written to since the last call for the replicas the topology lists for
 * it (at most WAIT_TIMEOUT_MS); false (see rc_errstr()) if one has fewer
 * acknowledging.  Standalone: nothing to do.
 */
bool
rc_wait_replicas(void)
{
	bool		ok = true;

	if (!cluster_mode)
		return true;

	/*
	 * Replicas come and go (a new one, one that finished its first sync,
	 * one the cluster marked failed): the counts are at most a second old.
	 */
	if (now_ms() - topology_ms >= TOPOLOGY_MAX_AGE_MS && !topology_refresh())
		log_warning("Redis Cluster: could not re-read the topology: %s", rc_errstr());
	for (int i = 0; i < nnodes; i++)
	{
		Node	   *n = &nodes[i];

		if (!n->written || n->ctx == NULL)
			continue;
		if (n->replicas == 0)
			n->written = false;
		else if (redisAppendCommand(n->ctx, "WAIT %d %d", n->replicas, WAIT_TIMEOUT_MS) != REDIS_OK)
		{
			set_err("could not build the command (out of memory)");
			return false;
		}
	}
	for (int i = 0; i < nnodes; i++)
	{
		Node	   *n = &nodes[i];
		redisReply *r = NULL;

		if (!n->written || n->ctx == NULL)
			continue;
		n->written = false;
		if (redisGetReply(n->ctx, (void **) &r) != REDIS_OK || r == NULL)
		{
			set_err("WAIT on %s:%d: %s", n->host, n->port, n->ctx->errstr);
			return false;
		}
		if (r->type != REDIS_REPLY_INTEGER || r->integer < n->replicas)
		{
			if (ok)
				set_err("WAIT on %s:%d: %s", n->host, n->port,
						r->type == REDIS_REPLY_ERROR ? r->str : "fewer replicas acknowledged than the topology lists");
			if (r->type == REDIS_REPLY_INTEGER)
				log_warning("Redis Cluster: %lld of %d replicas of %s:%d acknowledged the page's writes within %d ms",
							r->integer, n->replicas, n->host, n->port, WAIT_TIMEOUT_MS);
			ok = false;
		}
		freeReplyObject(r);
	}
	return ok;
}

/*
 * Any time.  True once after a topology read found a former replica
 * serving slots as a master (a failover: the promoted replica may lack
 * the last writes its old master acknowledged).
 */
bool
rc_take_failover(void)
{
	bool		f = failover;

	failover = false;
	return f;
}

/*
 * cfg is loaded; not connected.  Registers the n scripts (kept by
 * pointer: static texts) that every connection loads; shas[i] gets the
 * SHA1 of each.
 */
void
rc_set_scripts(const char *const *texts, const size_t *lens, int n)
{
	nscripts = n < MAX_SCRIPTS ? n : MAX_SCRIPTS;
	for (int i = 0; i < nscripts; i++)
	{
		scripts[i] = texts[i];
		script_lens[i] = lens[i];
		script_shas[i][0] = '\0';
	}
}

/* After a connect: the SHA1 of registered script i. */
const char *
rc_script_sha(int i)
{
	return script_shas[i];
}

/*
 * cfg is loaded; not connected.  Connects: to --redis-cluster's nodes, or
 * to --redis-host/--redis-port, which is used as the cluster's first node
 * if INFO says it is in cluster mode.  In cluster mode every master of the
 * topology is connected (and set up) at once.  RS_STALE: refused (a node
 * may evict the daemon's keys); RS_ERROR: see rc_errstr().
 */
RedisStatus
rc_connect(const SyncConfig *cfg, bool quiet)
{
	RedisStatus st;
	redisReply *r;
	int			masters = 0;
	char		list[512] = "";
	char		from[1024];

	rc_disconnect();

	/*
	 * Keep the nodes of earlier topologies, to read the topology from when
	 * the configured ones are down, unless the settings changed (SIGHUP):
	 * they may be another cluster's.
	 */
	snprintf(from, sizeof(from), "%s|%s:%d", cfg->redis_cluster ? cfg->redis_cluster : "",
			 cfg->redis_host, cfg->redis_port);
	if (seeds == NULL || strcmp(seeds, from) != 0)
	{
		for (int i = 0; i < nnodes; i++)
			free(nodes[i].host);
		free(nodes);
		nodes = NULL;
		nnodes = 0;
		free(seeds);
		seeds = strdup(from);
	}
	for (int i = 0; i < nnodes; i++)
		nodes[i].master = false;
	free(password);
	password = cfg->redis_password ? strdup(cfg->redis_password) : NULL;
	dbnum = cfg->redis_db;
	timeout.tv_sec = cfg->connect_timeout;
	timeout.tv_usec = 0;
	errbuf[0] = '\0';
	for (int s = 0; s < KEY_SLOTS; s++)
		slot_node[s] = -1;
	cluster_mode = cfg->redis_cluster != NULL && cfg->redis_cluster[0] != '\0';

	if (!cluster_mode)
	{
		if (node_find(cfg->redis_host, cfg->redis_port) != 0)
		{
			set_err("out of memory");
			return RS_ERROR;
		}
		st = node_open(&nodes[0]);
		if (st != RS_OK)
			return st;
		r = redisCommand(nodes[0].ctx, "INFO cluster");
		if (r == NULL)
		{
			set_err("INFO: %s", nodes[0].ctx->errstr);
			node_close(&nodes[0]);
			return RS_ERROR;
		}
		if (r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_enabled:1") != NULL)
			cluster_mode = true;
		freeReplyObject(r);
		if (!cluster_mode)
		{
			connected = true;
			if (!quiet && cfg->redis_host[0] == '/')
				log_info("connected to Redis at %s (db %d)", cfg->redis_host, cfg->redis_db);
			else if (!quiet)
				log_info("connected to Redis at %s:%d (db %d)", cfg->redis_host,
						 cfg->redis_port, cfg->redis_db);
			return RS_OK;
		}
		nodes[0].master = true;
	}
	else
	{
		const char *s = cfg->redis_cluster;

		while (*s != '\0')
		{
			size_t		len = strcspn(s, ", ");
			char		host[256];
			int			port;

			if (len > 0)
			{
				if (!parse_addr(s, len, host, sizeof(host), &port))
				{
					set_err("--redis-cluster: \"%.*s\" is not host:port", (int) len, s);
					return RS_ERROR;
				}
				if (node_find(host, port) < 0)
				{
					set_err("out of memory");
					return RS_ERROR;
				}
			}
			s += len;
			s += strspn(s, ", ");
		}
		if (nnodes == 0)
		{
			set_err("--redis-cluster names no node");
			return RS_ERROR;
		}
	}
	if (!topology_refresh())
	{
		if (errbuf[0] == '\0')
			set_err("no node of the cluster answers CLUSTER SLOTS");
		rc_disconnect();
		return RS_ERROR;
	}
	connected = true;
	for (int i = 0; i < nnodes; i++)
	{
		if (!nodes[i].master)
			continue;
		if (nodes[i].ctx == NULL && (st = node_open(&nodes[i])) != RS_OK)
		{
			rc_disconnect();
			return st;
		}
		masters++;
		if (strlen(list) + strlen(nodes[i].host) + 16 < sizeof(list))
			snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s:%d",
					 list[0] ? ", " : "", nodes[i].host, nodes[i].port);
	}
	if (!quiet)
		log_info("connected to Redis Cluster: %d masters (%s)", masters, list);
	return RS_OK;
}
