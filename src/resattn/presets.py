"""The source notebooks' networks as :class:`~resattn.spec.NetSpec` values.

Both notebooks use one backbone: stem conv 3→32 → conv 32→64 → two blocks (64, stride 1) and
(128, stride 2) → conv 128→128 → global pool → linear. With the default arguments the built
models have exactly the notebooks' parameter counts (475,374 and 478,150).
"""

from __future__ import annotations

from resattn.spec import AttentionSpec, BlockSpec, NetSpec

__all__ = ["seed_backbone", "seed_pattern2", "seed_pattern2_mix", "seed_pattern4", "seed_residual"]


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
    cbam = AttentionSpec("cbam", reduction=reduction, spatial_kernel=spatial_kernel)
    return seed_backbone(
        BlockSpec("pattern2", 64, 1, attention=cbam, name="p2_1"),
        BlockSpec("pattern2", 128, 2, attention=cbam, name="p2_2"),
        num_classes,
    )


def seed_pattern2_mix(num_classes: int = 10, lam: float = 0.1, reduction: int = 16) -> NetSpec:
    """Seed 000's "controlled" variant, implemented as the formula says: ``(1−λ)·z + λ·CBAM(z)``."""
    cbam = AttentionSpec("cbam", reduction=reduction)
    return seed_backbone(
        BlockSpec("pattern2_mix", 64, 1, attention=cbam, lam=lam, name="p2_1"),
        BlockSpec("pattern2_mix", 128, 2, attention=cbam, lam=lam, name="p2_2"),
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

    def p4(width: int, stride: int, name: str) -> BlockSpec:
        return BlockSpec(
            "pattern4", width, stride,
            skip_attention=AttentionSpec("se", reduction=reduction_s),
            attention=AttentionSpec("se", reduction=reduction_r),
            residual_path="gated", gamma_s=gamma_s, gamma_r=gamma_r, gamma_learnable=True, name=name,
        )

    return seed_backbone(p4(64, 1, "p4_1"), p4(128, 2, "p4_2"), num_classes)


def seed_residual(num_classes: int = 10) -> NetSpec:
    """The notebooks' backbone with plain residual blocks: the no-attention baseline."""
    return seed_backbone(
        BlockSpec("residual", 64, 1, name="res_1"), BlockSpec("residual", 128, 2, name="res_2"), num_classes
    )
