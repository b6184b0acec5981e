// Every route of the example over HTTP against the built app: the four
// apps, the webhooks, admin grant, balance, paged history and usage; 402
// bodies with the numbers, idempotent retries returning the original
// response, amounts as decimal strings.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { api, balanceOf, closeAll, db, eventually, newUser, uid } from './lib.mjs';

after(closeAll);

describe('signup and admin', () => {
	test('the signup webhook grants 100 credits once', async () => {
		const u = uid('signup');
		const r1 = await api('/api/webhooks/user-created', { body: { user_id: u } });
		assert.equal(r1.status, 200, r1.text);
		assert.equal(r1.body.balance, '100');
		assert.equal(r1.body.amount, '100');
		const r2 = await api('/api/webhooks/user-created', { body: { user_id: u } });
		assert.deepEqual(r2.body, r1.body, 'a redelivery changes nothing');
		assert.equal(await balanceOf(u), 100n);
	});

	test('admin grant, with expiry, and exact amounts beyond 2^53', async () => {
		const u = uid('grant');
		const r = await api('/api/admin/grant', { body: { user_id: u, amount: '9007199254740993', source: 'purchase' }, key: 'order-1' });
		assert.equal(r.status, 200, r.text);
		assert.equal(r.body.balance, '9007199254740993');
		assert.equal((await api('/api/admin/grant', { body: { user_id: u, amount: '9007199254740993', source: 'purchase' }, key: 'order-1' })).body.tx_id, r.body.tx_id);
		const e = await api('/api/admin/grant', { body: { user_id: u, amount: 5, source: 'promo', expires_at: new Date(Date.now() + 86400e3).toISOString() } });
		assert.equal(e.body.balance, '9007199254740998');
		assert.equal((await api('/api/credits/balance', { user: u })).body.balance, '9007199254740998');
		assert.equal((await api('/api/admin/grant', { body: { user_id: u, amount: 1.5 } })).status, 400);
	});
});

describe('the four apps', () => {
	test('chat: 10 credits, a retried request is one spend, 402 with the numbers', async () => {
		const u = await newUser('chat', 25);
		const r1 = await api('/api/chat', { user: u, key: 'msg-1', body: { message: 'hi' } });
		assert.equal(r1.status, 200, r1.text);
		assert.equal(r1.body.balance, '15');
		assert.equal(r1.body.cost, '10');
		const r2 = await api('/api/chat', { user: u, key: 'msg-1', body: { message: 'hi' } });
		assert.deepEqual(r2.body, r1.body);
		assert.equal((await api('/api/chat', { user: u, body: { message: 'again' } })).body.balance, '5');
		const poor = await api('/api/chat', { user: u, body: { message: 'one more' } });
		assert.equal(poor.status, 402);
		assert.equal(poor.body.error, 'insufficient_credits');
		assert.equal(poor.body.code, 'CR001');
		assert.equal(poor.body.required, '10');
		assert.equal(poor.body.available, '5');
		assert.equal(await balanceOf(u), 5n);
		assert.equal((await api('/api/chat', { user: uid('nobody'), body: { message: 'x' } })).status, 404);
		assert.equal((await api('/api/chat', { body: { message: 'x' } })).status, 401);
		assert.equal((await api('/api/chat', { user: u, body: {} })).status, 400);
	});

	test('chat: 50 parallel requests on 100 credits give exactly 10 successes', async () => {
		const u = await newUser('race', 100);
		const rs = await Promise.all(Array.from({ length: 50 }, (_, i) => api('/api/chat', { user: u, body: { message: `m${i}` } })));
		assert.equal(rs.filter((r) => r.status === 200).length, 10);
		assert.equal(rs.filter((r) => r.status === 402).length, 40);
		assert.equal(await balanceOf(u), 0n);
	});

	test('canvas: 50 simple, 75 complex', async () => {
		const u = await newUser('canvas', 200);
		const s = await api('/api/canvas', { user: u, body: { complexity: 'simple' } });
		assert.equal(s.status, 200, s.text);
		assert.equal(s.body.balance, '150');
		const c = await api('/api/canvas', { user: u, body: { complexity: 'complex' } });
		assert.equal(c.body.balance, '75');
		assert.equal((await api('/api/canvas', { user: u, body: { complexity: 'huge' } })).status, 400);
	});

	test('video: hold the estimate, capture the rendered seconds; a failed render releases', async () => {
		const u = await newUser('video', 500);
		const r = await api('/api/video', { user: u, key: 'vid-1', body: { estimated_seconds: 8, actual_seconds: 6 } });
		assert.equal(r.status, 200, r.text);
		assert.equal(r.body.status, 'captured');
		assert.equal(r.body.balance, '440');
		const again = await api('/api/video', { user: u, key: 'vid-1', body: { estimated_seconds: 8, actual_seconds: 6 } });
		assert.deepEqual(again.body, r.body, 'a retried request is the same hold and capture');
		const f = await api('/api/video', { user: u, key: 'vid-2', body: { estimated_seconds: 10, fail: true } });
		assert.equal(f.status, 200, f.text);
		assert.equal(f.body.status, 'released');
		assert.equal(f.body.available, '440');
		const fAgain = await api('/api/video', { user: u, key: 'vid-2', body: { estimated_seconds: 10, fail: true } });
		assert.deepEqual(fAgain.body, f.body, 'a retried failed render is the same hold and release');
		const big = await api('/api/video', { user: u, body: { estimated_seconds: 100, actual_seconds: 1 } });
		assert.equal(big.status, 402);
		assert.equal(big.body.required, '1000');
		assert.equal(await balanceOf(u), 440n);
	});

	test('training: hold, then capture from the completion webhook, or release on failure', async () => {
		const u = await newUser('train', 3000);
		const s = await api('/api/train/start', { user: u, body: { estimated_gpu_hours: 2 } });
		assert.equal(s.status, 200, s.text);
		assert.equal(s.body.held, '2000');
		assert.equal(s.body.available, '1000');
		const hook = { hold_id: s.body.hold_id, status: 'succeeded', gpu_hours: 1.5 };
		const w1 = await api('/api/train/webhook', { key: 'job-done-1', body: hook });
		assert.equal(w1.status, 200, w1.text);
		assert.equal(w1.body.balance, '1500');
		const w2 = await api('/api/train/webhook', { key: 'job-done-1', body: hook });
		assert.deepEqual(w2.body, w1.body, 'a redelivered webhook gets the original answer');
		const w3 = await api('/api/train/webhook', { body: hook });
		assert.equal(w3.status, 409, 'without a key, a second capture is refused');
		assert.equal(w3.body.code, 'CR004');
		const s2 = await api('/api/train/start', { user: u, body: { estimated_gpu_hours: 1 } });
		const failed = await api('/api/train/webhook', { key: 'job-failed-2', body: { hold_id: s2.body.hold_id, status: 'failed' } });
		assert.equal(failed.status, 200, failed.text);
		assert.equal(failed.body.status, 'released');
		assert.equal(failed.body.available, '1500');
		const redelivered = await api('/api/train/webhook', { key: 'job-failed-2', body: { hold_id: s2.body.hold_id, status: 'failed' } });
		assert.deepEqual(redelivered.body, failed.body, 'a redelivered failure webhook gets the original answer');
		assert.equal((await api('/api/train/webhook', { body: { hold_id: '999999999', status: 'failed' } })).status, 404);
		assert.equal(await balanceOf(u), 1500n);
	});
});

describe('reads', () => {
	test('balance: Redis once synced, SQL on request; 404 for no account', async () => {
		const u = await newUser('bal', 70);
		await eventually(async () => {
			const r = await api('/api/credits/balance', { user: u });
			assert.equal(r.status, 200, r.text);
			assert.deepEqual(r.body, { user_id: u, balance: '70', available: '70', source: 'redis' });
		});
		assert.equal((await api('/api/credits/balance?source=sql', { user: u })).body.source, 'sql');
		const none = await api('/api/credits/balance', { user: uid('none') });
		assert.equal(none.status, 404);
		assert.equal(none.body.code, 'CR002');
	});

	test('history pages with a cursor, no row skipped or repeated', async () => {
		const u = await newUser('hist', 1000);
		for (let i = 0; i < 7; i++)
			await api('/api/chat', { user: u, body: { message: `m${i}` } });
		const want = (await db().getTransactions(u, { limit: 100, source: 'sql' })).map((t) => t.txId.toString());
		assert.equal(want.length, 8);
		// The route reads txs:<user> when Redis covers the page: wait until
		// credits-sync has mirrored the newest row (it lags by milliseconds).
		await eventually(async () => {
			const r = await api('/api/credits/history?limit=1', { user: u });
			assert.equal(r.status, 200, r.text);
			assert.deepEqual(r.body.transactions.map((t) => t.tx_id), [want[0]]);
		});
		const got = [];
		let cursor = null;
		do {
			const r = await api(`/api/credits/history?limit=3${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, { user: u });
			assert.equal(r.status, 200, r.text);
			got.push(...r.body.transactions.map((t) => t.tx_id));
			cursor = r.body.next_cursor;
		} while (cursor);
		assert.deepEqual(got, want);
		assert.equal((await api('/api/credits/history?limit=0', { user: u })).status, 400);
	});

	test('usage: totals and per-day rows', async () => {
		const u = await newUser('usage', 1000);
		await api('/api/chat', { user: u, body: { message: 'a' } });
		await api('/api/canvas', { user: u, body: { complexity: 'complex' } });
		const r = await api('/api/credits/usage?days=7', { user: u });
		assert.equal(r.status, 200, r.text);
		assert.equal(r.body.usage.balance, '915');
		assert.equal(r.body.usage.spent_lifetime, '85');
		const today = new Date().toISOString().slice(0, 10);
		assert.deepEqual(r.body.daily, [
			{ day: today, action: 'canvas_generation_complex', credits: '75', tokens: '0' },
			{ day: today, action: 'chat_message', credits: '10', tokens: '0' },
		]);
	});
});
