-- conveyor schema 1: runs and their steps.
CREATE TABLE IF NOT EXISTS conveyor_runs (
    workflow_id      TEXT PRIMARY KEY,
    workflow_name    TEXT NOT NULL,
    workflow_version TEXT NOT NULL,
    state            TEXT NOT NULL,
    input            TEXT NOT NULL,
    output           TEXT,
    error            TEXT,
    correlation_id   TEXT NOT NULL,
    step_names       TEXT NOT NULL,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    wake_at          REAL,
    epoch            INTEGER NOT NULL DEFAULT 1,
    recoveries       INTEGER NOT NULL DEFAULT 0,
    generation       INTEGER NOT NULL DEFAULT 0,
    owner            TEXT,
    lease_expires_at REAL
);

-- Workers look only for runs that are not final (most of the table is final runs, left out here).
CREATE INDEX IF NOT EXISTS conveyor_runs_ready ON conveyor_runs (wake_at)
    WHERE state IN ('pending', 'running', 'compensating');

CREATE TABLE IF NOT EXISTS conveyor_steps (
    workflow_id           TEXT NOT NULL REFERENCES conveyor_runs (workflow_id) ON DELETE CASCADE,
    step_name             TEXT NOT NULL,
    state                 TEXT NOT NULL,
    attempts              INTEGER NOT NULL,
    result                TEXT,
    error                 TEXT,
    next_attempt_at       REAL,
    started_at            REAL,
    finished_at           REAL,
    completion_order      INTEGER,
    compensation_attempts INTEGER NOT NULL DEFAULT 0,
    compensation_error    TEXT,
    PRIMARY KEY (workflow_id, step_name)
) WITHOUT ROWID;
