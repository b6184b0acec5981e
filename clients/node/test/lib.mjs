// Shared set-up of the client's tests: the two drivers (node-postgres and
// Prisma 7 over @prisma/adapter-pg), Redis clients (ioredis, node-redis),
// and login roles with the extension's roles, against the running stack
// (test.sh reads .run/env: PGHOST PGPORT PGUSER PGDATABASE REDIS_HOST
// REDIS_PORT).
//
// Roles: the app's calls run as a login role granted credits_app only, as an
// app would; jobs, rebuilds and verify_all as one granted credits_ops only;
// the per-day usage view as one granted credits_reader only.  Fixtures use
// the stack's superuser (PGUSER).

import { randomUUID } from 'node:crypto';

import pg from 'pg';
import { PrismaClient } from '@prisma/client';
import { PrismaPg } from '@prisma/adapter-pg';
import IORedis from 'ioredis';
import { createClient as createNodeRedis } from 'redis';

import { CreditsClient } from '@credits/client';

export const APP_ROLE = 'credits_client_test_app';
export const READER_ROLE = 'credits_client_test_reader';
export const OPS_ROLE = 'credits_client_test_ops';

const opened = [];

function track(x, close) {
	opened.push(close);
	return x;
}

export async function closeAll() {
	while (opened.length > 0) {
		try {
			await opened.pop()();
		} catch {
			// already closed
		}
	}
}

let rolesReady;

// Create the login roles once per process (idempotent across processes).
export function ensureRoles() {
	rolesReady ??= (async () => {
		const admin = new pg.Client();
		await admin.connect();
		try {
			for (const [role, grant] of [[APP_ROLE, 'credits_app'], [READER_ROLE, 'credits_reader'], [OPS_ROLE, 'credits_ops']]) {
				await admin.query(`DO $$ BEGIN
					IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${role}') THEN
						CREATE ROLE ${role} LOGIN;
					END IF;
				EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
				END $$`);
				await admin.query(`GRANT ${grant} TO ${role}`);
			}
		} finally {
			await admin.end();
		}
	})();
	return rolesReady;
}

// A node-postgres Pool as `user` (default: the stack's PGUSER).
export function pgPool(user) {
	const pool = new pg.Pool({ max: 4, ...(user ? { user } : {}) });
	return track(pool, () => pool.end());
}

// A Prisma 7 client on @prisma/adapter-pg as `user`.
export function prismaClient(user) {
	const adapter = new PrismaPg({ max: 4, ...(user ? { user } : {}) });
	const prisma = new PrismaClient({ adapter });
	return track(prisma, () => prisma.$disconnect());
}

export function ioredis() {
	const r = new IORedis({
		host: process.env.REDIS_HOST, port: Number(process.env.REDIS_PORT),
		maxRetriesPerRequest: 1, lazyConnect: false,
	});
	return track(r, () => r.quit());
}

export async function nodeRedis() {
	const r = createNodeRedis({ socket: { host: process.env.REDIS_HOST, port: Number(process.env.REDIS_PORT) } });
	await r.connect();
	return track(r, () => r.quit());
}

// The drivers every method is tested on: [name, make(user) -> db].
export const DRIVERS = [
	['node-postgres', pgPool],
	['prisma', prismaClient],
];

// A client as the app role on driver `make`, with ioredis.
export async function appClient(make, { redis = true } = {}) {
	await ensureRoles();
	return new CreditsClient({ db: make(APP_ROLE), redis: redis ? ioredis() : undefined });
}

// A client as the stack's superuser (fixtures).
export function adminClient(make = pgPool) {
	return new CreditsClient({ db: make() });
}

// A client as a login role granted credits_ops (jobs, rebuilds, verify_all).
export async function opsClient(make = pgPool) {
	await ensureRoles();
	return new CreditsClient({ db: make(OPS_ROLE) });
}

export function uid(tag) {
	return `c-${tag}-${randomUUID().slice(0, 8)}`;
}

export function sleep(ms) {
	return new Promise((r) => setTimeout(r, ms));
}

// Poll `check` (throwing while not yet true) until it passes or ms elapse.
export async function eventually(check, ms = 3000, every = 25) {
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

// One value through the stack's superuser connection.
export async function sql(text, values = []) {
	const c = new pg.Client();
	await c.connect();
	try {
		return (await c.query(text, values)).rows;
	} finally {
		await c.end();
	}
}
