-- conveyor schema 9: what people and steps record on a run. operator_log is a jsonb list of the actions done
-- to the run by hand ({action, by, reason, at, step}: retry, skip, complete, resume, cancel, pause...);
-- annotations a jsonb list of what its steps recorded with StepContext.annotate ({name, content, step, at}),
-- each written in the statement of the checkpoint of the step that recorded it. Both NULL until used.
ALTER TABLE conveyor_runs ADD COLUMN operator_log jsonb,
                          ADD COLUMN annotations jsonb;
