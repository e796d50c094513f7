"""One optimiser step and a device sync: what the training loop, the precision probe and the bench's
reference loop all run, so that the probe times exactly the step a trial will take."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

__all__ = ["synchronize", "train_step"]


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    autocast: contextlib.AbstractContextManager[Any] | None = None,
) -> torch.Tensor:
    """One SGD step on a batch; returns the detached loss (no host sync)."""
    with autocast if autocast is not None else contextlib.nullcontext():
        loss = loss_fn(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); a no-op on the CPU, which runs synchronously."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
