-- conveyor schema 3: a run's steps move into its own row, as a jsonb object keyed by step name whose values
-- are the step's columns in the order of conveyor.backends.rows.StepRow (its name left out).
-- Reading a run touches one index and one row instead of two of each: with a million finished runs, most of
-- them out of the server's cache, reading a status costs about half as many page reads. A checkpoint is
-- one UPDATE that merges the changed steps in (jsonb ||), and no second index is maintained per step.
ALTER TABLE conveyor_runs ADD COLUMN steps jsonb NOT NULL DEFAULT '{}';

UPDATE conveyor_runs AS r
   SET steps = s.steps
  FROM (SELECT workflow_id,
               jsonb_object_agg(step_name, jsonb_build_array(state, attempts, result, error, next_attempt_at,
                                                             started_at, finished_at, completion_order,
                                                             compensation_attempts, compensation_error))
                 AS steps
          FROM conveyor_steps
         GROUP BY workflow_id) AS s
 WHERE r.workflow_id = s.workflow_id;

DROP TABLE conveyor_steps;
