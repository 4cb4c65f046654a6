"""Stage 3's training items, streamed: each step's global batch holds the data kinds in fixed
proportions (paper: compositional : edits : captioned = 2 : 2 : 1), each kind its own seeded
row stream over its manifest's shards, the kinds interleaved by a permutation seeded by the step,
so that every part (rank, micro-batch) sees them mixed. Rows are parsed and checked, and
examples built (prompt, segment views, target image), in the DataLoader workers."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from experiments.data.batches import Part, split_counts
from experiments.data.images import image_tensor
from experiments.data.manifest import RowError
from experiments.data.shards import Record, Shard
from experiments.data.stage3_examples import Example
from experiments.data.stream import ShuffledRows, Skip, StepItems
from experiments.data.untrusted_images import UnusableImage

# A kind's row -> its example, given the generator seeded for that place in the batch.
MakeExample = Callable[[Any, random.Random], Example]
ParseRow = Callable[[dict[str, Any], Path], Any]
# A parsed row -> the reason a filter turns it away (counted, not broken), or None to keep it.
RefuseRow = Callable[[Any], str | None]


class Stage3Kind:
    """One data kind: its manifest's shards, how a row is parsed and checked, which valid rows
    a filter refuses (none by default), how a row becomes an example."""

    def __init__(self, name: str, shards: Sequence[Shard], parse: ParseRow, make: MakeExample,
                 refuse: RefuseRow | None = None) -> None:
        self.name = name
        self.shards = list(shards)
        self.parse, self.make, self.refuse = parse, make, refuse


class MixedStepRows:
    """A StepSource (experiments/data/stream.py) of stage-3 items, (target image tensor, prompt,
    prompt images), `batch_size` of them per step, over the kinds that have a share of it."""

    def __init__(self, kinds: Sequence[Stage3Kind | None], weights: Sequence[float], batch_size: int,
                 seed: int, resolution: int, max_pixels: int) -> None:
        self.counts = split_counts(batch_size, weights)
        missing = [k for k, (kind, n) in enumerate(zip(kinds, self.counts)) if n and kind is None]
        if missing:
            raise ValueError(f"data kinds {missing} have a share of the batch but no manifest")
        self.kinds = list(kinds)
        self.rows = [ShuffledRows(kind.shards, seed * 7 + k) if kind is not None and n else None
                     for k, (kind, n) in enumerate(zip(kinds, self.counts))]
        self.rows_in_data = {kind.name: rows.total for kind, rows in zip(self.kinds, self.rows)
                             if kind is not None and rows is not None}
        self.batch_size, self.seed, self.resolution = batch_size, seed, resolution
        self.max_pixels = max_pixels  # data.max_image_pixels (experiments/data/untrusted_images.py)

    def places(self, step: int) -> list[tuple[int, int]]:
        """(kind, j) at each position of step `step`'s global batch: the j-th of that kind's rows."""
        layout = [(kind, j) for kind, n in enumerate(self.counts) for j in range(n)]
        order = np.random.default_rng([self.seed, step]).permutation(self.batch_size)
        return [layout[k] for k in order]

    def __call__(self, step: int, part: Part) -> StepItems:
        places = self.places(step)
        first, last = part.bounds(self.batch_size)
        skipped: Counter[str] = Counter()
        sources: Counter[tuple[str, str]] = Counter()
        items = []
        for position in range(first, last):
            kind, j = places[position]
            # Seeded by (seed, step, position): a resumed run makes the very same prompts.
            rng = random.Random(f"{self.seed}:{step}:{position}")
            convert = self.converter(kind, rng)
            rows = self.rows[kind]
            assert rows is not None  # places() names only kinds with a share, whose rows are open
            items.append(rows.usable(step * self.counts[kind] + j, convert, skipped, sources))
        return StepItems(items, dict(skipped), dict(sources))

    def converter(self, k: int, rng: random.Random) -> Callable[[Record], Any]:
        """Kind k's rows -> items, with `rng` for the example's random choices."""
        kind = self.kinds[k]
        assert kind is not None  # __init__ refused a kind with a share of the batch but no manifest

        def convert(record: Record) -> tuple | Skip:
            if record.fields is None or record.source is None:
                return Skip(f"{kind.name}_bad_json")
            try:
                # Image paths are relative to the folder of the manifest shard the row came from.
                row = kind.parse(record.fields, record.source.parent)
                refused = kind.refuse(row) if kind.refuse is not None else None
                if refused is not None:
                    return Skip(f"{kind.name}_{refused}", broken=False)
                example = kind.make(row, rng)
                target = image_tensor(example.target, self.resolution, self.max_pixels)
            except (RowError, UnusableImage) as error:
                return Skip(f"{kind.name}_{error.reason}")
            return target, example.prompt, example.images

        return convert
