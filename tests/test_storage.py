"""resattn.storage: every supported storage opens; a storage that cannot be opened is one clear error (exit 2);
the reading commands load a study without ever creating a database."""

from __future__ import annotations

import uuid
from pathlib import Path

import optuna
import pytest
from optuna.storages import RDBStorage
from optuna.storages.journal import JournalStorage

from resattn.errors import StorageError
from resattn.storage import load_study, open_storage


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


def test_journal_file_opens(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path / "sub" / "study.journal"))
    assert isinstance(storage, JournalStorage)
    _roundtrip(storage)


def test_postgres_opens(postgres_url: str) -> None:
    storage = open_storage(postgres_url)
    assert isinstance(storage, RDBStorage) and storage.heartbeat_interval
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
    from resattn.cli import search_main

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
