"""Retention on a schedule: the store's size cap and orphan sweep, run at start and then daily.

A stand-in with the same names as the store package's ``engine.store.retention`` (being split out in
parallel); the service imports from here until that lands.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("textunes.retention")

DAY = 24 * 3600.0


@dataclass(frozen=True)
class RetentionPolicy:
    max_bytes: int  # audio + MIDI kept on disk; oldest non-favourite files go first
    orphan_age: float = 3600.0  # files no track points at, older than this (crash leftovers)
    interval: float = DAY


def run_retention_once(store: Any, policy: RetentionPolicy) -> tuple[int, int]:
    """Apply ``policy`` now; returns (bytes freed, orphan files removed)."""
    freed = store.enforce_retention(policy.max_bytes)
    orphans = store.sweep_orphan_files(older_than=policy.orphan_age)
    if freed or orphans:
        log.info("retention: freed %d bytes, removed %d orphan file(s)", freed, orphans)
    return freed, orphans


async def run_retention_forever(store: Any, policy: RetentionPolicy, interval: float | None = None) -> None:
    """Run ``policy`` every ``interval`` seconds (default ``policy.interval``) until cancelled."""
    every = policy.interval if interval is None else interval
    while True:
        await asyncio.sleep(every)
        try:
            await asyncio.to_thread(run_retention_once, store, policy)
        except Exception:  # a failing sweep must not stop the next one
            log.exception("retention run failed")
