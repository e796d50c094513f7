"""User-facing errors. The CLI prints their message on one line and exits with code 2."""

from __future__ import annotations

import signal
from typing import Any

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "ConfigError",
    "DatasetError",
    "ResattnError",
    "SpecError",
    "StorageError",
    "Terminated",
    "interrupt_exit_code",
    "raise_terminated",
]

#: Exit codes: bad input (one ``error:`` line), Ctrl-C / SIGINT, SIGTERM.
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class ResattnError(Exception):
    """An error caused by the user's input or environment, with a message that says what to do."""


class ConfigError(ResattnError, ValueError):
    """A bad search-space file, recipe file or command-line value.

    The message names the file (when there is one), the key and what is allowed.
    """

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None):
        self.file = file
        self.key = key
        self.reason = message
        where = ": ".join(str(p) for p in (file, key) if p)
        super().__init__(f"{where}: {message}" if where else message)


class SpecError(ValueError):
    """An invalid network spec. ``field`` is the dotted path of the offending value
    (``layers[2].attention.name``); the message names the bad value and what is allowed."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}" if field else message)

    def under(self, prefix: str) -> SpecError:
        """The same error, with its field path moved under ``prefix``."""
        return SpecError(f"{prefix}.{self.field}" if self.field else prefix, self.reason)


class DatasetError(ResattnError):
    """A dataset that cannot be loaded (unknown name, missing file, no network for a download)."""


class StorageError(ResattnError):
    """A study storage that cannot be opened, or a study that cannot be continued."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the current trial ends as FAIL and the summary prints."""

    signum = signal.SIGTERM


def raise_terminated(signum: int, frame: Any) -> None:
    """A SIGTERM handler: raise :class:`Terminated`."""
    raise Terminated()


def interrupt_exit_code(err: BaseException) -> int:
    """143 for SIGTERM (:class:`Terminated`), 130 for Ctrl-C / SIGINT."""
    return EXIT_TERMINATED if isinstance(err, Terminated) else EXIT_INTERRUPTED
