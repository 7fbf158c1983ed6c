"""The one atomic file writer: a temporary file beside the target, fsynced, then renamed over it.

A killed process (or a power cut, thanks to the fsync) leaves either the old file or the new one,
never a torn one. Every file autostrat writes goes through `atomic_write`: prepared data, run
folders, the sealed record, reports.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def _umask() -> int:
    mask = os.umask(0o022)  # the only portable way to read it is to set it; put it straight back
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once, at import, before any threads of ours exist


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write `data` (text is UTF-8) to `path` through a temporary file, an fsync and a rename.

    The file gets the permissions a plain open() would give it (an existing file keeps its own):
    not tempfile.mkstemp's private 0600, which would leave run folders and data files unreadable
    to the rest of a team sharing them. Raises OSError when the folder cannot be written.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_open(path) as handle:
        handle.write(payload)


@contextlib.contextmanager
def atomic_open(path: Path) -> Iterator[BinaryIO]:
    """A binary file to write `path` piece by piece, atomically: `atomic_write` for streamed output.

    The pieces go to a temporary file beside `path` (`.NAME.PID.RANDOM.tmp`); when the block ends
    normally it is fsynced and renamed over `path`. When the block raises (an error, Ctrl-C) the
    temporary file is removed; a process killed outright leaves it behind under that dotted name,
    never a truncated file under `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_UMASK
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    handle = open(tmp, "xb")
    try:
        with handle:
            os.fchmod(handle.fileno(), mode)
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
