-- conveyor schema 12: the trace context of the code that started a run (a JSON object of the W3C
-- traceparent and tracestate), stored with the run when tracing is on, so that whichever process drives the
-- run continues that trace (see conveyor.observe.tracing). NULL for runs started without tracing.
ALTER TABLE conveyor_runs ADD COLUMN trace_context TEXT;
