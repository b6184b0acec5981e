// Every error class, raised by the real extension on both drivers: the
// class for each CR code, its fields, its HTTP response, and driver errors
// that are not ours passing through unchanged.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import pg from 'pg';
import { Prisma } from '@prisma/client';

import {
	AppendOnlyError, BalanceOverflowError, CreditsClient, CreditsError, HoldClosedError,
	IdempotencyConflictError, InsufficientCreditsError, InvalidArgumentError, UnknownAccountError,
	UnknownActionError, UnknownHoldError, UnknownPlanError, creditsError, fromDriverError,
	isCreditsError, toHttpError,
} from '@credits/client';

import { DRIVERS, READER_ROLE, appClient, closeAll, ensureRoles, uid } from './lib.mjs';

after(closeAll);

// Expect `promise` to reject with class `cls` and SQLSTATE `code`.
async function expectError(promise, cls, code, status) {
	let caught;
	try {
		await promise;
	} catch (e) {
		caught = e;
	}
	assert.ok(caught, `expected ${cls.name}`);
	assert.ok(caught instanceof cls, `${caught?.name}: ${caught?.message} is not a ${cls.name}`);
	assert.ok(caught instanceof CreditsError);
	assert.ok(caught instanceof Error);
	assert.equal(caught.name, cls.name);
	assert.equal(caught.code, code);
	assert.equal(caught.httpStatus, status);
	assert.ok(isCreditsError(caught));
	assert.ok(isCreditsError(caught, code));
	const http = toHttpError(caught);
	assert.equal(http.status, status);
	assert.equal(http.body.code, code);
	assert.equal(http.body.message, caught.message);
	JSON.stringify(http.body);		// no bigint in the body
	return caught;
}

for (const [driver, make] of DRIVERS) {
	describe(`errors on ${driver}`, () => {
		let c;
		before(async () => {
			c = await appClient(make, { redis: false });
		});

		test('CR001 InsufficientCreditsError has required and available (402)', async () => {
			const u = uid('e1');
			await c.initializeUser(u, 25);
			const e = await expectError(c.deduct(u, 30, 'chat_message'), InsufficientCreditsError, 'CR001', 402);
			assert.equal(e.required, 30n);
			assert.equal(e.available, 25n);
			assert.equal(e.detail, 'required=30 available=25');
			assert.match(e.hint, /Add credits/);
			assert.ok(e.cause, 'the driver error is kept as cause');
			assert.deepEqual(toHttpError(e).body, {
				error: 'insufficient_credits', code: 'CR001', message: 'insufficient credits',
				detail: 'required=30 available=25', hint: e.hint, required: '30', available: '25',
			});
			// A hold is refused the same way.
			await expectError(c.hold(u, 26, 'video_generation'), InsufficientCreditsError, 'CR001', 402);
		});

		test('CR002 UnknownAccountError (404), also from getBalance', async () => {
			const u = uid('e2');
			const e = await expectError(c.deduct(u, 1, 'chat_message'), UnknownAccountError, 'CR002', 404);
			assert.match(e.detail, new RegExp(u));
			await expectError(c.getBalance(u), UnknownAccountError, 'CR002', 404);
			await expectError(c.getAvailable(u), UnknownAccountError, 'CR002', 404);
		});

		test('CR003 IdempotencyConflictError (409)', async () => {
			const u = uid('e3');
			await c.initializeUser(u, 100);
			await c.deduct(u, 10, 'chat_message', {}, { idempotencyKey: 'k' });
			await expectError(c.deduct(u, 11, 'chat_message', {}, { idempotencyKey: 'k' }), IdempotencyConflictError, 'CR003', 409);
			assert.equal(await c.getBalance(u, { source: 'sql' }), 90n, 'nothing written');
		});

		test('CR004 HoldClosedError (409)', async () => {
			const u = uid('e4');
			await c.initializeUser(u, 100);
			const h = await c.hold(u, 10, 'video_generation');
			await c.release(h.holdId);
			await expectError(c.capture(h.holdId), HoldClosedError, 'CR004', 409);
		});

		test('CR005 UnknownActionError (400)', async () => {
			await expectError(c.cost('no_such_action', 1), UnknownActionError, 'CR005', 400);
			const u = uid('e5');
			await c.initializeUser(u, 100);
			await expectError(c.charge(u, 'no_such_action', 1), UnknownActionError, 'CR005', 400);
		});

		test('CR006 UnknownPlanError (400)', async () => {
			const u = uid('e6');
			await c.initializeUser(u, 0);
			await expectError(c.subscribe(u, 'no_such_plan'), UnknownPlanError, 'CR006', 400);
		});

		test('CR007 UnknownHoldError (404)', async () => {
			await expectError(c.release(987654321987n), UnknownHoldError, 'CR007', 404);
			await expectError(c.capture(987654321987n), UnknownHoldError, 'CR007', 404);
		});

		test('CR010 InvalidArgumentError (400), from the server and from the client', async () => {
			const u = uid('e10');
			await c.initializeUser(u, 100);
			const e = await expectError(c.deduct(u, 0, 'chat_message'), InvalidArgumentError, 'CR010', 400);
			assert.match(e.message, /amount/);
			await expectError(c.deduct(u, 1, ''), InvalidArgumentError, 'CR010', 400);
			// Checked before anything is sent.
			await expectError(c.deduct(u, 1, 'x', ['not', 'an', 'object']), InvalidArgumentError, 'CR010', 400);
			await expectError(c.deduct(u, Number.MAX_SAFE_INTEGER + 2, 'x'), InvalidArgumentError, 'CR010', 400);
			await expectError(c.history(u, { limit: 0 }), InvalidArgumentError, 'CR010', 400);
			await expectError(c.history(u, { cursor: 'garbage' }), InvalidArgumentError, 'CR010', 400);
			assert.equal(await c.getBalance(u, { source: 'sql' }), 100n);
		});

		test('CR011 BalanceOverflowError (400)', async () => {
			const u = uid('e11');
			await c.initializeUser(u, 10);
			await expectError(c.add(u, 2n ** 63n - 1n, 'purchase'), BalanceOverflowError, 'CR011', 400);
		});

		test('driver errors that are not ours pass through unchanged', async () => {
			await ensureRoles();
			// credits_reader may not spend: a permission error (42501).
			const reader = new CreditsClient({ db: make(READER_ROLE) });
			let caught;
			try {
				await reader.deduct(uid('perm'), 1, 'chat_message');
			} catch (e) {
				caught = e;
			}
			assert.ok(caught);
			assert.ok(!(caught instanceof CreditsError), `${caught.name} must not be a CreditsError`);
			if (driver === 'prisma')
				assert.ok(caught instanceof Prisma.PrismaClientKnownRequestError, caught.name);
			else
				assert.ok(caught instanceof pg.DatabaseError, caught.name);
			assert.equal(fromDriverError(caught), caught);
			assert.deepEqual(toHttpError(caught), { status: 500, body: { error: 'internal', message: 'internal error' } });
		});
	});
}

describe('error helpers', () => {
	test('CR020 AppendOnlyError from a raw driver error', async () => {
		const pool = new pg.Pool({ max: 1 });
		try {
			await pool.query('UPDATE credits.ledger SET amount = amount WHERE false');
			await pool.query('TRUNCATE credits.ledger');
			assert.fail('TRUNCATE of the ledger was accepted');
		} catch (e) {
			const ce = fromDriverError(e);
			assert.ok(ce instanceof AppendOnlyError, String(e));
			assert.equal(ce.code, 'CR020');
		} finally {
			await pool.end();
		}
	});

	test('an unknown CR code is a plain CreditsError; non-errors pass through', () => {
		const e = creditsError({ code: 'CR099', message: 'something new' });
		assert.equal(e.constructor, CreditsError);
		assert.equal(e.httpStatus, 500);
		assert.equal(fromDriverError(null), null);
		assert.equal(fromDriverError('text'), 'text');
		const plain = new Error('boom');
		assert.equal(fromDriverError(plain), plain);
		assert.equal(toHttpError(plain).status, 500);
	});
});
