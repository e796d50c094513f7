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

import typer

from resattn.cli.bench import bench_cmd
from resattn.cli.common import err_console
from resattn.cli.confirm import confirm_cmd
from resattn.cli.export import export_cmd, train_cmd
from resattn.cli.inspect import dashboard_cmd, report_cmd, show_cmd, studies_cmd
from resattn.cli.search import search_cmd
from resattn.cli.validate import validate_cmd
from resattn.errors import interrupt_exit_code, raise_terminated

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
    # SIGTERM ends the current trial like Ctrl-C does (FAIL, summary printed), then exits 143.
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        application(args=list(argv) if argv is not None else None, prog_name=_prog_name(application))
    except KeyboardInterrupt as err:
        err_console.print("interrupted")
        sys.exit(interrupt_exit_code(err))
    finally:
        signal.signal(signal.SIGTERM, previous)


def _prog_name(application: typer.Typer) -> str:
    return "resattn" if application is app else "resattn-search"
