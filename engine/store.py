"""Durable store: jobs, tracks (audio on disk), favorites, user/guild settings, guild catalogue.

    store = Store.open("var/textunes.db")               # applies numbered migrations (engine/migrations)
    job = store.create_job(user_id="42", request=spec_to_request(spec, samples=2), guild_id="7")
    store.mark_running(job.id); ...; rec = store.add_track(job.id, track); store.mark_done(job.id)
    if store.claim_delivery(job.id):                    # True exactly once, across threads and processes
        ...send...; store.mark_delivered(job.id, message_id)

Why it looks like this:

* sqlite (WAL) via sqlite-utils, one connection per ``Store`` guarded by a re-entrant lock, so the bot
  may call it from ``asyncio.to_thread`` workers safely. Anything that must be atomic across
  *processes* (delivery claims, migrations) is a single conditional UPDATE or an IMMEDIATE transaction.
* Requests are stored as JSON so a job can be rebuilt (``job_spec``) and requeued after a restart.
* Audio lives in ``files_dir`` under generated names (never a user-supplied name); the row keeps the
  sha256, the exact frame count and the spec, so ``load_track`` returns the same shape after a restart.
* The interaction token is a credential: it is stored (needed to answer within Discord's 15-minute
  window), hidden from ``repr``, never logged, and wiped once it has expired.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import json
import logging
import math
import os
import pkgutil
import re
import shutil
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from engine.errors import TexTuneSError, UserInputError
from engine.spec import MusicSpec, Track

log = logging.getLogger("textunes.store")

__all__ = [
    "GUILD_DEFAULTS",
    "USER_DEFAULTS",
    "GuildCategory",
    "GuildPreset",
    "JobRecord",
    "SettingsError",
    "Store",
    "StoreError",
    "TrackFileMissing",
    "TrackRecord",
    "UnknownTrack",
    "spec_from_request",
    "spec_to_request",
]

JOB_KINDS = ("bgm", "text", "regenerate", "variation", "extend", "edit")
JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
FINISHED_STATES = ("done", "failed", "cancelled")
INTERACTION_TTL = 15 * 60.0  # Discord interaction tokens are valid for 15 minutes
CATEGORY_KINDS = ("genres", "moods", "instruments", "keywords")
AUDIO_FORMATS = ("wav", "mp3", "ogg")

USER_DEFAULTS: dict[str, Any] = {"tempo": None, "duration": None, "format": "mp3"}
GUILD_DEFAULTS: dict[str, Any] = {
    "allowed_channels": [],  # channel ids (str); empty = every channel
    "jobs_per_user": 2,  # concurrent queued/running jobs per user
    "queue_size": 50,  # jobs waiting in this guild at once
    "max_duration": 120.0,  # seconds a member may ask for
    "max_samples": 4,  # takes per request
    "user_jobs_per_minute": 6,  # rate limit per member
    "guild_jobs_per_minute": 30,  # rate limit for the whole guild
}
# (min, max) for numeric guild settings: wide enough for any real server, tight enough to stop abuse
_GUILD_RANGES: dict[str, tuple[float, float]] = {
    "jobs_per_user": (1, 20),
    "queue_size": (1, 1000),
    "max_duration": (5, 180),
    "max_samples": (1, 8),
    "user_jobs_per_minute": (1, 120),
    "guild_jobs_per_minute": (1, 1000),
}
MAX_NAME_CHARS = 60
MAX_GUILD_CATEGORIES = 300
MAX_GUILD_PRESETS = 50
MAX_PRESET_ITEMS = 8
MAX_ALLOWED_CHANNELS = 50

_SPEC_FIELDS = {f.name: f for f in dataclasses.fields(MusicSpec)}
_TUPLE_FIELDS = ("genres", "moods", "instruments", "keywords", "reasons")
_MIGRATION_NAME = re.compile(r"^(\d{4})_(\w+)$")


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------
class StoreError(TexTuneSError):
    """The database or files dir is unusable (schema too new, corrupt file, ...)."""


class UnknownTrack(UserInputError):
    """A track id that is not in the store (e.g. from a stale button)."""


class TrackFileMissing(UserInputError):
    """The track row exists but its audio was removed (retention) or lost."""


class SettingsError(UserInputError):
    """A user or guild setting with a bad name or value (message says what is allowed)."""


# ----------------------------------------------------------------------------------------------
# JSON helpers
# ----------------------------------------------------------------------------------------------
def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 4096 else f"<array {value.shape} {value.dtype}>"
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"  # raw bytes never belong in a JSON column
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False, allow_nan=False)


def _loads(text: str | None, empty: Any = None) -> Any:
    if text is None or text == "":
        return empty
    return json.loads(text)


def _id(value: Any) -> str | None:
    """Discord snowflakes arrive as int or str; store them as str."""
    return None if value is None else str(value)


def spec_to_dict(spec: MusicSpec) -> dict[str, Any]:
    data = dataclasses.asdict(spec)
    for name in _TUPLE_FIELDS:
        data[name] = list(data[name])
    return data


def spec_from_dict(data: Mapping[str, Any]) -> MusicSpec:
    """Rebuild a MusicSpec from its JSON form, ignoring unknown keys (forward compatible)."""
    if not data.get("prompt"):
        raise StoreError("stored request has no prompt; cannot rebuild the MusicSpec")
    kwargs: dict[str, Any] = {}
    for name in _SPEC_FIELDS:
        if name not in data or data[name] is None and name != "key":
            continue
        value = data[name]
        if name in _TUPLE_FIELDS:
            value = (value,) if isinstance(value, str) else tuple(str(v) for v in value)
        elif name == "bpm":
            value = int(value)
        elif name in ("energy", "duration"):
            value = float(value)
        kwargs[name] = value
    return MusicSpec(**kwargs)


def spec_to_request(spec: MusicSpec, *, samples: int = 1, seed: int | None = None, **extra: Any) -> dict:
    """The JSON request stored with a job: ``{"spec": {...}, "samples": n, "seed": s, **extra}``."""
    return {"spec": spec_to_dict(spec), "samples": int(samples), "seed": seed, **extra}


def spec_from_request(request: Mapping[str, Any]) -> MusicSpec:
    """Accepts the nested form from ``spec_to_request`` or MusicSpec fields at the top level."""
    inner = request.get("spec")
    if isinstance(inner, MusicSpec):
        return inner
    return spec_from_dict(inner if isinstance(inner, Mapping) else request)


# ----------------------------------------------------------------------------------------------
# Records
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobRecord:
    id: str
    kind: str
    request: dict
    user_id: str
    guild_id: str | None
    channel_id: str | None
    interaction_id: str | None
    interaction_token: str | None = field(repr=False)  # a credential: never in repr / logs
    message_id: str | None
    parent_track_id: str | None
    state: str
    attempts: int
    error: str | None
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    claimed_at: float | None
    delivered_at: float | None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES

    @property
    def delivered(self) -> bool:
        return self.delivered_at is not None

    @property
    def samples(self) -> int:
        return int(self.request.get("samples") or 1)

    @property
    def seed(self) -> int | None:
        seed = self.request.get("seed")
        return None if seed is None else int(seed)

    @property
    def spec(self) -> MusicSpec:
        return spec_from_request(self.request)

    def interaction_valid(self, now: float | None = None, margin: float = 30.0) -> bool:
        """Can we still answer through the interaction (token present and not about to expire)?"""
        if not self.interaction_token:
            return False
        now = time.time() if now is None else now
        return now < self.created_at + INTERACTION_TTL - margin

    @classmethod
    def _from_row(cls, row: Mapping[str, Any]) -> JobRecord:
        values = {f.name: row[f.name] for f in dataclasses.fields(cls)}
        values["request"] = _loads(row["request"], {})
        return cls(**values)


@dataclass(frozen=True)
class TrackRecord:
    id: str
    job_id: str
    index: int
    user_id: str
    guild_id: str | None
    prompt: str
    seed: int | None
    params: dict  # the MusicSpec as JSON
    backend: str | None
    model: str | None
    analysis: dict | None
    meta: dict
    path: Path | None  # absolute; None once retention removed the file
    midi_path: Path | None
    sha256: str | None
    duration: float
    sample_rate: int
    channels: int
    frames: int
    format: str
    bytes: int
    midi_bytes: int
    file_deleted: bool
    created_at: float

    @property
    def spec(self) -> MusicSpec:
        return spec_from_dict(self.params)

    @property
    def available(self) -> bool:
        return not self.file_deleted and self.path is not None

    @property
    def filename(self) -> str:
        """A friendly attachment name (generated, never user-controlled)."""
        return f"textunes-{self.id}.{self.format}"


@dataclass(frozen=True)
class GuildCategory:
    guild_id: str
    kind: str
    en: str
    ko: str | None

    @property
    def label(self) -> str:
        return f"{self.en} ({self.ko})" if self.ko and self.ko != self.en else self.en


@dataclass(frozen=True)
class GuildPreset:
    guild_id: str
    name: str
    genres: tuple[str, ...]
    moods: tuple[str, ...]
    tempo: str | None
    instruments: tuple[str, ...]
    keywords: tuple[str, ...]
    duration: float | None

    def as_options(self) -> dict[str, Any]:
        """Keyword arguments for ``engine.prompt.build_spec`` (None/empty fields left out)."""
        out: dict[str, Any] = {
            k: getattr(self, k) for k in ("genres", "moods", "instruments", "keywords") if getattr(self, k)
        }
        if self.tempo:
            out["tempo"] = self.tempo
        if self.duration:
            out["duration"] = self.duration
        return out


# ----------------------------------------------------------------------------------------------
# Migrations
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str | None
    upgrade: Callable[[sqlite3.Connection], None] | None


def available_migrations() -> list[Migration]:
    """Every migration module in ``engine/migrations``, in version order."""
    import engine.migrations as package

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
        conn.execute("BEGIN IMMEDIATE")
        try:
            if schema_version(conn) >= migration.version:  # another process got here first
                conn.execute("COMMIT")
                continue
            for statement in _split_sql(migration.sql or ""):
                conn.execute(statement)
            if migration.upgrade is not None:
                migration.upgrade(conn)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, clock()),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(migration.version)
        log.info("store: applied migration %04d_%s", migration.version, migration.name)
    return applied


# ----------------------------------------------------------------------------------------------
# Audio files
# ----------------------------------------------------------------------------------------------
def _encode_audio(track: Track, fmt: str) -> bytes:
    from engine.audio import encode

    return encode(track, fmt)


def _decode_audio(path: Path) -> tuple[np.ndarray, int]:
    """Decode a stored file to float32 (channels, frames); libsndfile reads wav/ogg/mp3."""
    import soundfile

    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        return np.ascontiguousarray(data.T), int(rate)
    except Exception:  # older libsndfile without mp3: fall back to the bundled ffmpeg
        return _decode_with_ffmpeg(path)


def _decode_with_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    import subprocess

    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    probe = subprocess.run([exe, "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    match = re.search(r"Audio: .*?(\d+) Hz, (mono|stereo|(\d+) channels)", probe.stderr)
    if not match:
        raise StoreError(f"cannot read audio file {path.name}")
    rate = int(match.group(1))
    channels = 1 if match.group(2) == "mono" else 2 if match.group(2) == "stereo" else int(match.group(3))
    raw = subprocess.run(
        [exe, "-v", "error", "-i", str(path), "-f", "f32le", "-acodec", "pcm_f32le", "-"],
        capture_output=True,
        check=True,
    ).stdout
    audio = np.frombuffer(raw, dtype="<f4").reshape(-1, channels).T
    return np.ascontiguousarray(audio, dtype=np.float32), rate


def _fit_frames(audio: np.ndarray, frames: int) -> np.ndarray:
    """Lossy codecs pad a few ms; trim/pad back to the exact frame count we generated."""
    if audio.shape[1] >= frames:
        return np.ascontiguousarray(audio[:, :frames])
    return np.pad(audio, ((0, 0), (0, frames - audio.shape[1])))


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------
def _clean_name(value: Any, what: str) -> str:
    text = " ".join(str(value or "").split())
    if not text:
        raise SettingsError(f"The {what} is empty; type a name.")
    if len(text) > MAX_NAME_CHARS:
        raise SettingsError(
            f"The {what} '{text[:20]}…' is too long: keep it under {MAX_NAME_CHARS} characters."
        )
    return text


def _clean_list(values: Any, what: str) -> tuple[str, ...]:
    if values is None:
        return ()
    if isinstance(values, str):
        values = [v for v in re.split(r"[,\n]", values)]
    items: list[str] = []
    for value in values:
        if str(value).strip():
            name = _clean_name(value, what)
            if name.casefold() not in {i.casefold() for i in items}:
                items.append(name)
    if len(items) > MAX_PRESET_ITEMS:
        raise SettingsError(f"Too many {what}s ({len(items)}): at most {MAX_PRESET_ITEMS}.")
    return tuple(items)


def _number(key: str, value: Any, lo: float, hi: float, integer: bool) -> float | int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{key} must be a number, got {value!r}.") from None
    if not math.isfinite(number) or not lo <= number <= hi:
        raise SettingsError(f"{key} must be between {lo:g} and {hi:g}, got {value!r}.")
    if integer:
        if number != int(number):
            raise SettingsError(f"{key} must be a whole number, got {value!r}.")
        return int(number)
    return number


def _validate_user_setting(key: str, value: Any) -> Any:
    if key == "format":
        fmt = str(value).lower().lstrip(".")
        if fmt not in AUDIO_FORMATS:
            raise SettingsError(f"Unknown audio format '{value}'. Choose one of: {', '.join(AUDIO_FORMATS)}.")
        return fmt
    if key == "duration":
        from engine.prompt import parse_duration  # accepts 30, "30", "0:30"; friendly range error

        return parse_duration(value)
    if key == "tempo":  # the bot validates against the catalogue; here: a sane short label
        return _clean_name(value, "tempo")
    raise SettingsError(f"Unknown setting '{key}'. You can set: {', '.join(USER_DEFAULTS)}.")


def _validate_guild_setting(key: str, value: Any) -> Any:
    if key == "allowed_channels":
        if isinstance(value, (str, int)):
            value = [value]
        channels = sorted({str(int(v)) for v in value}, key=int) if value else []
        if len(channels) > MAX_ALLOWED_CHANNELS:
            raise SettingsError(f"Too many channels ({len(channels)}): at most {MAX_ALLOWED_CHANNELS}.")
        return channels
    if key in _GUILD_RANGES:
        lo, hi = _GUILD_RANGES[key]
        return _number(key, value, lo, hi, integer=key != "max_duration")
    raise SettingsError(f"Unknown server setting '{key}'. Known: {', '.join(GUILD_DEFAULTS)}.")


# ----------------------------------------------------------------------------------------------
# Store
# ----------------------------------------------------------------------------------------------
class Store:
    """The persistent state of one TexTuneS deployment. Thread-safe; one per process is enough."""

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

    # -- lifecycle ------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        files_dir: str | Path | None = None,
        migrate_to: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> Store:
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
            store.forget_expired_tokens()
        return store

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._conn.close()
        if self._owns_files_dir:
            shutil.rmtree(self.files_dir, ignore_errors=True)

    def __enter__(self) -> Store:
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

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, tuple(params)).fetchall()

    # -- jobs -----------------------------------------------------------------------------------
    def create_job(
        self,
        *,
        user_id: str | int,
        request: Mapping[str, Any],
        guild_id: str | int | None = None,
        channel_id: str | int | None = None,
        interaction_id: str | int | None = None,
        interaction_token: str | None = None,
        kind: str = "bgm",
        parent_track_id: str | None = None,
        job_id: str | None = None,
    ) -> JobRecord:
        """Record a new queued job. ``request`` must be JSON-able (MusicSpec values are converted)."""
        if kind not in JOB_KINDS:
            raise ValueError(f"job kind must be one of {JOB_KINDS}, got {kind!r}")
        request = dict(request)
        if isinstance(request.get("spec"), MusicSpec):
            request["spec"] = spec_to_dict(request["spec"])
        now = self._clock()
        row = {
            "id": job_id or uuid.uuid4().hex[:12],
            "kind": kind,
            "request": _dumps(request),
            "user_id": _id(user_id),
            "guild_id": _id(guild_id),
            "channel_id": _id(channel_id),
            "interaction_id": _id(interaction_id),
            "interaction_token": interaction_token,
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

    def job_by_message(self, message_id: str | int) -> JobRecord | None:
        """The job whose result was posted as ``message_id`` (for 🔁 reactions on old messages)."""
        rows = self._query(
            "SELECT * FROM jobs WHERE message_id = ? ORDER BY created_at DESC LIMIT 1", (_id(message_id),)
        )
        return JobRecord._from_row(rows[0]) if rows else None

    def job_spec(self, job_id: str) -> MusicSpec:
        job = self.get_job(job_id)
        if job is None:
            raise KeyError(f"no job {job_id!r}")
        return job.spec

    _UPDATABLE = frozenset(
        {
            "state", "message_id", "error", "attempts", "channel_id", "interaction_id",
            "interaction_token", "request", "started_at", "finished_at", "delivered_at", "claimed_at",
            "parent_track_id",
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
            values["request"] = _dumps(values["request"])
        for key in ("message_id", "channel_id", "interaction_id"):
            if key in values:
                values[key] = _id(values[key])
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
        runs would otherwise crash-loop the bot forever.

        Jobs claimed for delivery are left alone: their tracks are already stored (the claim comes
        after them), so regenerating would waste the work and lose the claim's answer to "was it
        posted?". ``claimed_undelivered`` lists them for the bot to check against Discord.
        """
        requeue, gave_up = [], []
        with self._tx() as conn:
            now = self._clock()
            rows = conn.execute(
                "SELECT * FROM jobs WHERE state IN ('queued', 'running') AND claimed_at IS NULL "
                "ORDER BY created_at, rowid"
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
            (_id(user_id), *states),
        )
        return [JobRecord._from_row(r) for r in rows]

    def count_jobs_since(
        self, since: float, *, user_id: str | int | None = None, guild_id: str | int | None = None
    ) -> int:
        """Jobs created at or after ``since`` (rate limits that survive restarts)."""
        sql, params = "SELECT COUNT(*) FROM jobs WHERE created_at >= ?", [since]
        if user_id is not None:
            sql, params = sql + " AND user_id = ?", [*params, _id(user_id)]
        if guild_id is not None:
            sql, params = sql + " AND guild_id = ?", [*params, _id(guild_id)]
        return int(self._query(sql, params)[0][0])

    # -- delivery (exactly once) ----------------------------------------------------------------
    def claim_delivery(self, job_id: str) -> bool:
        """Claim the right to post this job's result. True exactly once per job.

        One conditional UPDATE: sqlite serialises writers, so even two processes sharing the file
        cannot both see ``rowcount == 1``.
        """
        with self._lock:
            cur = self._conn.execute(
                "UPDATE jobs SET claimed_at = ?, updated_at = ? "
                "WHERE id = ? AND delivered_at IS NULL AND claimed_at IS NULL",
                (self._clock(), self._clock(), job_id),
            )
            return cur.rowcount == 1

    def release_delivery(self, job_id: str) -> bool:
        """Give a claim back after a send that certainly failed, so a later retry may claim it."""
        with self._lock:
            cur = self._conn.execute(
                "UPDATE jobs SET claimed_at = NULL, updated_at = ? WHERE id = ? AND delivered_at IS NULL",
                (self._clock(), job_id),
            )
            return cur.rowcount == 1

    def mark_delivered(self, job_id: str, message_id: str | int | None) -> None:
        with self._lock:
            now = self._clock()
            cur = self._conn.execute(
                "UPDATE jobs SET delivered_at = ?, claimed_at = COALESCE(claimed_at, ?), "
                "message_id = COALESCE(?, message_id), updated_at = ? WHERE id = ?",
                (now, now, _id(message_id), now, job_id),
            )
            if cur.rowcount != 1:
                raise KeyError(f"no job {job_id!r}")

    def pending_deliveries(self) -> list[JobRecord]:
        """Finished (done/failed) jobs whose result nobody has claimed yet, oldest first."""
        rows = self._query(
            "SELECT * FROM jobs WHERE state IN ('done', 'failed') AND delivered_at IS NULL "
            "AND claimed_at IS NULL ORDER BY created_at, rowid"
        )
        return [JobRecord._from_row(r) for r in rows]

    def claimed_undelivered(self) -> list[JobRecord]:
        """Jobs claimed for delivery but never marked delivered: the process died mid-send.

        The send may or may not have reached Discord, so the bot should look (e.g. fetch the
        interaction's original response) before deciding to ``release_delivery`` and resend.
        """
        rows = self._query(
            "SELECT * FROM jobs WHERE claimed_at IS NOT NULL AND delivered_at IS NULL ORDER BY created_at, rowid"
        )
        return [JobRecord._from_row(r) for r in rows]

    def forget_expired_tokens(self, now: float | None = None) -> int:
        """Wipe interaction tokens older than Discord's 15 minutes: useless, and still a secret."""
        now = self._clock() if now is None else now
        with self._lock:
            cur = self._conn.execute(
                "UPDATE jobs SET interaction_token = NULL "
                "WHERE interaction_token IS NOT NULL AND created_at < ?",
                (now - INTERACTION_TTL,),
            )
            return cur.rowcount

    # -- tracks ---------------------------------------------------------------------------------
    def add_track(
        self,
        job_id: str,
        track: Track,
        *,
        fmt: str = "mp3",
        index: int | None = None,
        analysis: dict | None = None,
    ) -> TrackRecord:
        """Write the track's audio (+ .mid) under ``files_dir`` and record it for ``job_id``."""
        fmt = str(fmt).lower().lstrip(".")
        if fmt not in AUDIO_FORMATS:
            raise ValueError(f"format must be one of {AUDIO_FORMATS}, got {fmt!r}")
        job = self.get_job(job_id)
        if job is None:
            raise KeyError(f"no job {job_id!r}")
        audio = np.asarray(track.audio)
        if audio.ndim == 1:
            audio = audio[None, :]
        track_id = uuid.uuid4().hex[:16]
        # the expensive part (encoding) runs outside the lock
        data = _encode_audio(track, fmt)
        audio_path = self.files_dir / f"{track_id}.{fmt}"
        _write_atomically(audio_path, data)
        midi_path = None
        if track.midi:
            midi_path = self.files_dir / f"{track_id}.mid"
            _write_atomically(midi_path, bytes(track.midi))
        meta = dict(track.meta or {})
        if analysis is None:
            analysis = meta.pop("analysis", None) or job.request.get("analysis")
        row = {
            "id": track_id,
            "job_id": job_id,
            "user_id": job.user_id,
            "guild_id": job.guild_id,
            "prompt": track.spec.prompt,
            "seed": int(track.seed) if track.seed is not None else None,
            "params": _dumps(spec_to_dict(track.spec)),
            "backend": track.backend,
            "model": track.model,
            "analysis": _dumps(analysis) if analysis is not None else None,
            "meta": _dumps(meta),
            "file": audio_path.name,
            "midi_file": midi_path.name if midi_path else None,
            "sha256": hashlib.sha256(data).hexdigest(),
            "duration": float(audio.shape[1] / track.sample_rate),
            "sample_rate": int(track.sample_rate),
            "channels": int(audio.shape[0]),
            "frames": int(audio.shape[1]),
            "format": fmt,
            "bytes": len(data),
            "midi_bytes": len(track.midi or b""),
            "created_at": self._clock(),
        }
        try:
            with self._lock:
                if index is None:
                    index = self._conn.execute(
                        "SELECT COUNT(*) FROM tracks WHERE job_id = ?", (job_id,)
                    ).fetchone()[0]
                row["idx"] = int(index)
                self._db["tracks"].insert(row)
                return self._get_track_locked(track_id)  # type: ignore[return-value]
        except BaseException:
            # no row, no file: never leave orphans that retention cannot see
            audio_path.unlink(missing_ok=True)
            if midi_path:
                midi_path.unlink(missing_ok=True)
            raise

    def _track_from_row(self, row: Mapping[str, Any]) -> TrackRecord:
        deleted = bool(row["file_deleted"])
        return TrackRecord(
            id=row["id"],
            job_id=row["job_id"],
            index=row["idx"],
            user_id=row["user_id"],
            guild_id=row["guild_id"],
            prompt=row["prompt"],
            seed=row["seed"],
            params=_loads(row["params"], {}),
            backend=row["backend"],
            model=row["model"],
            analysis=_loads(row["analysis"]),
            meta=_loads(row["meta"], {}),
            path=None if deleted or not row["file"] else self.files_dir / row["file"],
            midi_path=None if deleted or not row["midi_file"] else self.files_dir / row["midi_file"],
            sha256=row["sha256"],
            duration=row["duration"],
            sample_rate=row["sample_rate"],
            channels=row["channels"],
            frames=row["frames"],
            format=row["format"],
            bytes=row["bytes"],
            midi_bytes=row["midi_bytes"],
            file_deleted=deleted,
            created_at=row["created_at"],
        )

    def _get_track_locked(self, track_id: str) -> TrackRecord | None:
        row = self._conn.execute("SELECT * FROM tracks WHERE id = ?", (track_id,)).fetchone()
        return self._track_from_row(row) if row else None

    def get_track(self, track_id: str) -> TrackRecord | None:
        with self._lock:
            return self._get_track_locked(track_id)

    def tracks_of_job(self, job_id: str) -> list[TrackRecord]:
        rows = self._query("SELECT * FROM tracks WHERE job_id = ? ORDER BY idx, created_at, rowid", (job_id,))
        return [self._track_from_row(r) for r in rows]

    def read_track_bytes(self, track_id: str) -> bytes:
        """The stored file as-is (to re-post it), checked against its sha256."""
        record = self._require_available(track_id)
        assert record.path is not None
        try:
            data = record.path.read_bytes()
        except FileNotFoundError:
            raise TrackFileMissing(self._missing_message(record)) from None
        if record.sha256 and hashlib.sha256(data).hexdigest() != record.sha256:
            raise StoreError(f"track {track_id} file is corrupt (sha256 mismatch)")
        return data

    def _missing_message(self, record: TrackRecord) -> str:
        return (
            f"The audio of this track was removed to save space. Regenerate it "
            f"(seed {record.seed}) or favorite tracks you want to keep."
        )

    def _require_available(self, track_id: str) -> TrackRecord:
        record = self.get_track(track_id)
        if record is None:
            raise UnknownTrack("That track is no longer in the library.")
        if not record.available:
            raise TrackFileMissing(self._missing_message(record))
        return record

    def load_track(self, track_id: str) -> Track:
        """Decode the stored audio back into a Track (float32, (channels, frames), same spec/seed)."""
        record = self._require_available(track_id)
        assert record.path is not None
        if not record.path.exists():
            raise TrackFileMissing(self._missing_message(record))
        audio, rate = _decode_audio(record.path)
        if rate != record.sample_rate:
            raise StoreError(f"track {track_id}: file is {rate} Hz but {record.sample_rate} Hz was recorded")
        if audio.shape[0] != record.channels:  # codecs may upmix mono; fold back to what we stored
            audio = audio.mean(axis=0, keepdims=True) if record.channels == 1 else audio[: record.channels]
        midi = record.midi_path.read_bytes() if record.midi_path and record.midi_path.exists() else None
        meta = dict(record.meta)
        meta.update(track_id=record.id, job_id=record.job_id)
        return Track(
            audio=_fit_frames(audio.astype(np.float32, copy=False), record.frames),
            sample_rate=record.sample_rate,
            spec=record.spec,
            seed=int(record.seed) if record.seed is not None else 0,
            backend=record.backend or "",
            model=record.model or "",
            midi=midi,
            meta=meta,
        )

    # -- history / favorites --------------------------------------------------------------------
    def history(
        self, user_id: str | int, limit: int = 10, *, guild_id: str | int | None = None
    ) -> list[TrackRecord]:
        """The user's tracks, newest first (optionally only those made in one guild)."""
        limit = max(1, min(int(limit), 100))
        sql, params = "SELECT * FROM tracks WHERE user_id = ?", [_id(user_id)]
        if guild_id is not None:
            sql, params = sql + " AND guild_id = ?", [*params, _id(guild_id)]
        rows = self._query(sql + " ORDER BY created_at DESC, rowid DESC LIMIT ?", [*params, limit])
        return [self._track_from_row(r) for r in rows]

    def set_favorite(self, user_id: str | int, track_id: str, on: bool = True) -> bool:
        """Favorite (or un-favorite) a track; returns whether it is a favorite now."""
        uid = _id(user_id)
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM tracks WHERE id = ?", (track_id,)).fetchone() is None:
                raise UnknownTrack("That track is no longer in the library.")
            if not on:
                conn.execute("DELETE FROM favorites WHERE user_id = ? AND track_id = ?", (uid, track_id))
                return False
            exists = conn.execute(
                "SELECT 1 FROM favorites WHERE user_id = ? AND track_id = ?", (uid, track_id)
            ).fetchone()
            if exists:
                return True
            count = conn.execute("SELECT COUNT(*) FROM favorites WHERE user_id = ?", (uid,)).fetchone()[0]
            if count >= self.max_favorites:  # favorites are exempt from retention: bound them
                raise SettingsError(
                    f"You already have {count} favorites (the limit). Remove one with /favorite first."
                )
            conn.execute(
                "INSERT INTO favorites (user_id, track_id, created_at) VALUES (?, ?, ?)",
                (uid, track_id, self._clock()),
            )
            return True

    def is_favorite(self, user_id: str | int, track_id: str) -> bool:
        rows = self._query(
            "SELECT 1 FROM favorites WHERE user_id = ? AND track_id = ?", (_id(user_id), track_id)
        )
        return bool(rows)

    def favorites(self, user_id: str | int, limit: int = 100) -> list[TrackRecord]:
        rows = self._query(
            "SELECT t.* FROM favorites f JOIN tracks t ON t.id = f.track_id WHERE f.user_id = ? "
            "ORDER BY f.created_at DESC, f.rowid DESC LIMIT ?",
            (_id(user_id), max(1, int(limit))),
        )
        return [self._track_from_row(r) for r in rows]

    # -- retention ------------------------------------------------------------------------------
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

    # -- settings -------------------------------------------------------------------------------
    def user_settings(self, user_id: str | int) -> dict[str, Any]:
        """The user's defaults merged over ``USER_DEFAULTS``."""
        rows = self._query("SELECT settings FROM user_settings WHERE user_id = ?", (_id(user_id),))
        return {**USER_DEFAULTS, **(_loads(rows[0][0], {}) if rows else {})}

    def set_user_settings(self, user_id: str | int, **kw: Any) -> dict[str, Any]:
        """Set per-user defaults (tempo, duration, format); a value of None resets that one."""
        return self._set_settings(
            "user_settings", "user_id", _id(user_id), kw, _validate_user_setting, USER_DEFAULTS
        )

    def guild_settings(
        self, guild_id: str | int | None, defaults: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The guild's settings merged over ``defaults`` (e.g. from the bot's config) over GUILD_DEFAULTS."""
        base = {**GUILD_DEFAULTS, **(defaults or {})}
        if guild_id is None:  # DMs: no guild overrides
            return {k: list(v) if isinstance(v, list) else v for k, v in base.items()}
        rows = self._query("SELECT settings FROM guild_settings WHERE guild_id = ?", (_id(guild_id),))
        return {**base, **(_loads(rows[0][0], {}) if rows else {})}

    def set_guild_settings(self, guild_id: str | int, **kw: Any) -> dict[str, Any]:
        """Set guild settings (validated; None resets a key to its default); returns the merged result."""
        return self._set_settings(
            "guild_settings", "guild_id", _id(guild_id), kw, _validate_guild_setting, GUILD_DEFAULTS
        )

    def _set_settings(
        self,
        table: str,
        key_column: str,
        key: str | None,
        changes: Mapping[str, Any],
        validate: Callable[[str, Any], Any],
        defaults: Mapping[str, Any],
    ) -> dict[str, Any]:
        if key is None:
            raise ValueError(f"{key_column} is required")
        cleaned = {
            name: (None if value is None else validate(name, value)) for name, value in changes.items()
        }
        with self._tx() as conn:
            row = conn.execute(f"SELECT settings FROM {table} WHERE {key_column} = ?", (key,)).fetchone()
            current = _loads(row[0], {}) if row else {}
            for name, value in cleaned.items():
                if value is None:
                    current.pop(name, None)
                else:
                    current[name] = value
            conn.execute(
                f"INSERT INTO {table} ({key_column}, settings, updated_at) VALUES (?, ?, ?) "
                f"ON CONFLICT ({key_column}) DO UPDATE SET settings = excluded.settings, "
                "updated_at = excluded.updated_at",
                (key, _dumps(current), self._clock()),
            )
        return {**defaults, **current}

    # -- guild categories and presets ("themes") ------------------------------------------------
    def add_guild_category(
        self,
        guild_id: str | int,
        kind: str,
        en: str,
        ko: str | None = None,
        *,
        created_by: str | int | None = None,
    ) -> GuildCategory:
        """Add (or relabel) a guild-specific genre/mood/instrument/keyword shown in autocomplete."""
        if kind not in CATEGORY_KINDS:
            raise SettingsError(
                f"Unknown category kind '{kind}'. Choose one of: {', '.join(CATEGORY_KINDS)}."
            )
        en = _clean_name(en, "category name")
        ko = _clean_name(ko, "Korean name") if ko and str(ko).strip() else None
        gid = _id(guild_id)
        with self._tx() as conn:
            count = conn.execute(
                "SELECT COUNT(*) FROM guild_categories WHERE guild_id = ?", (gid,)
            ).fetchone()[0]
            exists = conn.execute(
                "SELECT 1 FROM guild_categories WHERE guild_id = ? AND kind = ? AND en = ?", (gid, kind, en)
            ).fetchone()
            if not exists and count >= MAX_GUILD_CATEGORIES:
                raise SettingsError(
                    f"This server already has {count} custom categories (the limit). Remove some first."
                )
            conn.execute(
                "INSERT INTO guild_categories (guild_id, kind, en, ko, created_by, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (guild_id, kind, en) DO UPDATE SET "
                "en = excluded.en, ko = excluded.ko",
                (gid, kind, en, ko, _id(created_by), self._clock()),
            )
        return GuildCategory(gid or "", kind, en, ko)

    def remove_guild_category(self, guild_id: str | int, kind: str, name: str) -> bool:
        """Remove by English or Korean name (case-insensitive); returns whether something was removed."""
        name = " ".join(str(name).split())
        with self._lock:
            cur = self._conn.execute(
                "DELETE FROM guild_categories WHERE guild_id = ? AND kind = ? AND (en = ? OR ko = ?)",
                (_id(guild_id), kind, name, name),
            )
            return cur.rowcount > 0

    def guild_categories(self, guild_id: str | int | None, kind: str | None = None) -> list[GuildCategory]:
        if guild_id is None:
            return []
        sql, params = "SELECT * FROM guild_categories WHERE guild_id = ?", [_id(guild_id)]
        if kind is not None:
            sql, params = sql + " AND kind = ?", [*params, kind]
        rows = self._query(sql + " ORDER BY kind, en", params)
        return [GuildCategory(r["guild_id"], r["kind"], r["en"], r["ko"]) for r in rows]

    def complete_guild_categories(
        self, guild_id: str | int | None, kind: str, text: str = "", limit: int = 25
    ) -> list[GuildCategory]:
        """Autocomplete over a guild's own entries: prefix matches first, then substring (en or ko)."""
        needle = " ".join(str(text or "").split()).casefold()
        entries = self.guild_categories(guild_id, kind)
        if not needle:
            return entries[:limit]
        prefix = [e for e in entries if e.en.casefold().startswith(needle) or (e.ko or "").startswith(needle)]
        inner = [
            e for e in entries if e not in prefix and (needle in e.en.casefold() or needle in (e.ko or ""))
        ]
        return (prefix + inner)[:limit]

    def find_guild_category(self, guild_id: str | int | None, kind: str, name: str) -> GuildCategory | None:
        """Exact (case/space-insensitive) lookup by English or Korean name."""
        needle = " ".join(str(name or "").split()).casefold()
        for entry in self.guild_categories(guild_id, kind):
            if needle in (entry.en.casefold(), (entry.ko or "").casefold()):
                return entry
        return None

    def add_guild_preset(
        self,
        guild_id: str | int,
        name: str,
        *,
        genres: Iterable[str] | str = (),
        moods: Iterable[str] | str = (),
        tempo: str | None = None,
        instruments: Iterable[str] | str = (),
        keywords: Iterable[str] | str = (),
        duration: float | str | None = None,
        created_by: str | int | None = None,
    ) -> GuildPreset:
        """Create or replace a preset ("theme", e.g. Study / Horror game / Wedding)."""
        preset = GuildPreset(
            guild_id=_id(guild_id) or "",
            name=_clean_name(name, "preset name"),
            genres=_clean_list(genres, "genre"),
            moods=_clean_list(moods, "mood"),
            tempo=_clean_name(tempo, "tempo") if tempo and str(tempo).strip() else None,
            instruments=_clean_list(instruments, "instrument"),
            keywords=_clean_list(keywords, "keyword"),
            duration=None,
        )
        if duration is not None and str(duration).strip():
            from engine.prompt import parse_duration

            preset = dataclasses.replace(preset, duration=parse_duration(duration))
        if not (preset.genres or preset.moods or preset.instruments or preset.keywords or preset.tempo):
            raise SettingsError(
                f"The preset '{preset.name}' is empty: give it at least a genre, mood or keyword."
            )
        with self._tx() as conn:
            count = conn.execute(
                "SELECT COUNT(*) FROM guild_presets WHERE guild_id = ?", (preset.guild_id,)
            ).fetchone()[0]
            exists = conn.execute(
                "SELECT 1 FROM guild_presets WHERE guild_id = ? AND name = ?", (preset.guild_id, preset.name)
            ).fetchone()
            if not exists and count >= MAX_GUILD_PRESETS:
                raise SettingsError(f"This server already has {count} presets (the limit). Remove one first.")
            conn.execute(
                "INSERT INTO guild_presets (guild_id, name, genres, moods, tempo, instruments, keywords, duration, "
                "created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (guild_id, name) DO UPDATE SET name = excluded.name, genres = excluded.genres, "
                "moods = excluded.moods, tempo = excluded.tempo, instruments = excluded.instruments, "
                "keywords = excluded.keywords, duration = excluded.duration",
                (
                    preset.guild_id, preset.name, _dumps(list(preset.genres)), _dumps(list(preset.moods)),
                    preset.tempo, _dumps(list(preset.instruments)), _dumps(list(preset.keywords)),
                    preset.duration, _id(created_by), self._clock(),
                ),
            )  # fmt: skip
        return preset

    def remove_guild_preset(self, guild_id: str | int, name: str) -> bool:
        with self._lock:
            cur = self._conn.execute(
                "DELETE FROM guild_presets WHERE guild_id = ? AND name = ?",
                (_id(guild_id), " ".join(str(name).split())),
            )
            return cur.rowcount > 0

    @staticmethod
    def _preset_from_row(row: Mapping[str, Any]) -> GuildPreset:
        return GuildPreset(
            guild_id=row["guild_id"],
            name=row["name"],
            genres=tuple(_loads(row["genres"], [])),
            moods=tuple(_loads(row["moods"], [])),
            tempo=row["tempo"],
            instruments=tuple(_loads(row["instruments"], [])),
            keywords=tuple(_loads(row["keywords"], [])),
            duration=row["duration"],
        )

    def guild_presets(self, guild_id: str | int | None) -> list[GuildPreset]:
        if guild_id is None:
            return []
        rows = self._query("SELECT * FROM guild_presets WHERE guild_id = ? ORDER BY name", (_id(guild_id),))
        return [self._preset_from_row(r) for r in rows]

    def get_guild_preset(self, guild_id: str | int | None, name: str) -> GuildPreset | None:
        if guild_id is None:
            return None
        rows = self._query(
            "SELECT * FROM guild_presets WHERE guild_id = ? AND name = ?",
            (_id(guild_id), " ".join(str(name).split())),
        )
        return self._preset_from_row(rows[0]) if rows else None

    def complete_guild_presets(
        self, guild_id: str | int | None, text: str = "", limit: int = 25
    ) -> list[GuildPreset]:
        needle = " ".join(str(text or "").split()).casefold()
        presets = self.guild_presets(guild_id)
        prefix = [p for p in presets if p.name.casefold().startswith(needle)]
        inner = [p for p in presets if p not in prefix and needle in p.name.casefold()]
        return (prefix + inner)[:limit]
