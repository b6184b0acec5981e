/*-------------------------------------------------------------------------
 *
 * jobs.c
 *		The batch jobs (closing expired holds, posting expired grants,
 *		renewing subscriptions) in bounded chunks: the procedure
 *		credits.run_jobs(), its step credits.run_job_step(), and the
 *		one-transaction functions credit_expire_holds(),
 *		credit_expire_grants() and credit_renew().
 *
 * A job works through the accounts it has work for in user_id order, a
 * chunk of at most batch_size accounts at a time, with a cursor (the last
 * user_id of the previous chunk).  credits.run_jobs() commits after each
 * chunk, so no transaction holds more than batch_size account locks or
 * runs for long; the functions run every chunk in the caller's
 * transaction.
 *
 * Lock order (every writer in the extension follows it): an account row
 * first, then that account's holds, grants and subscription rows.  Single
 * calls (credit_deduct, credit_hold, credit_subscribe, ...) lock the
 * account, waiting for it; a job takes each account with FOR UPDATE SKIP
 * LOCKED and never waits for one: an account locked by another transaction
 * is skipped (counted in `skipped`) and taken by the next run.  A job
 * therefore never waits while holding a lock an application transaction
 * may need, so a job cannot deadlock with applications or another job
 * (test/specs/plan_job_lock_order.spec), and it re-reads the account's due
 * work after taking the lock.
 *
 * Failures: each account runs in its own subtransaction.  An error (a plan
 * that was deleted, CR006, for instance) rolls back that account's work
 * only, is reported as a WARNING and recorded in credits.job_failures
 * (job, user_id, sqlstate, message, detail), and the job carries on.  The
 * failed account is retried by the next run.
 *
 * Memory: each account is processed in its own SPI connection and a memory
 * context reset after it, so a run's memory does not grow with the number
 * of accounts.  batch_size (default 50) stays below the 64 subtransaction
 * ids a backend caches (PGPROC_MAX_CACHED_SUBXIDS), so a chunk does not
 * make other sessions' snapshots overflow.
 *
 *-------------------------------------------------------------------------
 */
#include "billing.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "nodes/parsenodes.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

PG_FUNCTION_INFO_V1(credits_run_job_step);
PG_FUNCTION_INFO_V1(credits_run_jobs);

#define CREDITS_JOB_BATCH_MAX	10000
#define CREDITS_JOB_BATCH_DEFAULT 50

/* What one chunk did. */
typedef struct JobCounts
{
	int64		accounts;		/* accounts taken (locked and processed) */
	int64		items;			/* holds closed / grants posted / allowances */
	int64		skipped;		/* accounts locked by others */
	int64		failed;			/* accounts whose work failed */
} JobCounts;

static const char *const job_names[] = {"expire_holds", "expire_grants", "renew"};

/* The job named name; CR010 if none. */
static CreditsJob
job_by_name(const char *name)
{
	for (int i = 0; i < (int) lengthof(job_names); i++)
		if (strcmp(name, job_names[i]) == 0)
			return (CreditsJob) i;
	credits_invalid_parameter("job", "unknown job",
							  "Jobs are expire_holds, expire_grants and renew.");
}

/*
 * Do job's work on user_id's account, if its lock is free.  Returns the
 * number of items done; sets *skipped if the account was locked by another
 * transaction.  Runs in its own SPI connection.
 */
static int
job_account(CreditsJob job, text *user_id, TimestampTz now, bool *skipped)
{
	Datum		values[1] = {PointerGetDatum(user_id)};
	CreditsAccount acct;
	int			n = 0;

	credits_connect();
	if (credits_exec(CQ_LOCK_ACCOUNT_SKIP, values, NULL, false, 0) != 1)
	{
		*skipped = true;
		credits_finish();
		return 0;
	}
	acct.balance = credits_get_int64(0, 1);
	acct.held = credits_get_int64(0, 2);
	acct.expiring = credits_get_int64(0, 3);
	switch (job)
	{
		case CREDITS_JOB_EXPIRE_HOLDS:
			n = credits_settle_holds(user_id, &acct);
			(void) credits_settle_grants(user_id, &acct);
			break;
		case CREDITS_JOB_EXPIRE_GRANTS:
			(void) credits_settle_holds(user_id, &acct);
			n = credits_settle_grants(user_id, &acct);
			break;
		case CREDITS_JOB_RENEW:
			n = credits_renew_account(user_id, now);
			break;
	}
	credits_finish();
	return n;
}

/*
 * Record that job failed on user_id with edata: a WARNING and a row in
 * credits.job_failures.  Caller is connected.
 */
static void
report_failure(CreditsJob job, text *user_id, ErrorData *edata)
{
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	ereport(WARNING,
			errcode(edata->sqlerrcode),
			errmsg("credits job %s skipped user \"%s\": %s", job_names[job],
				   text_to_cstring(user_id), edata->message),
			edata->detail ? errdetail("%s", edata->detail) : 0,
			errhint("The account is retried by the next run; see credits.job_failures."));

	values[0] = CStringGetTextDatum(job_names[job]);
	values[1] = PointerGetDatum(user_id);
	values[2] = CStringGetTextDatum(unpack_sql_state(edata->sqlerrcode));
	values[3] = CStringGetTextDatum(edata->message ? edata->message : "");
	if (edata->detail)
		values[4] = CStringGetTextDatum(edata->detail);
	else
		nulls[4] = 'n';
	(void) credits_exec(CQ_JOB_FAILURE, values, nulls, false, 0);
}

/*
 * One chunk of job: the accounts with work due by now after user_id after
 * ("" for the start), at most batch of them, each in a subtransaction.
 * Adds to *counts; returns the last user_id looked at, or NULL if there
 * was none (the job is done).  Caller is connected.
 */
static char *
job_chunk(CreditsJob job, const char *after, int batch, JobCounts *counts)
{
	static const CreditsQuery due[] = {CQ_USERS_DUE_HOLDS, CQ_USERS_DUE_GRANTS, CQ_SUBS_DUE};
	TimestampTz now = credits_now();
	MemoryContext callcxt = CurrentMemoryContext;
	MemoryContext acctcxt;
	Datum		values[3];
	char	  **users;
	uint64		n;

	values[0] = TimestampTzGetDatum(now);
	values[1] = CStringGetTextDatum(after);
	values[2] = Int32GetDatum(batch);
	n = credits_exec(due[job], values, NULL, false, 0);
	if (n == 0)
		return NULL;
	users = palloc(n * sizeof(char *));
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;

		users[i] = TextDatumGetCString(credits_get(i, 1, &isnull));
	}

	acctcxt = AllocSetContextCreate(callcxt, "credits job account",
									ALLOCSET_DEFAULT_SIZES);
	for (uint64 i = 0; i < n; i++)
	{
		ResourceOwner owner = CurrentResourceOwner;
		text	   *user_id;
		bool		skipped = false;

		MemoryContextSwitchTo(acctcxt);
		user_id = cstring_to_text(users[i]);
		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(acctcxt);
		PG_TRY();
		{
			int			items = job_account(job, user_id, now, &skipped);

			ReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(acctcxt);
			CurrentResourceOwner = owner;
			if (skipped)
				counts->skipped++;
			else
			{
				counts->accounts++;
				counts->items += items;
			}
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(acctcxt);
			edata = CopyErrorData();
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(acctcxt);
			CurrentResourceOwner = owner;
			counts->failed++;
			report_failure(job, user_id, edata);
		}
		PG_END_TRY();
		MemoryContextSwitchTo(callcxt);
		MemoryContextReset(acctcxt);
	}
	MemoryContextDelete(acctcxt);
	return users[n - 1];
}

/* A batch_size argument: 1 to CREDITS_JOB_BATCH_MAX. */
static int
arg_batch_size(FunctionCallInfo fcinfo, int argno)
{
	int32		batch;

	if (PG_ARGISNULL(argno))
		credits_invalid_parameter("batch_size", "must not be null", NULL);
	batch = PG_GETARG_INT32(argno);
	if (batch < 1 || batch > CREDITS_JOB_BATCH_MAX)
		credits_invalid_parameter("batch_size", "out of range",
								  psprintf("batch_size must be between 1 and %d; %d was given.",
										   CREDITS_JOB_BATCH_MAX, batch));
	return batch;
}

/*
 * Run every chunk of job in the caller's transaction (the functions
 * credit_expire_holds, credit_expire_grants and credit_renew).  Returns
 * the number of items done.
 */
int64
credits_job_all(CreditsJob job)
{
	JobCounts	counts = {0};
	char	   *after = "";
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "credits job",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);

	for (;;)
	{
		char	   *last;

		credits_connect();
		last = job_chunk(job, after, CREDITS_JOB_BATCH_DEFAULT, &counts);
		if (last != NULL)
			after = MemoryContextStrdup(cxt, last);
		credits_finish();
		if (last == NULL)
			break;
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	return counts.items;
}

/*
 * credits.run_job_step(job, after, batch_size): one chunk of job (see the
 * file header), the accounts after user_id after (NULL: from the start).
 * Returns the last user_id looked at (NULL: nothing was left) and the
 * chunk's counts.  credits.run_jobs() calls it and commits.
 */
Datum
credits_run_job_step(PG_FUNCTION_ARGS)
{
	CreditsJob	job;
	char	   *after;
	int			batch;
	JobCounts	counts = {0};
	char	   *last;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		result[5];
	bool		nulls[5] = {false, false, false, false, false};
	MemoryContext callcxt = CurrentMemoryContext;

	if (PG_ARGISNULL(0))
		credits_invalid_parameter("job", "must not be null", NULL);
	job = job_by_name(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	after = PG_ARGISNULL(1) ? "" : text_to_cstring(PG_GETARG_TEXT_PP(1));
	batch = arg_batch_size(fcinfo, 2);

	credits_connect();
	last = job_chunk(job, after, batch, &counts);
	if (last != NULL)
		last = MemoryContextStrdup(callcxt, last);
	credits_finish();

	result[0] = last ? CStringGetTextDatum(last) : (Datum) 0;
	nulls[0] = last == NULL;
	result[1] = Int64GetDatum(counts.accounts);
	result[2] = Int64GetDatum(counts.items);
	result[3] = Int64GetDatum(counts.skipped);
	result[4] = Int64GetDatum(counts.failed);
	InitMaterializedSRF(fcinfo, rsinfo != NULL && rsinfo->expectedDesc != NULL ?
						MAT_SRF_USE_EXPECTED_DESC : 0);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, result, nulls);
	return (Datum) 0;
}

/*
 * credits.run_jobs(batch_size, jobs): run each job (default: expire_holds,
 * expire_grants, renew, in that order) to the end, a chunk of at most
 * batch_size accounts at a time, committing after each chunk when called
 * by CALL outside a transaction block (in one, the chunks share the
 * caller's transaction).  Not SECURITY DEFINER (PostgreSQL forbids
 * transaction control there): each chunk is credits.run_job_step(), which
 * is.  Reports the totals (accounts, items, skipped, failed) in a NOTICE.
 */
Datum
credits_run_jobs(PG_FUNCTION_ARGS)
{
	int			batch = arg_batch_size(fcinfo, 0);
	CallContext *call = (CallContext *) fcinfo->context;
	bool		atomic = call == NULL || !IsA(call, CallContext) || call->atomic;
	ArrayType  *jobs_arr;
	Datum	   *jobs;
	bool	   *jobs_nulls;
	int			njobs;
	JobCounts	total = {0};
	MemoryContext cxt;
	int			rc;

	if (PG_ARGISNULL(1))
		credits_invalid_parameter("jobs", "must not be null", NULL);
	jobs_arr = PG_GETARG_ARRAYTYPE_P(1);
	deconstruct_array(jobs_arr, TEXTOID, -1, false, TYPALIGN_INT,
					  &jobs, &jobs_nulls, &njobs);
	for (int i = 0; i < njobs; i++)
	{
		if (jobs_nulls[i])
			credits_invalid_parameter("jobs", "must not contain null", NULL);
		(void) job_by_name(TextDatumGetCString(jobs[i]));
	}
	/* Survives the commits: the procedure's own context, not the SPI one. */
	cxt = CurrentMemoryContext;
	rc = SPI_connect_ext(atomic ? 0 : SPI_OPT_NONATOMIC);
	if (rc != SPI_OK_CONNECT)
		elog(ERROR, "credits: SPI_connect failed: %s", SPI_result_code_string(rc));
	for (int i = 0; i < njobs; i++)
	{
		char	   *after = NULL;

		for (;;)
		{
			Datum		values[3];
			char		step_nulls[3] = {' ', ' ', ' '};
			bool		isnull;
			Datum		last;

			values[0] = jobs[i];
			values[1] = after ? CStringGetTextDatum(after) : (Datum) 0;
			step_nulls[1] = after ? ' ' : 'n';
			values[2] = Int32GetDatum(batch);
			if (credits_exec(CQ_JOB_STEP, values, step_nulls, false, 0) != 1)
				elog(ERROR, "credits: run_job_step returned no row");
			last = credits_get(0, 1, &isnull);
			total.accounts += credits_get_int64(0, 2);
			total.items += credits_get_int64(0, 3);
			total.skipped += credits_get_int64(0, 4);
			total.failed += credits_get_int64(0, 5);
			after = isnull ? NULL : MemoryContextStrdup(cxt, TextDatumGetCString(last));
			SPI_freetuptable(SPI_tuptable);
			if (!atomic)
				SPI_commit();
			if (after == NULL)
				break;
		}
	}
	rc = SPI_finish();
	if (rc != SPI_OK_FINISH)
		elog(ERROR, "credits: SPI_finish failed: %s", SPI_result_code_string(rc));

	ereport(NOTICE,
			errmsg("credits.run_jobs: " INT64_FORMAT " accounts, " INT64_FORMAT
				   " items, " INT64_FORMAT " skipped, " INT64_FORMAT " failed",
				   total.accounts, total.items, total.skipped, total.failed));
	PG_RETURN_VOID();
}
