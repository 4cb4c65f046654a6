"""`repro report` end to end for one table: MLflow -> summary -> table files and figures."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

from repro.config.schema import TableSpec
from repro.report import plots
from repro.report.collect import collect_runs, download_sample_grids, loss_histories
from repro.report.table import caption_line, summarise, write_table


def write_report(
    tracking_uri: str, experiment_name: str, spec: TableSpec, tier: str, out_dir: Path
) -> list[Path]:
    """Writes <key>.md/.tex/.csv and <key>_{loss_curves,fid_per_row,fid_vs_compute,samples}.png
    into out_dir; returns their paths."""
    runs = collect_runs(tracking_uri, experiment_name, spec.key, tier, metric=spec.metric)
    summary = summarise(runs, spec)
    written = write_table(summary, spec, out_dir, caption_line(runs, spec, tier, datetime.now(UTC)))

    def figure(name: str) -> Path:
        return out_dir / f"{spec.key}_{name}.png"

    histories = loss_histories(tracking_uri, runs)
    written.append(plots.plot_loss_curves(histories, spec, figure("loss_curves")))
    written.append(plots.plot_metric_per_row(summary, spec, figure("fid_per_row")))
    written.append(plots.plot_metric_vs_compute(runs, spec, figure("fid_vs_compute")))
    # The grids are only inputs to the samples figure; they need not outlive it.
    with tempfile.TemporaryDirectory() as downloads:
        grids = download_sample_grids(tracking_uri, runs, Path(downloads))
        written.append(plots.plot_samples(grids, spec, figure("samples")))
    return written
