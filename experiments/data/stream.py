"""Which rows each step trains on, streamed from shards in DataLoader workers.

The order is a pure function of (seed, epoch) over the shards' metadata: each epoch permutes
the shards, each shard its groups (a parquet row group, a block of a tar or line file), each
group its rows. Row `p` of the endless stream is located by arithmetic on group counts, so a step
k of batch B reads rows [k*B, (k+1)*B) and nothing before them: a resumed run reads exactly what
an uninterrupted one would have read from that step on, and the ranks' `Part`s of a step tile
the global batch whatever the world size. Per-row work (decoding, tokenizing, the filters) runs
in the workers; a row that fails is replaced by the next usable row of its group (in file order,
so the batch keeps its size) and counted by reason.

Chosen over webdataset's, Hugging Face datasets' and MosaicML streaming's iterators and
torchdata's StatefulDataLoader: those stream shards sequentially and resume by replaying or by
restoring saved loader state, while this order needs no state, lets every rank read only its
part of each step, and keeps two ranks' steps equal to one process's.
"""

from __future__ import annotations

import bisect
import itertools
import os
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from experiments.config import DataConfig
from experiments.data.batches import Part
from experiments.data.shards import DataError, Record, Shard

# A row's conversion to a training item: the item, or the reason it is skipped.
Convert = Callable[[Record], Any]


class Skip(NamedTuple):
    reason: str
    # False for a row a filter turns away (a caption over the CLIP limit) rather than a broken
    # one: only broken rows count towards data.max_bad_fraction.
    broken: bool = True


class StepItems(NamedTuple):
    items: list[Any]
    skipped: dict[str, int]
    # Per file, the rows looked at and how many of them were skipped: {(path, "read" | "bad"): n}.
    sources: dict[tuple[str, str], int] = {}


class StreamOrder:
    """Row `p` of the endless shuffled stream over shards of known group sizes."""

    def __init__(self, sizes: Sequence[Sequence[int]], seed: int) -> None:
        self.sizes = [list(s) for s in sizes]
        self.total = sum(sum(s) for s in self.sizes)
        if self.total == 0:
            raise DataError("the training data has no rows")
        self.seed = seed
        self._layouts: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def locate(self, position: int) -> tuple[int, int, int]:
        """(shard, group, row in group) of the stream's `position`-th row."""
        epoch, offset = divmod(position, self.total)
        # Keys lead with a tag (0: shards, 1: groups, 2: rows) so that no two orders share a seed.
        shard, offset = self._pick((0, epoch), [sum(s) for s in self.sizes], offset)
        group, offset = self._pick((1, epoch, shard), self.sizes[shard], offset)
        rows = self._permutation((2, epoch, shard, group), self.sizes[shard][group])
        return shard, group, int(rows[offset])

    def _pick(self, key: tuple, counts: list[int], offset: int) -> tuple[int, int]:
        if key not in self._layouts:
            order = self._permutation(key, len(counts))
            self._layouts[key] = (order, np.cumsum(np.asarray(counts, dtype=np.int64)[order]))
            if len(self._layouts) > 64:  # a few epochs and shards in flight at most
                self._layouts.popitem(last=False)
        order, ends = self._layouts[key]
        k = bisect.bisect_right(ends, offset)
        return int(order[k]), offset - (int(ends[k - 1]) if k else 0)

    def _permutation(self, key: tuple[int, ...], n: int) -> np.ndarray:
        # Seeded by the key itself: the same (seed, epoch, shard, group) gives the same order anywhere.
        return np.random.default_rng([self.seed, *key]).permutation(n)


class ShardRows:
    """The rows of a list of shards, a group at a time, keeping the last few groups read."""

    def __init__(self, shards: Sequence[Shard], cached_groups: int = 8) -> None:
        self.shards = list(shards)
        self.cached_groups = cached_groups
        self._groups: OrderedDict[tuple[int, int], list[Record]] = OrderedDict()

    def group(self, shard: int, group: int) -> list[Record]:
        key = (shard, group)
        if key not in self._groups:
            self._groups[key] = self.shards[shard].read_group(group)
            if len(self._groups) > self.cached_groups:
                self._groups.popitem(last=False)
        return self._groups[key]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_groups": OrderedDict()}  # each worker reads its own


class RowStream:
    """The rows of some shards in their seeded order, position by position, each converted; a
    row that fails is replaced by the next usable row of its group, in file order."""

    def __init__(self, shards: Sequence[Shard], seed: int) -> None:
        self.rows = ShardRows(shards)
        self.order = StreamOrder([shard.group_sizes() for shard in shards], seed)

    def usable(
        self, position: int, convert: Convert, skipped: Counter, sources: Counter | None = None
    ) -> Any:
        """sources, where given, counts per file the rows read and those skipped (StepItems.sources)."""
        shard, group, row = self.order.locate(position)
        records = self.rows.group(shard, group)
        path = str(self.rows.shards[shard].path)
        for k in range(len(records)):
            item = convert(records[(row + k) % len(records)])
            if sources is not None:
                sources[(path, "read")] += 1
            if not isinstance(item, Skip):
                return item
            skipped[item.reason] += 1
            if sources is not None and item.broken:
                sources[(path, "bad")] += 1
        raise DataError(f"{self.rows.shards[shard].path}: no usable row in group {group} "
                        f"({', '.join(f'{r}={n}' for r, n in skipped.items())})")


class StepRows:
    """Step `step`'s part `part` of a global batch of `batch_size` converted rows. Picklable, so
    DataLoader workers run it; `convert` must be too (tokenizers are, models need not be)."""

    def __init__(self, shards: Sequence[Shard], convert: Convert, batch_size: int, seed: int) -> None:
        self.stream = RowStream(shards, seed)
        self.convert = convert
        self.batch_size = batch_size

    def __call__(self, step: int, part: Part) -> StepItems:
        first, last = part.bounds(self.batch_size)
        skipped: Counter[str] = Counter()
        sources: Counter[tuple[str, str]] = Counter()
        start = step * self.batch_size
        items = [self.stream.usable(start + p, self.convert, skipped, sources) for p in range(first, last)]
        return StepItems(items, dict(skipped), dict(sources))


def first_rows(shards: Sequence[Shard], convert: Convert, count: int) -> tuple[list[Any], dict[str, int]]:
    """The first `count` usable rows in file order (held-out sets: the same for every run), and
    how many were skipped on the way, by reason."""
    items, skipped = [], Counter()
    for shard in shards:
        for group in range(len(shard.group_sizes())):
            for record in shard.read_group(group):
                item = convert(record)
                if isinstance(item, Skip):
                    skipped[item.reason] += 1
                    continue
                items.append(item)
                if len(items) == count:
                    return items, dict(skipped)
    return items, dict(skipped)


class _Steps(IterableDataset):
    """Whole steps: worker w of n makes steps start + w, start + w + n, ...;
    the DataLoader takes one from each worker in turn, so steps arrive in order."""

    def __init__(
        self, step_rows: Callable[[int, Part], StepItems], start: int, parts: Sequence[Part]
    ) -> None:
        self.step_rows, self.start, self.parts = step_rows, start, list(parts)

    def __iter__(self) -> Iterator[tuple[int, list[StepItems]]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for step in itertools.count(self.start + worker, workers):
            yield step, [self.step_rows(step, part) for part in self.parts]


class StepStream:
    """The items of every part of every step from `start` on, made ahead in DataLoader workers.
    `take` hands them out in the loop's order; anything else is made here and then."""

    def __init__(
        self, step_rows: Callable[[int, Part], StepItems], start: int, parts: Sequence[Part],
        workers: int, pin_memory: bool,
    ) -> None:
        # Tokenizers forked into workers would each warn that their thread pool was forked.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        loader = DataLoader(_Steps(step_rows, start, parts), batch_size=None, num_workers=workers,
                            pin_memory=pin_memory, prefetch_factor=2 if workers else None)
        self.step_rows = step_rows
        self.parts = list(parts)
        self._steps = iter(loader)
        self._current: tuple[int, list[StepItems]] | None = None

    def take(self, step: int, part: Part) -> StepItems:
        while self._current is None or self._current[0] < step:
            self._current = next(self._steps)
        made_step, made = self._current
        if made_step == step and part in self.parts:
            return made[self.parts.index(part)]
        return self.step_rows(step, part)


def data_workers(data: DataConfig) -> int:
    """`data.num_workers`, or by default one per CPU the task has beyond the training process's
    own (SLURM's cpus_per_task where set), at most 8."""
    if data.num_workers is not None:
        return data.num_workers
    cpus = int(os.environ.get("SLURM_CPUS_PER_TASK", "0")) or len(os.sched_getaffinity(0))
    return max(0, min(8, cpus - 1))


# Rows read from a file before its share of bad ones is judged: a fraction of a handful of rows
# says nothing about the file.
BAD_FRACTION_MIN_ROWS = 100


class StreamedSteps:
    """A streaming objective's data: its rows, their worker stream once the loop starts it, and
    what was skipped so far, by reason and by file (over this job: a resumed run counts again).
    A file whose skipped share of the rows read from it passes data.max_bad_fraction stops the
    run with a DataError naming it."""

    def __init__(self, rows: Callable[[int, Part], StepItems], data: DataConfig, pin_memory: bool) -> None:
        self.rows = rows
        self.workers = data_workers(data)
        self.pin_memory = pin_memory
        self.max_bad_fraction = data.max_bad_fraction
        self.stream: StepStream | None = None
        self.skipped: Counter[str] = Counter()
        self.sources: Counter[tuple[str, str]] = Counter()

    @contextmanager
    def streaming(self, start: int, parts: list[Part]) -> Iterator[None]:
        self.stream = StepStream(self.rows, start, parts, self.workers, self.pin_memory)
        try:
            yield
        finally:
            self.stream = None  # the last reference to the DataLoader's iterator: its workers exit

    def take(self, step: int, part: Part) -> list[Any]:
        made = self.stream.take(step, part) if self.stream is not None else self.rows(step, part)
        self.skipped.update(made.skipped)
        self.sources.update(made.sources)
        self._check_sources(made.sources)
        return made.items

    def _check_sources(self, touched: dict[tuple[str, str], int]) -> None:
        for path in sorted({path for path, _ in touched}):
            read, bad = self.sources[(path, "read")], self.sources[(path, "bad")]
            if read >= BAD_FRACTION_MIN_ROWS and bad > self.max_bad_fraction * read:
                reasons = ", ".join(f"{reason}={n}" for reason, n in sorted(self.skipped.items()))
                raise DataError(f"{path}: {bad} of the {read} rows read from it were unusable ({reasons}), "
                                f"more than data.max_bad_fraction = {self.max_bad_fraction:g}")

    def counts(self) -> dict[str, int]:
        return {f"skipped_{reason}": n for reason, n in sorted(self.skipped.items())}
