// The Redis mirror read with ioredis: after each route, balance:<u> and
// txs:<u> agree with what Prisma returned within 2 s (credits-sync's
// convergence bound), and the balance route then serves from Redis.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { api, cache, closeAll, db, eventually, uid } from './lib.mjs';

after(closeAll);

const CONVERGENCE_MS = 2000;

// The ledger rows as credits-sync writes them into txs:<u>.
function expectedMember(r) {
	return {
		id: Number(r.id),
		amount: Number(r.amount),
		balance: Number(r.balance_after),
		action: r.action,
		metadata: r.metadata,
		created_at_ms: r.created_at.getTime(),
	};
}

function cachedMember(m) {
	const { score, created_at, ...rest } = m;
	const ms = Date.parse(created_at);
	// The score is created_at in epoch milliseconds.
	assert.ok(Math.abs(score - ms) <= 1, `score ${score} vs created_at ${created_at}`);
	return { ...rest, created_at_ms: ms };
}

function sameMoment(a, b) {
	return Math.abs(a.created_at_ms - b.created_at_ms) <= 1;
}

// Wait until Redis agrees with PostgreSQL (read through Prisma) for user u,
// and with `balance` when given (the balance a route returned).
async function agrees(u, balance) {
	const sqlBalance = await db().balance(u);
	if (balance !== undefined)
		assert.equal(sqlBalance, BigInt(balance), 'the route returned the committed balance');
	const rows = await db().history(u, 1000);
	// By id: rows of concurrent transactions can have created_at out of id
	// order (it is the transaction's start time).
	const byId = (a, b) => b.id - a.id;
	const want = rows.map(expectedMember).sort(byId);
	await eventually(async () => {
		assert.equal(await cache().balance(u), sqlBalance, `balance:${u}`);
		const cached = (await cache().recent(u, 1000)).map(cachedMember);
		// Newest first by score.
		for (let i = 1; i < cached.length; i++)
			assert.ok(cached[i - 1].created_at_ms >= cached[i].created_at_ms, 'ZREVRANGE is newest first');
		const got = [...cached].sort(byId);
		assert.equal(got.length, want.length, `txs:${u} has every ledger row`);
		got.forEach((g, i) => {
			const w = want[i];
			assert.ok(sameMoment(g, w), `created_at of row ${w.id}`);
			assert.deepEqual({ ...g, created_at_ms: 0 }, { ...w, created_at_ms: 0 });
		});
	}, CONVERGENCE_MS);
	const b = await api('/api/credits/balance', { user: u });
	assert.deepEqual(b.body, { user_id: u, balance: sqlBalance.toString(), source: 'redis' });
}

describe('Redis mirror (ioredis) agrees with PostgreSQL (Prisma)', () => {
	test('after every route', async () => {
		const u = uid('redis');
		let r = await api('/api/webhooks/user-created', { body: { user_id: u } });
		assert.equal(r.status, 200);
		await agrees(u, r.body.balance);

		r = await api('/api/chat', { user: u, body: { message: 'hello' } });
		assert.equal(r.status, 200);
		await agrees(u, r.body.balance);

		r = await api('/api/admin/grant', { body: { user_id: u, amount: 5000, source: 'purchase' } });
		assert.equal(r.status, 200);
		await agrees(u, r.body.balance);

		r = await api('/api/canvas', { user: u, body: { complexity: 'complex' } });
		assert.equal(r.status, 200);
		await agrees(u, r.body.balance);

		r = await api('/api/video', { user: u, body: { estimated_seconds: 4, actual_seconds: 3 } });
		assert.equal(r.status, 200);
		await agrees(u, r.body.balance);

		r = await api('/api/video', { user: u, body: { estimated_seconds: 4, fail: true } });
		assert.equal(r.status, 200);
		await agrees(u);

		const start = await api('/api/train/start', { user: u, body: { estimated_gpu_hours: 2 } });
		assert.equal(start.status, 200);
		await agrees(u);

		r = await api('/api/train/webhook', { body: { hold_id: start.body.hold_id, status: 'succeeded', gpu_hours: 1.25 } });
		assert.equal(r.status, 200);
		await agrees(u, r.body.balance);
	});

	test('a burst of parallel chats converges to the final balance', async () => {
		const u = uid('redis-burst');
		assert.equal((await api('/api/webhooks/user-created', { body: { user_id: u } })).status, 200);
		const results = await Promise.all(Array.from({ length: 20 }, (_, i) =>
			api('/api/chat', { user: u, body: { message: `m${i}` } })));
		assert.equal(results.filter((x) => x.status === 200).length, 10);
		await agrees(u, 0n);
	});

	test('balance:<u> is exact above 2^53', async () => {
		const u = uid('redis-big');
		await db().init(u, 9007199254740993n);
		await eventually(async () => {
			assert.equal(await cache().balance(u), 9007199254740993n);
			assert.equal(await cache().redis.get(cache().balanceKey(u)), '9007199254740993');
		}, CONVERGENCE_MS);
	});
});
