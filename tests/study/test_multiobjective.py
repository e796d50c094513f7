"""Issue 7: two-objective searches (Pareto front, pruner notice) and --stop-when-converged."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from resattn.study.records import summarize
from resattn.study.search import convergence_callback
from tests.helpers import tiny_search


def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """val_accuracy maximised, params minimised."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def test_two_objective_search_has_a_non_dominated_front(tmp_path, cifar_npz) -> None:
    # The quick recipe's pruner is hyperband: with two objectives it is ignored, with one notice.
    db, code, out = tiny_search(tmp_path, cifar_npz, 4, "--set", "search.objectives=val_accuracy,params",
                                "--set", "search.sampler=nsga2")
    assert code == 0, out
    assert out.count("pruner 'hyperband' ignored") == 1
    study = optuna.load_study(study_name="tiny-quick", storage=f"sqlite:///{db}")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["val_accuracy", "params"]
    trials = study.get_trials()
    # the tiny space has 4 architectures: 4 trials that are not duplicates (those do not count)
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len([t for t in trials if t.user_attrs.get("duplicate_of") is None]) == 4
    assert all(t.values[1] == t.user_attrs["params"] for t in trials)
    front = summarize(study)["pareto"]
    assert front and "Pareto front" in out
    values = [t.values for t in front]
    assert all(not dominates(a, b) for a in values for b in values)
    front_numbers = {t.number for t in front}
    for t in trials:  # every other trial is dominated by (or equal to) a front member
        if t.number not in front_numbers:
            assert any(dominates(f, tuple(t.values)) or f == tuple(t.values) for f in values)
    assert all(t.duplicate_of is None for t in front)


def test_stop_when_converged_runs(tmp_path, cifar_npz) -> None:
    db, code, out = tiny_search(tmp_path, cifar_npz, 4, "--stop-when-converged")
    assert code == 0, out
    study = optuna.load_study(study_name="tiny-quick", storage=f"sqlite:///{db}")
    assert len([t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                and t.user_attrs.get("duplicate_of") is None]) == 4


def test_convergence_callback_stops_a_converged_study() -> None:
    # A flat objective: nothing left to gain, so the terminator stops once it may judge (≥ 20 trials).
    stopped: list[bool] = []
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(lambda t: 0.5 + 1e-4 * t.suggest_float("x", 0, 1), n_trials=60,
                   callbacks=[convergence_callback(lambda: stopped.append(True))])
    assert stopped == [True]
    assert 20 <= len(study.trials) < 60


@pytest.mark.parametrize(("noise", "stops"), [(0.5, True), (1e-6, False)])
def test_convergence_noise_decides_when_the_improvement_is_negligible(noise: float, stops: bool) -> None:
    # Accuracies spread over 0.05: against a noise of 0.5 nothing is worth searching for; against
    # 1e-6 the possible improvement always exceeds the noise.
    stopped: list[bool] = []
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(lambda t: 0.4 + 0.05 * t.suggest_float("x", 0, 1), n_trials=30,
                   callbacks=[convergence_callback(lambda: stopped.append(True), noise)])
    assert stopped == ([True] if stops else [])
    assert len(study.trials) == (20 if stops else 30)


def test_converged_search_says_so(tmp_path, cifar_npz, monkeypatch) -> None:
    import resattn.study.search

    noises: list[float] = []

    def stop_at_once(on_stop, noise):
        noises.append(noise)

        def callback(study, trial):
            on_stop()
            study.stop()

        return callback

    monkeypatch.setattr(resattn.study.search, "convergence_callback", stop_at_once)
    db, code, out = tiny_search(tmp_path, cifar_npz, 4, "--stop-when-converged",
                                "--set", "search.convergence_noise=0.03")
    assert code == 0, out
    assert noises == [0.03]  # the recipe's noise reaches the terminator
    assert "stopped early: converged (terminator)" in out
    study = optuna.load_study(study_name="tiny-quick", storage=f"sqlite:///{db}")
    assert len(study.trials) == 1
