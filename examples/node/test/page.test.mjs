// The /credits page in a real headless Chromium (Debian's, driven by
// playwright-core): balance, history, live update, usage chart, and the
// insufficient-credits state.  Screenshots go to $TEST_OUTPUT; set
// CREDITS_UPDATE_SCREENSHOT=1 to also refresh the README's copy in docs/.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { APP_URL, api, closeAll, db, newUser } from './lib.mjs';

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

const balanceShown = () => page.locator('#balance').getAttribute('data-balance');

async function waitBalance(value, timeout = 2000) {
	await page.waitForFunction((v) => document.getElementById('balance').dataset.balance === v,
		value, { timeout });
}

describe('the /credits page in Chromium', () => {
	before(async () => {
		user = await newUser('page', 500);
		// Some activity to show: chat, and the billing routes.
		for (let i = 0; i < 3; i++)
			assert.equal((await api('/api/chat', { user, body: { message: `hello ${i}` } })).status, 200);
		assert.equal((await api('/api/canvas', { user, body: { complexity: 'simple' } })).status, 200);
		assert.equal((await api('/api/video', { user, body: { estimated_seconds: 8, actual_seconds: 6 } })).status, 200);

		// A fresh profile for every run.
		profile = await mkdtemp(join(tmpdir(), 'credits-chromium-'));
		context = await chromium.launchPersistentContext(profile, {
			executablePath: '/usr/bin/chromium',
			headless: true,
			args: FLAGS,
			viewport: { width: 900, height: 1000 },
		});
		page = context.pages()[0] ?? await context.newPage();
		page.on('console', (m) => {
			if (m.type() === 'error')
				consoleErrors.push(m.text());
		});
		page.on('pageerror', (e) => consoleErrors.push(String(e)));
	});

	after(async () => {
		await context?.close();
		if (profile)
			await rm(profile, { recursive: true, force: true });
		await closeAll();
	});

	test('shows the balance and the history', async () => {
		await page.goto(`${APP_URL}/credits?user=${encodeURIComponent(user)}`);
		const expected = (await db().balance(user)).toString();
		assert.equal(expected, '360');		// 500 - 3*10 - 50 - 60
		await waitBalance(expected);
		assert.equal(await page.locator('#balance').textContent(), '360');
		await page.waitForSelector('#history tbody tr[data-tx-id]');
		const ledger = await db().history(user, 20);
		const rows = page.locator('#history tbody tr[data-tx-id]');
		assert.equal(await rows.count(), ledger.length);
		const ids = await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.txId));
		assert.deepEqual(ids, ledger.map((r) => r.id.toString()));
		const first = await rows.first().locator('td').allTextContents();
		assert.equal(first[1], ledger[0].action);
		assert.equal(first[2], ledger[0].amount.toString());
		assert.equal(first[3], ledger[0].balance_after.toString());
	});

	test('a chat from the page updates the balance and the history', async () => {
		const before = await page.locator('#history tbody tr[data-tx-id]').count();
		await page.click('#chat');
		await waitBalance('350');
		await page.waitForFunction((n) => document.querySelectorAll('#history tbody tr[data-tx-id]').length === n,
			before + 1, { timeout: 2000 });
		assert.equal(await db().balance(user), 350n);
	});

	test('a chat from elsewhere shows up live', async () => {
		// Another app spends: the page learns it from the balance stream.
		assert.equal((await api('/api/chat', { user, body: { message: 'from another tab' } })).status, 200);
		await waitBalance('340');
		assert.equal(await balanceShown(), '340');
	});

	test('the balance is read from Redis', async () => {
		await page.waitForFunction(() => document.getElementById('live').dataset.source === 'redis',
			null, { timeout: 2000 });
		assert.equal(await page.locator('#live').textContent(), 'live · Redis');
	});

	test('draws the per-day, per-action usage chart', async () => {
		const usage = await db().dailyUsage(user, 14);
		assert.ok(usage.length >= 3);
		const chat = usage.find((r) => r.action === 'chat_message');
		assert.equal(Math.abs(Number(chat.credits)), 50);
		const want = usage.map((r) => `${r.day} ${r.action} ${Math.abs(Number(r.credits))}`).sort();
		// The page redraws the chart when it sees the balance change.
		const bars = () => page.locator('#chart rect[data-action]').evaluateAll((rs) =>
			rs.map((r) => `${r.dataset.day} ${r.dataset.action} ${r.dataset.credits}`).sort());
		await page.waitForFunction((w) => {
			const got = [...document.querySelectorAll('#chart rect[data-action]')]
				.map((r) => `${r.dataset.day} ${r.dataset.action} ${r.dataset.credits}`).sort();
			return JSON.stringify(got) === JSON.stringify(w);
		}, want, { timeout: 2000 }).catch(() => {});
		assert.deepEqual(await bars(), want);
		const legend = await page.locator('#legend li').allTextContents();
		assert.deepEqual(legend, [...new Set(usage.map((r) => r.action))].sort());
		// The history is redrawn with the chart: wait for it before the picture.
		const ledger = await db().history(user, 20);
		await page.waitForFunction((id) => document.querySelector('#history tbody tr[data-tx-id]')?.dataset.txId === id,
			ledger[0].id.toString(), { timeout: 2000 });
		await page.waitForTimeout(700);		// the balance's change highlight fades
		await mkdir(OUT, { recursive: true });
		const shot = join(OUT, 'credits-page.png');
		await page.screenshot({ path: shot, fullPage: true });
		if (process.env.CREDITS_UPDATE_SCREENSHOT === '1') {
			await mkdir(DOCS, { recursive: true });
			await copyFile(shot, join(DOCS, 'credits-page.png'));
		}
	});

	test('shows the insufficient-credits state', async () => {
		await db().deduct(user, 335n, 'other_app');		// 5 left
		await waitBalance('5');
		assert.equal(await page.locator('#low').isVisible(), true);
		assert.equal(await page.locator('#insufficient').isVisible(), false);
		await page.click('#chat');
		await page.locator('#insufficient').waitFor({ state: 'visible', timeout: 2000 });
		assert.equal(await page.locator('#required').textContent(), '10');
		assert.equal(await page.locator('#available').textContent(), '5');
		assert.equal(await db().balance(user), 5n);
		await mkdir(OUT, { recursive: true });
		await page.screenshot({ path: join(OUT, 'credits-insufficient.png'), fullPage: true });
		await page.click('#insufficient-close');
		assert.equal(await page.locator('#insufficient').isVisible(), false);
	});

	test('logs no errors in the browser console', () => {
		// 402 responses are logged by Chromium as failed resource loads.
		const unexpected = consoleErrors.filter((m) => !/status of 402/.test(m));
		assert.deepEqual(unexpected, []);
	});
});
