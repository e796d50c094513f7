"""``resattn confirm``: re-train the study's best distinct architectures and its baselines on paired
seeds, race them, and print the confirmed ranking with intervals and a verdict."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

import typer
from rich.table import Table

from resattn.cli.common import DEFAULT_STORAGE, StorageOpt, StudyOpt, err_console, guard, out_console, setup_logging

__all__ = ["confirm_cmd", "print_confirmation", "run_confirmation"]


def _pct(x: float | None, signed: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    return f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}"


def print_confirmation(report: dict[str, Any], console: Any = None) -> None:
    """The confirmed ranking as a table, then the verdict (from the JSON form of the report)."""
    console = console or out_console
    seeds = len(report.get("seeds") or [])
    table = Table(
        title=f"confirmation of study {report.get('study')}: {report.get('epochs')} epochs, {seeds} paired seeds "
              f"(accuracy in %, Δ to {report.get('baseline') or 'the baseline'} in points)",
        title_justify="left",
    )
    for col in ("trial", "candidate", "seeds", "mean", "95% CI", "Δ", "Δ 95% CI", "p (Holm)", "P(best)", "raced"):
        table.add_column(col, justify="left" if col in ("candidate", "raced") else "right", overflow="fold")
    for c in report.get("candidates", []):
        done = sum(v is not None for v in c.get("accuracy", []))
        ci = c.get("ci95") or [None, None]
        delta = c.get("delta")
        table.add_row(
            str(c.get("trial")), str(c.get("label")), str(done), _pct(c.get("mean")),
            f"[{_pct(ci[0])}, {_pct(ci[1])}]",
            _pct(delta["mean"], True) if delta else "baseline",
            f"[{_pct(delta['ci95'][0], True)}, {_pct(delta['ci95'][1], True)}]" if delta else "",
            f"{delta['p_holm']:.2g}" if delta and delta.get("p_holm") is not None else "",
            f"{c.get('p_best', 0):.2f}" if c.get("p_best") is not None else "—",
            f"out after {c['eliminated_after']}" if c.get("eliminated_after") else "",
        )
    console.print(table)
    console.print(f"verdict: {report.get('verdict')}", soft_wrap=True)


def run_confirmation(storage: str, study: str | None, *, top: int, seeds: int, epochs: int | None,
                     images: int | None, device: str, as_json: bool) -> dict[str, Any]:
    """Load the study, run the confirmation with progress lines (on stderr with ``--json``)."""
    from resattn.analysis.confirm import confirm_study
    from resattn.study.storage import default_artifact_dir, load_study

    study_obj = guard(lambda: load_study(storage, study, writable=True))  # results are stored in the study
    console = err_console if as_json else out_console

    def progress(candidate: Any, seed: int, acc: float, reused: bool) -> None:
        how = "stored" if reused else "trained"
        console.print(f"seed {seed}: {candidate.label} (trial {candidate.trial}) val_accuracy "
                      f"{acc:.4f} ({how})", soft_wrap=True)

    artifacts = str(default_artifact_dir(storage))
    report = guard(lambda: confirm_study(study_obj, top=top, seeds=seeds, epochs=epochs, images=images,
                                         device=device, on_result=progress, artifact_dir=artifacts))
    console.print(f"{report.trained} trainings run now ({report.seconds:.0f} s), {report.reused} reused from the study")
    for note in report.notes:
        console.print(f"note: {note}", soft_wrap=True)
    console.print(f"in optuna-dashboard (resattn dashboard --storage {storage}): the interval plot on the study "
                  f"page, each finalist's model file on its trial page (artifacts in {artifacts})", soft_wrap=True)
    return report.to_dict()


def confirm_cmd(
    storage: StorageOpt = DEFAULT_STORAGE,
    study: StudyOpt = None,
    top: Annotated[int, typer.Option(help="Confirm the K best distinct architectures (plus the baselines).",
                                     min=1)] = 3,
    seeds: Annotated[int, typer.Option(help="Paired seeds per candidate (racing drops clear losers after 3).",
                                       min=2)] = 5,
    epochs: Annotated[int | None, typer.Option(help="Epochs per training [default: 2 × the recipe's].",
                                               min=1)] = None,
    images: Annotated[int | None, typer.Option(help="Training images [default: every image of the study's "
                                                    "training split].", min=1)] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the table.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Re-train the best distinct architectures and the baselines on paired seeds: mean and 95 % CI,
    paired difference to all-residual (CI, Holm-adjusted p), probability of being best, and a verdict.

    Resumable: every training is stored in the study as it finishes; a re-run trains only what is missing.
    """
    setup_logging(verbose)
    report = run_confirmation(storage, study, top=top, seeds=seeds, epochs=epochs, images=images, device=device,
                              as_json=as_json)
    if as_json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print_confirmation(report)
