"""The study: storage, sampler, pruner, the trial objective and the search loop (DESIGN.md §4).

The library reports progress through a :class:`SearchReporter` (the CLI draws it with rich) and
logs; it never prints.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import optuna
import torch
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from resattn.build import build
from resattn.data import Dataset, ImageData, load_dataset, split_train_val, subset_images
from resattn.dedup import ARCH_HASH_ATTR, arch_hash, find_original
from resattn.errors import ConfigError, StorageError, Terminated
from resattn.notes import trial_note
from resattn.recipe import Recipe
from resattn.space import SearchSpace, baseline_designs, placement, sample
from resattn.spec import NetSpec, SpecError
from resattn.stats import model_stats
from resattn.storage import open_storage, redact
from resattn.train import EpochResult, OutOfMemory, TrainingDiverged, resolve_device, train

__all__ = [
    "DEFAULT_STORAGE",
    "OBJECTIVES",
    "SearchReporter",
    "SearchResult",
    "TrialSummary",
    "budget_constraints",
    "convergence_callback",
    "default_study_name",
    "finished_count",
    "make_pruner",
    "make_sampler",
    "open_study",
    "over_budget",
    "run_search",
    "search_notices",
    "summarize",
]

log = logging.getLogger(__name__)

DEFAULT_STORAGE = "sqlite:///studies/resattn.db"
#: objective name -> optimisation direction
OBJECTIVES: dict[str, str] = {"val_accuracy": "maximize", "params": "minimize", "flops": "minimize"}
_HOSTNAME = socket.gethostname()
#: Stop the study after this many failed trials in a row (something is wrong with every trial).
MAX_CONSECUTIVE_FAILURES = 10
#: Fault injection for tests: comma-separated trial numbers whose model outputs NaN.
FAULT_NAN_ENV = "RESATTN_FAULT_NAN_TRIALS"
#: Fault injection for tests: ``N`` or ``N:SECONDS``: trial number N sleeps (default 60 s) before
#: sampling, so a test can kill its process mid-trial. Retries of trial N (other numbers) do not sleep.
FAULT_SLEEP_ENV = "RESATTN_FAULT_SLEEP_TRIAL"

# Study user attributes written at creation.
_ATTR_SPACE = "resattn.space"
_ATTR_SPACE_FP = "resattn.space_fingerprint"
_ATTR_RECIPE = "resattn.recipe"
_ATTR_RECIPE_FP = "resattn.recipe_fingerprint"
_ATTR_VERSION = "resattn.version"
#: Written last by the process that creates a study: its space, recipe and baselines are all stored.
_ATTR_READY = "resattn.ready"
#: How long a process that finds a study being created waits for :data:`_ATTR_READY`.
SETUP_WAIT_SECONDS = 30.0
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


def default_study_name(space: SearchSpace, recipe: Recipe) -> str:
    """``<space>-<recipe>``, e.g. ``seed-cifar10``."""
    return f"{space.name}-{recipe.name}"


def make_sampler(recipe: Recipe, *, seed: int | None) -> optuna.samplers.BaseSampler:
    """The recipe's sampler: ``tpe`` (multivariate + group), ``random`` or ``nsga2``.

    With ``search.max_params`` / ``search.max_flops`` set, every trial records its budget
    constraints with ``Trial.set_constraint`` (Optuna 5's replacement of the deprecated
    ``constraints_func``); TPE (c-TPE) and NSGA-II read them from the trials and steer away from
    over-budget regions. No sampler argument is needed.

    TPE always runs with ``constant_liar``: a trial RUNNING elsewhere (another local worker, or
    another machine on the same PostgreSQL study, which this process cannot count) is treated as a
    poor result, so parallel workers do not all propose the same placement. In a single process
    it changes nothing: the only RUNNING trial is the one being sampled, which TPE leaves out.
    """
    name = recipe.search.sampler
    if name == "tpe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                multivariate=True, group=True, seed=seed, constant_liar=True
            )
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    raise ConfigError(f"unknown sampler {name!r}; allowed: tpe, random, nsga2", key="search.sampler")


def make_pruner(recipe: Recipe) -> optuna.pruners.BasePruner:
    """The recipe's pruner; epochs are the pruning steps (resource = epochs)."""
    name = recipe.search.pruner
    epochs = recipe.train.epochs
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1), reduction_factor=3)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"unknown pruner {name!r}; allowed: hyperband, median, none", key="search.pruner")


def open_study(
    storage: BaseStorage,
    study_name: str,
    space: SearchSpace,
    recipe: Recipe,
    *,
    seed: int | None = None,
) -> tuple[optuna.Study, bool]:
    """Create the study, or load it if it exists. Returns ``(study, created)``.

    An existing study created with another space or recipe is refused with a
    :class:`StorageError`. A new study records its space and recipe and gets the baseline designs
    (all-residual and the notebooks' designs, where the space can express them) enqueued first.
    """
    objectives = list(recipe.search.objectives)
    directions = [OBJECTIVES[o] for o in objectives]
    sampler = make_sampler(recipe, seed=seed)
    pruner = make_pruner(recipe) if len(objectives) == 1 else optuna.pruners.NopPruner()
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if study_name in existing:
        study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner)
        _check_same_setup(study, space, recipe)
        return study, False
    try:
        study = optuna.create_study(
            study_name=study_name, storage=storage, directions=directions, sampler=sampler, pruner=pruner
        )
    except optuna.exceptions.DuplicatedStudyError:  # another worker created it meanwhile
        study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner)
        _check_same_setup(study, space, recipe)
        return study, False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(objectives)
    _record_setup(study, space, recipe)
    return study, True


def _record_setup(study: optuna.Study, space: SearchSpace, recipe: Recipe) -> None:
    """Store the study's space and recipe, enqueue the baselines, then mark the study ready."""
    from resattn import __version__

    study.set_user_attr(_ATTR_VERSION, __version__)
    study.set_user_attr(_ATTR_SPACE, space.to_dict())
    study.set_user_attr(_ATTR_SPACE_FP, space.fingerprint())
    study.set_user_attr(_ATTR_RECIPE, recipe.to_dict())
    study.set_user_attr(_ATTR_RECIPE_FP, recipe.fingerprint())
    for design, params in baseline_designs(space):
        study.enqueue_trial(params, user_attrs={"design": design}, skip_if_exists=True)
    study.set_user_attr(_ATTR_READY, True)


def _setup_attrs(study: optuna.Study) -> dict[str, Any]:
    """The study's user attributes once its creator has finished recording them.

    Several machines started together on a new study: one creates it and the others find it
    before its space and recipe are stored. They wait (up to :data:`SETUP_WAIT_SECONDS`) rather
    than refuse it as "created with another recipe".
    """
    deadline = time.monotonic() + SETUP_WAIT_SECONDS
    while True:
        attrs = study.user_attrs
        if attrs.get(_ATTR_READY):
            return attrs
        if study.get_trials(deepcopy=False) and (_ATTR_RECIPE_FP in attrs or _ATTR_VERSION not in attrs):
            # Trials exist: either a study made before the ready marker existed, or no resattn study.
            return attrs
        if time.monotonic() >= deadline:
            return attrs
        time.sleep(0.2)


def _check_same_setup(study: optuna.Study, space: SearchSpace, recipe: Recipe) -> None:
    attrs = _setup_attrs(study)
    if _ATTR_SPACE_FP not in attrs:
        raise StorageError(
            f"study {study.study_name!r} exists but was not created by resattn; name a new study with --study"
        )
    problems = []
    if attrs.get(_ATTR_SPACE_FP) != space.fingerprint():
        old = attrs.get(_ATTR_SPACE, {}).get("name", "?")
        problems.append(f"space {old!r} (now {space.name!r}, with different content)")
    if attrs.get(_ATTR_RECIPE_FP) != recipe.fingerprint():
        old = attrs.get(_ATTR_RECIPE, {})
        diff = _dict_diff(old, recipe.to_dict())
        problems.append(f"another recipe ({', '.join(diff[:4]) or 'content differs'})")
    if problems:
        raise StorageError(
            f"study {study.study_name!r} was created with {' and '.join(problems)}; "
            "continue it with the same space and recipe, or start a new study with --study NAME"
        )


def _dict_diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            if key == "path":
                continue
            out += _dict_diff(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    if old != new:
        return [f"{prefix.rstrip('.')}: {old!r} → {new!r}"]
    return []


def finished_count(study: optuna.Study) -> int:
    """Trials that finished (complete or pruned)."""
    return len(study.get_trials(deepcopy=False, states=FINISHED_STATES))


# ------------------------------------------------------------------------------------------ objective


class SearchReporter(Protocol):
    """What the search tells its caller (the CLI draws it; tests may record it)."""

    def study_started(self, study: optuna.Study, target: int, finished: int) -> None: ...
    def trial_started(self, number: int, spec: NetSpec, params: int, flops: int) -> None: ...
    def epoch_done(self, number: int, result: EpochResult, epochs: int) -> None: ...
    def trial_finished(self, study: optuna.Study, trial: FrozenTrial, finished: int) -> None: ...


class _NullReporter:
    def study_started(self, study: optuna.Study, target: int, finished: int) -> None:
        pass

    def trial_started(self, number: int, spec: NetSpec, params: int, flops: int) -> None:
        pass

    def epoch_done(self, number: int, result: EpochResult, epochs: int) -> None:
        pass

    def trial_finished(self, study: optuna.Study, trial: FrozenTrial, finished: int) -> None:
        pass


@dataclass
class _Data:
    train: ImageData
    val: ImageData
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    input_size: tuple[int, int, int]


def prepare_data(recipe: Recipe, device: torch.device) -> tuple[Dataset, _Data]:
    """Load the recipe's dataset, split validation off the training set (seeded), take the proxy
    budget's subset, and move both parts to ``device`` once. The test split is not used."""
    cfg = recipe.data
    dataset = load_dataset(
        cfg.dataset, data_dir=cfg.data_dir or None, download=True, image_size=cfg.image_size
    )
    train_part, val_part = split_train_val(dataset.train, cfg.val_fraction, recipe.search.seed)
    if cfg.train_images:
        train_part = subset_images(train_part, cfg.train_images, recipe.search.seed)
    h, w = dataset.image_size
    data = _Data(
        train=train_part.to(device),
        val=val_part.to(device),
        mean=dataset.mean,
        std=dataset.std,
        num_classes=dataset.num_classes,
        input_size=(dataset.in_channels, h, w),
    )
    return dataset, data


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
        data: _Data,
        device: torch.device,
        reporter: SearchReporter,
    ):
        self.space = space
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
        trial.set_user_attr("hostname", _HOSTNAME)
        trial.set_user_attr("worker_pid", os.getpid())
        if trial.user_attrs.get("fail_reason"):  # a retry inherits the failed trial's user attributes
            trial.set_user_attr("fail_reason", None)
        try:
            if trial.number == self.sleep_trial:
                log.warning("fault injection: trial %d sleeps %.0f s", trial.number, self.sleep_seconds)
                time.sleep(self.sleep_seconds)
            return self._run(trial)
        except KeyboardInterrupt as err:
            how = "SIGTERM" if isinstance(err, Terminated) else "Ctrl-C"
            trial.set_user_attr("fail_reason", f"interrupted by the user ({how})")
            raise

    def _run(self, trial: optuna.Trial) -> float | Sequence[float]:
        called = time.perf_counter()
        spec = sample(trial, self.space, num_classes=self.data.num_classes)
        if spec.in_channels != self.data.input_size[0]:
            spec = dataclasses.replace(spec, in_channels=self.data.input_size[0])
        stats = model_stats(spec, self.data.input_size)
        trial.set_user_attr("spec", spec.to_json())
        trial.set_user_attr("placement", [f"{slot}={short}" for slot, short in placement(spec, self.space)])
        trial.set_user_attr("params", stats.params)
        trial.set_user_attr("flops", stats.flops)
        trial.set_user_attr("device", str(self.device))
        digest = arch_hash(spec)
        trial.set_user_attr(ARCH_HASH_ATTR, digest)
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
            trial.set_user_attr("fail_reason", over)
            trial.set_user_attr("epochs_run", 0)
            raise optuna.TrialPruned(over)

        # The same network already trained in this study: return its result instead of training again.
        original = find_original(trial.study.get_trials(deepcopy=False), digest, exclude=trial.number)
        if original is not None:
            return self._duplicate(trial, original, called)

        torch.manual_seed(self.recipe.train.seed)
        model = build(spec)
        if trial.number in self.nan_trials:
            log.warning("fault injection: trial %d produces NaN outputs", trial.number)
            model.register_forward_hook(lambda _m, _i, out: out * float("nan"))
        started = time.perf_counter()
        epochs = self.recipe.train.epochs
        single = len(self.objectives) == 1

        def on_epoch(result: EpochResult) -> None:
            acc = float(result.val_accuracy if result.val_accuracy is not None else float("nan"))
            trial.set_user_attr("epochs_run", result.epoch)
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 3))
            trial.set_user_attr("images_per_second", round(result.images_per_second, 1))
            if single:
                trial.report(acc, result.epoch)
            self.reporter.epoch_done(trial.number, result, epochs)
            # The last epoch's value is the result; pruning then would only discard a finished trial.
            if single and result.epoch < epochs and trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {result.epoch} (val_accuracy {acc:.4f})")

        try:
            result = train(
                model, self.data.train, self.data.val, self.recipe.train,
                device=self.device, mean=self.data.mean, std=self.data.std, on_epoch=on_epoch,
            )
        except (TrainingDiverged, OutOfMemory) as err:
            trial.set_user_attr("fail_reason", f"{type(err).__name__}: {err}")
            raise
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 3))
            del model
        trial.set_user_attr("images_per_second", round(result.images_per_second, 1))
        acc = float(result.val_accuracy if result.val_accuracy is not None else float("nan"))
        values = {"val_accuracy": acc, "params": float(stats.params), "flops": float(stats.flops)}
        if single:
            return acc
        return [values[o] for o in self.objectives]

    def _duplicate(self, trial: optuna.Trial, original: FrozenTrial, called: float) -> float | Sequence[float]:
        """Record that ``trial`` is ``original`` again, replay its epochs, return its values.

        ``seconds`` is this trial's own (tiny) wall time; ``images_per_second`` is the original's
        (a property of the architecture on this device).
        """
        saved = float(original.user_attrs.get("seconds") or 0.0)
        trial.set_user_attr("duplicate_of", original.number)
        trial.set_user_attr("saved_seconds", round(saved, 3))
        trial.set_user_attr("epochs_run", original.user_attrs.get("epochs_run"))
        trial.set_user_attr("images_per_second", original.user_attrs.get("images_per_second"))
        trial.set_user_attr("seconds", round(time.perf_counter() - called, 6))
        log.info("trial %d is the architecture of trial %d: not trained again", trial.number, original.number)
        assert original.values is not None
        if len(self.objectives) == 1:
            for step, value in sorted(original.intermediate_values.items()):
                trial.report(value, step)
            return float(original.values[0])
        return [float(v) for v in original.values]


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
    design = trial.user_attrs.get("design")
    save_note(trial, trial_note(spec, params=params, flops=flops, slots=slots, design=design))


# ------------------------------------------------------------------------------------------- the loop


@dataclass(frozen=True)
class TrialSummary:
    """One finished trial, for summaries and tables."""

    number: int
    state: str
    value: float | None
    values: tuple[float, ...] | None
    params: int | None
    flops: int | None
    epochs_run: int | None
    placement: tuple[str, ...]
    design: str | None
    fail_reason: str | None
    arch_hash: str | None = None
    duplicate_of: int | None = None

    @classmethod
    def of(cls, t: FrozenTrial) -> TrialSummary:
        values = tuple(t.values) if t.values is not None else None
        return cls(
            number=t.number,
            state=t.state.name,
            value=values[0] if values else None,
            values=values,
            params=t.user_attrs.get("params"),
            flops=t.user_attrs.get("flops"),
            epochs_run=t.user_attrs.get("epochs_run"),
            placement=tuple(t.user_attrs.get("placement", ())),
            design=t.user_attrs.get("design"),
            fail_reason=t.user_attrs.get("fail_reason"),
            arch_hash=t.user_attrs.get(ARCH_HASH_ATTR),
            duplicate_of=t.user_attrs.get("duplicate_of"),
        )


@dataclass(frozen=True)
class SearchResult:
    """What a search run leaves behind (the study itself is in the storage)."""

    study_name: str
    storage: str
    target: int
    finished: int
    complete: int
    pruned: int
    failed: int
    top: tuple[TrialSummary, ...]
    best: TrialSummary | None
    pareto: tuple[TrialSummary, ...]
    interrupted: str | None  # None, or the signal that stopped the search: "SIGINT" (Ctrl-C) or "SIGTERM"
    stopped_reason: str | None
    seconds: float
    device: str
    #: Trials that repeated an already-trained architecture, and the training seconds that saved.
    duplicates: int = 0
    saved_seconds: float = 0.0
    #: Distinct architectures among the COMPLETE trials (duplicates counted once).
    architectures: int = 0
    #: Trials ended as PRUNED because their model was over search.max_params / max_flops.
    over_budget: int = 0
    #: One-line notices for the user (e.g. a pruner ignored with several objectives).
    notices: tuple[str, ...] = ()


def summarize(study: optuna.Study, *, top_k: int = 5) -> dict[str, Any]:
    """Counts, the top-k complete trials by the first objective, and the best/Pareto trials.

    A duplicate (a trial that repeated an already-trained architecture, user attribute
    ``duplicate_of``) is no new architecture: it is left out of the top-k and the Pareto front
    (its original is there) and counted in ``duplicates`` / ``saved_seconds`` instead.
    ``architectures`` counts the distinct ``arch_hash`` values of the COMPLETE trials.
    """
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    counts = {s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED,
                                                                TrialState.FAIL)}
    duplicates = [t for t in trials if t.user_attrs.get("duplicate_of") is not None]
    originals = [t for t in complete if t.user_attrs.get("duplicate_of") is None]
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    ranked = sorted(
        (t for t in originals if t.values and math.isfinite(t.values[0])),
        key=lambda t: t.values[0], reverse=maximize,
    )
    multi = len(study.directions) > 1
    best = None if multi or not ranked else TrialSummary.of(ranked[0])
    pareto = tuple(
        TrialSummary.of(t) for t in study.best_trials if t.user_attrs.get("duplicate_of") is None
    ) if multi and complete else ()
    return {
        "complete": counts[TrialState.COMPLETE],
        "pruned": counts[TrialState.PRUNED],
        "failed": counts[TrialState.FAIL],
        "top": tuple(TrialSummary.of(t) for t in ranked[:top_k]),
        "best": best,
        "pareto": pareto,
        "duplicates": len(duplicates),
        "saved_seconds": float(sum(t.user_attrs.get("saved_seconds") or 0.0 for t in duplicates)),
        "architectures": len({t.user_attrs.get(ARCH_HASH_ATTR) or f"#{t.number}" for t in complete}),
        "over_budget": sum(
            t.state == TrialState.PRUNED and str(t.user_attrs.get("fail_reason") or "").startswith("over budget")
            for t in trials
        ),
    }


def run_search(
    space: SearchSpace,
    recipe: Recipe,
    *,
    trials: int,
    storage: str = DEFAULT_STORAGE,
    study_name: str | None = None,
    timeout: float | None = None,
    device: str = "auto",
    seed: int | None = None,
    workers: int = 1,
    gpus: Sequence[str] | str | None = None,
    workers_per_gpu: int = 1,
    reporter: SearchReporter | None = None,
    top_k: int = 5,
    stop_when_converged: bool = False,
) -> SearchResult:
    """Run (or continue) the study until ``trials`` trials in total have finished.

    ``seed`` overrides the recipe's seed for the sampler. A ``KeyboardInterrupt`` ends the
    current trial (stored as FAIL with its reason), keeps everything stored, and returns a result
    with ``interrupted`` set to ``"SIGINT"`` or ``"SIGTERM"``.

    ``workers > 1`` or ``gpus`` run the trials in that many worker processes on this machine
    (:mod:`resattn.workers`); the budget stays ``trials`` in total.

    ``stop_when_converged`` (one objective, this process) ends the study early when Optuna's
    terminator judges that further trials are unlikely to beat the best by more than the noise
    (:func:`convergence_callback`); ``stopped_reason`` then reads "converged (terminator)".
    """
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ConfigError(f"must be a positive integer, got {trials!r}", key="--trials")
    if timeout is not None and not timeout > 0:
        raise ConfigError(f"must be a positive number of seconds, got {timeout!r}", key="--timeout")
    reporter = reporter or _NullReporter()
    notices = search_notices(recipe, stop_when_converged=stop_when_converged, workers=workers, gpus=gpus)
    for notice in notices:
        log.warning("%s", notice)
    plans = _worker_plans(workers, gpus, workers_per_gpu, device)
    torch_device = resolve_device(device)
    name = study_name or default_study_name(space, recipe)
    store = open_storage(storage)
    study, created = open_study(
        store, name, space, recipe, seed=seed if seed is not None else recipe.search.seed
    )
    log.info("%s study %r in %s", "created" if created else "continuing", name, redact(storage))
    started = time.perf_counter()
    interrupted: str | None = None
    stopped_reason: str | None = None
    done = finished_count(study)
    reporter.study_started(study, trials, done)
    if done < trials and plans:
        from resattn.workers import run_parallel

        outcome = run_parallel(
            study, space, recipe, storage=storage, trials=trials, plans=plans, timeout=timeout,
            seed=seed if seed is not None else recipe.search.seed, reporter=reporter,
            verbose=log.isEnabledFor(logging.DEBUG),
        )
        interrupted, stopped_reason = outcome.interrupted, outcome.stopped_reason
        if timeout is not None and finished_count(study) < trials and not interrupted and not stopped_reason:
            stopped_reason = f"timeout of {timeout:g} s reached"
    elif done < trials:
        from resattn.workers import fail_orphaned_journal_trials, run_trials

        fail_orphaned_journal_trials(study)  # a journal file has no heartbeat: our own dead runs
        _, data = prepare_data(recipe, torch_device)
        objective = Objective(space, recipe, data, torch_device, reporter)
        callbacks: list[Any] = [lambda study, trial: reporter.trial_finished(study, trial, finished_count(study))]
        converged: list[str] = []
        if stop_when_converged and len(recipe.search.objectives) == 1:
            callbacks.append(convergence_callback(lambda: converged.append("converged (terminator)"),
                                                  recipe.search.convergence_noise))
        try:
            stopped_reason = run_trials(
                study, objective, trials=trials, callbacks=callbacks,
                deadline=None if timeout is None else time.monotonic() + timeout,
                gc_after_trial=torch_device.type == "cuda", stop=lambda: converged[0] if converged else None,
            )
        except KeyboardInterrupt as err:
            interrupted = "SIGTERM" if isinstance(err, Terminated) else "SIGINT"
        if timeout is not None and finished_count(study) < trials and not interrupted and not stopped_reason:
            stopped_reason = f"timeout of {timeout:g} s reached"
    summary = summarize(study, top_k=top_k)
    return SearchResult(
        study_name=name,
        storage=storage,
        target=trials,
        finished=finished_count(study),
        complete=summary["complete"],
        pruned=summary["pruned"],
        failed=summary["failed"],
        top=summary["top"],
        best=summary["best"],
        pareto=summary["pareto"],
        interrupted=interrupted,
        stopped_reason=stopped_reason,
        seconds=time.perf_counter() - started,
        device=str(torch_device),
        duplicates=summary["duplicates"],
        saved_seconds=summary["saved_seconds"],
        architectures=summary["architectures"],
        over_budget=summary["over_budget"],
        notices=tuple(notices),
    )


def search_notices(
    recipe: Recipe, *, stop_when_converged: bool = False, workers: int = 1, gpus: Any = None
) -> list[str]:
    """What the user must be told once before a search: settings that are ignored, and why."""
    out: list[str] = []
    objectives = recipe.search.objectives
    if len(objectives) > 1 and recipe.search.pruner != "none":
        out.append(
            f"pruner {recipe.search.pruner!r} ignored: Optuna cannot prune with several objectives "
            f"({', '.join(objectives)}); every trial trains all {recipe.train.epochs} epochs"
        )
    if stop_when_converged and len(objectives) > 1:
        out.append("--stop-when-converged ignored: the terminator supports one objective only")
    elif stop_when_converged and (workers > 1 or gpus):
        out.append("--stop-when-converged ignored: it works in a single-process search only")
    return out


#: Terminator settings: never judge before this many COMPLETE trials; stop when the regret bound
#: (how much the best val_accuracy can still improve) falls below the proxy's own noise, i.e. the
#: accuracy difference that re-training the same network with another seed produces (0.005 = half a
#: percentage point; measure yours with `resattn validate --seeds 2`).
TERMINATOR_MIN_TRIALS = 20
TERMINATOR_NOISE = 0.005


def convergence_callback(on_stop: Any, noise: float = TERMINATOR_NOISE) -> Any:
    """A study callback that stops the study when Optuna's terminator says it has converged.

    Improvement: :class:`~optuna.terminator.RegretBoundEvaluator` (a GP upper bound of how much
    the best accuracy can still improve). Error: :class:`~optuna.terminator.StaticErrorEvaluator`
    with ``noise`` (the recipe's ``search.convergence_noise``, default :data:`TERMINATOR_NOISE`),
    the seed-to-seed noise of a proxy accuracy: an improvement
    smaller than that could not be told from luck. (Optuna's default, cross-validation error,
    needs CV folds that resattn does not have; its MedianErrorEvaluator is scale-free and hardly
    ever fires on proxy accuracies.) Evaluated after COMPLETE trials only; any terminator error is
    logged and the search goes on. Optuna marks ``optuna.terminator`` deprecated since 4.9 (to be
    removed in 6.0): the warning is silenced here.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        from optuna.terminator import RegretBoundEvaluator, StaticErrorEvaluator, Terminator

        terminator = Terminator(
            improvement_evaluator=RegretBoundEvaluator(),
            error_evaluator=StaticErrorEvaluator(constant=noise),
            min_n_trials=TERMINATOR_MIN_TRIALS,
        )

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state != TrialState.COMPLETE or getattr(study, "_stop_flag", False):
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                warnings.simplefilter("ignore", FutureWarning)
                stop = terminator.should_terminate(study)
        except Exception as err:  # a GP that cannot be fitted must not end the search
            log.debug("terminator: %s", err)
            return
        if stop:
            log.info("terminator: the study has converged after trial %d", trial.number)
            on_stop()
            study.stop()

    return callback


def _worker_plans(workers: int, gpus: Sequence[str] | str | None, workers_per_gpu: int, device: str) -> list[Any]:
    """The worker processes to start; ``[]`` means "run in this process"."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"must be a positive integer, got {workers!r}", key="--workers")
    from resattn.workers import parse_gpus, plan_workers

    gpu_list = parse_gpus(gpus)
    if workers == 1 and not gpu_list:
        return []
    return plan_workers(workers, gpu_list, workers_per_gpu, device)


def load_trial_spec(trial: FrozenTrial, study_name: str | None = None) -> NetSpec:
    """The NetSpec a trial trained (its ``spec`` user attribute); :class:`StorageError` when it is
    missing or does not read back as a valid spec."""
    where = f"trial {trial.number}" + (f" of study {study_name!r}" if study_name else "")
    raw = trial.user_attrs.get("spec")
    if not isinstance(raw, str):
        raise StorageError(f"{where} has no recorded spec")
    try:
        return NetSpec.from_json(raw)
    except SpecError as err:
        raise StorageError(f"{where} has an invalid spec: {err}") from None
    except (TypeError, ValueError) as err:
        raise StorageError(f"{where} has an unreadable spec: {err}") from None
