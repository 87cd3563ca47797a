-- conveyor schema 11: each run's event history, written in the transaction of the change it describes.
-- event_seq on the run numbers its events (bumped in that transaction); event_id (the rowid) orders the
-- feed that durable subscribers read from a cursor; conveyor_event_cursors keeps each one's position.
ALTER TABLE conveyor_runs ADD COLUMN event_seq INTEGER NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS conveyor_events (
    event_id INTEGER PRIMARY KEY,
    workflow_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    step_name TEXT,
    attempt INTEGER,
    at REAL NOT NULL,
    worker TEXT,
    correlation_id TEXT,
    workflow_name TEXT,
    data TEXT
);

CREATE UNIQUE INDEX IF NOT EXISTS conveyor_events_by_run ON conveyor_events (workflow_id, seq);

CREATE TABLE IF NOT EXISTS conveyor_event_cursors (
    name TEXT PRIMARY KEY,
    position TEXT,
    updated_at REAL NOT NULL
);
