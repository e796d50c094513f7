"""Markdown notes that make a trial readable in optuna-dashboard: its placement as a table."""

from __future__ import annotations

from collections.abc import Iterable

from resattn.model.spec import AttentionSpec, BlockSpec, NetSpec

__all__ = ["placement_rows", "trial_note"]

COLUMNS = ("slot", "kind", "attention(s)", "reduction", "γ_s", "γ_r", "λ", "norm")


def _att(a: AttentionSpec | None) -> str:
    if a is None:
        return ""
    kernel = a.get("spatial_kernel")
    return a.name + (f" k{kernel}" if kernel is not None else "")


def _red(a: AttentionSpec | None) -> str:
    reduction = None if a is None else a.get("reduction")
    return "" if reduction is None else str(reduction)


def _num(value: float | None, learnable: bool | None) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" + ("" if learnable else " (fixed)")


def placement_rows(spec: NetSpec, slots: Iterable[str] | None = None) -> list[tuple[str, ...]]:
    """One row per layer (or per slot when ``slots`` names them), in :data:`COLUMNS` order."""
    wanted = set(slots) if slots is not None else None
    rows = []
    for layer in spec.layers:
        if wanted is not None and layer.name not in wanted:
            continue
        rows.append(_row(layer))
    return rows


def _row(b: BlockSpec) -> tuple[str, ...]:
    if b.skip_attention is not None:
        attention = f"skip {_att(b.skip_attention)} / res {_att(b.attention)}"
        if b.residual_path == "direct":
            attention += " (direct)"
        reduction = "/".join(x for x in (_red(b.skip_attention), _red(b.attention)) if x)
    else:
        attention, reduction = _att(b.attention), _red(b.attention)
    return (
        b.name or "",
        b.kind,
        attention,
        reduction,
        _num(b.gamma_s, b.gamma_learnable),
        _num(b.gamma_r, b.gamma_learnable),
        _num(b.lam, b.lam_learnable),
        b.norm,
    )


def trial_note(spec: NetSpec, *, params: int, flops: int, slots: Iterable[str] | None = None,
               design: str | None = None) -> str:
    """The markdown note for a trial: placement table, params and FLOPs."""
    rows = placement_rows(spec, slots)
    lines = []
    if design:
        lines.append(f"**Baseline design:** {design}\n")
    lines += [
        f"**Params:** {params:,} · **FLOPs:** {flops / 1e6:,.1f} M per image",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "| " + " | ".join("---" for _ in COLUMNS) + " |",
    ]
    lines += ["| " + " | ".join(cell or "·" for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
