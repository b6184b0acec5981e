# Shell helpers shared by .ci/stack.sh, .ci/cluster.sh and
# .ci/redis_cluster.sh (sourced, not run).  The sourcing script defines
# die() (warn() too, for stop_daemon; PGUSER_OS for as_postgres), and may
# define extra_socket_dirs() (one directory a line) for port_busy and TAKEN
# (ports already chosen in this run) for first_free_port.

# Is a process with this pid alive and running program $2 (matched against
# /proc/PID/cmdline, so a recycled pid is not mistaken for ours)?
pid_is() {
  local pid=$1 want=$2
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$want"
}

read_pid() { [ -s "$1" ] && head -n1 "$1" | tr -dc '0-9' || true; }

# await_daemon PID PIDFILE: waits up to 5 s for the daemon just started as
# PID to write PIDFILE.  False (and PIDFILE removed) if PID exited first;
# if it runs but wrote no PIDFILE, PID is recorded there.
await_daemon() {
  local pid=$1 pidf=$2 i
  for i in $(seq 1 50); do
    [ -s "$pidf" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if ! kill -0 "$pid" 2>/dev/null; then
    rm -f "$pidf"
    return 1
  fi
  [ -s "$pidf" ] || echo "$pid" >"$pidf"
}

# stop_daemon PID PROGRAM LABEL: SIGTERM, up to 15 s for PID (running
# PROGRAM, see pid_is) to exit, then SIGKILL with a warning naming LABEL.
stop_daemon() {
  local pid=$1 program=$2 label=$3 i
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 150); do
    pid_is "$pid" "$program" || return 0
    sleep 0.1
  done
  warn "$label (pid $pid) ignored SIGTERM for 15 s: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
}

# Is TCP port $1 listened on (IPv4 or IPv6), or a PostgreSQL socket file for
# it present in a usual place or one of extra_socket_dirs?  A socket file
# whose lock file names a process that no longer exists was left by a
# postmaster that died (kill -9, a crash): it does not count, so a restart
# after a crash keeps its port (and every client configured with it, such
# as a running credits-sync, reconnects).
port_busy() {
  local port=$1 hex f pid
  hex=$(printf '%04X' "$port")
  for f in /proc/net/tcp /proc/net/tcp6; do
    [ -r "$f" ] || continue
    # local_address is ADDR:PORT in hex; state 0A is LISTEN
    if awk -v p=":$hex" 'NR > 1 && $4 == "0A" && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }' "$f"; then
      return 0
    fi
  done
  while IFS= read -r f; do
    [ -e "$f/.s.PGSQL.$port" ] || continue
    pid=$(read_pid "$f/.s.PGSQL.$port.lock")
    [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null && continue
    return 0
  done < <(printf '%s\n' /tmp /var/run/postgresql /run/postgresql
           declare -F extra_socket_dirs >/dev/null && extra_socket_dirs)
  return 1
}

# The first port from $1 up that is not busy nor in TAKEN.
first_free_port() {
  local port=$1 tries=0
  while port_busy "$port" || [[ " ${TAKEN:-} " == *" $port "* ]]; do
    port=$((port + 1)); tries=$((tries + 1))
    [ "$tries" -lt 200 ] || die "no free port from $1 to $port"
  done
  echo "$port"
}

file_sum() { if [ -e "$1" ]; then cksum <"$1" | tr ' ' '-'; else echo none; fi; }

# The lock on fd 9 (see the end of each script) must not leak into the
# servers started here, or it would outlive the script: every launch
# closes it.
as_postgres() { (cd / && runuser -u "$PGUSER_OS" -- "$@" 9>&-); }
