-- The rollups of the analytics by hour and by day (schema 16), one query per "-- name:" section (loaded by
-- conveyor.backends.postgres_sql). conveyor.backends.postgres_hours decides which days and hours of a
-- window come from the rollups and which from the runs themselves (the window's ragged ends, and what is
-- not settled yet), writes the settled periods not written yet, and merges what these queries return. A
-- period is [hour, hour + seconds), its length %(seconds)s 3600 or 86400.

-- name: count_hours
-- How many periods of %(seconds)s starting in [%(first)s, %(last)s) have their rollups written.
SELECT count(*) FROM conveyor_analytics_hours
 WHERE seconds = %(seconds)s AND hour >= %(first)s AND hour < %(last)s

-- name: mark_hours
-- Mark written each period of %(seconds)s starting in [%(first)s, %(last)s) that is not yet; the periods
-- marked, which the caller then writes in the same transaction. A period another transaction is marking is
-- waited for, then left to it (ON CONFLICT).
INSERT INTO conveyor_analytics_hours (hour, seconds)
SELECT h::double precision, %(seconds)s
  FROM generate_series(%(first)s::bigint, %(last)s::bigint - %(seconds)s, %(seconds)s) AS h
ON CONFLICT DO NOTHING
RETURNING hour

-- name: write_run_hours
-- The run rollups of the periods of %(seconds)s starting at %(hours)s (all in [%(low)s, %(high)s)), read
-- workflow by workflow through
-- conveyor_runs_finished.
WITH RECURSIVE {cte:finished_workflows},
buckets AS (
    SELECT n.workflow_name, floor(r.finished_at / %(seconds)s) * %(seconds)s AS hour,
           conveyor_duration_bucket(r.finished_at - r.created_at) AS bucket, count(*) AS runs,
           count(*) FILTER (WHERE r.state = 'cancelled') AS cancelled,
           count(*) FILTER (WHERE r.state = 'compensated') AS compensated,
           count(*) FILTER (WHERE r.state = 'compensation_failed') AS compensation_failed,
           count(*) FILTER (WHERE r.state = 'completed') AS completed,
           count(*) FILTER (WHERE r.state = 'dead_lettered') AS dead_lettered,
           count(*) FILTER (WHERE r.state = 'failed') AS failed,
           coalesce(sum(r.executed_steps), 0) AS executed, coalesce(sum(r.retried_steps), 0) AS retried
      FROM names AS n
     CROSS JOIN LATERAL (
        SELECT r.finished_at, r.created_at, r.state, r.executed_steps, r.retried_steps
          FROM conveyor_runs AS r
         WHERE r.workflow_name = n.workflow_name AND r.finished_at IS NOT NULL
           AND r.finished_at >= %(low)s AND r.finished_at < %(high)s) AS r
     WHERE n.workflow_name IS NOT NULL
       AND floor(r.finished_at / %(seconds)s) * %(seconds)s = ANY (%(hours)s::double precision[])
     GROUP BY 1, 2, 3
)
INSERT INTO conveyor_run_hours (hour, seconds, workflow_name, by_state, executed, retried, buckets, counts)
SELECT b.hour, %(seconds)s, b.workflow_name,
       ARRAY[sum(b.cancelled), sum(b.compensated), sum(b.compensation_failed), sum(b.completed),
             sum(b.dead_lettered), sum(b.failed)]::bigint[],
       sum(b.executed), sum(b.retried), array_agg(b.bucket ORDER BY b.bucket), array_agg(b.runs ORDER BY b.bucket)
  FROM buckets AS b
 GROUP BY b.hour, b.workflow_name

-- name: write_step_hours
-- The step rollups of the periods of %(seconds)s starting at %(hours)s (all in [%(low)s, %(high)s)), read
-- step by step through
-- conveyor_step_outcomes_by_step.
WITH RECURSIVE {cte:outcome_steps},
buckets AS (
    SELECT p.workflow_name, p.step_name, floor(o.finished_at / %(seconds)s) * %(seconds)s AS hour,
           conveyor_duration_bucket(o.duration) AS bucket, count(*) AS executions,
           sum(o.attempts) AS attempts, count(*) FILTER (WHERE o.attempts > 1) AS retried,
           count(*) FILTER (WHERE o.state = 'failed') AS failed, count(o.duration) AS timed,
           coalesce(sum(o.duration), 0) AS total
      FROM pairs AS p
     CROSS JOIN LATERAL (
        SELECT o.finished_at, o.duration, o.attempts, o.state FROM conveyor_step_outcomes AS o
         WHERE o.workflow_name = p.workflow_name AND o.step_name = p.step_name
           AND o.finished_at >= %(low)s AND o.finished_at < %(high)s) AS o
     WHERE floor(o.finished_at / %(seconds)s) * %(seconds)s = ANY (%(hours)s::double precision[])
     GROUP BY 1, 2, 3, 4
)
INSERT INTO conveyor_step_hours (hour, seconds, workflow_name, step_name, executions, attempts, retried, failed,
                                 timed, total, buckets, counts)
SELECT b.hour, %(seconds)s, b.workflow_name, b.step_name, sum(b.executions), sum(b.attempts), sum(b.retried), sum(b.failed),
       sum(b.timed), sum(b.total),
       coalesce(array_agg(b.bucket ORDER BY b.bucket) FILTER (WHERE b.bucket IS NOT NULL), '{}'),
       coalesce(array_agg(b.timed ORDER BY b.bucket) FILTER (WHERE b.bucket IS NOT NULL), '{}')
  FROM buckets AS b
 GROUP BY b.hour, b.workflow_name, b.step_name

-- name: run_hours
-- The run rollups of the window's periods (its whole days, the hours at its ends), added up by workflow: its counts (with
-- a NULL bucket), then its histogram, one row per bucket.
SELECT h.workflow_name, NULL::integer, sum(h.by_state[1]), sum(h.by_state[2]), sum(h.by_state[3]),
       sum(h.by_state[4]), sum(h.by_state[5]), sum(h.by_state[6]), sum(h.executed), sum(h.retried)
  FROM conveyor_run_hours AS h
 WHERE ((h.seconds = 86400 AND h.hour >= %(day_first)s AND h.hour < %(day_last)s)
        OR (h.seconds = 3600 AND h.hour >= %(first)s AND h.hour < %(day_first)s)
        OR (h.seconds = 3600 AND h.hour >= %(day_last)s AND h.hour < %(last)s))
   AND (%(workflow_names)s::text[] IS NULL OR h.workflow_name = ANY (%(workflow_names)s::text[]))
 GROUP BY h.workflow_name
UNION ALL
SELECT h.workflow_name, u.bucket, sum(u.count), NULL, NULL, NULL, NULL, NULL, NULL, NULL
  FROM conveyor_run_hours AS h, unnest(h.buckets, h.counts) AS u(bucket, count)
 WHERE ((h.seconds = 86400 AND h.hour >= %(day_first)s AND h.hour < %(day_last)s)
        OR (h.seconds = 3600 AND h.hour >= %(first)s AND h.hour < %(day_first)s)
        OR (h.seconds = 3600 AND h.hour >= %(day_last)s AND h.hour < %(last)s))
   AND (%(workflow_names)s::text[] IS NULL OR h.workflow_name = ANY (%(workflow_names)s::text[]))
 GROUP BY h.workflow_name, u.bucket

-- name: step_hours
-- The step rollups of the window's periods, added up by step: its counts (with a
-- NULL bucket), then its histogram, one row per bucket.
SELECT h.workflow_name, h.step_name, NULL::integer, sum(h.executions), sum(h.attempts), sum(h.retried),
       sum(h.failed), sum(h.timed), sum(h.total)
  FROM conveyor_step_hours AS h
 WHERE ((h.seconds = 86400 AND h.hour >= %(day_first)s AND h.hour < %(day_last)s)
        OR (h.seconds = 3600 AND h.hour >= %(first)s AND h.hour < %(day_first)s)
        OR (h.seconds = 3600 AND h.hour >= %(day_last)s AND h.hour < %(last)s))
   AND (%(workflow_names)s::text[] IS NULL OR h.workflow_name = ANY (%(workflow_names)s::text[]))
 GROUP BY h.workflow_name, h.step_name
UNION ALL
SELECT h.workflow_name, h.step_name, u.bucket, sum(u.count), NULL, NULL, NULL, NULL, NULL
  FROM conveyor_step_hours AS h, unnest(h.buckets, h.counts) AS u(bucket, count)
 WHERE ((h.seconds = 86400 AND h.hour >= %(day_first)s AND h.hour < %(day_last)s)
        OR (h.seconds = 3600 AND h.hour >= %(first)s AND h.hour < %(day_first)s)
        OR (h.seconds = 3600 AND h.hour >= %(day_last)s AND h.hour < %(last)s))
   AND (%(workflow_names)s::text[] IS NULL OR h.workflow_name = ANY (%(workflow_names)s::text[]))
 GROUP BY h.workflow_name, h.step_name, u.bucket

-- name: run_edges
-- The runs finished in [%(since)s, %(first)s) and [%(last)s, %(until)s), the parts of the window the
-- rollups do not hold, as rollups are: by workflow and duration bucket.
WITH RECURSIVE {cte:finished_workflows}
SELECT n.workflow_name, conveyor_duration_bucket(e.duration) AS bucket, count(*),
       count(*) FILTER (WHERE e.state = 'cancelled'), count(*) FILTER (WHERE e.state = 'compensated'),
       count(*) FILTER (WHERE e.state = 'compensation_failed'), count(*) FILTER (WHERE e.state = 'completed'),
       count(*) FILTER (WHERE e.state = 'dead_lettered'), count(*) FILTER (WHERE e.state = 'failed'),
       coalesce(sum(e.executed_steps), 0), coalesce(sum(e.retried_steps), 0)
  FROM names AS n
 CROSS JOIN LATERAL (
    SELECT r.finished_at - r.created_at AS duration, r.state, r.executed_steps, r.retried_steps
      FROM conveyor_runs AS r
     WHERE r.workflow_name = n.workflow_name AND r.finished_at IS NOT NULL
       AND r.finished_at >= %(since)s AND r.finished_at < %(first)s
    UNION ALL
    SELECT r.finished_at - r.created_at, r.state, r.executed_steps, r.retried_steps
      FROM conveyor_runs AS r
     WHERE r.workflow_name = n.workflow_name AND r.finished_at IS NOT NULL
       AND r.finished_at >= %(last)s AND r.finished_at < %(until)s) AS e
 WHERE n.workflow_name IS NOT NULL
   AND (%(workflow_names)s::text[] IS NULL OR n.workflow_name = ANY (%(workflow_names)s::text[]))
 GROUP BY 1, 2

-- name: step_edges
-- The step outcomes of the runs finished in the window's parts the rollups do not hold, by workflow,
-- step and duration bucket (NULL: not timed).
WITH RECURSIVE {cte:outcome_steps}
SELECT p.workflow_name, p.step_name, conveyor_duration_bucket(e.duration) AS bucket, count(*),
       sum(e.attempts)::bigint, count(*) FILTER (WHERE e.attempts > 1),
       count(*) FILTER (WHERE e.state = 'failed'), count(e.duration), coalesce(sum(e.duration), 0)
  FROM pairs AS p
 CROSS JOIN LATERAL (
    SELECT o.duration, o.attempts, o.state FROM conveyor_step_outcomes AS o
     WHERE o.workflow_name = p.workflow_name AND o.step_name = p.step_name
       AND o.finished_at >= %(since)s AND o.finished_at < %(first)s
    UNION ALL
    SELECT o.duration, o.attempts, o.state FROM conveyor_step_outcomes AS o
     WHERE o.workflow_name = p.workflow_name AND o.step_name = p.step_name
       AND o.finished_at >= %(last)s AND o.finished_at < %(until)s) AS e
 WHERE (%(workflow_names)s::text[] IS NULL OR p.workflow_name = ANY (%(workflow_names)s::text[]))
 GROUP BY 1, 2, 3

-- name: forget_hours
-- Drop the rollups of every period starting before %(before)s (pruning deletes runs that finished in them).
DELETE FROM conveyor_analytics_hours WHERE hour < %(before)s
