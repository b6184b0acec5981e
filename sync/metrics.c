/*-------------------------------------------------------------------------
 *
 * metrics.c
 *		credits-sync's metrics as a Prometheus text file, for
 *		node_exporter's textfile collector (--metrics-file).
 *
 * The file is text exposition format 0.0.4: for every metric a # HELP and
 * a # TYPE line, then its samples, every name starting with credits_sync_.
 * README.md ("Metrics") lists them.  Label values are escaped as the
 * format says (backslash, double quote, newline); bytes that are not
 * UTF-8 become '?' and control bytes blanks, so an odd error message
 * cannot make the file unparsable.
 *
 * The file is replaced atomically: written to "<path>.<pid>.tmp" in the
 * same directory (the collector reads only *.prom files), then renamed
 * over path, so a reader sees the old file or the new one, never half of
 * one.  main.c calls metrics_write() at every turn of its loop and
 * between rebuild chunks; it writes at most every METRICS_MIN_MS, and
 * always when forced (at exit, with credits_sync_up 0).
 *
 * Calls: status.c (reads the counters) and log.c (a failed write is
 * logged once, until a write succeeds again).  Nothing here stops the
 * daemon.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "credits_sync.h"

#define METRICS_MIN_MS	1000

static int64_t last_write = 0;	/* now_ms() of the last attempt */
static bool failing = false;	/* the last attempt failed (and was logged) */

/* f is open.  Writes s as a label value body: escaped, valid UTF-8. */
static void
put_label_value(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *) s;

	while (*p)
	{
		int			n = 0;

		if (*p == '\\')
			fputs("\\\\", f);
		else if (*p == '"')
			fputs("\\\"", f);
		else if (*p == '\n')
			fputs("\\n", f);
		else if (*p < 0x20 || *p == 0x7f)
			fputc(' ', f);
		else if (*p < 0x80)
			fputc(*p, f);
		else
		{
			/* a UTF-8 sequence is copied whole, anything else is '?' */
			if (*p >= 0xc2 && *p <= 0xdf)
				n = 2;
			else if (*p >= 0xe0 && *p <= 0xef)
				n = 3;
			else if (*p >= 0xf0 && *p <= 0xf4)
				n = 4;
			for (int i = 1; i < n; i++)
				if ((p[i] & 0xc0) != 0x80)
					n = 0;
			if (n == 0)
				fputc('?', f);
			else
			{
				fwrite(p, 1, (size_t) n, f);
				p += n;
				continue;
			}
		}
		p++;
	}
}

/* f is open.  Writes the # HELP and # TYPE lines of one metric. */
static void
put_head(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP credits_sync_%s %s\n# TYPE credits_sync_%s %s\n",
			name, help, name, type);
}

/* f is open.  Writes counter name (with HELP help), one sample per side. */
static void
put_by_side(FILE *f, const char *name, const char *help, const int64_t *counts)
{
	put_head(f, name, "counter", help);
	for (int i = 0; i < NSIDES; i++)
		fprintf(f, "credits_sync_%s{side=\"%s\"} %" PRId64 "\n",
				name, status_side_name((SyncSide) i), counts[i]);
}

/* f is open.  Writes every metric of s. */
static void
put_metrics(FILE *f, const SyncStatus *s)
{
	bool		up = s->state != STATE_STOPPED && s->state != STATE_REFUSED;

	put_head(f, "up", "gauge",
			 "1 while the daemon runs; 0 in the file written when it exits.");
	fprintf(f, "credits_sync_up %d\n", up ? 1 : 0);

	put_head(f, "state", "gauge",
			 "The daemon's state, as credits-sync --status shows it: 1 for the current one.");
	for (int i = 0; i < NSTATES; i++)
		fprintf(f, "credits_sync_state{state=\"%s\"} %d\n",
				status_state_name((SyncState) i), (int) s->state == i ? 1 : 0);

	put_head(f, "rows_applied_total", "counter",
			 "Ledger rows applied to Redis by this process.");
	fprintf(f, "credits_sync_rows_applied_total %" PRId64 "\n", s->rows_applied);

	put_head(f, "pages_total", "counter",
			 "Outbox pages with rows applied to Redis by this process.");
	fprintf(f, "credits_sync_pages_total %" PRId64 "\n", s->pages);

	put_head(f, "lag_milliseconds", "gauge",
			 "Age of the newest row of the last page when it was applied (lag_ms of --status); 0 when caught up.");
	fprintf(f, "credits_sync_lag_milliseconds %" PRId64 "\n", s->lag_ms);

	put_head(f, "rebuilds_total", "counter",
			 "Rebuilds of Redis from PostgreSQL done by this process, by reason.");
	for (int i = 0; i < NREBUILD_REASONS; i++)
		fprintf(f, "credits_sync_rebuilds_total{reason=\"%s\"} %" PRId64 "\n",
				status_reason_name((RebuildReason) i), s->rebuilds[i]);

	put_by_side(f, "reconnects_total",
				"Connections re-established after a loss, by side.", s->reconnects);
	put_by_side(f, "errors_total",
				"Errors recorded as the last error, by side.", s->errors);

	put_head(f, "redis_redirects_total", "counter",
			 "Redis Cluster redirections followed, by kind (MOVED or ASK).");
	fprintf(f, "credits_sync_redis_redirects_total{kind=\"moved\"} %" PRId64 "\n",
			s->cluster_events[CLUSTER_MOVED]);
	fprintf(f, "credits_sync_redis_redirects_total{kind=\"ask\"} %" PRId64 "\n",
			s->cluster_events[CLUSTER_ASK]);
	put_head(f, "redis_topology_reads_total", "counter",
			 "Redis Cluster topology reads (CLUSTER SLOTS): at connect, after a MOVED, and before a WAIT at most every second.");
	fprintf(f, "credits_sync_redis_topology_reads_total %" PRId64 "\n",
			s->cluster_events[CLUSTER_TOPOLOGY]);

	put_head(f, "stale_refused_total", "counter",
			 "Value writes refused because Redis held a newer version.");
	fprintf(f, "credits_sync_stale_refused_total %" PRId64 "\n", s->stale_refused);

	put_head(f, "last_error_info", "gauge",
			 "The last error (1, with its side and message; no sample if none yet).");
	if (s->last_error_ms > 0)
	{
		const char *msg = strchr(s->last_error, ' ');

		fprintf(f, "credits_sync_last_error_info{side=\"%s\",message=\"",
				status_side_name(s->last_error_side));
		put_label_value(f, msg ? msg + 1 : s->last_error);
		fputs("\"} 1\n", f);
	}

	put_head(f, "last_error_timestamp_seconds", "gauge",
			 "Unix time of the last error; 0 if none yet.");
	fprintf(f, "credits_sync_last_error_timestamp_seconds %" PRId64 ".%03d\n",
			s->last_error_ms / 1000, (int) (s->last_error_ms % 1000));

	put_head(f, "extension_info", "gauge",
			 "The credits extension version read at the last connect to PostgreSQL (no sample before).");
	if (s->extension_version[0] != '\0')
	{
		fputs("credits_sync_extension_info{version=\"", f);
		put_label_value(f, s->extension_version);
		fputs("\"} 1\n", f);
	}

	put_head(f, "build_info", "gauge", "The version of this credits-sync.");
	fprintf(f, "credits_sync_build_info{version=\"%s\"} 1\n", CREDITS_SYNC_VERSION);

	put_head(f, "start_time_seconds", "gauge", "Unix time the daemon started.");
	fprintf(f, "credits_sync_start_time_seconds %" PRId64 ".%03d\n",
			s->started_ms / 1000, (int) (s->started_ms % 1000));

	put_head(f, "metrics_updated_timestamp_seconds", "gauge",
			 "Unix time this file was written.");
	{
		int64_t		t = wall_ms();

		fprintf(f, "credits_sync_metrics_updated_timestamp_seconds %" PRId64 ".%03d\n",
				t / 1000, (int) (t % 1000));
	}
}

/*
 * path is NULL (no metrics file) or the file to replace.  Writes the
 * metrics if force, or if the last attempt is METRICS_MIN_MS old.
 */
void
metrics_write(const char *path, bool force)
{
	char	   *tmp;
	size_t		n;
	FILE	   *f;
	const char *what = NULL;
	int			err = 0;

	if (path == NULL || path[0] == '\0')
		return;
	if (!force && last_write != 0 && now_ms() - last_write < METRICS_MIN_MS)
		return;
	last_write = now_ms();

	n = strlen(path) + 32;
	tmp = malloc(n);
	if (tmp == NULL)
		return;
	snprintf(tmp, n, "%s.%d.tmp", path, (int) getpid());
	f = fopen(tmp, "w");
	if (f == NULL)
	{
		what = "create";
		err = errno;
	}
	else
	{
		put_metrics(f, status_get());
		if (ferror(f))
		{
			what = "write";
			err = errno;
			fclose(f);
		}
		else if (fclose(f) != 0)
		{
			what = "write";
			err = errno;
		}
		else if (rename(tmp, path) != 0)
		{
			what = "rename";
			err = errno;
		}
		if (what != NULL)
			unlink(tmp);
	}
	if (what != NULL && !failing)
		log_warning("could not %s the metrics file %s: %s (retrying every %d ms, logged once)",
					what, what[0] == 'r' ? path : tmp, strerror(err), METRICS_MIN_MS);
	else if (what == NULL && failing)
		log_info("metrics file %s written again", path);
	failing = what != NULL;
	free(tmp);
}
