"""Issue 15: the baselines (all-residual and the notebooks' designs) always get their full budget. They
are never pruned, and one that an interrupt, a crash or the pruner of an older version cut short is
queued again until it completes; the result says which baselines are missing and why."""

from __future__ import annotations

import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from resattn.errors import Terminated
from resattn.study.objective import NullReporter
from resattn.study.search import run_search
from resattn.study.setup import cut_short, open_study
from resattn.study.storage import open_storage

DESIGNS = ["all-residual", "seed-pattern2", "seed-pattern4"]


@pytest.fixture
def inputs(cifar_npz: Path, tmp_path: Path):
    from resattn.cli.common import load_inputs

    space, recipe = load_inputs(None, "quick", [f"data.dataset=npz:{cifar_npz}", "train.epochs=2",
                                                "data.train_images=128", "train.batch_size=64",
                                                "data.val_fraction=0.05"])
    return space, recipe, f"sqlite:///{tmp_path / 's.db'}", f"b-{uuid.uuid4().hex[:8]}"


def _trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=open_storage(url, heartbeat=False)).get_trials()


def _by_design(trials: list[optuna.trial.FrozenTrial]) -> dict[str, list[optuna.trial.FrozenTrial]]:
    out: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for t in trials:
        if t.user_attrs.get("design"):
            out.setdefault(t.user_attrs["design"], []).append(t)
    return out


def test_baselines_are_never_pruned(inputs, monkeypatch: pytest.MonkeyPatch) -> None:
    import resattn.study.setup as setup

    space, recipe, url, name = inputs
    # A pruner that stops every trial it is asked about: the baselines still train every epoch.
    monkeypatch.setattr(setup, "make_pruner", lambda recipe: optuna.pruners.ThresholdPruner(lower=2.0))
    result = run_search(space, recipe, trials=5, storage=url, study_name=name, device="cpu")
    trials = _trials(url, name)
    baselines = _by_design(trials)
    assert sorted(baselines) == sorted(DESIGNS)
    for (attempt,) in baselines.values():
        assert attempt.state == TrialState.COMPLETE
        assert attempt.user_attrs["epochs_run"] == 2 and sorted(attempt.intermediate_values) == [1, 2]
    sampled = [t for t in trials if not t.user_attrs.get("design") and t.user_attrs.get("duplicate_of") is None]
    assert sampled and all(t.state == TrialState.PRUNED for t in sampled)
    assert all(t.user_attrs["fail_reason"].startswith("pruned after epoch 1") for t in sampled)
    assert result.missing_baselines == ()


def test_a_pruned_baseline_is_queued_again_and_completes(inputs) -> None:
    """A study in which an older version let the pruner stop the all-residual baseline: the re-run of
    the same command trains it in full, even though the budget is already used up."""
    space, recipe, url, name = inputs
    study, _ = open_study(open_storage(url), name, space, recipe, seed=0)
    first = study.ask()
    assert first.user_attrs["design"] == "all-residual"
    first.report(0.1, 1)
    study.tell(first, state=TrialState.PRUNED)
    assert cut_short(study.trials[0])
    result = run_search(space, recipe, trials=3, storage=url, study_name=name, device="cpu")
    assert result.missing_baselines == () and not result.error
    assert any("baseline all-residual queued again (trial 0 pruned" in n for n in result.notices)
    again = _by_design(_trials(url, name))["all-residual"]
    assert [t.state for t in again] == [TrialState.PRUNED, TrialState.COMPLETE]
    assert again[1].user_attrs["requeue_of"] == 0 and again[1].user_attrs["epochs_run"] == 2
    # Over budget or diverged is a verdict on the architecture: not queued again.
    assert all(t.state == TrialState.COMPLETE for d in DESIGNS[1:] for t in _by_design(_trials(url, name))[d])


class _InterruptTrial(NullReporter):
    """SIGTERM during the first epoch of one trial."""

    def __init__(self, number: int):
        self.number = number

    def epoch_done(self, number: int, result: object, epochs: int) -> None:
        if number == self.number:
            raise Terminated()


def test_an_interrupted_baseline_is_queued_again_and_completes(inputs) -> None:
    space, recipe, url, name = inputs
    result = run_search(space, recipe, trials=3, storage=url, study_name=name, device="cpu",
                        reporter=_InterruptTrial(1))
    assert result.interrupted == "SIGTERM"
    missing = dict(result.missing_baselines)
    assert "trial 1 failed: interrupted by the user (SIGTERM); it is queued again" in missing["seed-pattern2"]
    assert "queued, not run yet" in missing["seed-pattern4"]
    result = run_search(space, recipe, trials=3, storage=url, study_name=name, device="cpu")
    assert result.missing_baselines == () and result.finished == 3
    again = _by_design(_trials(url, name))["seed-pattern2"]
    assert [t.state for t in again] == [TrialState.FAIL, TrialState.COMPLETE]
    assert again[1].user_attrs["requeue_of"] == 1


def test_a_diverged_baseline_is_not_retried(inputs, monkeypatch: pytest.MonkeyPatch) -> None:
    from resattn.study.objective import FAULT_NAN_ENV

    space, recipe, url, name = inputs
    monkeypatch.setenv(FAULT_NAN_ENV, "0")
    result = run_search(space, recipe, trials=3, storage=url, study_name=name, device="cpu")
    missing = dict(result.missing_baselines)
    assert "TrainingDiverged" in missing["all-residual"] and "not retried" in missing["all-residual"]
    monkeypatch.delenv(FAULT_NAN_ENV)
    result = run_search(space, recipe, trials=3, storage=url, study_name=name, device="cpu")
    assert [t.state for t in _by_design(_trials(url, name))["all-residual"]] == [TrialState.FAIL]
