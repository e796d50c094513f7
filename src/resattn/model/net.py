"""``build(spec) -> nn.Module``: a pure function from a :class:`~resattn.model.spec.NetSpec` to a model.

Building goes through a *plan*: :func:`plan` turns a spec into a tree of :class:`Call` values (which
class or function, with which plain arguments), reading the kind table
(:data:`resattn.model.kinds.KIND_TABLE`) and the attention registry; :meth:`Call.make` runs it. The
exporter writes the very same tree out as source code, so what :func:`build` makes and what an
exported file makes cannot differ.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from resattn.model.attention import ATTENTIONS
from resattn.model.kinds import KIND_TABLE
from resattn.model.layers import (
    ApplyMask,
    BottleneckBranch,
    FusionBlock,
    ImageNetStem,
    MaskMix,
    NearIdentityGate,
    PlainLayer,
    ResidualBranch,
    make_skip,
)
from resattn.model.spec import AttentionSpec, BlockSpec, NetSpec

__all__ = ["BRANCH_CLASSES", "OPERATORS", "Call", "Net", "build", "make_layer", "plan", "plan_layer", "plan_stem"]

#: Operator of the kind table (``apply`` / ``gate`` / ``mix``) -> its module class. ``apply`` takes
#: the mask only; ``gate`` and ``mix`` take the mask, the initial scalar and whether it is learnable.
OPERATORS: dict[str, type[nn.Module]] = {"apply": ApplyMask, "gate": NearIdentityGate, "mix": MaskMix}
#: ``BlockSpec.branch`` -> the class of ``F(x)``; both take ``(in_channels, out_channels, stride, norm)``.
BRANCH_CLASSES: dict[str, type[nn.Module]] = {"basic": ResidualBranch, "bottleneck": BottleneckBranch}


@dataclass(frozen=True)
class Call:
    """``fn(*args, **dict(kwargs))``: one constructor (or factory function) call of a plan.

    Arguments are plain values (``int``, ``float``, ``bool``, ``str``, ``None``), nested calls, or
    tuples of those.
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()

    def make(self) -> Any:
        """Run the call (nested calls first)."""
        return self.fn(*(_make(a) for a in self.args), **{k: _make(v) for k, v in self.kwargs})

    def walk(self) -> list[Call]:
        """This call and every nested call, depth first."""
        out = [self]
        for value in (*self.args, *(v for _, v in self.kwargs)):
            out += _walk(value)
        return out


def _make(value: Any) -> Any:
    if isinstance(value, Call):
        return value.make()
    if isinstance(value, tuple):
        return tuple(_make(v) for v in value)
    return value


def _walk(value: Any) -> list[Call]:
    if isinstance(value, Call):
        return value.walk()
    if isinstance(value, tuple):
        return [c for v in value for c in _walk(v)]
    return []


class Net(nn.Module):
    """stem → ``layers`` (named, in order) → global average pool → linear head.

    ``layers`` is a sequence of ``(name, module)`` pairs; the names become the module names
    (``layers.<name>…`` in the ``state_dict``). ``width`` is the channel count the last layer puts out.
    """

    def __init__(
        self, stem: nn.Module, layers: Sequence[tuple[str, nn.Module]], width: int, num_classes: int
    ):
        super().__init__()
        self.stem = stem
        self.layers = nn.Sequential(OrderedDict(layers))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


def _attention(spec: AttentionSpec | None, channels: int) -> Call:
    assert spec is not None, "a validated BlockSpec carries every attention its kind uses"
    return Call(ATTENTIONS[spec.name], (channels,), tuple(spec.values))


def plan_layer(spec: BlockSpec, in_channels: int) -> Call:
    """The call that builds the layer ``spec`` on ``in_channels`` input channels."""
    c = spec.out_channels
    shape = ((("stride", spec.stride), ("norm", spec.norm)))
    kind = KIND_TABLE[spec.kind]
    if not kind.fused:
        return Call(PlainLayer, (in_channels, c), shape)
    ops: list[tuple[str, Any]] = []
    for place, op in kind.operators(spec.residual_path).items():
        cls = OPERATORS[op.how]
        kwargs: tuple[tuple[str, Any], ...] = ()
        if op.scalar is not None:  # gate(mask, gamma, learnable) / mix(mask, lam, learnable)
            scalar_name = list(inspect.signature(cls).parameters)[1]
            kwargs = ((scalar_name, float(getattr(spec, op.scalar))),
                      ("learnable", bool(getattr(spec, op.learnable or ""))))
        ops.append((place, Call(cls, (_attention(getattr(spec, op.attention), c),), kwargs)))
    branch = BRANCH_CLASSES[spec.branch]
    return Call(
        FusionBlock,
        (Call(make_skip, (in_channels, c), shape), Call(branch, (in_channels, c), shape)),
        tuple(ops),
    )


def plan_stem(spec: NetSpec) -> Call:
    """The call that builds ``spec``'s stem: a stride-1 :class:`PlainLayer` (``cifar``) or an
    :class:`ImageNetStem` (``imagenet``); its parameters are ``stem.conv.*`` and ``stem.norm.*`` either way."""
    if spec.stem == "imagenet":
        return Call(ImageNetStem, (spec.in_channels, spec.stem_channels), (("norm", spec.stem_norm),))
    return Call(PlainLayer, (spec.in_channels, spec.stem_channels), (("stride", 1), ("norm", spec.stem_norm)))


def plan(spec: NetSpec) -> Call:
    """The call tree that builds ``spec``'s network (see the module docstring)."""
    layers = []
    width = spec.stem_channels
    for layer in spec.layers:
        assert layer.name is not None
        layers.append((layer.name, plan_layer(layer, width)))
        width = layer.out_channels
    stem = plan_stem(spec)
    return Call(Net, (), (("stem", stem), ("layers", tuple(layers)), ("width", width),
                          ("num_classes", spec.num_classes)))


def make_layer(spec: BlockSpec, in_channels: int) -> nn.Module:
    """Build the layer described by ``spec`` that takes ``in_channels`` input channels."""
    module: nn.Module = plan_layer(spec, in_channels).make()
    return module


def build(spec: NetSpec) -> Net:
    """Build a freshly initialised model for ``spec`` (PyTorch's default initialisation).

    The model carries its spec as ``model.spec``.
    """
    if not isinstance(spec, NetSpec):
        raise TypeError(f"build() takes a NetSpec, got {type(spec).__name__}")
    model: Net = plan(spec).make()
    model.spec = spec
    return model
