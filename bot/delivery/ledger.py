"""The bot's delivery ledger: where each job is answered on Discord, and its post claimed exactly once.

    ledger = DeliveryLedger.open(store)                 # the bot's own table, in the store's sqlite file
    ledger.record(job_id, user_id=..., guild_id=..., channel_id=..., interaction_id=..., interaction_token=...)
    handle = await service.submit(requester, request, job_id=job_id)
    if ledger.claim_delivery(job_id):                    # True exactly once, across threads and processes
        ...send...; ledger.mark_delivered(job_id, message.id)

The engine's ``jobs`` table knows nothing of Discord; this table (``discord_deliveries``) holds the
channel, the interaction id and token, the posted message and the claim. It lives in the same file
and uses the store's connection and lock (``Store.connection`` / ``Store.transaction``), so a claim is
one conditional UPDATE that two processes sharing the file cannot both win. The row is written BEFORE
``submit`` with the job id the bot made (``engine.service.new_job_id``): a crash between the two
leaves a row without a job (ignored), never a job the bot cannot answer.

Its schema has its own numbered migrations (``MIGRATIONS``, recorded in ``discord_schema_migrations``,
apart from the engine's ``schema_migrations``). On open, rows the engine's migration 0003 set aside
from the old ``jobs`` columns (``jobs_retired_columns``) are moved in, once.
The interaction token is a credential: hidden from ``repr``, never logged, wiped once expired.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.store import JobRecord, Store

INTERACTION_TTL = 15 * 60.0  # Discord interaction tokens are valid for 15 minutes
UNDELIVERED_MAX_AGE = 24 * 3600.0  # a finished track older than this is not posted after a restart
LEGACY_TABLE = "jobs_retired_columns"  # made by engine migration 0003 from the old jobs columns

# (version, name, SQL): append only, never edit one that was released
MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "discord_deliveries",
        """
        CREATE TABLE IF NOT EXISTS discord_deliveries (
            job_id            TEXT PRIMARY KEY,
            user_id           TEXT NOT NULL,
            guild_id          TEXT,
            channel_id        TEXT,
            interaction_id    TEXT,
            interaction_token TEXT,
            message_id        TEXT,
            created_at        REAL NOT NULL,
            claimed_at        REAL,
            delivered_at      REAL
        );
        CREATE INDEX IF NOT EXISTS discord_deliveries_message ON discord_deliveries (message_id);
        CREATE INDEX IF NOT EXISTS discord_deliveries_open ON discord_deliveries (delivered_at, claimed_at);
        """,
    ),
)


def _as_id(value: Any) -> str | None:
    """Snowflakes arrive as int or str; stored as str."""
    return None if value is None else str(value)


@dataclass(frozen=True)
class DeliveryJob:
    """A job as the bot sees it: the engine's ``JobRecord`` plus where and how it is answered.

    Attributes not defined here (``id``, ``state``, ``spec``, ``samples``, ...) are the record's.
    """

    record: JobRecord
    channel_id: str | None = None
    interaction_id: str | None = None
    interaction_token: str | None = field(default=None, repr=False)  # a credential: never in repr / logs
    message_id: str | None = None
    recorded_at: float | None = None  # when the bot wrote the row (just after the interaction arrived)
    claimed_at: float | None = None
    delivered_at: float | None = None

    def __getattr__(self, name: str) -> Any:
        if name == "record":  # not set yet (copy/pickle): never recurse
            raise AttributeError(name)
        return getattr(self.record, name)

    @property
    def delivered(self) -> bool:
        return self.delivered_at is not None

    def interaction_valid(self, now: float | None = None, margin: float = 30.0) -> bool:
        """Can we still answer through the interaction (token present and not about to expire)?"""
        if not self.interaction_token:
            return False
        now = time.time() if now is None else now
        issued = self.recorded_at if self.recorded_at is not None else self.record.created_at
        return now < issued + INTERACTION_TTL - margin


_ROW_FIELDS = (
    "channel_id",
    "interaction_id",
    "interaction_token",
    "message_id",
    "claimed_at",
    "delivered_at",
)


class DeliveryLedger:
    """The ``discord_deliveries`` table over a ``Store``'s connection. Thread-safe (the store's lock)."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock

    @classmethod
    def open(cls, store: Store, *, clock: Callable[[], float] = time.time) -> DeliveryLedger:
        """Apply the ledger's migrations, move in rows left by the old schema, wipe expired tokens."""
        ledger = cls(store, clock=clock)
        ledger.migrate()
        ledger.import_retired_columns()
        ledger.forget_expired_tokens()
        return ledger

    # -- schema ---------------------------------------------------------------------------------
    def schema_version(self) -> int:
        with self.store.connection() as conn:
            return _version(conn)

    def migrate(self) -> list[int]:
        """Apply pending ledger migrations, each in one IMMEDIATE transaction with its version row
        (re-read inside it, so two processes opening the file never apply one twice)."""
        applied = []
        with self.store.connection() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS discord_schema_migrations ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
        for version, name, sql in MIGRATIONS:
            with self.store.transaction() as conn:
                if _version(conn) >= version:
                    continue
                for statement in (s.strip() for s in sql.split(";")):
                    if statement:
                        conn.execute(statement)
                conn.execute(
                    "INSERT INTO discord_schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, self._clock()),
                )
            applied.append(version)
        return applied

    def import_retired_columns(self) -> int:
        """Move the Discord columns the engine set aside (old ``jobs`` rows) into the ledger, once."""
        with self.store.transaction() as conn:
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (LEGACY_TABLE,)
            ).fetchone()
            if not exists:
                return 0
            cur = conn.execute(
                "INSERT OR IGNORE INTO discord_deliveries (job_id, user_id, guild_id, channel_id, "
                "interaction_id, interaction_token, message_id, created_at, claimed_at, delivered_at) "
                "SELECT r.job_id, j.user_id, j.guild_id, r.channel_id, r.interaction_id, "
                "r.interaction_token, r.message_id, r.created_at, r.claimed_at, r.delivered_at "
                f"FROM {LEGACY_TABLE} r JOIN jobs j ON j.id = r.job_id"
            )
            conn.execute(f"DROP TABLE {LEGACY_TABLE}")
            return cur.rowcount

    # -- rows -----------------------------------------------------------------------------------
    def record(
        self,
        job_id: str,
        *,
        user_id: str | int,
        guild_id: str | int | None = None,
        channel_id: str | int | None = None,
        interaction_id: str | int | None = None,
        interaction_token: str | None = None,
    ) -> None:
        """Write where ``job_id`` is answered (before ``submit``: see the module docstring)."""
        with self.store.connection() as conn:
            conn.execute(
                "INSERT INTO discord_deliveries (job_id, user_id, guild_id, channel_id, interaction_id, "
                "interaction_token, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    _as_id(user_id),
                    _as_id(guild_id),
                    _as_id(channel_id),
                    _as_id(interaction_id),
                    interaction_token,
                    self._clock(),
                ),
            )

    def forget(self, job_id: str) -> None:
        """Drop the row of a job that was never submitted (admission refused it)."""
        with self.store.connection() as conn:
            conn.execute("DELETE FROM discord_deliveries WHERE job_id = ?", (job_id,))

    def _with_job(self, row: sqlite3.Row | None, job: JobRecord | None = None) -> DeliveryJob | None:
        if row is None:
            return None
        job = job or self.store.get_job(row["job_id"])
        if job is None:  # a row written just before a submit that never happened
            return None
        return DeliveryJob(job, **{k: row[k] for k in _ROW_FIELDS}, recorded_at=row["created_at"])

    def _rows(self, sql: str, params: tuple = ()) -> list[DeliveryJob]:
        with self.store.connection() as conn:
            rows = conn.execute(sql, params).fetchall()
            found = [self._with_job(row) for row in rows]
        return [j for j in found if j is not None]

    def job(self, job_id: str) -> DeliveryJob | None:
        """The job with its delivery fields (all None when the bot has no row for it)."""
        with self.store.connection() as conn:
            record = self.store.get_job(job_id)
            if record is None:
                return None
            row = conn.execute("SELECT * FROM discord_deliveries WHERE job_id = ?", (job_id,)).fetchone()
            return self._with_job(row, record) or DeliveryJob(record)

    def job_by_message(self, message_id: str | int) -> DeliveryJob | None:
        """The job whose result was posted as ``message_id`` (for 🔁 reactions on old messages)."""
        found = self._rows(
            "SELECT * FROM discord_deliveries WHERE message_id = ? ORDER BY created_at DESC LIMIT 1",
            (_as_id(message_id),),
        )
        return found[0] if found else None

    # -- delivery (exactly once) ----------------------------------------------------------------
    def claim_delivery(self, job_id: str) -> bool:
        """Claim the right to post this job's result. True exactly once per job.

        One conditional UPDATE: sqlite serialises writers, so even two processes sharing the file
        cannot both see ``rowcount == 1``.
        """
        with self.store.connection() as conn:
            cur = conn.execute(
                "UPDATE discord_deliveries SET claimed_at = ? "
                "WHERE job_id = ? AND delivered_at IS NULL AND claimed_at IS NULL",
                (self._clock(), job_id),
            )
            return cur.rowcount == 1

    def release_delivery(self, job_id: str) -> bool:
        """Give a claim back after a send that certainly failed, so a later retry may claim it."""
        with self.store.connection() as conn:
            cur = conn.execute(
                "UPDATE discord_deliveries SET claimed_at = NULL WHERE job_id = ? AND delivered_at IS NULL",
                (job_id,),
            )
            return cur.rowcount == 1

    def mark_delivered(self, job_id: str, message_id: str | int | None) -> None:
        with self.store.connection() as conn:
            now = self._clock()
            cur = conn.execute(
                "UPDATE discord_deliveries SET delivered_at = ?, claimed_at = COALESCE(claimed_at, ?), "
                "message_id = COALESCE(?, message_id) WHERE job_id = ?",
                (now, now, _as_id(message_id), job_id),
            )
            if cur.rowcount != 1:
                raise KeyError(f"no delivery row for job {job_id!r}")

    def pending_deliveries(self, since: float | None = None) -> list[DeliveryJob]:
        """Finished (done/failed) jobs whose result nobody has claimed yet, oldest first
        (``since``: only those recorded at or after it)."""
        found = self._rows(
            "SELECT * FROM discord_deliveries WHERE delivered_at IS NULL AND claimed_at IS NULL "
            "AND created_at >= ? ORDER BY created_at, rowid",
            (float("-inf") if since is None else since,),
        )
        return [j for j in found if j.state in ("done", "failed")]

    def undelivered(self) -> list[DeliveryJob]:
        """Done (tracks stored) but never claimed, recent enough to post after a restart."""
        since = self._clock() - UNDELIVERED_MAX_AGE
        return [j for j in self.pending_deliveries(since) if j.state == "done" and j.channel_id is not None]

    def claimed_undelivered(self) -> list[DeliveryJob]:
        """Jobs claimed for delivery but never marked delivered: the process died mid-send.

        The send may or may not have reached Discord, so the bot looks (e.g. the interaction's
        original response) before deciding to ``release_delivery`` and resend.
        """
        return self._rows(
            "SELECT * FROM discord_deliveries WHERE claimed_at IS NOT NULL AND delivered_at IS NULL "
            "ORDER BY created_at, rowid"
        )

    def forget_expired_tokens(self, now: float | None = None) -> int:
        """Wipe interaction tokens older than Discord's 15 minutes: useless, and still a secret."""
        now = self._clock() if now is None else now
        with self.store.connection() as conn:
            cur = conn.execute(
                "UPDATE discord_deliveries SET interaction_token = NULL "
                "WHERE interaction_token IS NOT NULL AND created_at < ?",
                (now - INTERACTION_TTL,),
            )
            return cur.rowcount


def _version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT MAX(version) FROM discord_schema_migrations").fetchone()
    return int(row[0] or 0)


__all__ = [
    "INTERACTION_TTL",
    "MIGRATIONS",
    "UNDELIVERED_MAX_AGE",
    "DeliveryJob",
    "DeliveryLedger",
]
