-- conveyor schema 12: each run's event history, written by the statement that makes the change it describes.
-- event_seq on the run numbers its events (bumped by that statement, under the row's lock). The feed that
-- durable subscribers read in commit order is ordered by (tx, event_id): tx is the writing transaction's id,
-- and a reader only takes events of transactions older than every transaction still in flight
-- (pg_snapshot_xmin), so an event committed late, under a smaller event_id, is never skipped.
ALTER TABLE conveyor_runs ADD COLUMN IF NOT EXISTS event_seq integer NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS conveyor_events (
    event_id bigint GENERATED ALWAYS AS IDENTITY,
    tx xid8 NOT NULL DEFAULT pg_current_xact_id(),
    workflow_id text NOT NULL,
    seq integer NOT NULL,
    kind text NOT NULL,
    step_name text,
    attempt integer,
    at float8 NOT NULL,
    worker text,
    correlation_id text,
    workflow_name text,
    data jsonb,
    PRIMARY KEY (workflow_id, seq)
);

CREATE INDEX IF NOT EXISTS conveyor_events_feed ON conveyor_events (tx, event_id);

CREATE TABLE IF NOT EXISTS conveyor_event_cursors (
    name text PRIMARY KEY,
    position text,
    updated_at float8 NOT NULL
);
