"""Convolutional block attention module, as a mask producer.

Woo, Park, Lee, Kweon. "CBAM: Convolutional Block Attention Module", ECCV 2018 (arXiv:1807.06521).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn


class ChannelMask(nn.Module):
    """CBAM's channel mask: a shared bias-free MLP on avg- and max-pooled features, summed, sigmoid."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.fc2(self.act(self.fc1(x.mean(dim=(2, 3), keepdim=True))))
        mx = self.fc2(self.act(self.fc1(x.amax(dim=(2, 3), keepdim=True))))
        return torch.sigmoid(avg + mx)  # (B, C, 1, 1)


class SpatialMask(nn.Module):
    """CBAM's spatial mask: a k×k conv (k = 7 or 3, no bias) on [channel-mean, channel-max], sigmoid."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        if kernel_size not in (3, 7):
            raise ValueError(f"CBAM spatial kernel must be 3 or 7, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))  # (B, 1, H, W)


class CBAM(nn.Module):
    """CBAM mask of shape (B, C, H, W): ``m_c(x) · m_s(m_c(x) ⊙ x)``.

    Applying it, ``mask ⊙ x``, equals the notebook's ``sa(ca(x) ⊙ x) ⊙ (ca(x) ⊙ x)``.
    """

    #: Allowed option values, checked when a spec is validated.
    option_values: ClassVar[dict[str, Any]] = {"reduction": range(1, 1025), "spatial_kernel": (3, 7)}

    def __init__(self, channels: int, reduction: int = 16, spatial_kernel: int = 7):
        super().__init__()
        self.channel = ChannelMask(channels, reduction)
        self.spatial = SpatialMask(spatial_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mc = self.channel(x)
        return mc * self.spatial(mc * x)
