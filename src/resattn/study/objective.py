"""One trial: sample a network from the space, check it against the budgets and the study's earlier
trials, train the proxy on the data held on the device, report each epoch to the pruner, and record
what happened on the trial (DESIGN.md §4–5). The library reports through a :class:`SearchReporter`
(the CLI draws it) and logs; it never prints."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import optuna
import torch
from optuna.trial import FrozenTrial

from resattn.errors import ConfigError, ResattnError, SpecError, Terminated, check_stop, fault_signal
from resattn.model.spec import NetSpec
from resattn.model.stats import model_stats
from resattn.study import keys
from resattn.study.dedup import arch_hash, find_original
from resattn.study.notes import trial_note
from resattn.study.recipe import Recipe
from resattn.study.records import pack_bits
from resattn.study.space import SearchSpace, placement, residual_spec, sample
from resattn.training.data import Dataset, ImageData, load_dataset, split_train_val, subset_images
from resattn.training.loop import EpochResult, OutOfMemory, TrainingDiverged, train
from resattn.training.warmstart import InitWeights, check_fits, initial_model, read_init, spec_shapes

__all__ = [
    "FAULT_NAN_ENV",
    "FAULT_SLEEP_ENV",
    "TRIAL_FAILURES",
    "NullReporter",
    "Objective",
    "ProxyData",
    "SearchReporter",
    "TrialFailed",
    "budget_constraints",
    "check_init",
    "over_budget",
    "prepare_data",
]

log = logging.getLogger(__name__)


_HOSTNAME = socket.gethostname()


#: Fault injection for tests: comma-separated trial numbers whose model outputs NaN.
FAULT_NAN_ENV = "RESATTN_FAULT_NAN_TRIALS"


#: Fault injection for tests: ``N`` or ``N:SECONDS``: trial number N sleeps (default 60 s) before
#: sampling, so a test can kill its process mid-trial. Retries of trial N (other numbers) do not sleep.
FAULT_SLEEP_ENV = "RESATTN_FAULT_SLEEP_TRIAL"


class TrialFailed(RuntimeError):
    """An unexpected error inside one trial: the trial fails with the error as its ``fail_reason``
    (the traceback goes to the debug log, ``-v``) and the study goes on."""


#: What fails one trial without stopping the study (Optuna's ``catch``); a
#: :class:`~resattn.errors.ResattnError` (bad input) or a ``KeyboardInterrupt`` stops the run.
TRIAL_FAILURES = (TrainingDiverged, OutOfMemory, TrialFailed)


class SearchReporter(Protocol):
    """What the search tells its caller (the CLI draws it; tests may record it)."""

    def study_started(self, study: optuna.Study, target: int, finished: int) -> None: ...
    def trial_started(self, number: int, spec: NetSpec, params: int, flops: int) -> None: ...
    def epoch_done(self, number: int, result: EpochResult, epochs: int) -> None: ...
    def trial_finished(self, study: optuna.Study, trial: FrozenTrial, finished: int) -> None: ...


class NullReporter:
    def study_started(self, study: optuna.Study, target: int, finished: int) -> None:
        pass

    def trial_started(self, number: int, spec: NetSpec, params: int, flops: int) -> None:
        pass

    def epoch_done(self, number: int, result: EpochResult, epochs: int) -> None:
        pass

    def trial_finished(self, study: optuna.Study, trial: FrozenTrial, finished: int) -> None:
        pass


@dataclass
class ProxyData:
    train: ImageData
    val: ImageData
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    input_size: tuple[int, int, int]


def prepare_data(recipe: Recipe, device: torch.device) -> tuple[Dataset, ProxyData]:
    """Load the recipe's dataset, split validation off the training set (seeded), take the proxy
    budget's subset, and move both parts to ``device`` once. The test split is not used."""
    cfg = recipe.data
    dataset = load_dataset(
        cfg.dataset, data_dir=cfg.data_dir or None, download=True, image_size=cfg.image_size
    )
    fault_signal("data")
    train_part, val_part = split_train_val(dataset.train, cfg.val_fraction, recipe.search.seed)
    if cfg.train_images:
        train_part = subset_images(train_part, cfg.train_images, recipe.search.seed)
    if len(train_part) < 2 or len(val_part) < 1:
        raise ConfigError(
            f"dataset {dataset.name} leaves {len(train_part)} training and {len(val_part)} validation images "
            f"(data.val_fraction={cfg.val_fraction}, data.train_images={cfg.train_images}); a trial needs at "
            "least 2 and 1", key="data",
        )
    h, w = dataset.image_size
    data = ProxyData(
        train=train_part.to(device),
        val=val_part.to(device),
        mean=dataset.mean,
        std=dataset.std,
        num_classes=dataset.num_classes,
        input_size=(dataset.in_channels, h, w),
    )
    return dataset, data


def check_init(space: SearchSpace, recipe: Recipe) -> InitWeights | None:
    """The weights of the recipe's ``train.init`` (``None`` for ``scratch``), checked against the space's
    all-residual network before any study is touched: a missing or unreadable file, or one that does
    not hold every tensor of that network with its shape (the head excepted: another number of classes
    starts a fresh head), is a one-line :class:`~resattn.errors.ConfigError`. A trial's own placement
    then loads what it can (a ``plain`` slot, say, starts fresh) and records what it loaded."""
    weights = read_init(recipe.train.init)
    if weights is not None:
        report, _ = check_fits(spec_shapes(residual_spec(space)), weights)
        if report.new_other:  # the file must hold the whole all-residual network (its head may differ)
            missing = ", ".join(report.new_other[:3]) + (", …" if len(report.new_other) > 3 else "")
            raise ConfigError(
                f"{str(weights.path)!r} lacks {len(report.new_other)} tensors of the all-residual network of space "
                f"{space.name!r} ({missing}): it was trained for another backbone (layer names and widths must match "
                "the space's slots)", key="train.init",
            )
        log.info("train.init %s (%s): %s", weights.path, weights.form, report.describe())
    return weights


def _fault_sleep() -> tuple[int | None, float]:
    raw = os.environ.get(FAULT_SLEEP_ENV, "").strip()
    if not raw:
        return None, 0.0
    number, _, seconds = raw.partition(":")
    return int(number), float(seconds or 60)


def _fault_nan_trials() -> set[int]:
    raw = os.environ.get(FAULT_NAN_ENV, "")
    return {int(x) for x in raw.split(",") if x.strip().isdigit()}


class Objective:
    """One trial: sample a spec, check it, train the proxy, report each epoch, return the objectives."""

    def __init__(
        self,
        space: SearchSpace,
        recipe: Recipe,
        data: ProxyData,
        device: torch.device,
        reporter: SearchReporter,
        artifact_dir: str | None = None,
        init: InitWeights | None = None,
    ):
        """``init``: the weights of ``recipe.train.init``, read once by the caller (:func:`check_init`);
        read here when the recipe names a checkpoint and none are given."""
        self.space = space
        self.artifact_dir = artifact_dir
        self.init = init if init is not None or not recipe.train.warm else read_init(recipe.train.init)
        self.recipe = recipe
        self.data = data
        self.device = device
        self.reporter = reporter
        self.objectives = tuple(recipe.search.objectives)
        self.nan_trials = _fault_nan_trials()
        self.sleep_trial, self.sleep_seconds = _fault_sleep()
        self.slot_names = tuple(slot.name for slot in space.slots)

    def __call__(self, trial: optuna.Trial) -> float | Sequence[float]:
        # Who runs it: a restart on this host fails the RUNNING trials of dead processes (journal files).
        trial.set_user_attr(keys.HOSTNAME, _HOSTNAME)
        trial.set_user_attr(keys.WORKER_PID, os.getpid())
        if trial.user_attrs.get(keys.FAIL_REASON):  # a retry inherits the failed trial's user attributes
            trial.set_user_attr(keys.FAIL_REASON, None)
        try:
            if trial.number == self.sleep_trial:
                log.warning("fault injection: trial %d sleeps %.0f s", trial.number, self.sleep_seconds)
                time.sleep(self.sleep_seconds)
            return self._run(trial)
        except KeyboardInterrupt as err:
            how = "SIGTERM" if isinstance(err, Terminated) else "Ctrl-C"
            trial.set_user_attr(keys.FAIL_REASON, f"interrupted by the user ({how})")
            raise
        except (optuna.TrialPruned, TrainingDiverged, OutOfMemory):
            raise
        except TrialFailed as err:
            trial.set_user_attr(keys.FAIL_REASON, str(err))
            raise
        except (ResattnError, SpecError) as err:  # bad input: the run stops with this error
            trial.set_user_attr(keys.FAIL_REASON, f"{type(err).__name__}: {_first_line(err)}")
            raise
        except Exception as err:
            reason = f"{type(err).__name__}: {_first_line(err)}"
            log.debug("trial %d failed: %s", trial.number, reason, exc_info=True)
            trial.set_user_attr(keys.FAIL_REASON, reason)
            raise TrialFailed(reason) from err

    def _run(self, trial: optuna.Trial) -> float | Sequence[float]:
        called = time.perf_counter()
        spec = sample(trial, self.space, num_classes=self.data.num_classes)
        if spec.in_channels != self.data.input_size[0]:
            spec = dataclasses.replace(spec, in_channels=self.data.input_size[0])
        stats = model_stats(spec, self.data.input_size)
        trial.set_user_attr(keys.SPEC, spec.to_json())
        trial.set_user_attr(keys.PLACEMENT, [f"{slot}={short}" for slot, short in placement(spec, self.space)])
        trial.set_user_attr(keys.PARAMS, stats.params)
        trial.set_user_attr(keys.FLOPS, stats.flops)
        trial.set_user_attr(keys.DEVICE, str(self.device))
        digest = arch_hash(spec)
        trial.set_user_attr(keys.ARCH_HASH, digest)
        if self.recipe.search.max_params or self.recipe.search.max_flops:
            # Read by TPE / NSGA-II (≤ 0 feasible); set on every trial of a budgeted study.
            constraints = budget_constraints(stats.params, stats.flops, self.recipe)
            for key, value in zip(("params", "flops"), constraints, strict=True):
                trial.set_constraint(key, value)
        _save_note(trial, spec, stats.params, stats.flops, self.slot_names)
        self.reporter.trial_started(trial.number, spec, stats.params, stats.flops)

        # Over budget: decided from the spec alone, before any model is built or data touched.
        over = over_budget(stats.params, stats.flops, self.recipe)
        if over:
            trial.set_user_attr(keys.FAIL_REASON, over)
            trial.set_user_attr(keys.EPOCHS_RUN, 0)
            raise optuna.TrialPruned(over)

        # The same network already trained in this study: return its result instead of training again.
        original = find_original(trial.study.get_trials(deepcopy=False), digest, exclude=trial.number)
        if original is not None:
            self._attach_model_file(trial, spec)  # its page offers the file too
            return self._duplicate(trial, original, called)

        model, report = initial_model(spec, self.recipe.train, self.init)
        if report is not None and self.init is not None:
            trial.set_user_attr(keys.INIT, {"init": self.init.init, "sha256": self.init.sha256, **report.to_dict()})
        if trial.number in self.nan_trials:
            log.warning("fault injection: trial %d produces NaN outputs", trial.number)
            model.register_forward_hook(lambda _m, _i, out: out * float("nan"))
        started = time.perf_counter()
        epochs = self.recipe.train.epochs
        single = len(self.objectives) == 1
        # A baseline always trains every epoch: its values reach the pruner as information only.
        baseline = trial.user_attrs.get(keys.DESIGN) is not None

        def on_epoch(result: EpochResult) -> None:
            acc = float(result.val_accuracy if result.val_accuracy is not None else float("nan"))
            trial.set_user_attr(keys.EPOCHS_RUN, result.epoch)
            if result.execution is not None and result.epoch == 1:  # how it ran, as chosen on this device
                trial.set_user_attr(keys.PRECISION, result.execution.precision)
                trial.set_user_attr(keys.CHANNELS_LAST, result.execution.channels_last)
                trial.set_user_attr(keys.COMPILED, result.execution.compile)
            trial.set_user_attr(keys.SECONDS, round(time.perf_counter() - started, 3))
            trial.set_user_attr(keys.IMAGES_PER_SECOND, round(result.images_per_second, 1))
            if single:
                trial.report(acc, result.epoch)
            self.reporter.epoch_done(trial.number, result, epochs)
            fault_signal("trial")
            _fault_signal_in_finalizer()
            check_stop()  # a signal whose exception something swallowed stops the trial here
            # The last epoch's value is the result; pruning then would only discard a finished trial.
            if single and not baseline and result.epoch < epochs and trial.should_prune():
                reason = f"pruned after epoch {result.epoch} (val_accuracy {acc:.4f})"
                trial.set_user_attr(keys.FAIL_REASON, reason)
                raise optuna.TrialPruned(reason)

        try:
            result = train(
                model, self.data.train, self.data.val, self.recipe.train,
                device=self.device, mean=self.data.mean, std=self.data.std, on_epoch=on_epoch,
            )
        except (TrainingDiverged, OutOfMemory) as err:
            trial.set_user_attr(keys.FAIL_REASON, f"{type(err).__name__}: {err}")
            raise
        finally:
            trial.set_user_attr(keys.SECONDS, round(time.perf_counter() - started, 3))
            del model
        trial.set_user_attr(keys.IMAGES_PER_SECOND, round(result.images_per_second, 1))
        if result.val_correct is not None:  # per validation image, for paired tests between trials
            trial.set_user_attr(keys.VAL_CORRECT, pack_bits(result.val_correct.numpy()))
        self._attach_model_file(trial, spec)
        acc = float(result.val_accuracy if result.val_accuracy is not None else float("nan"))
        if not math.isfinite(acc):  # Optuna would fail the trial without saying why
            raise TrialFailed(f"validation accuracy is {acc}")
        values = {"val_accuracy": acc, "params": float(stats.params), "flops": float(stats.flops)}
        if single:
            return acc
        return [values[o] for o in self.objectives]

    def _duplicate(self, trial: optuna.Trial, original: FrozenTrial, called: float) -> float | Sequence[float]:
        """Record that ``trial`` is ``original`` again, replay its epochs, return its values.

        ``seconds`` is this trial's own (tiny) wall time; ``images_per_second`` is the original's
        (a property of the architecture on this device).
        """
        saved = float(original.user_attrs.get(keys.SECONDS) or 0.0)
        trial.set_user_attr(keys.DUPLICATE_OF, original.number)
        trial.set_user_attr(keys.SAVED_SECONDS, round(saved, 3))
        trial.set_user_attr(keys.EPOCHS_RUN, original.user_attrs.get(keys.EPOCHS_RUN))
        trial.set_user_attr(keys.IMAGES_PER_SECOND, original.user_attrs.get(keys.IMAGES_PER_SECOND))
        trial.set_user_attr(keys.SECONDS, round(time.perf_counter() - called, 6))
        log.info("trial %d is the architecture of trial %d: not trained again", trial.number, original.number)
        assert original.values is not None
        if len(self.objectives) == 1:
            for step, value in sorted(original.intermediate_values.items()):
                trial.report(value, step)
            return float(original.values[0])
        return [float(v) for v in original.values]


    def _attach_model_file(self, trial: optuna.Trial, spec: NetSpec) -> None:
        """The trial's standalone model file as an Optuna artifact (optuna-dashboard offers it for
        download on the trial's page). Only while the trial runs can it take one; a failure to attach
        is logged, never a failed trial."""
        if self.artifact_dir is None:
            return
        import tempfile
        from pathlib import Path

        from optuna.artifacts import FileSystemArtifactStore, upload_artifact

        from resattn.export.source import ExportError, write_export

        try:
            Path(self.artifact_dir).mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix="resattn-trial-") as tmp:
                header = {"study": trial.study.study_name, "trial": trial.number,
                          "placement": trial.user_attrs.get(keys.PLACEMENT) or []}
                path = write_export(Path(tmp) / f"trial{trial.number}.py", spec, header=header)
                upload_artifact(artifact_store=FileSystemArtifactStore(self.artifact_dir), file_path=str(path),
                                study_or_trial=trial, mimetype="text/x-python")
        except (OSError, ExportError) as err:
            log.warning("trial %d: model file not attached as an artifact (%s)", trial.number, err)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class _SignalInFinalizer:
    """Fault injection (phase ``swallowed``): the signal arrives while a finalizer runs, where the
    exception its handler raises is swallowed by the interpreter ("Exception ignored in ...")."""

    def __del__(self) -> None:
        fault_signal("swallowed")
        for _ in range(3):  # a backward jump: the interpreter runs the pending handler here
            pass


def _fault_signal_in_finalizer() -> None:
    _SignalInFinalizer()


def budget_constraints(params: int, flops: int, recipe: Recipe) -> list[float]:
    """``[params / max_params - 1, flops / max_flops - 1]``: ≤ 0 within budget; 0 for "no limit".

    Relative rather than absolute excess, so that a FLOP excess (~1e8) does not drown a parameter
    excess (~1e5) when the sampler sums the violations.
    """
    limits = ((params, recipe.search.max_params), (flops, recipe.search.max_flops))
    return [float(value) / limit - 1.0 if limit else 0.0 for value, limit in limits]


def over_budget(params: int, flops: int, recipe: Recipe) -> str | None:
    """The reason a model is over the recipe's limits, or ``None``."""
    cfg = recipe.search
    if cfg.max_params and params > cfg.max_params:
        return f"over budget: params {params} > max {cfg.max_params}"
    if cfg.max_flops and flops > cfg.max_flops:
        return f"over budget: flops {flops} > max {cfg.max_flops}"
    return None


def _save_note(trial: optuna.Trial, spec: NetSpec, params: int, flops: int, slots: Sequence[str]) -> None:
    """The trial's dashboard note: its placement as a table, params and FLOPs."""
    try:
        from optuna_dashboard import save_note
    except ImportError:  # the dashboard is optional at run time
        return
    design = trial.user_attrs.get(keys.DESIGN)
    save_note(trial, trial_note(spec, params=params, flops=flops, slots=slots, design=design))
