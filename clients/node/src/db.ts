// The app's database connection, whichever driver it is.
//
// The client never opens connections of its own: it runs its statements on
// what the app gives it, so that a call made with a transaction's handle
// (a Prisma interactive-transaction client, or a node-postgres client after
// BEGIN) commits or rolls back with the app's own writes.  Every statement
// is parameterised ($1, $2, ... with explicit casts); values are never
// spliced into SQL text.

import { fromDriverError } from './errors.js';

/** What node-postgres's Pool, Client and PoolClient have in common. */
export interface PgQueryable {
	query(config: { text: string; values?: unknown[] }): Promise<{ rows: unknown[] }>;
}

/** A node-postgres Pool: checks clients out for transactions. */
export interface PgPoolLike extends PgQueryable {
	connect(): Promise<PgQueryable & { release(err?: boolean | Error): void }>;
}

/**
 * What a PrismaClient and a Prisma interactive-transaction client have in
 * common (Prisma 7 with a driver adapter such as @prisma/adapter-pg).
 */
export interface PrismaQueryable {
	$queryRawUnsafe<T = unknown>(query: string, ...values: any[]): Promise<T>;
}

/** A PrismaClient (not a transaction client): can start transactions. */
export interface PrismaClientLike extends PrismaQueryable {
	$transaction<R>(fn: (tx: any) => Promise<R>, options?: any): Promise<R>;
}

/** A database handle the client runs on. */
export type Db = PrismaQueryable | PgQueryable;

export type Row = Record<string, unknown>;

/** Runs parameterised statements on one handle; errors come back typed. */
export class Executor {
	readonly kind: 'prisma' | 'pg';

	constructor(readonly db: Db) {
		if (typeof (db as PrismaQueryable)?.$queryRawUnsafe === 'function')
			this.kind = 'prisma';
		else if (typeof (db as PgQueryable)?.query === 'function')
			this.kind = 'pg';
		else
			throw new TypeError('credits: db must be a PrismaClient (or transaction client) or a node-postgres Pool/Client');
	}

	/** Run `text` with `values`; CR errors become CreditsError subclasses. */
	async rows(text: string, values: unknown[]): Promise<Row[]> {
		try {
			if (this.kind === 'prisma')
				return await (this.db as PrismaQueryable).$queryRawUnsafe<Row[]>(text, ...values);
			const res = await (this.db as PgQueryable).query({ text, values });
			return res.rows as Row[];
		} catch (e) {
			throw fromDriverError(e);
		}
	}

	/** Run `fn` inside one transaction on this handle (see CreditsClient.transaction). */
	async transaction<R>(fn: (tx: Db) => Promise<R>, inTransaction: boolean): Promise<R> {
		if (inTransaction)
			return fn(this.db);
		if (this.kind === 'prisma') {
			const p = this.db as PrismaClientLike;
			if (typeof p.$transaction !== 'function')
				return fn(this.db);		// already a transaction client
			return p.$transaction((tx) => fn(tx));
		}
		const pool = this.db as Partial<PgPoolLike> & { totalCount?: unknown; release?: unknown };
		const isPool = typeof pool.connect === 'function' && typeof pool.release !== 'function' &&
			'totalCount' in pool;
		const client = isPool ? await (pool as PgPoolLike).connect() : undefined;
		const conn: PgQueryable = client ?? (this.db as PgQueryable);
		let broken = false;
		try {
			await conn.query({ text: 'BEGIN' });
			const result = await fn(conn);
			await conn.query({ text: 'COMMIT' });
			return result;
		} catch (e) {
			try {
				await conn.query({ text: 'ROLLBACK' });
			} catch {
				broken = true;		// the connection is gone, and its transaction
			}
			throw e;
		} finally {
			client?.release(broken);		// true: the pool discards the connection
		}
	}
}
