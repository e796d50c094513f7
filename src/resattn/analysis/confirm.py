"""Answers you can trust: re-train the study's best distinct architectures and its baselines on paired
seeds, race them, and give a verdict against all-residual (DESIGN.md §8, ``resattn confirm``).

**Candidates**: the ``top`` best distinct architectures of the study by proxy accuracy (COMPLETE trials,
duplicates and repeated ``arch_hash`` left out) plus every baseline design the study trained
(all-residual and the notebooks' designs, user attribute ``design``). The reference of every
comparison is all-residual; it is never dropped.

**Fidelity**: by default each candidate trains ``2 ×`` the recipe's epochs on *every* training image
of the study's seeded train/validation split (the proxy trained a subset for a few epochs: that is
where its noise comes from), and is scored on the same validation split as the search (so per-image
results compare). ``epochs`` / ``images`` override both.

**Paired seeds**: seed ``r`` gives every candidate the same data order and augmentation draws (the
batch generator is seeded by ``train.seed + r``) and the same initial weights for every module whose
name and parameter shapes match across the candidates (each such module is re-initialised from a seed
derived from ``r``, its name and its shapes, :func:`paired_init`). So differences between candidates
are differences between architectures, not between draws.

**Racing**: after every round of seeds, once :data:`MIN_SEEDS` seeds are in, a candidate whose paired
difference to the current leader (the highest mean) is significantly negative — two-sided paired t-test,
Holm-adjusted over the comparisons with the leader, ``p < alpha`` — stops receiving seeds
(``eliminated_after`` records how many it had). all-residual always gets every seed.

**Resumable**: every finished training is stored on the study as the user attribute
``resattn.confirm.<setting>.<arch_hash>.<seed>`` (accuracy, seconds, per-image correctness); a re-run
trains only what is missing, and racing decisions, computed from stored results only, come out the same.
The report is stored as ``resattn.confirm.summary``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial

from resattn.analysis import statistics as S
from resattn.analysis.inspect import accuracy, complete_trials
from resattn.errors import ConfigError, StorageError
from resattn.model.net import build
from resattn.model.spec import NetSpec
from resattn.study import keys
from resattn.study.objective import prepare_data
from resattn.study.records import confirmed_winner, load_report, load_trial_spec, recipe_of_study
from resattn.training.loop import resolve_device, train
from resattn.training.warmstart import load_init, read_init

__all__ = [
    "ALPHA",
    "BASELINE",
    "MIN_SEEDS",
    "Candidate",
    "CandidateResult",
    "ConfirmReport",
    "candidates_of",
    "confirm_study",
    "confirmed_winner",
    "load_report",
    "paired_init",
    "race",
    "summarise",
]

log = logging.getLogger(__name__)

#: The design every candidate is compared with.
BASELINE = "all-residual"
#: Racing starts once every candidate has this many seeds.
MIN_SEEDS = 3
#: Significance level of the racing eliminations and of the verdict.
ALPHA = 0.05
SUMMARY_KEY = keys.CONFIRM_SUMMARY


@dataclass(frozen=True)
class Candidate:
    """One architecture to confirm."""

    label: str
    trial: int
    arch_hash: str
    placement: tuple[str, ...]
    spec: NetSpec = field(repr=False)
    design: str | None = None  # the baseline design it is, if any
    proxy: float | None = None

    @property
    def is_baseline(self) -> bool:
        return self.design == BASELINE


def short_label(placement: tuple[str, ...], *, gates: bool = False) -> str:
    """``s1 pattern2[eca] + s2 pattern4[se|cbam]``: slots with their kind and attention names (options,
    γ and λ left out; with ``gates``, the γ / λ values kept: ``s2 pattern4[se|cbam γs=0 γr=0.169]``)."""
    parts = []
    for item in placement:
        slot, _, block = str(item).partition("=")
        kind, _, inner = block.partition("[")
        inner = inner.rstrip("]")
        names = [part.split("/")[0].split(" ")[0] for part in inner.split("|")] if inner else []
        extra = [word for word in inner.replace("|", " ").split() if word.startswith(("γ", "λ"))] if gates else []
        body = " ".join(["|".join(names), *extra])
        parts.append(f"{slot} {kind}" + (f"[{body}]" if names else ""))
    return " + ".join(parts)


def candidates_of(study: optuna.Study, top: int) -> list[Candidate]:
    """The ``top`` best distinct architectures plus the baseline designs the study trained, best first,
    all-residual last; an architecture that is both is listed once, under its design's name."""
    by_hash: dict[str, Candidate] = {}
    designs: dict[str, FrozenTrial] = {}
    for t in study.get_trials(deepcopy=False):
        design = t.user_attrs.get(keys.DESIGN)
        if design and isinstance(t.user_attrs.get(keys.SPEC), str) and design not in designs:
            designs[design] = t
    ranked = sorted(complete_trials(study), key=lambda t: (-accuracy(t), t.number))
    chosen: list[FrozenTrial] = []
    seen: set[str] = set()
    for t in ranked:
        digest = t.user_attrs.get(keys.ARCH_HASH) or f"#{t.number}"
        if digest in seen:
            continue
        seen.add(digest)
        chosen.append(t)
        if len(chosen) == top:
            break
    design_of_hash = {d.user_attrs.get(keys.ARCH_HASH): name for name, d in designs.items()}
    for t in [*chosen, *designs.values()]:
        digest = t.user_attrs.get(keys.ARCH_HASH) or f"#{t.number}"
        if digest in by_hash:
            continue
        placement = tuple(str(p) for p in t.user_attrs.get(keys.PLACEMENT, ()))
        design = design_of_hash.get(digest)
        proxy = accuracy(t) if t.values else None
        by_hash[digest] = Candidate(
            label=design or short_label(placement) or f"trial {t.number}", trial=t.number, arch_hash=digest,
            placement=placement, spec=load_trial_spec(t, study.study_name), design=design,
            proxy=proxy if proxy is not None and math.isfinite(proxy) else None,
        )
    out = sorted(by_hash.values(), key=lambda c: (c.is_baseline, -(c.proxy or -1.0), c.trial))
    # Architectures that differ only in their gates (γ, λ) get labels that show them.
    counts = Counter(c.label for c in out)
    return [dataclasses.replace(c, label=short_label(c.placement, gates=True))
            if counts[c.label] > 1 and c.design is None else c for c in out]


# --------------------------------------------------------------------------------------- pairing


def _derived_seed(seed: int, name: str, module: torch.nn.Module) -> int:
    shapes = [tuple(p.shape) for p in module.parameters(recurse=False)]
    digest = hashlib.sha256(f"{seed}|{name}|{shapes}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def paired_init(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Re-initialise every module that has its own parameters from a seed derived from ``seed``, the
    module's name and its parameters' shapes, so two architectures sharing a module (same name, same
    shapes) start it from identical weights. Modules without ``reset_parameters`` keep what their
    constructor set (γ and λ gates: from the spec). The global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        for name, module in model.named_modules():
            if hasattr(module, "reset_parameters") and any(True for _ in module.parameters(recurse=False)):
                torch.manual_seed(_derived_seed(seed, name, module))
                module.reset_parameters()
    return model


# ---------------------------------------------------------------------------------------- racing


def race(values: dict[str, list[float | None]], protected: set[str], *, rounds: int,
         alpha: float = ALPHA, min_seeds: int = MIN_SEEDS) -> dict[str, int]:
    """Replay the racing over the first ``rounds`` seeds: ``{candidate: seeds it had when it was
    eliminated}`` for the eliminated ones. ``values[c][r]`` is candidate ``c``'s result on seed ``r``
    (``None``: not trained). ``protected`` candidates are never eliminated."""
    eliminated: dict[str, int] = {}
    for r in range(min_seeds, rounds + 1):
        active = {c: [v for v in vals[:r]] for c, vals in values.items() if c not in eliminated}
        means = {c: S.mean_ci(v).mean for c, v in active.items()}
        means = {c: m for c, m in means.items() if math.isfinite(m)}
        if len(means) < 2:
            continue
        leader = max(means, key=lambda c: means[c])
        pvalues = {c: S.paired_difference(active[c], active[leader]).p for c in means if c != leader}
        adjusted = S.holm(pvalues)
        for c, p in adjusted.items():
            if c in protected or not math.isfinite(p):
                continue
            if p < alpha and means[c] < means[leader]:
                eliminated[c] = sum(v is not None for v in values[c][:r])
    return eliminated


# --------------------------------------------------------------------------------------- results


@dataclass
class CandidateResult:
    """One candidate's confirmation."""

    candidate: Candidate
    accuracy: list[float | None]
    mean: float
    ci95: tuple[float, float]
    delta: S.Difference | None  # to all-residual (None on the baseline itself)
    p_holm: float | None
    p_best: float
    eliminated_after: int | None

    def to_dict(self) -> dict[str, Any]:
        c = self.candidate
        out: dict[str, Any] = {
            "label": c.label, "trial": c.trial, "arch_hash": c.arch_hash, "placement": list(c.placement),
            "design": c.design, "proxy": _num(c.proxy),
            "accuracy": [_num(v) for v in self.accuracy], "mean": _num(self.mean),
            "ci95": [_num(self.ci95[0]), _num(self.ci95[1])],
            "p_best": _num(self.p_best), "eliminated_after": self.eliminated_after,
        }
        if self.delta is not None:
            out["delta"] = {"mean": _num(self.delta.mean), "ci95": [_num(self.delta.low), _num(self.delta.high)],
                            "p": _num(self.delta.p), "p_holm": _num(self.p_holm), "seeds": self.delta.n}
        return out


def _num(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


@dataclass
class ConfirmReport:
    """What ``resattn confirm`` found (see :meth:`to_dict` for the JSON shape)."""

    study: str
    seeds: list[int]
    baseline: str | None
    candidates: list[CandidateResult]
    verdict: str
    winner: int | None  # the trial to export / train as the confirmed answer
    winner_reason: str
    epochs: int
    images: int
    trained: int = 0
    reused: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # what could not be shown in the dashboard

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study, "seeds": self.seeds, "baseline": self.baseline,
            "candidates": [c.to_dict() for c in self.candidates], "verdict": self.verdict,
            "winner": self.winner, "winner_reason": self.winner_reason,
            "epochs": self.epochs, "images": self.images,
            "trained": self.trained, "reused": self.reused, "seconds": round(self.seconds, 1),
        }


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


def summarise(study_name: str, candidates: list[Candidate], values: dict[str, list[float | None]],
              eliminated: dict[str, int], seeds: list[int], *, epochs: int, images: int,
              alpha: float = ALPHA) -> ConfirmReport:
    """The statistics and the verdict from the per-seed results (``values[arch_hash][r]``)."""
    base = next((c for c in candidates if c.is_baseline), None)
    ref = values.get(base.arch_hash) if base is not None else None
    deltas: dict[str, S.Difference] = {}
    for c in candidates:
        if ref is not None and c is not base:
            deltas[c.arch_hash] = S.paired_difference(values[c.arch_hash], ref)
    adjusted = S.holm({h: d.p for h, d in deltas.items()})
    p_best = S.probability_best({c.arch_hash: values[c.arch_hash] for c in candidates})
    results = []
    for c in candidates:
        summary = S.mean_ci(values[c.arch_hash])
        results.append(CandidateResult(
            candidate=c, accuracy=list(values[c.arch_hash]), mean=summary.mean, ci95=(summary.low, summary.high),
            delta=deltas.get(c.arch_hash), p_holm=adjusted.get(c.arch_hash), p_best=p_best.get(c.arch_hash, 0.0),
            eliminated_after=eliminated.get(c.arch_hash),
        ))
    results.sort(key=lambda r: -(r.mean if math.isfinite(r.mean) else -1.0))
    verdict, winner, reason = _verdict(results, base, len(seeds), alpha)
    return ConfirmReport(study=study_name, seeds=seeds, baseline=base.label if base else None,
                         candidates=results, verdict=verdict, winner=winner, winner_reason=reason,
                         epochs=epochs, images=images)


def _verdict(results: list[CandidateResult], base: Candidate | None, n_seeds: int,
             alpha: float) -> tuple[str, int | None, str]:
    if base is None:
        top = results[0] if results else None
        text = ("the study has no all-residual baseline to compare with; ranking by mean only"
                + (f": {top.candidate.label} leads with {100 * top.mean:.1f} %" if top else ""))
        return text, (top.candidate.trial if top else None), "highest mean (no baseline to test against)"
    wins = [r for r in results if r.delta is not None and r.p_holm is not None and math.isfinite(r.p_holm)
            and r.p_holm < alpha and r.delta.mean > 0]
    losses = [r for r in results if r.delta is not None and r.p_holm is not None and math.isfinite(r.p_holm)
              and r.p_holm < alpha and r.delta.mean < 0]
    if wins:
        best = max(wins, key=lambda r: r.delta.mean)  # type: ignore[union-attr]
        d = best.delta
        assert d is not None and best.p_holm is not None
        text = (f"{best.candidate.label} beats {base.label} by {_pts(d.mean)} points "
                f"[{_pts(d.low)}, {_pts(d.high)}] (p = {best.p_holm:.2g} Holm-adjusted, {d.n} seeds)")
        return text, best.candidate.trial, f"confirmed: beats {base.label} significantly"
    diffs = [r.delta for r in results if r.delta is not None and math.isfinite(r.delta.mean)]
    if not diffs:
        return (f"not enough results to compare with {base.label} yet (need 2 seeds per candidate)",
                base.trial, "no comparison possible yet")
    bound = max(max(abs(d.low), abs(d.high)) if math.isfinite(d.low) else abs(d.mean) for d in diffs)
    sds = [d.sd for d in diffs if math.isfinite(d.sd)]
    sd = sorted(sds)[len(sds) // 2] if sds else float("nan")  # the typical spread of a difference
    target = 0.005  # half a point: the size of the placement effects in the literature
    need = S.seeds_needed(sd, target, alpha=alpha)
    more = (f"; resolving a difference of {100 * target:.1f} points needs about {need} seeds or a larger "
            "validation split") if need else ""
    worse = f" ({', '.join(r.candidate.label for r in losses)} significantly worse)" if losses else ""
    text = (f"no placement is distinguishable from {base.label}{worse}: every difference lies within "
            f"±{100 * bound:.1f} points at {n_seeds} seeds{more}")
    return text, base.trial, f"no placement beats {base.label}: the simplest network is the answer"


# ---------------------------------------------------------------------------------------- running


def _setting(study: optuna.Study, epochs: int, images: int) -> str:
    fp = study.user_attrs.get(keys.STUDY_RECIPE_FINGERPRINT, "")
    return hashlib.sha256(f"{fp}|{epochs}|{images}".encode()).hexdigest()[:8]


def result_key(setting: str, arch_hash: str, seed: int) -> str:
    """The study user attribute holding one confirmation training."""
    return f"{keys.CONFIRM_PREFIX}{setting}.{arch_hash}.{seed}"


def confirm_study(
    study: optuna.Study,
    *,
    top: int = 3,
    seeds: int = 5,
    epochs: int | None = None,
    images: int | None = None,
    device: str = "auto",
    alpha: float = ALPHA,
    on_result: Callable[[Candidate, int, float, bool], None] | None = None,
    artifact_dir: str | None = None,
) -> ConfirmReport:
    """Confirm the study's ``top`` distinct architectures and its baselines over ``seeds`` paired seeds
    (see the module docstring). ``on_result(candidate, seed, accuracy, reused)`` follows progress."""
    for name, value, low in (("--top", top, 1), ("--seeds", seeds, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"must be an integer ≥ {low}, got {value!r}", key=name)
    recipe = recipe_of_study(study)
    epochs = 2 * recipe.train.epochs if epochs is None else epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"must be a positive integer, got {epochs!r}", key="--epochs")
    images = 0 if images is None else images
    if isinstance(images, bool) or not isinstance(images, int) or images < 0:
        raise ConfigError(f"must be an integer ≥ 0 (0 = every training image), got {images!r}", key="--images")
    cands = candidates_of(study, top)
    if len(cands) < 2:
        raise StorageError(f"study {study.study_name!r} has fewer than two architectures to compare "
                           "(no COMPLETE trials yet?)")
    setting = _setting(study, epochs, images)
    stored = study.user_attrs
    values: dict[str, list[float | None]] = {c.arch_hash: [None] * seeds for c in cands}
    protected = {c.arch_hash for c in cands if c.is_baseline}
    eliminated: dict[str, int] = {}
    data: Any = None
    init: Any = None
    torch_device: torch.device | None = None
    trained = reused = 0
    seconds = 0.0
    run_recipe = recipe.with_overrides({"data.train_images": images})
    for r in range(seeds):
        for c in cands:
            if c.arch_hash in eliminated:
                continue
            key = result_key(setting, c.arch_hash, r)
            found = stored.get(key)
            if isinstance(found, dict) and isinstance(found.get("accuracy"), int | float):
                values[c.arch_hash][r] = float(found["accuracy"])
                reused += 1
                if on_result:
                    on_result(c, r, float(found["accuracy"]), True)
                continue
            if data is None:  # only a run with something left to train touches the data
                torch_device = resolve_device(device)
                _, data = prepare_data(run_recipe, torch_device)
            config = dataclasses.replace(recipe.train, epochs=epochs, seed=recipe.train.seed + r)
            model = paired_init(build(c.spec), recipe.train.seed + r)
            if recipe.train.warm:  # a warm-started study: every candidate starts from its checkpoint
                if init is None:
                    init = read_init(recipe.train.init)
                load_init(model, init)
            started = time.perf_counter()
            result = train(model, data.train, data.val, config, device=torch_device, mean=data.mean, std=data.std)
            took = time.perf_counter() - started
            del model
            acc = float(result.val_accuracy if result.val_accuracy is not None else math.nan)
            record: dict[str, Any] = {"accuracy": acc, "seconds": round(took, 3), "trial": c.trial}
            if result.val_correct is not None:
                record["correct"] = S.pack_bits(result.val_correct.numpy())
                record["images"] = int(result.val_correct.numel())
            study.set_user_attr(key, record)
            values[c.arch_hash][r] = acc
            trained += 1
            seconds += took
            if on_result:
                on_result(c, r, acc, False)
        eliminated = race(values, protected, rounds=r + 1, alpha=alpha)
    report = summarise(study.study_name, cands, values, eliminated, list(range(seeds)), epochs=epochs,
                       images=len(data.train) if data is not None else _stored_images(recipe, images))
    report.trained, report.reused, report.seconds = trained, reused, seconds
    summary = report.to_dict()
    study.set_user_attr(SUMMARY_KEY, summary)
    report.notes = publish(study, summary, cands, artifact_dir)
    return report


def _stored_images(recipe: Any, images: int) -> int:
    return images  # nothing trained in this run: the count the setting was made with (0 = all)


# ---------------------------------------------------------------------------------- the dashboard

#: The id of the confirmation's interval plot among the study's optuna-dashboard figures.
GRAPH_ID = "resattn-confirmation"


def interval_figure(report: dict[str, Any], *, compact: bool = False) -> Any:
    """A plotly figure: each candidate's mean val accuracy with its 95 % interval, and its paired
    difference to the baseline with its 95 % interval (0 marked).

    ``compact`` (optuna-dashboard's half-width panel): candidates are named by trial number (and
    design), the placements are in the hover text, and the title wraps."""
    import textwrap

    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = [c for c in report.get("candidates", []) if c.get("mean") is not None][::-1]
    full = [f"{c['label']} (#{c['trial']})" for c in rows]
    labels = [f"#{c['trial']}" + (f" {c['label']}" if c.get("design") or c["label"] == report.get("baseline")
                                  else "") for c in rows] if compact else full
    baseline = report.get("baseline") or "baseline"
    titles = (["accuracy %, 95 % CI", f"Δ to {baseline}"] if compact
              else ["val accuracy (%), mean and 95 % CI over seeds", f"Δ to {baseline} (points)"])
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04, subplot_titles=titles)

    def err(c: dict[str, Any], key: str) -> tuple[float, float, float]:
        part = c if key == "mean" else c.get("delta") or {}
        mean = part.get("mean")
        low, high = (part.get("ci95") or [None, None])
        if mean is None:
            return float("nan"), 0.0, 0.0
        return 100 * mean, 100 * (high - mean) if high is not None else 0.0, 100 * (mean - low) if low is not None \
            else 0.0

    for col, key in ((1, "mean"), (2, "delta")):
        values = [err(c, key) for c in rows]
        fig.add_trace(go.Scatter(
            x=[v[0] for v in values], y=labels, mode="markers", showlegend=False, hovertext=full,
            error_x={"type": "data", "symmetric": False, "array": [v[1] for v in values],
                     "arrayminus": [v[2] for v in values]},
        ), row=1, col=col)
    fig.add_vline(x=0, line_dash="dot", row=1, col=2)
    title = f"confirmation: {report.get('verdict')}"
    if compact:
        title = "<br>".join(textwrap.wrap(title, 60))
    lines = title.count("<br>") + 1
    fig.update_layout(title={"text": title, "y": 0.98, "yanchor": "top"}, height=180 + 40 * len(rows) + 24 * lines,
                      margin={"l": 140 if compact else 260, "t": 50 + 24 * lines})
    return fig


def study_note(report: dict[str, Any]) -> str:
    """The confirmation as the study's markdown note in optuna-dashboard: the verdict, the confirmed
    answer (the dashboard's own "Best Trial" is the proxy's best, a screen) and the table."""
    def pct(value: Any) -> str:
        return "·" if value is None else f"{100 * value:.1f}"

    def signed(value: Any) -> str:
        return "·" if value is None else f"{100 * value:+.1f}"

    seeds = report.get("seeds") or []
    lines = [f"## resattn confirm: {len(seeds)} paired seeds, {report.get('epochs')} epochs per training", "",
             f"**Verdict:** {report.get('verdict')}", ""]
    if isinstance(report.get("winner"), int):
        lines += [f"**The answer:** trial {report['winner']} ({report.get('winner_reason')}). The \"Best Trial\" "
                  "panel shows the proxy's best score, a screen.", ""]
    lines += ["| trial | candidate | seeds | mean % | 95 % CI | Δ points | Δ 95 % CI | p (Holm) | P(best) |",
              "| ---: | --- | ---: | ---: | --- | ---: | --- | ---: | ---: |"]
    for c in report.get("candidates", []):
        d = c.get("delta") or {}
        low, high = (c.get("ci95") or [None, None])
        dlow, dhigh = (d.get("ci95") or [None, None])
        trained = sum(v is not None for v in c.get("accuracy") or [])
        p_holm = d.get("p_holm")
        label = str(c.get("label")).replace("|", "\\|")  # a pipe inside a markdown table cell
        lines.append(
            f"| {c.get('trial')} | {label} | {trained} | {pct(c.get('mean'))} | "
            f"[{pct(low)}, {pct(high)}] | {signed(d.get('mean')) if d else 'baseline'} | "
            + (f"[{signed(dlow)}, {signed(dhigh)}]" if d else "") + " | "
            + ("" if p_holm is None else f"{p_holm:.3g}") + f" | {c.get('p_best') or 0:.2f} |")
    return "\n".join(lines) + "\n"


def _own_or_no_study_note(study: optuna.Study) -> bool:
    """Whether the study's dashboard note is empty or an earlier confirmation's (a user's own note is
    never written over; when the note cannot be read, it is left alone)."""
    try:
        from optuna_dashboard._note import get_note_from_system_attrs

        body = get_note_from_system_attrs(study._storage.get_study_system_attrs(study._study_id), None)["body"]
    except Exception:  # a private helper of optuna-dashboard: any change there means "leave the note alone"
        return False
    return not str(body).strip() or str(body).startswith("## resattn confirm")


def publish(study: optuna.Study, report: dict[str, Any], candidates: list[Candidate],
            artifact_dir: str | None) -> list[str]:
    """Show the confirmation in optuna-dashboard: the interval plot saved with the study, and each
    finalist's exported ``.py`` attached to its trial as an artifact (a file-system artifact store in
    ``artifact_dir``; once per architecture). Returns notes on what could not be done."""
    notes: list[str] = []
    try:
        from optuna_dashboard import save_note, save_plotly_graph_object

        save_plotly_graph_object(study, interval_figure(report, compact=True), graph_object_id=GRAPH_ID)
        if _own_or_no_study_note(study):
            save_note(study, study_note(report))
        else:
            notes.append("the study already has a note of its own in optuna-dashboard: the confirmation was not "
                         "written over it")
    except ImportError:
        notes.append("optuna-dashboard is not installed: the interval plot was not saved with the study")
    if artifact_dir is None:
        return notes
    import tempfile
    from pathlib import Path

    from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact

    from resattn.export.source import ExportError, write_export

    # Trials of resattn ≥ 0.2 carry their model file already (attached while they ran). For older
    # ones (a finished trial takes no new artifact) the finalist's file goes to the study's artifacts.
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    store: Any = None
    for c in candidates:
        key = f"{keys.CONFIRM_PREFIX}artifact.{c.arch_hash}"
        t = trials.get(c.trial)
        if t is None or study.user_attrs.get(key) or get_all_artifact_meta(t, storage=study._storage):
            continue
        if store is None:
            try:
                Path(artifact_dir).mkdir(parents=True, exist_ok=True)
            except OSError as err:
                return [*notes, f"cannot create the artifact folder {artifact_dir!r} ({err.strerror or err})"]
            store = FileSystemArtifactStore(artifact_dir)
        header = {"study": study.study_name, "trial": c.trial, "placement": list(c.placement)}
        with tempfile.TemporaryDirectory(prefix="resattn-artifact-") as tmp:
            try:
                path = write_export(Path(tmp) / f"trial{c.trial}.py", c.spec, header=header)
            except ExportError as err:
                notes.append(f"trial {c.trial}: model file not attached ({err})")
                continue
            artifact_id = upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=study,
                                          mimetype="text/x-python")
        study.set_user_attr(key, artifact_id)
    return notes


def format_json(report: ConfirmReport) -> str:
    """The report as one JSON object (``--json``)."""
    return json.dumps(report.to_dict(), ensure_ascii=False)
