"""The store's database: opening sqlite, the lock and transactions, and the numbered migrations runner."""

from __future__ import annotations

import contextlib
import importlib
import logging
import pkgutil
import re
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from engine.store.records import StoreError

log = logging.getLogger("textunes.store")

_MIGRATION_NAME = re.compile(r"^(\d{4})_(\w+)$")


# ----------------------------------------------------------------------------------------------
# Migrations
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str | None
    upgrade: Callable[[sqlite3.Connection], None] | None
    # a table rebuild (SQLite's 12-step ALTER): foreign keys off around its transaction, checked before commit
    rebuilds_tables: bool = False


def available_migrations() -> list[Migration]:
    """Every migration module in ``engine/store/migrations``, in version order."""
    import engine.store.migrations as package

    found: list[Migration] = []
    for info in pkgutil.iter_modules(package.__path__):
        match = _MIGRATION_NAME.match(info.name)
        if not match:
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        found.append(
            Migration(
                int(match.group(1)),
                match.group(2),
                getattr(module, "SQL", None),
                getattr(module, "upgrade", None),
                bool(getattr(module, "REBUILDS_TABLES", False)),
            )
        )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions) or versions != list(range(1, len(versions) + 1)):
        raise StoreError(f"migrations must be numbered 1..n without gaps or duplicates, found {versions}")
    return found


def _split_sql(script: str) -> list[str]:
    """Split a migration script into statements (``executescript`` would commit mid-transaction)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip():
        raise StoreError(f"incomplete SQL statement in migration: {current.strip()[:80]!r}")
    return statements


def schema_version(conn: sqlite3.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_migrations'"
    ).fetchone()
    if not exists:
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


def migrate(
    conn: sqlite3.Connection, target: int | None = None, clock: Callable[[], float] = time.time
) -> list[int]:
    """Apply pending migrations up to ``target`` (default: all); returns the versions applied.

    Each migration runs in its own IMMEDIATE transaction together with its version row, and the
    version is re-read inside the transaction, so two processes opening the same file never apply
    a migration twice and a failed migration leaves the previous version intact.
    """
    migrations = available_migrations()
    latest = migrations[-1].version if migrations else 0
    target = latest if target is None else target
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    current = schema_version(conn)
    if current > latest:
        raise StoreError(
            f"The database schema is version {current}, newer than this TexTuneS understands ({latest}). "
            "Upgrade TexTuneS or point it at another database."
        )
    applied: list[int] = []
    for migration in migrations:
        if migration.version > target:
            break
        if migration.rebuilds_tables:  # a no-op inside a transaction, so before BEGIN
            conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("BEGIN IMMEDIATE")
        try:
            if schema_version(conn) >= migration.version:  # another process got here first
                conn.execute("COMMIT")
                continue
            for statement in _split_sql(migration.sql or ""):
                conn.execute(statement)
            if migration.upgrade is not None:
                migration.upgrade(conn)
            broken = conn.execute("PRAGMA foreign_key_check").fetchall() if migration.rebuilds_tables else []
            if broken:
                raise StoreError(
                    f"migration {migration.version} broke foreign keys: {[tuple(r) for r in broken[:5]]}"
                )
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, clock()),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        finally:
            conn.execute("PRAGMA foreign_keys=ON")
        applied.append(migration.version)
        log.info("store: applied migration %04d_%s", migration.version, migration.name)
    return applied


# ----------------------------------------------------------------------------------------------
# Connection, lock, transactions
# ----------------------------------------------------------------------------------------------
_StoreT = TypeVar("_StoreT", bound="StoreBase")


class StoreBase:
    """The connection, its lock and the executor every concern of ``Store`` shares (a mixin base)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        files_dir: Path,
        *,
        clock: Callable[[], float] = time.time,
        owns_files_dir: bool = False,
        max_favorites: int = 200,
    ) -> None:
        self._conn = conn
        self._db = sqlite_utils.Database(conn)
        self._lock = threading.RLock()
        self.files_dir = files_dir
        self._clock = clock
        self._owns_files_dir = owns_files_dir  # a temp dir made for ":memory:"; removed on close
        self.max_favorites = max_favorites
        self._closed = False
        self._executor: ThreadPoolExecutor | None = None  # made on first use of the async face

    # -- lifecycle ------------------------------------------------------------------------------
    @classmethod
    def open(
        cls: type[_StoreT],
        path: str | Path,
        *,
        files_dir: str | Path | None = None,
        migrate_to: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> _StoreT:
        """Open (creating if needed) the database at ``path`` and apply pending migrations.

        ``files_dir`` defaults to ``<db dir>/files``; for ``":memory:"`` a temporary folder that is
        deleted on ``close()``. ``migrate_to`` stops at a version (tests of upgrades use it).
        """
        in_memory = str(path) == ":memory:"
        if in_memory:
            conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        else:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves; timeout: wait for other writers
            conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30.0)
        conn.row_factory = sqlite3.Row
        try:
            if not in_memory:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    log.warning("store: WAL mode unavailable (journal_mode=%s)", mode)
                conn.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; fsync at checkpoints
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            migrate(conn, migrate_to, clock)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"cannot open the store database {path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        if files_dir is not None:
            folder, owned = Path(files_dir), False
        elif in_memory:
            folder, owned = Path(tempfile.mkdtemp(prefix="textunes-store-")), True
        else:
            folder, owned = Path(path).parent / "files", False
        folder.mkdir(parents=True, exist_ok=True)
        store = cls(conn, folder, clock=clock, owns_files_dir=owned)
        if (migrate_to is None) or migrate_to >= 1:
            store._after_open()
        return store

    def _after_open(self) -> None:
        """Housekeeping once the schema is in place (concerns extend it)."""

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._conn.close()
            executor, self._executor = self._executor, None
        if executor is not None:
            # no wait: close() may itself run on that thread; queued calls still run (and fail: closed)
            executor.shutdown(wait=False)
        if self._owns_files_dir:
            shutil.rmtree(self.files_dir, ignore_errors=True)

    def __enter__(self: _StoreT) -> _StoreT:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        with self._lock:
            return schema_version(self._conn)

    @property
    def db(self) -> sqlite_utils.Database:
        """The sqlite-utils view of the database (read-only use: tools, tests, admin scripts)."""
        return self._db

    @contextlib.contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """The store's connection under its lock, for a front end's own tables in the same file
        (autocommit: each statement is its own transaction; use ``transaction()`` for several)."""
        with self._lock:
            if self._closed:
                raise StoreError("the store is closed")
            yield self._conn

    def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One IMMEDIATE transaction on the store's connection (a front end's multi-statement writes)."""
        return self._tx()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction under the lock (writers from other processes wait)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _store_executor(self) -> ThreadPoolExecutor:
        """The one thread that runs this store's async calls (sqlite has one writer anyway)."""
        with self._lock:
            if self._closed:
                raise StoreError("the store is closed")
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="textunes-store")
            return self._executor

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, tuple(params)).fetchall()
