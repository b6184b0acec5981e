/*-------------------------------------------------------------------------
 *
 * log.c
 *		Log lines for credits-sync, in PostgreSQL's format, on stderr.
 *
 * A line is written with a single write(2) so that lines from several
 * processes sharing a log file do not interleave (lines longer than
 * LOG_LINE_MAX are truncated).  User ids are opaque bytes; callers pass
 * them through log_quote() so that a newline or control byte in an id
 * cannot forge a log line.
 *
 * Only the main loop logs; nothing here is called from a signal handler.
 *
 * Calls: nothing above it (the bottom layer, with status.c and batch.c);
 * every module may call it.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "credits_sync.h"

#define LOG_LINE_MAX 4096

static LogLevel current_level = LL_INFO;

static const char *const level_names[] = {
	[LL_ERROR] = "error",
	[LL_WARNING] = "warning",
	[LL_INFO] = "info",
	[LL_DEBUG] = "debug",
};

static const char *const level_tags[] = {
	[LL_ERROR] = "ERROR",
	[LL_WARNING] = "WARNING",
	[LL_INFO] = "LOG",
	[LL_DEBUG] = "DEBUG",
};

/* Any time. */
void
log_set_level(LogLevel level)
{
	current_level = level;
}

/* Any time. */
LogLevel
log_get_level(void)
{
	return current_level;
}

/* s is a level name (error, warning, info, debug); case-insensitive. */
bool
log_parse_level(const char *s, LogLevel *level)
{
	for (int i = 0; i <= LL_DEBUG; i++)
	{
		if (strcasecmp(s, level_names[i]) == 0)
		{
			*level = (LogLevel) i;
			return true;
		}
	}
	if (strcasecmp(s, "log") == 0)
	{
		*level = LL_INFO;
		return true;
	}
	return false;
}

/* level is a valid LogLevel. */
const char *
log_level_name(LogLevel level)
{
	return level_names[level];
}

/*
 * s has len bytes (any bytes); buf has bufsize > 4 bytes.  Returns buf,
 * holding s with backslashes and non-printable bytes escaped as \xHH, cut
 * with "..." if it does not fit.
 */
const char *
log_quote(const char *s, size_t len, char *buf, size_t bufsize)
{
	size_t		n = 0;

	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];
		char		tmp[5];
		size_t		tlen;

		if (c == '\\')
			tlen = (size_t) snprintf(tmp, sizeof(tmp), "\\\\");
		else if (c < 0x20 || c == 0x7f)
			tlen = (size_t) snprintf(tmp, sizeof(tmp), "\\x%02x", c);
		else
		{
			tmp[0] = (char) c;
			tlen = 1;
		}
		if (n + tlen + 4 > bufsize)
		{
			memcpy(buf + n, "...", 3);
			n += 3;
			break;
		}
		memcpy(buf + n, tmp, tlen);
		n += tlen;
	}
	buf[n] = '\0';
	return buf;
}

/* fmt is a printf format.  Writes one line to stderr if level is enabled. */
void
log_msg(LogLevel level, const char *fmt,...)
{
	char		line[LOG_LINE_MAX];
	struct timeval tv;
	struct tm	tm;
	size_t		n;
	int			r;
	va_list		ap;
	int			save_errno = errno;

	if (level > current_level)
		return;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
	r = snprintf(line + n, sizeof(line) - n, ".%03d UTC [%d] %s:  ",
				 (int) (tv.tv_usec / 1000), (int) getpid(), level_tags[level]);
	if (r > 0)
		n += (size_t) r;

	va_start(ap, fmt);
	r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	if (r > 0)
		n += (size_t) r;
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	/* One line per message, even if the message (e.g. libpq's) had several. */
	for (size_t i = 0; i < n; i++)
	{
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	}
	while (n > 0 && line[n - 1] == ' ')
		n--;
	line[n++] = '\n';

	if (write(STDERR_FILENO, line, n) < 0)
	{
		/* nowhere left to report it */
	}
	errno = save_errno;
}
