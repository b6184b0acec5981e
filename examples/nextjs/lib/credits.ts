// The app's one CreditsClient, on Prisma 7 (@prisma/adapter-pg) with the
// credits-sync mirror in Redis for cached reads.  Kept on globalThis so that
// `next dev`'s reloads do not open new pools.
//
// Connection: DATABASE_URL, or node-pg's PGHOST/PGPORT/PGUSER/PGDATABASE.
// Redis: REDIS_CLUSTER_NODES (host:port,host:port,...: a Redis Cluster, as
// `make cluster-up` writes into .run/cluster/env), else REDIS_HOST/REDIS_PORT
// (one Redis).  The key names are the same in both.
// The role needs credits_app (spending, reads) and, for the per-day usage
// chart, credits_reader (SELECT on the credits.daily_usage view).

import { PrismaClient } from '@prisma/client';
import { PrismaPg } from '@prisma/adapter-pg';
import { Cluster, Redis } from 'ioredis';
import { CreditsClient } from '@credits/client';

type Globals = { prisma?: PrismaClient; redis?: Redis | Cluster; credits?: CreditsClient };
const g = globalThis as typeof globalThis & { __credits?: Globals };
const state: Globals = (g.__credits ??= {});

export const prisma: PrismaClient = (state.prisma ??= new PrismaClient({
	adapter: new PrismaPg(process.env.DATABASE_URL ? { connectionString: process.env.DATABASE_URL } : {}),
}));

// A cache read must fail fast: the client then reads SQL.
const failFast = { connectTimeout: 1000, commandTimeout: 500, maxRetriesPerRequest: 1 };

function cacheClient(): Redis | Cluster {
	const nodes = process.env.REDIS_CLUSTER_NODES;
	if (nodes) {
		// each read goes to its key's slot's master; a user's keys are in
		// different slots, read one command each (no MGET across slots)
		return new Cluster(nodes.split(',').map((a) => {
			const i = a.lastIndexOf(':');
			return { host: a.slice(0, i), port: Number(a.slice(i + 1)) };
		}), {
			enableOfflineQueue: false,
			maxRedirections: 4,
			retryDelayOnFailover: 100,
			redisOptions: failFast,
		});
	}
	return new Redis({
		host: process.env.REDIS_HOST ?? '127.0.0.1',
		port: Number(process.env.REDIS_PORT ?? 6379),
		...failFast,
		enableOfflineQueue: false,
	});
}

export const redis: Redis | Cluster = (state.redis ??= cacheClient());
redis.on('error', () => {});		// reported per read through onCacheError

export const credits: CreditsClient = (state.credits ??= new CreditsClient({
	db: prisma,
	redis,
	redisPrefix: process.env.CREDITS_REDIS_PREFIX ?? '',
	onCacheError: (e) => console.warn(`credits: Redis read failed, used SQL: ${(e as Error).message}`),
}));

/** What each app charges. */
export const PRICES = {
	chat: 10n,
	canvas: { simple: 'canvas_generation_simple', complex: 'canvas_generation_complex' },
} as const;
