"""Tracks in the store: audio files on disk (encode, decode, atomic writes), history and favorites."""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from engine.spec import Track
from engine.store.db import StoreBase
from engine.store.records import (
    AUDIO_FORMATS,
    SettingsError,
    StoreError,
    TrackFileMissing,
    TrackRecord,
    UnknownTrack,
    as_id,
    from_json,
    spec_to_dict,
    to_json,
)


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


class TracksMixin(StoreBase):
    """Store generated tracks as files plus rows; load them back; history and favorites."""

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
        track_id = uuid.uuid4().hex[:16]
        if track.encoded is not None:  # finished and encoded where it was made: kept as it is
            fmt, data = track.encoded.format, track.encoded.data
        else:  # the expensive part (encoding) runs outside the lock
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
            "params": to_json(spec_to_dict(track.spec)),
            "backend": track.backend,
            "model": track.model,
            "analysis": to_json(analysis) if analysis is not None else None,
            "meta": to_json(meta),
            "file": audio_path.name,
            "midi_file": midi_path.name if midi_path else None,
            "sha256": hashlib.sha256(data).hexdigest(),
            "duration": float(track.duration),
            "sample_rate": int(track.sample_rate),
            "channels": track.channels,
            "frames": track.frames,
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
            params=from_json(row["params"], {}),
            backend=row["backend"],
            model=row["model"],
            analysis=from_json(row["analysis"]),
            meta=from_json(row["meta"], {}),
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
        sql, params = "SELECT * FROM tracks WHERE user_id = ?", [as_id(user_id)]
        if guild_id is not None:
            sql, params = sql + " AND guild_id = ?", [*params, as_id(guild_id)]
        rows = self._query(sql + " ORDER BY created_at DESC, rowid DESC LIMIT ?", [*params, limit])
        return [self._track_from_row(r) for r in rows]

    def set_favorite(self, user_id: str | int, track_id: str, on: bool = True) -> bool:
        """Favorite (or un-favorite) a track; returns whether it is a favorite now."""
        uid = as_id(user_id)
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
            "SELECT 1 FROM favorites WHERE user_id = ? AND track_id = ?", (as_id(user_id), track_id)
        )
        return bool(rows)

    def favorites(self, user_id: str | int, limit: int = 100) -> list[TrackRecord]:
        rows = self._query(
            "SELECT t.* FROM favorites f JOIN tracks t ON t.id = f.track_id WHERE f.user_id = ? "
            "ORDER BY f.created_at DESC, f.rowid DESC LIMIT ?",
            (as_id(user_id), max(1, int(limit))),
        )
        return [self._track_from_row(r) for r in rows]
