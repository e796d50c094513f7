"""Fast proxy training (DESIGN.md §5). The hyper-parameters live in :class:`TrainConfig`."""

from __future__ import annotations

import dataclasses
import gc
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from resattn.errors import ConfigError
from resattn.training.config import SCHEDULES, TrainConfig
from resattn.training.data import ImageData
from resattn.training.precision import (
    Execution,
    autocast_context,
    choose_execution,
    record_compile,
    warn_compile_failed,
)
from resattn.training.step import synchronize, train_step

__all__ = [
    "SCHEDULES",
    "EpochResult",
    "GpuBatches",
    "OutOfMemory",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "augment",
    "autocast_context",
    "correctness",
    "evaluate",
    "lr_factor",
    "make_loss",
    "make_optimizer",
    "param_groups",
    "resolve_device",
    "set_lr",
    "train",
    "train_step",
]

log = logging.getLogger(__name__)



# ------------------------------------------------------------------------------------------ devices


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Raises :class:`ConfigError` for an unknown name or a CUDA device that is not there.
    """
    if isinstance(name, torch.device):
        name = str(name)
    text = str(name).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        index_text = text.partition(":")[2]
        if index_text and not index_text.isdigit():
            raise ConfigError(f"unknown device {name!r}; allowed: auto, cpu, cuda, cuda:N", key="device")
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {name!r} requested but CUDA is not available (no GPU or a CPU-only torch build); "
                "use --device cpu or auto",
                key="device",
            )
        if index_text and int(index_text) >= torch.cuda.device_count():
            raise ConfigError(
                f"device {name!r} does not exist: {torch.cuda.device_count()} CUDA device(s) visible",
                key="device",
            )
        return torch.device(text)
    raise ConfigError(f"unknown device {name!r}; allowed: auto, cpu, cuda, cuda:N", key="device")


# ------------------------------------------------------------------------------------------ batches


def augment(
    x: torch.Tensor,
    *,
    crop_padding: int,
    flip: bool,
    generator: torch.Generator | None = None,
    pad_mode: str = "reflect",
) -> torch.Tensor:
    """Random crop (pad by ``crop_padding``, then a per-sample random offset) and random horizontal
    flip of a uint8 batch ``(B, C, H, W)``, as one vectorised gather on ``x``'s device.

    ``pad_mode`` is ``reflect`` (mirror without repeating the edge) or ``zeros``. Returns a new
    uint8 tensor of the same shape.
    """
    if pad_mode not in ("reflect", "zeros"):
        raise ValueError(f"unknown pad_mode {pad_mode!r}; allowed: reflect, zeros")
    b, c, h, w = x.shape
    if b == 0 or (crop_padding == 0 and not flip):
        return x.clone()
    dev = x.device
    rows = torch.arange(h, device=dev).expand(b, h)
    cols = torch.arange(w, device=dev).expand(b, w)
    if crop_padding > 0:  # source pixel of each output pixel, in padded coordinates shifted by -p
        p = crop_padding
        rows = rows + torch.randint(-p, p + 1, (b, 1), device=dev, generator=generator)
        cols = cols + torch.randint(-p, p + 1, (b, 1), device=dev, generator=generator)
    if flip:  # mirror the crop: output column j takes the crop's column w-1-j
        flipped = torch.rand((b, 1), device=dev, generator=generator) < 0.5
        cols = torch.where(flipped, cols.flip(1), cols)
    valid: torch.Tensor | None = None
    if crop_padding > 0:
        if pad_mode == "reflect":
            rows, cols = _reflect(rows, h), _reflect(cols, w)
        else:
            valid = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
            rows, cols = rows.clamp(0, h - 1), cols.clamp(0, w - 1)
    index = (rows[:, :, None] * w + cols[:, None, :]).reshape(b, 1, h * w).expand(b, c, h * w)
    out = x.reshape(b, c, h * w).gather(2, index).reshape(b, c, h, w)
    if valid is not None:
        out = out * valid[:, None].to(out.dtype)
    return out


def _reflect(i: torch.Tensor, n: int) -> torch.Tensor:
    """Reflect indices in [-(n-1), 2(n-1)] into [0, n-1] (``torch.nn.functional.pad`` reflect semantics)."""
    if n == 1:
        return torch.zeros_like(i)
    i = i.abs()
    return torch.where(i > n - 1, 2 * (n - 1) - i, i).clamp(0, n - 1)


def pass_images(n: int, batch_size: int, *, shuffle: bool, drop_last: bool = False) -> int:
    """Images one pass over ``n`` images yields: a training (shuffled) pass drops a trailing single
    image (BatchNorm needs two per batch), and with ``drop_last`` (compiled training: every batch of
    one shape) the partial last batch."""
    if drop_last and n >= batch_size:
        return n - n % batch_size
    return n - 1 if shuffle and n % batch_size == 1 and n > 1 else n


class GpuBatches:
    """Batches of one split held as a single uint8 tensor on the device (DESIGN.md §5).

    Each pass (``iter``) draws a fresh seeded permutation; a batch is an index slice of it,
    augmented (random crop/flip, when configured) and normalised with batched tensor ops on the device. Yields
    ``(x, y)`` with ``x`` float32 normalised ``(B, C, H, W)`` (channels_last if asked) and ``y`` int64.
    With ``shuffle=False`` the order is the split's and nothing random happens. Training batches
    never hold a single sample: a last batch of one image is dropped (BatchNorm needs two).
    """

    def __init__(
        self,
        data: ImageData,
        *,
        batch_size: int,
        device: torch.device | str,
        mean: Sequence[float],
        std: Sequence[float],
        shuffle: bool = True,
        crop_padding: int = 0,
        flip: bool = False,
        seed: int = 0,
        channels_last: bool = False,
        pad_mode: str = "reflect",
        drop_last: bool = False,
    ):
        if batch_size < 1:
            raise ConfigError(f"must be a positive integer, got {batch_size!r}", key="batch_size")
        self.device = torch.device(device)
        self.data = data.to(self.device)
        channels = self.data.x.shape[1]
        if len(mean) != channels or len(std) != channels:
            raise ConfigError(f"mean/std have {len(mean)}/{len(std)} values for {channels}-channel images")
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.crop_padding = crop_padding
        self.flip = flip
        self.channels_last = channels_last
        self.pad_mode = pad_mode
        self.drop_last = drop_last
        # Normalise in uint8 pixel units: (x - 255·mean) / (255·std).
        self._shift = torch.tensor([255.0 * m for m in mean], device=self.device).view(1, -1, 1, 1)
        self._scale = torch.tensor([1.0 / (255.0 * s) for s in std], device=self.device).view(1, -1, 1, 1)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    @property
    def num_images(self) -> int:
        """Images one pass yields (see :func:`pass_images`)."""
        return pass_images(len(self.data), self.batch_size, shuffle=self.shuffle, drop_last=self.drop_last)

    def __len__(self) -> int:
        return math.ceil(self.num_images / self.batch_size)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, C, H, W)`` → normalised float32 (channels_last when configured)."""
        out = (x.float() - self._shift) * self._scale
        if self.channels_last:
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, used = len(self.data), self.num_images
        order = torch.randperm(n, device=self.device, generator=self.generator) if self.shuffle else None
        for start in range(0, used, self.batch_size):
            stop = min(start + self.batch_size, used)
            if order is None:
                x, y = self.data.x[start:stop], self.data.y[start:stop]
            else:
                idx = order[start:stop]
                x, y = self.data.x.index_select(0, idx), self.data.y.index_select(0, idx)
            if self.shuffle and (self.crop_padding or self.flip):
                x = augment(x, crop_padding=self.crop_padding, flip=self.flip, generator=self.generator,
                            pad_mode=self.pad_mode)
            yield self.normalize(x), y


# ------------------------------------------------------------------------------------------ pieces


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two optimiser groups: weight decay on ≥2-D weights (conv, linear), none on the rest
    (norm weights, biases, scalar γ/λ gates)."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (Nesterov when ``config.nesterov`` and momentum > 0) over :func:`param_groups`, at
    ``config.peak_lr`` (``finetune_lr`` when ``config.init`` is a checkpoint, else ``lr``)."""
    return torch.optim.SGD(
        param_groups(model, config.weight_decay),
        lr=config.peak_lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
    )


def make_loss(config: TrainConfig) -> nn.Module:
    """Cross-entropy with ``config.label_smoothing``."""
    return nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)


def lr_factor(step: int, total_steps: int, schedule: str, warmup_fraction: float) -> float:
    """The multiplier of the peak LR at 0-based ``step`` of ``total_steps``.

    ``onecycle``: linear warmup over ``warmup_fraction`` of the steps to 1, then linear decay to
    ~0 at the last step; ``cosine``: the same warmup, then a half cosine to ~0; ``constant``: 1.
    """
    if schedule == "constant":
        return 1.0
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}", key="schedule")
    total = max(int(total_steps), 1)
    warmup = min(round(warmup_fraction * total), total)
    if step < warmup:
        return (step + 1) / warmup
    rest = total - warmup
    done = (step - warmup) / rest if rest > 0 else 1.0
    done = min(max(done, 0.0), 1.0)
    if schedule == "onecycle":
        return max(1.0 - done, 0.0)
    return 0.5 * (1.0 + math.cos(math.pi * done))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate."""
    for group in optimizer.param_groups:
        group["lr"] = lr


# ------------------------------------------------------------------------------------------ results


@dataclass
class EpochResult:
    """One finished epoch. ``seconds`` covers training and validation; ``images_per_second`` counts
    training images per second of training time."""

    epoch: int  # 1-based
    train_loss: float  # mean training loss of the epoch
    val_accuracy: float | None  # None without validation data
    seconds: float
    images_per_second: float
    images: int = 0  # training images of the epoch
    execution: Execution | None = None  # how the run executes (precision, memory format, compiled)
    #: Per validation image, whether it was classified right (CPU bool tensor, the split's order).
    val_correct: torch.Tensor | None = None


@dataclass
class TrainResult:
    """A finished training run."""

    epochs_run: int
    val_accuracy: float | None  # after the last epoch
    best_val_accuracy: float | None
    history: list[EpochResult]
    seconds: float  # wall time of the whole run
    images_per_second: float  # training images per second of training time, over all epochs
    device: str
    execution: Execution | None = None
    #: Seconds spent deciding how to run (the precision probe) and compiling, out of ``seconds``.
    probe_seconds: float = 0.0
    compile_seconds: float = 0.0
    val_correct: torch.Tensor | None = None  # of the last epoch


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite (``epoch`` and ``step`` are 1-based)."""

    def __init__(self, epoch: int, step: int, loss: float):
        self.epoch = epoch
        self.step = step
        self.loss = loss
        super().__init__(f"non-finite loss {loss} at epoch {epoch} step {step}")


class OutOfMemory(RuntimeError):
    """The device ran out of memory; the optimiser state and cached blocks were freed first."""


# ------------------------------------------------------------------------------------------ the loop

#: On CUDA the loss is checked for NaN/inf every this many steps (one host sync) and at epoch end.
CUDA_CHECK_EVERY = 25
#: Compiled runs time their first step (the compile) and this many more (the compiled step's cost).
COMPILE_TIMED_STEPS = 3


def evaluate(
    model: nn.Module,
    data: ImageData,
    *,
    device: torch.device | str,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int,
    bf16: bool = False,
    channels_last: bool = False,
) -> float:
    """Top-1 accuracy of ``model`` on ``data`` (eval mode, no gradients; training mode restored)."""
    correct = correctness(model, data, device=device, mean=mean, std=std, batch_size=batch_size, bf16=bf16,
                          channels_last=channels_last)
    return int(correct.sum()) / len(data)


def correctness(
    model: nn.Module,
    data: ImageData,
    *,
    device: torch.device | str,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int,
    bf16: bool = False,
    channels_last: bool = False,
) -> torch.Tensor:
    """Whether ``model`` classifies each image of ``data`` right: a CPU bool tensor in the split's order.

    Under bf16 autocast the forward runs in bf16, but the logits are compared in fp32 and the counts
    are integers, so the accuracy itself is exact. The last batch is padded to ``batch_size`` (eval
    mode: the padding changes no other image's output), so evaluation meets no new batch shape.
    """
    device = torch.device(device)
    if len(data) == 0:
        raise ConfigError("cannot evaluate on an empty split")
    batches = GpuBatches(data, batch_size=batch_size, device=device, mean=mean, std=std, shuffle=False,
                         channels_last=channels_last)
    was_training = model.training
    model.eval()
    parts: list[torch.Tensor] = []
    try:
        with torch.no_grad():
            for x, y in batches:
                n = x.shape[0]
                if n < batch_size and len(data) > batch_size:  # pad the last batch: no new shape to set up
                    x = torch.cat([x, x.new_zeros((batch_size - n, *x.shape[1:]))])
                    if channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                with autocast_context(device, bf16):
                    logits = model(x)[:n]
                parts.append(logits.float().argmax(dim=1) == y)
    finally:
        model.train(was_training)
    return torch.cat(parts).cpu()


def train(
    model: nn.Module,
    train_data: ImageData,
    val_data: ImageData | None,
    config: TrainConfig,
    *,
    device: torch.device | str,
    mean: Sequence[float],
    std: Sequence[float],
    on_epoch: Callable[[EpochResult], None] | None = None,
    resume: dict[str, Any] | None = None,
    on_checkpoint: Callable[[EpochResult, dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``model`` for ``config.epochs`` epochs with the fast loop and return what happened.

    The model is moved to ``device`` (and to channels_last on CUDA when configured). After every
    epoch the validation accuracy is measured and ``on_epoch`` called; whatever ``on_epoch`` raises
    (``optuna.TrialPruned``, ``KeyboardInterrupt``, …) propagates unchanged. Raises
    :class:`TrainingDiverged` on a non-finite loss (at the latest at the end of the epoch where it
    happened) and :class:`OutOfMemory` when the device runs out of memory.

    Checkpointing (full training, :mod:`resattn.training.retrain`): after every epoch and before ``on_epoch``,
    ``on_checkpoint(result, state)`` gets the loop state ``{"epoch", "optimizer", "generator"}``
    (finished epochs, optimiser state_dict, batch-order RNG state; the LR schedule's step follows from
    the epoch).
    ``resume=state`` (with the model's weights already loaded) continues after ``state["epoch"]``
    with the same LR schedule and batch order; the history then holds only the new epochs.
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    if len(train_data) < 2:
        raise ConfigError(f"need at least 2 training images, got {len(train_data)}", key="train_images")
    started = time.perf_counter()
    optimizer: torch.optim.Optimizer | None = None
    batches: GpuBatches | None = None
    oom: str | None = None
    try:
        model.to(device)
        n, c, h, w = train_data.x.shape
        batch_shape = (min(config.batch_size, n), c, h, w)
        eager_steps = math.ceil(pass_images(n, config.batch_size, shuffle=True) / config.batch_size)
        num_classes = int(train_data.y.max()) + 1
        execution = choose_execution(model, config, device, batch_shape, num_classes,
                                     steps=eager_steps * config.epochs)
        log.info("training on %s: %s (%s)", device, execution.label(), execution.why)
        if execution.channels_last:
            model.to(memory_format=torch.channels_last)
        batches = GpuBatches(
            train_data, batch_size=config.batch_size, device=device, mean=mean, std=std, shuffle=True,
            crop_padding=config.crop_padding, flip=config.flip, seed=config.seed,
            channels_last=execution.channels_last, drop_last=execution.compile,
        )
        if val_data is not None:
            val_data = val_data.to(device)
        optimizer = make_optimizer(model, config)
    except torch.cuda.OutOfMemoryError as err:
        oom = str(err).strip().splitlines()[0] if str(err).strip() else "CUDA out of memory"
    if oom is not None or optimizer is None or batches is None:
        optimizer = batches = None
        _free(model, device)
        raise OutOfMemory(f"out of memory on {device} while preparing the data: {oom}")

    loss_fn = make_loss(config)
    step_model: nn.Module = model
    compile_seconds = 0.0
    if execution.compile:
        try:
            step_model = torch.compile(model, dynamic=False)  # type: ignore[assignment]
        except Exception as err:  # a backend that is not available: train eagerly
            execution = _eager(execution, err)
    steps_per_epoch = len(batches)
    total_steps = steps_per_epoch * config.epochs
    check_every = CUDA_CHECK_EVERY if cuda else 1
    history: list[EpochResult] = []
    train_seconds = 0.0
    images_seen = 0
    global_step = 0
    first_epoch = 1
    compiled_timing: list[float] = []  # seconds of the first compiled steps: the compiling one, then plain ones
    val_correct: torch.Tensor | None = None
    if resume is not None:
        first_epoch = int(resume["epoch"]) + 1
        global_step = steps_per_epoch * int(resume["epoch"])
        optimizer.load_state_dict(resume["optimizer"])
        batches.generator.set_state(resume["generator"])
    for epoch in range(first_epoch, config.epochs + 1):
        epoch_started = time.perf_counter()
        timed_before = len(compiled_timing)
        try:
            model.train()
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            window: list[torch.Tensor] = []
            window_start = 1
            step = 0
            for step, (x, y) in enumerate(batches, start=1):
                factor = lr_factor(global_step, total_steps, config.schedule, config.warmup_fraction)
                set_lr(optimizer, config.peak_lr * factor)
                autocast = autocast_context(device, execution.bf16)
                if execution.compile and len(compiled_timing) <= COMPILE_TIMED_STEPS:
                    step_started = time.perf_counter()
                    try:  # the first compiled step compiles: a failure there falls back to eager
                        loss = train_step(step_model, optimizer, loss_fn, x, y, autocast=autocast)
                        synchronize(device)
                        compiled_timing.append(time.perf_counter() - step_started)
                    except (KeyboardInterrupt, torch.cuda.OutOfMemoryError):
                        raise
                    except Exception as err:
                        execution, step_model = _eager(execution, err), model
                        loss = train_step(model, optimizer, loss_fn, x, y, autocast=autocast)
                else:
                    loss = train_step(step_model, optimizer, loss_fn, x, y, autocast=autocast)
                window.append(loss)
                global_step += 1
                if len(window) >= check_every:
                    loss_sum += _check_finite(window, epoch, window_start)
                    window, window_start = [], step + 1
            if window:
                loss_sum += _check_finite(window, epoch, window_start)
            synchronize(device)
            compiling = compiled_timing[0] if timed_before == 0 and compiled_timing else 0.0  # not training time
            train_time = time.perf_counter() - epoch_started - compiling
            train_loss = float(loss_sum.item()) / max(step, 1)
            val_acc = None
            if val_data is not None and len(val_data) > 0:
                val_correct = correctness(model, val_data, device=device, mean=mean, std=std,
                                          batch_size=_eval_batch(config, device), bf16=execution.bf16,
                                          channels_last=execution.channels_last)
                val_acc = int(val_correct.sum()) / len(val_data)
        except torch.cuda.OutOfMemoryError as err:
            oom = str(err).strip().splitlines()[0] if str(err).strip() else "CUDA out of memory"
        if oom is not None:
            # The exception (and the frames holding activations) is gone; drop our own references.
            window = []
            x = y = loss = None
            optimizer = batches = None
            _free(model, device)
            raise OutOfMemory(f"out of memory on {device} at epoch {epoch}: {oom}")
        if execution.compile and timed_before == 0 and len(compiled_timing) > 1:  # learn what compiling cost
            compiled_step = sum(compiled_timing[1:]) / len(compiled_timing[1:])
            compile_seconds = max(compiled_timing[0] - compiled_step, 0.0)
            if execution.rate:
                record_compile(model, device, batch_shape, execution, compile_seconds,
                               batch_shape[0] / execution.rate, compiled_step)
        train_seconds += train_time
        images_seen += batches.num_images
        result = EpochResult(
            epoch=epoch,
            train_loss=train_loss,
            val_accuracy=val_acc,
            seconds=time.perf_counter() - epoch_started,
            images_per_second=batches.num_images / train_time if train_time > 0 else 0.0,
            images=batches.num_images,
            execution=execution,
            val_correct=val_correct,
        )
        history.append(result)
        log.debug("epoch %d: loss %.4f val %s %.0f img/s", epoch, train_loss, val_acc,
                  result.images_per_second)
        if on_checkpoint is not None:
            on_checkpoint(result, {"epoch": epoch, "optimizer": optimizer.state_dict(),
                                   "generator": batches.generator.get_state()})
        if on_epoch is not None:
            on_epoch(result)

    accuracies = [r.val_accuracy for r in history if r.val_accuracy is not None]
    return TrainResult(
        epochs_run=len(history),
        val_accuracy=history[-1].val_accuracy if history else None,
        best_val_accuracy=max(accuracies) if accuracies else None,
        history=history,
        seconds=time.perf_counter() - started,
        images_per_second=images_seen / train_seconds if train_seconds > 0 else 0.0,
        device=str(device),
        execution=execution,
        probe_seconds=execution.probe_seconds,
        compile_seconds=compile_seconds,
        val_correct=val_correct,
    )


def _eval_batch(config: TrainConfig, device: torch.device) -> int:
    """The validation batch size: ``eval_batch_size``, except on the CPU, where validation runs in
    training-sized batches, the shapes whose kernels the training has already set up (oneDNN spends
    up to a second per new shape and architecture)."""
    return min(config.eval_batch_size, config.batch_size) if device.type == "cpu" else config.eval_batch_size


def _eager(execution: Execution, err: BaseException) -> Execution:
    """``execution`` without compilation, after one warning about why."""
    warn_compile_failed(err)
    return dataclasses.replace(execution, compile=False)


def _check_finite(window: list[torch.Tensor], epoch: int, first_step: int) -> torch.Tensor:
    """Sum of the window's losses; raises :class:`TrainingDiverged` naming the first bad step."""
    losses = torch.stack(window).double()
    finite = torch.isfinite(losses)
    if not bool(finite.all()):
        bad = int(torch.nonzero(~finite, as_tuple=False)[0, 0])
        raise TrainingDiverged(epoch, first_step + bad, float(losses[bad]))
    return losses.sum()


def _free(model: nn.Module, device: torch.device) -> None:
    """Release gradients and cached device memory after an out-of-memory error."""
    model.zero_grad(set_to_none=True)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
