"""Attentions from outside the package reach every command: installed packages through the
``resattn.attentions`` entry-point group, your own modules through ``RESATTN_PLUGINS``. Each case runs
in a fresh interpreter (the registry loads plugins when it is first imported)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

MASK_MODULE = '''
import torch
from torch import nn


class {cls}(nn.Module):
    """A test attention: a learnable per-channel mask."""

    def __init__(self, channels: int, scale: float = 1.0):
        super().__init__()
        self.logit = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.scale = scale

    def forward(self, t):
        return torch.sigmoid(self.scale * self.logit).expand_as(t)
'''

#: What your own module adds to register its attention.
REGISTER = '\nimport resattn\n\nresattn.ATTENTIONS["mine"] = MyMask\n'

SPACE = """
name = "plug"
[backbone]
stem_channels = 8
layers = [{ slot = "s1", out_channels = 8, stride = 2 }]
[choices]
kinds = ["pattern2"]
attentions = ["ATT"]
norms = ["bn"]
learnable = [true]
"""


def _run(tmp_path: Path, code: str, *, plugins: str | None = None, args: list[str] | None = None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    env.pop("RESATTN_PLUGINS", None)
    if plugins is not None:
        env["RESATTN_PLUGINS"] = plugins
    cmd = args if args is not None else [sys.executable, "-c", code]
    return subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)


def test_a_module_named_in_resattn_plugins_registers_its_attention(tmp_path: Path) -> None:
    (tmp_path / "mine.py").write_text(MASK_MODULE.format(cls="MyMask") + REGISTER)
    code = (
        "import torch, resattn\n"
        "from resattn.study.space import parse_space\n"
        "import tomllib\n"
        f"space = parse_space(tomllib.loads({SPACE.replace('ATT', 'mine')!r}), 'plug.toml')\n"
        "spec = resattn.NetSpec(stem_channels=8, layers=(resattn.BlockSpec('pattern2', 8, attention='mine'),))\n"
        "print(sorted(resattn.ATTENTIONS), resattn.build(spec)(torch.zeros(2, 3, 8, 8)).shape)\n"
    )
    done = _run(tmp_path, code, plugins="mine")
    assert done.returncode == 0, done.stderr
    assert "'mine'" in done.stdout and "torch.Size([2, 10])" in done.stdout


def test_an_installed_package_adds_attentions_through_its_entry_points(tmp_path: Path) -> None:
    (tmp_path / "epmask.py").write_text(MASK_MODULE.format(cls="EpMask"))
    dist = tmp_path / "epmask-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: epmask\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[resattn.attentions]\nepmask = epmask:EpMask\n")
    done = _run(tmp_path, "import resattn; print(resattn.ATTENTIONS['epmask'].__name__)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "EpMask"


def test_a_plugin_that_fails_is_named_where_its_attention_is_missing(tmp_path: Path) -> None:
    (tmp_path / "plug.toml").write_text(SPACE.replace("ATT", "mine"))
    done = _run(tmp_path, "", plugins="no_such_module", args=[
        sys.executable, "-c", "from resattn.cli.main import search_main; search_main()",
        "--space", "plug.toml", "--recipe", "quick", "--dataset", "procedural:64", "--trials", "1",
        "--storage", f"sqlite:///{tmp_path / 's.db'}", "--device", "cpu"])
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert 'unknown attention "mine"' in done.stderr
    assert "RESATTN_PLUGINS module 'no_such_module' could not be imported (ModuleNotFoundError" in done.stderr


@pytest.mark.slow
def test_a_search_through_the_command_line_uses_a_plugin_attention(tmp_path: Path) -> None:
    (tmp_path / "mine.py").write_text(MASK_MODULE.format(cls="MyMask") + REGISTER)
    (tmp_path / "plug.toml").write_text(SPACE.replace("ATT", "mine"))
    done = _run(tmp_path, "", plugins="mine", args=[
        sys.executable, "-c", "from resattn.cli.main import search_main; search_main()",
        "--space", "plug.toml", "--recipe", "quick", "--dataset", "procedural:128", "--trials", "1",
        "--storage", f"sqlite:///{tmp_path / 's.db'}", "--device", "cpu", "--epochs", "1",
        "--set", "data.train_images=0", "--set", "train.batch_size=32"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1/1 finished" in done.stdout and "mine" in done.stdout
