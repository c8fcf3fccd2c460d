"""Guild-specific categories/keywords and presets ("themes") added by server admins."""

SQL = """
CREATE TABLE guild_categories (
    guild_id   TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('genres', 'moods', 'instruments', 'keywords')),
    en         TEXT NOT NULL COLLATE NOCASE,
    ko         TEXT,
    created_by TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (guild_id, kind, en)
);

CREATE TABLE guild_presets (
    guild_id    TEXT NOT NULL,
    name        TEXT NOT NULL COLLATE NOCASE,
    genres      TEXT NOT NULL DEFAULT '[]',
    moods       TEXT NOT NULL DEFAULT '[]',
    tempo       TEXT,
    instruments TEXT NOT NULL DEFAULT '[]',
    keywords    TEXT NOT NULL DEFAULT '[]',
    duration    REAL,
    created_by  TEXT,
    created_at  REAL NOT NULL,
    PRIMARY KEY (guild_id, name)
);
"""
