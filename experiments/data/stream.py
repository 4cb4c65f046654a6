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
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch
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


# Row groups a ShuffledRows keeps read: a step's rows span a few, and the next step's often the same.
_CACHED_GROUPS = 8


class ShuffledRows:
    """The rows of some shards as an endless stream in their seeded order, position by position,
    each converted; a row that fails is replaced by the next usable row of its group, in file
    order. Keeps the last few groups read, and the layouts of the epochs and shards in flight."""

    def __init__(self, shards: Sequence[Shard], seed: int) -> None:
        self.shards = list(shards)
        self.sizes = [shard.group_sizes() for shard in self.shards]
        self.total = sum(sum(s) for s in self.sizes)  # rows in one epoch
        if self.total == 0:
            raise DataError("the training data has no rows")
        self.seed = seed
        self._layouts: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._groups: OrderedDict[tuple[int, int], list[Record]] = OrderedDict()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_groups": OrderedDict()}  # each worker reads its own

    def locate(self, position: int) -> tuple[int, int, int]:
        """(shard, group, row in group) of the stream's `position`-th row."""
        epoch, offset = divmod(position, self.total)
        # Keys lead with a tag (0: shards, 1: groups, 2: rows) so that no two orders share a seed.
        shard, offset = self._pick((0, epoch), [sum(s) for s in self.sizes], offset)
        group, offset = self._pick((1, epoch, shard), self.sizes[shard], offset)
        rows = self._permutation((2, epoch, shard, group), self.sizes[shard][group])
        return shard, group, int(rows[offset])

    def usable(
        self, position: int, convert: Convert, skipped: Counter, sources: Counter | None = None
    ) -> Any:
        """sources, where given, counts per file the rows read and those skipped (StepItems.sources)."""
        shard, group, row = self.locate(position)
        records = self._group(shard, group)
        path = str(self.shards[shard].path)
        for k in range(len(records)):
            item = convert(records[(row + k) % len(records)])
            if sources is not None:
                sources[(path, "read")] += 1
            if not isinstance(item, Skip):
                return item
            skipped[item.reason] += 1
            if sources is not None and item.broken:
                sources[(path, "bad")] += 1
        raise DataError(f"{path}: no usable row in group {group} "
                        f"({', '.join(f'{r}={n}' for r, n in skipped.items())})")

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

    def _group(self, shard: int, group: int) -> list[Record]:
        key = (shard, group)
        if key not in self._groups:
            self._groups[key] = self.shards[shard].read_group(group)
            if len(self._groups) > _CACHED_GROUPS:
                self._groups.popitem(last=False)
        return self._groups[key]


class StepSource(Protocol):
    """What makes part `part` of step `step`'s global batch. Picklable, so DataLoader workers run
    it; `rows_in_data` counts the rows of one epoch of each data set it reads, by its key under
    `data` (its DataConfig field)."""

    rows_in_data: dict[str, int]

    def __call__(self, step: int, part: Part) -> StepItems: ...


class StepRows:
    """A StepSource over `data.train`: a global batch of `batch_size` converted rows per step.
    `convert` must be picklable (tokenizers are, models need not be)."""

    def __init__(self, shards: Sequence[Shard], convert: Convert, batch_size: int, seed: int) -> None:
        self.rows = ShuffledRows(shards, seed)
        self.rows_in_data = {"train": self.rows.total}
        self.convert = convert
        self.batch_size = batch_size

    def __call__(self, step: int, part: Part) -> StepItems:
        first, last = part.bounds(self.batch_size)
        skipped: Counter[str] = Counter()
        sources: Counter[tuple[str, str]] = Counter()
        start = step * self.batch_size
        items = [self.rows.usable(start + p, self.convert, skipped, sources) for p in range(first, last)]
        return StepItems(items, dict(skipped), dict(sources))


def first_rows(shards: Sequence[Shard], convert: Convert, count: int) -> tuple[list[Any], dict[str, int]]:
    """The first `count` usable rows in file order (held-out sets: the same for every run), and
    how many were skipped on the way, by reason."""
    items: list[Any] = []
    skipped: Counter[str] = Counter()
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


class _StepsAhead(IterableDataset):
    """Whole steps: worker w of n makes steps start + w, start + w + n, ...;
    the DataLoader takes one from each worker in turn, so steps arrive in order."""

    def __init__(self, source: StepSource, start: int, parts: Sequence[Part]) -> None:
        self.source, self.start, self.parts = source, start, list(parts)

    def __iter__(self) -> Iterator[tuple[int, list[StepItems]]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for step in itertools.count(self.start + worker, workers):
            yield step, [self.source(step, part) for part in self.parts]


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


class StepStream:
    """A streaming objective's training items: while `streaming`, every part of every step from
    `start` on is made ahead in DataLoader workers and `take` hands them out in the loop's order;
    any other step or part (and every one outside `streaming`) is made here and then. Counts what
    was skipped so far, by reason and by file (over this job: a resumed run counts again); a file
    whose skipped share of the rows read from it passes data.max_bad_fraction stops the run with
    a DataError naming it."""

    def __init__(self, source: StepSource, data: DataConfig, pin_memory: bool) -> None:
        self.source = source
        self.workers = data_workers(data)
        self.pin_memory = pin_memory
        self.max_bad_fraction = data.max_bad_fraction
        self.skipped: Counter[str] = Counter()
        self.sources: Counter[tuple[str, str]] = Counter()
        self._ahead: Iterator[tuple[int, list[StepItems]]] | None = None
        self._parts: list[Part] = []
        self._current: tuple[int, list[StepItems]] | None = None

    @contextmanager
    def streaming(self, start: int, parts: Sequence[Part]) -> Iterator[None]:
        # Tokenizers forked into workers would each warn that their thread pool was forked.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        # The loader's own generator: seeding its workers from torch's global one would take a draw
        # from the training's random numbers at each (re)start, and a resumed run would not draw
        # the noise the uninterrupted one did (items are seeded by step, not by the worker seed).
        loader = DataLoader(_StepsAhead(self.source, start, parts), batch_size=None, num_workers=self.workers,
                            pin_memory=self.pin_memory, prefetch_factor=2 if self.workers else None,
                            generator=torch.Generator())
        self._ahead, self._parts, self._current = iter(loader), list(parts), None
        try:
            yield
        finally:
            # The last references to the DataLoader's iterator: its workers exit.
            self._ahead, self._parts, self._current = None, [], None

    def take(self, step: int, part: Part) -> list[Any]:
        made = self._made(step, part)
        self.skipped.update(made.skipped)
        self.sources.update(made.sources)
        self._check_sources(made.sources)
        return made.items

    def counts(self) -> dict[str, int]:
        return {f"skipped_{reason}": n for reason, n in sorted(self.skipped.items())}

    def _made(self, step: int, part: Part) -> StepItems:
        if self._ahead is None or part not in self._parts:
            return self.source(step, part)
        while self._current is None or self._current[0] < step:
            self._current = next(self._ahead)
        made_step, made = self._current
        return made[self._parts.index(part)] if made_step == step else self.source(step, part)

    def _check_sources(self, touched: dict[tuple[str, str], int]) -> None:
        for path in sorted({path for path, _ in touched}):
            read, bad = self.sources[(path, "read")], self.sources[(path, "bad")]
            if read >= BAD_FRACTION_MIN_ROWS and bad > self.max_bad_fraction * read:
                reasons = ", ".join(f"{reason}={n}" for reason, n in sorted(self.skipped.items()))
                raise DataError(f"{path}: {bad} of the {read} rows read from it were unusable ({reasons}), "
                                f"more than data.max_bad_fraction = {self.max_bad_fraction:g}")
