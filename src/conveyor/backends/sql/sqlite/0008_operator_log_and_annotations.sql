-- conveyor schema 8: what people and steps record on a run. operator_log is a JSON list of the actions done
-- to the run by hand ({action, by, reason, at, step}: retry, skip, complete, resume, cancel, pause...);
-- annotations a JSON list of what its steps recorded with StepContext.annotate ({name, content, step, at}),
-- each written in the transaction of the checkpoint of the step that recorded it. Both NULL until used.
ALTER TABLE conveyor_runs ADD COLUMN operator_log TEXT;
ALTER TABLE conveyor_runs ADD COLUMN annotations TEXT
