'use client';

// The ledger, newest first, a page at a time: "Older" follows next_cursor,
// "Newest" goes back to the first page.  Refreshed when `version` changes.
import { useEffect, useState } from 'react';

import { api, fmt } from './api';

interface Tx {
	tx_id: string;
	amount: string;
	balance: string;
	action: string;
	created_at: string;
}

interface Page {
	transactions: Tx[];
	next_cursor: string | null;
	source: string;
}

export function History({ user, version, pageSize = 6 }: { user: string; version: number; pageSize?: number }) {
	// The cursors of the pages before the current one, and the current one.
	const [stack, setStack] = useState<(string | null)[]>([null]);
	const [page, setPage] = useState<Page | null>(null);
	const cursor = stack[stack.length - 1] ?? null;

	useEffect(() => {
		let live = true;
		const q = new URLSearchParams({ limit: String(pageSize) });
		if (cursor)
			q.set('cursor', cursor);
		void api<Page>(`/api/credits/history?${q}`, user).then((r) => {
			if (live && r.status === 200)
				setPage(r.body);
		});
		return () => {
			live = false;
		};
	}, [user, cursor, version, pageSize]);

	return (
		<div className="card history">
			<h2>History</h2>
			<table id="history">
				<thead>
					<tr><th>When</th><th>Action</th><th className="num">Amount</th><th className="num">Balance</th></tr>
				</thead>
				<tbody>
					{page?.transactions.map((t) => (
						<tr key={t.tx_id} data-tx-id={t.tx_id}>
							<td>{new Date(t.created_at).toLocaleTimeString('en-GB', { timeZone: 'UTC' })}</td>
							<td>{t.action}</td>
							<td className={t.amount.startsWith('-') ? 'num spend' : 'num credit'}>{fmt(t.amount)}</td>
							<td className="num">{fmt(t.balance)}</td>
						</tr>
					))}
					{page && page.transactions.length === 0 && <tr><td colSpan={4} className="sub">No transactions yet.</td></tr>}
				</tbody>
			</table>
			<div className="pager">
				<button id="newest" disabled={stack.length === 1} onClick={() => setStack([null])}>Newest</button>
				<span id="page-number" className="sub">page {stack.length}</span>
				<button id="older" disabled={!page?.next_cursor}
					onClick={() => page?.next_cursor && setStack([...stack, page.next_cursor])}>Older</button>
			</div>
		</div>
	);
}
