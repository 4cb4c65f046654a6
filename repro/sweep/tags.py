"""MLflow names a sweep writes: on its parent run, and on each trial's child run."""

SWEEP_KIND = "sweep"  # value of repro.tags.KIND on a sweep's parent run
SWEEP = "sweep.name"
STUDY = "sweep.study"
TRIAL = "sweep.trial"  # the Optuna trial number, on the trial's run
STATE = "sweep.state"  # the trial's end state: COMPLETE, PRUNED or FAIL
BEST_TRIAL = "sweep.best_trial"  # on the parent run

METRIC_OBJECTIVE = "sweep/objective"  # the value the trial reported to the study
METRIC_BEST = "sweep/best_value"  # on the parent run
