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


def _run(values: list[float], noise: float, direction: str = "maximize") -> int:
    """Trials with the given values in order, the convergence rule attached: how many ran."""
    stopped: list[bool] = []
    study = optuna.create_study(direction=direction)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(lambda t: values[t.number], n_trials=len(values),
                   callbacks=[convergence_callback(lambda: stopped.append(True), noise)])
    assert stopped == ([True] if len(study.trials) < len(values) else [])
    return len(study.trials)


def test_a_flat_study_stops_as_soon_as_it_may_be_judged() -> None:
    assert _run([0.5 + 1e-5 * i for i in range(60)], 0.005) == 20  # 20 complete trials: the minimum


def test_a_study_still_improving_beyond_the_noise_goes_on() -> None:
    assert _run([0.01 * i for i in range(40)], 0.005) == 40
    assert _run([1.0 - 0.01 * i for i in range(40)], 0.005, "minimize") == 40


@pytest.mark.parametrize(("noise", "ran"), [(0.05, 20), (0.001, 40)])
def test_the_noise_decides(noise: float, ran: int) -> None:
    # 0.01 better every 10 trials: within a noise of 0.05 that is luck, beyond 0.001 it is progress.
    assert _run([0.4 + 0.01 * (i // 10) for i in range(40)], noise) == ran


def test_measured_noise_is_preferred_over_the_recipe() -> None:
    from resattn.study.recipe import load_recipe
    from resattn.study.search import convergence_noise

    recipe = load_recipe("search/quick.toml")
    study = optuna.create_study(direction="maximize")
    assert convergence_noise(study, recipe) == (recipe.search.convergence_noise,
                                                "the recipe's search.convergence_noise")
    for seed, acc in enumerate([0.50, 0.52, 0.54]):  # resattn validate's results: sd 0.02
        study.set_user_attr(f"resattn.validate.3.8.{seed}", {"accuracy": acc, "seconds": 1.0})
    noise, source = convergence_noise(study, recipe)
    assert noise == pytest.approx(0.02) and "validate" in source
    study.set_user_attr("resattn.confirm.summary", {"candidates": [
        {"accuracy": [0.5, 0.51, 0.52, None]}, {"accuracy": [0.4, 0.44, 0.48]}]})  # sds 0.01 and 0.04
    noise, source = convergence_noise(study, recipe)
    assert noise == pytest.approx(0.025) and "confirm" in source


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
    assert noises == [0.03]  # the recipe's noise reaches the rule
    assert "stopped early: converged: the last half of the search improved the best by less than" in out
    study = optuna.load_study(study_name="tiny-quick", storage=f"sqlite:///{db}")
    assert len(study.trials) == 1
