/*-------------------------------------------------------------------------
 *
 * immutable.c
 *		The trigger that keeps credits.ledger append-only.
 *
 * Installed as BEFORE UPDATE OR DELETE (per row) and BEFORE TRUNCATE (per
 * statement), both ENABLE ALWAYS so that session_replication_role does not
 * bypass them.  It refuses for every role, the owner and superusers
 * included; a correction is a new ledger row.
 *
 *-------------------------------------------------------------------------
 */
#include "credits.h"

#include "commands/trigger.h"

PG_FUNCTION_INFO_V1(credits_ledger_refuse_change);

/* Trigger function: always raises CR020.  Called only by the trigger manager. */
Datum
credits_ledger_refuse_change(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const char *op;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "credits_ledger_refuse_change: not called by trigger manager");

	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		op = "UPDATE";
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		op = "DELETE";
	else if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		op = "TRUNCATE";
	else
		op = "this operation";

	ereport(ERROR,
			errcode(ERRCODE_CREDITS_APPEND_ONLY),
			errmsg("credits.ledger is append-only"),
			errdetail("%s is not allowed on the ledger, for any role.", op),
			errhint("Post a correcting entry with credits.credit_add() or credits.credit_deduct()."));
	PG_RETURN_NULL();
}
