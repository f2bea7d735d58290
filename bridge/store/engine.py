"""Engines for the store: SQLite in WAL mode (the embedded default) or PostgreSQL via psycopg 3."""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import ConnectionPoolEntry

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the thread lock alone
    fcntl = None  # type: ignore[assignment]

SQLITE_BUSY_TIMEOUT_MS = 10_000

T = TypeVar("T")


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):  # pragma: no cover - other drivers
        return
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk (the WAL fsynced) before it returns, so a usage the API has
        # answered 2xx for survives a power cut too, not only a crash of the process.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite gets its directory, WAL, FULL sync and foreign keys."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            parsed,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            **kwargs,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True, **kwargs)


class SqliteWriterLock:
    """One writer at a time on a SQLite file: among this process's threads (a lock) and among the
    processes that take this lock too (``flock`` on ``<database>-writer.lock``), so that writers
    queue instead of sleeping in SQLite's busy handler, which backs off up to 100 ms a try."""

    def __init__(self, database: str | None) -> None:
        self._lock = threading.Lock()
        file_backed = database and database != ":memory:" and not database.startswith("file:")
        self._path = Path(f"{database}-writer.lock") if file_backed and fcntl else None
        self._fd: int | None = None
        self._pid = 0

    def __enter__(self) -> None:
        self._lock.acquire()
        try:
            if self._path is not None:
                if self._fd is None or self._pid != os.getpid():  # a forked child opens its own
                    self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
                    self._pid = os.getpid()
                fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._lock.release()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()


_WRITER_LOCKS: Final[weakref.WeakKeyDictionary[Engine, SqliteWriterLock]] = (
    weakref.WeakKeyDictionary()
)
_WRITER_LOCKS_GUARD: Final = threading.Lock()


def writer_lock(engine: Engine) -> AbstractContextManager[Any]:
    """Held around a write transaction: the engine's ``SqliteWriterLock`` on SQLite, nothing on
    PostgreSQL (its row locks let writers run side by side)."""
    if engine.dialect.name != "sqlite":
        return nullcontext()
    with _WRITER_LOCKS_GUARD:
        lock = _WRITER_LOCKS.get(engine)
        if lock is None:
            lock = _WRITER_LOCKS[engine] = SqliteWriterLock(engine.url.database)
    return lock


IN_LIST_MAX: Final = 500
"""Bound parameters per ``IN (...)`` list."""


def in_chunks(values: Sequence[T]) -> Iterator[Sequence[T]]:
    """``values`` in slices of at most ``IN_LIST_MAX``, one ``IN (...)`` list each."""
    for start in range(0, len(values), IN_LIST_MAX):
        yield values[start : start + IN_LIST_MAX]
