"""A sweep's figures, drawn by optuna.visualization.matplotlib on an in-memory study rebuilt
from the trials MLflow recorded, so the report needs no access to the sweep's storage."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState, create_trial

from repro.config.sweep import SweepSpec
from repro.sweep.study import distributions


def plot_sweep(
    sweep: SweepSpec, trials: pd.DataFrame, intermediate: dict[int, dict[int, float]], out_dir: Path,
    stem: str,
) -> list[Path]:
    """<stem>_history.png (objective per trial and best so far), _intermediate.png (the metric
    over steps, where pruning shows), _slice.png (objective against each param) and, once two
    trials have completed, _importances.png."""
    study = _rebuild(sweep, trials, intermediate)
    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    vis = optuna.visualization.matplotlib
    figures: dict[str, Callable[[optuna.Study], Any]] = {
        "history": vis.plot_optimization_history, "intermediate": vis.plot_intermediate_values,
        "slice": vis.plot_slice,
    }
    if complete >= 2:
        figures["importances"] = vis.plot_param_importances
    written = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for name, plot in figures.items():
            drawn = plot(study)
            # plot_slice gives one Axes per param, the others a single Axes.
            figure = np.atleast_1d(drawn).flat[0].get_figure()
            path = out_dir / f"{stem}_{name}.png"
            figure.savefig(path, dpi=120, bbox_inches="tight")
            plt.close(figure)
            written.append(path)
    return written


def _rebuild(
    sweep: SweepSpec, trials: pd.DataFrame, intermediate: dict[int, dict[int, float]]
) -> optuna.Study:
    study = optuna.create_study(study_name=sweep.name, direction=sweep.direction)
    space = distributions(sweep)
    ended = {"COMPLETE": TrialState.COMPLETE, "PRUNED": TrialState.PRUNED, "FAIL": TrialState.FAIL}
    for row in trials.to_dict("records"):
        state = ended.get(row["state"])
        if state is None:  # still running: nothing to plot yet
            continue
        study.add_trial(create_trial(
            state=state, value=row["value"] if state == TrialState.COMPLETE else None,
            params={key: row[key] for key in space}, distributions=space,
            intermediate_values=intermediate.get(row["trial"], {}),
        ))
    return study
