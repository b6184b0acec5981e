#!/usr/bin/env bash
# A local Redis Cluster: 3 masters with 1 replica each (redis-server 7 in
# cluster mode, created by `redis-cli --cluster create --cluster-replicas 1`).
#
#   .ci/redis_cluster.sh up [DIR]      start it (idempotent: nodes already
#                                      running are kept; a formed cluster is
#                                      not created again); waits until every
#                                      node reports cluster_state:ok and
#                                      every replica has synced
#   .ci/redis_cluster.sh down [DIR]    stop the nodes `up` started (by pid
#                                      file) and delete their data
#   .ci/redis_cluster.sh nodes [DIR]   print host:port,host:port,... of all
#                                      nodes (what REDIS_CLUSTER_NODES holds)
#   .ci/redis_cluster.sh status [DIR]  CLUSTER NODES of the first live node
#
# DIR (or CREDITS_REDIS_CLUSTER_DIR; default <repo>/.run/redis-cluster)
# holds one subdirectory per node (nodes.conf, redis.log, redis.pid) and
# `ports`, the ports used, so that down/nodes need no settings.  Ports:
# CREDITS_REDIS_CLUSTER_PORT (default 7001) and the 5 after it; each node's
# cluster bus port is its port + 10000, or its port - 10000 when that would
# pass 65535 (set CREDITS_REDIS_CLUSTER_BUS_OFFSET to choose another
# offset).  CREDITS_REDIS_CLUSTER_NODE_TIMEOUT (ms, default 2000) is
# cluster-node-timeout: how long a master may be silent before its replica
# is promoted.  Nodes run without persistence (a restarted node is empty
# and resyncs from its master).
#
# Invariants: only processes whose pid is in one of our pid files, and that
# are still redis-server, are ever signalled.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CMD=${1:-}
DIR=${2:-${CREDITS_REDIS_CLUSTER_DIR:-$REPO/.run/redis-cluster}}
NNODES=6
HOST=127.0.0.1

log() { echo "redis_cluster: $*"; }
die() { echo "redis_cluster: ERROR: $*" >&2; exit 1; }

# pid_is, read_pid
# shellcheck source=.ci/lib.sh
. "$REPO/.ci/lib.sh"
pid_is_redis() { pid_is "$1" redis-server; }

# The ports: from DIR/ports if the cluster was set up, else from the
# environment.
ports() {
  if [ -s "$DIR/ports" ]; then
    cat "$DIR/ports"
  else
    local base=${CREDITS_REDIS_CLUSTER_PORT:-7001} i
    for ((i = 0; i < NNODES; i++)); do echo $((base + i)); done
  fi
}

bus_port() {
  local p=$1 off=${CREDITS_REDIS_CLUSTER_BUS_OFFSET:-}
  if [ -z "$off" ]; then
    off=10000
    [ $((p + off)) -le 65535 ] || off=-10000
  fi
  echo $((p + off))
}

cli() { redis-cli -h "$HOST" -p "$1" "${@:2}"; }

node_up() { [ "$(cli "$1" PING 2>/dev/null)" = PONG ]; }

cluster_ok() {
  cli "$1" CLUSTER INFO 2>/dev/null | tr -d '\r' | grep -q '^cluster_state:ok$'
}

# A replica's initial sync is done (masters: always true).
replica_synced() {
  local info
  info=$(cli "$1" INFO replication 2>/dev/null | tr -d '\r')
  grep -q '^role:master$' <<<"$info" && return 0
  grep -q '^master_link_status:up$' <<<"$info" && grep -q '^master_sync_in_progress:0$' <<<"$info"
}

start_node() {
  local port=$1 d=$DIR/$1 pid
  pid=$(read_pid "$d/redis.pid")
  if [ -n "$pid" ] && pid_is_redis "$pid" && node_up "$port"; then
    return 0
  fi
  node_up "$port" && die "port $port is used by a process that is not ours"
  mkdir -p "$d"
  redis-server --bind "$HOST" --port "$port" --cluster-enabled yes \
    --cluster-port "$(bus_port "$port")" \
    --cluster-config-file "$d/nodes.conf" \
    --cluster-node-timeout "${CREDITS_REDIS_CLUSTER_NODE_TIMEOUT:-2000}" \
    --cluster-replica-validity-factor 0 \
    --dir "$d" --daemonize yes --pidfile "$d/redis.pid" --logfile "$d/redis.log" \
    --save "" --appendonly no >/dev/null || die "redis-server on port $port did not start"
  local i
  for i in $(seq 1 100); do node_up "$port" && return 0; sleep 0.05; done
  die "redis-server on port $port does not answer (see $d/redis.log): $(tail -n 3 "$d/redis.log" 2>/dev/null | tr '\n' ' ')"
}

up() {
  local ps p i formed=0 first
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd)
  mapfile -t ps < <(ports)
  [ "${#ps[@]}" -eq "$NNODES" ] || die "$DIR/ports does not list $NNODES ports"
  printf '%s\n' "${ps[@]}" >"$DIR/ports"
  for p in "${ps[@]}"; do start_node "$p"; done
  first=${ps[0]}
  # Formed already (this script ran before): every node knows the others.
  for p in "${ps[@]}"; do
    [ "$(cli "$p" CLUSTER INFO | tr -d '\r' | sed -n 's/^cluster_known_nodes://p')" = "$NNODES" ] &&
      formed=$((formed + 1))
  done
  if [ "$formed" -ne "$NNODES" ]; then
    # Nodes restarted empty (no persistence) or new: start from scratch.
    for p in "${ps[@]}"; do
      cli "$p" FLUSHALL >/dev/null 2>&1 || true
      cli "$p" CLUSTER RESET HARD >/dev/null
    done
    local addrs=()
    for p in "${ps[@]}"; do addrs+=("$HOST:$p"); done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
      >"$DIR/create.log" 2>&1 || { cat "$DIR/create.log" >&2; die "redis-cli --cluster create failed"; }
  fi
  for i in $(seq 1 400); do
    local ok=0
    for p in "${ps[@]}"; do cluster_ok "$p" && replica_synced "$p" && ok=$((ok + 1)); done
    if [ "$ok" -eq "$NNODES" ]; then
      log "up: $(nodes)"
      return 0
    fi
    sleep 0.05
  done
  die "the cluster did not reach cluster_state:ok on every node in 20 s"
}

down() {
  local p pid i
  [ -d "$DIR" ] || return 0
  for p in $(ports); do
    pid=$(read_pid "$DIR/$p/redis.pid")
    if [ -n "$pid" ] && pid_is_redis "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      for i in $(seq 1 100); do pid_is_redis "$pid" || break; sleep 0.05; done
      pid_is_redis "$pid" && kill -KILL "$pid" 2>/dev/null
    fi
    rm -rf "${DIR:?}/$p"
  done
  rm -f "$DIR/ports" "$DIR/create.log"
  rmdir "$DIR" 2>/dev/null || true
  log "down"
}

nodes() {
  local out="" p
  for p in $(ports); do out+="${out:+,}$HOST:$p"; done
  echo "$out"
}

status() {
  local p
  for p in $(ports); do
    if node_up "$p"; then cli "$p" CLUSTER NODES; return 0; fi
  done
  echo "no node answers"
  return 1
}

case "$CMD" in
  up) up ;;
  down) down ;;
  nodes) nodes ;;
  status) status ;;
  *) echo "usage: $0 up|down|nodes|status [DIR]" >&2; exit 2 ;;
esac
