"""Attention modules as mask producers, and their registry.

Every attention here follows one contract (DESIGN.md §1): ``cls(channels, **options)`` builds
it, and ``forward(t)`` returns a mask ``m(t)`` with values in (0, 1) that broadcasts to ``t``.
Applying the attention is ``m(t) * t``; the blocks decide how (directly, through a
near-identity gate, or mixed with λ).

``ATTENTIONS`` maps each name to its class; :func:`make_attention` builds one by name and
raises a ``ValueError`` listing the valid names for an unknown one.

A new attention is one module plus one line here (or, at run time, ``ATTENTIONS["mine"] = MyMask``
from the user's own importable module): specs, :func:`resattn.build`, search-space files and the
exporter all read this mapping. An attention's *options* are the keyword parameters of its
constructor after ``channels`` whose defaults are plain numbers or booleans; a class may say which
values each option allows with a class attribute ``option_values`` (option -> a ``range`` or a tuple
of allowed values), which spec validation checks. The module must import only torch, math and the
standard library: the exporter copies its source into the standalone model file.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from resattn.model.attention.cbam import CBAM
from resattn.model.attention.coord import CoordAttention
from resattn.model.attention.eca import ECA, eca_kernel_size
from resattn.model.attention.se import SqueezeExcite
from resattn.model.attention.simam import SimAM

__all__ = [
    "ATTENTIONS",
    "CBAM",
    "ECA",
    "CoordAttention",
    "SimAM",
    "SqueezeExcite",
    "attention_options",
    "eca_kernel_size",
    "make_attention",
    "option_values",
]

#: name -> mask-producer class, each constructed as ``cls(channels, **options)``.
ATTENTIONS: dict[str, type[nn.Module]] = {
    "se": SqueezeExcite,
    "eca": ECA,
    "cbam": CBAM,
    "coord": CoordAttention,
    "simam": SimAM,
}


def _unknown(name: object) -> ValueError:
    return ValueError(f"unknown attention {name!r}; valid names: {', '.join(sorted(ATTENTIONS))}")


def _scalar(value: Any) -> bool:
    return type(value) in (int, float, bool)


def attention_options(name: str) -> dict[str, Any]:
    """The options attention ``name`` accepts (constructor keywords after ``channels`` with a plain
    number or boolean default), in constructor order, with their defaults.

    Raises ``ValueError`` for an unknown name, and for a class that needs more than ``channels``
    (a parameter without a default cannot be given by a spec).
    """
    if name not in ATTENTIONS:
        raise _unknown(name)
    params = list(inspect.signature(ATTENTIONS[name].__init__).parameters.values())[2:]  # self, channels
    required = [p.name for p in params if p.default is inspect.Parameter.empty
                and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
    if required:
        raise ValueError(f"attention {name!r} ({ATTENTIONS[name].__name__}) needs arguments besides channels: "
                         f"{', '.join(required)}; give them defaults to use it in a spec")
    return {p.name: p.default for p in params if _scalar(p.default)}


def option_values(name: str) -> dict[str, Any]:
    """The allowed values the class of attention ``name`` declares per option (``option_values``
    class attribute: option -> ``range`` or tuple); options it does not list take any value of
    their default's type."""
    if name not in ATTENTIONS:
        raise _unknown(name)
    declared = getattr(ATTENTIONS[name], "option_values", None) or {}
    return dict(declared) if isinstance(declared, dict) else {}


def make_attention(name: str, channels: int, **options: Any) -> nn.Module:
    """Build the mask producer ``name`` for ``channels`` channels."""
    if name not in ATTENTIONS:
        raise _unknown(name)
    return ATTENTIONS[name](channels, **options)
