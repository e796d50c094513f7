"""Helpers shared by several test modules: tiny real searches through the CLI."""

from __future__ import annotations

import contextlib
import io
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


