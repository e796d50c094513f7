"""resattn.analysis.inspect on a study from a real quick search (CIFAR images, CPU), with pruned and failed trials."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from resattn.analysis import inspect as I
from tests.helpers import STUDY, url

pytestmark = pytest.mark.slow  # a real (tiny) search trains models



def load(db: Path) -> optuna.Study:
    return optuna.load_study(study_name=STUDY, storage=url(db))


def test_fixture_has_complete_pruned_and_failed_trials(inspect_db):
    states = [t.state for t in load(inspect_db).trials]
    assert states.count(TrialState.COMPLETE) >= 2
    assert TrialState.FAIL in states
    finished = [t for t in load(inspect_db).trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len([t for t in finished if t.user_attrs.get("duplicate_of") is None]) == 8  # duplicates do not count


def test_list_studies_counts(inspect_db):
    (info,) = I.list_studies(url(inspect_db))
    study = load(inspect_db)
    assert info.name == STUDY
    duplicates = sum(t.user_attrs.get("duplicate_of") is not None for t in study.trials)
    assert info.complete == sum(t.state == TrialState.COMPLETE for t in study.trials) - duplicates
    assert info.duplicates == duplicates and info.trials == len(study.trials)
    assert info.pruned == sum(t.state == TrialState.PRUNED for t in study.trials)
    assert info.failed == sum(t.state == TrialState.FAIL for t in study.trials) >= 1
    assert info.best == pytest.approx(study.best_value)
    assert (info.space, info.recipe) == ("quick", "quick")
    assert info.metric_names == ("val_accuracy",)


def _direct(study: optuna.Study, what: str) -> dict[tuple[str, str], list[float]]:
    """The placement map computed here, straight from study.trials and the recorded specs."""
    out: dict[tuple[str, str], list[float]] = {}
    for t in study.trials:
        if t.state != TrialState.COMPLETE or "duplicate_of" in t.user_attrs:
            continue
        for layer in json.loads(t.user_attrs["spec"])["layers"]:
            if layer["name"] not in ("s1", "s2"):
                continue
            if what == "kind":
                option = layer["kind"]
            elif layer["kind"] == "residual":
                option = "none"
            elif layer["kind"] == "pattern4":
                option = f"s:{layer['skip_attention']['name']} r:{layer['attention']['name']}"
            else:
                option = layer["attention"]["name"]
            out.setdefault((layer["name"], option), []).append(t.values[0])
    return out


@pytest.mark.parametrize("what", ["kind", "attention"])
def test_placement_map_equals_direct_computation(inspect_db, what):
    study = load(inspect_db)
    pm = I.placement_map(study, what)
    direct = _direct(study, what)
    assert pm.slots == ("s1", "s2")
    if what == "kind":
        assert pm.options == ("residual", "pattern2", "pattern4")  # the space's kinds, in order
    assert {k for k, c in pm.cells.items() if c.count} == set(direct)
    for (slot, option), values in direct.items():
        cell = pm.cell(slot, option)
        assert cell.count == len(values)
        assert cell.best == pytest.approx(max(values))
        assert cell.mean == pytest.approx(sum(values) / len(values))
    for slot in pm.slots:  # every COMPLETE (non-duplicate) trial is counted once per slot
        assert sum(pm.cell(slot, o).count for o in pm.options) == len(I.complete_trials(study))
    winners = pm.winners("mean")
    for slot, (option, cell) in winners.items():
        assert cell.mean == max(sum(v) / len(v) for (s, _), v in direct.items() if s == slot)
        assert (slot, option) in direct


def test_pruning_savings(inspect_db):
    study = load(inspect_db)
    s = I.pruning_savings(study)
    done = [t for t in study.trials if t.state != TrialState.RUNNING]
    assert s.epochs_per_trial == 2 and s.trials == len(done)
    assert s.budget == 2 * len(done)
    assert s.run == sum(t.user_attrs.get("epochs_run", 0) for t in done if "duplicate_of" not in t.user_attrs)
    assert s.saved == s.budget - s.run >= 0
    assert s.by_state["FAIL"][0] >= 1
    assert s.pruned_early == sum(
        t.state == TrialState.PRUNED and 0 < t.user_attrs.get("epochs_run", 0) < 2 for t in done
    )


def test_slot_importances_sum_per_slot(inspect_db):
    study = load(inspect_db)
    per_slot, per_param = I.slot_importances(study)
    assert set(per_slot) <= {"s1", "s2"} and per_slot
    assert sum(per_slot.values()) == pytest.approx(sum(per_param.values())) == pytest.approx(1.0)
    for slot, value in per_slot.items():
        assert value == pytest.approx(sum(v for k, v in per_param.items() if k.split(".")[0] == slot))


def test_slot_importances_too_few_trials():
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(params={"s1.kind": "a"}, value=0.5, distributions={
        "s1.kind": optuna.distributions.CategoricalDistribution(["a", "b"])}))
    with pytest.raises(ValueError, match="at least 2 completed trials"):
        I.slot_importances(study)


def test_top_trials_and_export_command(inspect_db):
    study = load(inspect_db)
    top = I.top_trials(study, 3)
    values = [t.value for t in top]
    assert values == sorted(values, reverse=True) and values[0] == pytest.approx(study.best_value)
    cmd = I.export_command(url(inspect_db), STUDY, top[0].number)
    assert cmd == f"resattn export --storage {url(inspect_db)} --study {STUDY} --trial {top[0].number} " \
                  "--out studies/winner.py"


def test_pareto_front():
    pts = [(10, 0.5), (20, 0.6), (15, 0.4), (30, 0.6), (5, 0.3), (20, 0.55)]
    assert I.pareto_front(pts) == [4, 0, 1]
    assert I.pareto_front([]) == []
    assert I.accuracy(optuna.trial.create_trial(value=0.25)) == 0.25
    assert math.isnan(I.accuracy(optuna.trial.create_trial(state=TrialState.FAIL)))
