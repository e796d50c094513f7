"""Several worker processes on one study: a shared budget, crash recovery, signals (issue 6).

:func:`run_parallel` (called by :func:`resattn.study.search.run_search` when ``workers > 1`` or GPUs are
named) starts N processes ``python -m resattn.study.workers …`` on this machine against the study the
parent has already created (so the baselines are enqueued once), shows progress by polling the
storage, and returns when every worker has ended.

The budget is shared: a worker starts a trial only while *finished + running < target*. The check
and Optuna's ``ask`` run under the storage's budget lock (:func:`resattn.study.loop.budget_lock`: an
advisory lock on PostgreSQL, a file lock beside an SQLite or journal file), so no two processes
start the last trial twice; the lock is released as soon as the trial exists in the storage (first
thing in the objective). Each worker samples with its own seed stream (``--process-index``).

Crash recovery:

- a worker that dies (SIGKILL, OOM killer) while its parent lives: the parent fails the worker's
  RUNNING trial at once (``fail_reason`` "worker process … died") and enqueues a retry of it
  (``RetryHeartbeatStaleTrialCallback(max_retry=1)``: the retry has ``retry_history``);
- the whole run dies (machine lost, parent killed): RDB storages (SQLite, PostgreSQL) use Optuna's
  heartbeat; the next worker to start or wait on the study fails trials whose heartbeat is older than
  the grace period and retries them once. Optuna 5's ``JournalStorage`` has no heartbeat, so for a
  journal file the parent, when it starts, fails RUNNING trials of dead processes of *this* host
  (``hostname`` and ``worker_pid`` user attributes).

Every trial records ``worker_pid`` and ``hostname`` as user attributes.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalStorage
from optuna.trial import TrialState

from resattn.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    ConfigError,
    ResattnError,
    SpecError,
    Terminated,
    acknowledge_stop,
    check_stop,
    install_stop_handlers,
    interrupt_exit_code,
    received_signal,
    signal_exit_code,
    signals_deferred,
)
from resattn.study import keys
from resattn.study.loop import (
    MAX_CONSECUTIVE_FAILURES,
    POLL_SECONDS,
    process_seed,
    quiet_optuna_trial_logs,
    run_trials,
    with_retry,
)
from resattn.study.objective import NullReporter, Objective, prepare_data
from resattn.study.records import counts_as_finished, finished_count
from resattn.study.setup import make_sampler, open_study
from resattn.study.storage import default_artifact_dir, open_storage
from resattn.training.loop import resolve_device

__all__ = [
    "ParallelOutcome",
    "WorkerPlan",
    "fail_dead_worker_trials",
    "fail_orphaned_journal_trials",
    "install_signal_handlers",
    "parse_gpus",
    "plan_workers",
    "run_parallel",
    "run_worker",
]

log = logging.getLogger(__name__)


#: A worker's exit codes: budget reached (or timeout), bad input, too many failures in a row, the
#: space exhausted (every proposal a duplicate), interrupted (130 / 143).
EXIT_OK = 0
EXIT_FAILURES = 3
EXIT_EXHAUSTED = 4


def install_signal_handlers() -> None:
    """SIGINT and SIGTERM stop the worker (:func:`resattn.errors.install_stop_handlers`); a SIGINT
    ignored by a background shell is handled too: the parent forwards Ctrl-C explicitly."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    install_stop_handlers(record_only=(main,))


@dataclass(frozen=True)
class WorkerPlan:
    """One worker process: its index, device string and CUDA_VISIBLE_DEVICES (None = inherit)."""

    index: int
    device: str
    cuda_visible_devices: str | None


def parse_gpus(value: str | Sequence[str] | None) -> list[str]:
    """``"0,1"`` → ``["0", "1"]``; empty or None → ``[]``."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    gpus = [str(g).strip() for g in items if str(g).strip()]
    for g in gpus:
        if not g.isdigit():
            raise ConfigError(f"GPU indices must be comma-separated integers, got {value!r}", key="--gpus")
    return gpus


def plan_workers(workers: int, gpus: Sequence[str] = (), workers_per_gpu: int = 1,
                 device: str = "auto") -> list[WorkerPlan]:
    """The worker processes to start.

    Without GPUs: ``workers`` processes on ``device``. With GPUs: ``len(gpus) * workers_per_gpu``
    processes (or ``workers`` if it is larger than 1), spread round-robin over the GPUs, each seeing
    only its GPU (``CUDA_VISIBLE_DEVICES``) as ``cuda``.
    """
    if workers < 1:
        raise ConfigError(f"must be at least 1, got {workers}", key="--workers")
    if workers_per_gpu < 1:
        raise ConfigError(f"must be at least 1, got {workers_per_gpu}", key="--workers-per-gpu")
    if not gpus:
        return [WorkerPlan(i, device, None) for i in range(workers)]
    if device not in ("auto", "cuda") and not device.startswith("cuda"):
        raise ConfigError(f"--gpus needs a CUDA device, got --device {device}", key="--device")
    total = workers if workers > 1 else len(gpus) * workers_per_gpu
    return [WorkerPlan(i, "cuda", gpus[i % len(gpus)]) for i in range(total)]


def run_worker(
    storage: str,
    study_name: str,
    space: Any,
    recipe: Any,
    *,
    trials: int,
    device: str = "auto",
    seed: int | None = None,
    process_index: int = 0,
    timeout: float | None = None,
) -> int:
    """One worker: run trials of an existing study until ``trials`` have finished. Returns its exit code.

    Its sampler draws seed stream ``process_index`` of ``seed`` (:func:`resattn.study.loop.process_seed`).
    Exit codes: 0 (budget reached or timeout), 3 (too many failures in a row), 4 (space exhausted),
    130/143 (interrupted).
    """
    torch_device = resolve_device(device)
    store = open_storage(storage)
    study, _ = with_retry(lambda: open_study(store, study_name, space, recipe, seed=seed), "open study")
    if seed is not None:
        study.sampler = make_sampler(recipe, seed=process_seed(seed, process_index))
    _, data = prepare_data(recipe, torch_device)
    objective = Objective(space, recipe, data, torch_device, NullReporter(),
                          artifact_dir=str(default_artifact_dir(storage)))
    deadline = time.monotonic() + timeout if timeout else None
    try:
        stopped = run_trials(study, objective, trials=trials, deadline=deadline,
                             gc_after_trial=torch_device.type == "cuda")
    except KeyboardInterrupt as err:
        acknowledge_stop()
        return interrupt_exit_code(err)
    if stopped is not None:
        log.warning("%s; this worker stops", stopped.reason)
        return EXIT_FAILURES if stopped.failed else EXIT_EXHAUSTED
    return EXIT_OK


def fail_dead_worker_trials(study: optuna.Study, pids: Sequence[int], reason: str, *, retry: bool) -> list[int]:
    """Fail the RUNNING trials of the given worker pids on this host; retry each once if ``retry``.

    Returns the numbers of the trials failed here (not those some other process failed first).
    """
    host = socket.gethostname()
    wanted = set(pids)
    failed: list[int] = []
    storage = study._storage
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        callback = RetryHeartbeatStaleTrialCallback(max_retry=1)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get(keys.HOSTNAME) != host or t.user_attrs.get(keys.WORKER_PID) not in wanted:
            continue
        try:
            storage.set_trial_user_attr(t._trial_id, "fail_reason", reason)
            if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # the heartbeat (or its own worker) ended it first
        failed.append(t.number)
        if retry:
            callback(study, storage.get_trial(t._trial_id))
    return failed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_orphaned_journal_trials(study: optuna.Study) -> list[int]:
    """Journal storages have no heartbeat: fail (and retry) RUNNING trials of dead processes of this host."""
    if not isinstance(study._storage, JournalStorage):
        return []
    host = socket.gethostname()
    dead = {
        t.user_attrs[keys.WORKER_PID]
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if t.user_attrs.get(keys.HOSTNAME) == host and isinstance(t.user_attrs.get(keys.WORKER_PID), int)
        and not _pid_alive(t.user_attrs[keys.WORKER_PID])
    }
    return fail_dead_worker_trials(study, sorted(dead), "worker process died (found on restart)", retry=True)


@dataclass
class ParallelOutcome:
    interrupted: str | None  # None, "SIGINT" or "SIGTERM"
    stopped_reason: str | None
    exit_codes: dict[int, int | None]
    #: Why the run failed (a worker that could not start, failures in a row, every worker dead), and
    #: the exit code for it (2: bad input, 1: failed); None / 0 when it did what was asked.
    error: str | None = None
    error_code: int = 0


def _worker_command(inputs: Path, storage: str, study_name: str, plan: WorkerPlan, *, trials: int,
                    seed: int | None, process_index: int, timeout: float | None, verbose: bool) -> list[str]:
    cmd = [sys.executable, "-m", "resattn.study.workers", "--inputs", str(inputs), "--storage", storage,
           "--study", study_name, "--trials", str(trials), "--device", plan.device,
           "--process-index", str(process_index)]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    if timeout is not None:
        cmd += ["--timeout", str(timeout)]
    if verbose:
        cmd.append("-v")
    return cmd


def run_parallel(
    study: optuna.Study,
    space: Any,
    recipe: Any,
    *,
    storage: str,
    trials: int,
    plans: Sequence[WorkerPlan],
    seed: int | None,
    timeout: float | None,
    reporter: Any,
    first_index: int = 0,
    verbose: bool = False,
) -> ParallelOutcome:
    """Start the planned workers on ``study`` (already created), poll progress, wait for them.

    Worker ``i`` samples with seed stream ``first_index + i`` (reserved by the caller with
    :func:`resattn.study.loop.claim_process_indices`). A worker failure reaches the outcome: bad
    input in a worker is ``error_code`` 2, failures in a row or a budget left unfinished when every
    worker has ended is 1.
    """
    seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    cpu_workers = sum(p.device == "cpu" or (p.device == "auto" and not _has_cuda()) for p in plans)
    threads = max(1, (os.cpu_count() or 1) // max(1, cpu_workers))
    procs: dict[int, subprocess.Popen[bytes]] = {}
    handled: set[int] = set()
    died: list[str] = []
    interrupted: str | None = None
    stopped_reason: str | None = None
    with tempfile.TemporaryDirectory(prefix="resattn-workers-") as tmp:
        inputs = Path(tmp) / "inputs.pickle"
        inputs.write_bytes(pickle.dumps((space, recipe)))
        try:
            for plan in plans:
                env = dict(os.environ)
                if plan.cuda_visible_devices is not None:
                    env["CUDA_VISIBLE_DEVICES"] = plan.cuda_visible_devices
                if plan.device == "cpu" or (plan.device == "auto" and not _has_cuda()):
                    env.setdefault("OMP_NUM_THREADS", str(threads))
                cmd = _worker_command(inputs, storage, study.study_name, plan, trials=trials, seed=seed,
                                      process_index=first_index + plan.index, timeout=timeout, verbose=verbose)
                # Own session: a terminal's Ctrl-C reaches only the parent, which forwards it once.
                proc = subprocess.Popen(cmd, env=env, start_new_session=True)
                procs[proc.pid] = proc
            while True:
                check_stop()
                with signals_deferred():
                    _report_new(study, seen, reporter)
                    for pid, proc in procs.items():
                        code = proc.poll()
                        if code is not None and pid not in handled:
                            handled.add(pid)
                            if code not in (EXIT_OK, EXIT_USAGE, EXIT_FAILURES, EXIT_EXHAUSTED, EXIT_INTERRUPTED,
                                            EXIT_TERMINATED):
                                how = f"signal {-code}" if code < 0 else f"exit code {code}"
                                died.append(f"worker {pid} ({how})")
                                numbers = with_retry(
                                    lambda pid=pid, how=how: fail_dead_worker_trials(
                                        study, [pid], f"worker process {pid} died ({how})", retry=True),
                                    "recover trials",
                                )
                                log.warning("worker %d died (%s); failed and retried its trials %s", pid, how,
                                            numbers)
                if all(p.poll() is not None for p in procs.values()):
                    break
                time.sleep(POLL_SECONDS)
        except KeyboardInterrupt as err:
            acknowledge_stop()
            interrupted = "SIGTERM" if isinstance(err, Terminated) else "SIGINT"
            _stop_workers(procs, err)
            acknowledge_stop()  # a second Ctrl-C only hurried the workers' end
            with signals_deferred():
                fail_dead_worker_trials(study, list(procs), "interrupted", retry=False)
        with signals_deferred():
            _report_new(study, seen, reporter)
    codes = {pid: p.returncode for pid, p in procs.items()}
    error: str | None = None
    error_code = 0
    if not interrupted:
        finished = finished_count(study)
        if any(c == EXIT_USAGE for c in codes.values()):
            error, error_code = "a worker could not start (its error is above)", EXIT_USAGE
        elif any(c == EXIT_FAILURES for c in codes.values()):
            stopped_reason = f"{MAX_CONSECUTIVE_FAILURES} trials in a row failed; see their fail_reason"
            error, error_code = f"the search failed: {stopped_reason}", EXIT_FAILED
        elif any(c == EXIT_EXHAUSTED for c in codes.values()) and finished < trials:
            stopped_reason = "the workers' last proposals all repeated architectures already trained: the space " \
                             "looks exhausted"
        elif finished < trials and timeout is None:
            why = [f"worker {pid} was interrupted (exit code {c})" for pid, c in codes.items()
                   if c in (EXIT_INTERRUPTED, EXIT_TERMINATED)] + died
            stopped_reason = "; ".join(why) or "the workers ended early"
            error = f"the search failed: {finished} of {trials} trials finished ({stopped_reason})"
            error_code = EXIT_FAILED
    return ParallelOutcome(interrupted, stopped_reason, codes, error, error_code)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _stop_workers(procs: dict[int, subprocess.Popen[bytes]], err: BaseException) -> None:
    """Forward the signal; a second Ctrl-C (or 60 s) kills the workers."""
    sig = signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT
    for proc in procs.values():
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
    deadline = time.monotonic() + 60
    try:
        while any(p.poll() is None for p in procs.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _report_new(study: optuna.Study, seen: set[int], reporter: Any) -> None:
    trials = study.get_trials(deepcopy=False)
    finished = sum(counts_as_finished(t) for t in trials)
    for t in sorted(trials, key=lambda t: t.number):
        if t.state.is_finished() and t.number not in seen:
            seen.add(t.number)
            reporter.trial_finished(study, t, finished)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resattn.study.workers", description="One resattn search worker.")
    parser.add_argument("--inputs", required=True, help="pickle of (space, recipe) written by the parent")
    parser.add_argument("--storage", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--trials", type=int, required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=None, help="the study's sampler seed")
    parser.add_argument("--process-index", type=int, default=0, help="which seed stream of --seed to draw")
    parser.add_argument("--timeout", type=float, default=None)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    install_signal_handlers()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format=f"worker {os.getpid()}: %(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.INFO if args.verbose else optuna.logging.WARNING)
    quiet_optuna_trial_logs(verbose=args.verbose)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    code = EXIT_OK
    try:
        space, recipe = pickle.loads(Path(args.inputs).read_bytes())
        code = run_worker(args.storage, args.study, space, recipe, trials=args.trials, device=args.device,
                          seed=args.seed, process_index=args.process_index, timeout=args.timeout)
    except (ResattnError, SpecError) as err:
        print(f"error: {err}", file=sys.stderr)
        code = EXIT_USAGE
    except KeyboardInterrupt as err:
        code = interrupt_exit_code(err)
    signum = received_signal()
    return signal_exit_code(signum) if signum is not None else code


if __name__ == "__main__":
    sys.exit(main())
