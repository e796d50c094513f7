"""``build(spec) -> nn.Module``: a pure function from a :class:`~resattn.spec.NetSpec` to a model."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from resattn.blocks import PlainLayer, make_layer
from resattn.spec import NetSpec

__all__ = ["Net", "build"]


class Net(nn.Module):
    """stem → ``layers`` (named as in the spec) → global average pool → linear head."""

    def __init__(self, spec: NetSpec):
        super().__init__()
        self.spec = spec
        self.stem = PlainLayer(spec.in_channels, spec.stem_channels, 1, spec.stem_norm)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        width = spec.stem_channels
        for layer in spec.layers:
            assert layer.name is not None
            layers[layer.name] = make_layer(layer, width)
            width = layer.out_channels
        self.layers = nn.Sequential(layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


def build(spec: NetSpec) -> Net:
    """Build a freshly initialised model for ``spec`` (PyTorch's default initialisation)."""
    if not isinstance(spec, NetSpec):
        raise TypeError(f"build() takes a NetSpec, got {type(spec).__name__}")
    return Net(spec)
