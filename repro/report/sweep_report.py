"""`repro report` for one sweep: its trials as MLflow recorded them -> reports/sweep-NAME.{md,csv}
and figures. Like the tables, it reads MLflow alone, never the Optuna storage."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run

from repro.config.sweep import Param, SweepSpec
from repro.report.sweep_plots import plot_sweep
from repro.sweep import tags as sweep_tags
from repro.tracking import tags

TOP_K = 5
TRIAL_COLUMNS = ["trial", "state", "value", "seconds", "run_id"]


@dataclass(frozen=True)
class SweepTrials:
    study: str
    parent_run_id: str
    trials: pd.DataFrame  # TRIAL_COLUMNS, then one column per search-space key
    intermediate: dict[int, dict[int, float]]  # trial -> step -> the metric as the pruner saw it


def write_sweep_report(
    tracking_uri: str, experiment_name: str, sweep: SweepSpec, tier: str, out_dir: Path
) -> list[Path]:
    """Writes sweep-NAME.md/.csv and sweep-NAME_*.png for the newest study of this sweep and
    tier; returns their paths, none when the sweep never ran."""
    found = collect_trials(tracking_uri, experiment_name, sweep, tier)
    if found is None:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"sweep-{sweep.name}"
    csv = out_dir / f"{stem}.csv"
    found.trials.to_csv(csv, index=False)
    figures = plot_sweep(sweep, found.trials, found.intermediate, out_dir, stem)
    markdown = out_dir / f"{stem}.md"
    markdown.write_text(_markdown(sweep, tier, found, figures))
    return [markdown, csv, *figures]


def collect_trials(
    tracking_uri: str, experiment_name: str, sweep: SweepSpec, tier: str
) -> SweepTrials | None:
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    parents = client.search_runs(
        [experiment.experiment_id],
        filter_string=(f"tags.`{tags.KIND}` = '{sweep_tags.SWEEP_KIND}' and tags.`{sweep_tags.SWEEP}` = "
                       f"'{sweep.name}' and tags.`{tags.TIER}` = '{tier}'"),
        order_by=["attributes.start_time DESC"], max_results=1,
    )
    if not parents:
        return None
    parent = parents[0]
    children = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    rows = [_row(run, sweep) for run in children if sweep_tags.TRIAL in run.data.tags]
    columns = TRIAL_COLUMNS + [param.key for param in sweep.space]
    trials = pd.DataFrame(rows, columns=columns).sort_values("trial", kind="stable").reset_index(drop=True)
    intermediate = {
        row["trial"]: {
            point.step: point.value for point in client.get_metric_history(row["run_id"], sweep.metric)
        }
        for row in rows
    }
    return SweepTrials(parent.data.tags[sweep_tags.STUDY], parent.info.run_id, trials, intermediate)


def _row(run: Run, sweep: SweepSpec) -> dict[str, Any]:
    ended = run.info.end_time is not None and run.info.status != "RUNNING"
    return {
        "trial": int(run.data.tags[sweep_tags.TRIAL]),
        # A trial whose job is still going (or was killed) has not told the study anything yet.
        "state": run.data.tags.get(sweep_tags.STATE, "RUNNING"),
        "value": run.data.metrics.get(sweep_tags.METRIC_OBJECTIVE, math.nan),
        "seconds": (run.info.end_time - run.info.start_time) / 1000 if ended else math.nan,
        "run_id": run.info.run_id,
        **{param.key: _parse(param, run.data.params.get(f"sweep.{param.key}")) for param in sweep.space},
    }


def _parse(param: Param, text: str | None) -> Any:
    """MLflow keeps params as text; give each back the type the search space has for it."""
    if text is None:
        return None
    if param.kind == "categorical":
        return next(choice for choice in param.choices if str(choice) == text)
    return int(text) if param.kind == "int" else float(text)


def _markdown(sweep: SweepSpec, tier: str, found: SweepTrials, figures: list[Path]) -> str:
    trials = found.trials
    complete = trials[trials["state"] == "COMPLETE"]
    minimise = sweep.direction == "minimize"
    ranked = complete.sort_values("value", ascending=minimise, kind="stable")
    counts = ", ".join(f"{(trials['state'] == state).sum()} {state.lower()}"
                       for state in ("COMPLETE", "PRUNED", "FAIL", "RUNNING"))
    keys = [param.key for param in sweep.space]
    lines = [
        f"# Sweep `{sweep.name}`, tier {tier}",
        "",
        f"{'Minimise' if minimise else 'Maximise'} `{sweep.metric}` of experiment `{sweep.experiment}` over "
        f"{', '.join(f'`{key}`' for key in keys)}. Study `{found.study}`, MLflow parent run "
        f"`{found.parent_run_id}`.",
        "",
        f"{len(trials)} of {sweep.n_trials} trials: {counts}.",
        "",
    ]
    if ranked.empty:
        lines += ["No trial has completed yet.", ""]
    else:
        best = ranked.iloc[0]
        lines += [f"**Best: trial {best['trial']}**, `{sweep.metric}` = {_show(best['value'])} "
                  f"(MLflow run `{best['run_id']}`)", ""]
        lines += _table(["param", "value"], [[key, _show(best[key])] for key in keys])
        lines += ["", f"## Top {min(TOP_K, len(ranked))} of {len(ranked)} complete trials", ""]
        lines += _table(
            ["rank", "trial", sweep.metric, *keys, "seconds"],
            [[str(rank), str(row["trial"]), _show(row["value"]), *(_show(row[key]) for key in keys),
              _show(row["seconds"])] for rank, (_, row) in enumerate(ranked.head(TOP_K).iterrows(), start=1)],
        )
    lines += [""] + [f"![{figure.stem}]({figure.name})" for figure in figures]
    return "\n".join(lines) + "\n"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(row) + " |" for row in rows
    ]


def _show(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4g}"
    return str(value)
