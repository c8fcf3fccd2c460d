"""The generation API every backend implements (modelled on audiocraft's ``MusicGen``).

    model = load_backend("auto")
    model.set_generation_params(guidance_scale=3.0, top_k=250, temperature=1.0)
    tracks = model.generate([spec_a, spec_b], samples=2, seed=7, progress=print)
    longer = model.generate_continuation(tracks[0], seconds=15)

``generate`` takes a batch of specs and returns ``len(specs) * samples`` tracks grouped by spec
(spec 0 sample 0, spec 0 sample 1, spec 1 sample 0, ...), each trimmed to its spec's duration.
It is synchronous and may be slow: callers off the event loop (the job engine) run it in a worker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from engine.spec import MusicSpec, Track

# progress(done, total): called from the generating thread; raising ``GenerationCancelled``
# inside it aborts the generation.
ProgressFn = Callable[[int, int], None]


class GenerationCancelled(Exception):
    """Raised (by a progress callback) to abort a running generation."""


@dataclass
class GenerationParams:
    guidance_scale: float = 3.0
    top_k: int = 250
    top_p: float = 0.0
    temperature: float = 1.0
    # windowed continuation for tracks longer than the model's window (MusicGen: 30 s)
    window_seconds: float = 30.0
    overlap_seconds: float = 10.0


@runtime_checkable
class MusicBackend(Protocol):
    name: str  # "musicgen" | "arranger"
    model_id: str
    sample_rate: int
    max_batch: int  # the most tracks (specs x samples) one generate call should take

    def set_generation_params(self, **params) -> None: ...

    def generate(
        self,
        specs: Sequence[MusicSpec],
        *,
        samples: int = 1,
        seed: int | None = None,
        progress: ProgressFn | None = None,
    ) -> list[Track]: ...

    def generate_continuation(
        self, track: Track, seconds: float, *, progress: ProgressFn | None = None
    ) -> Track: ...
