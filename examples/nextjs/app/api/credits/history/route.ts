// GET /api/credits/history?limit=20&cursor=...: one page of the ledger,
// newest first; next_cursor fetches the next (older) page.
import { credits } from '@/lib/credits';
import { intParam, json, route, userOf } from '@/lib/http';

export const dynamic = 'force-dynamic';

export const GET = route(async (req) => {
	const user = userOf(req);
	const url = new URL(req.url);
	const page = await credits.history(user, {
		limit: intParam(url, 'limit', 20, 1, 1000),
		cursor: url.searchParams.get('cursor'),
		source: url.searchParams.get('source') === 'sql' ? 'sql' : 'auto',
	});
	return json({
		user_id: user,
		source: page.source,
		next_cursor: page.nextCursor,
		transactions: page.transactions.map((t) => ({
			tx_id: t.txId, amount: t.amount, balance: t.balance, action: t.action,
			metadata: t.metadata, created_at: t.timestamp,
		})),
	});
});
