"""User-facing errors, exit codes, and the stop signals (Ctrl-C / SIGINT, SIGTERM).

The CLI prints an error's message on one line and exits with its :attr:`ResattnError.exit_code`: 2 for
bad input, 1 for a run that started but failed. A run stopped by a signal exits 130 (SIGINT) or 143
(SIGTERM), whatever it was doing when the signal came (see "Stop signals" below).
"""

from __future__ import annotations

import contextlib
import os
import signal
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "FAULT_SIGNAL_ENV",
    "ConfigError",
    "DatasetError",
    "ResattnError",
    "RunFailed",
    "SpecError",
    "StorageError",
    "Terminated",
    "acknowledge_stop",
    "check_stop",
    "fault_signal",
    "forget_stop",
    "install_stop_handlers",
    "interrupt_exit_code",
    "raise_terminated",
    "received_signal",
    "signal_exit_code",
    "signals_deferred",
    "signals_immediate",
]

#: Exit codes: a run that failed, bad input (one ``error:`` line), Ctrl-C / SIGINT, SIGTERM.
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class ResattnError(Exception):
    """An error caused by the user's input or environment, with a message that says what to do."""

    #: The process's exit code when this error ends a command.
    exit_code = EXIT_USAGE


class RunFailed(ResattnError):
    """A run that started but did not do what was asked: training diverged, every trial failed, a
    worker process failed. Exit code 1."""

    exit_code = EXIT_FAILED


class ConfigError(ResattnError, ValueError):
    """A bad search-space file, recipe file or command-line value.

    The message names the file (when there is one), the key and what is allowed.
    """

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None):
        self.file = file
        self.key = key
        self.reason = message
        where = ": ".join(str(p) for p in (file, key) if p)
        super().__init__(f"{where}: {message}" if where else message)


class SpecError(ValueError):
    """An invalid network spec. ``field`` is the dotted path of the offending value
    (``layers[2].attention.name``); the message names the bad value and what is allowed."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}" if field else message)

    def under(self, prefix: str) -> SpecError:
        """The same error, with its field path moved under ``prefix``."""
        return SpecError(f"{prefix}.{self.field}" if self.field else prefix, self.reason)


class DatasetError(ResattnError):
    """A dataset that cannot be loaded (unknown name, missing file, no network for a download)."""


class StorageError(ResattnError):
    """A study storage that cannot be opened, or a study that cannot be continued."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the current trial ends as FAIL and the summary prints."""

    signum = signal.SIGTERM


def raise_terminated(signum: int, frame: Any) -> None:
    """A SIGTERM handler: record the signal and raise :class:`Terminated`."""
    _record(signal.SIGTERM)
    raise Terminated()


def interrupt_exit_code(err: BaseException) -> int:
    """143 for SIGTERM (:class:`Terminated`), 130 for Ctrl-C / SIGINT."""
    return EXIT_TERMINATED if isinstance(err, Terminated) else EXIT_INTERRUPTED


# ------------------------------------------------------------------------------------ stop signals
#
# A Python signal handler that raises runs at whatever bytecode the main thread is executing. That
# can be inside code which swallows the exception: a ``__del__`` method or a weakref callback run by
# the garbage collector ("Exception ignored in ..."), a library's clean-up. The run then goes on as
# if nothing had happened and finishes with exit code 0. It can also be inside Optuna's own
# bookkeeping between the objective and ``tell``, leaving a trial RUNNING.
#
# So the handlers installed by :func:`install_stop_handlers` first *record* the signal, and raise
# only where raising is safe: everywhere by default, but not inside a :func:`signals_deferred` block
# (the search wraps Optuna's ask/tell in one, and re-enables raising for the objective itself with
# :func:`signals_immediate`). The loops call :func:`check_stop` at fixed points (before every trial,
# after every epoch), which raises again for a recorded signal whose exception was swallowed, and the
# command line takes its exit code from :func:`received_signal`: a run that received a signal never
# exits 0.


class _Signals:
    def __init__(self) -> None:
        self.received: int | None = None
        #: A recorded signal no code has handled yet (:func:`acknowledge_stop`): check_stop raises it.
        self.pending = False
        #: One entry per open signals_deferred (False) / signals_immediate (True) block; empty: raise.
        self.modes: list[bool] = []
        #: Code objects during which the handler only records (the CLI's own exit path).
        self.record_only: set[types.CodeType] = set()
        self.installed = False


_STATE = _Signals()
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _record(signum: int) -> None:
    if _STATE.received is None:
        _STATE.received = int(signum)
    _STATE.pending = True


def _exception(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _raising() -> bool:
    return not _STATE.modes or _STATE.modes[-1]


def _on_stop_signal(signum: int, frame: types.FrameType | None) -> None:
    _record(signum)
    if frame is not None and frame.f_code in _STATE.record_only:
        return
    if _raising():
        raise _exception(signum)


def install_stop_handlers(*, record_only: Sequence[Callable[..., Any]] = ()) -> Callable[[], None]:
    """Install the SIGINT and SIGTERM handlers (forgetting any signal recorded before) and return a
    function that puts the previous handlers back. A SIGINT that is ignored (a background job of a
    shell) stays ignored. ``record_only``: functions during whose own code the handlers never
    raise (the caller's exit path; see :mod:`resattn.cli.main`)."""
    _STATE.received = None
    _STATE.pending = False
    _STATE.modes = []
    previous: dict[int, Any] = {}
    for signum in _STOP_SIGNALS:
        current = signal.getsignal(signum)
        if signum == signal.SIGINT and current is signal.SIG_IGN:
            continue
        previous[signum] = signal.signal(signum, _on_stop_signal)
    _STATE.installed = True
    _STATE.record_only.update(fn.__code__ for fn in record_only)

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        _STATE.installed = False
        _STATE.pending = False  # received_signal() still tells the caller; nothing raises it again
        _STATE.modes = []

    _STATE.record_only.add(restore.__code__)
    return restore


def received_signal() -> int | None:
    """The first stop signal received since :func:`install_stop_handlers` (``None``: none)."""
    return _STATE.received


_STATE.record_only.add(received_signal.__code__)


def signal_exit_code(signum: int) -> int:
    """143 for SIGTERM, 130 for SIGINT."""
    return EXIT_TERMINATED if signum == signal.SIGTERM else EXIT_INTERRUPTED


def check_stop() -> None:
    """Raise the exception of a recorded stop signal (``Terminated`` or ``KeyboardInterrupt``) that no
    code has handled yet: called at the points where a run may stop cleanly."""
    if _STATE.installed and _STATE.pending and _STATE.received is not None:
        raise _exception(_STATE.received)


def forget_stop() -> None:
    """The stop signal was the command's normal end (Ctrl-C stops the dashboard server): forget it."""
    _STATE.received = None
    _STATE.pending = False


def acknowledge_stop() -> None:
    """Called by the code that handled a stop signal's exception (it ends the run, prints the summary):
    later :func:`check_stop` calls do not raise it again; :func:`received_signal` still reports it."""
    _STATE.pending = False


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Inside the block a stop signal is only recorded; it is raised when the block ends normally."""
    _STATE.modes.append(False)
    try:
        yield
    finally:
        _STATE.modes.pop()
    if _raising():
        check_stop()


@contextlib.contextmanager
def signals_immediate() -> Iterator[None]:
    """Inside the block (nested in a :func:`signals_deferred` one) a stop signal raises at once; a
    signal recorded before the block raises when it starts."""
    _STATE.modes.append(True)
    try:
        check_stop()
        yield
    finally:
        _STATE.modes.pop()


#: Fault injection for tests: ``PHASE`` or ``PHASE:INT`` / ``PHASE:TERM`` (default TERM). The process
#: sends itself the signal when it reaches the named phase (see :func:`fault_signal`'s callers).
FAULT_SIGNAL_ENV = "RESATTN_FAULT_SIGNAL"


def fault_signal(phase: str) -> None:
    """Send this process the signal named by :data:`FAULT_SIGNAL_ENV` if it names ``phase``."""
    raw = os.environ.get(FAULT_SIGNAL_ENV, "")
    if not raw:
        return
    name, _, sig = raw.partition(":")
    if name.strip() != phase:
        return
    signum = signal.SIGINT if sig.strip().upper() in ("INT", "SIGINT") else signal.SIGTERM
    os.kill(os.getpid(), signum)
