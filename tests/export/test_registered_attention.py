"""A new attention is one module plus its registration: a class registered at run time, from the
user's own module, works in specs, in ``resattn.build``, in search-space files and in the export,
whose standalone file carries the class's own source (and the helpers it uses) and gives the same
outputs in a process where neither resattn nor the user's module can be imported."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
import torch

import resattn
from resattn import AttentionSpec, BlockSpec, NetSpec, SpecError
from resattn.export.source import ExportError, export_source, write_export
from resattn.model.attention import ATTENTIONS
from resattn.study.space import parse_space, sample

#: The user's module: a mask producer with two options (an int with declared values and a float),
#: a module-level helper function and constant, and torch.nn.functional under an alias.
USER_MODULE = textwrap.dedent(
    '''
    """A test-only attention, registered at run time."""

    from __future__ import annotations

    import torch
    import torch.nn.functional as F
    from torch import nn

    SHARPNESS = 2.0


    def pooled_stats(x: torch.Tensor) -> torch.Tensor:
        """Per-channel mean and standard deviation, stacked: (B, 2C, 1, 1)."""
        mean = x.mean(dim=(2, 3), keepdim=True)
        return torch.cat([mean, x.std(dim=(2, 3), keepdim=True, unbiased=False)], dim=1)


    class StatsGate(nn.Module):
        """A channel mask from mean and std: grouped 1x1 conv, then sigmoid(sharpness * temperature * z)."""

        option_values = {"groups": (1, 2, 4)}

        def __init__(self, channels: int, groups: int = 2, temperature: float = 1.0):
            super().__init__()
            self.mix = nn.Conv2d(2 * channels, channels, 1, groups=groups)
            self.temperature = temperature

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.sigmoid(SHARPNESS * self.temperature * self.mix(pooled_stats(x)))
    '''
)


@pytest.fixture
def user_attention(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = tmp_path / "userpkg"
    folder.mkdir()
    (folder / "stats_gate_user.py").write_text(USER_MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    module = importlib.import_module("stats_gate_user")
    monkeypatch.setitem(ATTENTIONS, "statsgate", module.StatsGate)  # the one registration
    yield module
    sys.modules.pop("stats_gate_user", None)


def _spec() -> NetSpec:
    mine = AttentionSpec("statsgate", groups=4, temperature=0.5)
    return NetSpec(
        stem_channels=8,
        layers=(
            BlockSpec("pattern1", 8, attention=mine, name="a"),
            BlockSpec("pattern4", 16, 2, skip_attention="se", attention="statsgate", name="b"),
            BlockSpec("pattern2_mix", 16, attention=AttentionSpec("statsgate", groups=1), lam=0.3, name="c"),
        ),
    )


def test_a_registered_attention_is_a_spec_with_validated_options(user_attention) -> None:
    spec = _spec()
    assert spec.layers[0].attention.options() == {"groups": 4, "temperature": 0.5}
    assert spec.layers[1].attention.options() == {"groups": 2, "temperature": 1.0}  # the class's defaults
    assert NetSpec.from_json(spec.to_json()) == spec
    with pytest.raises(SpecError, match=r"layers\[0\]\.attention\.groups: must be one of 1, 2, 4, got 3"):
        NetSpec.from_dict({**spec.to_dict(), "layers": [{"kind": "pattern1", "out_channels": 8,
                                                         "attention": {"name": "statsgate", "groups": 3}}]})
    with pytest.raises(SpecError, match="does not take reduction"):
        AttentionSpec("statsgate", reduction=4)
    assert AttentionSpec("statsgate", temperature=2).temperature == 2.0  # an int for a float option


def test_a_registered_attention_builds_and_samples_from_a_space_file(user_attention) -> None:
    model = resattn.build(_spec())
    assert isinstance(model.layers.a.branch_op.mask, user_attention.StatsGate)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)

    space = parse_space(
        {
            "backbone": {"stem_channels": 8, "layers": [{"slot": "s1", "out_channels": 8}]},
            "choices": {"kinds": ["pattern2"], "attentions": ["statsgate", "se"]},
        },
        "mine.toml",
    )
    names = set()
    for params in ({"s1.attention": "statsgate"}, {"s1.attention": "se", "s1.reduction": 16}):
        net = sample(optuna.trial.FixedTrial(params), space, num_classes=10)
        names.add(net.layers[0].attention.name)
        resattn.build(net)
    assert names == {"statsgate", "se"}


_RUN = textwrap.dedent(
    """
    import json, runpy, sys
    sys.modules["resattn"] = None          # `import resattn` fails here
    sys.modules["stats_gate_user"] = None  # and so does the user's module
    import torch
    torch.set_num_threads(1)
    model = runpy.run_path(sys.argv[1])["build_model"]().eval()
    model.load_state_dict(torch.load(sys.argv[2], weights_only=True), strict=True)
    x = torch.load(sys.argv[3], weights_only=True)
    with torch.no_grad():
        out = model(x)
    print(json.dumps(out.tolist()))
    """
)


def test_a_registered_attention_exports_its_own_source_with_equal_outputs(user_attention, tmp_path: Path) -> None:
    spec = _spec()
    torch.manual_seed(0)
    model = resattn.build(spec).eval()
    for p in model.parameters():  # non-trivial weights (γ, λ and all)
        torch.nn.init.normal_(p, std=0.3)
    out = write_export(tmp_path / "net.py", spec)
    source = out.read_text(encoding="utf-8")
    assert "class StatsGate(nn.Module)" in source and "def pooled_stats(" in source
    assert "SHARPNESS = 2.0" in source and "import torch.nn.functional as F" in source
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in ([ast.alias(node.module or "")] if isinstance(node, ast.ImportFrom) else node.names)
    }
    assert "torch" in imported and imported - {"torch"} <= sys.stdlib_module_names, imported
    torch.save(model.state_dict(), tmp_path / "w.pt")
    x = torch.randn(3, 3, 16, 16)
    torch.save(x, tmp_path / "x.pt")
    proc = subprocess.run(
        [sys.executable, "-c", _RUN, str(out), str(tmp_path / "w.pt"), str(tmp_path / "x.pt")],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with torch.no_grad():
        expected = model(x)
    got = torch.tensor(json.loads(proc.stdout))
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()


def test_an_attention_that_needs_another_library_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "needs"
    folder.mkdir()
    (folder / "needs_numpy_user.py").write_text(textwrap.dedent(
        """
        import numpy as np
        import torch
        from torch import nn

        class NumpyMask(nn.Module):
            def __init__(self, channels: int):
                super().__init__()
                self.scale = float(np.sqrt(channels))

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return torch.sigmoid(x / self.scale)
        """
    ), encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    module = importlib.import_module("needs_numpy_user")
    monkeypatch.setitem(ATTENTIONS, "npmask", module.NumpyMask)
    spec = NetSpec(stem_channels=4, layers=(BlockSpec("pattern2", 4, attention="npmask"),))
    resattn.build(spec)  # building is fine
    with pytest.raises(ExportError, match="uses the module 'numpy'"):
        export_source(spec)
    sys.modules.pop("needs_numpy_user", None)
