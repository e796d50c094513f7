"""Tests for the fast proxy loop in resattn.training.loop (all on the CPU)."""

from __future__ import annotations

import math
from itertools import pairwise
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import resattn
from resattn import BlockSpec, NetSpec
from resattn.errors import ConfigError
from resattn.training.config import TrainConfig
from resattn.training.data import Dataset, ImageData, load_dataset, subset_images
from resattn.training.loop import (
    EpochResult,
    GpuBatches,
    OutOfMemory,
    TrainingDiverged,
    augment,
    evaluate,
    lr_factor,
    param_groups,
    resolve_device,
    train,
)

CIFAR_NPZ = Path(__file__).resolve().parents[2].parent / "shared/data/cifar10-6k.npz"
TINY = NetSpec(layers=(BlockSpec("plain", 32, 2), BlockSpec("residual", 64, 2)), stem_channels=16)


@pytest.fixture(scope="module")
def cifar() -> Dataset:
    if not CIFAR_NPZ.is_file():
        pytest.skip(f"real CIFAR-10 sample not found at {CIFAR_NPZ} (../shared/data from the repo root)")
    return load_dataset(f"npz:{CIFAR_NPZ}")


def _random_data(n: int, classes: int = 10, size: int = 16, seed: int = 0) -> ImageData:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen)
    return ImageData(x, torch.arange(n) % classes)


def _tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return resattn.build(TINY)


MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


# ------------------------------------------------------------------------------------------ augmentation


def _asymmetric(n: int) -> torch.Tensor:
    img = torch.arange(3 * 8 * 8, dtype=torch.int64).reshape(1, 3, 8, 8) % 251
    return img.to(torch.uint8).expand(n, 3, 8, 8).contiguous()


def test_augment_shape_dtype_and_per_sample_randomness() -> None:
    x = _asymmetric(64)
    gen = torch.Generator().manual_seed(0)
    out1 = augment(x, crop_padding=4, flip=True, generator=gen)
    out2 = augment(x, crop_padding=4, flip=True, generator=gen)
    assert out1.shape == x.shape and out1.dtype == torch.uint8
    assert len({tuple(o.flatten().tolist()) for o in out1}) > 10  # per sample, not per batch
    assert not torch.equal(out1, out2)  # and different across calls
    assert not torch.equal(out1[0], out2[0]) or not torch.equal(out1[1], out2[1])
    assert torch.equal(x, _asymmetric(64))  # the input is untouched


@pytest.mark.parametrize("pad_mode", ["reflect", "zeros"])
def test_augment_is_a_padded_crop_or_its_mirror(pad_mode: str) -> None:
    p = 3
    x = _asymmetric(24)
    out = augment(x, crop_padding=p, flip=True, generator=torch.Generator().manual_seed(1), pad_mode=pad_mode)
    padded = F.pad(x[:1].float(), (p, p, p, p), mode="reflect" if pad_mode == "reflect" else "constant")[0]
    crops = [padded[:, i : i + 8, j : j + 8] for i in range(2 * p + 1) for j in range(2 * p + 1)]
    candidates = crops + [c.flip(-1) for c in crops]
    for sample in out.float():
        assert any(torch.equal(sample, c) for c in candidates)


def test_flip_actually_flips() -> None:
    x = _asymmetric(64)
    out = augment(x, crop_padding=0, flip=True, generator=torch.Generator().manual_seed(0))
    same = [torch.equal(o, x[0]) for o in out]
    mirrored = [torch.equal(o, x[0].flip(-1)) for o in out]
    assert all(s or m for s, m in zip(same, mirrored, strict=True))
    assert 10 < sum(mirrored) < 54
    assert torch.equal(augment(x, crop_padding=0, flip=False), x)


def test_gpu_batches_order_normalisation_and_no_singletons() -> None:
    data = _random_data(65)
    batches = GpuBatches(data, batch_size=32, device="cpu", mean=MEAN, std=STD, shuffle=True, seed=5)
    sizes = [y.shape[0] for _, y in batches]
    assert sizes == [32, 32] and len(batches) == 2 and batches.num_images == 64
    a, b = (GpuBatches(data, batch_size=32, device="cpu", mean=MEAN, std=STD, shuffle=True, seed=5,
                       crop_padding=2, flip=True) for _ in range(2))
    pass1_a, pass1_b = next(iter(a)), next(iter(b))
    assert torch.equal(pass1_a[1], pass1_b[1]) and torch.equal(pass1_a[0], pass1_b[0])  # seeded
    pass2_a = next(iter(a))
    assert not torch.equal(pass2_a[1], pass1_a[1])  # a new permutation every pass
    plain = GpuBatches(data, batch_size=32, device="cpu", mean=MEAN, std=STD, shuffle=False)
    assert [y.shape[0] for _, y in plain] == [32, 32, 1]  # evaluation keeps every image
    x, y = next(iter(plain))
    assert x.dtype == torch.float32 and torch.equal(y, data.y[:32])
    expected = (data.x[:32].float() / 255 - 0.5) / 0.25
    assert torch.allclose(x, expected, atol=1e-5)


# ------------------------------------------------------------------------------------------ pieces


def test_lr_schedules() -> None:
    onecycle = [lr_factor(s, 100, "onecycle", 0.2) for s in range(100)]
    assert onecycle[0] == pytest.approx(1 / 20) and onecycle[19] == pytest.approx(1.0)
    assert max(onecycle) == pytest.approx(1.0) and onecycle.index(max(onecycle)) == 19
    assert all(a < b for a, b in pairwise(onecycle[:20]))  # warmup rises
    assert all(a > b for a, b in pairwise(onecycle[20:]))  # then decays
    assert onecycle[-1] == pytest.approx(1 / 80) and onecycle[60] == pytest.approx(0.5)
    cosine = [lr_factor(s, 100, "cosine", 0.2) for s in range(100)]
    assert cosine[:20] == pytest.approx(onecycle[:20])
    assert cosine[20] == pytest.approx(1.0) and cosine[60] == pytest.approx(0.5) and cosine[-1] < 0.01
    assert {lr_factor(s, 100, "constant", 0.2) for s in range(100)} == {1.0}
    assert lr_factor(0, 10, "onecycle", 0.0) == pytest.approx(1.0)


def test_train_applies_the_schedule_per_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    import resattn.training.loop as train_module

    seen: list[float] = []
    real = train_module.set_lr
    monkeypatch.setattr(train_module, "set_lr", lambda opt, lr: (seen.append(lr), real(opt, lr)))
    config = TrainConfig(epochs=2, batch_size=8, lr=0.1, warmup_fraction=0.25, crop_padding=0)
    train(_tiny_model(), _random_data(40), None, config, device="cpu", mean=MEAN, std=STD)
    assert len(seen) == 10  # 5 steps per epoch, 2 epochs
    assert seen == pytest.approx([0.1 * lr_factor(s, 10, "onecycle", 0.25) for s in range(10)])


def test_weight_decay_groups_exclude_1d_params() -> None:
    model = resattn.build(resattn.presets.seed_pattern4())
    decay, no_decay = param_groups(model, 5e-4)
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim < 2 for p in no_decay["params"])
    names = {id(p): n for n, p in model.named_parameters()}
    excluded = {names[id(p)] for p in no_decay["params"]}
    assert "layers.p4_1.branch_op.gamma" in excluded and "head.bias" in excluded
    assert "stem.norm.weight" in excluded and "head.weight" not in excluded
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device(name)


# ------------------------------------------------------------------------------------------ training


def test_short_training_on_real_cifar_beats_chance(cifar: Dataset) -> None:
    assert cifar.test is not None
    train_part = subset_images(cifar.train, 1000, seed=0)
    val_part = subset_images(cifar.test, 500, seed=0)
    epochs: list[EpochResult] = []
    config = TrainConfig(epochs=2, batch_size=32, lr=0.1, seed=0)
    result = train(_tiny_model(), train_part, val_part, config, device="cpu", mean=cifar.mean,
                   std=cifar.std, on_epoch=epochs.append)
    assert [e.epoch for e in epochs] == [1, 2] and result.history == epochs
    assert result.epochs_run == 2 and result.device == "cpu"
    assert result.val_accuracy == epochs[-1].val_accuracy
    assert result.best_val_accuracy == max(e.val_accuracy or 0 for e in epochs)
    assert result.val_accuracy is not None and result.val_accuracy > 0.2  # chance is 0.1
    assert all(math.isfinite(e.train_loss) and e.images_per_second > 0 and e.seconds > 0 for e in epochs)
    assert epochs[1].train_loss < epochs[0].train_loss
    assert result.images_per_second > 0 and result.seconds >= sum(e.seconds for e in epochs) * 0.99


def test_procedural_dataset_is_learnable_quickly() -> None:
    ds = load_dataset("procedural")  # 6000 training images
    assert ds.test is not None and len(ds.train) == 6000
    config = TrainConfig(epochs=2, batch_size=64, lr=0.1, seed=0)
    result = train(_tiny_model(), ds.train, subset_images(ds.test, 500, 0), config, device="cpu",
                   mean=ds.mean, std=ds.std)
    # Clearly above chance (0.1) after two epochs of a 65k-parameter net, far from solved.
    assert result.val_accuracy is not None and 0.3 < result.val_accuracy < 0.95


def test_on_epoch_exceptions_propagate_unchanged() -> None:
    class Stop(Exception):
        pass

    calls: list[int] = []

    def on_epoch(result: EpochResult) -> None:
        calls.append(result.epoch)
        raise Stop("pruned")

    config = TrainConfig(epochs=3, batch_size=16, crop_padding=0)
    with pytest.raises(Stop, match="pruned"):
        train(_tiny_model(), _random_data(32), _random_data(16), config, device="cpu", mean=MEAN, std=STD,
              on_epoch=on_epoch)
    assert calls == [1]

    def interrupt(result: EpochResult) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_tiny_model(), _random_data(32), None, config, device="cpu", mean=MEAN, std=STD,
              on_epoch=interrupt)


def test_epoch_results_count_the_images_trained() -> None:
    # 33 images in batches of 16: the trailing single image is dropped (no batch-norm singleton).
    config = TrainConfig(epochs=2, batch_size=16, crop_padding=0)
    result = train(_tiny_model(), _random_data(33), None, config, device="cpu", mean=MEAN, std=STD)
    assert [r.images for r in result.history] == [32, 32]
    result = train(_tiny_model(), _random_data(34), None, config, device="cpu", mean=MEAN, std=STD)
    assert [r.images for r in result.history] == [34, 34]


def test_nan_loss_raises_training_diverged_at_first_step() -> None:
    model = _tiny_model()
    model.register_forward_hook(lambda _m, _i, out: out * float("nan"))
    config = TrainConfig(epochs=2, batch_size=16)
    with pytest.raises(TrainingDiverged, match="non-finite loss nan at epoch 1 step 1") as info:
        train(model, _random_data(64), None, config, device="cpu", mean=MEAN, std=STD)
    assert info.value.epoch == 1 and info.value.step == 1 and math.isnan(info.value.loss)
    assert isinstance(info.value, RuntimeError)


def test_out_of_memory_is_translated(monkeypatch: pytest.MonkeyPatch) -> None:
    import resattn.training.loop as train_module

    def boom(*args: object, **kwargs: object) -> torch.Tensor:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train_module, "train_step", boom)
    model = _tiny_model()
    with pytest.raises(OutOfMemory, match="out of memory on cpu at epoch 1: CUDA out of memory"):
        train(model, _random_data(32), None, TrainConfig(epochs=1, batch_size=16), device="cpu",
              mean=MEAN, std=STD)
    assert all(p.grad is None for p in model.parameters())


def test_train_needs_two_images() -> None:
    with pytest.raises(ConfigError, match="at least 2 training images"):
        train(_tiny_model(), _random_data(1), None, TrainConfig(epochs=1), device="cpu", mean=MEAN, std=STD)


def test_evaluate_restores_mode_and_counts() -> None:
    model = _tiny_model()
    model.train()
    data = _random_data(50)
    acc = evaluate(model, data, device="cpu", mean=MEAN, std=STD, batch_size=16)
    assert 0.0 <= acc <= 1.0 and model.training
    model.eval()
    batches = GpuBatches(data, batch_size=50, device="cpu", mean=MEAN, std=STD, shuffle=False)
    x, y = next(iter(batches))
    with torch.no_grad():
        expected = (model(x).argmax(1) == y).float().mean().item()
    assert acc == pytest.approx(expected)
