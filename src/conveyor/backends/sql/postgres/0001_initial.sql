-- conveyor schema 1: runs and their steps (the SQLite schema, in PostgreSQL types).
-- Times are epoch seconds as double precision; results, errors and inputs are JSON text.
CREATE TABLE conveyor_runs (
    workflow_id      text PRIMARY KEY,
    workflow_name    text NOT NULL,
    workflow_version text NOT NULL,
    state            text NOT NULL,
    input            text NOT NULL,
    output           text,
    error            text,
    correlation_id   text NOT NULL,
    step_names       text NOT NULL,
    created_at       double precision NOT NULL,
    updated_at       double precision NOT NULL,
    wake_at          double precision,
    epoch            integer NOT NULL DEFAULT 1,
    recoveries       integer NOT NULL DEFAULT 0,
    generation       integer NOT NULL DEFAULT 0,
    -- Who holds the run: a worker (with lease_expires_at) or an inline caller (lease_expires_at NULL).
    owner            text,
    lease_expires_at double precision
);

-- Workers look for runs that are not final; final runs are most of the table, so they are left out.
CREATE INDEX conveyor_runs_ready ON conveyor_runs (wake_at)
    WHERE state IN ('pending', 'running', 'compensating');

CREATE TABLE conveyor_steps (
    workflow_id           text NOT NULL REFERENCES conveyor_runs (workflow_id) ON DELETE CASCADE,
    step_name             text NOT NULL,
    state                 text NOT NULL,
    attempts              integer NOT NULL,
    result                text,
    error                 text,
    next_attempt_at       double precision,
    started_at            double precision,
    finished_at           double precision,
    completion_order      integer,
    compensation_attempts integer NOT NULL DEFAULT 0,
    compensation_error    text,
    PRIMARY KEY (workflow_id, step_name)
);
