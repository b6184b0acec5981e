/*-------------------------------------------------------------------------
 *
 * credits_sync.h
 *		Shared declarations of credits-sync, the daemon that mirrors the
 *		credits ledger from PostgreSQL into Redis.
 *
 * Invariants the whole daemon keeps (see README.md, "credits-sync"):
 *
 *	* PostgreSQL is the truth; Redis is a cache that may lag but never goes
 *	  back.  Every balance write carries accounts.version and the Lua script
 *	  in redis.c refuses a version lower than the one already applied (kept
 *	  in a companion key in the value key's hash slot), so a replay, a
 *	  restart or a second daemon cannot move a balance backwards.
 *	  available:/held: carry (version, as_of), as_of being the now() they
 *	  were computed for, and are refused unless that pair is greater: time
 *	  alone changes them (expiries), and every other change bumps version.
 *	* Ready for Redis Cluster: no script call touches keys of two hash
 *	  slots (keyslot.c).  A batch's data goes in one call per slot; the
 *	  global keys (cursor, checked time, rebuild tokens) share the hash tag
 *	  {sync} and are written by a call of their own.
 *	* Expiries are not in the outbox: every EXPIRY_CHECK_MS the daemon reads
 *	  the users whose hold or grant expired since sync:checked and rewrites
 *	  their values; sync:checked moves with the cursor call that follows.
 *	* The outbox (credits.ledger and credits.account_events) is read with
 *	  pgq's snapshot technique: a batch is "the rows of transactions that are
 *	  visible in snapshot cur but not in snapshot prev".  A transaction still
 *	  in progress at cur is not visible in cur, so it is picked up by a later
 *	  batch and out-of-order commits are never skipped.
 *	* The cursor (prev, plus the paging position inside cur) lives in Redis
 *	  and is written after every data call of the rows it covers succeeded,
 *	  so a crash can only replay rows, never skip them.  Applying rows is
 *	  idempotent (versions for values, ZADD of identical members for txs).
 *	* The cursor starts with an epoch token, created by the rebuild that
 *	  filled this Redis.  Every cursor write compares the whole cursor (and
 *	  sync:checked) with what the daemon wrote or read last; on a mismatch
 *	  (Redis was flushed, restarted empty or rolled back, or another daemon
 *	  wrote) it is refused inside the script, and the daemon resumes from
 *	  the cursor Redis holds, or rebuilds if there is none.  The data calls
 *	  before it check nothing: they may land in such a Redis, where they
 *	  write true values under their guards.
 *
 * The process is single-threaded.  Signal handlers only set the flags
 * declared below; the main loop acts on them between batches.
 *
 * Modules and the direction of calls (sync/layering.sh, run by make,
 * fails the build if a call goes the other way):
 *
 *	main.c		orchestrates: calls everything below, nothing calls it
 *	config.c, pg.c, redis.c, metrics.c
 *				pg.c fills a SyncBatch, main.c hands it to redis.c; pg.c and
 *				redis.c never call each other, and redis.c never sees libpq
 *	status.c, batch.c, keyslot.c, log.c
 *				the bottom: counters and the last error, the batch type,
 *				Redis Cluster slots and companion key names, log lines;
 *				they call nothing above them
 *
 * This header includes neither libpq's nor hiredis's headers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CREDITS_SYNC_H
#define CREDITS_SYNC_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifndef CREDITS_SYNC_VERSION
#error "CREDITS_SYNC_VERSION must be defined by sync/Makefile (from credits.control)"
#endif

#define SYNC_CHANNEL			"credits_sync"

/* Defaults; README.md documents them */
#define DEFAULT_REDIS_HOST		"127.0.0.1"
#define DEFAULT_REDIS_PORT		6379
#define DEFAULT_WINDOW			1000
#define DEFAULT_BATCH_SIZE		2000
#define DEFAULT_BATCH_DELAY		5		/* ms: the interval between polls while rows stream in */
#define DEFAULT_POLL_INTERVAL	500		/* ms: safety poll while idle */
#define DEFAULT_MAX_BACKOFF		1000	/* ms: cap of the reconnect backoff */
#define DEFAULT_CONNECT_TIMEOUT 5		/* s */
#define MAX_WINDOW				100000
#define MAX_BATCH_SIZE			100000

/*
 * Per-account values written as plain Redis strings.  pg.c returns them in
 * this order (redis.c names their keys).  The first SYNC_NVERSIONED (balance:) are guarded by
 * accounts.version alone; the others (available:, held:) change with time
 * at the same version (a hold or grant passing its expires_at), so they
 * are guarded by the pair (version, as_of), as_of being the time they
 * were computed for.  The Lua script takes both counts.
 */
#define SYNC_NVALUES			3
#define SYNC_NVERSIONED			1

/* ---------------------------------------------------------------- log.c */

typedef enum LogLevel
{
	LL_ERROR = 0,
	LL_WARNING,
	LL_INFO,
	LL_DEBUG
} LogLevel;

extern void log_set_level(LogLevel level);
extern LogLevel log_get_level(void);
extern bool log_parse_level(const char *s, LogLevel *level);
extern const char *log_level_name(LogLevel level);
extern void log_msg(LogLevel level, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));
extern const char *log_quote(const char *s, size_t len, char *buf, size_t bufsize);

#define log_error(...)		log_msg(LL_ERROR, __VA_ARGS__)
#define log_warning(...)	log_msg(LL_WARNING, __VA_ARGS__)
#define log_info(...)		log_msg(LL_INFO, __VA_ARGS__)
#define log_debug(...) \
	do { if (log_get_level() >= LL_DEBUG) log_msg(LL_DEBUG, __VA_ARGS__); } while (0)

/* ------------------------------------------------------------- config.c */

typedef enum SyncAction
{
	ACTION_RUN = 0,
	ACTION_HELP,
	ACTION_VERSION,
	ACTION_STATUS
} SyncAction;

typedef struct SyncConfig
{
	SyncAction	action;
	char	   *config_file;	/* --config; re-read on SIGHUP */
	char	   *dbname;			/* conninfo string, URI or database name */
	char	   *redis_host;		/* host name, or a path for a Unix socket */
	int			redis_port;
	char	   *redis_password;
	int			redis_db;
	char	   *prefix;			/* prepended to every key; "" by default */
	int			window;			/* newest N ledger rows kept per user */
	int			batch_size;		/* outbox rows read per page */
	int			batch_delay;	/* ms: the interval between polls while rows stream in */
	int			poll_interval;	/* ms */
	int			max_backoff;	/* ms */
	int			connect_timeout;	/* s */
	LogLevel	log_level;
	char	   *pidfile;
	char	   *metrics_file;	/* Prometheus text file, or NULL */
} SyncConfig;

extern bool config_load(SyncConfig *cfg, int argc, char **argv);
extern void config_free(SyncConfig *cfg);
extern bool config_pg_changed(const SyncConfig *a, const SyncConfig *b);
extern bool config_redis_changed(const SyncConfig *a, const SyncConfig *b);
extern void config_usage(FILE *out);

/* --------------------------------------------------------------- main.c */

/* Set by the signal handlers; read by main.c only */
extern volatile sig_atomic_t got_sigterm;
extern volatile sig_atomic_t got_sighup;

/* ------------------------------------------------------------- status.c */

/* The two sides the daemon talks to */
typedef enum SyncSide
{
	SIDE_POSTGRES = 0,
	SIDE_REDIS,
	NSIDES
} SyncSide;

/* Why Redis was rebuilt (see main.c's load_cursor and check_history) */
typedef enum RebuildReason
{
	REBUILD_NO_CURSOR = 0,		/* new, flushed or restarted empty */
	REBUILD_MALFORMED_CURSOR,
	REBUILD_WINDOW_CHANGED,
	REBUILD_NO_CHECKED,			/* sync:checked missing or damaged */
	REBUILD_HISTORY,			/* PostgreSQL's history went back */
	NREBUILD_REASONS
} RebuildReason;

/* The daemon's state, as --status and the metrics show it */
typedef enum SyncState
{
	STATE_STARTING = 0,
	STATE_RUNNING,
	STATE_REBUILDING,
	STATE_WAITING_PRIMARY,		/* the server is a standby */
	STATE_STOPPED,				/* after SIGTERM */
	STATE_REFUSED,				/* unsupported extension, evicting Redis */
	NSTATES
} SyncState;

/* What this process has done; status_get() returns it (read only) */
typedef struct SyncStatus
{
	SyncState	state;
	int64_t		started_ms;		/* wall clock */
	int64_t		rows_applied;	/* ledger rows applied */
	int64_t		pages;			/* outbox pages with rows applied */
	int64_t		lag_ms;			/* see status_set_lag */
	int64_t		stale_refused;	/* value writes refused as older */
	int64_t		rebuilds[NREBUILD_REASONS];
	int64_t		reconnects[NSIDES];
	int64_t		errors[NSIDES];
	SyncSide	last_error_side;
	int64_t		last_error_ms;	/* wall clock; 0 if no error yet */
	char		last_error[512];	/* "<ISO time> <text>", or "" */
	char		extension_version[64];	/* seen at the last connect, or "" */
} SyncStatus;

extern int64_t now_ms(void);
extern int64_t now_us(void);
extern int64_t wall_ms(void);
extern void format_time(int64_t ms, char *buf);
extern const SyncStatus *status_get(void);
extern const char *status_side_name(SyncSide side);
extern const char *status_reason_name(RebuildReason reason);
extern const char *status_state_name(SyncState state);
extern void status_start(void);
extern void status_set_state(SyncState state);
extern void status_error(SyncSide side, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));
extern void status_reconnect(SyncSide side);
extern void status_rebuild_done(RebuildReason reason);
extern void status_page_applied(int64_t rows);
extern void status_set_lag(int64_t ms);
extern void status_stale_refused(int64_t n);
extern void status_set_extension_version(const char *version);
extern int	status_hash_fields(const char *cursor_text, int64_t pending_rows,
							   const char *const **fields);

/* ------------------------------------------------------------ metrics.c */

extern void metrics_write(const char *path, bool force);

/* ----------------------------------------------------------- keyslot.c */

#define KEY_SLOTS				16384	/* Redis Cluster hash slots */
#define KEY_COMPANION_MAX(len)	((len) + 16)	/* bytes of a companion name */

extern int	key_slot(const char *key, size_t len);
extern size_t key_companion(char *dst, const char *key, size_t len);

/*
 * The newest ledger row and account event applied so far: ids, and what
 * identifies the row (the ledger row's chain hash in hex, "-" if it has
 * none; the event's txid).  0 ids mean none.  Carried in the cursor so
 * that a history that reused those ids is noticed (main.c,
 * check_history).  Text form "<lid>:<lhash>/<eid>:<etxid>", parts empty
 * when unknown; a hash that is not 32 bytes reads as "-" (SQL_ANCHOR).
 */
typedef struct SyncAnchor
{
	int64_t		lid;
	char		lhash[65];
	int64_t		eid;
	uint64_t	etxid;
} SyncAnchor;

extern bool anchor_parse(const char *s, SyncAnchor *a);
extern void anchor_format(const SyncAnchor *a, char *buf, size_t n);
extern void anchor_merge(SyncAnchor *into, const SyncAnchor *from);

/* ---------------------------------------------- batches (batch.c) */

/* Width a member's id is right-aligned to (the digits of the largest bigint) */
#define MEMBER_ID_WIDTH 19


/* One ledger row: a member of txs:<user> and its score. */
typedef struct SyncTx
{
	const char *score;			/* created_at in epoch ms, decimal */
	const char *member;			/* compact JSON */
	size_t		member_len;
} SyncTx;

/* One user touched by a batch; strings point into the batch. */
typedef struct SyncUser
{
	const char *uid;
	size_t		uid_len;
	const char *version;		/* accounts.version, NULL if no account row */
	const char *values[SYNC_NVALUES];
	const char *as_of;			/* epoch us the derived values are for */
	int			tx_first;		/* index into SyncBatch.txs */
	int			tx_count;
} SyncUser;

/*
 * Rows read from PostgreSQL, grouped by user: plain C strings, so that the
 * Redis side needs nothing of libpq.  pg.c fills it; every string points
 * into strings, which the batch owns; batch_clear() frees them.
 */
typedef struct SyncBatch
{
	char	   *strings;		/* NUL-terminated copies of the values and
								 * ids, and the compacted member texts */
	SyncUser   *users;
	int			nusers;
	int			users_cap;
	SyncTx	   *txs;
	int			ntxs;
	int			txs_cap;
	size_t		bytes;			/* sum of member and id lengths */
	int64_t		newest_ms;		/* largest score in the batch, 0 if none */
	char		checked[24];	/* if set, the last call stores it in
								 * sync:checked: expiries up to this epoch
								 * us have been applied */
	/* outbox page only */
	int			ledger_rows;
	int			event_rows;
	bool		ledger_more;	/* rows remain in cur after this page */
	bool		event_more;
	uint64_t	ledger_txid;	/* last (txid, id) of the page's ledger rows */
	int64_t		ledger_id;
	uint64_t	event_txid;		/* same for account_events */
	int64_t		event_id;
	char	   *cur;			/* snapshot the page was read against */
	uint64_t	lsn;			/* WAL insert position, read after cur */
	SyncAnchor	anchor;			/* the page's newest ledger row and event */
} SyncBatch;

extern void batch_clear(SyncBatch *b);
extern size_t json_compact(char *dst, const char *src, size_t len);
extern size_t member_room(size_t fields_len, size_t metadata_len);
extern size_t member_format(char *dst, const char *id, const char *fields,
							size_t fields_len, const char *metadata,
							size_t metadata_len, const char *created,
							int64_t *score_ms);

/* ----------------------------------------------------------------- pg.c */

/*
 * Position in the outbox: everything visible in prev has been applied.
 * sysid, tli and lsn say which PostgreSQL history it belongs to: the
 * server's system identifier, its timeline and the WAL insert position
 * when the cursor was read (the xid is prev's, or cur's, xmax).
 */
typedef struct SyncCursor
{
	char		sysid[24];
	uint32_t	tli;
	uint64_t	lsn;
	char	   *prev;			/* pg_snapshot text */
	char	   *cur;			/* batch in progress, or NULL */
	uint64_t	ledger_txid;	/* paging position inside cur */
	int64_t		ledger_id;
	uint64_t	event_txid;
	int64_t		event_id;
	SyncAnchor	anchor;			/* newest row and event applied so far */
} SyncCursor;

typedef enum PgStatus
{
	PGS_OK = 0,
	PGS_RETRY,					/* log, back off, reconnect */
	PGS_FATAL,					/* refuse to run (unknown extension version) */
	PGS_STANDBY					/* the server is a standby: retry later */
} PgStatus;

/* Where a server's history is (see pg_read_history) */
typedef struct PgHistory
{
	char		sysid[24];
	uint32_t	tli;
	uint64_t	lsn;
	uint64_t	next_xid;
} PgHistory;

extern PgStatus pg_connect(const SyncConfig *cfg);
extern void pg_disconnect(void);
extern bool pg_connected(void);
extern int	pg_socket(void);
extern PgStatus pg_take_notifies(int *count);
extern PgStatus pg_sync_arm(int poll_interval, int *committing);
extern PgStatus pg_read_page(const SyncCursor *c, int batch_size, SyncBatch *b);
extern PgStatus pg_rebuild_begin(char **snapshot, char *as_of, size_t as_of_size,
								 uint64_t *lsn, SyncAnchor *anchor);
extern PgStatus pg_read_history(PgHistory *h);
extern PgStatus pg_check_anchor(const SyncAnchor *a, char *why, size_t why_size);
extern PgStatus pg_users_gone(char **uids, int n, bool *gone);
extern PgStatus pg_rebuild_chunk(const char *after, int nusers, int window,
								 SyncBatch *b);
extern PgStatus pg_rebuild_end(void);
extern PgStatus pg_read_user(const char *uid, int window, SyncBatch *b);
extern PgStatus pg_read_expired(const char *since, int limit, SyncBatch *b);
extern bool snapshot_valid(const char *s);
extern uint64_t snapshot_xmin(const char *s);
extern uint64_t snapshot_xmax(const char *s);

/* -------------------------------------------------------------- redis.c */

typedef enum RedisStatus
{
	RS_OK = 0,
	RS_STALE,					/* epoch mismatch: re-read the cursor */
	RS_ERROR					/* log, back off, reconnect */
} RedisStatus;

/* Mode of one apply: see the Lua script in redis.c */
typedef enum ApplyMode
{
	APPLY_BATCH = 'b',			/* the cursor call compares the whole
								 * cursor before it moves it */
	APPLY_REBUILD = 'r',		/* the rebuild token must still be
								 * registered after the data calls */
	APPLY_REPLACE = 'R',		/* same, and values and txs keys are
								 * replaced whatever their versions */
	APPLY_FINISH = 'f'			/* end of rebuild: set cursor, new epoch */
} ApplyMode;

/* Users whose txs key had the wrong type; re-read in full by main.c */
typedef struct RepairList
{
	char	  **uids;
	size_t	   *lens;
	int			n;
	int			cap;
} RepairList;

extern RedisStatus redis_connect(const SyncConfig *cfg);
extern void redis_disconnect(void);
extern bool redis_connected(void);
extern RedisStatus redis_get_cursor(char **value);
extern RedisStatus redis_get_checked(char **value);
extern RedisStatus redis_rebuild_register(const char *token);
extern RedisStatus redis_apply(const SyncBatch *b, ApplyMode mode,
							   const char *epoch, const char *expect_checked,
							   const char *cursor,
							   const char *const *status, int nstatus,
							   RepairList *repairs);
extern RedisStatus redis_scan_users(char **scan, char ***uids, int *n);
extern RedisStatus redis_forget_users(char **uids, const bool *gone, int n);
extern RedisStatus redis_forget_legacy(int *deleted);
extern RedisStatus redis_write_status(const char *const *fields, int nfields);
extern int	redis_print_status(const SyncConfig *cfg);
extern void repair_list_clear(RepairList *r);

#endif							/* CREDITS_SYNC_H */
