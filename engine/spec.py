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


@dataclass
class Track:
    """One generated piece of audio.

    ``audio`` is float32 in [-1, 1] with shape ``(channels, samples)``.
    """

    audio: np.ndarray
    sample_rate: int
    spec: MusicSpec
    seed: int
    backend: str  # "musicgen" or "arranger"
    model: str  # model id / path, or the arranger's soundfont name
    midi: bytes | None = None  # the arrangement (arranger backend) so creators can edit it
    meta: dict = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.audio.shape[-1] / float(self.sample_rate)

    @property
    def channels(self) -> int:
        return int(self.audio.shape[0])
