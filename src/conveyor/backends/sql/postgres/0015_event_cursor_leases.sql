-- conveyor schema 15: a durable subscriber's cursor is read by one process at a time, which holds it under
-- a lease (renewed with each save of its position, judged by the database's clock); a process that died
-- leaves a lease that runs out.
ALTER TABLE conveyor_event_cursors ADD COLUMN IF NOT EXISTS owner text;
ALTER TABLE conveyor_event_cursors ADD COLUMN IF NOT EXISTS leased_until float8;
