// POST /api/video {estimated_seconds, actual_seconds, fail?}: hold the
// estimate (10 credits a second), render, then capture the seconds actually
// rendered (the rest is released); a failed render releases the hold.  The
// request's Idempotency-Key makes a retried request return the original
// hold and capture.
import { InsufficientCreditsError } from '@credits/client';

import { credits } from '@/lib/credits';
import { body, idempotencyKey, json, quantity, route, userOf } from '@/lib/http';

export const dynamic = 'force-dynamic';

export const POST = route(async (req) => {
	const user = userOf(req);
	const b = await body(req);
	const estimated = quantity(b, 'estimated_seconds');
	const key = idempotencyKey(req);
	const hold = await credits.hold(user, { quantity: estimated }, 'video_generation', {
		ttl: '15 minutes', metadata: { app: 'video', estimated_seconds: estimated }, idempotencyKey: key,
	});
	// ... the render happens here; the example takes its outcome from the request.
	if (b.fail === true) {
		const available = await credits.release(hold.holdId, { idempotencyKey: key && `${key}:release` });
		return json({ user_id: user, hold_id: hold.holdId, status: 'released', available });
	}
	const actual = quantity(b, 'actual_seconds');
	try {
		const row = await credits.capture(hold.holdId, {
			quantity: actual, action: 'video_generation',
			metadata: { app: 'video', actual_seconds: actual }, idempotencyKey: key && `${key}:capture`,
		});
		return json({
			user_id: user, hold_id: hold.holdId, status: 'captured', actual_seconds: actual,
			tx_id: row.txId, balance: row.balance, created_at: row.timestamp,
		});
	} catch (e) {
		// Capturing more than was held needs the difference to be available;
		// if it is not, give the reservation back.
		if (e instanceof InsufficientCreditsError)
			await credits.release(hold.holdId).catch(() => {});
		throw e;
	}
});
