"""The command line: a thin typer layer over the library. rich lives here and nowhere else.

User errors (bad files, values, storages, datasets) print one ``error:`` line and exit with 2.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from resattn.errors import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    ConfigError,
    ResattnError,
    interrupt_exit_code,
    raise_terminated,
)
from resattn.spec import SpecError

app = typer.Typer(
    name="resattn",
    help="Find where attention belongs in each block of a residual CNN, by measurement.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
# markup is off: placements such as "pattern2[cbam/r16/k7]" must print as they are.
err_console = Console(stderr=True, highlight=False, markup=False)
# Not a terminal (a log file, CI): wide enough that a table row of placements stays on one line.
out_console = Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 160)


_PACKAGE_DIR = Path(__file__).resolve().parent
T = TypeVar("T")


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    err_console.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)
    return typer.Exit(code)


def _guard(fn: Callable[[], T]) -> T:
    """Run ``fn``; turn user-facing errors into one line on stderr and exit code 2."""
    try:
        return fn()
    except (ResattnError, SpecError) as err:
        raise _fail(str(err)) from None


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


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)
    # Optuna flags the heartbeat callback, metric names, notes… as experimental; users cannot act on that.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


# --------------------------------------------------------------------------------------- the reporter


def new_progress(console: Console) -> Progress:
    """The bars of every long command (search, train): description, bar, done / total, elapsed."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


class _Reporter:
    """Draws the search: rich bars on a terminal, plain log lines otherwise."""

    def __init__(self, console: Console, live: bool):
        self.console = console
        self.live = live
        self.progress: Progress | None = None
        self.study_task: Any = None
        self.trial_task: Any = None
        self.best: float | None = None
        self.target = 0

    def __enter__(self) -> _Reporter:
        if self.live:
            self.progress = new_progress(self.console)
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def _study_text(self, finished: int) -> str:
        best = f"best {self.best:.4f}" if self.best is not None else "best —"
        return f"study  {best}"

    def study_started(self, study: Any, target: int, finished: int) -> None:
        self.target = target
        self.best = _best_value(study)
        if self.progress is not None:
            self.study_task = self.progress.add_task(self._study_text(finished), total=target, completed=finished)
            self.trial_task = self.progress.add_task("trial", total=1, completed=0, visible=False)
        else:
            self.console.print(f"study {study.study_name}: {finished}/{target} trials finished")

    def trial_started(self, number: int, spec: Any, params: int, flops: int) -> None:
        text = f"trial {number}  {params / 1e3:.0f}k params  {flops / 1e6:.0f} MFLOPs"
        if self.progress is not None:
            self.progress.update(self.trial_task, description=text, completed=0, visible=True)
        else:
            self.console.print(text)

    def epoch_done(self, number: int, result: Any, epochs: int) -> None:
        acc = f"{result.val_accuracy:.4f}" if result.val_accuracy is not None else "—"
        if self.progress is not None:
            self.progress.update(
                self.trial_task,
                total=epochs,
                completed=result.epoch,
                description=f"trial {number}  val {acc}  {result.images_per_second:.0f} img/s",
            )
        else:
            self.console.print(
                f"trial {number} epoch {result.epoch}/{epochs}: loss {result.train_loss:.3f} "
                f"val_accuracy {acc} ({result.images_per_second:.0f} img/s)"
            )

    def trial_finished(self, study: Any, trial: Any, finished: int) -> None:
        self.best = _best_value(study)
        value = f"{trial.values[0]:.4f}" if trial.values else "—"
        reason = trial.user_attrs.get("fail_reason") if trial.state.name == "FAIL" else None
        line = f"trial {trial.number} {trial.state.name.lower()} val_accuracy {value}"
        if reason:
            line += f" ({reason})"
        if self.progress is not None:
            self.progress.update(self.study_task, completed=finished, description=self._study_text(finished))
            self.progress.update(self.trial_task, visible=False)
            self.progress.console.print(line)
        else:
            self.console.print(f"{line} [{finished}/{self.target} finished]")


def _best_value(study: Any) -> float | None:
    if len(study.directions) != 1:
        return None
    try:
        return float(study.best_value)
    except ValueError:
        return None


def _print_summary(result: Any, console: Console) -> None:
    from resattn.storage import redact as _redact

    head = (
        f"study {result.study_name}: {result.finished}/{result.target} finished "
        f"({result.complete} complete, {result.pruned} pruned, {result.failed} failed) in {result.seconds:.0f} s"
        f" on {result.device}"
    )
    console.print(head)
    for notice in getattr(result, "notices", ()):
        console.print(f"note: {notice}")
    if getattr(result, "architectures", 0):
        console.print(f"{result.architectures} distinct architectures completed")
    if getattr(result, "duplicates", 0):
        console.print(
            f"{result.duplicates} duplicate{'s' if result.duplicates != 1 else ''} skipped "
            f"(architecture already trained), saving ~{result.saved_seconds:.0f} s of training"
        )
    if getattr(result, "over_budget", 0):
        console.print(f"{result.over_budget} trials over the params/FLOPs budget (pruned, not trained)")
    if result.stopped_reason:
        console.print(f"stopped early: {result.stopped_reason}")
    rows = result.pareto or result.top
    if rows:
        title = "Pareto front" if result.pareto else f"Top {len(rows)} trials"
        table = Table(title=title, title_justify="left")
        for col in ("trial", "val_acc", "params", "MFLOPs", "epochs", "placement"):
            table.add_column(col, justify="right" if col not in ("placement",) else "left", overflow="fold")
        for t in rows:
            label = "  ".join(t.placement) + (f"  ({t.design})" if t.design else "")
            table.add_row(
                str(t.number),
                f"{t.value:.4f}" if t.value is not None else "—",
                f"{t.params:,}" if t.params is not None else "—",
                f"{t.flops / 1e6:.1f}" if t.flops is not None else "—",
                str(t.epochs_run or "—"),
                label,
            )
        console.print(table)
    else:
        console.print("no trial has completed yet")
    storage = _redact(result.storage)
    if result.best is not None:
        console.print(
            f"export the best: resattn export --storage {storage} --study {result.study_name} --best "
            "--out studies/winner.py"
        )
    elif result.pareto:
        console.print(
            f"export one: resattn export --storage {storage} --study {result.study_name} --trial N "
            "--out studies/winner.py"
        )
    if result.interrupted:
        console.print("interrupted: every finished trial is stored; re-run the same command to continue")


# ------------------------------------------------------------------------------------------- commands

SpaceOpt = Annotated[
    str, typer.Option("--space", help="Search-space TOML file, or the name of a shipped one (seed, resnet20, quick).")
]
SearchSpaceOpt = Annotated[
    str | None,
    typer.Option(
        "--space",
        help="Search-space TOML file, or the name of a shipped one (seed, resnet20, quick) "
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


def _load_inputs(space: str | None, recipe: str, overrides: Sequence[str]) -> tuple[Any, Any]:
    from resattn.recipe import load_recipe
    from resattn.space import load_space

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


@app.command("search")
def search_cmd(
    space: SearchSpaceOpt = None,
    recipe: RecipeOpt = "cifar10",
    trials: Annotated[int, typer.Option(help="Run until this many trials in total have finished.", min=1)] = 200,
    timeout: Annotated[float | None, typer.Option(help="Stop starting new trials after this many seconds.")] = None,
    study: Annotated[str | None, typer.Option(help="Study name [default: <space>-<recipe>].")] = None,
    storage: Annotated[
        str, typer.Option(help="SQLAlchemy URL (sqlite:///…, postgresql+psycopg://…) or a journal file path.")
    ] = "sqlite:///studies/resattn.db",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    seed: Annotated[int | None, typer.Option(help="Sampler seed [default: the recipe's].")] = None,
    dataset: Annotated[
        str | None, typer.Option(help="Override the recipe's dataset (cifar10, npz:PATH, folder:PATH, procedural…).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Override the recipe's epochs per trial.", min=1)] = None,
    set_: SetOpt = None,
    workers: Annotated[
        int, typer.Option(help="Worker processes on this machine sharing the --trials budget.", min=1)
    ] = 1,
    gpus: Annotated[
        str | None, typer.Option(help="GPU indices, e.g. 0,1: workers spread over them (CUDA_VISIBLE_DEVICES).")
    ] = None,
    workers_per_gpu: Annotated[int, typer.Option(help="Workers per GPU with --gpus.", min=1)] = 1,
    max_params: Annotated[
        int | None,
        typer.Option(help="Parameter budget (overrides search.max_params; 0 = none): larger models "
                          "are pruned before training.", min=0),
    ] = None,
    max_flops: Annotated[
        int | None,
        typer.Option(help="FLOP budget per image (overrides search.max_flops; 0 = none).", min=0),
    ] = None,
    stop_when_converged: Annotated[
        bool,
        typer.Option("--stop-when-converged",
                     help="Stop before --trials when Optuna's terminator judges the study converged "
                          "(one objective, single process)."),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Run (or continue) a placement study until --trials trials have finished."""
    from resattn.search import run_search

    _setup_logging(verbose)
    overrides = list(set_ or [])
    if dataset is not None:
        overrides.append(f"data.dataset={dataset}")
    if epochs is not None:
        overrides.append(f"train.epochs={epochs}")
    if max_params is not None:
        overrides.append(f"search.max_params={max_params}")
    if max_flops is not None:
        overrides.append(f"search.max_flops={max_flops}")
    space_obj, recipe_obj = _guard(lambda: _load_inputs(space, recipe, overrides))
    live = err_console.is_terminal and not os.environ.get("CI")
    console = err_console if live else out_console
    with _Reporter(console, live) as reporter:
        result = _guard(
            lambda: run_search(
                space_obj, recipe_obj, trials=trials, storage=storage, study_name=study,
                timeout=timeout, device=device, seed=seed, reporter=reporter,
                workers=workers, gpus=gpus, workers_per_gpu=workers_per_gpu,
                stop_when_converged=stop_when_converged,
            )
        )
    _print_summary(result, out_console)
    if result.interrupted:
        raise typer.Exit(EXIT_TERMINATED if result.interrupted == "SIGTERM" else EXIT_INTERRUPTED)


@app.command("bench")
def bench_cmd(
    space: SpaceOpt = "seed",
    dataset: Annotated[str, typer.Option(help="Dataset to time on.")] = "npz:../shared/data/cifar10-6k.npz",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    batch_size: Annotated[int, typer.Option(min=2)] = 256,
    steps: Annotated[int, typer.Option(min=1, help="Timed steps per loop.")] = 30,
    warmup_steps: Annotated[int, typer.Option(min=0)] = 5,
    loader_workers: Annotated[int, typer.Option(min=0, help="DataLoader workers of the reference loop.")] = 2,
    design: Annotated[
        str, typer.Option(help="Which design of the space to time: all-residual, seed-pattern2, seed-pattern4.")
    ] = "seed-pattern4",
    search_workers: Annotated[
        str | None,
        typer.Option("--workers", "--search-workers",
                     help="Instead: search trials/hour with these worker-process counts, e.g. 1,2,4 "
                          "(a fresh --search-trials study of the quick recipe each, in a temporary journal file)."),
    ] = None,
    search_trials: Annotated[int, typer.Option(min=1, help="Trials per worker count with --workers.")] = 8,
) -> None:
    """Images/s of the fast proxy loop vs a plain DataLoader loop; with --workers, search trials/hour.

    Same model and data for both loops. --workers 1,2,4 instead runs a fresh quick-recipe study per
    worker count and prints trials/hour and the speed-up.
    """
    from resattn.bench import format_bench, run_bench

    _setup_logging(False)
    if search_workers is not None:
        _scaling_bench(search_workers, search_trials, dataset, device)
        return
    spec, ds, dev = _guard(lambda: _bench_inputs(space, dataset, device, design))
    out_console.print(f"bench: design {design} of space {space}, dataset {dataset}, device {dev}")
    result = _guard(
        lambda: run_bench(spec, ds, device=dev, batch_size=batch_size, steps=steps,
                          warmup_steps=warmup_steps, num_workers=loader_workers)
    )
    out_console.print(format_bench(result))


def _scaling_bench(counts: str, trials: int, dataset: str, device: str) -> None:
    from resattn.workers import format_scaling, run_scaling_bench

    try:
        numbers = [int(c) for c in counts.split(",") if c.strip()]
    except ValueError:
        numbers = []
    if not numbers or min(numbers) < 1:
        raise _fail(f"--workers: comma-separated positive integers, got {counts!r}")
    overrides = [f"data.dataset={dataset}", "train.epochs=2", "data.train_images=500", "train.batch_size=64"]
    space_obj, recipe_obj = _guard(lambda: _load_inputs(None, "quick", overrides))
    out_console.print(f"bench: {trials} trials of the quick recipe ({', '.join(overrides)}) per worker count, "
                      f"device {device}, journal-file storage")
    rows = _guard(lambda: run_scaling_bench(space_obj, recipe_obj, numbers, trials=trials, device=device))
    out_console.print(format_scaling(rows))


def _bench_inputs(space: str, dataset: str, device: str, design: str) -> tuple[Any, Any, Any]:
    import optuna

    from resattn.data import load_dataset
    from resattn.space import baseline_designs, load_space, sample
    from resattn.train import resolve_device

    space_obj = load_space(resolve_file(space, "space"))
    designs = dict(baseline_designs(space_obj))
    if design not in designs:
        raise ConfigError(f"design {design!r} is not expressible in this space; allowed: {', '.join(designs)}",
                          key="--design")
    ds = load_dataset(dataset)
    study = optuna.create_study()
    study.enqueue_trial(designs[design])
    spec = sample(study.ask(), space_obj, num_classes=ds.num_classes)
    return spec, ds, resolve_device(device)


def _register_commands() -> None:
    """Import every module of :mod:`resattn.commands`; each registers its commands on ``app``."""
    import importlib
    import pkgutil

    from resattn import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"resattn.commands.{info.name}")


_register_commands()


def main(argv: Sequence[str] | None = None) -> None:
    """``resattn``: the command group."""
    _run(app, argv)


def search_main(argv: Sequence[str] | None = None) -> None:
    """``resattn-search``: the same as ``resattn search``."""
    single = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
    single.command()(search_cmd)
    _run(single, argv)


def _run(application: typer.Typer, argv: Sequence[str] | None) -> None:
    import signal

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
