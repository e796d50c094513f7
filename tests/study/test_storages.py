"""The storage-behaviour suite, run over every backend (SQLite, a journal file, PostgreSQL: the
``storage_url`` fixture of ``tests/conftest.py``): every storage opens and keeps a study; one that
cannot be opened is one clear error (exit 2); the reading commands never create a database; and the
single-process search shares its budget with processes it cannot see — several machines run
``resattn-search`` against one storage, each counts the trials RUNNING elsewhere before starting one,
so the study stops at exactly ``--trials`` finished trials (a trial RUNNING "on another machine" is
simulated by a trial asked from the test itself).
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.storages import RDBStorage
from optuna.storages.journal import JournalStorage
from optuna.trial import TrialState

from resattn.errors import StorageError
from resattn.study.objective import NullReporter
from resattn.study.search import run_search
from resattn.study.setup import open_study
from resattn.study.storage import load_study, open_storage


def _roundtrip(storage: optuna.storages.BaseStorage) -> None:
    name = f"s-{uuid.uuid4().hex[:10]}"
    study = optuna.create_study(study_name=name, storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    again = optuna.load_study(study_name=name, storage=storage)
    assert len(again.trials) == 2


def test_sqlite_file_opens_in_wal_mode_with_heartbeat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESATTN_HEARTBEAT_INTERVAL", "2")
    monkeypatch.setenv("RESATTN_GRACE_PERIOD", "5")
    storage = open_storage(f"sqlite:///{tmp_path}/new/folder/study.db")
    assert isinstance(storage, RDBStorage)
    assert (storage.heartbeat_interval, storage.grace_period) == (2, 5)
    _roundtrip(storage)
    import sqlalchemy

    with storage.engine.connect() as conn:
        assert conn.execute(sqlalchemy.text("PRAGMA journal_mode")).scalar() == "wal"


def test_every_backend_opens_and_keeps_a_study(storage_url: str) -> None:
    storage = open_storage(storage_url)
    assert isinstance(storage, JournalStorage if "://" not in storage_url else RDBStorage)
    if isinstance(storage, RDBStorage):
        assert storage.heartbeat_interval  # crashed workers are noticed
    _roundtrip(storage)


def _bad_cases(tmp_path: Path) -> list[tuple[str, str]]:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    return [
        ("nosuchdb://host/db", "cannot open storage"),
        ("postgresql+psycopg://postgres@127.0.0.1:1/nothing", "cannot open storage"),
        (f"sqlite:///{blocker}/sub/study.db", "cannot create its folder"),
        (f"{blocker}/sub/study.journal", "cannot open journal file"),
    ]


def test_unavailable_storages_raise_one_line(tmp_path: Path) -> None:
    for url, expected in _bad_cases(tmp_path):
        with pytest.raises(StorageError) as info:
            open_storage(url)
        message = str(info.value)
        assert expected in message and "\n" not in message, url


def test_cli_unavailable_storage_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cifar_npz: Path
) -> None:
    from resattn.cli.main import search_main

    for url, expected in _bad_cases(tmp_path):
        with pytest.raises(SystemExit) as info:
            search_main(["--recipe", "quick", "--dataset", f"npz:{cifar_npz}", "--trials", "1",
                         "--storage", url, "--device", "cpu", "--workers", "2"])
        assert info.value.code == 2, url
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and expected in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_load_study_default_and_errors(tmp_path: Path, kind: str) -> None:
    def url(name: str) -> str:
        return f"sqlite:///{tmp_path / name}.db" if kind == "sqlite" else str(tmp_path / f"{name}.journal")

    optuna.create_study(study_name="only", storage=open_storage(url("one"), heartbeat=False))
    assert load_study(url("one")).study_name == "only"
    assert load_study(url("one"), "only").study_name == "only"
    with pytest.raises(StorageError, match="no study 'nope'"):
        load_study(url("one"), "nope")
    missing = tmp_path / ("missing.db" if kind == "sqlite" else "missing.journal")
    with pytest.raises(StorageError, match="no such file"):
        load_study(url("missing"))
    assert not missing.exists()  # reading never creates a database
    for name in ("a", "b"):
        optuna.create_study(study_name=name, storage=open_storage(url("two"), heartbeat=False))
    with pytest.raises(StorageError, match="name one with --study: 'a', 'b'"):
        load_study(url("two"))


# ---------------------------------------------------------- the budget, shared with other processes

@pytest.fixture
def setup(storage_url: str, cifar_npz: Path):
    from resattn.cli.common import load_inputs

    space, recipe = load_inputs(None, "quick", [f"data.dataset=npz:{cifar_npz}", "train.epochs=1",
                                                "data.train_images=128", "train.batch_size=64"])
    return space, recipe, storage_url, f"search-{uuid.uuid4().hex[:8]}"


def _search_in_thread(space, recipe, url: str, name: str, trials: int) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def run() -> None:
        box["result"] = run_search(space, recipe, trials=trials, storage=url, study_name=name, device="cpu")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def _elsewhere(url: str, name: str, space, recipe) -> tuple[optuna.Study, optuna.Trial]:
    """A study with one trial RUNNING in "another process" (this test)."""
    study, _ = open_study(open_storage(url, heartbeat=False), name, space, recipe, seed=0)
    return study, study.ask()


def _states(study: optuna.Study) -> list[TrialState]:
    return [t.state for t in study.get_trials(deepcopy=False)]


@pytest.mark.parametrize("outcome", ["complete", "fail"])
def test_waits_for_a_trial_running_elsewhere_instead_of_overshooting(setup, outcome: str) -> None:
    space, recipe, url, name = setup
    run_search(space, recipe, trials=1, storage=url, study_name=name, device="cpu")
    study, other = _elsewhere(url, name, space, recipe)
    # finished 1 + running 1 = the budget of 2: this process must not start a trial.
    thread, box = _search_in_thread(space, recipe, url, name, trials=2)
    time.sleep(3.0)
    assert thread.is_alive()
    assert _states(study).count(TrialState.RUNNING) == 1  # only the other machine's trial
    if outcome == "complete":
        study.tell(other, 0.5)
    else:
        study.tell(other, state=TrialState.FAIL)  # its budget is free again: this process runs one
    thread.join(timeout=120)
    assert not thread.is_alive()
    result = box["result"]
    states = _states(study)
    assert result.finished == 2 and states.count(TrialState.RUNNING) == 0
    assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == 2
    started = [s for s in states if s != TrialState.WAITING]  # enqueued baselines may wait unused
    assert len(started) == (2 if outcome == "complete" else 3)


@pytest.mark.slow
def test_single_process_trials_record_host_and_pid(setup) -> None:
    import os
    import socket

    space, recipe, url, name = setup
    run_search(space, recipe, trials=1, storage=url, study_name=name, device="cpu")
    trial = optuna.load_study(study_name=name, storage=open_storage(url)).trials[0]
    assert trial.user_attrs["hostname"] == socket.gethostname()
    assert trial.user_attrs["worker_pid"] == os.getpid()


@pytest.mark.slow
def test_a_study_being_created_elsewhere_is_waited_for(setup) -> None:
    from resattn.study.setup import _record_setup

    space, recipe, url, name = setup
    bare = optuna.create_study(study_name=name, storage=open_storage(url, heartbeat=False), direction="maximize")

    def creator_finishes() -> None:  # the other machine records space, recipe and baselines a bit later
        time.sleep(1.0)
        _record_setup(bare, space, recipe)

    thread = threading.Thread(target=creator_finishes)
    thread.start()
    study, created = open_study(open_storage(url, heartbeat=False), name, space, recipe, seed=0)
    thread.join()
    assert not created and study.user_attrs["resattn.ready"] is True


@pytest.mark.slow
def test_a_study_not_made_by_resattn_is_refused(setup, monkeypatch: pytest.MonkeyPatch) -> None:
    import resattn.study.setup as search
    from resattn.errors import StorageError

    space, recipe, url, name = setup
    monkeypatch.setattr(search, "SETUP_WAIT_SECONDS", 0.5)
    optuna.create_study(study_name=name, storage=open_storage(url, heartbeat=False))
    with pytest.raises(StorageError, match="not created by resattn"):
        open_study(open_storage(url, heartbeat=False), name, space, recipe, seed=0)


@pytest.mark.slow
def test_two_processes_started_together_share_one_new_study(setup, cifar_npz: Path) -> None:
    """Two 'machines' run the same command at the same moment on a study that does not exist yet."""
    import os
    import subprocess
    import sys

    _, _, url, name = setup
    cmd = [sys.executable, "-c", "from resattn.cli.main import search_main; search_main()", "--recipe", "quick",
           "--dataset", f"npz:{cifar_npz}", "--trials", "6", "--storage", url, "--study", name,
           "--set", "train.epochs=1", "--set", "data.train_images=128", "--set", "train.batch_size=64",
           "--set", "search.pruner=none", "--device", "cpu"]
    env = dict(os.environ, CI="1")
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    study = optuna.load_study(study_name=name, storage=open_storage(url, heartbeat=False))
    trials = study.get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    # The budget lock (an advisory lock on PostgreSQL, a file lock beside SQLite / journal files) makes
    # the budget exact: 6 trials finish, duplicates not counted.
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                and t.user_attrs.get("duplicate_of") is None]
    assert len(finished) == 6
    # Each process draws its own sampler seed stream: the same command started twice with the same seed
    # proposes different architectures (a shared seed made both propose the same, float γ included).
    sampled = [tuple(sorted(t.params.items())) for t in trials if not t.user_attrs.get("design")]
    assert len(sampled) == len(set(sampled)), sampled
    assert study.user_attrs["resattn.processes"] == 2
    assert {t.user_attrs["worker_pid"] for t in finished} <= {p.pid for p in procs}


# ------------------------------------------------------------------ locks, seeds, dead processes


def test_each_storage_has_its_budget_lock(storage_url: str) -> None:
    from resattn.study.loop import _FileLock, _PgAdvisoryLock, budget_lock

    study = optuna.create_study(study_name=f"l-{uuid.uuid4().hex[:8]}", storage=open_storage(storage_url))
    lock = budget_lock(study)
    if storage_url.startswith("postgresql"):
        assert isinstance(lock, _PgAdvisoryLock)
        import sqlalchemy

        engine = sqlalchemy.create_engine(storage_url)
        try:
            with lock, engine.connect() as other:  # another machine cannot take it while it is held
                held = other.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(:k)"), {"k": lock.key}).scalar()
                assert held is False
            with engine.connect() as other:
                assert other.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(:k)"), {"k": lock.key}).scalar()
                other.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": lock.key})
        finally:
            engine.dispose()
    else:
        assert isinstance(lock, _FileLock) and lock.path.endswith(".budget-lock")
        with lock:
            assert Path(lock.path).exists()


def test_process_seed_streams() -> None:
    from resattn.study.loop import claim_process_indices, process_seed

    assert process_seed(7, 0) == 7  # the first process of a study samples as before
    seeds = [process_seed(7, i) for i in range(1, 50)]
    assert len(set(seeds)) == 49 and all(0 <= s < 2**32 for s in seeds)
    assert seeds == [process_seed(7, i) for i in range(1, 50)]  # reproducible
    study = optuna.create_study()
    assert [claim_process_indices(study), claim_process_indices(study, 3), claim_process_indices(study)] == [0, 1, 4]


@pytest.mark.parametrize("beat", [True, False], ids=["after-a-heartbeat", "before-its-first-heartbeat"])
def test_a_trial_whose_process_died_fails_with_a_reason_and_the_wait_says_so(
    setup, monkeypatch: pytest.MonkeyPatch, beat: bool
) -> None:
    space, recipe, url, name = setup
    if "://" not in url:
        pytest.skip("a journal file has no heartbeat")
    monkeypatch.setenv("RESATTN_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("RESATTN_GRACE_PERIOD", "2")
    run_search(space, recipe, trials=1, storage=url, study_name=name, device="cpu")
    storage = open_storage(url)
    study = optuna.load_study(study_name=name, storage=storage)
    dead = study.ask()  # "another machine" starts a trial, beats once (or not even once), and dies
    if beat:
        storage.record_heartbeat(dead._trial_id)
    notes: list[str] = []

    class Recorder(NullReporter):
        def notice(self, text: str) -> None:
            notes.append(text)

    result = run_search(space, recipe, trials=2, storage=url, study_name=name, device="cpu", reporter=Recorder())
    # The dead trial was the seed-pattern2 baseline: its retry runs even past the budget of 2.
    assert result.finished == 3 and not result.error and result.missing_baselines == ()
    frozen = next(t for t in study.get_trials() if t.number == dead.number)
    assert frozen.user_attrs["design"] == "seed-pattern2"
    assert frozen.state == TrialState.FAIL
    assert frozen.user_attrs["fail_reason"].startswith("no heartbeat for 2 s")
    assert any(n.startswith("waiting: the rest of the budget (1 trial) is running in other processes") for n in notes)
    assert any(n.startswith(f"trial {dead.number} failed: no heartbeat for 2 s") for n in notes), notes


def test_in_memory_and_malformed_urls_are_refused() -> None:
    for url, needle in (("sqlite:///:memory:", "in-memory"), ("sqlite://", "in-memory"),
                        ("sqlite:///file::memory:?cache=shared", "in-memory"),
                        ("sqlite:/studies/x.db", "malformed storage URL"),
                        ("postgresql:/db", "malformed storage URL")):
        with pytest.raises(StorageError, match=needle):
            open_storage(url)
