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
    "ENTRY_POINT_GROUP",
    "PLUGINS_ENV",
    "PLUGIN_PROBLEMS",
    "CoordAttention",
    "SimAM",
    "SqueezeExcite",
    "attention_options",
    "eca_kernel_size",
    "make_attention",
    "option_values",
    "plugin_hint",
]

#: name -> mask-producer class, each constructed as ``cls(channels, **options)``.
ATTENTIONS: dict[str, type[nn.Module]] = {
    "se": SqueezeExcite,
    "eca": ECA,
    "cbam": CBAM,
    "coord": CoordAttention,
    "simam": SimAM,
}


#: Entry-point group through which an installed package adds attentions, e.g. in its pyproject.toml
#: ``[project.entry-points."resattn.attentions"]`` ``mine = "mypkg.attention:MyMask"``.
ENTRY_POINT_GROUP = "resattn.attentions"
#: Environment variable naming modules (comma-separated, importable) that register attentions
#: themselves (``resattn.ATTENTIONS["mine"] = MyMask``): how a command-line run sees your own module.
PLUGINS_ENV = "RESATTN_PLUGINS"
#: What went wrong loading those (named where an unknown attention is reported).
PLUGIN_PROBLEMS: list[str] = []


def plugin_hint() -> str:
    """``""``, or a sentence on the plugins that could not be loaded (for unknown-attention errors)."""
    return f" (attention plugins that did not load: {'; '.join(PLUGIN_PROBLEMS)})" if PLUGIN_PROBLEMS else ""


def _unknown(name: object) -> ValueError:
    return ValueError(f"unknown attention {name!r}; valid names: {', '.join(sorted(ATTENTIONS))}{plugin_hint()}")


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


def _load_plugins() -> None:
    """Register the attentions of installed packages (:data:`ENTRY_POINT_GROUP`) and import the
    modules named in :data:`PLUGINS_ENV`. Runs once, when this registry is first imported; a plugin
    that fails is recorded in :data:`PLUGIN_PROBLEMS` (and named where its attention is missed), it
    does not stop resattn."""
    import importlib
    import importlib.metadata
    import os

    try:
        entry_points = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    except Exception as err:  # a broken distribution's metadata
        entry_points = []
        PLUGIN_PROBLEMS.append(f"entry points of {ENTRY_POINT_GROUP!r} could not be read ({err})")
    for ep in entry_points:
        try:
            cls = ep.load()
        except Exception as err:
            PLUGIN_PROBLEMS.append(f"entry point {ep.name} = {ep.value!r} could not be loaded "
                                   f"({type(err).__name__}: {err})")
            continue
        if ATTENTIONS.get(ep.name, cls) is not cls:
            PLUGIN_PROBLEMS.append(f"entry point {ep.name} = {ep.value!r} not registered: {ep.name!r} is "
                                   f"already {ATTENTIONS[ep.name].__name__}")
            continue
        ATTENTIONS[ep.name] = cls
    for module in (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",")):
        if not module:
            continue
        try:
            importlib.import_module(module)
        except Exception as err:
            PLUGIN_PROBLEMS.append(f"{PLUGINS_ENV} module {module!r} could not be imported "
                                   f"({type(err).__name__}: {err})")


_load_plugins()  # last: a plugin module may import this registry while it loads
