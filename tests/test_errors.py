"""resattn.errors: interruptions map to their exit codes."""

from __future__ import annotations

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
