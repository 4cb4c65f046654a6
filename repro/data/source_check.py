"""The data a plan trains on, checked before anything is launched: each source exists, opens in
its format, and its first read unit reads and decodes. A run would find the same error only
after its models load, on every retry."""

from __future__ import annotations

from pathlib import Path

from experiments.data.shards import DataError, open_shards
from experiments.recipes.registry import recipe_named
from repro.config.schema import Matrix


def check_data(matrix: Matrix, cache_dir: Path, skip_under: tuple[Path, ...] = ()) -> None:
    """Raises DataError naming the first source that does not read. skip_under: folders whose
    sources are built later (the tiny or mini tier's, before `repro run` makes them)."""
    checked: set[tuple[str, str | None]] = set()
    for run in matrix.runs:
        if not recipe_named(run.config.recipe).trains:
            continue
        data = run.config.data
        for key, spec in (("data.train", data.train), ("data.heldout", data.heldout)):
            if not spec or (spec, data.text_column) in checked:
                continue
            checked.add((spec, data.text_column))
            if any(Path(spec).is_relative_to(root) and not root.exists() for root in skip_under):
                continue
            try:
                shards = open_shards(spec, text_column=data.text_column, cache_dir=cache_dir)
                shards[0].read_group(0)
            except DataError as error:
                raise DataError(f"{key} ({run.experiment}): {error}") from None
            except (ValueError, OSError) as error:  # a reader's own complaint, or the file system's
                raise DataError(f"{key} ({run.experiment}): {spec}: {error}") from None
