"""torchvision's ResNets as specs: :func:`from_torchvision` reads a model (or a checkpoint's
``state_dict``) and returns the all-``residual`` :class:`~resattn.model.spec.NetSpec` with the
``state_dict`` that makes :func:`resattn.build` compute the same outputs (DESIGN.md §9).

Nothing here imports torchvision: the model is inspected by its attributes (``conv1``, ``bn1``,
``maxpool``, ``layer1`` … ``layer4``, ``fc``; blocks with ``conv1``/``conv2`` and, for bottlenecks,
``conv3``), so a ResNet built by torchvision on another machine, or a look-alike, is read the same way.

The names map one to one (``layer2.0`` is the block ``s2b1``)::

    conv1.*                      stem.conv.*
    bn1.*                        stem.norm.*
    layer<i>.<j>.conv<k>.*       layers.s<i>b<j+1>.branch.conv<k>.*
    layer<i>.<j>.bn<k>.*         layers.s<i>b<j+1>.branch.norm<k>.*
    layer<i>.<j>.downsample.0.*  layers.s<i>b<j+1>.skip.0.*   (1×1 conv)
    layer<i>.<j>.downsample.1.*  layers.s<i>b<j+1>.skip.1.*   (its norm)
    fc.*                         head.*

The skip, branch and norm parameters of a block have these names whatever its kind, so the same
``state_dict`` loads (``strict=False``) into any placement of the backbone; ``pattern4`` gated with
γ_s = γ_r = 0 and ``pattern2_mix`` with λ = 0 then compute exactly the original network.

Supported: ``resnet18/34/50/101/152`` and any stage depths, any ``num_classes`` and input channels,
BatchNorm (any running statistics, affine parameters and ``zero_init_residual``). Not supported, with
an error naming the feature: grouped convolutions (ResNeXt), ``width_per_group`` ≠ 64 (wide
ResNets), dilation (``replace_stride_with_dilation``), norms other than ``BatchNorm2d`` (or with
``eps`` ≠ 1e-5, no affine parameters or no running statistics), biases on convolutions, a stride on
the first 1×1 conv (ResNet v1), and heads other than one ``Linear``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from resattn.errors import ResattnError
from resattn.model.layers import BOTTLENECK_EXPANSION
from resattn.model.net import build
from resattn.model.spec import BlockSpec, NetSpec

__all__ = [
    "RetrofitError",
    "from_torchvision",
    "from_torchvision_state_dict",
    "is_torchvision_state_dict",
    "torchvision_name",
]

_BN_EPS = 1e-5
_BLOCK_KEY = re.compile(r"\Alayer(\d+)\.(\d+)\.(conv\d|bn\d|downsample\.[01])\.(\w+)\Z")


class RetrofitError(ResattnError, ValueError):
    """A network or ``state_dict`` that is not a supported torchvision ResNet; the message says why."""


def _block_name(stage: int, index: int) -> str:
    return f"s{stage}b{index + 1}"


def torchvision_name(key: str) -> str | None:
    """The resattn ``state_dict`` name of torchvision's ``key`` (``layer1.0.bn2.weight`` ->
    ``layers.s1b1.branch.norm2.weight``), or ``None`` for a name a ResNet does not have."""
    head, _, rest = key.partition(".")
    if head in ("conv1", "bn1", "fc") and rest and "." not in rest:
        return {"conv1": "stem.conv.", "bn1": "stem.norm.", "fc": "head."}[head] + rest
    m = _BLOCK_KEY.fullmatch(key)
    if m is None:
        return None
    stage, index, part, leaf = int(m[1]), int(m[2]), m[3], m[4]
    if part.startswith("downsample"):
        inner = "skip." + part.rsplit(".", 1)[1]
    elif part.startswith("bn"):
        inner = "branch.norm" + part[2:]
    else:
        inner = "branch." + part
    return f"layers.{_block_name(stage, index)}.{inner}.{leaf}"


def is_torchvision_state_dict(state: Mapping[str, Any]) -> bool:
    """Whether ``state`` has torchvision ResNet names (``conv1.weight``, ``layer1.0.conv1.weight``)."""
    return "conv1.weight" in state and "layer1.0.conv1.weight" in state


# ------------------------------------------------------------------------------------------ models


def _conv_problems(name: str, conv: Any, kernel: int, stride: int | None, padding: int) -> list[str]:
    if not isinstance(conv, nn.Conv2d):
        return [f"{name} is a {type(conv).__name__}, not a Conv2d"]
    out = []
    if conv.groups != 1:
        out.append(f"grouped convolution {name} (groups={conv.groups}, as in ResNeXt)")
    if tuple(conv.dilation) != (1, 1):
        out.append(f"dilated convolution {name} (dilation={tuple(conv.dilation)}, replace_stride_with_dilation)")
    if tuple(conv.kernel_size) != (kernel, kernel):
        out.append(f"{name} has kernel {tuple(conv.kernel_size)}, expected {kernel}×{kernel}")
    if stride is not None and tuple(conv.stride) != (stride, stride):
        out.append(f"{name} has stride {tuple(conv.stride)}, expected {stride}")
    if tuple(conv.padding) != (padding, padding) or conv.padding_mode != "zeros":
        out.append(f"{name} has padding {conv.padding} ({conv.padding_mode}), expected {padding} (zeros)")
    if conv.bias is not None:
        out.append(f"{name} has a bias")
    return out


def _norm_problems(name: str, norm: Any, channels: int) -> list[str]:
    if not isinstance(norm, nn.BatchNorm2d):
        return [f"norm {name} is a {type(norm).__name__}; only BatchNorm2d is supported"]
    out = []
    if not norm.affine or not norm.track_running_stats:
        out.append(f"BatchNorm {name} without affine parameters or running statistics")
    if norm.eps != _BN_EPS:
        out.append(f"BatchNorm {name} with eps={norm.eps:g} (resattn's is {_BN_EPS:g})")
    if norm.num_features != channels:
        out.append(f"BatchNorm {name} has {norm.num_features} features for {channels} channels")
    return out


def _block(stage: int, index: int, block: nn.Module, in_channels: int, problems: list[str]) -> BlockSpec | None:
    where = f"layer{stage}.{index}"
    convs = [getattr(block, f"conv{k}", None) for k in (1, 2, 3)]
    if not isinstance(convs[0], nn.Conv2d) or not isinstance(convs[1], nn.Conv2d):
        problems.append(f"{where} ({type(block).__name__}) is not a BasicBlock or Bottleneck (no conv1/conv2)")
        return None
    bottleneck = convs[2] is not None
    last = convs[2] if bottleneck else convs[1]
    if not isinstance(last, nn.Conv2d):
        problems.append(f"{where}.conv3 is a {type(last).__name__}, not a Conv2d")
        return None
    out_channels = last.out_channels
    stride_conv = convs[1] if bottleneck else convs[0]
    stride = stride_conv.stride[0]
    if bottleneck:
        problems += _conv_problems(f"{where}.conv1", convs[0], 1, 1, 0)
        if convs[0].stride != (1, 1):
            problems.append(
                f"{where}.conv1 has the stride (ResNet v1); only v1.5 (stride on the 3×3 conv) is supported"
            )
        problems += _conv_problems(f"{where}.conv2", convs[1], 3, None, 1)
        problems += _conv_problems(f"{where}.conv3", convs[2], 1, 1, 0)
        width = convs[0].out_channels
        if out_channels % BOTTLENECK_EXPANSION or width != out_channels // BOTTLENECK_EXPANSION:
            problems.append(
                f"{where} has inner width {width} for {out_channels} output channels (width_per_group ≠ 64, "
                f"as in wide ResNets); only out_channels / {BOTTLENECK_EXPANSION} is supported"
            )
        widths = [(1, width), (2, width), (3, out_channels)]
    else:
        problems += _conv_problems(f"{where}.conv1", convs[0], 3, None, 1)
        problems += _conv_problems(f"{where}.conv2", convs[1], 3, 1, 1)
        widths = [(1, convs[0].out_channels), (2, out_channels)]
        if convs[0].out_channels != out_channels:
            problems.append(f"{where}: conv1 and conv2 widths differ ({convs[0].out_channels}, {out_channels})")
    for k, channels in widths:
        problems += _norm_problems(f"{where}.bn{k}", getattr(block, f"bn{k}", None), channels)
    if stride not in (1, 2):
        problems.append(f"{where} has stride {stride}; only 1 or 2 is supported")
        return None
    down = getattr(block, "downsample", None)
    needs = stride != 1 or in_channels != out_channels
    if down is None and needs:
        problems.append(f"{where} changes shape (stride {stride}, {in_channels}→{out_channels}) without a downsample")
    elif down is not None and not needs:
        problems.append(f"{where} has a downsample where shapes match (resattn's skip is then the identity)")
    elif down is not None:
        if not isinstance(down, nn.Sequential) or len(down) != 2:
            problems.append(f"{where}.downsample is not Sequential(Conv2d 1×1, BatchNorm2d)")
        else:
            problems += _conv_problems(f"{where}.downsample.0", down[0], 1, stride, 0)
            problems += _norm_problems(f"{where}.downsample.1", down[1], out_channels)
    try:
        return BlockSpec("residual", out_channels, stride, name=_block_name(stage, index),
                         branch="bottleneck" if bottleneck else "basic")
    except ValueError as err:
        problems.append(f"{where}: {err}")
        return None


def _spec_of_model(model: nn.Module) -> NetSpec:
    missing = [a for a in ("conv1", "bn1", "maxpool", "layer1", "avgpool", "fc") if not hasattr(model, a)]
    if not isinstance(model, nn.Module) or missing:
        raise RetrofitError(
            f"from_torchvision: {type(model).__name__} is not a torchvision ResNet "
            f"(no {', '.join(missing) or 'nn.Module'})"
        )
    problems = _conv_problems("conv1", model.conv1, 7, 2, 3)
    stem_channels = getattr(model.conv1, "out_channels", 1)
    problems += _norm_problems("bn1", model.bn1, stem_channels)
    pool = model.maxpool
    if not (isinstance(pool, nn.MaxPool2d) and pool.kernel_size in (3, (3, 3)) and pool.stride in (2, (2, 2))
            and pool.padding in (1, (1, 1)) and pool.dilation in (1, (1, 1)) and not pool.ceil_mode):
        problems.append(f"maxpool is {pool!r}, expected MaxPool2d(3, stride=2, padding=1)")
    avg = model.avgpool
    if not (isinstance(avg, nn.AdaptiveAvgPool2d) and avg.output_size in (1, (1, 1))):
        problems.append(f"avgpool is {avg!r}, expected AdaptiveAvgPool2d((1, 1))")
    blocks: list[BlockSpec] = []
    width = stem_channels
    stage = 1
    while hasattr(model, f"layer{stage}"):
        layer = getattr(model, f"layer{stage}")
        if not isinstance(layer, nn.Sequential) or len(layer) == 0:
            problems.append(f"layer{stage} is not a non-empty Sequential of blocks")
            break
        for index, block in enumerate(layer):
            spec = _block(stage, index, block, width, problems)
            if spec is None:
                break
            blocks.append(spec)
            width = spec.out_channels
        stage += 1
    fc = model.fc
    if not isinstance(fc, nn.Linear) or fc.bias is None:
        problems.append(f"fc is a {type(fc).__name__} {'without a bias' if isinstance(fc, nn.Linear) else ''}; "
                        "only one Linear layer with a bias is supported as the head")
    elif fc.in_features != width:
        problems.append(f"fc takes {fc.in_features} features, the last block puts out {width}")
    if problems:
        raise RetrofitError("from_torchvision: unsupported ResNet: " + "; ".join(problems))
    return NetSpec(layers=tuple(blocks), stem="imagenet", stem_channels=stem_channels,
                   in_channels=model.conv1.in_channels, num_classes=fc.out_features)


def _mapped(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        name = torchvision_name(key)
        if name is None:
            unknown.append(key)
        else:
            out[name] = value
    if unknown:
        listed = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise RetrofitError(f"from_torchvision: names a torchvision ResNet does not have: {listed}")
    return out


def _check_against(spec: NetSpec, state: Mapping[str, torch.Tensor]) -> None:
    """``state`` must be exactly the state_dict of ``build(spec)``: same names, same shapes."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build(spec).state_dict().items()}
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != expected[k]]
    if missing or extra or wrong:
        parts = []
        for what, keys in (("missing", missing), ("unexpected", extra), ("wrong shape", wrong)):
            if keys:
                parts.append(f"{what}: {', '.join(keys[:4])}" + (" …" if len(keys) > 4 else ""))
        raise RetrofitError("from_torchvision: the weights do not fit a ResNet layout; " + "; ".join(parts))


def from_torchvision(model: nn.Module) -> tuple[NetSpec, dict[str, torch.Tensor]]:
    """``(spec, state_dict)`` of a torchvision ResNet (``resnet18/34/50/101/152``, any ``num_classes``).

    ``spec`` is the all-``residual`` network (ImageNet stem, ``basic`` or ``bottleneck`` branches,
    layers ``s<stage>b<block>``); ``build(spec).load_state_dict(state_dict)`` gives the model the same
    outputs as ``model`` in eval mode. The tensors are detached copies on the CPU. Raises
    :class:`RetrofitError` naming every unsupported feature (see the module docstring).
    """
    spec = _spec_of_model(model)
    state = {k: v.detach().to("cpu").clone() for k, v in _mapped(model.state_dict()).items()}
    _check_against(spec, state)
    return spec, state


def from_torchvision_state_dict(state: Mapping[str, Any]) -> tuple[NetSpec, dict[str, torch.Tensor]]:
    """The same as :func:`from_torchvision` for a torchvision ResNet's ``state_dict`` alone (e.g. a
    downloaded ``resnet50-*.pth`` file): the layout is read from the names and shapes, the strides are
    torchvision's (2 in the first block of every stage but the first; a state_dict holds no strides).
    Grouped convolutions and other widths show in the shapes and are refused."""
    mapped = _mapped(state)
    stem = mapped.get("stem.conv.weight")
    head = mapped.get("head.weight")
    if stem is None or head is None or stem.ndim != 4 or head.ndim != 2:
        raise RetrofitError("from_torchvision: a ResNet state_dict needs conv1.weight and fc.weight")
    if tuple(stem.shape[2:]) != (7, 7):
        raise RetrofitError(f"from_torchvision: conv1 has kernel {tuple(stem.shape[2:])}, expected 7×7")
    blocks: list[BlockSpec] = []
    stages = sorted({int(k.split(".")[0][5:]) for k in state if k.startswith("layer")})
    if stages != list(range(1, len(stages) + 1)):
        raise RetrofitError(f"from_torchvision: stages {stages} are not numbered 1, 2, …")
    for stage in stages:
        count = 1 + max(int(k.split(".")[1]) for k in state if k.startswith(f"layer{stage}."))
        for index in range(count):
            prefix = f"layer{stage}.{index}."
            bottleneck = f"{prefix}conv3.weight" in state
            last = state.get(f"{prefix}conv{3 if bottleneck else 2}.weight")
            first = state.get(f"{prefix}conv1.weight")
            if last is None or first is None:
                raise RetrofitError(f"from_torchvision: block {prefix[:-1]} has no conv1/conv2 weights")
            out = int(last.shape[0])
            if bottleneck and int(first.shape[0]) * BOTTLENECK_EXPANSION != out:
                raise RetrofitError(
                    f"from_torchvision: {prefix}conv1 has {int(first.shape[0])} channels for {out} outputs "
                    f"(width_per_group ≠ 64 or groups ≠ 1, as in wide ResNets or ResNeXt): not supported"
                )
            stride = 2 if stage > 1 and index == 0 else 1
            try:
                blocks.append(BlockSpec("residual", out, stride, name=_block_name(stage, index),
                                        branch="bottleneck" if bottleneck else "basic"))
            except ValueError as err:
                raise RetrofitError(f"from_torchvision: block {prefix[:-1]}: {err}") from None
    spec = NetSpec(layers=tuple(blocks), stem="imagenet", stem_channels=int(stem.shape[0]),
                   in_channels=int(stem.shape[1]), num_classes=int(head.shape[0]))
    _check_against(spec, mapped)
    return spec, dict(mapped)
