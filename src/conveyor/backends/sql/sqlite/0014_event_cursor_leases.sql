-- conveyor schema 14: a durable subscriber's cursor is read by one process at a time, which holds it under
-- a lease (renewed with each save of its position); a process that died leaves a lease that runs out.
ALTER TABLE conveyor_event_cursors ADD COLUMN owner TEXT;
ALTER TABLE conveyor_event_cursors ADD COLUMN leased_until REAL;
