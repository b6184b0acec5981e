# credits: PGXS build of the extension, the credits-sync daemon, and the
# project's two commands (make demo, make test).
#
# The only version source is default_version in credits.control.  It is
# read here and passed to the C code (CREDITS_VERSION) and to the daemon.

EXTENSION = credits
EXTVERSION = $(shell sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" credits.control)

MODULE_big = credits
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c src/v1_0/*.c)))
HEADERS = $(wildcard src/*.h)

# Released install scripts are kept in sql/; the current one is generated
# from sql/credits.sql.
DATA = $(sort $(wildcard sql/$(EXTENSION)--*.sql) sql/$(EXTENSION)--$(EXTVERSION).sql)
EXTRA_CLEAN = sql/$(EXTENSION)--$(EXTVERSION).sql

REGRESS = $(patsubst test/sql/%.sql,%,$(sort $(wildcard test/sql/*.sql)))
REGRESS_OPTS = --inputdir=test --load-extension=$(EXTENSION)
ISOLATION = $(patsubst test/specs/%.spec,%,$(sort $(wildcard test/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test --load-extension=$(EXTENSION)

PG_CPPFLAGS = -DCREDITS_VERSION=\"$(EXTVERSION)\"
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers $(if $(CI),-Werror)

# Debian's postgresql-common puts a pg_config for the client libraries on
# PATH; the server's is the one that knows where extensions go.
CREDITS_PGBIN ?= /usr/lib/postgresql/15/bin
PG_CONFIG ?= $(firstword $(wildcard $(CREDITS_PGBIN)/pg_config) pg_config)
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(PGXS),)
include $(PGXS)
else
all:
	@echo "pg_config not found: run 'make deps' (or 'make test', which does it)" >&2; exit 1
endif

# src/chain.c hashes with OpenSSL directly when the server was built with
# it (as PostgreSQL's own cryptohash does).
ifeq ($(with_ssl),openssl)
SHLIB_LINK += -lcrypto
endif

# PGXS does not track headers; every object depends on all of them.
$(OBJS): $(wildcard src/*.h src/v1_0/*.h)

sql/$(EXTENSION)--$(EXTVERSION).sql: sql/$(EXTENSION).sql credits.control
	cp $< $@

all: sql/$(EXTENSION)--$(EXTVERSION).sql sync-build

.PHONY: sync-build sync-install deps dev-up dev-down demo test bench fuzz

sync-build:
	$(MAKE) -C sync EXTVERSION=$(EXTVERSION) PG_CONFIG=$(PG_CONFIG)

sync-install: sync-build
	$(MAKE) -C sync EXTVERSION=$(EXTVERSION) PG_CONFIG=$(PG_CONFIG) install

install: sync-install

clean: sync-clean
.PHONY: sync-clean
sync-clean:
	$(MAKE) -C sync clean

# --- the project's commands ------------------------------------------

deps:
	.ci/deps.sh

# Build, install and start the local stack (idempotent).
dev-up: deps
	$(MAKE) all
	$(MAKE) install
	.ci/stack.sh up

dev-down:
	.ci/stack.sh down

demo: dev-up
	.ci/demo.sh

test: dev-up
	.ci/test.sh

bench: dev-up
	bench/run.sh

# The reference model against the extension, long: make fuzz SEEDS=1-200 OPS=5000
# (test/model/fuzz.py; make test runs a few short seeds).
SEEDS ?= 1-20
OPS ?= 5000
fuzz: dev-up
	set -a && . "$${CREDITS_RUN_DIR:-.run}/env" && set +a && \
	/usr/bin/python3 test/model/fuzz.py --seeds '$(SEEDS)' --ops '$(OPS)'

# --- release -------------------------------------------------------------
#
# make dist: the release archive for PGXN, dist/credits-<version>.zip, made
# by git archive from the committed tree (HEAD), like pgvector's.  The
# version is default_version in credits.control as semver ("1.1" ->
# "1.1.0"); check-release refuses a META.json or CHANGELOG.md that says
# otherwise, so credits.control stays the one version source.

DIST_VERSION = $(shell echo '$(EXTVERSION)' | awk -F. '{ print (NF == 2) ? $$0 ".0" : $$0 }')

.PHONY: dist check-release
check-release:
	@python3 -c 'import json, sys; m = json.load(open("META.json")); \
		v = {m["version"], m["provides"]["$(EXTENSION)"]["version"]}; \
		sys.exit(0 if v == {"$(DIST_VERSION)"} else "META.json says %s, credits.control says $(EXTVERSION) ($(DIST_VERSION))" % sorted(v))'
	@grep -q '^## $(EXTVERSION) ' CHANGELOG.md || \
		{ echo "CHANGELOG.md has no '## $(EXTVERSION) ' entry" >&2; exit 1; }
	@test -f sql/$(EXTENSION)--$(EXTVERSION).sql -o -f sql/$(EXTENSION).sql
	@echo "release $(DIST_VERSION): META.json and CHANGELOG.md agree with credits.control"

dist: check-release
	@git diff --quiet HEAD || echo "dist: WARNING: uncommitted changes are not in the archive" >&2
	mkdir -p dist
	git archive --format zip --prefix=$(EXTENSION)-$(DIST_VERSION)/ \
		--output dist/$(EXTENSION)-$(DIST_VERSION).zip HEAD

# --- scale-out: PL/Proxy in front of 4 partitions on 2 instances ---------
#
# make cluster-up: build, install, then .ci/cluster.sh up (idempotent); the
# proxy's connection settings are in .run/cluster/env.  README, Scale-out.
.PHONY: cluster-up cluster-down test-cluster
cluster-up: deps
	$(MAKE) all
	$(MAKE) install
	.ci/cluster.sh up

cluster-down:
	.ci/cluster.sh down

test-cluster: cluster-up
	CREDITS_CLUSTER_KEEP=1 test/cluster/run.sh
