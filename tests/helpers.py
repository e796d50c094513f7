"""Helpers shared by several test modules: tiny real searches through the CLI."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from resattn.cli.main import main

STUDY = "quick-quick"
#: Trial made to produce NaN outputs (TrainingDiverged -> FAIL), so that the study has a failed trial.
FAILED_TRIAL = 5


def run_quick_search(db: Path, npz: Path, trials: int, *extra: str) -> tuple[int | None, str, str]:
    """`resattn search` with the quick recipe, shrunk to ~1 s per trial."""
    args = ["search", "--recipe", "quick", "--dataset", f"npz:{npz}", "--trials", str(trials),
            "--storage", f"sqlite:///{db}", "--device", "cpu", "--set", "train.epochs=2",
            "--set", "data.train_images=300", "--set", "train.batch_size=64", *extra]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exc:
        main(args)
    return exc.value.code, out.getvalue(), err.getvalue()


def url(db: Path) -> str:
    return f"sqlite:///{db}"


TINY_SPACE = """
name = "tiny"
description = "test: 2 slots x (residual | pattern2[eca]) = 4 architectures"

[backbone]
stem_channels = 8
layers = [
  { slot = "s1", out_channels = 8, stride = 2 },
  { slot = "s2", out_channels = 16, stride = 2 },
]

[choices]
kinds = ["residual", "pattern2"]
attentions = ["eca"]
reductions = [16]
spatial_kernels = [7]
norms = ["bn"]
learnable = [true]
gamma_s = 0.0
gamma_r = 0.1
lam = 0.1
"""


def tiny_search(tmp_path: Path, npz: Path, trials: int, *extra: str) -> tuple[Path, int, str]:
    space = tmp_path / "tiny.toml"
    space.write_text(TINY_SPACE)
    db = tmp_path / "s.db"
    args = ["search", "--space", str(space), "--recipe", "quick", "--dataset", f"npz:{npz}",
            "--trials", str(trials), "--storage", f"sqlite:///{db}", "--device", "cpu",
            "--set", "train.epochs=2", "--set", "data.train_images=300", "--set", "train.batch_size=64",
            *extra]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exc:
        main(args)
    code = exc.value.code if isinstance(exc.value.code, int) else 0
    return db, code, out.getvalue()




def serve_dashboard(args: list[str], while_serving: Callable[[str], None]) -> tuple[str, str, int | None]:
    """Run ``resattn dashboard ARGS`` in a subprocess, call ``while_serving(first line)`` once it
    listens (the line names the address), then stop it with Ctrl-C. Returns (first line, stderr,
    exit code); the process never outlives the call."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "from resattn.cli.main import main; main()", "dashboard", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    try:
        line = proc.stdout.readline() if proc.stdout is not None else ""  # blocks until the server listens
        while_serving(line)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return line, err, proc.returncode
