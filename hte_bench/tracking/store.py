"""Where runs go: the tracking URI and its checks, retries on a locked SQLite store, what code made a run."""
from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import subprocess
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Optional
from urllib.parse import urlparse

from hte_bench.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_DIR = "mlruns"
DB_NAME = "mlflow.db"
DEFAULT_TIMEOUT = 10.0  # seconds to wait for a tracking server (tracking.timeout)
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the hte_bench package
VALUE_MAX = 6000  # characters kept of a param or tag value (MLflow's param limit)
_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks", "file")
_SQLITE = re.compile(r"^sqlite(\+\w+)?://(?P<rest>.*)$")
# Packages whose version changes fitted numbers: resume joins only a parent fitted with the same ones.
RESUME_PACKAGES = ("econml", "scikit-learn", "statsmodels", "numpy")
CODE_HASH = "code_hash"  # tag: source_hash() of the code that fitted the run, what resume matches on
_PROVENANCE_PACKAGES = ("hte-bench", *RESUME_PACKAGES, "mlflow", "pandas", "hydra-core")
# Servers found dead in this process: a sweep's in-process jobs do not wait for them again.
_UNREACHABLE: dict[str, str] = {}


def default_uri(root: str | os.PathLike = DEFAULT_DIR) -> str:
    """SQLite database under ``mlruns/`` of the working directory (MLflow 3 refuses the bare file store)."""
    return f"sqlite:///{Path(root).resolve() / DB_NAME}"


def resolve_uri(uri: Optional[str]) -> str:
    """Tracking URI: the config's, else ``MLFLOW_TRACKING_URI``, else the local SQLite default."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri()


def sqlite_path(uri: Optional[str]) -> Optional[Path]:
    """The database file of a ``sqlite:///file`` URI, as written (relative or absolute); None for other
    URIs and in-memory databases."""
    match = _SQLITE.match(uri or "")
    if not match or not match["rest"].startswith("/"):
        return None
    path = match["rest"][1:].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def timeout_of(tracking: Any) -> float:
    """``tracking.timeout`` in seconds (default 10); ConfigError unless it is a positive number."""
    value = tracking.get("timeout")
    if value is None:
        return DEFAULT_TIMEOUT
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"tracking.timeout={value!r} is not allowed; tracking.timeout must be seconds > 0, e.g. 10")
    return float(value)


def check_uri(uri: str, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Reject, in one line and before anything is written, a URI MLflow cannot use: unknown scheme,
    unusable SQLite path, or a tracking server that does not answer within ``timeout`` seconds."""
    scheme = urlparse(uri).scheme.split("+")[0]
    if scheme not in _SCHEMES:
        raise ConfigError(f"tracking.uri={uri!r} has scheme {scheme!r}; allowed: "
                          f"{', '.join(s + '://' for s in _SCHEMES)}")
    path = sqlite_path(uri)
    if path is not None:
        _prepare_sqlite(uri, path)
        _write_ahead(path)
    elif scheme in ("http", "https"):
        _probe_server(uri, timeout)


def _prepare_sqlite(uri: str, path: Path) -> None:
    """Fail in one line where SQLite cannot open or create the file; announce a store about to be created."""
    if path.is_dir():
        raise ConfigError(f"tracking.uri={uri!r}: {path} is a folder; name a database file in it, "
                          f"e.g. tracking.uri=sqlite:///{path / DB_NAME}")
    try:
        if path.exists():
            # Asked through SQLite, never by opening the file ourselves: closing any other descriptor of the
            # file drops every SQLite lock this process holds on it, and in WAL mode another process may
            # then checkpoint and delete the -wal file under our open connections (a malformed database).
            if path.stat().st_size and not _is_sqlite(path):
                raise ConfigError(f"tracking.uri={uri!r}: {path} exists and is not a SQLite database; "
                                  "name another file")
            return
        existing = next(p for p in path.absolute().parents if p.exists())
        if not existing.is_dir():
            raise ConfigError(f"tracking.uri={uri!r}: {existing} is a file, not a folder; name a database file "
                              f"in a folder, e.g. tracking.uri=sqlite:///{DEFAULT_DIR}/{DB_NAME}")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError(f"tracking.uri={uri!r}: no permission to create {path} in {existing}; "
                              "name a file in a writable folder")
        log.info("tracking: creating a new MLflow store at %s", path.absolute())
        path.parent.mkdir(parents=True, exist_ok=True)
        _create_sqlite(path)
    except OSError as err:
        raise ConfigError(f"tracking.uri={uri!r}: cannot use {path}: {err}") from None


def _create_sqlite(path: Path) -> None:
    """Run MLflow's migrations (seconds) on a file beside ``path`` and link it into place when they are done.

    Created in place, a store whose first run was stopped during its migrations (Ctrl-C, kill) was left half
    made, and every later run failed on it ("table ... already exists") until the user deleted it. Linking
    never replaces a store another process made meanwhile."""
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables  # what MLflow's SqlAlchemyStore runs on a new database

    tmp = path.with_name(f".{path.name}.{os.getpid()}.creating")
    try:
        engine = sqlalchemy.create_engine(f"sqlite:///{tmp}")
        try:
            _initialize_tables(engine)
        finally:
            engine.dispose()  # no connection of this process may stay on the file (see _prepare_sqlite)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links: a rename, within creating_store's turn
            if not path.exists():
                os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _is_sqlite(path: Path) -> bool:
    """Whether SQLite reads the file as a database (read-only connection, nothing created)."""
    import sqlite3

    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            con.execute("PRAGMA schema_version").fetchone()
        finally:
            con.close()
        return True
    except sqlite3.DatabaseError as err:
        return "not a database" not in str(err)


def _write_ahead(path: Path) -> None:
    """Put a SQLite store in WAL mode, and this process's connections to WAL databases at synchronous=NORMAL.

    MLflow opens SQLite in rollback-journal mode with a full sync: several fsyncs per commit, five or six
    commits per seed run (measured 92 ms a run here; WAL 51 ms; WAL + NORMAL 31 ms). WAL also lets readers
    (the UI, a resuming job) work beside the writer. NORMAL in WAL mode never corrupts the database; a power
    cut may lose the last commits, which a rerun refits (resume). The mode is kept in the file, so any
    later process uses it; the file then has companions mlflow.db-wal and -shm until the last one closes.
    """
    import sqlite3

    _normal_sync_for_wal()
    try:
        con = sqlite3.connect(path, timeout=30)
        try:
            con.execute("PRAGMA journal_mode=WAL")
        finally:
            con.close()
    except sqlite3.Error as err:  # another process holds it in a way that forbids the switch: next time
        log.debug("tracking: %s stays in its journal mode (%s)", path, err)


@lru_cache(maxsize=1)
def _normal_sync_for_wal() -> None:
    """Once per process: every new SQLite connection (SQLAlchemy's, so MLflow's too) to a database in WAL mode
    syncs at checkpoints instead of at every commit."""
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _sync(dbapi_connection, _record):
        if isinstance(dbapi_connection, sqlite3.Connection):
            mode = dbapi_connection.execute("PRAGMA journal_mode").fetchone()
            if mode and str(mode[0]).lower() == "wal":
                dbapi_connection.execute("PRAGMA synchronous=NORMAL")


def _probe_server(uri: str, timeout: float) -> None:
    """Fail within ``timeout`` s when nothing answers at a server URI (MLflow's client would retry for minutes)."""
    import ssl
    import urllib.error
    import urllib.request

    if uri not in _UNREACHABLE:
        try:
            urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout).close()
            return
        except urllib.error.HTTPError:
            return  # something answers (a proxy may guard /health): MLflow's first call judges the rest
        except (OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            if isinstance(reason, ssl.SSLError):
                return  # TLS settings are MLflow's business (MLFLOW_TRACKING_INSECURE_TLS, ...)
            _UNREACHABLE[uri] = ("connection refused" if isinstance(reason, ConnectionRefusedError)
                                 else "timed out" if isinstance(reason, TimeoutError)
                                 else " ".join(str(reason).split()))
    parts = urlparse(uri)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    raise ConfigError(f"tracking.uri={uri!r}: no MLflow server answers there within {timeout:g} s "
                      f"({_UNREACHABLE[uri]}); start one with 'mlflow server --host {parts.hostname} "
                      f"--port {port}' or fix tracking.uri (tracking.timeout sets the wait)")


@contextmanager
def store_errors(uri: str, timeout: float) -> Iterator[None]:
    """Turn any failure of a first call to the store into one ConfigError line; a server that answered
    the probe gets ``timeout`` s and no retries for it."""
    bounded = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, round(timeout)))}
    saved = {k: os.environ.get(k) for k in bounded}
    os.environ.update({k: v for k, v in bounded.items() if saved[k] is None})  # the user's settings win
    try:
        yield
    except ConfigError:
        raise
    except Exception as err:  # MLflow raises several types for unusable stores
        raise ConfigError(f"tracking.uri={uri!r} cannot be used: {' '.join(str(err).split())[:300]}") from None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)


def artifact_root(uri: str) -> Optional[str]:
    """Artifacts beside a local SQLite store, as an absolute URI so the UI finds them from any folder."""
    path = sqlite_path(uri)
    return (path.resolve().parent / "artifacts").as_uri() if path is not None else None


def is_locked(err: BaseException) -> bool:
    """Whether SQLite refused a write because another process holds the database."""
    text = str(err).lower()
    return "database is locked" in text or "database table is locked" in text


def is_duplicate_dataset(name: str, err: BaseException) -> bool:
    """Whether ``log_inputs`` lost a race to create the same dataset row: two writers logging one data draw
    (a sweep's configurations share each seed's data) both found no row, and the second insert broke the
    unique key (SQLite: "UNIQUE constraint failed: datasets…", PostgreSQL: "duplicate key value…")."""
    text = str(err).lower()
    return name == "log_inputs" and ("unique constraint failed: datasets" in text or
                                     ("duplicate key value" in text and "datasets" in text))


class Retrying:
    """MlflowClient proxy that retries calls SQLite rejected with "database is locked" (parallel writers),
    and a ``log_inputs`` that lost the race to create a dataset row another writer created meanwhile.

    A rejected write is rolled back whole, so retrying cannot duplicate it (a retried ``log_inputs`` finds the
    other writer's dataset row and links it); backoff is jittered so that processes which collided once do not
    collide again.
    """

    def __init__(self, client, attempts: int = 12):
        self._client = client
        self._attempts = attempts

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            delay = 0.05
            for attempt in range(self._attempts):
                try:
                    return attr(*args, **kwargs)
                except Exception as err:
                    if not (is_locked(err) or is_duplicate_dataset(name, err)) or attempt == self._attempts - 1:
                        raise
                    log.debug("%s: %s, retry %d", name, str(err)[:80], attempt + 1)
                    time.sleep(delay * (1 + random.random()))
                    delay = min(delay * 2, 2.0)

        return call


# ---- what code made a run ----

def package_version(pkg: str) -> Optional[str]:
    """Installed version of a distribution, or None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


def _git(*args: str) -> Optional[str]:
    try:
        out = subprocess.run(["git", *args], cwd=PACKAGE_DIR, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@lru_cache(maxsize=1)
def git_commit() -> Optional[str]:
    """HEAD of the git checkout holding the hte_bench sources; None for an installed copy."""
    # A copy installed inside some other repository (a venv in a project) must not report its commit.
    if not _git("ls-files", "--", "__init__.py"):
        return None
    return _git("rev-parse", "HEAD") or None


@lru_cache(maxsize=1)
def source_hash() -> str:
    """Short hash of the hte_bench package's .py files: tells apart copies that share a version or commit."""
    digest = hashlib.sha256()
    for file in sorted(PACKAGE_DIR.rglob("*.py")):
        digest.update(file.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:10]


@lru_cache(maxsize=1)
def code_version() -> str:
    """The hte-bench code that fits: ``<sha12>`` for a clean git checkout, ``<sha12>+dirty.<source hash>``
    when hte_bench/ has uncommitted changes, else ``<package version>+src.<source hash>``."""
    commit = git_commit()
    if commit:
        # Only hte_bench/ counts: conf/ changes reach the config hash, tests and docs fit nothing.
        clean = _git("status", "--porcelain", "--", ".") == ""
        return commit[:12] if clean else f"{commit[:12]}+dirty.{source_hash()}"
    return f"{package_version('hte-bench') or 'unknown'}+src.{source_hash()}"


def provenance() -> dict[str, str]:
    """Tags saying what made a run: code version, git commit, versions of the packages that shape results."""
    tags = {f"version.{pkg}": v for pkg in _PROVENANCE_PACKAGES if (v := package_version(pkg))}
    tags["code_version"] = code_version()
    tags[CODE_HASH] = source_hash()
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def resume_versions() -> dict[str, str]:
    """The tags a configuration run must share with this process for resume to add seeds to it: the hash of
    the hte_bench sources (not the git commit: a commit of docs or tests changes no number) and the versions
    of the libraries that fit."""
    tags = provenance()
    return {key: tags.get(key, "") for key in (CODE_HASH, *(f"version.{p}" for p in RESUME_PACKAGES))}


def cache_location(cfg) -> Optional[str]:
    """``cache/`` beside a local SQLite store (``mlruns/cache/`` by default), else ``mlruns/cache`` in the
    working directory; None when ``tracking.cache`` is false."""
    tracking = cfg.get("tracking") or {}
    if not tracking.get("cache", True):
        return None
    db = sqlite_path(resolve_uri(tracking.get("uri")))
    return str((db.resolve().parent if db is not None else Path(DEFAULT_DIR).resolve()) / "cache")
