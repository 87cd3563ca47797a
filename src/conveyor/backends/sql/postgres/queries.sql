-- The queries PostgresBackend runs, one per "-- name:" section (loaded by conveyor.backends.postgres_sql).
-- Run columns come in the order of conveyor.backends.rows.RunRow (definition_hash last, schema 4), then
-- leased_until, then the steps (the jsonb object of schema 3) as text. "Now" is always the database's clock.

-- name: load_run
-- A run and all its steps: one row.
SELECT r.workflow_id, r.workflow_name, r.workflow_version, r.state, r.input, r.output, r.error,
       r.correlation_id, r.step_names, r.created_at, r.updated_at, r.wake_at, r.epoch, r.recoveries,
       r.generation, r.definition_hash,
       CASE WHEN r.lease_expires_at >= extract(epoch FROM clock_timestamp())::float8
            THEN r.lease_expires_at END,
       r.steps::text, r.owner, r.cancel_reason, r.paused, r.deadline_at, r.parent_id, r.operator_log::text,
       r.annotations::text, r.trace_context
  FROM conveyor_runs r
 WHERE r.workflow_id = %(workflow_id)s

-- name: insert_run
-- Every write below is one statement in autocommit mode: one round trip, no BEGIN or COMMIT of its own.
-- With %(lease_seconds)s the caller holds the new run under a lease on the database's clock.
-- Its run.started event (%(events)s) is appended by the same statement.
WITH inserted AS (
    INSERT INTO conveyor_runs (workflow_id, workflow_name, workflow_version, state, input, correlation_id,
                               step_names, created_at, updated_at, epoch, recoveries, owner, lease_expires_at,
                               definition_hash, deadline_at, event_seq, trace_context)
    VALUES (%(workflow_id)s, %(workflow_name)s, %(workflow_version)s, %(state)s, %(input)s, %(correlation_id)s,
            %(step_names)s, %(now)s, %(now)s, %(epoch)s, 0, %(owner)s,
            CASE WHEN %(lease_seconds)s::float8 IS NULL THEN NULL
                ELSE extract(epoch FROM clock_timestamp())::float8 + %(lease_seconds)s::float8 END,
            %(definition_hash)s, %(deadline_at)s, jsonb_array_length(%(events)s::jsonb),
            %(trace_context)s)
    ON CONFLICT (workflow_id) DO NOTHING
    RETURNING workflow_id, event_seq, owner, correlation_id, workflow_name, created_at,
              %(events)s::jsonb AS events
),
noted AS ({noted_events:inserted})
SELECT workflow_id, event_seq, owner, correlation_id, workflow_name, created_at FROM inserted

-- name: insert_run_relaxed
-- insert_run with synchronous_commit off for this statement's own transaction alone (is_local = true): the
-- commit does not wait for the flush to disk; the next durable commit flushes it too.
-- Its run.started event (%(events)s) is appended by the same statement.
WITH inserted AS (
    INSERT INTO conveyor_runs (workflow_id, workflow_name, workflow_version, state, input, correlation_id,
                               step_names, created_at, updated_at, epoch, recoveries, owner, lease_expires_at,
                               definition_hash, deadline_at, event_seq, trace_context)
    SELECT %(workflow_id)s, %(workflow_name)s, %(workflow_version)s, %(state)s, %(input)s, %(correlation_id)s,
           %(step_names)s, %(now)s, %(now)s, %(epoch)s, 0, %(owner)s,
           CASE WHEN %(lease_seconds)s::float8 IS NULL THEN NULL
                ELSE extract(epoch FROM clock_timestamp())::float8 + %(lease_seconds)s::float8 END,
           %(definition_hash)s, %(deadline_at)s, jsonb_array_length(%(events)s::jsonb), %(trace_context)s
      FROM (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed
    ON CONFLICT (workflow_id) DO NOTHING
    RETURNING workflow_id, event_seq, owner, correlation_id, workflow_name, created_at,
              %(events)s::jsonb AS events
),
noted AS ({noted_events:inserted})
SELECT workflow_id, event_seq, owner, correlation_id, workflow_name, created_at FROM inserted

-- name: submit_run
-- insert_run for a pending run, announced to idle workers (the notification is sent when it commits); a
-- child run is recorded with its parent (%(parent_id)s), and its run.started event, in the same statement.
WITH inserted AS (
    INSERT INTO conveyor_runs (workflow_id, workflow_name, workflow_version, state, input, correlation_id,
                               step_names, created_at, updated_at, epoch, recoveries, owner, definition_hash,
                               deadline_at, parent_id, event_seq, trace_context)
    VALUES (%(workflow_id)s, %(workflow_name)s, %(workflow_version)s, %(state)s, %(input)s,
            %(correlation_id)s, %(step_names)s, %(now)s, %(now)s, %(epoch)s, 0, %(owner)s,
            %(definition_hash)s, %(deadline_at)s, %(parent_id)s, jsonb_array_length(%(events)s::jsonb),
            %(trace_context)s)
    ON CONFLICT (workflow_id) DO NOTHING
    RETURNING workflow_id, event_seq, owner, correlation_id, workflow_name, created_at,
              %(events)s::jsonb AS events
),
noted AS ({noted_events:inserted})
SELECT pg_notify('conveyor_work', ''), i.workflow_id, i.event_seq, NULL::text, i.correlation_id,
       i.workflow_name, i.created_at
  FROM inserted AS i

-- name: take_over_run
-- An in-process caller takes over a run that has not ended and that no live lease holds (or whose owner it
-- found dead: %(take_over_from)s), under a lease of its own, and reads it back in the same statement (so
-- with the epoch it took it over at). A pending run (submitted for a worker) taken over becomes running.
-- A run taken from another owner gets a run.taken_over event in the same statement, when %(history)s.
WITH previous AS (SELECT p.owner FROM conveyor_runs AS p WHERE p.workflow_id = %(workflow_id)s),
taken AS (
UPDATE conveyor_runs AS r
   SET epoch = r.epoch + 1, recoveries = r.recoveries + 1, owner = %(owner)s,
       event_seq = r.event_seq
                   + CASE WHEN %(history)s AND (SELECT p.owner FROM previous AS p) IS NOT NULL THEN 1 ELSE 0 END,
       state = CASE WHEN r.state = 'pending' THEN 'running' ELSE r.state END,
       lease_expires_at = CASE WHEN %(lease_seconds)s::float8 IS NULL THEN NULL
            ELSE extract(epoch FROM clock_timestamp())::float8 + %(lease_seconds)s::float8 END,
       updated_at = %(now)s
 WHERE r.workflow_id = %(workflow_id)s
   AND r.state IN ('pending', 'running', 'compensating')
   AND (r.lease_expires_at IS NULL OR r.lease_expires_at < extract(epoch FROM clock_timestamp())::float8
        OR r.owner = %(take_over_from)s)
RETURNING r.workflow_id, r.workflow_name, r.workflow_version, r.state, r.input, r.output, r.error,
          r.correlation_id, r.step_names, r.created_at, r.updated_at, r.wake_at, r.epoch, r.recoveries,
          r.generation, r.definition_hash, r.lease_expires_at,
          r.steps::text, r.owner, r.cancel_reason, r.paused, r.deadline_at, r.parent_id,
          r.operator_log::text, r.annotations::text, r.trace_context, r.event_seq
),
noted AS (
    INSERT INTO conveyor_events (workflow_id, seq, kind, step_name, attempt, at, worker, correlation_id,
                                 workflow_name, data)
    SELECT t.workflow_id, t.event_seq, 'run.taken_over', NULL, NULL, t.updated_at, t.owner, t.correlation_id,
           t.workflow_name, jsonb_build_object('previous_owner', (SELECT p.owner FROM previous AS p),
                                               'recoveries', t.recoveries)
      FROM taken AS t
     WHERE %(history)s AND (SELECT p.owner FROM previous AS p) IS NOT NULL
)
SELECT t.*, (SELECT p.owner FROM previous AS p) FROM taken AS t

-- name: write_checkpoint
-- One checkpoint: the run's columns, and its changed steps merged into its steps (an object of step name to
-- step columns: jsonb || replaces those names, keeps the others). The fence: no row matches once another
-- process bumped the epoch. A checkpoint that records a step is progress: it sets recoveries back to 0
-- (only crashes in a row without progress count towards dead-lettering). Its events (the first parameter:
-- a jsonb list of [kind, step, attempt, at, data, finishes the run]) are numbered from the run's event_seq
-- and appended to its history by the same statement. Returns what numbered them.
WITH incoming AS (SELECT %s::jsonb AS events),
updated AS (
    UPDATE conveyor_runs
       SET state = %s, output = %s, error = %s, wake_at = %s, updated_at = %s, generation = %s,
           steps = steps || %s::jsonb, recoveries = CASE WHEN %s::boolean THEN 0 ELSE recoveries END,
           event_seq = event_seq + jsonb_array_length((SELECT i.events FROM incoming AS i))
     WHERE workflow_id = %s AND epoch = %s
    RETURNING workflow_id, event_seq, owner, correlation_id, workflow_name, created_at,
              (SELECT i.events FROM incoming AS i) AS events
),
noted AS ({noted_events:updated})
SELECT workflow_id, event_seq, owner, correlation_id, workflow_name, created_at FROM updated

-- name: write_checkpoints
-- Several runs' checkpoints in one statement, {checkpoint_values} standing for one checkpoint_values row per
-- checkpoint (write_checkpoint's parameters, in its order). The rows are locked in workflow_id order
-- first, the order every writer of several runs uses, so that two batches (or a batch and a lease renewal)
-- never deadlock; each checkpoint is fenced by its own run's epoch. Returns the ids written.
WITH incoming (events, state, output, error, wake_at, at, generation, steps, progress, workflow_id, epoch) AS (
    VALUES {checkpoint_values}
),
{cte:locked_checkpoint_runs},
updated AS (
    UPDATE conveyor_runs AS r
       SET state = c.state, output = c.output, error = c.error, wake_at = c.wake_at, updated_at = c.at,
           generation = c.generation, steps = r.steps || c.steps,
           recoveries = CASE WHEN c.progress THEN 0 ELSE r.recoveries END,
           event_seq = r.event_seq + jsonb_array_length(c.events)
      FROM incoming AS c
     WHERE r.workflow_id = c.workflow_id AND r.epoch = c.epoch
       AND r.workflow_id IN (SELECT l.workflow_id FROM locked AS l)
    RETURNING r.workflow_id, r.event_seq, r.owner, r.correlation_id, r.workflow_name, r.created_at, c.events
),
noted AS ({noted_events:updated})
SELECT workflow_id, event_seq, owner, correlation_id, workflow_name, created_at FROM updated

-- name: locked_checkpoint_runs
-- A CTE write_checkpoints and write_checkpoints_quiet include as {cte:locked_checkpoint_runs}: their runs'
-- rows locked in workflow_id order, the order every writer of several runs uses.
locked AS (
    SELECT r.workflow_id
      FROM conveyor_runs AS r
     WHERE r.workflow_id IN (SELECT c.workflow_id FROM incoming AS c)
     ORDER BY r.workflow_id
       FOR UPDATE OF r
)

-- name: checkpoint_values
(%s::jsonb, %s::text, %s::text, %s::text, %s::float8, %s::float8, %s::integer, %s::jsonb, %s::boolean,
 %s::text, %s::integer)

-- name: write_checkpoint_quiet
-- write_checkpoint for a checkpoint with no event to record (the history is off): a plain UPDATE, with the
-- same fence and the same RETURNING, measured 8 % cheaper than write_checkpoint given an empty list.
UPDATE conveyor_runs
   SET state = %s, output = %s, error = %s, wake_at = %s, updated_at = %s, generation = %s,
       steps = steps || %s::jsonb, recoveries = CASE WHEN %s::boolean THEN 0 ELSE recoveries END
 WHERE workflow_id = %s AND epoch = %s
RETURNING workflow_id, event_seq, owner, correlation_id, workflow_name, created_at

-- name: write_checkpoints_quiet
-- write_checkpoints for checkpoints with no event to record, {checkpoint_values} standing for one
-- checkpoint_values_quiet row per checkpoint (write_checkpoint_quiet's parameters, in its order).
WITH incoming (state, output, error, wake_at, at, generation, steps, progress, workflow_id, epoch) AS (
    VALUES {checkpoint_values}
),
{cte:locked_checkpoint_runs}
UPDATE conveyor_runs AS r
   SET state = c.state, output = c.output, error = c.error, wake_at = c.wake_at, updated_at = c.at,
       generation = c.generation, steps = r.steps || c.steps,
       recoveries = CASE WHEN c.progress THEN 0 ELSE r.recoveries END
  FROM incoming AS c
 WHERE r.workflow_id = c.workflow_id AND r.epoch = c.epoch
   AND r.workflow_id IN (SELECT l.workflow_id FROM locked AS l)
RETURNING r.workflow_id, r.event_seq, r.owner, r.correlation_id, r.workflow_name, r.created_at

-- name: checkpoint_values_quiet
(%s::text, %s::text, %s::text, %s::float8, %s::float8, %s::integer, %s::jsonb, %s::boolean, %s::text,
 %s::integer)

-- name: claim_runs
-- Lock up to %(limit)s ready runs no other transaction holds, then claim them in the same statement; a run
-- whose recoveries would pass %(max_recoveries)s is moved to dead_lettered instead (its error is written
-- next, by set_run_error; until then readers derive it, see rows.run_from_rows). Oldest first: by when
-- its timer fell due, else when it was recorded. "Now" is the statement's start (statement_timestamp(), a
-- constant the planner can see), so that the runs are read in that order from conveyor_runs_queue and the
-- scan stops at the limit, even before the table has statistics: a clock joined in from a subquery made
-- the planner sort every ready run on each claim instead, until the table was first analyzed.
-- A run taken from an owner whose lease ran out gets a run.taken_over event (run.dead_lettered if it is set
-- aside) in the same statement, when %(history)s.
WITH ready AS (
    SELECT r.workflow_id, r.recoveries + CASE WHEN r.owner IS NULL THEN 0 ELSE 1 END AS recoveries,
           r.owner AS previous_owner
      FROM conveyor_runs r
     WHERE r.state IN ('pending', 'running', 'compensating')
       AND (r.wake_at IS NULL OR r.wake_at <= extract(epoch FROM statement_timestamp())::float8)
       -- the index bound: the scan of conveyor_runs_queue stops before the runs that sleep or wait for a
       -- signal (a minute's slack for a caller's clock ahead of the server's, which stamped created_at)
       AND coalesce(r.wake_at, r.created_at) <= extract(epoch FROM statement_timestamp())::float8 + 60
       AND (r.owner IS NULL
            OR (r.lease_expires_at IS NOT NULL
                AND (r.lease_expires_at < extract(epoch FROM statement_timestamp())::float8
                     OR (%(reclaim_own)s AND r.owner = %(owner)s))))
       AND (%(workflow_names)s::text[] IS NULL OR r.workflow_name = ANY (%(workflow_names)s::text[]))
       AND NOT (r.workflow_id = ANY (%(exclude)s::text[]))
     ORDER BY coalesce(r.wake_at, r.created_at)
     LIMIT %(limit)s
       FOR UPDATE OF r SKIP LOCKED
),
claimed AS (
UPDATE conveyor_runs AS r
   SET epoch = r.epoch + 1,
       recoveries = ready.recoveries,
       updated_at = extract(epoch FROM statement_timestamp())::float8,
       state = CASE WHEN ready.recoveries > %(max_recoveries)s THEN 'dead_lettered'
                    WHEN r.state = 'pending' THEN 'running'
                    ELSE r.state END,
       owner = CASE WHEN ready.recoveries > %(max_recoveries)s THEN NULL ELSE %(owner)s END,
       lease_expires_at = CASE WHEN ready.recoveries > %(max_recoveries)s THEN NULL
                               ELSE extract(epoch FROM statement_timestamp())::float8 + %(lease_seconds)s END,
       wake_at = CASE WHEN ready.recoveries > %(max_recoveries)s THEN NULL ELSE r.wake_at END,
       event_seq = r.event_seq + CASE WHEN %(history)s AND ready.previous_owner IS NOT NULL THEN 1 ELSE 0 END
  FROM ready
 WHERE r.workflow_id = ready.workflow_id
RETURNING r.workflow_id, r.workflow_name, r.workflow_version, r.state, r.input, r.output, r.error,
          r.correlation_id, r.step_names, r.created_at, r.updated_at, r.wake_at, r.epoch, r.recoveries,
          r.generation, r.definition_hash, r.lease_expires_at,
          r.steps::text, NULL::text, r.cancel_reason, r.paused, r.deadline_at, r.parent_id, NULL::text,
          NULL::text, r.trace_context, ready.previous_owner, r.event_seq
),
noted AS (
    INSERT INTO conveyor_events (workflow_id, seq, kind, step_name, attempt, at, worker, correlation_id,
                                 workflow_name, data)
    SELECT c.workflow_id, c.event_seq,
           CASE WHEN c.state = 'dead_lettered' THEN 'run.dead_lettered' ELSE 'run.taken_over' END, NULL, NULL,
           c.updated_at, CASE WHEN c.state = 'dead_lettered' THEN NULL ELSE %(owner)s END, c.correlation_id,
           c.workflow_name, jsonb_build_object('previous_owner', c.previous_owner, 'recoveries', c.recoveries)
      FROM claimed AS c
     WHERE %(history)s AND c.previous_owner IS NOT NULL
)
SELECT * FROM claimed

-- name: set_run_error
UPDATE conveyor_runs SET error = %(error)s WHERE workflow_id = %(workflow_id)s

-- name: extend_leases
-- Renew the leases the owner still holds at the epoch it claimed them with; return those renewed.
-- The rows are locked in workflow_id order first, the order every writer of several runs uses, so that a
-- renewal and a batch of checkpoints can never deadlock.
WITH held AS (
    SELECT r.workflow_id
      FROM conveyor_runs AS r
     WHERE r.workflow_id = ANY (%(workflow_ids)s::text[])
       AND (r.workflow_id, r.epoch) IN (SELECT * FROM unnest(%(workflow_ids)s::text[], %(epochs)s::integer[]))
       AND r.owner = %(owner)s AND r.lease_expires_at IS NOT NULL
     ORDER BY r.workflow_id
       FOR UPDATE OF r
)
UPDATE conveyor_runs AS r
   SET lease_expires_at = extract(epoch FROM clock_timestamp())::float8 + %(lease_seconds)s
 WHERE r.workflow_id = ANY (%(workflow_ids)s::text[])
   AND r.workflow_id IN (SELECT held.workflow_id FROM held)
RETURNING r.workflow_id

-- name: release_run
-- Hand a run back; return whether it is claimable at once, and if so wake idle workers.
WITH released AS (
    UPDATE conveyor_runs
       SET owner = NULL, lease_expires_at = NULL,
           wake_at = CASE WHEN paused THEN 1e15 ELSE %(wake_at)s::float8 END  -- paused: kept unclaimable
     WHERE workflow_id = %(workflow_id)s AND epoch = %(epoch)s
    RETURNING state IN ('pending', 'running', 'compensating')
              AND (wake_at IS NULL OR wake_at <= extract(epoch FROM clock_timestamp())::float8) AS claimable
)
SELECT claimable, CASE WHEN claimable THEN pg_notify('conveyor_work', '') END FROM released

-- name: next_wake_at
-- The next time a run may become claimable by itself: a timer of an unheld run, or a lease's end; of the
-- runs claim_runs would consider with the same workflow_names and exclude. Neither half reads the waiting
-- runs: the first walks conveyor_runs_ready in timer order and stops at the first unheld run, the second
-- reads conveyor_runs_held, which holds only the runs under a lease.
SELECT least(
    (SELECT wake_at
       FROM conveyor_runs
      WHERE state IN ('pending', 'running', 'compensating')
        AND wake_at IS NOT NULL AND wake_at < 1e15  -- not a paused run (see conveyor.backends.steering)
        AND owner IS NULL
        AND (%(workflow_names)s::text[] IS NULL OR workflow_name = ANY (%(workflow_names)s::text[]))
        AND NOT (workflow_id = ANY (%(exclude)s::text[]))
      ORDER BY wake_at
      LIMIT 1),
    (SELECT min(greatest(lease_expires_at, wake_at))
       FROM conveyor_runs
      WHERE lease_expires_at IS NOT NULL AND state IN ('pending', 'running', 'compensating')
        AND owner IS NOT NULL
        AND coalesce(wake_at, 0) < 1e15
        AND (%(workflow_names)s::text[] IS NULL OR workflow_name = ANY (%(workflow_names)s::text[]))
        AND NOT (workflow_id = ANY (%(exclude)s::text[]))))

-- name: now
SELECT extract(epoch FROM clock_timestamp())::float8

-- name: fail_corrupt_run
-- End a run the caller just took (at %(epoch)s) whose row cannot be read: failed, with its CorruptRunError,
-- held by nobody, so that no worker claims it again.
UPDATE conveyor_runs
   SET state = 'failed', error = %(error)s, owner = NULL, lease_expires_at = NULL, wake_at = NULL,
       epoch = epoch + 1, updated_at = extract(epoch FROM clock_timestamp())::float8
 WHERE workflow_id = %(workflow_id)s AND epoch = %(epoch)s

-- name: request_cancel
-- Steering (see conveyor.backends.steering): the first reason is kept; the run is no longer paused and is
-- claimable at once, so that a driver compensates it now; idle workers are woken. Runs that ended are left.
WITH steered AS (
    UPDATE conveyor_runs
       SET cancel_reason = coalesce(cancel_reason, %(reason)s), paused = false, wake_at = NULL
     WHERE workflow_id = %(workflow_id)s AND state IN ('pending', 'running', 'compensating')
    RETURNING workflow_id
)
SELECT pg_notify('conveyor_work', '') FROM steered

-- name: request_compensation
-- Undo a run: a completed one is reopened to compensate (its completed steps' undos run, newest first, and
-- it ends cancelled with the reason), held by nobody and claimable at once; a run not ended is asked to
-- cancel, as request_cancel does; a run that ended otherwise is left. Idle workers are woken.
WITH steered AS (
    UPDATE conveyor_runs
       SET state = CASE WHEN state = 'completed' THEN 'compensating' ELSE state END,
           error = CASE WHEN state = 'completed' THEN %(error)s ELSE error END,
           owner = CASE WHEN state = 'completed' THEN NULL ELSE owner END,
           lease_expires_at = CASE WHEN state = 'completed' THEN NULL ELSE lease_expires_at END,
           epoch = CASE WHEN state = 'completed' THEN epoch + 1 ELSE epoch END,
           updated_at = CASE WHEN state = 'completed' THEN extract(epoch FROM clock_timestamp())::float8
                             ELSE updated_at END,
           cancel_reason = coalesce(cancel_reason, %(reason)s), paused = false, wake_at = NULL
     WHERE workflow_id = %(workflow_id)s AND state IN ('pending', 'running', 'compensating', 'completed')
    RETURNING workflow_id
)
SELECT pg_notify('conveyor_work', '') FROM steered

-- name: request_pause
-- A paused run's timer is set past any clock, so that no claim finds it ready until it is resumed.
UPDATE conveyor_runs
   SET paused = true, wake_at = 1e15
 WHERE workflow_id = %(workflow_id)s AND state IN ('pending', 'running', 'compensating')
   AND cancel_reason IS NULL

-- name: request_resume
WITH steered AS (
    UPDATE conveyor_runs
       SET paused = false, wake_at = NULL
     WHERE workflow_id = %(workflow_id)s AND state IN ('pending', 'running', 'compensating') AND paused
    RETURNING workflow_id
)
SELECT pg_notify('conveyor_work', '') FROM steered

-- name: read_steering
-- Of the runs a heartbeat holds, those asked to cancel or pause (one read per heartbeat round).
SELECT workflow_id, cancel_reason, paused
  FROM conveyor_runs
 WHERE workflow_id = ANY (%(workflow_ids)s::text[]) AND (cancel_reason IS NOT NULL OR paused)

-- name: append_operator_action
-- One action done to the run by hand (a jsonb object), appended to its operator log (schema 9).
UPDATE conveyor_runs
   SET operator_log = coalesce(operator_log, '[]'::jsonb) || %(action)s::jsonb
 WHERE workflow_id = %(workflow_id)s
RETURNING workflow_id

-- name: write_checkpoint_annotated
-- write_checkpoint, appending the annotations its step recorded (a jsonb list) to the run's (schema 9), in
-- the same statement: the step's result and its annotations are written together or not at all.
WITH incoming AS (SELECT %s::jsonb AS events),
updated AS (
    UPDATE conveyor_runs
       SET state = %s, output = %s, error = %s, wake_at = %s, updated_at = %s, generation = %s,
           steps = steps || %s::jsonb, recoveries = CASE WHEN %s::boolean THEN 0 ELSE recoveries END,
           annotations = coalesce(annotations, '[]'::jsonb) || %s::jsonb,
           event_seq = event_seq + jsonb_array_length((SELECT i.events FROM incoming AS i))
     WHERE workflow_id = %s AND epoch = %s
    RETURNING workflow_id, event_seq, owner, correlation_id, workflow_name, created_at,
              (SELECT i.events FROM incoming AS i) AS events
),
noted AS ({noted_events:updated})
SELECT workflow_id, event_seq, owner, correlation_id, workflow_name, created_at FROM updated

-- name: append_events
-- Append events (%(events)s: a jsonb list of [kind, step, attempt, at, data, finishes the run]) to one run's
-- history, numbered from its event_seq: for a write that is not on a step's path (a take-over, a cancel, a
-- signal...), run in the same transaction as that write. %(by_owner)s records the run's owner as the writer.
WITH bumped AS (
    UPDATE conveyor_runs SET event_seq = event_seq + jsonb_array_length(%(events)s::jsonb)
     WHERE workflow_id = %(workflow_id)s
    RETURNING workflow_id, event_seq, CASE WHEN %(by_owner)s THEN owner END AS owner, correlation_id,
              workflow_name, created_at, %(events)s::jsonb AS events
),
noted AS ({noted_events:bumped})
SELECT workflow_id, event_seq, owner, correlation_id, workflow_name, created_at FROM bumped

-- name: read_history
SELECT workflow_id, seq, kind, step_name, attempt, at, worker, correlation_id, workflow_name, data::text
  FROM conveyor_events
 WHERE workflow_id = %(workflow_id)s AND seq > %(after_seq)s
 ORDER BY seq
 LIMIT %(limit)s

-- name: read_feed
-- Every run's events after the position (%(tx)s, %(event_id)s), in commit order: only transactions older
-- than every one still in flight, so that none committing later can hold an event before the position.
SELECT workflow_id, seq, kind, step_name, attempt, at, worker, correlation_id, workflow_name, data::text,
       tx::text, event_id
  FROM conveyor_events
 WHERE (tx, event_id) > (%(tx)s::xid8, %(event_id)s::bigint)
   AND tx < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY tx, event_id
 LIMIT %(limit)s

-- name: count_unfinished_runs
-- Unfinished runs by workflow and status, for the metrics' gauge (see backends.history.UNFINISHED_RUNS).
SELECT workflow_name,
       CASE WHEN owner IS NOT NULL
                 AND (lease_expires_at IS NULL
                      OR lease_expires_at >= extract(epoch FROM clock_timestamp())::float8) THEN 'running'
            WHEN wake_at IS NOT NULL AND wake_at > extract(epoch FROM clock_timestamp())::float8 THEN 'waiting'
            ELSE 'queued' END AS status,
       count(*)
  FROM conveyor_runs
 WHERE state IN ('pending', 'running', 'compensating')
 GROUP BY 1, 2

-- name: noted_events
-- Not a query: the body of the "noted" CTE that {noted_events:SOURCE} stands for in the writes above. It
-- appends the events SOURCE carries (its events column: a jsonb list of [kind, step, attempt, at, data,
-- finishes the run]) to the run's history, numbered so that the last is SOURCE's event_seq; a finishing
-- event gets the run's duration_seconds.
    INSERT INTO conveyor_events (workflow_id, seq, kind, step_name, attempt, at, worker, correlation_id,
                                 workflow_name, data)
    SELECT u.workflow_id, u.event_seq - e.total + e.n::integer, e.v->>0, e.v->>1, (e.v->>2)::integer,
           (e.v->>3)::float8, u.owner, u.correlation_id, u.workflow_name,
           CASE WHEN (e.v->>5)::boolean
                THEN coalesce(nullif(e.v->4, 'null'::jsonb), '{}'::jsonb)
                     || jsonb_build_object('duration_seconds', (e.v->>3)::float8 - u.created_at)
                ELSE nullif(e.v->4, 'null'::jsonb) END
      FROM {source} AS u
     CROSS JOIN LATERAL (SELECT x.v, x.n, count(*) OVER () AS total
                           FROM jsonb_array_elements(u.events) WITH ORDINALITY AS x(v, n)) AS e
