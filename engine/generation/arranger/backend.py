"""ArrangerBackend: the MusicBackend that arranges, renders and extends tracks offline."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

import numpy as np

from engine.generation.arranger.builder import Arrangement, arrange
from engine.generation.arranger.render import (
    PEAK_CEILING,
    RENDER_GAIN,
    SAMPLE_RATE,
    SOUNDFONT_NAME,
    declick_tail,
    fit_length,
    lofi_colour,
    render_first,
    to_rate,
)
from engine.generation.arranger.theory import NOTE_NAMES, InvalidArrangerInput, bars_for, tonic_pitch_class
from engine.generation.base import GenerationParams, ProgressFn
from engine.spec import MusicSpec, Track

MODEL_ID = f"{SOUNDFONT_NAME} arranger"
MAX_SECONDS = 600.0  # generous cap (specs are validated to <= 180 s upstream; continuations add to it)


class ArrangerBackend:
    """MusicBackend that arranges MIDI and renders it offline with a General MIDI SoundFont."""

    name = "arranger"
    model_id = MODEL_ID
    sample_rate = SAMPLE_RATE
    max_batch = 64

    def __init__(self) -> None:
        self.params = GenerationParams()

    def set_generation_params(self, **params) -> None:
        """Accepts the shared GenerationParams names; ``temperature`` widens melodic leaps here."""
        unknown = set(params) - set(GenerationParams.__dataclass_fields__)
        if unknown:
            raise InvalidArrangerInput(f"Unknown generation parameter(s): {', '.join(sorted(unknown))}.")
        for key, value in params.items():
            setattr(self.params, key, value)

    # -- MusicBackend API -----------------------------------------------------------------
    def generate(
        self,
        specs: Sequence[MusicSpec],
        *,
        samples: int = 1,
        seed: int | None = None,
        progress: ProgressFn | None = None,
    ) -> list[Track]:
        specs = list(specs)
        if samples < 1:
            raise InvalidArrangerInput(f"samples must be at least 1, got {samples}.")
        for spec in specs:
            self._check(spec)
        seed = random.randrange(2**31) if seed is None else int(seed)
        total = len(specs) * samples
        tracks: list[Track] = []
        if progress:
            progress(0, total)
        for spec in specs:
            for sample in range(samples):
                tracks.append(self._make(spec, seed + sample, sample_index=sample))
                if progress:
                    progress(len(tracks), total)
        return tracks

    def generate_continuation(
        self, track: Track, seconds: float, *, progress: ProgressFn | None = None, seed: int | None = None
    ) -> Track:
        """Extend ``track`` by ``seconds``: the same seed re-planned longer, joined at the old outro.

        The planner is prefix-stable, so the longer arrangement plays the same bars up to where the
        original's outro began; the new audio takes over there with a short crossfade, gain-matched to
        the (possibly loudness-normalised) original.
        """
        seconds = float(seconds)
        if not seconds > 0:
            raise InvalidArrangerInput(f"The extension must be positive, got {seconds:g} seconds.")
        spec = track.spec
        if progress:
            progress(0, 1)
        info = track.meta.get("arranger") or {}
        use_seed = int(track.seed if seed is None else seed)
        old = np.asarray(track.audio, dtype=np.float32)
        if old.ndim == 1:
            old = old[None, :]
        old = to_rate(old, track.sample_rate, self.sample_rate)
        if old.shape[0] == 1:
            old = np.repeat(old, 2, axis=0)
        old_len = old.shape[1]
        new_duration = old_len / self.sample_rate + seconds
        self._check(spec.with_(duration=min(new_duration, MAX_SECONDS)))
        bpm = float(spec.bpm)
        bar_seconds = 240.0 / bpm
        total_bars = bars_for(new_duration, bpm)
        intro = info.get("intro_bars")
        fade_out = float(track.meta.get("finish", {}).get("fade_out", 0.0) or 0.0)
        same_plan = track.backend == self.name and use_seed == track.seed and intro is not None
        new = self._render(
            spec.with_(duration=new_duration),
            use_seed,
            total_bars=total_bars,
            intro_bars=int(intro) if intro is not None else None,
        )
        audio, sr, arrangement, mid = new
        # where the old take hands over: its outro (same bars before it), never inside its fade-out
        limit = old_len / sr - max(fade_out, 0.25)
        if same_plan:
            join = min(int(info["outro_start_bar"]) * bar_seconds, limit)
        else:
            join = limit
        join = max(join, min(old_len / sr, 0.5))
        join_n = int(round(join * sr))
        xfade = min(int(0.12 * sr), join_n)
        total_n = int(round(new_duration * sr))
        audio = fit_length(audio, total_n)
        # match the new render's level to the old audio just before the join
        win = slice(max(0, join_n - 2 * sr), join_n)
        ref = float(np.sqrt(np.mean(old[:, win] ** 2)) + 1e-9)
        cur = float(np.sqrt(np.mean(audio[:, win] ** 2)) + 1e-9)
        gain = (
            float(np.clip(ref / cur, 0.05, 20.0))
            if same_plan
            else float(
                np.clip(ref / (np.sqrt(np.mean(audio[:, join_n : join_n + 2 * sr] ** 2)) + 1e-9), 0.05, 20.0)
            )
        )
        audio *= gain
        out = audio.copy()
        out[:, : join_n - xfade] = old[:, : join_n - xfade]
        ramp = np.linspace(0.0, 1.0, xfade, dtype=np.float32)
        seg = slice(join_n - xfade, join_n)
        out[:, seg] = old[:, seg] * (1.0 - ramp) + audio[:, seg] * ramp
        out = declick_tail(out, sr)
        if float(np.max(np.abs(out[:, seg.start :]))) > PEAK_CEILING:
            # a normalised original sits near full scale: limit only the new part, leave the old as is
            from engine.audio import limit_peaks

            out[:, seg.start :] = limit_peaks(out[:, seg.start :], sr, PEAK_CEILING)
        meta = dict(track.meta)
        meta.pop("finish", None)
        meta["arranger"] = self._meta(arrangement, mid)
        meta["continued_from_seed"] = track.seed
        meta["extended_seconds"] = seconds
        meta["join_seconds"] = join
        if progress:
            progress(1, 1)
        return Track(
            audio=out.astype(np.float32),
            sample_rate=sr,
            spec=spec.with_(duration=round(new_duration, 3)),
            seed=use_seed,
            backend=self.name,
            model=self.model_id,
            midi=mid,
            meta=meta,
        )

    # -- internals ------------------------------------------------------------------------
    def _check(self, spec: MusicSpec) -> None:
        if not spec.duration or not 0 < float(spec.duration) <= MAX_SECONDS:
            raise InvalidArrangerInput(
                f"Duration must be between 0 and {MAX_SECONDS:g} seconds, got {spec.duration}."
            )
        if not 30 <= float(spec.bpm) <= 300:
            raise InvalidArrangerInput(f"Tempo {spec.bpm} BPM is out of range: use 30-300 BPM.")
        tonic_pitch_class(spec.key)

    def _render(
        self, spec: MusicSpec, seed: int, *, total_bars: int | None = None, intro_bars: int | None = None
    ) -> tuple[np.ndarray, int, Arrangement, bytes]:
        arrangement = arrange(
            spec, seed, total_bars=total_bars, intro_bars=intro_bars, temperature=self.params.temperature
        )
        audio, sr, mid = render_first(arrangement.midi, float(spec.duration))
        audio = audio * RENDER_GAIN
        if arrangement.style == "lofi":
            audio = lofi_colour(audio, sr, seed)
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        if peak > PEAK_CEILING:  # rare dense arrangements: scale down rather than clip
            audio = audio * (PEAK_CEILING / peak)
        return audio.astype(np.float32), sr, arrangement, mid

    def _meta(self, arrangement: Arrangement, mid: bytes) -> dict:
        return {
            "style": arrangement.style,
            "key": NOTE_NAMES[arrangement.tonic],
            "mode": arrangement.mode,
            "bpm": arrangement.bpm,
            "bars": arrangement.total_bars,
            "intro_bars": arrangement.intro_bars,
            "outro_start_bar": arrangement.outro_start_bar,
            "bar_seconds": arrangement.bar_seconds,
            "programs": {
                "lead": arrangement.parts.lead,
                "comp": arrangement.parts.comp,
                "pad": arrangement.parts.pad,
                "bass": arrangement.parts.bass,
            },
            "drums": arrangement.parts.drums,
        }

    def _make(self, spec: MusicSpec, seed: int, *, sample_index: int) -> Track:
        started = time.perf_counter()
        audio, sr, arrangement, mid = self._render(spec, seed)
        audio = declick_tail(fit_length(audio, int(round(float(spec.duration) * sr))), sr)
        meta = {
            "arranger": self._meta(arrangement, mid),
            "sample_index": sample_index,
            "wall_seconds": time.perf_counter() - started,
        }
        return Track(
            audio=audio,
            sample_rate=sr,
            spec=spec,
            seed=seed,
            backend=self.name,
            model=self.model_id,
            midi=mid,
            meta=meta,
        )
