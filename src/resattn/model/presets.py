"""The source notebooks' networks as :class:`~resattn.model.spec.NetSpec` values.

Both notebooks use one backbone: stem conv 3→32 → conv 32→64 → two blocks (64, stride 1) and
(128, stride 2) → conv 128→128 → global pool → linear. With the default arguments the built
models have exactly the notebooks' parameter counts (475,374 and 478,150).

The notebooks' *blocks* are stated once, as the block builders in :data:`DESIGNS`; the presets
below put them in the notebooks' backbone, and every search study puts them in its own space's
slots as the baselines it is compared against.

torchvision's ResNets are here too, all-``residual``: :func:`resnet18`, :func:`resnet34`,
:func:`resnet50` (and :func:`resnet` for 101 and 152) build models with exactly torchvision's
parameter counts (11,689,512 / 21,797,672 / 25,557,032 at 1,000 classes) and, with the
``state_dict`` of :func:`resattn.from_torchvision`, its outputs. Their layers are named
``s<stage>b<block>`` (``s1b1`` … ``s4b2`` for ResNet-18), as the slots of ``space/resnet18.toml``
and ``space/resnet50.toml``.
"""

from __future__ import annotations

from collections.abc import Callable

from resattn.model.spec import AttentionSpec, BlockSpec, NetSpec

__all__ = [
    "DESIGNS",
    "RESNET_LAYOUTS",
    "pattern2_block",
    "pattern2_mix_block",
    "pattern4_block",
    "residual_block",
    "resnet",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet_layers",
    "seed_backbone",
    "seed_pattern2",
    "seed_pattern2_mix",
    "seed_pattern4",
    "seed_residual",
]


def residual_block(
    out_channels: int, stride: int = 1, *, norm: str = "bn", name: str | None = None, branch: str = "basic",
) -> BlockSpec:
    """A plain residual block: the no-attention baseline."""
    return BlockSpec("residual", out_channels, stride, norm=norm, name=name, branch=branch)


def pattern2_block(
    out_channels: int, stride: int = 1, *, norm: str = "bn", name: str | None = None, branch: str = "basic",
    reduction: int = 16, spatial_kernel: int = 7,
) -> BlockSpec:
    """Seed 000's block: CBAM after the addition (``SimpleCNN_Pattern2``)."""
    cbam = AttentionSpec("cbam", reduction=reduction, spatial_kernel=spatial_kernel)
    return BlockSpec("pattern2", out_channels, stride, norm=norm, attention=cbam, name=name, branch=branch)


def pattern2_mix_block(
    out_channels: int, stride: int = 1, *, norm: str = "bn", name: str | None = None, branch: str = "basic",
    lam: float = 0.1, reduction: int = 16,
) -> BlockSpec:
    """Seed 000's "controlled" block, as the formula says: ``(1−λ)·z + λ·CBAM(z)``."""
    cbam = AttentionSpec("cbam", reduction=reduction)
    return BlockSpec("pattern2_mix", out_channels, stride, norm=norm, attention=cbam, lam=lam, name=name,
                     branch=branch)


def pattern4_block(
    out_channels: int, stride: int = 1, *, norm: str = "bn", name: str | None = None, branch: str = "basic",
    reduction_s: int = 16, reduction_r: int = 16, gamma_s: float = 0.0, gamma_r: float = 0.1,
) -> BlockSpec:
    """Seed 002's block: SE-gated skip and residual paths, γ_s = 0, γ_r = 0.1, learnable (``Pattern4Net``)."""
    return BlockSpec(
        "pattern4", out_channels, stride, norm=norm,
        skip_attention=AttentionSpec("se", reduction=reduction_s),
        attention=AttentionSpec("se", reduction=reduction_r),
        residual_path="gated", gamma_s=gamma_s, gamma_r=gamma_r, gamma_learnable=True, name=name, branch=branch,
    )


#: The designs every study enqueues first, by name, as block builders
#: ``(out_channels, stride, *, norm, name, branch) -> BlockSpec``.
DESIGNS: dict[str, Callable[..., BlockSpec]] = {
    "all-residual": residual_block,
    "seed-pattern2": pattern2_block,
    "seed-pattern4": pattern4_block,
}


def seed_backbone(block1: BlockSpec, block2: BlockSpec, num_classes: int = 10, norm: str = "bn") -> NetSpec:
    """The notebooks' backbone with ``block1`` (64, s1) and ``block2`` (128, s2) in its two slots."""
    return NetSpec(
        stem_channels=32,
        stem_norm=norm,
        num_classes=num_classes,
        layers=(
            BlockSpec("plain", 64, norm=norm, name="block1"),
            block1,
            block2,
            BlockSpec("plain", 128, norm=norm, name="block2"),
        ),
    )


def seed_pattern2(num_classes: int = 10, reduction: int = 16, spatial_kernel: int = 7) -> NetSpec:
    """Seed 000's ``SimpleCNN_Pattern2``: two post-addition CBAM blocks (475,374 parameters)."""
    options = {"reduction": reduction, "spatial_kernel": spatial_kernel}
    return seed_backbone(
        pattern2_block(64, 1, name="p2_1", **options), pattern2_block(128, 2, name="p2_2", **options), num_classes
    )


def seed_pattern2_mix(num_classes: int = 10, lam: float = 0.1, reduction: int = 16) -> NetSpec:
    """Seed 000's "controlled" variant, implemented as the formula says: ``(1−λ)·z + λ·CBAM(z)``."""
    options = {"lam": lam, "reduction": reduction}
    return seed_backbone(
        pattern2_mix_block(64, 1, name="p2_1", **options), pattern2_mix_block(128, 2, name="p2_2", **options),
        num_classes,
    )


def seed_pattern4(
    num_classes: int = 10,
    reduction_s: int = 16,
    reduction_r: int = 16,
    gamma_s: float = 0.0,
    gamma_r: float = 0.1,
) -> NetSpec:
    """Seed 002's ``Pattern4Net``: two dual-path SE-gated blocks (478,150 parameters)."""
    options = {"reduction_s": reduction_s, "reduction_r": reduction_r, "gamma_s": gamma_s, "gamma_r": gamma_r}
    return seed_backbone(
        pattern4_block(64, 1, name="p4_1", **options), pattern4_block(128, 2, name="p4_2", **options), num_classes
    )


def seed_residual(num_classes: int = 10) -> NetSpec:
    """The notebooks' backbone with plain residual blocks: the no-attention baseline."""
    return seed_backbone(residual_block(64, 1, name="res_1"), residual_block(128, 2, name="res_2"), num_classes)


# ------------------------------------------------------------------------------ torchvision's ResNets

#: depth -> (branch, blocks per stage) of torchvision's ``resnet<depth>``.
RESNET_LAYOUTS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
#: Output widths of the four stages (a bottleneck stage puts out 4 × these).
_RESNET_WIDTHS = (64, 128, 256, 512)


def resnet_layers(depth: int) -> list[tuple[str, int, int, str]]:
    """``(name, out_channels, stride, branch)`` of every block of torchvision's ``resnet<depth>``:
    named ``s<stage>b<block>`` (1-based: torchvision's ``layer1.0`` is ``s1b1``), the first block of
    stages 2–4 with stride 2 (on the 3×3 conv, ResNet v1.5), bottleneck widths 4 × 64 … 4 × 512."""
    if depth not in RESNET_LAYOUTS:
        raise ValueError(f"unknown ResNet depth {depth!r}; allowed: {', '.join(map(str, RESNET_LAYOUTS))}")
    branch, counts = RESNET_LAYOUTS[depth]
    scale = 4 if branch == "bottleneck" else 1
    out = []
    for stage, (count, width) in enumerate(zip(counts, _RESNET_WIDTHS, strict=True), start=1):
        for block in range(1, count + 1):
            stride = 2 if stage > 1 and block == 1 else 1
            out.append((f"s{stage}b{block}", width * scale, stride, branch))
    return out


def resnet(depth: int, num_classes: int = 1000, *, norm: str = "bn", in_channels: int = 3) -> NetSpec:
    """torchvision's ``resnet<depth>`` (18, 34, 50, 101 or 152) with every block ``residual``: ImageNet
    stem (64 channels), four stages, global pool, linear head. With ``norm="bn"`` it has exactly
    torchvision's parameters (names mapped by :func:`resattn.from_torchvision`)."""
    layers = tuple(
        residual_block(width, stride, norm=norm, name=name, branch=branch)
        for name, width, stride, branch in resnet_layers(depth)
    )
    return NetSpec(layers=layers, stem="imagenet", stem_channels=64, stem_norm=norm, num_classes=num_classes,
                   in_channels=in_channels)


def resnet18(num_classes: int = 1000) -> NetSpec:
    """torchvision's ResNet-18, all-residual (11,689,512 parameters at 1,000 classes)."""
    return resnet(18, num_classes)


def resnet34(num_classes: int = 1000) -> NetSpec:
    """torchvision's ResNet-34, all-residual (21,797,672 parameters at 1,000 classes)."""
    return resnet(34, num_classes)


def resnet50(num_classes: int = 1000) -> NetSpec:
    """torchvision's ResNet-50 (v1.5: stride on the 3×3 conv), all-residual (25,557,032 parameters at
    1,000 classes)."""
    return resnet(50, num_classes)
