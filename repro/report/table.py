"""One table from its runs: seeds aggregated per row, the paper's value beside each, the
failure rule applied, written as markdown, LaTeX and CSV."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import pandas as pd

from repro import tags
from repro.config.schema import AnyTable, TableSpec

SUMMARY_COLUMNS = ["row", "n", "mean", "std", "paper", "delta", "status", "reason"]
OK, FAILED, MISSING = "ok", "Failed", "missing"


def summarise(runs: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """One line per spec row, in the spec's order. `paper` is NaN where the paper says Failed;
    `delta` (reproduced - paper) only where both are numbers."""
    scored = runs[runs["value"].notna()]
    values = {row.name: scored.loc[scored["row"] == row.name, "value"] for row in spec.rows}
    diverged = set(
        runs.loc[runs["failure_reason"].fillna("").str.startswith(tags.STATUS_DIVERGED), "row"]
    )
    baseline = values.get(spec.baseline_row, pd.Series(dtype=float))
    # A baseline that diverged or never ran gives the ratio rule nothing to compare against.
    usable_baseline = len(baseline) > 0 and spec.baseline_row not in diverged
    limit = spec.failed_above_baseline_ratio * baseline.mean() if usable_baseline else math.inf

    lines = []
    for row in spec.rows:
        row_values = values[row.name]
        mean = row_values.mean() if len(row_values) else math.nan
        paper = math.nan if row.paper_value is None else row.paper_value
        if row.name in diverged:
            status, reason = FAILED, "diverged"
        elif len(row_values) == 0:
            status, reason = MISSING, "no finished run"
        elif mean > limit:
            status = FAILED
            reason = f"mean > {spec.failed_above_baseline_ratio:g} x {spec.baseline_row}"
        else:
            status, reason = OK, ""
        delta = mean - paper if status == OK else math.nan
        std = row_values.std()
        lines.append((row.name, len(row_values), mean, std, paper, delta, status, reason))
    return pd.DataFrame(lines, columns=SUMMARY_COLUMNS)


def caption_line(runs: pd.DataFrame, spec: AnyTable, tier: str, generated: datetime) -> str:
    commits = sorted(runs["git_commit"].dropna().unique())
    return (
        f"{spec.title}. Tier: {tier}. Commit(s): {', '.join(commits) or 'unknown'}."
        f" Generated {generated:%Y-%m-%d %H:%M %Z}."
    )


def write_table(summary: pd.DataFrame, spec: TableSpec, out_dir: Path, caption: str) -> list[Path]:
    """Writes <key>.md, <key>.tex and <key>.csv into out_dir and returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md, tex, csv = (out_dir / f"{spec.key}.{ext}" for ext in ("md", "tex", "csv"))
    digits = _digits(spec)
    md.write_text(_markdown(_display(summary, digits, " ± "), caption))
    tex.write_text(_latex(_display(summary, digits, r" $\pm$ "), caption, spec.key))
    summary.to_csv(csv, index=False)
    return [md, tex, csv]


def _digits(spec: TableSpec) -> int:
    # Print as many decimals as the paper does (FID 9.89, DINO 0.774), so deltas line up.
    printed = [repr(row.paper_value) for row in spec.rows if row.paper_value is not None]
    return max((len(text.partition(".")[2]) for text in printed), default=2)


def _display(summary: pd.DataFrame, digits: int, plus_minus: str) -> pd.DataFrame:
    def reproduced(line: pd.Series) -> str:
        if line["status"] != OK:
            return str(line["status"])
        if line["n"] < 2:
            return f"{line['mean']:.{digits}f} (n={line['n']})"
        return f"{line['mean']:.{digits}f}{plus_minus}{line['std']:.{digits}f} (n={line['n']})"

    return pd.DataFrame(
        {
            "Row": summary["row"],
            "Reproduced": summary.apply(reproduced, axis=1),
            "Paper": summary["paper"].map(lambda v: FAILED if math.isnan(v) else f"{v:.{digits}f}"),
            "Delta": summary["delta"].map(lambda v: "" if math.isnan(v) else f"{v:+.{digits}f}"),
            "Note": summary["reason"],
        }
    )


def _markdown(table: pd.DataFrame, caption: str) -> str:
    return "\n".join([markdown_grid(table), "", f"_{caption}_", ""])


def markdown_grid(table: pd.DataFrame) -> str:
    """`table` as a GitHub pipe table (no tabulate, hence not DataFrame.to_markdown)."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", r"\|") for cell in cells) + " |"

    body = [line(list(table.columns)), line(["---"] * len(table.columns))]
    body += [line([str(cell) for cell in cells]) for cells in table.itertuples(index=False)]
    return "\n".join(body)


def _latex(table: pd.DataFrame, caption: str, key: str) -> str:
    # Only the free-text columns are escaped: the others hold our own $\pm$ on purpose.
    escaped = table.assign(
        Row=table["Row"].map(escape_latex_text), Note=table["Note"].map(escape_latex_text)
    )
    return escaped.to_latex(index=False, caption=escape_latex_text(caption), label=f"tab:{key}")


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


def escape_latex_text(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(char, char) for char in text)
