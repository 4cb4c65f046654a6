"""A table's figures, drawn on bare matplotlib Figures (Agg canvas; no pyplot state, no display)
so they can be made from a CLI, a test or a headless job alike: per metric, the rows' bars with
the paper's values marked; for rows that train, loss curves and each metric against compute;
the runs' sample grids and DreamBench sheets."""

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

from repro.config.schema import BeyondPaperColumn, Panel, TableSpec
from repro.report.summary import CITED, FAILED, MISSING, failed_in_paper

_CITED_COLOUR = "lightgrey"
_SHEETS_PER_LINE = 2
_SHEET_INCHES = 8.0
_GRIDS_PER_LINE = 4  # Table 2's seven rows in two lines
_GRID_INCHES = 3.0


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    return path


def _colour(spec: TableSpec, row: str) -> tuple[float, float, float, float]:
    # One colour per reproduced row, the same in every figure.
    palette: Colormap = colormaps["tab10"]
    return palette([r.name for r in spec.reproduced].index(row) % palette.N)


def _metric_axes(spec: TableSpec, figure: Figure) -> list[tuple[Axes, Panel, str, str]]:
    """An axes per metric of the spec, side by side, with the metric's panel and label."""
    metrics = [(panel, metric, label) for panel in spec.panels
               for metric, label in zip(panel.metrics, panel.labels)]
    grid = figure.subplots(1, len(metrics), squeeze=False)[0]
    return [(axes, *metric) for axes, metric in zip(grid, metrics)]


def _one_legend(figure: Figure, axes: list[Axes]) -> None:
    # One legend for all axes, below them, where it hides nothing.
    entries = {label: handle for each in axes for handle, label in zip(*each.get_legend_handles_labels())}
    if entries:
        figure.legend(entries.values(), entries.keys(), loc="outside lower center", ncols=len(entries))


def plot_metric_bars(summary: pd.DataFrame, spec: TableSpec, path: Path) -> Path:
    """One axes per metric: reproduced rows as bars (mean, std as error bar; hatched when Failed)
    with the paper's value as a black marker, cited rows as pale bars of the value the paper
    prints."""
    most_rows = summary.groupby("metric").size().max() if len(summary) else 1
    figure = Figure(figsize=(max(4.0, 0.7 * most_rows) * len(spec.metrics), 6), layout="constrained")
    drawn = _metric_axes(spec, figure)
    for axes, panel, metric, label in drawn:
        _bars(axes, summary[summary["metric"] == metric].reset_index(drop=True), spec)
        arrow = "lower is better" if panel.lower_is_better else "higher is better"
        axes.set_title(f"{panel.name}: {label}\n({arrow})", fontsize="medium")
    _one_legend(figure, [axes for axes, *_ in drawn])
    figure.suptitle(spec.title, fontsize="medium")
    return _save(figure, path)


def _bars(axes: Axes, lines: pd.DataFrame, spec: TableSpec) -> None:
    positions = np.arange(len(lines))
    cited = (lines["status"] == CITED).to_numpy()
    ours = lines[~cited]
    bars = axes.bar(positions[~cited], ours["mean"].fillna(0), yerr=ours["std"].fillna(0), capsize=4,
                    color=[_colour(spec, row) for row in ours["row"]], label="reproduced (mean ± std)")
    for bar, status in zip(bars, ours["status"]):
        if status == FAILED:
            bar.set_hatch("//")
            bar.set_edgecolor("black")
    if cited.any():  # an empty bar would still put "cited" in the legend
        axes.bar(positions[cited], lines.loc[cited, "paper"], color=_CITED_COLOUR, label="cited")
    axes.scatter(positions[~cited], ours["paper"], color="black", marker="D", zorder=3,
                 label="paper's value")
    # A row without a result draws no bar, and a "Failed" in the paper no marker; the note keeps
    # either from reading as a zero. Placed in axes units along the bottom, it stays visible
    # whatever the bar heights.
    paper_failed = failed_in_paper(spec)
    along_bottom = axes.get_xaxis_transform()
    for position, line in zip(positions, lines.itertuples()):
        notes = [line.status] if line.status in (FAILED, MISSING) else []
        if (line.row, line.metric) in paper_failed:
            notes.append("paper: Failed")
        if notes:
            axes.text(float(position), 0.02, "\n".join(notes), transform=along_bottom, ha="center",
                      va="bottom", rotation=90, fontsize="small",
                      bbox={"facecolor": "white", "alpha": 0.8})
    axes.set_xticks(positions, lines["row"], rotation=60, ha="right", fontsize="small")


def plot_beyond_paper(runs: pd.DataFrame, spec: TableSpec, column: BeyondPaperColumn, path: Path) -> Path:
    """A metric the paper has none of, per reproduced row: a bar at the mean over the row's runs
    and one point per seed, so the seeds' spread is seen, not summarised."""
    rows = [row for row in spec.reproduced if runs.loc[runs["experiment"] == row.experiment, column.metric]
            .notna().any()]
    figure = Figure(figsize=(max(4.0, 0.9 * len(rows)), 5), layout="constrained")
    axes = figure.add_subplot()
    for position, row in enumerate(rows):
        values = runs.loc[runs["experiment"] == row.experiment, column.metric].dropna().to_numpy()
        colour = _colour(spec, row.name)
        axes.bar(position, values.mean(), color=colour, alpha=0.5)
        axes.scatter(np.full(len(values), position, dtype=float), values, color=colour, edgecolor="black",
                     zorder=3)
    axes.set_xticks(range(len(rows)), [row.name for row in rows], rotation=60, ha="right", fontsize="small")
    direction = "lower" if column.lower_is_better else "higher"
    axes.set(ylabel=column.label, title=f"{spec.title}\n{column.label} per row: mean (bar), seeds (points);"
             f" {direction} is better; the paper has none")
    axes.title.set_fontsize("medium")
    return _save(figure, path)


def plot_loss_curves(histories: pd.DataFrame, spec: TableSpec, path: Path) -> Path:
    """train/loss against step: each seed thin, the seeds' mean bold, one colour per row."""
    figure = Figure(figsize=(8, 5))
    axes = figure.add_subplot()
    finite = histories[np.isfinite(histories["loss"])]
    for row in spec.reproduced:
        curves = finite[finite["experiment"] == row.experiment]
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
    return _save(figure, path)


def plot_metrics_vs_compute(runs: pd.DataFrame, spec: TableSpec, path: Path) -> Path:
    """One axes per metric, one point per run: the metric against the compute its training
    used, one colour per row. Compute is the counted training FLOPs where every run logged them,
    so rows trained at equal compute (Table 2's E2E rows and the 12-layer AlignerNet) line up,
    whatever the hardware's speed; else the device-hours (stage 3 counts no FLOPs)."""
    figure = Figure(figsize=(5 * len(spec.metrics), 5), layout="constrained")
    drawn = _metric_axes(spec, figure)
    compute, xlabel = compute_axis(runs)
    for axes, _, metric, label in drawn:
        measured = runs.dropna(subset=[metric, compute])
        for row in spec.reproduced:
            points = measured[measured["experiment"] == row.experiment]
            if not points.empty:
                axes.scatter(points[compute], points[metric], color=_colour(spec, row.name), label=row.name)
        axes.set(xlabel=xlabel, ylabel=label)
    _one_legend(figure, [axes for axes, *_ in drawn])
    labels = ", ".join(label for _, _, _, label in drawn)
    figure.suptitle(f"{spec.title}: {labels} vs compute", fontsize="medium")
    return _save(figure, path)


def compute_axis(runs: pd.DataFrame) -> tuple[str, str]:
    """(column, axis label) of the compute the metrics are plotted against (plot_metrics_vs_compute)."""
    timed = runs.dropna(subset=["device_hours"])
    if not timed.empty and timed["train_flops"].notna().all():
        return "train_flops", "training FLOPs (counted)"
    return "device_hours", "device-hours (training)"


def plot_samples(grids: dict[str, Path], spec: TableSpec, path: Path) -> Path:
    """One panel per reproduced row, side by side so that rows compare at a glance: the sample
    grid its first seed logged, or a note that none did. `grids` is keyed by experiment."""
    rows = spec.reproduced
    figure, panels = _panels(len(rows), _GRIDS_PER_LINE, _GRID_INCHES, _GRID_INCHES)
    for axes, row in zip(panels, rows):
        axes.set_title(row.name, fontsize="medium")
        if row.experiment in grids:
            axes.imshow(matplotlib.image.imread(grids[row.experiment]))
        else:
            axes.text(0.5, 0.5, "no samples", ha="center", va="center", transform=axes.transAxes)
    figure.suptitle(f"{spec.title}: samples (first seed per row)", fontsize="medium")
    return _save(figure, path)


def _panels(count: int, per_line: int, width: float, height: float) -> tuple[Figure, list[Axes]]:
    """A figure of `count` axis-less panels of width x height inches, `per_line` to a line, with
    room for each panel's title and the figure's."""
    columns = min(per_line, count)
    lines = math.ceil(count / columns)
    figure = Figure(figsize=(width * columns, (height + 0.4) * lines + 0.4), layout="constrained")
    panels = list(figure.subplots(lines, columns, squeeze=False).ravel())
    for axes in panels:
        axes.set_axis_off()
    return figure, panels


def plot_dreambench_samples(sheets: dict[str, Path], title: str, path: Path) -> Path:
    """The sample sheet of each DreamBench subject, titled with the subject's name."""
    images = {subject: matplotlib.image.imread(sheet) for subject, sheet in sheets.items()}
    # Sheets are wide strips (the input photo, then the samples): panels take their shape.
    aspect = max(image.shape[0] / image.shape[1] for image in images.values())
    figure, panels = _panels(len(images), _SHEETS_PER_LINE, _SHEET_INCHES, _SHEET_INCHES * aspect)
    for axes, (subject, image) in zip(panels, images.items()):
        axes.imshow(image)
        axes.set_title(subject, fontsize="medium")
    figure.suptitle(title, fontsize="medium")
    return _save(figure, path)
