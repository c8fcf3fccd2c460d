"""Retention: the stored-bytes cap (oldest non-favourite files first), orphan sweeps, and their schedule."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from engine.store.aio import AsyncStore
from engine.store.db import StoreBase
from engine.store.records import SettingsError

log = logging.getLogger("textunes.store")

DAY = 86400.0
DEFAULT_MAX_STORED_MB = 2048.0
DEFAULT_ORPHAN_AGE = 3600.0  # an add_track in flight writes its file a moment before its row


class RetentionMixin(StoreBase):
    """Bound the files on disk: the bytes cap and the sweep of files no row points at."""

    def stored_bytes(self) -> int:
        row = self._query("SELECT COALESCE(SUM(bytes + midi_bytes), 0) FROM tracks WHERE file_deleted = 0")
        return int(row[0][0])

    def enforce_retention(self, max_bytes: int) -> int:
        """Delete the oldest non-favorite audio files until the total is at most ``max_bytes``.

        Rows stay (history still lists them, marked ``file_deleted``); favorites are never deleted,
        even if favorites alone exceed the cap. Returns the bytes freed.
        """
        freed = 0
        doomed: list[tuple[str, list[Path]]] = []
        with self._tx() as conn:
            total = int(
                conn.execute(
                    "SELECT COALESCE(SUM(bytes + midi_bytes), 0) FROM tracks WHERE file_deleted = 0"
                ).fetchone()[0]
            )
            if total <= max_bytes:
                return 0
            candidates = conn.execute(
                "SELECT id, file, midi_file, bytes, midi_bytes FROM tracks t WHERE file_deleted = 0 "
                "AND NOT EXISTS (SELECT 1 FROM favorites f WHERE f.track_id = t.id) "
                "ORDER BY created_at, rowid"
            ).fetchall()
            for row in candidates:
                if total <= max_bytes:
                    break
                size = int(row["bytes"]) + int(row["midi_bytes"])
                conn.execute("UPDATE tracks SET file_deleted = 1 WHERE id = ?", (row["id"],))
                doomed.append((row["id"], [self.files_dir / n for n in (row["file"], row["midi_file"]) if n]))
                total -= size
                freed += size
        # unlink after the commit: a crash in between leaves an orphan file, never a row without its file
        for _track_id, paths in doomed:
            for p in paths:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        if doomed:
            log.info("store: retention removed %d track file(s), %d bytes", len(doomed), freed)
        return freed

    def sweep_orphan_files(self, older_than: float = 3600.0) -> int:
        """Remove files in ``files_dir`` that no live track row points at (crash leftovers)."""
        with self._lock:
            live = {
                name
                for row in self._conn.execute(
                    "SELECT file, midi_file FROM tracks WHERE file_deleted = 0"
                ).fetchall()
                for name in row
                if name
            }
        cutoff = time.time() - older_than  # file mtimes are wall-clock, not the injectable clock
        removed = 0
        for entry in self.files_dir.iterdir():
            if entry.is_file() and entry.name not in live and entry.stat().st_mtime < cutoff:
                entry.unlink(missing_ok=True)
                removed += 1
        return removed


@dataclass(frozen=True)
class RetentionPolicy:
    """How much audio the store keeps: a byte cap (None: no cap) and the age at which orphans go."""

    max_bytes: int | None = int(DEFAULT_MAX_STORED_MB * 1024 * 1024)
    orphan_age: float = DEFAULT_ORPHAN_AGE

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RetentionPolicy:
        """``TEXTUNES_MAX_STORED_MB`` (0 = no cap) and ``TEXTUNES_ORPHAN_AGE`` (seconds)."""
        env = os.environ if environ is None else environ
        max_mb = _env_number(env, "TEXTUNES_MAX_STORED_MB", DEFAULT_MAX_STORED_MB)
        orphan_age = _env_number(env, "TEXTUNES_ORPHAN_AGE", DEFAULT_ORPHAN_AGE)
        return cls(max_bytes=int(max_mb * 1024 * 1024) if max_mb > 0 else None, orphan_age=orphan_age)

    def apply(self, store: RetentionMixin) -> tuple[int, int]:
        """One pass: the byte cap, then the orphan sweep. Returns (bytes freed, orphan files removed)."""
        freed = store.enforce_retention(self.max_bytes) if self.max_bytes is not None else 0
        return freed, store.sweep_orphan_files(self.orphan_age)


def _env_number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}.") from None
    if not math.isfinite(value) or value < 0:
        raise SettingsError(f"{name} must be 0 or more, got {raw!r}.")
    return value


async def run_retention_forever(
    store: RetentionMixin, policy: RetentionPolicy, interval: float = DAY
) -> None:
    """Apply ``policy`` now and then every ``interval`` seconds, on the store's thread, until cancelled.

    A failing pass (disk error, locked database) is logged and retried at the next interval: the
    schedule must outlive one bad day.
    """
    on_store_thread = AsyncStore(store)  # the store's one executor, like ``store.aio``
    while True:
        try:
            freed, orphans = await on_store_thread.call(policy.apply, store)
            if freed or orphans:
                log.info("store: retention pass freed %d bytes, removed %d orphan file(s)", freed, orphans)
        except Exception:  # CancelledError is not an Exception: cancelling stops the loop
            log.exception("store: retention pass failed; retrying in %.0f s", interval)
        await asyncio.sleep(interval)
