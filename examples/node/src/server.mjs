// Entry point: node src/server.mjs
//
// Environment: PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE (or DATABASE_URL),
// REDIS_HOST REDIS_PORT (REDIS_PASSWORD, REDIS_DB, CREDITS_REDIS_PREFIX),
// HOST (default 127.0.0.1), PORT (default 3000; 0 picks a free port),
// PORT_FILE (if set, the bound port is written there once listening),
// SIGNUP_GRANT (credits granted by the user-created webhook, default 100).

import { createServer } from 'node:http';
import { writeFileSync } from 'node:fs';

import { Credits, createPrisma } from './credits.mjs';
import { CreditsCache, createRedis } from './redis.mjs';
import { createHandler } from './app.mjs';

const prisma = createPrisma();
const redis = createRedis();
redis.on('error', (e) => console.warn(`redis: ${e.message}`));

const handler = createHandler({
	credits: new Credits(prisma),
	cache: new CreditsCache(redis),
	signupGrant: BigInt(process.env.SIGNUP_GRANT ?? 100),
});

const server = createServer(handler);
server.listen(Number(process.env.PORT ?? 3000), process.env.HOST ?? '127.0.0.1', () => {
	const { address, port } = server.address();
	if (process.env.PORT_FILE)
		writeFileSync(process.env.PORT_FILE, `${port}\n`);
	console.log(`credits example app on http://${address}:${port}/credits`);
});

let stopping = false;
function stop(signal) {
	if (stopping)
		return;
	stopping = true;
	console.log(`${signal}: shutting down`);
	server.close();
	server.closeAllConnections();
	Promise.allSettled([prisma.$disconnect(), redis.quit()]).then(() => process.exit(0));
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
