#!/usr/bin/env bash
# make bench's own claims (bench/schema.sql, bench/report.py):
#   - loop_chained, the statement the chain's cost is measured with, does
#     all of the chain's work: the rows it writes verify clean
#     (credit_verify_all), as credit_deduct's do;
#   - durable_interleaved records each kind's CPU per block, with and
#     without a pause after each commit, and refuses to measure commits
#     that are not durable;
#   - report.py rates a chain cost met only when the whole 95% interval is
#     at or below 3%, NOT MET when it is all above, inconclusive otherwise,
#     and takes the clock's reading out of credit_deduct's CPU.
#
# Needs PGHOST/PGPORT/PGUSER of a superuser on a server with the extension
# installed (the stack's env).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DB=credits_bench_schema
T=$(mktemp -d)
trap 'rm -rf "$T"; psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true' EXIT

fail() { echo "FAIL: $*"; exit 1; }
q() { psql -X -At -v ON_ERROR_STOP=1 -d "$DB" "$@"; }

psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
q -c "CREATE EXTENSION credits" >/dev/null
q -q -f "$REPO/bench/schema.sql" >/dev/null 2>&1 || fail "bench/schema.sql does not install"
q -c "SELECT count(*) FROM generate_series(1, 1000) g,
	LATERAL credits.credit_add('bench-' || g, 1000000, 'bench_seed')" >/dev/null

# 1. the chained statement's rows chain as credit_deduct's do
q -c "SELECT credits_bench.loop_chained(2500)" >/dev/null
q -c "SELECT credits.credit_deduct('bench-7', 1, 'bench')" >/dev/null
bad=$(q -c "SELECT count(*) FROM credits.credit_verify_all()")
[ "$bad" = 0 ] || fail "loop_chained wrote rows credit_verify_all reports: $(q -c 'SELECT * FROM credits.credit_verify_all() LIMIT 3')"
rows=$(q -c "SELECT count(*) FROM credits.ledger WHERE action = 'bench'")
[ "$rows" = 2501 ] || fail "expected 2,501 bench rows, got $rows"
echo "ok 1 - loop_chained's rows verify clean"

# 2. durable_interleaved: a row per kind and block, with its count (a
# round is chained, deduct, ordered, deduct, clock, deduct) and a CPU per
# deduction between 5 us and 100 ms, with and without a pause after each
# commit
want="chained:5,clock:5,deduct:15,ordered:5,chained:5,clock:5,deduct:15,ordered:5"
for pause in 0 1; do
	q -c "CALL credits_bench.durable_interleaved(2, 5, $pause)" >/dev/null
	got=$(q -c "SELECT string_agg(kind || ':' || n, ',' ORDER BY block, kind) FROM credits_bench.interleaved")
	[ "$got" = "$want" ] || fail "durable_interleaved (pause $pause ms) recorded: $got"
	odd=$(q -c "SELECT count(*) FROM credits_bench.interleaved WHERE ns / n NOT BETWEEN 5000 AND 100000000")
	[ "$odd" = 0 ] || fail "durable_interleaved (pause $pause ms): implausible CPU per deduction: $(q -c 'TABLE credits_bench.interleaved')"
done
echo "ok 2 - durable_interleaved records each kind's CPU per block"

# 3. ... and refuses to run when commits are not durable
if out=$(PGOPTIONS="-c synchronous_commit=off" q -c "CALL credits_bench.durable_interleaved(1, 5)" 2>&1); then
	fail "durable_interleaved ran with synchronous_commit off"
fi
grep -q "commits are not durable" <<<"$out" || fail "unexpected error: $out"
echo "ok 3 - durable_interleaved refuses commits that are not durable"

# 4. report.py: the interval (sign test) and the three verdicts
python3 - "$REPO/bench" "$T" <<'PY' || fail "report.py"
import sys
sys.path.insert(0, sys.argv[1])
import io, contextlib, report

# n = 10: 2 * P(Bin(10, 1/2) <= 1) = 0.021 <= 0.05 < 2 * P(<= 2): the 2nd
# smallest and the 2nd largest
assert report.median_ci(range(10)) == (1, 8), report.median_ci(range(10))
assert report.median_ci(range(5)) is None


def verdict(chain_us, noise):
    """the targets row of 40 blocks: ordered 100 us, chained 100 + chain_us
    (+- noise, alternating), deduct 150 us, clock 160 us (so credit_deduct's
    own CPU is 140 us)"""
    lines = []
    for b in range(40):
        e = noise if b % 2 else -noise
        lines += [f"durable/chained\t{100 + chain_us + e}", f"durable/ordered\t100",
                  "durable/deduct\t150", "durable/clock\t160"]
    raw = sys.argv[2] + "/raw.tsv"
    with open(raw, "w") as f:
        f.write("\n".join(lines) + "\n")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        report.targets(report.load(raw), "/nonexistent")
    row = [l for l in out.getvalue().splitlines() if "interleaved" in l]
    assert len(row) == 1, out.getvalue()
    return row[0]


r = verdict(2.8, 0.5)  # 2.3 to 3.3 us of 140: 1.6% to 2.4%
assert r.endswith("| met |") and "2.80 of 140.0" in r, r
r = verdict(5.6, 0.5)  # 5.1 to 6.1 us: 3.6% to 4.4%
assert r.endswith("| NOT MET |"), r
r = verdict(3.5, 3.0)  # 0.5 to 6.5 us: 0.4% to 4.6%
assert r.endswith("| inconclusive |"), r
PY
echo "ok 4 - report.py's interval and verdicts"
