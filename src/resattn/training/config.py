"""What a training run is configured with: the ``[data]`` and ``[train]`` tables of a recipe.

Plain, validated, frozen dataclasses (standard library only: a recipe can be read without torch).
Every bad value raises :class:`~resattn.errors.ConfigError` naming the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from resattn.errors import ConfigError
from resattn.tomlfile import is_int, literal

__all__ = [
    "DATASETS",
    "DATASET_FORMS",
    "FINETUNE_LR",
    "PRECISIONS",
    "SCHEDULES",
    "SWITCHES",
    "DataConfig",
    "TrainConfig",
    "check_dataset",
    "check_init",
]

#: The datasets known by name (downloaded through torchvision).
DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "svhn", "fashionmnist")
#: Every accepted form of a dataset argument, for help and error texts.
DATASET_FORMS: tuple[str, ...] = (*DATASETS, "npz:PATH", "folder:PATH", "procedural", "procedural:N")
#: ``procedural:N`` bounds (training images).
PROCEDURAL_MIN, PROCEDURAL_MAX = 10, 1_000_000
#: Learning-rate schedules.
SCHEDULES = ("onecycle", "cosine", "constant")
#: ``train.precision`` values, and the values of the on/off settings ``channels_last`` and ``compile``.
PRECISIONS = ("auto", "fp32", "bf16")
SWITCHES = ("auto", "on", "off")
_SWITCH_WORDS = {"true": "on", "yes": "on", "1": "on", "false": "off", "no": "off", "0": "off"}
_DATASET_FORMS = ", ".join(DATASET_FORMS)
#: The default peak learning rate when training starts from a checkpoint (``train.init``): a tenth of
#: the default ``lr``, the usual step down for fine-tuning a trained network.
FINETUNE_LR = 0.02


def check_init(value: Any) -> str:
    """Validate ``train.init``: ``scratch`` or ``checkpoint:PATH`` (whether PATH loads is checked when
    it is loaded); returns it stripped, with ``scratch`` / the ``checkpoint:`` prefix lower-cased."""
    allowed = "scratch or checkpoint:PATH (a state_dict, a resattn weights.pt / checkpoint.pt or a torchvision file)"
    if not isinstance(value, str):
        raise ConfigError(f"must be {allowed}, got {literal(value)}", key="init")
    text = value.strip()
    head, sep, path = text.partition(":")
    if not sep and head.lower() == "scratch":
        return "scratch"
    if sep and head.lower() == "checkpoint":
        if not path.strip():
            raise ConfigError(f"checkpoint:PATH needs a path, e.g. checkpoint:studies/train-x/weights.pt; "
                              f"got {literal(value)}", key="init")
        return f"checkpoint:{path.strip()}"
    raise ConfigError(f"must be {allowed}, got {literal(value)}", key="init")


def check_dataset(value: Any) -> str:
    """Validate the form of a dataset argument (whether it loads is checked when it is loaded);
    returns it normalised: stripped, names and prefixes lower-cased."""
    if not isinstance(value, str):
        raise ConfigError(f"must be a string, got {literal(value)}; allowed: {_DATASET_FORMS}", key="dataset")
    text = value.strip()
    kind, sep, arg = text.partition(":")
    kind = kind.lower()
    if not sep and kind in DATASETS:
        return kind
    if sep and kind in ("npz", "folder"):
        if not arg.strip():
            raise ConfigError(
                f"{kind}:PATH needs a path, e.g. {kind}:data/images; got {literal(value)}", key="dataset"
            )
        return f"{kind}:{arg}"
    if kind == "procedural":
        if not sep:
            return kind
        n = arg.strip()
        if not n.isdigit() or not PROCEDURAL_MIN <= int(n) <= PROCEDURAL_MAX:
            raise ConfigError(
                f"procedural:N needs an integer N from {PROCEDURAL_MIN} to {PROCEDURAL_MAX} "
                f"(training images), "
                f"got {literal(value)}",
                key="dataset",
            )
        return f"procedural:{int(n)}"
    raise ConfigError(f"unknown dataset {literal(value)}; allowed: {_DATASET_FORMS}", key="dataset")


@dataclass(frozen=True)
class DataConfig:
    """The ``[data]`` table: which images, and how many per trial."""

    dataset: str = "cifar10"  # see DATASETS; npz:/folder: paths are relative to the working directory
    data_dir: str = ""  # dataset cache directory; "" = the default
    val_fraction: float = 0.1  # held out of the train split for validation (seeded by search.seed)
    train_images: int = 0  # proxy budget: training images per trial (seeded subset); 0 = all
    image_size: int = 32  # folder: datasets are resized to image_size × image_size

    def __post_init__(self) -> None:
        object.__setattr__(self, "dataset", check_dataset(self.dataset))
        if not isinstance(self.data_dir, str):
            raise ConfigError(f"must be a string (a directory), got {literal(self.data_dir)}", key="data_dir")
        v = self.val_fraction
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or not 0 < v < 1:
            raise ConfigError(f"must be a number in (0, 1), got {literal(v)}", key="val_fraction")
        object.__setattr__(self, "val_fraction", float(v))
        if not is_int(self.train_images) or self.train_images < 0:
            raise ConfigError(
                f"must be an integer ≥ 0 (0 = all training images), got {literal(self.train_images)}",
                key="train_images",
            )
        if not is_int(self.image_size) or not 4 <= self.image_size <= 1024:
            raise ConfigError(
                f"must be an integer from 4 to 1024, got {literal(self.image_size)}", key="image_size"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    """Every training hyper-parameter in one commented place."""

    epochs: int = 8  # epochs per trial; each epoch ends with a validation = one pruning step
    batch_size: int = 256  # training batch size
    eval_batch_size: int = 1024  # validation batch size (no gradients, so larger; on the CPU: ≤ batch_size)
    optimizer: str = "sgd"  # SGD with Nesterov momentum (the only optimiser for now)
    lr: float = 0.2  # peak learning rate
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4  # applied to conv/linear weights, not to norms, biases, γ or λ
    label_smoothing: float = 0.1
    schedule: str = "onecycle"  # onecycle: warmup then linear decay | cosine: warmup + cosine | constant
    warmup_fraction: float = 0.2  # fraction of all steps spent warming up
    crop_padding: int = 4  # random-crop padding in pixels (0: no crop)
    flip: bool = True  # random horizontal flip
    #: auto: bf16 autocast where a short timed probe shows it is faster (CUDA with bf16 support:
    #: always), else fp32 | fp32 | bf16 (see resattn.training.precision).
    precision: str = "auto"
    #: auto: channels_last where the probe shows it is faster | on | off.
    channels_last: str = "auto"
    #: auto: torch.compile when the run's expected steps repay the compile time | on | off.
    compile: str = "auto"
    seed: int = 0  # seeds the weights' initialisation and the batch order
    #: scratch: fresh weights | checkpoint:PATH: start from trained weights (a state_dict of the all-residual
    #: network, a resattn weights.pt / checkpoint.pt or a torchvision ResNet file; relative to the working
    #: directory), loaded with strict=False into whatever placement is built, then fine-tuned.
    init: str = "scratch"
    finetune_lr: float = FINETUNE_LR  # peak learning rate instead of lr when init is a checkpoint
    #: Recipes written before ``precision`` existed: ``bf16 = true`` reads as precision "auto",
    #: ``false`` as "fp32" (accepted, not stored).
    bf16: dataclasses.InitVar[bool | None] = None

    def __post_init__(self, bf16: bool | None) -> None:
        if bf16 is not None:
            if not isinstance(bf16, bool):
                raise ConfigError(f"must be true or false, got {bf16!r} (deprecated: use precision)", key="bf16")
            if self.precision != "auto":
                raise ConfigError("give precision only (bf16 is its deprecated older form)", key="bf16")
            object.__setattr__(self, "precision", "auto" if bf16 else "fp32")
        if isinstance(self.channels_last, bool):  # the older boolean form
            object.__setattr__(self, "channels_last", "auto" if self.channels_last else "off")
        for name, allowed in (("precision", PRECISIONS), ("channels_last", SWITCHES), ("compile", SWITCHES)):
            value = getattr(self, name)
            if isinstance(value, str) and value.strip().lower() in _SWITCH_WORDS and name != "precision":
                value = _SWITCH_WORDS[value.strip().lower()]
            if not isinstance(value, str) or value.strip().lower() not in allowed:
                raise ConfigError(f"unknown value {value!r}; allowed: {', '.join(allowed)}", key=name)
            object.__setattr__(self, name, value.strip().lower())
        for name in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"must be a positive integer, got {value!r}", key=name)
        if self.optimizer != "sgd":
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; allowed: sgd", key="optimizer")
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"unknown schedule {self.schedule!r}; allowed: {', '.join(SCHEDULES)}", key="schedule"
            )
        for name, lo, hi in (("lr", 0.0, 100.0), ("finetune_lr", 0.0, 100.0), ("momentum", 0.0, 1.0),
                             ("weight_decay", 0.0, 1.0), ("label_smoothing", 0.0, 1.0), ("warmup_fraction", 0.0, 1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"must be a finite number, got {value!r}", key=name)
            positive = name in ("lr", "finetune_lr")
            if not lo <= value <= hi or (positive and value == 0):
                interval = f"({lo}, {hi}]" if positive else f"[{lo}, {hi}]"
                raise ConfigError(f"must be in {interval}, got {value!r}", key=name)
            object.__setattr__(self, name, float(value))
        if isinstance(self.crop_padding, bool) or not isinstance(self.crop_padding, int) or not (
            0 <= self.crop_padding <= 16
        ):
            raise ConfigError(f"must be an integer in [0, 16], got {self.crop_padding!r}", key="crop_padding")
        for name in ("nesterov", "flip"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"must be true or false, got {getattr(self, name)!r}", key=name)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"must be an integer, got {self.seed!r}", key="seed")
        object.__setattr__(self, "init", check_init(self.init))

    @property
    def warm(self) -> bool:
        """Whether training starts from a checkpoint (``init`` is not ``scratch``)."""
        return self.init != "scratch"

    @property
    def peak_lr(self) -> float:
        """The schedule's peak learning rate: ``lr`` from scratch, ``finetune_lr`` from a checkpoint."""
        return self.finetune_lr if self.warm else self.lr

    @property
    def init_path(self) -> str | None:
        """PATH of ``checkpoint:PATH``, or ``None`` from scratch."""
        return self.init.partition(":")[2] if self.warm else None

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict (JSON-friendly)."""
        return dataclasses.asdict(self)
