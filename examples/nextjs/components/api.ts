'use client';

// fetch() for the components: JSON in and out, the user in X-User-Id, and
// an Idempotency-Key per click (a retried click is one spend).
export interface ApiResult<T> {
	status: number;
	body: T;
}

export async function api<T = Record<string, unknown>>(path: string, user: string, body?: unknown): Promise<ApiResult<T>> {
	const headers: Record<string, string> = { 'x-user-id': user };
	if (body !== undefined) {
		headers['content-type'] = 'application/json';
		headers['idempotency-key'] = crypto.randomUUID();
	}
	const res = await fetch(path, {
		method: body === undefined ? 'GET' : 'POST',
		headers,
		body: body === undefined ? undefined : JSON.stringify(body),
		cache: 'no-store',
	});
	return { status: res.status, body: (await res.json()) as T };
}

/** A decimal string with thousands separators (amounts arrive as strings). */
export function fmt(n: string): string {
	const neg = n.startsWith('-');
	const digits = neg ? n.slice(1) : n;
	return (neg ? '−' : '') + digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}
