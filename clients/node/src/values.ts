// Converting arguments to SQL parameters and result columns to JS values.
//
// Number policy: credit amounts, balances and ids are bigint in PostgreSQL
// and `bigint` in JS, always: results are `bigint` whichever driver ran the
// query (node-postgres returns int8 as a string, Prisma as a bigint).
// Arguments may be `bigint`, or `number` when it is a safe integer (an
// unsafe or fractional number is refused with InvalidArgumentError before
// anything is sent, never rounded).  Quantities (seconds, tokens) are
// PostgreSQL numeric: pass a string for exact decimals, or a number.

import { InvalidArgumentError } from './errors.js';

export type Amount = bigint | number;
/** A numeric quantity: number, bigint, decimal string, or a Decimal object (e.g. Prisma.Decimal). */
export type Quantity = number | bigint | string | { toFixed(): string };

function invalid(name: string, why: string): InvalidArgumentError {
	return new InvalidArgumentError({
		code: 'CR010',
		message: `invalid ${name}: ${why}`,
		detail: 'Checked by @credits/client before the call; nothing was sent.',
	});
}

/** An amount as the decimal string sent for a `$n::bigint` parameter. */
export function amountParam(name: string, v: unknown): string | null {
	if (v === null || v === undefined)
		return null;
	if (typeof v === 'bigint')
		return v.toString();
	if (typeof v === 'number') {
		if (!Number.isSafeInteger(v))
			throw invalid(name, `${v} is not a safe integer (pass a bigint)`);
		return String(v);
	}
	// Decimal integer strings (e.g. from a JSON body) are accepted at run time.
	if (typeof v === 'string' && /^-?\d{1,20}$/.test(v))
		return v;
	throw invalid(name, 'must be a bigint or an integer number');
}

/** A quantity as the decimal string sent for a `$n::numeric` parameter. */
export function quantityParam(name: string, v: unknown): string | null {
	if (v === null || v === undefined)
		return null;
	if (typeof v === 'bigint')
		return v.toString();
	if (typeof v === 'number') {
		if (!Number.isFinite(v))
			throw invalid(name, `${v} is not a finite number`);
		return String(v);
	}
	if (typeof v === 'string')
		return v;
	if (typeof v === 'object' && typeof (v as { toFixed?: unknown }).toFixed === 'function')
		return (v as { toFixed(): string }).toFixed();
	throw invalid(name, 'must be a number, a bigint, a decimal string or a Decimal');
}

/** A duration: seconds as a number, or a PostgreSQL interval string ('15 minutes'). */
export type Duration = number | string;

export function durationParam(name: string, v: unknown): string | null {
	if (v === null || v === undefined)
		return null;
	if (typeof v === 'number') {
		if (!Number.isFinite(v))
			throw invalid(name, `${v} is not a finite number of seconds`);
		return `${v} seconds`;
	}
	if (typeof v === 'string')
		return v;
	throw invalid(name, 'must be seconds (a number) or an interval string');
}

/** A timestamp: a Date or an ISO 8601 string. */
export function timeParam(name: string, v: unknown): string | null {
	if (v === null || v === undefined)
		return null;
	if (v instanceof Date) {
		if (Number.isNaN(v.getTime()))
			throw invalid(name, 'invalid Date');
		return v.toISOString();
	}
	if (typeof v === 'string')
		return v;
	throw invalid(name, 'must be a Date or an ISO 8601 string');
}

export function textParam(name: string, v: unknown): string | null {
	if (v === null || v === undefined)
		return null;
	if (typeof v !== 'string')
		throw invalid(name, 'must be a string');
	return v;
}

export function jsonParam(name: string, v: unknown): string | null {
	if (v === undefined)
		return null;
	if (v === null || typeof v !== 'object' || Array.isArray(v))
		throw invalid(name, 'must be a JSON object');
	return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x));
}

/** An int8 column (string from node-postgres, bigint from Prisma) as bigint. */
export function big(v: unknown): bigint {
	if (typeof v === 'bigint')
		return v;
	if (typeof v === 'string' || typeof v === 'number')
		return BigInt(v);
	throw new TypeError(`credits: expected an integer column, got ${typeof v}`);
}

export function bigOrNull(v: unknown): bigint | null {
	return v === null || v === undefined ? null : big(v);
}

export function date(v: unknown): Date {
	if (v instanceof Date)
		return v;
	if (typeof v === 'string' || typeof v === 'number')
		return new Date(v);
	throw new TypeError(`credits: expected a timestamp column, got ${typeof v}`);
}

export function dateOrNull(v: unknown): Date | null {
	return v === null || v === undefined ? null : date(v);
}

/** A numeric column (string from node-postgres, Decimal from Prisma) as a decimal string. */
export function decimal(v: unknown): string {
	if (typeof v === 'string')
		return v;
	if (v !== null && v !== undefined)
		return String(v);
	throw new TypeError('credits: expected a numeric column');
}

export function json(v: unknown): Record<string, unknown> {
	if (typeof v === 'string')
		return JSON.parse(v) as Record<string, unknown>;
	return (v ?? {}) as Record<string, unknown>;
}

/** JSON.stringify replacer sending bigints as decimal strings. */
export function jsonReplacer(_key: string, value: unknown): unknown {
	return typeof value === 'bigint' ? value.toString() : value;
}

/** JSON.stringify with bigints as decimal strings (and Dates as ISO strings). */
export function toJSON(value: unknown, space?: number): string {
	return JSON.stringify(value, jsonReplacer, space);
}
