from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import FAILED_TRIAL, run_quick_search

ROOT = Path(__file__).resolve().parents[1]
SHARED_NPZ = ROOT.parent / "shared" / "data" / "cifar10-6k.npz"


@pytest.fixture(scope="session")
def cifar_npz() -> Path:
    if not SHARED_NPZ.is_file():
        pytest.skip(f"real CIFAR-10 sample not found at {SHARED_NPZ}")
    return SHARED_NPZ


@pytest.fixture(autouse=True, scope="session")
def _no_shared_probe_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The precision probe's disk cache of the test session lives in its own temporary file."""
    os.environ["RESATTN_PROBE_CACHE"] = str(tmp_path_factory.mktemp("probe") / "execution-probe.json")


#: Every storage backend resattn supports; the storage-behaviour tests run over all of them (as Optuna's
#: own storage tests do), PostgreSQL where ``RESATTN_TEST_POSTGRES_URL`` names a server (``.ci/run`` does).
STORAGE_MODES = ("sqlite", "journal", "postgres")


@pytest.fixture(params=STORAGE_MODES)
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh storage of each backend: an SQLite file, a journal file, the test PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/study.db"
    if request.param == "journal":
        return str(tmp_path / "study.journal")
    return request.getfixturevalue("postgres_url")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("RESATTN_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("RESATTN_TEST_POSTGRES_URL is not set")
    return url


_SHARED: dict[str, Path] = {}


@pytest.fixture(scope="session")
def inspect_db(tmp_path_factory, cifar_npz) -> Path:
    """A real quick study: 8 finished trials (baselines, TPE, Hyperband pruning) and one failed trial.

    Session-scoped: one search for every test that uses it."""
    if _SHARED.get("db") is not None:  # the same search for every test module that imports this fixture
        return _SHARED["db"]
    db = tmp_path_factory.mktemp("inspect") / "study.db"
    old = os.environ.get("RESATTN_FAULT_NAN_TRIALS")
    os.environ["RESATTN_FAULT_NAN_TRIALS"] = str(FAILED_TRIAL)
    try:
        code, out, err = run_quick_search(db, cifar_npz, 8)
    finally:
        if old is None:
            os.environ.pop("RESATTN_FAULT_NAN_TRIALS", None)
        else:
            os.environ["RESATTN_FAULT_NAN_TRIALS"] = old
    assert code in (0, None), out + err
    _SHARED["db"] = db
    return db


