"""Reading a study's trials back: what counts as finished, one-line trial summaries, the top-k and
Pareto summary, and a trial's recorded spec."""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from resattn.errors import SpecError, StorageError
from resattn.model.spec import NetSpec
from resattn.study import keys
from resattn.study.recipe import Recipe, parse_recipe

__all__ = [
    "FINISHED_STATES",
    "TrialSummary",
    "confirmed_winner",
    "counts_as_finished",
    "finished_count",
    "is_duplicate",
    "load_report",
    "load_trial_spec",
    "measured_noise",
    "pack_bits",
    "recipe_of_study",
    "summarize",
    "unpack_bits",
]

log = logging.getLogger(__name__)


FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


def is_duplicate(trial: FrozenTrial) -> bool:
    """A trial that repeated an already-trained architecture (``duplicate_of``): COMPLETE with the
    original's result, not trained again, not counted towards the budget."""
    return trial.user_attrs.get(keys.DUPLICATE_OF) is not None


def counts_as_finished(trial: FrozenTrial) -> bool:
    """Finished (complete or pruned) and counted towards ``--trials``: duplicates are not."""
    return trial.state in FINISHED_STATES and not is_duplicate(trial)


def finished_count(study: optuna.Study) -> int:
    """Trials that finished and count towards the budget (:func:`counts_as_finished`)."""
    return sum(counts_as_finished(t) for t in study.get_trials(deepcopy=False, states=FINISHED_STATES))


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


def recipe_of_study(study: optuna.Study) -> Recipe:
    """The recipe the study was created with (its ``resattn.study.recipe`` user attribute)."""
    raw = study.user_attrs.get(keys.STUDY_RECIPE)
    if not isinstance(raw, dict):
        raise StorageError(f"study {study.study_name!r} has no recorded recipe (not created by resattn search)")
    data = {k: raw[k] for k in ("name", "description", "data", "train", "search") if k in raw}
    return parse_recipe(data, f"the recipe recorded in study {study.study_name!r}")


def load_report(study: optuna.Study) -> dict[str, Any] | None:
    """The last confirmation stored on the study (the JSON of :meth:`ConfirmReport.to_dict`), or None."""
    summary = study.user_attrs.get(keys.CONFIRM_SUMMARY)
    return summary if isinstance(summary, dict) and isinstance(summary.get("candidates"), list) else None


def confirmed_winner(study: optuna.Study) -> tuple[int, str] | None:
    """``(trial, why)`` of the confirmed answer, when the study has a confirmation with one."""
    report = load_report(study)
    if report is None or not isinstance(report.get("winner"), int):
        return None
    return int(report["winner"]), str(report.get("winner_reason") or "confirmed by resattn confirm")


def pack_bits(correct: Sequence[bool] | np.ndarray) -> str:
    """Per-image correctness, compactly: ``"<count>:<base64 of the bits, 8 images a byte>"``."""
    bits = np.asarray(correct, dtype=bool)
    return f"{bits.size}:" + base64.b64encode(np.packbits(bits).tobytes()).decode("ascii")


def unpack_bits(text: str) -> np.ndarray:
    """The booleans :func:`pack_bits` wrote; ``ValueError`` for anything else."""
    count, sep, payload = str(text).partition(":")
    if not sep or not count.isdigit():
        raise ValueError("not packed per-image results")
    raw = np.frombuffer(base64.b64decode(payload.encode("ascii"), validate=True), dtype=np.uint8)
    n = int(count)
    if len(raw) != (n + 7) // 8:
        raise ValueError(f"packed per-image results hold {8 * len(raw)} bits for {n} images")
    return np.unpackbits(raw)[:n].astype(bool)


def measured_noise(study: optuna.Study) -> tuple[float, str] | None:
    """The seed-to-seed spread of one accuracy measured on this study: the median, over architectures,
    of the standard deviation of their re-trainings — from ``resattn confirm`` when it has run, else
    from ``resattn validate``; None before either."""
    import statistics

    report = load_report(study)
    if report is not None:
        sds = [statistics.stdev(v) for c in report["candidates"]
               if len(v := [a for a in c.get("accuracy", []) if isinstance(a, int | float)]) > 1]
        if sds:
            return statistics.median(sds), "the seed-to-seed spread measured by resattn confirm"
    groups: dict[str, list[float]] = {}
    for key, value in study.user_attrs.items():
        rest = key.removeprefix(keys.VALIDATE_PREFIX)
        if rest == key or not isinstance(value, dict) or not isinstance(value.get("accuracy"), int | float):
            continue
        trial_epochs, _, _seed = rest.rpartition(".")
        groups.setdefault(trial_epochs, []).append(float(value["accuracy"]))
    sds = [statistics.stdev(v) for v in groups.values() if len(v) > 1]
    if sds:
        return statistics.median(sds), "the seed-to-seed spread measured by resattn validate"
    return None
