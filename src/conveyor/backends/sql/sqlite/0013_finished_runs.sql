-- conveyor schema 13: finished runs, for the analytics (conveyor.observe.analytics) and for pruning them.
-- finished_at is when a run reached its final state (the updated_at of that write), NULL while it has not:
-- set by the trigger below in the transaction that finishes the run, cleared when the run leaves its final
-- state (a retry by hand, a completed run undone). The per-step figures join conveyor_steps, by its key.
ALTER TABLE conveyor_runs ADD COLUMN finished_at REAL;

UPDATE conveyor_runs SET finished_at = updated_at
 WHERE state IN ('completed', 'failed', 'compensated', 'compensation_failed', 'cancelled', 'dead_lettered');

-- The runs finished in a window (the analytics), the oldest of them (prune). Only a run that ends or reopens
-- touches it: a step's checkpoint changes neither finished_at nor whether it is set.
CREATE INDEX IF NOT EXISTS conveyor_runs_finished ON conveyor_runs (finished_at) WHERE finished_at IS NOT NULL;

-- Deleting a run deletes its signals (ON DELETE CASCADE): by this index, not a scan of every signal per run.
CREATE INDEX IF NOT EXISTS conveyor_signals_by_run ON conveyor_signals (workflow_id);

CREATE TRIGGER IF NOT EXISTS conveyor_run_finished AFTER UPDATE OF state ON conveyor_runs
WHEN NEW.state IS NOT OLD.state
 AND (NEW.state IN ('completed', 'failed', 'compensated', 'compensation_failed', 'cancelled', 'dead_lettered')
      OR OLD.state IN ('completed', 'failed', 'compensated', 'compensation_failed', 'cancelled', 'dead_lettered'))
BEGIN
    UPDATE conveyor_runs
       SET finished_at = CASE WHEN NEW.state IN ('completed', 'failed', 'compensated', 'compensation_failed',
                                                 'cancelled', 'dead_lettered')
                              THEN NEW.updated_at END
     WHERE workflow_id = NEW.workflow_id;
END;
