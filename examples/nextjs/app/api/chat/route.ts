// POST /api/chat {message}: 10 credits a message, deducted before the model
// runs, in the same transaction as the app's own writes: if anything after
// the deduction throws, the spend rolls back with them.
import { PRICES, credits, prisma } from '@/lib/credits';
import { body, idempotencyKey, json, route, text, userOf } from '@/lib/http';

export const dynamic = 'force-dynamic';

export const POST = route(async (req) => {
	const user = userOf(req);
	const message = text(await body(req), 'message', { max: 4000 })!;
	const key = idempotencyKey(req);
	const row = await prisma.$transaction(async (tx) => {
		const spent = await credits.with(tx).deduct(user, PRICES.chat, 'chat_message',
			{ app: 'chat', chars: message.length }, { idempotencyKey: key });
		// ... the app's own writes go here, on `tx` (e.g. tx.message.create).
		return spent;
	});
	return json({
		user_id: user, tx_id: row.txId, balance: row.balance, created_at: row.timestamp,
		cost: PRICES.chat, reply: `(example) ${message.length} characters received`,
	});
});
