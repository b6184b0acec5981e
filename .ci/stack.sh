#!/usr/bin/env bash
# The project-local stack: PostgreSQL 15, redis-server and credits-sync.
#
#   .ci/stack.sh up       start what is not running (idempotent)
#   .ci/stack.sh down     stop what `up` started, by pid file
#   .ci/stack.sh status   say what runs
#   .ci/stack.sh env      print the environment as `export` lines
#
# Everything lives under RUN_DIR = ${CREDITS_RUN_DIR:-<repo>/.run}: pid files,
# logs, and `env` (PGHOST PGPORT PGUSER PGDATABASE REDIS_HOST REDIS_PORT
# CREDITS_RUN_DIR), which clients source.  PostgreSQL runs as the OS user
# postgres with its data in RUN_DIR/pg/data, or in /tmp when user postgres
# cannot reach RUN_DIR.  Ports come from CREDITS_PGPORT / CREDITS_REDIS_PORT,
# else the port used last time, else the first free one from 54320 / 63790.
#
# Invariants: only processes whose pid is in one of our pid files, and that
# are still the program we started, are ever signalled.  Debian's own
# cluster (port 5432), if any, is never touched.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_DIR=${CREDITS_RUN_DIR:-$REPO/.run}
mkdir -p "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)

PGBIN=${CREDITS_PGBIN:-/usr/lib/postgresql/15/bin}
PG_CONFIG=$PGBIN/pg_config
PGUSER_OS=postgres
DBNAME=credits

log() { echo "stack: $*"; }
warn() { echo "stack: WARNING: $*" >&2; }
die() { echo "stack: ERROR: $*" >&2; exit 1; }

# --- helpers ----------------------------------------------------------

# pid_is, read_pid, port_busy, first_free_port, file_sum, as_postgres
# shellcheck source=.ci/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
extra_socket_dirs() { echo "${PGSOCK_DIR:-/nonexistent}"; }

psql_admin() {
  "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" -U postgres "$@"
}

# --- where PostgreSQL lives ---------------------------------------------

# Chosen once and remembered in RUN_DIR/pg.dir: RUN_DIR/pg if user postgres
# can traverse RUN_DIR and the socket path fits in sun_path, else /tmp.
choose_pg_root() {
  if [ -s "$RUN_DIR/pg.dir" ]; then
    PGROOT=$(cat "$RUN_DIR/pg.dir")
  else
    PGROOT=$RUN_DIR/pg
    if ! runuser -u "$PGUSER_OS" -- test -x "$RUN_DIR" 2>/dev/null ||
      [ "${#PGROOT}" -gt 90 ]; then
      PGROOT=/tmp/credits-pg-$(printf '%s' "$RUN_DIR" | cksum | cut -d' ' -f1)
      log "user postgres cannot use $RUN_DIR; PostgreSQL data goes to $PGROOT"
    fi
    echo "$PGROOT" >"$RUN_DIR/pg.dir"
  fi
  PGDATA_DIR=$PGROOT/data
  PGSOCK_DIR=$PGROOT
}

pg_running() {
  local pid
  pid=$(read_pid "$RUN_DIR/postgres.pid")
  [ -n "$pid" ] || return 1
  pid_is "$pid" postgres || return 1
  # the postmaster runs in its data directory
  [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$(readlink -f "$PGDATA_DIR")" ]
}

redis_running() {
  local pid
  pid=$(read_pid "$RUN_DIR/redis.pid")
  [ -n "$pid" ] && pid_is "$pid" redis-server
}

sync_running() {
  local pid
  pid=$(read_pid "$RUN_DIR/credits-sync.pid")
  [ -n "$pid" ] && pid_is "$pid" credits-sync
}

sync_binary() {
  if [ -x "$REPO/sync/credits-sync" ]; then
    echo "$REPO/sync/credits-sync"
  else
    command -v credits-sync || true
  fi
}

pick_ports() {
  local saved
  # PostgreSQL
  saved=$(cat "$RUN_DIR/pgport" 2>/dev/null || true)
  if pg_running && [ -n "$saved" ]; then
    PGPORT=$saved
    [ -z "${CREDITS_PGPORT:-}" ] || [ "$CREDITS_PGPORT" = "$saved" ] ||
      warn "PostgreSQL already runs on port $saved; CREDITS_PGPORT=$CREDITS_PGPORT applies after 'down'"
  elif [ -n "${CREDITS_PGPORT:-}" ]; then
    PGPORT=$CREDITS_PGPORT
  elif [ -n "$saved" ] && ! port_busy "$saved"; then
    PGPORT=$saved
  else
    PGPORT=$(first_free_port 54320)
  fi
  # Redis
  saved=$(cat "$RUN_DIR/redisport" 2>/dev/null || true)
  if redis_running && [ -n "$saved" ]; then
    REDIS_PORT=$saved
    [ -z "${CREDITS_REDIS_PORT:-}" ] || [ "$CREDITS_REDIS_PORT" = "$saved" ] ||
      warn "redis-server already runs on port $saved; CREDITS_REDIS_PORT=$CREDITS_REDIS_PORT applies after 'down'"
  elif [ -n "${CREDITS_REDIS_PORT:-}" ]; then
    REDIS_PORT=$CREDITS_REDIS_PORT
  elif [ -n "$saved" ] && ! port_busy "$saved"; then
    REDIS_PORT=$saved
  else
    REDIS_PORT=$(first_free_port 63790)
  fi
}

write_env() {
  {
    echo "# written by .ci/stack.sh up; source it, or: eval \"\$(.ci/stack.sh env)\""
    printf 'PGHOST=%q\n' 127.0.0.1
    printf 'PGPORT=%q\n' "$PGPORT"
    printf 'PGUSER=%q\n' postgres
    printf 'PGDATABASE=%q\n' "$DBNAME"
    printf 'REDIS_HOST=%q\n' 127.0.0.1
    printf 'REDIS_PORT=%q\n' "$REDIS_PORT"
    printf 'CREDITS_RUN_DIR=%q\n' "$RUN_DIR"
    printf 'CREDITS_PGSOCKET_DIR=%q\n' "$PGSOCK_DIR"
  } >"$RUN_DIR/env.tmp"
  mv "$RUN_DIR/env.tmp" "$RUN_DIR/env"
}

# --- PostgreSQL ---------------------------------------------------------

pg_write_conf() {
  local preload=""
  if [ -e "$PKGLIBDIR/credits.so" ]; then
    preload=credits
  else
    warn "credits.so is not installed in $PKGLIBDIR (run 'make install'); starting PostgreSQL without shared_preload_libraries"
  fi
  cat >"$PGDATA_DIR/credits_stack.conf.tmp" <<EOF
# Written by .ci/stack.sh on every 'up'; edits are lost.
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$PGSOCK_DIR'
unix_socket_permissions = 0777
max_connections = 200
# test/sync prepared_transaction: credits-sync and PREPARE TRANSACTION
max_prepared_transactions = 8
shared_buffers = 256MB
shared_preload_libraries = '$preload'
# durable commits: the benchmarks measure them
fsync = on
synchronous_commit = on
full_page_writes = on
max_wal_size = 2GB
lc_messages = 'C'
log_line_prefix = '%m [%p] %q%u@%d '
log_min_messages = warning
log_min_error_statement = error
EOF
  chown "$PGUSER_OS:" "$PGDATA_DIR/credits_stack.conf.tmp"
  mv "$PGDATA_DIR/credits_stack.conf.tmp" "$PGDATA_DIR/credits_stack.conf"
  grep -q "^include = 'credits_stack.conf'" "$PGDATA_DIR/postgresql.conf" ||
    echo "include = 'credits_stack.conf'" >>"$PGDATA_DIR/postgresql.conf"
}

pg_init() {
  mkdir -p "$PGROOT"
  chown "$PGUSER_OS:" "$PGROOT"
  chmod 0755 "$PGROOT"
  if [ ! -s "$PGDATA_DIR/PG_VERSION" ]; then
    log "initdb $PGDATA_DIR"
    as_postgres "$PGBIN/initdb" -D "$PGDATA_DIR" -U postgres -A trust \
      -E UTF8 --locale=C.UTF-8 --no-instructions >"$RUN_DIR/initdb.log" 2>&1 ||
      { cat "$RUN_DIR/initdb.log" >&2; die "initdb failed"; }
  fi
}

# pg_start: port_busy() sees listening sockets only, so a port can still
# be taken, by another stack starting at the same moment or by a client's
# ephemeral port (the range includes 54320 and up): when the port was
# chosen here and PostgreSQL could not bind it, try the next free one.
pg_start() {
  local tries=0
  while :; do
    pg_write_conf
    log "starting PostgreSQL on 127.0.0.1:$PGPORT (data $PGDATA_DIR)"
    if as_postgres "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$PGDATA_DIR/postgresql.log" \
      -w -t 120 -s start; then
      break
    fi
    tries=$((tries + 1))
    if [ -z "${CREDITS_PGPORT:-}" ] && [ "$tries" -lt 5 ] &&
      tail -n 5 "$PGDATA_DIR/postgresql.log" 2>/dev/null | grep -q 'could not create any TCP/IP sockets'; then
      warn "port $PGPORT was taken as PostgreSQL started: trying another"
      PGPORT=$(first_free_port $((PGPORT + 1)))
      continue
    fi
    tail -n 30 "$PGDATA_DIR/postgresql.log" >&2 || true
    die "PostgreSQL did not start"
  done
  read_pid "$PGDATA_DIR/postmaster.pid" >"$RUN_DIR/postgres.pid"
  ln -sfn "$PGDATA_DIR/postgresql.log" "$RUN_DIR/postgresql.log"
  file_sum "$PKGLIBDIR/credits.so" >"$RUN_DIR/credits.so.sum"
}

pg_up() {
  pg_init
  if pg_running; then
    local want_sum
    want_sum=$(file_sum "$PKGLIBDIR/credits.so")
    if [ "$want_sum" != "$(cat "$RUN_DIR/credits.so.sum" 2>/dev/null || echo unknown)" ]; then
      # A preloaded library is fixed in the postmaster at start: a new
      # build is only used after a restart.
      log "credits.so changed since PostgreSQL started: restarting it"
      pg_write_conf
      as_postgres "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 120 -s \
        -l "$PGDATA_DIR/postgresql.log" restart ||
        { tail -n 30 "$PGDATA_DIR/postgresql.log" >&2 || true; die "PostgreSQL did not restart"; }
      read_pid "$PGDATA_DIR/postmaster.pid" >"$RUN_DIR/postgres.pid"
      echo "$want_sum" >"$RUN_DIR/credits.so.sum"
    else
      log "PostgreSQL already running (pid $(read_pid "$RUN_DIR/postgres.pid"), port $PGPORT)"
    fi
  else
    if port_busy "$PGPORT"; then
      [ -z "${CREDITS_PGPORT:-}" ] || die "CREDITS_PGPORT=$PGPORT is in use by another server"
      PGPORT=$(first_free_port 54320)
    fi
    pg_start
  fi
  echo "$PGPORT" >"$RUN_DIR/pgport"
}

# Creates database credits and the extension in it.  Recreates the
# extension when its installed script changed since it was created (a dev
# stack follows the tree; the extension's data there is disposable).
db_up() {
  local sharedir ver script sum have
  if [ -z "$(psql_admin -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DBNAME'")" ]; then
    log "creating database $DBNAME"
    psql_admin -d postgres -c "CREATE DATABASE $DBNAME"
  fi
  sharedir=$("$PG_CONFIG" --sharedir)
  if [ ! -e "$sharedir/extension/credits.control" ]; then
    warn "extension credits is not installed (no $sharedir/extension/credits.control): run 'make install'; database $DBNAME has no extension"
    EXTENSION_OK=0
    return 0
  fi
  ver=$(sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" "$sharedir/extension/credits.control")
  script=$sharedir/extension/credits--$ver.sql
  sum="$ver:$(file_sum "$script")"
  have=$(psql_admin -d "$DBNAME" -tAc "SELECT extversion FROM pg_extension WHERE extname = 'credits'")
  if [ -n "$have" ] && [ "$have:${sum#*:}" != "$(cat "$RUN_DIR/extension.sum" 2>/dev/null || true)" ] &&
    [ -s "$RUN_DIR/extension.sum" ]; then
    log "the installed credits--$ver.sql changed since the extension was created: recreating it in $DBNAME (dev data dropped)"
    psql_admin -d "$DBNAME" -c "DROP EXTENSION credits CASCADE" 2>&1 | grep -v '^NOTICE' || true
    have=""
    if redis_running; then
      redis-cli -h 127.0.0.1 -p "$REDIS_PORT" FLUSHALL >/dev/null || true
    fi
  fi
  if [ -z "$have" ]; then
    log "CREATE EXTENSION credits in $DBNAME"
    if ! psql_admin -d "$DBNAME" -c "CREATE EXTENSION credits"; then
      warn "CREATE EXTENSION credits failed in database $DBNAME"
      EXTENSION_OK=0
      return 0
    fi
    have=$ver
  fi
  echo "$have:${sum#*:}" >"$RUN_DIR/extension.sum"
  EXTENSION_OK=1
}

pg_down() {
  if pg_running; then
    log "stopping PostgreSQL (pid $(read_pid "$RUN_DIR/postgres.pid"))"
    as_postgres "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 120 -s stop ||
      warn "pg_ctl stop failed"
  else
    log "PostgreSQL not running"
  fi
  rm -f "$RUN_DIR/postgres.pid"
}

# --- Redis --------------------------------------------------------------

redis_up() {
  if redis_running; then
    log "redis-server already running (pid $(read_pid "$RUN_DIR/redis.pid"), port $REDIS_PORT)"
  else
    if port_busy "$REDIS_PORT"; then
      [ -z "${CREDITS_REDIS_PORT:-}" ] || die "CREDITS_REDIS_PORT=$REDIS_PORT is in use"
      REDIS_PORT=$(first_free_port 63790)
    fi
    log "starting redis-server on 127.0.0.1:$REDIS_PORT"
    rm -f "$RUN_DIR/redis.pid"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
      --pidfile "$RUN_DIR/redis.pid" --logfile "$RUN_DIR/redis.log" \
      --dir "$RUN_DIR" --save "" --appendonly no >/dev/null 9>&- ||
      die "redis-server did not start (see $RUN_DIR/redis.log)"
    local i
    for i in $(seq 1 100); do
      if [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" PING 2>/dev/null)" = PONG ] && redis_running; then
        break
      fi
      [ "$i" -lt 100 ] || die "redis-server does not answer (see $RUN_DIR/redis.log)"
      sleep 0.1
    done
  fi
  echo "$REDIS_PORT" >"$RUN_DIR/redisport"
}

redis_down() {
  local pid i
  pid=$(read_pid "$RUN_DIR/redis.pid")
  if [ -n "$pid" ] && pid_is "$pid" redis-server; then
    log "stopping redis-server (pid $pid)"
    kill -TERM "$pid"
    for i in $(seq 1 100); do
      pid_is "$pid" redis-server || break
      sleep 0.1
    done
    pid_is "$pid" redis-server && warn "redis-server (pid $pid) still running"
  else
    log "redis-server not running"
  fi
  rm -f "$RUN_DIR/redis.pid"
}

# --- credits-sync -------------------------------------------------------

sync_up() {
  local bin pid
  bin=$(sync_binary)
  if [ -z "$bin" ]; then
    log "credits-sync not built: skipped"
    return 0
  fi
  if [ "${EXTENSION_OK:-0}" != 1 ]; then
    warn "credits-sync not started: the extension is missing"
    return 0
  fi
  if sync_running; then
    local want
    want=$(file_sum "$bin")
    if [ "$want" = "$(cat "$RUN_DIR/credits-sync.sum" 2>/dev/null || true)" ]; then
      log "credits-sync already running (pid $(read_pid "$RUN_DIR/credits-sync.pid"))"
      return 0
    fi
    log "credits-sync was rebuilt: restarting it"
    sync_down
  fi
  rm -f "$RUN_DIR/credits-sync.pid"
  log "starting $bin"
  (
    set -a
    # shellcheck disable=SC1091
    . "$RUN_DIR/env"
    set +a
    exec setsid "$bin" --pidfile "$RUN_DIR/credits-sync.pid" </dev/null >>"$RUN_DIR/credits-sync.log" 2>&1 9>&-
  ) &
  pid=$!
  file_sum "$bin" >"$RUN_DIR/credits-sync.sum"
  # it writes its own pid file; if it did not, await_daemon records the
  # pid we know
  if ! await_daemon "$pid" "$RUN_DIR/credits-sync.pid"; then
    warn "credits-sync exited at start; last lines of $RUN_DIR/credits-sync.log:"
    tail -n 15 "$RUN_DIR/credits-sync.log" >&2 || true
  fi
}

sync_down() {
  local pid
  pid=$(read_pid "$RUN_DIR/credits-sync.pid")
  if [ -n "$pid" ] && pid_is "$pid" credits-sync; then
    log "stopping credits-sync (pid $pid)"
    stop_daemon "$pid" credits-sync credits-sync
  else
    log "credits-sync not running"
  fi
  rm -f "$RUN_DIR/credits-sync.pid"
}

# --- commands -------------------------------------------------------------

cmd_up() {
  [ -x "$PGBIN/postgres" ] || die "PostgreSQL 15 is not installed: run .ci/deps.sh (make deps)"
  command -v redis-server >/dev/null || die "redis-server is not installed: run .ci/deps.sh (make deps)"
  id "$PGUSER_OS" >/dev/null 2>&1 || die "OS user $PGUSER_OS does not exist (it comes with postgresql-15)"
  PKGLIBDIR=$("$PG_CONFIG" --pkglibdir)
  choose_pg_root
  pick_ports
  pg_up
  redis_up
  write_env
  db_up
  sync_up
  write_env
  log "up: PGPORT=$PGPORT REDIS_PORT=$REDIS_PORT; env in $RUN_DIR/env"
}

cmd_down() {
  choose_pg_root
  sync_down
  redis_down
  pg_down
}

cmd_status() {
  local pid
  choose_pg_root
  PGPORT=$(cat "$RUN_DIR/pgport" 2>/dev/null || echo '?')
  REDIS_PORT=$(cat "$RUN_DIR/redisport" 2>/dev/null || echo '?')
  echo "run dir:      $RUN_DIR"
  if pg_running; then
    local ext
    ext=$(psql_admin -d "$DBNAME" -tAc "SELECT extversion FROM pg_extension WHERE extname = 'credits'" 2>/dev/null || echo '?')
    echo "postgresql:   running, pid $(read_pid "$RUN_DIR/postgres.pid"), 127.0.0.1:$PGPORT, data $PGDATA_DIR, extension credits ${ext:-not created}"
  else
    echo "postgresql:   stopped"
  fi
  if redis_running; then
    echo "redis-server: running, pid $(read_pid "$RUN_DIR/redis.pid"), 127.0.0.1:$REDIS_PORT"
  else
    echo "redis-server: stopped"
  fi
  pid=$(read_pid "$RUN_DIR/credits-sync.pid")
  if sync_running; then
    echo "credits-sync: running, pid $pid, log $RUN_DIR/credits-sync.log"
  elif [ -n "$(sync_binary)" ]; then
    echo "credits-sync: stopped"
  else
    echo "credits-sync: not built"
  fi
}

cmd_env() {
  [ -s "$RUN_DIR/env" ] || die "no $RUN_DIR/env: run '.ci/stack.sh up' (make dev-up)"
  grep -v '^#' "$RUN_DIR/env" | sed 's/^/export /'
}

usage() { echo "usage: $0 up|down|status|env" >&2; exit 2; }

[ $# -eq 1 ] || usage
case "$1" in
  up | down)
    # (stack.lock, not .stack.lock: servers started by an early version of
    # this script inherited the lock on .stack.lock and hold it for good)
    exec 9>"$RUN_DIR/stack.lock"
    flock -w 600 9 || die "another '.ci/stack.sh up|down' has held $RUN_DIR/stack.lock for 10 minutes"
    "cmd_$1"
    ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) usage ;;
esac
