// Shared helpers of the Next.js example's tests: HTTP to the running app
// (APP_URL, started by test.sh), and @credits/client on Prisma as the
// stack's superuser to set up accounts and check results.
import { randomUUID } from 'node:crypto';

import { PrismaClient } from '@prisma/client';
import { PrismaPg } from '@prisma/adapter-pg';
import { CreditsClient } from '@credits/client';

export const APP_URL = process.env.APP_URL ?? 'http://127.0.0.1:3000';

let prisma;

export function db() {
	prisma ??= new PrismaClient({ adapter: new PrismaPg({ max: 2 }) });
	return new CreditsClient({ db: prisma });
}

export async function closeAll() {
	await prisma?.$disconnect();
	prisma = undefined;
}

export function uid(tag) {
	return `n-${tag}-${randomUUID().slice(0, 8)}`;
}

export async function newUser(tag, amount) {
	const user = uid(tag);
	await db().initializeUser(user, BigInt(amount));
	return user;
}

// One request: { status, body (parsed JSON or null), text }.
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
	return { status: res.status, body: parsed, text };
}

export const balanceOf = (u) => db().getBalance(u, { source: 'sql' });

export function sleep(ms) {
	return new Promise((r) => setTimeout(r, ms));
}

export async function eventually(check, ms = 3000, every = 50) {
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
