"""Issue 7: params/FLOPs budgets prune over-budget trials before training and steer the sampler."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

import resattn.study.objective
from resattn.study.objective import budget_constraints, over_budget
from resattn.study.recipe import load_recipe
from resattn.study.setup import make_sampler
from tests.conftest import ROOT
from tests.helpers import tiny_search

# The tiny space's models: residual/residual 5346 params, mixed 5349, pattern2/pattern2 5352.
LIMIT = 5347


def quick(**search):
    recipe = load_recipe(ROOT / "search" / "quick.toml")
    return recipe.with_overrides({f"search.{k}": v for k, v in search.items()})


def test_constraints_and_reasons() -> None:
    r = quick(max_params=1000, max_flops=2000)
    assert budget_constraints(500, 2000, r) == [-0.5, 0.0]
    assert budget_constraints(1500, 3000, r) == [0.5, 0.5]
    assert budget_constraints(10**9, 10**12, quick()) == [0.0, 0.0]  # no limits: always feasible
    assert over_budget(1000, 2000, r) is None
    assert over_budget(1001, 0, r) == "over budget: params 1001 > max 1000"
    assert over_budget(10, 2001, r) == "over budget: flops 2001 > max 2000"


@pytest.mark.parametrize("sampler", ["tpe", "nsga2"])
def test_samplers_need_no_deprecated_constraints_func(sampler: str) -> None:
    # Optuna 5 deprecates constraints_func; the trials carry their constraints (Trial.set_constraint).
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        assert make_sampler(quick(sampler=sampler, max_params=10), seed=0)._constraints_func is None


def test_over_budget_trials_are_pruned_without_training(tmp_path, cifar_npz, monkeypatch) -> None:
    real_train = resattn.study.objective.train

    def guarded_train(model, *args, **kwargs):
        params = sum(p.numel() for p in model.parameters())
        assert params <= LIMIT, f"an over-budget model ({params} params) reached training"
        return real_train(model, *args, **kwargs)

    monkeypatch.setattr(resattn.study.objective, "train", guarded_train)
    db, code, out = tiny_search(tmp_path, cifar_npz, 6, "--max-params", str(LIMIT))
    assert code == 0, out
    study = optuna.load_study(study_name="tiny-quick", storage=f"sqlite:///{db}")
    trials = study.get_trials()
    # duplicates (the architecture already trained) do not count towards the budget
    assert len([t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                and t.user_attrs.get("duplicate_of") is None]) == 6
    over = [t for t in trials if t.user_attrs["params"] > LIMIT]
    assert over, "the seeded sampler should propose over-budget models"
    for t in trials:
        # Every trial of a budgeted study stores its constraints in Optuna, for the sampler.
        assert [t.constraints["params"], t.constraints["flops"]] == budget_constraints(
            t.user_attrs["params"], t.user_attrs["flops"], quick(max_params=LIMIT))
    for t in over:
        assert t.state == TrialState.PRUNED
        assert t.user_attrs["fail_reason"] == f"over budget: params {t.user_attrs['params']} > max {LIMIT}"
        assert t.user_attrs["epochs_run"] == 0 and not t.intermediate_values
        assert t.constraints["params"] > 0
    assert all(t.constraints["params"] <= 0 for t in trials if t not in over)
    assert f"{len(over)} trials over the params/FLOPs budget" in out
    assert study.user_attrs["resattn.recipe"]["search"]["max_params"] == LIMIT
