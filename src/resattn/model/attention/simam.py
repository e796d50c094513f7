"""SimAM: a parameter-free, energy-based 3-D attention mask.

Yang, Zhang, Li, Xie. "SimAM: A Simple, Parameter-Free Attention Module for Convolutional Neural
Networks", ICML 2021.
"""

from __future__ import annotations

import torch
from torch import nn


class SimAM(nn.Module):
    """Mask of shape (B, C, H, W): ``sigmoid(1/E)`` with each neuron's minimal energy ``E``.

    ``1/E = (x - μ)² / (4 (σ² + λ)) + 1/2`` per channel, λ = 1e-4 as in the paper. No parameters;
    ``channels`` is accepted for the common constructor contract.
    """

    e_lambda = 1e-4

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = max(x.shape[-2] * x.shape[-1] - 1, 1)
        d = (x - x.mean(dim=(2, 3), keepdim=True)).pow(2)
        v = d.sum(dim=(2, 3), keepdim=True) / n
        return torch.sigmoid(d / (4 * (v + self.e_lambda)) + 0.5)
