"""Warm starts (DESIGN.md §9): ``train.init = "checkpoint:PATH"`` makes a training start from trained
weights instead of fresh ones.

PATH holds one of:

- a ``state_dict`` of a resattn network (``weights.pt`` of ``resattn train``, or
  ``torch.save(model.state_dict())``): names ``stem.…``, ``layers.<name>.…``, ``head.…``;
- a ``checkpoint.pt`` of ``resattn train`` (its ``model`` entry is used);
- a torchvision ResNet ``state_dict`` (``conv1.weight``, ``layer1.0.conv1.weight``, …, e.g. a
  downloaded ``resnet50-*.pth``), renamed with :func:`resattn.model.retrofit.from_torchvision_state_dict`;
- any of these wrapped as ``{"state_dict": …}`` or ``{"model": …}``, or with DataParallel's
  ``module.`` prefix; or a folder of ``resattn train`` (its ``weights.pt``).

The weights load with ``strict=False`` into whatever placement the trial builds: the skip, branch,
stem and norm parameters have the same names whatever a block's kind, so everything but the
attention operators (``skip_op``, ``branch_op``, ``post``) comes from the file, and those start
fresh. A head of another shape (another number of classes) starts fresh too. Anything else whose
shape differs, or a file none of whose names the network has, is a
:class:`~resattn.errors.ConfigError` naming the tensor.

Public API::

    read_init(init) -> InitWeights | None          # None for "scratch"
    load_init(model, weights) -> InitReport        # strict=False, checked
    check_fits(shapes, weights) -> (InitReport, names)  # the same check from names and shapes alone
    spec_shapes(spec) -> shapes                    # build(spec)'s state_dict shapes, on the meta device
    initial_model(spec, config, weights=None) -> (model, InitReport | None)
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resattn.errors import ConfigError
from resattn.model.net import Net, build
from resattn.model.retrofit import RetrofitError, from_torchvision_state_dict, is_torchvision_state_dict
from resattn.model.spec import NetSpec
from resattn.training.config import TrainConfig

__all__ = ["InitReport", "InitWeights", "check_fits", "initial_model", "load_init", "read_init", "spec_shapes"]

log = logging.getLogger(__name__)

_CHECKPOINT_FORMAT = "resattn.checkpoint/1"
_WEIGHTS = "weights.pt"
_KEY = "train.init"
#: Parameters of the attention operators of a fusion block: new in a placement, never in the file.
_ATTENTION_PART = re.compile(r"\.(skip_op|branch_op|post)\.")
_RESATTN_PREFIXES = ("stem.", "layers.", "head.")


@dataclass(frozen=True)
class InitWeights:
    """The weights ``train.init`` names, read once: resattn names, CPU tensors."""

    init: str  # the recipe value, "checkpoint:PATH"
    path: Path
    sha256: str  # of the file's bytes
    form: str  # what the file held, e.g. "torchvision ResNet state_dict"
    state: dict[str, torch.Tensor] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"init": self.init, "sha256": self.sha256, "form": self.form, "tensors": len(self.state)}


@dataclass(frozen=True)
class InitReport:
    """What a warm start loaded into one network."""

    loaded: int  # tensors taken from the file
    new_attention: int  # tensors of attention operators (not in the file: fresh)
    new_other: tuple[str, ...]  # other tensors the file does not have (fresh), e.g. a plain layer's
    unused: int  # tensors of the file this network has no place for
    head_reset: bool  # the head had another shape (number of classes) and starts fresh

    def to_dict(self) -> dict[str, Any]:
        return {"loaded": self.loaded, "new_attention": self.new_attention, "new_other": len(self.new_other),
                "unused": self.unused, "head_reset": self.head_reset}

    def describe(self) -> str:
        text = f"{self.loaded} tensors loaded, {self.new_attention} attention tensors new"
        if self.new_other:
            text += f", {len(self.new_other)} other tensors new ({', '.join(self.new_other[:3])}" + (
                ", …)" if len(self.new_other) > 3 else ")")
        if self.head_reset:
            text += ", head re-initialised (another number of classes)"
        if self.unused:
            text += f", {self.unused} tensors of the file unused"
        return text


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _load_error(err: BaseException) -> str:
    """One line for a failed ``torch.load(weights_only=True)``."""
    text = str(err)
    if "WeightsUnpickler error:" in text:  # torch's long advice to drop weights_only: not for us
        detail = [line.strip() for line in text.split("WeightsUnpickler error:", 1)[1].splitlines() if line.strip()]
        reason = detail[0] if detail else "unsupported content"
        return (f"not a torch file, or one holding Python objects that only unsafe loading could read ({reason}); "
                "save a plain state_dict (torch.save(model.state_dict(), PATH))")
    return _first_line(err)


def _is_state(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _unwrap(obj: Any) -> tuple[Any, str]:
    if isinstance(obj, Mapping) and obj.get("format") == _CHECKPOINT_FORMAT:
        return obj.get("model"), f"resattn checkpoint (epoch {obj.get('epoch')})"
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and _is_state(obj.get(key)):
            return obj[key], f"state_dict (under {key!r})"
    return obj, "state_dict"


def read_init(init: str) -> InitWeights | None:
    """The weights of ``train.init`` (``None`` for ``scratch``); a one-line :class:`ConfigError` for a
    missing or unreadable file or one that holds no usable ``state_dict``."""
    if init == "scratch":
        return None
    raw_path = init.partition(":")[2]
    path = Path(raw_path).expanduser()
    if path.is_dir() and (path / _WEIGHTS).is_file():
        path = path / _WEIGHTS
    if not path.is_file():
        what = "is a folder without weights.pt" if path.is_dir() else "does not exist"
        raise ConfigError(f"checkpoint file {str(path)!r} {what}; give a weights.pt, checkpoint.pt or "
                          "torchvision .pth file", key=_KEY)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read {str(path)!r}: {err.strerror or err}", key=_KEY) from None
    digest = hashlib.sha256(data).hexdigest()
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file, or one that needs pickled code
        raise ConfigError(f"cannot read {str(path)!r}: {_load_error(err)}", key=_KEY) from None
    obj, form = _unwrap(obj)
    if not _is_state(obj):
        raise ConfigError(f"{str(path)!r} holds no state_dict (a dict of tensor names to tensors)", key=_KEY)
    state: dict[str, torch.Tensor] = dict(obj)
    if all(k.startswith("module.") for k in state):  # saved from DataParallel / DistributedDataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    if is_torchvision_state_dict(state):
        try:
            _, state = from_torchvision_state_dict(state)
        except RetrofitError as err:
            raise ConfigError(f"{str(path)!r}: {err}", key=_KEY) from None
        form = f"torchvision ResNet {form}"
    elif not any(k.startswith(_RESATTN_PREFIXES) for k in state):
        first = ", ".join(list(state)[:3])
        raise ConfigError(
            f"{str(path)!r}: names such as {first} are neither resattn's (stem., layers.<name>., head.) nor a "
            "torchvision ResNet's (conv1., layer1.0., fc.)", key=_KEY,
        )
    else:
        form = f"resattn {form}"
    state = {k: v.detach() for k, v in state.items()}
    log.debug("train.init: %s: %s, %d tensors, sha256 %s", path, form, len(state), digest[:12])
    return InitWeights(init=init, path=path, sha256=digest, form=form, state=state)


def check_fits(shapes: Mapping[str, tuple[int, ...]], weights: InitWeights) -> tuple[InitReport, list[str]]:
    """Which tensors of ``weights`` a network with these ``state_dict`` ``shapes`` takes: the report and
    the names to load. A :class:`ConfigError` when a shape differs (other than the head's) or when no
    name matches."""
    state = weights.state
    wrong = [k for k, shape in shapes.items() if k in state and tuple(state[k].shape) != tuple(shape)]
    head_reset = any(k.startswith("head.") for k in wrong)
    wrong = [k for k in wrong if not k.startswith("head.")]
    if wrong:
        listed = "; ".join(f"{k}: file {tuple(state[k].shape)}, network {tuple(shapes[k])}" for k in wrong[:3])
        more = f" (and {len(wrong) - 3} more)" if len(wrong) > 3 else ""
        raise ConfigError(f"{str(weights.path)!r} does not fit this network (another backbone or widths?): "
                          f"{listed}{more}", key=_KEY)
    load = [k for k in shapes if k in state and not (head_reset and k.startswith("head."))]
    if not load:
        mine = ", ".join(list(shapes)[:2])
        theirs = ", ".join(list(state)[:2])
        raise ConfigError(f"{str(weights.path)!r} has none of this network's tensors (the file has {theirs}, …; "
                          f"the network {mine}, …): another backbone?", key=_KEY)
    new = [k for k in shapes if k not in load]
    report = InitReport(
        loaded=len(load),
        new_attention=sum(1 for k in new if _ATTENTION_PART.search(k)),
        new_other=tuple(k for k in new if not _ATTENTION_PART.search(k) and not k.startswith("head.")),
        unused=sum(1 for k in state if k not in shapes),
        head_reset=head_reset,
    )
    return report, load


def load_init(model: nn.Module, weights: InitWeights) -> InitReport:
    """Load ``weights`` into ``model`` (``strict=False``, after :func:`check_fits`)."""
    own = model.state_dict()
    report, names = check_fits({k: tuple(v.shape) for k, v in own.items()}, weights)
    model.load_state_dict({k: weights.state[k] for k in names}, strict=False)
    log.debug("train.init: %s", report.describe())
    return report


def spec_shapes(spec: NetSpec) -> dict[str, tuple[int, ...]]:
    """The ``state_dict`` shapes of ``build(spec)``, without allocating its weights."""
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in build(spec).state_dict().items()}


def initial_model(
    spec: NetSpec, config: TrainConfig, weights: InitWeights | None = None
) -> tuple[Net, InitReport | None]:
    """The model a training starts from: ``build(spec)`` seeded with ``config.seed``, then, when
    ``config.init`` is a checkpoint, its weights loaded into it (``weights``: read once beforehand by
    :func:`read_init`, so many trainings share one read; read here when not given)."""
    if weights is None and config.warm:
        weights = read_init(config.init)
    torch.manual_seed(config.seed)
    model = build(spec)
    report = load_init(model, weights) if weights is not None else None
    return model, report
