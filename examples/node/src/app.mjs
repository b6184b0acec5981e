// HTTP routes of the example app: the four apps (chat, canvas, video,
// training) spending one shared credit balance, plus admin and webhook
// routes, and the /credits page.
//
// Authentication is out of scope: the user is whoever the X-User-Id header
// (or, for the page and its event stream, the ?user= query parameter) says.
// A real app takes it from its session.  The admin and webhook routes are
// likewise unauthenticated here; a real app checks a role or a signature.
//
// Every mutating route passes the Idempotency-Key header to the SQL function,
// so a retried request returns the original result instead of charging twice.
// A user's keys share one namespace across every function (a key is bound
// to the first operation that used it), so a route that makes several
// keyed calls derives one key per step from the header (stepKey).

import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { CreditsError } from './credits.mjs';
import { toJSON } from './json.mjs';

const PUBLIC_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'public');

// Prices are data (credits.prices); chat keeps a fixed price so that it runs
// on the core functions alone.
export const CHAT_PRICE = 10n;

// HTTP status for each credits error code.
const STATUS = {
	CR001: 402,		// insufficient credits
	CR002: 404,		// unknown account
	CR003: 409,		// idempotency key reused with different parameters
	CR004: 409,		// hold is not open
	CR005: 400,		// unknown action
	CR006: 400,		// unknown plan
	CR007: 404,		// unknown hold
	CR010: 400,		// invalid parameter value
	CR011: 400,		// amount would overflow the balance
};

const ERROR_NAME = {
	CR001: 'insufficient_credits',
	CR002: 'unknown_account',
	CR003: 'idempotency_key_reused',
	CR004: 'hold_not_open',
	CR005: 'unknown_action',
	CR006: 'unknown_plan',
	CR007: 'unknown_hold',
	CR010: 'invalid_parameter',
	CR011: 'balance_overflow',
};

class HttpError extends Error {
	constructor(status, error, message) {
		super(message);
		this.status = status;
		this.error = error;
	}
}

// Map an error to [status, body].
export function errorResponse(e) {
	if (e instanceof CreditsError) {
		const body = {
			error: ERROR_NAME[e.code] ?? 'credits_error',
			code: e.code,
			message: e.message,
		};
		if (e.detail)
			body.detail = e.detail;
		if (e.hint)
			body.hint = e.hint;
		if (e.code === 'CR001') {
			body.required = e.required;
			body.available = e.available;
		}
		return [STATUS[e.code] ?? 500, body];
	}
	if (e instanceof HttpError)
		return [e.status, { error: e.error, message: e.message }];
	return [500, { error: 'internal', message: 'internal error' }];
}

// An integer request field as a bigint (JSON numbers or decimal strings).
function integer(body, name, { required = true } = {}) {
	const v = body[name];
	if (v === undefined || v === null) {
		if (required)
			throw new HttpError(400, 'invalid_request', `${name} is required`);
		return null;
	}
	if ((typeof v === 'number' && Number.isSafeInteger(v)) ||
		(typeof v === 'string' && /^-?\d{1,20}$/.test(v)))
		return BigInt(v);
	throw new HttpError(400, 'invalid_request', `${name} must be an integer`);
}

// A quantity (seconds, GPU-hours): a non-negative decimal, kept as a string
// so that it reaches PostgreSQL's numeric exactly.
function quantity(body, name) {
	const v = body[name];
	const s = typeof v === 'number' && Number.isFinite(v) ? String(v) : v;
	if (typeof s !== 'string' || !/^\d{1,12}(\.\d{1,6})?$/.test(s))
		throw new HttpError(400, 'invalid_request', `${name} must be a non-negative number`);
	return s;
}

function text(body, name, { required = true, max = 256 } = {}) {
	const v = body[name];
	if (v === undefined || v === null) {
		if (required)
			throw new HttpError(400, 'invalid_request', `${name} is required`);
		return null;
	}
	if (typeof v !== 'string' || v.length === 0 || v.length > max)
		throw new HttpError(400, 'invalid_request', `${name} must be a string of 1 to ${max} characters`);
	return v;
}

function userOf(req, url) {
	const u = req.headers['x-user-id'] ?? url.searchParams.get('user');
	if (!u)
		throw new HttpError(401, 'no_user', 'send the user id in the X-User-Id header (authentication is out of scope)');
	return u;
}

function idempotencyKey(req) {
	const k = req.headers['idempotency-key'];
	if (k === undefined)
		return null;
	if (k.length === 0 || k.length > 240)
		throw new HttpError(400, 'invalid_request', 'Idempotency-Key must be 1 to 240 characters');
	return k;
}

// The key of one step (hold, capture, release) of a route's request.
function stepKey(key, step) {
	return key === null ? null : `${key}:${step}`;
}

async function readBody(req) {
	const chunks = [];
	let size = 0;
	for await (const c of req) {
		size += c.length;
		if (size > 65536)
			throw new HttpError(413, 'too_large', 'request body over 64 KiB');
		chunks.push(c);
	}
	if (size === 0)
		return {};
	try {
		const v = JSON.parse(Buffer.concat(chunks).toString('utf8'));
		if (v === null || typeof v !== 'object' || Array.isArray(v))
			throw new Error('not an object');
		return v;
	} catch {
		throw new HttpError(400, 'invalid_json', 'the body must be a JSON object');
	}
}

function send(res, status, body) {
	const s = toJSON(body);
	res.writeHead(status, {
		'content-type': 'application/json; charset=utf-8',
		'content-length': Buffer.byteLength(s),
		'cache-control': 'no-store',
	});
	res.end(s);
}

// The ledger row of a write, as the apps return it.
function txBody(user, row, extra = {}) {
	return { user_id: user, tx_id: row.tx_id, balance: row.balance, created_at: row.created_at, ...extra };
}

function historyRow(r) {
	return {
		id: r.id,
		amount: r.amount,
		balance_after: r.balance_after,
		action: r.action,
		metadata: r.metadata,
		idempotency_key: r.idempotency_key,
		created_at: r.created_at,
	};
}

// `credits` is a Credits (SQL), `cache` a CreditsCache (Redis, may fail).
export function createHandler({ credits, cache, log = console, signupGrant = 100n, ssePollMs = 250 }) {
	// Balance from Redis, falling back to SQL when the key is missing or
	// Redis is unreachable.
	async function balanceOf(user) {
		try {
			const b = await cache.balance(user);
			if (b !== null)
				return { balance: b, source: 'redis' };
		} catch (e) {
			log.warn?.(`redis read failed, using SQL: ${e.message}`);
		}
		const balance = await credits.balance(user);
		if (balance === null)
			throw new HttpError(404, 'unknown_account', `no account for user ${JSON.stringify(user)}`);
		return { balance, source: 'sql' };
	}

	const routes = {
		'GET /api/credits/balance': async ({ req, url }) => {
			const user = userOf(req, url);
			return [200, { user_id: user, ...(await balanceOf(user)) }];
		},

		'GET /api/credits/history': async ({ req, url }) => {
			const user = userOf(req, url);
			const limit = Number(url.searchParams.get('limit') ?? 50);
			if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
				throw new HttpError(400, 'invalid_request', 'limit must be an integer from 1 to 1000');
			const rows = await credits.history(user, limit);
			return [200, { user_id: user, transactions: rows.map(historyRow) }];
		},

		'GET /api/credits/usage': async ({ req, url }) => {
			const user = userOf(req, url);
			const days = Number(url.searchParams.get('days') ?? 30);
			if (!Number.isInteger(days) || days < 1 || days > 366)
				throw new HttpError(400, 'invalid_request', 'days must be an integer from 1 to 366');
			return [200, { user_id: user, days, usage: await credits.dailyUsage(user, days) }];
		},

		// Chat: 10 credits a message, deducted before the model runs.
		'POST /api/chat': async ({ req, url, body }) => {
			const user = userOf(req, url);
			const message = text(body, 'message', { max: 4000 });
			const row = await credits.deduct(user, CHAT_PRICE, 'chat_message',
				{ app: 'chat', chars: message.length }, idempotencyKey(req));
			return [200, txBody(user, row, { cost: CHAT_PRICE, reply: `(example) ${message.length} characters received` })];
		},

		// Canvas: 50 credits simple, 75 complex, priced by credits.prices.
		'POST /api/canvas': async ({ req, url, body }) => {
			const user = userOf(req, url);
			const complexity = body.complexity ?? 'simple';
			if (complexity !== 'simple' && complexity !== 'complex')
				throw new HttpError(400, 'invalid_request', 'complexity must be "simple" or "complex"');
			const action = `canvas_generation_${complexity}`;
			const row = await credits.charge(user, action, 1,
				{ app: 'canvas', complexity }, idempotencyKey(req));
			return [200, txBody(user, row, { action })];
		},

		// Video: hold the estimate (10 credits a second), render, then capture
		// the seconds actually rendered; a failed render releases the hold.
		'POST /api/video': async ({ req, url, body }) => {
			const user = userOf(req, url);
			const estimated = quantity(body, 'estimated_seconds');
			const key = idempotencyKey(req);
			const hold = await credits.holdFor(user, 'video_generation', estimated,
				{ app: 'video', estimated_seconds: estimated }, '15 minutes', stepKey(key, 'hold'));
			// ... the render happens here; the example takes its outcome from
			// the request.
			if (body.fail === true) {
				const available = await credits.release(hold.hold_id, stepKey(key, 'release'));
				return [200, { user_id: user, hold_id: hold.hold_id, status: 'released', available }];
			}
			const actual = quantity(body, 'actual_seconds');
			try {
				// A key per step makes the capture retry-safe too: a retried
				// request gets the original hold back, then the original
				// capture.
				const row = await credits.captureFor(hold.hold_id, 'video_generation', actual,
					{ app: 'video', actual_seconds: actual }, stepKey(key, 'capture'));
				return [200, txBody(user, row, { hold_id: hold.hold_id, status: 'captured', actual_seconds: actual })];
			} catch (e) {
				// Capturing more than was held needs the difference to be
				// available; if it is not, give the reservation back.
				if (e instanceof CreditsError && e.code === 'CR001')
					await credits.release(hold.hold_id).catch(() => {});
				throw e;
			}
		},

		// Training: hold the estimated GPU-hours (1,000 credits each) now...
		'POST /api/train/start': async ({ req, url, body }) => {
			const user = userOf(req, url);
			const hours = quantity(body, 'estimated_gpu_hours');
			const hold = await credits.holdFor(user, 'training_job', hours,
				{ app: 'training', estimated_gpu_hours: hours }, '7 days', idempotencyKey(req));
			return [200, {
				user_id: user, job_id: hold.hold_id, hold_id: hold.hold_id,
				held: hold.held, available: hold.available, status: 'running',
			}];
		},

		// ... and capture the GPU-hours used when the cluster reports
		// completion (or release the hold if the job failed).  The webhook
		// identifies the job by its hold id, not by a user header.
		'POST /api/train/webhook': async ({ req, body }) => {
			const holdId = integer(body, 'hold_id');
			if (body.status === 'failed') {
				// a redelivered failure with the same key gets the same answer
				const available = await credits.release(holdId, idempotencyKey(req));
				return [200, { hold_id: holdId, status: 'released', available }];
			}
			if (body.status !== 'succeeded')
				throw new HttpError(400, 'invalid_request', 'status must be "succeeded" or "failed"');
			const hours = quantity(body, 'gpu_hours');
			// A redelivery with the same Idempotency-Key gets the original
			// capture; without one, a second capture is CR004 (409).
			const row = await credits.captureFor(holdId, 'training_job', hours,
				{ app: 'training', gpu_hours: hours }, idempotencyKey(req));
			return [200, { hold_id: holdId, status: 'captured', tx_id: row.tx_id, balance: row.balance, created_at: row.created_at }];
		},

		// Admin: grant credits (promo, purchase, ...), optionally expiring.
		'POST /api/admin/grant': async ({ req, body }) => {
			const user = text(body, 'user_id');
			const amount = integer(body, 'amount');
			const source = text(body, 'source', { required: false, max: 64 }) ?? 'admin';
			const expiresAt = text(body, 'expires_at', { required: false, max: 64 });
			if (expiresAt !== null && Number.isNaN(Date.parse(expiresAt)))
				throw new HttpError(400, 'invalid_request', 'expires_at must be an ISO 8601 timestamp');
			const metadata = body.metadata ?? {};
			if (typeof metadata !== 'object' || Array.isArray(metadata))
				throw new HttpError(400, 'invalid_request', 'metadata must be an object');
			const row = await credits.grant(user, amount, source, expiresAt, metadata, idempotencyKey(req));
			return [200, txBody(user, row, { amount, source })];
		},

		// Auth provider webhook: a signup grant, exactly once per user.  The
		// idempotency key is derived from the user id, so a redelivery (with
		// or without the same Idempotency-Key) never grants twice.
		'POST /api/webhooks/user-created': async ({ body }) => {
			const user = text(body, 'user_id');
			const row = await credits.grant(user, signupGrant, 'signup', null, {}, `signup:${user}`);
			return [200, txBody(user, row, { amount: signupGrant })];
		},

		'GET /healthz': async () => [200, { ok: true }],
	};

	// Server-sent events: the balance, live from Redis.  EventSource cannot
	// set headers, so the user comes from ?user=.  Each stream polls one
	// O(1) GET; a real deployment would share one poller per user.
	async function balanceStream(req, res, url) {
		const user = userOf(req, url);
		res.writeHead(200, {
			'content-type': 'text/event-stream; charset=utf-8',
			'cache-control': 'no-store',
			connection: 'keep-alive',
		});
		let last;
		let closed = false;
		let timer;
		const tick = async () => {
			if (closed)
				return;
			try {
				const b = await balanceOf(user);
				const s = b.balance.toString() + b.source;
				if (s !== last) {
					last = s;
					res.write(`event: balance\ndata: ${toJSON({ user_id: user, ...b })}\n\n`);
				}
			} catch (e) {
				const [status, body] = errorResponse(e);
				res.write(`event: failure\ndata: ${toJSON({ status, ...body })}\n\n`);
			}
			if (!closed)
				timer = setTimeout(tick, ssePollMs);
		};
		req.on('close', () => {
			closed = true;
			clearTimeout(timer);
		});
		res.write('retry: 1000\n\n');
		await tick();
	}

	async function staticFile(res, name, type) {
		const data = await readFile(join(PUBLIC_DIR, name));
		res.writeHead(200, { 'content-type': type, 'content-length': data.length, 'cache-control': 'no-cache' });
		res.end(data);
	}

	const STATIC = {
		'/credits': ['credits.html', 'text/html; charset=utf-8'],
		'/static/credits.css': ['credits.css', 'text/css; charset=utf-8'],
		'/static/credits.js': ['credits.js', 'text/javascript; charset=utf-8'],
	};

	return async function handle(req, res) {
		const url = new URL(req.url, 'http://localhost');
		try {
			if (req.method === 'GET' && STATIC[url.pathname])
				return await staticFile(res, ...STATIC[url.pathname]);
			if (req.method === 'GET' && url.pathname === '/api/credits/stream')
				return await balanceStream(req, res, url);
			const route = routes[`${req.method} ${url.pathname}`];
			if (!route) {
				const known = Object.keys(routes).some((r) => r.endsWith(` ${url.pathname}`));
				throw known ? new HttpError(405, 'method_not_allowed', `${req.method} not allowed here`)
					: new HttpError(404, 'not_found', `no route for ${url.pathname}`);
			}
			const body = req.method === 'POST' ? await readBody(req) : {};
			const [status, out] = await route({ req, url, body });
			send(res, status, out);
		} catch (e) {
			const [status, out] = errorResponse(e);
			if (status >= 500)
				log.error?.(e);
			if (!res.headersSent)
				send(res, status, out);
			else
				res.end();
		}
	};
}
