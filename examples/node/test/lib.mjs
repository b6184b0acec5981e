// Shared helpers for the example app's tests.  They talk to the running app
// over HTTP (APP_URL, started by test.sh) and to the same database through
// the app's own Prisma layer, to set up accounts and to check results.

import { randomUUID } from 'node:crypto';

import { Credits, createPrisma } from '../src/credits.mjs';
import { CreditsCache, createRedis } from '../src/redis.mjs';

export const APP_URL = process.env.APP_URL ?? 'http://127.0.0.1:3000';

let prisma;
let redis;

export function db() {
	prisma ??= createPrisma({ max: 4 });
	return new Credits(prisma);
}

export function cache() {
	redis ??= createRedis();
	return new CreditsCache(redis);
}

export async function closeAll() {
	await prisma?.$disconnect();
	redis?.disconnect();
	prisma = undefined;
	redis = undefined;
}

// A fresh user id for one test.
export function uid(tag) {
	return `t-${tag}-${randomUUID().slice(0, 8)}`;
}

// Open an account for a fresh user with `amount` credits.
export async function newUser(tag, amount) {
	const user = uid(tag);
	await db().init(user, BigInt(amount));
	return user;
}

// One HTTP request to the app: { status, body (parsed), text, headers }.
export async function api(path, { user, method, body, key, headers = {} } = {}) {
	const h = { ...headers };
	if (user !== undefined)
		h['x-user-id'] = user;
	if (key !== undefined)
		h['idempotency-key'] = key;
	if (body !== undefined)
		h['content-type'] = 'application/json';
	const res = await fetch(APP_URL + path, {
		method: method ?? (body === undefined ? 'GET' : 'POST'),
		headers: h,
		body: body === undefined ? undefined : JSON.stringify(body),
	});
	const text = await res.text();
	let parsed = null;
	try {
		parsed = JSON.parse(text);
	} catch {
		// not JSON
	}
	return { status: res.status, body: parsed, text, headers: res.headers };
}

export function sleep(ms) {
	return new Promise((r) => setTimeout(r, ms));
}

// Poll `check` (which throws while not yet true) until it passes or
// `ms` elapse; rethrow the last failure.
export async function eventually(check, ms = 2000, every = 25) {
	const end = Date.now() + ms;
	for (;;) {
		try {
			return await check();
		} catch (e) {
			if (Date.now() >= end)
				throw e;
		}
		await sleep(every);
	}
}
