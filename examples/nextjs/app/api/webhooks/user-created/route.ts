// POST /api/webhooks/user-created {user_id}: the auth provider's signup
// webhook grants the signup credits exactly once per user: the idempotency
// key is derived from the user id, so a redelivery never grants twice.  A
// real app verifies the provider's signature here.
import { credits } from '@/lib/credits';
import { body, json, route, text } from '@/lib/http';

export const dynamic = 'force-dynamic';

const SIGNUP_CREDITS = 100n;

export const POST = route(async (req) => {
	const user = text(await body(req), 'user_id')!;
	const row = await credits.grant(user, SIGNUP_CREDITS, 'signup', { idempotencyKey: `signup:${user}` });
	return json({ user_id: user, tx_id: row.txId, balance: row.balance, created_at: row.timestamp, amount: SIGNUP_CREDITS });
});
