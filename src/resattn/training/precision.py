"""How a training run executes on its device: precision (bf16 autocast or fp32), memory format
(channels_last or not) and ``torch.compile`` — chosen by measurement, not by guessing from flags
(DESIGN.md §5).

``train.precision = "auto"`` picks bf16 on a CUDA device that supports it, and on the CPU only where a
short timed probe shows bf16 really is faster for this model (at least :data:`BF16_MARGIN` × the best
fp32 variant); a CPU without bf16 support is never probed. ``train.channels_last = "auto"`` is decided
by the same probe, per device. The probe trains a copy of the model for a few steps on a synthetic
batch of the real shape; the result is cached per process and *shape family* (device, batch shape and
the network's layer geometry, whatever its attentions), so a search pays it once per process, and the
probe's warm-up of the chosen kernels is the first trial's warm-up anyway.

``train.compile = "auto"`` compiles when the run's expected steps repay the compile time:
``steps × eager step × (1 − 1/speed-up) > compile seconds``. The compile seconds and speed-up are
measured the first time this process compiles a shape family, and assumed from
:data:`COMPILE_PRIOR` before that. A compile that fails falls back to eager with one warning.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resattn.files import atomic_write
from resattn.training.config import TrainConfig
from resattn.training.step import synchronize, train_step

__all__ = [
    "BF16_MARGIN",
    "COMPILE_PRIOR",
    "Execution",
    "ProbeResult",
    "autocast_context",
    "bf16_supported",
    "choose_execution",
    "clear_cache",
    "compile_pays",
    "probe",
    "record_compile",
    "shape_family",
]

log = logging.getLogger(__name__)

#: bf16 must be at least this much faster than the best fp32 variant to be chosen on the CPU.
BF16_MARGIN = 1.10
#: channels_last must be at least this much faster than the default layout to be chosen.
CHANNELS_LAST_MARGIN = 1.03
#: Untimed and timed steps per probed variant.
PROBE_WARMUP_STEPS = 1
PROBE_STEPS = 2
#: Before this process has compiled anything: assumed (compile seconds, speed-up) per device type.
#: Measured on a 2-core AMX Xeon: seconds of the first compile of the notebooks' network and
#: the step-time ratio eager / compiled (both bf16).
COMPILE_PRIOR: dict[str, tuple[float, float]] = {"cpu": (25.0, 1.5), "cuda": (40.0, 1.3)}
#: Compile only when the expected saving exceeds the compile time by this factor.
COMPILE_SAFETY = 1.2


@dataclass(frozen=True)
class Execution:
    """How one training run executes. ``why`` says how it was decided, for logs and trial records."""

    precision: str  # "bf16" or "fp32"
    channels_last: bool
    compile: bool
    why: str = ""
    probe_seconds: float = 0.0  # time this process spent probing for this run (0 when cached)
    rate: float | None = None  # the probed images/s of this variant (None: not probed)

    @property
    def bf16(self) -> bool:
        return self.precision == "bf16"

    def label(self) -> str:
        """E.g. ``bf16 autocast, channels_last, compiled``."""
        parts = ["bf16 autocast" if self.bf16 else "fp32"]
        if self.channels_last:
            parts.append("channels_last")
        if self.compile:
            parts.append("compiled")
        return ", ".join(parts)


@dataclass(frozen=True)
class ProbeResult:
    """Steady-state images/s of each probed variant ``(precision, channels_last)``."""

    images_per_second: dict[tuple[str, bool], float]
    seconds: float
    attentions: tuple[str, ...] | None = None  # the attention set of the network it was measured on


# ------------------------------------------------------------------------------------------ support


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 natively (CUDA: compute capability ≥ 8.0; CPU: oneDNN's bf16
    path, i.e. AVX-512 bf16 / AMX). A CPU without it emulates bf16, slowly: it is never probed."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def autocast_context(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on ``device`` when ``bf16``; a no-op otherwise."""
    if bf16 and device.type in ("cuda", "cpu"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def shape_family(model: nn.Module, device: torch.device, batch_shape: tuple[int, ...]) -> tuple[Any, ...]:
    """What the probe's answer depends on: the device, the batch shape and the network's geometry — the
    channels, kernels and strides of its spatial convolutions (3×3 and larger with more than one output
    channel: the backbone's), not which attentions (1×1 convs, 1-D convs, one-channel spatial masks) sit
    where. All trials of one search space share one family."""
    convs = tuple(
        (m.in_channels, m.out_channels, m.kernel_size, m.stride)
        for m in model.modules()
        if isinstance(m, nn.Conv2d) and min(m.kernel_size) >= 3 and m.out_channels > 1
    )
    return (str(device), tuple(batch_shape), convs)


# ------------------------------------------------------------------------------------------ probing

_CACHE: dict[tuple[Any, ...], ProbeResult] = {}
#: The probe's answers also persist on disk, per machine (CPU / GPU model, torch version) and shape
#: family, so that only a machine's first run with a network family pays the probe. ``off`` disables it.
PROBE_CACHE_ENV = "RESATTN_PROBE_CACHE"


def _cache_file() -> Path | None:
    setting = os.environ.get(PROBE_CACHE_ENV, "").strip()
    if setting.lower() in ("off", "0", "no", "false"):
        return None
    if setting:
        return Path(setting).expanduser()
    return Path.home() / ".cache" / "resattn" / "execution-probe.json"


def _machine(device: torch.device) -> str:
    """What a probe's answer is valid for besides the network: the processor and the torch build."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
        name += f" ({torch.get_num_threads()} threads)"
    return f"{name} | torch {torch.__version__}"


def _disk_key(device: torch.device, family: tuple[Any, ...]) -> str:
    return hashlib.sha256(json.dumps([_machine(device), repr(family)]).encode()).hexdigest()[:24]


def _disk_load(device: torch.device, family: tuple[Any, ...]) -> ProbeResult | None:
    path = _cache_file()
    if path is None or not path.is_file():
        return None
    try:
        entry = json.loads(path.read_text(encoding="utf-8")).get(_disk_key(device, family))
        if not isinstance(entry, dict):
            return None
        rates = {(str(p), bool(cl)): float(r) for p, cl, r in entry["rates"]}
        attentions = tuple(str(a) for a in entry["attentions"]) if entry.get("attentions") is not None else None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # an unreadable cache is no cache
    return ProbeResult(rates, 0.0, attentions)


def _disk_store(device: torch.device, family: tuple[Any, ...], result: ProbeResult) -> None:
    path = _cache_file()
    if path is None:
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    key = _disk_key(device, family)
    rates: dict[tuple[str, bool], float] = {}
    with contextlib.suppress(KeyError, TypeError, ValueError):  # earlier probes of other variants stay
        rates = {(str(p), bool(cl)): float(r) for p, cl, r in data[key]["rates"]}
    rates.update(result.images_per_second)
    data[key] = {
        "machine": _machine(device),
        "rates": [[p, cl, r] for (p, cl), r in rates.items()],
        "probe_seconds": round(result.seconds, 2),
        "attentions": list(result.attentions) if result.attentions is not None else None,
    }
    try:
        atomic_write(path, lambda fh: fh.write(json.dumps(data, indent=1) + "\n"), mode="w")
    except OSError as err:
        log.debug("cannot write the probe cache %s: %s", path, err)
_COMPILE: dict[tuple[Any, ...], tuple[float, float]] = {}  # family -> measured (seconds, speed-up)
_WARNED: set[str] = set()


def clear_cache() -> None:
    """Forget every probe and compile measurement of this process (tests)."""
    _CACHE.clear()
    _COMPILE.clear()
    _WARNED.clear()


def _time_variant(model: nn.Module, device: torch.device, batch_shape: tuple[int, ...], num_classes: int,
                  bf16: bool, channels_last: bool, steps: int = PROBE_STEPS) -> float:
    """Images/s of a copy of ``model`` trained for a few steps with this variant."""
    probe_model = copy.deepcopy(model).to(device)
    if channels_last:
        probe_model.to(memory_format=torch.channels_last)
    probe_model.train()
    optimizer = torch.optim.SGD(probe_model.parameters(), lr=1e-3, momentum=0.9)
    generator = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(batch_shape, generator=generator).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (batch_shape[0],), generator=generator).to(device)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        train_step(probe_model, optimizer, loss_fn, x, y, autocast=autocast_context(device, bf16))

    for _ in range(PROBE_WARMUP_STEPS):
        step()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    elapsed = time.perf_counter() - started
    return batch_shape[0] * steps / elapsed if elapsed > 0 else float("inf")


def probe(
    model: nn.Module,
    device: torch.device,
    batch_shape: tuple[int, ...],
    num_classes: int,
    precisions: list[str],
    layouts: list[bool],
    *,
    timer: Callable[..., float] | None = None,
) -> ProbeResult:
    """Time the variants on a copy of ``model``, staged to keep the probe short: every layout of the
    first precision (bf16 when it is a candidate: the likely winner, and its warm-up is the run's
    own), then the other precision in that precision's best layout only. ``timer`` replaces the
    measurement in tests."""
    timer = timer or _time_variant
    started = time.perf_counter()
    rates: dict[tuple[str, bool], float] = {}
    order = sorted(precisions, key=lambda p: p != "bf16")
    first, rest = order[0], order[1:]
    for channels_last in layouts:
        rates[(first, channels_last)] = timer(model, device, batch_shape, num_classes, first == "bf16",
                                              channels_last)
    layout = _best_layout(rates, first)[1]
    for precision in rest:  # one timed step: it is compared against a 10 % margin
        rates[(precision, layout)] = timer(model, device, batch_shape, num_classes, precision == "bf16", layout,
                                           steps=1)
    seconds = time.perf_counter() - started
    log.info("precision probe on %s, batch %s: %s (%.1f s)", device, batch_shape,
             ", ".join(f"{p}{'+cl' if cl else ''} {r:,.0f} img/s" for (p, cl), r in rates.items()), seconds)
    return ProbeResult(rates, seconds, attention_family(model))


def attention_family(model: nn.Module) -> tuple[str, ...]:
    """The attention classes a network uses (sorted names of the registered ones), the other thing
    besides the backbone that decides which memory format is faster."""
    from resattn.model.attention import ATTENTIONS

    registered = set(ATTENTIONS.values())
    return tuple(sorted({type(m).__name__ for m in model.modules() if type(m) in registered}))


def _layout_rates(model: nn.Module, device: torch.device, batch_shape: tuple[int, ...], num_classes: int,
                  precision: str, family: tuple[Any, ...], timer: Callable[..., float] | None,
                  ) -> tuple[dict[tuple[str, bool], float], float]:
    """Both layouts of ``precision`` for this attention set (cached like the probe); one timed step each,
    and the seconds it took (0 when cached)."""
    key = (*family, attention_family(model), precision)
    found = _CACHE.get(key)
    if found is None and timer is None:
        found = _disk_load(device, key)
    if found is not None and all((precision, cl) in found.images_per_second for cl in (False, True)):
        _CACHE[key] = found
        return found.images_per_second, 0.0
    timer = timer or _time_variant
    started = time.perf_counter()
    rates = {(precision, cl): timer(model, device, batch_shape, num_classes, precision == "bf16", cl, steps=1)
             for cl in (False, True)}
    result = ProbeResult(rates, time.perf_counter() - started, attention_family(model))
    _CACHE[key] = result
    if timer is _time_variant:
        _disk_store(device, key, result)
    log.info("layout probe for attentions %s: %s", ", ".join(result.attentions) or "none",
             ", ".join(f"{'channels_last' if cl else 'default'} {r:,.0f} img/s" for (_, cl), r in rates.items()))
    return rates, result.seconds


def _candidates(config: TrainConfig, device: torch.device, supported: bool) -> tuple[list[str], list[bool]]:
    if config.precision == "bf16" or (config.precision == "auto" and supported and device.type == "cuda"):
        precisions = ["bf16"]  # as configured, or bf16 on a CUDA device that supports it
    elif config.precision == "fp32" or not supported:
        precisions = ["fp32"]
    else:
        precisions = ["fp32", "bf16"]
    layouts = {"on": [True], "off": [False]}.get(config.channels_last, [False, True])
    return precisions, layouts


def choose_execution(
    model: nn.Module,
    config: TrainConfig,
    device: torch.device,
    batch_shape: tuple[int, ...],
    num_classes: int,
    *,
    steps: int,
    timer: Callable[..., float] | None = None,
) -> Execution:
    """How to run ``config.epochs`` of training of ``model`` (``steps`` optimiser steps in all) on
    ``device``: the config's explicit settings, and a measurement (or the cached one) for ``auto``."""
    supported = bf16_supported(device)
    if config.precision == "bf16" and not supported:
        _warn_once(f"bf16-{device.type}", f"train.precision = bf16 on {device}, which has no native bf16: "
                                          "it runs, emulated and slow")
    precisions, layouts = _candidates(config, device, supported)
    spent = 0.0
    rate: float | None = None
    if len(precisions) == 1 and len(layouts) == 1:
        precision, channels_last = precisions[0], layouts[0]
        if config.precision == "auto" and not supported:
            why = f"{device.type} has no native bf16"
        elif config.precision == "auto" and device.type == "cuda":
            why = "bf16 on a CUDA device that supports it"
        else:
            why = "as configured"
    else:
        family = shape_family(model, device, batch_shape)
        first = sorted(precisions, key=lambda p: p != "bf16")[0]  # the probe times every layout of it

        def answers(found: ProbeResult | None) -> bool:
            return found is not None and all((first, cl) in found.images_per_second for cl in layouts) and all(
                any(k[0] == p for k in found.images_per_second) for p in precisions)

        result = _CACHE.get(family)
        fresh = False
        if not answers(result) and timer is None:
            result = _disk_load(device, family)
        if not answers(result):
            result = probe(model, device, batch_shape, num_classes, precisions, layouts, timer=timer)
            spent, fresh = result.seconds, True
            if timer is None:
                _disk_store(device, family, result)
        assert result is not None
        _CACHE[family] = result
        rates = {k: v for k, v in result.images_per_second.items() if k[0] in precisions and k[1] in layouts}
        precision, channels_last = _best(rates)
        rate = rates[(precision, channels_last)]
        why = ("measured: " if fresh else "probe cached for this machine and network family: ") + ", ".join(
            f"{p}{'+channels_last' if cl else ''} {r:,.0f} img/s" for (p, cl), r in rates.items())
        if len(layouts) > 1 and attention_family(model) != result.attentions:
            # The memory format also depends on the attentions (channels_last speeds up SE, slows CBAM
            # down): decided per attention set, for the precision chosen above, with a shorter probe.
            layout_rates, extra = _layout_rates(model, device, batch_shape, num_classes, precision, family, timer)
            spent += extra
            channels_last = _best_layout(layout_rates, precision)[1]
            rate = layout_rates[(precision, channels_last)]
            why += "; for its attentions: " + ", ".join(
                f"{p}{'+channels_last' if cl else ''} {r:,.0f} img/s" for (p, cl), r in layout_rates.items())
    compiled = _decide_compile(config, model, device, batch_shape, steps, rate, precision, channels_last)
    return Execution(precision, channels_last, compiled, why, spent, rate)


def _best_layout(rates: dict[tuple[str, bool], float], precision: str) -> tuple[str, bool]:
    """The faster layout of ``precision``; channels_last must beat the default by :data:`CHANNELS_LAST_MARGIN`."""
    plain, cl = (precision, False), (precision, True)
    if plain in rates and cl in rates:
        return cl if rates[cl] >= CHANNELS_LAST_MARGIN * rates[plain] else plain
    return cl if cl in rates else plain


def _best(rates: dict[tuple[str, bool], float]) -> tuple[str, bool]:
    """The variant to run: bf16 only where it beats the best fp32 by :data:`BF16_MARGIN`."""
    has = {p for p, _ in rates}
    fp32 = _best_layout(rates, "fp32") if "fp32" in has else None
    bf16 = _best_layout(rates, "bf16") if "bf16" in has else None
    if bf16 is None:
        assert fp32 is not None
        return fp32
    if fp32 is None or rates[bf16] >= BF16_MARGIN * rates[fp32]:
        return bf16
    return fp32


# ------------------------------------------------------------------------------------------ compile


def compile_pays(steps: int, step_seconds: float, compile_seconds: float, speedup: float) -> bool:
    """Whether compiling repays itself: the eager time it saves exceeds its cost (with a safety factor)."""
    if steps <= 0 or step_seconds <= 0 or speedup <= 1.0:
        return False
    saving = steps * step_seconds * (1.0 - 1.0 / speedup)
    return saving > COMPILE_SAFETY * compile_seconds


def _decide_compile(config: TrainConfig, model: nn.Module, device: torch.device, batch_shape: tuple[int, ...],
                    steps: int, rate: float | None, precision: str, channels_last: bool) -> bool:
    if config.compile == "off":
        return False
    if config.compile == "on":
        return True
    family = (*shape_family(model, device, batch_shape), precision, channels_last)
    seconds, speedup = _COMPILE.get(family, COMPILE_PRIOR.get(device.type, (60.0, 1.2)))
    if rate is None:  # no probe ran: assume a modest step time, which favours not compiling short runs
        return compile_pays(steps, batch_shape[0] / 2000.0, seconds, speedup)
    return compile_pays(steps, batch_shape[0] / rate, seconds, speedup)


def record_compile(model: nn.Module, device: torch.device, batch_shape: tuple[int, ...], execution: Execution,
                   compile_seconds: float, eager_step: float, compiled_step: float) -> None:
    """Remember what compiling this family cost and gained here, for the next ``auto`` decision."""
    if compiled_step <= 0 or eager_step <= 0:
        return
    family = (*shape_family(model, device, batch_shape), execution.precision, execution.channels_last)
    _COMPILE[family] = (compile_seconds, eager_step / compiled_step)


def _warn_once(key: str, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning("%s", message)


def warn_compile_failed(err: BaseException) -> None:
    """One warning per process when ``torch.compile`` fails; the run continues eagerly."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    _warn_once("compile-failed", f"torch.compile failed ({type(err).__name__}: {first[:200]}); training eagerly")
