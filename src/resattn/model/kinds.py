"""The block kinds, stated once (DESIGN.md §1).

Every kind but ``plain`` is one fusion block::

    y = ReLU(post(skip_op(skip(x)) + branch_op(F(x))))

and a kind is fully described by which of the three places holds an operator, and which one:

- ``apply``: ``A(t) = m(t) ⊙ t`` (:class:`~resattn.model.layers.ApplyMask`);
- ``gate``: ``G_γ(t) = t ⊙ (1 + γ·m(t))`` (:class:`~resattn.model.layers.NearIdentityGate`);
- ``mix``: ``(1 − λ)·t + λ·m(t) ⊙ t`` (:class:`~resattn.model.layers.MaskMix`).

Each operator reads its mask from one attention field of the block (``attention`` or
``skip_attention``) and, for ``gate`` and ``mix``, its initial scalar from one float field (``gamma_s``,
``gamma_r``, ``lam``) and whether it is learnable from one bool field. ``pattern4``'s residual path is
either gated or ``direct`` (applied): its ``branch_op`` depends on the block's ``residual_path``.

Spec validation (which fields a kind uses), building, the search space's sampling, the export and
the labels all read :data:`KIND_TABLE`; nothing else says what a kind is.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "FIELD_DEFAULTS",
    "KINDS",
    "KIND_TABLE",
    "OP_PLACES",
    "RESIDUAL_PATHS",
    "SCALAR_LABELS",
    "Kind",
    "Op",
    "kind",
]

#: The three places of a fusion block an operator can sit in, in forward order.
OP_PLACES: tuple[str, ...] = ("skip_op", "branch_op", "post")
#: How ``pattern4``'s residual path applies its attention.
RESIDUAL_PATHS: tuple[str, ...] = ("gated", "direct")
#: The values a block field takes when its kind uses it and the spec leaves it out.
FIELD_DEFAULTS: dict[str, object] = {
    "residual_path": "gated",
    "lam": 0.1,
    "lam_learnable": True,
    "gamma_s": 0.0,
    "gamma_r": 0.1,
    "gamma_learnable": True,
}
#: How labels write the scalars (``pattern4[se/r16|cbam/r16/k7 γs=0 γr=0.1]``).
SCALAR_LABELS: dict[str, str] = {"lam": "λ", "gamma_s": "γs", "gamma_r": "γr"}


@dataclass(frozen=True)
class Op:
    """One operator of a fusion block: ``how`` it uses the mask of the block's ``attention`` field,
    and (``gate`` / ``mix``) the block fields of its initial scalar and of its learnable flag."""

    how: str  # apply | gate | mix
    attention: str  # "attention" or "skip_attention"
    scalar: str | None = None  # gamma_s | gamma_r | lam
    learnable: str | None = None  # gamma_learnable | lam_learnable


@dataclass(frozen=True)
class Kind:
    """One block kind: its formula and the operators in its three places.

    ``ops`` maps a place to its operator; for ``pattern4`` the residual place depends on the
    residual path (``gated`` / ``direct``), given by ``path_ops``.
    """

    name: str
    formula: str
    fused: bool = True
    ops: tuple[tuple[str, Op], ...] = ()
    path_ops: tuple[tuple[str, tuple[tuple[str, Op], ...]], ...] = ()

    @property
    def has_residual_path(self) -> bool:
        """Whether the block chooses between a gated and a direct residual path."""
        return bool(self.path_ops)

    def operators(self, residual_path: str | None = None) -> dict[str, Op]:
        """place -> operator, for this kind (and ``residual_path``, for the kinds that have one)."""
        out = dict(self.ops)
        if self.path_ops:
            out.update(dict(dict(self.path_ops)[residual_path or RESIDUAL_PATHS[0]]))
        return {place: out[place] for place in OP_PLACES if place in out}

    def all_operators(self) -> list[Op]:
        """Every operator the kind can have, over all residual paths."""
        ops = [op for _, op in self.ops]
        for _, extra in self.path_ops:
            ops += [op for _, op in extra]
        return ops

    @property
    def attentions(self) -> tuple[str, ...]:
        """The attention fields the kind uses, skip path first (``skip_attention``, ``attention``)."""
        used = {op.attention for op in self.all_operators()}
        return tuple(f for f in ("skip_attention", "attention") if f in used)

    @property
    def scalars(self) -> tuple[str, ...]:
        """The float fields the kind can use (γ or λ), in field order."""
        used = {op.scalar for op in self.all_operators() if op.scalar}
        return tuple(f for f in ("lam", "gamma_s", "gamma_r") if f in used)

    @property
    def learnable_field(self) -> str | None:
        """The bool field saying whether the kind's γ / λ are trained (``None``: no scalar)."""
        fields = {op.learnable for op in self.all_operators() if op.learnable}
        return fields.pop() if fields else None

    def fields(self, residual_path: str | None = None) -> tuple[str, ...]:
        """The optional block fields used by this kind with this residual path."""
        used = {op.attention for op in self.operators(residual_path).values()}
        used |= {op.scalar for op in self.operators(residual_path).values() if op.scalar}
        used |= {op.learnable for op in self.operators(residual_path).values() if op.learnable}
        if self.has_residual_path:
            used.add("residual_path")
        used.update(self.attentions)  # an attention used on any path is always required
        return tuple(sorted(used))


_ATT = "attention"
_SKIP = "skip_attention"

#: name -> kind, in the canonical order.
KIND_TABLE: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("plain", "ReLU(norm(conv3×3(x)))", fused=False),
        Kind("residual", "ReLU(skip(x) + F(x))"),
        Kind("pattern1", "ReLU(skip(x) + A(F(x)))", ops=(("branch_op", Op("apply", _ATT)),)),
        Kind("pattern2", "ReLU(A(skip(x) + F(x)))", ops=(("post", Op("apply", _ATT)),)),
        Kind(
            "pattern2_mix",
            "ReLU((1−λ)·z + λ·A(z)), z = skip(x) + F(x)",
            ops=(("post", Op("mix", _ATT, "lam", "lam_learnable")),),
        ),
        Kind(
            "pattern4",
            "ReLU(G_γs(skip(x)) + G_γr(F(x))), or + A(F(x)) with the direct residual path",
            ops=(("skip_op", Op("gate", _SKIP, "gamma_s", "gamma_learnable")),),
            path_ops=(
                ("gated", (("branch_op", Op("gate", _ATT, "gamma_r", "gamma_learnable")),)),
                ("direct", (("branch_op", Op("apply", _ATT)),)),
            ),
        ),
    )
}

#: Block kinds, see DESIGN.md §1.
KINDS: tuple[str, ...] = tuple(KIND_TABLE)


def kind(name: str) -> Kind:
    """The kind called ``name`` (``KeyError`` for an unknown one)."""
    return KIND_TABLE[name]
