-- The analytics and retention queries of PostgresBackend, one per "-- name:" section (loaded by
-- conveyor.backends.postgres_sql, as queries.sql is). They read finished runs through the indexes of schema
-- 14 alone: conveyor_runs_finished (workflow_name, finished_at) and conveyor_step_outcomes_by_step
-- (workflow_name, step_name, finished_at). Each first lists the workflows (or the workflows' steps) by a
-- loose index scan (one index descent per name, however many runs each has), then reads each one's window
-- as one index range: no sort of the window's rows by name, only each percentile's sort of its durations.
-- Percentiles are by nearest rank (percentile_disc), as every backend computes them.

-- name: finished_workflows
-- A CTE the queries below include as {cte:finished_workflows}: the names of the workflows with finished
-- runs, by a loose index scan of conveyor_runs_finished (one index descent per name).
names AS (
    (SELECT r.workflow_name FROM conveyor_runs AS r WHERE r.finished_at IS NOT NULL
      ORDER BY r.workflow_name LIMIT 1)
    UNION ALL
    SELECT (SELECT r.workflow_name FROM conveyor_runs AS r
             WHERE r.finished_at IS NOT NULL AND r.workflow_name > n.workflow_name
             ORDER BY r.workflow_name LIMIT 1)
      FROM names AS n
     WHERE n.workflow_name IS NOT NULL
)

-- name: outcome_steps
-- A CTE included as {cte:outcome_steps}: each (workflow, step) with step outcomes, by a loose index scan
-- of conveyor_step_outcomes_by_step.
pairs AS (
    (SELECT o.workflow_name, o.step_name FROM conveyor_step_outcomes AS o
      ORDER BY o.workflow_name, o.step_name LIMIT 1)
    UNION ALL
    SELECT later.workflow_name, later.step_name
      FROM pairs AS p
     CROSS JOIN LATERAL (
        SELECT o.workflow_name, o.step_name FROM conveyor_step_outcomes AS o
         WHERE (o.workflow_name, o.step_name) > (p.workflow_name, p.step_name)
         ORDER BY o.workflow_name, o.step_name LIMIT 1) AS later
)

-- name: analytics_settings
-- Run first, in the transaction of each query below (is_local = true: for that transaction alone). The
-- planner's estimate for a per-workflow LATERAL passes jit_above_cost, and compiling the plan to machine
-- code took ~350 ms where the query takes 5; no query here runs long enough to win that back. work_mem
-- lets a large window's durations be sorted in memory rather than spilled to disk.
SELECT set_config('jit', 'off', true), set_config('work_mem', '64MB', true)

-- name: run_figures
-- Each workflow's runs finished in [since, until): counts by final state (in the order of
-- conveyor.core.analytics.FINAL_STATE_NAMES), the p50, p95 and p99 of their durations (recorded to
-- finished), and how many of their steps ran and how many of those took more than one attempt (the run's
-- executed_steps and retried_steps): all off conveyor_runs_finished alone.
WITH RECURSIVE {cte:finished_workflows}
SELECT n.workflow_name, f.cancelled, f.compensated, f.compensation_failed, f.completed, f.dead_lettered,
       f.failed, f.durations[1], f.durations[2], f.durations[3], f.executed, f.retried
  FROM names AS n
 CROSS JOIN LATERAL (
    SELECT count(*) AS finished,
           count(*) FILTER (WHERE r.state = 'cancelled') AS cancelled,
           count(*) FILTER (WHERE r.state = 'compensated') AS compensated,
           count(*) FILTER (WHERE r.state = 'compensation_failed') AS compensation_failed,
           count(*) FILTER (WHERE r.state = 'completed') AS completed,
           count(*) FILTER (WHERE r.state = 'dead_lettered') AS dead_lettered,
           count(*) FILTER (WHERE r.state = 'failed') AS failed,
           percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY r.finished_at - r.created_at)
             AS durations,
           coalesce(sum(r.executed_steps), 0) AS executed, coalesce(sum(r.retried_steps), 0) AS retried
      FROM conveyor_runs AS r
     WHERE r.workflow_name = n.workflow_name AND r.finished_at IS NOT NULL
       AND r.finished_at >= %(since)s AND r.finished_at < %(until)s) AS f
 WHERE n.workflow_name IS NOT NULL AND f.finished > 0
   AND (%(workflow_names)s::text[] IS NULL OR n.workflow_name = ANY (%(workflow_names)s::text[]))

-- name: step_figures
-- Each (workflow, step)'s outcomes in the runs finished in [since, until): executions, attempts, the
-- executions retried and failed for good, and the durations' count, sum, p50 and p95.
WITH RECURSIVE {cte:outcome_steps}
SELECT p.workflow_name, p.step_name, f.executions, f.attempts, f.retried, f.failed, f.timed,
       coalesce(f.total, 0), coalesce(f.durations[1], 0), coalesce(f.durations[2], 0)
  FROM pairs AS p
 CROSS JOIN LATERAL (
    SELECT count(*) AS executions, sum(o.attempts)::bigint AS attempts,
           count(*) FILTER (WHERE o.attempts > 1) AS retried,
           count(*) FILTER (WHERE o.state = 'failed') AS failed,
           count(o.duration) AS timed, sum(o.duration) AS total,
           percentile_disc(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY o.duration) AS durations
      FROM conveyor_step_outcomes AS o
     WHERE o.workflow_name = p.workflow_name AND o.step_name = p.step_name
       AND o.finished_at >= %(since)s AND o.finished_at < %(until)s) AS f
 WHERE f.executions > 0
   AND (%(workflow_names)s::text[] IS NULL OR p.workflow_name = ANY (%(workflow_names)s::text[]))

-- name: prune_finished_runs
-- Delete up to %(limit)s runs that finished before %(before)s (oldest first, workflow by workflow), with
-- their step outcomes and, in {history}, their rows in the other tables keyed by workflow_id (see
-- conveyor.backends.retention.RUN_HISTORY_TABLES); their signals go by ON DELETE CASCADE too. A finished
-- child run whose parent has not finished is kept (its parent reads it). Rows another transaction holds are
-- skipped, never waited for, and each row is checked again as it is locked: a run reopened meanwhile (a
-- retry by hand) is not finished any more, and stays.
WITH RECURSIVE {cte:finished_workflows},
candidates AS (
    SELECT c.workflow_id
      FROM names AS n
     CROSS JOIN LATERAL (
        SELECT r.workflow_id FROM conveyor_runs AS r
         WHERE r.workflow_name = n.workflow_name AND r.finished_at IS NOT NULL AND r.finished_at < %(before)s
           AND (r.parent_id IS NULL OR NOT EXISTS (
                   SELECT 1 FROM conveyor_runs AS parent
                    WHERE parent.workflow_id = r.parent_id
                      AND parent.state IN ('pending', 'running', 'compensating')))
         ORDER BY r.finished_at
         LIMIT %(limit)s) AS c
     WHERE n.workflow_name IS NOT NULL
     LIMIT %(limit)s
),
doomed AS (
    SELECT r.workflow_id, r.workflow_name, r.finished_at, r.steps
      FROM conveyor_runs AS r
     WHERE r.workflow_id IN (SELECT candidates.workflow_id FROM candidates)
       AND r.finished_at < %(before)s
       AND r.state IN ('completed', 'failed', 'compensated', 'compensation_failed', 'cancelled', 'dead_lettered')
       FOR UPDATE OF r SKIP LOCKED
),
outcomes AS (
    DELETE FROM conveyor_step_outcomes AS o
     USING doomed AS d, conveyor_executed_steps(d.steps) AS s
     WHERE o.workflow_name = d.workflow_name AND o.step_name = s.step_name
       AND o.finished_at = d.finished_at AND o.workflow_id = d.workflow_id
){history}
DELETE FROM conveyor_runs AS r
 USING doomed AS d
 WHERE r.workflow_id = d.workflow_id
RETURNING r.workflow_id

-- name: prune_history_table
-- One table's part of prune_finished_runs' {history}: {table} stands for its name, {alias} for the CTE's.
,
{alias} AS (
    DELETE FROM {table} WHERE workflow_id IN (SELECT doomed.workflow_id FROM doomed)
)

-- name: existing_tables
-- Which of %(tables)s this database has (in the schema search path).
SELECT name FROM unnest(%(tables)s::text[]) AS name WHERE to_regclass(name) IS NOT NULL
