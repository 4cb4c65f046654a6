"""A table's summary written as markdown (one grid per panel), LaTeX (one tabular per panel, in
one table) and a long-format CSV (one line per panel, row and metric)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pandas as pd

from repro.config.schema import Panel, TableSpec
from repro.report.summary import CITED, OK, failed_in_paper

_NOTE = "Note"


def caption_line(runs: pd.DataFrame, spec: TableSpec, tier: str, generated: datetime) -> str:
    commits = sorted(runs["git_commit"].dropna().unique())
    # One way at most (repro.report.comparable checked): named, so tables of two ways are told apart.
    fid = runs[["fid_implementation", "fid_preprocessing"]].dropna().drop_duplicates()
    scored = "".join(f" FID: {implementation}, {resize}." for implementation, resize in fid.values)
    return (
        f"{spec.title}. Tier: {tier}. Commit(s): {', '.join(commits) or 'unknown'}.{scored}"
        f" Generated {generated:%Y-%m-%d %H:%M %Z}."
    )


def write_table(
    summary: pd.DataFrame, spec: TableSpec, out_dir: Path, caption: str, sections: Sequence[str] = ()
) -> list[Path]:
    """Writes <key>.md, <key>.tex and <key>.csv into out_dir and returns their paths. `sections`
    (markdown, e.g. the findings) follow the table and its legend in <key>.md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md, tex, csv = (out_dir / f"{spec.key}.{ext}" for ext in ("md", "tex", "csv"))
    md.write_text(_markdown(summary, spec, caption, sections))
    tex.write_text(_latex(summary, spec, caption))
    summary.to_csv(csv, index=False)
    return [md, tex, csv]


def _digits(spec: TableSpec) -> dict[str, int]:
    # Per metric, as many decimals as the paper prints (DINO 0.774, FID 9.34), so values line up.
    decimals = dict.fromkeys([*spec.metrics, *(column.metric for column in spec.beyond_paper)], 2)
    for row in spec.rows:
        for metric, value in row.paper:
            if value is not None:
                decimals[metric] = max(decimals[metric], len(repr(value).partition(".")[2]))
    return decimals


def _heading(panel: Panel) -> str:
    return f"{panel.name} ({'lower' if panel.lower_is_better else 'higher'} is better)"


def _columns(summary: pd.DataFrame, panel: Panel) -> tuple[list[str], list[str]]:
    """The panel's (metrics, labels) shown: the paper's, then the beyond-paper ones the summary has."""
    present = set(summary.loc[summary["panel"] == panel.name, "metric"])
    beyond = [column for column in panel.beyond_paper if column.metric in present]
    return ([*panel.metrics, *(column.metric for column in beyond)],
            [*panel.labels, *(column.label for column in beyond)])


def _text_columns(spec: TableSpec) -> list[str]:
    # A Kind column where no row has a kind would be empty on every line.
    return ["Method", "Kind", "Source"] if any(row.kind for row in spec.rows) else ["Method", "Source"]


def _panel_display(summary: pd.DataFrame, spec: TableSpec, panel: Panel, plus_minus: str) -> pd.DataFrame:
    """The panel's lines, one per row; a Note column (why a row is Failed or missing) only where
    some row of the panel has one."""
    lines = summary[summary["panel"] == panel.name]
    digits = _digits(spec)
    paper_failed = failed_in_paper(spec)
    text = _text_columns(spec)
    metrics, labels = _columns(summary, panel)
    rows = []
    for (name, kind, source), group in lines.groupby(["row", "kind", "source"], sort=False):
        cells = {
            line["metric"]: _cell(line, digits[line["metric"]], (name, line["metric"]) in paper_failed,
                                  plus_minus)
            for _, line in group.iterrows()
        }
        named = {"Method": name, "Kind": kind, "Source": source}
        note = "; ".join(dict.fromkeys(reason for reason in group["reason"] if reason))
        rows.append([*(named[column] for column in text), *(cells.get(m, "-") for m in metrics), note])
    display = pd.DataFrame(rows, columns=[*text, *labels, _NOTE])
    return display if display[_NOTE].astype(bool).any() else display.drop(columns=_NOTE)


def _cell(line: pd.Series, digits: int, failed_in_paper: bool, plus_minus: str) -> str:
    def number(value: float) -> str:
        return f"{value:.{digits}f}"

    if line["status"] == CITED:
        return f"{number(line['paper'])} (cited)"
    if line["status"] != OK:
        shown = str(line["status"])
    elif line["n"] < 2:
        shown = number(line["mean"])
    else:
        shown = f"{number(line['mean'])}{plus_minus}{number(line['std'])}"
    if failed_in_paper:
        return f"{shown} (paper Failed)"
    if math.isnan(line["paper"]):
        return shown
    delta = "" if math.isnan(line["delta"]) else f", {line['delta']:+.{digits}f}"
    return f"{shown} (paper {number(line['paper'])}{delta})"


def _legend(summary: pd.DataFrame, spec: TableSpec) -> str:
    parts = ["Reproduced rows: mean ± std over seeds; in parentheses the paper's value and"
             " reproduced - paper."]
    shown = set(summary["metric"])
    parts += [f"{column.label}: {column.metric}, measured here only (the paper has none;"
              f" {'lower' if column.lower_is_better else 'higher'} is better)."
              for column in spec.beyond_paper if column.metric in shown]
    if spec.cited:
        parts.append("Cited rows: other methods' values as the paper prints them, not rerun here.")
    if spec.failure_rule is not None:
        rule = spec.failure_rule
        parts.append(f"Failed: the row's runs diverged, or its mean exceeds"
                     f" {rule.failed_above_baseline_ratio:g} x {rule.baseline_row}'s.")
    return " ".join(parts)


def _markdown(summary: pd.DataFrame, spec: TableSpec, caption: str, extra: Sequence[str]) -> str:
    sections = [
        f"### {_heading(panel)}\n\n{_markdown_grid(_panel_display(summary, spec, panel, ' ± '))}"
        for panel in spec.panels
    ]
    return "\n\n".join([*sections, _legend(summary, spec), *extra, f"_{caption}_"]) + "\n"


def _markdown_grid(table: pd.DataFrame) -> str:
    """`table` as a GitHub pipe table (no tabulate, hence not DataFrame.to_markdown)."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", r"\|") for cell in cells) + " |"

    body = [line(list(table.columns)), line(["---"] * len(table.columns))]
    body += [line([str(cell) for cell in cells]) for cells in table.itertuples(index=False)]
    return "\n".join(body)


def _latex(summary: pd.DataFrame, spec: TableSpec, caption: str) -> str:
    blocks = []
    for panel in spec.panels:
        display = _panel_display(summary, spec, panel, r" $\pm$ ")
        # Only the free text is escaped: the metric cells hold our own $\pm$ on purpose.
        free_text = [column for column in display.columns if column not in _columns(summary, panel)[1]]
        display[free_text] = display[free_text].map(_escape_latex)
        display.columns = [_escape_latex(column) for column in display.columns]
        heading = _escape_latex(_heading(panel))
        blocks.append(f"\\textbf{{{heading}}}\\par\n{display.to_latex(index=False)}")
    return "\n".join([
        r"\begin{table}",
        r"\centering",
        f"\\caption{{{_escape_latex(caption)}}}",
        f"\\label{{tab:{spec.key}}}",
        "\\par\\bigskip\n".join(blocks),
        r"\end{table}",
        "",
    ])


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    # Outside math mode the default font encoding prints these as inverted ! and ?.
    ">": r"\textgreater{}",
    "<": r"\textless{}",
}


def _escape_latex(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(char, char) for char in text)
