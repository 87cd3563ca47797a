-- The hourly rollups of the analytics (schema 16), one query per "-- name:" section (loaded by
-- conveyor.backends.postgres_sql). conveyor.backends.postgres_hours decides which hours of a window come
-- from the rollups and which from the runs themselves (the window's ragged ends, and the hours not settled
-- yet), writes the settled hours not written yet, and merges what these queries return.

-- name: write_hours
-- Write the rollups of each hour starting in [%(first)s, %(last)s) that has none yet, and mark it written;
-- how many hours were. An hour another transaction is writing is waited for, then left to it (ON
-- CONFLICT); the runs are read workflow by workflow (and steps step by step) through the indexes of
-- schema 14, each over the span of the hours written.
WITH RECURSIVE marked AS (
    INSERT INTO conveyor_analytics_hours (hour)
    SELECT h::double precision FROM generate_series(%(first)s::bigint, %(last)s::bigint - 3600, 3600) AS h
    ON CONFLICT DO NOTHING
    RETURNING hour
),
span AS (SELECT min(marked.hour) AS low, max(marked.hour) + 3600 AS high FROM marked),
names AS (
    (SELECT r.workflow_name FROM conveyor_runs AS r WHERE r.finished_at IS NOT NULL
      ORDER BY r.workflow_name LIMIT 1)
    UNION ALL
    SELECT (SELECT r.workflow_name FROM conveyor_runs AS r
             WHERE r.finished_at IS NOT NULL AND r.workflow_name > n.workflow_name
             ORDER BY r.workflow_name LIMIT 1)
      FROM names AS n
     WHERE n.workflow_name IS NOT NULL
),
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
),
run_buckets AS (
    SELECT n.workflow_name, floor(r.finished_at / 3600) * 3600 AS hour,
           conveyor_duration_bucket(r.finished_at - r.created_at) AS bucket, count(*) AS runs,
           count(*) FILTER (WHERE r.state = 'cancelled') AS cancelled,
           count(*) FILTER (WHERE r.state = 'compensated') AS compensated,
           count(*) FILTER (WHERE r.state = 'compensation_failed') AS compensation_failed,
           count(*) FILTER (WHERE r.state = 'completed') AS completed,
           count(*) FILTER (WHERE r.state = 'dead_lettered') AS dead_lettered,
           count(*) FILTER (WHERE r.state = 'failed') AS failed,
           coalesce(sum(r.executed_steps), 0) AS executed, coalesce(sum(r.retried_steps), 0) AS retried
      FROM names AS n, span, conveyor_runs AS r
     WHERE n.workflow_name IS NOT NULL AND r.workflow_name = n.workflow_name AND r.finished_at IS NOT NULL
       AND r.finished_at >= span.low AND r.finished_at < span.high
       AND floor(r.finished_at / 3600) * 3600 IN (SELECT marked.hour FROM marked)
     GROUP BY 1, 2, 3
),
written_runs AS (
    INSERT INTO conveyor_run_hours (hour, workflow_name, by_state, executed, retried, buckets, counts)
    SELECT b.hour, b.workflow_name,
           ARRAY[sum(b.cancelled), sum(b.compensated), sum(b.compensation_failed), sum(b.completed),
                 sum(b.dead_lettered), sum(b.failed)]::bigint[],
           sum(b.executed), sum(b.retried), array_agg(b.bucket ORDER BY b.bucket),
           array_agg(b.runs ORDER BY b.bucket)
      FROM run_buckets AS b
     GROUP BY b.hour, b.workflow_name
),
step_buckets AS (
    SELECT p.workflow_name, p.step_name, floor(o.finished_at / 3600) * 3600 AS hour,
           conveyor_duration_bucket(o.duration) AS bucket, count(*) AS executions,
           sum(o.attempts) AS attempts, count(*) FILTER (WHERE o.attempts > 1) AS retried,
           count(*) FILTER (WHERE o.state = 'failed') AS failed, count(o.duration) AS timed,
           coalesce(sum(o.duration), 0) AS total
      FROM pairs AS p, span, conveyor_step_outcomes AS o
     WHERE o.workflow_name = p.workflow_name AND o.step_name = p.step_name
       AND o.finished_at >= span.low AND o.finished_at < span.high
       AND floor(o.finished_at / 3600) * 3600 IN (SELECT marked.hour FROM marked)
     GROUP BY 1, 2, 3, 4
),
written_steps AS (
    INSERT INTO conveyor_step_hours (hour, workflow_name, step_name, executions, attempts, retried, failed,
                                     timed, total, buckets, counts)
    SELECT b.hour, b.workflow_name, b.step_name, sum(b.executions), sum(b.attempts), sum(b.retried),
           sum(b.failed), sum(b.timed), sum(b.total),
           coalesce(array_agg(b.bucket ORDER BY b.bucket) FILTER (WHERE b.bucket IS NOT NULL), '{}'),
           coalesce(array_agg(b.timed ORDER BY b.bucket) FILTER (WHERE b.bucket IS NOT NULL), '{}')
      FROM step_buckets AS b
     GROUP BY b.hour, b.workflow_name, b.step_name
)
SELECT count(*) FROM marked

-- name: run_hours
-- The run rollups of the hours starting in [%(first)s, %(last)s).
SELECT h.workflow_name, h.by_state, h.executed, h.retried, h.buckets, h.counts
  FROM conveyor_run_hours AS h
 WHERE h.hour >= %(first)s AND h.hour < %(last)s
   AND (%(workflow_names)s::text[] IS NULL OR h.workflow_name = ANY (%(workflow_names)s::text[]))

-- name: step_hours
-- The step rollups of the hours starting in [%(first)s, %(last)s).
SELECT h.workflow_name, h.step_name, h.executions, h.attempts, h.retried, h.failed, h.timed, h.total,
       h.buckets, h.counts
  FROM conveyor_step_hours AS h
 WHERE h.hour >= %(first)s AND h.hour < %(last)s
   AND (%(workflow_names)s::text[] IS NULL OR h.workflow_name = ANY (%(workflow_names)s::text[]))

-- name: run_edges
-- The runs finished in [%(since)s, %(first)s) and [%(last)s, %(until)s), the parts of the window the
-- rollups do not hold, as rollups are: by workflow and duration bucket.
WITH RECURSIVE names AS (
    (SELECT r.workflow_name FROM conveyor_runs AS r WHERE r.finished_at IS NOT NULL
      ORDER BY r.workflow_name LIMIT 1)
    UNION ALL
    SELECT (SELECT r.workflow_name FROM conveyor_runs AS r
             WHERE r.finished_at IS NOT NULL AND r.workflow_name > n.workflow_name
             ORDER BY r.workflow_name LIMIT 1)
      FROM names AS n
     WHERE n.workflow_name IS NOT NULL
)
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
WITH RECURSIVE pairs AS (
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
-- Drop the rollups of every hour starting before %(before)s (pruning deletes runs that finished in them).
DELETE FROM conveyor_analytics_hours WHERE hour < %(before)s
