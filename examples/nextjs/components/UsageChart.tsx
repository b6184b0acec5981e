'use client';

// Credits spent per UTC day over the last two weeks, stacked by action
// (the credits.daily_usage view), as an SVG bar chart.
import { useEffect, useState } from 'react';

import { api, fmt } from './api';

interface Day {
	day: string;
	action: string;
	credits: string;
}

const COLORS = ['#4f46e5', '#0891b2', '#d97706', '#db2777', '#16a34a', '#7c3aed', '#dc2626'];
const W = 560;
const H = 180;
const DAYS = 14;

function lastDays(n: number): string[] {
	const out: string[] = [];
	const today = Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate());
	for (let i = n - 1; i >= 0; i--)
		out.push(new Date(today - i * 86400e3).toISOString().slice(0, 10));
	return out;
}

export function UsageChart({ user, version }: { user: string; version: number }) {
	const [rows, setRows] = useState<Day[] | null>(null);

	useEffect(() => {
		let live = true;
		void api<{ daily: Day[] }>(`/api/credits/usage?days=${DAYS}`, user).then((r) => {
			if (live && r.status === 200)
				setRows(r.body.daily);
		});
		return () => {
			live = false;
		};
	}, [user, version]);

	const days = lastDays(DAYS);
	const actions = [...new Set((rows ?? []).map((r) => r.action))].sort();
	const color = (a: string) => COLORS[actions.indexOf(a) % COLORS.length];
	const totals = days.map((d) => (rows ?? []).filter((r) => r.day === d).reduce((s, r) => s + Number(r.credits), 0));
	const max = Math.max(1, ...totals);
	const slot = W / DAYS;
	const bar = slot * 0.7;

	return (
		<div className="card chart">
			<h2>Usage, last {DAYS} days</h2>
			<svg id="chart" viewBox={`0 0 ${W} ${H + 20}`} role="img" aria-label="Credits spent per day">
				<line x1="0" y1={H} x2={W} y2={H} className="axis" />
				{days.map((d, i) => {
					let y = H;
					return (
						<g key={d}>
							{(rows ?? []).filter((r) => r.day === d).map((r) => {
								const h = (Number(r.credits) / max) * (H - 10);
								y -= h;
								return (
									<rect key={r.action} x={i * slot + (slot - bar) / 2} y={y} width={bar} height={h}
										fill={color(r.action)} data-day={r.day} data-action={r.action} data-credits={r.credits}>
										<title>{`${r.day} ${r.action}: ${fmt(r.credits)}`}</title>
									</rect>
								);
							})}
							{i % 2 === 1 && <text x={i * slot + slot / 2} y={H + 14} className="tick">{d.slice(5)}</text>}
						</g>
					);
				})}
			</svg>
			<ul id="legend">
				{actions.map((a) => <li key={a}><span className="swatch" style={{ background: color(a) }} />{a}</li>)}
			</ul>
		</div>
	);
}
