"""Jobs in the store: states, restart recovery, rate-limit counts."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from engine.spec import MusicSpec
from engine.store.db import StoreBase
from engine.store.records import (
    FINISHED_STATES,
    JOB_KIND,
    JOB_STATES,
    JobRecord,
    as_id,
    spec_to_dict,
    to_json,
)


class JobsMixin(StoreBase):
    """Create, update and recover jobs (how a front end delivers them is its own business)."""

    def create_job(
        self,
        *,
        user_id: str | int,
        request: Mapping[str, Any],
        guild_id: str | int | None = None,
        kind: str = "bgm",
        parent_track_id: str | None = None,
        job_id: str | None = None,
    ) -> JobRecord:
        """Record a new queued job. ``request`` must be JSON-able (MusicSpec values are converted)."""
        if not isinstance(kind, str) or not JOB_KIND.fullmatch(kind):
            raise ValueError(f"job kind must be a short lowercase label, got {kind!r}")
        request = dict(request)
        if isinstance(request.get("spec"), MusicSpec):
            request["spec"] = spec_to_dict(request["spec"])
        now = self._clock()
        row = {
            "id": job_id or uuid.uuid4().hex[:12],
            "kind": kind,
            "request": to_json(request),
            "user_id": as_id(user_id),
            "guild_id": as_id(guild_id),
            "parent_track_id": parent_track_id,
            "state": "queued",
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        with self._lock:
            try:
                self._db["jobs"].insert(row)
            except sqlite3.IntegrityError as exc:
                raise ValueError(f"job id {row['id']!r} already exists") from exc
            return self._get_job_locked(row["id"])  # type: ignore[return-value]

    def _get_job_locked(self, job_id: str) -> JobRecord | None:
        row = self._conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return JobRecord._from_row(row) if row else None

    def get_job(self, job_id: str) -> JobRecord | None:
        with self._lock:
            return self._get_job_locked(job_id)

    def job_spec(self, job_id: str) -> MusicSpec:
        job = self.get_job(job_id)
        if job is None:
            raise KeyError(f"no job {job_id!r}")
        return job.spec

    _UPDATABLE = frozenset(
        {
            "state", "error", "attempts", "request", "started_at", "finished_at", "parent_track_id",
        }
    )  # fmt: skip

    def update_job(self, job_id: str, **fields: Any) -> JobRecord:
        unknown = set(fields) - self._UPDATABLE
        if unknown:
            raise ValueError(f"cannot update job field(s) {sorted(unknown)}")
        if "state" in fields and fields["state"] not in JOB_STATES:
            raise ValueError(f"job state must be one of {JOB_STATES}, got {fields['state']!r}")
        values = dict(fields)
        if "request" in values:
            values["request"] = to_json(values["request"])
        values["updated_at"] = self._clock()
        if values.get("state") in FINISHED_STATES and "finished_at" not in values:
            values["finished_at"] = values["updated_at"]
        with self._lock:
            if self._conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
                raise KeyError(f"no job {job_id!r}")
            self._db["jobs"].update(job_id, values)
            return self._get_job_locked(job_id)  # type: ignore[return-value]

    def mark_running(self, job_id: str) -> JobRecord:
        """queued -> running; counts the attempt (restarts that crash again are bounded by it)."""
        with self._lock:
            now = self._clock()
            cur = self._conn.execute(
                "UPDATE jobs SET state='running', attempts=attempts+1, started_at=?, updated_at=? WHERE id=?",
                (now, now, job_id),
            )
            if cur.rowcount != 1:
                raise KeyError(f"no job {job_id!r}")
            return self._get_job_locked(job_id)  # type: ignore[return-value]

    def mark_done(self, job_id: str) -> JobRecord:
        return self.update_job(job_id, state="done", error=None)

    def mark_failed(self, job_id: str, error: str) -> JobRecord:
        return self.update_job(job_id, state="failed", error=str(error)[:2000])

    def mark_cancelled(self, job_id: str, reason: str | None = None) -> JobRecord:
        return self.update_job(job_id, state="cancelled", error=reason)

    def unfinished_jobs(self) -> list[JobRecord]:
        """Queued and running jobs, oldest first: what to requeue after a restart."""
        rows = self._query(
            "SELECT * FROM jobs WHERE state IN ('queued', 'running') ORDER BY created_at, rowid"
        )
        return [JobRecord._from_row(r) for r in rows]

    def recover_unfinished(
        self, max_attempts: int = 3, message: str | None = None
    ) -> tuple[list[JobRecord], list[JobRecord]]:
        """On start: put interrupted jobs back to ``queued``; fail those that already crashed too often.

        Returns ``(requeue, gave_up)``, both oldest first. A job that kills the worker every time it
        runs would otherwise crash-loop the bot forever. A job whose tracks are stored is ``done``
        before any front end posts it, so nothing being posted is ever regenerated.
        """
        requeue, gave_up = [], []
        with self._tx() as conn:
            now = self._clock()
            rows = conn.execute(
                "SELECT * FROM jobs WHERE state IN ('queued', 'running') ORDER BY created_at, rowid"
            ).fetchall()
            for row in rows:
                if row["attempts"] >= max_attempts:
                    error = message or (
                        f"This job was interrupted {row['attempts']} times (the generator crashed or the bot "
                        "restarted), so it was stopped. Please try again, perhaps with a shorter duration."
                    )
                    conn.execute(
                        "UPDATE jobs SET state='failed', error=?, updated_at=?, finished_at=? WHERE id=?",
                        (error, now, now, row["id"]),
                    )
                    gave_up.append(row["id"])
                else:
                    if row["state"] == "running":
                        conn.execute(
                            "UPDATE jobs SET state='queued', updated_at=? WHERE id=?", (now, row["id"])
                        )
                    requeue.append(row["id"])
        with self._lock:
            return (
                [self._get_job_locked(i) for i in requeue],  # type: ignore[misc]
                [self._get_job_locked(i) for i in gave_up],  # type: ignore[misc]
            )

    def jobs_of(self, user_id: str | int, states: Iterable[str] = ("queued", "running")) -> list[JobRecord]:
        states = tuple(states)
        marks = ",".join("?" * len(states))
        rows = self._query(
            f"SELECT * FROM jobs WHERE user_id = ? AND state IN ({marks}) ORDER BY created_at, rowid",
            (as_id(user_id), *states),
        )
        return [JobRecord._from_row(r) for r in rows]

    def count_jobs_since(
        self, since: float, *, user_id: str | int | None = None, guild_id: str | int | None = None
    ) -> int:
        """Jobs created at or after ``since`` (rate limits that survive restarts)."""
        sql, params = "SELECT COUNT(*) FROM jobs WHERE created_at >= ?", [since]
        if user_id is not None:
            sql, params = sql + " AND user_id = ?", [*params, as_id(user_id)]
        if guild_id is not None:
            sql, params = sql + " AND guild_id = ?", [*params, as_id(guild_id)]
        return int(self._query(sql, params)[0][0])
