"""``resattn validate``: re-train a study's best (and some random) trials longer; does the proxy rank right?"""

from __future__ import annotations

import math
from typing import Annotated

import typer
from rich.table import Table

from resattn.cli.common import guard, out_console, setup_logging


def _num(x: float | None, digits: int = 3) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def validate_cmd(
    storage: Annotated[
        str, typer.Option(help="SQLAlchemy URL or journal file path of the study.")
    ] = "sqlite:///studies/resattn.db",
    study: Annotated[str | None, typer.Option(help="Study name [default: the storage's only study].")] = None,
    top: Annotated[int, typer.Option(help="Re-train the K best COMPLETE trials by proxy accuracy.", min=0)] = 8,
    random_: Annotated[
        int, typer.Option("--random", help="Also re-train R other COMPLETE trials, drawn with --pick-seed "
                                            "(12 architectures by default: fewer make τ mostly noise).", min=0)
    ] = 4,
    epochs: Annotated[
        int | None, typer.Option(help="Epochs of the long training [default: 2 × the recipe's].", min=1)
    ] = None,
    seeds: Annotated[int, typer.Option(help="Training seeds per trial (mean ± std).", min=1)] = 1,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    pick_seed: Annotated[int, typer.Option(help="Seed of the --random draw.")] = 0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Re-train top-K and R random trials longer, several seeds; Kendall τ / Spearman ρ of proxy vs long.

    Resumable: results are stored in the study as they finish; a re-run trains only what is missing.
    """
    from resattn.analysis.fidelity import validate_study
    from resattn.study.storage import load_study

    setup_logging(verbose)
    study_obj = guard(lambda: load_study(storage, study, writable=True))  # results are stored in the study

    def progress(number: int, seed: int, acc: float, reused: bool) -> None:
        how = "stored" if reused else "trained"
        out_console.print(f"trial {number} seed {seed}: val_accuracy {_num(acc, 4)} ({how})")

    report = guard(
        lambda: validate_study(
            study_obj, top=top, random_count=random_, epochs=epochs, seeds=seeds, device=device,
            pick_seed=pick_seed, on_result=progress,
        )
    )
    table = Table(
        title=f"study {report.study_name}: proxy ({report.proxy_epochs} epochs) vs long ({report.epochs} epochs, "
              f"{report.seeds} seed{'s' if report.seeds > 1 else ''})",
        title_justify="left",
    )
    for col in ("trial", "picked", "proxy acc", "long acc (mean ± std)", "placement"):
        table.add_column(col, justify="left" if col in ("picked", "placement") else "right", overflow="fold")
    for r in sorted(report.rows, key=lambda r: -r.mean):
        table.add_row(str(r.number), r.picked, _num(r.proxy, 4), f"{_num(r.mean, 4)} ± {_num(r.std, 4)}",
                      "  ".join(r.placement))
    out_console.print(table)
    out_console.print(
        f"{report.architectures} architectures: Kendall τ = {_num(report.kendall_tau)} "
        f"[{_num(report.kendall_ci[0])}, {_num(report.kendall_ci[1])}], "
        f"Spearman ρ = {_num(report.spearman_rho)} [{_num(report.spearman_ci[0])}, {_num(report.spearman_ci[1])}] "
        "(proxy vs long mean; 95 % bootstrap intervals over the architectures)"
    )
    if report.proxy_winner == report.long_winner:
        verdict = f"the proxy's winner (trial {report.proxy_winner}) is still the winner"
    elif report.winner_holds:
        verdict = (f"the proxy's winner (trial {report.proxy_winner}) is within one std of the long winner "
                   f"(trial {report.long_winner})")
    else:
        verdict = (f"the proxy's winner (trial {report.proxy_winner}) is NOT the long winner "
                   f"(trial {report.long_winner}), nor within one std of it")
    out_console.print(verdict)
    out_console.print(
        f"{report.trained} trainings run now ({report.seconds:.0f} s), {report.reused} reused from the study"
    )
