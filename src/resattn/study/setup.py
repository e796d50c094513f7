"""Creating and re-opening a study: its sampler and pruner, the space and recipe it records, and the
baseline designs it enqueues first (DESIGN.md §4)."""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import optuna
from optuna.storages import BaseStorage

from resattn.errors import ConfigError, StorageError
from resattn.study import keys
from resattn.study.recipe import Recipe
from resattn.study.space import SearchSpace, baseline_designs

__all__ = [
    "DIRECTIONS",
    "SETUP_WAIT_SECONDS",
    "default_study_name",
    "make_pruner",
    "make_sampler",
    "open_study",
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
) -> tuple[optuna.Study, bool]:
    """Create the study, or load it if it exists. Returns ``(study, created)``.

    An existing study created with another space or recipe is refused with a
    :class:`StorageError`. A new study records its space and recipe and gets the baseline designs
    (all-residual and the notebooks' designs, where the space can express them) enqueued first.

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
        _check_same_setup(study, space, recipe, init)
        return study, False
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


def _record_setup(study: optuna.Study, space: SearchSpace, recipe: Recipe, init: dict[str, Any] | None = None) -> None:
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
        diff = _dict_diff(old, recipe.to_dict())
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
