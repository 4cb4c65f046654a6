"""`repro report` end to end for one table, whichever it is: MLflow -> summary -> table files and
the figures its runs have something to show for."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from repro.config.schema import TableSpec
from repro.report import plots
from repro.report.collect import (
    collect_runs,
    download_dreambench_sheets,
    download_sample_grids,
    loss_histories,
)
from repro.report.comparable import check_comparable_fids
from repro.report.findings import check_findings, findings_section
from repro.report.gates import check_gates, gates_section
from repro.report.mixed_configs import mixed_configs, mixed_section
from repro.report.summary import beyond_paper_logged, summarise
from repro.report.table import caption_line, write_table


def write_report(
    tracking_uri: str, experiment_name: str, spec: TableSpec, tier: str, out_dir: Path
) -> list[Path]:
    """Writes into out_dir, and returns the paths of: <key>.md/.tex/.csv (the markdown with the
    rows whose seeds ran different configs, where any did, the table's findings, and its gates
    where runs logged a beyond-paper metric); the per-metric bars
    and, per beyond-paper metric some run logged, its values per row (<key>_<name>_per_row.png);
    where some run trained, <key>_loss_curves.png and the metrics against compute; where runs
    logged sample grids, <key>_samples.png; where a reproduced row logged DreamBench sheets,
    <key>_dreambench_samples.png."""
    experiments = {row.experiment for row in spec.reproduced if row.experiment is not None}
    runs = collect_runs(tracking_uri, experiment_name, experiments, tier, spec.collected_metrics)
    check_comparable_fids(runs, spec)
    summary = summarise(runs, spec, tier)
    logged = beyond_paper_logged(runs, spec)
    mixed = mixed_configs(runs)
    sections = [mixed_section(mixed, spec)] if mixed else []
    if spec.findings:
        sections.append(findings_section(check_findings(summary, spec, runs), spec, logged))
    if spec.gates and logged:
        sections.append(gates_section(check_gates(runs, spec)))
    caption = caption_line(runs, spec, tier, datetime.now(UTC))
    written = write_table(summary, spec, out_dir, caption, sections)

    def figure(name: str) -> Path:
        return out_dir / f"{spec.key}_{name}.png"

    bars, vs_compute = _metric_figure_names(spec)
    written.append(plots.plot_metric_bars(summary, spec, figure(bars)))
    for column in spec.beyond_paper:
        if column.metric in logged:
            name = f"{column.metric.rpartition('/')[2]}_per_row"
            written.append(plots.plot_beyond_paper(runs, spec, column, figure(name)))
    histories = loss_histories(tracking_uri, runs)
    if not histories.empty:
        written.append(plots.plot_loss_curves(histories, spec, figure("loss_curves")))
        written.append(plots.plot_metrics_vs_compute(runs, spec, figure(vs_compute)))
    # The grids and sheets are only inputs to their figures; they need not outlive them.
    with tempfile.TemporaryDirectory() as downloads:
        grids = download_sample_grids(tracking_uri, runs, Path(downloads) / "grids")
        if grids:
            written.append(plots.plot_samples(grids, spec, figure("samples")))
        found = _first_dreambench_sheets(tracking_uri, runs, spec, Path(downloads) / "sheets")
        if found is not None:
            row, sheets = found
            title = f"{spec.title}: DreamBench samples of {row} (lowest seed)"
            written.append(plots.plot_dreambench_samples(sheets, title, figure("dreambench_samples")))
    return written


def _metric_figure_names(spec: TableSpec) -> tuple[str, str]:
    """(the bars, the metrics against compute): a table of one metric names them after it, as
    Table 2's always were (table2_fid_per_row.png); a table of several, after them all
    (table1_metrics.png)."""
    if len(spec.metrics) == 1:
        short = spec.metrics[0].rpartition("/")[2]
        return f"{short}_per_row", f"{short}_vs_compute"
    return "metrics", "metrics_vs_compute"


def _first_dreambench_sheets(
    tracking_uri: str, runs: pd.DataFrame, spec: TableSpec, downloads: Path
) -> tuple[str, dict[str, Path]] | None:
    """The row, and its sheets, of the first reproduced row in the spec's order that logged any:
    Kosmos-G in Table 1 (the oracle generates nothing)."""
    for row in spec.reproduced:
        row_runs = runs[runs["experiment"] == row.experiment]
        sheets = download_dreambench_sheets(tracking_uri, row_runs, downloads)
        if sheets:
            return row.name, sheets
    return None
