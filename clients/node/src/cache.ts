// Reading the credits-sync mirror in Redis (see the README's "Redis layout").
//
//   balance:<user>    string: what credit_balance(user) returns
//   available:<user>  string: what credit_available(user) returns
//   txs:<user>        sorted set of the newest N ledger rows (N = the daemon's
//                     window); score = floor(created_at in epoch ms), member =
//                     {"id":..,"amount":..,"balance":..,"action":..,
//                      "metadata":{..},"created_at":"..."}
//
// Redis is a cache: a missing key means "not synced (yet)", never 0, and the
// caller falls back to SQL.  A Redis failure also falls back (and is
// reported to onCacheError).  Writes never go through Redis.

/** An ioredis client (Redis or Cluster-less), or a node-redis v4+ client. */
export type RedisLike = object;

interface IORedisLike {
	get(key: string): Promise<string | null>;
	zrevrangebyscore(key: string, max: string, min: string, ...args: (string | number)[]): Promise<unknown>;
}

interface NodeRedisLike {
	get(key: string): Promise<string | null>;
	sendCommand(args: string[]): Promise<unknown>;
}

export interface CachedTx {
	id: bigint;
	amount: bigint;
	balance: bigint;
	action: string;
	metadata: Record<string, unknown>;
	createdAt: Date;
	/** created_at in epoch microseconds. */
	us: bigint;
	/** The score: created_at in epoch ms, floored. */
	ms: number;
}

// Epoch microseconds of created_at as credits-sync writes it (ISO 8601 in
// UTC with up to 6 fractional digits).
export function isoMicros(s: string): bigint {
	const frac = /\.(\d{1,6})/.exec(s)?.[1] ?? '';
	const seconds = Date.parse(s.replace(/\.\d+/, ''));
	if (Number.isNaN(seconds))
		throw new TypeError(`credits: bad created_at in txs member: ${s}`);
	return BigInt(seconds) * 1000n + BigInt((frac + '000000').slice(0, 6));
}

// The integer fields of a member, read exactly (JSON.parse would round
// integers beyond 2^53).  json_build_object writes them first, in this order.
const HEAD = /^\{"id":(-?\d+),"amount":(-?\d+),"balance":(-?\d+),/;

export function parseMember(member: string, score: string | number): CachedTx {
	const m = HEAD.exec(member);
	const o = JSON.parse(member) as { action: string; metadata: Record<string, unknown>; created_at: string; id: unknown; amount: unknown; balance: unknown };
	const us = isoMicros(o.created_at);
	return {
		id: BigInt(m ? m[1]! : String(o.id)),
		amount: BigInt(m ? m[2]! : String(o.amount)),
		balance: BigInt(m ? m[3]! : String(o.balance)),
		action: o.action,
		metadata: o.metadata ?? {},
		createdAt: new Date(Number(us / 1000n)),
		us,
		ms: Number(score),
	};
}

// WITHSCORES replies: flat [member, score, ...] (RESP2, and ioredis over
// RESP3) or nested [[member, score], ...].
function pairs(reply: unknown): [string, string][] {
	if (!Array.isArray(reply))
		return [];
	if (reply.length > 0 && Array.isArray(reply[0]))
		return (reply as unknown[][]).map((p) => [String(p[0]), String(p[1])]);
	const out: [string, string][] = [];
	for (let i = 0; i + 1 < reply.length; i += 2)
		out.push([String(reply[i]), String(reply[i + 1])]);
	return out;
}

export class Cache {
	private readonly io: IORedisLike | undefined;
	private readonly nr: NodeRedisLike | undefined;

	constructor(redis: RedisLike, readonly prefix: string) {
		const r = redis as Partial<IORedisLike & NodeRedisLike>;
		if (typeof r.get !== 'function')
			throw new TypeError('credits: redis must be an ioredis or node-redis client');
		if (typeof r.zrevrangebyscore === 'function')
			this.io = r as IORedisLike;
		else if (typeof r.sendCommand === 'function')
			this.nr = r as NodeRedisLike;
		else
			throw new TypeError('credits: redis must be an ioredis or node-redis client');
	}

	key(kind: 'balance' | 'available' | 'held' | 'txs', user: string): string {
		return `${this.prefix}${kind}:${user}`;
	}

	/** A cached integer, or null when the key is absent. */
	async integer(kind: 'balance' | 'available' | 'held', user: string): Promise<bigint | null> {
		const v = await (this.io ?? this.nr)!.get(this.key(kind, user));
		return v === null || v === undefined ? null : BigInt(v);
	}

	/**
	 * Up to `count` cached rows with score in [min, max] (numbers, or
	 * -Infinity/+Infinity), newest first by score.
	 */
	async range(user: string, max: number, min: number, count: number): Promise<CachedTx[]> {
		const key = this.key('txs', user);
		const hi = max === Infinity ? '+inf' : String(max);
		const lo = min === -Infinity ? '-inf' : String(min);
		const reply = this.io
			? await this.io.zrevrangebyscore(key, hi, lo, 'WITHSCORES', 'LIMIT', 0, count)
			: await this.nr!.sendCommand(['ZREVRANGEBYSCORE', key, hi, lo, 'WITHSCORES', 'LIMIT', '0', String(count)]);
		return pairs(reply).map(([member, score]) => parseMember(member, score));
	}
}
