-- conveyor schema 15: listing the runs of one correlation id, newest first (the REST API's and the
-- dashboard's search by correlation id), from an index instead of a scan of every run.
CREATE INDEX IF NOT EXISTS conveyor_runs_by_correlation_id
    ON conveyor_runs (correlation_id, created_at DESC, workflow_id DESC);
