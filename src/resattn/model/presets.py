"""The source notebooks' networks as :class:`~resattn.model.spec.NetSpec` values.

Both notebooks use one backbone: stem conv 3→32 → conv 32→64 → two blocks (64, stride 1) and
(128, stride 2) → conv 128→128 → global pool → linear. With the default arguments the built
models have exactly the notebooks' parameter counts (475,374 and 478,150).

The notebooks' *blocks* are stated once, as the block builders in :data:`DESIGNS`; the presets
below put them in the notebooks' backbone, and every search study puts them in its own space's
slots as the baselines it is compared against.
"""

from __future__ import annotations

from collections.abc import Callable

from resattn.model.spec import AttentionSpec, BlockSpec, NetSpec

__all__ = [
    "DESIGNS",
    "pattern2_block",
    "pattern2_mix_block",
    "pattern4_block",
    "residual_block",
    "seed_backbone",
    "seed_pattern2",
    "seed_pattern2_mix",
    "seed_pattern4",
    "seed_residual",
]


def residual_block(out_channels: int, stride: int = 1, *, norm: str = "bn", name: str | None = None) -> BlockSpec:
    """A plain residual block: the no-attention baseline."""
    return BlockSpec("residual", out_channels, stride, norm=norm, name=name)


def pattern2_block(
    out_channels: int, stride: int = 1, *, norm: str = "bn", name: str | None = None,
    reduction: int = 16, spatial_kernel: int = 7,
) -> BlockSpec:
    """Seed 000's block: CBAM after the addition (``SimpleCNN_Pattern2``)."""
    cbam = AttentionSpec("cbam", reduction=reduction, spatial_kernel=spatial_kernel)
    return BlockSpec("pattern2", out_channels, stride, norm=norm, attention=cbam, name=name)


def pattern2_mix_block(
    out_channels: int, stride: int = 1, *, norm: str = "bn", name: str | None = None,
    lam: float = 0.1, reduction: int = 16,
) -> BlockSpec:
    """Seed 000's "controlled" block, as the formula says: ``(1−λ)·z + λ·CBAM(z)``."""
    cbam = AttentionSpec("cbam", reduction=reduction)
    return BlockSpec("pattern2_mix", out_channels, stride, norm=norm, attention=cbam, lam=lam, name=name)


def pattern4_block(
    out_channels: int, stride: int = 1, *, norm: str = "bn", name: str | None = None,
    reduction_s: int = 16, reduction_r: int = 16, gamma_s: float = 0.0, gamma_r: float = 0.1,
) -> BlockSpec:
    """Seed 002's block: SE-gated skip and residual paths, γ_s = 0, γ_r = 0.1, learnable (``Pattern4Net``)."""
    return BlockSpec(
        "pattern4", out_channels, stride, norm=norm,
        skip_attention=AttentionSpec("se", reduction=reduction_s),
        attention=AttentionSpec("se", reduction=reduction_r),
        residual_path="gated", gamma_s=gamma_s, gamma_r=gamma_r, gamma_learnable=True, name=name,
    )


#: The designs every study enqueues first, by name, as block builders
#: ``(out_channels, stride, *, norm, name) -> BlockSpec``.
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
