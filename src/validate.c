/*-------------------------------------------------------------------------
 *
 * validate.c
 *		Argument checks shared by every SQL-callable function.
 *
 * The SQL functions are not STRICT, so that a NULL argument gets an error
 * that names the parameter instead of a silent NULL result.  Every check
 * here runs before the first write of a call, so bad input writes nothing.
 * Errors use SQLSTATE CR010 (never 22xxx: some drivers drop those codes).
 *
 *-------------------------------------------------------------------------
 */
#include "credits.h"

#include "utils/builtins.h"

/* Raise CR010 for parameter "name"; detail may be NULL. */
void
credits_invalid_parameter(const char *name, const char *msg, const char *detail)
{
	ereport(ERROR,
			errcode(ERRCODE_CREDITS_INVALID_PARAMETER),
			errmsg("invalid %s: %s", name, msg),
			detail ? errdetail_internal("%s", detail) : 0);
}

/* Non-NULL, non-empty text of at most CREDITS_MAX_KEY_BYTES bytes. */
static text *
key_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	text	   *t;
	int			len;

	if (PG_ARGISNULL(argno))
		credits_invalid_parameter(name, "must not be null", NULL);
	t = PG_GETARG_TEXT_PP(argno);
	len = VARSIZE_ANY_EXHDR(t);
	if (len == 0)
		credits_invalid_parameter(name, "must not be empty", NULL);
	if (len > CREDITS_MAX_KEY_BYTES)
		credits_invalid_parameter(name, "too long",
						  psprintf("The %s is %d bytes long; the limit is %d bytes.",
								   name, len, CREDITS_MAX_KEY_BYTES));
	return t;
}

/* The user_id argument: caller's argument argno must be declared text. */
text *
credits_arg_user_id(FunctionCallInfo fcinfo, int argno)
{
	return key_arg(fcinfo, argno, "user_id");
}

/* An idempotency key: NULL means none; otherwise checked like user_id. */
text *
credits_arg_idempotency_key(FunctionCallInfo fcinfo, int argno)
{
	if (PG_ARGISNULL(argno))
		return NULL;
	return key_arg(fcinfo, argno, "idempotency_key");
}

/* A strictly positive bigint amount. */
int64
credits_arg_amount(FunctionCallInfo fcinfo, int argno, const char *name)
{
	int64		amount;

	if (PG_ARGISNULL(argno))
		credits_invalid_parameter(name, "must not be null", NULL);
	amount = PG_GETARG_INT64(argno);
	if (amount <= 0)
		credits_invalid_parameter(name, "must be positive",
						  psprintf("The %s given was " INT64_FORMAT ".", name, amount));
	return amount;
}

/*
 * Non-NULL, non-empty text of at most CREDITS_MAX_NAME_BYTES bytes (an
 * action, a source, a plan name).
 */
text *
credits_arg_required_text(FunctionCallInfo fcinfo, int argno, const char *name)
{
	text	   *t;
	int			len;

	if (PG_ARGISNULL(argno))
		credits_invalid_parameter(name, "must not be null", NULL);
	t = PG_GETARG_TEXT_PP(argno);
	len = VARSIZE_ANY_EXHDR(t);
	if (len == 0)
		credits_invalid_parameter(name, "must not be empty", NULL);
	if (len > CREDITS_MAX_NAME_BYTES)
		credits_invalid_parameter(name, "too long",
						  psprintf("The %s is %d bytes long; the limit is %d bytes.",
								   name, len, CREDITS_MAX_NAME_BYTES));
	return t;
}

/*
 * The ledger actions the extension writes itself (README, Functions): an
 * application may not use them, so its rows never pass for a signup, a
 * grant or an expiry.
 */
static const char *const system_actions[] = {"init", "grant", "expire"};

/* An application's action: credits_arg_required_text, and not a system one. */
text *
credits_arg_action(FunctionCallInfo fcinfo, int argno)
{
	text	   *t = credits_arg_required_text(fcinfo, argno, "action");
	int			len = VARSIZE_ANY_EXHDR(t);

	for (int i = 0; i < (int) lengthof(system_actions); i++)
	{
		if (len == (int) strlen(system_actions[i]) &&
			memcmp(VARDATA_ANY(t), system_actions[i], len) == 0)
			credits_invalid_parameter("action", "reserved",
							  psprintf("The action \"%s\" is written by the extension itself; use another name.",
									   system_actions[i]));
	}
	return t;
}

/* A jsonb object; NULL and non-objects are refused. */
Jsonb *
credits_arg_metadata(FunctionCallInfo fcinfo, int argno)
{
	Jsonb	   *jb;

	if (PG_ARGISNULL(argno))
		credits_invalid_parameter("metadata", "must be a JSON object",
						  "The metadata given was null; pass '{}' for none.");
	jb = PG_GETARG_JSONB_P(argno);
	if (!JB_ROOT_IS_OBJECT(jb))
		credits_invalid_parameter("metadata", "must be a JSON object",
						  psprintf("The metadata given was a JSON %s.",
								   JB_ROOT_IS_SCALAR(jb) ? "scalar" : "array"));
	if (VARSIZE(jb) - VARHDRSZ > CREDITS_MAX_METADATA_BYTES)
		credits_invalid_parameter("metadata", "too large",
						  psprintf("The metadata is %d bytes as jsonb; the limit is %d bytes.",
								   (int) (VARSIZE(jb) - VARHDRSZ), CREDITS_MAX_METADATA_BYTES));
	return jb;
}

/* Raise CR001 with the DETAIL format apps parse. */
void
credits_insufficient(int64 required, int64 available)
{
	ereport(ERROR,
			errcode(ERRCODE_CREDITS_INSUFFICIENT),
			errmsg("insufficient credits"),
			errdetail_internal("required=" INT64_FORMAT " available=" INT64_FORMAT,
							   required, available),
			errhint("Add credits to the account or lower the amount."));
}

/* Raise CR002 for user_id. */
void
credits_unknown_account(text *user_id)
{
	ereport(ERROR,
			errcode(ERRCODE_CREDITS_UNKNOWN_ACCOUNT),
			errmsg("unknown account"),
			errdetail("No account exists for user_id \"%s\".",
					  text_to_cstring(user_id)),
			errhint("Open the account with credits.credit_init() or credits.credit_add()."));
}
