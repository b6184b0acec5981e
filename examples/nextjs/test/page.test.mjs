// The /credits page of the built app in headless Chromium (Debian's, driven
// by playwright-core): live balance, the apps' buttons, the paged history,
// the per-day usage chart and the insufficient-credits dialog.  Screenshots
// go to $TEST_OUTPUT; CREDITS_UPDATE_SCREENSHOT=1 also refreshes the
// README's copy in docs/.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { APP_URL, api, balanceOf, closeAll, db, newUser } from './lib.mjs';

const OUT = process.env.TEST_OUTPUT ?? tmpdir();
const DOCS = join(dirname(fileURLToPath(import.meta.url)), '..', 'docs');
const FLAGS = [
	'--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
	'--disable-background-networking', '--disable-component-update', '--disable-sync',
];

let profile;
let context;
let page;
let user;
const consoleErrors = [];
const requests = [];
const failed = [];

async function waitBalance(value, timeout = 10000) {
	await page.waitForFunction((v) => document.getElementById('balance')?.dataset.balance === v, value, { timeout });
}

async function historyIds() {
	return page.locator('#history tbody tr[data-tx-id]').evaluateAll((trs) => trs.map((tr) => tr.dataset.txId));
}

describe('the /credits page in Chromium', () => {
	before(async () => {
		user = await newUser('page', 1000);
		for (let i = 0; i < 3; i++)
			assert.equal((await api('/api/chat', { user, body: { message: `hello ${i}` } })).status, 200);
		assert.equal((await api('/api/canvas', { user, body: { complexity: 'simple' } })).status, 200);
		assert.equal((await api('/api/video', { user, body: { estimated_seconds: 8, actual_seconds: 6 } })).status, 200);
		// The first request to a fresh server is slow: warm the page up.
		await fetch(`${APP_URL}/credits?user=warm-up`);
		profile = await mkdtemp(join(tmpdir(), 'credits-chromium-'));
		context = await chromium.launchPersistentContext(profile, {
			executablePath: '/usr/bin/chromium', headless: true, args: FLAGS, viewport: { width: 1100, height: 900 },
		});
		page = context.pages()[0] ?? await context.newPage();
		page.on('console', (m) => {
			if (m.type() === 'error')
				consoleErrors.push(m.text());
		});
		page.on('pageerror', (e) => consoleErrors.push(String(e)));
		page.on('request', (r) => requests.push(r.url()));
		page.on('response', (r) => {
			if (r.status() >= 400 && r.status() !== 402)
				failed.push(`${r.status()} ${r.url()}`);
		});
	});

	after(async () => {
		await context?.close();
		if (profile)
			await rm(profile, { recursive: true, force: true });
		await closeAll();
	});

	test('shows the live balance and the newest history page', async () => {
		await page.goto(`${APP_URL}/credits?user=${encodeURIComponent(user)}`);
		await waitBalance('860');		// 1000 - 3*10 - 50 - 60
		assert.equal(await page.locator('#balance').textContent(), '860');
		await page.waitForSelector('#history tbody tr[data-tx-id]');
		const ledger = await db().getTransactions(user, { limit: 6, source: 'sql' });
		await page.waitForFunction((n) => document.querySelectorAll('#history tbody tr[data-tx-id]').length === n, ledger.length);
		assert.deepEqual(await historyIds(), ledger.map((t) => t.txId.toString()));
		const first = await page.locator('#history tbody tr[data-tx-id]').first().locator('td').allTextContents();
		assert.equal(first[1], ledger[0].action);
		assert.equal(first[2], '−60');
	});

	test('the balance is served from Redis', async () => {
		await page.waitForFunction(() => document.getElementById('live')?.dataset.source === 'redis', null, { timeout: 10000 });
		assert.equal(await page.locator('#live').textContent(), 'live · Redis');
	});

	test('a chat from the page updates the balance and the history', async () => {
		await page.click('#chat');
		await waitBalance('850');
		const newest = (await db().getTransactions(user, { limit: 1, source: 'sql' }))[0];
		await page.waitForFunction((id) => document.querySelector('#history tbody tr[data-tx-id]')?.dataset.txId === id,
			newest.txId.toString(), { timeout: 4000 });
		assert.equal(await balanceOf(user), 850n);
	});

	test('a spend from elsewhere shows up live', async () => {
		assert.equal((await api('/api/canvas', { user, body: { complexity: 'complex' } })).status, 200);
		await waitBalance('775');
	});

	test('the history pages with Older and Newest', async () => {
		const all = (await db().getTransactions(user, { limit: 100, source: 'sql' })).map((t) => t.txId.toString());
		assert.equal(all.length, 8);
		await page.waitForFunction((id) => document.querySelector('#history tbody tr[data-tx-id]')?.dataset.txId === id, all[0]);
		assert.deepEqual(await historyIds(), all.slice(0, 6));
		await page.click('#older');
		await page.waitForFunction((id) => document.querySelector('#history tbody tr[data-tx-id]')?.dataset.txId === id, all[6]);
		assert.deepEqual(await historyIds(), all.slice(6));
		assert.equal(await page.locator('#page-number').textContent(), 'page 2');
		assert.equal(await page.locator('#older').isDisabled(), true);
		await page.click('#newest');
		await page.waitForFunction((id) => document.querySelector('#history tbody tr[data-tx-id]')?.dataset.txId === id, all[0]);
	});

	test('draws the per-day usage chart by action', async () => {
		const today = new Date().toISOString().slice(0, 10);
		const want = [
			`${today} canvas_generation_complex 75`, `${today} canvas_generation_simple 50`,
			`${today} chat_message 40`, `${today} video_generation 60`,
		];
		await page.waitForFunction((w) => JSON.stringify([...document.querySelectorAll('#chart rect[data-action]')]
			.map((r) => `${r.dataset.day} ${r.dataset.action} ${r.dataset.credits}`).sort()) === JSON.stringify(w), want, { timeout: 4000 });
		assert.deepEqual(await page.locator('#legend li').allTextContents(),
			['canvas_generation_complex', 'canvas_generation_simple', 'chat_message', 'video_generation']);
		await page.waitForTimeout(700);		// the balance's highlight fades
		await mkdir(OUT, { recursive: true });
		const shot = join(OUT, 'credits-page.png');
		await page.screenshot({ path: shot, fullPage: true });
		if (process.env.CREDITS_UPDATE_SCREENSHOT === '1') {
			await mkdir(DOCS, { recursive: true });
			await copyFile(shot, join(DOCS, 'credits-page.png'));
		}
	});

	test('shows the insufficient-credits dialog on a 402', async () => {
		await db().deduct(user, 770n, 'other_app');		// 5 left
		await waitBalance('5');
		assert.equal(await page.locator('#low').isVisible(), true);
		assert.equal(await page.locator('#insufficient').count(), 0);
		await page.click('#chat');
		await page.locator('#insufficient').waitFor({ state: 'visible', timeout: 4000 });
		assert.equal(await page.locator('#required').textContent(), '10');
		assert.equal(await page.locator('#available-now').textContent(), '5');
		assert.equal(await balanceOf(user), 5n);
		await page.screenshot({ path: join(OUT, 'credits-insufficient.png'), fullPage: true });
		await page.click('#insufficient-close');
		assert.equal(await page.locator('#insufficient').count(), 0);
	});

	test('loads nothing from other hosts and logs no errors', () => {
		const foreign = requests.filter((u) => !u.startsWith(APP_URL));
		assert.deepEqual(foreign, []);
		assert.deepEqual(failed, []);
		// A 402 response is logged by Chromium as a failed resource load.
		assert.deepEqual(consoleErrors.filter((m) => !/status of 402/.test(m)), []);
		assert.ok(requests.length > 0);
	});
});
