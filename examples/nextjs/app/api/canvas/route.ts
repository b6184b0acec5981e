// POST /api/canvas {complexity: "simple" | "complex"}: 50 or 75 credits,
// priced by credits.prices (canvas_generation_simple / _complex).
import { PRICES, credits } from '@/lib/credits';
import { HttpError, body, idempotencyKey, json, route, userOf } from '@/lib/http';

export const dynamic = 'force-dynamic';

export const POST = route(async (req) => {
	const user = userOf(req);
	const complexity = (await body(req)).complexity ?? 'simple';
	if (complexity !== 'simple' && complexity !== 'complex')
		throw new HttpError(400, 'invalid_request', 'complexity must be "simple" or "complex"');
	const action = PRICES.canvas[complexity];
	const row = await credits.charge(user, action, 1, { app: 'canvas', complexity }, { idempotencyKey: idempotencyKey(req) });
	return json({ user_id: user, tx_id: row.txId, balance: row.balance, created_at: row.timestamp, action });
});
