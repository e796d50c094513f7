"""Issue 15, through the command line: nothing lost, nothing silent.

Bad input is found before a study is created or changed (and a study an older run left without results
does not block the corrected command); every run that did not do what was asked exits non-zero with
one line; no traceback reaches the user; a stop signal at any point of a run exits 130 / 143, never 0;
the reading commands leave a read-only study untouched.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from resattn.cli.main import main
from resattn.errors import FAULT_SIGNAL_ENV
from resattn.study.objective import FAULT_NAN_ENV
from tests.conftest import ROOT
from tests.helpers import serve_dashboard

OLD_STUDY = ROOT / "tests" / "data" / "study-0.1.0.db"
FAST = ["--set", "train.epochs=1", "--set", "data.train_images=128", "--set", "train.batch_size=64",
        "--set", "data.val_fraction=0.05", "--device", "cpu"]


def run(entry, args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exc:
        entry(args)
    code = exc.value.code
    return (code if isinstance(code, int) else 0 if code is None else 1), out.getvalue(), err.getvalue()


def search(storage: str, npz: Path | str, trials: int, *extra: str) -> tuple[int, str, str]:
    return run(main, ["search", "--recipe", "quick", "--dataset", f"npz:{npz}", "--trials", str(trials),
                      "--storage", storage, *FAST, *extra])


def clean(err: str) -> None:
    assert "Traceback" not in err, err
    assert "failed with parameters" not in err, err  # Optuna's per-trial warning block


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    return lines[0]


# ------------------------------------------------------------ 1. bad input before the study exists


def test_a_missing_dataset_leaves_no_study_and_the_corrected_command_runs(tmp_path: Path, cifar_npz: Path) -> None:
    db = tmp_path / "studies" / "s.db"
    code, _, err = search(f"sqlite:///{db}", tmp_path / "typo.npz", 2)
    assert code == 2 and "typo.npz" in one_error_line(err)
    assert not db.exists()  # validated before the storage was even opened
    code, out, err = search(f"sqlite:///{db}", cifar_npz, 2)
    assert code == 0, err
    assert "2/2 finished" in out


def test_a_study_an_older_run_left_without_results_does_not_block_the_corrected_command(
    tmp_path: Path, cifar_npz: Path
) -> None:
    """resattn before issue 15 created the study, then failed to download CIFAR-10: the study has its
    queued baselines, maybe a failed trial, and another recipe."""
    from resattn.cli.common import load_inputs
    from resattn.study.setup import open_study
    from resattn.study.storage import open_storage

    url = f"sqlite:///{tmp_path / 's.db'}"
    space, offline = load_inputs(None, "quick", ["data.dataset=cifar10"])
    study, _ = open_study(open_storage(url), "quick-quick", space, offline, seed=0)
    study.tell(study.ask(), state=TrialState.FAIL)
    code, out, err = search(url, cifar_npz, 2)
    assert code == 0, err
    assert "had no finished trial" in out and "replaced" in out
    study = optuna.load_study(study_name="quick-quick", storage=url)
    assert study.user_attrs["resattn.recipe"]["data"]["dataset"] == f"npz:{cifar_npz}"
    # A study with results is never replaced: another recipe is refused as before.
    code, _, err = search(url, cifar_npz, 3, "--set", "train.lr=0.05")
    assert code == 2 and "another recipe" in one_error_line(err)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--seed", "-1"], "--seed"),
        (["--seed", "4294967296"], "--seed"),
        (["--set", "train.lr=1000"], "got 1000"),
        (["--storage", "sqlite:///:memory:"], "in-memory"),
        (["--storage", "sqlite://"], "in-memory"),
    ],
)
def test_bad_values_are_one_line_exit_2(extra: list[str], needle: str, tmp_path: Path, cifar_npz: Path) -> None:
    code, _, err = search(f"sqlite:///{tmp_path / 's.db'}", cifar_npz, 1, *extra)
    assert code == 2 and needle in one_error_line(err)


def test_gpus_on_a_machine_without_cuda_exit_2(tmp_path: Path, cifar_npz: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = search(f"sqlite:///{tmp_path / 's.db'}", cifar_npz, 2, "--gpus", "0,1", "--device", "auto")
    assert code == 2 and "CUDA is not available" in one_error_line(err)
    assert not (tmp_path / "s.db").exists()


def test_workers_with_a_missing_dataset_exit_2(tmp_path: Path) -> None:
    code, _, err = search(f"sqlite:///{tmp_path / 's.db'}", "/missing.npz", 2, "--workers", "2")
    assert code == 2 and "/missing.npz" in one_error_line(err)


def test_the_one_slash_url_is_refused_not_taken_for_a_journal(tmp_path: Path, cifar_npz: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = search("sqlite:/studies/x.db", cifar_npz, 1)
    assert code == 2 and "malformed storage URL" in one_error_line(err) and "sqlite:///" in err
    assert list(tmp_path.iterdir()) == []  # no ./sqlite:/studies/x.db journal


def test_environment_and_data_errors_name_their_source(tmp_path: Path, cifar_npz: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESATTN_GRACE_PERIOD", "abc")
    code, _, err = search(f"sqlite:///{tmp_path / 's.db'}", cifar_npz, 1)
    assert code == 2 and "RESATTN_GRACE_PERIOD" in one_error_line(err) and "'abc'" in err
    monkeypatch.delenv("RESATTN_GRACE_PERIOD")
    labels = tmp_path / "labels.npz"
    rng = np.random.default_rng(0)
    y = np.arange(40) % 10
    y[7] = 1_000_000
    np.savez(labels, x_train=rng.integers(0, 255, (40, 32, 32, 3), dtype=np.uint8), y_train=y)
    code, _, err = search(f"sqlite:///{tmp_path / 's.db'}", labels, 1)
    assert code == 2 and str(labels) in one_error_line(err) and "1000000" in err
    assert not (tmp_path / "s.db").exists()


def test_storage_files_of_the_wrong_kind_are_one_line(tmp_path: Path, cifar_npz: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a journal\nat all\n")
    code, _, err = search(str(notes), cifar_npz, 1)
    assert code == 2 and "not an Optuna journal file" in one_error_line(err)
    code, _, err = run(main, ["show", "--storage", str(notes)])
    assert code == 2 and "not an Optuna journal file" in one_error_line(err)
    assert notes.read_text() == "not a journal\nat all\n"
    # An SQLite file with garbage in the middle: the database fails when the study is read.
    damaged = tmp_path / "damaged.db"
    data = bytearray(OLD_STUDY.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 8192] = b"\xab" * 8192
    damaged.write_bytes(bytes(data))
    for command in (["studies"], ["show"], ["export", "--best", "--out", str(tmp_path / "w.py")]):
        code, _, err = run(main, [*command, "--storage", f"sqlite:///{damaged}"])
        assert code == 2, (command, err)
        clean(err)
        assert err.startswith("error:"), err


# --------------------------------------------------------- 2. runs that failed exit non-zero, 1 line


def test_every_trial_failing_exits_1_after_the_summary(tmp_path: Path, cifar_npz: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAULT_NAN_ENV, ",".join(str(n) for n in range(12)))
    code, out, err = search(f"sqlite:///{tmp_path / 's.db'}", cifar_npz, 12, "--set", "search.pruner=none")
    assert code == 1, out + err
    assert "0/12 finished (0 complete, 0 pruned, 10 failed)" in out
    assert "10 trials in a row failed" in one_error_line(err)
    clean(err)
    # Every failed trial has its own one-line outcome with the reason, instead of Optuna's warning block.
    outcomes = [line for line in out.splitlines() if line.startswith("trial ") and " fail " in line]
    assert len(outcomes) == 10 and all("(TrainingDiverged: non-finite loss" in line for line in outcomes)


def test_an_unexpected_error_fails_one_trial_with_its_reason(tmp_path: Path, cifar_npz: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import resattn.study.objective as objective

    real_initial_model, calls = objective.initial_model, []

    def build_once_broken(spec, *args, **kwargs):
        calls.append(spec)
        if len(calls) == 2:
            raise ValueError("boom")
        return real_initial_model(spec, *args, **kwargs)

    monkeypatch.setattr(objective, "initial_model", build_once_broken)
    url = f"sqlite:///{tmp_path / 's.db'}"
    code, out, err = search(url, cifar_npz, 3, "--set", "search.pruner=none")
    assert code == 0, out + err
    clean(err)
    assert "trial 1 fail val_accuracy — (ValueError: boom)" in out
    trials = optuna.load_study(study_name="quick-quick", storage=url).get_trials()
    assert trials[1].state == TrialState.FAIL and trials[1].user_attrs["fail_reason"] == "ValueError: boom"
    assert "3/3 finished" in out


@pytest.mark.slow
def test_worker_failures_reach_the_exit_code(tmp_path: Path, cifar_npz: Path) -> None:
    env = dict(os.environ, CI="1", **{FAULT_NAN_ENV: ",".join(str(n) for n in range(40))})
    proc = subprocess.run(
        [sys.executable, "-c", "from resattn.cli.main import search_main; search_main()", "--recipe", "quick",
         "--dataset", f"npz:{cifar_npz}", "--trials", "4", "--storage", f"sqlite:///{tmp_path / 's.db'}",
         *FAST, "--workers", "2", "--set", "search.pruner=none"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "10 trials in a row failed" in proc.stderr
    clean(proc.stderr)


def test_train_that_diverges_exits_1_with_one_line(tmp_path: Path, cifar_npz: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import resattn.training.retrain as retrain
    from resattn import presets
    from resattn.training.loop import TrainingDiverged

    def diverge(*args, **kwargs):
        raise TrainingDiverged(1, 3, float("nan"))

    monkeypatch.setattr(retrain, "train", diverge)
    spec = tmp_path / "spec.json"
    spec.write_text(presets.seed_residual().to_json())
    code, _, err = run(main, ["train", "--spec", str(spec), "--recipe", "quick", "--epochs", "1",
                              "--set", f"data.dataset=npz:{cifar_npz}", "--set", "data.train_images=64",
                              "--device", "cpu", "--out", str(tmp_path / "run")])
    assert code == 1 and "training diverged: non-finite loss nan at epoch 1 step 3" in one_error_line(err)


def test_report_into_a_file_or_an_unwritable_folder_is_one_line(inspect_db: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for out_dir, needle in ((blocker, "it is a file"), (Path("/proc/no/report"), "cannot write the report")):
        code, _, err = run(main, ["report", "--storage", f"sqlite:///{inspect_db}", "--out", str(out_dir)])
        assert code == 2 and needle in one_error_line(err), err


# ------------------------------------------------------------------ 8. a signal at any point of a run


@pytest.mark.parametrize(
    ("phase", "code"),
    [("startup", 143), ("data", 143), ("trial", 143), ("between", 143), ("summary", 143), ("swallowed", 143),
     ("trial:INT", 130), ("between:INT", 130)],
)
def test_a_signal_at_any_phase_of_a_run_exits_130_or_143(
    phase: str, code: int, tmp_path: Path, cifar_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic: the process sends itself the signal when it reaches the phase. ``swallowed``: the
    handler's exception is swallowed by a finalizer, as happened in the full test run where a SIGTERM
    ended a search with exit code 0; the recorded signal stops the run at the next check."""
    monkeypatch.setenv(FAULT_SIGNAL_ENV, phase)
    monkeypatch.setattr(sys, "unraisablehook", lambda info: None)
    url = f"sqlite:///{tmp_path / 's.db'}"
    got, out, err = search(url, cifar_npz, 3)
    assert got == code, out + err
    assert "Traceback" not in err
    if phase.split(":")[0] in ("trial", "between", "summary", "swallowed"):
        assert "study quick-quick:" in out  # the summary
        trials = optuna.load_study(study_name="quick-quick", storage=url).get_trials()
        assert not [t for t in trials if t.state == TrialState.RUNNING]
    if phase.split(":")[0] in ("trial", "swallowed"):
        failed = [t for t in trials if t.state == TrialState.FAIL]
        assert len(failed) == 1 and "interrupted" in failed[0].user_attrs["fail_reason"]


# ---------------------------------------------------------------- 5. reading never writes the study


@pytest.fixture
def archived(tmp_path: Path):
    """A copy of a real study in a folder made read-only (root ignores the modes; what is checked is
    that nothing is written: the file's bytes and time, and no file created beside it)."""
    folder = tmp_path / "archive"
    folder.mkdir()
    db = folder / "study.db"
    shutil.copy(OLD_STUDY, db)
    db.chmod(0o444)
    folder.chmod(0o555)
    yield db
    folder.chmod(0o755)


def _state(db: Path) -> tuple[bytes, int, list[str]]:
    return db.read_bytes(), db.stat().st_mtime_ns, sorted(p.name for p in db.parent.iterdir())


def test_read_commands_leave_a_read_only_study_untouched(archived: Path, tmp_path: Path, cifar_npz: Path) -> None:
    from resattn.cli.inspect import make_dashboard_server

    url = f"sqlite:///{archived}"
    before = _state(archived)
    assert before[2] == ["study.db"]
    out_dir = tmp_path / "out"
    for args in (["studies"], ["show"], ["export", "--best", "--out", str(out_dir / "winner.py")],
                 ["report", "--out", str(out_dir / "report")],
                 ["train", "--best", "--recipe", "quick", "--epochs", "1", "--set", f"data.dataset=npz:{cifar_npz}",
                  "--set", "data.train_images=64", "--device", "cpu", "--out", str(out_dir / "train")]):
        code, out, err = run(main, [*args, "--storage", url])
        assert code == 0, (args, out, err)
        assert _state(archived) == before, args
    server = make_dashboard_server(url, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        with urllib.request.urlopen(f"http://{host}:{port}/api/studies", timeout=30) as response:
            assert b"quick-quick" in response.read()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert _state(archived) == before


def test_show_on_an_empty_file_writes_no_schema_into_it(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    for command in ("show", "studies"):
        code, _, err = run(main, [command, "--storage", f"sqlite:///{empty}"])
        assert code == 2 and "not an Optuna study database" in one_error_line(err)
    assert empty.stat().st_size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]


# --------------------------------------------------------------------------------- 9. smaller items


def test_exported_and_trained_files_follow_the_umask(tmp_path: Path, cifar_npz: Path) -> None:
    old = os.umask(0o022)
    try:
        url = f"sqlite:///{tmp_path / 'old.db'}"
        shutil.copy(OLD_STUDY, tmp_path / "old.db")
        code, _, err = run(main, ["export", "--storage", url, "--best", "--out", str(tmp_path / "winner.py")])
        assert code == 0, err
        code, _, err = run(main, ["train", "--storage", url, "--best", "--recipe", "quick", "--epochs", "1",
                                  "--set", f"data.dataset=npz:{cifar_npz}", "--set", "data.train_images=64",
                                  "--device", "cpu", "--out", str(tmp_path / "run")])
        assert code == 0, err
        written = [tmp_path / "winner.py"] + [tmp_path / "run" / name for name in
                                              ("weights.pt", "spec.json", "metrics.json", "checkpoint.pt")]
        onnx = tmp_path / "winner.onnx"
        code, _, err = run(main, ["export", "--storage", url, "--best", "--format", "onnx", "--weights",
                                  str(tmp_path / "run" / "weights.pt"), "--out", str(onnx)])
        if code == 0:  # onnx installed
            written.append(onnx)
        assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in written} == {p.name: "0o644" for p in written}
    finally:
        os.umask(old)


def test_small_messages(tmp_path: Path, inspect_db: Path) -> None:
    from tests.helpers import FAILED_TRIAL

    url = f"sqlite:///{inspect_db}"
    code, _, err = run(main, ["export", "--storage", url, "--best", "--class-name", "__all__",
                              "--out", str(tmp_path / "w.py")])
    assert code == 2 and "reserved" in one_error_line(err)
    code, _, err = run(main, ["train", "--storage", url, "--trial", str(FAILED_TRIAL), "--recipe", "quick",
                              "--out", str(tmp_path / "t")])
    line = one_error_line(err)
    assert code == 2 and "can be trained" in line and "exported" not in line
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("example text, not weights\n")
    code, _, err = run(main, ["export", "--storage", url, "--best", "--format", "onnx", "--weights", str(garbage),
                              "--out", str(tmp_path / "m.onnx")])
    line = one_error_line(err)
    assert code == 2 and ("not a weights file" in line or "onnx package" in line), line


def test_over_budget_and_pruned_trials_print_their_reason(tmp_path: Path, cifar_npz: Path) -> None:
    code, out, err = search(f"sqlite:///{tmp_path / 's.db'}", cifar_npz, 3, "--max-params", "111000")
    assert code == 0, err
    assert "pruned val_accuracy — (over budget: params" in out


@pytest.mark.slow
def test_dashboard_on_every_interface_warns_and_prints_a_usable_address(inspect_db: Path) -> None:
    def serves(line: str) -> None:
        local = line.split("on this machine: ", 1)[1].split(")", 1)[0]
        with urllib.request.urlopen(f"{local}api/studies", timeout=30) as response:  # it serves
            assert b"quick-quick" in response.read()

    line, err, code = serve_dashboard(["--storage", f"sqlite:///{inspect_db}", "--host", "0.0.0.0", "--port", "0"],
                                      serves)
    assert "every network interface" in err and "without a password" in err
    address = line.split("http://", 1)[1].split("/", 1)[0]
    assert not address.startswith("127.") and not address.startswith("0.0.0.0"), line
    assert "http://127.0.0.1:" in line  # and the local address, labelled as such
    assert code == 0 and "Traceback" not in err
