-- conveyor schema 14: finished runs, for the analytics (conveyor.observe.analytics) and for pruning them.
--
-- finished_at is when a run reached its final state (the updated_at of that write), NULL while it has not;
-- executed_steps and retried_steps how many of its steps ran, and how many of those took more than one
-- attempt (what the health score reads, off the index, without reading any step); conveyor_step_outcomes holds one narrow row per step that ran (attempts > 0) of each finished run: its
-- last attempt's state, attempts and duration, copied out of the run's steps (the jsonb of schema 3) when
-- the run finishes. Both are written by the trigger below, inside the statement that finishes the run (a
-- checkpoint, a dead-lettering, a corrupt run failed): no extra statement, no extra commit. When a run
-- leaves its final state (a retry by hand, a completed run undone) its rows go and finished_at is cleared;
-- when it ends again they are written again. (All three columns are NULL while the run is unfinished.)
--
-- Why not index conveyor_runs.updated_at: every checkpoint changes it, so an index over it (even a partial
-- one) would stop PostgreSQL from updating a running run's row in place (a HOT update), and every step's
-- checkpoint would then insert into every index of the table. finished_at changes only when a run ends or
-- reopens, as state does, which is in the indexes' predicates already. The per-step figures over a window
-- read conveyor_step_outcomes_by_step alone (an index-only scan per step), never the runs' jsonb.
ALTER TABLE conveyor_runs ADD COLUMN finished_at double precision,
                          ADD COLUMN executed_steps integer,
                          ADD COLUMN retried_steps integer;

CREATE TABLE conveyor_step_outcomes (
    workflow_name text NOT NULL,
    step_name     text NOT NULL,
    finished_at   double precision NOT NULL,  -- the run's
    workflow_id   text NOT NULL,
    state         text,
    attempts      integer NOT NULL,
    duration      double precision            -- of the last attempt; NULL if its times were not recorded
);

-- The steps that ran of a run's steps object, read defensively: a run whose row cannot be read (see
-- conveyor.backends.rows) still ends, failed, without this raising; a value that is not what it should be
-- is left out (a step) or NULL (a duration).
CREATE FUNCTION conveyor_executed_steps(steps jsonb)
RETURNS TABLE (step_name text, state text, attempts integer, duration double precision)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT s.key, s.value ->> 0, (s.value ->> 1)::integer,
           CASE WHEN jsonb_typeof(s.value -> 5) = 'number' AND jsonb_typeof(s.value -> 6) = 'number' THEN
                CASE WHEN abs((s.value ->> 5)::numeric) < 1e15 AND abs((s.value ->> 6)::numeric) < 1e15
                     THEN (s.value ->> 6)::double precision - (s.value ->> 5)::double precision END
           END
      FROM jsonb_each(CASE WHEN jsonb_typeof(steps) = 'object' THEN steps ELSE '{}'::jsonb END) AS s
     WHERE jsonb_typeof(s.value) = 'array' AND (s.value ->> 1) ~ '^[1-9][0-9]{0,8}$'
$$;

UPDATE conveyor_runs AS r
   SET finished_at = r.updated_at,
       (executed_steps, retried_steps) = (SELECT count(*), count(*) FILTER (WHERE s.attempts > 1)
                                            FROM conveyor_executed_steps(r.steps) AS s)
 WHERE r.state IN ('completed', 'failed', 'compensated', 'compensation_failed', 'cancelled', 'dead_lettered');

INSERT INTO conveyor_step_outcomes (workflow_name, step_name, finished_at, workflow_id, state, attempts, duration)
SELECT r.workflow_name, s.step_name, r.finished_at, r.workflow_id, s.state, s.attempts, s.duration
  FROM conveyor_runs AS r, conveyor_executed_steps(r.steps) AS s
 WHERE r.finished_at IS NOT NULL;

-- A workflow's runs finished in a window, read from the index alone: the run figures, and (by workflow) the
-- oldest finished runs, which prune deletes first. Its columns but finished_at never change or change only
-- when state does, so a running run's checkpoint stays a HOT update.
CREATE INDEX conveyor_runs_finished ON conveyor_runs (workflow_name, finished_at)
    INCLUDE (created_at, state, executed_steps, retried_steps)
    WHERE finished_at IS NOT NULL;

-- A step's outcomes in a window, read from the index alone. workflow_id is left out (it would double the
-- index's size); the rare deletes (a run reopened, a run pruned) find a run's rows by (workflow_name,
-- step_name, finished_at) here and check workflow_id in the table.
CREATE INDEX conveyor_step_outcomes_by_step ON conveyor_step_outcomes (workflow_name, step_name, finished_at)
    INCLUDE (state, attempts, duration);

-- Deleting a run deletes its signals (ON DELETE CASCADE): by this index, not a scan of every signal per run.
CREATE INDEX conveyor_signals_by_run ON conveyor_signals (workflow_id);

CREATE FUNCTION conveyor_run_finished() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.finished_at IS NOT NULL THEN
        DELETE FROM conveyor_step_outcomes AS o
         USING conveyor_executed_steps(OLD.steps) AS s
         WHERE o.workflow_name = OLD.workflow_name AND o.step_name = s.step_name
           AND o.finished_at = OLD.finished_at AND o.workflow_id = OLD.workflow_id;
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
    ELSE
        NEW.finished_at := NULL;
        NEW.executed_steps := NULL;
        NEW.retried_steps := NULL;
    END IF;
    RETURN NEW;
END
$$;

-- Evaluated for every update that assigns state (every checkpoint), the function called only when a run
-- enters or leaves a final state.
CREATE TRIGGER conveyor_run_finished BEFORE UPDATE OF state ON conveyor_runs FOR EACH ROW
WHEN (OLD.state IS DISTINCT FROM NEW.state
      AND (OLD.state IN ('completed', 'failed', 'compensated', 'compensation_failed', 'cancelled', 'dead_lettered')
           OR NEW.state IN ('completed', 'failed', 'compensated', 'compensation_failed', 'cancelled',
                            'dead_lettered')))
EXECUTE FUNCTION conveyor_run_finished();
