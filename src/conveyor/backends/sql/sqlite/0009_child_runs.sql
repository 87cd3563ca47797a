-- conveyor schema 9: child runs. A run started by a step of another run records that run as its parent.
-- When a child run ends (any final state, reached from one that is not), the same transaction leaves its
-- parent a wake-up: a signal named 'conveyor.child:<child id>' (payload: the child's state as JSON) and a
-- timer due now, so that the parent, waiting for it without a worker slot, is claimed at once and never
-- polls. A paused parent keeps its paused timer. A released parent sees the signal (release_run's
-- wake_for_signals), so a child that ends while its parent is being handed back is never slept through.
ALTER TABLE conveyor_runs ADD COLUMN parent_id TEXT;

CREATE INDEX IF NOT EXISTS conveyor_runs_children ON conveyor_runs (parent_id) WHERE parent_id IS NOT NULL;

CREATE TRIGGER IF NOT EXISTS conveyor_child_ended AFTER UPDATE OF state ON conveyor_runs
WHEN NEW.parent_id IS NOT NULL
 AND NEW.state IN ('completed', 'failed', 'compensated', 'compensation_failed', 'cancelled', 'dead_lettered')
 AND OLD.state NOT IN ('completed', 'failed', 'compensated', 'compensation_failed', 'cancelled', 'dead_lettered')
BEGIN
    INSERT INTO conveyor_signals (workflow_id, name, payload, sent_at)
    SELECT workflow_id, 'conveyor.child:' || NEW.workflow_id, '"' || NEW.state || '"', NEW.updated_at
      FROM conveyor_runs
     WHERE workflow_id = NEW.parent_id AND state IN ('pending', 'running', 'compensating');
    UPDATE conveyor_runs SET wake_at = NULL
     WHERE workflow_id = NEW.parent_id AND NOT paused AND state IN ('pending', 'running', 'compensating');
END;
