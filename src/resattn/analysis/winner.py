"""The study's answer as a file: pick a trial (by number, the confirmed winner, or the best proxy
score), read its spec, and write the standalone model file (``resattn export`` / ``train --study``)."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

from resattn.export.source import _HEADER_KEY_RE, ExportError, _clean_text, _short, check_class_name, write_export
from resattn.model.spec import NetSpec
from resattn.study import keys
from resattn.study.records import confirmed_winner, load_trial_spec
from resattn.study.storage import load_study

__all__ = ["export_trial", "trial_spec"]


def _fmt_value(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 and float(value).is_integer() else f"{value:.4g}"


def _pick_trial(study: Any, trial: int | None, best: bool, action: str = "exported") -> tuple[Any, str]:
    """The trial to export (or to ``action``) and why it was chosen."""
    from optuna.trial import TrialState

    name = study.study_name
    if trial is not None and best:
        raise ExportError("give either a trial number (--trial N) or --best, not both")
    if trial is None and not best:
        raise ExportError(
            f"say which trial of study {name!r} to use: a trial number (--trial N) or --best"
        )
    if trial is not None:
        if type(trial) is not int or trial < 0:
            raise ExportError(f"trial must be a trial number (an integer >= 0), got {_short(trial)}")
        found = [t for t in study.get_trials(deepcopy=False) if t.number == trial]
        if not found:
            count = len(study.get_trials(deepcopy=False))
            known = f"its trials are numbered 0 to {count - 1}" if count else "it has no trials"
            raise ExportError(f"study {name!r} has no trial {trial}; {known}")
        chosen, why = found[0], f"trial {trial}, as asked"
    elif (confirmed := confirmed_winner(study)) is not None:
        number, reason = confirmed
        found = [t for t in study.get_trials(deepcopy=False) if t.number == number]
        if not found:
            raise ExportError(f"the confirmation of study {name!r} names trial {number}, which the study does not have")
        chosen, why = found[0], f"the confirmed answer of resattn confirm ({_clean_text(reason)})"
    else:
        if len(study.directions) > 1:
            names = study.metric_names or [f"objective {i}" for i in range(len(study.directions))]
            front = sorted(study.best_trials, key=lambda t: t.number)
            listed = "; ".join(
                f"#{t.number} ("
                + ", ".join(f"{m}={_fmt_value(v)}" for m, v in zip(names, t.values, strict=False))
                + ")"
                for t in front
            ) or "none yet"
            raise ExportError(
                f"study {name!r} has {len(study.directions)} objectives ({', '.join(names)}), so there is no "
                f"single best trial; choose one with --trial N from the Pareto front: {listed}"
            )
        try:
            chosen = study.best_trial
        except ValueError:
            raise ExportError(f"study {name!r} has no complete trial yet, so there is no best one") from None
        why = ("the highest proxy score; no confirmation in the study, so it may be a lucky draw "
               "(resattn confirm re-trains the top architectures on paired seeds)")
    if chosen.state != TrialState.COMPLETE:
        reason = chosen.user_attrs.get(keys.FAIL_REASON) if chosen.state == TrialState.FAIL else None
        extra = f" ({_clean_text(str(reason))})" if reason else ""
        raise ExportError(
            f"trial {chosen.number} of study {name!r} is {chosen.state.name}{extra}, not COMPLETE; "
            f"only complete trials can be {action}"
        )
    return chosen, why


def _trial_header(study: Any, chosen: Any) -> dict[str, Any]:
    from resattn import __version__

    header: dict[str, Any] = {"study": study.study_name, "trial": chosen.number}
    names = study.metric_names or (["val_accuracy"] if len(study.directions) == 1 else
                                   [f"objective {i}" for i in range(len(study.directions))])
    for metric, value in zip(names, chosen.values or (), strict=False):
        if type(metric) is str and _HEADER_KEY_RE.fullmatch(metric):
            header.setdefault(metric, float(value))
    for key in ("params", "flops"):
        value = chosen.user_attrs.get(key)
        if type(value) is int:
            header.setdefault(key, value)
    placement = chosen.user_attrs.get(keys.PLACEMENT)
    if isinstance(placement, list) and all(type(p) is str for p in placement):
        header["placement"] = placement
    header["resattn"] = __version__
    header["date"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return header


def export_trial(
    storage: str,
    study_name: str | None,
    *,
    trial: int | None = None,
    best: bool = False,
    out: Path,
    class_name: str = "ResAttnNet",
    on_pick: Callable[[int, str], None] | None = None,
) -> Path:
    """Export a complete trial of a study to the file ``out``; returns the path written.

    With ``best``, the trial is the confirmed answer when the study has a confirmation
    (``resattn confirm``), else the highest proxy score; ``on_pick(trial, why)`` is told which and why.

    ``study_name`` may be ``None`` when the storage holds exactly one study. Give ``trial=N``, or
    ``best=True`` for the best trial of a single-objective study (a multi-objective study has no
    single best: the error lists its Pareto front). The file's docstring records the study, trial,
    objective values, params, FLOPs, placement, resattn version and date. A storage, study or
    recorded spec that cannot be read is a :class:`~resattn.errors.StorageError`, anything else an
    :class:`ExportError`; both are one readable line, and nothing is written then.
    """

    check_class_name(class_name)  # fail fast, before touching the storage
    study, chosen, spec, why = _load_trial(storage, study_name, trial, best)
    if on_pick is not None:
        on_pick(chosen.number, why)
    return write_export(out, spec, class_name=class_name, header=_trial_header(study, chosen))


def trial_spec(storage: str, study_name: str | None, *, trial: int | None = None,
               best: bool = False, action: str = "exported") -> tuple[NetSpec, str, int, str]:
    """The spec of a complete trial, chosen as :func:`export_trial` chooses it (same errors; ``action``
    is what the refusal of an incomplete trial says can only be done with complete ones);
    returns ``(spec, study_name, trial_number, why it was chosen)``. Used by ``resattn train --study``."""
    study, chosen, spec, why = _load_trial(storage, study_name, trial, best, action)
    return spec, study.study_name, chosen.number, why


def _load_trial(
    storage: str, study_name: str | None, trial: int | None, best: bool, action: str = "exported"
) -> tuple[Any, Any, NetSpec, str]:
    """``(study, trial, spec)``: the study (the storage's only one when ``study_name`` is None), the
    trial picked by number or ``best``, and its recorded spec. A storage, study or recorded spec that
    cannot be read is a :class:`~resattn.errors.StorageError`; a bad choice of trial an :class:`ExportError`."""

    study = load_study(storage, study_name)
    chosen, why = _pick_trial(study, trial, best, action)
    return study, chosen, load_trial_spec(chosen, study.study_name), why
