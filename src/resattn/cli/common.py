"""What every command shares: the two consoles, one-line errors, finding shipped files, logging,
progress bars, the common options, and reading a space and a recipe.

Imports only typer, rich and the standard library at module level (the library is imported inside
the functions that need it), so ``resattn --help`` answers without importing torch.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from resattn.errors import EXIT_USAGE, ConfigError, ResattnError, SpecError
from resattn.study.keys import DEFAULT_STORAGE

__all__ = [
    "DEFAULT_STORAGE",
    "BestOpt",
    "InitOpt",
    "RecipeOpt",
    "SearchSpaceOpt",
    "SetOpt",
    "SpaceOpt",
    "StorageOpt",
    "StudyOpt",
    "TrialOpt",
    "err_console",
    "fail",
    "guard",
    "load_inputs",
    "new_progress",
    "out_console",
    "resolve_file",
    "setup_logging",
]

# markup is off: placements such as "pattern2[cbam/r16/k7]" must print as they are.
err_console = Console(stderr=True, highlight=False, markup=False)


# Not a terminal (a log file, CI): wide enough that a table row of placements stays on one line.
out_console = Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 160)

#: The package's root (``src/resattn``): shipped space/recipe files are found from here.
_PACKAGE_DIR = Path(__file__).resolve().parent.parent

T = TypeVar("T")


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    err_console.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)
    return typer.Exit(code)


def guard(fn: Callable[[], T]) -> T:
    """Run ``fn``; turn user-facing errors into one line on stderr and their exit code (2 for bad input,
    1 for a run that failed), and a failing database (a damaged SQLite file, a lost server) into one
    line and exit code 2."""
    try:
        return fn()
    except (ResattnError, SpecError) as err:
        raise fail(str(err), getattr(err, "exit_code", EXIT_USAGE)) from None
    except Exception as err:
        reason = storage_failure(err)
        if reason is None:
            raise
        raise fail(reason) from None


def storage_failure(err: BaseException) -> str | None:
    """A one-line message for an error raised by the study database (Optuna's storage, SQLAlchemy, the
    sqlite3 driver), or ``None`` for any other error."""
    modules = {type(e).__module__.split(".")[0] for e in (err, err.__cause__, err.__context__) if e is not None}
    if not modules & {"optuna", "sqlalchemy", "sqlite3", "psycopg", "psycopg2"}:
        return None
    if type(err).__module__.split(".")[0] == "optuna" and type(err).__name__ not in (
        "StorageInternalError", "UpdateFinishedTrialError",
    ):
        return None
    inner: BaseException = err
    while getattr(inner, "orig", None) is None and inner.__cause__ is not None:
        inner = inner.__cause__
    text = str(getattr(inner, "orig", None) or inner).strip()
    first = text.splitlines()[0] if text else type(inner).__name__
    hint = "; the file is damaged: restore it from a copy" if "malformed" in first or "not a database" in first \
        else ""
    return f"the study database failed: {first}{hint}"


def resolve_file(value: str, folder: str) -> Path:
    """A space/recipe argument: a path, or the name of a file shipped in ``space/``/``search/``."""
    path = Path(value).expanduser()
    if path.is_file():
        return path
    if path.suffix == "" and "/" not in value:
        for root in (Path.cwd(), _PACKAGE_DIR.parent.parent, _PACKAGE_DIR / "_builtin"):
            candidate = root / folder / f"{value}.toml"
            if candidate.is_file():
                return candidate
    shipped = sorted({p.stem for root in (Path.cwd(), _PACKAGE_DIR.parent.parent, _PACKAGE_DIR / "_builtin")
                      for p in (root / folder).glob("*.toml")})
    hint = f"; shipped {folder} files: {', '.join(shipped)}" if shipped else ""
    raise ConfigError(f"file not found: {value}{hint}", key=f"--{'space' if folder == 'space' else 'recipe'}")


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    import warnings

    import optuna

    from resattn.study.loop import quiet_optuna_trial_logs

    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)
    quiet_optuna_trial_logs(verbose=verbose)  # the search prints its own one line per trial
    # Optuna flags the heartbeat callback, metric names, notes… as experimental; users cannot act on that.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def new_progress(console: Console) -> Progress:
    """The bars of every long command (search, train): description, bar, done / total, elapsed."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


# --------------------------------------------------------------------------------------- options

SpaceOpt = Annotated[
    str,
    typer.Option(
        "--space",
        help="Search-space TOML file, or the name of a shipped one (seed, resnet20, quick, resnet18, resnet50).",
    ),
]


SearchSpaceOpt = Annotated[
    str | None,
    typer.Option(
        "--space",
        help="Search-space TOML file, or the name of a shipped one (seed, resnet20, quick, resnet18, resnet50) "
        "[default: the recipe's search.space, else seed].",
    ),
]


RecipeOpt = Annotated[
    str, typer.Option("--recipe", help="Recipe TOML file, or the name of a shipped one (cifar10, quick).")
]


SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a recipe value, e.g. --set train.epochs=3 (repeatable)."),
]

InitOpt = Annotated[
    str | None,
    typer.Option(
        "--init",
        help="scratch | checkpoint:PATH: start from trained weights (a weights.pt or checkpoint.pt of resattn "
        "train, a state_dict, or a torchvision ResNet .pth file), fine-tuned at train.finetune_lr; the same as "
        "--set train.init=… [default: the recipe's train.init, else scratch].",
    ),
]

StorageOpt = Annotated[str, typer.Option(help="SQLAlchemy URL or journal file path of the studies.")]
StudyOpt = Annotated[str | None, typer.Option(help="Study name [default: the storage's only study].")]
TrialOpt = Annotated[int | None, typer.Option(help="Trial number to use.", min=0)]
BestOpt = Annotated[bool, typer.Option("--best", help="The best trial (single-objective studies).")]


def load_inputs(space: str | None, recipe: str, overrides: Sequence[str]) -> tuple[Any, Any]:
    from resattn.study.recipe import load_recipe
    from resattn.study.space import load_space

    recipe_obj = load_recipe(resolve_file(recipe, "search"))
    if overrides:
        recipe_obj = recipe_obj.with_overrides(list(overrides))
    if space is None:
        space = recipe_obj.search.space
        try:
            path = resolve_file(space, "space")
        except ConfigError as err:
            raise ConfigError(err.reason, file=str(recipe_obj.path or ""), key="search.space") from None
    else:
        path = resolve_file(space, "space")
    return load_space(path), recipe_obj
