"""User-facing errors. The CLI prints their message on one line and exits with code 2."""

from __future__ import annotations

__all__ = ["ConfigError", "DatasetError", "ResattnError", "StorageError"]


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


class DatasetError(ResattnError):
    """A dataset that cannot be loaded (unknown name, missing file, no network for a download)."""


class StorageError(ResattnError):
    """A study storage that cannot be opened, or a study that cannot be continued."""
