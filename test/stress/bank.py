#!/usr/bin/python3
"""The "bank" test: many sessions move credit at once, then the books must
balance.

    bank.py [--sessions 16] [--ops 250] [--users 5] [--seed 1]

Every session runs random operations on a few shared accounts, each as its
own transaction: unkeyed and keyed deductions, additions, charges, holds
(some with a ttl of a second or two, so that they expire during the run),
captures and releases of any session's holds, grants (some expiring within
seconds), retries of keyed calls (one key is always used with one
operation and the same parameters, by several sessions at once), and the
jobs credit_expire_holds(), credit_expire_grants() and credit_renew().
The only errors allowed are the domain errors the operation can meet
(CR001 insufficient credits, CR004 hold not open); any other one (a
deadlock, CR003 for a faithful retry, an internal error) fails the test.

Afterwards, in the test's own database (credits_bank_<pid>, dropped at the
end):
  * the sum of the balances equals the sum of the ledger, per account and
    in all, and credit_verify_all() is empty;
  * no account's available credit (or balance) is negative;
  * every idempotency key had exactly one effect: one ledger row (one hold
    for credit_hold), and every successful call with it returned that row;
  * per account, in ledger id order, balance_after chains (each row's is
    the previous one's plus its amount, the first one's its amount);
  * accounts.held is the sum of the open holds and accounts.expiring the
    unspent and reserved credit of the expiring grants;
  * when credit_balance_at exists (S6): created_at never goes backwards
    along one account's rows;
  * live plan-allowance credit is at most the current plan's allowance
    plus its rollover cap (S2), and no job recorded a failure (S7).
Application transactions that write and then subscribe run among the jobs
(defect 8: they deadlocked with credit_renew); a deadlock fails the test.
Exit status 0 when every check holds.
"""

import argparse
import datetime
import os
import random
import sys
import threading
import time
from decimal import Decimal

import psycopg2

ALLOWED = {"CR001", "CR004"}


def connect(db):
    c = psycopg2.connect(dbname=db)
    c.set_session(autocommit=True)
    return c


class Shared:
    def __init__(self, users):
        self.lock = threading.Lock()
        self.users = users
        self.holds = []  # hold ids, any session's
        self.keys = {}  # (user, key) -> (fn, sql, params)
        self.results = {}  # (user, key) -> set of returned ids
        self.errors = []
        self.counts = {}

    def count(self, what):
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1


def keyed_call(rng, shared, user):
    """A new keyed operation, or a retry of an existing one (same key,
    same parameters)."""
    with shared.lock:
        pool = [k for k in shared.keys if k[0] == user]
        if pool and rng.random() < 0.5:
            k = rng.choice(pool)
            return k, shared.keys[k]
        k = (user, "key-%d" % len(shared.keys))
        fn = rng.choice(["deduct", "add", "charge", "hold", "grant"])
        if fn == "deduct":
            call = (fn, "SELECT tx_id FROM credits.credit_deduct(%s, %s, 'job', '{}', %s)",
                    (user, rng.randint(1, 20), k[1]))
        elif fn == "add":
            call = (fn, "SELECT tx_id FROM credits.credit_add(%s, %s, 'topup', '{}', %s)",
                    (user, rng.randint(1, 20), k[1]))
        elif fn == "charge":
            call = (fn, "SELECT tx_id FROM credits.credit_charge(%s, 'chat_message', %s, '{}', %s)",
                    (user, Decimal(rng.randint(1, 2)), k[1]))
        elif fn == "hold":
            call = (fn, "SELECT hold_id FROM credits.credit_hold(%s, %s, 'video', '{}', %s::interval, %s)",
                    (user, rng.randint(1, 20), rng.choice(["1 second", "1 hour"]), k[1]))
        else:
            # the same expires_at in every retry
            at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
                seconds=rng.choice([2, 3600]))
            call = (fn, "SELECT tx_id FROM credits.credit_grant(%s, %s, 'promo', %s, '{}', %s)",
                    (user, rng.randint(1, 30), at, k[1]))
        shared.keys[k] = call
        return k, call


def session(n, args, shared, db):
    rng = random.Random(args.seed * 1000 + n)
    conn = connect(db)
    cur = conn.cursor()
    for _ in range(args.ops):
        user = rng.choice(shared.users)
        r = rng.random()
        key = None
        try:
            if r < 0.25:
                key, (fn, sql, params) = keyed_call(rng, shared, user)
                # a retry that runs in several sessions at once
                cur.execute(sql, params)
                rid = cur.fetchone()[0]
                with shared.lock:
                    shared.results.setdefault(key, set()).add(rid)
                    if fn == "hold":
                        shared.holds.append(rid)
                what = "keyed " + fn
            elif r < 0.40:
                cur.execute("SELECT credits.credit_deduct(%s, %s, 'job')", (user, rng.randint(1, 25)))
                what = "deduct"
            elif r < 0.48:
                cur.execute("SELECT credits.credit_add(%s, %s, 'topup')", (user, rng.randint(1, 40)))
                what = "add"
            elif r < 0.56:
                cur.execute("SELECT credits.credit_charge(%s, %s, %s)",
                            (user, rng.choice(["chat_message", "llm_tokens", "video_generation"]),
                             Decimal(rng.choice([1, 2, 3000, "0.5"]))))
                what = "charge"
            elif r < 0.68:
                cur.execute("SELECT hold_id FROM credits.credit_hold(%s, %s, 'video', '{}', %s::interval)",
                            (user, rng.randint(1, 30), rng.choice(["1 second", "2 seconds", "1 hour"])))
                with shared.lock:
                    shared.holds.append(cur.fetchone()[0])
                what = "hold"
            elif r < 0.78:
                with shared.lock:
                    h = rng.choice(shared.holds[-20:]) if shared.holds else None
                if h is None:
                    continue
                amount = rng.choice([None, 1, 5, 40])
                cur.execute("SELECT credits.credit_capture(%s, %s)", (h, amount))
                what = "capture"
            elif r < 0.84:
                with shared.lock:
                    h = rng.choice(shared.holds[-20:]) if shared.holds else None
                if h is None:
                    continue
                cur.execute("SELECT credits.credit_release(%s)", (h,))
                what = "release"
            elif r < 0.93:
                cur.execute("SELECT credits.credit_grant(%s, %s, 'promo', now() + %s::interval)",
                            (user, rng.randint(1, 30), rng.choice(["1 second", "3 seconds", "1 day"])))
                what = "grant"
            elif r < 0.94:
                cur.execute("SELECT credits.credit_subscribe(%s, %s)", (user, rng.choice(["free", "pro", "tick"])))
                what = "subscribe"
            elif r < 0.96:
                # an application transaction that writes, then subscribes
                # (defect 8: this deadlocked with credit_renew)
                cur.execute("BEGIN")
                try:
                    cur.execute("SELECT credits.credit_add(%s, 5, 'topup')", (user,))
                    cur.execute("SELECT credits.credit_subscribe(%s, %s)", (user, rng.choice(["free", "pro", "tick"])))
                    cur.execute("COMMIT")
                except psycopg2.Error:
                    cur.execute("ROLLBACK")
                    raise
                what = "add+subscribe transaction"
            else:
                job = rng.choice(["credit_expire_holds", "credit_expire_grants", "credit_renew"]
                                 + (["run_jobs"] * 2 if shared.run_jobs else []))
                if job == "run_jobs":
                    cur.execute("CALL credits.run_jobs(%s)", (rng.choice([1, 3, 50]),))
                else:
                    cur.execute("SELECT credits.%s()" % job)
                what = job
            shared.count(what + " ok")
        except psycopg2.Error as e:
            if e.pgcode in ALLOWED:
                shared.count("%s" % e.pgcode)
            elif (e.pgcode == "CR010" and key is not None and shared.keys[key][0] == "grant"
                  and not shared.s4):
                # defect 5 (S4 not in main): a retry after expires_at is refused
                shared.count("CR010 retry after expiry (defect 5)")
            else:
                with shared.lock:
                    shared.errors.append("session %d: %s: %s %s" % (n, key, e.pgcode, str(e).strip()))
    conn.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=16)
    ap.add_argument("--ops", type=int, default=250)
    ap.add_argument("--users", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    db = "credits_bank_%d" % os.getpid()
    admin = connect("postgres")
    acur = admin.cursor()
    acur.execute("DROP DATABASE IF EXISTS %s" % db)
    acur.execute("CREATE DATABASE %s" % db)
    fails = []

    def check(what, ok, detail=""):
        print("%s: %s%s" % ("ok" if ok else "not ok", what, "" if ok else ": " + str(detail)))
        if not ok:
            fails.append(what)

    try:
        conn = connect(db)
        cur = conn.cursor()
        cur.execute("SET client_min_messages = warning")
        cur.execute("CREATE EXTENSION credits")
        users = ["bank-%d" % i for i in range(args.users)] + ["bank 'q' ü"]
        for u in users:
            cur.execute("SELECT credits.credit_init(%s, 200)", (u,))
        shared = Shared(users)
        cur.execute("SELECT count(*) FROM pg_proc WHERE proname = 'run_jobs'"
                    " AND pronamespace = 'credits'::regnamespace")
        shared.run_jobs = cur.fetchone()[0] == 1
        # a plan that renews every second, so renewals race the sessions
        cur.execute("INSERT INTO credits.plans (plan, allowance, period, valid_from)"
                    " VALUES ('tick', 3, '1 second', '-infinity')")
        # S4: one key namespace per user (a key of credit_add is refused by credit_hold)
        cur.execute("BEGIN")
        cur.execute("SELECT credits.credit_add('probe', 5, 'probe', '{}', 'probe-key')")
        try:
            cur.execute("SELECT credits.credit_hold('probe', 1, 'probe', '{}', '1 hour', 'probe-key')")
            shared.s4 = False
        except psycopg2.Error as e:
            shared.s4 = e.pgcode == "CR003"
        cur.execute("ROLLBACK")
        t0 = time.time()
        threads = [threading.Thread(target=session, args=(n, args, shared, db)) for n in range(args.sessions)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        dt = time.time() - t0
        print("bank: %d sessions x %d operations on %d accounts in %.1f s" % (
            args.sessions, args.ops, len(users), dt))
        print("bank: " + ", ".join("%s %d" % kv for kv in sorted(shared.counts.items())))

        check("no unexpected error", not shared.errors, "\n  ".join(shared.errors[:10]))
        cur.execute("SELECT (SELECT coalesce(sum(balance), 0) FROM credits.accounts),"
                    " (SELECT coalesce(sum(amount), 0) FROM credits.ledger)")
        b, l = cur.fetchone()
        check("sum of balances = sum of the ledger (%s)" % b, b == l, (b, l))
        cur.execute("SELECT count(*) FROM credits.credit_verify_all()")
        check("credit_verify_all() is empty", cur.fetchone()[0] == 0)
        cur.execute("SELECT user_id, balance, credits.credit_available(user_id) FROM credits.accounts"
                    " WHERE balance < 0 OR credits.credit_available(user_id) < 0")
        neg = cur.fetchall()
        check("no balance or available credit is negative", not neg, neg)

        # exactly one effect per key
        bad = []
        for (u, k), ids in shared.results.items():
            fn = shared.keys[(u, k)][0]
            if fn == "hold":
                cur.execute("SELECT array_agg(id) FROM credits.holds WHERE user_id = %s AND idempotency_key = %s",
                            (u, k))
            else:
                cur.execute("SELECT array_agg(id) FROM credits.ledger WHERE user_id = %s AND idempotency_key = %s",
                            (u, k))
            rows = cur.fetchone()[0] or []
            if len(rows) != 1 or ids != {rows[0]}:
                bad.append((u, k, fn, sorted(ids), rows))
        for (u, k), (fn, _, _) in shared.keys.items():
            if (u, k) in shared.results:
                continue
            table = "credits.holds" if fn == "hold" else "credits.ledger"
            cur.execute("SELECT count(*) FROM " + table + " WHERE user_id = %s AND idempotency_key = %s", (u, k))
            if cur.fetchone()[0] != 0:
                bad.append((u, k, fn, "no call succeeded", "but it has an effect"))
        check("every idempotency key had exactly one effect (%d keys, %d retried calls)" % (
            len(shared.keys), sum(v for k, v in shared.counts.items() if k.startswith("keyed"))), not bad, bad[:5])

        cur.execute("SELECT user_id, id, amount, balance_after FROM ("
                    " SELECT user_id, id, amount, balance_after,"
                    "  coalesce(lag(balance_after) OVER (PARTITION BY user_id ORDER BY id), 0) AS prev"
                    " FROM credits.ledger) s WHERE balance_after <> prev + amount")
        broken = cur.fetchall()
        check("balance_after chains per account in id order", not broken, broken[:5])

        cur.execute("SELECT a.user_id, a.held, coalesce(h.s, 0) FROM credits.accounts a"
                    " LEFT JOIN (SELECT user_id, sum(amount) s FROM credits.holds WHERE status = 'open'"
                    " GROUP BY user_id) h USING (user_id) WHERE a.held <> coalesce(h.s, 0)")
        r = cur.fetchall()
        check("accounts.held = the open holds", not r, r)
        cur.execute("SELECT a.user_id, a.expiring, coalesce(g.s, 0) FROM credits.accounts a"
                    " LEFT JOIN (SELECT user_id, sum(remaining + reserved) s FROM credits.grants"
                    " WHERE expires_at IS NOT NULL GROUP BY user_id) g USING (user_id)"
                    " WHERE a.expiring <> coalesce(g.s, 0)")
        r = cur.fetchall()
        check("accounts.expiring = the expiring grants' unspent and reserved credit", not r, r)
        cur.execute("SELECT user_id, id FROM (SELECT user_id, id, created_at,"
                    " lag(created_at) OVER (PARTITION BY user_id ORDER BY id) AS prev"
                    " FROM credits.ledger) s WHERE created_at < prev")
        back = cur.fetchall()
        cur.execute("SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                    " WHERE n.nspname = 'credits' AND p.proname = 'credit_balance_at'")
        if cur.fetchone()[0]:
            check("created_at never goes backwards along an account's rows (S6)", not back, back[:5])
        else:
            print("skip: created_at order (defect 7: S6 not in main; %d rows go backwards)" % len(back))

        # S2: live plan-allowance credit never exceeds the current plan's
        # allowance plus its rollover cap
        cur.execute("SELECT s.user_id, s.plan, g.live, p.allowance, p.policy, p.rollover_cap"
                    " FROM credits.subscriptions s"
                    " JOIN LATERAL (SELECT coalesce(sum(remaining + reserved), 0) AS live FROM credits.grants"
                    "  WHERE user_id = s.user_id AND source = 'plan' AND expires_at > now()) g ON true"
                    " JOIN LATERAL (SELECT * FROM credits.plans WHERE plan = s.plan"
                    "  ORDER BY valid_from DESC LIMIT 1) p ON true"
                    " WHERE g.live > p.allowance + CASE WHEN p.policy = 'rollover'"
                    "  THEN coalesce(p.rollover_cap, g.live) ELSE 0 END")
        over = cur.fetchall()
        check("live plan-allowance credit <= the plan's allowance + rollover cap", not over, over)
        cur.execute("SELECT to_regclass('credits.job_failures') IS NOT NULL")
        if cur.fetchone()[0]:
            cur.execute("SELECT job, user_id, sqlstate, message FROM credits.job_failures")
            jf = cur.fetchall()
            check("no job failed on an account", not jf, jf[:5])

        # after the jobs have run, nothing expired is left and the books still balance
        cur.execute("SELECT credits.credit_expire_holds(), credits.credit_expire_grants()")
        cur.execute("SELECT count(*) FROM credits.credit_verify_all()")
        check("credit_verify_all() is empty after the expiry jobs", cur.fetchone()[0] == 0)
        conn.close()
    finally:
        acur.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)
        admin.close()
    if fails:
        print("FAIL: bank (%d checks failed)" % len(fails))
        sys.exit(1)
    print("PASS: bank")


if __name__ == "__main__":
    main()
