"""A study's report: one self-contained HTML page (plotly, its JavaScript inlined: no CDN, opens
offline) and a PNG copy of every figure (matplotlib; kaleido is not needed).

Figures, in order: when the study has a confirmation (``resattn confirm``), first its verdict with
each candidate's interval; then (the first that answers "which pattern wins at which slot"):

1. ``placement-map``: slots × kinds and slots × attentions; best and mean val accuracy of the
   COMPLETE trials that chose each, with their counts;
2. ``history``: the optimisation history, the enqueued baseline designs marked;
3. ``importances``: fANOVA parameter importances summed per slot (or a sentence why not);
4. ``pareto``: accuracy vs params and vs FLOPs, the Pareto fronts (max accuracy, min cost) highlighted;
5. ``pruning``: epochs trained in total vs every trial training the recipe's epochs.

Statistics come from :mod:`resattn.analysis.inspect`.
"""

from __future__ import annotations

import html
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from resattn.analysis.inspect import (
    PlacementMap,
    accuracy,
    complete_trials,
    export_command,
    pareto_front,
    placement_map,
    pruning_savings,
    slot_importances,
    top_trials,
    warm_start_line,
)
from resattn.errors import ConfigError
from resattn.study import keys
from resattn.study.records import confirmed_winner, is_duplicate, load_report

__all__ = ["FIGURES", "MIN_COMPLETE", "ReportResult", "write_report"]

#: A report needs this many COMPLETE trials (with a finite accuracy).
MIN_COMPLETE = 2
FIGURES = ("placement-map", "history", "importances", "pareto", "pruning")


@dataclass
class ReportResult:
    study_name: str
    out_dir: Path
    html: Path | None = None
    pngs: dict[str, Path] = field(default_factory=dict)
    #: Set when no report was written (too few trials): the plain sentence to show.
    message: str | None = None
    #: What each figure says, in one sentence (also in the HTML).
    captions: dict[str, str] = field(default_factory=dict)


def _fmt(x: float | None, digits: int = 3) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def write_report(study: optuna.Study, out_dir: str | Path, *, storage_url: str | None = None) -> ReportResult:
    """Write ``report.html`` and one PNG per figure into ``out_dir`` (created).

    With fewer than :data:`MIN_COMPLETE` completed trials nothing is written and
    ``result.message`` says why.
    """
    out = Path(out_dir)
    result = ReportResult(study_name=study.study_name, out_dir=out)
    complete = complete_trials(study)
    if len(complete) < MIN_COMPLETE:
        n = len(study.get_trials(deepcopy=False))
        result.message = (
            f"study {study.study_name!r} has {len(complete)} completed trial{'s' if len(complete) != 1 else ''} "
            f"({n} in all); a report needs at least {MIN_COMPLETE}. Run more trials, then report again."
        )
        return result
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        why = "it is a file" if out.is_file() or isinstance(err, FileExistsError) else err.strerror or str(err)
        raise ConfigError(f"cannot write the report into {str(out)!r}: {why}; give a folder", key="--out") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write the report into {str(out)!r}: the folder is not writable", key="--out")
    try:
        return _write_figures(study, out, result, storage_url)
    except OSError as err:
        raise ConfigError(f"cannot write the report into {str(out)!r}: {err.strerror or err}", key="--out") from None


def _write_figures(study: optuna.Study, out: Path, result: ReportResult, storage_url: str | None) -> ReportResult:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    sections: list[tuple[str, str, Any]] = []  # (title, caption html, plotly figure or None)
    builders = (
        *((("confirmation", "The verdict: paired-seed confirmation", _confirmation_figures),)
          if load_report(study) is not None else ()),
        ("placement-map", "Which pattern wins at which slot", _placement_figures),
        ("history", "Optimisation history", _history_figures),
        ("importances", "Parameter importances per slot (fANOVA)", _importance_figures),
        ("pareto", "Accuracy vs model size", _pareto_figures),
        ("pruning", "Pruning savings", _pruning_figures),
    )
    for name, title, build in builders:
        caption, pfig, mfig = build(study)
        result.captions[name] = caption
        if mfig is not None:
            path = out / f"{name}.png"
            mfig.savefig(path, dpi=120, bbox_inches="tight")
            plt.close(mfig)
            result.pngs[name] = path
        sections.append((title, caption, pfig, result.pngs.get(name)))
    result.html = out / "report.html"
    result.html.write_text(_html_page(study, sections, storage_url), encoding="utf-8")
    return result


# ----------------------------------------------------------------------------------------- the page


def _html_page(study: optuna.Study, sections: list[Any], storage_url: str | None) -> str:
    trials = study.get_trials(deepcopy=False)
    counts = {s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    duplicates = sum(t.state == TrialState.COMPLETE and is_duplicate(t) for t in trials)
    head = [
        f"<h1>resattn study <code>{html.escape(study.study_name)}</code></h1>",
        f"<p>{len(trials)} trials: {counts[TrialState.COMPLETE] - duplicates} complete, "
        f"{counts[TrialState.PRUNED]} pruned, {counts[TrialState.FAIL]} failed"
        + (f", {_n(duplicates, 'duplicate')} not trained again." if duplicates else "."),
    ]
    space = study.user_attrs.get(keys.STUDY_SPACE)
    recipe = study.user_attrs.get(keys.STUDY_RECIPE)
    if isinstance(space, dict) and isinstance(recipe, dict):
        head[-1] += (f" Space <code>{html.escape(str(space.get('name')))}</code>, recipe "
                     f"<code>{html.escape(str(recipe.get('name')))}</code>.")
    warm = warm_start_line(study)
    if warm:
        head[-1] += f" {html.escape(warm[0].upper() + warm[1:])}."
    head[-1] += "</p>"
    best = top_trials(study, 5)
    if best:
        rows = "".join(
            f"<tr><td>{t.number}</td><td>{_fmt(t.value, 4)}</td><td>{t.params or 0:,}</td>"
            f"<td>{html.escape('  '.join(t.placement))}{' (' + html.escape(t.design) + ')' if t.design else ''}</td>"
            "</tr>"
            for t in best
        )
        head.append("<h3>Best trials</h3><table><tr><th>trial</th><th>val_accuracy</th><th>params</th>"
                    f"<th>placement</th></tr>{rows}</table>")
        if storage_url:
            confirmed = confirmed_winner(study)
            if confirmed is not None:
                command = export_command(storage_url, study.study_name, confirmed[0]).replace(
                    f" --trial {confirmed[0]} ", " --best ")
                head.append(f"<p>Export the confirmed answer (trial {confirmed[0]}, {html.escape(confirmed[1])}): "
                            f"<code>{html.escape(command)}</code></p>")
            else:
                command = export_command(storage_url, study.study_name, best[0].number)
                head.append("<p>Export the proxy's best (a screen, not yet confirmed: run "
                            f"<code>resattn confirm</code>): <code>{html.escape(command)}</code></p>")
    body = []
    first = True
    for title, caption, pfig, png in sections:
        body.append(f"<h2>{html.escape(title)}</h2><p>{html.escape(caption)}</p>")
        if pfig is not None:
            body.append(pfig.to_html(full_html=False, include_plotlyjs=first,
                                     config={"displaylogo": False}))
            first = False
        if png is not None:
            body.append(f'<p class="png">PNG: <a href="{png.name}">{png.name}</a></p>')
    style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
             "code{background:#f4f4f4}.png{color:#666;font-size:90%}")
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>resattn report: {html.escape(study.study_name)}</title><style>{style}</style></head><body>"
        + "\n".join(head + body) + "</body></html>\n"
    )


# -------------------------------------------------------------------------------------- figure (a/b)


def winners_sentence(kinds: PlacementMap, attentions: PlacementMap) -> str:
    """Per slot: the kind and the attention with the best mean accuracy, called a finding only where it
    stands out of the noise (:meth:`PlacementMap.distinct_winners`)."""
    parts = []
    kw, aw = kinds.distinct_winners(), attentions.distinct_winners()
    for slot in kinds.slots:
        if kw.get(slot) is None:
            parts.append(f"{slot}: no completed trial")
            continue
        texts = []
        for what, win in (("kind", kw[slot]), ("attention", aw.get(slot))):
            if win is None:
                continue
            option, cell, clear = win
            spread = f"mean {_fmt(cell.mean)} ± {_fmt(cell.se)} over {cell.count}" if cell.se is not None else \
                f"mean {_fmt(cell.mean)}, {cell.count} trial"
            if clear:
                texts.append(f"{what} {option} stands out ({spread})")
            else:
                texts.append(f"no {what} stands out (the best mean, {option}: {spread}, is within the noise)")
        parts.append(f"{slot}: " + ", ".join(texts))
    return ("Per slot, by mean val accuracy of the completed trials choosing it (± its standard error; a "
            "difference counts only beyond 1.96 standard errors of the difference): " + "; ".join(parts) + ". "
            "A proxy study screens; resattn confirm decides.")


def _cell_text(m: PlacementMap, stat: str) -> list[list[str]]:
    def text(c: Any) -> str:
        if not c.count:
            return "n=0"
        se = f" ±{_fmt(c.se)}" if stat == "mean" and c.se is not None else ""
        return f"{_fmt(getattr(c, stat))}{se}\nn={c.count}"

    return [[text(m.cell(s, o)) for o in m.options] for s in m.slots]


def _placement_figures(study: optuna.Study) -> tuple[str, Any, Any]:
    kinds, atts = placement_map(study, "kind"), placement_map(study, "attention")
    if not kinds.slots or not any(c.count for c in kinds.cells.values()):
        return "No placement map: the completed trials record no slots (a study not made by resattn?).", None, None
    values = [accuracy(t) for t in complete_trials(study)]
    lo, hi = min(values), max(values)
    if hi <= lo:
        hi = lo + 1e-6
    caption = winners_sentence(kinds, atts) + (
        " Cells: the best (left) and mean ± standard error (right) val accuracy of the COMPLETE trials "
        "(duplicates left out) that chose the kind / attention at that slot; n = their number.")
    panels = [(kinds, "best"), (kinds, "mean"), (atts, "best"), (atts, "mean")]

    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    pfig = make_subplots(rows=2, cols=2, horizontal_spacing=0.12, vertical_spacing=0.18, subplot_titles=[
        f"{m.what}: {stat} val accuracy" for m, stat in panels])
    for i, (m, stat) in enumerate(panels):
        z = [[v if v is not None else None for v in row] for row in m.matrix(stat)]
        text = [[t.replace("\n", "<br>") for t in row] for row in _cell_text(m, stat)]
        pfig.add_trace(go.Heatmap(
            z=z, x=list(m.options), y=list(m.slots), text=text, texttemplate="%{text}", zmin=lo, zmax=hi,
            colorscale="Viridis", showscale=i == 0, colorbar={"title": "val acc"},
            hovertemplate="slot %{y}<br>%{x}<br>%{text}<extra></extra>",
        ), row=i // 2 + 1, col=i % 2 + 1)
        pfig.update_yaxes(autorange="reversed", row=i // 2 + 1, col=i % 2 + 1)
    pfig.update_layout(height=300 + 90 * len(kinds.slots) * 2, title="Placement map")

    import matplotlib.pyplot as plt
    import numpy as np

    widths = [max(len(kinds.options), 1), max(len(atts.options), 1)]
    mfig, axes = plt.subplots(2, 2, figsize=(4 + 1.6 * max(widths), 2.2 + 1.6 * len(kinds.slots)),
                              squeeze=False, layout="constrained")
    image = None
    for ax, (m, stat) in zip(axes.flat, panels, strict=True):
        z = np.array([[np.nan if v is None else v for v in row] for row in m.matrix(stat)], dtype=float)
        image = ax.imshow(np.ma.masked_invalid(z), cmap="viridis", vmin=lo, vmax=hi, aspect="auto")
        ax.set_xticks(range(len(m.options)), m.options, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(m.slots)), m.slots)
        ax.set_title(f"{m.what}: {stat} val accuracy", fontsize=10)
        for r, row in enumerate(_cell_text(m, stat)):
            for c, t in enumerate(row):
                v = z[r, c]
                dark = not np.isnan(v) and (v - lo) / (hi - lo) < 0.6
                ax.text(c, r, t, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    mfig.suptitle(f"{study.study_name}: placement map (COMPLETE trials)")
    if image is not None:
        mfig.colorbar(image, ax=axes, shrink=0.8, label="val accuracy")
    return caption, pfig, mfig


def _confirmation_figures(study: optuna.Study) -> tuple[str, Any, Any]:
    """The stored ``resattn confirm`` result: each candidate's mean with its 95 % interval and its paired
    difference to all-residual with its interval; the caption is the verdict."""
    from resattn.analysis.confirm import interval_figure

    report = load_report(study)
    assert report is not None
    caption = (f"Verdict: {report.get('verdict')} ({len(report.get('seeds') or [])} paired seeds, "
               f"{report.get('epochs')} epochs per training; the proxy study's ranking above is a screen, "
               "this is the answer.)")
    pfig = interval_figure(report)

    import matplotlib.pyplot as plt

    rows = [c for c in report.get("candidates", []) if c.get("mean") is not None][::-1]
    labels = [f"{c['label']} (#{c['trial']})" for c in rows]
    mfig, axes = plt.subplots(1, 2, figsize=(11, 1.2 + 0.45 * len(rows)), sharey=True, layout="constrained")
    for ax, key, title in ((axes[0], "mean", "val accuracy (%), 95 % CI"),
                           (axes[1], "delta", f"Δ to {report.get('baseline') or 'baseline'} (points)")):
        xs, lo, hi = [], [], []
        for c in rows:
            part = c if key == "mean" else (c.get("delta") or {})
            mean = part.get("mean")
            ci = part.get("ci95") or [None, None]
            xs.append(100 * mean if mean is not None else math.nan)
            lo.append(100 * (mean - ci[0]) if mean is not None and ci[0] is not None else 0.0)
            hi.append(100 * (ci[1] - mean) if mean is not None and ci[1] is not None else 0.0)
        ax.errorbar(xs, range(len(rows)), xerr=[lo, hi], fmt="o", capsize=3)
        ax.set_title(title, fontsize=10)
        if key == "delta":
            ax.axvline(0, linestyle=":", color="grey")
    axes[0].set_yticks(range(len(rows)), labels, fontsize=8)
    mfig.suptitle(f"{study.study_name}: confirmation", fontsize=10)
    return caption, pfig, mfig


def _last_value(t: Any) -> float | None:
    if t.intermediate_values:
        v = t.intermediate_values[max(t.intermediate_values)]
        return float(v) if math.isfinite(v) else None
    return None


def _history_figures(study: optuna.Study) -> tuple[str, Any, Any]:
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE and math.isfinite(accuracy(t))]
    pruned = [(t.number, _last_value(t)) for t in trials if t.state == TrialState.PRUNED]
    pruned = [(n, v) for n, v in pruned if v is not None]
    # The enqueued designs, COMPLETE at their accuracy, PRUNED at their last reported one.
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    baselines = [(t.number, accuracy(t) if t.state == TrialState.COMPLETE else _last_value(t),
                  t.user_attrs[keys.DESIGN] + ("" if t.state == TrialState.COMPLETE else f" ({t.state.name.lower()})"))
                 for t in trials if t.user_attrs.get(keys.DESIGN) and t.state in finished]
    baselines = [b for b in baselines if b[1] is not None and math.isfinite(b[1])]
    best_x, best_y, running = [], [], -math.inf
    for t in sorted(complete, key=lambda t: t.number):
        running = max(running, accuracy(t))
        best_x.append(t.number)
        best_y.append(running)
    failed = sum(t.state == TrialState.FAIL for t in trials)
    designs = ", ".join(label for _, _, label in baselines) or "none finished"
    caption = (
        f"val accuracy of each COMPLETE trial by trial number, the best so far, pruned trials at their last "
        f"reported accuracy, and the enqueued baseline designs ({designs}) "
        f"marked. {failed} failed trial{'s' if failed != 1 else ''} not shown."
    )

    import plotly.graph_objects as go

    pfig = go.Figure()
    pfig.add_trace(go.Scatter(x=[t.number for t in complete], y=[accuracy(t) for t in complete], mode="markers",
                              name="complete", text=["  ".join(t.user_attrs.get(keys.PLACEMENT, ())) for t in complete],
                              hovertemplate="trial %{x}: %{y:.4f}<br>%{text}<extra></extra>"))
    if pruned:
        pfig.add_trace(go.Scatter(x=[n for n, _ in pruned], y=[v for _, v in pruned], mode="markers",
                                  name="pruned (last report)", marker={"symbol": "x", "color": "grey"}))
    pfig.add_trace(go.Scatter(x=best_x, y=best_y, mode="lines", line={"shape": "hv"}, name="best so far"))
    if baselines:
        pfig.add_trace(go.Scatter(
            x=[b[0] for b in baselines], y=[b[1] for b in baselines], mode="markers+text",
            name="baseline design", text=[b[2] for b in baselines], textposition="top center",
            marker={"symbol": "star", "size": 14, "color": "crimson"}))
    pfig.update_layout(title="Optimisation history", xaxis_title="trial", yaxis_title="val accuracy", height=450)

    import matplotlib.pyplot as plt

    mfig, ax = plt.subplots(figsize=(9, 4.5))
    ax.scatter([t.number for t in complete], [accuracy(t) for t in complete], s=18, label="complete")
    if pruned:
        ax.scatter([n for n, _ in pruned], [v for _, v in pruned], marker="x", color="grey", s=18,
                   label="pruned (last report)")
    ax.step(best_x, best_y, where="post", color="tab:orange", label="best so far")
    for number, value, label in baselines:
        ax.scatter([number], [value], marker="*", s=160, color="crimson", zorder=3)
        ax.annotate(label, (number, value), textcoords="offset points", xytext=(4, 6), fontsize=8, color="crimson")
    ax.set_xlabel("trial")
    ax.set_ylabel("val accuracy")
    ax.set_title(f"{study.study_name}: optimisation history (★ baseline designs)")
    ax.legend(fontsize=8)
    return caption, pfig, mfig


# ---------------------------------------------------------------------------------------- figure (c)


def _importance_figures(study: optuna.Study) -> tuple[str, Any, Any]:
    try:
        per_slot, per_param = slot_importances(study)
    except ValueError as err:
        return f"No parameter importances: {err}.", None, None
    detail = ", ".join(f"{k} {v:.2f}" for k, v in per_param.items())
    caption = (
        "Share of the val accuracy's variance explained per slot (Optuna's FanovaImportanceEvaluator over the "
        f"COMPLETE trials; the importances of a slot's parameters summed). Per parameter: {detail}. "
        "Only parameters every completed trial has are ranked (conditional ones, such as an attention "
        "that exists for some kinds only, are left out by Optuna)."
    )
    slots, values = list(per_slot), list(per_slot.values())

    import plotly.graph_objects as go

    pfig = go.Figure(go.Bar(x=values, y=slots, orientation="h", text=[f"{v:.2f}" for v in values]))
    pfig.update_layout(title="fANOVA importance per slot", xaxis_title="importance (sums to 1)",
                       yaxis={"autorange": "reversed"}, height=200 + 40 * len(slots))

    import matplotlib.pyplot as plt

    mfig, ax = plt.subplots(figsize=(7, 1.5 + 0.45 * len(slots)))
    ax.barh(slots, values)
    ax.invert_yaxis()
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.2f}", va="center", fontsize=8)
    ax.set_xlabel("fANOVA importance (sums to 1)")
    ax.set_title(f"{study.study_name}: parameter importance per slot")
    return caption, pfig, mfig


# ---------------------------------------------------------------------------------------- figure (d)


def _pareto_figures(study: optuna.Study) -> tuple[str, Any, Any]:
    trials = [t for t in complete_trials(study) if t.user_attrs.get(keys.PARAMS) and t.user_attrs.get(keys.FLOPS)]
    panels = []
    for key, label in (("params", "parameters"), ("flops", "FLOPs per image")):
        pts = [(float(t.user_attrs[key]), accuracy(t)) for t in trials]
        panels.append((key, label, pts, pareto_front(pts)))
    front_params = [trials[i].number for i in panels[0][3]]
    caption = (
        "val accuracy vs model size of the COMPLETE trials; in red the Pareto front (highest accuracy for "
        f"at most that size). Front by params: trials {', '.join(map(str, front_params)) or '—'}."
    )

    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    pfig = make_subplots(rows=1, cols=2, subplot_titles=["accuracy vs params", "accuracy vs FLOPs"])
    hover = [f"trial {t.number}<br>{'  '.join(t.user_attrs.get('placement', ()))}" for t in trials]
    for col, (_key, label, pts, front) in enumerate(panels, start=1):
        pfig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="markers", name="trials",
                                  text=hover, hovertemplate="%{text}<br>%{x:,}: %{y:.4f}<extra></extra>",
                                  marker={"color": "steelblue"}, showlegend=col == 1), row=1, col=col)
        pfig.add_trace(go.Scatter(x=[pts[i][0] for i in front], y=[pts[i][1] for i in front],
                                  mode="lines+markers", line={"shape": "hv", "color": "crimson"},
                                  marker={"size": 10, "color": "crimson"}, name="Pareto front",
                                  text=[hover[i] for i in front], hovertemplate="%{text}<extra></extra>",
                                  showlegend=col == 1), row=1, col=col)
        pfig.update_xaxes(title_text=label, row=1, col=col)
        pfig.update_yaxes(title_text="val accuracy", row=1, col=col)
    pfig.update_layout(height=450)

    import matplotlib.pyplot as plt

    mfig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (key, label, raw, front) in zip(axes, panels, strict=True):
        scale, unit = (1e3, "thousands") if key == "params" else (1e6, "millions")
        pts = [(c / scale, a) for c, a in raw]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=16, color="steelblue", label="trials")
        ax.step([pts[i][0] for i in front], [pts[i][1] for i in front], where="post", color="crimson")
        ax.scatter([pts[i][0] for i in front], [pts[i][1] for i in front], s=40, color="crimson",
                   label="Pareto front")
        for i in front:
            ax.annotate(str(trials[i].number), pts[i], textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax.ticklabel_format(axis="x", style="plain", useOffset=False)
        ax.tick_params(axis="x", labelrotation=30)
        ax.set_xlabel(f"{label} ({unit})")
        ax.set_ylabel("val accuracy")
    axes[0].legend(fontsize=8)
    mfig.suptitle(f"{study.study_name}: accuracy vs size (COMPLETE trials)")
    return caption, pfig, mfig


# ---------------------------------------------------------------------------------------- figure (e)


def _n(count: int, noun: str) -> str:
    """``1 trial``, ``3 trials``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _pruning_figures(study: optuna.Study) -> tuple[str, Any, Any]:
    s = pruning_savings(study)
    caption = (
        f"{s.run} epochs trained in total, against {s.trials} trials × {s.epochs_per_trial} epochs = {s.budget} "
        f"without pruning: {s.saved} epochs ({100 * s.saved_fraction:.0f} %) saved. {_n(s.pruned_early, 'trial')} "
        f"pruned early, {s.over_budget} over the size budget (not trained), {_n(s.duplicates, 'duplicate')} (not "
        "trained again)."
    )
    states = [k for k in ("COMPLETE", "PRUNED", "FAIL") if k in s.by_state]
    colors = {"COMPLETE": "steelblue", "PRUNED": "grey", "FAIL": "crimson"}

    import plotly.graph_objects as go

    pfig = go.Figure()
    pfig.add_trace(go.Bar(y=["without pruning"], x=[s.budget], orientation="h", name="trials × epochs",
                          marker={"color": "lightgrey"}))
    for k in states:
        n, e = s.by_state[k]
        pfig.add_trace(go.Bar(y=["trained"], x=[e], orientation="h", name=f"{k.lower()} ({n} trials)",
                              marker={"color": colors[k]}))
    pfig.update_layout(barmode="stack", title=f"Epochs trained: {s.run} of {s.budget}", xaxis_title="epochs",
                       height=260)

    import matplotlib.pyplot as plt

    mfig, ax = plt.subplots(figsize=(8, 2.4))
    ax.barh(["without pruning"], [s.budget], color="lightgrey")
    left = 0
    for k in states:
        n, e = s.by_state[k]
        ax.barh(["trained"], [e], left=left, color=colors[k], label=f"{k.lower()} ({n} trials)")
        left += e
    ax.set_xlabel("epochs")
    ax.set_title(f"{study.study_name}: {s.run} of {s.budget} epochs trained ({100 * s.saved_fraction:.0f} % saved)")
    ax.legend(fontsize=8, loc="lower right")
    return caption, pfig, mfig
