#!/usr/bin/env bash
# The release files agree with credits.control, the one version source:
# META.json's version and provides.credits.version are default_version as
# semver, CHANGELOG.md has an entry for it, LICENSE is the PostgreSQL
# License, and make dist builds dist/credits-<version>.zip from git with
# the control file, the install and upgrade scripts, META.json and LICENSE.
set -euo pipefail
cd "$(dirname "$0")/../.."
fail() { echo "FAIL: packaging: $*"; exit 1; }

ver=$(sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" credits.control)
[ -n "$ver" ] || fail "no default_version in credits.control"
semver=$(echo "$ver" | awk -F. '{ print (NF == 2) ? $0 ".0" : $0 }')
grep -q '^PostgreSQL License' LICENSE || fail "LICENSE is not the PostgreSQL License"
grep -q 'the credits authors' LICENSE || fail "LICENSE does not name the credits authors"
make --no-print-directory -s check-release || fail "make check-release"

# A META.json that disagrees must be refused.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git archive HEAD | tar -x -C "$tmp"
sed -i "s/\"version\": \"$semver\"/\"version\": \"0.0.1\"/" "$tmp/META.json"
if make --no-print-directory -s -C "$tmp" check-release >/dev/null 2>&1; then
	fail "check-release accepts a META.json whose version disagrees with credits.control"
fi

# make dist, in the copy (a git repository of its own, so that the
# worktree's dist/ is left alone)
git -C "$tmp" init -q && git -C "$tmp" add -A &&
	git -C "$tmp" -c user.name=t -c user.email=t@t commit -qm t
sed -i "s/\"version\": \"0.0.1\"/\"version\": \"$semver\"/" "$tmp/META.json"
git -C "$tmp" -c user.name=t -c user.email=t@t commit -qam t
make --no-print-directory -s -C "$tmp" dist >/dev/null || fail "make dist"
zip=$tmp/dist/credits-$semver.zip
[ -s "$zip" ] || fail "make dist made no $zip"
list=$(python3 -c 'import sys, zipfile; print("\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))' "$zip")
for f in credits.control Makefile META.json LICENSE CHANGELOG.md README.md sql/credits.sql \
	sql/credits--1.0.sql "sql/credits--1.0--$ver.sql" src/credits.c src/v1_0/ledger.c; do
	grep -qx "credits-$semver/$f" <<<"$list" || fail "the archive lacks $f"
done
! grep -q "credits-$semver/.run/" <<<"$list" || fail "the archive contains .run/"

echo "PASS: packaging"
