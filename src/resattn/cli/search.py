"""``resattn search`` / ``resattn-search``: run a study, draw its progress, print its summary."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from resattn.cli.common import (
    InitOpt,
    RecipeOpt,
    SearchSpaceOpt,
    SetOpt,
    err_console,
    fail,
    guard,
    load_inputs,
    new_progress,
    out_console,
    setup_logging,
)
from resattn.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, fault_signal, signals_deferred
from resattn.study import keys

__all__ = ["search_cmd"]


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

    def notice(self, text: str) -> None:
        """A one-line notice (a setting ignored, a baseline queued again, waiting for other processes)."""
        if self.progress is not None:
            self.progress.console.print(f"note: {text}", soft_wrap=True)
        else:
            self.console.print(f"note: {text}", soft_wrap=True)

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
        reason = trial.user_attrs.get(keys.FAIL_REASON) if trial.state.name in ("FAIL", "PRUNED") else None
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
    from resattn.study.storage import redact as _redact

    duplicates = getattr(result, "duplicates", 0)
    # finished = complete + pruned, duplicates not counted (they are COMPLETE trials in the storage)
    not_counted = f"; {duplicates} duplicate{'s' if duplicates != 1 else ''} not counted" if duplicates else ""
    head = (
        f"study {result.study_name}: {result.finished}/{result.target} finished "
        f"({result.complete - duplicates} complete, {result.pruned} pruned, {result.failed} failed{not_counted})"
        f" in {result.seconds:.0f} s on {result.device}"
    )
    console.print(head)  # the notices were printed when the search started
    if getattr(result, "architectures", 0):
        console.print(f"{result.architectures} distinct architectures completed")
    if getattr(result, "duplicates", 0):
        console.print(
            f"{result.duplicates} duplicate{'s' if result.duplicates != 1 else ''} skipped "
            f"(architecture already trained), saving ~{result.saved_seconds:.0f} s of training"
        )
    if getattr(result, "over_budget", 0):
        console.print(f"{result.over_budget} trials over the params/FLOPs budget (pruned, not trained)")
    if result.stopped_reason and not getattr(result, "error", None):
        console.print(f"stopped early: {result.stopped_reason}")
    for design, why in getattr(result, "missing_baselines", ()):
        console.print(f"baseline {design} has no result: {why}", soft_wrap=True)
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
    confirmation = getattr(result, "confirmation", None)
    if confirmation is not None:
        from resattn.cli.confirm import print_confirmation

        print_confirmation(confirmation, console)
    elif result.best is not None:
        console.print(
            f"the best proxy score may be a lucky draw: confirm the top with resattn confirm --storage {storage} "
            f"--study {result.study_name} --top 3", soft_wrap=True,
        )
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
    init: InitOpt = None,
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
                     help="Stop before --trials once the last half of the search improved the best by less than "
                          "the proxy's noise (measured by resattn confirm/validate, else search.convergence_noise; "
                          "one objective, single process)."),
    ] = False,
    confirm: Annotated[
        int | None,
        typer.Option("--confirm", help="Then run resattn confirm on the K best distinct architectures (and the "
                                       "baselines), 5 paired seeds.", min=1, metavar="K"),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Run (or continue) a placement study until --trials trials have finished."""
    from resattn.study.search import run_search

    setup_logging(verbose)
    overrides = list(set_ or [])
    if dataset is not None:
        overrides.append(f"data.dataset={dataset}")
    if epochs is not None:
        overrides.append(f"train.epochs={epochs}")
    if init is not None:
        overrides.append(f"train.init={init}")
    if max_params is not None:
        overrides.append(f"search.max_params={max_params}")
    if max_flops is not None:
        overrides.append(f"search.max_flops={max_flops}")
    space_obj, recipe_obj = guard(lambda: load_inputs(space, recipe, overrides))
    live = err_console.is_terminal and not os.environ.get("CI")
    console = err_console if live else out_console
    with _Reporter(console, live) as reporter:
        result = guard(
            lambda: run_search(
                space_obj, recipe_obj, trials=trials, storage=storage, study_name=study,
                timeout=timeout, device=device, seed=seed, reporter=reporter,
                workers=workers, gpus=gpus, workers_per_gpu=workers_per_gpu,
                stop_when_converged=stop_when_converged,
            )
        )
    with signals_deferred():  # a signal now lets the summary finish, then exits 130 / 143
        fault_signal("summary")
        _print_summary(result, out_console)
    if result.interrupted:
        raise typer.Exit(EXIT_TERMINATED if result.interrupted == "SIGTERM" else EXIT_INTERRUPTED)
    if result.error:
        raise fail(result.error, result.error_code)
    if confirm is not None:
        from resattn.cli.confirm import print_confirmation, run_confirmation

        out_console.print(f"confirming the {confirm} best distinct architectures and the baselines "
                          "(resattn confirm, 5 paired seeds)")
        report = run_confirmation(storage, result.study_name, top=confirm, seeds=5, epochs=None, images=None,
                                  device=device, as_json=False)
        print_confirmation(report)
