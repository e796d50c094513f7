"""The trial loop: one process runs trials of a study one at a time until the shared budget is used up
(the single-process search and every worker run this same loop, :func:`run_trials`).

The budget and the lock that makes it exact
-------------------------------------------

A trial starts only while *finished + running < trials*, where *finished* counts COMPLETE and PRUNED
trials that are not duplicates (:func:`budget_counts`). The count and Optuna's ``ask`` run under
:func:`budget_lock`, a lock shared by every process on the same storage, released as soon as the new
trial exists in the storage:

- PostgreSQL: a session-level advisory lock (``pg_advisory_lock``) on a key derived from the study
  name, so the budget is exact across machines;
- an SQLite file or a journal file: an exclusive ``flock`` on ``<file>.budget-lock`` beside it,
  exact across the processes of one machine (and of machines sharing the file, where the file system
  supports ``flock``);
- any other SQLAlchemy database: no common lock; two machines that count in the same instant can each
  start the last trial.

The same lock hands out the per-process sampler seed streams (:func:`claim_process_indices`).
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import logging
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.trial import FrozenTrial, TrialState

from resattn.errors import check_stop, fault_signal, signals_deferred, signals_immediate
from resattn.study import keys
from resattn.study.objective import TRIAL_FAILURES
from resattn.study.records import counts_as_finished, is_duplicate

__all__ = [
    "MAX_CONSECUTIVE_DUPLICATES",
    "MAX_CONSECUTIVE_FAILURES",
    "POLL_SECONDS",
    "BudgetLock",
    "Stopped",
    "budget_counts",
    "budget_lock",
    "claim_process_indices",
    "fail_stale",
    "process_seed",
    "quiet_optuna_trial_logs",
    "run_trials",
    "with_retry",
]

log = logging.getLogger(__name__)


#: Stop the study after this many failed trials in a row (something is wrong with every trial).
MAX_CONSECUTIVE_FAILURES = 10
#: Stop after this many proposals in a row that repeated an already-trained architecture (they do not
#: count towards the budget, so a space with fewer architectures than the budget would never finish).
MAX_CONSECUTIVE_DUPLICATES = 30
#: How often a waiting loop looks at the storage again.
POLL_SECONDS = 0.5
#: Study user attribute: how many processes have drawn a sampler seed stream (:func:`claim_process_indices`).
PROCESS_COUNTER = "resattn.processes"


@dataclass(frozen=True)
class Stopped:
    """Why :func:`run_trials` ended before the budget was reached. ``failed``: the run did not do
    what was asked (every trial failing), as opposed to a deliberate stop (converged, exhausted)."""

    reason: str
    failed: bool = False


# ------------------------------------------------------------------------------------------ locks


class BudgetLock:
    """No lock (other SQLAlchemy databases). Subclasses hold a lock shared by other processes."""

    #: What the lock covers, for messages and the README.
    scope = "none"

    def acquire(self) -> None:
        pass

    def release(self) -> None:
        pass

    def __enter__(self) -> BudgetLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class _FileLock(BudgetLock):
    """An exclusive ``flock`` on a file beside the storage file."""

    scope = "processes sharing the storage file"

    def __init__(self, path: str):
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> None:
        if self.fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class _PgAdvisoryLock(BudgetLock):
    """A PostgreSQL session-level advisory lock on its own connection: held by one process of any
    machine at a time, released by the server if that process dies."""

    scope = "every process on the database (all machines)"

    def __init__(self, engine: Any, key: int):
        self.engine = engine
        self.key = key
        self.conn: Any = None

    def acquire(self) -> None:
        if self.conn is not None:
            return
        conn = self.engine.connect()
        try:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": self.key})
            conn.commit()
        except BaseException:
            conn.invalidate()
            conn.close()
            raise
        self.conn = conn

    def release(self) -> None:
        if self.conn is None:
            return
        conn, self.conn = self.conn, None
        try:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
            conn.commit()
        except BaseException:
            conn.invalidate()  # closing the server connection releases the lock
            raise
        finally:
            conn.close()


def _lock_key(study_name: str) -> int:
    digest = hashlib.sha256(f"resattn-budget:{study_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _rdb(storage: Any) -> optuna.storages.RDBStorage | None:
    """The RDBStorage behind ``storage`` (Optuna wraps one in a cache), or ``None``."""
    if isinstance(storage, optuna.storages.RDBStorage):
        return storage
    wrapped = getattr(storage, "_backend", None)
    return wrapped if isinstance(wrapped, optuna.storages.RDBStorage) else None


def budget_lock(study: optuna.Study) -> BudgetLock:
    """The lock under which this process counts the budget and creates its next trial (module docstring)."""
    storage = study._storage
    rdb = _rdb(storage)
    if rdb is not None:
        engine = rdb.engine
        if engine.dialect.name == "postgresql":
            return _PgAdvisoryLock(engine, _lock_key(study.study_name))
        if engine.dialect.name == "sqlite":
            database = engine.url.database
            if database and database != ":memory:" and not database.startswith("file:"):
                return _FileLock(f"{database}.budget-lock")
        return BudgetLock()
    if isinstance(storage, optuna.storages.JournalStorage):
        path = getattr(storage._backend, "_file_path", None)
        if isinstance(path, str):
            return _FileLock(f"{path}.budget-lock")
    return BudgetLock()


def process_seed(seed: int, index: int) -> int:
    """The sampler seed of process ``index`` of a study seeded ``seed``: ``seed`` itself for the
    first process (a fresh single-process study samples as it always did), a distinct 32-bit seed
    derived from both for every later one."""
    if index == 0:
        return seed
    digest = hashlib.sha256(f"resattn-sampler:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def claim_process_indices(study: optuna.Study, count: int = 1, lock: BudgetLock | None = None) -> int:
    """Reserve ``count`` consecutive process indices of the study (under its budget lock) and return
    the first: every process that runs trials of the study gets its own sampler seed stream
    (:func:`process_seed`), so parallel processes, and a re-run continuing the study, do not propose
    the architectures an earlier process already proposed."""
    lock = lock if lock is not None else budget_lock(study)
    with signals_deferred(), lock:
        first = study.user_attrs.get(PROCESS_COUNTER, 0)
        first = first if isinstance(first, int) and first >= 0 else 0
        study.set_user_attr(PROCESS_COUNTER, first + count)
    return first


# ------------------------------------------------------------------------------------- the budget


def _is_owed(trial: FrozenTrial) -> bool:
    """A queued baseline that replaces an attempt the search itself cut short (:mod:`resattn.study.setup`)."""
    return trial.user_attrs.get(keys.DESIGN) is not None and (
        trial.user_attrs.get(keys.REQUEUE_OF) is not None or "failed_trial" in trial.system_attrs
    )


def budget_counts(study: optuna.Study) -> tuple[int, int]:
    """``(finished, running)``: complete + pruned trials that are not duplicates, and running ones."""
    finished, running, _ = _budget_state(study)
    return finished, running


def _budget_state(study: optuna.Study) -> tuple[int, int, bool]:
    """:func:`budget_counts` plus whether the next queued trial is an owed baseline (it runs even
    when the budget is used up: baselines always get trained)."""
    trials = study.get_trials(deepcopy=False)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    finished = sum(counts_as_finished(t) for t in trials)
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    owed = bool(waiting) and _is_owed(min(waiting, key=lambda t: t.number))
    return finished, running, owed


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


#: ``fail_reason`` of a trial failed because its process stopped sending heartbeats.
NO_HEARTBEAT = "no heartbeat for {grace} s: the process running it died or lost the database"


def _never_beat(rdb: optuna.storages.RDBStorage, study: optuna.Study, grace: float) -> list[int]:
    """RUNNING trials that started more than ``grace`` seconds ago and never recorded a heartbeat:
    their process died between creating the trial and its first heartbeat. Optuna's stale check
    skips trials without a heartbeat, so without this they would stay RUNNING (and hold a share of
    the budget) for ever. A live process records its first heartbeat at once, so after the grace
    period none of these can be running anywhere."""
    import datetime

    cutoff = datetime.datetime.now() - datetime.timedelta(seconds=grace)  # datetime_start: local, naive
    old = {t._trial_id for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
           if t.datetime_start is not None and t.datetime_start.replace(tzinfo=None) < cutoff}
    if not old:
        return []
    try:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        with _create_scoped_session(rdb.scoped_session) as session:
            beating = {row[0] for row in session.query(models.TrialHeartbeatModel.trial_id)
                       .filter(models.TrialHeartbeatModel.trial_id.in_(sorted(old))).all()}
    except Exception as err:  # Optuna's private models changed, or the database is unreachable now
        log.debug("could not read the heartbeat table: %s", err)
        return []
    return sorted(old - beating)


def fail_stale(study: optuna.Study, notify: Callable[[str], None] | None = None) -> list[int]:
    """Fail the RUNNING trials whose heartbeat is older than the grace period (RDB storages), each
    with a ``fail_reason``, and retry each once (the storage's stale-trial callback). Also gives a
    reason to trials Optuna itself failed that way (they have none). Returns the failed numbers."""
    storage = study._storage
    rdb = _rdb(storage)
    interval = rdb.heartbeat_interval if rdb is not None else None
    if not interval:
        return []
    grace = rdb.grace_period or 2 * interval
    reason = NO_HEARTBEAT.format(grace=grace)
    failed: list[FrozenTrial] = []
    with contextlib.suppress(Exception), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        stale = list(storage._get_stale_trial_ids(study._study_id))
        stale += [i for i in _never_beat(rdb, study, grace) if i not in stale]
        for trial_id in stale:
            try:
                storage.set_trial_user_attr(trial_id, keys.FAIL_REASON, reason)
                if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                    failed.append(storage.get_trial(trial_id))
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another process failed it first
        callback = storage.get_heartbeat_stale_trial_callback()
        for trial in failed:
            if callback is not None:
                callback(study, copy.deepcopy(trial))
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
            if t.user_attrs.get(keys.FAIL_REASON) is None:
                storage.set_trial_user_attr(t._trial_id, keys.FAIL_REASON, reason)
    for trial in failed:  # the callback retries a trial once: one that was a retry is not run again
        again = "queued again" if "retry_history" not in trial.system_attrs else "already retried once"
        (notify or log.warning)(f"trial {trial.number} failed: {reason}; {again}")
    return [t.number for t in failed]


# ------------------------------------------------------------------------------------------ the loop


class _TrialFailureFilter(logging.Filter):
    """Drops Optuna's per-trial failure warnings ("Trial N failed with parameters: … Traceback …" and
    "Trial N failed with value None."): the search prints its own one-line outcome of every trial,
    with the ``fail_reason``; the traceback of an unexpected error is in the debug log (``-v``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Trial ") and " failed with " in message)


_FILTER = _TrialFailureFilter()


def quiet_optuna_trial_logs(*, verbose: bool = False) -> None:
    """Install (or, with ``verbose``, remove) :class:`_TrialFailureFilter` on the logger of Optuna's
    trial loop (a logger's filters see the records logged on it, not those of its children)."""
    logger = logging.getLogger("optuna.study._optimize")
    if verbose:
        logger.removeFilter(_FILTER)
    else:
        logger.addFilter(_FILTER)


def run_trials(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], Any],
    *,
    trials: int,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
    deadline: float | None = None,
    lock: BudgetLock | None = None,
    gc_after_trial: bool = False,
    stop: Callable[[], str | None] = lambda: None,
    notify: Callable[[str], None] | None = None,
) -> Stopped | None:
    """Run trials of ``study`` one at a time until ``trials`` of them have finished (COMPLETE or
    PRUNED, duplicates not counted), in this process: the one loop of the single-process search and
    of every worker.

    The budget is shared with every process on the study: a trial starts only while
    *finished + running < trials*, counted under :func:`budget_lock` (or ``lock``), else the loop
    waits (saying so once through ``notify``), failing stale trials, because a trial running
    elsewhere may still fail and free its share. A queued baseline that replaces an attempt cut short
    runs even when the budget is used up. SQLite's "database is locked" past its timeout backs off
    and retries.

    Returns ``None`` when the budget is reached or ``deadline`` (``time.monotonic()``) passes;
    otherwise why it stopped early (:class:`Stopped`): :data:`MAX_CONSECUTIVE_FAILURES` failures in a
    row (``failed``), :data:`MAX_CONSECUTIVE_DUPLICATES` duplicates in a row, or the reason ``stop()``
    gave (checked between trials). Stop signals: Optuna's ask and tell run with signals deferred, the
    objective with signals raising at once; a ``KeyboardInterrupt`` propagates.
    """
    lock = lock if lock is not None else budget_lock(study)
    say = notify or log.info
    failures = 0
    duplicates = 0
    waiting = False

    def run(trial: optuna.Trial) -> Any:
        lock.release()  # the trial exists in the storage now: others may count it
        with signals_immediate():
            return objective(trial)

    def count(study: optuna.Study, trial: FrozenTrial) -> None:
        nonlocal failures, duplicates
        failures = failures + 1 if trial.state == TrialState.FAIL else 0
        duplicates = duplicates + 1 if is_duplicate(trial) else 0
        fault_signal("between")

    while True:
        check_stop()
        reason = stop()
        if reason:
            return Stopped(reason)
        if failures >= MAX_CONSECUTIVE_FAILURES:
            return Stopped(f"{MAX_CONSECUTIVE_FAILURES} trials in a row failed; see their fail_reason", failed=True)
        if duplicates >= MAX_CONSECUTIVE_DUPLICATES:
            return Stopped(f"the last {MAX_CONSECUTIVE_DUPLICATES} proposals repeated architectures already "
                           "trained: the space looks exhausted")
        if deadline is not None and time.monotonic() >= deadline:
            return None
        wait = False
        with signals_deferred():
            fail_stale(study, notify)  # before Optuna's own check, which records no reason
            try:
                lock.acquire()
                finished, running, owed = with_retry(lambda: _budget_state(study), "count trials")
                if finished >= trials and not owed:
                    return None
                if finished + running >= trials and not owed:
                    lock.release()
                    if not waiting:
                        say(f"waiting: the rest of the budget ({running} trial{'s' if running != 1 else ''}) "
                            "is running in other processes; a trial whose process died is failed when its "
                            "heartbeat times out, and then run here")
                    waiting = wait = True
                else:
                    waiting = False
                    study.optimize(run, n_trials=1, callbacks=[count, *callbacks], catch=TRIAL_FAILURES,
                                   gc_after_trial=gc_after_trial)
            except (sqlalchemy.exc.OperationalError, optuna.exceptions.StorageInternalError) as err:
                if not _is_db_busy(err):
                    raise
                log.warning("database busy; retrying")
                lock.release()
                time.sleep(1.0)
            finally:
                lock.release()
        if wait:
            time.sleep(POLL_SECONDS)
