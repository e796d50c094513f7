"""Attention modules as mask producers, and their registry.

Every attention here follows one contract (DESIGN.md §1): ``cls(channels, **options)`` builds
it, and ``forward(t)`` returns a mask ``m(t)`` with values in (0, 1) that broadcasts to ``t``.
Applying the attention is ``m(t) * t``; the blocks decide how (directly, through a
near-identity gate, or mixed with λ).

``ATTENTIONS`` maps each name to its class; :func:`make_attention` builds one by name and
raises a ``ValueError`` listing the valid names for an unknown one.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from resattn.attention.cbam import CBAM
from resattn.attention.coord import CoordAttention
from resattn.attention.eca import ECA, eca_kernel_size
from resattn.attention.se import SqueezeExcite
from resattn.attention.simam import SimAM

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


def attention_options(name: str) -> dict[str, Any]:
    """The keyword options attention ``name`` accepts, with their defaults."""
    if name not in ATTENTIONS:
        raise _unknown(name)
    params = list(inspect.signature(ATTENTIONS[name].__init__).parameters.values())[2:]  # self, channels
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def make_attention(name: str, channels: int, **options: Any) -> nn.Module:
    """Build the mask producer ``name`` for ``channels`` channels."""
    if name not in ATTENTIONS:
        raise _unknown(name)
    return ATTENTIONS[name](channels, **options)
