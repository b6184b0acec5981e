// @credits/client: the credits PostgreSQL extension from Node.js.
export {
	CreditsClient, CreditsSDK,
	type CreditsClientOptions, type ReadSource, type SourceOption, type ReadOptions,
	type MutationOptions, type MetadataOptions, type TxResult, type HoldResult,
	type SubscribeResult, type Usage, type DailyUsage, type VerifyResult, type VerifyMismatch,
	type Transaction, type HistoryOptions, type HistoryPage, type BalanceRead,
	type Amount, type Duration, type Quantity,
} from './client.js';
export {
	CreditsError, InsufficientCreditsError, UnknownAccountError, IdempotencyConflictError,
	HoldClosedError, UnknownActionError, UnknownPlanError, UnknownHoldError,
	InvalidArgumentError, BalanceOverflowError, AppendOnlyError,
	fromDriverError, isCreditsError, toHttpError, creditsError,
	type CreditsErrorCode, type CreditsErrorFields, type CreditsErrorBody, type HttpErrorResponse,
} from './errors.js';
export { jsonReplacer, toJSON } from './values.js';
export type { Db, PgQueryable, PrismaQueryable } from './db.js';
export type { RedisLike } from './cache.js';
