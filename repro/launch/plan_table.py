"""`repro plan`: the runs a matrix expands to, as a fixed-width table (no pandas: plan must be fast)."""

from __future__ import annotations

from experiments.recipes.registry import recipe_named
from repro.config.schema import Matrix, RunSpec

_COLUMNS = ("hash", "experiment", "row", "seed", "sweep", "recipe", "aligner", "steps", "batch")


def format_plan(matrix: Matrix) -> str:
    rows = [_cells(run) for run in matrix.runs]
    widths = [max(len(cell) for cell in column) for column in zip(_COLUMNS, *rows)]
    lines = [_line(_COLUMNS, widths), _line(["-" * width for width in widths], widths)]
    lines += [_line(row, widths) for row in rows]
    experiments = len(matrix.experiments)
    lines.append(f"{len(matrix.runs)} runs from {experiments} experiments, tier {matrix.tier}")
    return "\n".join(lines)


def _cells(run: RunSpec) -> list[str]:
    config = run.config
    # The baseline only samples and the oracle only compares photos: no aligner, no steps.
    trains = recipe_named(config.recipe).trains
    aligner = config.aligner
    if not trains:
        aligner_text = "-"
    elif aligner.kind == "linear":
        aligner_text = "linear"
    else:
        aligner_text = f"{aligner.kind} x{aligner.layers}"
    return [
        run.config_hash,
        run.experiment,
        run.row,
        str(run.seed),
        " ".join(f"{key}={value}" for key, value in run.sweep_point) or "-",
        config.recipe,
        aligner_text,
        str(config.train.steps) if trains else "-",
        str(config.train.batch_size) if trains else "-",
    ]


def _line(cells: list[str] | tuple[str, ...], widths: list[int]) -> str:
    return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()
