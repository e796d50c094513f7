"""Does the proxy rank architectures like long training does? (issue 7, ``resattn validate``)

The search ranks networks by a short proxy training. :func:`validate_study` re-trains some of a
study's COMPLETE trials longer (``epochs``, by default twice the recipe's) for several seeds, with
the study's own recorded recipe (a warm-started study's re-trainings start from its ``train.init``
checkpoint too, and fine-tune longer) and the same seeded train/validation split
(:func:`resattn.study.search.prepare_data`), then measures how well the proxy ranking agrees with the
long one: Kendall's τ and Spearman's ρ (:mod:`scipy.stats`) between the proxy accuracies and the
mean long accuracies, and whether the proxy's winner is still the winner (or within one standard
deviation of it).

Which trials: the ``top`` best COMPLETE trials by proxy accuracy plus ``random`` others drawn
with a seeded RNG. Duplicates (``duplicate_of``) and repeated architectures (same ``arch_hash``)
are skipped: one row per architecture.

Resumable: every re-training stores its accuracy in the study as the user attribute
``resattn.validate.<trial>.<epochs>.<seed>`` = ``{"accuracy": …, "seconds": …}``, written as
soon as it finishes; a re-run reuses those and trains only what is missing. The correlations are
stored as ``resattn.validate.kendall_tau`` / ``resattn.validate.spearman_rho`` and the whole
summary as ``resattn.validate.summary``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial

from resattn.analysis.inspect import complete_trials
from resattn.analysis.statistics import bootstrap_ci
from resattn.errors import ConfigError, StorageError
from resattn.study import keys
from resattn.study.objective import prepare_data
from resattn.study.records import load_trial_spec, recipe_of_study
from resattn.training.loop import resolve_device, train
from resattn.training.warmstart import initial_model, read_init

__all__ = [
    "ValidationReport",
    "ValidationRow",
    "correlations",
    "pick_trials",
    "recipe_of_study",
    "result_key",
    "validate_study",
]

log = logging.getLogger(__name__)

KEY_PREFIX = keys.VALIDATE_PREFIX
TAU_KEY = KEY_PREFIX + "kendall_tau"
RHO_KEY = KEY_PREFIX + "spearman_rho"
SUMMARY_KEY = KEY_PREFIX + "summary"


def result_key(trial: int, epochs: int, seed: int) -> str:
    """The study user attribute holding one re-training result."""
    return f"{KEY_PREFIX}{trial}.{epochs}.{seed}"


@dataclass(frozen=True)
class ValidationRow:
    """One re-trained architecture."""

    number: int
    picked: str  # "top" or "random"
    proxy: float
    accuracies: tuple[float, ...]
    placement: tuple[str, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def std(self) -> float:
        return statistics.stdev(self.accuracies) if len(self.accuracies) > 1 else 0.0


@dataclass(frozen=True)
class ValidationReport:
    study_name: str
    proxy_epochs: int
    epochs: int
    seeds: int
    rows: tuple[ValidationRow, ...]
    kendall_tau: float
    spearman_rho: float
    proxy_winner: int | None
    long_winner: int | None
    #: The proxy's winner is the long winner, or its long mean is within one std of the winner's.
    winner_holds: bool | None
    trained: int  # re-trainings run now (0 on a complete re-run)
    reused: int  # re-trainings read back from the study
    seconds: float  # wall time of the trainings run now
    #: 95 % percentile-bootstrap intervals of τ and ρ (architectures resampled; NaN below 3 architectures).
    kendall_ci: tuple[float, float] = (math.nan, math.nan)
    spearman_ci: tuple[float, float] = (math.nan, math.nan)

    @property
    def architectures(self) -> int:
        return len(self.rows)

    def to_dict(self) -> dict[str, Any]:
        def clean(x: float) -> float | None:
            return None if x is None or not math.isfinite(x) else round(float(x), 6)

        return {
            "epochs": self.epochs,
            "proxy_epochs": self.proxy_epochs,
            "seeds": self.seeds,
            "architectures": self.architectures,
            "trials": [r.number for r in self.rows],
            "kendall_tau": clean(self.kendall_tau),
            "kendall_tau_ci95": [clean(v) for v in self.kendall_ci],
            "spearman_rho": clean(self.spearman_rho),
            "spearman_rho_ci95": [clean(v) for v in self.spearman_ci],
            "proxy_winner": self.proxy_winner,
            "long_winner": self.long_winner,
            "winner_holds": self.winner_holds,
        }


def _eligible(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE, non-duplicate trials with a finite proxy accuracy, one per architecture."""
    seen: set[str] = set()
    out = []
    for t in sorted(complete_trials(study), key=lambda t: t.number):
        digest = t.user_attrs.get(keys.ARCH_HASH)
        if digest is not None:
            if digest in seen:
                continue
            seen.add(digest)
        out.append(t)
    return out


def pick_trials(study: optuna.Study, top: int, random_count: int, seed: int = 0) -> list[tuple[FrozenTrial, str]]:
    """The top ``top`` trials by proxy accuracy, then ``random_count`` others drawn with ``seed``."""
    trials = _eligible(study)
    ranked = sorted(trials, key=lambda t: (-t.values[0], t.number))
    chosen = [(t, "top") for t in ranked[:top]]
    rest = sorted(ranked[top:], key=lambda t: t.number)
    rng = random.Random(seed)
    chosen += [(t, "random") for t in rng.sample(rest, min(random_count, len(rest)))]
    return chosen


def correlation_intervals(proxy: list[float], long: list[float]) -> tuple[tuple[float, float], tuple[float, float]]:
    """95 % bootstrap intervals of Kendall's τ and Spearman's ρ, the architectures resampled in pairs."""
    def tau(a: Any, b: Any) -> float:
        return correlations(list(a), list(b))[0]

    def rho(a: Any, b: Any) -> float:
        return correlations(list(a), list(b))[1]

    return bootstrap_ci([proxy, long], tau), bootstrap_ci([proxy, long], rho)


def correlations(proxy: list[float], long: list[float]) -> tuple[float, float]:
    """Kendall's τ (tau-b) and Spearman's ρ between two score lists; NaN when undefined."""
    if len(proxy) < 2:
        return math.nan, math.nan
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: scipy warns and returns NaN
        tau = stats.kendalltau(proxy, long).statistic
        rho = stats.spearmanr(proxy, long).statistic
    return float(tau), float(rho)


def _stored_accuracy(value: Any) -> float | None:
    if isinstance(value, dict):
        value = value.get("accuracy")
    return float(value) if isinstance(value, int | float) else None


def validate_study(
    study: optuna.Study,
    *,
    top: int = 8,
    random_count: int = 4,
    epochs: int | None = None,
    seeds: int = 1,
    device: str = "auto",
    pick_seed: int = 0,
    on_result: Callable[[int, int, float, bool], None] | None = None,
) -> ValidationReport:
    """Re-train the picked trials for ``epochs`` × ``seeds`` and compare with the proxy ranking.

    ``on_result(trial, seed, accuracy, reused)`` is called for every (trial, seed) result.
    """
    for name, value, low in (("--top", top, 0), ("--random", random_count, 0), ("--seeds", seeds, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"must be an integer ≥ {low}, got {value!r}", key=name)
    if top + random_count < 1:
        raise ConfigError("pick at least one trial (--top and/or --random)", key="--top")
    recipe = recipe_of_study(study)
    proxy_epochs = recipe.train.epochs
    epochs = 2 * proxy_epochs if epochs is None else epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"must be a positive integer, got {epochs!r}", key="--epochs")
    picked = pick_trials(study, top, random_count, pick_seed)
    if not picked:
        raise StorageError(f"study {study.study_name!r} has no COMPLETE trial to validate")

    torch_device: torch.device | None = None
    data: Any = None
    weights: Any = None
    trained = reused = 0
    seconds = 0.0
    rows: list[ValidationRow] = []
    done = study.user_attrs  # the re-trainings of earlier runs (one read; this run adds to the storage)
    for trial, how in picked:
        accuracies: list[float] = []
        for s in range(seeds):
            key = result_key(trial.number, epochs, s)
            stored = _stored_accuracy(done.get(key))
            if stored is not None:
                reused += 1
                accuracies.append(stored)
                if on_result:
                    on_result(trial.number, s, stored, True)
                continue
            if data is None:  # only a run with something left to train touches the data (and the init)
                torch_device = resolve_device(device)
                weights = read_init(recipe.train.init)
                _, data = prepare_data(recipe, torch_device)
            config = dataclasses.replace(recipe.train, epochs=epochs, seed=recipe.train.seed + s)
            spec = load_trial_spec(trial)
            model, _ = initial_model(spec, config, weights)
            started = time.perf_counter()
            result = train(model, data.train, data.val, config, device=torch_device, mean=data.mean, std=data.std)
            took = time.perf_counter() - started
            del model
            acc = float(result.val_accuracy if result.val_accuracy is not None else math.nan)
            study.set_user_attr(key, {"accuracy": acc, "seconds": round(took, 3)})
            trained += 1
            seconds += took
            accuracies.append(acc)
            if on_result:
                on_result(trial.number, s, acc, False)
        rows.append(ValidationRow(
            number=trial.number, picked=how, proxy=float(trial.values[0]), accuracies=tuple(accuracies),
            placement=tuple(trial.user_attrs.get(keys.PLACEMENT, ())),
        ))

    tau, rho = correlations([r.proxy for r in rows], [r.mean for r in rows])
    tau_ci, rho_ci = correlation_intervals([r.proxy for r in rows], [r.mean for r in rows])
    proxy_best = max(rows, key=lambda r: (r.proxy, -r.number))
    long_best = max(rows, key=lambda r: (r.mean, -r.number))
    holds = proxy_best is long_best or (long_best.mean - proxy_best.mean) <= max(proxy_best.std, long_best.std)
    report = ValidationReport(
        study_name=study.study_name, proxy_epochs=proxy_epochs, epochs=epochs, seeds=seeds, rows=tuple(rows),
        kendall_tau=tau, spearman_rho=rho, proxy_winner=proxy_best.number, long_winner=long_best.number,
        winner_holds=bool(holds), trained=trained, reused=reused, seconds=seconds, kendall_ci=tau_ci,
        spearman_ci=rho_ci,
    )
    summary = report.to_dict()
    study.set_user_attr(TAU_KEY, summary["kendall_tau"])
    study.set_user_attr(RHO_KEY, summary["spearman_rho"])
    study.set_user_attr(SUMMARY_KEY, summary)
    return report
