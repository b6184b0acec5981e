// GET /api/credits/usage?days=14: the user's totals (credit_usage) and the
// credits spent per UTC day and action (the credits.daily_usage view).
import { credits } from '@/lib/credits';
import { intParam, json, route, userOf } from '@/lib/http';

export const dynamic = 'force-dynamic';

export const GET = route(async (req) => {
	const user = userOf(req);
	const days = intParam(new URL(req.url), 'days', 14, 1, 366);
	const [usage, daily] = await Promise.all([credits.usage(user), credits.dailyUsage(user, { days })]);
	return json({
		user_id: user,
		days,
		usage: {
			balance: usage.balance, available: usage.available, held: usage.held,
			plan: usage.plan, spent_period: usage.spentPeriod, spent_lifetime: usage.spentLifetime,
			tokens_lifetime: usage.tokensLifetime,
		},
		daily,
	});
});
