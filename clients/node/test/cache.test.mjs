// Cached reads: balance:<user>, available:<user> and txs:<user> written by
// credits-sync, read with ioredis and node-redis; the SQL fallback on a
// miss, on a Redis failure, and on demand; never 0 for a missing key.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import IORedis from 'ioredis';

import { CreditsClient, UnknownAccountError } from '@credits/client';

import { APP_ROLE, appClient, closeAll, ensureRoles, eventually, ioredis, nodeRedis, pgPool, prismaClient, uid } from './lib.mjs';

after(closeAll);

describe('cached reads with ioredis', () => {
	let c;
	let redis;
	before(async () => {
		c = await appClient(pgPool);
		redis = ioredis();
	});

	test('getBalance: Redis when synced, SQL on a missing key, never 0', async () => {
		const u = uid('miss');
		await c.initializeUser(u, 70);
		await eventually(async () => assert.equal((await c.getBalanceWithSource(u)).source, 'redis'));
		await redis.del(`balance:${u}`);
		assert.deepEqual(await c.getBalanceWithSource(u), { balance: 70n, source: 'sql' });
		// No account at all: an error, not 0.
		await assert.rejects(c.getBalance(uid('nobody')), UnknownAccountError);
	});

	test('getBalance reads Redis (a planted value shows), and source: sql bypasses it', async () => {
		const u = uid('plant');
		await c.initializeUser(u, 10);
		await eventually(async () => assert.equal((await c.getBalanceWithSource(u)).source, 'redis'));
		await redis.set(`balance:${u}`, '123456789012345678');
		assert.equal(await c.getBalance(u), 123456789012345678n, 'read from Redis, exactly');
		assert.equal(await c.getBalance(u, { source: 'sql' }), 10n);
		await redis.del(`balance:${u}`);
	});

	test('getAvailable reads available:<user>', async () => {
		const u = uid('avail');
		await c.initializeUser(u, 100);
		await c.hold(u, 40, 'video_generation');
		await eventually(async () => {
			assert.equal(await redis.get(`available:${u}`), '60');
			assert.equal(await c.getAvailable(u), 60n);
		});
	});

	test('a Redis failure falls back to SQL and is reported', async () => {
		const dead = new IORedis({ port: 1, lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
		dead.on('error', () => {});
		const seen = [];
		const d = new CreditsClient({ db: pgPool(APP_ROLE), redis: dead, onCacheError: (e) => seen.push(e) });
		const u = uid('dead');
		await d.initializeUser(u, 5);
		assert.deepEqual(await d.getBalanceWithSource(u), { balance: 5n, source: 'sql' });
		const page = await d.history(u);
		assert.equal(page.source, 'sql');
		assert.equal(page.transactions.length, 1);
		assert.ok(seen.length >= 2, 'onCacheError saw the failures');
		dead.disconnect();
	});

	test('getTransactions from txs:<user> when it covers the page, else SQL', async () => {
		const u = uid('txs');
		await c.initializeUser(u, 1000);
		for (let i = 1; i <= 9; i++)
			await c.deduct(u, i, 'chat_message', { n: i, big: '9007199254740993' });
		const sqlRows = await c.getTransactions(u, { limit: 100, source: 'sql' });
		await eventually(async () => assert.equal(await redis.zcard(`txs:${u}`), 10));

		// A full page within the cache: from Redis, equal to SQL's rows.
		const page = await c.history(u, { limit: 4 });
		assert.equal(page.source, 'redis');
		// Redis keeps neither the key nor the metered columns.
		const strip = ({ quantity, rate, carry, ...t }) => ({ ...t, idempotencyKey: null });
		assert.deepEqual(page.transactions, sqlRows.slice(0, 4).map(strip));
		// Paging through Redis gives every row once, in order.
		const ids = [];
		let cursor = null;
		const sources = new Set();
		do {
			const p = await c.history(u, { limit: 4, cursor });
			sources.add(p.source);
			ids.push(...p.transactions.map((t) => t.txId));
			cursor = p.nextCursor;
		} while (cursor);
		assert.deepEqual(ids, sqlRows.map((t) => t.txId));
		assert.ok(sources.has('redis'));
		// The last page is short and has no start time: the cache cannot know
		// it holds the account's first row, so SQL answers.
		assert.ok(sources.has('sql'));

		// More rows than the account has, no start: SQL.
		assert.equal((await c.history(u, { limit: 50 })).source, 'sql');
		// A window starting after the oldest cached row: Redis, even if short.
		const since = new Date(sqlRows[2].timestamp.getTime());
		const w = await c.history(u, { limit: 50, startTime: since });
		const want = sqlRows.filter((t) => t.timestamp >= since).map(strip);
		if (sqlRows.at(-1).timestamp < since) {
			assert.equal(w.source, 'redis');
		}
		assert.deepEqual(w.transactions, want);
		// A missing key: SQL.
		await redis.del(`txs:${u}`);
		const after = await c.history(u, { limit: 2 });
		assert.equal(after.source, 'sql');
		assert.deepEqual(after.transactions, sqlRows.slice(0, 2));
	});

	test('inside a transaction reads go to SQL (Redis cannot see uncommitted rows)', async () => {
		const u = uid('in-tx');
		await c.initializeUser(u, 50);
		await eventually(async () => assert.equal((await c.getBalanceWithSource(u)).source, 'redis'));
		await c.transaction(async (t) => {
			await t.deduct(u, 20, 'chat_message');
			assert.deepEqual(await t.getBalanceWithSource(u), { balance: 30n, source: 'sql' });
			assert.equal((await t.history(u, { limit: 1 })).source, 'sql');
		});
	});

	test('a key prefix (credits-sync --prefix) is honoured', async () => {
		const p = new CreditsClient({ db: pgPool(APP_ROLE), redis, redisPrefix: 'client-test-prefix:' });
		const u = uid('prefix');
		await p.initializeUser(u, 3);
		await redis.set(`client-test-prefix:balance:${u}`, '777');
		assert.deepEqual(await p.getBalanceWithSource(u), { balance: 777n, source: 'redis' });
		await redis.del(`client-test-prefix:balance:${u}`);
		assert.deepEqual(await p.getBalanceWithSource(u), { balance: 3n, source: 'sql' });
	});
});

describe('cached reads with node-redis, on Prisma', () => {
	test('getBalance and history', async () => {
		await ensureRoles();
		const c = new CreditsClient({ db: prismaClient(APP_ROLE), redis: await nodeRedis() });
		const u = uid('nr');
		await c.initializeUser(u, 100);
		for (let i = 0; i < 5; i++)
			await c.deduct(u, 1, 'chat_message');
		await eventually(async () => assert.deepEqual(await c.getBalanceWithSource(u), { balance: 95n, source: 'redis' }));
		await eventually(async () => {
			const page = await c.history(u, { limit: 3 });
			assert.equal(page.source, 'redis');
			assert.deepEqual(page.transactions.map((t) => t.balance), [95n, 96n, 97n]);
		});
	});
});
