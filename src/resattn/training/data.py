"""Datasets as uint8 tensors (DESIGN.md §5: the whole split lives on the device).

A dataset is loaded once into :class:`ImageData` (uint8 ``(N, C, H, W)`` images, int64 labels) and
wrapped in a :class:`Dataset` with its class names and per-channel mean/std. Sources
(:func:`load_dataset`):

- ``cifar10``, ``cifar100``, ``svhn``, ``fashionmnist``: torchvision, downloaded into ``data_dir``
  (default ``$RESATTN_DATA_DIR`` or ``~/.cache/resattn/data``) and converted once to a cached tensor file;
- ``npz:PATH``: arrays ``x_train``, ``y_train`` (and optional ``x_test``, ``y_test``, ``classes``);
- ``folder:PATH``: a torchvision ``ImageFolder`` (``PATH/train`` and ``PATH/test`` if present);
- ``procedural`` / ``procedural:N``: a built-in, deterministic 10-class shapes-and-textures set for
  offline demos.

:func:`split_train_val` and :func:`subset_images` carve the validation split and the proxy budget
out of the training split, seeded and stratified per class.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resattn.errors import ConfigError, DatasetError
from resattn.model.spec import MAX_CLASSES
from resattn.training.config import DATASET_FORMS, DATASETS

__all__ = [
    "DATASETS",
    "DATASET_FORMS",
    "PROCEDURAL_CLASSES",
    "Dataset",
    "ImageData",
    "default_data_dir",
    "load_dataset",
    "split_train_val",
    "subset_images",
]

log = logging.getLogger(__name__)

#: The class names of the ``procedural`` dataset, in label order.
PROCEDURAL_CLASSES: tuple[str, ...] = (
    "horizontal_stripes", "vertical_stripes", "diagonal_stripes", "checkerboard", "disc",
    "square", "ring", "cross", "triangle", "dots",
)
PROCEDURAL_DEFAULT_SIZE = 6000
DATA_DIR_ENV = "RESATTN_DATA_DIR"
_CACHE_FORMAT = 1


# ------------------------------------------------------------------------------------------ containers


@dataclass(frozen=True)
class ImageData:
    """Images and labels of one split: ``x`` uint8 ``(N, C, H, W)`` contiguous, ``y`` int64 ``(N,)``."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.x, torch.Tensor) or self.x.dtype != torch.uint8 or self.x.dim() != 4:
            raise ValueError(f"ImageData.x must be a uint8 tensor (N, C, H, W), got {_describe(self.x)}")
        if not isinstance(self.y, torch.Tensor) or self.y.dtype != torch.int64 or self.y.dim() != 1:
            raise ValueError(f"ImageData.y must be an int64 tensor (N,), got {_describe(self.y)}")
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"ImageData has {self.x.shape[0]} images but {self.y.shape[0]} labels")
        if self.x.device != self.y.device:
            raise ValueError(f"ImageData.x is on {self.x.device} but y on {self.y.device}")
        if not self.x.is_contiguous():
            object.__setattr__(self, "x", self.x.contiguous())
        if not self.y.is_contiguous():
            object.__setattr__(self, "y", self.y.contiguous())

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def device(self) -> torch.device:
        """Where the tensors live."""
        return self.x.device

    def to(self, device: torch.device | str) -> ImageData:
        """The same split on ``device`` (no copy when it is already there)."""
        return ImageData(self.x.to(device), self.y.to(device))

    def subset(self, indices: torch.Tensor | Sequence[int] | np.ndarray) -> ImageData:
        """The images at ``indices`` (in that order), on the same device."""
        idx = torch.as_tensor(np.asarray(indices) if not isinstance(indices, torch.Tensor) else indices)
        idx = idx.to(device=self.x.device, dtype=torch.long).reshape(-1)
        return ImageData(self.x.index_select(0, idx), self.y.index_select(0, idx))


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset. ``mean``/``std`` are per channel in [0, 1] pixel units, from the training split."""

    name: str
    train: ImageData
    test: ImageData | None
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.train.x.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the images."""
        return int(self.train.x.shape[2]), int(self.train.x.shape[3])


# ------------------------------------------------------------------------------------------ loading


def default_data_dir() -> Path:
    """``$RESATTN_DATA_DIR`` if set, else ``~/.cache/resattn/data``."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "resattn" / "data"


def load_dataset(
    name: str,
    *,
    data_dir: str | Path | None = None,
    download: bool = True,
    image_size: int | None = None,
) -> Dataset:
    """Load a dataset by name or form (see :data:`DATASET_FORMS`).

    ``image_size`` is the side ``folder:`` images are resized to (default 32); the other sources
    keep their native size and ignore it. Raises :class:`DatasetError` with a one-line message
    when the dataset cannot be loaded.
    """
    if not isinstance(name, str) or not name.strip():
        raise DatasetError(f"no dataset given; valid forms: {', '.join(DATASET_FORMS)}")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                   or not 4 <= image_size <= 1024):
        raise DatasetError(f"image_size must be an integer in [4, 1024], got {image_size!r}")
    text = name.strip()
    kind, sep, arg = text.partition(":")
    kind = kind.lower()
    if kind == "npz" and sep:
        path = _nonempty_path(arg, text)
        x_train, y_train, x_test, y_test, classes = _load_npz(path)
    elif kind == "folder" and sep:
        path = _nonempty_path(arg, text)
        x_train, y_train, x_test, y_test, classes = _load_folder(path, image_size or 32)
    elif kind == "procedural":
        n = _procedural_size(arg if sep else "", text)
        x_train, y_train, x_test, y_test, classes = _procedural(n)
    elif text.lower() in DATASETS:
        root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
        x_train, y_train, x_test, y_test, classes = _load_torchvision(text.lower(), root, download)
    else:
        raise DatasetError(f"unknown dataset {text!r}; valid forms: {', '.join(DATASET_FORMS)}")

    train = ImageData(x_train, y_train)
    test = ImageData(x_test, y_test) if x_test is not None and y_test is not None else None
    if len(train) == 0:
        raise DatasetError(f"dataset {text!r} has no training images")
    if not 1 <= len(classes) <= MAX_CLASSES:
        raise DatasetError(f"dataset {text!r} has {len(classes)} classes; at most {MAX_CLASSES} are supported")
    mean, std = _mean_std(train.x)
    dataset = Dataset(name=text, train=train, test=test, classes=tuple(classes), mean=mean, std=std)
    log.info(
        "dataset %s: %d train, %s test images, %d classes, %s×%s×%s", text, len(train),
        len(test) if test is not None else "no", dataset.num_classes, dataset.in_channels,
        *dataset.image_size,
    )
    return dataset


_Arrays = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None, tuple[str, ...]]


def _nonempty_path(arg: str, text: str) -> Path:
    if not arg.strip():
        raise DatasetError(f"{text!r} names no path; write e.g. npz:data/images.npz or folder:data/images")
    return Path(arg.strip()).expanduser()


def _procedural_size(arg: str, text: str) -> int:
    if not arg:
        return PROCEDURAL_DEFAULT_SIZE
    try:
        n = int(arg)
    except ValueError:
        n = -1
    if not 10 <= n <= 1_000_000:
        raise DatasetError(f"{text!r}: N must be an integer in [10, 1000000] (training images)")
    return n


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor | np.ndarray):
        return f"{type(value).__name__} of dtype {value.dtype} and shape {tuple(value.shape)}"
    return type(value).__name__


# --- torchvision


def _load_torchvision(name: str, root: Path, download: bool) -> _Arrays:
    cache = root / f"resattn-{name}.pt"
    if cache.is_file():
        try:
            blob = torch.load(cache, weights_only=True)
            if blob.get("format") == _CACHE_FORMAT:
                log.debug("loaded %s from cache %s", name, cache)
                classes = tuple(blob["classes"])
                return blob["x_train"], blob["y_train"], blob["x_test"], blob["y_test"], classes
        except Exception as err:  # a corrupt cache is rebuilt from torchvision's files
            log.warning("ignoring unreadable dataset cache %s (%s)", cache, err)

    import torchvision.datasets as tvd

    hint = (f"point data.data_dir at a folder holding torchvision's {name} files (--set data.data_dir=DIR), "
            "or use --dataset npz:PATH or folder:PATH")
    splits = []
    for train in (True, False):
        try:
            if name == "cifar10":
                ds: Any = tvd.CIFAR10(str(root), train=train, download=download)
            elif name == "cifar100":
                ds = tvd.CIFAR100(str(root), train=train, download=download)
            elif name == "svhn":
                ds = tvd.SVHN(str(root), split="train" if train else "test", download=download)
            else:
                ds = tvd.FashionMNIST(str(root), train=train, download=download)
        except Exception as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            if download:
                raise DatasetError(
                    f"cannot download {name} into {root} ({type(err).__name__}: {reason}); "
                    f"without network, {hint}"
                ) from None
            raise DatasetError(
                f"{name} files not found in {root} and download is off ({reason}); {hint}"
            ) from None
        splits.append(ds)

    def arrays(ds: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if name == "svhn":
            x = torch.from_numpy(np.ascontiguousarray(ds.data))  # (N, 3, H, W)
            y = torch.as_tensor(np.asarray(ds.labels), dtype=torch.int64)
        elif name == "fashionmnist":
            x = torch.as_tensor(ds.data, dtype=torch.uint8).unsqueeze(1)  # (N, 1, 28, 28)
            y = torch.as_tensor(ds.targets, dtype=torch.int64)
        else:
            x = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2)  # HWC -> CHW
            y = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
        return x.contiguous(), y

    x_train, y_train = arrays(splits[0])
    x_test, y_test = arrays(splits[1])
    classes = tuple(getattr(splits[0], "classes", None) or (str(i) for i in range(10)))
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".pt.tmp")
        torch.save({"format": _CACHE_FORMAT, "x_train": x_train, "y_train": y_train, "x_test": x_test,
                    "y_test": y_test, "classes": list(classes)}, tmp)
        tmp.replace(cache)
    except OSError as err:  # a read-only data dir still works, just without the cache
        log.warning("could not write dataset cache %s (%s)", cache, err)
    return x_train, y_train, x_test, y_test, classes


# --- npz


def _load_npz(path: Path) -> _Arrays:
    if not path.is_file():
        raise DatasetError(f"npz file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except Exception as err:
        raise DatasetError(f"{path}: cannot read as an npz file ({type(err).__name__}: {err})") from None
    for key in ("x_train", "y_train"):
        if key not in arrays:
            found = ", ".join(sorted(arrays)) or "none"
            raise DatasetError(f"{path}: missing array {key!r} (found: {found})")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DatasetError(f"{path}: x_test and y_test must be given together")
    x_train = _npz_images(path, "x_train", arrays["x_train"])
    y_train = _npz_labels(path, "y_train", arrays["y_train"], len(x_train))
    x_test = y_test = None
    if "x_test" in arrays:
        x_test = _npz_images(path, "x_test", arrays["x_test"])
        y_test = _npz_labels(path, "y_test", arrays["y_test"], len(x_test))
        if x_test.shape[1:] != x_train.shape[1:]:
            raise DatasetError(
                f"{path}: x_test images are {tuple(x_test.shape[1:])} (C, H, W) but x_train images "
                f"{tuple(x_train.shape[1:])}"
            )
    top = int(max(y_train.max().item() if len(y_train) else -1,
                  y_test.max().item() if y_test is not None and len(y_test) else -1))
    if top >= MAX_CLASSES:
        key = "y_train" if len(y_train) and int(y_train.max()) == top else "y_test"
        raise DatasetError(f"{path}: array {key!r} holds label {top}; labels must be class indices from 0 to "
                           f"{MAX_CLASSES - 1} (a network has at most {MAX_CLASSES} classes)")
    if "classes" in arrays:
        raw = arrays["classes"]
        if raw.ndim != 1 or raw.dtype.kind not in "USi":
            raise DatasetError(f"{path}: array 'classes' must be 1-D strings, got {_describe(raw)}")
        classes = tuple(str(c) for c in raw.tolist())
        if top >= len(classes):
            raise DatasetError(f"{path}: label {top} out of range for {len(classes)} entries in 'classes'")
    else:
        classes = tuple(str(i) for i in range(top + 1))
    return x_train, y_train, x_test, y_test, classes


def _npz_images(path: Path, key: str, a: np.ndarray) -> torch.Tensor:
    if a.dtype != np.uint8:
        raise DatasetError(f"{path}: array {key!r} must be uint8 images, got dtype {a.dtype}")
    if a.ndim == 3:  # grayscale (N, H, W)
        a = a[:, None]
    elif a.ndim == 4:
        if a.shape[3] <= 4 < a.shape[1]:  # NHWC
            a = a.transpose(0, 3, 1, 2)
        elif not a.shape[1] <= 4 < a.shape[3]:
            raise DatasetError(
                f"{path}: array {key!r} has shape {a.shape}; cannot tell NHWC from NCHW "
                "(expected 1, 3 or 4 channels and images larger than 4 pixels)"
            )
    else:
        raise DatasetError(
            f"{path}: array {key!r} must be (N, H, W, C), (N, C, H, W) or (N, H, W), got shape {a.shape}"
        )
    if a.shape[0] == 0:
        raise DatasetError(f"{path}: array {key!r} holds no images")
    return torch.from_numpy(np.ascontiguousarray(a))


def _npz_labels(path: Path, key: str, a: np.ndarray, n: int) -> torch.Tensor:
    if a.dtype.kind not in "iu":
        raise DatasetError(f"{path}: array {key!r} must hold integer labels, got dtype {a.dtype}")
    if a.ndim != 1:
        raise DatasetError(f"{path}: array {key!r} must be 1-D, got shape {a.shape}")
    if a.shape[0] != n:
        images = "x_" + key.removeprefix("y_")
        raise DatasetError(f"{path}: array {key!r} has {a.shape[0]} labels but {images!r} has {n} images")
    if a.size and int(a.min()) < 0:
        raise DatasetError(f"{path}: array {key!r} holds a negative label ({int(a.min())})")
    return torch.from_numpy(a.astype(np.int64))


# --- folder


def _load_folder(path: Path, size: int) -> _Arrays:
    if not path.is_dir():
        raise DatasetError(f"image folder not found: {path}")
    train_dir, test_dir = path / "train", path / "test"
    if not train_dir.is_dir():
        train_dir, test_dir = path, None
    elif not test_dir.is_dir():
        test_dir = None
    x_train, y_train, classes = _read_image_folder(train_dir, size, None)
    x_test = y_test = None
    if test_dir is not None:
        x_test, y_test, _ = _read_image_folder(test_dir, size, classes)
    return x_train, y_train, x_test, y_test, classes


def _read_image_folder(
    root: Path, size: int, classes: tuple[str, ...] | None
) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    from PIL import Image
    from torchvision.datasets import ImageFolder

    try:
        folder = ImageFolder(str(root))
    except (FileNotFoundError, OSError) as err:
        raise DatasetError(
            f"image folder {root}: {err} (expected one subfolder of images per class)"
        ) from None
    if classes is None:
        classes = tuple(folder.classes)
        remap = list(range(len(classes)))
    else:
        unknown = [c for c in folder.classes if c not in classes]
        if unknown:
            raise DatasetError(f"image folder {root}: classes {unknown} are not in the training folder")
        remap = [classes.index(c) for c in folder.classes]
    images = np.empty((len(folder.samples), size, size, 3), dtype=np.uint8)
    labels = np.empty(len(folder.samples), dtype=np.int64)
    for i, (file, target) in enumerate(folder.samples):
        try:
            with Image.open(file) as im:
                rgb = im.convert("RGB")
                if rgb.size != (size, size):
                    rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
                images[i] = np.asarray(rgb, dtype=np.uint8)
        except OSError as err:
            raise DatasetError(f"image folder {root}: cannot read {file} ({err})") from None
        labels[i] = remap[target]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    return x, torch.from_numpy(labels), classes


# --- procedural


def _procedural(n_train: int, seed: int = 0) -> _Arrays:
    """Train and test splits of the built-in shapes-and-textures dataset (deterministic)."""
    n_test = max(10, n_train // 5)
    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    x_train, y_train = _render_procedural(n_train, train_rng)
    x_test, y_test = _render_procedural(n_test, test_rng)
    return x_train, y_train, x_test, y_test, PROCEDURAL_CLASSES


def _render_procedural(n: int, rng: np.random.Generator, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images of 10 classes: a shape or texture at a random position, scale and colour, plus noise."""
    labels = rng.permutation(np.arange(n) % len(PROCEDURAL_CLASSES))
    grid = np.arange(size, dtype=np.float32)
    yy, xx = grid[None, :, None], grid[None, None, :]

    def col(a: np.ndarray) -> np.ndarray:
        return a.astype(np.float32)[:, None, None]

    cx, cy = col(rng.uniform(9, size - 9, n)), col(rng.uniform(9, size - 9, n))
    half = col(rng.uniform(5.0, 10.0, n))  # half-extent of the shape / texture patch
    period = col(rng.uniform(3.5, 7.5, n))
    phase_a, phase_b = col(rng.uniform(0, 2 * np.pi, n)), col(rng.uniform(0, 2 * np.pi, n))
    thick = col(rng.uniform(1.2, 2.4, n))
    dx, dy = xx - cx, yy - cy
    box = (np.abs(dx) <= half) & (np.abs(dy) <= half)
    r = np.sqrt(dx * dx + dy * dy)
    two_pi = np.float32(2 * np.pi)
    masks = np.zeros((n, size, size), dtype=bool)
    for c in range(len(PROCEDURAL_CLASSES)):
        s = labels == c
        if not s.any():
            continue
        params = (box, dx, dy, half, period, phase_a, phase_b, thick, r)
        b, x_, y_, h, p, pa, pb, t, rr = (v[s] for v in params)
        if c == 0:
            m = b & (np.sin(two_pi * y_ / p + pa) > 0)
        elif c == 1:
            m = b & (np.sin(two_pi * x_ / p + pa) > 0)
        elif c == 2:
            m = b & (np.sin(two_pi * (x_ + y_) / (p * np.float32(1.4142)) + pa) > 0)
        elif c == 3:
            m = b & (np.sin(two_pi * x_ / p + pa) * np.sin(two_pi * y_ / p + pb) > 0)
        elif c == 4:
            m = rr <= h
        elif c == 5:
            m = (np.abs(x_) <= 0.85 * h) & (np.abs(y_) <= 0.85 * h)
        elif c == 6:
            m = np.abs(rr - h) <= t
        elif c == 7:
            m = ((np.abs(x_) <= t) & (np.abs(y_) <= h)) | ((np.abs(y_) <= t) & (np.abs(x_) <= h))
        elif c == 8:
            m = (y_ >= -h) & (y_ <= h) & (np.abs(x_) <= (y_ + h) / 2)
        else:
            m = b & (np.cos(two_pi * x_ / p + pa) > 0.4) & (np.cos(two_pi * y_ / p + pb) > 0.4)
        masks[s] = m
    bg = rng.uniform(0.0, 1.0, (n, 3)).astype(np.float32)
    sign = np.where(bg.mean(axis=1, keepdims=True) > 0.5, -1.0, 1.0).astype(np.float32)
    delta = rng.uniform(0.2, 0.6, (n, 1)) * rng.uniform(0.5, 1.0, (n, 3))
    delta = delta.astype(np.float32)
    fg = np.clip(bg + sign * delta, 0.0, 1.0)
    # A random background gradient, a distractor line and pixel noise make it less than trivial.
    slope = rng.uniform(-0.012, 0.012, (n, 2)).astype(np.float32)
    shade = slope[:, 0, None, None] * (xx - size / 2) + slope[:, 1, None, None] * (yy - size / 2)
    angle = col(rng.uniform(0, np.pi, n))
    offset = col(rng.uniform(-size / 2, size / 2, n))
    line = np.abs((xx - size / 2) * np.cos(angle) + (yy - size / 2) * np.sin(angle) - offset) <= 0.8
    line &= col(rng.uniform(0, 1, n)) < 0.5
    line_colour = rng.uniform(0.0, 1.0, (n, 3)).astype(np.float32)
    m = masks[:, None].astype(np.float32)  # (n, 1, H, W)
    img = bg[:, :, None, None] * (1 - m) + fg[:, :, None, None] * m + shade[:, None]
    img = np.where(line[:, None], line_colour[:, :, None, None], img)
    sigma = rng.uniform(0.04, 0.22, (n, 1, 1, 1)).astype(np.float32)
    img += sigma * rng.standard_normal(img.shape, dtype=np.float32)
    x = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    return torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))


# --- helpers


def _mean_std(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images, in [0, 1] pixel units."""
    c = x.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, x.shape[0], 4096):
        chunk = x[start : start + 4096].to(torch.float64).transpose(0, 1).reshape(c, -1)
        total += chunk.sum(dim=1)
        total_sq += (chunk * chunk).sum(dim=1)
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    var = (total_sq / count - mean * mean).clamp_min(0)
    std = var.sqrt().clamp_min(1e-3 * 255)  # a constant channel must not divide by zero
    return tuple(float(v) / 255 for v in mean), tuple(float(v) / 255 for v in std)


# ------------------------------------------------------------------------------------------ splits


def _stratified_pick(labels: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """``k`` indices drawn without replacement, each class contributing in proportion (largest remainder)."""
    y = labels.cpu()
    n = y.shape[0]
    gen = torch.Generator().manual_seed(seed)
    classes, counts = torch.unique(y, return_counts=True)
    quotas = counts.double() * (k / n)
    take = quotas.floor().long()
    short = k - int(take.sum())
    if short > 0:
        remainder = quotas - take.double()
        order = sorted(range(len(classes)), key=lambda i: (-float(remainder[i]), i))
        for i in order[:short]:
            take[i] += 1
    picked = []
    for cls, m in zip(classes.tolist(), take.tolist(), strict=True):
        members = torch.nonzero(y == cls, as_tuple=False).reshape(-1)
        perm = torch.randperm(members.shape[0], generator=gen)
        picked.append(members[perm[:m]])
    return torch.cat(picked).sort().values if picked else torch.empty(0, dtype=torch.long)


def split_train_val(data: ImageData, val_fraction: float, seed: int) -> tuple[ImageData, ImageData]:
    """Split ``data`` into (train, validation), stratified per class, the same for the same seed.

    ``val_fraction`` must be in (0, 1) and both parts must be non-empty (else :class:`ConfigError`).
    """
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, int | float) or not (
        math.isfinite(val_fraction) and 0 < val_fraction < 1
    ):
        raise ConfigError(f"must be a number in (0, 1), got {val_fraction!r}", key="val_fraction")
    n = len(data)
    k = round(n * val_fraction)
    if k < 1 or k > n - 1:
        raise ConfigError(
            f"{val_fraction} of {n} images leaves an empty {'validation' if k < 1 else 'training'} split",
            key="val_fraction",
        )
    val_idx = _stratified_pick(data.y, k, seed)
    keep = torch.ones(n, dtype=torch.bool)
    keep[val_idx] = False
    train_idx = torch.nonzero(keep, as_tuple=False).reshape(-1)
    return data.subset(train_idx), data.subset(val_idx)


def subset_images(data: ImageData, n: int, seed: int) -> ImageData:
    """A seeded, class-stratified subset of ``n`` images (the proxy budget); all of them if ``n ≥ len``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"must be a positive integer, got {n!r}", key="train_images")
    if n >= len(data):
        return data
    return data.subset(_stratified_pick(data.y, n, seed))
