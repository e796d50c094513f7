"""Issue 7: duplicate architectures are detected by a canonical hash and not trained twice."""

from __future__ import annotations

import dataclasses

import optuna
import pytest
from optuna.trial import TrialState

import resattn.study.objective
from resattn import presets
from resattn.model.spec import NetSpec
from resattn.study.dedup import arch_hash, canonical, find_original
from resattn.study.records import summarize
from tests.helpers import tiny_search

# ------------------------------------------------------------------------------------------ the hash


def test_hash_is_stable_across_forms_and_float_noise() -> None:
    spec = presets.seed_pattern2_mix()
    h = arch_hash(spec)
    assert len(h) == 16
    assert arch_hash(spec.to_json()) == h == arch_hash(spec.to_dict())
    assert arch_hash(NetSpec.from_json(spec.to_json(indent=2))) == h
    # λ₀ sampled as 0.1 or 0.1 + 1e-12: the same network.
    layers = list(spec.layers)
    i = next(k for k, layer in enumerate(layers) if layer.kind == "pattern2_mix")
    layers[i] = dataclasses.replace(layers[i], lam=layers[i].lam + 1e-12)
    assert arch_hash(dataclasses.replace(spec, layers=tuple(layers))) == h
    layers[i] = dataclasses.replace(layers[i], lam=layers[i].lam + 0.05)
    assert arch_hash(dataclasses.replace(spec, layers=tuple(layers))) != h


def test_hash_tells_networks_apart_and_keeps_layer_names() -> None:
    assert arch_hash(presets.seed_pattern2()) != arch_hash(presets.seed_pattern4())
    assert arch_hash(presets.seed_pattern2()) != arch_hash(presets.seed_residual())
    spec = presets.seed_residual()
    renamed = dataclasses.replace(
        spec, layers=tuple(dataclasses.replace(layer, name=f"x{i}") for i, layer in enumerate(spec.layers))
    )
    assert arch_hash(renamed) != arch_hash(spec)  # names are the state_dict keys: kept on purpose
    assert canonical({"a": [0.1234567891, -0.0, True, None]}) == {"a": [0.123457, 0.0, True, None]}


def test_find_original_wants_complete_non_duplicate() -> None:
    study = optuna.create_study()
    for state, attrs, value in [
        (TrialState.PRUNED, {"arch_hash": "h"}, None),
        (TrialState.COMPLETE, {"arch_hash": "h", "duplicate_of": 9}, 0.5),
        (TrialState.COMPLETE, {"arch_hash": "h"}, 0.4),
        (TrialState.COMPLETE, {"arch_hash": "h"}, 0.6),
        (TrialState.COMPLETE, {"arch_hash": "g"}, 0.7),
    ]:
        study.add_trial(optuna.trial.create_trial(state=state, value=value, user_attrs=attrs))
    assert find_original(study.trials, "h").number == 2
    assert find_original(study.trials, "h", exclude=2).number == 3
    assert find_original(study.trials, "nope") is None


# ------------------------------------------------------------------------------------- in a search


def test_duplicates_are_not_trained_again(tmp_path, cifar_npz, monkeypatch) -> None:
    trained: list[int] = []
    real_train = resattn.study.objective.train

    def counting_train(model, *args, **kwargs):
        trained.append(sum(p.numel() for p in model.parameters()))
        return real_train(model, *args, **kwargs)

    monkeypatch.setattr(resattn.study.objective, "train", counting_train)
    # The tiny space has 4 architectures: a budget of 4 trains each once, the random sampler repeats some.
    db, code, out = tiny_search(tmp_path, cifar_npz, 4, "--set", "search.sampler=random",
                                "--set", "search.pruner=none")
    assert code == 0, out
    study = optuna.load_study(study_name="tiny-quick", storage=f"sqlite:///{db}")
    trials = study.get_trials()
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert all(t.user_attrs.get("arch_hash") for t in trials)
    dups = [t for t in trials if t.user_attrs.get("duplicate_of") is not None]
    originals = [t for t in trials if t.user_attrs.get("duplicate_of") is None]
    # Duplicates do not count towards the budget: exactly 4 originals, every architecture once.
    assert len({t.user_attrs["arch_hash"] for t in trials}) == len(originals) == 4
    assert dups and len(trained) == len(originals)
    by_number = {t.number: t for t in trials}
    for d in dups:
        o = by_number[d.user_attrs["duplicate_of"]]
        assert o.number < d.number and o.user_attrs.get("duplicate_of") is None
        assert o.user_attrs["arch_hash"] == d.user_attrs["arch_hash"]
        assert d.values == o.values and d.intermediate_values == o.intermediate_values
        assert d.user_attrs["saved_seconds"] == pytest.approx(o.user_attrs["seconds"], abs=1e-3)
    summary = summarize(study)
    assert summary["architectures"] == len(originals)
    assert summary["duplicates"] == len(dups)
    assert all(t.duplicate_of is None for t in summary["top"])
    saved = sum(d.user_attrs["saved_seconds"] for d in dups)
    plural = "s" if len(dups) != 1 else ""
    assert f"{len(dups)} duplicate{plural} skipped (architecture already trained), saving ~{saved:.0f} s" in out
    assert f"{len(originals)} distinct architectures completed" in out
    assert "4/4 finished" in out


def test_an_exhausted_space_stops_the_search(tmp_path, cifar_npz) -> None:
    """A budget larger than the space: every architecture once, then the duplicates stop the search."""
    from resattn.study.loop import MAX_CONSECUTIVE_DUPLICATES

    db, code, out = tiny_search(tmp_path, cifar_npz, 6, "--set", "search.sampler=random",
                                "--set", "search.pruner=none", "--set", "train.epochs=1")
    assert code == 0, out  # not a failure: every architecture of the space was trained
    assert "stopped early: the last 30 proposals repeated architectures already trained" in out
    study = optuna.load_study(study_name="tiny-quick", storage=f"sqlite:///{db}")
    trials = study.get_trials()
    originals = [t for t in trials if t.user_attrs.get("duplicate_of") is None]
    assert len(originals) == 4
    last = sorted(trials, key=lambda t: t.number)[-MAX_CONSECUTIVE_DUPLICATES:]
    assert all(t.user_attrs.get("duplicate_of") is not None for t in last)
