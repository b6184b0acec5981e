// POST /api/train/start {estimated_gpu_hours}: hold 1,000 credits per
// estimated GPU-hour for up to 7 days; the hold id is the job id the
// completion webhook reports back.
import { credits } from '@/lib/credits';
import { body, idempotencyKey, json, quantity, route, userOf } from '@/lib/http';

export const dynamic = 'force-dynamic';

export const POST = route(async (req) => {
	const user = userOf(req);
	const hours = quantity(await body(req), 'estimated_gpu_hours');
	const hold = await credits.hold(user, { quantity: hours }, 'training_job', {
		ttl: '7 days', metadata: { app: 'training', estimated_gpu_hours: hours }, idempotencyKey: idempotencyKey(req),
	});
	return json({
		user_id: user, job_id: hold.holdId, hold_id: hold.holdId,
		held: hold.held, available: hold.available, status: 'running',
	});
});
