/*-------------------------------------------------------------------------
 *
 * status.c
 *		What credits-sync has done: the counters, the state and the last
 *		error, and the clocks they are stamped with.
 *
 * This file owns one SyncStatus.  pg.c and redis.c record their errors,
 * the extension version seen and the value writes Redis refused; main.c
 * records the state, applied pages, lag, reconnects and rebuilds.  Two
 * readers turn it into text: status_hash_fields() for the sync:status
 * hash (written by redis.c, printed by --status) and metrics.c for the
 * Prometheus text file.
 *
 * Calls: nothing above it (no PostgreSQL, no Redis, no logging).  The
 * process is single-threaded and nothing here is called from a signal
 * handler, so the counters need no locking.
 *
 *-------------------------------------------------------------------------
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "credits_sync.h"

static SyncStatus st = {.state = STATE_STARTING};

static const char *const side_names[NSIDES] = {
	[SIDE_POSTGRES] = "postgres",
	[SIDE_REDIS] = "redis",
};

static const char *const reason_names[NREBUILD_REASONS] = {
	[REBUILD_NO_CURSOR] = "no_cursor",
	[REBUILD_MALFORMED_CURSOR] = "malformed_cursor",
	[REBUILD_WINDOW_CHANGED] = "window_changed",
	[REBUILD_NO_CHECKED] = "no_checked",
	[REBUILD_HISTORY] = "history",
	[REBUILD_FAILOVER] = "failover",
};

/* The state field of --status; README.md lists them */
static const char *const state_names[NSTATES] = {
	[STATE_STARTING] = "starting",
	[STATE_RUNNING] = "running",
	[STATE_REBUILDING] = "rebuilding",
	[STATE_WAITING_PRIMARY] = "waiting for a primary",
	[STATE_STOPPED] = "stopped",
	[STATE_REFUSED] = "refused",
};

/* ------------------------------------------------------------------ */

/* Any time. */
int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Any time. */
int64_t
now_ms(void)
{
	return now_us() / 1000;
}

/* Any time. */
int64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* buf has 32 bytes.  Formats a wall-clock time in ms as ISO 8601 UTC. */
void
format_time(int64_t ms, char *buf)
{
	time_t		s = (time_t) (ms / 1000);
	struct tm	tm;
	size_t		n;

	gmtime_r(&s, &tm);
	n = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, 32 - n, ".%03dZ", (int) (ms % 1000));
}

/* ------------------------------------------------------------------ */

/* Any time. */
const SyncStatus *
status_get(void)
{
	return &st;
}

/* side < NSIDES. */
const char *
status_side_name(SyncSide side)
{
	return side_names[side];
}

/* reason < NREBUILD_REASONS. */
const char *
status_reason_name(RebuildReason reason)
{
	return reason_names[reason];
}

/* state < NSTATES. */
const char *
status_state_name(SyncState state)
{
	return state_names[state];
}

/* Once, at start. */
void
status_start(void)
{
	st.started_ms = wall_ms();
}

/* Any time. */
void
status_set_state(SyncState state)
{
	st.state = state;
}

/*
 * Any time.  Counts an error of one side and remembers it as the last
 * error, stamped with the time (newlines become blanks).
 */
void
status_error(SyncSide side, const char *fmt,...)
{
	va_list		ap;
	char		when[32];
	size_t		n;

	st.last_error_ms = wall_ms();
	st.last_error_side = side;
	st.errors[side]++;
	format_time(st.last_error_ms, when);
	n = (size_t) snprintf(st.last_error, sizeof(st.last_error), "%s ", when);
	va_start(ap, fmt);
	vsnprintf(st.last_error + n, sizeof(st.last_error) - n, fmt, ap);
	va_end(ap);
	for (char *p = st.last_error; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
}

/* A connection to side was re-established after a loss. */
void
status_reconnect(SyncSide side)
{
	st.reconnects[side]++;
}

/* A rebuild finished (its cursor is in Redis). */
void
status_rebuild_done(RebuildReason reason)
{
	st.rebuilds[reason]++;
}

/* An outbox page was applied with its cursor; rows = its ledger rows. */
void
status_page_applied(int64_t rows)
{
	st.rows_applied += rows;
	if (rows > 0)
		st.pages++;
}

/* ms: age of the newest row of the last page when applied; 0 if none. */
void
status_set_lag(int64_t ms)
{
	st.lag_ms = ms;
}

/* A Redis Cluster redirection followed, or a topology read (cluster.c). */
void
status_cluster_event(ClusterEvent e)
{
	st.cluster_events[e]++;
}

/* n value writes were refused by Redis as older than what it holds. */
void
status_stale_refused(int64_t n)
{
	st.stale_refused += n;
}

/* version is the credits extension's version read at a connect. */
void
status_set_extension_version(const char *version)
{
	snprintf(st.extension_version, sizeof(st.extension_version), "%s", version);
}

/* ------------------------------------------------------------------ */

/* Static storage for the status hash fields */
static char h_rows[24],
			h_refused[24],
			h_lag[24],
			h_reconnects[24],
			h_rebuilds[24],
			h_updated[32],
			h_started[32],
			h_pid[16];
static const char *h_fields[2 * 14];

/*
 * cursor_text (or NULL) is the cursor being written, pending_rows the
 * rows written with it (counted in rows_synced, as the hash is written in
 * the same pipeline).  Points *fields at the sync:status field/value
 * pairs, valid until the next call; returns how many pairs.
 */
int
status_hash_fields(const char *cursor_text, int64_t pending_rows,
				   const char *const **fields)
{
	int			n = 0;
	int64_t		reconnects = 0;
	int64_t		rebuilds = 0;

	for (int i = 0; i < NSIDES; i++)
		reconnects += st.reconnects[i];
	for (int i = 0; i < NREBUILD_REASONS; i++)
		rebuilds += st.rebuilds[i];
	snprintf(h_rows, sizeof(h_rows), "%" PRId64, st.rows_applied + pending_rows);
	snprintf(h_refused, sizeof(h_refused), "%" PRId64, st.stale_refused);
	snprintf(h_lag, sizeof(h_lag), "%" PRId64, st.lag_ms);
	snprintf(h_reconnects, sizeof(h_reconnects), "%" PRId64, reconnects);
	snprintf(h_rebuilds, sizeof(h_rebuilds), "%" PRId64, rebuilds);
	snprintf(h_pid, sizeof(h_pid), "%d", (int) getpid());
	format_time(wall_ms(), h_updated);
	format_time(st.started_ms, h_started);

	h_fields[n++] = "state";
	h_fields[n++] = state_names[st.state];
	h_fields[n++] = "rows_synced";
	h_fields[n++] = h_rows;
	h_fields[n++] = "lag_ms";
	h_fields[n++] = h_lag;
	h_fields[n++] = "last_error";
	h_fields[n++] = st.last_error;
	h_fields[n++] = "reconnects";
	h_fields[n++] = h_reconnects;
	h_fields[n++] = "rebuilds";
	h_fields[n++] = h_rebuilds;
	h_fields[n++] = "stale_refused";
	h_fields[n++] = h_refused;
	if (cursor_text != NULL)
	{
		h_fields[n++] = "cursor";
		h_fields[n++] = cursor_text;
	}
	h_fields[n++] = "updated_at";
	h_fields[n++] = h_updated;
	h_fields[n++] = "started_at";
	h_fields[n++] = h_started;
	h_fields[n++] = "pid";
	h_fields[n++] = h_pid;
	h_fields[n++] = "version";
	h_fields[n++] = CREDITS_SYNC_VERSION;
	*fields = h_fields;
	return n / 2;
}
