"""Files that appear complete or not at all: written beside the target, then renamed over it.

Used for everything resattn writes that a crash must not leave half-written: exported model files,
ONNX models, training checkpoints, weights and metrics.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "replaced_atomically"]


@contextlib.contextmanager
def replaced_atomically(target: Path) -> Iterator[str]:
    """Yield the path of a new temporary file in ``target``'s folder (created if missing); when the
    block ends normally it replaces ``target`` (``os.replace``), when it raises it is removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(target: Path, write: Callable[[IO[Any]], object], mode: str = "wb") -> None:
    """Write ``target`` with ``write(file)`` (text mode: UTF-8, ``\\n`` line ends), synced to disk
    before it replaces the old file."""
    text = {} if "b" in mode else {"encoding": "utf-8", "newline": "\n"}
    with replaced_atomically(target) as tmp, open(tmp, mode, **text) as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
