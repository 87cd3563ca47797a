-- conveyor schema 10: child runs. A run started by a step of another run records that run as its parent.
-- When a child run ends (any final state, reached from one that is not), the same transaction leaves its
-- parent a wake-up: a signal named 'conveyor.child:<child id>' (payload: the child's state as JSON), a
-- timer due now and a notification to idle workers, so that the parent, waiting for it without a worker
-- slot, is claimed at once and never polls. A paused parent keeps its paused timer. The update locks the
-- parent's row, as send_signal does, so a parent being handed back either sees the signal or is woken.
ALTER TABLE conveyor_runs ADD COLUMN parent_id text;

CREATE INDEX conveyor_runs_children ON conveyor_runs (parent_id) WHERE parent_id IS NOT NULL;

CREATE FUNCTION conveyor_child_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH woken AS (
        UPDATE conveyor_runs SET wake_at = CASE WHEN paused THEN wake_at END
         WHERE workflow_id = NEW.parent_id AND state IN ('pending', 'running', 'compensating')
        RETURNING workflow_id
    )
    INSERT INTO conveyor_signals (workflow_id, name, payload, sent_at)
    SELECT workflow_id, 'conveyor.child:' || NEW.workflow_id, to_jsonb(NEW.state)::text, NEW.updated_at
      FROM woken;
    PERFORM pg_notify('conveyor_work', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER conveyor_child_ended AFTER UPDATE OF state ON conveyor_runs FOR EACH ROW
WHEN (NEW.parent_id IS NOT NULL
      AND NEW.state IN ('completed', 'failed', 'compensated', 'compensation_failed', 'cancelled', 'dead_lettered')
      AND OLD.state NOT IN ('completed', 'failed', 'compensated', 'compensation_failed', 'cancelled',
                            'dead_lettered'))
EXECUTE FUNCTION conveyor_child_ended();
