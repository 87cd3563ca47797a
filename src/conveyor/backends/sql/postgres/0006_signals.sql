-- conveyor schema 6: signals sent to runs, kept until the checkpoint of the step that consumes them.
-- A run's unconsumed signals are read oldest first (signal_id is the order they were sent in); a consumed
-- signal keeps its row, with consumed_at and the step that took it, for the record.
CREATE TABLE conveyor_signals (
    signal_id   bigserial PRIMARY KEY,
    workflow_id text NOT NULL REFERENCES conveyor_runs (workflow_id) ON DELETE CASCADE,
    name        text NOT NULL,
    payload     text NOT NULL,
    sent_at     double precision NOT NULL,
    consumed_at double precision,
    consumed_by text
);

CREATE INDEX conveyor_signals_unconsumed ON conveyor_signals (workflow_id, name, signal_id)
    WHERE consumed_at IS NULL;
