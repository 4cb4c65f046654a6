"""The MLflow store a command reads, checked before MLflow opens it: MLflow creates a SQLite
store wherever a URI points, so `repro status` on a wrong --workdir would silently make an empty
one, and a file that is not a database gives a long traceback. Stores behind a server (http://...)
are the server's to check."""

from __future__ import annotations

from pathlib import Path

from repro.config import ConfigError

_SQLITE = "sqlite:///"
_SQLITE_HEADER = b"SQLite format 3\x00"


class StoreError(ConfigError):
    """No usable MLflow store where the command looks for one."""


def sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix(_SQLITE)) if uri.startswith(_SQLITE) else None


def require_store(uri: str) -> None:
    """For commands that only read: the store must be there already."""
    path = sqlite_path(uri)
    if path is None:
        return
    if not path.exists():
        raise StoreError(f"no MLflow store at {path} (is --workdir the folder `repro run` used? "
                         "or pass --tracking-uri)")
    check_database(path)


def check_database(path: Path) -> None:
    """An existing store file must be a SQLite database (an empty file is one SQLite will set up)."""
    try:
        with path.open("rb") as file:
            header = file.read(len(_SQLITE_HEADER))
    except OSError as error:
        raise StoreError(f"cannot read the MLflow store {path}: {error.strerror}") from None
    if header and header != _SQLITE_HEADER:
        raise StoreError(f"{path} is not an MLflow store: not a SQLite database")


def writable_store(uri: str) -> None:
    """For `repro run`: the store may be created, but an existing file must be a database."""
    path = sqlite_path(uri)
    if path is not None and path.exists():
        check_database(path)
