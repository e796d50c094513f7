"""Architecture as data: frozen, validated, JSON round-trippable network descriptions.

A :class:`NetSpec` is a stem, an ordered tuple of :class:`BlockSpec` layers and a linear head.
Every value is a plain ``str``/``int``/``float``/``bool``/``None`` or a nested spec, so a spec
is hashable, comparable and serialisable. Validation happens on construction; a
:class:`SpecError` names the field (``layers[2].attention.name``), the bad value and what is
allowed.

Values that a kind does not use must be left unset (``None``); values a kind does use are
filled with their defaults. So two specs that build the same network compare equal, which
the search relies on to recognise duplicates.
"""

from __future__ import annotations

import dataclasses
import json
import keyword
import math
import re
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from resattn.attention import ATTENTIONS, attention_options

__all__ = [
    "KINDS",
    "MAX_CHANNELS",
    "NORMS",
    "AttentionSpec",
    "BlockSpec",
    "NetSpec",
    "SpecError",
]

#: Block kinds, see DESIGN.md §1.
KINDS: tuple[str, ...] = ("plain", "residual", "pattern1", "pattern2", "pattern2_mix", "pattern4")
#: Normalisation layers.
NORMS: tuple[str, ...] = ("bn", "gn")
#: How pattern4's residual path applies its attention.
RESIDUAL_PATHS: tuple[str, ...] = ("gated", "direct")
#: Upper bound on any width (a sanity limit, also keeps generated code sane).
MAX_CHANNELS = 8192
MAX_CLASSES = 100_000
#: Attention option bounds.
MAX_REDUCTION = 1024
SPATIAL_KERNELS: tuple[int, ...] = (3, 7)

_KINDS_WITH_ATTENTION = ("pattern1", "pattern2", "pattern2_mix", "pattern4")
_NAME_RE = re.compile(r"\A[a-z_][a-z0-9_]{0,63}\Z")
# Layer names become module names in an nn.Sequential; these would clash with its attributes.
_RESERVED_NAMES = frozenset(dir(nn.Sequential())) | frozenset(keyword.kwlist)

# Defaults filled in for the kinds that use a value.
DEFAULT_LAM = 0.1
DEFAULT_GAMMA_S = 0.0
DEFAULT_GAMMA_R = 0.1


class SpecError(ValueError):
    """An invalid spec. ``field`` is the dotted path of the offending value."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}" if field else message)

    def under(self, prefix: str) -> SpecError:
        """The same error, with its field path moved under ``prefix``."""
        return SpecError(f"{prefix}.{self.field}" if self.field else prefix, self.reason)


def _allowed(values: tuple[Any, ...] | list[Any]) -> str:
    return ", ".join(str(v) for v in values)


def _check_int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(name, f"must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise SpecError(name, f"must be between {lo} and {hi}, got {value}")
    return value


def _check_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(name, f"must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise SpecError(name, f"must be finite, got {value!r}")
    return value


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SpecError(name, f"must be true or false, got {value!r}")
    return value


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise SpecError(name, f"unknown value {value!r}; allowed: {_allowed(allowed)}")
    return value


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


@dataclass(frozen=True)
class AttentionSpec:
    """One attention (mask producer) and its options.

    ``reduction`` applies to ``se``, ``cbam`` and ``coord``; ``spatial_kernel`` (3 or 7) to
    ``cbam`` only. Options an attention does not take must stay ``None``; options it takes
    default to the attention's own default.
    """

    name: str
    reduction: int | None = None
    spatial_kernel: int | None = None

    def __post_init__(self) -> None:
        _check_choice("name", self.name, tuple(sorted(ATTENTIONS)))
        accepted = attention_options(self.name)
        for opt in ("reduction", "spatial_kernel"):
            value = getattr(self, opt)
            if opt not in accepted:
                if value is not None:
                    takes = ", ".join(sorted(accepted)) or "no options"
                    raise SpecError(opt, f"attention {self.name!r} does not take {opt} (it takes: {takes})")
                continue
            if value is None:
                _set(self, opt, accepted[opt])
        if self.reduction is not None:
            _check_int("reduction", self.reduction, 1, MAX_REDUCTION)
        if self.spatial_kernel is not None and (
            isinstance(self.spatial_kernel, bool)
            or not isinstance(self.spatial_kernel, int)
            or self.spatial_kernel not in SPATIAL_KERNELS
        ):
            raise SpecError(
                "spatial_kernel", f"must be one of {_allowed(SPATIAL_KERNELS)}, got {self.spatial_kernel!r}"
            )

    def options(self) -> dict[str, int]:
        """Keyword arguments for ``ATTENTIONS[name](channels, **options)``."""
        return {k: v for k in ("reduction", "spatial_kernel") if (v := getattr(self, k)) is not None}

    def short(self) -> str:
        """Compact label, e.g. ``cbam/r16/k7``."""
        parts = [self.name]
        if self.reduction is not None:
            parts.append(f"r{self.reduction}")
        if self.spatial_kernel is not None:
            parts.append(f"k{self.spatial_kernel}")
        return "/".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: Any) -> AttentionSpec:
        if isinstance(data, str):
            return cls(data)
        if not isinstance(data, dict):
            raise SpecError("", f"must be an attention name or a table, got {data!r}")
        _reject_unknown(data, cls)
        if "name" not in data:
            raise SpecError("name", f"is required; allowed: {_allowed(sorted(ATTENTIONS))}")
        return cls(**data)


def _reject_unknown(data: dict[str, Any], cls: type) -> None:
    known = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in known:
            raise SpecError(str(key), f"unknown key; allowed keys: {_allowed(known)}")


def _coerce_attention(name: str, value: Any) -> AttentionSpec | None:
    if value is None or isinstance(value, AttentionSpec):
        return value
    try:
        return AttentionSpec.from_dict(value)
    except SpecError as err:
        raise err.under(name) from None


@dataclass(frozen=True)
class BlockSpec:
    """One layer of the network body.

    Fields used by each kind (others must stay ``None``):

    ========================  ================================================================
    ``plain``                 ``out_channels``, ``stride``, ``norm``
    ``residual``              the same
    ``pattern1``/``pattern2`` plus ``attention``
    ``pattern2_mix``          plus ``attention``, ``lam`` (λ₀, default 0.1), ``lam_learnable``
    ``pattern4``              plus ``attention`` (residual path), ``skip_attention``,
                              ``residual_path`` (``gated`` | ``direct``), ``gamma_s`` (default 0),
                              ``gamma_r`` (default 0.1, gated only), ``gamma_learnable``
    ========================  ================================================================
    """

    kind: str
    out_channels: int
    stride: int = 1
    norm: str = "bn"
    attention: AttentionSpec | None = None
    skip_attention: AttentionSpec | None = None
    residual_path: str | None = None
    lam: float | None = None
    lam_learnable: bool | None = None
    gamma_s: float | None = None
    gamma_r: float | None = None
    gamma_learnable: bool | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        kind = _check_choice("kind", self.kind, KINDS)
        _check_int("out_channels", self.out_channels, 1, MAX_CHANNELS)
        if isinstance(self.stride, bool) or not isinstance(self.stride, int) or self.stride not in (1, 2):
            raise SpecError("stride", f"must be 1 or 2, got {self.stride!r}")
        _check_choice("norm", self.norm, NORMS)
        if self.name is not None and (not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name)):
            raise SpecError(
                "name",
                "must be a lowercase identifier ([a-z_][a-z0-9_]*, at most 64 characters), "
                f"got {self.name!r}",
            )
        if self.name is not None and self.name in _RESERVED_NAMES:
            raise SpecError(
                "name",
                f"{self.name!r} is reserved (a Python keyword or an attribute of torch.nn.Module); choose another",
            )
        _set(self, "attention", _coerce_attention("attention", self.attention))
        _set(self, "skip_attention", _coerce_attention("skip_attention", self.skip_attention))

        uses: dict[str, Any] = {}  # field -> default, for the fields this kind uses
        if kind in _KINDS_WITH_ATTENTION:
            if self.attention is None:
                raise SpecError(
                    "attention", f"kind {kind!r} needs an attention; allowed: {_allowed(sorted(ATTENTIONS))}"
                )
            uses["attention"] = None
        if kind == "pattern2_mix":
            uses |= {"lam": DEFAULT_LAM, "lam_learnable": True}
        if kind == "pattern4":
            if self.skip_attention is None:
                raise SpecError(
                    "skip_attention",
                    f"kind 'pattern4' needs a skip attention; allowed: {_allowed(sorted(ATTENTIONS))}",
                )
            path = self.residual_path if self.residual_path is not None else "gated"
            _check_choice("residual_path", path, RESIDUAL_PATHS)
            uses |= {"skip_attention": None, "residual_path": "gated", "gamma_s": DEFAULT_GAMMA_S,
                     "gamma_learnable": True}
            if path == "gated":
                uses["gamma_r"] = DEFAULT_GAMMA_R

        for opt, users in _OPTIONAL_FIELDS.items():
            value = getattr(self, opt)
            if opt not in uses:
                if value is not None:
                    raise SpecError(opt, f"kind {kind!r} does not use {opt} (only {users})")
            elif value is None and uses[opt] is not None:
                _set(self, opt, uses[opt])
        for opt in ("lam", "gamma_s", "gamma_r"):
            if getattr(self, opt) is not None:
                _set(self, opt, _check_float(opt, getattr(self, opt)))
        for opt in ("lam_learnable", "gamma_learnable"):
            if getattr(self, opt) is not None:
                _check_bool(opt, getattr(self, opt))

    @property
    def attentions(self) -> tuple[AttentionSpec, ...]:
        """The attentions this block uses (skip path first)."""
        return tuple(a for a in (self.skip_attention, self.attention) if a is not None)

    def short(self) -> str:
        """Compact one-line label, e.g. ``pattern4[se/r16|cbam/r16/k7 γs=0 γr=0.1]``."""
        if self.kind in ("plain", "residual"):
            return self.kind
        if self.kind == "pattern4":
            assert self.skip_attention is not None and self.attention is not None
            inner = f"{self.skip_attention.short()}|{self.attention.short()} γs={self.gamma_s:.3g}"
            inner += f" γr={self.gamma_r:.3g}" if self.residual_path == "gated" else " direct"
            return f"pattern4[{inner}]"
        assert self.attention is not None
        extra = f" λ={self.lam:.3g}" if self.kind == "pattern2_mix" else ""
        return f"{self.kind}[{self.attention.short()}{extra}]"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            out[f.name] = value.to_dict() if isinstance(value, AttentionSpec) else value
        return out

    @classmethod
    def from_dict(cls, data: Any) -> BlockSpec:
        if not isinstance(data, dict):
            raise SpecError("", f"a layer must be a table, got {data!r}")
        _reject_unknown(data, cls)
        for key in ("kind", "out_channels"):
            if key not in data:
                allowed = f"; allowed: {_allowed(KINDS)}" if key == "kind" else ""
                raise SpecError(key, "is required" + allowed)
        return cls(**data)


_OPTIONAL_FIELDS: dict[str, str] = {
    "attention": "pattern1, pattern2, pattern2_mix, pattern4",
    "skip_attention": "pattern4",
    "residual_path": "pattern4",
    "lam": "pattern2_mix",
    "lam_learnable": "pattern2_mix",
    "gamma_s": "pattern4",
    "gamma_r": "pattern4 with residual_path 'gated'",
    "gamma_learnable": "pattern4",
}


@dataclass(frozen=True)
class NetSpec:
    """A whole network: stem conv → ``layers`` in order → global pool → linear head.

    Layers without a ``name`` are named ``layer{i}``; names must be unique. They become the
    module names (``layers.<name>``) in the built model and its ``state_dict``.
    """

    layers: tuple[BlockSpec, ...]
    stem_channels: int = 32
    num_classes: int = 10
    in_channels: int = 3
    stem_norm: str = "bn"
    format: str = field(default="resattn.netspec/1", repr=False)

    def __post_init__(self) -> None:
        if self.format != "resattn.netspec/1":
            raise SpecError("format", f"unsupported spec format {self.format!r}; allowed: resattn.netspec/1")
        _check_int("stem_channels", self.stem_channels, 1, MAX_CHANNELS)
        _check_int("num_classes", self.num_classes, 1, MAX_CLASSES)
        _check_int("in_channels", self.in_channels, 1, 64)
        _check_choice("stem_norm", self.stem_norm, NORMS)
        if isinstance(self.layers, str | bytes) or not isinstance(self.layers, tuple | list):
            raise SpecError("layers", f"must be a list of layers, got {self.layers!r}")
        if not self.layers:
            raise SpecError("layers", "must hold at least one layer")
        layers = []
        seen: set[str] = set()
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, BlockSpec):
                try:
                    layer = BlockSpec.from_dict(layer)
                except SpecError as err:
                    raise err.under(f"layers[{i}]") from None
            if layer.name is None:
                layer = dataclasses.replace(layer, name=f"layer{i}")
            if layer.name in seen:
                raise SpecError(f"layers[{i}].name", f"duplicate layer name {layer.name!r}")
            seen.add(layer.name)
            layers.append(layer)
        _set(self, "layers", tuple(layers))

    @property
    def out_channels(self) -> int:
        return self.layers[-1].out_channels

    def names(self) -> tuple[str, ...]:
        return tuple(layer.name or "" for layer in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "stem_channels": self.stem_channels,
            "stem_norm": self.stem_norm,
            "layers": [layer.to_dict() for layer in self.layers],
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: Any) -> NetSpec:
        if not isinstance(data, dict):
            raise SpecError("", f"a network spec must be a JSON object, got {type(data).__name__}")
        _reject_unknown(data, cls)
        if "layers" not in data:
            raise SpecError("layers", "is required")
        layers = data["layers"]
        return cls(**{**data, "layers": tuple(layers) if isinstance(layers, list) else layers})

    @classmethod
    def from_json(cls, text: str | bytes) -> NetSpec:
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise SpecError("", f"not valid JSON: {err}") from None
        return cls.from_dict(data)


def _reject_constant(name: str) -> Any:
    raise SpecError("", f"JSON constant {name} is not allowed (values must be finite)")
