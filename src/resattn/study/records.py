"""Reading a study's trials back: what counts as finished, one-line trial summaries, the top-k and
Pareto summary, and a trial's recorded spec."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from resattn.errors import SpecError, StorageError
from resattn.model.spec import NetSpec
from resattn.study import keys

__all__ = [
    "FINISHED_STATES",
    "TrialSummary",
    "finished_count",
    "load_trial_spec",
    "summarize",
]

log = logging.getLogger(__name__)


FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


def finished_count(study: optuna.Study) -> int:
    """Trials that finished (complete or pruned) and count towards the budget: duplicates (trials that
    repeated an already-trained architecture, ``duplicate_of``) do not."""
    return sum(t.user_attrs.get(keys.DUPLICATE_OF) is None
               for t in study.get_trials(deepcopy=False, states=FINISHED_STATES))


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
            params=t.user_attrs.get(keys.PARAMS),
            flops=t.user_attrs.get(keys.FLOPS),
            epochs_run=t.user_attrs.get(keys.EPOCHS_RUN),
            placement=tuple(t.user_attrs.get(keys.PLACEMENT, ())),
            design=t.user_attrs.get(keys.DESIGN),
            fail_reason=t.user_attrs.get(keys.FAIL_REASON),
            arch_hash=t.user_attrs.get(keys.ARCH_HASH),
            duplicate_of=t.user_attrs.get(keys.DUPLICATE_OF),
        )


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
    duplicates = [t for t in trials if t.user_attrs.get(keys.DUPLICATE_OF) is not None]
    originals = [t for t in complete if t.user_attrs.get(keys.DUPLICATE_OF) is None]
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    ranked = sorted(
        (t for t in originals if t.values and math.isfinite(t.values[0])),
        key=lambda t: t.values[0], reverse=maximize,
    )
    multi = len(study.directions) > 1
    best = None if multi or not ranked else TrialSummary.of(ranked[0])
    pareto = tuple(
        TrialSummary.of(t) for t in study.best_trials if t.user_attrs.get(keys.DUPLICATE_OF) is None
    ) if multi and complete else ()
    return {
        "complete": counts[TrialState.COMPLETE],
        "pruned": counts[TrialState.PRUNED],
        "failed": counts[TrialState.FAIL],
        "top": tuple(TrialSummary.of(t) for t in ranked[:top_k]),
        "best": best,
        "pareto": pareto,
        "duplicates": len(duplicates),
        "saved_seconds": float(sum(t.user_attrs.get(keys.SAVED_SECONDS) or 0.0 for t in duplicates)),
        "architectures": len({t.user_attrs.get(keys.ARCH_HASH) or f"#{t.number}" for t in complete}),
        "over_budget": sum(
            t.state == TrialState.PRUNED and str(t.user_attrs.get(keys.FAIL_REASON) or "").startswith("over budget")
            for t in trials
        ),
    }


def load_trial_spec(trial: FrozenTrial, study_name: str | None = None) -> NetSpec:
    """The NetSpec a trial trained (its ``spec`` user attribute); :class:`StorageError` when it is
    missing or does not read back as a valid spec."""
    where = f"trial {trial.number}" + (f" of study {study_name!r}" if study_name else "")
    raw = trial.user_attrs.get(keys.SPEC)
    if not isinstance(raw, str):
        raise StorageError(f"{where} has no recorded spec")
    try:
        return NetSpec.from_json(raw)
    except SpecError as err:
        raise StorageError(f"{where} has an invalid spec: {err}") from None
    except (TypeError, ValueError) as err:
        raise StorageError(f"{where} has an unreadable spec: {err}") from None
