"""The command line: a thin typer layer over the library (rich lives here and nowhere else).

``resattn`` is the command group, ``resattn-search`` the same as ``resattn search``. User errors
(bad files, values, storages, datasets) print one ``error:`` line and exit with 2. The commands
import the library inside their functions, so ``--help`` and argument errors answer without
importing torch.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer

from resattn.cli.bench import bench_cmd
from resattn.cli.common import err_console
from resattn.cli.confirm import confirm_cmd
from resattn.cli.export import export_cmd, train_cmd
from resattn.cli.inspect import dashboard_cmd, report_cmd, show_cmd, studies_cmd
from resattn.cli.search import search_cmd
from resattn.cli.validate import validate_cmd
from resattn.errors import install_stop_handlers, received_signal, signal_exit_code

__all__ = ["app", "main", "search_main"]

app = typer.Typer(
    name="resattn",
    help="Find where attention belongs in each block of a residual CNN, by measurement.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
# markup is off: placements such as "pattern2[cbam/r16/k7]" must print as they are.
for _name, _command in (
    ("search", search_cmd),
    ("bench", bench_cmd),
    ("export", export_cmd),
    ("train", train_cmd),
    ("confirm", confirm_cmd),
    ("validate", validate_cmd),
    ("dashboard", dashboard_cmd),
    ("studies", studies_cmd),
    ("show", show_cmd),
    ("report", report_cmd),
):
    app.command(_name)(_command)


def main(argv: Sequence[str] | None = None) -> None:
    """``resattn``: the command group."""
    _run(app, argv)


def search_main(argv: Sequence[str] | None = None) -> None:
    """``resattn-search``: the same as ``resattn search``."""
    single = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
    single.command()(search_cmd)
    _run(single, argv)


def _run(application: typer.Typer, argv: Sequence[str] | None) -> None:
    """Run the command; its exit code, or 130 / 143 when a stop signal came at any point.

    SIGTERM ends the current trial like Ctrl-C does (FAIL, summary printed). Whatever the command
    returns, a run that received SIGINT or SIGTERM exits 130 or 143 (see the "Stop signals" section of
    :mod:`resattn.errors`): while this function's own code runs the handlers only record, so no signal
    can slip between the command's end and the exit; after the previous handlers are back, a signal
    gets their behaviour (SIGTERM's default kills the process, never exit 0).
    """
    restore = install_stop_handlers(record_only=(_run, _interrupted_in))
    code: Any = 0
    escaped = False
    try:
        application(args=list(argv) if argv is not None else None, prog_name=_prog_name(application))
    except SystemExit as exc:
        code = exc.code
        escaped = _interrupted_in(exc)
    except KeyboardInterrupt:
        escaped = True
    except Exception as exc:  # not a user error: one line, the traceback in a file
        code = _unexpected(exc)
    restore()
    signum = received_signal()
    if signum is not None:
        code = signal_exit_code(signum)
        if escaped:
            err_console.print(f"interrupted ({signal.Signals(signum).name})")
    elif escaped:  # a KeyboardInterrupt raised by the program itself
        code = signal_exit_code(signal.SIGINT)
        err_console.print("interrupted")
    sys.exit(code)


def _unexpected(exc: Exception) -> int:
    """Report an exception no command turned into an error line: a failing database is one ``error:``
    line (exit 2); anything else is an internal error whose traceback goes to a file (exit 1), or to
    stderr with ``RESATTN_TRACEBACK=1``."""
    import os
    import tempfile
    import traceback

    from resattn.cli.common import fail, storage_failure
    from resattn.errors import EXIT_FAILED

    reason = storage_failure(exc)
    if reason is not None:
        return int(fail(reason).exit_code)
    text = "".join(traceback.format_exception(exc))
    if os.environ.get("RESATTN_TRACEBACK"):
        err_console.print(text, end="")
        return EXIT_FAILED
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    where = Path(tempfile.gettempdir()) / f"resattn-traceback-{os.getpid()}.txt"
    try:
        where.write_text(text, encoding="utf-8")
        saved = f"; the traceback is in {where}"
    except OSError:
        saved = "; run again with RESATTN_TRACEBACK=1 to see the traceback"
    return int(fail(f"internal error: {type(exc).__name__}: {first}{saved}", EXIT_FAILED).exit_code)


def _interrupted_in(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt is in the exception's chain (typer turns one into exit code 130)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return False


def _prog_name(application: typer.Typer) -> str:
    return "resattn" if application is app else "resattn-search"
