"""Files that appear complete or not at all: written beside the target, then renamed over it.

Used for everything resattn writes that a crash must not leave half-written: exported model files,
ONNX models, training checkpoints, weights and metrics. The file gets the permissions of a file
created normally (``0666`` less the umask), or those of the file it replaces.
"""

from __future__ import annotations

import contextlib
import os
import stat
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
    try:
        os.fchmod(fd, _mode_for(target))  # mkstemp makes 0600 files
    finally:
        os.close(fd)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:  # Linux: read without changing it
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(target: Path) -> int:
    """The mode of the file ``target`` replaces, else ``0666`` less the umask."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


def atomic_write(target: Path, write: Callable[[IO[Any]], object], mode: str = "wb") -> None:
    """Write ``target`` with ``write(file)`` (text mode: UTF-8, ``\\n`` line ends), synced to disk
    before it replaces the old file."""
    text = {} if "b" in mode else {"encoding": "utf-8", "newline": "\n"}
    with replaced_atomically(target) as tmp, open(tmp, mode, **text) as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
