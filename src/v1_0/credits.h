/*-------------------------------------------------------------------------
 *
 * credits.h (v1_0)
 *		The 1.0 implementation, frozen, for databases not yet upgraded.
 *
 * The files in src/v1_0/ are src/ as released in 1.0 (commit 623aaf0),
 * compiled into the same library as 1.1: sql/credits--1.0.sql binds the C
 * symbols defined here (credit_deduct, ...), and sql/credits.sql binds the
 * 1.1 ones (credit_deduct_1_1, ...; see ../credits.c).  So a server that
 * runs the 1.1 library keeps running every database that has not yet run
 * ALTER EXTENSION credits UPDATE with exactly 1.0's behaviour against the
 * 1.0 schema.  Change these files only to keep them building and safe; the
 * changes since 1.0 are: statements pin search_path through
 * ../search_path.c (PushOverrideSearchPath is gone in PostgreSQL 17), and
 * the internal functions are renamed below so that they do not clash with
 * 1.1's.  Shared with 1.1, and not renamed: the setting
 * credits.default_credits (superuser-only since 1.1), wakeup.c and
 * search_path.c.
 *
 *-------------------------------------------------------------------------
 */
/*-------------------------------------------------------------------------
 * The 1.0 header follows.
 *
 * credits.h
 *		Shared declarations of the credits extension.
 *
 * Every mutating entry point follows one protocol: validate every argument
 * (nothing is written for bad input), connect to SPI, lock the account row
 * (by the UPDATE itself or by SELECT ... FOR UPDATE), write the ledger row,
 * and note the write so that the commit can wake credits-sync.  Because the
 * account row lock is held until commit, one user's ledger ids grow in
 * commit order.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CREDITS_H
#define CREDITS_H

#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/jsonb.h"

/* The 1.0 internal functions, renamed apart from 1.1's */
#define credits_active_held			credits10_active_held
#define credits_arg_amount			credits10_arg_amount
#define credits_arg_future			credits10_arg_future
#define credits_arg_id				credits10_arg_id
#define credits_arg_idempotency_key		credits10_arg_idempotency_key
#define credits_arg_metadata		credits10_arg_metadata
#define credits_arg_quantity		credits10_arg_quantity
#define credits_arg_required_text		credits10_arg_required_text
#define credits_arg_ttl				credits10_arg_ttl
#define credits_arg_user_id			credits10_arg_user_id
#define credits_close_grant			credits10_close_grant
#define credits_connect				credits10_connect
#define credits_deduct_locked		credits10_deduct_locked
#define credits_deduct_unkeyed		credits10_deduct_unkeyed
#define credits_exec				credits10_exec
#define credits_finish				credits10_finish
#define credits_get					credits10_get
#define credits_get_int64			credits10_get_int64
#define credits_grant_post			credits10_grant_post
#define credits_hold_account		credits10_hold_account
#define credits_hold_event			credits10_hold_event
#define credits_insufficient		credits10_insufficient
#define credits_invalid_parameter		credits10_invalid_parameter
#define credits_lock_account		credits10_lock_account
#define credits_lock_or_open		credits10_lock_or_open
#define credits_post				credits10_post
#define credits_return_tx			credits10_return_tx
#define credits_settle				credits10_settle
#define credits_settle_due			credits10_settle_due
#define credits_settle_grants		credits10_settle_grants
#define credits_settle_holds		credits10_settle_holds
#define credits_spend				credits10_spend
#define credits_spend_expiring		credits10_spend_expiring
#define credits_unknown_account		credits10_unknown_account
#define credits_unreserve			credits10_unreserve

/* ../search_path.c (shared with 1.1) */
#define CREDITS_SEARCH_PATH "pg_catalog, pg_temp"
extern int	credits_pin_search_path(void);
extern void credits_unpin_search_path(int nest);

#ifndef CREDITS_VERSION
#error "CREDITS_VERSION must be defined by the Makefile (from credits.control)"
#endif

/* Domain errors: SQLSTATE class CR, documented in README.md */
#define ERRCODE_CREDITS_INSUFFICIENT		MAKE_SQLSTATE('C','R','0','0','1')
#define ERRCODE_CREDITS_UNKNOWN_ACCOUNT		MAKE_SQLSTATE('C','R','0','0','2')
#define ERRCODE_CREDITS_IDEMPOTENCY_MISMATCH MAKE_SQLSTATE('C','R','0','0','3')
#define ERRCODE_CREDITS_HOLD_NOT_OPEN		MAKE_SQLSTATE('C','R','0','0','4')
#define ERRCODE_CREDITS_UNKNOWN_ACTION		MAKE_SQLSTATE('C','R','0','0','5')
#define ERRCODE_CREDITS_UNKNOWN_PLAN		MAKE_SQLSTATE('C','R','0','0','6')
#define ERRCODE_CREDITS_UNKNOWN_HOLD		MAKE_SQLSTATE('C','R','0','0','7')
#define ERRCODE_CREDITS_INVALID_PARAMETER	MAKE_SQLSTATE('C','R','0','1','0')
#define ERRCODE_CREDITS_BALANCE_OVERFLOW	MAKE_SQLSTATE('C','R','0','1','1')
#define ERRCODE_CREDITS_APPEND_ONLY			MAKE_SQLSTATE('C','R','0','2','0')

/* Longest user_id and idempotency_key accepted, in bytes */
#define CREDITS_MAX_KEY_BYTES	256

/* GUC: credits granted by credit_init() without an amount */
extern int	credits_default_credits;

/* validate.c */
extern void credits_invalid_parameter(const char *name, const char *msg,
									  const char *detail) pg_attribute_noreturn();
extern text *credits_arg_user_id(FunctionCallInfo fcinfo, int argno);
extern int64 credits_arg_amount(FunctionCallInfo fcinfo, int argno, const char *name);
extern text *credits_arg_required_text(FunctionCallInfo fcinfo, int argno, const char *name);
extern Jsonb *credits_arg_metadata(FunctionCallInfo fcinfo, int argno);
extern text *credits_arg_idempotency_key(FunctionCallInfo fcinfo, int argno);
extern void credits_insufficient(int64 required, int64 available) pg_attribute_noreturn();
extern void credits_unknown_account(text *user_id) pg_attribute_noreturn();

/* spi.c */
typedef enum CreditsQuery
{
	CQ_DEDUCT_FAST,
	CQ_DEDUCT_LOCKED,
	CQ_ADD_UPSERT,
	CQ_LOCK_ACCOUNT,
	CQ_OPEN_ACCOUNT,
	CQ_INIT_ACCOUNT,
	CQ_INIT_EXISTING,
	CQ_FIND_KEY,
	CQ_INSERT_LEDGER,
	CQ_BALANCE,
	CQ_HISTORY,
	CQ_VERIFY,
	CQ_VERIFY_ALL,
	CQ_REBUILD,
	CQ_INSERT_EVENT,
	/* billing (holds, grants, prices, plans, usage) */
	CQ_ACTIVE_HELD,
	CQ_AVAILABLE,
	CQ_EXPIRE_HOLDS,
	CQ_UNRESERVE,
	CQ_HOLD_ACCOUNT,
	CQ_HOLD_EVENT,
	CQ_DUE_GRANTS,
	CQ_EXPIRE_GRANT,
	CQ_GRANT_GET,
	CQ_SPEND,
	CQ_RESERVE,
	CQ_HOLD_FIND_KEY,
	CQ_HOLD_INSERT,
	CQ_HOLD_USER,
	CQ_HOLD_GET,
	CQ_HOLD_CLOSE,
	CQ_LEDGER_ROW,
	CQ_USERS_DUE_HOLDS,
	CQ_USERS_DUE_GRANTS,
	CQ_GRANT_UPSERT,
	CQ_GRANT_INSERT,
	CQ_GRANT_FIND_KEY,
	CQ_PRICE,
	CQ_CHARGE_FIND_KEY,
	CQ_PLAN,
	CQ_SUB_INSERT,
	CQ_SUB_LOCK,
	CQ_SUB_SET_PLAN,
	CQ_SUB_SET_END,
	CQ_SUBS_DUE,
	CQ_PERIOD,
	CQ_ALLOWANCE_INSERT,
	CQ_ALLOWANCE_SET,
	CQ_ALLOWANCE_GRANT,
	CQ_SUB_ADVANCE,
	CQ_USAGE,
	CQ__COUNT
} CreditsQuery;

extern void credits_connect(void);
extern void credits_finish(void);
extern uint64 credits_exec(CreditsQuery q, Datum *values, const char *nulls,
						   bool read_only, long tcount);
extern Datum credits_get(int row, int col, bool *isnull);
extern int64 credits_get_int64(int row, int col);

/* ledger.c */

/* An account row's values, as locked by credits_lock_account() */
typedef struct CreditsAccount
{
	int64		balance;
	int64		held;			/* open holds, expired or not */
	int64		expiring;		/* remaining + reserved of expiring grants */
} CreditsAccount;

typedef struct CreditsTx
{
	int64		tx_id;
	int64		balance;
	TimestampTz created_at;
} CreditsTx;

extern void credits_post(text *user_id, int64 amount, int64 balance_after,
						 text *action, Jsonb *metadata, text *idem_key,
						 CreditsTx *tx);
extern void credits_return_tx(FunctionCallInfo fcinfo, const CreditsTx *tx);
extern int64 credits_active_held(text *user_id, int64 held);
extern bool credits_lock_account(text *user_id, CreditsAccount *acct);
extern void credits_lock_or_open(text *user_id, CreditsAccount *acct);
extern int64 credits_deduct_locked(text *user_id, int64 amount,
								   const CreditsAccount *acct);
extern int64 credits_deduct_unkeyed(text *user_id, int64 amount);

/* settle.c (billing): the locked deduction path of accounts with grants */
extern int64 credits_spend_expiring(text *user_id, int64 amount,
									const CreditsAccount *locked);

/* wakeup.c */
extern void credits_wakeup_init(void);
extern void credits_note_write(void);

#endif							/* CREDITS_H */
