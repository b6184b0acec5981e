// Request parsing and JSON responses for the route handlers.  Amounts go out
// as decimal strings (a balance may pass 2^53); credits errors become their
// HTTP status with the body of toHttpError() (402 carries required and
// available).

import { CreditsError, toHttpError, toJSON } from '@credits/client';

export class HttpError extends Error {
	constructor(readonly status: number, readonly error: string, message: string) {
		super(message);
	}
}

export function json(body: unknown, status = 200): Response {
	return new Response(toJSON(body), {
		status,
		headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' },
	});
}

export function errorResponse(e: unknown): Response {
	if (e instanceof HttpError)
		return json({ error: e.error, message: e.message }, e.status);
	const { status, body } = toHttpError(e);
	if (!(e instanceof CreditsError))
		console.error(e);
	return json(body, status);
}

/** Wrap a route handler: any exception becomes its error response. */
export function route<A extends unknown[]>(fn: (req: Request, ...rest: A) => Promise<Response>) {
	return async (req: Request, ...rest: A): Promise<Response> => {
		try {
			return await fn(req, ...rest);
		} catch (e) {
			return errorResponse(e);
		}
	};
}

/** The user: authentication is out of scope, the X-User-Id header says who. */
export function userOf(req: Request): string {
	const u = req.headers.get('x-user-id') ?? new URL(req.url).searchParams.get('user');
	if (!u)
		throw new HttpError(401, 'no_user', 'send the user id in the X-User-Id header (authentication is out of scope)');
	return u;
}

export function idempotencyKey(req: Request): string | undefined {
	const k = req.headers.get('idempotency-key');
	if (k === null)
		return undefined;
	if (k.length === 0 || k.length > 255)
		throw new HttpError(400, 'invalid_request', 'Idempotency-Key must be 1 to 255 characters');
	return k;
}

export async function body(req: Request): Promise<Record<string, unknown>> {
	const text = await req.text();
	if (text.length === 0)
		return {};
	try {
		const v: unknown = JSON.parse(text);
		if (v === null || typeof v !== 'object' || Array.isArray(v))
			throw new Error('not an object');
		return v as Record<string, unknown>;
	} catch {
		throw new HttpError(400, 'invalid_json', 'the body must be a JSON object');
	}
}

export function text(b: Record<string, unknown>, name: string, { required = true, max = 256 } = {}): string | undefined {
	const v = b[name];
	if (v === undefined || v === null) {
		if (required)
			throw new HttpError(400, 'invalid_request', `${name} is required`);
		return undefined;
	}
	if (typeof v !== 'string' || v.length === 0 || v.length > max)
		throw new HttpError(400, 'invalid_request', `${name} must be a string of 1 to ${max} characters`);
	return v;
}

/** An integer field (JSON number or decimal string) as bigint. */
export function integer(b: Record<string, unknown>, name: string): bigint {
	const v = b[name];
	if ((typeof v === 'number' && Number.isSafeInteger(v)) || (typeof v === 'string' && /^-?\d{1,19}$/.test(v)))
		return BigInt(v);
	throw new HttpError(400, 'invalid_request', `${name} must be an integer`);
}

/** A non-negative decimal quantity (seconds, GPU-hours), kept exact as a string. */
export function quantity(b: Record<string, unknown>, name: string): string {
	const v = b[name];
	const s = typeof v === 'number' && Number.isFinite(v) ? String(v) : v;
	if (typeof s !== 'string' || !/^\d{1,12}(\.\d{1,6})?$/.test(s))
		throw new HttpError(400, 'invalid_request', `${name} must be a non-negative number`);
	return s;
}

export function intParam(url: URL, name: string, dflt: number, min: number, max: number): number {
	const raw = url.searchParams.get(name);
	const n = raw === null ? dflt : Number(raw);
	if (!Number.isInteger(n) || n < min || n > max)
		throw new HttpError(400, 'invalid_request', `${name} must be an integer from ${min} to ${max}`);
	return n;
}
