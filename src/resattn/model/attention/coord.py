"""Coordinate attention, as a mask producer.

Hou, Zhou, Feng. "Coordinate Attention for Efficient Mobile Network Design", CVPR 2021
(arXiv:2103.02907).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn


class CoordAttention(nn.Module):
    """Direction-aware mask of shape (B, C, H, W): ``a_h(x) ⊙ a_w(x)``.

    Average-pool along W and along H, encode both with one shared 1×1 conv → BN → h-swish
    (hidden width ``max(8, channels // reduction)``, as in the paper's code), then one 1×1
    conv + sigmoid per direction.
    """

    #: Allowed option values, checked when a spec is validated.
    option_values: ClassVar[dict[str, Any]] = {"reduction": range(1, 1025)}

    def __init__(self, channels: int, reduction: int = 32):
        super().__init__()
        hidden = max(8, channels // reduction)
        self.conv1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.bn = nn.BatchNorm2d(hidden)
        self.act = nn.Hardswish()
        self.conv_h = nn.Conv2d(hidden, channels, 1, bias=True)
        self.conv_w = nn.Conv2d(hidden, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pooled_h = x.mean(dim=3, keepdim=True)  # (B, C, H, 1)
        pooled_w = x.mean(dim=2, keepdim=True).transpose(2, 3)  # (B, C, W, 1)
        y = self.act(self.bn(self.conv1(torch.cat([pooled_h, pooled_w], dim=2))))
        y_h, y_w = torch.split(y, [h, w], dim=2)
        a_h = torch.sigmoid(self.conv_h(y_h))  # (B, C, H, 1)
        a_w = torch.sigmoid(self.conv_w(y_w.transpose(2, 3)))  # (B, C, 1, W)
        return a_h * a_w
