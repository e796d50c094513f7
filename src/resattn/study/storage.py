"""Study storages: open one (SQLite, PostgreSQL or any SQLAlchemy URL, or a journal file), open one
that must already exist, and load a study from it.

Every command goes through here: the search opens (and creates) its storage with
:func:`open_storage`; the commands that only read a study (``export``, ``train --study``, ``show``,
``report``, ``studies``, ``dashboard``) use :func:`open_existing_storage` / :func:`load_study`,
which never create an empty database for a mistyped path and, for SQLite, open the file read-only
(``mode=ro``, or ``immutable=1`` for a cleanly closed WAL database, so that reading a study in a
read-only folder works and creates no ``-wal``/``-shm`` files), and never create Optuna's tables in a
database that has none. Failures are one readable :class:`~resattn.errors.StorageError` line.
"""

from __future__ import annotations

import logging
import os
import re
import time
import urllib.parse
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage

from resattn.errors import ConfigError, StorageError

__all__ = [
    "GRACE_PERIOD",
    "HEARTBEAT_INTERVAL",
    "check_storage_url",
    "default_artifact_dir",
    "heartbeat_settings",
    "load_study",
    "open_existing_storage",
    "open_storage",
    "redact",
    "study_names",
    "writable_storage",
]

log = logging.getLogger(__name__)

#: Heartbeat: a worker that stops beating for GRACE_PERIOD seconds has its trial failed (and retried once).
HEARTBEAT_INTERVAL = 10
GRACE_PERIOD = 30
#: Environment overrides of the two (seconds; tests use 1 and 3).
HEARTBEAT_INTERVAL_ENV = "RESATTN_HEARTBEAT_INTERVAL"
GRACE_PERIOD_ENV = "RESATTN_GRACE_PERIOD"


def heartbeat_settings() -> tuple[int, int]:
    """``(interval, grace period)`` in seconds: the defaults or the environment overrides, checked
    (:class:`~resattn.errors.ConfigError` for a value that is not a positive whole number, or a grace
    period not longer than the interval)."""
    values = []
    for name, default in ((HEARTBEAT_INTERVAL_ENV, HEARTBEAT_INTERVAL), (GRACE_PERIOD_ENV, GRACE_PERIOD)):
        raw = os.environ.get(name, "").strip()
        if not raw:
            values.append(default)
            continue
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise ConfigError(f"must be a positive whole number of seconds, got {raw!r}", key=name)
        values.append(value)
    interval, grace = values
    if grace <= interval:
        raise ConfigError(f"must be longer than {HEARTBEAT_INTERVAL_ENV} ({interval} s), got {grace}",
                          key=GRACE_PERIOD_ENV)
    return interval, grace


#: ``scheme:`` at the start of a storage argument: a URL (when ``//`` follows) or a typo of one.
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_SQLITE_MAGIC = b"SQLite format 3\x00"


def check_storage_url(url: Any) -> str:
    """``url`` if it can name a storage that outlives this process; :class:`StorageError` otherwise.

    Refused: an empty value; ``scheme:`` without ``//`` (``sqlite:/studies/x.db``, which would
    otherwise be taken for a journal file of that odd name); an in-memory SQLite database
    (``sqlite://``, ``sqlite:///:memory:``, ``mode=memory``), whose trials vanish when the process
    ends and which worker processes cannot share.
    """
    if not url or not isinstance(url, str) or not url.strip():
        raise StorageError(f"storage must be an SQLAlchemy URL or a journal file path, got {url!r}")
    match = _SCHEME_RE.match(url)
    if match and "://" not in url:
        scheme = match.group(1)
        raise StorageError(
            f"malformed storage URL {url!r}: a URL needs '://' after {scheme + ':'!r} "
            f"(sqlite:///relative/path.db, sqlite:////absolute/path.db, postgresql+psycopg://user@host/db); "
            f"a journal file is a plain path (write ./{url} if that is what you mean)"
        )
    if url.lower().startswith("sqlite"):
        db = url.split("://", 1)[1] if "://" in url else ""
        db = db[1:] if db.startswith("/") else db
        path = db.split("?", 1)[0]
        if path in ("", ":memory:") or path.startswith("file::memory:") or "mode=memory" in db:
            raise StorageError(
                f"storage {url!r} is an in-memory SQLite database: it lives only as long as this process, so "
                "every trial would be lost at exit (and worker processes would each see an empty database of "
                "their own); give a file, e.g. sqlite:///studies/resattn.db"
            )
    return url


def open_storage(url: str, *, heartbeat: bool = True) -> BaseStorage:
    """Open the study storage named by ``url``.

    ``url`` is any SQLAlchemy URL (``sqlite:///studies/resattn.db``, ``postgresql+psycopg://…``)
    or the path of a journal file (``studies/resattn.journal``; Optuna's file journal, for
    shared file systems). SQLite parent folders are created. Heartbeats (RDB storages only)
    fail the trial of a crashed worker after :data:`GRACE_PERIOD` seconds and retry it once.
    Raises :class:`StorageError` with one readable line when the storage cannot be opened
    (:func:`check_storage_url` lists what is refused), and
    :class:`~resattn.errors.ConfigError` for a bad heartbeat setting in the environment.
    """
    check_storage_url(url)
    if "://" not in url:
        return _open_journal(url)
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        db = url.split(":///", 1)[1] if ":///" in url else ""
        if db and not db.startswith("file:"):
            try:
                Path(db.split("?", 1)[0]).expanduser().parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise StorageError(
                    f"cannot open storage {url!r}: cannot create its folder ({err.strerror or err})"
                ) from None
            _check_sqlite_file(Path(db.split("?", 1)[0]).expanduser(), url)
        # Wait for a busy database instead of failing with "database is locked".
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        engine_kwargs["pool_pre_ping"] = True
    kwargs: dict[str, Any] = {}
    if heartbeat:
        interval, grace = heartbeat_settings()
        warnings.filterwarnings("ignore", "RetryHeartbeatStaleTrialCallback", optuna.exceptions.ExperimentalWarning)
        kwargs = {
            "heartbeat_interval": interval,
            "grace_period": grace,
            "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=1),
        }
    rdb = _open_rdb(url, engine_kwargs, kwargs)
    if url.startswith("sqlite"):
        _sqlite_wal(rdb)
    return rdb


def _open_rdb(url: str, engine_kwargs: dict[str, Any], kwargs: dict[str, Any], shown: str | None = None) -> RDBStorage:
    """``RDBStorage`` with every failure as one :class:`StorageError` line."""
    try:
        return _rdb_storage(url, engine_kwargs, kwargs)
    except ImportError as err:
        raise StorageError(f"cannot open storage {redact(shown or url)}: missing database driver ({err})") from None
    except Exception as err:  # SQLAlchemy raises many kinds; all mean "cannot open"
        raise StorageError(f"cannot open storage {redact(shown or url)}: {_reason(err)}") from None


def _reason(err: BaseException) -> str:
    """The first line of a storage error, with the two cases users meet worded plainly."""
    while getattr(err, "orig", None) is None and err.__cause__ is not None:
        err = err.__cause__  # Optuna's StorageInternalError wraps SQLAlchemy's error, which wraps the driver's
    text = str(getattr(err, "orig", None) or err).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    if "no such table" in first or ("relation" in first and "does not exist" in first):
        return f"not an Optuna study database ({first})"
    if "file is not a database" in first or "malformed" in first:
        return f"the file is damaged or not an SQLite database ({first})"
    return first


def _check_sqlite_file(path: Path, url: str) -> None:
    """A file that exists but is not an SQLite database (a journal file named in an sqlite URL)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError:
        return  # missing (created on open) or unreadable (the open reports it)
    if head and head != _SQLITE_MAGIC:
        raise StorageError(f"cannot open storage {redact(url)}: {str(path)!r} is not an SQLite database"
                           + (" (it looks like a journal file: give its path without sqlite:///)"
                              if head.lstrip().startswith(b"{") else ""))


def _open_journal(url: str) -> JournalStorage:
    path = Path(url).expanduser()
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except FileNotFoundError:
        head = b""
    except OSError as err:
        raise StorageError(f"cannot open journal file {str(path)!r}: {err.strerror or err}") from None
    if head.startswith(_SQLITE_MAGIC):
        raise StorageError(f"{str(path)!r} is an SQLite database, not a journal file: give --storage sqlite:///{path}")
    if head and not head.lstrip().startswith(b"{"):
        raise StorageError(f"{str(path)!r} is not an Optuna journal file (it does not start with a JSON record); "
                           "a plain path names a journal file, an SQLite database is given as sqlite:///PATH")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    except OSError as err:
        raise StorageError(f"cannot open journal file {str(path)!r}: {err.strerror or err}") from None
    except Exception as err:  # the replay of a file that is not a journal: JSON, format or key errors
        raise StorageError(
            f"{str(path)!r} is not an Optuna journal file ({type(err).__name__}: {_reason(err)}); a plain path "
            "names a journal file, an SQLite database is given as sqlite:///PATH"
        ) from None


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


def open_existing_storage(url: str, *, writable: bool = False) -> BaseStorage:
    """Open a storage that must exist, for reading (no heartbeat).

    An SQLite file or a journal file that does not exist is an error instead of a new empty
    database; Optuna's tables are never created (a database without them is "not an Optuna study
    database"). Unless ``writable``, an SQLite file is opened read-only: nothing is written to it and
    no file is created beside it (see the module docstring).
    """
    check_storage_url(url)
    path: str | None = None
    if "://" not in url:
        path = url
    elif url.startswith("sqlite") and ":///" in url:
        db = url.split(":///", 1)[1]
        if db and not db.startswith("file:"):
            path = db.split("?", 1)[0]
    if path is not None and not Path(path).expanduser().is_file():
        raise StorageError(f"cannot open storage {redact(url)}: no such file {path!r}")
    if "://" not in url:
        return _open_journal(url)
    engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {
        "pool_pre_ping": True}
    kwargs = {"skip_table_creation": True}
    if path is None or writable:
        if path is not None:
            _check_sqlite_file(Path(path).expanduser(), url)
        return _open_rdb(url, engine_kwargs, kwargs)
    file = Path(path).expanduser().resolve()
    _check_sqlite_file(file, url)
    first = _readonly_url(file, immutable=_closed_wal(file))
    try:
        return _open_rdb(first, engine_kwargs, kwargs, shown=url)
    except StorageError as err:
        if "immutable=1" in first or "unable to open" not in str(err):
            raise
        # A WAL database with its -wal file in a folder this process cannot write (no -shm can be made).
        log.debug("read-only open of %s failed (%s); reading it as immutable", file, err)
        return _open_rdb(_readonly_url(file, immutable=True), engine_kwargs, kwargs, shown=url)


def writable_storage(url: str) -> bool:
    """Whether this process may write to the storage's files: it has the permission, and neither the
    file nor its folder is marked read-only (no write bit for anyone: an archive, which even root
    leaves alone). A server database: assumed so."""
    path: str | None = url if "://" not in url else None
    if url.startswith("sqlite") and ":///" in url:
        db = url.split(":///", 1)[1]
        path = db.split("?", 1)[0] if db and not db.startswith("file:") else None
    if path is None:
        return "://" in url and not url.startswith("sqlite")
    file = Path(path).expanduser()
    try:
        marked = all(os.stat(p).st_mode & 0o222 for p in (file, file.parent))
    except OSError:
        return False
    return marked and os.access(file, os.W_OK) and os.access(file.parent, os.W_OK | os.X_OK)


def _closed_wal(file: Path) -> bool:
    """A database in WAL mode without a ``-wal`` file: everything is in the file itself, and a
    ``mode=ro`` reader would create ``-wal`` and ``-shm`` files beside it, so it is read as immutable."""
    try:
        with file.open("rb") as fh:
            head = fh.read(20)
    except OSError:
        return False
    return len(head) == 20 and head[18] == 2 and head[19] == 2 and not Path(f"{file}-wal").exists()


def _readonly_url(file: Path, *, immutable: bool) -> str:
    query = "immutable=1" if immutable else "mode=ro"
    return f"sqlite:///file:{urllib.parse.quote(str(file))}?{query}&uri=true"


def study_names(storage: BaseStorage) -> list[str]:
    """The names of the studies in ``storage``, sorted."""
    try:
        return sorted(optuna.study.get_all_study_names(storage=storage))
    except Exception as err:  # SQLAlchemy / journal errors
        raise StorageError(f"cannot read the studies in the storage: {_reason(err)}") from None


def load_study(storage_url: str, study_name: str | None = None, *, writable: bool = False) -> optuna.Study:
    """Load a study of an existing storage (read-only unless ``writable``: see
    :func:`open_existing_storage`); with no name, the storage's only study (else a
    :class:`StorageError` listing them)."""
    storage = open_existing_storage(storage_url, writable=writable)
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
