-- conveyor schema 5: signals sent to runs, kept until the checkpoint of the step that consumes them.
-- A run's unconsumed signals are read oldest first (signal_id is the order they were sent in); a consumed
-- signal keeps its row, with consumed_at and the step that took it, for the record.
CREATE TABLE IF NOT EXISTS conveyor_signals (
    signal_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id TEXT NOT NULL REFERENCES conveyor_runs (workflow_id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    sent_at     REAL NOT NULL,
    consumed_at REAL,
    consumed_by TEXT
);

CREATE INDEX IF NOT EXISTS conveyor_signals_unconsumed ON conveyor_signals (workflow_id, name, signal_id)
    WHERE consumed_at IS NULL;
