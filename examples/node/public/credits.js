// The /credits page: balance live from Redis (server-sent events), history,
// a per-day per-action usage chart, and the insufficient-credits dialog.
// Plain browser JS, no build step, no CDN.  Amounts arrive as decimal
// strings (bigint-safe JSON) and are handled as BigInt.
'use strict';

const params = new URLSearchParams(location.search);
const user = params.get('user');
const $ = (id) => document.getElementById(id);
const LOW = 10n;
const COLORS = {
	chat_message: '#2f5bea',
	canvas_generation_simple: '#16a394',
	canvas_generation_complex: '#0e6e64',
	video_generation: '#e08a1e',
	training_job: '#8e44ad',
	llm_tokens: '#d35486',
};
const PALETTE = ['#5470c6', '#91cc75', '#fac858', '#ee6666', '#73c0de', '#3ba272', '#fc8452', '#9a60b4'];

function colorOf(action) {
	if (COLORS[action])
		return COLORS[action];
	let h = 0;
	for (const c of action)
		h = (h * 31 + c.charCodeAt(0)) >>> 0;
	return PALETTE[h % PALETTE.length];
}

function fmt(v) {
	return BigInt(v).toLocaleString('en-US');
}

function newKey() {
	if (crypto.randomUUID)
		return crypto.randomUUID();
	return `${Date.now()}-${Math.random().toString(36).slice(2)}`;
}

async function api(path, { method = 'GET', body, key } = {}) {
	const headers = { 'x-user-id': user };
	if (body !== undefined)
		headers['content-type'] = 'application/json';
	if (key)
		headers['idempotency-key'] = key;
	const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
	let data = null;
	try {
		data = await res.json();
	} catch {
		// not JSON
	}
	return { status: res.status, data };
}

// --- balance ------------------------------------------------------------

let balance = null;

function showBalance(b) {
	const value = BigInt(b);
	const el = $('balance');
	const changed = balance !== null && value !== balance;
	balance = value;
	el.textContent = fmt(value);
	el.dataset.balance = value.toString();
	const card = $('balance-card');
	card.classList.toggle('is-low', value < LOW);
	$('low').hidden = value >= LOW;
	if (changed) {
		card.classList.add('changed');
		setTimeout(() => card.classList.remove('changed'), 600);
		refresh();
	}
}

function connect() {
	const es = new EventSource(`/api/credits/stream?user=${encodeURIComponent(user)}`);
	const live = $('live');
	es.addEventListener('balance', (ev) => {
		const d = JSON.parse(ev.data);
		live.textContent = d.source === 'redis' ? 'live · Redis' : 'live · SQL fallback';
		live.classList.add('on');
		live.dataset.source = d.source;
		showBalance(d.balance);
	});
	es.addEventListener('failure', (ev) => {
		const d = JSON.parse(ev.data);
		live.classList.remove('on');
		live.textContent = d.status === 404 ? 'no account' : 'error';
	});
	es.onerror = () => {
		live.classList.remove('on');
		live.textContent = 'reconnecting…';
	};
}

// --- history --------------------------------------------------------------

async function loadHistory() {
	const { status, data } = await api('/api/credits/history?limit=20');
	const tbody = $('history').tBodies[0];
	tbody.replaceChildren();
	if (status !== 200 || data.transactions.length === 0) {
		const tr = tbody.insertRow();
		tr.className = 'empty';
		const td = tr.insertCell();
		td.colSpan = 4;
		td.className = 'muted';
		td.textContent = status === 200 ? 'No transactions yet.' : (data?.message ?? 'Could not load history.');
		return;
	}
	for (const t of data.transactions) {
		const tr = tbody.insertRow();
		tr.dataset.txId = t.id;
		const amount = BigInt(t.amount);
		const when = new Date(t.created_at);
		tr.insertCell().textContent = when.toLocaleString('en-GB', { dateStyle: 'short', timeStyle: 'medium' });
		tr.insertCell().textContent = t.action;
		const a = tr.insertCell();
		a.className = `num ${amount < 0n ? 'neg' : 'pos'}`;
		a.textContent = (amount > 0n ? '+' : '') + fmt(amount);
		const b = tr.insertCell();
		b.className = 'num';
		b.textContent = fmt(t.balance_after);
	}
}

// --- usage chart ----------------------------------------------------------

const SVG = 'http://www.w3.org/2000/svg';

function el(name, attrs, text) {
	const e = document.createElementNS(SVG, name);
	for (const [k, v] of Object.entries(attrs))
		e.setAttribute(k, v);
	if (text !== undefined)
		e.textContent = text;
	return e;
}

function lastDays(n, lastDay) {
	const end = new Date(`${lastDay}T00:00:00Z`);
	const days = [];
	for (let i = n - 1; i >= 0; i--)
		days.push(new Date(end.getTime() - i * 86400000).toISOString().slice(0, 10));
	return days;
}

async function loadUsage() {
	const chart = $('chart');
	const { status, data } = await api('/api/credits/usage?days=14');
	if (status !== 200) {
		chart.replaceChildren(Object.assign(document.createElement('p'),
			{ className: 'muted', textContent: data?.message ?? 'Usage is not available.' }));
		return;
	}
	const today = new Date().toISOString().slice(0, 10);
	const maxDay = data.usage.reduce((m, r) => (r.day > m ? r.day : m), today);
	const days = lastDays(14, maxDay);
	const actions = [...new Set(data.usage.map((r) => r.action))].sort();
	const perDay = new Map(days.map((d) => [d, new Map()]));
	for (const r of data.usage) {
		const v = BigInt(r.credits);
		perDay.get(r.day)?.set(r.action, v < 0n ? -v : v);
	}
	let max = 0;
	for (const m of perDay.values()) {
		let s = 0;
		for (const v of m.values())
			s += Number(v);
		max = Math.max(max, s);
	}
	const W = 800, H = 220, left = 48, bottom = 24, top = 8;
	const plotH = H - bottom - top;
	const step = (W - left) / days.length;
	const svg = el('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'credits spent per day by action' });
	const scale = max > 0 ? niceMax(max) : 10;
	for (let i = 0; i <= 4; i++) {
		const y = top + plotH - (plotH * i) / 4;
		svg.append(el('line', { x1: left, x2: W, y1: y, y2: y, stroke: '#e5e7eb' }));
		svg.append(el('text', { x: left - 6, y: y + 4, 'text-anchor': 'end' }, Math.round((scale * i) / 4).toLocaleString('en-US')));
	}
	days.forEach((d, i) => {
		const x = left + i * step + step * 0.18;
		const w = step * 0.64;
		let y = top + plotH;
		for (const a of actions) {
			const v = Number(perDay.get(d).get(a) ?? 0n);
			if (v === 0)
				continue;
			const h = (plotH * v) / scale;
			y -= h;
			const rect = el('rect', { x, y, width: w, height: h, fill: colorOf(a), 'data-day': d, 'data-action': a, 'data-credits': v });
			rect.append(el('title', {}, `${d} ${a}: ${v.toLocaleString('en-US')} credits`));
			svg.append(rect);
		}
		if (i % 2 === (days.length - 1) % 2)
			svg.append(el('text', { x: x + w / 2, y: H - 6, 'text-anchor': 'middle' }, d.slice(5)));
	});
	chart.replaceChildren(svg);
	const legend = $('legend');
	legend.replaceChildren(...actions.map((a) => {
		const li = document.createElement('li');
		const i = document.createElement('i');
		i.style.background = colorOf(a);
		li.append(i, a);
		return li;
	}));
	if (actions.length === 0)
		legend.replaceChildren(Object.assign(document.createElement('li'), { className: 'muted', textContent: 'Nothing spent in the last 14 days.' }));
}

function niceMax(v) {
	const p = 10 ** Math.floor(Math.log10(v));
	for (const m of [1, 2, 2.5, 5, 10])
		if (m * p >= v)
			return m * p;
	return 10 * p;
}

// --- spending -------------------------------------------------------------

let refreshTimer;

function refresh() {
	clearTimeout(refreshTimer);
	refreshTimer = setTimeout(() => {
		loadHistory();
		loadUsage();
	}, 100);
}

function showInsufficient(d) {
	$('required').textContent = fmt(d.required);
	$('available').textContent = fmt(d.available);
	$('insufficient-hint').textContent = d.hint ?? '';
	$('insufficient').hidden = false;
	$('insufficient-close').focus();
}

async function spend(button) {
	const status = $('status');
	const body = button.dataset.route === '/api/chat'
		? { message: 'Hello from the credits page' }
		: { complexity: button.dataset.complexity };
	button.disabled = true;
	try {
		// One key per click: a network retry of this request cannot charge twice.
		const r = await api(button.dataset.route, { method: 'POST', body, key: newKey() });
		if (r.status === 200) {
			status.textContent = `${button.firstChild.textContent.trim()}: done.`;
			showBalance(r.data.balance);
		} else if (r.status === 402) {
			status.textContent = 'Not enough credits.';
			showInsufficient(r.data);
		} else {
			status.textContent = `Failed: ${r.data?.message ?? r.status}`;
		}
	} finally {
		button.disabled = false;
	}
}

function main() {
	if (!user) {
		$('pick-user').hidden = false;
		$('actions').hidden = true;
		return;
	}
	$('user').textContent = user;
	for (const b of document.querySelectorAll('#actions button'))
		b.addEventListener('click', () => spend(b));
	$('insufficient-close').addEventListener('click', () => {
		$('insufficient').hidden = true;
	});
	connect();
	loadHistory();
	loadUsage();
}

main();
