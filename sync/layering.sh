#!/bin/sh
# Checks that credits-sync's modules call only downwards (see the header
# comment of credits_sync.h):
#
#	main.c                            the top: nothing calls it
#	config.c, pg.c, redis.c, metrics.c
#	cluster.c                         Redis connections; only redis.c calls it
#	status.c, batch.c, keyslot.c, partition.c, log.c
#	                                  the bottom: call nothing above them
#
# and that pg.c and redis.c never call each other, that only pg.c sees
# libpq (header or symbols) and only redis.c and cluster.c hiredis.
#
#   sh layering.sh [DIR]     (DIR holds the .c files and their built .o
#                             files; default .)  CC and CPPFLAGS as for
#                             the build.  Prints each violation; exits 1
#                             if there is any.
set -u
DIR=${1:-.}
CC=${CC:-cc}
CPPFLAGS=${CPPFLAGS:-}
cd "$DIR" || exit 2

TOP="main"
MIDDLE="config pg redis metrics"
LOWER="cluster"
BOTTOM="status batch keyslot partition log"
bad=0

violation() {
  echo "layering: $*"
  bad=1
}

for m in $TOP $MIDDLE $LOWER $BOTTOM; do
  [ -f "$m.o" ] || { echo "layering: $DIR/$m.o is not built"; exit 2; }
done

defined() { nm -g --defined-only "$1.o" | awk '{print $3}' | sort -u; }
undefined() { nm -u "$1.o" | awk '{print $2}' | sort -u; }

# calls FROM TO...: FROM must use no symbol defined by any TO.
calls() {
  from=$1
  shift
  for to in "$@"; do
    [ "$from" = "$to" ] && continue
    for s in $(comm -12 "$T/$from.u" "$T/$to.d"); do
      violation "$from.c uses $s, defined in $to.c"
    done
  done
}

T=$(mktemp -d) || exit 2
trap 'rm -rf "$T"' EXIT
for m in $TOP $MIDDLE $LOWER $BOTTOM; do
  defined "$m" >"$T/$m.d"
  undefined "$m" >"$T/$m.u"
done

for m in $MIDDLE $LOWER $BOTTOM; do calls "$m" $TOP; done
for m in $LOWER $BOTTOM; do calls "$m" $MIDDLE; done
for m in $BOTTOM; do calls "$m" $LOWER; done
calls pg redis
calls redis pg
# only redis.c uses cluster.c
for m in $TOP config pg metrics; do calls "$m" cluster; done

# Headers: the whole include closure, system headers too.
for m in $TOP $MIDDLE $LOWER $BOTTOM; do
  deps=$($CC $CPPFLAGS -M "$m.c" 2>&1) || { violation "cannot preprocess $m.c: $deps"; continue; }
  if [ "$m" != pg ] && printf '%s\n' "$deps" | grep -q 'libpq-fe\.h'; then
    violation "$m.c includes libpq-fe.h (only pg.c may)"
  fi
  if [ "$m" != redis ] && [ "$m" != cluster ] && printf '%s\n' "$deps" | grep -q 'hiredis'; then
    violation "$m.c includes hiredis (only redis.c and cluster.c may)"
  fi
done
# Symbols: libpq's are PQ* and pg_* of libpq; hiredis's redis*, freeReplyObject
for m in $TOP $MIDDLE $LOWER $BOTTOM; do
  if [ "$m" != pg ]; then
    for s in $(grep -E '^(PQ|lo_)' "$T/$m.u"); do
      violation "$m.c uses libpq's $s (only pg.c may)"
    done
  fi
  if [ "$m" != redis ] && [ "$m" != cluster ]; then
    for s in $(grep -E '^(redis[A-Z]|freeReplyObject)' "$T/$m.u"); do
      violation "$m.c uses hiredis's $s (only redis.c and cluster.c may)"
    done
  fi
done

[ $bad -eq 0 ] && echo "layering: ok (main -> config, pg, redis, metrics -> cluster (from redis only) -> status, batch, keyslot, partition, log; pg and redis apart)"
exit $bad
