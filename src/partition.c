/*-------------------------------------------------------------------------
 *
 * partition.c
 *		The stable partition hash of a user_id, and hold ids that carry
 *		their partition (scale-out with PL/Proxy: README, Scale-out).
 *
 * Guarantees:
 *
 *	 * credits.partition_hash(user_id) is fixed forever: fnv1a-32 of the
 *	   user_id's bytes (UTF-8: the database encoding; offset basis 2166136261,
 *	   prime 16777619), then murmur3's fmix32 finalizer, as a signed int4.
 *	   It depends on no PostgreSQL version, platform, locale or collation
 *	   (unlike hashtext).  It is defined once, in partition_hash.h, which
 *	   credits-sync's --partition (sync/partition.c) compiles too;
 *	   test/sql/partition.sql and test/sync check the same vectors.
 *	   Changing it would move every account: never change it.
 *	 * A user's partition of N (a power of two, 1 to CREDITS_MAX_PARTITIONS)
 *	   is hash & (N - 1), which is exactly what PL/Proxy's RUN ON <int4>
 *	   does with a cluster of N partitions.  Doubling N splits each
 *	   partition p into p and p + N.
 *	 * A hold id carries the partition that placed it, in its high bits:
 *	   id = partition * 2^CREDITS_HOLD_ID_BITS + k, k >= 1, once the
 *	   partition is set up with credits.partition_setup().  The bits live in
 *	   the id itself and in the value of credits.holds_id_seq, which pg_dump
 *	   keeps (pg_extension_config_dump), so they survive dump/restore and a
 *	   partition move without any other state.  An install that was never
 *	   set up hands out 1, 2, 3, ... as before: partition 0.  Every id stays
 *	   below 2^52, so it is exact as a JavaScript number and as a Redis
 *	   score.
 *
 * Nothing here takes a lock but partition_setup(), which locks
 * credits.holds (SHARE ROW EXCLUSIVE) so that no hold is placed while it
 * checks the existing ids and moves the sequence.
 *
 *-------------------------------------------------------------------------
 */
#include "credits.h"
#include "partition_hash.h"

#include "executor/spi.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(credits_partition_hash);
PG_FUNCTION_INFO_V1(credits_partition_of);
PG_FUNCTION_INFO_V1(credits_hold_partition);
PG_FUNCTION_INFO_V1(credits_partition_setup);

/* CR010 unless partitions is a power of two from 1 to CREDITS_MAX_PARTITIONS. */
static void
check_partitions(int32 partitions)
{
	if (partitions < 1 || partitions > CREDITS_MAX_PARTITIONS ||
		(partitions & (partitions - 1)) != 0)
		credits_invalid_parameter("partitions",
								  "must be a power of two from 1 to " CppAsString2(CREDITS_MAX_PARTITIONS),
								  psprintf("partitions is %d.", partitions));
}

/* partition_hash(user_id text) -> int4.  STRICT. */
Datum
credits_partition_hash(PG_FUNCTION_ARGS)
{
	text	   *u = PG_GETARG_TEXT_PP(0);

	PG_RETURN_INT32((int32) credits_partition_hash32(VARDATA_ANY(u),
													 VARSIZE_ANY_EXHDR(u)));
}

/* partition_of(user_id text, partitions int) -> int.  STRICT. */
Datum
credits_partition_of(PG_FUNCTION_ARGS)
{
	text	   *u = PG_GETARG_TEXT_PP(0);
	int32		partitions = PG_GETARG_INT32(1);
	uint32		h;

	check_partitions(partitions);
	h = credits_partition_hash32(VARDATA_ANY(u), VARSIZE_ANY_EXHDR(u));
	PG_RETURN_INT32((int32) (h & (uint32) (partitions - 1)));
}

/*
 * hold_partition(hold_id bigint) -> int: the partition bits of a hold id.
 * Not STRICT: NULL and ids below 1 give 0, so that the proxy sends them to
 * a partition, which answers them as a single node does (CR010, CR007).
 */
Datum
credits_hold_partition(PG_FUNCTION_ARGS)
{
	int64		id;

	if (PG_ARGISNULL(0))
		PG_RETURN_INT32(0);
	id = PG_GETARG_INT64(0);
	if (id < 1)
		PG_RETURN_INT32(0);
	PG_RETURN_INT32((int32) (id >> CREDITS_HOLD_ID_BITS));
}

/*
 * partition_setup(partition int, partitions int) -> bigint: makes this
 * database partition `partition` of `partitions`: the next hold id is in
 * the partition's range.  Idempotent; returns the next hold id.  Refuses
 * (55000) when a hold already has an id outside the range.  Superuser or
 * owner only (granted to no role).
 */
Datum
credits_partition_setup(PG_FUNCTION_ARGS)
{
	int32		partition;
	int32		partitions;
	int64		lo;
	int64		hi;
	int64		next;
	bool		isnull;
	int			nest;
	int			rc;
	Oid			argtypes[2] = {INT8OID, INT8OID};
	Datum		values[2];

	if (PG_ARGISNULL(1))
		credits_invalid_parameter("partitions", "must not be null", NULL);
	partitions = PG_GETARG_INT32(1);
	check_partitions(partitions);
	if (PG_ARGISNULL(0))
		credits_invalid_parameter("partition", "must not be null", NULL);
	partition = PG_GETARG_INT32(0);
	if (partition < 0 || partition >= partitions)
		credits_invalid_parameter("partition", "out of range",
								  psprintf("partition is %d; it must be from 0 to %d.",
										   partition, partitions - 1));

	lo = (int64) partition << CREDITS_HOLD_ID_BITS;
	hi = ((int64) partition + 1) << CREDITS_HOLD_ID_BITS;
	values[0] = Int64GetDatum(lo);
	values[1] = Int64GetDatum(hi);

	nest = credits_pin_search_path();
	if ((rc = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(rc));

	rc = SPI_execute("LOCK TABLE credits.holds IN SHARE ROW EXCLUSIVE MODE", false, 0);
	if (rc != SPI_OK_UTILITY)
		elog(ERROR, "credits: LOCK TABLE credits.holds failed: %s", SPI_result_code_string(rc));

	rc = SPI_execute_with_args("SELECT pg_catalog.count(*) FROM credits.holds"
							   " WHERE id <= $1 OR id >= $2",
							   2, argtypes, values, NULL, true, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "credits: counting holds failed: %s", SPI_result_code_string(rc));
	if (DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) > 0)
		ereport(ERROR,
				errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				errmsg("cannot make this database partition %d: holds exist outside its id range",
					   partition),
				errdetail("Hold ids of partition %d are from " INT64_FORMAT " to " INT64_FORMAT ".",
						  partition, lo + 1, hi - 1),
				errhint("Set up partitions before they hold data; to split a single node, see README, Scale-out."));

	/*
	 * Move the sequence into the range unless it is in it already (a second
	 * run, a restored partition, or partition 0, whose range starts at 1):
	 * the next id is then lo + 1.
	 */
	rc = SPI_execute_with_args("SELECT CASE WHEN s.last_value > $1 AND s.last_value < $2"
							   " THEN s.last_value + CASE WHEN s.is_called THEN 1 ELSE 0 END"
							   " ELSE pg_catalog.setval('credits.holds_id_seq'::pg_catalog.regclass, $1 + 1, false) END"
							   " FROM credits.holds_id_seq s",
							   2, argtypes, values, NULL, false, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "credits: moving credits.holds_id_seq failed: %s", SPI_result_code_string(rc));
	next = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	if ((rc = SPI_finish()) != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed: %s", SPI_result_code_string(rc));
	credits_unpin_search_path(nest);
	PG_RETURN_INT64(next);
}
