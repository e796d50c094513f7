"""End to end through the command line (issue 16): train the quick space's all-residual network, run a
warm-started quick search from its weights, validate it, train its winner from the same weights; and
one-line errors (exit 2, no traceback, no study made) for bad ``--init`` values."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from resattn.cli.main import main
from resattn.study import keys

pytestmark = pytest.mark.slow

TINY = ["--set", "data.train_images=256", "--set", "train.batch_size=64", "--set", "data.val_fraction=0.06"]


def run(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    code = exc.value.code if isinstance(exc.value.code, int) else (0 if exc.value.code is None else 1)
    return code, out, err


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, cifar_npz) -> Path:
    """`resattn train --space quick --search-split`: the weights every warm trial starts from."""
    out = tmp_path_factory.mktemp("pre") / "all-residual"
    with pytest.raises(SystemExit) as exc:
        main(["train", "--recipe", "quick", "--space", "quick", "--search-split", "--epochs", "1", "--out", str(out),
              "--device", "cpu", "--set", f"data.dataset=npz:{cifar_npz}", *TINY])
    assert exc.value.code in (0, None)
    return out / "weights.pt"


def test_warm_started_quick_search_end_to_end(pretrained: Path, cifar_npz: Path, tmp_path: Path, capsys) -> None:
    metrics = json.loads((pretrained.parent / "metrics.json").read_text())
    assert metrics["init"] == "scratch"
    db = tmp_path / "warm.db"
    code, out, err = run(["search", "--space", "quick", "--recipe", "quick", "--dataset", f"npz:{cifar_npz}",
                          "--trials", "3", "--storage", f"sqlite:///{db}", "--device", "cpu", "--epochs", "1",
                          "--init", f"checkpoint:{pretrained}", *TINY], capsys)
    assert code == 0, err
    assert "warm start: every trial starts from" in out and "fine-tunes at peak lr 0.02" in out
    study = optuna.load_study(study_name="quick-quick", storage=f"sqlite:///{db}")
    assert study.user_attrs[keys.STUDY_RECIPE]["train"]["init"] == f"checkpoint:{pretrained}"
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert complete
    assert all(t.user_attrs[keys.INIT]["loaded"] > 0 for t in study.trials if t.state != TrialState.FAIL
               and t.user_attrs.get(keys.DUPLICATE_OF) is None and t.user_attrs.get(keys.EPOCHS_RUN))
    baseline = study.trials[0]
    assert baseline.user_attrs[keys.DESIGN] == "all-residual"
    assert baseline.user_attrs[keys.INIT]["new_attention"] == 0

    code, out, err = run(["validate", "--storage", f"sqlite:///{db}", "--top", "2", "--epochs", "1",
                          "--device", "cpu"], capsys)
    assert code in (0, None), err
    assert "Kendall" in out

    trained = tmp_path / "winner"
    code, out, err = run(["train", "--recipe", "quick", "--study", "quick-quick", "--storage", f"sqlite:///{db}",
                          "--best", "--init", f"checkpoint:{pretrained}", "--epochs", "1", "--out", str(trained),
                          "--device", "cpu", "--set", f"data.dataset=npz:{cifar_npz}", *TINY], capsys)
    assert code in (0, None), err
    assert f"from checkpoint:{pretrained}" in out
    winner = json.loads((trained / "metrics.json").read_text())
    assert winner["init"] == f"checkpoint:{pretrained}" and winner["init_loaded"]["loaded"] > 0


@pytest.mark.parametrize(
    ("init", "needle"),
    [
        ("checkpoint:{tmp}/missing.pt", "does not exist"),
        ("checkpoint:{tmp}/garbage.pt", "not a torch file"),
        ("checkpoint:{tmp}", "a folder without weights.pt"),
        ("checkpoint:", "needs a path"),
        ("latest", "scratch or checkpoint:PATH"),
    ],
)
def test_bad_init_is_one_line_and_makes_no_study(init: str, needle: str, tmp_path: Path, capsys) -> None:
    (tmp_path / "garbage.pt").write_text("not a checkpoint")
    db = tmp_path / "s.db"
    value = init.format(tmp=tmp_path)
    code, _, err = run(["search", "--space", "quick", "--recipe", "quick", "--trials", "1", "--storage",
                        f"sqlite:///{db}", "--device", "cpu", "--init", value], capsys)
    assert code == 2, err
    assert needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not db.exists()
    code, _, err = run(["train", "--recipe", "quick", "--space", "quick", "--out", str(tmp_path / "t"), "--device",
                        "cpu", "--init", value], capsys)
    assert code == 2 and needle in err and "Traceback" not in err


def test_init_of_another_backbone_is_refused(pretrained: Path, tmp_path: Path, capsys) -> None:
    db = tmp_path / "s.db"
    code, _, err = run(["search", "--space", "resnet20", "--recipe", "quick", "--trials", "1", "--storage",
                        f"sqlite:///{db}", "--device", "cpu", "--init", f"checkpoint:{pretrained}"], capsys)
    assert code == 2 and "lacks" in err and "Traceback" not in err
    assert not db.exists()
