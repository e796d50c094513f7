"""Reopening a study: the same recipe continues it, another one is refused naming only what changes results."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from resattn.errors import StorageError
from resattn.study.setup import open_study
from resattn.study.storage import open_storage


@pytest.fixture
def inputs(tmp_path: Path):
    from resattn.cli.common import load_inputs

    space, recipe = load_inputs(None, "quick", ["data.dataset=npz:data.npz", "train.epochs=2"])
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat=False)
    return space, recipe, storage


def _add_finished_trial(study: optuna.Study) -> None:
    trial = study.ask()
    study.tell(trial, 0.5)


def test_how_the_training_runs_does_not_stop_a_study_from_continuing(inputs) -> None:
    space, recipe, storage = inputs
    study, created = open_study(storage, "s", space, recipe)
    _add_finished_trial(study)
    run_otherwise = recipe.with_overrides(["train.precision=fp32", "train.channels_last=off", "train.compile=on",
                                           "data.data_dir=/elsewhere"])
    again, created_again = open_study(storage, "s", space, run_otherwise)
    assert created and not created_again and again.study_name == "s"


def test_another_recipe_is_refused_naming_only_the_values_that_change_results(inputs) -> None:
    space, recipe, storage = inputs
    study, _ = open_study(storage, "s", space, recipe)
    _add_finished_trial(study)
    other = recipe.with_overrides(["train.epochs=3", "train.precision=fp32", "train.compile=on"])
    with pytest.raises(StorageError) as err:
        open_study(storage, "s", space, other)
    text = str(err.value)
    assert "train.epochs: 2 → 3" in text
    assert "precision" not in text and "compile" not in text
