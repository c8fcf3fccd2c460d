"""``jobs`` without a front end's columns, and ``kind`` an opaque label the front end chooses.

The bot now keeps where and how it answers a job (channel, interaction, posted message, claim) in
its own table; the old values are set aside in ``jobs_retired_columns`` for it to import (it drops
that table then). ``kind`` was checked against the bot's button names; now only its shape is.

SQLite cannot drop a CHECK, so ``jobs`` is rebuilt (SQLite's documented 12-step way): the runner
turns foreign keys off around this migration (``REBUILDS_TABLES``) so dropping the old table
cascades nothing into ``tracks``, and runs a foreign-key check before it commits.
"""

from __future__ import annotations

import sqlite3

REBUILDS_TABLES = True

SET_ASIDE = """
CREATE TABLE jobs_retired_columns AS
    SELECT id AS job_id, channel_id, interaction_id, interaction_token, message_id,
           claimed_at, delivered_at, created_at
    FROM jobs
    WHERE channel_id IS NOT NULL OR interaction_id IS NOT NULL OR message_id IS NOT NULL
"""

NEW_JOBS = """
CREATE TABLE jobs (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL DEFAULT 'bgm' CHECK (length(kind) BETWEEN 1 AND 32),
    request         TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    guild_id        TEXT,
    parent_track_id TEXT,
    state           TEXT NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    error           TEXT,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    started_at      REAL,
    finished_at     REAL
)
"""

COLUMNS = (
    "id, kind, request, user_id, guild_id, parent_track_id, state, attempts, error, "
    "created_at, updated_at, started_at, finished_at"
)


def upgrade(conn: sqlite3.Connection) -> None:
    conn.execute(SET_ASIDE)
    conn.execute(NEW_JOBS.replace("CREATE TABLE jobs (", "CREATE TABLE jobs_new (", 1))
    conn.execute(f"INSERT INTO jobs_new ({COLUMNS}) SELECT {COLUMNS} FROM jobs")
    conn.execute("DROP TABLE jobs")  # foreign keys are off (REBUILDS_TABLES): tracks keep their rows
    conn.execute("ALTER TABLE jobs_new RENAME TO jobs")
    conn.execute("CREATE INDEX jobs_state ON jobs (state, created_at)")
    conn.execute("CREATE INDEX jobs_user ON jobs (user_id, created_at)")
