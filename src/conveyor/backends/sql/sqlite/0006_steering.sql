-- conveyor schema 6: steering a run from outside. cancel_reason is set once a cancel is asked for, paused
-- while the run is paused (its wake_at then holds conveyor.backends.steering.PAUSED_WAKE_AT, so that the
-- claim queries never find it ready), deadline_at is when the whole run must have ended.
ALTER TABLE conveyor_runs ADD COLUMN cancel_reason TEXT;
ALTER TABLE conveyor_runs ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conveyor_runs ADD COLUMN deadline_at REAL
