"""Rendering for the arranger: MIDI -> WAV with midirenderer and the bundled SoundFont, plus colour."""

from __future__ import annotations

import io
import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from engine.errors import BackendError

SAMPLE_RATE = 48_000  # what midirenderer renders (stereo)
SOUNDFONT_NAME = "TimGM6mb.sf2"


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def soundfont_bytes() -> bytes:
    import pretty_midi

    path = Path(pretty_midi.__file__).with_name(SOUNDFONT_NAME)
    if not path.is_file():
        raise BackendError(
            f"The General MIDI SoundFont {SOUNDFONT_NAME} is missing from pretty_midi ({path})."
        )
    return path.read_bytes()


def midi_bytes(pm) -> bytes:
    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue()


def decode_wav(wav: bytes) -> tuple[np.ndarray, int]:
    """16-bit PCM WAV bytes -> float32 (channels, samples) without a decoder library (a view + scale)."""
    data = memoryview(wav)
    if bytes(data[:4]) != b"RIFF" or bytes(data[8:12]) != b"WAVE":
        raise BackendError("The renderer returned something that is not a WAV file.")
    pos, channels, sr, bits = 12, 0, 0, 0
    while pos + 8 <= len(data):
        chunk, size = bytes(data[pos : pos + 4]), int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = pos + 8
        if chunk == b"fmt ":
            channels = int.from_bytes(data[body + 2 : body + 4], "little")
            sr = int.from_bytes(data[body + 4 : body + 8], "little")
            bits = int.from_bytes(data[body + 14 : body + 16], "little")
        elif chunk == b"data":
            if bits != 16 or channels < 1:
                raise BackendError(f"Unexpected WAV format from the renderer ({bits}-bit, {channels} ch).")
            size = min(size, len(data) - body) // (2 * channels) * (2 * channels)
            pcm = np.frombuffer(data[body : body + size], dtype="<i2").reshape(-1, channels)
            return (pcm.T * np.float32(1 / 32768)).astype(np.float32), sr
        pos = body + size + (size & 1)
    raise BackendError("The renderer's WAV has no audio data.")


def _render_wave(midi: bytes) -> tuple[np.ndarray, int]:
    """One midirenderer call (also the worker-process entry point: module level, picklable args)."""
    import midirenderer

    try:
        wav = midirenderer.render_wave_from(soundfont_bytes(), midi)
    except Exception as exc:  # the Rust renderer raises plain exceptions
        raise BackendError(f"Rendering the arrangement failed: {exc}") from exc
    return decode_wav(wav)


def render_midi(midi: bytes) -> tuple[np.ndarray, int]:
    """MIDI bytes -> float32 (channels, samples) audio with the bundled SoundFont."""
    return _render_wave(midi)


# Rendering is the cost: midirenderer spends ~6 ms per audio second on its reverb/chorus even in
# silence, plus the voices, and holds the GIL (two threads take twice as long). Measured on the shared
# 2-core box, rendering halves in a worker process did not pay, so one render it is -- of exactly the
# requested length (release tails past the end used to add 1-3 s of rendering that was cut off).
def _segment_midi(pm, start: float, stop: float, render_to: float) -> bytes:
    """MIDI of the notes with onset in [start, stop), shifted by -start, rendered up to ``render_to``."""
    import pretty_midi

    tempo = float(pm.get_tempo_changes()[1][0])
    out = pretty_midi.PrettyMIDI(initial_tempo=tempo, resolution=pm.resolution)
    for k, inst in enumerate(pm.instruments):
        # the same instruments in the same order keep the same channels; controllers are all at t=0
        part = pretty_midi.Instrument(program=inst.program, is_drum=inst.is_drum, name=inst.name)
        part.control_changes = [
            pretty_midi.ControlChange(c.number, c.value, max(0.0, c.time - start))
            for c in inst.control_changes
            if c.time < stop
        ]
        part.notes = [
            pretty_midi.Note(n.velocity, n.pitch, n.start - start, min(n.end, render_to) - start)
            for n in inst.notes
            if start <= n.start < stop and n.start < render_to
        ]
        if k == 0:  # midirenderer stops at the last event: an inert controller (CC 110) sets the end
            part.control_changes.append(pretty_midi.ControlChange(110, 0, render_to - start))
        out.instruments.append(part)
    return midi_bytes(out)


def render_arrangement(pm, seconds: float) -> tuple[np.ndarray, int]:
    """The first ``seconds`` of ``pm`` as float32 (channels, samples); nothing after is rendered."""
    audio, sr, _ = render_first(pm, seconds)
    return audio, sr


def render_first(pm, seconds: float) -> tuple[np.ndarray, int, bytes]:
    """``render_arrangement`` plus the MIDI bytes it rendered: exactly the audio's notes, the file
    users get beside it (one MIDI serialisation per track; writing one costs ~30 ms)."""
    midi = _segment_midi(pm, 0.0, math.inf, seconds)
    audio, sr = _render_wave(midi)
    return fit_length(audio, int(round(seconds * sr))), sr, midi


def lofi_colour(audio: np.ndarray, sample_rate: int, seed: int) -> np.ndarray:
    """Worn-record colour for lo-fi: a soft 6 kHz low-pass, faint hiss and sparse vinyl crackle.

    Everything is causal and drawn sequentially from a seeded generator, so a longer render of the
    same seed starts with exactly the same colour (continuations stay seamless).
    """
    from scipy.signal import butter, lfilter

    # float32 throughout (scipy filters float32 natively; float64 doubled the cost of the colour)
    b, a = (c.astype(np.float32) for c in butter(2, 6000 / (sample_rate / 2), btype="low"))
    out = lfilter(b, a, audio.astype(np.float32, copy=False), axis=-1)
    n = out.shape[1]
    noise = np.random.default_rng([seed, 98]).standard_normal(n, dtype=np.float32) * np.float32(0.0025)
    rng = np.random.default_rng([seed, 99])
    click = np.exp(-np.arange(48) / 6.0).astype(np.float32)
    t = 0.0
    while True:  # clicks as a Poisson process, ~7 per second, mostly tiny, a few louder pops
        t += rng.exponential(1 / 7.0)
        i = int(t * sample_rate)
        if i >= n - 64:
            break
        amp = 0.02 * rng.pareto(3.0) + 0.004
        noise[i : i + 48] += np.float32(min(amp, 0.08) * (1 if rng.random() < 0.5 else -1)) * click
    # hiss and crackle share one high-pass: filtering their sum is the same (the filter is linear)
    hb, ha = (c.astype(np.float32) for c in butter(1, 3000 / (sample_rate / 2), btype="high"))
    return out + lfilter(hb, ha, noise)[None, :]


def fit_length(audio: np.ndarray, n: int) -> np.ndarray:
    if audio.shape[1] >= n:
        return audio[:, :n]
    return np.pad(audio, ((0, 0), (0, n - audio.shape[1])))


def declick_tail(audio: np.ndarray, sr: int, seconds: float = 0.02) -> np.ndarray:
    n = min(audio.shape[1], int(sr * seconds))
    if n > 1:
        audio[:, -n:] *= np.linspace(1.0, 0.0, n, dtype=np.float32)
    return audio


# The raw render is quiet (peaks 0.12-0.44, -31..-22 LUFS measured across styles): a FIXED gain keeps
# takes of the same seed level-identical (continuations rely on it); engine.audio.finish sets loudness.
RENDER_GAIN = 2.0
PEAK_CEILING = 0.95


def to_rate(audio: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    if sr_from == sr_to:
        return audio
    from scipy.signal import resample_poly

    g = math.gcd(int(sr_from), int(sr_to))
    return resample_poly(audio, sr_to // g, sr_from // g, axis=-1).astype(np.float32)
