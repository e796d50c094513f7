"""Tests for resattn.training.data: loaders (npz, folder, procedural, torchvision), validation, splits."""

from __future__ import annotations

import urllib.error
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

from resattn.errors import ConfigError, DatasetError
from resattn.training.data import (
    DATASET_FORMS,
    DATASETS,
    PROCEDURAL_CLASSES,
    Dataset,
    ImageData,
    load_dataset,
    split_train_val,
    subset_images,
)

CIFAR_NPZ = Path(__file__).resolve().parents[2].parent / "shared/data/cifar10-6k.npz"


@pytest.fixture(scope="module")
def cifar() -> Dataset:
    if not CIFAR_NPZ.is_file():
        pytest.skip(f"real CIFAR-10 sample not found at {CIFAR_NPZ} (../shared/data from the repo root)")
    return load_dataset(f"npz:{CIFAR_NPZ}")


def _indexed(labels: list[int]) -> ImageData:
    """Images that encode their own index in two bytes, so splits can be checked for overlap."""
    n = len(labels)
    x = torch.zeros((n, 1, 2, 2), dtype=torch.uint8)
    idx = torch.arange(n)
    x[:, 0, 0, 0] = (idx // 256).to(torch.uint8)
    x[:, 0, 0, 1] = (idx % 256).to(torch.uint8)
    return ImageData(x, torch.tensor(labels, dtype=torch.int64))


def _ids(data: ImageData) -> list[int]:
    return (data.x[:, 0, 0, 0].long() * 256 + data.x[:, 0, 0, 1].long()).tolist()


# ------------------------------------------------------------------------------------------ containers


def test_image_data_validates_and_moves() -> None:
    data = ImageData(torch.zeros((4, 3, 8, 8), dtype=torch.uint8), torch.arange(4))
    assert len(data) == 4
    assert data.to("cpu").x.device.type == "cpu"
    sub = data.subset([3, 1])
    assert sub.y.tolist() == [3, 1] and sub.x.shape == (2, 3, 8, 8)
    nhwc_view = torch.zeros((2, 8, 8, 3), dtype=torch.uint8).permute(0, 3, 1, 2)
    assert ImageData(nhwc_view, torch.zeros(2, dtype=torch.int64)).x.is_contiguous()
    with pytest.raises(ValueError, match="uint8"):
        ImageData(torch.zeros((4, 3, 8, 8)), torch.arange(4))
    with pytest.raises(ValueError, match="int64"):
        ImageData(torch.zeros((4, 3, 8, 8), dtype=torch.uint8), torch.arange(4, dtype=torch.int32))
    with pytest.raises(ValueError, match="4 images but 3 labels"):
        ImageData(torch.zeros((4, 3, 8, 8), dtype=torch.uint8), torch.arange(3))


# ------------------------------------------------------------------------------------------ npz


def test_npz_cifar_sample(cifar: Dataset) -> None:
    assert cifar.train.x.shape == (5085, 3, 32, 32)
    assert cifar.train.x.dtype == torch.uint8 and cifar.train.x.is_contiguous()
    assert cifar.train.y.dtype == torch.int64 and cifar.train.y.shape == (5085,)
    assert cifar.test is not None and cifar.test.x.shape == (1017, 3, 32, 32)
    assert cifar.classes[0] == "airplane" and cifar.classes[-1] == "truck"
    assert cifar.num_classes == 10 and cifar.in_channels == 3 and cifar.image_size == (32, 32)
    assert int(cifar.train.y.min()) == 0 and int(cifar.train.y.max()) == 9
    # CIFAR-10's well-known statistics, roughly (mean ≈ 0.49/0.48/0.45, std ≈ 0.25).
    assert all(0.4 < m < 0.55 for m in cifar.mean), cifar.mean
    assert all(0.2 < s < 0.3 for s in cifar.std), cifar.std
    # The layout is right: channel 0 (red) of the NCHW tensor is the HWC file's last axis 0.
    with np.load(CIFAR_NPZ) as raw:
        assert torch.equal(cifar.train.x[0, 0], torch.from_numpy(raw["x_train"][0, :, :, 0]))


def _write_npz(path: Path, **arrays: np.ndarray) -> str:
    np.savez(path, **arrays)
    return f"npz:{path}"


def test_npz_layouts(tmp_path: Path) -> None:
    y = np.array([0, 1, 2, 1], dtype=np.int64)
    nchw = np.random.default_rng(0).integers(0, 256, (4, 3, 16, 16), dtype=np.uint8)
    ds = load_dataset(_write_npz(tmp_path / "nchw.npz", x_train=nchw, y_train=y))
    assert torch.equal(ds.train.x, torch.from_numpy(nchw))
    assert ds.test is None and ds.classes == ("0", "1", "2")
    ds = load_dataset(_write_npz(tmp_path / "nhwc.npz", x_train=nchw.transpose(0, 2, 3, 1).copy(), y_train=y))
    assert torch.equal(ds.train.x, torch.from_numpy(nchw))
    gray = nchw[:, 0]
    ds = load_dataset(_write_npz(tmp_path / "gray.npz", x_train=gray, y_train=y.astype(np.uint8),
                                 x_test=gray[:2], y_test=y[:2], classes=np.array(["a", "b", "c", "d"])))
    assert ds.train.x.shape == (4, 1, 16, 16) and ds.in_channels == 1 and ds.train.y.dtype == torch.int64
    assert ds.classes == ("a", "b", "c", "d") and ds.test is not None and len(ds.test) == 2
    native = load_dataset(f"npz:{tmp_path / 'gray.npz'}", image_size=8)  # image_size is for folder: only
    assert native.image_size == (16, 16)


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"y_train": np.zeros(4, np.int64)}, r"missing array 'x_train'"),
        ({"x_train": np.zeros((4, 8, 8, 3), np.float32), "y_train": np.zeros(4, np.int64)},
         r"'x_train' must be uint8.*float32"),
        ({"x_train": np.zeros((4, 8, 8, 3), np.uint8), "y_train": np.zeros(5, np.int64)},
         r"'y_train' has 5 labels but 'x_train' has 4 images"),
        ({"x_train": np.zeros((4, 8, 8, 3), np.uint8), "y_train": np.zeros(4, np.float64)},
         r"'y_train' must hold integer labels"),
        ({"x_train": np.zeros((4, 8, 8, 3), np.uint8), "y_train": np.array([0, -1, 0, 0])},
         r"'y_train' holds a negative label"),
        ({"x_train": np.zeros((4, 8, 8, 3), np.uint8), "y_train": np.zeros(4, np.int64),
          "x_test": np.zeros((2, 8, 8, 3), np.uint8)}, r"x_test and y_test must be given together"),
        ({"x_train": np.zeros((4, 8, 8, 3), np.uint8), "y_train": np.zeros(4, np.int64),
          "x_test": np.zeros((2, 8, 8, 3), np.uint8), "y_test": np.zeros(3, np.int64)},
         r"'y_test' has 3 labels but 'x_test' has 2 images"),
        ({"x_train": np.zeros((4, 8, 8, 3), np.uint8), "y_train": np.array([0, 1, 2, 3]),
          "classes": np.array(["a", "b"])}, r"label 3 out of range for 2 entries in 'classes'"),
        ({"x_train": np.zeros((4, 8), np.uint8), "y_train": np.zeros(4, np.int64)}, r"'x_train' must be"),
    ],
)
def test_npz_validation_names_file_and_array(
    tmp_path: Path, arrays: dict[str, np.ndarray], match: str
) -> None:
    path = tmp_path / "bad.npz"
    with pytest.raises(DatasetError, match=match) as info:
        load_dataset(_write_npz(path, **arrays))
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_npz_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="npz file not found"):
        load_dataset(f"npz:{tmp_path / 'nope.npz'}")
    with pytest.raises(DatasetError, match="names no path"):
        load_dataset("npz:")


# ------------------------------------------------------------------------------------------ procedural


def test_procedural_is_deterministic_and_balanced() -> None:
    a = load_dataset("procedural:300")
    b = load_dataset("procedural:300")
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.train.y, b.train.y)
    assert a.test is not None and b.test is not None and torch.equal(a.test.x, b.test.x)
    assert a.classes == PROCEDURAL_CLASSES and a.num_classes == 10
    assert a.train.x.shape == (300, 3, 32, 32) and a.train.x.dtype == torch.uint8
    assert torch.bincount(a.train.y, minlength=10).tolist() == [30] * 10
    assert len(a.test) == 60 and set(a.test.y.tolist()) == set(range(10))
    assert not torch.equal(a.train.x[:60], a.test.x)  # the test split is drawn separately
    # Images vary: not a constant per class.
    first = a.train.x[a.train.y == 0].float()
    assert first.std(dim=0).mean() > 10


def test_procedural_size_validation() -> None:
    with pytest.raises(DatasetError, match="N must be an integer"):
        load_dataset("procedural:abc")
    with pytest.raises(DatasetError, match="N must be an integer"):
        load_dataset("procedural:5")


# ------------------------------------------------------------------------------------------ names


def test_unknown_name_lists_valid_forms() -> None:
    with pytest.raises(DatasetError) as info:
        load_dataset("imagenet-21k")
    message = str(info.value)
    assert "imagenet-21k" in message
    for form in DATASET_FORMS:
        assert form in message
    assert set(DATASETS) == {"cifar10", "cifar100", "svhn", "fashionmnist"}


def test_torchvision_download_failure_is_helpful(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets as tvd

    def offline(self: object) -> None:
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(tvd.CIFAR10, "download", offline)
    with pytest.raises(DatasetError) as info:
        load_dataset("cifar10", data_dir=tmp_path)
    message = str(info.value)
    assert "cannot download cifar10" in message and "data.data_dir=DIR" in message and "npz:PATH" in message
    assert "\n" not in message


def test_torchvision_missing_files_without_download(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"svhn files not found .* download is off.*data.data_dir=DIR.*npz:PATH"):
        load_dataset("svhn", data_dir=tmp_path, download=False)


def test_torchvision_conversion_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets as tvd

    calls: list[bool] = []

    class FakeCifar:
        classes: ClassVar[list[str]] = [f"c{i}" for i in range(10)]

        def __init__(self, root: str, train: bool, download: bool):
            calls.append(train)
            n = 20 if train else 10
            rng = np.random.default_rng(int(train))
            self.data = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            self.targets = [i % 10 for i in range(n)]

    monkeypatch.setattr(tvd, "CIFAR10", FakeCifar)
    monkeypatch.setenv("RESATTN_DATA_DIR", str(tmp_path))
    ds = load_dataset("CIFAR10")
    assert calls == [True, False]
    assert ds.train.x.shape == (20, 3, 32, 32) and ds.test is not None and len(ds.test) == 10
    assert ds.classes == tuple(FakeCifar.classes)
    ref = FakeCifar(str(tmp_path), True, False)
    assert torch.equal(ds.train.x, torch.from_numpy(ref.data).permute(0, 3, 1, 2))
    assert (tmp_path / "resattn-cifar10.pt").is_file()
    calls.clear()
    again = load_dataset("cifar10")  # converted once: now from the cache
    assert calls == [] and torch.equal(again.train.x, ds.train.x)


# ------------------------------------------------------------------------------------------ folder


def _write_folder(root: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("test", 1)):
        for cls, mode in (("cat", "RGB"), ("dog", "L")):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                shape = (20, 24, 3) if mode == "RGB" else (40, 30)
                pixels = rng.integers(0, 256, shape, dtype=np.uint8)  # 3-D: RGB, 2-D: grayscale
                Image.fromarray(pixels).save(folder / f"{i}.png")


def test_folder_dataset(tmp_path: Path) -> None:
    _write_folder(tmp_path / "imgs")
    ds = load_dataset(f"folder:{tmp_path / 'imgs'}")
    assert ds.classes == ("cat", "dog")
    assert ds.train.x.shape == (6, 3, 32, 32) and ds.train.x.dtype == torch.uint8
    assert sorted(ds.train.y.tolist()) == [0, 0, 0, 1, 1, 1]
    assert ds.test is not None and ds.test.x.shape == (2, 3, 32, 32)
    small = load_dataset(f"folder:{tmp_path / 'imgs'}", image_size=16)
    assert small.image_size == (16, 16)
    # Without train/ and test/ subfolders the folder is the training split.
    only = load_dataset(f"folder:{tmp_path / 'imgs' / 'train'}")
    assert only.test is None and len(only.train) == 6


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="image folder not found"):
        load_dataset(f"folder:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="image folder"):
        load_dataset(f"folder:{tmp_path / 'empty'}")


# ------------------------------------------------------------------------------------------ splits


def test_split_train_val_deterministic_disjoint_stratified() -> None:
    labels = [0] * 500 + [1] * 300 + [2] * 200
    data = _indexed(labels)
    train_a, val_a = split_train_val(data, 0.2, seed=1)
    train_b, val_b = split_train_val(data, 0.2, seed=1)
    assert _ids(val_a) == _ids(val_b) and _ids(train_a) == _ids(train_b)
    _, val_c = split_train_val(data, 0.2, seed=2)
    assert _ids(val_c) != _ids(val_a)
    assert len(val_a) == 200 and len(train_a) == 800
    assert set(_ids(train_a)).isdisjoint(_ids(val_a))
    assert sorted(_ids(train_a) + _ids(val_a)) == list(range(1000))
    assert torch.bincount(val_a.y).tolist() == [100, 60, 40]
    # Labels travel with their images.
    assert all(labels[i] == y for i, y in zip(_ids(val_a), val_a.y.tolist(), strict=True))


def test_split_train_val_uneven_classes_keeps_total() -> None:
    data = _indexed([0] * 7 + [1] * 5 + [2] * 3)
    train, val = split_train_val(data, 1 / 3, seed=0)
    assert len(val) == 5 and len(train) == 10
    assert set(val.y.tolist()) == {0, 1, 2}


@pytest.mark.parametrize("fraction", [0, 1, 0.0, 1.0, -0.1, 1.5, float("nan"), True, "0.2"])
def test_split_train_val_rejects_bad_fraction(fraction: object) -> None:
    with pytest.raises(ConfigError, match="val_fraction"):
        split_train_val(_indexed([0, 1] * 10), fraction, seed=0)  # type: ignore[arg-type]


def test_split_train_val_rejects_empty_part() -> None:
    with pytest.raises(ConfigError, match="empty validation"):
        split_train_val(_indexed([0, 1, 0]), 0.1, seed=0)
    with pytest.raises(ConfigError, match="empty training"):
        split_train_val(_indexed([0, 1, 0]), 0.9, seed=0)


def test_subset_images() -> None:
    data = _indexed([i % 10 for i in range(200)])
    assert subset_images(data, 200, seed=0) is data
    assert subset_images(data, 10_000, seed=0) is data
    a, b = subset_images(data, 50, seed=3), subset_images(data, 50, seed=3)
    assert len(a) == 50 and len(set(_ids(a))) == 50 and _ids(a) == _ids(b)
    assert _ids(subset_images(data, 50, seed=4)) != _ids(a)
    assert torch.bincount(a.y).tolist() == [5] * 10
    with pytest.raises(ConfigError, match="train_images"):
        subset_images(data, 0, seed=0)
