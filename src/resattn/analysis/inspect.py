"""Inspect a stored study: list studies, top trials, placement-map statistics, pruning savings.

Pure library (no printing, no rich): the ``resattn studies`` / ``show`` / ``report`` / ``dashboard``
commands (:mod:`resattn.cli.inspect`) and the HTML report (:mod:`resattn.analysis.report`) draw what
these functions compute.

Conventions: a trial's accuracy is its first objective (``val_accuracy``; resattn always puts it
first). Statistics over "COMPLETE trials" use COMPLETE trials with a finite accuracy and leave out
duplicates (trials with the user attribute ``duplicate_of``, which repeated an already-trained
architecture and carry its result), as :func:`resattn.study.search.summarize` does.
"""

from __future__ import annotations

import json
import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from resattn.model.kinds import KIND_TABLE
from resattn.study import keys
from resattn.study.records import is_duplicate
from resattn.study.search import summarize
from resattn.study.storage import open_existing_storage, redact, study_names

__all__ = [
    "NO_ATTENTION",
    "PlacementCell",
    "PlacementMap",
    "PruningSavings",
    "StudyInfo",
    "accuracy",
    "attention_label",
    "complete_trials",
    "export_command",
    "kind_and_attention",
    "list_studies",
    "pareto_front",
    "placement_map",
    "pruning_savings",
    "recipe_epochs",
    "slot_importances",
    "slot_names",
    "top_trials",
]

#: The attention label of a block without attention (plain, residual).
NO_ATTENTION = "none"


@dataclass(frozen=True)
class StudyInfo:
    """One study of a storage, for ``resattn studies``."""

    name: str
    complete: int
    pruned: int
    failed: int
    running: int
    best: float | None
    space: str | None
    recipe: str | None
    metric_names: tuple[str, ...]
    directions: tuple[str, ...]
    #: Trials queued but not started (WAITING): the baselines before the first run, a retry.
    queued: int = 0
    #: COMPLETE trials that repeated an architecture already trained (not in ``complete``).
    duplicates: int = 0

    @property
    def trials(self) -> int:
        return self.complete + self.duplicates + self.pruned + self.failed + self.running + self.queued


def warm_start_line(study: optuna.Study) -> str | None:
    """One sentence on the study's warm start (``train.init``), or None for a study trained from scratch."""
    init = study.user_attrs.get(keys.STUDY_INIT)
    if not isinstance(init, dict) or not init.get("init"):
        return None
    recipe = study.user_attrs.get(keys.STUDY_RECIPE)
    train = recipe.get("train", {}) if isinstance(recipe, dict) else {}
    lr = train.get("finetune_lr") if isinstance(train, dict) else None
    return (f"warm start: every trial started from {init['init']} (sha256 {str(init.get('sha256', '?'))[:12]}…, "
            f"{init.get('tensors', '?')} tensors)" + (f", fine-tuned at peak lr {lr:g}" if isinstance(lr, float | int)
                                                      else ""))


def list_studies(storage_url: str, names: Sequence[str] | None = None) -> list[StudyInfo]:
    """Every study in the storage (or those of ``names`` that exist), by name."""
    storage = open_existing_storage(storage_url)
    out = []
    for name in study_names(storage):
        if names is not None and name not in names:
            continue
        study = optuna.load_study(study_name=name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        count = {s: sum(t.state == s for t in trials) for s in TrialState}
        values = [accuracy(t) for t in complete_trials(study)]
        maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
        best = (max(values) if maximize else min(values)) if values else None
        attrs = study.user_attrs
        space = attrs.get(keys.STUDY_SPACE)
        recipe = attrs.get(keys.STUDY_RECIPE)
        duplicates = sum(t.state == TrialState.COMPLETE and is_duplicate(t) for t in trials)
        out.append(StudyInfo(
            name=name,
            complete=count[TrialState.COMPLETE] - duplicates,
            duplicates=duplicates,
            pruned=count[TrialState.PRUNED],
            failed=count[TrialState.FAIL],
            running=count[TrialState.RUNNING],
            queued=count[TrialState.WAITING],
            best=best,
            space=space.get("name") if isinstance(space, dict) else None,
            recipe=recipe.get("name") if isinstance(recipe, dict) else None,
            metric_names=tuple(_metric_names(study)),
            directions=tuple(d.name.lower() for d in study.directions),
        ))
    return out


def _metric_names(study: optuna.Study) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = study.metric_names
    return list(names) if names else [f"objective {i}" for i in range(len(study.directions))]


# ------------------------------------------------------------------------------------------ trials


def accuracy(trial: FrozenTrial) -> float:
    """The trial's first objective (``val_accuracy``); NaN when it has none."""
    if trial.values:
        return float(trial.values[0])
    return float("nan")


def complete_trials(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE trials with a finite accuracy, duplicates left out, by number."""
    return [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get(keys.DUPLICATE_OF) is None and math.isfinite(accuracy(t))
    ]


def top_trials(study: optuna.Study, k: int = 5) -> list[Any]:
    """The ``k`` best trials as :class:`resattn.study.search.TrialSummary`: by accuracy (one objective), or
    the Pareto front (several objectives), best accuracy first."""
    summary = summarize(study, top_k=k)
    rows = summary["pareto"] or summary["top"]
    return sorted(rows, key=lambda t: -(t.value if t.value is not None else -math.inf))[:k]


def export_command(storage_url: str, study_name: str, number: int, out: str = "studies/winner.py") -> str:
    """The command that writes trial ``number`` as a standalone PyTorch file."""
    return f"resattn export --storage {redact(storage_url)} --study {study_name} --trial {number} --out {out}"


def _spec_layers(trial: FrozenTrial) -> dict[str, dict[str, Any]]:
    raw = trial.user_attrs.get(keys.SPEC)
    if not raw:
        return {}
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
        return {layer.get("name"): layer for layer in data.get("layers", []) if isinstance(layer, dict)}
    except (ValueError, AttributeError, TypeError):
        return {}


def attention_label(layer: dict[str, Any]) -> str:
    """A block's attention(s) as one label: ``none``, ``cbam``, or ``s:se r:cbam`` for pattern4."""
    def name(att: Any) -> str:
        return att.get("name", "?") if isinstance(att, dict) else NO_ATTENTION

    kind = KIND_TABLE.get(str(layer.get("kind")))
    if kind is None or not kind.attentions:
        return NO_ATTENTION
    if "skip_attention" in kind.attentions:
        label = f"s:{name(layer.get('skip_attention'))} r:{name(layer.get('attention'))}"
        return label + (" direct" if layer.get("residual_path") == "direct" else "")
    return name(layer.get("attention"))


def kind_and_attention(trial: FrozenTrial, slot: str) -> tuple[str, str] | None:
    """``(kind, attention label)`` of ``slot`` in ``trial``, from its spec (else its params)."""
    layer = _spec_layers(trial).get(slot)
    if layer is not None:
        return str(layer.get("kind")), attention_label(layer)
    kind = trial.params.get(f"{slot}.kind")
    if kind is None:
        return None
    if kind in KIND_TABLE and "skip_attention" in KIND_TABLE[kind].attentions:
        skip = trial.params.get(f"{slot}.skip_attention", "?")
        res = trial.params.get(f"{slot}.residual_attention", "?")
        return kind, f"s:{skip} r:{res}"
    return kind, trial.params.get(f"{slot}.attention", NO_ATTENTION)


def _space_layers(study: optuna.Study) -> list[dict[str, Any]]:
    space = study.user_attrs.get(keys.STUDY_SPACE)
    try:
        return [la for la in space["backbone"]["layers"] if isinstance(la, dict) and "slot" in la]
    except (TypeError, KeyError):
        return []


def slot_names(study: optuna.Study) -> list[str]:
    """The space's slots, in network order (from the study's recorded space, else the trials)."""
    names = [str(la["slot"]) for la in _space_layers(study)]
    if names:
        return names
    seen: dict[str, None] = {}
    for t in study.get_trials(deepcopy=False):
        for item in t.user_attrs.get(keys.PLACEMENT, ()):
            seen.setdefault(str(item).split("=", 1)[0], None)
        for p in t.params:
            seen.setdefault(p.split(".", 1)[0], None)
    return list(seen)


# ------------------------------------------------------------------------------------ placement map


@dataclass(frozen=True)
class PlacementCell:
    """The COMPLETE trials that chose one option at one slot."""

    count: int
    best: float | None
    mean: float | None
    trials: tuple[int, ...] = ()
    #: Standard error of the mean over those trials (None with fewer than two).
    se: float | None = None


@dataclass(frozen=True)
class PlacementMap:
    """Slots × options (kinds, or attention labels): best and mean accuracy, and counts."""

    what: str  # "kind" or "attention"
    slots: tuple[str, ...]
    options: tuple[str, ...]
    cells: dict[tuple[str, str], PlacementCell] = field(default_factory=dict)

    def cell(self, slot: str, option: str) -> PlacementCell:
        return self.cells.get((slot, option), PlacementCell(0, None, None))

    def matrix(self, stat: str) -> list[list[float | None]]:
        """Rows = slots, columns = options; ``stat`` is ``best``, ``mean`` or ``count``."""
        return [[getattr(self.cell(s, o), stat) for o in self.options] for s in self.slots]

    def distinct_winners(self) -> dict[str, tuple[str, PlacementCell, bool] | None]:
        """Per slot, the option with the best mean and whether it stands out: its mean exceeds every
        other option's by more than 1.96 × the standard error of the difference (both with ≥ 2 trials).
        Differences within that are noise, not findings."""
        out: dict[str, tuple[str, PlacementCell, bool] | None] = {}
        for slot, win in self.winners("mean").items():
            if win is None:
                out[slot] = None
                continue
            option, cell = win
            rivals = [self.cell(slot, o) for o in self.options if o != option and self.cell(slot, o).count]
            clear = bool(rivals) and cell.se is not None and all(
                r.se is not None and cell.mean is not None and r.mean is not None
                and cell.mean - r.mean > 1.96 * math.sqrt(cell.se ** 2 + r.se ** 2) for r in rivals
            )
            out[slot] = (option, cell, clear)
        return out

    def winners(self, stat: str = "mean") -> dict[str, tuple[str, PlacementCell] | None]:
        """Per slot, the option with the highest ``stat`` (ties: more trials, then the option order)."""
        out: dict[str, tuple[str, PlacementCell] | None] = {}
        for s in self.slots:
            chosen = [(o, self.cell(s, o)) for o in self.options if self.cell(s, o).count]
            out[s] = max(chosen, key=lambda oc: (getattr(oc[1], stat), oc[1].count)) if chosen else None
        return out


def placement_map(study: optuna.Study, what: str = "kind") -> PlacementMap:
    """Per slot and per option (``what`` = ``kind`` or ``attention``): best and mean accuracy and the
    number of COMPLETE trials (duplicates left out) that chose it. Options the space offers but no
    trial chose appear with count 0; kinds follow the space's order."""
    if what not in ("kind", "attention"):
        raise ValueError(f"what must be 'kind' or 'attention', got {what!r}")
    slots = slot_names(study)
    groups: dict[tuple[str, str], list[tuple[int, float]]] = {}
    options: dict[str, None] = {}
    if what == "kind":
        for la in _space_layers(study):
            for kind in la.get("choices", {}).get("kinds", []):
                options.setdefault(str(kind), None)
    for t in complete_trials(study):
        for s in slots:
            ka = kind_and_attention(t, s)
            if ka is None:
                continue
            option = ka[0] if what == "kind" else ka[1]
            options.setdefault(option, None)
            groups.setdefault((s, option), []).append((t.number, accuracy(t)))
    if what == "attention":  # "none" first, then by name
        options = dict.fromkeys(sorted(options, key=lambda o: (o != NO_ATTENTION, o.startswith("s:"), o)))
    cells = {
        key: PlacementCell(
            count=len(items),
            best=max(v for _, v in items),
            mean=sum(v for _, v in items) / len(items),
            trials=tuple(n for n, _ in items),
            se=statistics.stdev([v for _, v in items]) / math.sqrt(len(items)) if len(items) > 1 else None,
        )
        for key, items in groups.items()
    }
    return PlacementMap(what=what, slots=tuple(slots), options=tuple(options), cells=cells)


# ------------------------------------------------------------------------------------- importances


def slot_importances(study: optuna.Study, *, seed: int = 0) -> tuple[dict[str, float], dict[str, float]]:
    """fANOVA parameter importances of the accuracy, summed per slot (a parameter ``s1.kind`` belongs
    to slot ``s1``). Returns ``(per slot, per parameter)``, largest first.

    Raises :class:`ValueError` with a readable sentence when Optuna cannot compute them (too few
    COMPLETE trials, no parameter common to all of them, …).
    """
    trials = complete_trials(study)
    if len(trials) < 2:
        raise ValueError(f"parameter importances need at least 2 completed trials; the study has {len(trials)}")
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            per_param = get_param_importances(
                study, evaluator=FanovaImportanceEvaluator(seed=seed), target=accuracy, normalize=True
            )
    except Exception as err:  # optuna raises ValueError/RuntimeError for too-few or degenerate trials
        raise ValueError(f"Optuna could not compute parameter importances: {err}") from None
    if not per_param:
        raise ValueError("Optuna found no parameter shared by all completed trials to rank")
    per_slot: dict[str, float] = {}
    for name, value in per_param.items():
        slot = name.split(".", 1)[0]
        per_slot[slot] = per_slot.get(slot, 0.0) + float(value)
    ordered = dict(sorted(per_slot.items(), key=lambda kv: -kv[1]))
    return ordered, {k: float(v) for k, v in per_param.items()}


# ------------------------------------------------------------------------------------------ pareto


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points ``(cost, accuracy)`` that no other point dominates (lower or equal cost
    and higher or equal accuracy, one of them strictly), sorted by cost."""
    front = []
    for i, (c, a) in enumerate(points):
        dominated = any(
            (c2 <= c and a2 >= a) and (c2 < c or a2 > a) for j, (c2, a2) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


# ----------------------------------------------------------------------------------------- pruning


def recipe_epochs(study: optuna.Study) -> int | None:
    """The recipe's epochs per trial (from the study's recorded recipe)."""
    recipe = study.user_attrs.get(keys.STUDY_RECIPE)
    try:
        return int(recipe["train"]["epochs"])
    except (TypeError, KeyError, ValueError):
        return None


@dataclass(frozen=True)
class PruningSavings:
    """Epochs trained in total against every finished or failed trial training the recipe's epochs."""

    trials: int
    epochs_per_trial: int
    budget: int  # trials × epochs_per_trial
    run: int  # epochs actually trained
    by_state: dict[str, tuple[int, int]]  # state -> (trials, epochs trained)
    pruned_early: int  # trials the pruner stopped before the last epoch
    over_budget: int  # trials pruned before training (over params/FLOPs limits)
    duplicates: int  # trials not trained because their architecture had been trained

    @property
    def saved(self) -> int:
        return self.budget - self.run

    @property
    def saved_fraction(self) -> float:
        return self.saved / self.budget if self.budget else 0.0


def _trained_epochs(t: FrozenTrial) -> int:
    if t.user_attrs.get(keys.DUPLICATE_OF) is not None:
        return 0
    value = t.user_attrs.get(keys.EPOCHS_RUN)
    if value is None:  # trained but never reported an epoch, or a foreign trial: use its reports
        value = max(t.intermediate_values, default=0)
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def pruning_savings(study: optuna.Study, epochs: int | None = None) -> PruningSavings:
    """How much training pruning (and duplicate/budget skipping) saved: ``epochs_run`` summed over the
    COMPLETE, PRUNED and FAIL trials against ``trials × epochs`` (the recipe's ``train.epochs``)."""
    done = [
        t for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    ]
    per_trial = epochs or recipe_epochs(study) or max((_trained_epochs(t) for t in done), default=0)
    by_state: dict[str, tuple[int, int]] = {}
    for t in done:
        n, e = by_state.get(t.state.name, (0, 0))
        by_state[t.state.name] = (n + 1, e + _trained_epochs(t))
    pruned = [t for t in done if t.state == TrialState.PRUNED]
    over = sum(str(t.user_attrs.get(keys.FAIL_REASON) or "").startswith("over budget") for t in pruned)
    return PruningSavings(
        trials=len(done),
        epochs_per_trial=per_trial,
        budget=len(done) * per_trial,
        run=sum(_trained_epochs(t) for t in done),
        by_state=by_state,
        pruned_early=sum(0 < _trained_epochs(t) < per_trial for t in pruned),
        over_budget=over,
        duplicates=sum(t.user_attrs.get(keys.DUPLICATE_OF) is not None for t in done),
    )


# ------------------------------------------------------------------------------------ comparisons


@dataclass(frozen=True)
class TrialComparison:
    """Two trials scored on the same validation images: accuracies, the images only one of them got
    right, and McNemar's exact p-value of that split."""

    a: int
    b: int
    accuracy_a: float
    accuracy_b: float
    images: int
    only_a: int
    only_b: int
    p: float


def compare_trials(study: optuna.Study, a: int, b: int) -> TrialComparison:
    """McNemar's test of trials ``a`` and ``b`` on their stored per-image results (``val_correct``): a
    paired test over images, sharper than comparing two accuracies, each with its own ~2-point noise."""
    from resattn.analysis.statistics import mcnemar
    from resattn.errors import StorageError
    from resattn.study.records import unpack_bits

    found = {t.number: t for t in study.get_trials(deepcopy=False) if t.number in (a, b)}
    vectors = []
    for number in (a, b):
        t = found.get(number)
        if t is None:
            raise StorageError(f"study {study.study_name!r} has no trial {number}")
        original = t.user_attrs.get(keys.DUPLICATE_OF)
        if original is not None:  # a duplicate carries its original's result
            t = next((o for o in study.get_trials(deepcopy=False) if o.number == original), t)
        packed = t.user_attrs.get(keys.VAL_CORRECT)
        if not isinstance(packed, str) or t.state != TrialState.COMPLETE:
            raise StorageError(f"trial {number} has no per-image result (only COMPLETE trials of resattn ≥ 0.2 "
                               "store one)")
        vectors.append((packed, accuracy(t)))
    bits = [unpack_bits(packed) for packed, _ in vectors]
    if bits[0].shape != bits[1].shape:
        raise StorageError(f"trials {a} and {b} were scored on different validation splits")
    only_a, only_b, p = mcnemar(bits[0], bits[1])
    return TrialComparison(a, b, float(bits[0].mean()), float(bits[1].mean()), int(bits[0].size), only_a, only_b, p)


def proxy_noise(study: optuna.Study) -> tuple[int, float] | None:
    """``(validation images, standard error of one accuracy)`` of the study's proxy scores, from the
    stored per-image results (binomial: ``sqrt(p (1 − p) / n)`` at the typical accuracy)."""
    from resattn.study.records import unpack_bits

    trials = complete_trials(study)
    for t in trials:
        packed = t.user_attrs.get(keys.VAL_CORRECT)
        if isinstance(packed, str):
            try:
                n = int(unpack_bits(packed).size)
            except ValueError:
                continue
            accs = sorted(accuracy(x) for x in trials)
            p = accs[len(accs) // 2]
            return n, math.sqrt(max(p * (1 - p), 1e-12) / n)
    return None
