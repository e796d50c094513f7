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

from resattn.errors import SpecError
from resattn.model.attention import ATTENTIONS, attention_options, option_values, plugin_hint
from resattn.model.kinds import FIELD_DEFAULTS, KIND_TABLE, KINDS, RESIDUAL_PATHS, SCALAR_LABELS
from resattn.model.layers import BOTTLENECK_EXPANSION

__all__ = [
    "BOTTLENECK_EXPANSION",
    "BRANCHES",
    "KINDS",
    "MAX_CHANNELS",
    "NORMS",
    "RESIDUAL_PATHS",
    "STEMS",
    "AttentionSpec",
    "BlockSpec",
    "NetSpec",
    "SpecError",
]

#: Normalisation layers.
NORMS: tuple[str, ...] = ("bn", "gn")
#: Stems: ``cifar`` (conv3×3 → norm → ReLU, stride 1) | ``imagenet`` (conv7×7 stride 2 → norm → ReLU →
#: max-pool 3×3 stride 2, torchvision's ResNets). The first is the default.
STEMS: tuple[str, ...] = ("cifar", "imagenet")
#: Residual branches ``F(x)``: ``basic`` (conv3×3(stride) → norm → ReLU → conv3×3 → norm) | ``bottleneck``
#: (conv1×1 → conv3×3(stride) → conv1×1, each with norm, inner width out_channels / 4). The first is the default.
BRANCHES: tuple[str, ...] = ("basic", "bottleneck")
#: Upper bound on any width (a sanity limit, also keeps generated code sane).
MAX_CHANNELS = 8192
MAX_CLASSES = 100_000
MAX_IN_CHANNELS = 64
#: Bound on integer attention options a class does not bound itself.
MAX_OPTION_INT = 2**31 - 1

_NAME_RE = re.compile(r"\A[a-z_][a-z0-9_]{0,63}\Z")
# Layer names become module names in an nn.Sequential; these would clash with its attributes.
_RESERVED_NAMES = frozenset(dir(nn.Sequential())) | frozenset(keyword.kwlist)


def _allowed(values: tuple[Any, ...] | list[Any]) -> str:
    return ", ".join(str(v) for v in values)


def _describe_values(values: Any) -> str:
    if isinstance(values, range):
        step = f" in steps of {values.step}" if values.step != 1 else ""
        return f"an integer from {values.start} to {values.stop - 1}{step}"
    return "one of " + _allowed(tuple(values))


def _check_int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(name, f"must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise SpecError(name, f"must be between {lo} and {hi}, got {value}")
    return int(value)


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


def check_option(attention: str, option: str, value: Any, default: Any) -> int | float | bool:
    """``value`` validated for ``option`` of ``attention``: the type of its default (an int is
    accepted for a float option), within the class's declared ``option_values``; a
    :class:`SpecError` for the field ``option`` otherwise."""
    allowed = option_values(attention).get(option)
    try:
        if type(default) is bool:
            return _check_bool(option, value)
        if type(default) is int:
            number: int | float = _check_int(option, value, -MAX_OPTION_INT, MAX_OPTION_INT)
        else:
            number = _check_float(option, value)
    except SpecError:
        if allowed is None:
            raise
        raise SpecError(option, f"must be {_describe_values(allowed)}, got {value!r}") from None
    if allowed is not None and number not in allowed:
        raise SpecError(option, f"must be {_describe_values(allowed)}, got {value!r}")
    return number


@dataclass(frozen=True, init=False)
class AttentionSpec:
    """One attention (mask producer) and its options: ``AttentionSpec("cbam", reduction=8)`` (or
    positionally, in constructor order: ``AttentionSpec("cbam", 8, 7)``).

    The options are the constructor keywords of ``ATTENTIONS[name]`` (see
    :func:`~resattn.model.attention.attention_options`); options not given take the class's
    defaults, so two specs that build the same attention compare equal. ``spec.reduction`` reads
    an option (``AttributeError`` for one the attention does not take). As JSON:
    ``{"name": "cbam", "reduction": 16, "spatial_kernel": 7}``.
    """

    name: str
    #: ``(option, value)`` pairs in constructor order, defaults filled in.
    values: tuple[tuple[str, int | float | bool], ...]

    def __init__(self, name: str, *args: Any, **options: Any):
        if isinstance(name, str) and name not in ATTENTIONS and plugin_hint():
            raise SpecError("name", f"unknown value {name!r}; allowed: {_allowed(sorted(ATTENTIONS))}{plugin_hint()}")
        _check_choice("name", name, tuple(sorted(ATTENTIONS)))
        try:
            accepted = attention_options(name)
        except ValueError as err:
            raise SpecError("name", str(err)) from None
        if len(args) > len(accepted):
            raise SpecError("", f"attention {name!r} takes {len(accepted)} options, got {len(args)} positional values")
        for opt, value in zip(accepted, args, strict=False):  # positional options, in constructor order
            if opt in options:
                raise SpecError(opt, "given twice (positionally and by name)")
            options[opt] = value
        options = {k: v for k, v in options.items() if v is not None}  # None: the default
        for opt in options:
            if opt not in accepted:
                takes = ", ".join(accepted) or "no options"
                raise SpecError(str(opt), f"attention {name!r} does not take {opt} (it takes: {takes})")
        values = []
        for opt, default in accepted.items():
            value = options.get(opt)
            values.append((opt, default if value is None else check_option(name, opt, value, default)))
        _set(self, "name", name)
        _set(self, "values", tuple(values))

    def __getattr__(self, option: str) -> Any:
        for key, value in object.__getattribute__(self, "values"):
            if key == option:
                return value
        raise AttributeError(f"attention {object.__getattribute__(self, 'name')!r} has no option {option!r}")

    def options(self) -> dict[str, int | float | bool]:
        """Keyword arguments for ``ATTENTIONS[name](channels, **options)``."""
        return dict(self.values)

    def get(self, option: str) -> int | float | bool | None:
        """The value of ``option``, or ``None`` when this attention does not take it."""
        return dict(self.values).get(option)

    def short(self) -> str:
        """Compact label, e.g. ``cbam/r16/k7``: each option as its initial and value (``reduction``
        ``r``, ``spatial_kernel`` ``k``, others ``name=value``)."""
        parts = [self.name]
        for key, value in self.values:
            parts.append(f"{_OPTION_LABELS[key]}{value}" if key in _OPTION_LABELS else f"{key}={value}")
        return "/".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **dict(self.values)}

    @classmethod
    def from_dict(cls, data: Any) -> AttentionSpec:
        if isinstance(data, str):
            return cls(data)
        if not isinstance(data, dict):
            raise SpecError("", f"must be an attention name or a table, got {data!r}")
        if "name" not in data:
            raise SpecError("name", f"is required; allowed: {_allowed(sorted(ATTENTIONS))}")
        return cls(data["name"], **{str(k): v for k, v in data.items() if k != "name"})


#: Short labels of the options every shipped attention uses (others print as ``name=value``).
_OPTION_LABELS = {"reduction": "r", "spatial_kernel": "k"}


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


def _users(field_name: str) -> str:
    """Which kinds use an optional field, for error messages."""
    users = []
    for k in KIND_TABLE.values():
        paths = RESIDUAL_PATHS if k.has_residual_path else (None,)
        using = [p for p in paths if field_name in k.fields(p)]
        if len(using) == len(paths):
            users.append(k.name)
        elif using:
            users.append(f"{k.name} with residual_path {_allowed([repr(p) for p in using])}")
    return ", ".join(users)


@dataclass(frozen=True)
class BlockSpec:
    """One layer of the network body.

    Which optional fields a kind uses is stated once, in :data:`resattn.model.kinds.KIND_TABLE`
    (fields a kind does not use must stay ``None``; fields it uses default to
    :data:`~resattn.model.kinds.FIELD_DEFAULTS`):

    ========================  ================================================================
    ``plain``                 ``out_channels``, ``stride``, ``norm``
    ``residual``              the same
    ``pattern1``/``pattern2`` plus ``attention``
    ``pattern2_mix``          plus ``attention``, ``lam`` (λ₀, default 0.1), ``lam_learnable``
    ``pattern4``              plus ``attention`` (residual path), ``skip_attention``,
                              ``residual_path`` (``gated`` | ``direct``), ``gamma_s`` (default 0),
                              ``gamma_r`` (default 0.1, gated only), ``gamma_learnable``
    ========================  ================================================================

    ``branch`` (every kind but ``plain``) is the residual branch ``F(x)``: ``basic`` (two 3×3 convs, the
    default) or ``bottleneck`` (1×1 → 3×3(stride) → 1×1, torchvision's ResNet-50 block). For both,
    ``out_channels`` is the block's **output** width, which the skip, the attention and the next layer
    see; a bottleneck's inner width is ``out_channels // 4`` (so ``out_channels`` must be a multiple of
    4: torchvision's ``planes`` is ``out_channels / 4``). ``branch`` is left out of ``to_dict`` when it
    is ``basic``, so specs written before it existed read and serialise as they did.
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
    branch: str = "basic"

    def __post_init__(self) -> None:
        kind = KIND_TABLE[_check_choice("kind", self.kind, KINDS)]
        _check_int("out_channels", self.out_channels, 1, MAX_CHANNELS)
        _check_choice("branch", self.branch, BRANCHES)
        if self.branch != BRANCHES[0] and not kind.fused:
            raise SpecError("branch", f"kind {kind.name!r} has no residual branch; only {BRANCHES[0]!r} is allowed")
        if self.branch == "bottleneck" and self.out_channels % BOTTLENECK_EXPANSION:
            raise SpecError(
                "out_channels",
                f"a bottleneck block's output width must be a multiple of {BOTTLENECK_EXPANSION} "
                f"(inner width out_channels / {BOTTLENECK_EXPANSION}), got {self.out_channels}",
            )
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

        path = None
        if kind.has_residual_path:
            path = _check_choice("residual_path", self.residual_path or FIELD_DEFAULTS["residual_path"],
                                 RESIDUAL_PATHS)
        uses = kind.fields(path)
        for att in kind.attentions:
            if getattr(self, att) is None:
                what = "a skip attention" if att == "skip_attention" else "an attention"
                raise SpecError(att, f"kind {kind.name!r} needs {what}; allowed: {_allowed(sorted(ATTENTIONS))}")
        for opt in _OPTIONAL_FIELDS:
            value = getattr(self, opt)
            if opt not in uses:
                if value is not None:
                    raise SpecError(opt, f"kind {kind.name!r} does not use {opt} (only {_users(opt)})")
            elif value is None and opt in FIELD_DEFAULTS:
                _set(self, opt, FIELD_DEFAULTS[opt])
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
        if not self.attentions:
            return self.kind
        inner = "|".join(a.short() for a in self.attentions)
        for opt in ("lam", "gamma_s", "gamma_r"):
            value = getattr(self, opt)
            if value is not None:
                inner += f" {SCALAR_LABELS[opt]}={value:.3g}"
        if self.residual_path == "direct":
            inner += " direct"
        return f"{self.kind}[{inner}]"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None or (f.name == "branch" and value == BRANCHES[0]):
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


#: The fields of a block that only some kinds use (see :data:`resattn.model.kinds.KIND_TABLE`).
_OPTIONAL_FIELDS: tuple[str, ...] = (
    "attention", "skip_attention", "residual_path", "lam", "lam_learnable", "gamma_s", "gamma_r",
    "gamma_learnable",
)


@dataclass(frozen=True)
class NetSpec:
    """A whole network: stem → ``layers`` in order → global pool → linear head.

    Layers without a ``name`` are named ``layer{i}``; names must be unique. They become the
    module names (``layers.<name>``) in the built model and its ``state_dict``.

    ``stem`` is ``cifar`` (conv3×3 → norm → ReLU, the default) or ``imagenet`` (conv7×7 stride 2 →
    norm → ReLU → max-pool 3×3 stride 2, torchvision's ResNets); either has ``stem_channels`` output
    channels and norm ``stem_norm``. ``stem`` is left out of ``to_dict`` when it is ``cifar``.
    """

    layers: tuple[BlockSpec, ...]
    stem_channels: int = 32
    num_classes: int = 10
    in_channels: int = 3
    stem_norm: str = "bn"
    format: str = field(default="resattn.netspec/1", repr=False)
    stem: str = "cifar"

    def __post_init__(self) -> None:
        if self.format != "resattn.netspec/1":
            raise SpecError("format", f"unsupported spec format {self.format!r}; allowed: resattn.netspec/1")
        _check_int("stem_channels", self.stem_channels, 1, MAX_CHANNELS)
        _check_int("num_classes", self.num_classes, 1, MAX_CLASSES)
        _check_int("in_channels", self.in_channels, 1, MAX_IN_CHANNELS)
        _check_choice("stem_norm", self.stem_norm, NORMS)
        _check_choice("stem", self.stem, STEMS)
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
        out: dict[str, Any] = {
            "format": self.format,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "stem_channels": self.stem_channels,
            "stem_norm": self.stem_norm,
        }
        if self.stem != STEMS[0]:
            out["stem"] = self.stem
        out["layers"] = [layer.to_dict() for layer in self.layers]
        return out

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
