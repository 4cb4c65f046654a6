"""Names a sweep writes: MLflow tags and metrics on its parent run and on each trial's child run,
and the user attributes of each Optuna trial (what optuna-dashboard shows beside it)."""

SWEEP_KIND = "sweep"  # value of repro.tracking.tags.KIND on a sweep's parent run
SWEEP = "sweep.name"
STUDY = "sweep.study"
TRIAL = "sweep.trial"  # the Optuna trial number, on the trial's run
STATE = "sweep.state"  # the trial's end state: COMPLETE, PRUNED or FAIL
BEST_TRIAL = "sweep.best_trial"  # on the parent run

METRIC_OBJECTIVE = "sweep/objective"  # the value the trial reported to the study
METRIC_BEST = "sweep/best_value"  # on the parent run

ATTR_RUN_ID = "mlflow_run_id"  # the trial's MLflow run
ATTR_CONFIG_HASH = "config_hash"  # the trial's run id in the harness: runs/<hash>/
ATTR_FAILURE = "failure_reason"  # why a FAIL trial failed
