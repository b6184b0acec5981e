'use client';

// Shown when a route answers 402: what the action needed and what was
// available, from InsufficientCreditsError's required and available.
import { fmt } from './api';

export interface Shortfall {
	action: string;
	required: string;
	available: string;
}

export function InsufficientDialog({ shortfall, onClose }: { shortfall: Shortfall | null; onClose: () => void }) {
	if (!shortfall)
		return null;
	return (
		<div className="backdrop">
			<div id="insufficient" role="alertdialog" aria-modal="true" aria-labelledby="insufficient-title" className="dialog">
				<h2 id="insufficient-title">Not enough credits</h2>
				<p>
					{shortfall.action} needs <strong id="required">{fmt(shortfall.required)}</strong> credits;
					you have <strong id="available-now">{fmt(shortfall.available)}</strong> available.
				</p>
				<p className="sub">Top up or choose a smaller job. Nothing was charged.</p>
				<button id="insufficient-close" onClick={onClose} autoFocus>OK</button>
			</div>
		</div>
	);
}
