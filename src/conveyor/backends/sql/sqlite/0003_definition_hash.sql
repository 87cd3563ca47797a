-- conveyor schema 3: each run stores the hash of the workflow definition it was recorded by, so that another
-- definition of the same workflow is refused on its id. Runs recorded before keep NULL and are served.
ALTER TABLE conveyor_runs ADD COLUMN definition_hash TEXT
