"""Reading a data manifest that tolerates bad rows: a JSONL or Parquet table of rows whose image
paths are relative to the manifest's folder.

A row that cannot be used (a line that is not JSON, a missing or mistyped field, an image that is
missing or does not decode, ...) is skipped and counted by reason, never a crash: at the scale of
the paper's data some rows are always broken, and one of them must not end a week-long run.
Only a manifest that cannot be read at all, or that leaves no usable row, is an error.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from experiments.data.untrusted_images import UNUSABLE_IMAGE_REASONS, UnusableImage, checked_image_size

log = logging.getLogger(__name__)

T = TypeVar("T")

# Every reason a row can be skipped for; Loaded.skipped lists all of them, zeros included.
SKIP_REASONS = (
    "bad_json",  # a JSONL line that is not a JSON object
    "missing_field",  # a required field is absent or null
    "bad_field",  # a field of the wrong type or an impossible value
    "entity_not_in_caption",  # an entity's span is outside its caption or does not spell its word
    *UNUSABLE_IMAGE_REASONS,  # a referenced image that is missing or cannot be used
)
_IMAGE_CHECK_THREADS = 8  # image checks wait on the disk more than on the CPU
_ROWS_IN_FLIGHT = 10_000  # rows handed to the threads at once, so millions never queue at once


class ManifestError(ValueError):
    """The manifest as a whole is unusable: missing, unreadable, or without one valid row."""


class RowError(ValueError):
    """Why one row is skipped: `reason` is one of SKIP_REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        if reason not in SKIP_REASONS:
            raise ValueError(f"unknown skip reason {reason!r}")
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Loaded(Generic[T]):
    """The valid rows of a manifest, in file order, and what was skipped."""

    path: Path
    rows: tuple[T, ...]
    skipped: dict[str, int]  # reason -> rows skipped for it
    first_skip: dict[str, str]  # reason -> where and why the first such row was skipped

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        text = f"{self.path}: kept {len(self.rows)} row(s), skipped {self.total_skipped}"
        reasons = [
            f"{reason}={n} (first: {self.first_skip[reason]})" for reason, n in self.skipped.items() if n
        ]
        return text + (": " + "; ".join(reasons) if reasons else "")


def load_manifest(path: str | Path, parse_row: Callable[[dict[str, Any], Path], T], kind: str) -> Loaded[T]:
    """Reads `path` (.jsonl or .parquet) and turns each record into a row with `parse_row(record,
    folder)`, which raises RowError for a row to skip. Logs a warning when rows were skipped."""
    path = Path(path)
    records = _read_records(path)
    folder = path.parent

    def parse(record: dict[str, Any] | RowError) -> T | RowError:
        if isinstance(record, RowError):
            return record
        try:
            return parse_row(record, folder)
        except RowError as error:
            return error

    parsed: list[T | RowError] = []
    with ThreadPoolExecutor(_IMAGE_CHECK_THREADS) as pool:
        for start in range(0, len(records), _ROWS_IN_FLIGHT):
            parsed.extend(pool.map(parse, [record for _, record in records[start : start + _ROWS_IN_FLIGHT]]))
    rows: list[T] = []
    skipped = Counter({reason: 0 for reason in SKIP_REASONS})
    first_skip: dict[str, str] = {}
    for (where, _), result in zip(records, parsed):
        if isinstance(result, RowError):
            skipped[result.reason] += 1
            first_skip.setdefault(result.reason, f"{where}: {result}")
        else:
            rows.append(result)
    loaded = Loaded(path, tuple(rows), dict(skipped), first_skip)
    if not rows:
        raise ManifestError(f"{kind} manifest {loaded.summary()}; no usable row is left")
    if loaded.total_skipped:
        log.warning("%s manifest %s", kind, loaded.summary())
    return loaded


def _read_records(path: Path) -> list[tuple[str, dict[str, Any] | RowError]]:
    """(where in the file, record or the RowError of an unparsable line) for every non-blank row."""
    if not path.is_file():
        raise ManifestError(f"manifest {path} does not exist")
    if path.suffix == ".jsonl":
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise ManifestError(f"manifest {path} cannot be read: {error}") from error
        return [(f"line {n}", _parse_line(line)) for n, line in enumerate(lines, start=1) if line.strip()]
    if path.suffix == ".parquet":
        import pyarrow
        import pyarrow.parquet

        try:
            table = pyarrow.parquet.read_table(path)
        except (OSError, pyarrow.ArrowException) as error:
            raise ManifestError(f"manifest {path} cannot be read as Parquet: {error}") from error
        return [(f"row {n}", record) for n, record in enumerate(table.to_pylist(), start=1)]
    raise ManifestError(f"manifest {path}: unknown format; expected a .jsonl or .parquet file")


def _parse_line(line: str) -> dict[str, Any] | RowError:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        return RowError("bad_json", f"not valid JSON ({error})")
    if not isinstance(record, dict):
        return RowError("bad_json", f"a JSON {type(record).__name__}, not an object")
    return record


def required(record: dict[str, Any], name: str, kind: type) -> Any:
    """record[name], which must be present, non-null and of `kind` (bool is not an int here)."""
    value = record.get(name)
    if value is None:
        raise RowError("missing_field", f"no {name!r} field")
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise RowError("bad_field", f"{name!r} is a {type(value).__name__}: {value!r}")
    return value


def required_text(record: dict[str, Any], name: str) -> str:
    text = required(record, name, str)
    if not text.strip():
        raise RowError("bad_field", f"{name!r} is empty")
    return text


def optional_text(record: dict[str, Any], name: str) -> str | None:
    return None if record.get(name) is None else required_text(record, name)


def checked_image(folder: Path, relative: str, max_pixels: int) -> Path:
    """folder / relative, after checking the file exists and decodes."""
    return sized_image(folder, relative, max_pixels)[0]


def sized_image(folder: Path, relative: str, max_pixels: int) -> tuple[Path, tuple[int, int]]:
    """folder / relative and its (width, height), after checking the file exists and decodes."""
    path = folder / relative
    try:
        return path, checked_image_size(path, max_pixels)
    except UnusableImage as error:
        raise RowError(error.reason, str(error)) from None


def checked_image_bytes(record: dict[str, Any], name: str, max_pixels: int) -> bytes:
    """The encoded image in field `name` (raw bytes, or Hugging Face's {"bytes": ...}), after
    checking that it decodes."""
    value = record.get(name)
    data = value.get("bytes") if isinstance(value, dict) else value
    if not isinstance(data, bytes) or not data:
        raise RowError("missing_image", f"field {name!r} holds no image bytes")
    try:
        checked_image_size(data, max_pixels)
    except UnusableImage as error:
        raise RowError(error.reason, f"field {name!r}: {error}") from None
    return data
