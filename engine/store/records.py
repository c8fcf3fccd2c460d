"""Store records and their JSON forms: job/track/catalogue dataclasses, errors, spec <-> dict helpers."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import TexTuneSError, UserInputError
from engine.spec import MusicSpec

# a job's kind is a label its front end chooses ("bgm", "text", a button's name...): only its shape counts
JOB_KIND = re.compile(r"[a-z][a-z0-9_-]{0,31}")
JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
FINISHED_STATES = ("done", "failed", "cancelled")
CATEGORY_KINDS = ("genres", "moods", "instruments", "keywords")
AUDIO_FORMATS = ("wav", "mp3", "ogg")

_SPEC_FIELDS = {f.name: f for f in dataclasses.fields(MusicSpec)}
_TUPLE_FIELDS = ("genres", "moods", "instruments", "keywords", "reasons")


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


def to_json(value: Any) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False, allow_nan=False)


def from_json(text: str | None, empty: Any = None) -> Any:
    if text is None or text == "":
        return empty
    return json.loads(text)


def as_id(value: Any) -> str | None:
    """Ids arrive as int or str (front ends' numeric ids); store them as str."""
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
    parent_track_id: str | None
    state: str
    attempts: int
    error: str | None
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES

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

    @classmethod
    def _from_row(cls, row: Mapping[str, Any]) -> JobRecord:
        values = {f.name: row[f.name] for f in dataclasses.fields(cls)}
        values["request"] = from_json(row["request"], {})
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
