// Reading the credits-sync mirror from Redis with ioredis.
//
// Layout (written by credits-sync, see the README):
//   balance:<user>  string, the balance as credits.credit_balance() returns it
//   txs:<user>      sorted set; score = created_at in epoch milliseconds,
//                   member = JSON {id, amount, balance, action, metadata,
//                   created_at}; the newest N rows (N = 1000 by default)
// Keys are optionally prefixed (credits-sync's key prefix, default none).
// Redis is a cache: a missing key means "not synced (yet)", never "zero";
// callers fall back to SQL.

import Redis from 'ioredis';

export function createRedis({
	host = process.env.REDIS_HOST ?? '127.0.0.1',
	port = Number(process.env.REDIS_PORT ?? 6379),
	password = process.env.REDIS_PASSWORD || undefined,
	db = Number(process.env.REDIS_DB ?? 0),
} = {}) {
	return new Redis({
		host, port, password, db,
		// A cache read must fail fast so the caller can fall back to SQL.
		connectTimeout: 1000,
		commandTimeout: 500,
		maxRetriesPerRequest: 1,
		enableOfflineQueue: false,
	});
}

export class CreditsCache {
	constructor(redis, prefix = process.env.CREDITS_REDIS_PREFIX ?? '') {
		this.redis = redis;
		this.prefix = prefix;
	}

	balanceKey(user) {
		return `${this.prefix}balance:${user}`;
	}

	txsKey(user) {
		return `${this.prefix}txs:${user}`;
	}

	// The cached balance as a bigint, or null when the key is absent.
	async balance(user) {
		const v = await this.redis.get(this.balanceKey(user));
		return v === null ? null : BigInt(v);
	}

	// The newest `n` cached ledger rows, newest first, each with its score.
	async recent(user, n = 50) {
		const flat = await this.redis.zrevrange(this.txsKey(user), 0, n - 1, 'WITHSCORES');
		return pairs(flat).map(([member, score]) => ({ ...JSON.parse(member), score: Number(score) }));
	}
}

// ZREVRANGE ... WITHSCORES: a flat [member, score, member, score, ...] list
// (ioredis 6 over RESP3 keeps that shape with string scores); accept the
// nested [[member, score], ...] shape too.
function pairs(reply) {
	if (reply.length > 0 && Array.isArray(reply[0]))
		return reply;
	const out = [];
	for (let i = 0; i + 1 < reply.length; i += 2)
		out.push([reply[i], reply[i + 1]]);
	return out;
}
