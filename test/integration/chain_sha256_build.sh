#!/usr/bin/env bash
# src/chain.c hashes with OpenSSL's SHA256_* functions when the server is
# built with OpenSSL, and falls back to PostgreSQL's cryptohash API when
# OpenSSL is built without its deprecated functions (OPENSSL_NO_DEPRECATED):
# both builds compile without a warning, and each calls what it should.
# (test/sql/chain checks the hashes of the default build against sha256();
# the fallback's were checked by hand, with the same tests.)
set -euo pipefail
cd "$(dirname "$0")/../.."
fail() { echo "FAIL: chain_sha256_build: $*"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r Makefile credits.control src sql "$tmp"/
rm -f "$tmp"/src/*.o

# build OUT EXTRA-CPPFLAGS: src/chain.o, with -Werror, as OUT
build() {
	make --no-print-directory -s -C "$tmp" src/chain.o CI=1 \
		PG_CPPFLAGS="-DCREDITS_VERSION=\\\"test\\\" $2" >"$tmp/$1.log" 2>&1 ||
		fail "src/chain.c does not compile with '$2': $(cat "$tmp/$1.log")"
	nm "$tmp/src/chain.o" > "$tmp/$1.nm"
	rm -f "$tmp/src/chain.o"
}
build default ""
build nodeprecated "-DOPENSSL_NO_DEPRECATED"

if grep -q -- '--with-openssl\|--with-ssl=openssl' <<<"$(pg_config --configure)"; then
	grep -q ' U SHA256_Init' "$tmp/default.nm" || fail "the default build does not call SHA256_Init"
	! grep -q 'pg_cryptohash' "$tmp/default.nm" || fail "the default build calls pg_cryptohash"
fi
grep -q ' U pg_cryptohash_init' "$tmp/nodeprecated.nm" || fail "OPENSSL_NO_DEPRECATED does not select pg_cryptohash"
! grep -q 'SHA256_' "$tmp/nodeprecated.nm" || fail "OPENSSL_NO_DEPRECATED still calls SHA256_*"
echo "ok - chain.c: SHA256_* by default, pg_cryptohash without OpenSSL's deprecated functions"
