"""Tests for resattn.training.bench: the fast loop against the DataLoader reference loop (CPU, tiny)."""

from __future__ import annotations

from pathlib import Path

import pytest

from resattn import BlockSpec, NetSpec
from resattn.errors import ConfigError
from resattn.training.bench import BenchResult, format_bench, run_bench
from resattn.training.data import Dataset, load_dataset

CIFAR_NPZ = Path(__file__).resolve().parents[2].parent / "shared/data/cifar10-6k.npz"
TINY = NetSpec(layers=(BlockSpec("plain", 16, 2), BlockSpec("residual", 32, 2)), stem_channels=8)


@pytest.fixture(scope="module")
def cifar_slice() -> Dataset:
    if not CIFAR_NPZ.is_file():
        pytest.skip(f"real CIFAR-10 sample not found at {CIFAR_NPZ} (../shared/data from the repo root)")
    full = load_dataset(f"npz:{CIFAR_NPZ}")
    return Dataset(name="cifar-slice", train=full.train.subset(range(200)), test=None, classes=full.classes,
                   mean=full.mean, std=full.std)


def test_run_bench_tiny(cifar_slice: Dataset) -> None:
    result = run_bench(TINY, cifar_slice, device="cpu", batch_size=32, steps=3, warmup_steps=1, num_workers=0)
    assert isinstance(result, BenchResult)
    assert result.fast_images_per_second > 0 and result.reference_images_per_second > 0
    assert result.speedup == pytest.approx(result.fast_images_per_second / result.reference_images_per_second)
    assert result.fast_images_per_second == pytest.approx(3 * 32 / result.fast_seconds)
    assert result.reference_images_per_second == pytest.approx(3 * 32 / result.reference_seconds)
    assert (result.device, result.batch_size, result.steps, result.num_workers) == ("cpu", 32, 3, 0)
    assert result.fast_precision.split(",")[0] in ("fp32", "bf16 autocast") and result.train_images == 200
    assert result.probe_seconds >= 0 and result.fast_warmup_seconds > 0 and "img/s" in result.decided_by
    assert result.fast_data_images_per_second > 0 and result.reference_data_images_per_second > 0
    rows = result.rows()
    assert [r[0] for r in rows][:3] == ["fast (on-device tensors)", "reference (DataLoader)", "speedup"]
    assert "input pipeline only: fast" in [r[0] for r in rows]
    text = format_bench(result)
    assert "images/s" in text and "speedup" in text and "device cpu" in text


def test_run_bench_more_steps_than_one_epoch(cifar_slice: Dataset) -> None:
    # 200 images at batch 64 are 3 full batches per pass: 5 steps need a second pass in both loops.
    result = run_bench(TINY, cifar_slice, device="cpu", batch_size=64, steps=4, warmup_steps=1, num_workers=0)
    assert result.fast_images_per_second > 0 and result.reference_images_per_second > 0


def test_run_bench_validates(cifar_slice: Dataset) -> None:
    with pytest.raises(ConfigError, match="batch size 256 exceeds the 200 training images"):
        run_bench(TINY, cifar_slice, device="cpu", batch_size=256, steps=1)
    with pytest.raises(ConfigError, match="steps"):
        run_bench(TINY, cifar_slice, device="cpu", batch_size=32, steps=0)


def test_precision_accuracy_trains_both_precisions_on_paired_seeds() -> None:
    import torch

    from resattn import BlockSpec, NetSpec
    from resattn.training.bench import run_precision_accuracy
    from resattn.training.config import TrainConfig
    from resattn.training.data import ImageData

    g = torch.Generator().manual_seed(0)
    data = ImageData(torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8, generator=g),
                     torch.randint(0, 10, (64,), generator=g))
    spec = NetSpec(stem_channels=4, layers=(BlockSpec("residual", 4),))
    result = run_precision_accuracy(spec, data, data, TrainConfig(epochs=1, batch_size=32, lr=0.05), device="cpu",
                                    mean=(0.5,) * 3, std=(0.2,) * 3, seeds=2)
    assert result.seeds == (0, 1) and len(result.fp32) == len(result.bf16) == 2
    assert all(0.0 <= a <= 1.0 for a in result.fp32 + result.bf16)
