"""`repro report` end to end for a panel table (Table 1): MLflow -> summary -> table files and
figures."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

from repro.config.schema import PanelTableSpec
from repro.report.collect import collect_experiment_runs, download_dreambench_sheets
from repro.report.panel_plots import plot_dreambench_samples, plot_panel_metrics
from repro.report.panel_table import summarise_panels, write_panel_table
from repro.report.table import caption_line


def write_panel_report(
    tracking_uri: str, experiment_name: str, spec: PanelTableSpec, tier: str, out_dir: Path
) -> list[Path]:
    """Writes <key>.md/.tex/.csv, <key>_metrics.png and, when a reproduced row logged DreamBench
    sample sheets, <key>_dreambench_samples.png into out_dir; returns their paths."""
    metrics = [metric for panel in spec.panels for metric in panel.metrics]
    experiments = {row.experiment for row in spec.reproduced if row.experiment is not None}
    runs = collect_experiment_runs(tracking_uri, experiment_name, experiments, tier, metrics)
    summary = summarise_panels(runs, spec, tier)
    caption = caption_line(runs, spec, tier, datetime.now(UTC))
    written = write_panel_table(summary, spec, out_dir, caption)
    written.append(plot_panel_metrics(summary, spec, out_dir / f"{spec.key}_metrics.png"))
    # The sheets are only inputs to the figure; they need not outlive it. They come from the
    # first row, in the spec's order, that logged any: Kosmos-G (the oracle generates nothing).
    with tempfile.TemporaryDirectory() as downloads:
        for row in spec.reproduced:
            row_runs = runs[runs["experiment"] == row.experiment]
            sheets = download_dreambench_sheets(tracking_uri, row_runs, Path(downloads))
            if sheets:
                title = f"{spec.title}: DreamBench samples of {row.name} (lowest seed)"
                path = out_dir / f"{spec.key}_dreambench_samples.png"
                written.append(plot_dreambench_samples(sheets, title, path))
                break
    return written
