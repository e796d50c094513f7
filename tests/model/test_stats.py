"""Tests for resattn.model.stats: parameter and FLOP counts."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from resattn import BlockSpec, ModelStats, NetSpec, build, model_stats, presets
from tests.model.test_spec import random_netspec


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _conv(cin: int, cout: int, k: int, hw: int) -> int:
    """FLOPs of a k×k conv producing ``hw`` output pixels: 2 per multiply-add."""
    return 2 * cin * cout * k * k * hw


def _linear(fin: int, fout: int) -> int:
    return 2 * fin * fout


@pytest.mark.parametrize(
    "spec",
    [presets.seed_pattern2(), presets.seed_pattern4()]
    + [random_netspec(random.Random(7 + i), max_channels=24, max_layers=3) for i in range(4)],
)
def test_spec_and_model_agree(spec: NetSpec) -> None:
    size = (spec.in_channels, 16, 16)
    from_spec = model_stats(spec, size)
    model = build(spec)
    from_model = model_stats(model, size)
    assert isinstance(from_spec, ModelStats)
    assert from_spec.params == from_model.params
    assert from_spec.flops == from_model.flops
    assert from_spec.params == sum(p.numel() for p in model.parameters())
    assert from_spec.flops > 0
    assert from_spec.input_size == size


def test_params_count_only_trainable() -> None:
    model = build(presets.seed_pattern4())
    total = sum(p.numel() for p in model.parameters())
    assert model_stats(model).params == total == 478_150
    for p in model.head.parameters():
        p.requires_grad_(False)
    assert model_stats(model).params == total - (128 * 10 + 10)


def test_flops_of_a_plain_net_by_hand() -> None:
    spec = NetSpec(layers=(BlockSpec("plain", 6),), stem_channels=4, num_classes=5, in_channels=3)
    hw = 8 * 8
    expected = _conv(3, 4, 3, hw) + _conv(4, 6, 3, hw) + _linear(6, 5)
    assert expected == 41_532
    stats = model_stats(spec, (3, 8, 8))
    assert stats.flops == expected
    # params: convs (no bias) + BN affine + linear with bias
    assert stats.params == 3 * 4 * 9 + 2 * 4 + 4 * 6 * 9 + 2 * 6 + 6 * 5 + 5


def test_flops_of_a_downsampling_residual_block_by_hand() -> None:
    spec = NetSpec(layers=(BlockSpec("residual", 6, 2),), stem_channels=4, num_classes=5)
    out_hw = 4 * 4
    expected = (
        _conv(3, 4, 3, 8 * 8)  # stem
        + _conv(4, 6, 3, out_hw)  # branch conv1, stride 2
        + _conv(6, 6, 3, out_hw)  # branch conv2
        + _conv(4, 6, 1, out_hw)  # 1×1 skip, stride 2
        + _linear(6, 5)
    )
    assert model_stats(spec, (3, 8, 8)).flops == expected


def test_flops_of_attention_by_hand() -> None:
    """SE on 16 channels (hidden 4): two 1×1 convs on a 1×1 map; the pooling is not counted."""
    plain = NetSpec(layers=(BlockSpec("residual", 16),), stem_channels=16, num_classes=2)
    se = NetSpec(layers=(BlockSpec("pattern2", 16, attention="se"),), stem_channels=16, num_classes=2)
    diff = model_stats(se, (3, 8, 8)).flops - model_stats(plain, (3, 8, 8)).flops
    assert diff == _linear(16, 4) + _linear(4, 16)


def test_flops_scale_with_input_area() -> None:
    spec = NetSpec(layers=(BlockSpec("plain", 6),), stem_channels=4, num_classes=5)
    small = model_stats(spec, (3, 8, 8)).flops - _linear(6, 5)
    big = model_stats(spec, (3, 16, 16)).flops - _linear(6, 5)
    assert big == 4 * small


@pytest.mark.parametrize(
    "size", [(3, 32), (3, 32, 32, 1), (0, 32, 32), (3, -1, 32), (3, 32, 0), (3, 32.0, 32), (3, "32", 32), ()]
)
def test_bad_input_size(size: tuple) -> None:
    spec = NetSpec(layers=(BlockSpec("plain", 4),), stem_channels=4)
    with pytest.raises(ValueError, match="input_size"):
        model_stats(spec, size)
    with pytest.raises(ValueError, match="input_size"):
        model_stats(build(spec), size)


def test_rejects_other_inputs() -> None:
    with pytest.raises(TypeError):
        model_stats("resnet18")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        model_stats(presets.seed_pattern2().to_dict())  # type: ignore[arg-type]


@pytest.mark.parametrize("training", [True, False])
def test_training_mode_and_state_restored(training: bool) -> None:
    model = build(presets.seed_pattern2_mix())
    model.train(training)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model_stats(model)
    assert model.training is training
    assert all(m.training is training for m in model.modules())
    after = model.state_dict()
    for k, v in before.items():
        assert torch.equal(v, after[k]), f"{k} changed (BatchNorm statistics must not be updated)"
    assert all(p.grad is None for p in model.parameters())


def test_training_mode_restored_after_error() -> None:
    model = build(NetSpec(layers=(BlockSpec("plain", 4),), stem_channels=4))
    model.train()
    with pytest.raises(RuntimeError):
        model_stats(model, (5, 8, 8))  # wrong channel count for the stem
    assert model.training


def test_parameterless_model() -> None:
    stats = model_stats(nn.Sequential(nn.Flatten()), (3, 4, 4))
    assert stats.params == 0 and stats.flops == 0
