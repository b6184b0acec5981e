/*-------------------------------------------------------------------------
 *
 * sync_lag.c
 *		Measures credits-sync's commit-to-visible-in-Redis lag.
 *
 *	sync_lag --rate R --seconds S --clients C --users U [--warmup W] [--prefix P]
 *
 * C asynchronous libpq connections run
 *	SELECT balance FROM credits.credit_deduct('lag-<n>', 1, 'sync_lag')
 * (autocommit: the result arrives after COMMIT), at R deductions per second
 * in total (open loop), or as fast as they can with R = 0.  One Redis
 * connection is subscribed to keyspace events of <P>balance:lag-* (the script
 * enables notify-keyspace-events K$ and restores it afterwards).
 *
 * A user gets a new deduction only after the previous one was seen, so each
 * "set" event on balance:<user> belongs to exactly one deduction.  The lag
 * of a deduction is (event received) - (COMMIT acknowledged to the client),
 * both on this process's monotonic clock; an event that arrives before the
 * acknowledgement counts as 0.  Samples from the first W seconds are
 * dropped.  Prints one tab-separated line:
 *	achieved_rate  samples  p50_ms  p99_ms  max_ms  unseen
 * where unseen counts deductions never seen in Redis (should be 0).
 *
 * PostgreSQL from the PG* environment, Redis from REDIS_HOST/REDIS_PORT.
 *
 *-------------------------------------------------------------------------
 */
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

typedef struct Slot
{
	int64_t		sent;			/* us; 0 when free */
	int64_t		acked;
	int64_t		seen;
} Slot;

static Slot *slots;
static int *free_users;
static int nfree_users;
static int64_t *lags;
static size_t nlags = 0;
static size_t caplags = 1 << 20;
static int64_t warm_end;

/* User u's deduction was both acknowledged and seen: record, free u. */
static void
finish(int u)
{
	if (slots[u].sent >= warm_end && nlags < caplags)
		lags[nlags++] = slots[u].seen > slots[u].acked ? slots[u].seen - slots[u].acked : 0;
	slots[u].sent = 0;
	free_users[nfree_users++] = u;
}

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int
cmp64(const void *a, const void *b)
{
	int64_t		x = *(const int64_t *) a,
				y = *(const int64_t *) b;

	return (x > y) - (x < y);
}

static void
die(const char *what, const char *msg)
{
	fprintf(stderr, "sync_lag: %s: %s\n", what, msg);
	exit(1);
}

int
main(int argc, char **argv)
{
	double		rate = 1000;
	int			seconds = 10,
				clients = 4,
				nusers = 10000;
	double		warmup = 1;
	PGconn	  **pg;
	int		   *busy_user;		/* user in flight per connection, -1 if idle */
	redisContext *rc;
	redisReply *reply;
	const char *host = getenv("REDIS_HOST");
	const char *port = getenv("REDIS_PORT");
	struct pollfd *pfd;
	int64_t		start,
				end,
				next_send,
				interval;
	long		done_total = 0;
	static const char match[] = "balance:lag-";
	const char *prefix = "";	/* credits-sync's --prefix */

	for (int i = 1; i + 1 < argc; i += 2)
	{
		if (strcmp(argv[i], "--rate") == 0)
			rate = atof(argv[i + 1]);
		else if (strcmp(argv[i], "--seconds") == 0)
			seconds = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--clients") == 0)
			clients = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--users") == 0)
			nusers = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--warmup") == 0)
			warmup = atof(argv[i + 1]);
		else if (strcmp(argv[i], "--prefix") == 0)
			prefix = argv[i + 1];
		else
			die("usage", "sync_lag --rate R --seconds S --clients C --users U [--warmup W] [--prefix P]");
	}

	slots = calloc((size_t) nusers, sizeof(Slot));
	free_users = malloc(sizeof(int) * (size_t) nusers);
	for (int i = 0; i < nusers; i++)
		free_users[i] = i;
	nfree_users = nusers;
	lags = malloc(sizeof(int64_t) * caplags);
	pg = calloc((size_t) clients, sizeof(PGconn *));
	busy_user = malloc(sizeof(int) * (size_t) clients);
	pfd = calloc((size_t) clients + 1, sizeof(struct pollfd));

	rc = redisConnect(host ? host : "127.0.0.1", port ? atoi(port) : 6379);
	if (rc == NULL || rc->err)
		die("Redis", rc ? rc->errstr : "out of memory");
	reply = redisCommand(rc, "PSUBSCRIBE __keyspace@*__:%s%s*", prefix, match);
	if (reply == NULL)
		die("Redis", rc->errstr);
	freeReplyObject(reply);

	for (int c = 0; c < clients; c++)
	{
		pg[c] = PQconnectdb("application_name=sync_lag");
		if (PQstatus(pg[c]) != CONNECTION_OK)
			die("PostgreSQL", PQerrorMessage(pg[c]));
		PQsetnonblocking(pg[c], 1);
		busy_user[c] = -1;
	}

	srandom(12345);
	start = now_us();
	warm_end = start + (int64_t) (warmup * 1e6);
	end = start + (int64_t) seconds * 1000000;
	interval = rate > 0 ? (int64_t) (1000000.0 / rate) : 0;
	next_send = start;

	/* Until the end, and then until every deduction was seen (or 5 s) */
	while (now_us() < end || nfree_users < nusers)
	{
		int64_t		t = now_us();
		int			timeout_ms;

		if (t > end + 5000000)
			break;				/* give up on what is still pending */

		/* Send: open loop at the rate, or keep every connection busy */
		for (int c = 0; c < clients && t < end; c++)
		{
			char		uid[32];
			const char *params[1];
			int			k,
						u;

			if (busy_user[c] >= 0 || nfree_users == 0)
				continue;
			if (rate > 0 && t < next_send)
				break;
			k = (int) (random() % nfree_users);
			u = free_users[k];
			free_users[k] = free_users[--nfree_users];
			snprintf(uid, sizeof(uid), "lag-%d", u + 1);
			params[0] = uid;
			if (!PQsendQueryParams(pg[c],
								   "SELECT balance FROM credits.credit_deduct($1, 1, 'sync_lag')",
								   1, NULL, params, NULL, NULL, 0))
				die("PostgreSQL", PQerrorMessage(pg[c]));
			PQflush(pg[c]);
			busy_user[c] = u;
			slots[u].sent = now_us();
			slots[u].acked = 0;
			slots[u].seen = 0;
			if (rate > 0)
				next_send += interval;
		}

		for (int c = 0; c < clients; c++)
		{
			pfd[c].fd = PQsocket(pg[c]);
			pfd[c].events = POLLIN;
			pfd[c].revents = 0;
		}
		pfd[clients].fd = rc->fd;
		pfd[clients].events = POLLIN;
		pfd[clients].revents = 0;
		timeout_ms = 1;
		if (rate <= 0 || t >= end)
			timeout_ms = 10;
		poll(pfd, (nfds_t) clients + 1, timeout_ms);

		/* Commits acknowledged */
		for (int c = 0; c < clients; c++)
		{
			PGresult   *res;

			if (!(pfd[c].revents & POLLIN))
				continue;
			if (!PQconsumeInput(pg[c]))
				die("PostgreSQL", PQerrorMessage(pg[c]));
			while (!PQisBusy(pg[c]) && (res = PQgetResult(pg[c])) != NULL)
			{
				if (PQresultStatus(res) != PGRES_TUPLES_OK)
					die("credit_deduct", PQresultErrorMessage(res));
				PQclear(res);
			}
			if (!PQisBusy(pg[c]) && busy_user[c] >= 0)
			{
				int			u = busy_user[c];

				slots[u].acked = now_us();
				busy_user[c] = -1;
				done_total++;
				if (slots[u].seen)
					finish(u);
			}
		}

		/* Keyspace events: balance:lag-<n> was set */
		if (pfd[clients].revents & POLLIN)
		{
			void	   *r;

			if (redisBufferRead(rc) != REDIS_OK)
				die("Redis", rc->errstr);
			while (redisGetReplyFromReader(rc, &r) == REDIS_OK && r != NULL)
			{
				redisReply *m = r;

				if (m->type == REDIS_REPLY_ARRAY && m->elements == 4)
				{
					const char *ch = m->element[2]->str;
					const char *p = strstr(ch, match);
					int			u = p ? atoi(p + sizeof(match) - 1) - 1 : -1;

					if (u >= 0 && u < nusers && slots[u].sent && !slots[u].seen)
					{
						slots[u].seen = now_us();
						if (slots[u].acked)
							finish(u);
					}
				}
				freeReplyObject(r);
			}
		}
	}

	{
		long		unseen = 0;
		double		secs = (double) (now_us() - start) / 1e6;

		for (int u = 0; u < nusers; u++)
			if (slots[u].sent && slots[u].acked && !slots[u].seen)
				unseen++;
		qsort(lags, nlags, sizeof(int64_t), cmp64);
		if (secs > seconds)
			secs = seconds;
		printf("%.0f\t%zu\t%.2f\t%.2f\t%.2f\t%ld\n",
			   (double) done_total / secs, nlags,
			   nlags ? lags[nlags / 2] / 1000.0 : 0,
			   nlags ? lags[(size_t) ((double) nlags * 0.99)] / 1000.0 : 0,
			   nlags ? lags[nlags - 1] / 1000.0 : 0, unseen);
	}
	for (int c = 0; c < clients; c++)
		PQfinish(pg[c]);
	redisFree(rc);
	return 0;
}
