"""What travels through Redis: key names, batch and result entries (JSON + raw audio), a Lua script.

Nothing here is pickled: a Redis entry is data, never code. A finished track travels as its
encoded file (the worker finished and encoded it); raw audio (a continuation's source, a job that
asked for no finishing) as float32 (exact). Every decode is checked against its declared, capped size.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import numpy as np

from engine.broker.base import BatchItem, Outcome
from engine.job_types import Finishing, JobRequest
from engine.spec import EncodedAudio, MusicSpec, Track

MAX_SECONDS = 1200.0  # no track we make is longer; a bigger decode is refused
MAX_CHANNELS = 2
MAX_FIELD_BYTES = 512 * 1024 * 1024  # one field; 20 minutes of stereo 48 kHz float32 is 461 MB
MAX_JSON_BYTES = 4 * 1024 * 1024
AUDIO_FILE_FORMATS = ("wav", "mp3", "ogg")  # what a worker may finish a track as


class WireError(ValueError):
    """An entry that is not what we write (corrupt, hostile, or from an incompatible version)."""


@dataclasses.dataclass(frozen=True)
class Keys:
    """Every Redis key of one deployment, under ``prefix`` (several bots can share a Redis)."""

    prefix: str = "textunes"

    def __getattr__(self, name: str) -> str:  # batches, results, dead, ready, workers, ...
        if name.startswith("_"):
            raise AttributeError(name)
        return f"{self.prefix}:{name}"

    def result(self, job_id: str) -> str:
        return f"{self.prefix}:result:{job_id}"

    def cancel(self, job_id: str) -> str:
        return f"{self.prefix}:cancel:{job_id}"


WORKERS_GROUP = "workers"
FRONTEND_GROUP = "frontend"


# -- specs and tracks ------------------------------------------------------------------------------

_SPEC_FIELDS = {f.name: f for f in dataclasses.fields(MusicSpec)}
_TUPLES = ("genres", "moods", "instruments", "keywords", "reasons")


def spec_to_json(spec: MusicSpec) -> dict:
    # field by field: MusicSpec holds only scalars and tuples of str, and asdict's deep copy was
    # most of a result's encoding time
    data = {}
    for name in _SPEC_FIELDS:
        value = getattr(spec, name)
        data[name] = list(value) if isinstance(value, tuple) else value
    return data


def spec_from_json(data: Any) -> MusicSpec:
    if not isinstance(data, dict) or not isinstance(data.get("prompt"), str):
        raise WireError("spec without a prompt")
    kw = {}
    for name, value in data.items():
        if name not in _SPEC_FIELDS:
            continue  # a newer sender's field: ignore
        if name in _TUPLES:
            value = tuple(str(v) for v in value)
        elif name == "bpm":
            value = int(value)
        elif name in ("energy", "duration"):
            value = float(value)
        kw[name] = value
    return MusicSpec(**kw)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, set)):
        return list(value)
    return str(value)


def dumps(value: Any) -> bytes:
    return json.dumps(value, default=_json_default, separators=(",", ":")).encode()


def loads(raw: bytes | None) -> Any:
    if raw is None or len(raw) > MAX_JSON_BYTES:
        raise WireError("missing or oversized JSON field")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise WireError(f"bad JSON: {exc}") from exc


def encode_audio(audio: np.ndarray) -> bytes:
    """Raw little-endian float32 samples of (channels, samples) audio: exact, and free to encode
    and decode (FLAC cost ~80 ms + ~60 ms per 30-s track here, on the front end's event loop)."""
    return np.ascontiguousarray(audio, dtype="<f4").tobytes()


def decode_audio(data: bytes | None, sample_rate: int, channels: int, frames: int) -> np.ndarray:
    if not 1 <= channels <= MAX_CHANNELS or not 0 <= frames <= int(MAX_SECONDS * sample_rate):
        raise WireError("audio does not match its description")
    if data is None or len(data) != channels * frames * 4:
        raise WireError("missing or truncated audio")
    return np.frombuffer(data, dtype="<f4").reshape(channels, frames).astype(np.float32)


def _track_head(track: Track, audio_field: str) -> tuple[dict, bytes]:
    """The track's description and its one big field: the finished file when it has one (a few
    hundred KB), else the raw samples."""
    head = {
        "sample_rate": int(track.sample_rate),
        "spec": spec_to_json(track.spec),
        "seed": int(track.seed),
        "backend": str(track.backend),
        "model": str(track.model),
        "meta": track.meta,
        "audio": audio_field,
        "midi": track.midi is not None,
    }
    if track.encoded is not None:
        enc = track.encoded
        head.update(channels=int(enc.channels), frames=int(enc.frames), format=str(enc.format))
        return head, bytes(enc.data)
    audio = np.asarray(track.audio)
    if audio.ndim == 1:
        audio = audio[None, :]
    head.update(channels=int(audio.shape[0]), frames=int(audio.shape[1]))
    return head, encode_audio(audio)


def _track_from(head: dict, fields: dict[bytes, bytes], audio_field: str) -> Track:
    rate = int(head["sample_rate"])
    if not 1000 <= rate <= 384000:
        raise WireError("implausible sample rate")
    midi = fields.get(f"midi:{audio_field}".encode()) if head.get("midi") else None
    if midi is not None and len(midi) > MAX_FIELD_BYTES:
        raise WireError("oversized MIDI")
    channels, frames = int(head["channels"]), int(head["frames"])
    encoded = None
    if head.get("format") is not None:
        data = fields.get(audio_field.encode())
        if head["format"] not in AUDIO_FILE_FORMATS or not 1 <= channels <= MAX_CHANNELS:
            raise WireError("unknown audio file format")
        if not data or len(data) > MAX_FIELD_BYTES or not 0 <= frames <= int(MAX_SECONDS * rate):
            raise WireError("missing or oversized audio file")
        encoded = EncodedAudio(bytes(data), str(head["format"]), channels, frames)
        audio = np.zeros((channels, 0), dtype=np.float32)  # the samples stay on the worker
    else:
        audio = decode_audio(fields.get(audio_field.encode()), rate, channels, frames)
    return Track(
        audio=audio,
        sample_rate=rate,
        spec=spec_from_json(head["spec"]),
        seed=int(head["seed"]),
        backend=str(head["backend"]),
        model=str(head["model"]),
        midi=midi,
        meta=dict(head.get("meta") or {}),
        encoded=encoded,
    )


def _finishing_from(data: Any) -> Finishing | None:
    if data is None:
        return None
    if not isinstance(data, dict) or data.get("format") not in AUDIO_FILE_FORMATS:
        raise WireError("bad finishing")
    duration = data.get("duration")
    return Finishing(
        format=str(data["format"]),
        duration=None if duration is None else float(duration),
        loop=bool(data.get("loop", False)),
    )


# -- batches ---------------------------------------------------------------------------------------


def encode_batch(batch_id: str, items: list[BatchItem]) -> dict[str, bytes]:
    fields: dict[str, bytes] = {}
    jobs = []
    for n, item in enumerate(items):
        req = item.request
        job = {
            "job_id": item.job_id,
            "user_id": req.user_id,
            "guild_id": req.guild_id,
            "spec": spec_to_json(req.spec),
            "samples": req.samples,
            "seed": req.seed,
            "extend_seconds": req.extend_seconds,
            "continue_from": None,
            "finishing": dataclasses.asdict(req.finishing) if req.finishing is not None else None,
        }
        if req.continue_from is not None:
            name = f"audio:{n}"
            head, data = _track_head(req.continue_from, name)
            fields[name] = data
            if req.continue_from.midi is not None:
                fields[f"midi:{name}"] = req.continue_from.midi
            job["continue_from"] = head
        jobs.append(job)
    fields["batch"] = dumps({"batch_id": batch_id, "sent_at": time.time(), "jobs": jobs})
    return fields


def decode_batch(fields: dict[bytes, bytes]) -> tuple[dict, list[BatchItem]]:
    head = loads(fields.get(b"batch"))
    items = []
    try:
        for job in head["jobs"]:
            cont = job.get("continue_from")
            request = JobRequest(
                user_id=str(job["user_id"]),
                spec=spec_from_json(job["spec"]),
                samples=int(job["samples"]),
                seed=None if job.get("seed") is None else int(job["seed"]),
                guild_id=job.get("guild_id"),
                job_id=str(job["job_id"]),
                continue_from=_track_from(cont, fields, cont["audio"]) if cont else None,
                extend_seconds=float(job.get("extend_seconds") or 0.0),
                finishing=_finishing_from(job.get("finishing")),
            )
            items.append(BatchItem(str(job["job_id"]), request))
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"bad batch: {exc}") from exc
    if not items or len(items) > 64:
        raise WireError("a batch holds 1 to 64 jobs")
    return head, items


# -- results ---------------------------------------------------------------------------------------


def encode_result(job_id: str, outcome: Outcome, extra: dict) -> dict[str, bytes]:
    fields: dict[str, bytes] = {}
    tracks = []
    for n, track in enumerate(outcome.tracks):
        name = f"audio:{n}"
        head, data = _track_head(track, name)
        fields[name] = data
        if track.midi is not None:
            fields[f"midi:{name}"] = track.midi
        tracks.append(head)
    meta = {
        "job_id": job_id,
        "kind": outcome.kind,
        "message": outcome.message,
        "reason": outcome.reason,
        "detail": outcome.detail[:2000],
        "tracks": tracks,
        **extra,
    }
    fields["result"] = dumps(meta)
    return fields


def decode_result(fields: dict[bytes, bytes]) -> tuple[dict, Outcome]:
    meta = loads(fields.get(b"result"))
    try:
        kind = str(meta["kind"])
        if kind not in ("done", "failed", "retry", "dropped"):
            raise WireError(f"unknown outcome {kind!r}")
        tracks = [_track_from(head, fields, head["audio"]) for head in meta.get("tracks", [])[:64]]
        outcome = Outcome(
            kind,
            tracks=tracks,
            message=str(meta.get("message", "")),
            reason=str(meta.get("reason", "")),
            detail=str(meta.get("detail", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"bad result: {exc}") from exc
    return meta, outcome


# -- Lua: runs atomically inside Redis ------------------------------------------------------------

# Keep a busy worker's claim alive, but never steal a batch another worker reclaimed.
# 1: refreshed; 0: another worker owns it now; -1: gone (acknowledged: someone finished it).
REFRESH_CLAIM = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 then return -1 end
if p[1][2] ~= ARGV[3] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
return 1
"""
