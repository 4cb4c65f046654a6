"""Names of the MLflow tags, params and metrics the harness writes and the report reads."""

KIND = "repro.kind"  # "campaign" for the parent of one `repro run`, "run" for each RunSpec
CAMPAIGN = "repro.launch.campaign"
TABLE = "table"
ROW = "row"
EXPERIMENT = "experiment"
TIER = "tier"
SEED = "seed"
CONFIG_HASH = "config_hash"
GIT_COMMIT = "git_commit"
FAILURE_REASON = "failure_reason"  # set when a run diverged or crashed; its value says why
STATUS_DIVERGED = "diverged"  # prefix of FAILURE_REASON for a NaN or exploding loss
JOB_ID = "job.id"  # on a run: the submitit job it last ran in (SLURM: "<array id>_<task>")
JOB_EXECUTOR = "job.executor"  # on a run: local, debug or slurm
CAMPAIGN_JOB = "job."  # on a campaign: "job.<config hash>" = "<executor>:<job id>", per run
SWEEP_POINT = "sweep."  # params "sweep.<dotted key>": a run's sweep point, one param per key

METRIC_FID = "eval/fid"
# On a run that scored FID (experiments/evaluation/fid.py sets them): what computed it and how its
# images were resized, since FIDs of different rules must never share a table.
FID_IMPLEMENTATION = "fid.implementation"
FID_PREPROCESSING = "fid.preprocessing"
METRIC_TRAIN_LOSS = "train/loss"
METRIC_DEVICE_HOURS = "compute/device_hours"
METRIC_TRAIN_FLOPS = "compute/train_flops"  # counted (experiments/training/flops.py), not timed
METRIC_STEP_FLOPS = "compute/step_flops"  # one nominal step of the above
SAMPLE_GRID_ARTIFACT = "samples/grid.png"
DREAMBENCH_SHEETS = "dreambench"  # artifact folder: one sample sheet per subject, <subject>.png
# Artifact folder on a finished run that trained a model: its export (repro/sharing/export.py).
MODEL_ARTIFACT = "model"
REPORTS_ARTIFACT = "reports"  # artifact folder on a campaign's or sweep's parent run: its tables and plots
