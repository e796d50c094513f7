"""Issue 7: `resattn validate` re-trains top-K / random trials longer and compares rankings."""

from __future__ import annotations

import contextlib
import io
import math

import optuna
import pytest
from scipy import stats

import resattn.analysis.fidelity
from resattn.analysis.fidelity import correlations, recipe_of_study, result_key
from resattn.cli.main import main
from resattn.study.recipe import load_recipe
from tests.conftest import ROOT
from tests.helpers import tiny_search


def run(args: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exc:
        main(args)
    return (exc.value.code if isinstance(exc.value.code, int) else 0), out.getvalue()


def test_correlations_hand_checked() -> None:
    # 6 pairs: only (0, 1) is discordant → τ = (5 - 1) / 6; ranks differ by ±1 twice → ρ = 1 - 6·2 / (4·15).
    tau, rho = correlations([0.1, 0.2, 0.3, 0.4], [0.15, 0.1, 0.35, 0.4])
    assert tau == pytest.approx(2 / 3) and rho == pytest.approx(0.8)
    assert correlations([0.1, 0.2, 0.3], [0.3, 0.2, 0.1]) == pytest.approx((-1.0, -1.0))
    assert all(math.isnan(x) for x in correlations([0.5], [0.5]))


def test_recorded_recipe_round_trips() -> None:
    recipe = load_recipe(ROOT / "search" / "quick.toml").with_overrides(["train.epochs=2"])
    study = optuna.create_study()
    study.set_user_attr("resattn.recipe", recipe.to_dict())
    assert recipe_of_study(study).fingerprint() == recipe.fingerprint()


def test_validate_stores_results_and_resumes(tmp_path, cifar_npz, monkeypatch) -> None:
    db, code, out = tiny_search(tmp_path, cifar_npz, 6, "--set", "search.sampler=random",
                                "--set", "search.pruner=none")
    assert code == 0, out
    storage = f"sqlite:///{db}"
    args = ["validate", "--storage", storage, "--top", "2", "--random", "1", "--epochs", "3", "--seeds", "2",
            "--device", "cpu"]
    code, out = run(args)
    assert code == 0, out
    study = optuna.load_study(study_name="tiny-quick", storage=storage)
    summary = study.user_attrs["resattn.validate.summary"]
    numbers = summary["trials"]
    assert summary["epochs"] == 3 and summary["seeds"] == 2 and summary["proxy_epochs"] == 2
    assert len(numbers) == len(set(numbers)) == summary["architectures"] == 3
    trials = {t.number: t for t in study.trials}
    assert all(trials[n].user_attrs.get("duplicate_of") is None for n in numbers)
    hashes = {trials[n].user_attrs["arch_hash"] for n in numbers}
    assert len(hashes) == 3
    proxy = [trials[n].values[0] for n in numbers]
    long = [sum(study.user_attrs[result_key(n, 3, s)]["accuracy"] for s in (0, 1)) / 2 for n in numbers]
    tau = stats.kendalltau(proxy, long).statistic
    rho = stats.spearmanr(proxy, long).statistic
    assert study.user_attrs["resattn.validate.kendall_tau"] == pytest.approx(tau, abs=1e-6)
    assert study.user_attrs["resattn.validate.spearman_rho"] == pytest.approx(rho, abs=1e-6)
    assert "3 architectures: Kendall τ" in out and "6 trainings run now" in out
    # The top two by proxy are picked first.
    best_two = sorted((t for t in study.trials if t.user_attrs.get("duplicate_of") is None),
                      key=lambda t: (-t.values[0], t.number))[:2]
    assert numbers[:2] == [t.number for t in best_two]

    def no_training(*args, **kwargs):
        raise AssertionError("a re-run must not train again")

    monkeypatch.setattr(resattn.analysis.fidelity, "train", no_training)
    monkeypatch.setattr(resattn.analysis.fidelity, "prepare_data", no_training)
    code, again = run(args)
    assert code == 0, again
    assert "0 trainings run now" in again and "6 reused from the study" in again
    def lines(text: str) -> list[str]:
        return [line for line in text.splitlines() if "Kendall" in line or "winner" in line]

    assert lines(again) == lines(out) and len(lines(out)) == 2

def test_validate_names_the_study_when_ambiguous(tmp_path) -> None:
    storage = f"sqlite:///{tmp_path / 'two.db'}"
    optuna.create_study(study_name="a", storage=storage)
    optuna.create_study(study_name="b", storage=storage)
    with contextlib.redirect_stderr(io.StringIO()) as err:
        code, _ = run(["validate", "--storage", storage])
    assert code == 2 and "--study" in err.getvalue() and "'a', 'b'" in err.getvalue()


def test_validate_never_creates_a_database(tmp_path) -> None:
    missing = tmp_path / "typo.db"
    with contextlib.redirect_stderr(io.StringIO()) as err:
        code, _ = run(["validate", "--storage", f"sqlite:///{missing}"])
    assert code == 2 and "no such file" in err.getvalue()
    assert not missing.exists()
