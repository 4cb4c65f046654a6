"""A panel table (Table 1) from its runs: per panel and metric, each reproduced row's mean ± std
over seeds beside the paper's value, and other methods' values as the paper prints them, marked
cited; written as markdown (one table per panel), LaTeX and a long-format CSV."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from repro.config.schema import Panel, PanelRow, PanelTableSpec
from repro.report.table import FAILED, MISSING, OK, escape_latex_text, markdown_grid

SUMMARY_COLUMNS = [
    "panel", "row", "kind", "source", "status", "metric", "n", "mean", "std", "paper", "delta",
]
CITED = "cited"
CITED_SOURCE = "paper (cited)"
_TEXT_COLUMNS = ["Method", "Kind", "Source"]
_LEGEND = (
    "Reproduced rows: mean ± std over seeds, the paper's value in parentheses."
    " Cited rows: other methods' values as the paper prints them, not rerun here."
)


def summarise_panels(runs: pd.DataFrame, spec: PanelTableSpec, tier: str) -> pd.DataFrame:
    """One line per (panel, row, metric) that the row has, panels and rows in the spec's order.
    `runs` has a column per metric of the spec, as collect_experiment_runs gives it."""
    lines = []
    for panel in spec.panels:
        for row in spec.rows:
            row_runs = runs[runs["experiment"] == row.experiment]
            had = _metrics_had(row, row_runs, spec)
            lines += [_line(panel, row, metric, row_runs, tier) for metric in panel.metrics
                      if metric in had]
    return pd.DataFrame(lines, columns=SUMMARY_COLUMNS)


def _metrics_had(row: PanelRow, row_runs: pd.DataFrame, spec: PanelTableSpec) -> set[str]:
    every = {metric for panel in spec.panels for metric in panel.metrics}
    logged = {metric for metric in every if row_runs[metric].notna().any()}
    had = {metric for metric, _ in row.paper} | logged
    # A reproduced row the paper gives no value and that never ran would otherwise vanish from
    # the table; shown everywhere, it reads "missing".
    return every if not had and row.experiment is not None else had


def _line(
    panel: Panel, row: PanelRow, metric: str, row_runs: pd.DataFrame, tier: str
) -> tuple[object, ...]:
    paper = dict(row.paper).get(metric, math.nan)
    if row.experiment is None:
        return (panel.name, row.name, row.kind, CITED_SOURCE, CITED, metric, 0, math.nan,
                math.nan, paper, math.nan)
    values = row_runs[metric].dropna()
    if len(values):
        status = OK
    elif (row_runs["status"] == "FAILED").any():
        status = FAILED
    else:
        status = MISSING
    finished = int((row_runs["status"] == "FINISHED").sum())
    source = f"reproduced (tier {tier}, n={finished})"
    mean = values.mean()
    return (panel.name, row.name, row.kind, source, status, metric, len(values), mean,
            values.std(), paper, mean - paper)


def write_panel_table(
    summary: pd.DataFrame, spec: PanelTableSpec, out_dir: Path, caption: str
) -> list[Path]:
    """Writes <key>.md, <key>.tex and <key>.csv into out_dir and returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md, tex, csv = (out_dir / f"{spec.key}.{ext}" for ext in ("md", "tex", "csv"))
    digits = _digits(spec)
    md.write_text(_markdown(summary, spec, digits, caption))
    tex.write_text(_latex(summary, spec, digits, caption))
    summary.to_csv(csv, index=False)
    return [md, tex, csv]


def _digits(spec: PanelTableSpec) -> dict[str, int]:
    # Per metric, as many decimals as the paper prints (DINO 0.774, FID 9.34), so values line up.
    decimals: dict[str, int] = {metric: 2 for panel in spec.panels for metric in panel.metrics}
    for row in spec.rows:
        for metric, value in row.paper:
            decimals[metric] = max(decimals[metric], len(repr(value).partition(".")[2]))
    return decimals


def _heading(panel: Panel) -> str:
    return f"{panel.name} ({'lower' if panel.lower_is_better else 'higher'} is better)"


def _panel_display(
    summary: pd.DataFrame, panel: Panel, digits: dict[str, int], plus_minus: str
) -> pd.DataFrame:
    lines = summary[summary["panel"] == panel.name]
    rows = []
    for (name, kind, source), group in lines.groupby(["row", "kind", "source"], sort=False):
        shown = group.apply(_cell, axis=1, digits=digits, plus_minus=plus_minus)
        cells = dict(zip(group["metric"], shown))
        rows.append([name, kind, source, *(cells.get(metric, "-") for metric in panel.metrics)])
    return pd.DataFrame(rows, columns=[*_TEXT_COLUMNS, *panel.labels])


def _cell(line: pd.Series, digits: dict[str, int], plus_minus: str) -> str:
    def number(value: float) -> str:
        return f"{value:.{digits[line['metric']]}f}"

    if line["status"] == CITED:
        return f"{number(line['paper'])} (cited)"
    if line["status"] != OK:
        shown = str(line["status"])
    elif line["n"] < 2:
        shown = number(line["mean"])
    else:
        shown = f"{number(line['mean'])}{plus_minus}{number(line['std'])}"
    return shown if math.isnan(line["paper"]) else f"{shown} (paper {number(line['paper'])})"


def _markdown(
    summary: pd.DataFrame, spec: PanelTableSpec, digits: dict[str, int], caption: str
) -> str:
    sections = [
        f"### {_heading(panel)}\n\n{markdown_grid(_panel_display(summary, panel, digits, ' ± '))}"
        for panel in spec.panels
    ]
    return "\n\n".join([*sections, _LEGEND, f"_{caption}_"]) + "\n"


def _latex(
    summary: pd.DataFrame, spec: PanelTableSpec, digits: dict[str, int], caption: str
) -> str:
    blocks = []
    for panel in spec.panels:
        display = _panel_display(summary, panel, digits, r" $\pm$ ")
        # Only the free text is escaped: the metric cells hold our own $\pm$ on purpose.
        display[_TEXT_COLUMNS] = display[_TEXT_COLUMNS].map(escape_latex_text)
        display.columns = [escape_latex_text(column) for column in display.columns]
        heading = escape_latex_text(_heading(panel))
        blocks.append(f"\\textbf{{{heading}}}\\par\n{display.to_latex(index=False)}")
    return "\n".join([
        r"\begin{table}",
        r"\centering",
        f"\\caption{{{escape_latex_text(caption)}}}",
        f"\\label{{tab:{spec.key}}}",
        "\\par\\bigskip\n".join(blocks),
        r"\end{table}",
        "",
    ])
