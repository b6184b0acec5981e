'use client';

// The credits page: live balance, the four apps, paged history, per-day
// usage chart, and the insufficient-credits dialog.  A change of balance
// (seen by the live balance) refreshes the history and the chart.
import { useCallback, useState } from 'react';

import { Apps } from './Apps';
import { Balance } from './Balance';
import { History } from './History';
import { InsufficientDialog, type Shortfall } from './InsufficientDialog';
import { UsageChart } from './UsageChart';

export function CreditsPage({ user }: { user: string }) {
	const [version, setVersion] = useState(0);
	const [shortfall, setShortfall] = useState<Shortfall | null>(null);
	const changed = useCallback(() => setVersion((v) => v + 1), []);
	return (
		<main>
			<header>
				<h1>Credits</h1>
				<p className="user">Signed in as <strong id="user">{user}</strong></p>
			</header>
			<section className="top">
				<Balance user={user} onChange={changed} />
				<Apps user={user} onSpent={changed} onInsufficient={setShortfall} />
			</section>
			<section className="panels">
				<UsageChart user={user} version={version} />
				<History user={user} version={version} />
			</section>
			<InsufficientDialog shortfall={shortfall} onClose={() => setShortfall(null)} />
		</main>
	);
}
