"""Several worker processes on one study: shared budget, crash recovery, signals (issue 6).

Real (tiny) searches in subprocesses on the CPU, on every storage: an SQLite file, a journal file and
PostgreSQL (only when RESATTN_TEST_POSTGRES_URL is set).
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from resattn.study.objective import FAULT_SLEEP_ENV
from resattn.study.setup import open_study
from resattn.study.storage import open_storage
from resattn.study.workers import parse_gpus, plan_workers

TINY = ["--set", "train.epochs=1", "--set", "data.train_images=128", "--set", "train.batch_size=64",
        "--device", "cpu"]
FAST_HEARTBEAT = {"RESATTN_HEARTBEAT_INTERVAL": "1", "RESATTN_GRACE_PERIOD": "3"}


def _study_name() -> str:
    return f"w-{uuid.uuid4().hex[:10]}"


def _search_cmd(cifar_npz: Path, storage: str, study: str, trials: int, *extra: str) -> list[str]:
    return [sys.executable, "-c", "from resattn.cli.main import search_main; search_main()",
            "--recipe", "quick", "--dataset", f"npz:{cifar_npz}", "--trials", str(trials),
            "--storage", storage, "--study", study, *TINY, *extra]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, CI="1", **FAST_HEARTBEAT)
    env.pop(FAULT_SLEEP_ENV, None)
    env.update(extra)
    return env


def _trials(storage: str, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=open_storage(storage, heartbeat=False)).get_trials()


def _wait_running(storage: str, study: str, number: int, proc: subprocess.Popen, timeout: float = 90) -> int:
    """Wait until trial ``number`` runs in a worker; return the worker's pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            for t in _trials(storage, study):
                if t.number == number and t.state == TrialState.RUNNING and "worker_pid" in t.user_attrs:
                    return int(t.user_attrs["worker_pid"])
        except KeyError:  # the study does not exist yet
            pass
        time.sleep(0.3)
    raise AssertionError(f"trial {number} never ran")


def _retried(trial: optuna.trial.FrozenTrial) -> int | None:
    """RetryFailedTrialCallback.retried_trial_number, without its experimental warning."""
    return trial.system_attrs.get("failed_trial")


def _check_budget(trials: list[optuna.trial.FrozenTrial], target: int) -> None:
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == target, [(t.number, t.state.name) for t in trials]
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert all(t.user_attrs.get("worker_pid") and t.user_attrs.get("hostname") for t in finished)


def test_three_workers_share_the_budget_and_survive_a_killed_worker(
    storage_url: str, cifar_npz: Path
) -> None:
    study, target, victim = _study_name(), 6, 1
    proc = subprocess.Popen(
        _search_cmd(cifar_npz, storage_url, study, target, "--workers", "3"),
        env=_env(**{FAULT_SLEEP_ENV: f"{victim}:60"}), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        pid = _wait_running(storage_url, study, victim, proc)
        before = {t.number: (t.state, t.values) for t in _trials(storage_url, study) if t.state.is_finished()}
        os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert f"{target}/{target} finished" in out
    trials = _trials(storage_url, study)
    _check_budget(trials, target)
    by_number = {t.number: t for t in trials}
    killed = by_number[victim]
    assert killed.state == TrialState.FAIL
    assert "died" in killed.user_attrs["fail_reason"]
    retries = [t for t in trials if _retried(t) == victim]
    # the fault sleep comes before sampling, so the killed trial has only its enqueued (baseline) params
    assert len(retries) == 1 and retries[0].params == killed.system_attrs["fixed_params"]
    assert retries[0].system_attrs["retry_history"] == [victim]
    # the victim is a baseline: its retry is one too, and it completed
    assert retries[0].user_attrs["design"] == killed.user_attrs["design"] == "seed-pattern2"
    assert retries[0].state.is_finished() and retries[0].user_attrs["worker_pid"] != pid
    for number, (state, values) in before.items():  # nothing finished before the kill was lost
        assert (by_number[number].state, by_number[number].values) == (state, values)


def test_rerun_after_everything_died_completes_the_study(
    tmp_path: Path, cifar_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No parent left to notice: the heartbeat fails the dead trial (SQLite/PostgreSQL) after the grace
    period and retries it once; the re-run finishes the budget."""
    from resattn.cli.common import load_inputs as _load_inputs

    url, study_name, target = f"sqlite:///{tmp_path}/study.db", _study_name(), 3
    space, recipe = _load_inputs(None, "quick", [f"data.dataset=npz:{cifar_npz}", "train.epochs=1",
                                                 "data.train_images=128", "train.batch_size=64"])
    for key, value in FAST_HEARTBEAT.items():
        monkeypatch.setenv(key, value)
    open_study(open_storage(url), study_name, space, recipe, seed=0)
    inputs = tmp_path / "inputs.pickle"
    inputs.write_bytes(pickle.dumps((space, recipe)))
    worker = subprocess.Popen(
        [sys.executable, "-m", "resattn.study.workers", "--inputs", str(inputs), "--storage", url, "--study",
         study_name, "--trials", str(target), "--device", "cpu"],
        env=_env(**{FAULT_SLEEP_ENV: "0:60"}),
    )
    try:
        _wait_running(url, study_name, 0, worker)
        worker.kill()
        worker.wait()
    finally:
        if worker.poll() is None:
            worker.kill()
    from resattn.study.search import run_search

    result = run_search(space, recipe, trials=target, storage=url, study_name=study_name, device="cpu", workers=2)
    assert result.finished == target and not result.interrupted
    trials = _trials(url, study_name)
    _check_budget(trials, target)
    assert trials[0].state == TrialState.FAIL
    assert [_retried(t) for t in trials].count(0) == 1


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_to_the_parent_ends_workers_and_prints_the_summary(
    tmp_path: Path, cifar_npz: Path, sig: int, code: int
) -> None:
    url, study = str(tmp_path / "study.journal"), _study_name()
    proc = subprocess.Popen(
        _search_cmd(cifar_npz, url, study, 50, "--workers", "2"),
        env=_env(**{FAULT_SLEEP_ENV: "0:60"}), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait_running(url, study, 0, proc)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert f"study {study}:" in out and "interrupted" in out
    trials = _trials(url, study)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert trials[0].state == TrialState.FAIL and "interrupted" in trials[0].user_attrs["fail_reason"]


@pytest.mark.parametrize("phase", ["trial", "swallowed"])
def test_sigterm_single_process_exits_143(tmp_path: Path, cifar_npz: Path, phase: str) -> None:
    """Not timing-dependent: the process sends itself SIGTERM when it reaches the phase (mid-trial, or
    where a finalizer swallows the handler's exception: the window that once ended a search with exit
    code 0 in a full test run). Every other phase: tests/cli/test_faults.py, in-process."""
    from resattn.errors import FAULT_SIGNAL_ENV

    url, study = f"sqlite:///{tmp_path}/study.db", _study_name()
    proc = subprocess.run(
        _search_cmd(cifar_npz, url, study, 50), env=_env(**{FAULT_SIGNAL_ENV: phase}), capture_output=True,
        text=True, timeout=300,
    )
    assert proc.returncode == 143, proc.stderr
    assert f"study {study}:" in proc.stdout and "interrupted" in proc.stdout
    trials = _trials(url, study)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    stopped = [t for t in trials if t.state == TrialState.FAIL]
    assert stopped and "SIGTERM" in stopped[-1].user_attrs["fail_reason"]
    finished = [t for t in trials if t.state.is_finished()]
    assert len(finished) < 50


def test_plan_workers_spreads_over_gpus() -> None:
    assert parse_gpus("0, 1") == ["0", "1"] and parse_gpus(None) == []
    plans = plan_workers(1, ["0", "1"], 2, "auto")
    assert [(p.device, p.cuda_visible_devices) for p in plans] == [("cuda", "0"), ("cuda", "1")] * 2
    assert [p.cuda_visible_devices for p in plan_workers(3, ["0", "1"], 1)] == ["0", "1", "0"]
    assert [(p.device, p.cuda_visible_devices) for p in plan_workers(2, [], 1, "cpu")] == [("cpu", None)] * 2
    from resattn.errors import ConfigError

    with pytest.raises(ConfigError):
        parse_gpus("a,b")
    with pytest.raises(ConfigError):
        plan_workers(1, ["0"], 1, "cpu")


def test_scaling_bench_reports_trials_per_hour(cifar_npz: Path) -> None:
    from resattn.cli.common import load_inputs as _load_inputs
    from resattn.study.scaling import format_scaling, run_scaling_bench

    space, recipe = _load_inputs(None, "quick", [f"data.dataset=npz:{cifar_npz}", "train.epochs=1",
                                                 "data.train_images=128", "train.batch_size=64"])
    rows = run_scaling_bench(space, recipe, [1], trials=1, device="cpu")
    assert [(r.workers, r.trials) for r in rows] == [(1, 1)] and rows[0].trials_per_hour > 0
    assert "trials/hour" in format_scaling(rows)


def test_bench_workers_cli(cifar_npz: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from resattn.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["bench", "--workers", "0,x"])
    assert exc.value.code == 2 and "--workers" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--workers", "1", "--search-trials", "1", "--dataset", f"npz:{cifar_npz}", "--device", "cpu"])
    out = capsys.readouterr().out
    assert exc.value.code in (0, None), out
    assert "trials/hour" in out


def test_tpe_lies_about_running_trials_for_workers_on_other_machines() -> None:
    from resattn.cli.common import load_inputs as _load_inputs
    from resattn.study.setup import make_sampler

    _, recipe = _load_inputs(None, "quick", [])
    # Workers on other machines are invisible to this process: TPE must treat RUNNING trials as bad
    # whatever the number of local workers (the sampler does not even know it).
    assert make_sampler(recipe, seed=0)._constant_liar is True
