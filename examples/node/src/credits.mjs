// The credits extension seen from Prisma 7: raw queries only.
//
// The schema belongs to the extension (sql/credits.sql), so there are no
// Prisma models: every call is a `$queryRaw` tagged template, which sends the
// interpolated values as bind parameters (never spliced into the SQL text).
// Each function of the extension locks the account row itself, so one call is
// one atomic, idempotent operation; the app needs no transaction of its own.
//
// Raw results come back with bigint columns as JS bigint and timestamptz as
// Date; see json.mjs for sending them as JSON.  The ledger's txid column is of
// type xid8, which Prisma cannot deserialise, so history selects its columns
// by name.

import { PrismaClient } from '@prisma/client';
import { PrismaPg } from '@prisma/adapter-pg';

// Build a PrismaClient on @prisma/adapter-pg.  With no DATABASE_URL, node-pg
// reads PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE from the
// environment.
export function createPrisma({ connectionString = process.env.DATABASE_URL, max = 10 } = {}) {
	const adapter = new PrismaPg(connectionString ? { connectionString, max } : { max });
	return new PrismaClient({ adapter });
}

// A failure reported by the extension: SQLSTATE class CR.
export class CreditsError extends Error {
	constructor({ code, message, detail, hint }) {
		super(message);
		this.name = 'CreditsError';
		this.code = code;		// e.g. 'CR001'
		this.detail = detail ?? null;
		this.hint = hint ?? null;
		if (code === 'CR001') {
			// DETAIL is exactly `required=N available=M`.
			const m = /^required=(-?\d+) available=(-?\d+)$/.exec(detail ?? '');
			if (m) {
				this.required = BigInt(m[1]);
				this.available = BigInt(m[2]);
			}
		}
	}
}

// Turn Prisma's error for a failed raw query into a CreditsError when the
// SQLSTATE is of class CR; return anything else unchanged.
export function fromPrismaError(e) {
	// PrismaClientKnownRequestError, code P2010 "raw query failed".
	const cause = e?.code === 'P2010' ? e.meta?.driverAdapterError?.cause : undefined;
	const code = cause?.originalCode;
	if (typeof code === 'string' && code.startsWith('CR')) {
		return new CreditsError({
			code,
			message: cause.originalMessage ?? cause.message,
			detail: cause.detail,
			hint: cause.hint,
		});
	}
	return e;
}

async function call(query) {
	try {
		return await query;
	} catch (e) {
		throw fromPrismaError(e);
	}
}

async function one(query) {
	const rows = await call(query);
	return rows[0];
}

const json = (obj) => JSON.stringify(obj ?? {});

// Thin wrappers, one per SQL function.  `key` is the idempotency key (or
// null): a retry with the same key returns the original row, a reuse with
// different parameters fails with CR003.
export class Credits {
	constructor(prisma) {
		this.prisma = prisma;
	}

	// Open an account (idempotent), optionally with a starting amount.
	init(user, amount = null, metadata = {}) {
		return one(this.prisma.$queryRaw`
			SELECT tx_id, balance, created_at
			  FROM credits.credit_init(${user}::text, ${amount}::bigint, ${json(metadata)}::jsonb)`);
	}

	deduct(user, amount, action, metadata = {}, key = null) {
		return one(this.prisma.$queryRaw`
			SELECT tx_id, balance, created_at
			  FROM credits.credit_deduct(${user}::text, ${amount}::bigint, ${action}::text,
										 ${json(metadata)}::jsonb, ${key}::text)`);
	}

	add(user, amount, action, metadata = {}, key = null) {
		return one(this.prisma.$queryRaw`
			SELECT tx_id, balance, created_at
			  FROM credits.credit_add(${user}::text, ${amount}::bigint, ${action}::text,
									  ${json(metadata)}::jsonb, ${key}::text)`);
	}

	async balance(user) {
		const row = await one(this.prisma.$queryRaw`
			SELECT credits.credit_balance(${user}::text) AS balance`);
		return row.balance;
	}

	// Balance minus the holds that are open and unexpired.
	async available(user) {
		const row = await one(this.prisma.$queryRaw`
			SELECT credits.credit_available(${user}::text) AS available`);
		return row.available;
	}

	history(user, limit = 50) {
		return call(this.prisma.$queryRaw`
			SELECT id, amount, balance_after, action, metadata, idempotency_key, created_at
			  FROM credits.credit_history(${user}::text, ${limit}::int)`);
	}

	// Price `quantity` units of `action` (credits.prices) and deduct it.
	charge(user, action, quantity, metadata = {}, key = null) {
		return one(this.prisma.$queryRaw`
			SELECT tx_id, balance, created_at
			  FROM credits.credit_charge(${user}::text, ${action}::text, ${String(quantity)}::numeric,
										 ${json(metadata)}::jsonb, ${key}::text)`);
	}

	async cost(action, quantity) {
		const row = await one(this.prisma.$queryRaw`
			SELECT credits.credit_cost(${action}::text, ${String(quantity)}::numeric) AS cost`);
		return row.cost;
	}

	// Reserve the price of `quantity` units of `action` for `ttl`.
	holdFor(user, action, quantity, metadata = {}, ttl = '1 hour', key = null) {
		return one(this.prisma.$queryRaw`
			SELECT hold_id, held, available
			  FROM credits.credit_hold(${user}::text,
									   credits.credit_cost(${action}::text, ${String(quantity)}::numeric),
									   ${action}::text, ${json(metadata)}::jsonb,
									   ${ttl}::interval, ${key}::text)`);
	}

	// Capture the price of `quantity` units of `action` from an open hold.
	// With a key, a retried capture returns the original ledger row.
	captureFor(holdId, action, quantity, metadata = {}, key = null) {
		return one(this.prisma.$queryRaw`
			SELECT tx_id, balance, created_at
			  FROM credits.credit_capture(${holdId}::bigint,
										  credits.credit_cost(${action}::text, ${String(quantity)}::numeric),
										  ${json(metadata)}::jsonb, ${key}::text)`);
	}

	// Release an open hold.  With a key, a retried release returns the
	// original available balance.
	async release(holdId, key = null) {
		const row = await one(this.prisma.$queryRaw`
			SELECT credits.credit_release(${holdId}::bigint, ${key}::text) AS available`);
		return row.available;
	}

	grant(user, amount, source, expiresAt = null, metadata = {}, key = null) {
		return one(this.prisma.$queryRaw`
			SELECT tx_id, balance, created_at
			  FROM credits.credit_grant(${user}::text, ${amount}::bigint, ${source}::text,
										${expiresAt}::timestamptz, ${json(metadata)}::jsonb, ${key}::text)`);
	}

	// Credits spent (and tokens used) per day and action, from the
	// credits.daily_usage view, for the last `days` days.
	dailyUsage(user, days = 30) {
		return call(this.prisma.$queryRaw`
			SELECT to_char(day, 'YYYY-MM-DD') AS day, action, credits::bigint AS credits,
				   tokens::bigint AS tokens
			  FROM credits.daily_usage
			 WHERE user_id = ${user}::text AND day >= current_date - ${days}::int
			 ORDER BY day, action`);
	}
}
