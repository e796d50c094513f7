"""The search: run (or continue) a study until its budget of trials has finished, in this process or
in worker processes, and summarise what it left behind (DESIGN.md §4).

The library reports progress through a :class:`~resattn.study.objective.SearchReporter` (the CLI
draws it with rich) and logs; it never prints."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from resattn.errors import (
    EXIT_FAILED,
    ConfigError,
    Terminated,
    acknowledge_stop,
    check_stop,
    fault_signal,
    signals_deferred,
)
from resattn.study.keys import DEFAULT_STORAGE
from resattn.study.loop import budget_lock, claim_process_indices, process_seed, run_trials
from resattn.study.objective import NullReporter, Objective, SearchReporter, check_init, prepare_data
from resattn.study.recipe import Recipe
from resattn.study.records import TrialSummary, finished_count, load_report, measured_noise, summarize
from resattn.study.setup import baseline_status, default_study_name, make_sampler, open_study, requeue_baselines
from resattn.study.space import SearchSpace
from resattn.study.storage import check_storage_url, default_artifact_dir, heartbeat_settings, open_storage, redact
from resattn.study.workers import fail_orphaned_journal_trials, parse_gpus, plan_workers, run_parallel
from resattn.training.loop import resolve_device

__all__ = [
    "DEFAULT_STORAGE",
    "SearchResult",
    "TrialSummary",
    "convergence_callback",
    "run_search",
    "search_notices",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchResult:
    """What a search run leaves behind (the study itself is in the storage)."""

    study_name: str
    storage: str
    target: int
    finished: int
    complete: int
    pruned: int
    failed: int
    top: tuple[TrialSummary, ...]
    best: TrialSummary | None
    pareto: tuple[TrialSummary, ...]
    interrupted: str | None  # None, or the signal that stopped the search: "SIGINT" (Ctrl-C) or "SIGTERM"
    stopped_reason: str | None
    seconds: float
    device: str
    #: Trials that repeated an already-trained architecture, and the training seconds that saved.
    duplicates: int = 0
    saved_seconds: float = 0.0
    #: Distinct architectures among the COMPLETE trials (duplicates counted once).
    architectures: int = 0
    #: Trials ended as PRUNED because their model was over search.max_params / max_flops.
    over_budget: int = 0
    #: One-line notices for the user (e.g. a pruner ignored with several objectives).
    notices: tuple[str, ...] = ()
    #: The study's stored confirmation (``resattn confirm``), when it has one.
    confirmation: dict[str, Any] | None = None
    #: Baselines without a COMPLETE trial: ``(design, what became of it)``.
    missing_baselines: tuple[tuple[str, str], ...] = ()
    #: Why the run did not do what was asked (every trial failing, a worker that could not start), and
    #: the exit code that says so (1: the run failed, 2: bad input); ``None`` / 0 when it did.
    error: str | None = None
    error_code: int = 0


def run_search(
    space: SearchSpace,
    recipe: Recipe,
    *,
    trials: int,
    storage: str = DEFAULT_STORAGE,
    study_name: str | None = None,
    timeout: float | None = None,
    device: str = "auto",
    seed: int | None = None,
    workers: int = 1,
    gpus: Sequence[str] | str | None = None,
    workers_per_gpu: int = 1,
    reporter: SearchReporter | None = None,
    top_k: int = 5,
    stop_when_converged: bool = False,
) -> SearchResult:
    """Run (or continue) the study until ``trials`` trials in total have finished.

    Everything that can be checked is checked before the study is created or changed: the
    arguments, the device (and ``gpus``), the storage URL and heartbeat settings, and the dataset,
    which is loaded. A study that another run left without a finished trial and with another setup
    is replaced (:func:`~resattn.study.setup.open_study`).

    ``seed`` overrides the recipe's seed; every process that runs trials draws its own sampler seed
    stream from it (:func:`~resattn.study.loop.process_seed`). A ``KeyboardInterrupt`` ends the
    current trial (stored as FAIL with its reason), keeps everything stored, and returns a result
    with ``interrupted`` set to ``"SIGINT"`` or ``"SIGTERM"``. Baselines whose last attempt was cut
    short are queued again first (:func:`~resattn.study.setup.requeue_baselines`).

    ``workers > 1`` or ``gpus`` run the trials in that many worker processes on this machine
    (:mod:`resattn.study.workers`); the budget stays ``trials`` in total.

    ``stop_when_converged`` (one objective, this process) ends the study early once the last half of
    the search improved the best by less than the proxy's noise (:func:`convergence_callback`);
    ``stopped_reason`` then starts with "converged".

    A run that ends without reaching the budget for a reason other than an interrupt, the timeout or
    a deliberate stop (converged, exhausted space) returns with ``error`` set.
    """
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ConfigError(f"must be a positive integer, got {trials!r}", key="--trials")
    if timeout is not None and not timeout > 0:
        raise ConfigError(f"must be a positive number of seconds, got {timeout!r}", key="--timeout")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32):
        raise ConfigError(f"must be an integer from 0 to 2**32 - 1, got {seed!r}", key="--seed")
    reporter = reporter or NullReporter()
    say = _notify(reporter)
    notices = search_notices(recipe, stop_when_converged=stop_when_converged, workers=workers, gpus=gpus)
    plans = _worker_plans(workers, gpus, workers_per_gpu, device)
    torch_device = resolve_device(device)
    init = check_init(space, recipe)  # a bad train.init fails here, before a study is created
    if init is not None:
        notices.append(f"warm start: every trial starts from {init.path} ({init.form}, sha256 {init.sha256[:12]}…) "
                       f"and fine-tunes at peak lr {recipe.train.peak_lr:g}")
    check_storage_url(storage)
    heartbeat_settings()
    fault_signal("startup")
    # The data, loaded (and dropped again when workers load their own) before the study is touched.
    _, data = prepare_data(recipe, torch_device if not plans else resolve_device("cpu"))
    if plans:
        data = None
    check_stop()
    name = study_name or default_study_name(space, recipe)
    base_seed = seed if seed is not None else recipe.search.seed
    store = open_storage(storage)
    setup_notes: list[str] = []
    study, created = open_study(store, name, space, recipe, seed=base_seed, notices=setup_notes,
                                init=init.to_dict() if init is not None else None)
    log.info("%s study %r in %s", "created" if created else "continuing", name, redact(storage))
    lock = budget_lock(study)
    first_index = claim_process_indices(study, 1 if not plans else len(plans), lock)
    study.sampler = make_sampler(recipe, seed=process_seed(base_seed, first_index))
    with signals_deferred():
        fail_orphaned_journal_trials(study)  # a journal file has no heartbeat: our own dead runs
        setup_notes += requeue_baselines(study, space)
    for note in notices + setup_notes:  # each said once, here
        say(note)
    started = time.perf_counter()
    interrupted: str | None = None
    stopped_reason: str | None = None
    error: str | None = None
    error_code = 0
    done = finished_count(study)
    reporter.study_started(study, trials, done)
    if plans:
        outcome = run_parallel(
            study, space, recipe, storage=storage, trials=trials, plans=plans, timeout=timeout,
            seed=base_seed, first_index=first_index, reporter=reporter,
            verbose=log.isEnabledFor(logging.DEBUG),
        )
        interrupted, stopped_reason = outcome.interrupted, outcome.stopped_reason
        error, error_code = outcome.error, outcome.error_code
    else:
        assert data is not None
        objective = Objective(space, recipe, data, torch_device, reporter, init=init,
                              artifact_dir=str(default_artifact_dir(storage)))
        callbacks: list[Any] = [lambda study, trial: reporter.trial_finished(study, trial, finished_count(study))]
        converged: list[str] = []
        if stop_when_converged and len(recipe.search.objectives) == 1:
            noise, source = convergence_noise(study, recipe)
            log.info("--stop-when-converged: noise %.4g (%s)", noise, source)
            callbacks.append(convergence_callback(
                lambda: converged.append(f"converged: the last half of the search improved the best by less "
                                         f"than the noise {noise:.3g} ({source})"), noise))
        try:
            stopped = run_trials(
                study, objective, trials=trials, callbacks=callbacks, lock=lock,
                deadline=None if timeout is None else time.monotonic() + timeout,
                gc_after_trial=torch_device.type == "cuda", stop=lambda: converged[0] if converged else None,
                notify=say,
            )
        except KeyboardInterrupt as err:
            acknowledge_stop()
            interrupted = "SIGTERM" if isinstance(err, Terminated) else "SIGINT"
        else:
            if stopped is not None:
                stopped_reason = stopped.reason
                if stopped.failed:
                    error, error_code = f"the search failed: {stopped.reason}", EXIT_FAILED
    if timeout is not None and finished_count(study) < trials and not interrupted and not stopped_reason:
        stopped_reason = f"timeout of {timeout:g} s reached"
    summary = summarize(study, top_k=top_k)
    return SearchResult(
        study_name=name,
        storage=storage,
        target=trials,
        finished=finished_count(study),
        complete=summary["complete"],
        pruned=summary["pruned"],
        failed=summary["failed"],
        top=summary["top"],
        best=summary["best"],
        pareto=summary["pareto"],
        interrupted=interrupted,
        stopped_reason=stopped_reason,
        seconds=time.perf_counter() - started,
        device=str(torch_device),
        duplicates=summary["duplicates"],
        saved_seconds=summary["saved_seconds"],
        architectures=summary["architectures"],
        over_budget=summary["over_budget"],
        notices=tuple(notices + setup_notes),
        missing_baselines=tuple(baseline_status(study, space)),
        error=error,
        error_code=error_code,
        confirmation=load_report(study),
    )


def _notify(reporter: Any) -> Any:
    """The reporter's ``notice(text)`` when it has one (an optional method), else a log warning."""
    notice = getattr(reporter, "notice", None)
    if callable(notice):
        return notice
    return lambda text: log.warning("%s", text)


def search_notices(
    recipe: Recipe, *, stop_when_converged: bool = False, workers: int = 1, gpus: Any = None
) -> list[str]:
    """What the user must be told once before a search: settings that are ignored, and why."""
    out: list[str] = []
    objectives = recipe.search.objectives
    if len(objectives) > 1 and recipe.search.pruner != "none":
        out.append(
            f"pruner {recipe.search.pruner!r} ignored: Optuna cannot prune with several objectives "
            f"({', '.join(objectives)}); every trial trains all {recipe.train.epochs} epochs"
        )
    if stop_when_converged and len(objectives) > 1:
        out.append("--stop-when-converged ignored: the stopping rule judges one objective only")
    elif stop_when_converged and (workers > 1 or gpus):
        out.append("--stop-when-converged ignored: it works in a single-process search only")
    return out


#: --stop-when-converged: never judge before this many COMPLETE trials.
CONVERGENCE_MIN_TRIALS = 20
#: ... and judge the improvement over the last max(this, half of the COMPLETE trials) of them.
CONVERGENCE_MIN_WINDOW = 10


def convergence_noise(study: optuna.Study, recipe: Recipe) -> tuple[float, str]:
    """The accuracy difference the search cannot tell from luck, and where it comes from: the
    seed-to-seed spread measured on this study (``resattn confirm``, else ``resattn validate``), or the
    recipe's ``search.convergence_noise`` before either has run."""
    measured = measured_noise(study)
    if measured is not None:
        return measured
    return recipe.search.convergence_noise, "the recipe's search.convergence_noise"


def convergence_callback(on_stop: Any, noise: float = 0.005, *, min_trials: int = CONVERGENCE_MIN_TRIALS,
                         min_window: int = CONVERGENCE_MIN_WINDOW) -> Any:
    """A study callback that stops the study once the search has stopped finding anything real.

    After each COMPLETE trial, once there are ``min_trials`` of them: let the window be the last
    ``max(min_window, n // 2)`` COMPLETE trials; the study has converged when the best value of all
    trials exceeds the best before the window by less than ``noise`` — the last half of the search
    found no improvement that could be told from a lucky draw. ``noise`` is the seed-to-seed spread of
    one proxy accuracy (:func:`convergence_noise`). One objective (maximised or minimised).
    Deterministic, no model fitted: the project's own rule, replacing Optuna's terminator (deprecated
    since Optuna 4.9, removed in 6.0).
    """

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state != TrialState.COMPLETE or getattr(study, "_stop_flag", False):
            return
        values = [t.values[0] for t in sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                                              key=lambda t: t.number)
                  if t.values and math.isfinite(t.values[0])]
        if len(values) < min_trials:
            return
        window = max(min_window, len(values) // 2)
        sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
        before = max(sign * v for v in values[:-window])
        best = max(sign * v for v in values)
        if best - before < noise:
            log.info("converged after trial %d: the last %d complete trials improved the best by %.4g < %.4g",
                     trial.number, window, best - before, noise)
            on_stop()
            study.stop()

    return callback


def _worker_plans(workers: int, gpus: Sequence[str] | str | None, workers_per_gpu: int, device: str) -> list[Any]:
    """The worker processes to start; ``[]`` means "run in this process". GPUs named with ``gpus``
    must exist (:class:`ConfigError` on a machine without CUDA or with fewer GPUs)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"must be a positive integer, got {workers!r}", key="--workers")
    gpu_list = parse_gpus(gpus)
    if gpu_list:
        _check_gpus(gpu_list)
    if workers == 1 and not gpu_list:
        return []
    return plan_workers(workers, gpu_list, workers_per_gpu, device)


def _check_gpus(gpus: Sequence[str]) -> None:
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(f"GPUs {','.join(gpus)} requested but CUDA is not available on this machine (no GPU or "
                          "a CPU-only torch build); leave out --gpus, or use --workers N", key="--gpus")
    count = torch.cuda.device_count()
    missing = [g for g in gpus if int(g) >= count]
    if missing and not os.environ.get("CUDA_VISIBLE_DEVICES"):  # --gpus are the machine's indices
        raise ConfigError(f"GPU {', '.join(missing)} does not exist: {count} CUDA device(s) visible "
                          f"(indices 0 to {count - 1})", key="--gpus")
