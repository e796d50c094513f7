"""How much faster is the fast proxy loop than a plain DataLoader loop? (DESIGN.md §5)

:func:`run_bench` times, on the same architecture, data, optimiser and loss, the training
images/second of

- the **fast** loop of :mod:`resattn.training.loop`: the split as one uint8 tensor on the device, index-slice
  batches, crop/flip/normalise as batched tensor ops, run as :mod:`resattn.training.precision` chooses
  (bf16 autocast and channels_last where a timed probe shows they are faster; compiled when asked or
  when the run is long enough to repay it);
- a **reference** loop: a torch ``Dataset`` over the uint8 images with torchvision transforms
  (``ToPILImage → RandomCrop(padding=4) → RandomHorizontalFlip → ToTensor → Normalize``), a
  ``DataLoader`` with worker processes, fp32.

Both loops run the same :func:`resattn.training.step.train_step` on a freshly built model (same seed).
The library only returns numbers; :func:`format_bench` renders them as plain text.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from resattn.errors import ConfigError
from resattn.model.net import build
from resattn.model.spec import NetSpec
from resattn.training.config import TrainConfig
from resattn.training.data import Dataset
from resattn.training.loop import (
    GpuBatches,
    lr_factor,
    make_loss,
    make_optimizer,
    resolve_device,
    set_lr,
)
from resattn.training.precision import autocast_context, choose_execution, warn_compile_failed
from resattn.training.step import synchronize, train_step

__all__ = ["BenchResult", "PrecisionAccuracy", "format_bench", "run_bench", "run_precision_accuracy"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchResult:
    """Training throughput of the fast loop and of the reference DataLoader loop."""

    fast_images_per_second: float
    reference_images_per_second: float
    speedup: float  # fast / reference
    fast_seconds: float  # timed seconds of the fast loop
    reference_seconds: float  # timed seconds of the reference loop
    device: str
    batch_size: int
    steps: int  # timed steps per loop
    warmup_steps: int  # untimed steps before
    num_workers: int  # DataLoader workers of the reference loop
    fast_precision: str  # how the fast loop ran, e.g. "bf16 autocast, channels_last"
    train_images: int  # size of the training split the batches are drawn from
    #: How the fast loop's execution was decided, and the seconds of the probe and of each loop's
    #: untimed warm-up steps (first passes over new shapes, compilation).
    decided_by: str = ""
    probe_seconds: float = 0.0
    fast_warmup_seconds: float = 0.0
    reference_warmup_seconds: float = 0.0
    #: Input pipeline alone (batches produced and moved to the device, no model), images/s.
    fast_data_images_per_second: float = 0.0
    reference_data_images_per_second: float = 0.0

    def rows(self) -> list[tuple[str, str, str]]:
        """``(loop, images/s, note)`` rows for a table."""
        pin = ", pinned memory" if self.device.startswith("cuda") else ""
        return [
            ("fast (on-device tensors)", f"{self.fast_images_per_second:,.0f}",
             f"{self.fast_precision}, batched augmentation, no workers"),
            ("reference (DataLoader)", f"{self.reference_images_per_second:,.0f}",
             f"fp32, torchvision transforms, {self.num_workers} workers{pin}"),
            ("speedup", f"{self.speedup:.2f}×", "fast / reference, steady state"),
            ("precision probe", f"{self.probe_seconds:.1f} s", self.decided_by or "not run"),
            ("warm-up: fast", f"{self.fast_warmup_seconds:.1f} s",
             f"{self.warmup_steps} untimed steps (first passes over new shapes, compilation)"),
            ("warm-up: reference", f"{self.reference_warmup_seconds:.1f} s", f"{self.warmup_steps} untimed steps"),
            ("input pipeline only: fast", f"{self.fast_data_images_per_second:,.0f}",
             "batches ready on the device, no model"),
            ("input pipeline only: reference", f"{self.reference_data_images_per_second:,.0f}",
             "DataLoader batches moved to the device, no model"),
        ]


def format_bench(result: BenchResult) -> str:
    """The result as a small plain-text table."""
    head = (f"device {result.device}, batch {result.batch_size}, {result.steps} timed steps "
            f"(+{result.warmup_steps} warm-up) per loop, {result.train_images} training images")
    rows = [("loop", "images/s", ""), *result.rows()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [head]
    for i, row in enumerate(rows):
        lines.append(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]}".rstrip())
        if i == 0:
            lines.append(f"{'-' * widths[0]}  {'-' * widths[1]}  {'-' * widths[2]}")
    return "\n".join(lines)


class _ReferenceImages(TorchDataset):
    """Per-image torch ``Dataset`` over uint8 HWC numpy images with a torchvision transform."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray, transform: nn.Module):
        self.images = images_hwc
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[index]), int(self.labels[index])


def _reference_transform(dataset: Dataset) -> nn.Module:
    from torchvision import transforms as T

    h, w = dataset.image_size
    return T.Compose([
        T.ToPILImage(),
        T.RandomCrop((h, w), padding=4),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(dataset.mean, dataset.std),
    ])


_Batch = tuple[torch.Tensor, torch.Tensor]


def _forever(make_epoch: Iterable[_Batch]) -> Iterator[_Batch]:
    """Batches of pass after pass over an iterable that starts a new pass on every ``iter``."""
    while True:
        empty = True
        for batch in make_epoch:
            empty = False
            yield batch
        if empty:
            raise ConfigError("the training split yields no batch")


def _timed_loop(
    batches: Iterator[_Batch],
    model: nn.Module,
    config: TrainConfig,
    device: torch.device,
    *,
    bf16: bool,
    warmup_steps: int,
    steps: int,
    step_model: nn.Module | None = None,
) -> tuple[float, float, int]:
    """Run ``warmup_steps`` untimed, then ``steps`` timed training steps (of ``step_model``, e.g. the
    compiled ``model``, when given).

    Returns (warm-up seconds, seconds, images) of the timed part."""
    optimizer = make_optimizer(model, config)
    loss_fn = make_loss(config)
    total = warmup_steps + steps
    model.train()
    runner = step_model if step_model is not None else model
    images = 0
    began = time.perf_counter()
    started = began
    last = None
    for i, (x, y) in enumerate(itertools.islice(batches, total)):
        if i == warmup_steps:
            if last is not None:
                last.item()
            synchronize(device)
            started = time.perf_counter()
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        set_lr(optimizer, config.lr * lr_factor(i, total, config.schedule, config.warmup_fraction))
        last = train_step(runner, optimizer, loss_fn, x, y, autocast=autocast_context(device, bf16))
        if i >= warmup_steps:
            images += int(y.shape[0])
    if last is not None:
        last.item()
    synchronize(device)
    return started - began, time.perf_counter() - started, images


def _timed_batches(batches: Iterator[_Batch], device: torch.device, *, warmup_steps: int, steps: int) -> float:
    """Images/s of an input pipeline alone: ``steps`` batches produced and on ``device``."""
    images = 0
    started = time.perf_counter()
    for i, (x, y) in enumerate(itertools.islice(batches, warmup_steps + steps)):
        if i == warmup_steps:
            synchronize(device)
            started = time.perf_counter()
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        if i >= warmup_steps:
            images += int(y.shape[0])
    synchronize(device)
    seconds = time.perf_counter() - started
    return images / seconds if seconds > 0 else 0.0


def _fresh_model(spec: NetSpec, seed: int, device: torch.device, channels_last: bool) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build(spec)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def run_bench(
    spec: NetSpec,
    dataset: Dataset,
    *,
    device: torch.device | str,
    batch_size: int = 256,
    steps: int = 30,
    warmup_steps: int = 5,
    num_workers: int = 2,
    config: TrainConfig | None = None,
) -> BenchResult:
    """Time ``steps`` training steps (after ``warmup_steps`` untimed ones) of the fast loop and of
    the reference DataLoader loop on ``dataset.train``, and return both throughputs.

    ``config`` supplies the optimiser, loss, schedule, augmentation and precision settings
    (default: :class:`TrainConfig` defaults); its batch size is replaced by ``batch_size``. The
    spec's ``in_channels``/``num_classes`` are adapted to the dataset when they differ.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"must be a positive integer, got {steps!r}", key="steps")
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ConfigError(f"must be a non-negative integer, got {warmup_steps!r}", key="warmup_steps")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ConfigError(f"must be a non-negative integer, got {num_workers!r}", key="num_workers")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
        raise ConfigError(f"must be an integer ≥ 2, got {batch_size!r}", key="batch_size")
    if batch_size > len(dataset.train):
        raise ConfigError(
            f"batch size {batch_size} exceeds the {len(dataset.train)} training images of {dataset.name}",
            key="batch_size",
        )
    device = resolve_device(device) if isinstance(device, str) else torch.device(device)
    config = dataclasses.replace(config or TrainConfig(), batch_size=batch_size)
    if spec.in_channels != dataset.in_channels or spec.num_classes != dataset.num_classes:
        spec = dataclasses.replace(spec, in_channels=dataset.in_channels, num_classes=dataset.num_classes)
    cuda = device.type == "cuda"
    probe_model = _fresh_model(spec, config.seed, device, channels_last=False)
    execution = choose_execution(
        probe_model, config, device, (batch_size, dataset.in_channels, *dataset.image_size), dataset.num_classes,
        steps=warmup_steps + steps,
    )
    del probe_model
    bf16, channels_last = execution.bf16, execution.channels_last

    # (a) the fast loop: full batches only, as in a timed steady state.
    fast_batches = GpuBatches(
        dataset.train, batch_size=batch_size, device=device, mean=dataset.mean, std=dataset.std,
        shuffle=True, crop_padding=config.crop_padding, flip=config.flip, seed=config.seed,
        channels_last=channels_last,
    )
    full = (b for b in _forever(fast_batches) if b[1].shape[0] == batch_size)
    fast_data_ips = _timed_batches(full, device, warmup_steps=warmup_steps, steps=steps)
    model = _fresh_model(spec, config.seed, device, channels_last)
    step_model = None
    if execution.compile:
        try:
            step_model = torch.compile(model, dynamic=False)
        except Exception as err:
            warn_compile_failed(err)
            execution = dataclasses.replace(execution, compile=False)
    fast_warm, fast_s, fast_images = _timed_loop(full, model, config, device, bf16=bf16,
                                                 warmup_steps=warmup_steps, steps=steps, step_model=step_model)
    del model, fast_batches, full
    if cuda:
        torch.cuda.empty_cache()
    log.info("bench fast loop: %d images in %.3f s", fast_images, fast_s)

    # (b) the reference loop: per-image transforms in DataLoader workers, fp32.
    x_hwc = dataset.train.x.cpu().permute(0, 2, 3, 1).contiguous().numpy()
    y_np = dataset.train.y.cpu().numpy()
    ref_data = _ReferenceImages(x_hwc, y_np, _reference_transform(dataset))
    loader = DataLoader(
        ref_data, batch_size=batch_size, shuffle=True, num_workers=num_workers, pin_memory=cuda,
        drop_last=True, persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(config.seed),
    )
    model = _fresh_model(spec, config.seed, device, channels_last=False)
    try:
        ref_data_ips = _timed_batches(_forever(loader), device, warmup_steps=warmup_steps, steps=steps)
        ref_warm, ref_s, ref_images = _timed_loop(_forever(loader), model, config, device, bf16=False,
                                                  warmup_steps=warmup_steps, steps=steps)
    finally:
        del loader  # stops persistent workers
    log.info("bench reference loop: %d images in %.3f s", ref_images, ref_s)

    fast_ips = fast_images / fast_s if fast_s > 0 else 0.0
    ref_ips = ref_images / ref_s if ref_s > 0 else 0.0
    return BenchResult(
        fast_images_per_second=fast_ips,
        reference_images_per_second=ref_ips,
        speedup=fast_ips / ref_ips if ref_ips > 0 else float("inf"),
        fast_seconds=fast_s,
        reference_seconds=ref_s,
        device=str(device),
        batch_size=batch_size,
        steps=steps,
        warmup_steps=warmup_steps,
        num_workers=num_workers,
        fast_precision=execution.label(),
        decided_by=execution.why,
        probe_seconds=execution.probe_seconds,
        fast_warmup_seconds=fast_warm,
        reference_warmup_seconds=ref_warm,
        train_images=len(dataset.train),
        fast_data_images_per_second=fast_data_ips,
        reference_data_images_per_second=ref_data_ips,
    )


# ------------------------------------------------------------------------- precision vs accuracy


@dataclass(frozen=True)
class PrecisionAccuracy:
    """Validation accuracy of the same training run in fp32 and in bf16, per seed."""

    seeds: tuple[int, ...]
    fp32: tuple[float, ...]
    bf16: tuple[float, ...]
    seconds: dict[str, float]  # training seconds per precision, over all seeds


def run_precision_accuracy(
    spec: NetSpec, train_data: Any, val_data: Any, config: TrainConfig, *, device: torch.device | str,
    mean: Any, std: Any, seeds: int = 5,
) -> PrecisionAccuracy:
    """Train ``spec`` with ``config`` once per seed and precision (fp32, bf16; the memory format as
    ``config`` says, compile off) and measure the validation accuracy: does bf16 cost accuracy?"""
    from resattn.training.loop import train

    device = resolve_device(device) if isinstance(device, str) else torch.device(device)
    results: dict[str, list[float]] = {"fp32": [], "bf16": []}
    seconds = {"fp32": 0.0, "bf16": 0.0}
    for seed in range(seeds):
        for precision in ("fp32", "bf16"):
            run = dataclasses.replace(config, precision=precision, compile="off", seed=config.seed + seed)
            model = _fresh_model(spec, run.seed, device, channels_last=False)
            result = train(model, train_data, val_data, run, device=device, mean=mean, std=std)
            results[precision].append(float(result.val_accuracy or 0.0))
            seconds[precision] += result.seconds
    return PrecisionAccuracy(tuple(range(seeds)), tuple(results["fp32"]), tuple(results["bf16"]), seconds)
