"""Tests for resattn.model.attention: the mask-producer contract, each attention's math, the registry."""

from __future__ import annotations

import math
import re
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import resattn
from resattn.model.attention import (
    ATTENTIONS,
    CBAM,
    ECA,
    CoordAttention,
    SimAM,
    SqueezeExcite,
    attention_options,
    eca_kernel_size,
    make_attention,
)

B, C, H, W = 2, 16, 8, 6  # H != W so that a height/width mix-up changes shapes


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _x(channels: int = C, h: int = H, w: int = W) -> torch.Tensor:
    return torch.randn(B, channels, h, w)


# --------------------------------------------------------------------------------------------
# The registry and the constructor contract
# --------------------------------------------------------------------------------------------


def test_registry_holds_the_designed_attentions() -> None:
    assert {"se", "eca", "cbam", "coord", "simam"} <= set(ATTENTIONS)
    assert resattn.ATTENTIONS is ATTENTIONS
    assert ATTENTIONS["se"] is SqueezeExcite
    assert ATTENTIONS["eca"] is ECA
    assert ATTENTIONS["cbam"] is CBAM
    assert ATTENTIONS["coord"] is CoordAttention
    assert ATTENTIONS["simam"] is SimAM


@pytest.mark.parametrize("name", sorted(ATTENTIONS))
def test_each_attention_module_cites_its_paper(name: str) -> None:
    doc = sys.modules[ATTENTIONS[name].__module__].__doc__ or ""
    assert re.search(r"(19|20)\d\d", doc), f"{name}: module docstring should cite its paper"


@pytest.mark.parametrize("name", sorted(ATTENTIONS))
@pytest.mark.parametrize("channels", [8, 16, 64])
def test_contract_mask_in_open_unit_interval_and_broadcasts(name: str, channels: int) -> None:
    options = attention_options(name)
    module = ATTENTIONS[name](channels, **options)
    assert isinstance(module, nn.Module)
    x = _x(channels)
    m = module(x)
    assert m.dim() == 4
    assert torch.broadcast_shapes(m.shape, x.shape) == x.shape
    assert m.shape[0] == B
    assert m.dtype == x.dtype
    assert torch.isfinite(m).all()
    assert (m > 0).all() and (m < 1).all()
    assert (m * x).shape == x.shape


@pytest.mark.parametrize("name", sorted(ATTENTIONS))
def test_mask_depends_on_input(name: str) -> None:
    module = make_attention(name, C).eval()
    m1, m2 = module(_x()), module(_x() * 3 + 1)
    assert not torch.allclose(m1, m2)


@pytest.mark.parametrize("name", sorted(ATTENTIONS))
def test_mask_is_per_sample(name: str) -> None:
    """Sample b's mask depends on sample b only (eval mode: no batch statistics)."""
    module = make_attention(name, C).eval()
    x = _x()
    full = module(x)
    alone = module(x[1:])
    assert torch.allclose(full[1:], alone, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("se", lambda c: (B, c, 1, 1)),
        ("eca", lambda c: (B, c, 1, 1)),
        ("cbam", lambda c: (B, c, H, W)),
        ("coord", lambda c: (B, c, H, W)),
        ("simam", lambda c: (B, c, H, W)),
    ],
)
def test_mask_shapes(name: str, expected) -> None:
    for channels in (8, 32):
        assert tuple(make_attention(name, channels)(_x(channels)).shape) == expected(channels)


def test_attention_options_reports_each_attentions_options() -> None:
    assert attention_options("se") == {"reduction": 16}
    assert attention_options("eca") == {}
    assert attention_options("cbam") == {"reduction": 16, "spatial_kernel": 7}
    assert attention_options("coord") == {"reduction": 32}
    assert attention_options("simam") == {}
    with pytest.raises(ValueError, match="nope"):
        attention_options("nope")


@pytest.mark.parametrize("name", sorted(ATTENTIONS))
def test_reported_options_are_accepted_by_the_constructor(name: str) -> None:
    opts = attention_options(name)
    changed = {k: (4 if k == "reduction" else 3) for k in opts}
    module = make_attention(name, 32, **changed)
    assert module(_x(32)).shape[1] == 32


def test_make_attention_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError) as info:
        make_attention("nope", 8)
    msg = str(info.value)
    assert "nope" in msg
    for name in ATTENTIONS:
        assert name in msg


def test_make_attention_forwards_options() -> None:
    se = make_attention("se", 64, reduction=4)
    assert isinstance(se, SqueezeExcite)
    assert se.fc1.out_channels == 16
    cbam = make_attention("cbam", 64, reduction=8, spatial_kernel=3)
    assert cbam.channel.fc1.out_channels == 8
    assert cbam.spatial.conv.kernel_size == (3, 3)
    with pytest.raises(TypeError):
        make_attention("eca", 64, reduction=4)  # ECA takes no options


# --------------------------------------------------------------------------------------------
# SE
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channels", "reduction", "hidden"),
    [
        (8, 16, 4),
        (16, 16, 4),
        (64, 16, 4),
        (128, 16, 8),
        (256, 16, 16),
        (64, 4, 16),
        (64, 2, 32),
        (12, 1, 12),
    ],
)
def test_se_hidden_width(channels: int, reduction: int, hidden: int) -> None:
    assert hidden == max(channels // reduction, 4)
    se = SqueezeExcite(channels, reduction)
    assert se.fc1.weight.shape == (hidden, channels, 1, 1)
    assert se.fc1.bias is not None and se.fc1.bias.shape == (hidden,)
    assert se.fc2.weight.shape == (channels, hidden, 1, 1)
    assert se.fc2.bias is not None and se.fc2.bias.shape == (channels,)
    assert sum(p.numel() for p in se.parameters()) == 2 * channels * hidden + hidden + channels


class _NotebookSEMask(nn.Module):
    """Seed 002's SEMask, verbatim."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.net = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=True),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.pool(x))


def test_se_equals_notebook_semask() -> None:
    ours = SqueezeExcite(32, 4)
    ref = _NotebookSEMask(32, 4)
    ref.net[0].load_state_dict(ours.fc1.state_dict())
    ref.net[2].load_state_dict(ours.fc2.state_dict())
    x = _x(32)
    assert torch.allclose(ours(x), ref(x), atol=1e-6)


# --------------------------------------------------------------------------------------------
# ECA
# --------------------------------------------------------------------------------------------


def _eca_formula(c: int) -> int:
    t = int(abs((math.log2(c) + 1) / 2))
    return t if t % 2 else t + 1


# Hand-computed: (log2(C) + 1) / 2 truncated, bumped to odd.
ECA_KERNELS = {1: 1, 2: 1, 4: 1, 8: 3, 16: 3, 32: 3, 64: 3, 128: 5, 256: 5, 512: 5, 1024: 5, 2048: 7, 8192: 7}


@pytest.mark.parametrize(("channels", "k"), sorted(ECA_KERNELS.items()))
def test_eca_kernel_size_hand_computed(channels: int, k: int) -> None:
    assert eca_kernel_size(channels) == k
    assert _eca_formula(channels) == k


@pytest.mark.parametrize("channels", [3, 5, 24, 48, 96, 100, 192, 384, 768, 1000])
def test_eca_kernel_size_follows_formula(channels: int) -> None:
    k = eca_kernel_size(channels)
    assert k == _eca_formula(channels)
    assert k % 2 == 1
    eca = ECA(channels)
    assert eca.kernel_size == k
    assert eca.conv.kernel_size == (k,)
    assert eca.conv.padding == ((k - 1) // 2,)
    assert eca.conv.bias is None
    assert sum(p.numel() for p in eca.parameters()) == k


def test_eca_equals_hand_computation() -> None:
    channels = 128  # k = 5
    eca = ECA(channels)
    x = _x(channels)
    k = eca.kernel_size
    w = eca.conv.weight.detach().reshape(k)
    pooled = x.mean(dim=(2, 3))  # (B, C)
    pad = (k - 1) // 2
    padded = F.pad(pooled, (pad, pad))
    expected = torch.zeros_like(pooled)
    for c in range(channels):
        for j in range(k):
            expected[:, c] += w[j] * padded[:, c + j]
    expected = torch.sigmoid(expected).reshape(B, channels, 1, 1)
    assert torch.allclose(eca(x), expected, atol=1e-6)


def test_eca_is_local_across_channels() -> None:
    """Changing channel i only moves the mask of channels within k // 2 of i."""
    channels = 64
    eca = ECA(channels)
    k = eca.kernel_size
    x = _x(channels)
    x2 = x.clone()
    i = 30
    x2[:, i] += 5.0
    diff = (eca(x) - eca(x2)).abs().reshape(B, channels).amax(dim=0)
    changed = set(torch.nonzero(diff > 0).flatten().tolist())
    assert changed <= set(range(i - k // 2, i + k // 2 + 1))
    assert i in changed


# --------------------------------------------------------------------------------------------
# CBAM
# --------------------------------------------------------------------------------------------


class _NbChannelAttention(nn.Module):
    """Seed 000's ChannelAttention, verbatim."""

    def __init__(self, channels, reduction=16):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.max_pool = nn.AdaptiveMaxPool2d(1)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, kernel_size=1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, kernel_size=1, bias=False),
        )
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        avg_out = self.mlp(self.avg_pool(x))
        max_out = self.mlp(self.max_pool(x))
        return self.sigmoid(avg_out + max_out)


class _NbSpatialAttention(nn.Module):
    """Seed 000's SpatialAttention, verbatim."""

    def __init__(self, kernel_size=7):
        super().__init__()
        padding = 3 if kernel_size == 7 else 1
        self.conv = nn.Conv2d(2, 1, kernel_size=kernel_size, padding=padding, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        avg_map = torch.mean(x, dim=1, keepdim=True)
        max_map, _ = torch.max(x, dim=1, keepdim=True)
        cat = torch.cat([avg_map, max_map], dim=1)
        return self.sigmoid(self.conv(cat))


class _NbCBAM(nn.Module):
    """Seed 000's CBAM, verbatim: it returns the refined tensor, not a mask."""

    def __init__(self, channels, reduction=16, spatial_kernel=7):
        super().__init__()
        self.ca = _NbChannelAttention(channels, reduction=reduction)
        self.sa = _NbSpatialAttention(kernel_size=spatial_kernel)

    def forward(self, x):
        x = self.ca(x) * x
        x = self.sa(x) * x
        return x


def _notebook_cbam_from(ours: CBAM, channels: int, reduction: int, kernel: int) -> _NbCBAM:
    ref = _NbCBAM(channels, reduction, kernel)
    ref.ca.mlp[0].weight.data.copy_(ours.channel.fc1.weight.data)
    ref.ca.mlp[2].weight.data.copy_(ours.channel.fc2.weight.data)
    ref.sa.conv.weight.data.copy_(ours.spatial.conv.weight.data)
    return ref


@pytest.mark.parametrize(("channels", "reduction", "kernel"), [(16, 16, 7), (64, 8, 3), (32, 2, 7)])
def test_cbam_applied_equals_notebook_cbam(channels: int, reduction: int, kernel: int) -> None:
    ours = CBAM(channels, reduction, kernel)
    ref = _notebook_cbam_from(ours, channels, reduction, kernel)
    # Sanity: the two modules hold the same number of parameters (notebook's count).
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    x = _x(channels)
    mask = ours(x)
    assert mask.shape == x.shape
    assert (mask > 0).all() and (mask < 1).all()
    assert torch.allclose(mask * x, ref(x), atol=1e-6)


def test_cbam_equals_hand_computation() -> None:
    """mask = m_c(x) · m_s(m_c(x) ⊙ x), written out with functional ops."""
    ours = CBAM(16, 4, 7)
    x = _x(16)
    w1, w2 = ours.channel.fc1.weight, ours.channel.fc2.weight
    ws = ours.spatial.conv.weight

    def mlp(v: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.relu(F.conv2d(v, w1)), w2)

    mc = torch.sigmoid(mlp(x.mean(dim=(2, 3), keepdim=True)) + mlp(x.amax(dim=(2, 3), keepdim=True)))
    refined = mc * x
    pooled = torch.cat([refined.mean(1, keepdim=True), refined.amax(1, keepdim=True)], 1)
    ms = torch.sigmoid(F.conv2d(pooled, ws, padding=3))
    assert torch.allclose(ours(x), mc * ms, atol=1e-6)
    # Spatial refinement on the channel-refined tensor, not on x, must matter:
    ms_wrong = torch.sigmoid(
        F.conv2d(torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1), ws, padding=3)
    )
    assert not torch.allclose(mc * ms, mc * ms_wrong, atol=1e-6)


@pytest.mark.parametrize(
    ("channels", "reduction", "hidden"), [(64, 16, 4), (128, 16, 8), (16, 16, 4), (64, 4, 16)]
)
def test_cbam_shapes_and_hidden_width(channels: int, reduction: int, hidden: int) -> None:
    cbam = CBAM(channels, reduction)
    assert cbam.channel.fc1.weight.shape == (hidden, channels, 1, 1)
    assert cbam.channel.fc2.weight.shape == (channels, hidden, 1, 1)
    assert cbam.channel.fc1.bias is None and cbam.channel.fc2.bias is None
    assert cbam.spatial.conv.weight.shape == (1, 2, 7, 7)
    assert cbam.spatial.conv.bias is None


def test_cbam_rejects_bad_spatial_kernel() -> None:
    with pytest.raises(ValueError, match="3 or 7"):
        CBAM(16, spatial_kernel=5)


# --------------------------------------------------------------------------------------------
# Coordinate attention
# --------------------------------------------------------------------------------------------


def _coord_reference(m: CoordAttention, x: torch.Tensor) -> torch.Tensor:
    """The official CoordAtt forward (Hou et al.), written with functional ops, returning the mask."""
    _, _, h, w = x.shape
    x_h = F.adaptive_avg_pool2d(x, (None, 1))  # (n, c, h, 1)
    x_w = F.adaptive_avg_pool2d(x, (1, None)).permute(0, 1, 3, 2)  # (n, c, w, 1)
    y = F.conv2d(torch.cat([x_h, x_w], dim=2), m.conv1.weight, m.conv1.bias)
    y = F.batch_norm(y, m.bn.running_mean, m.bn.running_var, m.bn.weight, m.bn.bias, False, 0.0, m.bn.eps)
    y = y * F.relu6(y + 3) / 6  # h_swish
    y_h, y_w = torch.split(y, [h, w], dim=2)
    y_w = y_w.permute(0, 1, 3, 2)
    a_h = torch.sigmoid(F.conv2d(y_h, m.conv_h.weight, m.conv_h.bias))
    a_w = torch.sigmoid(F.conv2d(y_w, m.conv_w.weight, m.conv_w.bias))
    return a_w * a_h


@pytest.mark.parametrize(("channels", "reduction", "hidden"), [(16, 32, 8), (64, 4, 16), (512, 32, 16)])
def test_coord_hidden_width(channels: int, reduction: int, hidden: int) -> None:
    m = CoordAttention(channels, reduction)
    assert m.conv1.weight.shape == (hidden, channels, 1, 1)
    assert m.conv_h.weight.shape == (channels, hidden, 1, 1)
    assert m.conv_w.weight.shape == (channels, hidden, 1, 1)


def test_coord_equals_reference() -> None:
    m = CoordAttention(16, reduction=2)
    with torch.no_grad():  # non-trivial BN statistics so that the BN wiring matters
        m.bn.running_mean.normal_()
        m.bn.running_var.uniform_(0.5, 2.0)
        m.bn.weight.normal_()
        m.bn.bias.normal_()
    m.eval()
    x = _x(16, 8, 5)
    mask = m(x)
    assert mask.shape == (B, 16, 8, 5)
    assert torch.allclose(mask, _coord_reference(m, x), atol=1e-6)


def test_coord_mask_is_product_of_row_and_column_factors() -> None:
    """A coordinate mask has rank one per (b, c): m[h, w] = a_h[h] · a_w[w]."""
    m = CoordAttention(8).eval()
    mask = m(_x(8))
    for b in range(B):
        for c in range(8):
            assert torch.linalg.matrix_rank(mask[b, c].double(), rtol=1e-5) == 1


# --------------------------------------------------------------------------------------------
# SimAM
# --------------------------------------------------------------------------------------------


def test_simam_is_parameter_free_and_matches_paper_code() -> None:
    m = SimAM(C)
    assert list(m.parameters()) == []
    x = _x()
    # The SimAM paper's reference code, with the final `x *` removed.
    n = x.shape[2] * x.shape[3] - 1
    d = (x - x.mean(dim=[2, 3], keepdim=True)).pow(2)
    y = d / (4 * (d.sum(dim=[2, 3], keepdim=True) / n + 1e-4)) + 0.5
    assert torch.allclose(m(x), torch.sigmoid(y), atol=1e-6)


def test_simam_on_constant_map_is_sigmoid_half() -> None:
    x = torch.full((1, 3, 4, 4), 2.5)
    assert torch.allclose(SimAM(3)(x), torch.full_like(x, 1 / (1 + math.exp(-0.5))))
