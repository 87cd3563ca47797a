-- conveyor schema 7: how far a loop or a map has come, while its step is not done (JSON text; a map keeps
-- it once done, for its undo). NULL for every other step.
ALTER TABLE conveyor_steps ADD COLUMN progress TEXT
