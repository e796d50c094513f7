"""resattn.analysis.report: the HTML + PNG report of a real quick study (and of a study too small for one)."""

from __future__ import annotations

import re

import optuna
import pytest

from resattn.analysis.inspect import placement_map
from resattn.analysis.report import FIGURES, write_report
from tests.helpers import STUDY, url

pytestmark = pytest.mark.slow  # a real (tiny) search trains models

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report(inspect_db, tmp_path_factory):
    study = optuna.load_study(study_name=STUDY, storage=url(inspect_db))
    return study, write_report(study, tmp_path_factory.mktemp("report") / "out", storage_url=url(inspect_db))


def test_report_writes_self_contained_html_and_pngs(report):
    study, result = report
    assert result.message is None
    assert set(result.pngs) == set(FIGURES)
    for path in result.pngs.values():
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, path
    page = result.html.read_text(encoding="utf-8")
    assert len(page) > 1_000_000  # plotly.js is inlined: opens offline
    assert re.search(r"<script[^>]*\bsrc=", page) is None  # no CDN, no external script
    assert page.count("plotly-graph-div") == len(FIGURES)
    # The placement map comes first, and tells which pattern wins at which slot.
    headings = [h.split("</h2>")[0] for h in page.split("<h2>")[1:]]
    assert headings[0] == "Which pattern wins at which slot"
    assert page.index("placement-map.png") < page.index("history.png")
    kinds = placement_map(study, "kind")
    for slot, (kind, _cell, clear) in kinds.distinct_winners().items():
        said = f"kind {kind} stands out" if clear else f"no kind stands out (the best mean, {kind}:"
        assert f"{slot}: {said}" in result.captions["placement-map"]
    # Baselines and pruning savings are reported.
    assert "all-residual" in result.captions["history"]
    assert "epochs trained in total" in result.captions["pruning"]
    # no confirmation yet: the export line says the proxy's best is a screen
    assert "not yet confirmed" in page and f"--trial {study.best_trial.number} " in page


def test_report_placement_numbers_match_study(report):
    study, result = report
    caption = result.captions["placement-map"]
    kinds = placement_map(study, "kind")
    for _kind, cell in kinds.winners("mean").values():
        spread = f"mean {cell.mean:.3f} ± {cell.se:.3f} over {cell.count}" if cell.se is not None else \
            f"mean {cell.mean:.3f}, {cell.count} trial"
        assert spread in caption


def test_differences_within_the_noise_are_not_findings() -> None:
    from resattn.analysis.inspect import PlacementCell, PlacementMap

    def cells(means: dict[str, tuple[float, float, int]]) -> PlacementMap:
        return PlacementMap("kind", ("s1",), tuple(means), {
            ("s1", k): PlacementCell(count=n, best=m, mean=m, se=se) for k, (m, se, n) in means.items()})

    close = cells({"pattern2": (0.39, 0.01, 4), "residual": (0.36, 0.012, 4)})  # 3 points, 1.96·SE = 3.1
    assert close.distinct_winners()["s1"] == ("pattern2", close.cell("s1", "pattern2"), False)
    clear = cells({"pattern2": (0.45, 0.01, 4), "residual": (0.36, 0.012, 4)})
    assert clear.distinct_winners()["s1"][2] is True
    lonely = cells({"pattern2": (0.45, 0.01, 4), "residual": (0.30, None, 1)})  # one trial: no error bar
    assert lonely.distinct_winners()["s1"][2] is False


def test_report_of_a_one_trial_study_is_a_plain_message(tmp_path):
    study = optuna.create_study(study_name="tiny", direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.3))
    result = write_report(study, tmp_path / "out")
    assert result.html is None and not result.pngs
    assert "1 completed trial (1 in all); a report needs at least 2" in result.message
    assert not (tmp_path / "out").exists()


def test_report_importances_failure_is_a_sentence(tmp_path):
    """Trials without parameters: no importances, a sentence instead, the rest of the report intact."""
    study = optuna.create_study(study_name="noparams", direction="maximize")
    for i, v in enumerate((0.2, 0.3, 0.25)):
        study.add_trial(optuna.trial.create_trial(value=v, user_attrs={"params": 1000 + i, "flops": 5000 + i}))
    result = write_report(study, tmp_path / "out")
    assert "importances" not in result.pngs
    assert result.captions["importances"].startswith("No parameter importances")
    assert result.captions["placement-map"].startswith("No placement map")
    assert {"history", "pareto", "pruning"} <= set(result.pngs)
    assert "No parameter importances" in result.html.read_text(encoding="utf-8")
