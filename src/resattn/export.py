"""Export an architecture as one self-contained, readable ``.py`` file (DESIGN.md §6).

The generated file imports only ``torch`` and the standard library. It holds the architecture's
spec as a literal (``SPEC``), only the classes that architecture uses, a network class whose
``__init__`` spells the layers out one per line, and ``build_model(num_classes)``. The model it
builds has exactly the ``state_dict`` of :func:`resattn.build` (same keys, shapes, parameters
and buffers), so weights trained by resattn load with ``strict=True`` and give identical outputs.

Security: the generator writes only identifiers and numeric literals it has validated itself,
right before writing them, whatever object it is given (a spec built around
:class:`~resattn.spec.NetSpec`'s own validation is checked again). Strings come from fixed sets
(kinds, attentions, norms) or match ``[a-z_][a-z0-9_]*``; integers are real ``int`` values in
range; floats are finite and written with ``repr``. Header values (study name, placement, …)
land in the module docstring only after sanitising to a safe character set. Anything else is
refused with an :class:`ExportError` and nothing is written.

Public API::

    export_source(spec, *, class_name="ResAttnNet", header=None) -> str
    write_export(path, spec, *, class_name="ResAttnNet", header=None) -> Path
    export_trial(storage, study_name, *, trial=None, best=False, out, class_name="ResAttnNet") -> Path
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import datetime
import keyword
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from resattn.errors import ResattnError
from resattn.files import atomic_write, replaced_atomically
from resattn.spec import MAX_CHANNELS, MAX_CLASSES, MAX_REDUCTION, SPATIAL_KERNELS, NetSpec

__all__ = ["ExportError", "export_source", "export_trial", "write_export"]


class ExportError(ResattnError, ValueError):
    """An architecture, class name, header or trial that cannot be exported; the message says why."""


# ------------------------------------------------------------------------------ what may be written

_NAME_RE = re.compile(r"\A[a-z_][a-z0-9_]{0,63}\Z")
_CLASS_RE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_HEADER_KEY_RE = re.compile(r"\A[A-Za-z][A-Za-z0-9_ ]{0,31}\Z")
#: Characters a header value may keep; everything else becomes ``?`` (whitespace becomes a space).
_UNSAFE_TEXT_RE = re.compile(r"[^A-Za-z0-9 _\-.,:;/+=()\[\]{}|<>@#%*!?&~^$γλ·×−]")
_MAX_HEADER_TEXT = 200
_MAX_HEADER_ITEMS = 256

_KINDS = ("plain", "residual", "pattern1", "pattern2", "pattern2_mix", "pattern4")
_NORMS = ("bn", "gn")
_RESIDUAL_PATHS = ("gated", "direct")
_SPEC_FORMAT = "resattn.netspec/1"
#: attention name -> the options it takes (in constructor order). Must match resattn.attention.
_ATTENTION_OPTIONS: dict[str, tuple[str, ...]] = {
    "se": ("reduction",),
    "eca": (),
    "cbam": ("reduction", "spatial_kernel"),
    "coord": ("reduction",),
    "simam": (),
}
_ATTENTION_CLASS: dict[str, str] = {
    "se": "SqueezeExcite",
    "eca": "ECA",
    "cbam": "CBAM",
    "coord": "CoordAttention",
    "simam": "SimAM",
}
_MAX_IN_CHANNELS = 64
# Layer names become attributes of an nn.Sequential; these would clash with its own attributes.
_RESERVED_LAYER_NAMES = frozenset(dir(nn.Sequential())) | frozenset(keyword.kwlist)
#: Every top-level name a generated file may define or import; the class name must differ from all.
_GENERATED_NAMES = frozenset(
    {
        "annotations", "math", "OrderedDict", "torch", "nn", "SPEC", "build_model", "make_norm",
        "eca_kernel_size", "make_skip", "PlainLayer", "ResidualBranch", "ApplyMask", "NearIdentityGate",
        "MaskMix", "FusionBlock", "ChannelMask", "SpatialMask", *_ATTENTION_CLASS.values(),
    }
)
_ALLOWED_IMPORTS = frozenset({"__future__", "math", "collections", "torch"})


def _short(value: Any) -> str:
    """A bounded, one-line repr of a (possibly hostile) value for an error message."""
    try:
        text = repr(value)
    except Exception:  # a crafted object's __repr__ may raise
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def _refuse(field: str, message: str) -> ExportError:
    return ExportError(f"cannot export: {field}: {message}" if field else f"cannot export: {message}")


def _int(field: str, value: Any, lo: int, hi: int) -> int:
    if type(value) is not int:  # bool and int subclasses (which could override repr) are refused
        raise _refuse(field, f"must be an integer, got {_short(value)}")
    if not lo <= value <= hi:
        raise _refuse(field, f"must be between {lo} and {hi}, got {value}")
    return int(value)


def _float(field: str, value: Any) -> float:
    if type(value) not in (int, float):
        raise _refuse(field, f"must be a number, got {_short(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise _refuse(field, f"must be a finite number, got {_short(value)}")
    return number


def _bool(field: str, value: Any) -> bool:
    if type(value) is not bool:
        raise _refuse(field, f"must be True or False, got {_short(value)}")
    return bool(value)


def _choice(field: str, value: Any, allowed: Sequence[str]) -> str:
    if type(value) is not str or value not in allowed:
        raise _refuse(field, f"unknown value {_short(value)}; allowed: {', '.join(allowed)}")
    return str(value)


def _unset(field: str, value: Any, kind: str) -> None:
    if value is not None:
        raise _refuse(field, f"kind {kind!r} does not use this value, got {_short(value)}")


@dataclass(frozen=True)
class _Attention:
    name: str
    reduction: int | None
    spatial_kernel: int | None

    @property
    def cls(self) -> str:
        return _ATTENTION_CLASS[self.name]


@dataclass(frozen=True)
class _Layer:
    name: str
    kind: str
    out_channels: int
    stride: int
    norm: str
    attention: _Attention | None = None
    skip_attention: _Attention | None = None
    residual_path: str | None = None
    lam: float | None = None
    lam_learnable: bool | None = None
    gamma_s: float | None = None
    gamma_r: float | None = None
    gamma_learnable: bool | None = None


@dataclass(frozen=True)
class _Net:
    in_channels: int
    num_classes: int
    stem_channels: int
    stem_norm: str
    layers: tuple[_Layer, ...]


def _attention(field: str, value: Any) -> _Attention:
    if value is None:
        raise _refuse(field, "this kind needs an attention")
    name = _choice(f"{field}.name", getattr(value, "name", None), tuple(sorted(_ATTENTION_OPTIONS)))
    takes = _ATTENTION_OPTIONS[name]
    reduction = getattr(value, "reduction", None)
    kernel = getattr(value, "spatial_kernel", None)
    if "reduction" in takes:
        reduction = _int(f"{field}.reduction", reduction, 1, MAX_REDUCTION)
    elif reduction is not None:
        raise _refuse(f"{field}.reduction", f"attention {name!r} takes no reduction, got {_short(reduction)}")
    if "spatial_kernel" in takes:
        kernel = _int(f"{field}.spatial_kernel", kernel, min(SPATIAL_KERNELS), max(SPATIAL_KERNELS))
        if kernel not in SPATIAL_KERNELS:
            raise _refuse(f"{field}.spatial_kernel", f"must be one of {SPATIAL_KERNELS}, got {kernel}")
    elif kernel is not None:
        raise _refuse(
            f"{field}.spatial_kernel", f"attention {name!r} takes no spatial_kernel, got {_short(kernel)}"
        )
    return _Attention(name, reduction, kernel)


def _layer(field: str, block: Any) -> _Layer:
    # Every attribute is read exactly once; only the validated copies are used afterwards.
    raw = {f: getattr(block, f, None) for f in (
        "name", "kind", "out_channels", "stride", "norm", "attention", "skip_attention", "residual_path",
        "lam", "lam_learnable", "gamma_s", "gamma_r", "gamma_learnable",
    )}
    name = raw["name"]
    if type(name) is not str or not _NAME_RE.fullmatch(name):
        raise _refuse(
            f"{field}.name", f"must be a lowercase identifier ([a-z_][a-z0-9_]*), got {_short(name)}"
        )
    if name in _RESERVED_LAYER_NAMES:
        raise _refuse(f"{field}.name", f"{name!r} is reserved (a Python keyword or an nn.Module attribute)")
    kind = _choice(f"{field}.kind", raw["kind"], _KINDS)
    common = {
        "name": str(name),
        "kind": kind,
        "out_channels": _int(f"{field}.out_channels", raw["out_channels"], 1, MAX_CHANNELS),
        "stride": _int(f"{field}.stride", raw["stride"], 1, 2),
        "norm": _choice(f"{field}.norm", raw["norm"], _NORMS),
    }
    extra: dict[str, Any] = {}
    if kind in ("pattern1", "pattern2", "pattern2_mix", "pattern4"):
        extra["attention"] = _attention(f"{field}.attention", raw["attention"])
    if kind == "pattern2_mix":
        extra["lam"] = _float(f"{field}.lam", raw["lam"])
        extra["lam_learnable"] = _bool(f"{field}.lam_learnable", raw["lam_learnable"])
    if kind == "pattern4":
        extra["skip_attention"] = _attention(f"{field}.skip_attention", raw["skip_attention"])
        path = _choice(f"{field}.residual_path", raw["residual_path"], _RESIDUAL_PATHS)
        extra["residual_path"] = path
        extra["gamma_s"] = _float(f"{field}.gamma_s", raw["gamma_s"])
        extra["gamma_learnable"] = _bool(f"{field}.gamma_learnable", raw["gamma_learnable"])
        if path == "gated":
            extra["gamma_r"] = _float(f"{field}.gamma_r", raw["gamma_r"])
    for key in ("attention", "skip_attention", "residual_path", "lam", "lam_learnable", "gamma_s", "gamma_r",
                "gamma_learnable"):
        if key not in extra:
            _unset(f"{field}.{key}", raw[key], kind)
    return _Layer(**common, **extra)


def _validate(spec: Any) -> _Net:
    """Read ``spec`` once into plain, re-validated values (never trusting NetSpec's own checks)."""
    if not isinstance(spec, NetSpec):
        raise ExportError(f"cannot export: expected a NetSpec, got {type(spec).__name__}")
    fmt = getattr(spec, "format", None)
    if fmt != _SPEC_FORMAT or type(fmt) is not str:
        raise _refuse("format", f"unsupported spec format {_short(fmt)}; allowed: {_SPEC_FORMAT}")
    in_channels = _int("in_channels", spec.in_channels, 1, _MAX_IN_CHANNELS)
    num_classes = _int("num_classes", spec.num_classes, 1, MAX_CLASSES)
    stem_channels = _int("stem_channels", spec.stem_channels, 1, MAX_CHANNELS)
    stem_norm = _choice("stem_norm", spec.stem_norm, _NORMS)
    raw_layers = spec.layers
    if type(raw_layers) not in (tuple, list) or not raw_layers:
        raise _refuse("layers", f"must be a non-empty tuple of layers, got {_short(raw_layers)}")
    layers = []
    seen: set[str] = set()
    for i, block in enumerate(tuple(raw_layers)):
        layer = _layer(f"layers[{i}]", block)
        if layer.name in seen:
            raise _refuse(f"layers[{i}].name", f"duplicate layer name {layer.name!r}")
        seen.add(layer.name)
        layers.append(layer)
    return _Net(in_channels, num_classes, stem_channels, stem_norm, tuple(layers))


def _check_class_name(class_name: Any) -> str:
    if type(class_name) is not str or not _CLASS_RE.fullmatch(class_name):
        raise ExportError(
            f"cannot export: class name must be a Python identifier ([A-Za-z_][A-Za-z0-9_]*, at most 64 "
            f"characters), got {_short(class_name)}"
        )
    if keyword.iskeyword(class_name) or keyword.issoftkeyword(class_name):
        raise ExportError(f"cannot export: class name {class_name!r} is a Python keyword")
    if class_name in _GENERATED_NAMES or class_name in dir(builtins):
        raise ExportError(
            f"cannot export: class name {class_name!r} would shadow a name the generated file uses; "
            "choose another"
        )
    return str(class_name)


# ----------------------------------------------------------------------------------- the header


def _clean_text(value: str) -> str:
    text = re.sub(r"\s", " ", value)
    text = _UNSAFE_TEXT_RE.sub("?", text)
    return text if len(text) <= _MAX_HEADER_TEXT else text[: _MAX_HEADER_TEXT - 3] + "..."


def _header_scalar(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if type(value) is bool:
        return "yes" if value else "no"
    if type(value) is int:
        return f"{int(value):,}"
    if type(value) is float:
        number = float(value)
        if not math.isfinite(number):
            return _clean_text(float.__repr__(number))
        return f"{number:,.0f}" if number.is_integer() and abs(number) >= 1000 else f"{number:.6g}"
    if type(value) is str:
        return _clean_text(str(value))
    raise ExportError(f"cannot export: header[{key!r}] must be text, a number or a list of them, "
                      f"got {type(value).__name__}")


def _header_lines(header: Mapping[str, Any] | None) -> list[str]:
    """``key: value`` lines for the module docstring, every piece sanitised."""
    if header is None:
        return []
    if not isinstance(header, Mapping):
        raise ExportError(f"cannot export: header must be a mapping, got {type(header).__name__}")
    items = list(header.items())
    if len(items) > _MAX_HEADER_ITEMS:
        raise ExportError(f"cannot export: header has {len(items)} entries (at most {_MAX_HEADER_ITEMS})")
    keys = []
    for key, _ in items:
        if type(key) is not str or not _HEADER_KEY_RE.fullmatch(key):
            raise ExportError(
                f"cannot export: header key must be a short name ([A-Za-z][A-Za-z0-9_ ]*), got {_short(key)}"
            )
        keys.append(str(key))
    width = max((len(k) for k in keys), default=0) + 2
    lines = []
    for key, (_, value) in zip(keys, items, strict=True):
        if type(value) in (list, tuple):
            if len(value) > _MAX_HEADER_ITEMS:
                raise ExportError(f"cannot export: header[{key!r}] has more than {_MAX_HEADER_ITEMS} items")
            lines.append(f"{key}:")
            lines += [f"    {_header_scalar(key, v)}" for v in value]
        else:
            lines.append(f"{(key + ':'):<{width}}{_header_scalar(key, value)}")
    return lines


# ------------------------------------------------------------------------------- the SPEC literal


def _att_dict(att: _Attention) -> dict[str, Any]:
    out: dict[str, Any] = {"name": att.name}
    if att.reduction is not None:
        out["reduction"] = att.reduction
    if att.spatial_kernel is not None:
        out["spatial_kernel"] = att.spatial_kernel
    return out


def _spec_dict(net: _Net) -> dict[str, Any]:
    """The spec as plain data, laid out like :meth:`NetSpec.to_dict`, from validated values only."""
    layers = []
    for layer in net.layers:
        d: dict[str, Any] = {}
        for f in dataclasses.fields(layer):  # BlockSpec's field order, name last
            if f.name == "name":
                continue
            value = getattr(layer, f.name)
            if value is not None:
                d[f.name] = _att_dict(value) if isinstance(value, _Attention) else value
        d["name"] = layer.name
        layers.append(d)
    return {
        "format": _SPEC_FORMAT,
        "in_channels": net.in_channels,
        "num_classes": net.num_classes,
        "stem_channels": net.stem_channels,
        "stem_norm": net.stem_norm,
        "layers": layers,
    }


_LITERAL_STR_RE = re.compile(r"\A[a-z0-9_./]{1,64}\Z")


def _leaf(value: Any) -> str:
    if type(value) is bool:
        return "True" if value else "False"
    if type(value) is int:
        return int.__repr__(value)
    if type(value) is float and math.isfinite(value):
        return float.__repr__(value)
    if type(value) is str and _LITERAL_STR_RE.fullmatch(value):
        return '"' + value + '"'
    raise ExportError(f"cannot export: internal error: refusing to write literal {_short(value)}")


def _literal(value: Any, indent: int = 0, width: int = 100) -> str:
    """A Python literal with black-like layout: one line when it fits, else one item per line."""
    if isinstance(value, dict):
        parts = [f"{_leaf(k)}: {_literal(v, indent + 4, width)}" for k, v in value.items()]
        opening, closing = "{", "}"
    elif isinstance(value, list):
        parts = [_literal(v, indent + 4, width) for v in value]
        opening, closing = "[", "]"
    else:
        return _leaf(value)
    flat = opening + ", ".join(parts) + closing
    if "\n" not in flat and indent + len(flat) <= width:
        return flat
    pad = " " * (indent + 4)
    return opening + "\n" + "".join(f"{pad}{p},\n" for p in parts) + " " * indent + closing


# ------------------------------------------------------------------------------- class templates

_MAKE_NORM_DOC = {"bn": "``bn``: BatchNorm2d", "gn": "``gn``: GroupNorm with gcd(channels, 32) groups"}
_MAKE_NORM_CASE = {
    "bn": '    if kind == "bn":\n        return nn.BatchNorm2d(channels)\n',
    "gn": '    if kind == "gn":\n        return nn.GroupNorm(math.gcd(channels, 32), channels)\n',
}

_SE = '''
class SqueezeExcite(nn.Module):
    """SE mask (Hu et al., CVPR 2018): avg-pool → 1×1 conv → ReLU → 1×1 conv → sigmoid; (B, C, 1, 1)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc2(self.act(self.fc1(self.pool(x)))))
'''

_ECA = '''
def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """ECA's adaptive kernel: ``|log2(C)/γ + b/γ|`` truncated, bumped to the next odd number."""
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


class ECA(nn.Module):
    """ECA mask (Wang et al., CVPR 2020): avg-pool → 1-D conv across channels → sigmoid; (B, C, 1, 1)."""

    def __init__(self, channels: int):
        super().__init__()
        k = eca_kernel_size(channels)
        self.kernel_size = k
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv1d(1, 1, kernel_size=k, padding=(k - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(x)  # (B, C, 1, 1)
        y = self.conv(y.squeeze(-1).transpose(-1, -2))  # (B, 1, C)
        return torch.sigmoid(y.transpose(-1, -2).unsqueeze(-1))  # (B, C, 1, 1)
'''

_CBAM = '''
class ChannelMask(nn.Module):
    """CBAM's channel mask: a shared bias-free MLP on avg- and max-pooled features, summed, sigmoid."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.fc2(self.act(self.fc1(x.mean(dim=(2, 3), keepdim=True))))
        mx = self.fc2(self.act(self.fc1(x.amax(dim=(2, 3), keepdim=True))))
        return torch.sigmoid(avg + mx)  # (B, C, 1, 1)


class SpatialMask(nn.Module):
    """CBAM's spatial mask: a k×k conv (no bias) on [channel-mean, channel-max], sigmoid."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))  # (B, 1, H, W)


class CBAM(nn.Module):
    """CBAM mask (Woo et al., ECCV 2018) of shape (B, C, H, W): ``m_c(x) · m_s(m_c(x) ⊙ x)``."""

    def __init__(self, channels: int, reduction: int = 16, spatial_kernel: int = 7):
        super().__init__()
        self.channel = ChannelMask(channels, reduction)
        self.spatial = SpatialMask(spatial_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mc = self.channel(x)
        return mc * self.spatial(mc * x)
'''

_COORD = '''
class CoordAttention(nn.Module):
    """Coordinate attention mask (Hou et al., CVPR 2021) of shape (B, C, H, W): ``a_h(x) ⊙ a_w(x)``.

    Average-pool along W and along H, encode both with one shared 1×1 conv → BN → h-swish
    (hidden width ``max(8, channels // reduction)``), then one 1×1 conv + sigmoid per direction.
    """

    def __init__(self, channels: int, reduction: int = 32):
        super().__init__()
        hidden = max(8, channels // reduction)
        self.conv1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.bn = nn.BatchNorm2d(hidden)
        self.act = nn.Hardswish()
        self.conv_h = nn.Conv2d(hidden, channels, 1, bias=True)
        self.conv_w = nn.Conv2d(hidden, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pooled_h = x.mean(dim=3, keepdim=True)  # (B, C, H, 1)
        pooled_w = x.mean(dim=2, keepdim=True).transpose(2, 3)  # (B, C, W, 1)
        y = self.act(self.bn(self.conv1(torch.cat([pooled_h, pooled_w], dim=2))))
        y_h, y_w = torch.split(y, [h, w], dim=2)
        a_h = torch.sigmoid(self.conv_h(y_h))  # (B, C, H, 1)
        a_w = torch.sigmoid(self.conv_w(y_w.transpose(2, 3)))  # (B, C, 1, W)
        return a_h * a_w
'''

_SIMAM = '''
class SimAM(nn.Module):
    """SimAM mask (Yang et al., ICML 2021) of shape (B, C, H, W): ``sigmoid(1/E)``, no parameters.

    ``1/E = (x - μ)² / (4 (σ² + λ)) + 1/2`` per channel, with λ = 1e-4.
    """

    e_lambda = 1e-4

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = max(x.shape[-2] * x.shape[-1] - 1, 1)
        d = (x - x.mean(dim=(2, 3), keepdim=True)).pow(2)
        v = d.sum(dim=(2, 3), keepdim=True) / n
        return torch.sigmoid(d / (4 * (v + self.e_lambda)) + 0.5)
'''

_ATTENTION_SOURCE = {"se": _SE, "eca": _ECA, "cbam": _CBAM, "coord": _COORD, "simam": _SIMAM}

_PLAIN = '''
class PlainLayer(nn.Module):
    """``ReLU(norm(conv3×3(x)))``: the stem and the plain layers."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, norm: str = "bn"):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm = make_norm(norm, out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))
'''

_BRANCH = '''
class ResidualBranch(nn.Module):
    """``F(x)``: conv3×3(stride) → norm → ReLU → conv3×3 → norm."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, norm: str = "bn"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = make_norm(norm, out_channels)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = make_norm(norm, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm2(self.conv2(self.act(self.norm1(self.conv1(x)))))
'''

_MAKE_SKIP = '''
def make_skip(in_channels: int, out_channels: int, stride: int, norm: str) -> nn.Module:
    """The skip path: ``x`` when the shape is kept, else a 1×1 conv(stride) + norm projection."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
        make_norm(norm, out_channels),
    )
'''

_APPLY_MASK = '''
class ApplyMask(nn.Module):
    """Apply an attention: ``A(t) = m(t) ⊙ t``."""

    def __init__(self, mask: nn.Module):
        super().__init__()
        self.mask = mask

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mask(t) * t
'''

_GATE = '''
class NearIdentityGate(nn.Module):
    """``G_γ(t) = t ⊙ (1 + γ·m(t))``; γ = 0 is exactly the identity. γ is a parameter or a buffer."""

    gamma: torch.Tensor

    def __init__(self, mask: nn.Module, gamma: float = 0.0, learnable: bool = True):
        super().__init__()
        self.mask = mask
        value = torch.tensor(float(gamma))
        if learnable:
            self.gamma = nn.Parameter(value)
        else:
            self.register_buffer("gamma", value)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return t * (1.0 + self.gamma * self.mask(t))
'''

_MIX = '''
class MaskMix(nn.Module):
    """``(1 − λ)·t + λ·(m(t) ⊙ t)``; λ = 0 is the identity. λ is a parameter or a buffer."""

    lam: torch.Tensor

    def __init__(self, mask: nn.Module, lam: float = 0.1, learnable: bool = True):
        super().__init__()
        self.mask = mask
        value = torch.tensor(float(lam))
        if learnable:
            self.lam = nn.Parameter(value)
        else:
            self.register_buffer("lam", value)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return (1.0 - self.lam) * t + self.lam * (self.mask(t) * t)
'''

_FUSION = '''
class FusionBlock(nn.Module):
    """``ReLU(post(skip_op(skip(x)) + branch_op(F(x))))``; unused ops are identities.

@KINDS@
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        norm: str = "bn",
        skip_op: nn.Module | None = None,
        branch_op: nn.Module | None = None,
        post: nn.Module | None = None,
    ):
        super().__init__()
@SKIP@
        self.branch = ResidualBranch(in_channels, out_channels, stride, norm)
        self.skip_op = skip_op if skip_op is not None else nn.Identity()
        self.branch_op = branch_op if branch_op is not None else nn.Identity()
        self.post = post if post is not None else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.post(self.skip_op(self.skip(x)) + self.branch_op(self.branch(x))))
'''

_SKIP_PROJECTED = "        self.skip = make_skip(in_channels, out_channels, stride, norm)"
_SKIP_IDENTITY = "        self.skip = nn.Identity()  # every residual block here keeps its input's shape"

_KIND_DOC = {
    "residual": "``ReLU(skip(x) + F(x))``",
    "pattern1": "``ReLU(skip(x) + A(F(x)))``: branch_op = ApplyMask",
    "pattern2": "``ReLU(A(skip(x) + F(x)))``: post = ApplyMask",
    "pattern2_mix": "``ReLU((1−λ)·z + λ·A(z))``, z = skip(x) + F(x): post = MaskMix",
    "pattern4_gated": "``ReLU(G_γs(skip(x)) + G_γr(F(x)))``: skip_op = branch_op = NearIdentityGate",
    "pattern4_direct": "``ReLU(G_γs(skip(x)) + A(F(x)))``: skip_op = NearIdentityGate, branch_op = ApplyMask",
}


# ------------------------------------------------------------------------------------- assembling


def _att_expr(att: _Attention, channels: int) -> str:
    args = [str(channels)]
    if att.reduction is not None:
        args.append(f"reduction={att.reduction}")
    if att.spatial_kernel is not None:
        args.append(f"spatial_kernel={att.spatial_kernel}")
    return f"{att.cls}({', '.join(args)})"


_LINE = 110  # longest line the generated code aims for


def _call(head: str, args: list[str], indent: int) -> str:
    """``head(arg, ...),`` on one line when it fits, else its arguments on their own line(s)."""
    pad = " " * indent
    flat = f"{pad}{head}({', '.join(args)}),\n"
    if len(flat) <= _LINE + 1:
        return flat
    inner = " " * (indent + 4)
    joined = f"{inner}{', '.join(args)}\n"
    if len(joined) <= _LINE + 1:
        return f"{pad}{head}(\n{joined}{pad}),\n"
    return f"{pad}{head}(\n" + "".join(f"{inner}{a},\n" for a in args) + f"{pad}),\n"


def _layer_entry(layer: _Layer, in_channels: int) -> str:
    """One ``("name", Module(...)),`` entry of the body's OrderedDict, at 12 spaces of indentation."""
    c = layer.out_channels
    shape = f'{in_channels}, {c}, stride={layer.stride}, norm="{layer.norm}"'
    if layer.kind == "plain":
        return f'            ("{layer.name}", PlainLayer({shape})),\n'
    ops: list[tuple[str, list[str]]] = []  # (keyword=Class, arguments)
    if layer.kind == "pattern1":
        assert layer.attention is not None
        ops.append(("branch_op=ApplyMask", [_att_expr(layer.attention, c)]))
    elif layer.kind == "pattern2":
        assert layer.attention is not None
        ops.append(("post=ApplyMask", [_att_expr(layer.attention, c)]))
    elif layer.kind == "pattern2_mix":
        assert layer.attention is not None and layer.lam is not None
        ops.append(("post=MaskMix", [_att_expr(layer.attention, c), f"lam={float.__repr__(layer.lam)}",
                                     f"learnable={layer.lam_learnable!r}"]))
    elif layer.kind == "pattern4":
        assert layer.attention is not None and layer.skip_attention is not None and layer.gamma_s is not None
        learn = f"learnable={layer.gamma_learnable!r}"
        ops.append(("skip_op=NearIdentityGate", [_att_expr(layer.skip_attention, c),
                                                 f"gamma={float.__repr__(layer.gamma_s)}", learn]))
        if layer.residual_path == "gated":
            assert layer.gamma_r is not None
            ops.append(("branch_op=NearIdentityGate", [_att_expr(layer.attention, c),
                                                       f"gamma={float.__repr__(layer.gamma_r)}", learn]))
        else:
            ops.append(("branch_op=ApplyMask", [_att_expr(layer.attention, c)]))
    if not ops:
        return f'            ("{layer.name}", FusionBlock({shape})),\n'
    lines = [f'            ("{layer.name}", FusionBlock(\n', f"                {shape},\n"]
    lines += [_call(head, args, 16) for head, args in ops]
    lines.append("            )),\n")
    return "".join(lines)


def _needs(net: _Net) -> dict[str, Any]:
    fusion = [layer for layer in net.layers if layer.kind != "plain"]
    attentions = {a.name for layer in net.layers for a in (layer.skip_attention, layer.attention) if a}
    norms = {net.stem_norm} | {layer.norm for layer in net.layers}
    projected = False
    width = net.stem_channels
    for layer in net.layers:
        if layer.kind != "plain" and (layer.stride != 1 or layer.out_channels != width):
            projected = True
        width = layer.out_channels
    kinds = []
    for layer in fusion:
        key = f"pattern4_{layer.residual_path}" if layer.kind == "pattern4" else layer.kind
        if key not in kinds:
            kinds.append(key)
    apply_mask = any(
        layer.kind in ("pattern1", "pattern2")
        or (layer.kind == "pattern4" and layer.residual_path == "direct")
        for layer in fusion
    )
    return {
        "fusion": bool(fusion),
        "attentions": [name for name in _ATTENTION_CLASS if name in attentions],  # fixed order
        "norms": [n for n in _NORMS if n in norms],
        "projected": projected,
        "kinds": sorted(kinds, key=list(_KIND_DOC).index),
        "apply_mask": apply_mask,
        "gate": any(layer.kind == "pattern4" for layer in fusion),
        "mix": any(layer.kind == "pattern2_mix" for layer in fusion),
    }


def _make_norm_source(norms: list[str]) -> str:
    doc = "; ".join(_MAKE_NORM_DOC[n] for n in norms)
    body = "".join(_MAKE_NORM_CASE[n] for n in norms)
    allowed = ", ".join(norms)
    return (
        "\ndef make_norm(kind: str, channels: int) -> nn.Module:\n"
        f'    """{doc}."""\n'
        f"{body}"
        f'    raise ValueError(f"unknown norm {{kind!r}}; allowed: {allowed}")\n'
    )


def _net_source(net: _Net, class_name: str) -> str:
    entries = []
    width = net.stem_channels
    for layer in net.layers:
        entries.append(_layer_entry(layer, width))
        width = layer.out_channels
    n = len(net.layers)
    return (
        f"\nclass {class_name}(nn.Module):\n"
        f'    """stem → {n} layer{"s" if n != 1 else ""} (named as in SPEC) → global average pool → '
        'linear head."""\n\n'
        f"    def __init__(self, num_classes: int = {net.num_classes}):\n"
        "        super().__init__()\n"
        f"        self.stem = PlainLayer({net.in_channels}, {net.stem_channels}, stride=1, "
        f'norm="{net.stem_norm}")\n'
        "        self.layers = nn.Sequential(OrderedDict([\n"
        f"{''.join(entries)}"
        "        ]))\n"
        "        self.pool = nn.AdaptiveAvgPool2d(1)\n"
        f"        self.head = nn.Linear({width}, num_classes)\n\n"
        "    def forward(self, x: torch.Tensor) -> torch.Tensor:\n"
        "        return self.head(torch.flatten(self.pool(self.layers(self.stem(x))), 1))\n"
    )


def _docstring(net: _Net, class_name: str, header: Mapping[str, Any] | None) -> str:
    lines = [
        f"{class_name}: a resattn architecture, exported as one self-contained file (needs only torch).",
        "",
    ]
    facts = _header_lines(header)
    if facts:
        lines += [*facts, ""]
    lines += [
        "Usage::",
        "",
        "    model = build_model()",
        '    model.load_state_dict(torch.load("weights.pt"))  # a state_dict trained by resattn',
        "",
        "SPEC is the architecture this file was generated from; the classes below are the ones it uses.",
    ]
    body = "\n".join(line.rstrip() for line in lines)
    if '"""' in body or "\\" in body:  # cannot happen after sanitising; refuse rather than trust it
        raise ExportError("cannot export: internal error: unsafe docstring text")
    return f'"""{body}\n"""\n'


def export_source(
    spec: NetSpec, *, class_name: str = "ResAttnNet", header: dict[str, Any] | None = None
) -> str:
    """The source of one self-contained Python file that rebuilds ``spec`` with only ``torch``.

    ``header`` facts (study, trial, accuracy, …) go into the module docstring, sanitised.
    Raises :class:`ExportError` for anything that cannot be written safely: an invalid spec
    (re-validated here, whatever built it), a class name that is not a plain identifier, or a
    header that is not a mapping of short names to text, numbers or lists of them.
    """
    name = _check_class_name(class_name)
    net = _validate(spec)
    need = _needs(net)
    spec_literal = _literal(_spec_dict(net))
    imports = ["from __future__ import annotations", ""]
    if "gn" in need["norms"] or "eca" in need["attentions"]:
        imports.append("import math")
    imports += ["from collections import OrderedDict", "", "import torch", "from torch import nn"]

    parts = [
        _docstring(net, name, header),
        "\n" + "\n".join(imports) + "\n",
        f'\n__all__ = ["SPEC", "{name}", "build_model"]\n',
        "\n# The architecture as data, as resattn wrote it (resattn.NetSpec.from_dict(SPEC) reads it back).\n"
        f"SPEC = {spec_literal}\n",
        "\n" + _make_norm_source(need["norms"]),
    ]
    parts += ["\n" + _ATTENTION_SOURCE[a] for a in need["attentions"]]
    parts.append("\n" + _PLAIN)
    if need["fusion"]:
        parts.append("\n" + _BRANCH)
        if need["projected"]:
            parts.append("\n" + _MAKE_SKIP)
        if need["apply_mask"]:
            parts.append("\n" + _APPLY_MASK)
        if need["gate"]:
            parts.append("\n" + _GATE)
        if need["mix"]:
            parts.append("\n" + _MIX)
        kinds = "\n".join(f"    {k.removesuffix('_gated').removesuffix('_direct'):<13} {_KIND_DOC[k]}"
                          for k in need["kinds"])
        fusion = _FUSION.replace("@KINDS@", "    The kinds in this network:\n\n" + kinds)
        fusion = fusion.replace("@SKIP@", _SKIP_PROJECTED if need["projected"] else _SKIP_IDENTITY)
        parts.append("\n" + fusion)
    parts.append("\n" + _net_source(net, name))
    parts.append(
        "\n\ndef build_model(num_classes: int = "
        f"{net.num_classes}) -> nn.Module:\n"
        f'    """A freshly initialised {name}; load resattn-trained weights with ``load_state_dict``."""\n'
        f"    return {name}(num_classes)\n"
        "\n\nif __name__ == \"__main__\":\n"
        "    model = build_model().eval()\n"
        f"    out = model(torch.zeros(1, {net.in_channels}, 32, 32))\n"
        "    n_params = sum(p.numel() for p in model.parameters())\n"
        '    print(f"{type(model).__name__}: {n_params:,} parameters, output {tuple(out.shape)}")\n'
    )
    source = "".join(parts)
    _check_imports(source)
    return source


def _check_imports(source: str) -> None:
    """Defence in depth: the generated module parses and imports nothing but torch and the stdlib."""
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise ExportError(f"cannot export: internal error: generated source does not parse ({err})") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            continue
        for module in modules:
            if module.split(".")[0] not in _ALLOWED_IMPORTS:
                raise ExportError(f"cannot export: internal error: generated source imports {module!r}")


# ---------------------------------------------------------------------------------------- writing


def write_export(
    path: str | os.PathLike[str],
    spec: NetSpec,
    *,
    class_name: str = "ResAttnNet",
    header: dict[str, Any] | None = None,
) -> Path:
    """Generate the file for ``spec`` (see :func:`export_source`) and write it atomically to ``path``.

    The source is generated and compiled before anything touches the file system; parent folders
    are created; the file appears complete or not at all (temporary file + ``os.replace``).
    Returns the path written.
    """
    source = export_source(spec, class_name=class_name, header=header)
    target = Path(path).expanduser()
    try:
        compile(source, str(target), "exec", dont_inherit=True)
    except SyntaxError as err:
        raise ExportError(
            f"cannot export: internal error: generated source does not compile ({err})"
        ) from None
    if target.is_dir():
        raise ExportError(f"cannot write {str(target)!r}: it is a folder; give a file path such as model.py")
    try:
        atomic_write(target, lambda fh: fh.write(source), mode="w")
    except OSError as err:
        raise ExportError(f"cannot write {str(target)!r}: {err.strerror or err}") from None
    return target


# ----------------------------------------------------------------------------------- from a study


def _fmt_value(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 and float(value).is_integer() else f"{value:.4g}"


def _pick_trial(study: Any, trial: int | None, best: bool) -> Any:
    from optuna.trial import TrialState

    name = study.study_name
    if trial is not None and best:
        raise ExportError("give either a trial number (--trial N) or --best, not both")
    if trial is None and not best:
        raise ExportError(
            f"say which trial of study {name!r} to export: a trial number (--trial N) or --best"
        )
    if trial is not None:
        if type(trial) is not int or trial < 0:
            raise ExportError(f"trial must be a trial number (an integer >= 0), got {_short(trial)}")
        found = [t for t in study.get_trials(deepcopy=False) if t.number == trial]
        if not found:
            count = len(study.get_trials(deepcopy=False))
            known = f"its trials are numbered 0 to {count - 1}" if count else "it has no trials"
            raise ExportError(f"study {name!r} has no trial {trial}; {known}")
        chosen = found[0]
    else:
        if len(study.directions) > 1:
            names = study.metric_names or [f"objective {i}" for i in range(len(study.directions))]
            front = sorted(study.best_trials, key=lambda t: t.number)
            listed = "; ".join(
                f"#{t.number} ("
                + ", ".join(f"{m}={_fmt_value(v)}" for m, v in zip(names, t.values, strict=False))
                + ")"
                for t in front
            ) or "none yet"
            raise ExportError(
                f"study {name!r} has {len(study.directions)} objectives ({', '.join(names)}), so there is no "
                f"single best trial; choose one with --trial N from the Pareto front: {listed}"
            )
        try:
            chosen = study.best_trial
        except ValueError:
            raise ExportError(f"study {name!r} has no complete trial yet, so there is no best one") from None
    if chosen.state != TrialState.COMPLETE:
        reason = chosen.user_attrs.get("fail_reason") if chosen.state == TrialState.FAIL else None
        extra = f" ({_clean_text(str(reason))})" if reason else ""
        raise ExportError(
            f"trial {chosen.number} of study {name!r} is {chosen.state.name}{extra}, not COMPLETE; "
            "only complete trials can be exported"
        )
    return chosen


def _trial_header(study: Any, chosen: Any) -> dict[str, Any]:
    from resattn import __version__

    header: dict[str, Any] = {"study": study.study_name, "trial": chosen.number}
    names = study.metric_names or (["val_accuracy"] if len(study.directions) == 1 else
                                   [f"objective {i}" for i in range(len(study.directions))])
    for metric, value in zip(names, chosen.values or (), strict=False):
        if type(metric) is str and _HEADER_KEY_RE.fullmatch(metric):
            header.setdefault(metric, float(value))
    for key in ("params", "flops"):
        value = chosen.user_attrs.get(key)
        if type(value) is int:
            header.setdefault(key, value)
    placement = chosen.user_attrs.get("placement")
    if isinstance(placement, list) and all(type(p) is str for p in placement):
        header["placement"] = placement
    header["resattn"] = __version__
    header["date"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return header


def export_trial(
    storage: str,
    study_name: str | None,
    *,
    trial: int | None = None,
    best: bool = False,
    out: Path,
    class_name: str = "ResAttnNet",
) -> Path:
    """Export a complete trial of a study to the file ``out``; returns the path written.

    ``study_name`` may be ``None`` when the storage holds exactly one study. Give ``trial=N``, or
    ``best=True`` for the best trial of a single-objective study (a multi-objective study has no
    single best: the error lists its Pareto front). The file's docstring records the study, trial,
    objective values, params, FLOPs, placement, resattn version and date. A storage, study or
    recorded spec that cannot be read is a :class:`~resattn.errors.StorageError`, anything else an
    :class:`ExportError`; both are one readable line, and nothing is written then.
    """

    _check_class_name(class_name)  # fail fast, before touching the storage
    study, chosen, spec = _load_trial(storage, study_name, trial, best)
    return write_export(out, spec, class_name=class_name, header=_trial_header(study, chosen))


# ---------------------------------------------------------------------------------------------- ONNX


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote: the path, whether the weights were fresh (untrained), and the
    largest absolute difference between PyTorch's and onnxruntime's logits (``None``: not checked,
    because onnxruntime is not installed or the check was turned off)."""

    path: Path
    fresh_weights: bool
    max_abs_diff: float | None
    opset: int


#: ONNX opset written by :func:`export_onnx`.
ONNX_OPSET = 17
#: The largest absolute logit difference the onnxruntime check accepts.
ONNX_TOLERANCE = 1e-4


def load_weights(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A state_dict from ``path``: ``weights.pt`` of ``resattn train`` (a plain state_dict) or its
    ``checkpoint.pt`` (the ``model`` entry). Loaded with ``weights_only=True``; :class:`ExportError`
    when the file is missing or holds something else."""
    import torch

    target = Path(path).expanduser()
    if not target.is_file():
        raise ExportError(f"no weights file at {str(target)!r} (give the weights.pt written by resattn train)")
    try:
        obj = torch.load(target, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle/zip errors of a file that is not a torch save
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExportError(f"cannot read weights from {str(target)!r}: {reason}") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict) and "optimizer" in obj:
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                            for k, v in obj.items()):
        raise ExportError(f"{str(target)!r} does not hold a state_dict (a mapping of names to tensors)")
    return obj


def export_onnx(
    spec: NetSpec,
    out: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    image_size: int | tuple[int, int] = 32,
    check: bool = True,
    seed: int = 0,
) -> OnnxExport:
    """Write ``spec``'s model as an ONNX file (input ``images`` ``(batch, C, H, W)`` float32,
    normalised; output ``logits``; the batch axis is dynamic) and return what was written.

    ``weights``: a path (see :func:`load_weights`) or a state_dict, loaded with ``strict=True``;
    ``None`` exports freshly initialised weights (seeded by ``seed``). With ``check`` and
    onnxruntime installed, both run one random batch and :attr:`OnnxExport.max_abs_diff` is
    measured; a difference above :data:`ONNX_TOLERANCE` is an :class:`ExportError`. Without the
    ``onnx`` package: an :class:`ExportError` that says ``pip install 'resattn[onnx]'``. The file
    appears complete or not at all.
    """
    import importlib.util

    import torch

    from resattn.build import build

    if importlib.util.find_spec("onnx") is None:
        raise ExportError("ONNX export needs the onnx package: pip install 'resattn[onnx]'")
    _validate(spec)  # the same checks as the .py export
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    h, w = (_int("image_size", v, 4, 1024) for v in image_size)
    state = weights if weights is None or isinstance(weights, Mapping) else load_weights(weights)
    torch.manual_seed(seed)
    model = build(spec)
    if state is not None:
        try:
            model.load_state_dict(dict(state), strict=True)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0]
            raise ExportError(f"the weights do not fit this architecture: {first} "
                              "(were they trained for another spec?)") from None
    model.eval()
    target = Path(out).expanduser()
    if target.is_dir():
        raise ExportError(f"cannot write {str(target)!r}: it is a folder; give a file path such as model.onnx")
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2, spec.in_channels, h, w, generator=generator)
    try:
        with replaced_atomically(target) as tmp:
            _torch_onnx_export(model, x, tmp)
            diff = _onnxruntime_diff(model, x, tmp) if check else None
            if diff is not None and not diff <= ONNX_TOLERANCE:
                raise ExportError(f"the ONNX model differs from PyTorch by up to {diff:.3g} (tolerance "
                                  f"{ONNX_TOLERANCE:g}); not written")
    except OSError as err:
        raise ExportError(f"cannot write {str(target)!r}: {err.strerror or err}") from None
    return OnnxExport(path=target, fresh_weights=state is None, max_abs_diff=diff, opset=ONNX_OPSET)


def _torch_onnx_export(model: nn.Module, x: Any, path: str) -> None:
    """The TorchScript-based exporter (``dynamo=False``): one self-contained file, no onnxscript
    optimisation pass, a dynamic batch axis."""
    import warnings

    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
        try:
            torch.onnx.export(
                model, (x,), path, dynamo=False, opset_version=ONNX_OPSET,
                input_names=["images"], output_names=["logits"],
                dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            )
        except Exception as err:  # exporter failures: report them on one line
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ExportError(f"torch.onnx.export failed: {first}") from None


def _onnxruntime_diff(model: nn.Module, x: Any, path: str) -> float | None:
    """Max |PyTorch − onnxruntime| on ``x``; ``None`` when onnxruntime is not installed."""
    try:
        import onnxruntime
    except ImportError:
        return None
    import numpy as np
    import torch

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    (got,) = session.run(["logits"], {"images": x.numpy()})
    with torch.no_grad():
        want = model(x).numpy()
    return float(np.max(np.abs(got - want)))


def trial_spec(storage: str, study_name: str | None, *, trial: int | None = None,
               best: bool = False) -> tuple[NetSpec, str, int]:
    """The spec of a complete trial, chosen as :func:`export_trial` chooses it (same errors);
    returns ``(spec, study_name, trial_number)``. Used by ``resattn train --study``."""
    study, chosen, spec = _load_trial(storage, study_name, trial, best)
    return spec, study.study_name, chosen.number


def _load_trial(storage: str, study_name: str | None, trial: int | None, best: bool) -> tuple[Any, Any, NetSpec]:
    """``(study, trial, spec)``: the study (the storage's only one when ``study_name`` is None), the
    trial picked by number or ``best``, and its recorded spec. A storage, study or recorded spec that
    cannot be read is a :class:`~resattn.errors.StorageError`; a bad choice of trial an :class:`ExportError`."""
    from resattn.search import load_trial_spec  # the storage stack is only needed here
    from resattn.storage import load_study

    study = load_study(storage, study_name)
    chosen = _pick_trial(study, trial, best)
    return study, chosen, load_trial_spec(chosen, study.study_name)


__all__ += ["ONNX_OPSET", "OnnxExport", "export_onnx", "load_weights", "trial_spec"]
