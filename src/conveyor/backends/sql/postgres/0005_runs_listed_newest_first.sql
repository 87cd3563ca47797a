-- conveyor schema 5: listing runs newest first, of every workflow or of one, a page at a time (by keyset).
CREATE INDEX conveyor_runs_newest ON conveyor_runs (created_at DESC, workflow_id DESC);
CREATE INDEX conveyor_runs_newest_by_workflow ON conveyor_runs (workflow_name, created_at DESC, workflow_id DESC);
