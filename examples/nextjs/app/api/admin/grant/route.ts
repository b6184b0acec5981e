// POST /api/admin/grant {user_id, amount, source?, expires_at?, metadata?}:
// grant credits (a purchase, a promotion), optionally expiring.  A real app
// checks an admin role here.
import { credits } from '@/lib/credits';
import { HttpError, body, idempotencyKey, integer, json, route, text } from '@/lib/http';

export const dynamic = 'force-dynamic';

export const POST = route(async (req) => {
	const b = await body(req);
	const user = text(b, 'user_id')!;
	const amount = integer(b, 'amount');
	const source = text(b, 'source', { required: false, max: 64 }) ?? 'admin';
	const expiresAt = text(b, 'expires_at', { required: false, max: 64 });
	if (expiresAt !== undefined && Number.isNaN(Date.parse(expiresAt)))
		throw new HttpError(400, 'invalid_request', 'expires_at must be an ISO 8601 timestamp');
	const metadata = b.metadata ?? {};
	if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata))
		throw new HttpError(400, 'invalid_request', 'metadata must be an object');
	const row = await credits.grant(user, amount, source, {
		expiresAt, metadata: metadata as Record<string, unknown>, idempotencyKey: idempotencyKey(req),
	});
	return json({ user_id: user, tx_id: row.txId, balance: row.balance, created_at: row.timestamp, amount, source });
});
