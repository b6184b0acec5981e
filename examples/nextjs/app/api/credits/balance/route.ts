// GET /api/credits/balance: the balance and the available balance, from
// Redis (credits-sync's mirror) when synced, else from SQL; never a guessed 0
// (a user without an account is a 404).
import { credits } from '@/lib/credits';
import { json, route, userOf } from '@/lib/http';

export const dynamic = 'force-dynamic';

export const GET = route(async (req) => {
	const user = userOf(req);
	const sql = new URL(req.url).searchParams.get('source') === 'sql' ? 'sql' : 'auto';
	const { balance, source } = await credits.getBalanceWithSource(user, { source: sql });
	const available = await credits.getAvailable(user, { source: sql });
	return json({ user_id: user, balance, available, source });
});
