"""Parameter and FLOP counts of a model or spec, via ``torch.utils.flop_counter``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from resattn.model.net import build
from resattn.model.spec import NetSpec

__all__ = ["ModelStats", "model_stats"]


@dataclass(frozen=True)
class ModelStats:
    """``params``: trainable parameters. ``flops``: forward FLOPs for one input of ``input_size``
    (as counted by ``FlopCounterMode``: a multiply-add is 2 FLOPs; convs and matmuls only)."""

    params: int
    flops: int
    input_size: tuple[int, ...]


def model_stats(model_or_spec: nn.Module | NetSpec, input_size: tuple[int, ...] = (3, 32, 32)) -> ModelStats:
    """Count parameters and forward FLOPs of one ``input_size`` (C, H, W) input."""
    if isinstance(model_or_spec, NetSpec):
        model: nn.Module = build(model_or_spec)
    elif isinstance(model_or_spec, nn.Module):
        model = model_or_spec
    else:
        raise TypeError(f"model_stats() takes an nn.Module or a NetSpec, got {type(model_or_spec).__name__}")
    if len(input_size) != 3 or any(not isinstance(s, int) or s <= 0 for s in input_size):
        raise ValueError(f"input_size must be (channels, height, width) of positive ints, got {input_size!r}")
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    try:
        ref = next(model.parameters())
        device, dtype = ref.device, ref.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(torch.zeros(1, *input_size, device=device, dtype=dtype))
    finally:
        model.train(was_training)
    return ModelStats(params=params, flops=int(counter.get_total_flops()), input_size=tuple(input_size))
