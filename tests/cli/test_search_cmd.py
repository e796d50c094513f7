"""End-to-end: `resattn search` / `resattn-search` through the CLI entry points, on real CIFAR images."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from resattn.cli.main import main, search_main
from resattn.model.spec import NetSpec
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

TINY = ["--set", "data.train_images=384", "--set", "train.batch_size=64", "--set", "train.epochs=3",
        "--set", "data.val_fraction=0.06"]


def run_cli(entry, args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        entry(args)
    out, err = capsys.readouterr()
    code = exc.value.code if isinstance(exc.value.code, int) else (0 if exc.value.code is None else 1)
    return code, out, err


def search_args(db: Path, npz: Path, trials: int, *extra: str) -> list[str]:
    return ["--space", "quick", "--recipe", "quick", "--dataset", f"npz:{npz}", "--trials", str(trials),
            "--storage", f"sqlite:///{db}", "--device", "cpu", *TINY, *extra]


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory, cifar_npz):
    """One real quick search of 12 trials, run through `resattn search`."""
    db = tmp_path_factory.mktemp("study") / "s.db"
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exc:
        main(["search", *search_args(db, cifar_npz, 12)])
    return db, exc.value.code, out.getvalue(), err.getvalue()


def load(db: Path, name: str = "quick-quick") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}")


def test_quick_search_completes_with_pruning_and_attributes(quick_study):
    db, code, out, err = quick_study
    assert code in (0, None), err
    study = load(db)
    trials = study.get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len([t for t in finished if t.user_attrs.get("duplicate_of") is None]) == 12  # duplicates do not count
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "Hyperband should prune some of 12 trials"
    assert study.metric_names == ["val_accuracy"]
    for t in finished:
        attrs = t.user_attrs
        spec = NetSpec.from_json(attrs["spec"])
        assert spec.num_classes == 10
        assert attrs["params"] > 0 and attrs["flops"] > 0
        assert attrs["device"] == "cpu"
        assert attrs["seconds"] > 0 and attrs["images_per_second"] > 0
        assert 1 <= attrs["epochs_run"] <= 3
        assert len(t.intermediate_values) == attrs["epochs_run"]
    for t in pruned:
        assert t.user_attrs["epochs_run"] < 3
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert all(t.user_attrs["epochs_run"] == 3 for t in complete)
    # The baselines are the first trials.
    first = sorted(trials, key=lambda t: t.number)[:3]
    assert [t.user_attrs.get("design") for t in first] == ["all-residual", "seed-pattern2", "seed-pattern4"]
    # ... and never pruned: each trains every epoch (Hyperband prunes other trials after one).
    assert all(t.state == TrialState.COMPLETE and t.user_attrs["epochs_run"] == 3 for t in first)
    # Study records its space and recipe.
    assert study.user_attrs["resattn.space"]["name"] == "quick"
    assert study.user_attrs["resattn.recipe"]["train"]["epochs"] == 3
    # The summary: a top-5 table and the export command.
    assert "Top 5 trials" in out
    assert "resattn export" in out and "--best" in out
    best = study.best_trial
    assert str(best.number) in out
    # Each row shows the per-slot placement in short form, brackets and all.
    for short in best.user_attrs["placement"]:
        assert short in out


def test_rerun_continues_to_the_total_not_n_more(quick_study, cifar_npz, capsys):
    db, *_ = quick_study
    code, out, _ = run_cli(search_main, search_args(db, cifar_npz, 14), capsys)
    assert code == 0
    study = load(db)
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len([t for t in finished if t.user_attrs.get("duplicate_of") is None]) == 14
    # Re-running with the reached total trains nothing.
    n_before = len(study.get_trials())
    code, out, _ = run_cli(search_main, search_args(db, cifar_npz, 14), capsys)
    assert code == 0
    assert len(load(db).get_trials()) == n_before
    assert "14/14 finished" in out


def test_changed_space_or_recipe_is_refused(quick_study, cifar_npz, capsys, tmp_path):
    db, *_ = quick_study
    changed = tmp_path / "quick.toml"  # same name, one range changed
    text = (ROOT / "space" / "quick.toml").read_text()
    old_range = "gamma_r = { low = 0.05, high = 0.2 }"
    assert old_range in text
    changed.write_text(text.replace(old_range, "gamma_r = { low = 0.05, high = 0.3 }"))
    args = search_args(db, cifar_npz, 20)
    args[args.index("quick")] = str(changed)
    code, _, err = run_cli(main, ["search", *args], capsys)
    assert code == 2, "a study created with another space must be refused"
    assert "quick-quick" in err and "--study" in err and "space" in err
    # A changed recipe value is refused too, naming the key.
    args = search_args(db, cifar_npz, 20, "--set", "train.lr=0.05")
    code, _, err = run_cli(main, ["search", *args], capsys)
    assert code == 2 and "recipe" in err and "lr" in err
    # Nothing was trained by the refused runs.
    assert len(load(db).get_trials(states=(TrialState.RUNNING,))) == 0


def test_nan_trial_fails_with_reason_and_study_continues(tmp_path, cifar_npz, capsys, monkeypatch):
    monkeypatch.setenv("RESATTN_FAULT_NAN_TRIALS", "1")
    db = tmp_path / "nan.db"
    args = search_args(db, cifar_npz, 3, "--set", "search.pruner=none")
    code, out, _ = run_cli(main, ["search", *args], capsys)
    assert code == 0
    study = load(db)
    failed = [t for t in study.get_trials() if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [1]
    assert "non-finite" in failed[0].user_attrs["fail_reason"]
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 3
    assert "1 failed" in out


BAD_SPACE = """
name = "bad"
[backbone]
stem_channels = 16
layers = [{ slot = "s1", out_channels = 32, stride = 2 }]
[choices]
kinds = ["residual", "pattern9"]
"""


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--space", "no/such/space.toml"], "file not found"),
        (["--recipe", "nosuchrecipe"], "shipped search files"),
        (["--set", "train.epochs=zero"], "train.epochs"),
        (["--set", "train.nosuch=1"], "nosuch"),
        (["--set", "search.sampler=grid"], "tpe"),
        (["--device", "tpu"], "device"),
        (["--dataset", "nosuchdataset"], "nosuchdataset"),
        (["--dataset", "npz:/no/such/file.npz"], "/no/such/file.npz"),
        (["--storage", "sqlite:////proc/forbidden/x.db"], "storage"),
        (["--storage", "nosuchdriver://x"], "storage"),
    ],
)
def test_bad_input_gives_message_and_exit_2(args, needle, tmp_path, capsys):
    base = ["--space", "quick", "--recipe", "quick", "--trials", "1", "--storage", f"sqlite:///{tmp_path}/x.db",
            "--device", "cpu"]
    merged = base + args
    code, _, err = run_cli(main, ["search", *merged], capsys)
    assert code == 2, err
    assert needle in err
    assert "Traceback" not in err


def test_bad_space_file_names_file_and_key(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD_SPACE)
    code, _, err = run_cli(main, ["search", "--space", str(bad), "--recipe", "quick", "--trials", "1",
                                  "--storage", f"sqlite:///{tmp_path}/x.db"], capsys)
    assert code == 2
    assert "bad.toml" in err and "kinds" in err and "pattern9" in err and "residual" in err


def test_cli_usage_errors_exit_2_without_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for args in (["--trials", "0"], ["--trials", "many"], ["--no-such-flag"]):
        proc = subprocess.run(
            [sys.executable, "-c", "from resattn.cli.main import search_main; search_main()", *args],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
        )
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr


def test_help_lists_options(capsys):
    code, out, _ = run_cli(search_main, ["--help"], capsys)
    assert code == 0
    for opt in ("--space", "--recipe", "--trials", "--timeout", "--study", "--storage", "--device", "--seed"):
        assert opt in out


def test_dashboard_can_read_the_study(quick_study):
    db, *_ = quick_study
    from optuna_dashboard._app import create_app  # noqa: F401  (the dashboard imports and opens the storage)

    storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
    summaries = optuna.get_all_study_summaries(storage)
    assert [s.study_name for s in summaries] == ["quick-quick"]
    assert json.loads(load(db).trials[0].user_attrs["spec"])["layers"]


def test_the_summary_counts_finished_trials_without_duplicates() -> None:
    from rich.console import Console

    from resattn.cli.search import _print_summary
    from resattn.study.search import SearchResult

    result = SearchResult(
        study_name="s", storage="sqlite:///s.db", target=20, finished=20, complete=11, pruned=11, failed=0,
        top=(), best=None, pareto=(), interrupted=None, stopped_reason=None, seconds=54.2, device="cpu",
        duplicates=2, saved_seconds=6.0, architectures=9,
    )
    console = Console(record=True, width=200)
    _print_summary(result, console)
    text = console.export_text()
    assert "20/20 finished (9 complete, 11 pruned, 0 failed; 2 duplicates not counted)" in text
