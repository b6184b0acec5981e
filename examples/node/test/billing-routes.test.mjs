// Routes on the billing functions: canvas (prices), video and training
// (holds), admin grants, the signup webhook, the usage data, and the HTTP
// status of every CR error code, each raised by the real database.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { errorResponse } from '../src/app.mjs';
import { CreditsError, fromPrismaError } from '../src/credits.mjs';
import { api, closeAll, db, newUser, uid } from './lib.mjs';

after(closeAll);

describe('POST /api/canvas', () => {
	test('charges 50 for simple and 75 for complex, at the price in credits.prices', async () => {
		const u = await newUser('canvas', 200);
		const s = await api('/api/canvas', { user: u, body: { complexity: 'simple' } });
		assert.equal(s.status, 200);
		assert.equal(s.body.balance, '150');
		assert.equal(s.body.action, 'canvas_generation_simple');
		const c = await api('/api/canvas', { user: u, body: { complexity: 'complex' } });
		assert.equal(c.status, 200);
		assert.equal(c.body.balance, '75');
		const rows = await db().history(u);
		assert.deepEqual(rows.slice(0, 2).map((r) => [r.action, r.amount]),
			[['canvas_generation_complex', -75n], ['canvas_generation_simple', -50n]]);
		assert.equal(await db().cost('canvas_generation_complex', 1), 75n);
	});

	test('402 when short, 400 for a bad complexity, idempotent retries', async () => {
		const u = await newUser('canvas402', 60);
		const key = uid('k');
		const a = await api('/api/canvas', { user: u, key, body: { complexity: 'simple' } });
		const b = await api('/api/canvas', { user: u, key, body: { complexity: 'simple' } });
		assert.equal(a.status, 200);
		assert.equal(b.text, a.text);
		assert.equal(await db().balance(u), 10n);
		const r = await api('/api/canvas', { user: u, body: { complexity: 'complex' } });
		assert.equal(r.status, 402);
		assert.equal(r.body.required, '75');
		assert.equal(r.body.available, '10');
		assert.equal((await api('/api/canvas', { user: u, body: { complexity: 'huge' } })).status, 400);
		// The key now belongs to a canvas charge: a chat with it is refused.
		const chat = await api('/api/chat', { user: u, key, body: { message: 'x' } });
		assert.equal(chat.status, 409);
		assert.equal(chat.body.code, 'CR003');
	});
});

describe('POST /api/video', () => {
	test('holds the estimate, then captures the seconds rendered', async () => {
		const u = await newUser('video', 500);
		const r = await api('/api/video', { user: u, body: { estimated_seconds: 8, actual_seconds: 6 } });
		assert.equal(r.status, 200);
		assert.equal(r.body.status, 'captured');
		assert.equal(r.body.balance, '440');
		assert.match(r.body.hold_id, /^\d+$/);
		assert.equal(await db().balance(u), 440n);
		assert.equal(await db().available(u), 440n);		// the rest of the hold was released
		const [row] = await db().history(u, 1);
		assert.equal(row.amount, -60n);
		assert.equal(row.action, 'video_generation');
	});

	test('capturing more than the estimate works while the balance covers it', async () => {
		const u = await newUser('video-more', 500);
		const r = await api('/api/video', { user: u, body: { estimated_seconds: 5, actual_seconds: 7 } });
		assert.equal(r.status, 200);
		assert.equal(r.body.balance, '430');
	});

	test('a capture the balance cannot cover is 402 and releases the hold', async () => {
		const u = await newUser('video-short', 100);
		const r = await api('/api/video', { user: u, body: { estimated_seconds: 8, actual_seconds: 20 } });
		assert.equal(r.status, 402);
		assert.equal(r.body.code, 'CR001');
		// 200 to capture, 80 held: 120 more are needed, and 20 are free.
		assert.equal(r.body.required, '120');
		assert.equal(r.body.available, '20');
		assert.equal(await db().balance(u), 100n);
		assert.equal(await db().available(u), 100n);
	});

	test('an estimate beyond the balance is 402 before anything is held', async () => {
		const u = await newUser('video-poor', 50);
		const r = await api('/api/video', { user: u, body: { estimated_seconds: 6, actual_seconds: 6 } });
		assert.equal(r.status, 402);
		assert.equal(r.body.required, '60');
		assert.equal(r.body.available, '50');
		assert.equal(await db().available(u), 50n);
	});

	test('a failed render releases the hold', async () => {
		const u = await newUser('video-fail', 100);
		const r = await api('/api/video', { user: u, body: { estimated_seconds: 5, fail: true } });
		assert.equal(r.status, 200);
		assert.equal(r.body.status, 'released');
		assert.equal(r.body.available, '100');
		assert.equal(await db().balance(u), 100n);
	});

	test('a retry with the same Idempotency-Key returns the same response and charges once', async () => {
		const u = await newUser('video-idem', 500);
		const key = uid('k');
		const body = { estimated_seconds: 8, actual_seconds: 6 };
		const a = await api('/api/video', { user: u, key, body });
		const b = await api('/api/video', { user: u, key, body });
		assert.equal(a.status, 200);
		assert.equal(b.status, 200);
		assert.deepEqual(b.body, a.body);
		assert.equal(await db().balance(u), 440n);
		assert.equal(await db().available(u), 440n);
	});

	test('bad quantities are 400', async () => {
		const u = await newUser('video-bad', 100);
		assert.equal((await api('/api/video', { user: u, body: { estimated_seconds: -1, actual_seconds: 1 } })).status, 400);
		assert.equal((await api('/api/video', { user: u, body: { estimated_seconds: 'ten' } })).status, 400);
		assert.equal(await db().available(u), 100n);
	});
});

describe('POST /api/train/start and /api/train/webhook', () => {
	test('holds the estimated GPU-hours, captures the actual ones on completion', async () => {
		const u = await newUser('train', 5000);
		const s = await api('/api/train/start', { user: u, body: { estimated_gpu_hours: 2 } });
		assert.equal(s.status, 200);
		assert.equal(s.body.held, '2000');
		assert.equal(s.body.available, '3000');
		assert.equal(await db().balance(u), 5000n);		// nothing in the ledger yet
		assert.equal(await db().available(u), 3000n);
		const w = await api('/api/train/webhook', { body: { hold_id: s.body.hold_id, status: 'succeeded', gpu_hours: 1.5 } });
		assert.equal(w.status, 200);
		assert.equal(w.body.status, 'captured');
		assert.equal(w.body.balance, '3500');
		assert.equal(await db().available(u), 3500n);
		const [row] = await db().history(u, 1);
		assert.equal(row.amount, -1500n);
		assert.equal(row.action, 'training_job');
		// The hold is closed: a second completion report is refused.
		const again = await api('/api/train/webhook', { body: { hold_id: s.body.hold_id, status: 'succeeded', gpu_hours: 1.5 } });
		assert.equal(again.status, 409);
		assert.equal(again.body.code, 'CR004');
		assert.equal(await db().balance(u), 3500n);
	});

	test('a redelivered completion with the same Idempotency-Key gets the same response', async () => {
		const u = await newUser('train-redeliver', 3000);
		const s = await api('/api/train/start', { user: u, body: { estimated_gpu_hours: 2 } });
		const key = uid('delivery');
		const body = { hold_id: s.body.hold_id, status: 'succeeded', gpu_hours: 2.5 };
		const a = await api('/api/train/webhook', { key, body });
		const b = await api('/api/train/webhook', { key, body });
		assert.equal(a.status, 200);
		assert.equal(a.body.balance, '500');		// 2.5 h: more than held, covered
		assert.equal(b.text, a.text);
		assert.equal(await db().balance(u), 500n);
	});

	test('a failed job releases the hold; an unknown hold is 404', async () => {
		const u = await newUser('train-fail', 1500);
		const s = await api('/api/train/start', { user: u, body: { estimated_gpu_hours: 1 } });
		assert.equal(s.status, 200);
		assert.equal(await db().available(u), 500n);
		const w = await api('/api/train/webhook', { body: { hold_id: s.body.hold_id, status: 'failed' } });
		assert.equal(w.status, 200);
		assert.equal(w.body.status, 'released');
		assert.equal(w.body.available, '1500');
		const again = await api('/api/train/webhook', { body: { hold_id: s.body.hold_id, status: 'failed' } });
		assert.equal(again.status, 409);
		assert.equal(again.body.code, 'CR004');
		const unknown = await api('/api/train/webhook', { body: { hold_id: '999999999999', status: 'failed' } });
		assert.equal(unknown.status, 404);
		assert.equal(unknown.body.code, 'CR007');
	});

	test('a start beyond the available balance is 402 with the numbers', async () => {
		const u = await newUser('train-poor', 1500);
		assert.equal((await api('/api/train/start', { user: u, body: { estimated_gpu_hours: 1 } })).status, 200);
		const r = await api('/api/train/start', { user: u, body: { estimated_gpu_hours: 1 } });
		assert.equal(r.status, 402);
		assert.equal(r.body.required, '1000');
		assert.equal(r.body.available, '500');
	});

	test('a retried start with the same Idempotency-Key returns the same hold', async () => {
		const u = await newUser('train-idem', 5000);
		const key = uid('k');
		const a = await api('/api/train/start', { user: u, key, body: { estimated_gpu_hours: 2 } });
		const b = await api('/api/train/start', { user: u, key, body: { estimated_gpu_hours: 2 } });
		assert.equal(a.status, 200);
		assert.deepEqual(b.body, a.body);
		assert.equal(await db().available(u), 3000n);
	});
});

describe('POST /api/admin/grant', () => {
	test('grants credits, idempotently', async () => {
		const u = await newUser('grant', 10);
		const key = uid('k');
		const body = { user_id: u, amount: 250, source: 'promo', metadata: { campaign: 'spring' } };
		const a = await api('/api/admin/grant', { key, body });
		const b = await api('/api/admin/grant', { key, body });
		assert.equal(a.status, 200);
		assert.equal(a.body.balance, '260');
		assert.equal(b.text, a.text);
		assert.equal(await db().balance(u), 260n);
	});

	test('opens the account of a new user, with an expiry', async () => {
		const u = uid('grant-new');
		const expires = new Date(Date.now() + 30 * 86400000).toISOString();
		const r = await api('/api/admin/grant', { body: { user_id: u, amount: '40', source: 'purchase', expires_at: expires } });
		assert.equal(r.status, 200);
		assert.equal(r.body.balance, '40');
		assert.equal(await db().balance(u), 40n);
	});

	test('bad amounts are 400 (CR010), overflowing the balance is 400 (CR011)', async () => {
		const u = await newUser('grant-bad', 10);
		const zero = await api('/api/admin/grant', { body: { user_id: u, amount: 0, source: 'promo' } });
		assert.equal(zero.status, 400);
		assert.equal(zero.body.code, 'CR010');
		assert.equal((await api('/api/admin/grant', { body: { user_id: u, amount: 1.5 } })).status, 400);
		assert.equal((await api('/api/admin/grant', { body: { amount: 5 } })).status, 400);
		const rich = await newUser('grant-rich', 9223372036854775000n);
		const over = await api('/api/admin/grant', { body: { user_id: rich, amount: 1000, source: 'promo' } });
		assert.equal(over.status, 400);
		assert.equal(over.body.code, 'CR011');
		assert.equal(await db().balance(rich), 9223372036854775000n);
	});
});

describe('POST /api/webhooks/user-created', () => {
	test('grants the signup credits exactly once per user', async () => {
		const u = uid('signup');
		const a = await api('/api/webhooks/user-created', { body: { user_id: u } });
		assert.equal(a.status, 200);
		assert.equal(a.body.balance, '100');
		// A redelivery, even with another delivery id, returns the original.
		const b = await api('/api/webhooks/user-created', { key: uid('delivery'), body: { user_id: u } });
		assert.equal(b.status, 200);
		assert.deepEqual(b.body, a.body);
		assert.equal(await db().balance(u), 100n);
		const rows = await db().history(u);
		assert.equal(rows.filter((r) => r.amount > 0n).reduce((s, r) => s + r.amount, 0n), 100n);
		assert.equal((await api('/api/webhooks/user-created', { body: {} })).status, 400);
	});
});

describe('GET /api/credits/usage', () => {
	test('returns credits.daily_usage for the user, per day and action', async () => {
		const u = await newUser('usage', 1000);
		await api('/api/chat', { user: u, body: { message: 'a' } });
		await api('/api/chat', { user: u, body: { message: 'b' } });
		await api('/api/canvas', { user: u, body: { complexity: 'complex' } });
		const r = await api('/api/credits/usage?days=7', { user: u });
		assert.equal(r.status, 200);
		const byAction = Object.fromEntries(r.body.usage.map((x) => [x.action, x]));
		assert.equal(Math.abs(Number(byAction.chat_message.credits)), 20);
		assert.equal(Math.abs(Number(byAction.canvas_generation_complex.credits)), 75);
		assert.match(byAction.chat_message.day, /^\d{4}-\d{2}-\d{2}$/);
		assert.equal(typeof byAction.chat_message.credits, 'string');
		assert.equal((await api('/api/credits/usage?days=0', { user: u })).status, 400);
	});
});

describe('every CR code has a sensible HTTP status', () => {
	// Each error is raised by the real database and mapped by the app.
	async function raised(fn) {
		try {
			await fn();
		} catch (e) {
			assert.ok(e instanceof CreditsError, `expected a CreditsError, got ${e}`);
			return [e.code, errorResponse(e)[0]];
		}
		assert.fail('no error raised');
	}

	test('CR001..CR011', async () => {
		const u = await newUser('codes', 100);
		const key = uid('k');
		await db().deduct(u, 1n, 'a', {}, key);
		const hold = await db().holdFor(u, 'chat_message', 1);
		await db().release(hold.hold_id);
		const rich = await newUser('codes-rich', 9223372036854775000n);
		const p = db().prisma;
		const cases = [
			['CR001', 402, () => db().deduct(u, 1000n, 'a')],
			['CR002', 404, () => db().deduct(uid('none'), 1n, 'a')],
			['CR003', 409, () => db().deduct(u, 2n, 'a', {}, key)],
			['CR004', 409, () => db().release(hold.hold_id)],
			['CR005', 400, () => db().charge(u, 'no_such_action', 1)],
			['CR006', 400, () => p.$queryRaw`SELECT credits.credit_subscribe(${u}::text, 'no_such_plan', NULL::timestamptz)`
				.catch((e) => { throw fromPrismaError(e); })],
			['CR007', 404, () => db().release(987654321987n)],
			['CR010', 400, () => db().deduct(u, 0n, 'a')],
			['CR011', 400, () => db().add(rich, 1000n, 'a')],
		];
		for (const [code, status, fn] of cases)
			assert.deepEqual(await raised(fn), [code, status], code);
	});
});
