"""Caption and image data as its sources publish it, read a group of rows at a time.

A `data.train` / `data.heldout` value names one of:
- parquet: a file, a folder or a glob of them (LAION's `TEXT`, COYO's `text`, or
  `data.text_column`); row groups are the read unit, counts come from the footers;
- webdataset tar shards (img2dataset's `KEY.jpg` + `KEY.txt` + `KEY.json`): a file, a folder or a
  glob; a shard's sample count comes from img2dataset's `NNNNN_stats.json` where present, else
  from its tar headers, and its member offsets are read (headers only) when it is first opened;
- a CC3M (`caption<TAB>url`) or CC12M (`url<TAB>caption`) TSV, a JSONL manifest
  ({"caption", "image"?}) or a COCO captions JSON: line files are indexed once (the byte offset
  of every line, cached under the work dir's .cache), so any group is one seek away.

Nothing here reads a row before it is asked for: opening a source costs its metadata only.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

# Rows per read unit where the format has none of its own (line files, tar shards).
GROUP_ROWS = 1024
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
_TEXT_COLUMNS = ("TEXT", "text", "caption")  # LAION, COYO, ours


class DataError(ValueError):
    """Data that cannot be read as configured; the message names the file."""


@dataclass(frozen=True)
class Record:
    """One row: its caption (None where the row has none) and its image, as encoded bytes or a
    path relative to the configured image root (None for caption-only data)."""

    caption: str | None
    image: bytes | str | None = None
    key: str = ""
    fields: dict | None = None  # the whole row, for manifests read with whole_rows (stage 3)
    source: Path | None = None  # the file it came from: relative image paths start at its folder


class Shard(Protocol):
    path: Path

    def group_sizes(self) -> list[int]: ...

    def read_group(self, group: int) -> list[Record]: ...


def open_shards(
    spec: str, *, text_column: str | None = None, cache_dir: Path | None = None, whole_rows: bool = False
) -> list[Shard]:
    """The shards `spec` names, in sorted path order (the order is part of a run's data).
    whole_rows: every column of a parquet row (or field of a JSONL line) in `Record.fields`."""
    paths = _expand(spec)
    suffixes = {_suffix(p) for p in paths}
    if len(suffixes) > 1:
        raise DataError(f"{spec}: mixes formats ({', '.join(sorted(suffixes))}); name one kind of file")
    (suffix,) = suffixes
    if suffix == ".parquet":
        return [ParquetShard(p, text_column, whole_rows) for p in paths]
    if suffix == ".tar":
        return [TarShard(p) for p in paths]
    if suffix in (".tsv", ".jsonl"):
        return [LineShard(p, cache_dir) for p in paths]
    if suffix == ".json":
        return [CocoShard(p) for p in paths]
    raise DataError(f"{spec}: unknown data format {suffix!r}; expected .parquet, .tar shards, .tsv, "
                    ".jsonl or a COCO captions .json")


def _suffix(path: Path) -> str:
    return ".parquet" if path.name.endswith(".snappy.parquet") else path.suffix.lower()


def _expand(spec: str) -> list[Path]:
    path = Path(spec)
    if path.is_dir():
        found = sorted(
            p for p in path.iterdir() if p.is_file() and _suffix(p) in (".parquet", ".tar", ".jsonl")
        )
        if not found:
            raise DataError(f"{spec}: a folder without .parquet, .tar or .jsonl shards")
        return found
    if any(char in spec for char in "*?["):
        found = sorted(Path(p) for p in glob.glob(spec))
        if not found:
            raise DataError(f"{spec}: the pattern matches no file")
        return found
    if not path.is_file():
        raise DataError(f"{spec}: no such file or folder")
    return [path]


class ParquetShard:
    def __init__(self, path: Path, text_column: str | None, whole_rows: bool = False) -> None:
        import pyarrow.parquet as pq

        self.path = path
        self._file: object = None
        try:
            metadata = pq.read_metadata(path)
        except Exception as error:  # pyarrow raises several kinds for a file that is not parquet
            raise DataError(f"{path}: not a readable parquet file ({error})") from None
        self._sizes = [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]
        names = metadata.schema.names
        self.whole_rows = whole_rows
        self.text_column = self.image_column = None
        if whole_rows:
            return
        wanted = (text_column,) if text_column else _TEXT_COLUMNS
        found = [name for name in wanted if name in names]
        if not found:
            hint = "set data.text_column" if not text_column else "check data.text_column"
            raise DataError(
                f"{path}: no caption column {' or '.join(wanted)} among {', '.join(names)}; {hint}"
            )
        self.text_column = found[0]
        self.image_column = next((name for name in ("image", "jpg") if name in names), None)

    def group_sizes(self) -> list[int]:
        return self._sizes

    def read_group(self, group: int) -> list[Record]:
        import pyarrow.parquet as pq

        if self._file is None:  # opened lazily, in the DataLoader worker that reads it
            self._file = pq.ParquetFile(self.path)
        if self.whole_rows:
            rows = self._file.read_row_group(group).to_pylist()  # type: ignore[attr-defined]
            return [Record(None, key=f"{self.path} row group {group} row {k}", fields=row, source=self.path)
                    for k, row in enumerate(rows)]
        columns = [self.text_column] + ([self.image_column] if self.image_column else [])
        table = self._file.read_row_group(group, columns=columns)  # type: ignore[attr-defined]
        texts = table.column(self.text_column).to_pylist()
        images = table.column(self.image_column).to_pylist() if self.image_column else [None] * len(texts)
        return [Record(text, _image_bytes(image)) for text, image in zip(texts, images)]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None}  # a worker opens its own handle


def _image_bytes(value: object) -> bytes | str | None:
    # Hugging Face's parquet exports hold an image as {"bytes": ..., "path": ...}.
    if isinstance(value, dict):
        return value.get("bytes") or value.get("path")
    return value  # type: ignore[return-value]


class LineShard:
    """A TSV or JSONL file; rows are its non-empty lines."""

    def __init__(self, path: Path, cache_dir: Path | None) -> None:
        self.path = path
        self.offsets = _line_offsets(path, cache_dir)
        self.is_tsv = path.suffix.lower() == ".tsv"
        self._caption_field: int | None = None

    def group_sizes(self) -> list[int]:
        n = len(self.offsets) - 1
        return [min(GROUP_ROWS, n - start) for start in range(0, n, GROUP_ROWS)]

    def read_group(self, group: int) -> list[Record]:
        first = group * GROUP_ROWS
        last = min(first + GROUP_ROWS, len(self.offsets) - 1)
        with self.path.open("rb") as file:
            file.seek(int(self.offsets[first]))
            raw = file.read(int(self.offsets[last] - self.offsets[first]))
        lines = [line for line in raw.split(b"\n") if line.strip()]
        return [self._record(line, first + k) for k, line in enumerate(lines)]

    def _record(self, line: bytes, row: int) -> Record:
        where = f"{self.path} row {row}"
        try:
            text = line.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            return Record(None, key=f"{where}: not UTF-8")
        if self.is_tsv:
            fields = text.split("\t")
            if self._caption_field is None:
                # CC3M is caption<TAB>url, CC12M url<TAB>caption: the URL column tells them apart.
                self._caption_field = 1 if fields[0].startswith(("http://", "https://")) else 0
            caption = fields[self._caption_field] if len(fields) > self._caption_field else None
            return Record(caption.strip() if caption else None, key=where)
        try:
            entry = json.loads(text)
        except json.JSONDecodeError:
            return Record(None, key=f"{where}: not JSON")
        if not isinstance(entry, dict):
            return Record(None, key=f"{where}: not a JSON object")
        caption, image = entry.get("caption"), entry.get("image")
        return Record(caption.strip() if isinstance(caption, str) else None,
                      image if isinstance(image, str) else None, key=where, fields=entry, source=self.path)


def _line_offsets(path: Path, cache_dir: Path | None) -> np.ndarray:
    """The byte offset where each non-empty line starts, plus the file's end: computed once and
    kept under cache_dir, keyed by the file's path, size and mtime."""
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}\t{stat.st_size}\t{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    cached = Path(cache_dir) / "line-index" / f"{key}.npy" if cache_dir is not None else None
    if cached is not None and cached.is_file():
        return np.load(cached, mmap_mode="r")
    data = np.memmap(path, dtype=np.uint8, mode="r") if stat.st_size else np.zeros(0, np.uint8)
    ends = np.flatnonzero(data == ord("\n"))
    starts = np.concatenate([[0], ends + 1])
    stops = np.concatenate([ends, [stat.st_size]])
    # A line of only whitespace is no row; the common case, an empty line, is caught here.
    keep = stops > starts
    offsets = np.concatenate([starts[keep], [stat.st_size]]).astype(np.int64)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f".{cached.name}.{os.getpid()}.npy")
        np.save(partial, offsets)
        os.replace(partial, cached)
    return offsets


class CocoShard:
    """A COCO captions JSON: small by nature (COCO val2014 has 202k captions), read whole."""

    def __init__(self, path: Path) -> None:
        from experiments.data.captions import load_captions

        self.path = path
        self._captions = load_captions(path)

    def group_sizes(self) -> list[int]:
        n = len(self._captions)
        return [min(GROUP_ROWS, n - start) for start in range(0, n, GROUP_ROWS)]

    def read_group(self, group: int) -> list[Record]:
        rows = self._captions[group * GROUP_ROWS:(group + 1) * GROUP_ROWS]
        return [Record(c.caption, c.image_file, key=str(c.image_id)) for c in rows]


class TarShard:
    """A webdataset tar shard: samples are the members sharing a key (`KEY.jpg`, `KEY.txt`, ...)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._members: list[dict[str, tuple[int, int]]] | None = None
        self._keys: list[str] = []
        self._count = self._stats_count()

    def _stats_count(self) -> int:
        stats = self.path.with_name(f"{self.path.stem}_stats.json")  # img2dataset writes it per shard
        if stats.is_file():
            try:
                return int(json.loads(stats.read_text())["successes"])
            except (ValueError, KeyError, TypeError):
                pass  # not img2dataset's: count from the tar itself
        return len(self._index())

    def _index(self) -> list[dict[str, tuple[int, int]]]:
        if self._members is None:
            samples: dict[str, dict[str, tuple[int, int]]] = {}
            try:
                with tarfile.open(self.path, "r:") as tar:  # headers only: data blocks are skipped
                    for member in tar:
                        if not member.isfile():
                            continue
                        key, _, extension = member.name.partition(".")
                        samples.setdefault(key, {})[extension.lower()] = (member.offset_data, member.size)
            except tarfile.TarError as error:
                raise DataError(f"{self.path}: not a readable tar shard ({error})") from None
            self._keys = list(samples)
            self._members = list(samples.values())
        return self._members

    def group_sizes(self) -> list[int]:
        n = self._count
        return [min(GROUP_ROWS, n - start) for start in range(0, n, GROUP_ROWS)]

    def read_group(self, group: int) -> list[Record]:
        members = self._index()
        first = group * GROUP_ROWS
        rows = range(first, min(first + GROUP_ROWS, self._count))
        records = []
        with self.path.open("rb") as file:
            for row in rows:
                if row >= len(members):  # the stats file promised more samples than the tar holds
                    records.append(Record(None, key=f"{self.path} sample {row}: missing"))
                    continue
                parts = members[row]
                caption = _read_member(file, parts.get("txt"))
                image_part = next((parts[e] for e in IMAGE_EXTENSIONS if e in parts), None)
                records.append(Record(
                    caption.decode("utf-8", errors="replace").strip() if caption is not None else None,
                    _read_member(file, image_part), key=f"{self.path}:{self._keys[row]}",
                ))
        return records


def _read_member(file: io.BufferedReader, where: tuple[int, int] | None) -> bytes | None:
    if where is None:
        return None
    offset, size = where
    file.seek(offset)
    return file.read(size)


def holds_images(shards: list[Shard]) -> bool:
    """Whether the shards carry their images (tar shards, parquet with an image column) rather
    than naming files under an image folder."""
    return all(isinstance(s, TarShard) or (isinstance(s, ParquetShard) and s.image_column) for s in shards)
