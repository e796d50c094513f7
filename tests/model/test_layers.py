"""Tests for resattn.model.layers: every kind × attention × shape × norm builds, runs and trains; DESIGN §1 math."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from resattn import ATTENTIONS, KINDS, AttentionSpec, BlockSpec
from resattn.model.attention import ECA, SqueezeExcite, make_attention
from resattn.model.layers import (
    ApplyMask,
    FusionBlock,
    MaskMix,
    NearIdentityGate,
    PlainLayer,
    ResidualBranch,
    make_norm,
    make_skip,
)
from resattn.model.net import make_layer

C = 8
ATT_NAMES = sorted(ATTENTIONS)
SHAPES = {"same": (C, 1), "down": (2 * C, 2)}  # out_channels, stride for an input of C channels


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _x(channels: int = C, size: int = 8) -> torch.Tensor:
    return torch.randn(2, channels, size, size)


def _spec(kind: str, att: str | None, out: int, stride: int, norm: str, **kw) -> BlockSpec:
    if kind in ("plain", "residual"):
        return BlockSpec(kind, out, stride, norm, **kw)
    if kind == "pattern4":
        kw.setdefault("skip_attention", att)
    return BlockSpec(kind, out, stride, norm, attention=att, **kw)


def _cases() -> list:
    cases = []
    for kind in KINDS:
        if kind in ("plain", "residual"):
            cases.append(pytest.param(kind, None, {}, id=kind))
            continue
        for att in ATT_NAMES:
            cases.append(pytest.param(kind, att, {}, id=f"{kind}-{att}"))
            if kind == "pattern4":
                cases.append(pytest.param(kind, att, {"residual_path": "direct"}, id=f"{kind}_direct-{att}"))
    return cases


def _outside_attention(block: nn.Module) -> list[tuple[str, nn.Module]]:
    """Named submodules that are not part of an attention mask producer."""
    return [(n, m) for n, m in block.named_modules() if ".mask" not in f".{n}" and not n.startswith("mask")]


@pytest.mark.parametrize("norm", ["bn", "gn"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize(("kind", "att", "extra"), _cases())
def test_layer_forward_backward(kind: str, att: str | None, extra: dict, shape: str, norm: str) -> None:
    out, stride = SHAPES[shape]
    spec = _spec(kind, att, out, stride, norm, **extra)
    layer = make_layer(spec, C)
    layer.train()
    x = _x()
    y = layer(x)
    size = 8 // stride
    assert y.shape == (2, out, size, size)
    assert torch.isfinite(y).all()
    assert (y >= 0).all(), "every block ends with ReLU"
    assert y.abs().sum() > 0

    # Non-uniform weights on the output so that no gradient vanishes by symmetry.
    (y * torch.randn_like(y)).sum().backward()
    params = [(n, p) for n, p in layer.named_parameters() if p.requires_grad]
    assert params
    for name, p in params:
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"

    # The requested norm is used everywhere outside the attention modules.
    norms = [m for _, m in _outside_attention(layer) if isinstance(m, nn.BatchNorm2d | nn.GroupNorm)]
    assert norms
    wanted = nn.GroupNorm if norm == "gn" else nn.BatchNorm2d
    assert all(type(m) is wanted for m in norms), [type(m).__name__ for m in norms]


@pytest.mark.parametrize(("kind", "att", "extra"), _cases())
def test_layer_structure(kind: str, att: str | None, extra: dict) -> None:
    same = make_layer(_spec(kind, att, C, 1, "bn", **extra), C)
    down = make_layer(_spec(kind, att, 2 * C, 2, "bn", **extra), C)
    if kind == "plain":
        assert isinstance(same, PlainLayer) and isinstance(down, PlainLayer)
        assert down.conv.stride == (2, 2) and down.conv.out_channels == 2 * C
        return
    assert isinstance(same, FusionBlock) and isinstance(down, FusionBlock)
    assert isinstance(same.skip, nn.Identity)
    assert isinstance(down.skip, nn.Sequential)
    conv = down.skip[0]
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.stride == (2, 2)
    assert conv.in_channels == C and conv.out_channels == 2 * C and conv.bias is None
    assert isinstance(down.branch, ResidualBranch)
    assert down.branch.conv1.stride == (2, 2) and down.branch.conv2.stride == (1, 1)
    expected = {
        "residual": (nn.Identity, nn.Identity, nn.Identity),
        "pattern1": (nn.Identity, ApplyMask, nn.Identity),
        "pattern2": (nn.Identity, nn.Identity, ApplyMask),
        "pattern2_mix": (nn.Identity, nn.Identity, MaskMix),
        "pattern4": (
            NearIdentityGate,
            ApplyMask if extra.get("residual_path") == "direct" else NearIdentityGate,
            nn.Identity,
        ),
    }[kind]
    for block in (same, down):
        got = (type(block.skip_op), type(block.branch_op), type(block.post))
        assert got == expected
        masks = [m.mask for m in (block.skip_op, block.branch_op, block.post) if hasattr(m, "mask")]
        for mask in masks:
            assert isinstance(mask, ATTENTIONS[att])


def test_pattern4_attentions_go_to_their_paths() -> None:
    spec = BlockSpec("pattern4", 16, skip_attention="se", attention="eca", gamma_s=0.5, gamma_r=0.25)
    block = make_layer(spec, 16)
    assert isinstance(block.skip_op.mask, SqueezeExcite)
    assert isinstance(block.branch_op.mask, ECA)
    assert block.skip_op.gamma.item() == 0.5
    assert block.branch_op.gamma.item() == 0.25


def test_attention_options_reach_the_module() -> None:
    spec = BlockSpec("pattern2", 64, attention=AttentionSpec("cbam", reduction=4, spatial_kernel=3))
    block = make_layer(spec, 64)
    assert block.post.mask.channel.fc1.out_channels == 16
    assert block.post.mask.spatial.conv.kernel_size == (3, 3)


# --------------------------------------------------------------------------------------------
# Norms
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channels", "groups"), [(8, 8), (16, 16), (48, 16), (64, 32), (96, 32), (10, 2), (7, 1)]
)
def test_make_norm_gn_groups(channels: int, groups: int) -> None:
    norm = make_norm("gn", channels)
    assert isinstance(norm, nn.GroupNorm)
    assert norm.num_groups == groups == math.gcd(channels, 32)
    assert norm.num_channels == channels


def test_make_norm_bn_and_unknown() -> None:
    assert isinstance(make_norm("bn", 8), nn.BatchNorm2d)
    with pytest.raises(ValueError, match="ln"):
        make_norm("ln", 8)


def test_gn_block_uses_group_norm_on_skip_and_branch() -> None:
    block = make_layer(BlockSpec("residual", 64, 2, "gn"), 32)
    assert isinstance(block.skip[1], nn.GroupNorm) and block.skip[1].num_groups == 32
    assert isinstance(block.branch.norm1, nn.GroupNorm)
    assert isinstance(block.branch.norm2, nn.GroupNorm)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in block.modules())
    plain = make_layer(BlockSpec("plain", 16, norm="gn"), 8)
    assert isinstance(plain.norm, nn.GroupNorm)


def test_gn_block_output_independent_of_batch() -> None:
    """GroupNorm (unlike BatchNorm in training mode) normalises each sample on its own."""
    block = make_layer(BlockSpec("pattern2", C, attention="se", norm="gn"), C).train()
    x = _x()
    assert torch.allclose(block(x)[:1], block(x[:1]), atol=1e-5)
    bn_block = make_layer(BlockSpec("pattern2", C, attention="se", norm="bn"), C).train()
    assert not torch.allclose(bn_block(x)[:1], bn_block(x[:1]), atol=1e-5)


# --------------------------------------------------------------------------------------------
# The kinds' formulas, from each block's own parts
# --------------------------------------------------------------------------------------------


def _ref_output(kind: str, block: FusionBlock, x: torch.Tensor, spec: BlockSpec) -> torch.Tensor:
    s = block.skip(x)
    f = block.branch(x)
    relu = torch.relu
    if kind == "residual":
        return relu(s + f)
    if kind == "pattern1":
        m = block.branch_op.mask
        return relu(s + m(f) * f)
    if kind == "pattern2":
        z = s + f
        return relu(block.post.mask(z) * z)
    if kind == "pattern2_mix":
        z = s + f
        lam = spec.lam
        return relu((1 - lam) * z + lam * block.post.mask(z) * z)
    if kind == "pattern4":
        gs = s * (1 + spec.gamma_s * block.skip_op.mask(s))
        if spec.residual_path == "gated":
            r = f * (1 + spec.gamma_r * block.branch_op.mask(f))
        else:
            r = block.branch_op.mask(f) * f
        return relu(gs + r)
    raise AssertionError(kind)


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("residual", {}),
        ("pattern1", {}),
        ("pattern2", {}),
        ("pattern2_mix", {"lam": 0.3}),
        ("pattern4", {"gamma_s": 0.5, "gamma_r": 0.7}),
        ("pattern4", {"gamma_s": 0.5, "residual_path": "direct"}),
    ],
)
def test_block_formula(kind: str, extra: dict, shape: str) -> None:
    out, stride = SHAPES[shape]
    att = None if kind == "residual" else "cbam"
    if kind == "pattern4":
        extra = {**extra, "skip_attention": "se"}
    spec = _spec(kind, att, out, stride, "bn", **extra)
    block = make_layer(spec, C).eval()
    x = _x()
    with torch.no_grad():
        assert torch.allclose(block(x), _ref_output(kind, block, x, spec), atol=1e-6)


# --------------------------------------------------------------------------------------------
# The mask operators
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("att", ATT_NAMES)
def test_near_identity_gate_with_zero_gamma_is_exact_identity(att: str) -> None:
    for learnable in (True, False):
        gate = NearIdentityGate(make_attention(att, C), 0.0, learnable)
        t = _x()
        assert torch.equal(gate(t), t)


@pytest.mark.parametrize("att", ATT_NAMES)
def test_near_identity_gate_formula(att: str) -> None:
    mask = make_attention(att, C).eval()
    gate = NearIdentityGate(mask, 0.4).eval()
    t = _x()
    out = gate(t)
    assert torch.allclose(out, t * (1 + 0.4 * mask(t)), atol=1e-6)
    assert not torch.allclose(out, t)


def test_apply_mask_and_mask_mix_formulas() -> None:
    mask = make_attention("cbam", C)
    t = _x()
    m = mask(t)
    assert torch.allclose(ApplyMask(mask)(t), m * t, atol=1e-6)
    assert torch.allclose(MaskMix(mask, 0.3)(t), 0.7 * t + 0.3 * m * t, atol=1e-6)
    assert torch.allclose(MaskMix(mask, 0.0)(t), t)
    assert torch.allclose(MaskMix(mask, 1.0, learnable=False)(t), m * t, atol=1e-6)


def test_gamma_and_lam_parameters_or_buffers() -> None:
    mask = make_attention("se", C)
    g = NearIdentityGate(mask, 0.2, learnable=True)
    assert isinstance(g.gamma, nn.Parameter) and "gamma" in dict(g.named_parameters())
    assert "gamma" not in dict(g.named_buffers())
    g = NearIdentityGate(mask, 0.2, learnable=False)
    assert not isinstance(g.gamma, nn.Parameter)
    assert "gamma" in dict(g.named_buffers()) and "gamma" not in dict(g.named_parameters())
    assert "gamma" in g.state_dict() and g.state_dict()["gamma"].item() == pytest.approx(0.2)
    mm = MaskMix(mask, 0.3, learnable=True)
    assert "lam" in dict(mm.named_parameters())
    mm = MaskMix(mask, 0.3, learnable=False)
    assert "lam" in dict(mm.named_buffers()) and "lam" not in dict(mm.named_parameters())


@pytest.mark.parametrize("learnable", [True, False])
def test_block_gamma_lam_learnability(learnable: bool) -> None:
    mix = make_layer(BlockSpec("pattern2_mix", C, attention="se", lam=0.25, lam_learnable=learnable), C)
    p4 = make_layer(
        BlockSpec(
            "pattern4",
            C,
            attention="se",
            skip_attention="eca",
            gamma_s=0.1,
            gamma_r=0.2,
            gamma_learnable=learnable,
        ),
        C,
    )
    p4d = make_layer(
        BlockSpec(
            "pattern4",
            C,
            attention="se",
            skip_attention="eca",
            residual_path="direct",
            gamma_learnable=learnable,
        ),
        C,
    )
    params = {n for n, _ in mix.named_parameters()} | {f"p4.{n}" for n, _ in p4.named_parameters()}
    buffers = {n for n, _ in mix.named_buffers()} | {f"p4.{n}" for n, _ in p4.named_buffers()}
    scalars = {"post.lam", "p4.skip_op.gamma", "p4.branch_op.gamma"}
    if learnable:
        assert scalars <= params and not scalars & buffers
    else:
        assert scalars <= buffers and not scalars & params
    assert mix.post.lam.item() == pytest.approx(0.25)
    assert p4.skip_op.gamma.item() == pytest.approx(0.1)
    assert p4.branch_op.gamma.item() == pytest.approx(0.2)
    # Direct residual path: only the skip gate has a γ.
    names = {n for n, _ in p4d.named_parameters()} | {n for n, _ in p4d.named_buffers()}
    assert "skip_op.gamma" in names
    assert not any("branch_op.gamma" in n for n in names)
    # Fixed scalars are saved with the model.
    assert "post.lam" in mix.state_dict()


def test_learnable_gates_train_from_zero() -> None:
    """γ_s starts at 0 but still receives a non-zero gradient, so the skip gate can open."""
    block = make_layer(BlockSpec("pattern4", C, attention="se", skip_attention="se"), C)
    assert block.skip_op.gamma.item() == 0.0 and block.branch_op.gamma.item() == pytest.approx(0.1)
    y = block(_x())
    (y * torch.randn_like(y)).sum().backward()
    assert block.skip_op.gamma.grad is not None and block.skip_op.gamma.grad.abs() > 0
    assert block.branch_op.gamma.grad is not None and block.branch_op.gamma.grad.abs() > 0
    mix = make_layer(BlockSpec("pattern2_mix", C, attention="cbam"), C)
    y = mix(_x())
    (y * torch.randn_like(y)).sum().backward()
    assert mix.post.lam.grad is not None and mix.post.lam.grad.abs() > 0


# --------------------------------------------------------------------------------------------
# Identities between kinds, on the same weights
# --------------------------------------------------------------------------------------------


def _copy(src: nn.Module, dst: nn.Module, missing: set[str], unexpected: tuple[str, ...]) -> None:
    """Copy ``src``'s state into ``dst``; only keys starting with ``unexpected`` may be left over."""
    result = dst.load_state_dict(src.state_dict(), strict=False)
    assert set(result.missing_keys) == missing
    for key in result.unexpected_keys:
        assert key.startswith(unexpected), key


def _randomise_norms(module: nn.Module) -> None:
    """Non-default BN statistics and affine parameters, so that copying them matters."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1, 0.3)
                m.bias.normal_(0, 0.3)


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("att", ATT_NAMES)
def test_pattern2_mix_interpolates_residual_and_pattern2(att: str, shape: str) -> None:
    out, stride = SHAPES[shape]
    x = _x()
    residual = make_layer(BlockSpec("residual", out, stride), C)
    pattern2 = make_layer(BlockSpec("pattern2", out, stride, attention=att), C)
    for lam, target in ((0.0, residual), (1.0, pattern2)):
        mix = make_layer(BlockSpec("pattern2_mix", out, stride, attention=att, lam=lam), C)
        _randomise_norms(mix)
        mix.eval()
        target.eval()
        with torch.no_grad():
            before = target(x)
        _copy(mix, target, set(), ("post.",) if target is residual else ("post.lam",))
        with torch.no_grad():
            y_mix, y_target = mix(x), target(x)
        assert torch.allclose(y_mix, y_target, atol=1e-6), lam
        assert not torch.allclose(before, y_target, atol=1e-4), "the weight copy should have mattered"
    # An intermediate λ gives neither.
    mix = make_layer(BlockSpec("pattern2_mix", out, stride, attention=att, lam=0.5), C).eval()
    _copy(mix, pattern2, set(), ("post.lam",))
    _copy(mix, residual, set(), ("post.",))
    with torch.no_grad():
        y = mix(x)
        assert not torch.allclose(y, pattern2(x), atol=1e-5)
        assert not torch.allclose(y, residual(x), atol=1e-5)


@pytest.mark.parametrize("learnable", [True, False])
@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("att", ATT_NAMES)
def test_pattern4_with_zero_gammas_equals_residual(att: str, shape: str, learnable: bool) -> None:
    out, stride = SHAPES[shape]
    p4 = make_layer(
        BlockSpec(
            "pattern4",
            out,
            stride,
            attention=att,
            skip_attention=att,
            gamma_s=0.0,
            gamma_r=0.0,
            gamma_learnable=learnable,
        ),
        C,
    )
    _randomise_norms(p4)
    residual = make_layer(BlockSpec("residual", out, stride), C)
    _copy(p4, residual, set(), ("skip_op.", "branch_op."))
    for mode in ("eval", "train"):
        p4.train(mode == "train")
        residual.train(mode == "train")
        x = _x()
        assert torch.allclose(p4(x), residual(x), atol=1e-6)
    # With γ_r ≠ 0 it differs.
    with torch.no_grad():
        p4.branch_op.gamma.fill_(0.5)
    p4.eval()
    residual.eval()
    x = _x()
    assert not torch.allclose(p4(x), residual(x), atol=1e-5)


def test_copy_helper_rejects_unexpected_keys() -> None:
    """The helper used above really checks the keys (otherwise the identities prove nothing)."""
    p4 = make_layer(BlockSpec("pattern4", C, attention="se", skip_attention="se"), C)
    residual = make_layer(BlockSpec("residual", C), C)
    with pytest.raises(AssertionError):
        _copy(p4, residual, set(), ("post.",))


@pytest.mark.parametrize("att", ATT_NAMES)
def test_pattern4_direct_with_zero_gamma_s_equals_pattern1(att: str) -> None:
    p4 = make_layer(
        BlockSpec("pattern4", 2 * C, 2, attention=att, skip_attention="se", residual_path="direct"), C
    )
    p1 = make_layer(BlockSpec("pattern1", 2 * C, 2, attention=att), C)
    _randomise_norms(p4)
    _copy(p4, p1, set(), ("skip_op.",))
    p4.eval()
    p1.eval()
    x = _x()
    with torch.no_grad():
        assert torch.allclose(p4(x), p1(x), atol=1e-6)


def test_make_skip_and_residual_branch_shapes() -> None:
    assert isinstance(make_skip(8, 8, 1), nn.Identity)
    assert isinstance(make_skip(8, 16, 1), nn.Sequential)
    assert isinstance(make_skip(8, 8, 2), nn.Sequential)
    x = _x()
    assert make_skip(8, 16, 2)(x).shape == (2, 16, 4, 4)
    assert ResidualBranch(8, 16, 2)(x).shape == (2, 16, 4, 4)
    assert PlainLayer(8, 16, 2)(x).shape == (2, 16, 4, 4)
