/*-------------------------------------------------------------------------
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

/*
 * Built and tested on PostgreSQL 15.  Nothing here uses an API removed in
 * 16 or 17; where 17 has a better one, search_path.c uses it behind a
 * PG_VERSION_NUM guard.
 */
#if PG_VERSION_NUM < 150000
#error "credits needs PostgreSQL 15 or later"
#endif

#include "executor/spi.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

/*
 * 1.1 entry points that 1.0 also had are compiled under versioned names
 * (credit_deduct is defined as credit_deduct_1_1, and so on): the plain
 * names belong to the frozen 1.0 implementation in src/v1_0/, which
 * sql/credits--1.0.sql binds, and sql/credits.sql binds these.  See the
 * header of credits.c.  An entry point new in 1.1 needs no line here.
 */
#define credit_init credit_init_1_1
#define credit_deduct credit_deduct_1_1
#define credit_add credit_add_1_1
#define credit_balance credit_balance_1_1
#define credit_history credit_history_1_1
#define credit_verify credit_verify_1_1
#define credit_verify_all credit_verify_all_1_1
#define credit_rebuild credit_rebuild_1_1
#define credit_hold credit_hold_1_1
#define credit_capture credit_capture_1_1
#define credit_release credit_release_1_1
#define credit_available credit_available_1_1
#define credit_expire_holds credit_expire_holds_1_1
#define credit_cost credit_cost_1_1
#define credit_charge credit_charge_1_1
#define credit_grant credit_grant_1_1
#define credit_expire_grants credit_expire_grants_1_1
#define credit_subscribe credit_subscribe_1_1
#define credit_renew credit_renew_1_1
#define credit_usage credit_usage_1_1

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

/* Longest action, source and plan name accepted, in bytes */
#define CREDITS_MAX_NAME_BYTES	64

/* Largest metadata accepted, in bytes of its jsonb value */
#define CREDITS_MAX_METADATA_BYTES	(64 * 1024)

/*
 * partition.c: the stable partition hash (partition_hash.h; never change
 * it), at most this many partitions, and hold ids = partition <<
 * CREDITS_HOLD_ID_BITS | k (every id below 2^52)
 */
#define CREDITS_MAX_PARTITIONS	1024
#define CREDITS_HOLD_ID_BITS	42

/* GUC: credits granted by credit_init() without an amount */
extern int	credits_default_credits;

/* GUC (superuser, tests only): seconds added to credits' clock */
extern int	credits_clock_offset;

/* credits.c: the clock of every time decision (transaction start + offset) */
extern TimestampTz credits_now(void);

/* validate.c */
extern void credits_invalid_parameter(const char *name, const char *msg,
									  const char *detail) pg_attribute_noreturn();
extern text *credits_arg_user_id(FunctionCallInfo fcinfo, int argno);
extern int64 credits_arg_amount(FunctionCallInfo fcinfo, int argno, const char *name);
extern text *credits_arg_required_text(FunctionCallInfo fcinfo, int argno, const char *name);
extern text *credits_arg_action(FunctionCallInfo fcinfo, int argno);
extern Jsonb *credits_arg_metadata(FunctionCallInfo fcinfo, int argno);
extern text *credits_arg_idempotency_key(FunctionCallInfo fcinfo, int argno);
extern void credits_insufficient(int64 required, int64 available) pg_attribute_noreturn();
extern void credits_unknown_account(text *user_id) pg_attribute_noreturn();

/* search_path.c: every statement runs under this search_path */
#define CREDITS_SEARCH_PATH "pg_catalog, pg_temp"
extern int	credits_pin_search_path(void);
extern void credits_unpin_search_path(int nest);

/* spi.c */
typedef enum CreditsQuery
{
	CQ_DEDUCT_FAST,
	CQ_DEDUCT_POST,
	CQ_DEDUCT_LOCKED,
	CQ_ADD_UPSERT,
	CQ_LOCK_ACCOUNT,
	CQ_LOCK_ACCOUNT_SKIP,
	CQ_OPEN_ACCOUNT,
	CQ_INIT_ACCOUNT,
	CQ_INIT_EXISTING,
	CQ_FIND_KEY,
	CQ_KEY_RECORD,
	CQ_POST,
	CQ_BALANCE,
	CQ_BALANCE_AT,
	CQ_HISTORY_PAGE,
	CQ_HISTORY_BEFORE,
	CQ_VERIFY,
	CQ_VERIFY_CHAIN,
	CQ_VERIFY_ALL_CHAIN,
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
	CQ_GRANT_CLOSE,
	CQ_SPEND,
	CQ_RESERVE,
	CQ_HOLD_INSERT,
	CQ_HOLD_USER,
	CQ_HOLD_GET,
	CQ_HOLD_CLOSE,
	CQ_LEDGER_ROW,
	CQ_USERS_DUE_HOLDS,
	CQ_USERS_DUE_GRANTS,
	CQ_GRANT_UPSERT,
	CQ_GRANT_INSERT,
	CQ_PRICE,
	CQ_CARRY_SET,
	CQ_PLAN,
	CQ_SUB_INSERT,
	CQ_SUB_LOCK,
	CQ_SUB_SET_PLAN,
	CQ_SUB_SET_END,
	CQ_SUBS_DUE,
	CQ_SUB_KEY_FIND,
	CQ_SUB_KEY_INSERT,
	CQ_JOB_STEP,
	CQ_JOB_FAILURE,
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

/* the account and its ledger rows (account.c, ledger.c) */

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

/* What a charge records in its ledger row (credits_post_charge) */
typedef struct CreditsCharge
{
	Numeric		quantity;
	Numeric		rate;
	Numeric		carry;			/* after the row; NULL for per-call prices */
} CreditsCharge;

/* account.c: the account primitives (caller holds the account row lock) */
extern void credits_post(text *user_id, int64 amount, int64 balance_after,
						 text *action, Jsonb *metadata, text *idem_key,
						 CreditsTx *tx);
extern void credits_post_charge(text *user_id, int64 amount, int64 balance_after,
								text *action, Jsonb *metadata, text *idem_key,
								const CreditsCharge *charge, CreditsTx *tx);
extern int64 credits_active_held(text *user_id, int64 held);
extern bool credits_lock_account(text *user_id, CreditsAccount *acct);
extern void credits_lock_or_open(text *user_id, CreditsAccount *acct);

/* settle.c: the locked deduction (caller holds the account row lock) */
extern int64 credits_deduct_locked(text *user_id, int64 amount,
								   const CreditsAccount *acct);

/* ledger.c */
extern void credits_return_tx(FunctionCallInfo fcinfo, const CreditsTx *tx);
extern int64 credits_deduct_unkeyed(text *user_id, int64 amount);

/* idempotency.c: one key namespace per user, bound in columns */
typedef struct CreditsKeyBinding
{
	const char *operation;		/* deduct, add, charge, hold, capture,
								 * release, grant, subscribe */
	bool		has_amount;
	int64		amount;			/* as given (positive), or capture's amount */
	Numeric		quantity;		/* charge; NULL: none */
	text	   *action;			/* the action, source or plan; NULL: none */
	bool		has_expires_at;
	TimestampTz expires_at;		/* grant's expires_at, subscribe's ends_at */
	int64		hold_id;		/* capture, release: the hold; 0: none */
} CreditsKeyBinding;

typedef struct CreditsKeyResult
{
	int64		tx_id;			/* the ledger row; 0: none */
	bool		has_balance;
	int64		balance;
	bool		has_available;
	int64		available;
	int64		hold_id;		/* credit_hold: the hold placed; 0: none */
	Jsonb	   *result;			/* anything else (subscribe); NULL: none */
	TimestampTz created_at;		/* the ledger row's; 0: now() */
} CreditsKeyResult;

extern bool credits_key_lookup(text *user_id, text *key, const CreditsKeyBinding *b,
							   CreditsKeyResult *result);
extern void credits_key_record(text *user_id, text *key, const CreditsKeyBinding *b,
							   const CreditsKeyResult *result);
extern void credits_key_binding(CreditsKeyBinding *b, const char *operation,
								int64 amount, text *action);
extern void credits_key_result_tx(CreditsKeyResult *result, const CreditsTx *tx);
extern void credits_key_tx(const CreditsKeyResult *result, CreditsTx *tx);

/* settle.c (billing): the locked deduction path of accounts with grants */
extern int64 credits_spend_expiring(text *user_id, int64 amount,
									const CreditsAccount *locked);

/* wakeup.c */
extern void credits_wakeup_init(void);
extern void credits_note_write(void);

#endif							/* CREDITS_H */
