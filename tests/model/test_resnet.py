"""torchvision's ResNets as specs (issue 16): the ImageNet stem, bottleneck branches, the ResNet presets,
``from_torchvision`` and function-preserving insertion of attention into a trained ResNet."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

import resattn
from resattn import AttentionSpec, BlockSpec, NetSpec, SpecError, build, from_torchvision, presets
from resattn.model.layers import BottleneckBranch, ImageNetStem, PlainLayer, ResidualBranch
from resattn.model.retrofit import RetrofitError, from_torchvision_state_dict, torchvision_name
from resattn.model.stats import model_stats

#: torchvision's own parameter counts at 1,000 classes (its model docs list the same numbers).
TORCHVISION_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032}
_X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm statistics and affine parameters (fresh ones are 0/1: they would hide a mix-up)."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))
            with torch.no_grad():
                m.weight.copy_(0.5 + torch.rand(m.num_features, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.num_features, generator=gen))
    return model.eval()


# --------------------------------------------------------------------------------------- presets


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_resnet_presets_have_torchvision_parameter_counts(depth: int) -> None:
    spec = getattr(presets, f"resnet{depth}")()
    assert model_stats(spec).params == TORCHVISION_PARAMS[depth]
    theirs = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    assert _params(theirs) == TORCHVISION_PARAMS[depth]
    mine = build(spec)
    assert len(mine.state_dict()) == len(theirs.state_dict())  # buffers too (running stats, counters)


def test_resnet_preset_layout() -> None:
    spec = presets.resnet50(num_classes=10)
    assert spec.stem == "imagenet" and spec.stem_channels == 64 and spec.num_classes == 10
    assert [layer.name for layer in spec.layers][:4] == ["s1b1", "s1b2", "s1b3", "s2b1"]
    assert {layer.branch for layer in spec.layers} == {"bottleneck"}
    assert [(layer.out_channels, layer.stride) for layer in spec.layers if layer.stride == 2] == [
        (512, 2), (1024, 2), (2048, 2)
    ]
    assert spec.out_channels == 2048
    assert [layer.out_channels for layer in presets.resnet18().layers] == [64, 64, 128, 128, 256, 256, 512, 512]
    with pytest.raises(ValueError, match="unknown ResNet depth"):
        presets.resnet(20)


# ------------------------------------------------------------------------------ the spec and layers


def test_new_fields_are_left_out_at_their_defaults() -> None:
    """Specs without a stem or branch serialise exactly as before (stored specs, arch hashes)."""
    spec = presets.seed_pattern4()
    data = spec.to_dict()
    assert "stem" not in data
    assert all("branch" not in layer for layer in data["layers"])
    assert list(data) == ["format", "in_channels", "num_classes", "stem_channels", "stem_norm", "layers"]
    old = json.loads(spec.to_json())
    assert NetSpec.from_dict(old) == spec


def test_stem_and_branch_round_trip() -> None:
    spec = presets.resnet50(num_classes=10)
    data = json.loads(spec.to_json())
    assert data["stem"] == "imagenet"
    assert {layer["branch"] for layer in data["layers"]} == {"bottleneck"}
    assert NetSpec.from_json(spec.to_json()) == spec
    assert hash(spec) == hash(NetSpec.from_json(spec.to_json()))


@pytest.mark.parametrize(
    ("make", "field", "text"),
    [
        (lambda: BlockSpec("residual", 64, branch="wide"), "branch", "allowed: basic, bottleneck"),
        (lambda: BlockSpec("plain", 64, branch="bottleneck"), "branch", "no residual branch"),
        (lambda: BlockSpec("residual", 66, branch="bottleneck"), "out_channels", "multiple of 4"),
        (lambda: NetSpec(layers=(BlockSpec("residual", 8),), stem="resnet"), "stem", "allowed: cifar, imagenet"),
        (lambda: NetSpec.from_dict({"layers": [{"kind": "residual", "out_channels": 8, "branch": 3}]}),
         "layers[0].branch", "allowed"),
    ],
)
def test_bad_stem_and_branch_are_rejected(make, field: str, text: str) -> None:
    with pytest.raises(SpecError) as info:
        make()
    assert info.value.field == field
    assert text in str(info.value)


def test_bottleneck_branch_widths_and_stride() -> None:
    branch = BottleneckBranch(64, 256, stride=2)
    assert [tuple(c.weight.shape) for c in (branch.conv1, branch.conv2, branch.conv3)] == [
        (64, 64, 1, 1), (64, 64, 3, 3), (256, 64, 1, 1)
    ]
    assert branch.conv1.stride == (1, 1) and branch.conv2.stride == (2, 2)  # torchvision v1.5
    assert branch(torch.randn(1, 64, 8, 8)).shape == (1, 256, 4, 4)
    stem = ImageNetStem(3, 64)
    assert stem(torch.randn(1, 3, 64, 64)).shape == (1, 64, 16, 16)


def test_every_kind_takes_a_bottleneck_and_names_do_not_depend_on_the_kind() -> None:
    att = AttentionSpec("se", reduction=4)
    blocks = {
        "residual": BlockSpec("residual", 32, 2, branch="bottleneck"),
        "pattern1": BlockSpec("pattern1", 32, 2, branch="bottleneck", attention=att),
        "pattern2": BlockSpec("pattern2", 32, 2, branch="bottleneck", attention=att),
        "pattern2_mix": BlockSpec("pattern2_mix", 32, 2, branch="bottleneck", attention=att),
        "pattern4": BlockSpec("pattern4", 32, 2, branch="bottleneck", attention=att, skip_attention=att),
    }
    names = None
    for kind, block in blocks.items():
        model = build(NetSpec(layers=(block,), stem_channels=8, stem="imagenet"))
        assert isinstance(model.stem, ImageNetStem)
        assert isinstance(model.layers[0].branch, BottleneckBranch), kind
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
        shared = {k for k in model.state_dict() if not any(p in k for p in (".skip_op.", ".branch_op.", ".post."))}
        assert names is None or shared == names, kind
        names = shared
    default = build(NetSpec(layers=(BlockSpec("residual", 8),), stem_channels=8))
    assert isinstance(default.stem, PlainLayer) and isinstance(default.layers[0].branch, ResidualBranch)


# ------------------------------------------------------------------------------- from_torchvision


@pytest.mark.parametrize(("depth", "classes"), [(18, 1000), (50, 7)])
def test_from_torchvision_reproduces_the_outputs(depth: int, classes: int) -> None:
    torch.manual_seed(depth)
    theirs = _randomise(getattr(torchvision.models, f"resnet{depth}")(weights=None, num_classes=classes), depth)
    spec, state = from_torchvision(theirs)
    assert spec == presets.resnet(depth, classes)
    mine = build(spec)
    mine.load_state_dict(state, strict=True)
    mine.eval()
    with torch.no_grad():
        expected, got = theirs(_X), mine(_X)
    assert torch.allclose(got, expected, atol=1e-4, rtol=0), (got - expected).abs().max()
    # The state_dict alone (a downloaded .pth file) gives the same spec and the same tensors.
    spec2, state2 = from_torchvision_state_dict(theirs.state_dict())
    assert spec2 == spec and state2.keys() == state.keys()
    assert all(torch.equal(state[k], state2[k]) for k in state)


def _retrofit(spec: NetSpec, pick) -> NetSpec:
    return dataclasses.replace(spec, layers=tuple(pick(i, layer) for i, layer in enumerate(spec.layers)))


def _gated(layer: BlockSpec) -> BlockSpec:
    return dataclasses.replace(layer, kind="pattern4", attention=AttentionSpec("cbam"),
                               skip_attention=AttentionSpec("se"), residual_path="gated", gamma_s=0.0, gamma_r=0.0)


def _mixed(layer: BlockSpec) -> BlockSpec:
    return dataclasses.replace(layer, kind="pattern2_mix", attention=AttentionSpec("eca"), lam=0.0)


@pytest.mark.parametrize("how", ["pattern4", "pattern2_mix", "alternating"])
def test_near_identity_retrofit_reproduces_the_trained_resnet18(how: str) -> None:
    theirs = _randomise(torchvision.models.resnet18(weights=None, num_classes=10), 1)
    spec, state = from_torchvision(theirs)
    pick = {
        "pattern4": lambda i, layer: _gated(layer),
        "pattern2_mix": lambda i, layer: _mixed(layer),
        "alternating": lambda i, layer: _gated(layer) if i % 2 else _mixed(layer),
    }[how]
    torch.manual_seed(0)
    model = build(_retrofit(spec, pick))
    result = model.load_state_dict(state, strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(".skip_op." in k or ".branch_op." in k or ".post." in k
                                       for k in result.missing_keys)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(_X), theirs(_X))


def test_near_identity_retrofit_reproduces_the_trained_resnet50() -> None:
    theirs = _randomise(torchvision.models.resnet50(weights=None, num_classes=5), 2)
    spec, state = from_torchvision(theirs)
    model = build(_retrofit(spec, lambda i, layer: _gated(layer) if i % 2 else _mixed(layer)))
    assert model.load_state_dict(state, strict=False).unexpected_keys == []
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(_X), theirs(_X))


def test_torchvision_names() -> None:
    assert torchvision_name("conv1.weight") == "stem.conv.weight"
    assert torchvision_name("bn1.running_var") == "stem.norm.running_var"
    assert torchvision_name("layer2.0.downsample.0.weight") == "layers.s2b1.skip.0.weight"
    assert torchvision_name("layer2.0.downsample.1.num_batches_tracked") == "layers.s2b1.skip.1.num_batches_tracked"
    assert torchvision_name("layer4.2.bn3.bias") == "layers.s4b3.branch.norm3.bias"
    assert torchvision_name("fc.bias") == "head.bias"
    assert torchvision_name("layer1.0.se.fc.weight") is None
    assert torchvision_name("classifier.weight") is None


def _small(block: type, **kwargs) -> ResNet:
    return ResNet(block, [1, 1, 1, 1], num_classes=3, **kwargs)


@pytest.mark.parametrize(
    ("make", "text"),
    [
        (lambda: _small(Bottleneck, groups=32, width_per_group=4), "grouped convolution layer1.0.conv2 (groups=32"),
        (lambda: _small(Bottleneck, width_per_group=128), "width_per_group"),
        (lambda: _small(Bottleneck, replace_stride_with_dilation=[False, True, True]), "dilated convolution"),
        (lambda: _small(BasicBlock, norm_layer=lambda c: nn.GroupNorm(1, c)), "only BatchNorm2d"),
        (lambda: nn.Sequential(nn.Conv2d(3, 8, 3)), "not a torchvision ResNet"),
    ],
)
def test_from_torchvision_names_what_it_does_not_support(make, text: str) -> None:
    with pytest.raises(RetrofitError, match="from_torchvision") as info:
        from_torchvision(make())
    assert text in str(info.value)
    assert isinstance(info.value, ValueError)


def test_from_torchvision_refuses_other_heads_and_foreign_names() -> None:
    model = _small(BasicBlock)
    model.fc = nn.Sequential(nn.Dropout(0.2), nn.Linear(512, 3))
    with pytest.raises(RetrofitError, match="only one Linear layer"):
        from_torchvision(model)
    state = _small(BasicBlock).state_dict()
    with pytest.raises(RetrofitError, match=r"does not have: extra\.weight"):
        from_torchvision_state_dict({**state, "extra.weight": torch.zeros(1)})
    grouped = _small(Bottleneck, groups=32, width_per_group=4).state_dict()
    with pytest.raises(RetrofitError, match="width_per_group"):
        from_torchvision_state_dict(grouped)


def test_public_api() -> None:
    assert resattn.from_torchvision is from_torchvision
    assert "from_torchvision" in resattn.__all__
    assert resattn.model.from_torchvision is from_torchvision
