"""The two values that flow through the whole product.

``MusicSpec`` is what to make: structured attributes (what the offline arranger reads) plus the
rendered text prompt (what MusicGen reads). ``Track`` is what came out.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass(frozen=True)
class MusicSpec:
    """A validated description of one piece of music.

    Names are canonical English catalogue names (``Lofi``, ``Calm``, ``Piano``); ``prompt`` is the
    MusicGen text prompt built from them (see ``engine.prompt``).
    """

    prompt: str
    genres: tuple[str, ...] = ()
    moods: tuple[str, ...] = ()
    instruments: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    tempo: str = "Medium"  # Slow / Medium / Fast (label shown to users)
    bpm: int = 100
    mode: str = "major"  # "major" or "minor"
    key: str | None = None  # tonic such as "C", "F#"; None lets the backend choose from the seed
    energy: float = 0.5  # 0 (still) .. 1 (intense)
    duration: float = 15.0  # seconds
    reasons: tuple[str, ...] = ()  # why each word was chosen (text mode), shown to users

    def with_(self, **changes) -> MusicSpec:
        return replace(self, **changes)


@dataclass(frozen=True)
class EncodedAudio:
    """A finished track's file (wav/mp3/ogg), encoded where the track was made: a remote worker
    sends this instead of the raw samples, and the store keeps it as it is."""

    data: bytes
    format: str
    channels: int
    frames: int


@dataclass
class Track:
    """One generated piece of audio.

    ``audio`` is float32 in [-1, 1] with shape ``(channels, samples)``. A track that came back
    from a remote worker already finished and encoded carries ``encoded`` and no samples
    (``audio`` has zero frames); ``duration``, ``channels`` and ``frames`` describe it either way.
    """

    audio: np.ndarray
    sample_rate: int
    spec: MusicSpec
    seed: int
    backend: str  # "musicgen" or "arranger"
    model: str  # model id / path, or the arranger's soundfont name
    midi: bytes | None = None  # the arrangement (arranger backend) so creators can edit it
    meta: dict = field(default_factory=dict)
    encoded: EncodedAudio | None = None

    @property
    def frames(self) -> int:
        return int(self.encoded.frames) if self.encoded is not None else int(self.audio.shape[-1])

    @property
    def duration(self) -> float:
        return self.frames / float(self.sample_rate)

    @property
    def channels(self) -> int:
        if self.encoded is not None:
            return int(self.encoded.channels)
        return 1 if np.ndim(self.audio) == 1 else int(self.audio.shape[0])
