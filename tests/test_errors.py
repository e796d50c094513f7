"""resattn.errors: interruptions map to their exit codes."""

from __future__ import annotations

import contextlib
import signal

import pytest

from resattn.errors import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    Terminated,
    interrupt_exit_code,
    raise_terminated,
)


def test_sigterm_is_a_keyboard_interrupt_that_exits_143() -> None:
    with pytest.raises(KeyboardInterrupt) as info:
        raise_terminated(signal.SIGTERM, None)
    assert isinstance(info.value, Terminated)
    assert interrupt_exit_code(info.value) == EXIT_TERMINATED == 143
    assert interrupt_exit_code(KeyboardInterrupt()) == EXIT_INTERRUPTED == 130


# ------------------------------------------------------------------------------------ stop signals


@pytest.fixture
def handlers():
    from resattn.errors import install_stop_handlers

    restore = install_stop_handlers()
    yield
    restore()


def _send(sig: int) -> None:
    import os

    os.kill(os.getpid(), sig)
    for _ in range(3):  # a backward jump: the interpreter runs the pending handler here at the latest
        pass


def test_a_signal_raises_and_is_recorded(handlers) -> None:
    from resattn.errors import received_signal

    with pytest.raises(Terminated):
        _send(signal.SIGTERM)
    assert received_signal() == signal.SIGTERM


def test_deferred_signals_are_raised_when_the_block_ends(handlers) -> None:
    from resattn.errors import acknowledge_stop, signals_deferred, signals_immediate

    done = []
    with pytest.raises(KeyboardInterrupt), signals_deferred():
        _send(signal.SIGINT)
        done.append("the deferred block went on")
    assert done == ["the deferred block went on"]
    acknowledge_stop()
    with pytest.raises(Terminated), signals_deferred(), signals_immediate():  # immediate inside deferred
        _send(signal.SIGTERM)
        done.append("never")
    assert "never" not in done


def test_a_swallowed_signal_is_raised_again_at_the_next_check(handlers, monkeypatch) -> None:
    """The root cause of the SIGTERM that once ended a search with exit code 0: a handler that raises
    while a finalizer (a ``__del__``, a weakref callback) runs has its exception swallowed by the
    interpreter ("Exception ignored in ...") and the program goes on as if nothing had happened."""
    import sys

    from resattn.errors import acknowledge_stop, check_stop, received_signal

    swallowed: list[type] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: swallowed.append(info.exc_type))

    class Finalizer:
        def __del__(self) -> None:
            _send(signal.SIGTERM)

    Finalizer()  # collected at once: the handler runs inside __del__
    assert swallowed == [Terminated]
    with pytest.raises(Terminated):
        check_stop()
    acknowledge_stop()  # the run handled it: the next checks pass, the exit code remembers it
    check_stop()
    assert received_signal() == signal.SIGTERM


def test_fault_signal_names_a_phase(handlers, monkeypatch) -> None:
    from resattn.errors import FAULT_SIGNAL_ENV, fault_signal

    monkeypatch.setenv(FAULT_SIGNAL_ENV, "between:INT")
    fault_signal("trial")  # another phase: nothing
    with pytest.raises(KeyboardInterrupt) as info:
        fault_signal("between")
        _send(0)
    assert not isinstance(info.value, Terminated)


def test_after_the_handlers_are_restored_nothing_raises_a_recorded_signal_again() -> None:
    """A command run in-process (tests, notebooks) must not leave a signal behind for the next one."""
    from resattn.errors import check_stop, install_stop_handlers, received_signal, signals_deferred

    restore = install_stop_handlers()
    with contextlib.suppress(RuntimeError), signals_deferred():
        _send(signal.SIGTERM)  # recorded, and the block is left by another exception: still pending
        raise RuntimeError
    restore()
    check_stop()
    with signals_deferred():
        pass
    assert received_signal() == signal.SIGTERM
