"""The layers a network is made of (DESIGN.md §1): plain torch modules, importing only torch and math,
because the exporter copies their source into the standalone model file.

``plain`` is :class:`PlainLayer`. The five residual kinds are one :class:`FusionBlock`::

    y = ReLU(post(skip_op(skip(x)) + branch_op(F(x))))

where each of ``skip_op``, ``branch_op`` and ``post`` is ``nn.Identity`` or one of the three ways
to use an attention mask ``m``: :class:`ApplyMask` (``m(t) ⊙ t``), :class:`NearIdentityGate`
(``t ⊙ (1 + γ·m(t))``) or :class:`MaskMix` (``(1−λ)·t + λ·m(t) ⊙ t``). The forward pass has no
branches; which parts are identities is decided once, by the kind table
(:data:`resattn.model.kinds.KIND_TABLE`) read in :func:`resattn.model.net.plan`.

=================  ================  ==================  ====================
kind               skip_op           branch_op           post
=================  ================  ==================  ====================
``residual``       Identity          Identity            Identity
``pattern1``       Identity          ApplyMask           Identity
``pattern2``       Identity          Identity            ApplyMask
``pattern2_mix``   Identity          Identity            MaskMix
``pattern4``       NearIdentityGate  Gate or ApplyMask   Identity
=================  ================  ==================  ====================

``F(x)`` is :class:`ResidualBranch` (two 3×3 convs, the ``basic`` branch) or :class:`BottleneckBranch`
(1×1 → 3×3(stride) → 1×1, torchvision's ResNet-50 block); the stem is :class:`PlainLayer` (3×3 conv,
the ``cifar`` stem) or :class:`ImageNetStem` (7×7 stride-2 conv, norm, ReLU, 3×3 stride-2 max-pool).
Whatever the kind, the parameters are named ``skip.*``, ``branch.conv1``/``branch.norm1``/… and
``stem.conv``/``stem.norm``, so one ``state_dict`` loads into every placement of a backbone.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "BOTTLENECK_EXPANSION",
    "ApplyMask",
    "BottleneckBranch",
    "FusionBlock",
    "ImageNetStem",
    "MaskMix",
    "NearIdentityGate",
    "PlainLayer",
    "ResidualBranch",
    "make_norm",
    "make_skip",
]


def make_norm(kind: str, channels: int) -> nn.Module:
    """``bn``: BatchNorm2d. ``gn``: GroupNorm with ``gcd(channels, 32)`` groups."""
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "gn":
        return nn.GroupNorm(math.gcd(channels, 32), channels)
    raise ValueError(f"unknown norm {kind!r}; allowed: bn, gn")


def _scalar(value: float, learnable: bool) -> torch.Tensor:
    t = torch.tensor(float(value))
    return nn.Parameter(t) if learnable else t


class PlainLayer(nn.Module):
    """``ReLU(norm(conv3×3(x)))``, the notebooks' non-pattern layers (and the stem)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, norm: str = "bn"):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm = make_norm(norm, out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class ResidualBranch(nn.Module):
    """``F(x)``: conv3×3(stride) → norm → ReLU → conv3×3 → norm."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, norm: str = "bn"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = make_norm(norm, out_channels)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = make_norm(norm, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm2(self.conv2(self.act(self.norm1(self.conv1(x)))))


#: Output width / inner width of a :class:`BottleneckBranch` (torchvision's ``Bottleneck.expansion``).
BOTTLENECK_EXPANSION = 4


class BottleneckBranch(nn.Module):
    """``F(x)`` of a bottleneck block: conv1×1 → norm → ReLU → conv3×3(stride) → norm → ReLU → conv1×1 → norm.

    ``out_channels`` is the block's output width; the inner width is ``out_channels // 4``
    (:data:`BOTTLENECK_EXPANSION`). The stride sits on the 3×3 conv, as in torchvision's ResNet v1.5
    (He et al. 2016, "Deep Residual Learning for Image Recognition", with the stride moved as in
    torchvision's ``Bottleneck``).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, norm: str = "bn"):
        super().__init__()
        width = out_channels // BOTTLENECK_EXPANSION
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.norm1 = make_norm(norm, width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.norm2 = make_norm(norm, width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.norm3 = make_norm(norm, out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.conv1(x)))
        x = self.act(self.norm2(self.conv2(x)))
        return self.norm3(self.conv3(x))


class ImageNetStem(nn.Module):
    """The ImageNet stem of torchvision's ResNets: conv7×7 stride 2 → norm → ReLU → max-pool 3×3 stride 2
    (a quarter of the input's height and width)."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "bn"):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 7, stride=2, padding=3, bias=False)
        self.norm = make_norm(norm, out_channels)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.act(self.norm(self.conv(x))))


def make_skip(in_channels: int, out_channels: int, stride: int, norm: str = "bn") -> nn.Module:
    """``x`` when shapes match, else 1×1 conv(stride) + norm."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
        make_norm(norm, out_channels),
    )


class ApplyMask(nn.Module):
    """``A(t) = m(t) ⊙ t``."""

    def __init__(self, mask: nn.Module):
        super().__init__()
        self.mask = mask

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mask(t) * t


class NearIdentityGate(nn.Module):
    """``G_γ(t) = t ⊙ (1 + γ·m(t))``; γ = 0 is exactly the identity. γ is a parameter or a buffer."""

    gamma: torch.Tensor

    def __init__(self, mask: nn.Module, gamma: float = 0.0, learnable: bool = True):
        super().__init__()
        self.mask = mask
        g = _scalar(gamma, learnable)
        if learnable:
            self.gamma = g
        else:
            self.register_buffer("gamma", g)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return t * (1.0 + self.gamma * self.mask(t))


class MaskMix(nn.Module):
    """``(1 − λ)·t + λ·(m(t) ⊙ t)``; λ = 0 is the identity, λ = 1 is :class:`ApplyMask`."""

    lam: torch.Tensor

    def __init__(self, mask: nn.Module, lam: float = 0.1, learnable: bool = True):
        super().__init__()
        self.mask = mask
        t = _scalar(lam, learnable)
        if learnable:
            self.lam = t
        else:
            self.register_buffer("lam", t)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return (1.0 - self.lam) * t + self.lam * (self.mask(t) * t)


class FusionBlock(nn.Module):
    """``ReLU(post(skip_op(skip(x)) + branch_op(F(x))))``: every residual kind is this one block.

    ``skip`` is ``x`` or a 1×1 projection, ``branch`` is ``F(x)``; each of ``skip_op``, ``branch_op`` and
    ``post`` is an attention operator (:class:`ApplyMask`, :class:`NearIdentityGate`, :class:`MaskMix`)
    or, when not given, ``nn.Identity`` — so the forward pass has no branches. ``residual``: no
    operator; ``pattern1``: ``branch_op`` applies a mask; ``pattern2``: ``post`` applies one;
    ``pattern2_mix``: ``post`` mixes one in with λ; ``pattern4``: near-identity gates on both paths
    (or a gated skip and an applied mask on the branch).
    """

    def __init__(
        self,
        skip: nn.Module,
        branch: nn.Module,
        skip_op: nn.Module | None = None,
        branch_op: nn.Module | None = None,
        post: nn.Module | None = None,
    ):
        super().__init__()
        self.skip = skip
        self.branch = branch
        self.skip_op = skip_op or nn.Identity()
        self.branch_op = branch_op or nn.Identity()
        self.post = post or nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.post(self.skip_op(self.skip(x)) + self.branch_op(self.branch(x))))
