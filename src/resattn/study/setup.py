"""Creating and re-opening a study: its sampler and pruner, the space and recipe it records, and the
baseline designs it enqueues first (DESIGN.md §4) and queues again when the search cut one short."""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from resattn.errors import ConfigError, StorageError, signals_deferred
from resattn.study import keys
from resattn.study.recipe import Recipe, fingerprinted_values
from resattn.study.space import SearchSpace, baseline_designs

__all__ = [
    "DIRECTIONS",
    "SETUP_WAIT_SECONDS",
    "baseline_status",
    "cut_short",
    "default_study_name",
    "make_pruner",
    "make_sampler",
    "open_study",
    "requeue_baselines",
]

log = logging.getLogger(__name__)


#: objective name -> optimisation direction
DIRECTIONS: dict[str, str] = {"val_accuracy": "maximize", "params": "minimize", "flops": "minimize"}

#: How long a process that finds a study being created waits for :data:`keys.STUDY_READY`.
SETUP_WAIT_SECONDS = 30.0


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
    init: dict[str, Any] | None = None,
    notices: list[str] | None = None,
) -> tuple[optuna.Study, bool]:
    """Create the study, or load it if it exists. Returns ``(study, created)``.

    An existing study created with another space or recipe is refused with a
    :class:`StorageError`, unless nothing in it is worth keeping: a study made by resattn with no
    finished and no running trial (a run whose setup failed, e.g. a dataset that could not be
    downloaded, made with an older version that created the study first) is replaced, and a line
    saying so is appended to ``notices``. A new study records its space and recipe and gets the
    baseline designs (all-residual and the notebooks' designs, where the space can express them)
    enqueued first.

    ``init`` (a warm start: :meth:`resattn.training.warmstart.InitWeights.to_dict`) is recorded as
    :data:`keys.STUDY_INIT`; continuing a study whose checkpoint file has changed since (another
    sha256 under the same ``train.init``) is refused too.
    """
    objectives = list(recipe.search.objectives)
    directions = [DIRECTIONS[o] for o in objectives]
    sampler = make_sampler(recipe, seed=seed)
    pruner = make_pruner(recipe) if len(objectives) == 1 else optuna.pruners.NopPruner()
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if study_name in existing:
        study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner)
        try:
            _check_same_setup(study, space, recipe, init)
            return study, False
        except StorageError as err:
            if not _replaceable(study):
                raise
            message = (f"study {study_name!r} had no finished trial and another setup ({_setup_difference(err)}); "
                       "it was replaced by a new study with this command's space and recipe")
            log.info("%s", message)
            if notices is not None:
                notices.append(message)
            with contextlib.suppress(KeyError):  # another process replaced it first
                optuna.delete_study(study_name=study_name, storage=storage)
    with signals_deferred():  # a study is created whole: space, recipe, baselines, ready marker
        try:
            study = optuna.create_study(
                study_name=study_name, storage=storage, directions=directions, sampler=sampler, pruner=pruner
            )
        except optuna.exceptions.DuplicatedStudyError:  # another worker created it meanwhile
            study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner)
            _check_same_setup(study, space, recipe, init)
            return study, False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(objectives)
        _record_setup(study, space, recipe, init)
    return study, True


def _replaceable(study: optuna.Study) -> bool:
    """Made by resattn, and no trial finished or running: nothing in it is lost by replacing it."""
    attrs = study.user_attrs
    if keys.STUDY_VERSION not in attrs and keys.STUDY_SPACE_FINGERPRINT not in attrs:
        return False
    keep = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    return not study.get_trials(deepcopy=False, states=keep)


def _setup_difference(err: StorageError) -> str:
    text = str(err)
    start = text.find("created with ")
    end = text.find("; continue it")
    return text[start + len("created with "):end] if start >= 0 and end > start else text


def _record_setup(
    study: optuna.Study, space: SearchSpace, recipe: Recipe, init: dict[str, Any] | None = None
) -> None:
    """Store the study's space and recipe, enqueue the baselines, then mark the study ready."""
    from resattn import __version__

    study.set_user_attr(keys.STUDY_VERSION, __version__)
    study.set_user_attr(keys.STUDY_SPACE, space.to_dict())
    study.set_user_attr(keys.STUDY_SPACE_FINGERPRINT, space.fingerprint())
    study.set_user_attr(keys.STUDY_RECIPE, recipe.to_dict())
    study.set_user_attr(keys.STUDY_RECIPE_FINGERPRINT, recipe.fingerprint())
    if init is not None:
        study.set_user_attr(keys.STUDY_INIT, init)
    for design, params in baseline_designs(space):
        study.enqueue_trial(params, user_attrs={keys.DESIGN: design}, skip_if_exists=True)
    study.set_user_attr(keys.STUDY_READY, True)


def _setup_attrs(study: optuna.Study) -> dict[str, Any]:
    """The study's user attributes once its creator has finished recording them.

    Several machines started together on a new study: one creates it and the others find it
    before its space and recipe are stored. They wait (up to :data:`SETUP_WAIT_SECONDS`) rather
    than refuse it as "created with another recipe".
    """
    deadline = time.monotonic() + SETUP_WAIT_SECONDS
    while True:
        attrs = study.user_attrs
        if attrs.get(keys.STUDY_READY):
            return attrs
        made_before_marker = keys.STUDY_RECIPE_FINGERPRINT in attrs or keys.STUDY_VERSION not in attrs
        if study.get_trials(deepcopy=False) and made_before_marker:
            # Trials exist: either a study made before the ready marker existed, or no resattn study.
            return attrs
        if time.monotonic() >= deadline:
            return attrs
        time.sleep(0.2)


def _check_same_setup(
    study: optuna.Study, space: SearchSpace, recipe: Recipe, init: dict[str, Any] | None = None
) -> None:
    attrs = _setup_attrs(study)
    if keys.STUDY_SPACE_FINGERPRINT not in attrs:
        raise StorageError(
            f"study {study.study_name!r} exists but was not created by resattn; name a new study with --study"
        )
    problems = []
    if attrs.get(keys.STUDY_SPACE_FINGERPRINT) != space.fingerprint():
        old = attrs.get(keys.STUDY_SPACE, {}).get("name", "?")
        problems.append(f"space {old!r} (now {space.name!r}, with different content)")
    if attrs.get(keys.STUDY_RECIPE_FINGERPRINT) != recipe.fingerprint():
        old = attrs.get(keys.STUDY_RECIPE, {})
        diff = _dict_diff(fingerprinted_values(old), fingerprinted_values(recipe.to_dict()))
        problems.append(f"another recipe ({', '.join(diff[:4]) or 'content differs'})")
    recorded = attrs.get(keys.STUDY_INIT)
    if not problems and init is not None and isinstance(recorded, dict) and recorded.get("sha256") != init["sha256"]:
        problems.append(
            f"the checkpoint {init['init']} at sha256 {str(recorded.get('sha256'))[:12]}…, and that file "
            f"has changed since (now {init['sha256'][:12]}…)"
        )
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


# ------------------------------------------------------------------------------------------ baselines

#: ``fail_reason`` beginnings of attempts the search itself cut short (not the architecture's fault).
_CUT_SHORT_REASONS = ("interrupted", "worker process", "no heartbeat")


def cut_short(trial: FrozenTrial) -> bool:
    """Whether a trial ended without a verdict on its architecture: interrupted (Ctrl-C, SIGTERM),
    its process died (worker death, lost heartbeat), or stopped by the pruner. Over-budget prunes,
    divergence, out-of-memory and other errors of its own are verdicts."""
    reason = str(trial.user_attrs.get(keys.FAIL_REASON) or "")
    if trial.state == TrialState.PRUNED:
        return not reason.startswith("over budget")
    if trial.state == TrialState.FAIL:
        return not reason or reason.startswith(_CUT_SHORT_REASONS)
    return False


def _attempts(study: optuna.Study, space: SearchSpace) -> list[tuple[str, dict[str, Any], list[FrozenTrial]]]:
    trials = study.get_trials(deepcopy=False)
    out = []
    for design, params in baseline_designs(space):
        mine = sorted((t for t in trials if t.user_attrs.get(keys.DESIGN) == design), key=lambda t: t.number)
        out.append((design, params, mine))
    return out


def requeue_baselines(study: optuna.Study, space: SearchSpace) -> list[str]:
    """Queue again every baseline whose last attempt was :func:`cut_short` and that has no COMPLETE,
    queued or running attempt: baselines always get trained in full. The new trial records
    ``requeue_of`` and runs before the sampled trials, even when the budget is used up. Returns one
    line per baseline queued."""
    out = []
    with signals_deferred():
        for design, params, mine in _attempts(study, space):
            busy = (TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING)
            if not mine or any(t.state in busy for t in mine) or not cut_short(mine[-1]):
                continue
            last = mine[-1]
            study.enqueue_trial(params, user_attrs={keys.DESIGN: design, keys.REQUEUE_OF: last.number})
            out.append(f"baseline {design} queued again (trial {last.number} {_attempt_text(last)})")
    return out


def _attempt_text(trial: FrozenTrial) -> str:
    """``failed: interrupted by the user (SIGTERM)``, ``pruned: over budget: …``."""
    reason = trial.user_attrs.get(keys.FAIL_REASON)
    state = "failed" if trial.state == TrialState.FAIL else trial.state.name.lower()
    return f"{state}: {reason}" if reason else state


def baseline_status(study: optuna.Study, space: SearchSpace) -> list[tuple[str, str]]:
    """``(design, why)`` for every baseline of the space without a COMPLETE trial: what became of its
    last attempt and what happens next."""
    out = []
    for design, _, mine in _attempts(study, space):
        if any(t.state == TrialState.COMPLETE for t in mine):
            continue
        if not mine:
            out.append((design, "never queued (the study was created before this baseline existed)"))
            continue
        last = mine[-1]
        if last.state == TrialState.WAITING:
            earlier = [t for t in mine if t.state.is_finished()]
            why = f"queued again (trial {earlier[-1].number} {_attempt_text(earlier[-1])})" if earlier \
                else "queued, not run yet"
            out.append((design, f"{why}; it runs first when the search continues"))
        elif last.state == TrialState.RUNNING:
            out.append((design, f"trial {last.number} is running"))
        elif cut_short(last):
            out.append((design, f"trial {last.number} {_attempt_text(last)}; it is queued again and runs "
                                "first when the search continues"))
        else:
            out.append((design, f"trial {last.number} {_attempt_text(last)} (a result of its own, not retried)"))
    return out
