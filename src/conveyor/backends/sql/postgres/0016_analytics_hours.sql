-- conveyor schema 16: rollups of the finished runs by hour and by day, so that the analytics over a week
-- or a month read a few hundred rows instead of every run finished in it (sql/postgres/analytics_hours.sql).
--
-- A period (an hour, or a day in UTC) is rolled up the first time the analytics ask about it once it is
-- settled (ended some minutes ago: conveyor.backends.postgres_hours.SETTLE_SECONDS), in the transaction of
-- that query, and kept. conveyor_analytics_hours marks each period written (for every workflow at once, a
-- period with no finished run included); the figures of its runs and steps are in conveyor_run_hours and
-- conveyor_step_hours, with the durations as a histogram: bucket b (b >= 1) holds the durations d with
-- floor(16 * log2(d / 1 µs)) = b - 1, so a bucket is 4.4 % wide (bucket 0: under 1 µs). Counts and totals
-- are exact; a percentile read from the buckets is within 2.2 % of the duration it stands for.
--
-- A period's rollups are dropped (and written again when next asked for) when a run that finished in it
-- reopens (a retry by hand), when a run finishes with a time inside a period already written (a clock
-- behind the others'), and when pruning deletes runs that finished in it.
CREATE TABLE conveyor_analytics_hours (
    hour    double precision NOT NULL,  -- the period's start, epoch seconds (a multiple of its length)
    seconds integer NOT NULL,           -- its length: 3600 or 86400
    PRIMARY KEY (hour, seconds)
);

CREATE TABLE conveyor_run_hours (
    hour          double precision NOT NULL,
    seconds       integer NOT NULL,
    workflow_name text NOT NULL,
    by_state      bigint[] NOT NULL,   -- runs by final state, in conveyor.core.analytics.FINAL_STATE_NAMES order
    executed      bigint NOT NULL,     -- their steps that ran
    retried       bigint NOT NULL,     -- of those, the ones that took more than one attempt
    buckets       integer[] NOT NULL,  -- the duration buckets that hold a run, ascending
    counts        bigint[] NOT NULL,   -- how many runs each holds
    PRIMARY KEY (seconds, hour, workflow_name),
    FOREIGN KEY (hour, seconds) REFERENCES conveyor_analytics_hours (hour, seconds) ON DELETE CASCADE
);

CREATE TABLE conveyor_step_hours (
    hour          double precision NOT NULL,
    seconds       integer NOT NULL,
    workflow_name text NOT NULL,
    step_name     text NOT NULL,
    executions    bigint NOT NULL,
    attempts      bigint NOT NULL,
    retried       bigint NOT NULL,
    failed        bigint NOT NULL,
    timed         bigint NOT NULL,
    total         double precision NOT NULL,
    buckets       integer[] NOT NULL,
    counts        bigint[] NOT NULL,
    PRIMARY KEY (seconds, hour, workflow_name, step_name),
    FOREIGN KEY (hour, seconds) REFERENCES conveyor_analytics_hours (hour, seconds) ON DELETE CASCADE
);

-- The trigger of schema 14, with the rollups' invalidation: when a run reopens, the hour and the day it had
-- finished in; when it finishes with a time more than a minute behind the database's clock (a process
-- whose clock runs behind), the hour and the day it finishes in, should they be written already. A run
-- finishing now cannot fall in a period already written (those ended SETTLE_SECONDS ago at least), so
-- its checkpoint pays for no probe.
CREATE OR REPLACE FUNCTION conveyor_run_finished() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.finished_at IS NOT NULL THEN
        DELETE FROM conveyor_step_outcomes AS o
         USING conveyor_executed_steps(OLD.steps) AS s
         WHERE o.workflow_name = OLD.workflow_name AND o.step_name = s.step_name
           AND o.finished_at = OLD.finished_at AND o.workflow_id = OLD.workflow_id;
        DELETE FROM conveyor_analytics_hours
         WHERE (hour, seconds) IN ((floor(OLD.finished_at / 3600) * 3600, 3600),
                                   (floor(OLD.finished_at / 86400) * 86400, 86400));
    END IF;
    IF NEW.state IN ('completed', 'failed', 'compensated', 'compensation_failed', 'cancelled', 'dead_lettered')
    THEN
        NEW.finished_at := NEW.updated_at;
        INSERT INTO conveyor_step_outcomes (workflow_name, step_name, finished_at, workflow_id, state, attempts,
                                            duration)
        SELECT NEW.workflow_name, s.step_name, NEW.updated_at, NEW.workflow_id, s.state, s.attempts, s.duration
          FROM conveyor_executed_steps(NEW.steps) AS s;
        -- (a second read of the steps: cheaper than counting the INSERT's RETURNING rows, measured)
        SELECT count(*), count(*) FILTER (WHERE s.attempts > 1)
          INTO NEW.executed_steps, NEW.retried_steps
          FROM conveyor_executed_steps(NEW.steps) AS s;
        IF NEW.updated_at < extract(epoch FROM clock_timestamp()) - 60 THEN  -- a clock behind: see above
            DELETE FROM conveyor_analytics_hours
             WHERE (hour, seconds) IN ((floor(NEW.updated_at / 3600) * 3600, 3600),
                                       (floor(NEW.updated_at / 86400) * 86400, 86400));
        END IF;
    ELSE
        NEW.finished_at := NULL;
        NEW.executed_steps := NULL;
        NEW.retried_steps := NULL;
    END IF;
    RETURN NEW;
END
$$;

-- The histogram bucket of a duration in seconds (see above); NULL for none.
CREATE FUNCTION conveyor_duration_bucket(duration double precision) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN duration IS NULL THEN NULL
                WHEN duration < 1e-6 THEN 0
                ELSE 1 + floor(ln(least(duration, 1e15) * 1e6) * 23.083120654223414)::integer END
$$;
