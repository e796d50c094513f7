"""Tests for resattn.model.net: spec -> model."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch
from torch import nn

import resattn
from resattn import BlockSpec, NetSpec, build, presets
from resattn.model.layers import FusionBlock, PlainLayer
from resattn.model.net import Net
from tests.model.test_spec import random_netspec

PRESETS = {
    "pattern2": presets.seed_pattern2,
    "pattern2_mix": presets.seed_pattern2_mix,
    "pattern4": presets.seed_pattern4,
    "residual": presets.seed_residual,
}

SMALL_SPECS = [random_netspec(random.Random(100 + i), max_channels=24, max_layers=4) for i in range(24)]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_output_shape(name: str) -> None:
    for num_classes in (10, 7):
        model = build(PRESETS[name](num_classes=num_classes))
        assert isinstance(model, Net) and isinstance(model, nn.Module)
        model.eval()
        with torch.no_grad():
            y = model(torch.randn(2, 3, 32, 32))
        assert y.shape == (2, num_classes)
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("index", range(len(SMALL_SPECS)))
def test_random_specs_build_and_run(index: int) -> None:
    spec = SMALL_SPECS[index]
    model = build(spec)
    assert model.spec is spec
    assert list(dict(model.layers.named_children())) == list(spec.names())
    x = torch.randn(2, spec.in_channels, 8, 8)
    model.train()
    y = model(x)
    assert y.shape == (2, spec.num_classes)
    assert torch.isfinite(y).all()
    y.sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, spec.num_classes)


def test_random_specs_cover_all_kinds() -> None:
    assert {b.kind for s in SMALL_SPECS for b in s.layers} == set(resattn.KINDS)


def test_model_follows_the_spec() -> None:
    spec = NetSpec(
        layers=(
            BlockSpec("plain", 12, name="first"),
            BlockSpec("pattern2", 24, 2, "gn", attention="cbam", name="second"),
            BlockSpec("residual", 24),
        ),
        stem_channels=6,
        num_classes=5,
        in_channels=1,
        stem_norm="gn",
    )
    model = build(spec)
    assert model.stem.conv.in_channels == 1 and model.stem.conv.out_channels == 6
    assert isinstance(model.stem.norm, nn.GroupNorm)
    assert isinstance(model.layers.first, PlainLayer)
    assert model.layers.first.conv.in_channels == 6 and model.layers.first.conv.out_channels == 12
    assert isinstance(model.layers.second, FusionBlock)
    assert model.layers.second.branch.conv1.in_channels == 12
    assert model.layers.second.branch.conv1.stride == (2, 2)
    assert isinstance(model.layers.layer2, FusionBlock)
    assert isinstance(model.layers.layer2.skip, nn.Identity)
    assert model.head.in_features == 24 and model.head.out_features == 5
    assert model(torch.randn(3, 1, 16, 16)).shape == (3, 5)


def test_state_dict_keys_use_layer_names() -> None:
    keys = list(build(presets.seed_pattern2()).state_dict())
    prefixes = {k.split(".")[0] if not k.startswith("layers.") else ".".join(k.split(".")[:2]) for k in keys}
    assert prefixes == {"stem", "layers.block1", "layers.p2_1", "layers.p2_2", "layers.block2", "head"}
    assert "layers.p2_1.post.mask.channel.fc1.weight" in keys
    assert "layers.p2_2.skip.0.weight" in keys
    assert "layers.p2_1.skip.0.weight" not in keys  # same shape: identity skip
    p4_keys = build(presets.seed_pattern4()).state_dict()
    assert "layers.p4_1.skip_op.gamma" in p4_keys
    assert "layers.p4_2.branch_op.mask.fc2.bias" in p4_keys
    unnamed = build(NetSpec(layers=(BlockSpec("plain", 8), BlockSpec("residual", 8, 2))))
    assert {k.split(".")[1] for k in unnamed.state_dict() if k.startswith("layers.")} == {"layer0", "layer1"}


@pytest.mark.parametrize(
    "bad", [None, "{}", {"layers": [{"kind": "plain", "out_channels": 8}]}, BlockSpec("plain", 8), 3]
)
def test_build_rejects_non_netspec(bad: object) -> None:
    with pytest.raises(TypeError, match="NetSpec"):
        build(bad)  # type: ignore[arg-type]


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("spec", [presets.seed_pattern4(), SMALL_SPECS[3]], ids=["seed_pattern4", "random"])
def test_same_seed_same_weights(spec: NetSpec) -> None:
    torch.manual_seed(7)
    a = build(spec)
    torch.manual_seed(7)
    b = build(spec)
    assert _same_state(a, b)
    torch.manual_seed(8)
    c = build(spec)
    assert not _same_state(a, c)


def test_build_is_pure() -> None:
    spec = presets.seed_pattern2_mix()
    before = spec.to_json()
    model = build(spec)
    assert spec.to_json() == before
    assert model.spec == spec
    assert build(spec) is not model


def test_round_tripped_spec_builds_identical_architecture() -> None:
    for spec in SMALL_SPECS[:8]:
        again = NetSpec.from_json(spec.to_json())
        a, b = build(spec), build(again)
        assert {k: v.shape for k, v in a.state_dict().items()} == {
            k: v.shape for k, v in b.state_dict().items()
        }
        assert b.load_state_dict(a.state_dict()) is not None


def test_fixed_gates_are_buffers_in_a_built_model() -> None:
    spec = presets.seed_pattern4()
    fixed = NetSpec(
        layers=tuple(
            dataclasses.replace(layer, gamma_learnable=False) if layer.kind == "pattern4" else layer
            for layer in spec.layers
        )
    )
    learn_params = sum(p.numel() for p in build(spec).parameters())
    fixed_model = build(fixed)
    assert sum(p.numel() for p in fixed_model.parameters()) == learn_params - 4
    assert "layers.p4_1.skip_op.gamma" in dict(fixed_model.named_buffers())
