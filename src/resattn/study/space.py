"""Search spaces: a backbone template with fixed layers and searchable slots (DESIGN.md §2–3).

A search space is a TOML file (``space/*.toml``)::

    name = "seed"                      # optional, defaults to the file stem
    description = "..."                # optional
    [backbone]
    stem_channels = 32
    stem_norm = "bn"                   # optional, default "bn"
    stem = "cifar"                     # optional: cifar (conv3x3) | imagenet (conv7x7/2 + max-pool/2)
    in_channels = 3                    # optional, default 3; num_classes comes from the dataset
    layers = [
      { conv = "block1", out_channels = 64 },          # fixed plain conv layer: conv3x3 → norm → ReLU
      { slot = "s1", out_channels = 64, stride = 1 },   # searchable slot
      { slot = "s2", out_channels = 128, stride = 2 },  # (a slot may add branch = "bottleneck")
      { conv = "block2", out_channels = 128 },
    ]
    [choices]                          # defaults for every slot
    kinds = ["residual", "pattern1", "pattern2", "pattern2_mix", "pattern4"]
    attentions = ["se", "eca", "cbam", "coord", "simam"]   # pattern1 / pattern2 / pattern2_mix
    skip_attentions = ["se", "eca"]                         # pattern4 skip path
    residual_attentions = ["se", "eca", "cbam", "coord"]    # pattern4 residual path
    reductions = [8, 16]               # for the attentions that take a reduction (se, cbam, coord)
    spatial_kernels = [3, 7]           # for the attentions that take a spatial kernel (cbam)
    residual_paths = ["gated", "direct"]                    # pattern4
    norms = ["bn"]                     # bn | gn
    learnable = [true]                 # whether γ (pattern4) / λ (pattern2_mix) are learnable
    gamma_s = { low = 0.0, high = 0.1 }    # a float range; a plain number means fixed
    gamma_r = { low = 0.02, high = 0.2 }   # { low, high, log = true } allowed when low > 0
    lam = { low = 0.05, high = 0.5 }
    [slots.s2]                         # per-slot override of any key of [choices]
    kinds = ["pattern4"]

Rules:

- Layer entries are tables with exactly one of ``conv`` (a fixed plain conv layer) or ``slot``
  (a searchable block); both take ``out_channels`` and an optional ``stride`` (1 or 2, default
  1); a conv also takes ``norm`` (default: the stem's norm), a slot ``branch`` (its residual
  branch, whatever kind is drawn: ``basic`` two 3×3 convs, the default, or ``bottleneck``
  1×1 → 3×3 → 1×1 with ``out_channels`` the block's output width, 4 × the inner width).
  ``stem`` (``cifar``, the default, or ``imagenet``) and ``branch`` are part of the fingerprint only
  when they are not the default, so spaces written before they existed keep their fingerprints.
  Names match ``[a-z_][a-z0-9_]*``, are unique, and become the module names of the built model
  (``layers.s1…`` in its ``state_dict``).
- Every ``[choices]`` key is optional. Omitted ones default to: all kinds but ``plain``, all
  registered attentions (for all three lists), ``reductions = [16]``, ``spatial_kernels = [7]``,
  ``residual_paths = ["gated"]``, ``norms = ["bn"]``, ``learnable = [true]``, ``gamma_s = 0.0``,
  ``gamma_r = 0.1``, ``lam = 0.1`` (the spec's defaults). A ``[slots.NAME]`` table replaces
  (does not merge) the lists it names, for that slot only.
- The order of the entries in a list does not matter (they are stored in a canonical order), but
  an entry may appear only once. ``kinds`` and ``norms`` must not be empty; another list may be
  empty only where no kind of the slot uses it (e.g. ``attentions = []`` with
  ``kinds = ["residual"]``).
- γ ranges must be within [0, :data:`GAMMA_MAX`] (10: a gate ``1 + γ·m`` that multiplies a path by
  up to 11 is no longer near the identity, and far larger values make every trial diverge), λ ranges
  within [0, 1]; ``low == high`` is the same as a fixed number.

Everything is validated when the file is loaded: a problem raises
:class:`~resattn.errors.ConfigError` naming the file, the dotted key (``slots.s2.kinds``,
``backbone.layers[1].stride``) and what is allowed.

:func:`sample` draws a :class:`~resattn.model.spec.NetSpec` from an Optuna trial, define-by-run and
conditional. Its parameters are named ``"{slot}.{param}"``:

========================  ===================================================================
``kind``, ``norm``        every slot
``attention``             pattern1, pattern2, pattern2_mix
``reduction``             … when that attention takes a reduction
``spatial_kernel``        … when that attention takes a spatial kernel
``skip_attention``        pattern4 (``skip_reduction``, ``skip_spatial_kernel`` likewise)
``residual_attention``    pattern4 (``residual_reduction``, ``residual_spatial_kernel`` likewise)
``residual_path``         pattern4
``gamma_s``               pattern4
``gamma_r``               pattern4 with residual path ``gated``
``lam``                   pattern2_mix
``learnable``             pattern2_mix (λ) and pattern4 (γ)
========================  ===================================================================

A value with a single choice (a one-entry list, a fixed number) is never suggested: it goes into
the spec directly, so the sampler only sees real choices. Each parameter name always has the same
distribution, as Optuna requires. :func:`params_for` is the inverse of :func:`sample`, and
:func:`baseline_designs` gives the designs every study enqueues first.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.trial import BaseTrial, FixedTrial

from resattn.errors import ConfigError, SpecError
from resattn.model.attention import ATTENTIONS, attention_options, option_values, plugin_hint
from resattn.model.kinds import KIND_TABLE, KINDS, RESIDUAL_PATHS
from resattn.model.presets import DESIGNS
from resattn.model.spec import (
    BOTTLENECK_EXPANSION,
    BRANCHES,
    MAX_CHANNELS,
    NORMS,
    STEMS,
    AttentionSpec,
    BlockSpec,
    NetSpec,
)
from resattn.tomlfile import is_int, is_number, literal, read_toml

__all__ = [
    "BASELINE_DESIGNS",
    "GAMMA_MAX",
    "Backbone",
    "ConvLayer",
    "FloatRange",
    "SearchSpace",
    "Slot",
    "SlotChoices",
    "baseline_designs",
    "load_space",
    "params_for",
    "parse_space",
    "placement",
    "residual_spec",
    "sample",
]

log = logging.getLogger(__name__)

#: The largest γ (initial gate strength of ``pattern4``) a space may sample or fix.
GAMMA_MAX = 10.0

SPACE_FORMAT = "resattn.space/1"
#: The names of the designs :func:`baseline_designs` can return, in order.
BASELINE_DESIGNS: tuple[str, ...] = tuple(DESIGNS)

_NAME_RE = re.compile(r"\A[a-z_][a-z0-9_]*\Z")
#: ``[choices]`` lists of attention options -> the option they give values for.
_OPTION_LISTS: dict[str, str] = {"reductions": "reduction", "spatial_kernels": "spatial_kernel"}
#: The ``[choices]`` attention list of each role (``""``: the single attention; pattern4's two paths).
_ROLE_LISTS: dict[str, str] = {"": "attentions", "skip_": "skip_attentions", "residual_": "residual_attentions"}


def _attention_names() -> tuple[str, ...]:
    """The registered attentions, in registry order (read at use: an attention registered at run
    time is a valid choice too)."""
    return tuple(ATTENTIONS)


def _roles(kind: str) -> tuple[str, ...]:
    """The attention roles a kind samples: ``""`` (one attention) or ``skip_`` and ``residual_``."""
    fields = KIND_TABLE[kind].attentions
    if fields == ("attention",):
        return ("",)
    return tuple("skip_" if f == "skip_attention" else "residual_" for f in fields)


def _option_allowed(option: str) -> Any:
    """What the registered attentions allow for ``option``: a ``range``, a tuple, or None (any)."""
    declared = [option_values(a)[option] for a in ATTENTIONS if option in option_values(a)]
    if not declared:
        return None
    if all(isinstance(d, range) for d in declared):
        lo, hi = min(d.start for d in declared), max(d.stop for d in declared)
        return range(lo, hi)
    return tuple(sorted({v for d in declared for v in d}))


# ------------------------------------------------------------------------------------------ the model


@dataclass(frozen=True)
class FloatRange:
    """A float choice: ``low == high`` is a fixed value, otherwise a (log-)uniform range."""

    low: float
    high: float
    log: bool = False

    @property
    def fixed(self) -> bool:
        """True when there is nothing to choose."""
        return self.low == self.high

    def contains(self, value: float) -> bool:
        """Whether ``value`` can be drawn from this range."""
        return self.low <= value <= self.high

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "log": self.log}

    def describe(self) -> str:
        if self.fixed:
            return f"{self.low:g}"
        return f"[{self.low:g}, {self.high:g}]" + (" (log)" if self.log else "")


@dataclass(frozen=True)
class SlotChoices:
    """The resolved choices of one slot: ``[choices]`` with the slot's overrides applied.

    Lists are tuples in canonical order (kinds, norms, residual paths and attentions in registry
    order; numbers ascending; ``False`` before ``True``).
    """

    kinds: tuple[str, ...]
    attentions: tuple[str, ...]
    skip_attentions: tuple[str, ...]
    residual_attentions: tuple[str, ...]
    reductions: tuple[int, ...]
    spatial_kernels: tuple[int, ...]
    residual_paths: tuple[str, ...]
    norms: tuple[str, ...]
    learnable: tuple[bool, ...]
    gamma_s: FloatRange
    gamma_r: FloatRange
    lam: FloatRange

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if isinstance(value, FloatRange) else list(value)
        return out


@dataclass(frozen=True)
class ConvLayer:
    """A fixed plain conv layer of the backbone (``BlockSpec("plain", …)``)."""

    name: str
    out_channels: int
    stride: int = 1
    norm: str = "bn"

    def block(self) -> BlockSpec:
        return BlockSpec("plain", self.out_channels, self.stride, norm=self.norm, name=self.name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "conv": self.name,
            "out_channels": self.out_channels,
            "stride": self.stride,
            "norm": self.norm,
        }


@dataclass(frozen=True)
class Slot:
    """A searchable position of the backbone."""

    name: str
    out_channels: int
    stride: int
    choices: SlotChoices
    branch: str = "basic"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "slot": self.name,
            "out_channels": self.out_channels,
            "stride": self.stride,
            "choices": self.choices.to_dict(),
        }
        if self.branch != BRANCHES[0]:
            out["branch"] = self.branch
        return out


@dataclass(frozen=True)
class Backbone:
    """The network template: stem, then fixed conv layers and slots in order, then the head."""

    stem_channels: int
    layers: tuple[ConvLayer | Slot, ...]
    stem_norm: str = "bn"
    in_channels: int = 3
    stem: str = "cifar"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "stem_channels": self.stem_channels,
            "stem_norm": self.stem_norm,
            "in_channels": self.in_channels,
            "layers": [layer.to_dict() for layer in self.layers],
        }
        if self.stem != STEMS[0]:
            out["stem"] = self.stem
        return out


@dataclass(frozen=True)
class SearchSpace:
    """A parsed, validated search space. Build one with :func:`load_space` or :func:`parse_space`."""

    name: str
    backbone: Backbone
    description: str = ""
    path: Path | None = None

    @property
    def slots(self) -> tuple[Slot, ...]:
        """The searchable slots, in backbone order."""
        return tuple(layer for layer in self.backbone.layers if isinstance(layer, Slot))

    def slot(self, name: str) -> Slot:
        """The slot called ``name`` (``KeyError`` if there is none)."""
        for slot in self.slots:
            if slot.name == name:
                return slot
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The canonical resolved content (JSON-serialisable), plus name, description and path."""
        return {
            "format": SPACE_FORMAT,
            "name": self.name,
            "description": self.description,
            "path": str(self.path) if self.path is not None else None,
            "backbone": self.backbone.to_dict(),
        }

    def fingerprint(self) -> str:
        """sha256 hex of the resolved content: the backbone and every slot's choices.

        Independent of comments, key and list order, file path, name and description; any change
        to what can be sampled changes it.
        """
        content = {"format": SPACE_FORMAT, "backbone": self.backbone.to_dict()}
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(text.encode()).hexdigest()


# ------------------------------------------------------------------------------------------- parsing

_CHOICE_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SlotChoices))
_DEFAULT_CHOICES: dict[str, Any] = {
    "kinds": tuple(k for k in KINDS if KIND_TABLE[k].fused),
    "attentions": None,  # every registered attention (read when the file is parsed)
    "skip_attentions": None,
    "residual_attentions": None,
    "reductions": (16,),
    "spatial_kernels": (7,),
    "residual_paths": ("gated",),
    "norms": ("bn",),
    "learnable": (True,),
    "gamma_s": FloatRange(0.0, 0.0),
    "gamma_r": FloatRange(0.1, 0.1),
    "lam": FloatRange(0.1, 0.1),
}


#: list key -> the values it may hold, in canonical order (reductions: any positive integer).
def _list_values(param: str) -> tuple[Any, ...]:
    """The values a ``[choices]`` list may hold, in canonical order (option lists: see
    :func:`_option_allowed`; an unbounded option gives ``()``)."""
    if param in _OPTION_LISTS:
        allowed = _option_allowed(_OPTION_LISTS[param])
        return tuple(allowed) if isinstance(allowed, tuple) else ()
    if param in ("attentions", "skip_attentions", "residual_attentions"):
        return _attention_names()
    return {"kinds": KINDS, "residual_paths": RESIDUAL_PATHS, "norms": NORMS, "learnable": (False, True)}[param]
_LIST_WHAT: dict[str, str] = {
    "kinds": "kind",
    "attentions": "attention",
    "skip_attentions": "attention",
    "residual_attentions": "attention",
    "reductions": "reduction",
    "spatial_kernels": "spatial kernel",
    "residual_paths": "residual path",
    "norms": "norm",
    "learnable": "value",
}


def _allowed_desc(param: str) -> str:
    """What a list of ``[choices]`` may hold, for error messages."""
    if param in _OPTION_LISTS:
        allowed = _option_allowed(_OPTION_LISTS[param])
        if isinstance(allowed, range):
            return f"positive integers up to {allowed.stop - 1}" if allowed.start == 1 else \
                f"integers from {allowed.start} to {allowed.stop - 1}"
        return _fmt(allowed) if allowed else "positive integers"
    if param == "learnable":
        return "true, false"
    return _fmt(_list_values(param))


def _fmt(values: Any) -> str:
    return ", ".join(literal(v) for v in values)








class _Parser:
    def __init__(self, source: str):
        self.source = source

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, file=self.source, key=key)

    def table(
        self, value: Any, key: str, allowed: tuple[str, ...], hints: dict[str, str] | None = None
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(key, f"must be a table, got {literal(value)}")
        for k in value:
            if k not in allowed:
                hint = (hints or {}).get(k, "")
                where = f"{key}.{k}" if key else str(k)
                raise self.error(where, f"unknown key{hint}; allowed keys: {', '.join(allowed)}")
        return value

    def int_in(self, value: Any, key: str, lo: int, hi: int) -> int:
        if not is_int(value) or not lo <= value <= hi:
            raise self.error(key, f"must be an integer from {lo} to {hi}, got {literal(value)}")
        return int(value)

    def stride(self, value: Any, key: str) -> int:
        if not is_int(value) or value not in (1, 2):
            raise self.error(key, f"must be 1 or 2, got {literal(value)}")
        return int(value)

    def choice(self, value: Any, key: str, allowed: tuple[str, ...], what: str) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise self.error(key, f"unknown {what} {literal(value)}; allowed: {_fmt(allowed)}")
        return value

    def name(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
            raise self.error(
                key, f"must be a lowercase identifier matching [a-z_][a-z0-9_]*, got {literal(value)}"
            )
        try:
            BlockSpec("plain", 1, name=value)
        except SpecError as err:
            raise self.error(key, err.reason) from None
        return value

    def choice_list(self, value: Any, key: str) -> tuple[Any, ...]:
        """Parse one list of ``[choices]`` (``key`` ends with its name); returns it in canonical order."""
        param = key.rsplit(".", 1)[-1]
        allowed: tuple[Any, ...] = _list_values(param)
        what = _LIST_WHAT[param]
        check: Callable[[Any], bool]
        if param in _OPTION_LISTS:
            bound = _option_allowed(_OPTION_LISTS[param])
            check = lambda v: is_int(v) and v >= 1 and (bound is None or v in bound)  # noqa: E731
        elif param == "learnable":
            check = lambda v: isinstance(v, bool)  # noqa: E731
        else:
            check = lambda v: isinstance(v, str) and v in allowed  # noqa: E731
        desc = _allowed_desc(param)
        if not isinstance(value, list):
            raise self.error(key, f"must be a list, got {literal(value)}; allowed entries: {desc}")
        seen: list[Any] = []
        for item in value:
            if not check(item):
                adjective = "unknown" if isinstance(item, str) and param != "learnable" else "invalid"
                hint = plugin_hint() if what == "attention" else ""
                raise self.error(key, f"{adjective} {what} {literal(item)}; allowed: {desc}{hint}")
            if item in seen:
                raise self.error(
                    key, f"duplicate entry {literal(item)}; each entry may appear once (allowed: {desc})"
                )
            seen.append(item)
        if not seen and param in ("kinds", "norms"):
            raise self.error(key, f"must not be empty; allowed: {desc}")
        if param in _OPTION_LISTS or param == "learnable":
            return tuple(sorted(seen))
        return tuple(v for v in allowed if v in seen)

    def float_range(self, value: Any, key: str) -> FloatRange:
        param = key.rsplit(".", 1)[-1]
        lo_bound, hi_bound = (0.0, 1.0) if param == "lam" else (0.0, GAMMA_MAX)
        bounds = "within [0, 1]" if param == "lam" else f"within [0, {GAMMA_MAX:g}]"
        form = "a number (fixed) or a table { low = …, high = … } (optionally log = true, when low > 0)"

        def number(v: Any, k: str) -> float:
            if not is_number(v):
                raise self.error(k, f"must be a number, got {literal(v)}; allowed: {form}")
            v = float(v)
            if not math.isfinite(v):
                raise self.error(k, f"must be finite, got {v}; allowed: numbers {bounds}")
            if not lo_bound <= v <= hi_bound:
                raise self.error(k, f"must be {bounds} ({param}), got {v:g}")
            return v

        if is_number(value):
            v = number(value, key)
            return FloatRange(v, v)
        if not isinstance(value, dict):
            raise self.error(key, f"must be {form}, got {literal(value)}")
        self.table(value, key, ("low", "high", "log"))
        for k in ("low", "high"):
            if k not in value:
                raise self.error(f"{key}.{k}", f"is required; {param} must be {form}")
        low, high = number(value["low"], f"{key}.low"), number(value["high"], f"{key}.high")
        if low > high:
            raise self.error(key, f"low ({low:g}) must be ≤ high ({high:g})")
        use_log = value.get("log", False)
        if not isinstance(use_log, bool):
            raise self.error(f"{key}.log", f"must be true or false, got {literal(use_log)}")
        if use_log and low <= 0:
            raise self.error(f"{key}.log", f"log = true needs low > 0, got low = {low:g}")
        if low == high:
            use_log = False
        return FloatRange(low, high, use_log)

    def choices(self, table: dict[str, Any], prefix: str) -> dict[str, tuple[Any, str]]:
        """Parse the keys of a ``[choices]``-like table; returns key -> (value, dotted key)."""
        out: dict[str, tuple[Any, str]] = {}
        for k, v in table.items():
            key = f"{prefix}.{k}"
            out[k] = (
                self.float_range(v, key) if k in ("gamma_s", "gamma_r", "lam") else self.choice_list(v, key),
                key,
            )
        return out


def _check_usage(p: _Parser, slot: str, resolved: dict[str, tuple[Any, str]]) -> None:
    """Lists a slot's kinds need must not be empty."""
    kinds = resolved["kinds"][0]

    def need(key: str, why: str) -> None:
        value, where = resolved[key]
        if not value:
            allowed = _allowed_desc(key)
            raise p.error(where, f"is empty but, in slot {slot!r}, {why}; allowed: {allowed}")

    used_attentions: list[str] = []
    for kind in kinds:
        for role in _roles(kind) if KIND_TABLE[kind].attentions else ():
            what = {"": "an attention", "skip_": "a skip attention", "residual_": "a residual attention"}[role]
            need(_ROLE_LISTS[role], f"kind {kind!r} needs {what}")
            used_attentions += [a for a in resolved[_ROLE_LISTS[role]][0] if a not in used_attentions]
        if KIND_TABLE[kind].has_residual_path:
            need("residual_paths", f"kind {kind!r} needs a residual path")
    learnable = [k for k in kinds if KIND_TABLE[k].learnable_field]
    if learnable:
        need("learnable", f"kind {learnable[0]!r} has learnable γ/λ")
    for key, opt in _OPTION_LISTS.items():
        takes = [a for a in used_attentions if opt in attention_options(a)]
        if takes:
            need(key, f"attention {takes[0]!r} takes a {opt.replace('_', ' ')}")
        values, where = resolved[key]
        for att in takes:  # every value must suit every attention of the slot that takes it
            for v in values:
                try:
                    AttentionSpec(att, **{opt: v})
                except SpecError as err:
                    raise p.error(where, f"{literal(v)} does not suit attention {att!r} in slot {slot!r}: "
                                         f"{err.reason}") from None


def parse_space(data: dict[str, Any], source: str, *, path: Path | None = None) -> SearchSpace:
    """Validate a parsed TOML document and build the :class:`SearchSpace`.

    ``source`` names the file in error messages; the name defaults to its stem.
    """
    p = _Parser(source)
    top = p.table(data, "", ("name", "description", "backbone", "choices", "slots"))
    name = top.get("name", Path(source).stem)
    if not isinstance(name, str) or not name.strip() or len(name) > 200 or not name.isprintable():
        raise p.error("name", f"must be a non-empty printable string, got {literal(name)}")
    description = top.get("description", "")
    if not isinstance(description, str):
        raise p.error("description", f"must be a string, got {literal(description)}")

    if "backbone" not in top:
        raise p.error("backbone", "is required: a [backbone] table with stem_channels and layers")
    bb = p.table(
        top["backbone"],
        "backbone",
        ("stem_channels", "stem_norm", "stem", "in_channels", "layers"),
        hints={"num_classes": " (num_classes comes from the dataset at search time)"},
    )
    if "stem_channels" not in bb:
        raise p.error("backbone.stem_channels", f"is required: an integer from 1 to {MAX_CHANNELS}")
    stem_channels = p.int_in(bb["stem_channels"], "backbone.stem_channels", 1, MAX_CHANNELS)
    stem_norm = p.choice(bb.get("stem_norm", "bn"), "backbone.stem_norm", NORMS, "norm")
    stem = p.choice(bb.get("stem", STEMS[0]), "backbone.stem", STEMS, "stem")
    in_channels = p.int_in(bb.get("in_channels", 3), "backbone.in_channels", 1, 64)
    if "layers" not in bb:
        raise p.error(
            "backbone.layers", "is required: a list of { conv = NAME, … } and { slot = NAME, … } tables"
        )
    raw_layers = bb["layers"]
    if not isinstance(raw_layers, list) or not raw_layers:
        raise p.error(
            "backbone.layers",
            "must be a non-empty list of { conv = NAME, … } and { slot = NAME, … } "
            f"tables, got {literal(raw_layers)}",
        )

    # Layer skeletons first: names, widths, strides.
    # (type, name, width, stride, norm of a conv or branch of a slot)
    skeleton: list[tuple[str, str, int, int, str]] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_layers):
        key = f"backbone.layers[{i}]"
        if not isinstance(raw, dict):
            raise p.error(
                key, f"must be a table {{ conv = NAME, … }} or {{ slot = NAME, … }}, got {literal(raw)}"
            )
        kinds_present = [k for k in ("conv", "slot") if k in raw]
        if len(kinds_present) != 1:
            raise p.error(
                key, "needs exactly one of conv = NAME (a fixed plain conv) or slot = NAME (searchable)"
            )
        ltype = kinds_present[0]
        allowed = (
            ("conv", "out_channels", "stride", "norm")
            if ltype == "conv"
            else ("slot", "out_channels", "stride", "branch")
        )
        hints = (
            {"norm": " (a slot's norm is a choice: set norms in [choices] or [slots.NAME])"}
            if ltype == "slot"
            else {}
        )
        p.table(raw, key, allowed, hints)
        lname = p.name(raw[ltype], f"{key}.{ltype}")
        if lname in seen:
            raise p.error(
                f"{key}.{ltype}",
                f"duplicate layer name {lname!r} (also layers[{seen[lname]}]); names must be unique",
            )
        seen[lname] = i
        if "out_channels" not in raw:
            raise p.error(f"{key}.out_channels", f"is required: an integer from 1 to {MAX_CHANNELS}")
        width = p.int_in(raw["out_channels"], f"{key}.out_channels", 1, MAX_CHANNELS)
        stride = p.stride(raw.get("stride", 1), f"{key}.stride")
        if ltype == "conv":
            extra = p.choice(raw.get("norm", stem_norm), f"{key}.norm", NORMS, "norm")
        else:
            extra = p.choice(raw.get("branch", BRANCHES[0]), f"{key}.branch", BRANCHES, "branch")
            if extra == "bottleneck" and width % BOTTLENECK_EXPANSION:
                raise p.error(f"{key}.out_channels", f"a bottleneck slot's output width must be a multiple of "
                                                     f"{BOTTLENECK_EXPANSION} (inner width out_channels / "
                                                     f"{BOTTLENECK_EXPANSION}), got {width}")
        skeleton.append((ltype, lname, width, stride, extra))
    slot_names = [s[1] for s in skeleton if s[0] == "slot"]
    if not slot_names:
        raise p.error(
            "backbone.layers", "has no slot: add at least one { slot = NAME, out_channels = … } entry"
        )

    defaults = {k: (_attention_names() if v is None else v, f"(default {k})") for k, v in _DEFAULT_CHOICES.items()}
    defaults |= p.choices(p.table(top.get("choices", {}), "choices", _CHOICE_KEYS), "choices")
    raw_slots = top.get("slots", {})
    if not isinstance(raw_slots, dict):
        raise p.error("slots", f"must be a table of [slots.NAME] tables, got {literal(raw_slots)}")
    for sname in raw_slots:
        if sname not in slot_names:
            raise p.error(
                f"slots.{sname}",
                f"no slot named {sname!r} in backbone.layers; slots: {', '.join(slot_names)}",
            )
    overrides: dict[str, dict[str, tuple[Any, str]]] = {}
    for sname, table in raw_slots.items():
        overrides[sname] = p.choices(p.table(table, f"slots.{sname}", _CHOICE_KEYS), f"slots.{sname}")

    layers: list[ConvLayer | Slot] = []
    for ltype, lname, width, stride, extra in skeleton:
        if ltype == "conv":
            layers.append(ConvLayer(lname, width, stride, extra))
            continue
        resolved = defaults | overrides.get(lname, {})
        _check_usage(p, lname, resolved)
        choices = SlotChoices(**{k: v for k, (v, _) in resolved.items()})
        layers.append(Slot(lname, width, stride, choices, extra))

    backbone = Backbone(stem_channels, tuple(layers), stem_norm, in_channels, stem)
    try:  # backstop: the backbone must make a valid spec
        _make_spec(
            backbone,
            {
                s.name: BlockSpec("residual", s.out_channels, s.stride, norm=s.choices.norms[0], branch=s.branch)
                for s in backbone.layers
                if isinstance(s, Slot)
            },
            num_classes=10,
        )
    except SpecError as err:
        field = err.field
        raise p.error(f"backbone.{field}" if field else "backbone", err.reason) from None
    return SearchSpace(name=name, backbone=backbone, description=description, path=path)


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a search-space TOML file (see the module docstring for the format)."""
    path = Path(path)
    source = str(path)
    data = read_toml(path, "search-space file")
    space = parse_space(data, source, path=path)
    log.debug(
        "loaded space %r from %s: %d slots, fingerprint %s",
        space.name,
        source,
        len(space.slots),
        space.fingerprint()[:12],
    )
    return space


# ------------------------------------------------------------------------------------------ sampling


def _make_spec(backbone: Backbone, blocks: dict[str, BlockSpec], *, num_classes: int) -> NetSpec:
    layers = tuple(
        layer.block() if isinstance(layer, ConvLayer) else blocks[layer.name] for layer in backbone.layers
    )
    return NetSpec(
        layers=layers,
        stem_channels=backbone.stem_channels,
        num_classes=num_classes,
        in_channels=backbone.in_channels,
        stem_norm=backbone.stem_norm,
        stem=backbone.stem,
    )


def residual_spec(space: SearchSpace, *, num_classes: int = 10) -> NetSpec:
    """The space's backbone with every slot ``residual`` (its first norm): the network whose weights a
    warm-started search (``train.init``) starts every placement from."""
    blocks = {
        s.name: BlockSpec("residual", s.out_channels, s.stride, name=s.name, branch=s.branch,
                          norm="bn" if "bn" in s.choices.norms else s.choices.norms[0])
        for s in space.slots
    }
    return _make_spec(space.backbone, blocks, num_classes=num_classes)


class _Draw:
    """Draws one slot's values; a single choice is used directly, never suggested."""

    def __init__(self, trial: BaseTrial, slot: Slot):
        self.trial = trial
        self.prefix = slot.name

    def pick(self, param: str, options: tuple[Any, ...]) -> Any:
        if len(options) == 1:
            return options[0]
        return self.trial.suggest_categorical(f"{self.prefix}.{param}", list(options))

    def number(self, param: str, rng: FloatRange) -> float:
        if rng.fixed:
            return rng.low
        return self.trial.suggest_float(f"{self.prefix}.{param}", rng.low, rng.high, log=rng.log)

    def attention(self, role: str, names: tuple[str, ...], c: SlotChoices) -> AttentionSpec:
        """``role`` is ``""`` (pattern1/2/2_mix), ``skip_`` or ``residual_`` (pattern4)."""
        name = self.pick(f"{role}attention", names)
        takes = attention_options(name)
        options: dict[str, int] = {}
        for key, opt in _OPTION_LISTS.items():  # other options keep the attention's default
            if opt in takes:
                options[opt] = self.pick(f"{role}{opt}", getattr(c, key))
        return AttentionSpec(name, **options)


def _sample_block(trial: BaseTrial, slot: Slot) -> BlockSpec:
    c = slot.choices
    d = _Draw(trial, slot)
    kind = d.pick("kind", c.kinds)
    norm = d.pick("norm", c.norms)
    base = {
        "kind": kind,
        "out_channels": slot.out_channels,
        "stride": slot.stride,
        "norm": norm,
        "name": slot.name,
        "branch": slot.branch,
    }
    roles = _roles(kind) if KIND_TABLE[kind].attentions else ()
    if not roles:
        return BlockSpec(**base)
    fields: dict[str, Any] = {}
    for role in roles:
        field = "skip_attention" if role == "skip_" else "attention"
        fields[field] = d.attention(role, getattr(c, _ROLE_LISTS[role]), c)
    path = d.pick("residual_path", c.residual_paths) if KIND_TABLE[kind].has_residual_path else None
    if path is not None:
        fields["residual_path"] = path
    used = KIND_TABLE[kind].fields(path)
    for scalar in ("lam", "gamma_s", "gamma_r"):  # in the order they have always been drawn
        if scalar in used:
            fields[scalar] = d.number(scalar, getattr(c, scalar))
    learnable = KIND_TABLE[kind].learnable_field
    if learnable:
        fields[learnable] = d.pick("learnable", c.learnable)
    return BlockSpec(**base, **fields)


def sample(trial: BaseTrial, space: SearchSpace, *, num_classes: int) -> NetSpec:
    """Draw a network from ``space`` (define-by-run, conditional; see the module docstring).

    ``trial`` is an ``optuna.Trial`` (or a ``FixedTrial``). Layers are named as in the backbone,
    so the model's ``state_dict`` keys read ``layers.<slot>…``.
    """
    blocks = {slot.name: _sample_block(trial, slot) for slot in space.slots}
    return _make_spec(space.backbone, blocks, num_classes=num_classes)


# --------------------------------------------------------------------------------------- the inverse


class _Mismatch(Exception):
    pass


def _slot_params(slot: Slot, block: BlockSpec) -> dict[str, Any]:
    """The params that make :func:`_sample_block` return ``block`` for ``slot``; raises _Mismatch."""
    c = slot.choices
    out: dict[str, Any] = {}
    prefix = slot.name

    def put(param: str, value: Any, options: tuple[Any, ...]) -> None:
        if not options or value not in options or isinstance(value, bool) != isinstance(options[0], bool):
            raise _Mismatch(f"slot {prefix!r}: {param} {literal(value)} is not among {_fmt(options)}")
        if len(options) > 1:
            out[f"{prefix}.{param}"] = value

    def put_float(param: str, value: float | None, rng: FloatRange) -> None:
        if value is None or not rng.contains(value):
            raise _Mismatch(f"slot {prefix!r}: {param} {value} is outside {rng.describe()}")
        if not rng.fixed:
            out[f"{prefix}.{param}"] = value

    def put_attention(role: str, att: AttentionSpec | None, names: tuple[str, ...]) -> None:
        if att is None:
            raise _Mismatch(f"slot {prefix!r}: no {role}attention")
        put(f"{role}attention", att.name, names)
        defaults = attention_options(att.name)
        for key, opt in _OPTION_LISTS.items():
            if opt in defaults:
                put(f"{role}{opt}", att.get(opt), getattr(c, key))
        for opt, default in defaults.items():  # the options a space cannot choose keep their default
            if opt not in _OPTION_LISTS.values() and att.get(opt) != default:
                raise _Mismatch(f"slot {prefix!r}: {role}attention option {opt}={att.get(opt)} is not the default")

    if (block.out_channels, block.stride, block.branch) != (slot.out_channels, slot.stride, slot.branch):
        raise _Mismatch(
            f"slot {prefix!r}: width/stride/branch {block.out_channels}/{block.stride}/{block.branch}, "
            f"the backbone has {slot.out_channels}/{slot.stride}/{slot.branch}"
        )
    put("kind", block.kind, c.kinds)
    put("norm", block.norm, c.norms)
    kind = KIND_TABLE[block.kind]
    for role in _roles(block.kind) if kind.attentions else ():
        field = "skip_attention" if role == "skip_" else "attention"
        put_attention(role, getattr(block, field), getattr(c, _ROLE_LISTS[role]))
    if kind.has_residual_path:
        put("residual_path", block.residual_path, c.residual_paths)
    for scalar in ("lam", "gamma_s", "gamma_r"):
        if scalar in kind.fields(block.residual_path):
            put_float(scalar, getattr(block, scalar), getattr(c, scalar))
    if kind.learnable_field:
        put("learnable", getattr(block, kind.learnable_field), c.learnable)
    return out


def _explain_params(space: SearchSpace, spec: NetSpec) -> tuple[dict[str, Any] | None, str]:
    bb = space.backbone
    if (spec.stem_channels, spec.stem_norm, spec.stem) != (bb.stem_channels, bb.stem_norm, bb.stem):
        return None, (
            f"stem {spec.stem}/{spec.stem_channels}/{spec.stem_norm}, "
            f"the backbone has {bb.stem}/{bb.stem_channels}/{bb.stem_norm}"
        )
    if spec.names() != tuple(layer.name for layer in bb.layers):
        return (
            None,
            f"layers {', '.join(spec.names())}, the backbone has {', '.join(x.name for x in bb.layers)}",
        )
    params: dict[str, Any] = {}
    for layer, block in zip(bb.layers, spec.layers, strict=True):
        if isinstance(layer, ConvLayer):
            if block != layer.block():
                return None, f"layer {layer.name!r} is {block.short()}, the backbone's is a fixed conv"
            continue
        try:
            params |= _slot_params(layer, block)
        except _Mismatch as err:
            return None, str(err)
    # Belt and braces: the params must sample back to the very same spec.
    again = sample(FixedTrial(params), space, num_classes=spec.num_classes)
    if dataclasses.replace(again, in_channels=spec.in_channels) != spec:
        log.warning("params_for: %s do not sample back to the spec (a bug); ignoring them", params)
        return None, "the params do not reproduce the spec"
    return params, ""


def params_for(space: SearchSpace, spec: NetSpec) -> dict[str, Any] | None:
    """The params that, passed to ``study.enqueue_trial(params)``, make :func:`sample` return ``spec``.

    ``None`` when ``spec`` is not in ``space`` (another backbone, or a slot's block outside its
    choices). ``num_classes`` and ``in_channels`` are not compared (they come from the dataset).
    """
    params, why = _explain_params(space, spec)
    if params is None:
        log.debug("spec not in space %r: %s", space.name, why)
    return params


def _design_block(design: str, slot: Slot) -> BlockSpec:
    norm = "bn" if "bn" in slot.choices.norms else slot.choices.norms[0]
    return DESIGNS[design](slot.out_channels, slot.stride, norm=norm, name=slot.name, branch=slot.branch)


def baseline_designs(space: SearchSpace) -> list[tuple[str, dict[str, Any]]]:
    """The designs every study enqueues first, as ``(design name, params)``, in this order:

    - ``all-residual``: every slot ``residual``;
    - ``seed-pattern2``: every slot ``pattern2`` with CBAM r16 k7 (seed 000's SimpleCNN_Pattern2);
    - ``seed-pattern4``: every slot ``pattern4``, SE r16 on both paths, gated, γ_s = 0, γ_r = 0.1,
      learnable (seed 002's Pattern4Net).

    Each only where every slot can express it exactly; a design that cannot be expressed, or that
    repeats an earlier one, is left out (logged at debug level). The norm is ``bn`` where a slot
    allows it, else the slot's first norm.
    """
    out: list[tuple[str, dict[str, Any]]] = []
    for design in BASELINE_DESIGNS:
        spec = _make_spec(
            space.backbone, {s.name: _design_block(design, s) for s in space.slots}, num_classes=10
        )
        params, why = _explain_params(space, spec)
        if params is None:
            log.debug("space %r cannot express design %s: %s", space.name, design, why)
        elif any(params == earlier for _, earlier in out):
            log.debug("space %r: design %s is the same as an earlier design", space.name, design)
        else:
            out.append((design, params))
    return out


def placement(spec: NetSpec, space: SearchSpace) -> list[tuple[str, str]]:
    """``(slot name, BlockSpec.short())`` for every slot of ``space``, for summaries."""
    by_name = {layer.name: layer for layer in spec.layers}
    out = []
    for slot in space.slots:
        if slot.name not in by_name:
            raise ValueError(f"spec has no layer named {slot.name!r} (slot of space {space.name!r})")
        out.append((slot.name, by_name[slot.name].short()))
    return out
