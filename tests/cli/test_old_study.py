"""A study made by resattn 0.1.0 before the package was reorganised (``tests/data/study-0.1.0.db``: a
6-trial quick search) still lists, shows, reports, exports and continues with today's code: stored
attributes, spaces, recipes and their fingerprints did not change."""

from __future__ import annotations

import contextlib
import io
import runpy
import shutil
from pathlib import Path

import optuna
import pytest
import torch

from resattn.cli.main import main, search_main
from resattn.study import keys
from resattn.study.recipe import Recipe, load_recipe

OLD_STUDY = Path(__file__).resolve().parents[1] / "data" / "study-0.1.0.db"
RECIPES = Path(__file__).resolve().parents[2] / "search"


#: The command that made the old study (its dataset aside: it lay at /work/shared/data/ then).
OLD_COMMAND_SETS = ["data.val_fraction=0.1", "train.epochs=2", "data.train_images=200", "train.batch_size=64"]


def _old_recipe(dataset: str) -> Recipe:
    # the quick recipe of 0.1.0 (its values since re-tuned: the same command with --set reproduces it)
    return load_recipe(RECIPES / "quick.toml").with_overrides([f"data.dataset={dataset}", *OLD_COMMAND_SETS])


@pytest.fixture
def old_db(tmp_path: Path) -> str:
    target = tmp_path / "old.db"
    shutil.copy(OLD_STUDY, target)
    return f"sqlite:///{target}"


@pytest.fixture
def relocated_old_db(old_db: str, cifar_npz: Path) -> str:
    """The old study as if it had been made on this machine: its recorded dataset path (and so the
    recipe fingerprint) names where this checkout's sample lies."""
    study = optuna.load_study(study_name="quick-quick", storage=old_db)
    recorded = study.user_attrs[keys.STUDY_RECIPE]
    recorded["data"]["dataset"] = f"npz:{cifar_npz}"
    study.set_user_attr(keys.STUDY_RECIPE, recorded)
    study.set_user_attr(keys.STUDY_RECIPE_FINGERPRINT, _old_recipe(f"npz:{cifar_npz}").fingerprint())
    return old_db


def test_the_old_recipe_fingerprint_is_reproduced_by_todays_code(old_db: str) -> None:
    study = optuna.load_study(study_name="quick-quick", storage=old_db)
    recorded = study.user_attrs[keys.STUDY_RECIPE]
    today = _old_recipe(recorded["data"]["dataset"])
    assert today.fingerprint() == study.user_attrs[keys.STUDY_RECIPE_FINGERPRINT]
    assert _old_recipe("npz:elsewhere.npz").fingerprint() != today.fingerprint()


def _run(entry, args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exc:
        entry(args)
    code = exc.value.code if isinstance(exc.value.code, int) else 0
    return code, out.getvalue(), err.getvalue()


def test_old_study_lists_shows_reports_and_exports(old_db: str, tmp_path: Path) -> None:
    code, out, err = _run(main, ["studies", "--storage", old_db])
    assert code == 0 and "quick-quick" in out, err
    code, out, err = _run(main, ["show", "--storage", old_db])
    assert code == 0 and "seed-pattern4" in out and "pattern4[se/r16|se/r16 γs=0 γr=0.1]" in out, err
    code, out, err = _run(main, ["report", "--storage", old_db, "--out", str(tmp_path / "report")])
    assert code == 0 and (tmp_path / "report" / "report.html").is_file(), out + err
    code, out, err = _run(main, ["export", "--storage", old_db, "--best", "--out", str(tmp_path / "w.py")])
    assert code == 0, err
    model = runpy.run_path(str(tmp_path / "w.py"))["build_model"]()
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_old_study_continues_with_the_same_command(relocated_old_db: str, cifar_npz: Path) -> None:
    sets = [arg for item in OLD_COMMAND_SETS for arg in ("--set", item)]
    code, out, err = _run(search_main, [
        "--recipe", "quick", "--dataset", f"npz:{cifar_npz}", "--trials", "7", "--storage", relocated_old_db,
        "--device", "cpu", *sets,
    ])
    assert code == 0, out + err
    assert "7/7 finished" in out
    study = optuna.load_study(study_name="quick-quick", storage=relocated_old_db)
    assert len(study.trials) == 7
