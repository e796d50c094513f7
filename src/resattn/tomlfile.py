"""Reading the project's TOML files (search spaces, recipes), once: the file's errors mapped to one
readable :class:`~resattn.errors.ConfigError`, and the small helpers their validators share to
check values and to quote them the way TOML writes them. Standard library only."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from resattn.errors import ConfigError

__all__ = ["is_int", "is_number", "literal", "read_toml"]


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """The parsed document of the TOML file ``path``; ``what`` names the kind of file in errors
    (``"search-space file"``, ``"recipe file"``). Every failure is a :class:`ConfigError` naming the file."""
    source = str(path)
    try:
        with Path(path).open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{what} not found", file=source) from None
    except IsADirectoryError:
        raise ConfigError(f"is a folder, not a {what}", file=source) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"invalid TOML: {err}", file=source) from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"not UTF-8 text: {err}", file=source) from None
    except OSError as err:
        raise ConfigError(f"cannot read the file: {err.strerror or err}", file=source) from None


def literal(value: Any) -> str:
    """A value as a TOML file writes it (``true``, ``"text"``, ``3``), for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def is_int(value: Any) -> bool:
    """An integer, and not a boolean."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An integer or a float, and not a boolean."""
    return isinstance(value, int | float) and not isinstance(value, bool)
