"""A panel table's figures (Table 1): per metric, the reproduced rows among the cited ones with
the paper's values marked; and the DreamBench sample sheets, one per subject."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from repro.config.schema import PanelTableSpec
from repro.report.panel_table import CITED
from repro.report.plots import save_figure
from repro.report.table import FAILED, MISSING

_SHEETS_PER_LINE = 2
_SHEET_INCHES = 8.0


def plot_panel_metrics(summary: pd.DataFrame, spec: PanelTableSpec, path: Path) -> Path:
    """One axes per metric: reproduced rows as bars (mean, std as error bar) with the paper's
    value as a black marker on each, cited rows as pale bars of the value the paper prints."""
    metrics = [(panel, metric, label) for panel in spec.panels
               for metric, label in zip(panel.metrics, panel.labels)]
    figure = Figure(figsize=(4 * len(metrics), 6), layout="constrained")
    grid = figure.subplots(1, len(metrics), squeeze=False)[0]
    for axes, (panel, metric, label) in zip(grid, metrics):
        _bars(axes, summary[summary["metric"] == metric].reset_index(drop=True))
        arrow = "lower is better" if panel.lower_is_better else "higher is better"
        axes.set_title(f"{panel.name}: {label}\n({arrow})", fontsize="medium")
    # One legend for all axes, below them, where it hides no bar.
    entries = {label: handle for axes in grid for handle, label in
               zip(*axes.get_legend_handles_labels())}
    figure.legend(entries.values(), entries.keys(), loc="outside lower center", ncols=len(entries))
    figure.suptitle(spec.title, fontsize="medium")
    return save_figure(figure, path)


def _bars(axes: Axes, lines: pd.DataFrame) -> None:
    positions = np.arange(len(lines))
    cited = (lines["status"] == CITED).to_numpy()
    ours = lines[~cited]
    axes.bar(positions[~cited], ours["mean"].fillna(0), yerr=ours["std"].fillna(0), capsize=4,
             color="tab:blue", label="reproduced (mean ± std)")
    axes.bar(positions[cited], lines.loc[cited, "paper"], color="lightgrey", label="cited")
    axes.scatter(positions[~cited], ours["paper"], color="black", marker="D", zorder=3,
                 label="paper's value")
    # A row without a result draws no bar; the note keeps it from reading as a zero. Placed in
    # axes units along the bottom, it stays visible whatever the bar heights.
    along_bottom = axes.get_xaxis_transform()
    for position, status in zip(positions, lines["status"]):
        if status in (FAILED, MISSING):
            axes.text(position, 0.02, status, transform=along_bottom, ha="center", va="bottom",
                      rotation=90, fontsize="small")
    axes.set_xticks(positions, lines["row"], rotation=60, ha="right", fontsize="small")


def plot_dreambench_samples(sheets: dict[str, Path], title: str, path: Path) -> Path:
    """The sample sheet of each DreamBench subject, titled with the subject's name."""
    images = {subject: matplotlib.image.imread(sheet) for subject, sheet in sheets.items()}
    columns = min(_SHEETS_PER_LINE, len(images))
    lines = math.ceil(len(images) / columns)
    # Sheets are wide strips (the input photo, then the samples): panels take their shape.
    aspect = max(image.shape[0] / image.shape[1] for image in images.values())
    height = (_SHEET_INCHES * aspect + 0.4) * lines + 0.4
    figure = Figure(figsize=(_SHEET_INCHES * columns, height), layout="constrained")
    grid = figure.subplots(lines, columns, squeeze=False).ravel()
    for axes in grid:
        axes.set_axis_off()
    for axes, (subject, image) in zip(grid, images.items()):
        axes.imshow(image)
        axes.set_title(subject, fontsize="medium")
    figure.suptitle(title, fontsize="medium")
    return save_figure(figure, path)
