// POST /api/train/webhook {hold_id, status: "succeeded" | "failed", gpu_hours}:
// the training cluster's completion webhook.  On success capture the
// GPU-hours used (the rest of the hold is released); on failure release the
// hold.  A redelivery with the same Idempotency-Key gets the original answer;
// without one, a second capture is HoldClosedError (409).
import { credits } from '@/lib/credits';
import { HttpError, body, idempotencyKey, integer, json, quantity, route } from '@/lib/http';

export const dynamic = 'force-dynamic';

export const POST = route(async (req) => {
	const b = await body(req);
	const holdId = integer(b, 'hold_id');
	const key = idempotencyKey(req);
	if (b.status === 'failed') {
		const available = await credits.release(holdId, { idempotencyKey: key });
		return json({ hold_id: holdId, status: 'released', available });
	}
	if (b.status !== 'succeeded')
		throw new HttpError(400, 'invalid_request', 'status must be "succeeded" or "failed"');
	const hours = quantity(b, 'gpu_hours');
	const row = await credits.capture(holdId, {
		quantity: hours, action: 'training_job', metadata: { app: 'training', gpu_hours: hours }, idempotencyKey: key,
	});
	return json({ hold_id: holdId, status: 'captured', tx_id: row.txId, balance: row.balance, created_at: row.timestamp });
});
