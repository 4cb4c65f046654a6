"""Why a run failed, as one `failure_reason` tag, and whether trying again could help.

A reason opens with one line that says what happened (`crashed: ...`, `failed: ...`,
`disk full: <path>`) and goes on with the end of the traceback, where the error is; MLflow caps
a tag's value, so a long traceback loses its beginning, never its end.

Errors that cannot pass on another attempt (bad data or config, a full disk) end the run FAILED
at once; only the others (out of memory, a lost node, a kill) are worth resubmitting.
"""

from __future__ import annotations

import errno
import traceback

from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

_HEADLINE = 500  # characters of the first line kept when a reason is clipped
_ELIDED = "\n...\n"


def disk_full_path(error: BaseException) -> str | None:
    """The file a write ran out of space on, where `error` or what caused it is ENOSPC."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return str(seen.filename) if seen.filename else "(no file named)"
        seen = seen.__cause__ or seen.__context__
    return None


def is_permanent(error: BaseException) -> bool:
    """ValueError covers the harness's DataError, ConfigError, ManifestError and refused
    checkpoints, and UnicodeDecodeError; a missing or unreadable file stays so on retry too."""
    if disk_full_path(error) is not None:
        return True
    return isinstance(
        error, (ValueError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
    )


def headline(error: BaseException) -> str:
    full = disk_full_path(error)
    if full is not None:
        return f"disk full: {full}"
    message = " ".join(str(error).split())  # one line, whatever the error's own formatting
    kind = "failed" if is_permanent(error) else "crashed"
    return f"{kind}: {type(error).__name__}: {message}"


def failure_reason(error: BaseException) -> str:
    trace = "".join(traceback.format_exception(error)).rstrip()
    return clip(f"{headline(error)}\n{trace}")


def clip(reason: str, limit: int = MAX_TAG_VAL_LENGTH) -> str:
    """`reason` within `limit` characters: its first line (shortened) and as much of its end as fits."""
    if len(reason) <= limit:
        return reason
    first = reason.split("\n", 1)[0][:_HEADLINE]
    return first + _ELIDED + reason[-(limit - len(first) - len(_ELIDED)):]
