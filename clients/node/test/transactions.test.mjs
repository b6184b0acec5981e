// Spending inside the app's own transaction: a rolled-back transaction
// undoes the spend together with the app's writes, on Prisma interactive
// transactions and node-postgres BEGIN/ROLLBACK, by hand and with
// client.transaction(); and idempotent retries, concurrent ones included.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { InsufficientCreditsError } from '@credits/client';

import { APP_ROLE, DRIVERS, appClient, closeAll, ensureRoles, pgPool, prismaClient, sql, uid } from './lib.mjs';

after(closeAll);

// The app's own table, written in the same transaction as the spend.
before(async () => {
	await ensureRoles();
	await sql(`CREATE TABLE IF NOT EXISTS public.client_test_orders (
	             id bigserial PRIMARY KEY, user_id text NOT NULL, item text NOT NULL)`).catch(() => {});
	await sql(`GRANT SELECT, INSERT ON public.client_test_orders TO ${APP_ROLE}`);
	await sql(`GRANT USAGE ON SEQUENCE public.client_test_orders_id_seq TO ${APP_ROLE}`);
});

const orders = async (u) => Number((await sql('SELECT count(*) AS n FROM public.client_test_orders WHERE user_id = $1', [u]))[0].n);
const balance = async (u) => BigInt((await sql('SELECT credits.credit_balance($1) AS b', [u]))[0].b);
const ledgerRows = async (u) => Number((await sql('SELECT count(*) AS n FROM credits.credit_history($1, 1000)', [u]))[0].n);

describe('Prisma interactive transactions', () => {
	let prisma;
	let credits;
	before(async () => {
		credits = await appClient(prismaClient, { redis: true });
		prisma = prismaClient(APP_ROLE);
	});

	test('a rolled-back transaction undoes the spend and the app write', async () => {
		const u = uid('ptx');
		await credits.initializeUser(u, 100);
		await assert.rejects(prisma.$transaction(async (tx) => {
			await tx.$executeRawUnsafe('INSERT INTO public.client_test_orders (user_id, item) VALUES ($1, $2)', u, 'poster');
			const r = await credits.with(tx).deduct(u, 60, 'canvas_generation_simple');
			assert.equal(r.balance, 40n);
			// Inside: SQL sees the spend (Redis cannot, so with() reads SQL).
			assert.deepEqual(await credits.with(tx).getBalanceWithSource(u), { balance: 40n, source: 'sql' });
			throw new Error('payment provider said no');
		}), /payment provider said no/);
		assert.equal(await balance(u), 100n);
		assert.equal(await orders(u), 0);
		assert.equal(await ledgerRows(u), 1);
	});

	test('a committed transaction keeps both', async () => {
		const u = uid('ptx-ok');
		await credits.initializeUser(u, 100);
		await prisma.$transaction(async (tx) => {
			await tx.$executeRawUnsafe('INSERT INTO public.client_test_orders (user_id, item) VALUES ($1, $2)', u, 'poster');
			await credits.with(tx).deduct(u, 60, 'canvas_generation_simple');
		});
		assert.equal(await balance(u), 40n);
		assert.equal(await orders(u), 1);
	});

	test('insufficient credits in the middle rolls back the earlier spend', async () => {
		const u = uid('ptx-402');
		await credits.initializeUser(u, 100);
		await assert.rejects(credits.transaction(async (c, tx) => {
			await tx.$executeRawUnsafe('INSERT INTO public.client_test_orders (user_id, item) VALUES ($1, $2)', u, 'a');
			await c.deduct(u, 60, 'chat_message');
			await c.deduct(u, 60, 'chat_message');
		}), InsufficientCreditsError);
		assert.equal(await balance(u), 100n);
		assert.equal(await orders(u), 0);
	});
});

describe('node-postgres transactions', () => {
	let pool;
	let credits;
	before(async () => {
		credits = await appClient(pgPool, { redis: true });
		pool = pgPool(APP_ROLE);
	});

	test('BEGIN ... ROLLBACK on a checked-out client undoes the spend', async () => {
		const u = uid('pgtx');
		await credits.initializeUser(u, 100);
		const conn = await pool.connect();
		try {
			await conn.query('BEGIN');
			await conn.query('INSERT INTO public.client_test_orders (user_id, item) VALUES ($1, $2)', [u, 'video']);
			const h = await credits.with(conn).hold(u, 80, 'video_generation');
			await credits.with(conn).capture(h.holdId, { amount: 70 });
			assert.equal(await credits.with(conn).getBalance(u), 30n);
			await conn.query('ROLLBACK');
		} finally {
			conn.release();
		}
		assert.equal(await balance(u), 100n);
		assert.equal(await orders(u), 0);
		assert.equal(await credits.getAvailable(u, { source: 'sql' }), 100n, 'the hold is gone too');
	});

	test('client.transaction() commits, or rolls back on an exception', async () => {
		const u = uid('pgtx-helper');
		await credits.initializeUser(u, 100);
		const r = await credits.transaction(async (c, tx) => {
			await tx.query('INSERT INTO public.client_test_orders (user_id, item) VALUES ($1, $2)', [u, 'chat']);
			return c.deduct(u, 10, 'chat_message');
		});
		assert.equal(r.balance, 90n);
		assert.equal(await orders(u), 1);
		await assert.rejects(credits.transaction(async (c, tx) => {
			await tx.query('INSERT INTO public.client_test_orders (user_id, item) VALUES ($1, $2)', [u, 'chat']);
			await c.deduct(u, 10, 'chat_message');
			throw new Error('model failed');
		}), /model failed/);
		assert.equal(await balance(u), 90n);
		assert.equal(await orders(u), 1);
		// The pool's connections are all back and usable.
		assert.equal(pool.waitingCount, 0);
		assert.equal((await credits.getBalance(u, { source: 'sql' })), 90n);
	});
});

for (const [driver, make] of DRIVERS) {
	describe(`idempotent retries on ${driver}`, () => {
		let c;
		before(async () => {
			c = await appClient(make, { redis: false });
		});

		test('concurrent retries with one key spend once and return the same row', async () => {
			const u = uid('retry');
			await c.initializeUser(u, 100);
			const results = await Promise.all(Array.from({ length: 6 },
				() => c.deduct(u, 10, 'chat_message', {}, { idempotencyKey: 'req-1' })));
			for (const r of results)
				assert.deepEqual(r, results[0]);
			assert.equal(await balance(u), 90n);
			assert.equal(await ledgerRows(u), 2);
		});

		test('a key used in a rolled-back transaction is free again', async () => {
			const u = uid('retry-rb');
			await c.initializeUser(u, 100);
			await assert.rejects(c.transaction(async (t) => {
				await t.deduct(u, 10, 'chat_message', {}, { idempotencyKey: 'req-2' });
				throw new Error('abort');
			}), /abort/);
			const r = await c.deduct(u, 10, 'chat_message', {}, { idempotencyKey: 'req-2' });
			assert.equal(r.balance, 90n);
		});

		test('a retried video request: hold and capture with one key each', async () => {
			const u = uid('retry-video');
			await c.initializeUser(u, 1000);
			const run = async () => {
				const h = await c.hold(u, { quantity: 10 }, 'video_generation', { idempotencyKey: 'v-1' });
				return c.capture(h.holdId, { quantity: 7, action: 'video_generation', idempotencyKey: 'v-1-cap' });
			};
			const first = await run();
			const second = await run();
			assert.deepEqual(second, first);
			assert.equal(await balance(u), 930n);
		});
	});
}
