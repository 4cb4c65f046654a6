"""The report's figures, drawn on bare matplotlib Figures (Agg canvas; no pyplot state, no
display) so they can be made from a CLI, a test or a headless job alike."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import Colormap
from matplotlib.figure import Figure

from repro.config.schema import TableSpec
from repro.report.table import FAILED, MISSING


def _colour(spec: TableSpec, row: str) -> tuple[float, float, float, float]:
    # One colour per row, the same in every figure.
    palette: Colormap = colormaps["tab10"]
    return palette([r.name for r in spec.rows].index(row) % palette.N)


def save_figure(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    return path


def plot_loss_curves(histories: pd.DataFrame, spec: TableSpec, path: Path) -> Path:
    """train/loss against step: each seed thin, the seeds' mean bold, one colour per row."""
    figure = Figure(figsize=(8, 5))
    axes = figure.add_subplot()
    finite = histories[np.isfinite(histories["loss"])]
    for row in spec.rows:
        curves = finite[finite["row"] == row.name]
        if curves.empty:
            continue
        colour = _colour(spec, row.name)
        for _, seed in curves.groupby("run_id"):
            axes.plot(seed["step"], seed["loss"], color=colour, linewidth=0.6, alpha=0.4)
        mean = curves.groupby("step")["loss"].mean()
        axes.plot(mean.index, mean.to_numpy(), color=colour, linewidth=2, label=row.name)
    # Diverging rows blow up by orders of magnitude; a log axis keeps the others readable.
    if (finite["loss"] > 0).all() and not finite.empty:
        axes.set_yscale("log")
    axes.set(xlabel="step", ylabel="train/loss", title=f"{spec.title}: training loss")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize="small")
    return save_figure(figure, path)


def plot_metric_per_row(summary: pd.DataFrame, spec: TableSpec, path: Path) -> Path:
    """A bar per row (mean, std as error bar), the paper's value as a marker on it."""
    figure = Figure(figsize=(max(6, 1.3 * len(summary)), 5))
    axes = figure.add_subplot()
    positions = np.arange(len(summary))
    bars = axes.bar(
        positions,
        summary["mean"].fillna(0),
        yerr=summary["std"].fillna(0),
        color=[_colour(spec, row) for row in summary["row"]],
        capsize=4,
        label="reproduced (mean ± std)",
    )
    for bar, status in zip(bars, summary["status"]):
        if status == FAILED:
            bar.set_hatch("//")
            bar.set_edgecolor("black")
    axes.scatter(positions, summary["paper"], color="black", marker="D", zorder=3, label="paper")
    _annotate_status(axes, summary)
    axes.set_xticks(positions, summary["row"], rotation=25, ha="right")
    arrow = "lower is better" if spec.lower_is_better else "higher is better"
    axes.set(ylabel=f"{spec.metric} ({arrow})", title=spec.title)
    axes.legend(fontsize="small")
    return save_figure(figure, path)


def _annotate_status(axes: Axes, summary: pd.DataFrame) -> None:
    # Text along the bottom of the axes (x in data, y in axes units) stays visible whatever the
    # bar heights; it is where a missing bar or a "Failed" in the paper would otherwise vanish.
    along_bottom = axes.get_xaxis_transform()
    for position, line in enumerate(summary.itertuples()):
        notes = [line.status] if line.status in (FAILED, MISSING) else []
        if math.isnan(line.paper):
            notes.append("paper: Failed")
        if notes:
            axes.text(position, 0.02, "\n".join(notes), transform=along_bottom, ha="center",
                      va="bottom", fontsize="small", bbox={"facecolor": "white", "alpha": 0.8})


def plot_metric_vs_compute(runs: pd.DataFrame, spec: TableSpec, path: Path) -> Path:
    """One point per run: the table's metric against the device-hours its training used."""
    figure = Figure(figsize=(7, 5))
    axes = figure.add_subplot()
    measured = runs.dropna(subset=["value", "device_hours"])
    for row in spec.rows:
        points = measured[measured["row"] == row.name]
        if not points.empty:
            axes.scatter(points["device_hours"], points["value"], color=_colour(spec, row.name),
                         label=row.name)
    axes.set(xlabel="device-hours (training)", ylabel=spec.metric,
             title=f"{spec.title}: {spec.metric} vs compute")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize="small")
    return save_figure(figure, path)


def plot_samples(grids: dict[str, Path], spec: TableSpec, path: Path) -> Path:
    """One strip per table row: the sample grid its first seed logged, or a note that none did."""
    figure = Figure(figsize=(8, 2.5 * len(spec.rows)))
    for axes, row in zip(figure.subplots(len(spec.rows), 1, squeeze=False)[:, 0], spec.rows):
        axes.set_xticks([])
        axes.set_yticks([])
        axes.set_ylabel(row.name, rotation=0, ha="right", va="center")
        if row.name in grids:
            axes.imshow(matplotlib.image.imread(grids[row.name]))
        else:
            axes.text(0.5, 0.5, "no samples", ha="center", va="center", transform=axes.transAxes)
    figure.suptitle(f"{spec.title}: samples (first seed per row)")
    return save_figure(figure, path)
