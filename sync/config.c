/*-------------------------------------------------------------------------
 *
 * config.c
 *		Configuration of credits-sync: defaults, config file, environment,
 *		command line.
 *
 * Each later source overrides the earlier ones:
 *		built-in defaults < config file (--config) < environment < flags.
 * libpq's own environment variables (PGHOST, PGPORT, PGUSER, PGDATABASE,
 * PGPASSWORD, ...) fill in whatever --dbname does not say.
 *
 * config_load() builds a complete SyncConfig from scratch every time, so
 * SIGHUP simply calls it again with the original argv and swaps the result
 * in if it is valid; an invalid file on reload keeps the old configuration.
 * Nothing here keeps state between calls.
 *
 * Calls: log.c only (errors in the settings); main.c calls in.
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "credits_sync.h"

typedef enum OptKind
{
	OPT_STRING,
	OPT_INT,
	OPT_LOGLEVEL,
	OPT_ACTION
} OptKind;

typedef struct OptDef
{
	const char *name;			/* long flag and config file key */
	char		short_name;
	const char *env;			/* environment variable, or NULL */
	OptKind		kind;
	size_t		offset;			/* into SyncConfig */
	int			min;
	int			max;
	SyncAction	action;			/* for OPT_ACTION */
	const char *arg;			/* for usage */
	const char *help;
} OptDef;

#define OFF(f) offsetof(SyncConfig, f)

static const OptDef options[] = {
	{"dbname", 'd', NULL, OPT_STRING, OFF(dbname), 0, 0, 0, "CONNINFO",
	"PostgreSQL database name, conninfo string or URI (libpq PG* variables apply)"},
	{"redis-host", 0, "REDIS_HOST", OPT_STRING, OFF(redis_host), 0, 0, 0, "HOST",
	"Redis host, or a Unix socket path (default " DEFAULT_REDIS_HOST ")"},
	{"redis-port", 0, "REDIS_PORT", OPT_INT, OFF(redis_port), 1, 65535, 0, "PORT",
	"Redis port (default 6379)"},
	{"redis-password", 0, "REDIS_PASSWORD", OPT_STRING, OFF(redis_password), 0, 0, 0, "PASSWORD",
	"Redis password (AUTH); prefer the environment variable"},
	{"redis-db", 0, "REDIS_DB", OPT_INT, OFF(redis_db), 0, INT_MAX, 0, "N",
	"Redis database number (default 0)"},
	{"redis-cluster", 0, "CREDITS_SYNC_REDIS_CLUSTER", OPT_STRING, OFF(redis_cluster), 0, 0, 0, "HOST:PORT,...",
	"nodes of a Redis Cluster to start from (default: none; a --redis-host in cluster mode is used as one)"},
	{"partition", 0, "CREDITS_SYNC_PARTITION", OPT_STRING, OFF(partition), 0, 0, 0, "P/N",
	"this database is partition P of N (a power of two): own global keys, only its users' keys touched"},
	{"prefix", 0, "CREDITS_SYNC_PREFIX", OPT_STRING, OFF(prefix), 0, 0, 0, "PREFIX",
	"prefix of every Redis key (default none)"},
	{"window", 'w', "CREDITS_SYNC_WINDOW", OPT_INT, OFF(window), 1, MAX_WINDOW, 0, "N",
	"ledger rows kept per user in txs:<user> (default 1000)"},
	{"batch-size", 0, "CREDITS_SYNC_BATCH_SIZE", OPT_INT, OFF(batch_size), 1, MAX_BATCH_SIZE, 0, "N",
	"outbox rows read per query (default 2000)"},
	{"batch-delay", 0, "CREDITS_SYNC_BATCH_DELAY", OPT_INT, OFF(batch_delay), 0, 1000, 0, "MS",
	"interval between polls while rows stream in (default 5)"},
	{"poll-interval", 0, "CREDITS_SYNC_POLL_INTERVAL", OPT_INT, OFF(poll_interval), 10, 3600000, 0, "MS",
	"safety poll while idle, in ms (default 500)"},
	{"max-backoff", 0, "CREDITS_SYNC_MAX_BACKOFF", OPT_INT, OFF(max_backoff), 10, 3600000, 0, "MS",
	"cap of the reconnect backoff, in ms (default 1000)"},
	{"connect-timeout", 0, "CREDITS_SYNC_CONNECT_TIMEOUT", OPT_INT, OFF(connect_timeout), 1, 3600, 0, "S",
	"connect and command timeout, in s (default 5)"},
	{"log-level", 'l', "CREDITS_SYNC_LOG_LEVEL", OPT_LOGLEVEL, OFF(log_level), 0, 0, 0, "LEVEL",
	"error, warning, info or debug (default info)"},
	{"pidfile", 'p', "CREDITS_SYNC_PIDFILE", OPT_STRING, OFF(pidfile), 0, 0, 0, "FILE",
	"write the process id to FILE"},
	{"metrics-file", 0, "CREDITS_SYNC_METRICS_FILE", OPT_STRING, OFF(metrics_file), 0, 0, 0, "FILE",
	"write Prometheus metrics to FILE (node_exporter textfile format) every second and at exit"},
	{"config", 'c', "CREDITS_SYNC_CONFIG", OPT_STRING, OFF(config_file), 0, 0, 0, "FILE",
	"read settings from FILE (key = value; re-read on SIGHUP)"},
	{"status", 0, NULL, OPT_ACTION, 0, 0, 0, ACTION_STATUS, NULL,
	"print the daemon's state hash from Redis and exit"},
	{"version", 'V', NULL, OPT_ACTION, 0, 0, 0, ACTION_VERSION, NULL,
	"print the version and exit"},
	{"help", 'h', NULL, OPT_ACTION, 0, 0, 0, ACTION_HELP, NULL,
	"show this help and exit"},
};

#define NOPTIONS ((int) (sizeof(options) / sizeof(options[0])))

/* opt and cfg are valid; value is not NULL.  Reports errors on stderr. */
static bool
set_option(SyncConfig *cfg, const OptDef *opt, const char *value,
		   const char *source)
{
	char	   *base = (char *) cfg;

	switch (opt->kind)
	{
		case OPT_STRING:
			{
				char	  **p = (char **) (base + opt->offset);

				free(*p);
				*p = strdup(value);
				return *p != NULL;
			}
		case OPT_INT:
			{
				char	   *end;
				long		v;

				errno = 0;
				v = strtol(value, &end, 10);
				if (errno != 0 || end == value || *end != '\0' ||
					v < opt->min || v > opt->max)
				{
					log_error("invalid value \"%s\" for %s (%s): must be an integer from %d to %d",
							  value, opt->name, source, opt->min, opt->max);
					return false;
				}
				*(int *) (base + opt->offset) = (int) v;
				return true;
			}
		case OPT_LOGLEVEL:
			if (!log_parse_level(value, (LogLevel *) (base + opt->offset)))
			{
				log_error("invalid value \"%s\" for %s (%s): must be error, warning, info or debug",
						  value, opt->name, source);
				return false;
			}
			return true;
		case OPT_ACTION:
			cfg->action = opt->action;
			return true;
	}
	return false;
}

/* name is a key or long flag name; '_' and '-' are the same. */
static const OptDef *
find_option(const char *name, size_t len)
{
	for (int i = 0; i < NOPTIONS; i++)
	{
		const char *o = options[i].name;
		size_t		j;

		if (strlen(o) != len)
			continue;
		for (j = 0; j < len; j++)
		{
			char		a = name[j] == '_' ? '-' : name[j];

			if (tolower((unsigned char) a) != o[j])
				break;
		}
		if (j == len)
			return &options[i];
	}
	return NULL;
}

/* s is a NUL-terminated line; trims it in place. */
static char *
trim(char *s)
{
	char	   *e;

	while (isspace((unsigned char) *s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char) e[-1]))
		*--e = '\0';
	return s;
}

/*
 * path names a readable file of "key = value" lines ('#' starts a comment
 * line; a value may be quoted with ' or ").  Applies them to cfg.
 */
static bool
read_config_file(SyncConfig *cfg, const char *path)
{
	FILE	   *f = fopen(path, "r");
	char	   *line = NULL;
	size_t		cap = 0;
	int			lineno = 0;
	bool		ok = true;

	if (f == NULL)
	{
		log_error("could not open config file \"%s\": %s", path, strerror(errno));
		return false;
	}
	while (getline(&line, &cap, f) >= 0)
	{
		char	   *s = trim(line);
		char	   *eq;
		char	   *key;
		char	   *value;
		const OptDef *opt;
		char		where[64];

		lineno++;
		if (*s == '\0' || *s == '#')
			continue;
		eq = strchr(s, '=');
		if (eq == NULL)
		{
			log_error("syntax error in \"%s\" line %d: expected key = value", path, lineno);
			ok = false;
			continue;
		}
		*eq = '\0';
		key = trim(s);
		value = trim(eq + 1);
		if (strlen(value) >= 2 && (value[0] == '"' || value[0] == '\'') &&
			value[strlen(value) - 1] == value[0])
		{
			value[strlen(value) - 1] = '\0';
			value++;
		}
		opt = find_option(key, strlen(key));
		if (opt == NULL || opt->kind == OPT_ACTION || opt->offset == OFF(config_file))
		{
			log_error("unknown setting \"%s\" in \"%s\" line %d", key, path, lineno);
			ok = false;
			continue;
		}
		snprintf(where, sizeof(where), "line %d", lineno);
		if (!set_option(cfg, opt, value, where))
			ok = false;
	}
	free(line);
	fclose(f);
	return ok;
}

/* cfg is zeroed or previously freed. */
static bool
set_defaults(SyncConfig *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->redis_host = strdup(DEFAULT_REDIS_HOST);
	cfg->prefix = strdup("");
	cfg->redis_port = DEFAULT_REDIS_PORT;
	cfg->window = DEFAULT_WINDOW;
	cfg->batch_size = DEFAULT_BATCH_SIZE;
	cfg->batch_delay = DEFAULT_BATCH_DELAY;
	cfg->poll_interval = DEFAULT_POLL_INTERVAL;
	cfg->max_backoff = DEFAULT_MAX_BACKOFF;
	cfg->connect_timeout = DEFAULT_CONNECT_TIMEOUT;
	cfg->log_level = LL_INFO;
	return cfg->redis_host != NULL && cfg->prefix != NULL;
}

/*
 * One pass over argv.  When only_config, just finds --config; otherwise
 * applies every flag.  Returns false on a bad flag (reported).
 */
static bool
parse_args(SyncConfig *cfg, int argc, char **argv, bool only_config)
{
	for (int i = 1; i < argc; i++)
	{
		const char *a = argv[i];
		const OptDef *opt = NULL;
		const char *value = NULL;

		if (a[0] == '-' && a[1] == '-' && a[2] != '\0')
		{
			const char *name = a + 2;
			const char *eq = strchr(name, '=');
			size_t		len = eq ? (size_t) (eq - name) : strlen(name);

			opt = find_option(name, len);
			if (opt == NULL)
			{
				log_error("unknown option \"%s\" (try --help)", a);
				return false;
			}
			if (eq)
			{
				if (opt->kind == OPT_ACTION)
				{
					log_error("option --%s takes no value", opt->name);
					return false;
				}
				value = eq + 1;
			}
		}
		else if (a[0] == '-' && a[1] != '\0' && a[2] == '\0')
		{
			for (int j = 0; j < NOPTIONS; j++)
				if (options[j].short_name == a[1])
					opt = &options[j];
			if (opt == NULL)
			{
				log_error("unknown option \"%s\" (try --help)", a);
				return false;
			}
		}
		else
		{
			log_error("unexpected argument \"%s\" (try --help)", a);
			return false;
		}

		if (opt->kind != OPT_ACTION && value == NULL)
		{
			if (i + 1 >= argc)
			{
				log_error("option --%s needs a value", opt->name);
				return false;
			}
			value = argv[++i];
		}
		if (only_config && opt->offset != OFF(config_file))
			continue;
		if (opt->kind == OPT_ACTION && only_config)
			continue;
		if (!set_option(cfg, opt, value ? value : "", "command line"))
			return false;
	}
	return true;
}

/*
 * cfg is uninitialised.  Builds it from defaults, the config file, the
 * environment and argv.  On failure cfg is freed and false is returned.
 */
bool
config_load(SyncConfig *cfg, int argc, char **argv)
{
	const char *env;

	if (!set_defaults(cfg))
		goto fail;

	/* Where is the config file?  Flag beats environment. */
	env = getenv("CREDITS_SYNC_CONFIG");
	if (env != NULL && *env != '\0' && (cfg->config_file = strdup(env)) == NULL)
		goto fail;
	if (!parse_args(cfg, argc, argv, true))
		goto fail;
	if (cfg->config_file != NULL && !read_config_file(cfg, cfg->config_file))
		goto fail;

	for (int i = 0; i < NOPTIONS; i++)
	{
		if (options[i].env == NULL || options[i].offset == OFF(config_file))
			continue;
		env = getenv(options[i].env);
		if (env != NULL && *env != '\0' &&
			!set_option(cfg, &options[i], env, options[i].env))
			goto fail;
	}

	if (!parse_args(cfg, argc, argv, false))
		goto fail;
	if (cfg->partition != NULL && cfg->partition[0] != '\0' &&
		!partition_parse(cfg->partition, &cfg->part_index, &cfg->part_count))
	{
		log_error("invalid value \"%s\" for partition: must be P/N, N a power of two from 1 to 65536 and P from 0 to N - 1",
				  cfg->partition);
		goto fail;
	}
	return true;

fail:
	config_free(cfg);
	return false;
}

/* cfg was filled by config_load (or zeroed). */
void
config_free(SyncConfig *cfg)
{
	free(cfg->config_file);
	free(cfg->dbname);
	free(cfg->redis_host);
	free(cfg->redis_password);
	free(cfg->prefix);
	free(cfg->pidfile);
	free(cfg->metrics_file);
	free(cfg->redis_cluster);
	free(cfg->partition);
	memset(cfg, 0, sizeof(*cfg));
}

/* NULL-safe string equality. */
static bool
str_eq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

/* Both loaded.  True if the PostgreSQL connection must be remade. */
bool
config_pg_changed(const SyncConfig *a, const SyncConfig *b)
{
	return !str_eq(a->dbname, b->dbname) ||
		a->connect_timeout != b->connect_timeout;
}

/* Both loaded.  True if Redis must be reconnected and the cursor re-read. */
bool
config_redis_changed(const SyncConfig *a, const SyncConfig *b)
{
	return !str_eq(a->redis_host, b->redis_host) ||
		a->redis_port != b->redis_port ||
		!str_eq(a->redis_password, b->redis_password) ||
		a->redis_db != b->redis_db ||
		!str_eq(a->redis_cluster, b->redis_cluster) ||
		a->part_index != b->part_index || a->part_count != b->part_count ||
		!str_eq(a->prefix, b->prefix) ||
		a->window != b->window ||
		a->connect_timeout != b->connect_timeout;
}

/* out is writable. */
void
config_usage(FILE *out)
{
	fprintf(out,
			"credits-sync %s mirrors the credits ledger from PostgreSQL into Redis.\n\n"
			"Usage:\n  credits-sync [OPTION]...\n\nOptions:\n",
			CREDITS_SYNC_VERSION);
	for (int i = 0; i < NOPTIONS; i++)
	{
		const OptDef *o = &options[i];
		char		flag[64];

		if (o->short_name)
			snprintf(flag, sizeof(flag), "-%c, --%s%s%s", o->short_name, o->name,
					 o->arg ? "=" : "", o->arg ? o->arg : "");
		else
			snprintf(flag, sizeof(flag), "    --%s%s%s", o->name,
					 o->arg ? "=" : "", o->arg ? o->arg : "");
		fprintf(out, "  %-30s %s%s%s%s\n", flag, o->help,
				o->env ? " [" : "", o->env ? o->env : "", o->env ? "]" : "");
	}
	fprintf(out,
			"\nSettings apply in this order, later ones winning: defaults, the config\n"
			"file, environment variables (in brackets), command-line flags.\n"
			"Signals: SIGHUP reloads the config file; SIGTERM finishes the current\n"
			"batch and exits 0.\n"
			"Exit status: 0 after SIGTERM, 1 on a usage or configuration error,\n"
			"2 when the installed credits extension version is not supported.\n");
}
