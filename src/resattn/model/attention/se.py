"""Squeeze-and-excitation channel mask.

Hu, Shen, Sun. "Squeeze-and-Excitation Networks", CVPR 2018 (arXiv:1709.01507).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn


class SqueezeExcite(nn.Module):
    """SE mask: global average pool → 1×1 conv → ReLU → 1×1 conv → sigmoid, shape (B, C, 1, 1).

    The hidden width is ``max(channels // reduction, 4)``; both convs have a bias (as in seed 002).
    """

    #: Allowed option values, checked when a spec is validated.
    option_values: ClassVar[dict[str, Any]] = {"reduction": range(1, 1025)}

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc2(self.act(self.fc1(self.pool(x)))))
