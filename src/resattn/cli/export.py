"""``resattn export`` / ``resattn train``: turn a study's winner into a file, and train it fully."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress

from resattn.cli.common import (
    DEFAULT_STORAGE,
    BestOpt,
    InitOpt,
    StorageOpt,
    StudyOpt,
    TrialOpt,
    err_console,
    fail,
    guard,
    new_progress,
    out_console,
    resolve_file,
    setup_logging,
)
from resattn.errors import interrupt_exit_code

FORMATS = ("py", "onnx")



# ------------------------------------------------------------------------------------------- export


def export_cmd(
    storage: StorageOpt = DEFAULT_STORAGE,
    study: StudyOpt = None,
    trial: TrialOpt = None,
    best: BestOpt = False,
    out: Annotated[
        Path | None, typer.Option(help="File to write [default: studies/winner.py, or .onnx with --format onnx].")
    ] = None,
    class_name: Annotated[str, typer.Option(help="Name of the network class in the .py file.")] = "ResAttnNet",
    format_: Annotated[
        str, typer.Option("--format", help="py: one readable PyTorch file; onnx: an ONNX model.")
    ] = "py",
    weights: Annotated[
        Path | None,
        typer.Option(help="ONNX only: weights.pt (or checkpoint.pt) from resattn train [default: fresh weights]; "
                          "without --study/--trial/--best the spec.json next to it gives the architecture."),
    ] = None,
    image_size: Annotated[int, typer.Option(help="ONNX only: input height and width.", min=4, max=1024)] = 32,
) -> None:
    """Export a trial's architecture: a self-contained .py file (imports only torch) or an ONNX model."""
    from resattn.analysis.winner import export_trial, trial_spec
    from resattn.export.onnx import export_onnx

    setup_logging(False)
    fmt = format_.strip().lower()
    if fmt not in FORMATS:
        raise fail(f"--format: unknown format {format_!r}; allowed: {', '.join(FORMATS)}")
    if fmt == "py":
        if weights is not None:
            raise fail("--weights: only used with --format onnx (the .py file holds no weights; load weights.pt "
                        "into build_model() with load_state_dict)")
        target = out if out is not None else Path("studies/winner.py")
        def picked(number: int, why: str) -> None:
            if best:
                out_console.print(f"exporting trial {number}: {why}", soft_wrap=True)

        path = guard(lambda: export_trial(storage, study, trial=trial, best=best, out=target,
                                          class_name=class_name, on_pick=picked))
        out_console.print(f"wrote {path}")
        out_console.print(
            f"use it: python -c \"import runpy; m = runpy.run_path('{path}')['build_model'](); print(m)\"",
            soft_wrap=True,
        )
        return

    from_folder = weights is not None and (weights.parent / "spec.json").is_file()
    if trial is None and not best and study is None and weights is not None and from_folder:
        # The folder of resattn train: its spec.json says which architecture the weights belong to.
        from resattn.training.retrain import spec_from_file

        spec = guard(lambda: spec_from_file(weights.parent / "spec.json"))
        what = f"spec {weights.parent / 'spec.json'}"
    else:
        spec, study_name, number, why = guard(lambda: trial_spec(storage, study, trial=trial, best=best))
        what = f"study {study_name}, trial {number}"
        if best:
            out_console.print(f"exporting trial {number}: {why}", soft_wrap=True)
    target = out if out is not None else Path("studies/winner.onnx")
    if weights is None:
        err_console.print("warning: no --weights given: exporting freshly initialised (untrained) weights; "
                          "train them with resattn train and pass --weights .../weights.pt", soft_wrap=True)
    result = guard(lambda: export_onnx(spec, target, weights=weights, image_size=image_size))
    out_console.print(f"wrote {result.path} ({what}, opset {result.opset}"
                      f"{', untrained weights' if result.fresh_weights else f', weights {weights}'})")
    if result.max_abs_diff is None:
        out_console.print("onnxruntime is not installed: the ONNX model was not checked against PyTorch")
    else:
        out_console.print(f"onnxruntime check: max |PyTorch - ONNX| = {result.max_abs_diff:.2e} (ok, < 1e-4)")


# -------------------------------------------------------------------------------------------- train


class _TrainProgress:
    """Epoch progress of ``resattn train``: a rich bar on a terminal, plain lines otherwise."""

    def __init__(self, live: bool, header: str):
        self.live = live
        self.header = header
        self.progress: Progress | None = None
        self.task: Any = None
        self.console = err_console if live else out_console

    def __enter__(self) -> _TrainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def start(self, first_epoch: int, epochs: int, notes: list[str]) -> None:
        out_console.print(self.header, soft_wrap=True)
        for note in notes:
            self.console.print(f"note: {note}", soft_wrap=True)
        if first_epoch > epochs:
            self.console.print(f"the checkpoint holds all {epochs} epochs: nothing left to train; measuring the "
                               "test accuracy and writing the weights")
        elif first_epoch > 1:
            self.console.print(f"resuming at epoch {first_epoch} of {epochs}")
        if self.live:
            self.progress = new_progress(self.console)
            self.progress.start()
            self.task = self.progress.add_task("training", total=epochs, completed=first_epoch - 1)

    def epoch_done(self, result: Any, epochs: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=result.epoch,
                                 description=f"loss {result.train_loss:.3f}  {result.images_per_second:.0f} img/s")
        else:
            self.console.print(f"epoch {result.epoch}/{epochs}: loss {result.train_loss:.3f} "
                               f"({result.images_per_second:.0f} img/s, {result.seconds:.1f} s)")


def _train_inputs(
    study: str | None, trial: int | None, best: bool, spec_file: Path | None, model_file: Path | None,
    storage: str, recipe: str, overrides: list[str], space: str | None = None,
) -> tuple[Any, str, str, Any, int | None]:
    from resattn.analysis.winner import trial_spec
    from resattn.errors import ConfigError
    from resattn.study.recipe import load_recipe
    from resattn.training.retrain import spec_from_file, spec_from_model_file

    given = [name for name, v in (("--study", study is not None or trial is not None or best),
                                  ("--spec", spec_file), ("--model", model_file), ("--space", space)) if v]
    if len(given) != 1:
        what = "none" if not given else " and ".join(given)
        raise ConfigError(f"give exactly one architecture: --study NAME [--trial N | --best], --spec FILE.json, "
                          f"--model FILE.py or --space NAME (got {what})")
    if space is not None:
        from resattn.study.space import load_space, residual_spec

        space_obj = load_space(resolve_file(space, "space"))
        spec = residual_spec(space_obj)
        source, name = f"space {space_obj.name} all-residual", f"{space_obj.name}-all-residual"
    elif spec_file is not None:
        spec, source, name = spec_from_file(spec_file), f"spec {spec_file}", spec_file.stem
    elif model_file is not None:
        spec, source, name = spec_from_model_file(model_file), f"model {model_file}", model_file.stem
    else:
        spec, study_name, number, why = trial_spec(storage, study, trial=trial, best=best, action="trained")
        if best:
            out_console.print(f"training trial {number}: {why}", soft_wrap=True)
        from resattn.study.storage import redact as _redact

        source, name = f"study {study_name} trial {number} ({_redact(storage)})", f"{study_name}-trial{number}"
    recipe_obj = load_recipe(resolve_file(recipe, "search"))
    if overrides:
        recipe_obj = recipe_obj.with_overrides(overrides)
    # The proxy budget (data.train_images) is for search trials; full training ignores it unless
    # it is given on the command line.
    given = any(item.partition("=")[0].strip() == "data.train_images" for item in overrides)
    return spec, source, name, recipe_obj, recipe_obj.data.train_images if given else None


def train_cmd(
    recipe: Annotated[str, typer.Option(help="Recipe TOML file or shipped name: dataset and training settings.")],
    study: Annotated[str | None, typer.Option(help="Train a trial of this study (with --trial N or --best).")] = None,
    trial: TrialOpt = None,
    best: BestOpt = False,
    spec: Annotated[Path | None, typer.Option("--spec", help="Train the NetSpec in this JSON file.")] = None,
    model: Annotated[
        Path | None, typer.Option("--model", help="Train the architecture of a file written by resattn export.")
    ] = None,
    space: Annotated[
        str | None,
        typer.Option("--space", help="Train the all-residual network of this search space (file or shipped name): "
                                     "the weights a warm-started search of it starts from (train.init)."),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Override the recipe's train.epochs.", min=1)] = None,
    init: InitOpt = None,
    search_split: Annotated[
        bool,
        typer.Option("--search-split",
                     help="Leave out the validation images a search with this recipe scores trials on (its seeded "
                          "data.val_fraction): weights for a warm-started search (train.init) must not have "
                          "seen them."),
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Output folder [default: studies/train-<name>].")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the checkpoint in --out.")] = False,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    storage: StorageOpt = DEFAULT_STORAGE,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a recipe value, e.g. --set train.lr=0.1 (repeatable). The recipe's "
                                   "proxy budget data.train_images is ignored (every training image is used) "
                                   "unless given here: --set data.train_images=N trains on a seeded subset."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Train one architecture fully (all training images, test accuracy at the end); writes weights.pt,
    spec.json and metrics.json, with a checkpoint every epoch (--resume continues it)."""
    from resattn.training.retrain import default_out_dir, run_training

    setup_logging(verbose)
    overrides = list(set_ or [])
    if epochs is not None:
        overrides.append(f"train.epochs={epochs}")
    if init is not None:
        overrides.append(f"train.init={init}")
    spec_obj, source, name, recipe_obj, train_images = guard(
        lambda: _train_inputs(study, trial, best, spec, model, storage, recipe, overrides, space)
    )
    out_dir = out if out is not None else default_out_dir(name)
    start = f" from {recipe_obj.train.init}" if recipe_obj.train.warm else ""
    header = (f"training {source}{start} on {recipe_obj.data.dataset} for {recipe_obj.train.epochs} epochs "
              f"into {out_dir}")
    live = err_console.is_terminal and not os.environ.get("CI")
    try:
        with _TrainProgress(live, header) as progress:
            run = guard(lambda: run_training(
                spec_obj, recipe_obj.data, recipe_obj.train, seed=recipe_obj.search.seed, out=out_dir,
                source=source, device=device, resume=resume, train_images=train_images, search_split=search_split,
                fit_data=space is not None,
                on_start=progress.start, on_epoch=progress.epoch_done,
            ))
    except KeyboardInterrupt as err:
        err_console.print(f"interrupted: the last finished epoch is checkpointed in {out_dir}; continue with "
                          "the same command plus --resume", soft_wrap=True)
        raise typer.Exit(interrupt_exit_code(err)) from None
    out_console.print(
        f"test accuracy {run.test_accuracy:.4f} on the {run.evaluated_on}; {run.epochs} epochs, "
        f"{run.seconds:.0f} s, {run.images_per_second:.0f} img/s on {run.device}", soft_wrap=True,
    )
    out_console.print(f"wrote {out_dir / 'weights.pt'}, spec.json, metrics.json")
    out_console.print(f"export to ONNX: resattn export --format onnx --weights {out_dir / 'weights.pt'} "
                      f"--out {out_dir / 'model.onnx'}", soft_wrap=True)
