"""The trial loop: one process runs trials of a study one at a time until the shared budget is used up
(the single-process search and every worker run this same loop, :func:`run_trials`)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.trial import FrozenTrial, TrialState

from resattn.training.loop import OutOfMemory, TrainingDiverged

__all__ = [
    "MAX_CONSECUTIVE_FAILURES",
    "POLL_SECONDS",
    "budget_counts",
    "fail_stale",
    "run_trials",
    "with_retry",
]

log = logging.getLogger(__name__)


#: Stop the study after this many failed trials in a row (something is wrong with every trial).
MAX_CONSECUTIVE_FAILURES = 10
#: How often a waiting loop looks at the storage again.
POLL_SECONDS = 0.5


class _BudgetLock:
    """An exclusive ``flock`` on a file shared by the workers of one machine (no-op without a path)."""

    def __init__(self, path: str | None):
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> None:
        if self.path is None or self.fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def budget_counts(study: optuna.Study) -> tuple[int, int]:
    """``(finished, running)``: complete + pruned trials, and running ones."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return len(trials) - running, running


def _is_db_busy(err: BaseException) -> bool:
    text = str(err).lower()
    return "database is locked" in text or "database is busy" in text or "could not serialize" in text


def with_retry(fn: Any, what: str, attempts: int = 8) -> Any:
    """Call ``fn()``, retrying with backoff while SQLite reports "database is locked"."""
    delay = 0.2
    for attempt in range(attempts):
        try:
            return fn()
        except (sqlalchemy.exc.OperationalError, optuna.exceptions.StorageInternalError) as err:
            if attempt == attempts - 1 or not _is_db_busy(err):
                raise
            log.debug("%s: database busy, retrying in %.1f s", what, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")


def fail_stale(study: optuna.Study) -> None:
    with contextlib.suppress(Exception), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def run_trials(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], Any],
    *,
    trials: int,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
    deadline: float | None = None,
    lock_path: str | None = None,
    gc_after_trial: bool = False,
    stop: Callable[[], str | None] = lambda: None,
) -> str | None:
    """Run trials of ``study`` one at a time until ``trials`` of them have finished (COMPLETE or
    PRUNED), in this process: the one loop of the single-process search and of every worker.

    The budget is shared with every process on the study: a trial starts only while
    *finished + running < trials* (under the file lock ``lock_path`` when local workers share
    one), else the loop waits, failing stale trials, because a trial running elsewhere may still
    fail and free its share. SQLite's "database is locked" past its timeout backs off and retries.

    Returns ``None`` when the budget is reached or ``deadline`` (``time.monotonic()``) passes;
    otherwise why it stopped early: :data:`MAX_CONSECUTIVE_FAILURES` failures in a row, or the
    reason ``stop()`` gave (checked between trials). A ``KeyboardInterrupt`` propagates.
    """

    lock = _BudgetLock(lock_path)
    failures = 0
    waiting = False

    def run(trial: optuna.Trial) -> Any:
        lock.release()  # the trial exists in the storage now: others may count it
        return objective(trial)

    def count_failures(study: optuna.Study, trial: FrozenTrial) -> None:
        nonlocal failures
        failures = failures + 1 if trial.state == TrialState.FAIL else 0

    while True:
        reason = stop()
        if reason:
            return reason
        if failures >= MAX_CONSECUTIVE_FAILURES:
            return f"{MAX_CONSECUTIVE_FAILURES} trials in a row failed; see their fail_reason"
        if deadline is not None and time.monotonic() >= deadline:
            return None
        lock.acquire()
        try:
            finished, running = with_retry(lambda: budget_counts(study), "count trials")
            if finished >= trials:
                return None
            if finished + running >= trials:
                lock.release()
                if not waiting:
                    log.info("the rest of the budget is running elsewhere (%d trials); waiting", running)
                    waiting = True
                time.sleep(POLL_SECONDS)
                fail_stale(study)
                continue
            waiting = False
            try:
                study.optimize(run, n_trials=1, callbacks=[count_failures, *callbacks],
                               catch=(TrainingDiverged, OutOfMemory), gc_after_trial=gc_after_trial)
            except (sqlalchemy.exc.OperationalError, optuna.exceptions.StorageInternalError) as err:
                if not _is_db_busy(err):
                    raise
                log.warning("database busy; retrying")
                lock.release()
                time.sleep(1.0)
        finally:
            lock.release()
