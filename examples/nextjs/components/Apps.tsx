'use client';

// The four apps' actions, each one request to its route.  A 402 opens the
// insufficient-credits dialog with the numbers from the error.
import { useState } from 'react';

import { api } from './api';
import type { Shortfall } from './InsufficientDialog';

type Body = Record<string, unknown> & { required?: string; available?: string; message?: string; hold_id?: string };

export function Apps({ user, onSpent, onInsufficient }: {
	user: string;
	onSpent: () => void;
	onInsufficient: (s: Shortfall) => void;
}) {
	const [busy, setBusy] = useState(false);
	const [status, setStatus] = useState('');

	async function run(label: string, steps: () => Promise<{ status: number; body: Body }>) {
		setBusy(true);
		try {
			const r = await steps();
			if (r.status === 402)
				onInsufficient({ action: label, required: r.body.required ?? '?', available: r.body.available ?? '?' });
			else if (r.status !== 200)
				setStatus(`${label}: ${r.body.message ?? r.status}`);
			else
				setStatus(`${label}: done`);
			onSpent();
		} finally {
			setBusy(false);
		}
	}

	const chat = () => run('Chat message', () => api<Body>('/api/chat', user, { message: 'Hello from the credits page' }));
	const canvas = (complexity: 'simple' | 'complex') =>
		run(`Canvas (${complexity})`, () => api<Body>('/api/canvas', user, { complexity }));
	const video = () => run('Video (8 s)', () => api<Body>('/api/video', user, { estimated_seconds: 8, actual_seconds: 6 }));
	const train = () => run('Training job', async () => {
		const start = await api<Body>('/api/train/start', user, { estimated_gpu_hours: 1 });
		if (start.status !== 200)
			return start;
		// The cluster reports completion: capture the GPU-hours used.
		return api<Body>('/api/train/webhook', user, { hold_id: start.body.hold_id, status: 'succeeded', gpu_hours: 0.5 });
	});

	return (
		<div className="card apps">
			<h2>Apps</h2>
			<div className="buttons">
				<button id="chat" disabled={busy} onClick={chat}>Chat <small>10</small></button>
				<button id="canvas-simple" disabled={busy} onClick={() => canvas('simple')}>Canvas <small>50</small></button>
				<button id="canvas-complex" disabled={busy} onClick={() => canvas('complex')}>Canvas HD <small>75</small></button>
				<button id="video" disabled={busy} onClick={video}>Video 8 s <small>hold 80, use 60</small></button>
				<button id="train" disabled={busy} onClick={train}>Train <small>hold 1,000, use 500</small></button>
			</div>
			<p id="status" className="sub" aria-live="polite">{status}</p>
		</div>
	);
}
