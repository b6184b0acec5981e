// BigInt-safe JSON for HTTP responses.
//
// Prisma returns bigint columns (balances, amounts, ids) as JS `bigint`,
// which JSON.stringify refuses ("Do not know how to serialize a BigInt").
// A balance can exceed 2^53, where JS numbers silently lose digits, so every
// bigint is sent as a decimal string: clients parse it with BigInt(s) (or
// Number(s) when they know it is small).  Dates become ISO 8601 strings.

// JSON.stringify replacer: bigint -> decimal string.
export function bigintReplacer(_key, value) {
	return typeof value === 'bigint' ? value.toString() : value;
}

// Serialise any value returned by Prisma raw queries.
export function toJSON(value, space) {
	return JSON.stringify(value, bigintReplacer, space);
}
