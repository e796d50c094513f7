"""Exported ResNet architectures (ImageNet stem, bottlenecks, retrofitted blocks) stay one standalone
torch-only file whose model computes what resattn's does."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from resattn import AttentionSpec, NetSpec, build, presets
from resattn.export.source import write_export


def _retrofitted_resnet18() -> NetSpec:
    spec = presets.resnet18(num_classes=10)
    layers = list(spec.layers)
    layers[1] = dataclasses.replace(layers[1], kind="pattern4", attention=AttentionSpec("cbam"),
                                    skip_attention=AttentionSpec("se"), gamma_s=0.0, gamma_r=0.05)
    layers[3] = dataclasses.replace(layers[3], kind="pattern2_mix", attention=AttentionSpec("eca"), lam=0.0)
    return dataclasses.replace(spec, layers=tuple(layers))


def _retrofitted_resnet50() -> NetSpec:
    spec = presets.resnet50(num_classes=10)
    layers = list(spec.layers)
    layers[0] = dataclasses.replace(layers[0], kind="pattern1", attention=AttentionSpec("coord"))
    layers[-1] = dataclasses.replace(layers[-1], kind="pattern2", attention=AttentionSpec("simam"))
    return dataclasses.replace(spec, layers=tuple(layers))


CASES = {
    "resnet18": lambda: presets.resnet18(num_classes=10),
    "resnet50": lambda: presets.resnet50(num_classes=10),
    "resnet18-retrofit": _retrofitted_resnet18,
    "resnet50-retrofit": _retrofitted_resnet50,
}


def _import_file(path: Path, name: str) -> object:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses / annotations of the file look themselves up here
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def _top_level_imports(source: str) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            out.add((node.module or "").split(".")[0])
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_exported_resnet_matches_resattn(tmp_path: Path, case: str) -> None:
    spec = CASES[case]()
    path = write_export(tmp_path / f"{case.replace('-', '_')}.py", spec)
    source = path.read_text(encoding="utf-8")
    assert _top_level_imports(source) - set(sys.stdlib_module_names) == {"torch"}
    assert "class ImageNetStem" in source
    assert ("class BottleneckBranch" in source) == ("50" in case)
    assert ("class ResidualBranch" in source) == ("18" in case)
    module = _import_file(path, f"exported_{case.replace('-', '_')}")

    torch.manual_seed(0)
    mine = build(spec)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # random weights everywhere, running statistics included
        for t in mine.state_dict().values():
            if t.is_floating_point():
                t.copy_(0.5 + torch.rand(t.shape, generator=gen) if t.ndim == 1 else 0.05 * torch.randn(
                    t.shape, generator=gen))
    theirs = module.build_model()  # type: ignore[attr-defined]
    theirs.load_state_dict(mine.state_dict(), strict=True)
    mine.eval()
    theirs.eval()
    x = torch.randn(2, 3, 64, 64, generator=gen)
    with torch.no_grad():
        assert torch.equal(theirs(x), mine(x))


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxruntime") is None,
                    reason="onnx / onnxruntime not installed")
@pytest.mark.parametrize("case", ["resnet18-retrofit", "resnet50-retrofit"])
def test_retrofitted_resnets_export_to_onnx_and_agree_with_torch(tmp_path: Path, case: str) -> None:
    from resattn.export.onnx import ONNX_TOLERANCE, export_onnx

    result = export_onnx(CASES[case](), tmp_path / "m.onnx", image_size=64)  # onnxruntime compares both
    assert result.path.is_file() and result.max_abs_diff is not None and result.max_abs_diff <= ONNX_TOLERANCE
