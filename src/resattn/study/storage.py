"""Study storages: open one (SQLite, PostgreSQL or any SQLAlchemy URL, or a journal file), open one
that must already exist, and load a study from it.

Every command goes through here: the search opens (and creates) its storage with
:func:`open_storage`; the commands that only read a study (``export``, ``train --study``,
``validate``, ``show``, ``report``, ``studies``) use :func:`open_existing_storage` /
:func:`load_study`, which never create an empty database for a mistyped path. Failures are one
readable :class:`~resattn.errors.StorageError` line.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage

from resattn.errors import StorageError

__all__ = [
    "GRACE_PERIOD",
    "HEARTBEAT_INTERVAL",
    "default_artifact_dir",
    "load_study",
    "open_existing_storage",
    "open_storage",
    "redact",
    "study_names",
]

log = logging.getLogger(__name__)

#: Heartbeat: a worker that stops beating for GRACE_PERIOD seconds has its trial failed (and retried once).
HEARTBEAT_INTERVAL = 10
GRACE_PERIOD = 30
#: Environment overrides of the two (seconds; tests use 1 and 3).
HEARTBEAT_INTERVAL_ENV = "RESATTN_HEARTBEAT_INTERVAL"
GRACE_PERIOD_ENV = "RESATTN_GRACE_PERIOD"


def open_storage(url: str, *, heartbeat: bool = True) -> BaseStorage:
    """Open the study storage named by ``url``.

    ``url`` is any SQLAlchemy URL (``sqlite:///studies/resattn.db``, ``postgresql+psycopg://…``)
    or the path of a journal file (``studies/resattn.journal``; Optuna's file journal, for
    shared file systems). SQLite parent folders are created. Heartbeats (RDB storages only)
    fail the trial of a crashed worker after :data:`GRACE_PERIOD` seconds and retry it once.
    Raises :class:`StorageError` with one readable line when the storage cannot be opened.
    """
    if not url or not isinstance(url, str):
        raise StorageError(f"storage must be an SQLAlchemy URL or a journal file path, got {url!r}")
    if "://" not in url:
        path = Path(url).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as err:
            raise StorageError(f"cannot open journal file {str(path)!r}: {err.strerror or err}") from None
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        db = url.split(":///", 1)[1] if ":///" in url else ""
        if db and db != ":memory:" and not db.startswith("file:"):
            try:
                Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise StorageError(
                    f"cannot open storage {url!r}: cannot create its folder ({err.strerror or err})"
                ) from None
        # Wait for a busy database instead of failing with "database is locked".
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        engine_kwargs["pool_pre_ping"] = True
    kwargs: dict[str, Any] = {}
    if heartbeat:
        warnings.filterwarnings("ignore", "RetryHeartbeatStaleTrialCallback", optuna.exceptions.ExperimentalWarning)
        kwargs = {
            "heartbeat_interval": int(os.environ.get(HEARTBEAT_INTERVAL_ENV) or HEARTBEAT_INTERVAL),
            "grace_period": int(os.environ.get(GRACE_PERIOD_ENV) or GRACE_PERIOD),
            "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=1),
        }
    try:
        rdb = _rdb_storage(url, engine_kwargs, kwargs)
        if url.startswith("sqlite"):
            _sqlite_wal(rdb)
        return rdb
    except ImportError as err:
        raise StorageError(f"cannot open storage {redact(url)}: missing database driver ({err})") from None
    except Exception as err:  # SQLAlchemy raises many kinds; all mean "cannot open"
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        raise StorageError(f"cannot open storage {redact(url)}: {reason}") from None


#: Error texts of two processes creating the same new database's schema at once (SQLite, PostgreSQL).
_SCHEMA_RACE = ("unique constraint failed", "already exists", "duplicate key value")


def _rdb_storage(url: str, engine_kwargs: dict[str, Any], kwargs: dict[str, Any]) -> RDBStorage:
    """``RDBStorage(url)``, retried while another process is creating the same new schema.

    Several machines started together on an empty database all try to create Optuna's tables and
    its ``alembic_version`` row; the losers fail with a unique-constraint or "already exists"
    error. The schema is complete a moment later, so the open is retried a few times.
    """
    attempts = 5
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
        except Exception as err:
            text = str(err).lower()
            if attempt == attempts - 1 or not any(marker in text for marker in _SCHEMA_RACE):
                raise
            log.debug("storage schema being created by another process; retrying (%s)", text.splitlines()[0])
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _sqlite_wal(storage: RDBStorage) -> None:
    """Write-ahead logging: readers no longer block the writer (several local workers on one file)."""
    import sqlalchemy

    try:
        with storage.engine.connect() as conn:
            conn.execute(sqlalchemy.text("PRAGMA journal_mode=WAL"))
    except Exception as err:  # an in-memory database, a read-only file: keep the default mode
        log.debug("cannot switch SQLite to WAL: %s", err)


def default_artifact_dir(url: str) -> Path:
    """Where a study's artifacts (the finalists' exported model files) go by default: beside a file
    database (``studies/resattn.db`` → ``studies/resattn-artifacts``), else ``studies/artifacts``."""
    path: str | None = None
    if "://" not in url:
        path = url
    elif url.startswith("sqlite") and ":///" in url:
        path = url.split(":///", 1)[1].split("?", 1)[0]
    if path and path != ":memory:" and not path.startswith("file:"):
        p = Path(path).expanduser()
        return p.with_name(f"{p.stem}-artifacts")
    return Path("studies") / "artifacts"


def redact(url: str) -> str:
    """The URL without its password."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


def open_existing_storage(url: str) -> BaseStorage:
    """Open a storage for reading: like :func:`open_storage` (no heartbeat), but an SQLite file or a
    journal file that does not exist is an error instead of a new empty database."""
    if isinstance(url, str) and url:
        path: str | None = None
        if "://" not in url:
            path = url
        elif url.startswith("sqlite") and ":///" in url:
            db = url.split(":///", 1)[1]
            if db and db != ":memory:" and not db.startswith("file:"):
                path = db.split("?", 1)[0]
        if path is not None and not Path(path).expanduser().is_file():
            raise StorageError(f"cannot open storage {redact(url)}: no such file {path!r}")
    return open_storage(url, heartbeat=False)


def study_names(storage: BaseStorage) -> list[str]:
    """The names of the studies in ``storage``, sorted."""
    try:
        return sorted(optuna.study.get_all_study_names(storage=storage))
    except Exception as err:  # SQLAlchemy / journal errors
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StorageError(f"cannot read the studies in the storage: {reason}") from None


def load_study(storage_url: str, study_name: str | None = None) -> optuna.Study:
    """Load a study of an existing storage; with no name, the storage's only study (else a
    :class:`StorageError` listing them)."""
    storage = open_existing_storage(storage_url)
    names = study_names(storage)
    where = redact(storage_url)
    listed = ", ".join(repr(n) for n in names) or "none"
    if study_name is None:
        if not names:
            raise StorageError(f"no study in {where}")
        if len(names) != 1:
            raise StorageError(f"{len(names)} studies in {where}; name one with --study: {listed}")
        study_name = names[0]
    if study_name not in names:
        raise StorageError(f"no study {study_name!r} in {where}; studies: {listed}")
    return optuna.load_study(study_name=study_name, storage=storage)
