-- conveyor schema 7: steering a run from outside. cancel_reason is set once a cancel is asked for, paused
-- while the run is paused (its wake_at then holds conveyor.backends.steering.PAUSED_WAKE_AT, so that the
-- claim query, unchanged, never finds it ready), deadline_at is when the whole run must have ended.
ALTER TABLE conveyor_runs ADD COLUMN cancel_reason text,
                          ADD COLUMN paused boolean NOT NULL DEFAULT false,
                          ADD COLUMN deadline_at float8;
