"""Jobs, tracks, favorites and per-user / per-guild settings."""

# Ids from Discord are snowflakes: kept as TEXT so they survive JSON and JavaScript-ish tooling intact.
# Timestamps are unix seconds (REAL). JSON columns hold dicts written by engine.store.
SQL = """
CREATE TABLE jobs (
    id                TEXT PRIMARY KEY,
    kind              TEXT NOT NULL DEFAULT 'bgm'
                      CHECK (kind IN ('bgm', 'text', 'regenerate', 'variation', 'extend', 'edit')),
    request           TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    guild_id          TEXT,
    channel_id        TEXT,
    interaction_id    TEXT,
    interaction_token TEXT,
    message_id        TEXT,
    parent_track_id   TEXT,
    state             TEXT NOT NULL DEFAULT 'queued'
                      CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    error             TEXT,
    created_at        REAL NOT NULL,
    updated_at        REAL NOT NULL,
    started_at        REAL,
    finished_at       REAL,
    claimed_at        REAL,
    delivered_at      REAL
);
CREATE INDEX jobs_state ON jobs (state, created_at);
CREATE INDEX jobs_user ON jobs (user_id, created_at);
CREATE INDEX jobs_message ON jobs (message_id);

CREATE TABLE tracks (
    id           TEXT PRIMARY KEY,
    job_id       TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    idx          INTEGER NOT NULL DEFAULT 0,
    user_id      TEXT NOT NULL,
    guild_id     TEXT,
    prompt       TEXT NOT NULL,
    seed         INTEGER,
    params       TEXT NOT NULL,
    backend      TEXT,
    model        TEXT,
    analysis     TEXT,
    meta         TEXT,
    file         TEXT,
    midi_file    TEXT,
    sha256       TEXT,
    duration     REAL NOT NULL,
    sample_rate  INTEGER NOT NULL,
    channels     INTEGER NOT NULL,
    frames       INTEGER NOT NULL,
    format       TEXT NOT NULL,
    bytes        INTEGER NOT NULL DEFAULT 0,
    midi_bytes   INTEGER NOT NULL DEFAULT 0,
    file_deleted INTEGER NOT NULL DEFAULT 0,
    created_at   REAL NOT NULL
);
CREATE INDEX tracks_user ON tracks (user_id, created_at);
CREATE INDEX tracks_job ON tracks (job_id, idx);
CREATE INDEX tracks_retention ON tracks (file_deleted, created_at);

CREATE TABLE favorites (
    user_id    TEXT NOT NULL,
    track_id   TEXT NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    created_at REAL NOT NULL,
    PRIMARY KEY (user_id, track_id)
);
CREATE INDEX favorites_track ON favorites (track_id);

CREATE TABLE user_settings (
    user_id    TEXT PRIMARY KEY,
    settings   TEXT NOT NULL DEFAULT '{}',
    updated_at REAL NOT NULL
);

CREATE TABLE guild_settings (
    guild_id   TEXT PRIMARY KEY,
    settings   TEXT NOT NULL DEFAULT '{}',
    updated_at REAL NOT NULL
);
"""
