#!/usr/bin/env bash
# The local scale-out cluster: 4 partitions (ordinary databases with the
# extension) on 2 PostgreSQL 15 instances, a proxy database with PL/Proxy
# whose schema `credits` has the app-facing functions, and the Redis
# mirror: a Redis Cluster (3 masters, 1 replica each) written by one
# credits-sync per partition (README, Scale-out).
#
#   .ci/cluster.sh up              start what is not running, create what is
#                                  missing (idempotent; safe after kill -9)
#   .ci/cluster.sh down            stop the daemons, the Redis Cluster and the
#                                  instances `up` started (pid files)
#   .ci/cluster.sh env             print .run/cluster/env as `export` lines
#   .ci/cluster.sh status          say what runs where
#   .ci/cluster.sh move P I        move partition P to instance I while the
#                                  other partitions keep taking writes
#
# Everything lives under CLUSTER_DIR = ${CREDITS_CLUSTER_DIR:-<repo>/.run/cluster}:
# instance i's data in CLUSTER_DIR/pg<i>/data (or /tmp/credits-cluster-* when
# user postgres cannot reach it), pg<i>.port, pg<i>.pid, `placement` (one
# line "partition instance" each; `move` rewrites it), `env`, the Redis
# Cluster's nodes in `redis/`, and credits-sync-p<P>.{pid,log,conn}.
# Instance ports: CREDITS_CLUSTER_PGPORTS ("port0 port1"), else the ones
# used last time, else the first free ones from 54330.
#
# Databases: credits_p<P> for partition P (P on instance P % 2 unless moved),
# each with `CREATE EXTENSION credits` and credits.partition_setup(P, 4);
# `credits` on instance 0 is the proxy (proxy/servers.sql, then the schema
# proxy/generate.sql derives from partition 0's catalog).
#
# Invariants: only processes whose pid is in one of our pid files, and that
# are still postgres running in our data directory (or still credits-sync,
# or redis-server), are signalled.  The
# stack of .ci/stack.sh is neither used nor touched.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER_DIR=${CREDITS_CLUSTER_DIR:-$REPO/.run/cluster}
mkdir -p "$CLUSTER_DIR"
CLUSTER_DIR=$(cd "$CLUSTER_DIR" && pwd)

PGBIN=${CREDITS_PGBIN:-/usr/lib/postgresql/15/bin}
PG_CONFIG=$PGBIN/pg_config
PGUSER_OS=postgres
NPART=4
NINST=2
PROXY_DB=credits

log() { echo "cluster: $*"; }
warn() { echo "cluster: WARNING: $*" >&2; }
die() { echo "cluster: ERROR: $*" >&2; exit 1; }

# --- helpers -----------------------------------------------------------

# pid_is, read_pid, port_busy, first_free_port, file_sum, as_postgres
# shellcheck source=.ci/lib.sh
. "$REPO/.ci/lib.sh"
extra_socket_dirs() { local d; for d in "${PGROOT:-/nonexistent}"/pg*; do echo "$d"; done; }

# Wait up to 10 s for port $1 to be free: after a postmaster was killed,
# its children hold its port until they notice (kill -9, then up).
port_wait() {
  local n=0
  while port_busy "$1"; do
    n=$((n + 1))
    [ "$n" -le 20 ] || return 1
    sleep 0.5
  done
}

# The installed extension script's version and checksum.
ext_sum() {
  local sharedir ver
  sharedir=$("$PG_CONFIG" --sharedir)
  ver=$(sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" "$sharedir/extension/credits.control")
  echo "$ver:$(file_sum "$sharedir/extension/credits--$ver.sql")"
}

# psql as the superuser on instance $1: psql_i I [psql args]
psql_i() {
  local i=$1
  shift
  "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${PORT[$i]}" -U postgres "$@"
}

choose_pg_root() {
  if [ -s "$CLUSTER_DIR/pg.dir" ]; then
    PGROOT=$(cat "$CLUSTER_DIR/pg.dir")
  else
    PGROOT=$CLUSTER_DIR
    if ! runuser -u "$PGUSER_OS" -- test -x "$CLUSTER_DIR" 2>/dev/null || [ "${#PGROOT}" -gt 80 ]; then
      PGROOT=/tmp/credits-cluster-$(printf '%s' "$CLUSTER_DIR" | cksum | cut -d' ' -f1)
      log "user postgres cannot use $CLUSTER_DIR; PostgreSQL data goes to $PGROOT"
    fi
    echo "$PGROOT" >"$CLUSTER_DIR/pg.dir"
  fi
}

datadir() { echo "$PGROOT/pg$1/data"; }

pg_running() {
  local i=$1 pid
  pid=$(read_pid "$CLUSTER_DIR/pg$i.pid")
  [ -n "$pid" ] || return 1
  pid_is "$pid" postgres || return 1
  [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$(readlink -f "$(datadir "$i")")" ]
}

# placement: partition P's instance (default P % NINST)
load_placement() {
  local p i
  for p in $(seq 0 $((NPART - 1))); do
    PLACE[$p]=$((p % NINST))
  done
  if [ -s "$CLUSTER_DIR/placement" ]; then
    while read -r p i; do
      [[ "$p" =~ ^[0-9]+$ && "$i" =~ ^[0-9]+$ ]] || continue
      [ "$p" -lt "$NPART" ] && [ "$i" -lt "$NINST" ] && PLACE[$p]=$i
    done <"$CLUSTER_DIR/placement"
  fi
}

save_placement() {
  local p
  for p in $(seq 0 $((NPART - 1))); do
    echo "$p ${PLACE[$p]}"
  done >"$CLUSTER_DIR/placement.tmp"
  mv "$CLUSTER_DIR/placement.tmp" "$CLUSTER_DIR/placement"
}

pick_ports() {
  local i saved wanted
  read -r -a wanted <<<"${CREDITS_CLUSTER_PGPORTS:-}"
  TAKEN=""
  for i in $(seq 0 $((NINST - 1))); do
    saved=$(cat "$CLUSTER_DIR/pg$i.port" 2>/dev/null || true)
    if pg_running "$i" && [ -n "$saved" ]; then
      PORT[$i]=$saved
    elif [ -n "${wanted[$i]:-}" ]; then
      PORT[$i]=${wanted[$i]}
      port_wait "${PORT[$i]}" || die "CREDITS_CLUSTER_PGPORTS: port ${PORT[$i]} is in use"
    elif [ -n "$saved" ] && port_wait "$saved"; then
      PORT[$i]=$saved
    else
      PORT[$i]=$(first_free_port 54330)
    fi
    TAKEN="$TAKEN ${PORT[$i]}"
  done
}

load_ports() {
  local i
  for i in $(seq 0 $((NINST - 1))); do
    PORT[$i]=$(cat "$CLUSTER_DIR/pg$i.port" 2>/dev/null || echo 0)
  done
}

# --- PostgreSQL instances -------------------------------------------------

pg_write_conf() {
  local i=$1 d
  d=$(datadir "$i")
  cat >"$d/credits_cluster.conf.tmp" <<EOF
# Written by .ci/cluster.sh on every 'up'; edits are lost.
listen_addresses = '127.0.0.1'
port = ${PORT[$i]}
unix_socket_directories = '$PGROOT/pg$i'
unix_socket_permissions = 0777
max_connections = 200
max_prepared_transactions = 8
shared_buffers = 128MB
shared_preload_libraries = 'credits'
fsync = on
synchronous_commit = on
max_wal_size = 1GB
lc_messages = 'C'
log_line_prefix = '%m [%p] %q%u@%d '
log_min_messages = warning
log_min_error_statement = error
EOF
  chown "$PGUSER_OS:" "$d/credits_cluster.conf.tmp"
  mv "$d/credits_cluster.conf.tmp" "$d/credits_cluster.conf"
  grep -q "^include = 'credits_cluster.conf'" "$d/postgresql.conf" ||
    echo "include = 'credits_cluster.conf'" >>"$d/postgresql.conf"
}

pg_up() {
  local i=$1 d
  d=$(datadir "$i")
  mkdir -p "$PGROOT/pg$i"
  chown "$PGUSER_OS:" "$PGROOT" "$PGROOT/pg$i" 2>/dev/null || true
  if [ ! -s "$d/PG_VERSION" ]; then
    log "initdb $d"
    as_postgres "$PGBIN/initdb" -D "$d" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
      --no-instructions >"$CLUSTER_DIR/initdb$i.log" 2>&1 ||
      { cat "$CLUSTER_DIR/initdb$i.log" >&2; die "initdb failed"; }
  fi
  if pg_running "$i" && [ "$(file_sum "$PKGLIBDIR/credits.so")" != "$(cat "$CLUSTER_DIR/pg$i.so.sum" 2>/dev/null || echo unknown)" ]; then
    # a preloaded library is fixed in the postmaster at start
    log "credits.so changed since instance $i started: restarting it"
    pg_write_conf "$i"
    as_postgres "$PGBIN/pg_ctl" -D "$d" -m fast -w -t 120 -s -l "$d/postgresql.log" restart ||
      { tail -n 30 "$d/postgresql.log" >&2 || true; die "instance $i did not restart"; }
    read_pid "$d/postmaster.pid" >"$CLUSTER_DIR/pg$i.pid"
  elif pg_running "$i"; then
    log "instance $i already running (pid $(read_pid "$CLUSTER_DIR/pg$i.pid"), port ${PORT[$i]})"
  else
    pg_write_conf "$i"
    log "starting instance $i on 127.0.0.1:${PORT[$i]} (data $d)"
    # pg_ctl removes a postmaster.pid left by a postmaster that died (kill -9)
    as_postgres "$PGBIN/pg_ctl" -D "$d" -l "$d/postgresql.log" -w -t 120 -s start ||
      { tail -n 30 "$d/postgresql.log" >&2 || true; die "instance $i did not start"; }
    read_pid "$d/postmaster.pid" >"$CLUSTER_DIR/pg$i.pid"
    ln -sfn "$d/postgresql.log" "$CLUSTER_DIR/postgresql$i.log"
  fi
  echo "${PORT[$i]}" >"$CLUSTER_DIR/pg$i.port"
  file_sum "$PKGLIBDIR/credits.so" >"$CLUSTER_DIR/pg$i.so.sum"
}

pg_down() {
  local i=$1
  if pg_running "$i"; then
    log "stopping instance $i (pid $(read_pid "$CLUSTER_DIR/pg$i.pid"))"
    as_postgres "$PGBIN/pg_ctl" -D "$(datadir "$i")" -m fast -w -t 120 -s stop || warn "pg_ctl stop failed"
  else
    log "instance $i not running"
  fi
  rm -f "$CLUSTER_DIR/pg$i.pid"
}

# --- databases ---------------------------------------------------------------

# The login roles PL/Proxy and postgres_fdw connect to partitions as (see
# proxy/servers.sql), each with one extension role; on every instance.
roles_up() {
  local i=$1
  psql_i "$i" -d postgres <<'EOF'
SET client_min_messages = warning;
DO $$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT * FROM (VALUES ('credits_part_app', 'credits_app'), ('credits_part_ops', 'credits_ops'),
								  ('credits_part_reader', 'credits_reader')) v(login, grp) LOOP
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r.login) THEN
			EXECUTE format('CREATE ROLE %I LOGIN', r.login);
		END IF;
		IF EXISTS (SELECT FROM pg_roles WHERE rolname = r.grp) THEN
			EXECUTE format('GRANT %I TO %I', r.grp, r.login);
		END IF;
	END LOOP;
END
$$;
EOF
}

db_exists() { [ -n "$(psql_i "$1" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$2'")" ]; }

# Partition P on its instance: the database, the extension, partition_setup.
partition_up() {
  local p=$1 i=${PLACE[$1]} db=credits_p$1 next have
  if ! db_exists "$i" "$db"; then
    # a partition is never created twice: if another instance has it, the
    # placement file was lost (say so rather than create an empty one)
    local j
    for j in $(seq 0 $((NINST - 1))); do
      [ "$j" = "$i" ] && continue
      if db_exists "$j" "$db"; then
        die "partition $p is placed on instance $i but database $db is on instance $j: fix $CLUSTER_DIR/placement"
      fi
    done
    log "creating database $db on instance $i"
    psql_i "$i" -d postgres -c "CREATE DATABASE $db"
  fi
  # Like .ci/stack.sh, the local cluster follows the tree: when the
  # installed credits--<version>.sql changed since the partition's
  # extension was created, it is recreated (the partition's data dropped).
  have=$(psql_i "$i" -d "$db" -tAc "SELECT extversion FROM pg_extension WHERE extname = 'credits'")
  if [ -n "$have" ] && [ -s "$CLUSTER_DIR/extension.sum" ] && [ "$(cat "$CLUSTER_DIR/extension.sum")" != "$EXT_SUM" ]; then
    log "the installed credits extension script changed: recreating it in $db (its data dropped)"
    psql_i "$i" -d "$db" -c "SET client_min_messages = warning" -c "DROP EXTENSION credits CASCADE"
  fi
  psql_i "$i" -d "$db" -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS credits"
  next=$(psql_i "$i" -d "$db" -tAc "SELECT credits.partition_setup($p, $NPART)")
  log "partition $p: database $db on instance $i (port ${PORT[$i]}), next hold id $next"
}

proxy_up() {
  local p sum have gen
  if ! db_exists 0 "$PROXY_DB"; then
    log "creating the proxy database $PROXY_DB on instance 0"
    psql_i 0 -d postgres -c "CREATE DATABASE $PROXY_DB"
  fi
  psql_i 0 -d "$PROXY_DB" -v partitions="$NPART" -f "$REPO/proxy/servers.sql" >/dev/null
  for p in $(seq 0 $((NPART - 1))); do
    psql_i 0 -d "$PROXY_DB" -tAc "SELECT credits_proxy.place_partition($p, '127.0.0.1', ${PORT[${PLACE[$p]}]})" >/dev/null
  done
  # the schema, from partition 0's catalog; recreated only when it changed
  gen=$(psql_i "${PLACE[0]}" -d credits_p0 -v partitions="$NPART" -v cluster=credits -f "$REPO/proxy/generate.sql")
  sum=$(printf '%s' "$gen" | cksum | cut -d' ' -f1)
  have=$(psql_i 0 -d "$PROXY_DB" -tAc "SELECT obj_description('credits_proxy'::regnamespace, 'pg_namespace')")
  if [ "$have" != "generated $sum" ] ||
    [ -z "$(psql_i 0 -d "$PROXY_DB" -tAc "SELECT 1 FROM pg_namespace WHERE nspname = 'credits'")" ]; then
    log "creating the proxy's schema credits in $PROXY_DB"
    { echo "SET client_min_messages = warning;"
      printf '%s\n' "$gen"
      echo "COMMENT ON SCHEMA credits_proxy IS 'generated $sum';"; } |
      psql_i 0 -d "$PROXY_DB" -1 >/dev/null
  else
    log "the proxy's schema credits is up to date"
  fi
}

# --- Redis Cluster and credits-sync -----------------------------------------
#
# The mirror: a Redis Cluster of 3 masters with 1 replica each
# (.ci/redis_cluster.sh up "$CLUSTER_DIR/redis"; ports
# CREDITS_REDIS_CLUSTER_PORT and the 5 after it, default 7001), and one
# credits-sync per partition: the tree's sync/credits-sync (else one on
# PATH) with --redis-cluster <every node> --partition P/4, connected as the
# stack's daemon is (PGHOST=127.0.0.1, PGUSER=postgres) to PGPORT of the
# partition's instance and PGDATABASE=credits_p<P>.  Pid file
# $CLUSTER_DIR/credits-sync-p<P>.pid, log credits-sync-p<P>.log, and
# credits-sync-p<P>.conn (the port it was started against) and .sum (the
# binary's checksum): a daemon still running with the same binary and port
# is kept, a dead one is started again, and a new binary or another port
# restarts it.  Only a pid whose process is still credits-sync is signalled.

sync_binary() {
  if [ -x "$REPO/sync/credits-sync" ]; then
    echo "$REPO/sync/credits-sync"
  else
    command -v credits-sync || true
  fi
}

sync_pidfile() { echo "$CLUSTER_DIR/credits-sync-p$1.pid"; }

sync_running() {
  local pid
  pid=$(read_pid "$(sync_pidfile "$1")")
  [ -n "$pid" ] && pid_is "$pid" credits-sync
}

# sync_up P: partition P's daemon, against the instance PLACE[P] says.
sync_up() {
  local p=$1 bin=$2 port=${PORT[${PLACE[$1]}]} pidf pid want
  pidf=$(sync_pidfile "$p")
  want="$(file_sum "$bin") $port $REDIS_CLUSTER_NODES"
  if sync_running "$p"; then
    if [ "$want" = "$(cat "$CLUSTER_DIR/credits-sync-p$p.conn" 2>/dev/null || true)" ]; then
      log "credits-sync of partition $p already running (pid $(read_pid "$pidf"))"
      return 0
    fi
    log "credits-sync of partition $p: new binary or placement: restarting it"
    sync_down "$p"
  fi
  rm -f "$pidf"
  log "starting credits-sync of partition $p (credits_p$p on 127.0.0.1:$port)"
  (
    export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres PGDATABASE=credits_p$p
    unset REDIS_HOST REDIS_PORT CREDITS_SYNC_PREFIX CREDITS_SYNC_CONFIG
    exec setsid "$bin" --pidfile "$pidf" --redis-cluster "$REDIS_CLUSTER_NODES" --partition "$p/$NPART" \
      </dev/null >>"$CLUSTER_DIR/credits-sync-p$p.log" 2>&1 9>&-
  ) &
  pid=$!
  echo "$want" >"$CLUSTER_DIR/credits-sync-p$p.conn"
  if ! await_daemon "$pid" "$pidf"; then
    warn "credits-sync of partition $p exited at start; last lines of $CLUSTER_DIR/credits-sync-p$p.log:"
    tail -n 15 "$CLUSTER_DIR/credits-sync-p$p.log" >&2 || true
    return 1
  fi
}

sync_down() {
  local p=$1 pidf pid
  pidf=$(sync_pidfile "$p")
  pid=$(read_pid "$pidf")
  if [ -n "$pid" ] && pid_is "$pid" credits-sync; then
    log "stopping credits-sync of partition $p (pid $pid)"
    stop_daemon "$pid" credits-sync "credits-sync of partition $p"
  fi
  rm -f "$pidf" "$CLUSTER_DIR/credits-sync-p$p.conn"
}

redis_cluster_up() {
  local p bin
  command -v redis-server >/dev/null || die "redis-server is not installed: run .ci/deps.sh (make deps)"
  # (9>&-: the daemonized nodes must not keep cluster.lock held)
  "$REPO/.ci/redis_cluster.sh" up "$CLUSTER_DIR/redis" 9>&- | sed 's/^/cluster: /'
  [ "${PIPESTATUS[0]}" = 0 ] || die "the Redis Cluster did not start"
  REDIS_CLUSTER_NODES=$("$REPO/.ci/redis_cluster.sh" nodes "$CLUSTER_DIR/redis")
  bin=$(sync_binary)
  if [ -z "$bin" ]; then
    warn "credits-sync is not built (make): the partitions are not mirrored into Redis"
    return 0
  fi
  for p in $(seq 0 $((NPART - 1))); do
    sync_up "$p" "$bin" || die "credits-sync of partition $p did not start"
  done
}

redis_cluster_down() {
  local p
  for p in $(seq 0 $((NPART - 1))); do
    sync_down "$p"
  done
  if [ -d "$CLUSTER_DIR/redis" ]; then
    "$REPO/.ci/redis_cluster.sh" down "$CLUSTER_DIR/redis" | sed 's/^/cluster: /'
  fi
}

write_env() {
  {
    echo "# written by .ci/cluster.sh up: the proxy database (PL/Proxy, 4 partitions)"
    echo "# and the Redis Cluster the partitions' credits-sync daemons mirror into."
    printf 'PGHOST=%q\n' 127.0.0.1
    printf 'PGPORT=%q\n' "${PORT[0]}"
    printf 'PGUSER=%q\n' postgres
    printf 'PGDATABASE=%q\n' "$PROXY_DB"
    [ -z "${REDIS_CLUSTER_NODES:-}" ] || printf 'REDIS_CLUSTER_NODES=%s\n' "$REDIS_CLUSTER_NODES"
    printf 'CREDITS_CLUSTER_DIR=%q\n' "$CLUSTER_DIR"
  } >"$CLUSTER_DIR/env.tmp"
  mv "$CLUSTER_DIR/env.tmp" "$CLUSTER_DIR/env"
}

# --- commands ---------------------------------------------------------------

cmd_up() {
  local i p
  [ -x "$PGBIN/postgres" ] || die "PostgreSQL 15 is not installed: run .ci/deps.sh (make deps)"
  [ -e "$("$PG_CONFIG" --pkglibdir)/credits.so" ] || die "credits.so is not installed: run make install"
  [ -e "$("$PG_CONFIG" --pkglibdir)/plproxy.so" ] ||
    die "PL/Proxy is not installed in $("$PG_CONFIG" --pkglibdir): run .ci/deps.sh (package postgresql-15-plproxy)"
  PKGLIBDIR=$("$PG_CONFIG" --pkglibdir)
  choose_pg_root
  load_placement
  pick_ports
  for i in $(seq 0 $((NINST - 1))); do
    pg_up "$i"
  done
  EXT_SUM=$(ext_sum)
  for p in $(seq 0 $((NPART - 1))); do
    partition_up "$p"
  done
  echo "$EXT_SUM" >"$CLUSTER_DIR/extension.sum"
  save_placement
  for i in $(seq 0 $((NINST - 1))); do
    roles_up "$i"
  done
  proxy_up
  redis_cluster_up
  write_env
  log "up: proxy $PROXY_DB on 127.0.0.1:${PORT[0]}; env in $CLUSTER_DIR/env"
}

cmd_down() {
  local i
  choose_pg_root
  redis_cluster_down
  for i in $(seq 0 $((NINST - 1))); do
    pg_down "$i"
  done
}

cmd_status() {
  local i p
  choose_pg_root
  load_placement
  load_ports
  for i in $(seq 0 $((NINST - 1))); do
    if pg_running "$i"; then
      echo "instance $i: running, pid $(read_pid "$CLUSTER_DIR/pg$i.pid"), 127.0.0.1:${PORT[$i]}, data $(datadir "$i")"
    else
      echo "instance $i: stopped"
    fi
  done
  for p in $(seq 0 $((NPART - 1))); do
    echo "partition $p: credits_p$p on instance ${PLACE[$p]}"
  done
  echo "proxy: database $PROXY_DB on instance 0"
  for p in $(seq 0 $((NPART - 1))); do
    if sync_running "$p"; then
      echo "credits-sync of partition $p: running, pid $(read_pid "$(sync_pidfile "$p")"), log $CLUSTER_DIR/credits-sync-p$p.log"
    else
      echo "credits-sync of partition $p: stopped"
    fi
  done
  if [ -d "$CLUSTER_DIR/redis" ]; then
    echo "Redis Cluster: $("$REPO/.ci/redis_cluster.sh" nodes "$CLUSTER_DIR/redis")"
    "$REPO/.ci/redis_cluster.sh" status "$CLUSTER_DIR/redis" | awk '{ split($2, a, "@"); print "  " a[1], $3, $8, $9 }' || true
  else
    echo "Redis Cluster: stopped"
  fi
}

cmd_env() {
  [ -s "$CLUSTER_DIR/env" ] || die "no $CLUSTER_DIR/env: run '.ci/cluster.sh up' (make cluster-up)"
  grep -v '^#' "$CLUSTER_DIR/env" | sed 's/^/export /'
}

# move P I: partition P to instance I (README, Scale-out: moving a
# partition).  Writes to P fail (read-only, SQLSTATE 25006) from step 1 to
# step 5; every other partition takes writes throughout.
cmd_move() {
  local p=$1 to=$2 from db tmp rows_from rows_to
  [[ "$p" =~ ^[0-9]+$ && "$p" -lt "$NPART" ]] || die "move: no partition $p"
  [[ "$to" =~ ^[0-9]+$ && "$to" -lt "$NINST" ]] || die "move: no instance $to"
  choose_pg_root
  load_placement
  load_ports
  from=${PLACE[$p]}
  db=credits_p$p
  [ "$from" != "$to" ] || { log "partition $p is already on instance $to"; return 0; }
  pg_running "$from" && pg_running "$to" || die "move: both instances must run (.ci/cluster.sh up)"
  db_exists "$to" "$db" && die "move: instance $to already has a database $db (a failed move? drop it first)"

  # 1. pause P's writes: new sessions on the source are read-only, and the
  #    sessions open now (the proxy's pooled connections) are ended
  log "move: partition $p is read-only on instance $from"
  #    (twice, a second apart: a session that read the database's settings
  #    just before the ALTER committed is in pg_stat_activity by then; and
  #    step 3 compares the source with the copy after the copy, so a write
  #    that slipped through would stop the move)
  psql_i "$from" -d postgres -c "ALTER DATABASE $db SET default_transaction_read_only = on" \
    -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '$db' AND pid <> pg_backend_pid()" >/dev/null
  sleep 1
  psql_i "$from" -d postgres \
    -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '$db' AND pid <> pg_backend_pid()" >/dev/null
  # 2. copy: pg_dump of the paused partition, restored into a new database
  #    on the target (the extension's tables, sequences and config rows)
  tmp=$CLUSTER_DIR/move-p$p.dump
  log "move: copying $db from instance $from to instance $to"
  "$PGBIN/pg_dump" -h 127.0.0.1 -p "${PORT[$from]}" -U postgres -Fc -f "$tmp" "$db"
  psql_i "$to" -d postgres -c "CREATE DATABASE $db"
  "$PGBIN/pg_restore" -h 127.0.0.1 -p "${PORT[$to]}" -U postgres -d "$db" --exit-on-error "$tmp" ||
    die "move: pg_restore failed; the source is still read-only on instance $from (see README to resume)"
  # 3. check the copy: every table's rows, the balances, the ledger chain
  rows_from=$(psql_i "$from" -d "$db" -tAc "$(move_fingerprint_sql)")
  rows_to=$(psql_i "$to" -d "$db" -tAc "$(move_fingerprint_sql)")
  [ "$rows_from" = "$rows_to" ] || die "move: the copy differs from the source ($rows_from / $rows_to); the source is still read-only"
  [ "$(psql_i "$to" -d "$db" -tAc "SELECT count(*) FROM credits.credit_verify_all()")" = 0 ] ||
    die "move: credit_verify_all() on the copy is not empty; the source is still read-only"
  # the hold ids continue in the partition's range (the sequence's value came along)
  psql_i "$to" -d "$db" -tAc "SELECT credits.partition_setup($p, $NPART)" >/dev/null
  # 4. repoint the proxy (PL/Proxy's cluster and the postgres_fdw server)
  log "move: the proxy now routes partition $p to instance $to"
  psql_i 0 -d "$PROXY_DB" -tAc "SELECT credits_proxy.place_partition($p, '127.0.0.1', ${PORT[$to]})" >/dev/null
  PLACE[$p]=$to
  save_placement
  # 5. retire the source: renamed (kept read-only, not dropped) so that
  #    nothing can write to it by mistake
  psql_i "$from" -d postgres -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '$db'" \
    -c "ALTER DATABASE $db RENAME TO ${db}_moved_$(date -u +%Y%m%d%H%M%S)" >/dev/null
  rm -f "$tmp"
  # 6. partition P's credits-sync, against the new instance (the copy is
  #    another cluster's database: the daemon rebuilds P's users' keys)
  if [ -d "$CLUSTER_DIR/redis" ] && [ -n "$(sync_binary)" ]; then
    REDIS_CLUSTER_NODES=$("$REPO/.ci/redis_cluster.sh" nodes "$CLUSTER_DIR/redis")
    log "move: restarting credits-sync of partition $p against instance $to"
    sync_down "$p"
    sync_up "$p" "$(sync_binary)" || die "move: credits-sync of partition $p did not start against instance $to"
  fi
  log "move: partition $p is on instance $to"
}

# One line that changes if any row of the partition differs.
move_fingerprint_sql() {
  cat <<'EOF'
SELECT (SELECT count(*) FROM credits.accounts) || ' ' || (SELECT coalesce(sum(balance), 0) FROM credits.accounts)
	|| ' ' || (SELECT count(*) FROM credits.ledger) || ' ' || (SELECT coalesce(max(id), 0) FROM credits.ledger)
	|| ' ' || (SELECT md5(string_agg(user_id || ':' || balance || ':' || held || ':' || last_tx_id || ':' || encode(last_hash, 'hex'), ',' ORDER BY user_id)) FROM credits.accounts)
	|| ' ' || (SELECT count(*) FROM credits.holds) || ' ' || (SELECT count(*) FROM credits.grants)
	|| ' ' || (SELECT count(*) FROM credits.idempotency_keys) || ' ' || (SELECT count(*) FROM credits.account_events)
	|| ' ' || (SELECT last_value FROM credits.holds_id_seq)
EOF
}

usage() { echo "usage: $0 up|down|status|env|move PARTITION INSTANCE" >&2; exit 2; }

[ $# -ge 1 ] || usage
case "$1" in
  up | down)
    [ $# -eq 1 ] || usage
    exec 9>"$CLUSTER_DIR/cluster.lock"
    flock -w 600 9 || die "another '.ci/cluster.sh' has held $CLUSTER_DIR/cluster.lock for 10 minutes"
    "cmd_$1"
    ;;
  move)
    [ $# -eq 3 ] || usage
    exec 9>"$CLUSTER_DIR/cluster.lock"
    flock -w 600 9 || die "another '.ci/cluster.sh' has held $CLUSTER_DIR/cluster.lock for 10 minutes"
    cmd_move "$2" "$3"
    ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) usage ;;
esac
