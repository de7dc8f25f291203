"""Claims with leases beside MLflow's store, so concurrent runs of one sweep never fit the same thing twice.

A claim is a row ``(key, part)`` of the table ``hte_bench_claims`` — e.g. (config hash, seed), (config hash,
"parent"), (sweep run id, "sweep") — taken atomically through the database's unique key: an INSERT, or an
UPDATE whose WHERE accepts only an expired lease. Expiry times come from the database's own clock, so
holders on machines with skewed clocks agree. A daemon thread renews this process's claims every lease/3;
a holder that is SIGKILLed or loses its machine stops renewing, and a later run takes its claims over.
"""
from __future__ import annotations

import atexit
import hashlib
import importlib
import logging
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple, Optional
from urllib.parse import urlparse

from hte_bench.errors import ConfigError
from hte_bench.tracking.store import sqlite_path

log = logging.getLogger(__name__)

TABLE = "hte_bench_claims"
COORDINATION_DB = "coordination.db"
POLL_SECONDS = 0.5
# Seconds since the epoch on the database's clock, per dialect.
_NOW = {"sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
        "postgresql": "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)",
        "mysql": "UNIX_TIMESTAMP(NOW(6))"}
_OFF = ("off", "none", "false")


class Holding(NamedTuple):
    """Who holds a claim and until when (seconds since the epoch, database clock), with the database's now."""

    holder: str
    expires_at: float
    now: float

    def until(self) -> str:
        return time.strftime("%H:%M:%S", time.localtime(self.expires_at))


def coordination_url(tracking_uri: str, configured: Optional[str]) -> Optional[str]:
    """Where claims live: the configured URL, a SQLite file beside a SQLite store, the store's own database;
    None when switched off, or for a tracking server without ``tracking.coordination_uri`` (with a warning)."""
    if configured is not None and str(configured).strip().lower() in _OFF:
        return None
    if configured:
        return str(configured)
    scheme = urlparse(tracking_uri).scheme.split("+")[0]
    if scheme == "sqlite":
        path = sqlite_path(tracking_uri)
        if path is None:
            return None  # an in-memory store is private to one process
        return f"sqlite:///{Path(path).resolve().parent / COORDINATION_DB}"
    if scheme in _NOW:
        return tracking_uri
    if scheme not in ("http", "https", "databricks", "mssql"):
        return None  # not a store anyone shares (file://), or not a store at all: the tracker says so
    # A server hides its database from clients (and claims have no SQL Server dialect): without a claims
    # database runs go on uncoordinated, said once, rather than refusing every existing command.
    if tracking_uri not in _WARNED:
        _WARNED.add(tracking_uri)
        parts = urlparse(tracking_uri)
        shown = parts._replace(netloc=f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port
                                                                                 else "")).geturl() \
            if parts.password else tracking_uri  # never a password in the log
        log.warning("tracking.coordination_uri is not set: runs against %s are not coordinated, so two runs of "
                    "the same sweep at once may fit the same seeds twice; set tracking.coordination_uri="
                    "sqlite:///%s (runs on this machine) or a PostgreSQL/MySQL database all of them reach",
                    shown, Path.cwd() / "mlruns" / COORDINATION_DB)
    return None


_WARNED: set[str] = set()


class Leases:
    """The claims table of one database, as seen by this process (one holder id, one heartbeat thread)."""

    _open: dict[str, "Leases"] = {}

    def __init__(self, url: str, lease_seconds: float):
        from sqlalchemy import create_engine, event, text

        self.url, self.lease = url, float(lease_seconds)
        self.holder = f"{socket.gethostname()}:pid {os.getpid()}:{uuid.uuid4().hex[:4]}"
        sqlite = url.startswith("sqlite")
        dialect = urlparse(url).scheme.split("+")[0]
        if dialect not in _NOW:
            raise ConfigError(f"tracking.coordination_uri={url!r}: claims need sqlite://, postgresql:// or "
                              f"mysql:// (a SQLAlchemy URL)")
        self._now = _NOW[dialect]
        self._file = sqlite_path(url) if sqlite else None
        # Whether this process made the SQLite file: a refused first attempt removes it again (discard_unused).
        self.created_file = self._file is not None and not self._file.exists()
        if self._file is not None:
            self._file.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine = create_engine(url, **({"connect_args": {"timeout": 30}} if sqlite else {}))
        except Exception as err:  # a missing driver, a malformed URL
            raise ConfigError(f"tracking.coordination_uri={url!r} cannot be used: {err}")
        if sqlite:
            @event.listens_for(self.engine, "connect")
            def _wal(dbapi_connection, _record):  # readers never block the writer; waits instead of failing
                dbapi_connection.execute("PRAGMA busy_timeout=30000")
                dbapi_connection.execute("PRAGMA journal_mode=WAL")
                # No fsync per claim: a power cut loses at most the last claims, whose holders died with it.
                dbapi_connection.execute("PRAGMA synchronous=NORMAL")
        self._text = text
        try:
            self._exec(f"CREATE TABLE IF NOT EXISTS {TABLE} (claim_key VARCHAR(100) NOT NULL, "
                       "claim_part VARCHAR(40) NOT NULL, holder VARCHAR(200) NOT NULL, "
                       "expires_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (claim_key, claim_part))")
        except Exception as err:
            if not self._table_exists():  # two processes creating it at once: one of them wins
                raise ConfigError(f"tracking.coordination_uri={url!r} cannot be used: "
                                  f"{' '.join(str(err).split())[:300]}")
        self._beat: Optional[threading.Thread] = None
        self.discarded = False
        atexit.register(self.release_all)

    def discard_if_unused(self) -> bool:
        """Remove the SQLite file this process created if nobody holds a claim in it; True if removed."""
        if not self.created_file or self._exec(f"DELETE FROM {TABLE} WHERE holder = :h", h=self.holder) < 0:
            return False
        with self.engine.begin() as con:
            if con.execute(self._text(f"SELECT COUNT(*) FROM {TABLE}")).scalar():
                return False
        self.discarded = True  # the heartbeat and the exit hook must not open (and so recreate) it
        self.engine.dispose()
        type(self)._open.pop(self.url, None)
        # SQLite removes -wal and -shm when the last connection to a WAL database closes: if they are still
        # there, another process (a command started at the same moment) has the file open and is using it, so
        # it stays (deleting it under that process would split the claims between two files).
        if any(Path(f"{self._file}{suffix}").exists() for suffix in ("-wal", "-shm")):
            return False
        self._file.unlink(missing_ok=True)
        return True

    @classmethod
    def get(cls, url: str, lease_seconds: float) -> "Leases":
        """This process's handle on the claims in ``url`` (one per database, reused across jobs)."""
        leases = cls._open.get(url)
        if leases is None:
            leases = cls._open[url] = cls(url, lease_seconds)
        leases.lease = float(lease_seconds)
        return leases

    def _exec(self, sql: str, **params) -> int:
        with self.engine.begin() as con:
            return con.execute(self._text(sql.replace("{now}", self._now)), params).rowcount

    def _table_exists(self) -> bool:
        from sqlalchemy import inspect

        return inspect(self.engine).has_table(TABLE)

    def take(self, key: str, part: str) -> tuple[bool, Optional[Holding]]:
        """Claim (key, part) if it is free, expired or ours: (True, previous holding if taken over), else
        (False, the holder's holding)."""
        from sqlalchemy.exc import IntegrityError

        for _ in range(3):  # the row may vanish between a failed INSERT and the UPDATE (holder released)
            try:
                self._exec(f"INSERT INTO {TABLE} VALUES (:k, :p, :h, {{now}} + :lease)", k=key, p=part,
                           h=self.holder, lease=self.lease)
                self._start_heartbeat()
                return True, None
            except IntegrityError:
                pass
            before = self.peek(key, part)
            if self._exec(f"UPDATE {TABLE} SET holder = :h, expires_at = {{now}} + :lease WHERE claim_key = :k "
                          "AND claim_part = :p AND (holder = :h OR expires_at < {now})", k=key, p=part,
                          h=self.holder, lease=self.lease) == 1:
                self._start_heartbeat()
                return True, before if before and before.holder != self.holder else None
            now = self.peek(key, part)
            if now is not None:
                return False, now
        return False, None

    @contextmanager
    def hold(self, key: str, part: str):
        """Hold (key, part) for a block, waiting while another process holds it."""
        while not self.take(key, part)[0]:
            time.sleep(POLL_SECONDS / 2)
        try:
            yield
        finally:
            self.release(key, part)

    def peek(self, key: str, part: str) -> Optional[Holding]:
        """The current holding of (key, part), or None."""
        return self.holdings(key).get(part)

    def holdings(self, key: str) -> dict[str, Holding]:
        """Every part of ``key`` that is claimed, with its holding (expired ones included)."""
        with self.engine.begin() as con:
            rows = con.execute(self._text(f"SELECT claim_part, holder, expires_at, {self._now} FROM {TABLE} "
                                          "WHERE claim_key = :k"), {"k": key}).all()
        return {str(r[0]): Holding(str(r[1]), float(r[2]), float(r[3])) for r in rows}

    def renew(self, key: str, part: str) -> bool:
        """Extend one claim if it is still ours (False: its lease expired and another run took it)."""
        return self._exec(f"UPDATE {TABLE} SET expires_at = {{now}} + :lease WHERE claim_key = :k AND "
                          "claim_part = :p AND holder = :h", k=key, p=part, h=self.holder, lease=self.lease) == 1

    def release(self, key: str, part: Optional[str] = None) -> None:
        """Give up one claim (or every part of ``key``) held by this process."""
        extra = "" if part is None else " AND claim_part = :p"
        self._exec(f"DELETE FROM {TABLE} WHERE claim_key = :k AND holder = :h{extra}", k=key, p=part,
                   h=self.holder)

    def drop_expired(self, key: str, part: str) -> None:
        """Delete a claim whose lease has expired (its holder is gone)."""
        self._exec(f"DELETE FROM {TABLE} WHERE claim_key = :k AND claim_part = :p AND expires_at < {{now}}",
                   k=key, p=part)

    def release_all(self) -> None:
        """Give up every claim of this process and close its connections (at exit: others need not wait for
        the leases to expire, and SQLite folds its -wal file back into the database when the last one closes)."""
        if self.discarded:
            return
        try:
            self._exec(f"DELETE FROM {TABLE} WHERE holder = :h", h=self.holder)
        except Exception:  # the database may be what failed; the leases then simply expire
            log.debug("could not release claims of %s", self.holder, exc_info=True)
        self.discarded = True  # the heartbeat must not open a connection again
        self.engine.dispose()

    def _start_heartbeat(self) -> None:
        if self._beat is None or not self._beat.is_alive():
            self._beat = threading.Thread(target=self._renew_forever, name="hte-bench-leases", daemon=True)
            self._beat.start()

    def _renew_forever(self) -> None:
        """The heartbeat thread: extend this holder's leases every third of a lease until discarded."""
        while not self.discarded:
            time.sleep(self.lease / 3)
            if self.discarded:
                return
            try:
                self._exec(f"UPDATE {TABLE} SET expires_at = {{now}} + :lease WHERE holder = :h",
                           h=self.holder, lease=self.lease)
            except Exception as err:  # a busy or unreachable database: try again next beat
                log.warning("claims: could not renew leases (%s); retrying in %.0f s",
                            " ".join(str(err).split())[:200], self.lease / 3)


def coordination(cfg, tracking_uri: str) -> Optional[tuple[str, float]]:
    """(claims database URL, lease seconds) of a job's config, checked without touching any database;
    None when claims are off (``tracking.coordination_uri``, ``claims.lease_seconds``)."""
    lease = cfg.get("claims", {}).get("lease_seconds", 60)
    if isinstance(lease, bool) or not isinstance(lease, (int, float)) or lease <= 0:
        raise ConfigError(f"claims.lease_seconds={lease!r} is not allowed; give a number of seconds > 0, e.g. 60")
    url = coordination_url(tracking_uri, cfg.tracking.get("coordination_uri"))
    return None if url is None else (url, float(lease))


def discard_unused() -> None:
    """After a refused attempt: remove claims databases this process created and nobody uses (no leftovers)."""
    for leases in list(Leases._open.values()):
        try:
            leases.discard_if_unused()
        except Exception:  # best effort: a leftover empty claims file is harmless
            pass


CLAIMS_TAG = "hte_bench.claims_db"


def claims_tag(leases: Optional["Leases"]) -> str:
    """Which claims database a sweep run's lease lives in, as a run tag: a hash of its URL (never the URL: it
    may hold a password), or ``none`` when claims are off."""
    if leases is None:
        return "none"
    # One database, one tag: a SQLite file by its resolved path, a server without who logs in.
    parts = urlparse(leases.url)
    path = sqlite_path(leases.url)
    where = f"sqlite:///{Path(path).resolve()}" if path is not None else \
        f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}:{parts.port or ''}{parts.path}"
    return hashlib.sha1(where.encode()).hexdigest()[:12]


def open_leases(where: Optional[tuple[str, float]]) -> Optional[Leases]:
    """This process's handle on the claims database ``coordination()`` named (None when off)."""
    return None if where is None else Leases.get(*where)


@contextmanager
def creating_store(where: Optional[tuple[str, float]], tracking_uri: str):
    """One process at a time reaches a SQLite store, so two runs started at once on a new store do not race
    in MLflow's migrations (the second waits, then finds the store made)."""
    leases = None
    if tracking_uri.startswith("sqlite:///"):
        try:
            leases = open_leases(where)
        except (ConfigError, OSError):  # the store's folder is unusable: MLflow's check says so in its words
            leases = None
    if leases is None:
        yield
    else:
        # Importing MLflow's store takes seconds and needs no turn: only opening the store (~0.5 s) does, so
        # processes started together (a joblib launcher's jobs) import at once instead of one after another.
        importlib.import_module("mlflow.store.tracking.sqlalchemy_store")
        with leases.hold("store", "create"):
            yield
