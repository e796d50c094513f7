"""Duplicate architectures: a canonical hash of a :class:`~resattn.model.spec.NetSpec`.

Two trials that sample the same network train the same model on the same data with the same seed,
so the second one learns nothing new. The search stores :func:`arch_hash` of every trial's spec as
the user attribute ``arch_hash``; a trial whose hash matches a COMPLETE trial of the study is not
trained again (it records ``duplicate_of`` and ``saved_seconds`` and returns the original's values).

What the hash normalises, and what it keeps:

* Fields a layer's kind does not use are already ``None`` in a validated spec, so they cannot
  make two equal networks differ.
* Floats (γ, λ₀, …) are rounded to :data:`SIGNIFICANT_DIGITS` significant digits: a TPE sample
  of ``0.1`` and ``0.1000000000001`` build the same network for every practical purpose.
  ``-0.0`` hashes like ``0.0``.
* Key order and JSON formatting do not matter (canonical JSON with sorted keys).
* Layer **names are kept**: they are the module names in the built model's ``state_dict``, so
  two specs differing only in names export different checkpoints. (Within one search space the
  names come from the space's slots, so this never splits real duplicates there.)
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from resattn.model.spec import NetSpec
from resattn.study import keys

__all__ = ["SIGNIFICANT_DIGITS", "arch_hash", "canonical", "find_original"]

#: Floats are compared to this many significant digits.
SIGNIFICANT_DIGITS = 6


def _round(value: float) -> float:
    if value == 0 or not math.isfinite(value):
        return 0.0 if value == 0 else value
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def canonical(value: Any) -> Any:
    """``value`` (a spec's ``to_dict()``) with floats rounded; dicts, lists and scalars otherwise as they are."""
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        return _round(value)
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    return value


def arch_hash(spec: NetSpec | dict[str, Any] | str) -> str:
    """The canonical hash of a network (16 hex digits of sha256). Accepts a spec, its dict or its JSON."""
    if isinstance(spec, str):
        spec = NetSpec.from_json(spec)
    elif isinstance(spec, dict):
        spec = NetSpec.from_dict(spec)
    text = json.dumps(canonical(spec.to_dict()), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def find_original(trials: Iterable[FrozenTrial], digest: str, *, exclude: int | None = None) -> FrozenTrial | None:
    """The first (lowest-numbered) COMPLETE, non-duplicate trial with hash ``digest``, if any."""
    best: FrozenTrial | None = None
    for t in trials:
        if t.state != TrialState.COMPLETE or t.number == exclude:
            continue
        if t.user_attrs.get(keys.ARCH_HASH) != digest or t.user_attrs.get(keys.DUPLICATE_OF) is not None:
            continue
        if t.values is None or not all(math.isfinite(v) for v in t.values):
            continue
        if best is None or t.number < best.number:
            best = t
    return best
