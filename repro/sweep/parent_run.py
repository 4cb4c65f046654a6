"""The sweep's MLflow parent run: one per study, reopened when the sweep is restarted."""

from __future__ import annotations

import json
from dataclasses import asdict

import optuna
from mlflow import MlflowClient
from mlflow.entities import Param as MlflowParam
from mlflow.entities import RunTag
from optuna.trial import TrialState

from repro.config.schema import RunSpec
from repro.config.sweep import Param, SweepSpec
from repro.launch.failures import clip
from repro.launch.run_job import JobContext
from repro.sweep import tags as sweep_tags
from repro.tracking import tags
from repro.tracking.mlflow_runs import open_run
from repro.tracking.provenance import git_commit


def open_sweep_run(client: MlflowClient, experiment_id: str, sweep: SweepSpec, study: str, tier: str) -> str:
    found = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`{tags.KIND}` = '{sweep_tags.SWEEP_KIND}' and tags.`{sweep_tags.STUDY}` = '{study}'"
        ),
        max_results=1,
    )
    if found:
        run_id = found[0].info.run_id
        client.update_run(run_id, status="RUNNING")
    else:
        run_id = client.create_run(experiment_id, run_name=f"sweep {sweep.name} {tier}", tags={
            tags.KIND: sweep_tags.SWEEP_KIND, sweep_tags.SWEEP: sweep.name, sweep_tags.STUDY: study,
            tags.TIER: tier, tags.EXPERIMENT: sweep.experiment, tags.GIT_COMMIT: git_commit(),
        }).info.run_id
        # Params are immutable in MLflow, so only what defines the study goes there.
        defining = {"metric": sweep.metric, "direction": sweep.direction, "seed": str(sweep.seed)}
        defining |= {f"space.{param.key}": _describe(param) for param in sweep.space}
        client.log_batch(run_id, params=[MlflowParam(key, value) for key, value in defining.items()])
    # What may change from one start to the next is a tag, showing the latest.
    settings = {"n_trials": sweep.n_trials, "parallel": sweep.parallel,
                "sampler": json.dumps(asdict(sweep.sampler)), "pruner": json.dumps(asdict(sweep.pruner))}
    client.log_batch(run_id, tags=[RunTag(f"sweep.{key}", str(value)) for key, value in settings.items()])
    return run_id


def trial_tags(sweep: str, study: str, number: int) -> dict[str, str]:
    """What makes a run one of the sweep's trials, for the report and the MLflow UI."""
    return {sweep_tags.SWEEP: sweep, sweep_tags.STUDY: study, sweep_tags.TRIAL: str(number)}


def failed_trial_run(
    client: MlflowClient, ctx: JobContext, sweep: SweepSpec, study: str, number: int, params: dict,
    reason: str, spec: RunSpec | None,
) -> str:
    """The MLflow run of a trial that failed without one: its params were invalid (no spec), or
    its job died before opening its run. Every trial of the study then has a run, FAIL ones
    too, with the trial's params and the reason."""
    if spec is not None:
        run_id = open_run(client, ctx.experiment_id, ctx.parent_run_id, spec, ctx.workdir)
    else:
        run_id = client.create_run(ctx.experiment_id, run_name=f"{sweep.name} #{number}", tags={
            "mlflow.parentRunId": ctx.parent_run_id, tags.KIND: "run", tags.TABLE: f"sweep:{study}",
            tags.EXPERIMENT: sweep.experiment, tags.GIT_COMMIT: git_commit(),
        }).info.run_id
        client.log_batch(
            run_id, params=[MlflowParam(f"sweep.{key}", str(value)) for key, value in params.items()]
        )
    values = {
        **trial_tags(sweep.name, study, number), sweep_tags.STATE: "FAIL", tags.FAILURE_REASON: clip(reason)
    }
    client.log_batch(run_id, tags=[RunTag(key, value) for key, value in values.items()])
    client.set_terminated(run_id, status="FAILED")
    return run_id


def close_sweep_run(client: MlflowClient, run_id: str, study: optuna.Study) -> None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if complete:
        best = study.best_trial
        assert best.value is not None  # the best of complete trials, each with its objective
        client.log_metric(run_id, sweep_tags.METRIC_BEST, best.value, step=len(study.trials))
        client.set_tag(run_id, sweep_tags.BEST_TRIAL, str(best.number))
    client.set_terminated(run_id, status="FINISHED")


def _describe(param: Param) -> str:
    if param.kind == "categorical":
        return f"choices {list(param.choices)}"
    scale = " log" if param.log else f" step {param.step}" if param.step else ""
    return f"{param.kind} [{param.low}, {param.high}]{scale}"
