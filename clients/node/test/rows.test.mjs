// Rows every client can read (issue 9, item 5): `SELECT *` from every table
// and view of schema credits, and from every function's result, deserializes
// in Prisma 7 ($queryRawUnsafe over @prisma/adapter-pg) and in node-postgres.
//
// The objects are enumerated from the catalog, so a table, view or function
// added later is covered without editing this file.  Each function is called
// with sample arguments chosen by parameter name (a parameter without one
// fails the test, naming it), inside a transaction that is rolled back.
// Fixture rows (ledger, holds, grants, a subscription, events) make every
// table non-empty, so column types are exercised with values.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import pg from 'pg';

import { adminClient, closeAll, pgPool, prismaClient, uid } from './lib.mjs';

after(closeAll);

const user = uid('rows');
let holdId;

// Sample values by parameter name: [SQL expression, ...] (params are bound).
const SAMPLES = {
	user_id: () => [`$1::text`, [user]],
	amount: () => ['1::bigint'],
	action: () => [`'chat_message'::text`],
	metadata: () => [`'{}'::jsonb`],
	idempotency_key: () => ['NULL::text'],
	lim: () => ['5::int'],
	start_time: () => ['NULL::timestamptz'],
	end_time: () => ['NULL::timestamptz'],
	hold_id: () => [`$1::bigint`, [String(holdId)]],
	ttl: () => [`'1 hour'::interval`],
	quantity: () => ['1::numeric'],
	source: () => [`'rows-test'::text`],
	expires_at: () => ['NULL::timestamptz'],
	plan: () => [`'pro'::text`],
	ends_at: () => ['NULL::timestamptz'],
	now: () => ['now()'],
	at: () => ['now()'],
	job: () => [`'expire_holds'::text`],
	after: () => ['NULL::text'],
	batch_size: () => ['10::int'],
	partitions: () => ['4::int'],
};

// Functions that are not part of the API a client reads.
// (partition_setup: the set-up of a partition, superuser only; it moves a
// sequence, which the rollback would not undo.)
const NOT_READ = new Set(['ledger_refuse_change', 'ledger_row_hash', 'sync_sleep', 'partition_setup']);

async function catalog() {
	const pool = pgPool();
	const relations = (await pool.query(`
		SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE n.nspname = 'credits' AND c.relkind IN ('r', 'v', 'm', 'p')
		 ORDER BY 1`)).rows.map((r) => r.relname);
	// One row per function: its name, its parameters (IN and INOUT only) and
	// whether each has a default.
	const functions = (await pool.query(`
		SELECT p.proname, p.oid::regprocedure::text AS signature, p.pronargs, p.pronargdefaults,
		       coalesce(p.proargnames, '{}') AS argnames, coalesce(p.proargmodes::text[], '{}') AS argmodes,
		       p.prokind, p.prorettype::regtype::text AS rettype
		  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		 WHERE n.nspname = 'credits' ORDER BY 1, 2`)).rows
		.filter((f) => f.prokind === 'f' && f.rettype !== 'trigger' && f.rettype !== 'void' && !NOT_READ.has(f.proname));
	return { relations, functions };
}

// SELECT * FROM credits.fn(name => sample, ...) for the required parameters.
function callOf(f) {
	const names = f.argnames.filter((_n, i) => f.argmodes.length === 0 || ['i', 'b'].includes(f.argmodes[i]));
	const required = names.slice(0, f.pronargs - f.pronargdefaults);
	const values = [];
	const args = required.map((name) => {
		const sample = SAMPLES[name];
		if (!sample)
			throw new Error(`no sample argument for ${f.signature} parameter "${name}": add one to SAMPLES`);
		const [expr, vals = []] = sample();
		values.push(...vals);
		return `${name} => ${expr.replace('$1', `$${values.length}`)}`;
	});
	return { text: `SELECT * FROM credits.${f.proname}(${args.join(', ')})`, values };
}

let cat;

before(async () => {
	// Fixture: an account with every kind of row, committed.
	const c = adminClient();
	await c.initializeUser(user, 1000);
	await c.deduct(user, 10, 'chat_message', { tokens: 5 });
	await c.grant(user, 50, 'promo', { expiresAt: new Date(Date.now() + 86400e3) });
	await c.charge(user, 'llm_tokens', 4000);
	const h = await c.hold(user, 30, 'video_generation');
	await c.capture(h.holdId, { amount: 20 });
	holdId = (await c.hold(user, 40, 'training_job')).holdId;
	await c.subscribe(user, 'pro');
	await c.rebuildBalance(user);
	cat = await catalog();
});

// Run each statement in its own transaction, rolled back; collect failures.
async function readAll(run) {
	const failures = [];
	for (const rel of cat.relations) {
		try {
			await run({ text: `SELECT * FROM credits.${rel} LIMIT 3`, values: [] });
		} catch (e) {
			failures.push(`credits.${rel}: ${e.message.split('\n').slice(-1)[0]}`);
		}
	}
	for (const f of cat.functions) {
		let call;
		try {
			call = callOf(f);
		} catch (e) {
			failures.push(e.message);
			continue;
		}
		try {
			await run(call);
		} catch (e) {
			failures.push(`${f.signature}: ${e.message.split('\n').slice(-1)[0]}`);
		}
	}
	return failures;
}

describe('rows every client can read', () => {
	test('the catalog has the tables, views and functions', () => {
		for (const r of ['accounts', 'ledger', 'account_events', 'holds', 'grants', 'prices', 'plans', 'subscriptions', 'daily_usage'])
			assert.ok(cat.relations.includes(r), r);
		assert.ok(cat.functions.some((f) => f.proname === 'credit_history'));
	});

	test('node-postgres reads every table, view and function result', async () => {
		const pool = pgPool();
		const failures = await readAll(async ({ text, values }) => {
			const conn = await pool.connect();
			try {
				await conn.query('BEGIN');
				await conn.query({ text, values });
			} finally {
				await conn.query('ROLLBACK').catch(() => {});
				conn.release();
			}
		});
		assert.deepEqual(failures, []);
	});

	test('Prisma 7 (adapter-pg) reads every table, view and function result', async () => {
		const prisma = prismaClient();
		const rollback = new Error('rollback');
		const failures = await readAll(async ({ text, values }) => {
			try {
				await prisma.$transaction(async (tx) => {
					await tx.$queryRawUnsafe(text, ...values);
					throw rollback;
				});
			} catch (e) {
				if (e !== rollback)
					throw e;
			}
		});
		assert.deepEqual(failures, []);
	});
});

// Keep pg's DatabaseError import used for readers of this file: node-pg
// surfaces server errors as pg.DatabaseError; Prisma as P2010 errors.
void pg.DatabaseError;
