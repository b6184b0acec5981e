// CreditsClient: the credits extension's SQL API as typed methods.
//
// Every method is one SQL statement on the app's own handle (see db.ts), so
// every call is one atomic step of the extension (it locks the account row
// itself), and a call made on a transaction's handle (client.with(tx), or
// inside client.transaction()) commits or rolls back with the app's writes.
// Functions are called with named arguments (`user_id => $1::text`), and an
// optional argument is only sent when the caller gives it, so the defaults
// stay the extension's.
//
// Reads that can be answered by the credits-sync mirror (getBalance,
// getAvailable, getTransactions/history) use Redis when a client was given
// and the call is not bound to a transaction; a miss, a gap or a Redis
// failure falls back to SQL, never to 0.

import { Cache, type RedisLike } from './cache.js';
import { Executor, type Db, type Row } from './db.js';
import { creditsError, InvalidArgumentError } from './errors.js';
import {
	amountParam, big, bigOrNull, date, dateOrNull, decimal, durationParam, json, jsonParam,
	quantityParam, textParam, timeParam,
	type Amount, type Duration, type Quantity,
} from './values.js';

export type { Amount, Duration, Quantity };

export interface CreditsClientOptions {
	/**
	 * The database handle: a PrismaClient on @prisma/adapter-pg (or a Prisma
	 * interactive-transaction client), or a node-postgres Pool, Client or
	 * PoolClient.  Connect as a role granted credits_app.
	 */
	db: Db;
	/** An ioredis or node-redis client for cached reads (optional). */
	redis?: RedisLike | undefined;
	/** credits-sync's key prefix, if it runs with --prefix (default none). */
	redisPrefix?: string | undefined;
	/** Called when a Redis read fails (the read then uses SQL). */
	onCacheError?: ((error: unknown) => void) | undefined;
}

/** Where a read came from. */
export type ReadSource = 'redis' | 'sql';

/** `auto` (default): Redis when it can answer, else SQL.  `sql`: always SQL. */
export type SourceOption = 'auto' | 'sql';

export interface ReadOptions {
	source?: SourceOption;
}

/** Common to every mutating call. */
export interface MutationOptions {
	/**
	 * Makes the call safe to retry: a retry with the same key (per user)
	 * returns the original result and changes nothing; the key used for a
	 * different operation is IdempotencyConflictError (CR003).
	 */
	idempotencyKey?: string | null | undefined;
}

export interface MetadataOptions {
	/** A JSON object stored on the ledger row (never compared). */
	metadata?: Record<string, unknown> | undefined;
}

/** The ledger row a mutation wrote (or, on a keyed retry, the original one). */
export interface TxResult {
	txId: bigint;
	/** The balance after the change. */
	balance: bigint;
	/** When the ledger row was written. */
	timestamp: Date;
}

export interface HoldResult {
	holdId: bigint;
	/** The amount held. */
	held: bigint;
	/** The available balance after the hold. */
	available: bigint;
}

export interface SubscribeResult {
	periodStart: Date;
	periodEnd: Date;
	/** Allowance granted by this call (0 if this period's was granted before). */
	granted: bigint;
	balance: bigint;
}

export interface Usage {
	balance: bigint;
	available: bigint;
	held: bigint;
	plan: string | null;
	planEndsAt: Date | null;
	periodStart: Date | null;
	spentPeriod: bigint;
	spentLifetime: bigint;
	tokensPeriod: bigint;
	tokensLifetime: bigint;
}

export interface DailyUsage {
	/** UTC day, YYYY-MM-DD. */
	day: string;
	action: string;
	credits: bigint;
	tokens: bigint;
}

export interface VerifyResult {
	valid: boolean;
	/** accounts.balance. */
	cached: bigint;
	/** The sum of the ledger. */
	calculated: bigint;
	difference: bigint;
	/** The first ledger row whose hash chain is broken (tampering), or null. */
	brokenTxId: bigint | null;
	/** What is wrong, in words, or null. */
	problem: string | null;
}

export interface VerifyMismatch extends Omit<VerifyResult, 'valid'> {
	userId: string;
}

/** One ledger row. */
export interface Transaction {
	txId: bigint;
	/** Negative for spending. */
	amount: bigint;
	/** The balance after this row. */
	balance: bigint;
	action: string;
	metadata: Record<string, unknown>;
	/** The idempotency key (null when none, or when read from Redis, which does not keep it). */
	idempotencyKey: string | null;
	timestamp: Date;
	/**
	 * A charge's quantity, rate and carry (exact decimal strings), present
	 * only when credit_history returns those ledger columns (1.1's does
	 * not yet); never from Redis.
	 */
	quantity?: string | null;
	rate?: string | null;
	carry?: string | null;
}

// The metered columns of a ledger row, when the result has them.
function metered(r: Row): Pick<Transaction, 'quantity' | 'rate' | 'carry'> {
	const out: Pick<Transaction, 'quantity' | 'rate' | 'carry'> = {};
	for (const k of ['quantity', 'rate', 'carry'] as const)
		if (k in r)
			out[k] = r[k] === null || r[k] === undefined ? null : decimal(r[k]);
	return out;
}

export interface HistoryOptions extends ReadOptions {
	/** Rows per page, 1 to 1000 (default 50). */
	limit?: number;
	/** Only rows at or after this time. */
	startTime?: Date | undefined;
	/** Only rows before this time. */
	endTime?: Date | undefined;
	/** The nextCursor of the previous page. */
	cursor?: string | null | undefined;
}

export interface HistoryPage {
	/** Newest first. */
	transactions: Transaction[];
	/** Pass as `cursor` for the next (older) page; null on the last page. */
	nextCursor: string | null;
	source: ReadSource;
}

export interface BalanceRead {
	balance: bigint;
	source: ReadSource;
}

const TX_COLS = 'tx_id, balance, created_at';

function txResult(row: Row | undefined): TxResult {
	if (!row)
		throw new Error('credits: the function returned no row');
	return { txId: big(row.tx_id), balance: big(row.balance), timestamp: date(row.created_at) };
}

/** One named argument: `name => $n::type`, or raw SQL with its own params. */
type Arg = [name: string, value: unknown, type: string] | [name: string, sql: (p: (v: unknown, type: string) => string) => string];

// SELECT <cols> FROM credits.<fn>(<named args>), skipping undefined values.
function callSql(fn: string, cols: string, args: Arg[], scalar = false): { text: string; values: unknown[] } {
	const values: unknown[] = [];
	const param = (v: unknown, type: string) => {
		values.push(v);
		return `$${values.length}::${type}`;
	};
	const parts: string[] = [];
	for (const a of args) {
		if (a.length === 2)
			parts.push(`${a[0]} => ${a[1](param)}`);
		else if (a[1] !== undefined)
			parts.push(`${a[0]} => ${param(a[1], a[2])}`);
	}
	const call = `credits.${fn}(${parts.join(', ')})`;
	return { text: scalar ? `SELECT ${call} AS ${cols}` : `SELECT ${cols} FROM ${call}`, values };
}

function userParam(userId: unknown): string {
	if (typeof userId !== 'string')
		throw new InvalidArgumentError({ code: 'CR010', message: 'invalid user_id: must be a string', detail: 'Checked by @credits/client before the call; nothing was sent.' });
	return userId;
}

function keyOf(o: MutationOptions | undefined): string | undefined {
	const k = o?.idempotencyKey;
	return k === null || k === undefined ? undefined : (textParam('idempotency_key', k) as string);
}

function metaOf(m: Record<string, unknown> | undefined): string | undefined {
	return m === undefined ? undefined : (jsonParam('metadata', m) as string);
}

// Cursor: "<tx_id>.<created_at in epoch microseconds>", opaque to callers:
// SQL pages with the tx_id (before_tx_id), Redis bounds the score with the
// time.
function encodeCursor(id: bigint, us: bigint): string {
	return `${id}.${us}`;
}

function decodeCursor(c: string): { id: bigint; us: bigint } {
	const m = /^(\d{1,19})\.(-?\d{1,19})$/.exec(c);
	if (!m)
		throw new InvalidArgumentError({ code: 'CR010', message: 'invalid cursor: not a cursor returned by history()', detail: 'Checked by @credits/client before the call; nothing was sent.' });
	return { id: BigInt(m[1]!), us: BigInt(m[2]!) };
}

/** The client.  One instance per app (it holds no connection of its own). */
export class CreditsClient {
	private readonly ex: Executor;
	private readonly cache: Cache | undefined;
	private readonly onCacheError: ((e: unknown) => void) | undefined;
	private readonly inTransaction: boolean;

	constructor(options: CreditsClientOptions);
	/** @internal */
	constructor(options: CreditsClientOptions, inTransaction: boolean);
	constructor(private readonly options: CreditsClientOptions, inTransaction = false) {
		if (!options || typeof options !== 'object')
			throw new TypeError('credits: new CreditsClient({ db, redis? })');
		this.ex = new Executor(options.db);
		this.inTransaction = inTransaction;
		// Redis cannot see a transaction's uncommitted writes: no cache inside one.
		this.cache = options.redis && !inTransaction ? new Cache(options.redis, options.redisPrefix ?? '') : undefined;
		this.onCacheError = options.onCacheError;
	}

	/** Which driver the handle belongs to. */
	get driver(): 'prisma' | 'pg' {
		return this.ex.kind;
	}

	/**
	 * The same client on a transaction's handle: a Prisma interactive
	 * transaction client (`prisma.$transaction(async (tx) => ...)`) or a
	 * node-postgres client on which the app ran BEGIN.  Its calls commit or
	 * roll back with the app's transaction, and its reads use SQL only.
	 */
	with(tx: Db): CreditsClient {
		return new CreditsClient({ ...this.options, db: tx }, true);
	}

	/**
	 * Run `fn` in one database transaction: BEGIN ... COMMIT on a pg client
	 * (checked out of the Pool, and released), or prisma.$transaction().
	 * `fn` gets the client bound to the transaction and the raw handle for
	 * the app's own queries.  Any exception rolls everything back and is
	 * rethrown.  Called on a client that is already in a transaction, `fn`
	 * simply runs in it.
	 */
	transaction<R>(fn: (credits: CreditsClient, tx: any) => Promise<R>): Promise<R> {
		return this.ex.transaction((tx) => fn(this.inTransaction ? this : this.with(tx), tx), this.inTransaction);
	}

	private async one(q: { text: string; values: unknown[] }): Promise<Row> {
		const rows = await this.ex.rows(q.text, q.values);
		if (!rows[0])
			throw new Error('credits: the function returned no row');
		return rows[0];
	}

	private cacheFailed(e: unknown): void {
		try {
			this.onCacheError?.(e);
		} catch {
			// a logging hook must not break the read
		}
	}

	// ----- core ---------------------------------------------------------

	/**
	 * Open an account with a signup grant: `credits`, or the extension's
	 * default when omitted.  Idempotent: for an existing account nothing is
	 * granted and the first ledger row comes back with the current balance.
	 */
	async initializeUser(userId: string, credits?: Amount | null, options: MetadataOptions = {}): Promise<TxResult> {
		return txResult(await this.one(callSql('credit_init', TX_COLS, [
			['user_id', userParam(userId), 'text'],
			['amount', credits === undefined ? undefined : amountParam('amount', credits), 'bigint'],
			['metadata', metaOf(options.metadata), 'jsonb'],
		])));
	}

	/** Spend `amount` credits; InsufficientCreditsError (402) if not available. */
	async deduct(userId: string, amount: Amount, action: string, metadata?: Record<string, unknown>, options?: MutationOptions): Promise<TxResult> {
		return txResult(await this.one(callSql('credit_deduct', TX_COLS, [
			['user_id', userParam(userId), 'text'],
			['amount', amountParam('amount', amount), 'bigint'],
			['action', textParam('action', action), 'text'],
			['metadata', metaOf(metadata), 'jsonb'],
			['idempotency_key', keyOf(options), 'text'],
		])));
	}

	/** Add `amount` credits (opens the account if needed). */
	async add(userId: string, amount: Amount, action: string, metadata?: Record<string, unknown>, options?: MutationOptions): Promise<TxResult> {
		return txResult(await this.one(callSql('credit_add', TX_COLS, [
			['user_id', userParam(userId), 'text'],
			['amount', amountParam('amount', amount), 'bigint'],
			['action', textParam('action', action), 'text'],
			['metadata', metaOf(metadata), 'jsonb'],
			['idempotency_key', keyOf(options), 'text'],
		])));
	}

	/**
	 * The balance (holds included; see getAvailable).  From Redis's
	 * balance:<user> when present, else SQL; UnknownAccountError when the
	 * user has no account.  `{ source: 'sql' }` reads PostgreSQL only.
	 */
	async getBalance(userId: string, options: ReadOptions = {}): Promise<bigint> {
		return (await this.getBalanceWithSource(userId, options)).balance;
	}

	/** getBalance, and where the value came from. */
	async getBalanceWithSource(userId: string, options: ReadOptions = {}): Promise<BalanceRead> {
		return this.cachedInteger('balance', 'credit_balance', userId, options);
	}

	/** Balance minus open, unexpired holds (what a deduction may spend). */
	async getAvailable(userId: string, options: ReadOptions = {}): Promise<bigint> {
		return (await this.cachedInteger('available', 'credit_available', userId, options)).balance;
	}

	private async cachedInteger(kind: 'balance' | 'available', fn: string, userId: string, options: ReadOptions): Promise<BalanceRead> {
		const user = userParam(userId);
		if (this.cache && options.source !== 'sql') {
			try {
				const v = await this.cache.integer(kind, user);
				if (v !== null)
					return { balance: v, source: 'redis' };
			} catch (e) {
				this.cacheFailed(e);
			}
		}
		const row = await this.one(callSql(fn, 'v', [['user_id', user, 'text']], true));
		if (row.v === null || row.v === undefined)
			throw creditsError({
				code: 'CR002',
				message: 'unknown account',
				detail: `No account exists for user_id "${user}".`,
				hint: 'Open the account with credits.credit_init() or credits.credit_add().',
			});
		return { balance: big(row.v), source: 'sql' };
	}

	/** The newest transactions (an array; see history() for the cursor). */
	async getTransactions(userId: string, options: HistoryOptions = {}): Promise<Transaction[]> {
		return (await this.history(userId, options)).transactions;
	}

	/**
	 * One page of the ledger, newest first, with a cursor for the next page.
	 * Served from Redis's txs:<user> when it holds every row the page needs
	 * (a full page in the window, or a window starting after its oldest
	 * row), else from SQL.  Redis lags commits by milliseconds; pass
	 * `{ source: 'sql' }` to read your own writes.
	 */
	async history(userId: string, options: HistoryOptions = {}): Promise<HistoryPage> {
		const user = userParam(userId);
		const limit = options.limit ?? 50;
		if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
			throw new InvalidArgumentError({ code: 'CR010', message: 'invalid limit: must be an integer from 1 to 1000', detail: 'Checked by @credits/client before the call; nothing was sent.' });
		const cursor = options.cursor ? decodeCursor(options.cursor) : undefined;
		timeParam('startTime', options.startTime);
		timeParam('endTime', options.endTime);
		if (this.cache && options.source !== 'sql') {
			try {
				const page = await this.historyFromCache(user, limit, cursor, options.startTime, options.endTime);
				if (page)
					return page;
			} catch (e) {
				this.cacheFailed(e);
			}
		}
		return this.historyFromSql(user, limit, cursor, options.startTime, options.endTime);
	}

	private async historyFromCache(user: string, limit: number, cursor: { id: bigint; us: bigint } | undefined,
		start: Date | undefined, end: Date | undefined): Promise<HistoryPage | null> {
		const cache = this.cache!;
		// Scores are floor(created_at in ms) and the bounds are whole ms, so
		// "start <= created_at < end" is "startMs <= score <= endMs - 1".
		let max = end ? end.getTime() - 1 : Infinity;
		if (cursor)
			max = Math.min(max, Number(cursor.us / 1000n));
		const min = start ? start.getTime() : -Infinity;
		if (max < min)
			return { transactions: [], nextCursor: null, source: 'redis' };
		const want = limit + 1;
		const fetch = want + 32;
		let rows = await cache.range(user, max, min, fetch);
		const full = rows.length === fetch;
		if (full) {
			// The lowest score's rows may continue past the reply: drop them.
			const lowest = rows[rows.length - 1]!.ms;
			rows = rows.filter((r) => r.ms !== lowest);
		}
		// The ledger's order per user is tx_id order (created_at never goes
		// backwards along it), so the rows before the cursor are those with a
		// smaller id, at or below its score.
		let page = rows
			.map((r) => ({ r, us: r.us }))
			.filter(({ r }) => !cursor || r.id < cursor.id)
			.sort((a, b) => (a.r.id < b.r.id ? 1 : -1));
		if (page.length < want) {
			if (full)
				return null;
			// Fewer rows than asked: complete only if the cache reaches back
			// past the window (its rows are the newest suffix of the ledger).
			if (!start)
				return null;
			const older = await cache.range(user, min - 1, -Infinity, 1);
			if (older.length === 0)
				return null;
		}
		page = page.slice(0, want);
		const more = page.length > limit;
		const items = page.slice(0, limit);
		const last = items[items.length - 1];
		return {
			transactions: items.map(({ r }) => ({
				txId: r.id, amount: r.amount, balance: r.balance, action: r.action,
				metadata: r.metadata, idempotencyKey: null, timestamp: r.createdAt,
			})),
			nextCursor: more && last ? encodeCursor(last.r.id, last.us) : null,
			source: 'redis',
		};
	}

	private async historyFromSql(user: string, limit: number, cursor: { id: bigint; us: bigint } | undefined,
		start: Date | undefined, end: Date | undefined): Promise<HistoryPage> {
		// credit_history pages by tx_id (the ledger's order per user) with
		// before_tx_id; one row more than the page says whether there is a next.
		const q = callSql('credit_history',
			'*, (extract(epoch FROM created_at) * 1000000)::int8 AS created_us', [
				['user_id', user, 'text'],
				['lim', limit + 1, 'int4'],
				['start_time', timeParam('startTime', start) ?? undefined, 'timestamptz'],
				['end_time', timeParam('endTime', end) ?? undefined, 'timestamptz'],
				['before_tx_id', cursor?.id.toString(), 'int8'],
			]);
		const rows = await this.ex.rows(q.text, q.values);
		const more = rows.length > limit;
		const items = rows.slice(0, limit);
		const last = items[items.length - 1];
		return {
			transactions: items.map((r) => ({
				txId: big(r.id), amount: big(r.amount), balance: big(r.balance_after), action: String(r.action),
				metadata: json(r.metadata), idempotencyKey: (r.idempotency_key as string | null) ?? null,
				timestamp: date(r.created_at), ...metered(r),
			})),
			nextCursor: more && last ? encodeCursor(big(last.id), big(last.created_us)) : null,
			source: 'sql',
		};
	}

	/**
	 * Check one account: its cached balance against the ledger's sum, and
	 * the ledger's hash chain (brokenTxId names the first tampered row).
	 */
	async verifyBalance(userId: string): Promise<VerifyResult> {
		const r = await this.one(callSql('credit_verify', '*', [['user_id', userParam(userId), 'text']]));
		return {
			valid: Boolean(r.valid), cached: big(r.cached), calculated: big(r.calculated), difference: big(r.difference),
			brokenTxId: bigOrNull(r.broken_tx_id), problem: (r.problem as string | null | undefined) ?? null,
		};
	}

	/** Every account that fails verifyBalance (credits_ops or credits_reader). */
	async verifyAll(): Promise<VerifyMismatch[]> {
		const rows = await this.ex.rows('SELECT * FROM credits.credit_verify_all()', []);
		return rows.map((r) => ({
			userId: String(r.user_id), cached: big(r.cached), calculated: big(r.calculated), difference: big(r.difference),
			brokenTxId: bigOrNull(r.broken_tx_id), problem: (r.problem as string | null | undefined) ?? null,
		}));
	}

	/** Set the cached balance to the ledger's sum; returns it (credits_ops). */
	async rebuildBalance(userId: string): Promise<bigint> {
		const r = await this.one(callSql('credit_rebuild', 'v', [['user_id', userParam(userId), 'text']], true));
		return big(r.v);
	}

	/** The balance at a moment (null if the account did not exist yet). */
	async balanceAt(userId: string, at: Date | string): Promise<bigint | null> {
		const r = await this.one(callSql('credit_balance_at', 'v', [
			['user_id', userParam(userId), 'text'],
			['at', timeParam('at', at), 'timestamptz'],
		], true));
		return bigOrNull(r.v);
	}

	// ----- billing ------------------------------------------------------

	/** What `quantity` units of `action` cost, as the price in force rounds it. */
	async cost(action: string, quantity: Quantity): Promise<bigint> {
		const r = await this.one(callSql('credit_cost', 'v', [
			['action', textParam('action', action), 'text'],
			['quantity', quantityParam('quantity', quantity), 'numeric'],
		], true));
		return big(r.v);
	}

	/** Alias of cost(), the old PricingEngine.calculateCost(). */
	calculateCost(action: string, quantity: Quantity): Promise<bigint> {
		return this.cost(action, quantity);
	}

	/** Price `quantity` units of `action` and deduct it. */
	async charge(userId: string, action: string, quantity: Quantity, metadata?: Record<string, unknown>, options?: MutationOptions): Promise<TxResult> {
		return txResult(await this.one(callSql('credit_charge', TX_COLS, [
			['user_id', userParam(userId), 'text'],
			['action', textParam('action', action), 'text'],
			['quantity', quantityParam('quantity', quantity), 'numeric'],
			['metadata', metaOf(metadata), 'jsonb'],
			['idempotency_key', keyOf(options), 'text'],
		])));
	}

	/**
	 * Reserve credit for metered work: `amount` credits, or the price of
	 * `{ quantity }` units of `action`.  Capture or release it later; it
	 * expires after `ttl` (seconds or an interval string; default 1 hour).
	 */
	async hold(userId: string, amount: Amount | { quantity: Quantity }, action: string,
		options: MutationOptions & MetadataOptions & { ttl?: Duration } = {}): Promise<HoldResult> {
		const amountArg: Arg = typeof amount === 'object' && amount !== null
			? ['amount', (p) => `credits.credit_cost(${p(textParam('action', action), 'text')}, ${p(quantityParam('quantity', amount.quantity), 'numeric')})`]
			: ['amount', amountParam('amount', amount), 'bigint'];
		const r = await this.one(callSql('credit_hold', 'hold_id, held, available', [
			['user_id', userParam(userId), 'text'],
			amountArg,
			['action', textParam('action', action), 'text'],
			['metadata', metaOf(options.metadata), 'jsonb'],
			['ttl', durationParam('ttl', options.ttl) ?? undefined, 'interval'],
			['idempotency_key', keyOf(options), 'text'],
		]));
		return { holdId: big(r.hold_id), held: big(r.held), available: big(r.available) };
	}

	/**
	 * Capture a hold: `amount` credits, or the price of `quantity` units of
	 * `action`, or (neither) the whole hold.  The rest is released.
	 */
	async capture(holdId: Amount, options: MutationOptions & MetadataOptions & {
		amount?: Amount | undefined; quantity?: Quantity | undefined; action?: string | undefined;
	} = {}): Promise<TxResult> {
		let amountArg: Arg;
		if (options.quantity !== undefined) {
			if (options.action === undefined)
				throw new InvalidArgumentError({ code: 'CR010', message: 'invalid action: capture by quantity needs the action', detail: 'Checked by @credits/client before the call; nothing was sent.' });
			amountArg = ['amount', (p) => `credits.credit_cost(${p(textParam('action', options.action), 'text')}, ${p(quantityParam('quantity', options.quantity), 'numeric')})`];
		} else {
			amountArg = ['amount', options.amount === undefined ? undefined : amountParam('amount', options.amount), 'bigint'];
		}
		return txResult(await this.one(callSql('credit_capture', TX_COLS, [
			['hold_id', amountParam('hold_id', holdId), 'bigint'],
			amountArg,
			['metadata', metaOf(options.metadata), 'jsonb'],
			['idempotency_key', keyOf(options), 'text'],
		])));
	}

	/** Release a hold; returns the available balance after it. */
	async release(holdId: Amount, options: MutationOptions = {}): Promise<bigint> {
		const r = await this.one(callSql('credit_release', 'v', [
			['hold_id', amountParam('hold_id', holdId), 'bigint'],
			['idempotency_key', keyOf(options), 'text'],
		], true));
		return big(r.v);
	}

	/** Grant credits from `source`, optionally expiring at `expiresAt`. */
	async grant(userId: string, amount: Amount, source: string,
		options: MutationOptions & MetadataOptions & { expiresAt?: Date | string | null | undefined } = {}): Promise<TxResult> {
		return txResult(await this.one(callSql('credit_grant', TX_COLS, [
			['user_id', userParam(userId), 'text'],
			['amount', amountParam('amount', amount), 'bigint'],
			['source', textParam('source', source), 'text'],
			['expires_at', timeParam('expiresAt', options.expiresAt) ?? undefined, 'timestamptz'],
			['metadata', metaOf(options.metadata), 'jsonb'],
			['idempotency_key', keyOf(options), 'text'],
		])));
	}

	/** Subscribe to `plan` (or change plan); grants the current period's allowance. */
	async subscribe(userId: string, plan: string,
		options: MutationOptions & { endsAt?: Date | string | null | undefined } = {}): Promise<SubscribeResult> {
		const r = await this.one(callSql('credit_subscribe', 'period_start, period_end, granted, balance', [
			['user_id', userParam(userId), 'text'],
			['plan', textParam('plan', plan), 'text'],
			['ends_at', timeParam('endsAt', options.endsAt) ?? undefined, 'timestamptz'],
			['idempotency_key', keyOf(options), 'text'],
		]));
		return { periodStart: date(r.period_start), periodEnd: date(r.period_end), granted: big(r.granted), balance: big(r.balance) };
	}

	/** Balance, holds, plan and spending of one user. */
	async usage(userId: string): Promise<Usage> {
		const r = await this.one(callSql('credit_usage',
			'balance, available, held, plan, plan_ends_at, period_start, spent_period::text AS spent_period, spent_lifetime::text AS spent_lifetime, tokens_period::text AS tokens_period, tokens_lifetime::text AS tokens_lifetime',
			[['user_id', userParam(userId), 'text']]));
		return {
			balance: big(r.balance), available: big(r.available), held: big(r.held),
			plan: (r.plan as string | null) ?? null, planEndsAt: dateOrNull(r.plan_ends_at), periodStart: dateOrNull(r.period_start),
			spentPeriod: big(r.spent_period), spentLifetime: big(r.spent_lifetime),
			tokensPeriod: big(r.tokens_period), tokensLifetime: big(r.tokens_lifetime),
		};
	}

	/**
	 * Credits spent and tokens used per UTC day and action over the last
	 * `days` days (the credits.daily_usage view: needs SELECT on it, which
	 * credits_reader has).
	 */
	async dailyUsage(userId: string, options: { days?: number } = {}): Promise<DailyUsage[]> {
		const days = options.days ?? 30;
		if (!Number.isInteger(days) || days < 1 || days > 3660)
			throw new InvalidArgumentError({ code: 'CR010', message: 'invalid days: must be an integer from 1 to 3660', detail: 'Checked by @credits/client before the call; nothing was sent.' });
		const rows = await this.ex.rows(
			`SELECT to_char(day, 'YYYY-MM-DD') AS day, action, credits::text AS credits, tokens::text AS tokens
			   FROM credits.daily_usage
			  WHERE user_id = $1::text AND day > (now() AT TIME ZONE 'UTC')::date - $2::int
			  ORDER BY day, action`, [userParam(userId), days]);
		return rows.map((r) => ({ day: String(r.day), action: String(r.action), credits: big(r.credits), tokens: big(r.tokens) }));
	}

	// ----- jobs (credits_ops) -------------------------------------------

	/** Close expired holds; returns how many. */
	async expireHolds(): Promise<number> {
		return Number((await this.one({ text: 'SELECT credits.credit_expire_holds() AS v', values: [] })).v);
	}

	/** Post the expiry of due grants; returns how many. */
	async expireGrants(): Promise<number> {
		return Number((await this.one({ text: 'SELECT credits.credit_expire_grants() AS v', values: [] })).v);
	}

	/** Grant due plan allowances; returns how many. */
	async renew(): Promise<number> {
		return Number((await this.one({ text: 'SELECT credits.credit_renew() AS v', values: [] })).v);
	}

	/**
	 * Run the jobs (hold expiry, grant expiry, plan renewals) in chunks of
	 * `batchSize` accounts that commit separately: CALL credits.run_jobs().
	 * Not inside a transaction: give a Pool or PrismaClient, not a
	 * transaction's handle.
	 */
	async runJobs(options: { batchSize?: number; jobs?: ('expire_holds' | 'expire_grants' | 'renew')[] } = {}): Promise<void> {
		const args: string[] = [];
		const values: unknown[] = [];
		if (options.batchSize !== undefined) {
			values.push(options.batchSize);
			args.push(`batch_size => $${values.length}::int4`);
		}
		if (options.jobs !== undefined) {
			values.push(options.jobs);
			args.push(`jobs => $${values.length}::text[]`);
		}
		await this.ex.rows(`CALL credits.run_jobs(${args.join(', ')})`, values);
	}

	/** The version of the loaded shared library. */
	async libraryVersion(): Promise<string> {
		return String((await this.one({ text: 'SELECT credits.library_version() AS v', values: [] })).v);
	}
}

/** The old SDK's name. */
export const CreditsSDK = CreditsClient;
/** The old SDK's name. */
export type CreditsSDK = CreditsClient;
