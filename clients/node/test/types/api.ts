// Type-level test of the public API, against the built .d.ts
// (`tsc -p test/types/tsconfig.json`, run by test/types.test.mjs).  The
// line after each expect-error directive must be rejected by the compiler:
// if it compiles, tsc reports the directive as unused and the test fails.
import pg from 'pg';
import { PrismaClient } from '@prisma/client';
import { PrismaPg } from '@prisma/adapter-pg';
import { Redis } from 'ioredis';
import {
	CreditsClient, CreditsError, CreditsSDK, InsufficientCreditsError, toHttpError,
	type HistoryPage, type TxResult,
} from '@credits/client';

const pool = new pg.Pool();
const prisma = new PrismaClient({ adapter: new PrismaPg({}) });
const credits = new CreditsClient({ db: pool, redis: new Redis() });
const onPrisma = new CreditsSDK({ db: prisma });

export async function ok(): Promise<void> {
	const r: TxResult = await credits.deduct('u', 10n, 'chat_message', { model: 'small' }, { idempotencyKey: 'k' });
	const balance: bigint = r.balance;
	const txId: bigint = r.txId;
	const when: Date = r.timestamp;
	await credits.deduct('u', 10, 'chat_message');
	await onPrisma.add('u', 5n, 'refund');
	const b: bigint = await credits.getBalance('u', { source: 'sql' });
	const page: HistoryPage = await credits.history('u', { limit: 10, cursor: null });
	await credits.getTransactions('u', { limit: 5, startTime: new Date(), endTime: new Date() });
	const h = await credits.hold('u', { quantity: '2.5' }, 'video_generation', { ttl: 900, idempotencyKey: 'v' });
	const holdId: bigint = h.holdId;
	await credits.capture(holdId, { quantity: 2, action: 'video_generation', idempotencyKey: 'c' });
	await credits.release(holdId, { idempotencyKey: 'r' });
	await credits.grant('u', 100n, 'promo', { expiresAt: new Date() });
	await prisma.$transaction(async (tx) => {
		await credits.with(tx).deduct('u', 1n, 'x');
	});
	await credits.transaction(async (c) => c.deduct('u', 1n, 'x'));
	void [balance, txId, when, b, page];
}

export async function rejected(): Promise<void> {
	// @ts-expect-error amounts are bigint or number, not strings
	await credits.deduct('u', '10', 'chat_message');
	// @ts-expect-error the action is required
	await credits.deduct('u', 10n);
	// @ts-expect-error the option is idempotencyKey, not idempotency_key
	await credits.deduct('u', 10n, 'x', {}, { idempotency_key: 'k' });
	// @ts-expect-error metadata is an object
	await credits.deduct('u', 10n, 'x', 'metadata');
	// @ts-expect-error a balance is a bigint, not a number
	const n: number = await credits.getBalance('u');
	// @ts-expect-error source is 'auto' or 'sql'
	await credits.getBalance('u', { source: 'redis-only' });
	// @ts-expect-error the user id is a string
	await credits.getBalance(42);
	// @ts-expect-error the constructor needs a db
	new CreditsClient({});
	// @ts-expect-error a db must be a Prisma client or a pg Pool/Client
	new CreditsClient({ db: { notADriver: true } });
	// @ts-expect-error capture takes an options object
	await credits.capture(1n, 10n);
	// @ts-expect-error hold's quantity form is { quantity }
	await credits.hold('u', { qty: 2 }, 'video_generation');
	// @ts-expect-error txId is a bigint
	const s: string = (await credits.add('u', 1n, 'x')).txId;
	void [n, s];
}

export function errors(e: unknown): void {
	if (e instanceof InsufficientCreditsError) {
		const required: bigint | null = e.required;
		const status: number = e.httpStatus;
		void [required, status];
	}
	if (e instanceof CreditsError) {
		const code: string = e.code;
		const detail: string | null = e.detail;
		// @ts-expect-error `required` exists on InsufficientCreditsError only
		void e.required;
		void [code, detail];
	}
	const { status, body } = toHttpError(e);
	const s: number = status;
	const m: string = body.message;
	// @ts-expect-error the body's numbers are strings (JSON-safe)
	const a: bigint | undefined = body.available;
	void [s, m, a];
}
