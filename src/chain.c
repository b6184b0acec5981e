/*-------------------------------------------------------------------------
 *
 * chain.c
 *		The per-user hash chain of the ledger: credits.ledger_row_hash().
 *
 * Every ledger row carries hash = sha256(previous row's hash || previous
 * row's id || the row's fields), the previous row being the user's row
 * with the next lower id (32 zero bytes and a NULL id for a user's first
 * row).  A row's own id is not among its fields: it is the next row's
 * prev_id, and the newest row's is the account's last_tx_id, which
 * credit_verify() checks.  So the statements that write a ledger row
 * (src/spi.c, CQ_DEDUCT_POST and CQ_POST) compute the hash with this
 * function in the same UPDATE that changes the account row, from the
 * account's last_hash and last_tx_id as they were before it, with no
 * sub-select for the new id, and store the new hash back in last_hash: the
 * UPDATE holds the account row lock, and under READ COMMITTED the executor
 * recomputes the new values (EvalPlanQual) when another transaction changed
 * the row before the lock was taken, so the previous hash is always the
 * one of the row locked.  credit_verify() recomputes the chain with this
 * same function (src/verify.c).
 *
 * The canonical encoding is defined here and nowhere else: the fields, in
 * the order of chain_fields[], each as a 4-byte big-endian length followed
 * by that many bytes (length -1 and no bytes for NULL):
 *	 bigint			8 bytes, big-endian two's complement (int8send)
 *	 timestamptz	8 bytes, big-endian microseconds since 2000-01-01 00:00
 *					UTC (timestamptz_send)
 *	 text			the UTF-8 bytes (convert_to(x, 'UTF8'))
 *	 jsonb, numeric	the UTF-8 bytes of the text form (x::text)
 * README.md ("Tamper evidence") shows the same in SQL, for auditors.
 * Adding a field is one line in chain_fields[] and one argument of the
 * SQL function, appended at the end.
 *
 *-------------------------------------------------------------------------
 */
#include "credits.h"

#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

/*
 * OpenSSL's SHA256_* functions (chain_sha256()), unless OpenSSL is built
 * without its deprecated functions (no-deprecated defines
 * OPENSSL_NO_DEPRECATED): PostgreSQL's OPENSSL_API_COMPAT, 1.0.1, keeps
 * OPENSSL_NO_DEPRECATED_3_0 from ever being defined.
 */
#ifdef USE_OPENSSL
#include <openssl/sha.h>
#if !defined(OPENSSL_NO_DEPRECATED) && !defined(OPENSSL_NO_DEPRECATED_3_0)
#define CREDITS_SHA256_OPENSSL
#endif
#endif

PG_FUNCTION_INFO_V1(credits_ledger_row_hash);

/*
 * The hashed fields, in order: arguments 2..n of credits.ledger_row_hash
 * (argument 1 is the previous row's hash).
 */
typedef struct ChainField
{
	const char *name;
	Oid			type;
} ChainField;

static const ChainField chain_fields[] = {
	{"prev_id", INT8OID},
	{"user_id", TEXTOID},
	{"amount", INT8OID},
	{"balance_after", INT8OID},
	{"action", TEXTOID},
	{"metadata", JSONBOID},
	{"idempotency_key", TEXTOID},
	{"created_at", TIMESTAMPTZOID},
	{"quantity", NUMERICOID},
	{"rate", NUMERICOID},
	{"carry", NUMERICOID},
};

#define CHAIN_NFIELDS lengthof(chain_fields)

/*
 * Append data, or NULL (len -1), to buf as a length-prefixed field.  The
 * whole encoding is built in one buffer and hashed with one update: each
 * update call into OpenSSL costs more than the bytes it hashes.
 */
static void
chain_put(StringInfo buf, const void *data, int32 len)
{
	uint32		be = pg_hton32((uint32) len);

	appendBinaryStringInfo(buf, (const char *) &be, sizeof(be));
	if (len > 0)
		appendBinaryStringInfo(buf, data, len);
}

/* Append len bytes of s, in the database encoding, as UTF-8. */
static void
chain_put_string(StringInfo buf, const char *s, int len)
{
	char	   *utf8 = pg_server_to_any(s, len, PG_UTF8);

	if (utf8 == s)
		chain_put(buf, s, len);
	else
	{
		chain_put(buf, utf8, strlen(utf8));
		pfree(utf8);
	}
}

/* Append one field value of the given type. */
static void
chain_put_value(StringInfo buf, Oid type, Datum value)
{
	switch (type)
	{
		case INT8OID:
		case TIMESTAMPTZOID:
			{
				uint64		be = pg_hton64((uint64) DatumGetInt64(value));

				chain_put(buf, &be, sizeof(be));
				break;
			}
		case TEXTOID:
			{
				text	   *t = DatumGetTextPP(value);

				chain_put_string(buf, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
				break;
			}
		case JSONBOID:
			{
				Jsonb	   *jb = DatumGetJsonbP(value);
				char	   *s;

				/* the empty object, most rows' metadata, is "{}" */
				if (JB_ROOT_IS_OBJECT(jb) && JB_ROOT_COUNT(jb) == 0)
				{
					chain_put(buf, "{}", 2);
					break;
				}
				s = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
				chain_put_string(buf, s, strlen(s));
				pfree(s);
				break;
			}
		case NUMERICOID:
			{
				char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out, value));

				chain_put_string(buf, s, strlen(s));
				pfree(s);
				break;
			}
		default:
			elog(ERROR, "credits: no chain encoding for type %u", type);
	}
}

#ifdef CREDITS_SHA256_OPENSSL

/*
 * Put the SHA-256 of data into out, with OpenSSL's SHA256_Init, _Update and
 * _Final: the same block code as its EVP interface (the CPU's SHA
 * extensions), on a context on the stack.  OpenSSL 3.0 deprecates them for
 * EVP (PostgreSQL's OPENSSL_API_COMPAT, 1.0.1, keeps them declared without
 * a warning), but EVP_DigestInit_ex2 frees and allocates the digest's
 * context at every call and goes through the engine and provider checks,
 * which, with a backend's caches cold (after a 1 ms wait for its client),
 * were most of the chain's CPU (perf; README, "Tamper evidence").  Where
 * OpenSSL is built without its deprecated functions, PostgreSQL's
 * cryptohash API below serves.
 */
static void
chain_sha256(const uint8 *data, size_t len, uint8 *out)
{
	SHA256_CTX	ctx;

	if (SHA256_Init(&ctx) != 1 ||
		SHA256_Update(&ctx, data, len) != 1 ||
		SHA256_Final(out, &ctx) != 1)
		elog(ERROR, "credits: sha256 failed");
}

#else

/*
 * Put the SHA-256 of data into out, with PostgreSQL's cryptohash API: its
 * own implementation when the server is built without OpenSSL, OpenSSL's
 * EVP interface when OpenSSL is built without its deprecated functions.
 * The context is created on first use and kept: creating one costs more
 * than hashing a row.  It belongs to a resource owner of its own that is
 * never released, so transaction ends leave it alone.
 */
static void
chain_sha256(const uint8 *data, size_t len, uint8 *out)
{
	static pg_cryptohash_ctx *ctx = NULL;

	if (ctx == NULL)
	{
		ResourceOwner save = CurrentResourceOwner;

		CurrentResourceOwner = ResourceOwnerCreate(NULL, "credits hash chain");
		PG_TRY();
		{
			ctx = pg_cryptohash_create(PG_SHA256);
		}
		PG_FINALLY();
		{
			CurrentResourceOwner = save;
		}
		PG_END_TRY();
		if (ctx == NULL)
			ereport(ERROR,
					errcode(ERRCODE_OUT_OF_MEMORY),
					errmsg("out of memory"));
	}
	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, data, len) < 0 ||
		pg_cryptohash_final(ctx, out, PG_SHA256_DIGEST_LENGTH) < 0)
		elog(ERROR, "credits: sha256 failed: %s", pg_cryptohash_error(ctx));
}

#endif

/*
 * credits.ledger_row_hash(prev bytea, prev_id, user_id, amount,
 * balance_after, action, metadata, idempotency_key, created_at, quantity,
 * rate, carry): the row's chain hash.  prev and prev_id are the previous
 * row's hash and id, both NULL for the user's first row.
 */
Datum
credits_ledger_row_hash(PG_FUNCTION_ARGS)
{
	static const uint8 zeros[PG_SHA256_DIGEST_LENGTH];
	StringInfoData buf;
	bytea	   *result;

	if (PG_NARGS() != CHAIN_NFIELDS + 1)
		elog(ERROR, "credits: ledger_row_hash takes %d arguments, got %d",
			 (int) CHAIN_NFIELDS + 1, PG_NARGS());

	initStringInfo(&buf);
	if (PG_ARGISNULL(0))
		appendBinaryStringInfo(&buf, (const char *) zeros, sizeof(zeros));
	else
	{
		bytea	   *prev = PG_GETARG_BYTEA_PP(0);

		appendBinaryStringInfo(&buf, VARDATA_ANY(prev), VARSIZE_ANY_EXHDR(prev));
	}

	for (int i = 0; i < (int) CHAIN_NFIELDS; i++)
	{
		if (PG_ARGISNULL(i + 1))
			chain_put(&buf, NULL, -1);
		else
			chain_put_value(&buf, chain_fields[i].type, PG_GETARG_DATUM(i + 1));
	}

	result = palloc(VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
	SET_VARSIZE(result, VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
	chain_sha256((const uint8 *) buf.data, buf.len, (uint8 *) VARDATA(result));
	pfree(buf.data);

	PG_RETURN_BYTEA_P(result);
}
