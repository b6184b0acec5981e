// Errors of the credits extension as typed classes.
//
// The extension reports its domain errors with SQLSTATEs of class CR (see the
// README's "Error codes").  Whichever driver ran the query (node-postgres or
// Prisma 7 over @prisma/adapter-pg), fromDriverError() turns such an error
// into the class for its code, keeping the driver's error as `cause`.  Any
// other error (a lost connection, a permission error, a serialization
// failure) is returned unchanged, so that the app's own handling of its
// driver keeps working.

/** SQLSTATE → [class name, HTTP status, machine-readable error name]. */
const CODES = {
	CR001: ['InsufficientCreditsError', 402, 'insufficient_credits'],
	CR002: ['UnknownAccountError', 404, 'unknown_account'],
	CR003: ['IdempotencyConflictError', 409, 'idempotency_conflict'],
	CR004: ['HoldClosedError', 409, 'hold_closed'],
	CR005: ['UnknownActionError', 400, 'unknown_action'],
	CR006: ['UnknownPlanError', 400, 'unknown_plan'],
	CR007: ['UnknownHoldError', 404, 'unknown_hold'],
	CR010: ['InvalidArgumentError', 400, 'invalid_argument'],
	CR011: ['BalanceOverflowError', 400, 'balance_overflow'],
	CR020: ['AppendOnlyError', 500, 'append_only'],
} as const;

/** The SQLSTATEs the extension documents. */
export type CreditsErrorCode = keyof typeof CODES;

export interface CreditsErrorFields {
	code: string;
	message: string;
	detail?: string | null | undefined;
	hint?: string | null | undefined;
	cause?: unknown;
}

/**
 * A domain error raised by the extension (SQLSTATE class CR).  `code` is
 * the SQLSTATE, `httpStatus` the status the README suggests, `detail` and
 * `hint` PostgreSQL's DETAIL and HINT, `cause` the driver's own error.
 */
export class CreditsError extends Error {
	readonly code: string;
	readonly httpStatus: number;
	/** Machine-readable name, e.g. `insufficient_credits`. */
	readonly error: string;
	readonly detail: string | null;
	readonly hint: string | null;

	constructor(fields: CreditsErrorFields) {
		super(fields.message, fields.cause === undefined ? undefined : { cause: fields.cause });
		const known = (CODES as Record<string, readonly [string, number, string]>)[fields.code];
		this.name = known?.[0] ?? 'CreditsError';
		this.code = fields.code;
		this.httpStatus = known?.[1] ?? 500;
		this.error = known?.[2] ?? 'credits_error';
		this.detail = fields.detail ?? null;
		this.hint = fields.hint ?? null;
	}

	/** Extra fields for the HTTP body (InsufficientCreditsError adds the numbers). */
	protected bodyFields(): Record<string, string> {
		return {};
	}

	/** The JSON body of an HTTP error response for this error. */
	toResponseBody(): CreditsErrorBody {
		const body: CreditsErrorBody = { error: this.error, code: this.code, message: this.message };
		if (this.detail !== null)
			body.detail = this.detail;
		if (this.hint !== null)
			body.hint = this.hint;
		return Object.assign(body, this.bodyFields());
	}
}

/** CR001: the account's available balance is below the amount. */
export class InsufficientCreditsError extends CreditsError {
	/** The amount asked for (null if the DETAIL could not be read). */
	readonly required: bigint | null;
	/** The available balance at the time. */
	readonly available: bigint | null;

	constructor(fields: CreditsErrorFields) {
		super(fields);
		// DETAIL is exactly `required=N available=M`.
		const m = /^required=(-?\d+) available=(-?\d+)$/.exec(fields.detail ?? '');
		this.required = m ? BigInt(m[1]!) : null;
		this.available = m ? BigInt(m[2]!) : null;
	}

	protected override bodyFields(): Record<string, string> {
		const f: Record<string, string> = {};
		if (this.required !== null)
			f.required = this.required.toString();
		if (this.available !== null)
			f.available = this.available.toString();
		return f;
	}
}

/** CR002: the user has no account. */
export class UnknownAccountError extends CreditsError {}
/** CR003: the idempotency key was used before for a different operation. */
export class IdempotencyConflictError extends CreditsError {}
/** CR004: the hold is captured, released or expired. */
export class HoldClosedError extends CreditsError {}
/** CR005: the action has no price. */
export class UnknownActionError extends CreditsError {}
/** CR006: no such plan. */
export class UnknownPlanError extends CreditsError {}
/** CR007: no such hold. */
export class UnknownHoldError extends CreditsError {}
/** CR010: an argument is invalid; the message names it. */
export class InvalidArgumentError extends CreditsError {}
/** CR011: the credit would overflow the balance (bigint). */
export class BalanceOverflowError extends CreditsError {}
/** CR020: the ledger is append-only. */
export class AppendOnlyError extends CreditsError {}

const CLASSES: Record<CreditsErrorCode, new (f: CreditsErrorFields) => CreditsError> = {
	CR001: InsufficientCreditsError,
	CR002: UnknownAccountError,
	CR003: IdempotencyConflictError,
	CR004: HoldClosedError,
	CR005: UnknownActionError,
	CR006: UnknownPlanError,
	CR007: UnknownHoldError,
	CR010: InvalidArgumentError,
	CR011: BalanceOverflowError,
	CR020: AppendOnlyError,
};

/** Build the class for a CR code (an unknown CR code gives a plain CreditsError). */
export function creditsError(fields: CreditsErrorFields): CreditsError {
	const cls = (CLASSES as Record<string, new (f: CreditsErrorFields) => CreditsError>)[fields.code];
	return cls ? new cls(fields) : new CreditsError(fields);
}

function isObject(v: unknown): v is Record<string, unknown> {
	return typeof v === 'object' && v !== null;
}

function str(v: unknown): string | undefined {
	return typeof v === 'string' ? v : undefined;
}

/**
 * Turn a driver's error into a CreditsError when it carries a CR SQLSTATE;
 * return anything else unchanged.  Understands node-postgres's
 * DatabaseError (`code`, `detail`, `hint`) and Prisma 7's
 * PrismaClientKnownRequestError P2010 over a driver adapter
 * (`meta.driverAdapterError.cause`).
 */
export function fromDriverError(e: unknown): unknown {
	if (e instanceof CreditsError || !isObject(e))
		return e;
	// Prisma 7: raw query failed, the database error under the adapter's cause.
	const meta = isObject(e.meta) ? e.meta : undefined;
	const dae = meta && isObject(meta.driverAdapterError) ? meta.driverAdapterError : undefined;
	const cause = dae && isObject(dae.cause) ? dae.cause : undefined;
	if (cause) {
		const code = str(cause.originalCode) ?? str(cause.code);
		if (code?.startsWith('CR'))
			return creditsError({
				code,
				message: str(cause.originalMessage) ?? str(cause.message) ?? String(e),
				detail: str(cause.detail),
				hint: str(cause.hint),
				cause: e,
			});
		return e;
	}
	// node-postgres: DatabaseError with the SQLSTATE in `code`.
	const code = str(e.code);
	if (code?.startsWith('CR') && code.length === 5 && typeof e.severity === 'string')
		return creditsError({
			code,
			message: str(e.message) ?? code,
			detail: str(e.detail),
			hint: str(e.hint),
			cause: e,
		});
	return e;
}

/** Is `e` an error of the credits extension (optionally of one code)? */
export function isCreditsError(e: unknown, code?: CreditsErrorCode): e is CreditsError {
	return e instanceof CreditsError && (code === undefined || e.code === code);
}

/** The JSON body of an error response; bigints are decimal strings. */
export interface CreditsErrorBody {
	error: string;
	code?: string;
	message: string;
	detail?: string;
	hint?: string;
	/** InsufficientCreditsError only. */
	required?: string;
	/** InsufficientCreditsError only. */
	available?: string;
}

export interface HttpErrorResponse {
	status: number;
	body: CreditsErrorBody;
}

/**
 * Any error as an HTTP response: a CreditsError (or a driver error carrying
 * a CR code) gets its status and a body with code, message, detail, hint
 * (and `required`/`available` for 402); anything else is a 500 whose body
 * reveals nothing.
 */
export function toHttpError(e: unknown): HttpErrorResponse {
	const ce = fromDriverError(e);
	if (ce instanceof CreditsError)
		return { status: ce.httpStatus, body: ce.toResponseBody() };
	return { status: 500, body: { error: 'internal', message: 'internal error' } };
}
