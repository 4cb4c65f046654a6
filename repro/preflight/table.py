"""The preflight's one table: a row per run, printed plainly and written as Markdown, CSV and JSON."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from repro.preflight.runner import Row

COLUMNS = {
    "run": "run", "config_hash": "hash", "params": "params trainable / frozen", "seconds_per_item": "s/item",
    "peak_measured_gib": "peak measured GiB", "peak_predicted_gib": "peak predicted GiB (per rank)",
    "micro_batch": "micro-batch configured -> suggested", "fits": "fits?", "wall_clock_h": "wall-clock h",
    "gpu_hours": "GPU-h", "status": "status",
}


def _millions(count: int | None) -> str:
    return "" if count is None else f"{count / 1e6:,.1f}M"


def frame(rows: list[Row]) -> pd.DataFrame:
    records = []
    for row in rows:
        record = asdict(row)
        record["params"] = (
            "" if row.trainable is None else f"{_millions(row.trainable)} / {_millions(row.frozen)}"
        )
        record["status"] = f"FAILED {row.failed}" if row.failed else (row.note or "ok")
        records.append(record)
    table = pd.DataFrame.from_records(records)
    return table[list(COLUMNS)].rename(columns=COLUMNS)


def markdown(table: pd.DataFrame) -> str:
    cells = table.map(lambda v: "" if pd.isna(v) else f"{v:.3g}" if isinstance(v, float) else str(v))
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(values) + " |" for values in cells.itertuples(index=False)]
    return "\n".join(lines)


def write(rows: list[Row], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    table = frame(rows)
    bases = "\n".join(f"- {row.run}: " + "; ".join(row.basis) for row in rows if row.basis)
    paths = [out / "preflight.md", out / "preflight.csv", out / "preflight.json"]
    paths[0].write_text(markdown(table) + "\n\nBasis of each figure:\n" + bases + "\n")
    table.assign(basis=["; ".join(row.basis) for row in rows]).to_csv(paths[1], index=False)
    paths[2].write_text(json.dumps([asdict(row) for row in rows], indent=1) + "\n")
    return paths
