"""Full training of one architecture (``resattn train``): the winner of a study, a spec file or an
exported ``.py`` file, trained with the fast loop of :mod:`resattn.training.loop` on the recipe's dataset.

Full training uses the whole training split (no validation split, and no proxy budget unless
``train_images`` is given) and measures the test split once, after the last epoch. A dataset
without a test split holds out the recipe's ``data.val_fraction`` instead (seeded by
``search.seed``) and says so in ``metrics.json``.

The output folder holds ``spec.json`` (written first), ``checkpoint.pt`` (after every epoch,
atomically: model, optimiser, epoch, scheduler step, batch-order and torch RNG states, spec and
training config), and at the end ``weights.pt`` (a plain ``state_dict`` on the CPU, loadable
with ``torch.load(weights_only=True)`` into :func:`resattn.build` or an exported file's model)
and ``metrics.json``. ``resume=True`` continues from the checkpoint's last finished epoch to the
same total number of epochs; it refuses a checkpoint made for another spec or training config.

``config.init = "checkpoint:PATH"`` (``resattn train --init``) starts from trained weights, loaded with
``strict=False`` (:mod:`resattn.training.warmstart`), at ``config.finetune_lr``. ``search_split=True``
trains only on the part of the training split a search with the same recipe trains on (its seeded
``data.val_fraction`` held out): weights meant for a warm-started search then never saw the images
that search scores its trials on.

Public API::

    spec_from_file(path) -> NetSpec           # a spec .json
    spec_from_model_file(path) -> NetSpec     # an exported .py file (its SPEC literal)
    run_training(spec, data, config, *, seed=0, out, source, device="auto", resume=False, train_images=None,
                 on_start=None, on_epoch=None) -> TrainingRun
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from resattn.errors import ConfigError, ResattnError, RunFailed, check_stop
from resattn.files import atomic_write
from resattn.model.spec import NetSpec, SpecError
from resattn.training.config import DataConfig, TrainConfig
from resattn.training.data import ImageData, load_dataset, split_train_val, subset_images
from resattn.training.loop import EpochResult, OutOfMemory, TrainingDiverged, evaluate, resolve_device, train
from resattn.training.warmstart import initial_model, read_init

__all__ = [
    "CHECKPOINT",
    "METRICS",
    "SPEC_FILE",
    "WEIGHTS",
    "TrainingRun",
    "default_out_dir",
    "run_training",
    "spec_from_file",
    "spec_from_model_file",
]

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "weights.pt"
SPEC_FILE = "spec.json"
METRICS = "metrics.json"
_CHECKPOINT_FORMAT = "resattn.checkpoint/1"


# ----------------------------------------------------------------------------------- architectures


def spec_from_file(path: str | os.PathLike[str]) -> NetSpec:
    """The NetSpec in a JSON file (``NetSpec.to_json()``, or ``spec.json`` of an earlier run)."""
    target = Path(path).expanduser()
    try:
        text = target.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read {str(target)!r}: {err.strerror or err}", key="--spec") from None
    try:
        return NetSpec.from_json(text)
    except SpecError as err:
        raise ConfigError(f"invalid spec: {err}", file=str(target)) from None
    except (TypeError, ValueError) as err:
        raise ConfigError(f"not a spec JSON file: {err}", file=str(target)) from None


def spec_from_model_file(path: str | os.PathLike[str]) -> NetSpec:
    """The ``SPEC`` literal of a file written by ``resattn export``.

    The file is parsed, never run: only a top-level ``SPEC = {...}`` made of literals is read
    (:func:`ast.literal_eval`), so a file of unknown origin cannot execute code here.
    """
    target = Path(path).expanduser()
    if not target.is_file():
        raise ConfigError(f"no such file: {str(target)!r}", key="--model")
    try:
        tree = ast.parse(target.read_bytes(), filename=str(target))
    except (SyntaxError, ValueError, OSError) as err:
        raise ConfigError(f"cannot read {str(target)!r} as Python: {err}", key="--model") from None
    raw: Any = None
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "SPEC"):
            try:
                raw = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, RecursionError):
                raise ConfigError(f"{str(target)!r}: SPEC is not a plain literal", key="--model") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{str(target)!r} has no SPEC literal; give a file written by resattn export",
                          key="--model")
    try:
        return NetSpec.from_dict(raw)
    except SpecError as err:
        raise ConfigError(f"invalid SPEC: {err}", file=str(target)) from None


def default_out_dir(name: str) -> Path:
    """``studies/train-<name>`` with ``name`` reduced to a safe file name."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "model"
    return Path("studies") / f"train-{safe[:80]}"


# ------------------------------------------------------------------------------------------ results


@dataclass
class TrainingRun:
    """A finished ``resattn train``: what ``metrics.json`` holds, plus the paths written."""

    out: Path
    test_accuracy: float
    epochs: int
    seconds: float  # training wall time over all (resumed) sessions, without data loading
    images_per_second: float
    device: str
    dataset: str
    source: str
    evaluated_on: str  # "test split (N images)" or "held-out X% of the training split (N images)"
    train_images: int
    resumed_from: int  # finished epochs found in the checkpoint (0: a fresh run)
    notes: list[str] = field(default_factory=list)
    execution: str = ""  # e.g. "bf16 autocast, channels_last, compiled" (resattn.training.precision)
    init: str = "scratch"  # config.init
    init_report: dict[str, Any] | None = None  # what a warm start loaded (resattn.training.warmstart.InitReport)

    def metrics(self) -> dict[str, Any]:
        return {
            "test_accuracy": self.test_accuracy,
            "epochs": self.epochs,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 1),
            "device": self.device,
            "dataset": self.dataset,
            "source": self.source,
            "evaluated_on": self.evaluated_on,
            "train_images": self.train_images,
            "resumed_from_epoch": self.resumed_from,
            "execution": self.execution,
            "init": self.init,
            **({"init_loaded": self.init_report} if self.init_report is not None else {}),
        }


# ------------------------------------------------------------------------------------------ files


def _save(obj: Any, target: Path) -> None:
    atomic_write(target, lambda fh: torch.save(obj, fh))


def _write_json(data: Any, target: Path) -> None:
    atomic_write(target, lambda fh: fh.write(json.dumps(data, indent=2) + "\n"), mode="w")


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def _load_checkpoint(path: Path, spec: NetSpec, config: TrainConfig) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"nothing to resume: no {CHECKPOINT} in {str(path.parent)!r}", key="--resume")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file
        first = str(err).strip().splitlines()[0] if str(err).strip() else "unreadable"
        raise ConfigError(f"cannot read {str(path)!r}: not a checkpoint written by resattn train "
                          f"({type(err).__name__}: {first})", key="--resume") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != _CHECKPOINT_FORMAT:
        raise ConfigError(f"{str(path)!r} is not a resattn training checkpoint", key="--resume")
    if ckpt.get("spec") != spec.to_json():
        raise ConfigError(
            f"the checkpoint in {str(path.parent)!r} was made for another architecture; resume with the same "
            "--study/--trial, --spec or --model, or train into another --out",
            key="--resume",
        )
    saved = ckpt.get("train") or {}
    # Keys added to TrainConfig later are missing from older checkpoints: they trained with the default.
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    changed = sorted(k for k, v in config.to_dict().items() if saved.get(k, defaults.get(k)) != v)
    if changed:
        listed = ", ".join(f"{k}={saved.get(k)!r} (now {config.to_dict()[k]!r})" for k in changed)
        raise ConfigError(
            f"the checkpoint was made with other training settings: {listed}; resume with the same "
            "--recipe, --epochs and --set values",
            key="--resume",
        )
    return ckpt


# ------------------------------------------------------------------------------------------ training


def _data_parts(
    cfg: DataConfig, seed: int, train_images: int | None, search_split: bool = False
) -> tuple[Any, ImageData, ImageData, str, list[str]]:
    dataset = load_dataset(cfg.dataset, data_dir=cfg.data_dir or None, download=True, image_size=cfg.image_size)
    notes: list[str] = []
    train_part = dataset.train
    if search_split:
        train_part, held = split_train_val(dataset.train, cfg.val_fraction, seed)
        notes.append(f"--search-split: the {len(held)} validation images a search with this recipe scores trials "
                     f"on (data.val_fraction={cfg.val_fraction}, search.seed={seed}) are left out of training")
    if dataset.test is not None and len(dataset.test) > 0:
        test_part = dataset.test
        evaluated_on = f"test split ({len(test_part)} images)"
    else:
        train_part, test_part = split_train_val(train_part if search_split else dataset.train, cfg.val_fraction, seed)
        evaluated_on = (f"held-out {cfg.val_fraction:.0%} of the training split ({len(test_part)} images; "
                        "the dataset has no test split)")
        notes.append(f"dataset {dataset.name} has no test split: holding out data.val_fraction="
                     f"{cfg.val_fraction} of the training images for the final accuracy")
    if train_images:
        train_part = subset_images(train_part, train_images, seed)
    return dataset, train_part, test_part, evaluated_on, notes


def _check_fits(spec: NetSpec, dataset: Any) -> None:
    if spec.num_classes != dataset.num_classes:
        raise ConfigError(f"the architecture has {spec.num_classes} outputs but dataset {dataset.name} has "
                          f"{dataset.num_classes} classes")
    if spec.in_channels != dataset.in_channels:
        raise ConfigError(f"the architecture takes {spec.in_channels}-channel images but dataset "
                          f"{dataset.name} has {dataset.in_channels} channels")


def run_training(
    spec: NetSpec,
    data: DataConfig,
    config: TrainConfig,
    *,
    seed: int = 0,
    out: str | os.PathLike[str],
    source: str,
    device: str | torch.device = "auto",
    resume: bool = False,
    train_images: int | None = None,
    search_split: bool = False,
    fit_data: bool = False,
    on_start: Callable[[int, int, list[str]], None] | None = None,
    on_epoch: Callable[[EpochResult, int], None] | None = None,
) -> TrainingRun:
    """Train ``spec`` fully on the ``data`` configuration with ``config`` (a recipe's ``[data]`` and
    ``[train]`` tables) and write the run into the folder ``out``. ``seed`` (the recipe's
    ``search.seed``) draws the held-out split of a dataset without a test split and the
    ``train_images`` subset.

    ``source`` describes where the spec came from (recorded in ``metrics.json``).
    ``train_images`` (> 0) trains on a seeded subset (a smoke run); ``None``/0 uses every image.
    ``search_split`` leaves out the validation images of a search with the same recipe (see the
    module docstring). ``config.init`` a checkpoint: a fresh run starts from its weights.
    ``fit_data`` takes the number of classes and input channels from the dataset (a spec made from a
    search space, which leaves them to the dataset) instead of refusing a spec that differs.
    ``on_start(first_epoch, epochs, notes)`` is called once before training (``first_epoch`` > 1
    when resuming), ``on_epoch(result, epochs)`` after every epoch, once its checkpoint is on disk.
    A ``KeyboardInterrupt`` propagates with the last finished epoch's checkpoint kept. Raises
    :class:`~resattn.errors.ResattnError` subclasses for bad input (one readable line), and
    :class:`~resattn.errors.RunFailed` when the loss diverges or the device runs out of memory.
    """
    dev = resolve_device(device)
    out_dir = Path(out).expanduser()
    ckpt_path = out_dir / CHECKPOINT
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{str(out_dir)!r} is a file; give a folder", key="--out")
    if not resume and ckpt_path.exists():
        raise ConfigError(
            f"{str(out_dir)!r} already holds a training checkpoint; add --resume to continue it, or choose "
            "another --out",
            key="--out",
        )
    # Bad input fails before the data loads: a checkpoint of another run, a bad init file.
    ckpt = _load_checkpoint(ckpt_path, spec, config) if resume and not fit_data else None
    weights = read_init(config.init) if not resume else None

    dataset, train_part, test_part, evaluated_on, notes = _data_parts(data, seed, train_images, search_split)
    if fit_data:
        spec = dataclasses.replace(spec, num_classes=dataset.num_classes, in_channels=dataset.in_channels)
        ckpt = _load_checkpoint(ckpt_path, spec, config) if resume else None
    _check_fits(spec, dataset)

    # Resuming: the checkpoint's weights replace the fresh ones below, so the init file is not read again.
    model, init_report = initial_model(spec, config if ckpt is None else dataclasses.replace(config, init="scratch"),
                                       weights)
    if init_report is not None and weights is not None:
        notes.append(f"starting from {weights.path} ({weights.form}, lr {config.peak_lr:g}): {init_report.describe()}")
    done = 0
    seconds = 0.0
    images = 0.0
    state: dict[str, Any] | None = None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"], strict=True)
        done = int(ckpt["epoch"])
        seconds = float(ckpt.get("seconds", 0.0))
        images = float(ckpt.get("images", 0.0))
        torch.set_rng_state(ckpt["rng"])
        if dev.type == "cuda" and ckpt.get("cuda_rng") is not None:
            with contextlib.suppress(RuntimeError):
                torch.cuda.set_rng_state(ckpt["cuda_rng"], dev)
        state = {"epoch": done, "optimizer": ckpt["optimizer"], "generator": ckpt["generator"]}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_json(json.loads(spec.to_json()), out_dir / SPEC_FILE)
    except OSError as err:
        raise ConfigError(f"cannot write into {str(out_dir)!r}: {err.strerror or err}", key="--out") from None

    if on_start is not None:
        on_start(done + 1, config.epochs, notes)

    def checkpoint(result: EpochResult, loop: dict[str, Any]) -> None:
        nonlocal seconds, images
        seconds += result.seconds
        images += result.images
        _save(
            {
                "format": _CHECKPOINT_FORMAT,
                "epoch": loop["epoch"],
                "epochs": config.epochs,
                "model": _cpu_state(model),
                "optimizer": loop["optimizer"],
                "generator": loop["generator"].cpu(),
                "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
                "spec": spec.to_json(),
                "train": config.to_dict(),
                "seconds": seconds,
                "images": images,
                "source": source,
            },
            ckpt_path,
        )

    def epoch_done(result: EpochResult) -> None:
        if on_epoch is not None:
            on_epoch(result, config.epochs)
        check_stop()  # a stop signal whose exception something swallowed ends the run here

    execution = None
    if done < config.epochs:
        try:
            execution = train(model, train_part, None, config, device=dev, mean=dataset.mean, std=dataset.std,
                              on_epoch=epoch_done, resume=state, on_checkpoint=checkpoint).execution
        except TrainingDiverged as err:
            raise RunFailed(f"training diverged: {err}; the last finished epoch is checkpointed in "
                            f"{str(out_dir)!r}; lower train.lr (--set train.lr=...) and train into another "
                            "--out") from None
        except OutOfMemory as err:
            raise RunFailed(f"{err}; lower train.batch_size (--set train.batch_size=...) and resume with "
                            "--resume") from None
    else:
        model.to(dev)
    bf16 = execution.bf16 if execution is not None else False
    accuracy = evaluate(model, test_part, device=dev, mean=dataset.mean, std=dataset.std,
                        batch_size=config.eval_batch_size, bf16=bf16,
                        channels_last=execution is not None and execution.channels_last)
    run = TrainingRun(
        out=out_dir,
        test_accuracy=accuracy,
        epochs=config.epochs,
        seconds=seconds,
        images_per_second=images / seconds if seconds > 0 else 0.0,
        device=str(dev),
        dataset=dataset.name,
        source=source,
        evaluated_on=evaluated_on,
        train_images=len(train_part),
        resumed_from=done,
        notes=notes,
        execution=execution.label() if execution is not None else "fp32 (evaluation only)",
        init=config.init,
        init_report=init_report.to_dict() if init_report is not None else None,
    )
    try:
        _save(_cpu_state(model), out_dir / WEIGHTS)
        _write_json(run.metrics(), out_dir / METRICS)
    except OSError as err:
        raise ResattnError(f"cannot write into {str(out_dir)!r}: {err.strerror or err}") from None
    return run
