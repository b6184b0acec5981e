-- credits' clock (S1): the transaction timestamp plus credits.clock_offset
-- seconds.  The offset is for tests only: a superuser setting, so an
-- application role cannot move the clock.
SET client_min_messages = warning;

SHOW credits.clock_offset;
SET credits.clock_offset = 3600;
SHOW credits.clock_offset;
RESET credits.clock_offset;

-- the application, the operator and the reader cannot set it
SET ROLE credits_app;
SET credits.clock_offset = 3600;
SELECT set_config('credits.clock_offset', '3600', false);
SHOW credits.clock_offset;
RESET ROLE;
SET ROLE credits_ops;
SET credits.clock_offset = 3600;
RESET ROLE;
SHOW credits.clock_offset;
