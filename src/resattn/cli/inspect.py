"""``resattn dashboard`` / ``studies`` / ``show`` / ``report``: look at a stored study."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from resattn.cli.common import DEFAULT_STORAGE, StorageOpt, StudyOpt, err_console, guard, out_console, setup_logging


def _num(x: float | None, digits: int = 4) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


# --------------------------------------------------------------------------------------- dashboard


def make_dashboard_server(storage_url: str, host: str = "127.0.0.1", port: int = 8080) -> Any:
    """optuna-dashboard's WSGI app on ``storage_url``, served by a :mod:`wsgiref` server bound to
    ``host:port`` (``port`` 0: a free port; read it from ``server.server_address``). The caller runs
    ``server.serve_forever()`` and ends it with ``server.shutdown()``; then ``server.server_close()``.
    Raises :class:`resattn.errors.StorageError` for a storage that cannot be opened."""
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    import optuna_dashboard
    from optuna.artifacts import FileSystemArtifactStore

    from resattn.study.storage import default_artifact_dir, open_existing_storage, writable_storage

    class _Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    class _Server(WSGIServer):
        daemon_threads = True
        allow_reuse_address = True

    # Notes can be written where the files allow it; a read-only study is browsed read-only.
    storage = open_existing_storage(storage_url, writable=writable_storage(storage_url))
    artifacts = default_artifact_dir(storage_url)  # every complete trial's model file
    store = FileSystemArtifactStore(str(artifacts)) if artifacts.is_dir() else None
    return make_server(host, port, optuna_dashboard.wsgi(storage, artifact_store=store), server_class=_Server,
                       handler_class=_Quiet)


def dashboard_cmd(
    storage: StorageOpt = DEFAULT_STORAGE,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port).", min=0, max=65535)] = 8080,
) -> None:
    """Browse the studies in optuna-dashboard (placement notes, history, importances). Ctrl-C stops it."""
    setup_logging(False)

    def start() -> Any:
        from resattn.errors import StorageError

        try:
            return make_dashboard_server(storage, host, port)
        except OSError as err:
            raise StorageError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None

    server = guard(start)
    try:
        bound_host, bound_port = server.server_address[:2]
        if bound_host in ("0.0.0.0", "", "::"):
            err_console.print(f"warning: --host {host} serves the dashboard on every network interface of this "
                              f"machine, without a password: anyone who can reach port {bound_port} can read the "
                              "studies and write notes into them; use --host 127.0.0.1 (the default) to keep it "
                              "local", soft_wrap=True)
            url = f"http://{_public_address()}:{bound_port}/ (on this machine: http://127.0.0.1:{bound_port}/)"
        else:
            url = f"http://{bound_host}:{bound_port}/"
        out_console.print(f"optuna-dashboard on {storage}: {url}  (Ctrl-C to stop)")
        sys.stdout.flush()
        server.serve_forever()
    except KeyboardInterrupt:
        from resattn.errors import forget_stop

        forget_stop()  # Ctrl-C (or SIGTERM) is how a server ends: exit 0
        out_console.print("dashboard stopped")
    finally:
        server.server_close()


def _public_address() -> str:
    """This machine's address as other machines see it: the interface of the default route, else the
    host name."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent, only a route is chosen
            address = probe.getsockname()[0]
        if address and not address.startswith("127."):
            return str(address)
    except OSError:
        pass
    return socket.gethostname()


# ----------------------------------------------------------------------------------- studies / show


def studies_cmd(storage: StorageOpt = DEFAULT_STORAGE) -> None:
    """List the studies in a storage: trial counts, best accuracy, space and recipe."""
    from resattn.analysis.inspect import list_studies

    setup_logging(False)
    infos = guard(lambda: list_studies(storage))
    if not infos:
        out_console.print(f"no study in {storage}")
        return
    table = Table(title=f"studies in {storage}", title_justify="left")
    numbers = ("complete", "duplicates", "pruned", "failed", "running", "queued", "best")
    for col in ("study", *numbers, "space", "recipe", "objectives"):
        table.add_column(col, justify="right" if col in numbers else "left", overflow="fold")
    for s in infos:
        counts = (s.complete, s.duplicates, s.pruned, s.failed, s.running, s.queued)
        table.add_row(s.name, *map(str, counts), _num(s.best), s.space or "—", s.recipe or "—",
                      ", ".join(s.metric_names))
    out_console.print(table)


def show_cmd(
    storage: StorageOpt = DEFAULT_STORAGE,
    study: StudyOpt = None,
    top: Annotated[int, typer.Option(help="How many of the best trials to show.", min=1)] = 5,
    compare: Annotated[
        tuple[int, int] | None,
        typer.Option(help="Compare two trials image by image on the validation split (McNemar's exact test).",
                     metavar="A B"),
    ] = None,
) -> None:
    """The best trials of a study (the Pareto front with several objectives), with placements and the
    command that exports each; the confirmed ranking when resattn confirm has run."""
    from resattn.analysis.inspect import (
        compare_trials,
        export_command,
        list_studies,
        proxy_noise,
        top_trials,
        warm_start_line,
    )
    from resattn.cli.confirm import print_confirmation
    from resattn.study.records import load_report
    from resattn.study.storage import load_study

    setup_logging(False)
    study_obj = guard(lambda: load_study(storage, study))
    if compare is not None:
        c = guard(lambda: compare_trials(study_obj, compare[0], compare[1]))
        out_console.print(
            f"trial {c.a}: {100 * c.accuracy_a:.1f} %, trial {c.b}: {100 * c.accuracy_b:.1f} % on the same "
            f"{c.images} validation images; only trial {c.a} right on {c.only_a}, only trial {c.b} right on "
            f"{c.only_b}: McNemar exact p = {c.p:.3g}"
            + (" (a real difference at the 5 % level)" if c.p < 0.05 else " (not distinguishable at the 5 % level)"),
            soft_wrap=True,
        )
        return
    (info,) = guard(lambda: list_studies(storage, [study_obj.study_name]))
    out_console.print(
        f"study {info.name}: {info.complete} complete, {info.pruned} pruned, {info.failed} failed"
        + (f", {info.duplicates} duplicate{'s' if info.duplicates != 1 else ''} not trained again"
           if info.duplicates else "")
        + f" (space {info.space or '—'}, recipe {info.recipe or '—'})"
    )
    warm = warm_start_line(study_obj)
    if warm:
        out_console.print(warm, soft_wrap=True)
    rows = top_trials(study_obj, top)
    if not rows:
        out_console.print("no trial has completed yet")
        return
    title = "Pareto front" if len(study_obj.directions) > 1 else f"Top {len(rows)} trials"
    table = Table(title=title, title_justify="left")
    for col in ("trial", "val_acc", "params", "MFLOPs", "epochs", "placement"):
        table.add_column(col, justify="left" if col == "placement" else "right", overflow="fold")
    for t in rows:
        table.add_row(
            str(t.number), _num(t.value), f"{t.params:,}" if t.params is not None else "—",
            f"{t.flops / 1e6:.1f}" if t.flops is not None else "—", str(t.epochs_run or "—"),
            "  ".join(t.placement) + (f"  ({t.design})" if t.design else ""),
        )
    out_console.print(table)
    noise = proxy_noise(study_obj)
    if noise is not None:
        out_console.print(f"note: each proxy accuracy comes from {noise[0]} validation images, a standard error of "
                          f"about {100 * noise[1]:.1f} points: smaller differences are noise", soft_wrap=True)
    report = load_report(study_obj)
    if report is not None:
        print_confirmation(report)
    else:
        out_console.print("not confirmed: resattn confirm re-trains the best distinct architectures and the "
                          "baselines on paired seeds and says which differences are real", soft_wrap=True)
    out_console.print("export:")
    for t in rows:
        out_console.print(f"  trial {t.number}: {export_command(storage, info.name, t.number)}", soft_wrap=True)


# ----------------------------------------------------------------------------------------- report


def report_cmd(
    storage: StorageOpt = DEFAULT_STORAGE,
    study: StudyOpt = None,
    out: Annotated[Path | None, typer.Option(help="Output folder [default: studies/report-<study>].")] = None,
) -> None:
    """Write a self-contained HTML report (report.html) and PNG figures: placement map (which pattern
    wins at which slot), history with the baselines, per-slot importances, accuracy vs size with the
    Pareto front, pruning savings."""
    from resattn.analysis.report import write_report
    from resattn.study.storage import load_study

    setup_logging(False)
    study_obj = guard(lambda: load_study(storage, study))
    folder = out if out is not None else Path("studies") / f"report-{study_obj.study_name}"
    result = guard(lambda: write_report(study_obj, folder, storage_url=storage))
    if result.message:
        out_console.print(result.message, soft_wrap=True)
        return
    out_console.print(f"report of study {result.study_name}: {result.html}")
    for name, path in result.pngs.items():
        out_console.print(f"  {name}: {path}")
    for name, caption in result.captions.items():
        if name in ("placement-map", "pruning") or name not in result.pngs:
            out_console.print(f"{name}: {caption}", soft_wrap=True)


__all__ = ["dashboard_cmd", "make_dashboard_server", "report_cmd", "show_cmd", "studies_cmd"]
