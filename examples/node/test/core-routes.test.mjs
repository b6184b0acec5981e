// Routes that use the core functions only: balance, history, chat.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';

import { createHandler } from '../src/app.mjs';
import { CreditsCache, createRedis } from '../src/redis.mjs';
import { api, closeAll, db, newUser, uid } from './lib.mjs';

after(closeAll);

describe('GET /api/credits/balance', () => {
	test('returns the balance as a string, equal to credit_balance()', async () => {
		const u = await newUser('bal', 123);
		const r = await api('/api/credits/balance', { user: u });
		assert.equal(r.status, 200);
		assert.equal(r.body.user_id, u);
		assert.equal(r.body.balance, '123');
		assert.ok(['redis', 'sql'].includes(r.body.source));
		assert.equal(await db().balance(u), 123n);
	});

	test('unknown account is 404', async () => {
		const r = await api('/api/credits/balance', { user: uid('nobody') });
		assert.equal(r.status, 404);
		assert.equal(r.body.error, 'unknown_account');
	});

	test('no user header is 401', async () => {
		const r = await api('/api/credits/balance');
		assert.equal(r.status, 401);
		assert.equal(r.body.error, 'no_user');
	});

	test('falls back to SQL when Redis is unreachable', async (t) => {
		// The same handler, with a real ioredis client pointed at a port
		// where nothing listens.
		const deadRedis = createRedis({ host: '127.0.0.1', port: 1 });
		deadRedis.on('error', () => {});
		const handler = createHandler({
			credits: db(),
			cache: new CreditsCache(deadRedis),
			log: { warn() {}, error() {} },
		});
		const server = createServer(handler);
		await new Promise((r) => server.listen(0, '127.0.0.1', r));
		t.after(() => {
			server.close();
			deadRedis.disconnect();
		});
		const u = await newUser('fallback', 77);
		const res = await fetch(`http://127.0.0.1:${server.address().port}/api/credits/balance`,
			{ headers: { 'x-user-id': u } });
		assert.equal(res.status, 200);
		assert.deepEqual(await res.json(), { user_id: u, balance: '77', source: 'sql' });
	});
});

describe('POST /api/chat', () => {
	test('deducts 10 credits and returns the ledger row', async () => {
		const u = await newUser('chat', 100);
		const r = await api('/api/chat', { user: u, body: { message: 'hi' } });
		assert.equal(r.status, 200);
		assert.equal(r.body.balance, '90');
		assert.equal(r.body.cost, '10');
		assert.match(r.body.tx_id, /^\d+$/);
		assert.ok(!Number.isNaN(Date.parse(r.body.created_at)));
		assert.equal(await db().balance(u), 90n);
	});

	test('insufficient credits is 402 with required and available', async () => {
		const u = await newUser('poor', 25);
		assert.equal((await api('/api/chat', { user: u, body: { message: 'a' } })).status, 200);
		assert.equal((await api('/api/chat', { user: u, body: { message: 'b' } })).status, 200);
		const r = await api('/api/chat', { user: u, body: { message: 'c' } });
		assert.equal(r.status, 402);
		assert.equal(r.body.error, 'insufficient_credits');
		assert.equal(r.body.code, 'CR001');
		assert.equal(r.body.required, '10');
		assert.equal(r.body.available, '5');
		assert.equal(r.body.detail, 'required=10 available=5');
		assert.ok(r.body.hint);
		assert.equal(await db().balance(u), 5n);
	});

	test('a retry with the same Idempotency-Key returns the same response and charges once', async () => {
		const u = await newUser('idem', 100);
		const key = uid('key');
		const first = await api('/api/chat', { user: u, key, body: { message: 'once' } });
		const second = await api('/api/chat', { user: u, key, body: { message: 'once' } });
		assert.equal(first.status, 200);
		assert.equal(second.status, 200);
		assert.deepEqual(second.body, first.body);
		assert.equal(second.text, first.text);
		assert.equal(await db().balance(u), 90n);
		const rows = await db().history(u);
		assert.equal(rows.filter((r) => r.action === 'chat_message').length, 1);
		assert.equal(rows.find((r) => r.action === 'chat_message').idempotency_key, key);
	});

	test('an Idempotency-Key already used for a different amount or action is 409', async () => {
		const u = await newUser('idem409', 100);
		const key = uid('key');
		// The key was first used by another operation of the same user.
		await db().deduct(u, 5n, 'other_action', {}, key);
		const r = await api('/api/chat', { user: u, key, body: { message: 'one' } });
		assert.equal(r.status, 409);
		assert.equal(r.body.error, 'idempotency_key_reused');
		assert.equal(r.body.code, 'CR003');
		assert.equal(await db().balance(u), 95n);
	});

	test('unknown account is 404, bad input is 400', async () => {
		const r = await api('/api/chat', { user: uid('ghost'), body: { message: 'x' } });
		assert.equal(r.status, 404);
		assert.equal(r.body.code, 'CR002');
		const u = await newUser('bad', 100);
		assert.equal((await api('/api/chat', { user: u, body: {} })).status, 400);
		const res = await fetch(`${process.env.APP_URL}/api/chat`,
			{ method: 'POST', headers: { 'x-user-id': u }, body: '{not json' });
		assert.equal(res.status, 400);
		assert.equal((await res.json()).error, 'invalid_json');
		assert.equal((await api('/api/chat', { user: u, method: 'GET' })).status, 405);
		assert.equal(await db().balance(u), 100n);
	});

	test('50 parallel requests on a 100-credit account: exactly 10 succeed', async () => {
		const u = await newUser('race', 100);
		const results = await Promise.all(Array.from({ length: 50 }, (_, i) =>
			api('/api/chat', { user: u, key: `race-${i}`, body: { message: `m${i}` } })));
		const ok = results.filter((r) => r.status === 200);
		const refused = results.filter((r) => r.status === 402);
		assert.equal(ok.length, 10);
		assert.equal(refused.length, 40);
		// Each success saw a distinct balance, 90 down to 0.
		assert.deepEqual(ok.map((r) => Number(r.body.balance)).sort((a, b) => a - b),
			[0, 10, 20, 30, 40, 50, 60, 70, 80, 90]);
		for (const r of refused) {
			assert.equal(r.body.required, '10');
			assert.ok(BigInt(r.body.available) < 10n);
		}
		assert.equal(await db().balance(u), 0n);
		const rows = await db().history(u, 100);
		assert.equal(rows.filter((r) => r.action === 'chat_message').length, 10);
	});
});

describe('GET /api/credits/history', () => {
	test('lists the ledger rows newest first', async () => {
		const u = await newUser('hist', 100);
		await api('/api/chat', { user: u, body: { message: 'one' } });
		await api('/api/chat', { user: u, body: { message: 'two' } });
		const r = await api('/api/credits/history?limit=10', { user: u });
		assert.equal(r.status, 200);
		const t = r.body.transactions;
		assert.equal(t.length, 3);
		assert.deepEqual(t.map((x) => [x.action, x.amount, x.balance_after]),
			[['chat_message', '-10', '80'], ['chat_message', '-10', '90'], ['init', '100', '100']]);
		assert.ok(BigInt(t[0].id) > BigInt(t[1].id));
		assert.deepEqual(t[0].metadata, { app: 'chat', chars: 3 });
		const limited = await api('/api/credits/history?limit=1', { user: u });
		assert.equal(limited.body.transactions.length, 1);
		assert.equal((await api('/api/credits/history?limit=0', { user: u })).status, 400);
	});
});

describe('BigInt serialisation', () => {
	test('balances above 2^53 survive JSON exactly', async () => {
		const big = 9007199254740993n;		// 2^53 + 1: not a JS number
		const u = await newUser('big', big);
		const b = await api('/api/credits/balance', { user: u });
		assert.equal(b.status, 200);
		assert.match(b.text, /"balance":"9007199254740993"/);
		const c = await api('/api/chat', { user: u, body: { message: 'big' } });
		assert.equal(c.status, 200);
		assert.match(c.text, /"balance":"9007199254740983"/);
		assert.equal(BigInt(c.body.balance), big - 10n);
		const h = await api('/api/credits/history', { user: u });
		assert.equal(h.body.transactions[1].amount, '9007199254740993');
		assert.equal(h.body.transactions[0].balance_after, '9007199254740983');
	});
});
