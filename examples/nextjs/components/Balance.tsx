'use client';

// The live balance: polls /api/credits/balance (Redis when synced, an O(1)
// GET) every second and says where the value came from.
import { useEffect, useRef, useState } from 'react';

import { api, fmt } from './api';

interface BalanceBody {
	balance: string;
	available: string;
	source: 'redis' | 'sql';
	error?: string;
}

export function Balance({ user, onChange, everyMs = 1000 }: { user: string; onChange: () => void; everyMs?: number }) {
	const [state, setState] = useState<BalanceBody | null>(null);
	const [missing, setMissing] = useState(false);
	const [flash, setFlash] = useState(false);
	const last = useRef<string | null>(null);

	useEffect(() => {
		let stopped = false;
		let timer: ReturnType<typeof setTimeout>;
		const tick = async () => {
			try {
				const r = await api<BalanceBody>('/api/credits/balance', user);
				if (stopped)
					return;
				if (r.status === 200) {
					setMissing(false);
					setState(r.body);
					const key = `${r.body.balance}/${r.body.available}`;
					if (last.current !== null && last.current !== key) {
						setFlash(true);
						setTimeout(() => setFlash(false), 600);
						onChange();
					}
					last.current = key;
				} else if (r.status === 404) {
					setMissing(true);
				}
			} catch {
				// offline for a moment: keep the last value
			}
			if (!stopped)
				timer = setTimeout(tick, everyMs);
		};
		void tick();
		return () => {
			stopped = true;
			clearTimeout(timer);
		};
	}, [user, everyMs, onChange]);

	const low = state !== null && BigInt(state.available) < 10n;
	return (
		<div className="card balance">
			<h2>Balance</h2>
			<p id="balance" className={flash ? 'amount flash' : 'amount'} data-balance={state?.balance ?? ''}>
				{missing ? 'no account' : state ? fmt(state.balance) : '…'}
			</p>
			<p className="sub">
				available <span id="available" data-available={state?.available ?? ''}>{state ? fmt(state.available) : '…'}</span>
				{' · '}
				<span id="live" data-source={state?.source ?? ''}>{state ? `live · ${state.source === 'redis' ? 'Redis' : 'SQL'}` : 'connecting'}</span>
			</p>
			{low && <p id="low" className="low">Running low: top up to keep using the apps.</p>}
		</div>
	);
}
