// Every method of CreditsClient, on both drivers (node-postgres and Prisma 7
// over @prisma/adapter-pg), as a login role granted credits_app, against the
// real stack.  Results are checked against SQL read separately.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { CreditsClient, CreditsSDK, InvalidArgumentError } from '@credits/client';

import { DRIVERS, READER_ROLE, appClient, closeAll, ensureRoles, eventually, opsClient, sql, uid } from './lib.mjs';

after(closeAll);

async function hasArg(fn, arg) {
	const rows = await sql(`SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
	                        WHERE n.nspname = 'credits' AND p.proname = $1 AND $2 = ANY (p.proargnames)`, [fn, arg]);
	return rows.length > 0;
}

async function hasFunction(fn) {
	return (await sql(`SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
	                   WHERE n.nspname = 'credits' AND p.proname = $1`, [fn])).length > 0;
}

const sqlBalance = async (u) => BigInt((await sql('SELECT credits.credit_balance($1) AS b', [u]))[0].b);

for (const [driver, make] of DRIVERS) {
	describe(`CreditsClient on ${driver}`, () => {
		let c;
		let admin;
		before(async () => {
			c = await appClient(make);
			admin = await opsClient(make);
		});

		test('knows its driver; CreditsSDK is the same class', () => {
			assert.equal(c.driver, driver === 'prisma' ? 'prisma' : 'pg');
			assert.equal(CreditsSDK, CreditsClient);
		});

		test('initializeUser opens an account once', async () => {
			const u = uid('init');
			const first = await c.initializeUser(u, 250n);
			assert.equal(typeof first.txId, 'bigint');
			assert.equal(first.balance, 250n);
			assert.ok(first.timestamp instanceof Date);
			const again = await c.initializeUser(u, 999n);
			assert.deepEqual(again, first, 'a retried signup grants nothing');
			assert.equal(await sqlBalance(u), 250n);
			const dflt = await c.initializeUser(uid('init-default'));
			assert.ok(dflt.balance >= 0n);
			const meta = await c.initializeUser(uid('init-meta'), 0, { metadata: { plan: 'trial' } });
			assert.equal(meta.balance, 0n);
		});

		test('deduct and add return { txId, balance, timestamp }', async () => {
			const u = uid('spend');
			await c.initializeUser(u, 100);
			const d = await c.deduct(u, 10, 'chat_message', { model: 'small' });
			assert.equal(d.balance, 90n);
			const a = await c.add(u, 5n, 'refund', { reason: 'test' });
			assert.equal(a.balance, 95n);
			assert.ok(a.txId > d.txId);
			assert.equal(await sqlBalance(u), 95n);
			const opened = await c.add(uid('add-opens'), 7, 'purchase');
			assert.equal(opened.balance, 7n);
		});

		test('idempotency keys on deduct and add return the original row', async () => {
			const u = uid('key');
			await c.initializeUser(u, 100);
			const d1 = await c.deduct(u, 10, 'chat_message', {}, { idempotencyKey: 'msg-1' });
			const d2 = await c.deduct(u, 10, 'chat_message', { other: 'metadata' }, { idempotencyKey: 'msg-1' });
			assert.deepEqual(d2, d1);
			const a1 = await c.add(u, 50, 'purchase', undefined, { idempotencyKey: 'order-1' });
			const a2 = await c.add(u, 50, 'purchase', undefined, { idempotencyKey: 'order-1' });
			assert.deepEqual(a2, a1);
			assert.equal(await sqlBalance(u), 140n);
		});

		test('amounts are exact bigints beyond 2^53', async () => {
			const u = uid('big');
			const huge = 2n ** 60n + 1n;
			const r = await c.add(u, huge, 'purchase');
			assert.equal(r.balance, huge);
			assert.equal(await c.getBalance(u, { source: 'sql' }), huge);
			const d = await c.deduct(u, 1n, 'chat_message');
			assert.equal(d.balance, 2n ** 60n);
			await assert.rejects(c.deduct(u, 2 ** 60, 'x'), InvalidArgumentError, 'an unsafe number is refused, not rounded');
			await assert.rejects(c.deduct(u, 1.5, 'x'), InvalidArgumentError);
			assert.equal(await sqlBalance(u), 2n ** 60n, 'nothing was sent');
		});

		test('getBalance reads Redis when synced, SQL on demand', async () => {
			const u = uid('bal');
			await c.initializeUser(u, 42);
			assert.deepEqual(await c.getBalanceWithSource(u, { source: 'sql' }), { balance: 42n, source: 'sql' });
			await eventually(async () => assert.deepEqual(await c.getBalanceWithSource(u), { balance: 42n, source: 'redis' }));
			assert.equal(await c.getBalance(u), 42n);
		});

		test('getTransactions and history page newest first with a cursor', async () => {
			const u = uid('hist');
			await c.initializeUser(u, 1000);
			for (let i = 1; i <= 6; i++)
				await c.deduct(u, i, 'chat_message', { i });
			const all = await c.getTransactions(u, { limit: 100, source: 'sql' });
			assert.equal(all.length, 7);
			assert.deepEqual(all.map((t) => t.amount), [-6n, -5n, -4n, -3n, -2n, -1n, 1000n]);
			assert.equal(all[0].balance, 1000n - 21n);
			assert.deepEqual(all[0].metadata, { i: 6 });
			for (let i = 1; i < all.length; i++)
				assert.ok(all[i - 1].txId > all[i].txId);
			// Pages of 3 with the cursor: no row skipped or repeated.
			for (const source of ['sql', 'auto']) {
				const seen = [];
				let cursor = null;
				let pages = 0;
				do {
					const page = await c.history(u, { limit: 3, cursor, source });
					seen.push(...page.transactions.map((t) => t.txId));
					cursor = page.nextCursor;
					pages++;
				} while (cursor);
				assert.deepEqual(seen, all.map((t) => t.txId), `pages from ${source}`);
				assert.equal(pages, 3);
			}
			// Time window: start <= created_at < end.
			const mid = all[3].timestamp;
			const older = await c.getTransactions(u, { endTime: mid, source: 'sql' });
			assert.ok(older.every((t) => t.timestamp < mid));
			const newer = await c.getTransactions(u, { startTime: mid, source: 'sql' });
			assert.ok(newer.every((t) => t.timestamp >= mid));
			assert.equal(older.length + newer.length, 7);
		});

		test('cost, calculateCost and charge price by credits.prices', async () => {
			assert.equal(await c.cost('video_generation', 30), 300n);
			assert.equal(await c.calculateCost('video_generation', '2.5'), 25n);
			assert.equal(await c.cost('llm_tokens', 2000n), 1n);
			const u = uid('charge');
			await c.initializeUser(u, 1000);
			const r = await c.charge(u, 'canvas_generation_complex', 1, { app: 'canvas' }, { idempotencyKey: 'img-1' });
			assert.equal(r.balance, 925n);
			assert.deepEqual(await c.charge(u, 'canvas_generation_complex', 1, {}, { idempotencyKey: 'img-1' }), r);
			const t = await c.charge(u, 'llm_tokens', '4000');
			assert.equal(t.balance, 923n);
		});

		test('hold, capture and release', async () => {
			const u = uid('hold');
			await c.initializeUser(u, 1000);
			const h = await c.hold(u, 300, 'video_generation', { ttl: 900, metadata: { est: 30 } });
			assert.deepEqual({ held: h.held, available: h.available }, { held: 300n, available: 700n });
			assert.equal(await c.getAvailable(u, { source: 'sql' }), 700n);
			assert.equal(await c.getBalance(u, { source: 'sql' }), 1000n, 'a hold does not change the balance');
			const cap = await c.capture(h.holdId, { amount: 120, metadata: { seconds: 12 } });
			assert.equal(cap.balance, 880n);
			assert.equal(await c.getAvailable(u, { source: 'sql' }), 880n, 'the rest is released');

			// Priced by quantity, retried with one key.
			const h2 = await c.hold(u, { quantity: 8 }, 'video_generation', { ttl: '15 minutes', idempotencyKey: 'vid-1' });
			assert.equal(h2.held, 80n);
			assert.deepEqual(await c.hold(u, { quantity: 8 }, 'video_generation', { idempotencyKey: 'vid-1' }), h2);
			const c2 = await c.capture(h2.holdId, { quantity: 6, action: 'video_generation', idempotencyKey: 'vid-1-capture' });
			assert.equal(c2.balance, 820n);
			assert.deepEqual(await c.capture(h2.holdId, { quantity: 6, action: 'video_generation', idempotencyKey: 'vid-1-capture' }), c2);

			// The whole hold, then a release.
			const h3 = await c.hold(u, 20, 'training_job');
			assert.equal((await c.capture(h3.holdId)).balance, 800n);
			const h4 = await c.hold(u, 500, 'training_job', { ttl: 3600 });
			assert.equal(h4.available, 300n);
			assert.equal(await c.release(h4.holdId), 800n);
			if (await hasArg('credit_release', 'idempotency_key')) {
				const h5 = await c.hold(u, 50, 'training_job');
				const r1 = await c.release(h5.holdId, { idempotencyKey: 'rel-1' });
				assert.equal(await c.release(h5.holdId, { idempotencyKey: 'rel-1' }), r1);
			}
		});

		test('grant, with expiry and key', async () => {
			const u = uid('grant');
			const expires = new Date(Date.now() + 86400e3);
			const g = await c.grant(u, 500, 'promo', { expiresAt: expires, metadata: { campaign: 'x' }, idempotencyKey: 'promo-1' });
			assert.equal(g.balance, 500n);
			assert.deepEqual(await c.grant(u, 500, 'promo', { expiresAt: expires, idempotencyKey: 'promo-1' }), g);
			assert.equal((await c.grant(u, 1n, 'admin')).balance, 501n);
		});

		test('subscribe and usage', async () => {
			const u = uid('plan');
			await c.initializeUser(u, 0);
			const s = await c.subscribe(u, 'pro');
			assert.equal(s.granted, 100n);
			assert.equal(s.balance, 100n);
			assert.ok(s.periodStart < s.periodEnd);
			await c.deduct(u, 30, 'chat_message', { tokens: 1234 });
			const usage = await c.usage(u);
			assert.equal(usage.balance, 70n);
			assert.equal(usage.available, 70n);
			assert.equal(usage.held, 0n);
			assert.equal(usage.plan, 'pro');
			assert.equal(usage.spentLifetime, 30n);
			assert.equal(usage.tokensLifetime, 1234n);
			if (await hasArg('credit_subscribe', 'idempotency_key')) {
				const v = uid('plan-key');
				const s1 = await c.subscribe(v, 'enterprise', { idempotencyKey: 'sub-1' });
				assert.deepEqual(await c.subscribe(v, 'enterprise', { idempotencyKey: 'sub-1' }), s1);
			}
		});

		test('dailyUsage, as a role that may read credits.daily_usage', async () => {
			await ensureRoles();
			const reader = new CreditsClient({ db: make(READER_ROLE) });
			const u = uid('daily');
			await c.initializeUser(u, 1000);
			await c.deduct(u, 10, 'chat_message', { tokens: 100 });
			await c.deduct(u, 10, 'chat_message');
			await c.charge(u, 'canvas_generation_simple', 1);
			const rows = await reader.dailyUsage(u, { days: 7 });
			const today = new Date().toISOString().slice(0, 10);
			assert.deepEqual(rows, [
				{ day: today, action: 'canvas_generation_simple', credits: 50n, tokens: 0n },
				{ day: today, action: 'chat_message', credits: 20n, tokens: 100n },
			]);
		});

		test('verifyBalance (credits_app); rebuildBalance and verifyAll (credits_ops)', async () => {
			const u = uid('verify');
			await c.initializeUser(u, 100);
			await c.deduct(u, 1, 'chat_message');
			assert.deepEqual(await c.verifyBalance(u),
				{ valid: true, cached: 99n, calculated: 99n, difference: 0n, brokenTxId: null, problem: null });
			assert.equal(await admin.rebuildBalance(u), 99n);
			const bad = await admin.verifyAll();
			assert.ok(Array.isArray(bad));
			assert.equal(bad.find((m) => m.userId === u), undefined);
		});

		test('jobs: expireHolds, expireGrants, renew, runJobs (credits_ops)', async () => {
			const u = uid('jobs');
			await c.initializeUser(u, 100);
			await c.hold(u, 10, 'video_generation', { ttl: 0.2 });
			await new Promise((r) => setTimeout(r, 300));
			assert.ok(await admin.expireHolds() >= 1);
			assert.equal(typeof await admin.expireGrants(), 'number');
			assert.equal(typeof await admin.renew(), 'number');
			await c.hold(u, 10, 'video_generation', { ttl: 0.2 });
			await new Promise((r) => setTimeout(r, 300));
			await admin.runJobs({ batchSize: 10, jobs: ['expire_holds'] });
			await admin.runJobs();
			assert.equal(await c.getAvailable(u, { source: 'sql' }), 100n);
			assert.equal((await c.usage(u)).held, 0n, 'the expired holds are closed');
			assert.match(await c.libraryVersion(), /^\d+\.\d+/);
			// The app role may not run jobs.
			await assert.rejects(c.expireHolds(), (e) => !(e instanceof InvalidArgumentError) && /permission denied/.test(e.message));
		});

		test('balanceAt: the balance at a past moment', async () => {
			const u = uid('at');
			const r1 = await c.initializeUser(u, 100);
			await new Promise((r) => setTimeout(r, 20));
			const r2 = await c.deduct(u, 30, 'chat_message');
			// Timestamps are whole milliseconds in JS, microseconds in SQL.
			assert.equal(await c.balanceAt(u, new Date(r1.timestamp.getTime() - 1)), 0n);
			assert.equal(await c.balanceAt(u, new Date(r1.timestamp.getTime() + 1)), 100n);
			assert.equal(await c.balanceAt(u, new Date(r2.timestamp.getTime() + 1)), 70n);
			assert.equal(await c.balanceAt(u, new Date(Date.now() + 60e3).toISOString()), 70n);
		});
	});
}
