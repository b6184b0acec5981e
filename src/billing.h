/*-------------------------------------------------------------------------
 *
 * billing.h
 *		Declarations shared by the billing files: holds.c, grants.c,
 *		prices.c, plans.c, usage.c, settle.c, account.c and billing_args.c.
 *
 * Every billing write follows the core's protocol (see credits.h): check
 * every argument first, then lock the account row, then settle it (close
 * expired holds, post expired grants; settle.c), then write.  The account
 * row lock is held until the caller's transaction ends.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CREDITS_BILLING_H
#define CREDITS_BILLING_H

#include "credits.h"

#include "datatype/timestamp.h"
#include "utils/numeric.h"

/* billing_args.c */
extern int64 credits_arg_id(FunctionCallInfo fcinfo, int argno, const char *name);
extern Interval *credits_arg_ttl(FunctionCallInfo fcinfo, int argno);
extern Numeric credits_arg_quantity(FunctionCallInfo fcinfo, int argno);
extern bool credits_arg_time(FunctionCallInfo fcinfo, int argno, const char *name,
							 TimestampTz *result);
extern void credits_check_future(const char *name, TimestampTz t);

/* settle.c */
extern int	credits_settle_holds(text *user_id, CreditsAccount *acct);
extern int	credits_settle_grants(text *user_id, CreditsAccount *acct);
extern void credits_settle(text *user_id, CreditsAccount *acct);
extern int64 credits_close_grant(text *user_id, int64 grant_id, CreditsAccount *acct);

/* account.c: the account primitives (caller holds the account row lock) */
extern void credits_hold_account(text *user_id, int64 held_delta,
								 int64 expiring_delta, CreditsAccount *acct);
extern void credits_hold_event(text *user_id, const char *event, int64 hold_id);
extern int64 credits_unreserve(Datum grant_ids, Datum grant_amounts, int64 consume);
extern int64 credits_spend(text *user_id, int64 amount, int64 draw);

/* plans.c */
extern int	credits_renew_account(text *user_id, TimestampTz now);

/* jobs.c: the batch jobs, in bounded chunks (see the file header) */
typedef enum CreditsJob
{
	CREDITS_JOB_EXPIRE_HOLDS,
	CREDITS_JOB_EXPIRE_GRANTS,
	CREDITS_JOB_RENEW
} CreditsJob;

extern int64 credits_job_all(CreditsJob job);

/* grants.c */
extern int64 credits_grant_post(text *user_id, int64 amount, text *source,
								 bool expires, TimestampTz expires_at,
								 Jsonb *metadata, text *idem_key, CreditsTx *tx);

#endif							/* CREDITS_BILLING_H */
