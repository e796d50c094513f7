"""resattn.analysis.winner: a study's trial (by number, the confirmed winner, or the best proxy score)
exported as the standalone model file."""

from __future__ import annotations

import ast
import json
import warnings
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from resattn import NetSpec
from resattn.analysis.winner import export_trial
from resattn.errors import StorageError
from resattn.export.source import ExportError
from tests.export.test_source import SPECS, _one_line, _spec_literal, _tree

# ------------------------------------------------------------------------------------- export_trial


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'studies.db'}"


def _add(study: optuna.Study, spec: NetSpec, state: TrialState = TrialState.COMPLETE, **kw: Any) -> None:
    attrs = {"spec": spec.to_json(), "params": 1234, "flops": 56789, "placement": ["slot=x"]}
    attrs |= kw.pop("user_attrs", {})
    study.add_trial(create_trial(state=state, user_attrs=attrs, **kw))


@pytest.fixture
def studies(sqlite_url: str) -> dict[str, NetSpec]:
    specs = {"a": SPECS[0], "b": SPECS[1], "c": SPECS[2], "d": SPECS[3]}
    single = optuna.create_study(study_name="single", storage=sqlite_url, direction="maximize")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        single.set_metric_names(["val_accuracy"])
    _add(single, specs["a"], value=0.5)
    _add(single, specs["b"], value=0.75)
    _add(single, specs["c"], TrialState.PRUNED, value=0.9, intermediate_values={0: 0.9})
    _add(single, specs["d"], TrialState.FAIL, user_attrs={"fail_reason": "TrainingDiverged: loss is nan"})
    multi = optuna.create_study(study_name="multi", storage=sqlite_url, directions=["maximize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        multi.set_metric_names(["val_accuracy", "params"])
    _add(multi, specs["a"], values=[0.6, 1000.0])
    _add(multi, specs["b"], values=[0.7, 2000.0])
    _add(multi, specs["c"], values=[0.5, 3000.0])  # dominated
    return specs


def test_export_best_trial(tmp_path: Path, sqlite_url: str, studies: dict[str, NetSpec]) -> None:
    out = export_trial(sqlite_url, "single", best=True, out=tmp_path / "out" / "best.py")
    source = out.read_text(encoding="utf-8")
    assert NetSpec.from_dict(_spec_literal(source)) == studies["b"]
    doc = ast.get_docstring(_tree(source)) or ""
    for text in ("study:", "single", "trial:", "val_accuracy: 0.75", "params:", "1,234", "flops:", "56,789",
                 "slot=x", "resattn:", "date:"):
        assert text in doc, text


def test_export_numbered_trial(tmp_path: Path, sqlite_url: str, studies: dict[str, NetSpec]) -> None:
    out = export_trial(sqlite_url, "single", trial=0, out=tmp_path / "t0.py", class_name="Trial0Net")
    source = out.read_text(encoding="utf-8")
    assert NetSpec.from_dict(_spec_literal(source)) == studies["a"]
    assert "class Trial0Net" in source
    out = export_trial(sqlite_url, "multi", trial=1, out=tmp_path / "m1.py")
    assert NetSpec.from_dict(_spec_literal(out.read_text(encoding="utf-8"))) == studies["b"]


@pytest.mark.parametrize(
    ("study", "kw", "message"),
    [
        ("single", {"trial": 2}, "PRUNED"),
        ("single", {"trial": 3}, "FAIL"),
        ("single", {"trial": 99}, "no trial 99"),
        ("single", {}, "--best"),
        ("single", {"trial": 0, "best": True}, "not both"),
        ("multi", {"best": True}, "Pareto"),
        ("nope", {"best": True}, "'multi', 'single'"),
        (None, {"best": True}, "'multi', 'single'"),
    ],
)
def test_export_trial_errors(
    tmp_path: Path, sqlite_url: str, studies: dict[str, NetSpec], study: str | None, kw: dict[str, Any],
    message: str,
) -> None:
    out = tmp_path / "m.py"
    # A bad choice of trial is an ExportError; a study that is not in the storage a StorageError.
    error = StorageError if study != "single" and "Pareto" not in message else ExportError
    with pytest.raises(error, match=message.replace("(", r"\(")) as info:
        export_trial(sqlite_url, study, out=out, **kw)
    text = _one_line(info.value)
    if "Pareto" in message:
        assert "#0" in text and "#1" in text and "#2" not in text and "val_accuracy=0.6" in text
    assert not out.exists()


def test_export_trial_single_study_needs_no_name(tmp_path: Path, sqlite_url: str) -> None:
    study = optuna.create_study(study_name="only", storage=sqlite_url, direction="maximize")
    _add(study, SPECS[5], value=0.3)
    out = export_trial(sqlite_url, None, best=True, out=tmp_path / "m.py")
    assert NetSpec.from_dict(_spec_literal(out.read_text(encoding="utf-8"))) == SPECS[5]


def test_export_trial_refuses_bad_recorded_spec(tmp_path: Path, sqlite_url: str) -> None:
    study = optuna.create_study(study_name="bad", storage=sqlite_url, direction="maximize")
    crafted = json.dumps({"layers": [{"kind": "pattern1", "out_channels": 8, "attention": "se; import os"}]})
    _add(study, SPECS[0], value=0.3, user_attrs={"spec": crafted})
    _add(study, SPECS[0], value=0.2, user_attrs={"spec": None})
    out = tmp_path / "m.py"
    with pytest.raises(StorageError, match="invalid spec"):
        export_trial(sqlite_url, "bad", trial=0, out=out)
    with pytest.raises(StorageError, match="no recorded spec"):
        export_trial(sqlite_url, "bad", trial=1, out=out)
    assert not out.exists()


def test_export_trial_missing_storage_is_not_created(tmp_path: Path, sqlite_url: str) -> None:
    missing = tmp_path / "missing.db"
    with pytest.raises(StorageError, match="no such file"):
        export_trial(f"sqlite:///{missing}", None, best=True, out=tmp_path / "m.py")
    assert not missing.exists()
    with pytest.raises(StorageError, match="no such file"):
        export_trial(str(tmp_path / "missing.journal"), None, best=True, out=tmp_path / "m.py")
