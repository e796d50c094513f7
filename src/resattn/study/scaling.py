"""How search throughput scales with worker processes: a fresh small study per worker count, timed
end to end (``resattn bench --workers 1,2,4``)."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from resattn.study.search import run_search

__all__ = [
    "ScalingRow",
    "format_scaling",
    "run_scaling_bench",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScalingRow:
    workers: int
    trials: int
    seconds: float

    @property
    def trials_per_hour(self) -> float:
        return self.trials / self.seconds * 3600 if self.seconds > 0 else 0.0


def run_scaling_bench(space: Any, recipe: Any, worker_counts: Sequence[int], *, trials: int = 8,
                      device: str = "cpu", storage_kind: str = "journal") -> list[ScalingRow]:
    """Run a fresh ``trials``-trial study per worker count into a temporary storage; time each run
    end to end (process start, data loading, every trial)."""
    rows = []
    for n in worker_counts:
        with tempfile.TemporaryDirectory(prefix="resattn-bench-") as tmp:
            url = f"{tmp}/bench.journal" if storage_kind == "journal" else f"sqlite:///{tmp}/bench.db"
            started = time.perf_counter()
            result = run_search(space, recipe, trials=trials, storage=url, study_name=f"bench-{n}",
                                device=device, workers=n)
            rows.append(ScalingRow(n, result.finished, time.perf_counter() - started))
    return rows


def format_scaling(rows: Sequence[ScalingRow]) -> str:
    base = rows[0].trials_per_hour if rows else 0.0
    lines = [f"{'workers':>7}  {'trials':>6}  {'seconds':>8}  {'trials/hour':>11}  {'speedup':>7}"]
    for r in rows:
        speed = r.trials_per_hour / base if base else 0.0
        lines.append(f"{r.workers:>7}  {r.trials:>6}  {r.seconds:>8.1f}  {r.trials_per_hour:>11.0f}  {speed:>6.2f}×")
    return "\n".join(lines)
