"""The offline arranger: measured tempo, mode, instruments, determinism, form, continuation."""

from __future__ import annotations

import io

import numpy as np
import pretty_midi
import pytest

from engine.audio import estimate_tempo
from engine.errors import UserInputError
from engine.generation.arranger import (
    BASS_PROGRAMS,
    ArrangerBackend,
    arrange,
    instrument_program,
    style_for,
    tonic_pitch_class,
)
from engine.generation.base import MusicBackend
from engine.spec import MusicSpec, Track


def make_spec(**kw) -> MusicSpec:
    base = dict(prompt="test", genres=("Pop",), bpm=100, mode="major", duration=8.0, energy=0.5)
    base.update(kw)
    return MusicSpec(**base)


@pytest.fixture(scope="module")
def backend() -> ArrangerBackend:
    return ArrangerBackend()


def one(backend: ArrangerBackend, seed: int = 1, **kw) -> Track:
    return backend.generate([make_spec(**kw)], seed=seed)[0]


def midi_of(track: Track) -> pretty_midi.PrettyMIDI:
    return pretty_midi.PrettyMIDI(io.BytesIO(track.midi))


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio))))


def spectral_centroid(track: Track) -> float:
    mono = track.audio.mean(axis=0)
    mag = np.abs(np.fft.rfft(mono * np.hanning(mono.size)))
    freqs = np.fft.rfftfreq(mono.size, 1.0 / track.sample_rate)
    return float((mag * freqs).sum() / mag.sum())


def test_implements_the_backend_protocol(backend):
    assert isinstance(backend, MusicBackend)
    assert backend.name == "arranger" and backend.sample_rate == 48000 and backend.max_batch >= 8


@pytest.mark.parametrize(("genre", "bpm"), [("Lofi", 80), ("EDM", 128), ("Rock", 100)])
def test_measured_tempo_is_within_5_percent(backend, genre, bpm):
    track = one(backend, seed=4, genres=(genre,), bpm=bpm, duration=10.0)
    measured = estimate_tempo(track.audio, track.sample_rate)
    assert abs(measured - bpm) / bpm < 0.05, (genre, bpm, measured)


def test_audio_is_stereo_float_exact_duration_and_not_silent(backend):
    track = one(backend, duration=7.3)
    assert track.audio.dtype == np.float32
    assert track.audio.shape == (2, round(7.3 * 48000))
    assert rms(track.audio) > 0.03
    assert np.max(np.abs(track.audio)) <= 1.0
    # sound starts at the top (no long silent lead-in)
    assert rms(track.audio[:, : track.sample_rate // 2]) > 0.005


def _pitch_class_weight(pm: pretty_midi.PrettyMIDI, tonic: int) -> np.ndarray:
    weight = np.zeros(12)
    for inst in pm.instruments:
        if inst.is_drum:
            continue
        for note in inst.notes:
            weight[(note.pitch - tonic) % 12] += note.end - note.start
    return weight


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_minor_and_major_differ_in_the_notes(backend, seed):
    for genre in ("Pop", "Jazz"):
        major = _pitch_class_weight(midi_of(one(backend, seed, genres=(genre,), key="A", mode="major")), 9)
        minor = _pitch_class_weight(midi_of(one(backend, seed, genres=(genre,), key="A", mode="minor")), 9)
        assert major[4] > 2 * major[3], (genre, major)  # major third dominates
        assert minor[3] > 2 * minor[4], (genre, minor)  # minor third dominates


def _chroma(track: Track) -> np.ndarray:
    """Pitch-class energy of the audio (STFT bins folded onto 12 pitch classes, 60 Hz .. 2 kHz)."""
    from scipy.signal import stft

    mono = track.audio.mean(axis=0)
    freqs, _, spec = stft(mono, fs=track.sample_rate, nperseg=8192)
    power = (np.abs(spec) ** 2).sum(axis=1)
    keep = (freqs > 60) & (freqs < 2000)
    pcs = np.round(12 * np.log2(freqs[keep] / 440.0)).astype(int) % 12  # 0 = A
    return np.bincount(pcs, weights=np.sqrt(power[keep]), minlength=12)


@pytest.mark.parametrize("genre", ["Classical", "Pop"])
def test_minor_and_major_differ_in_the_audio(backend, genre):
    """In A, the audio's minor-third (C) to major-third (C#) energy ratio rises clearly in minor.

    (Absolute C vs C# is not a fair audio test: the 5th harmonic of every A is a C#.)
    """
    for seed in (1, 2):
        major = _chroma(one(backend, seed, genres=(genre,), key="A", mode="major"))
        minor = _chroma(one(backend, seed, genres=(genre,), key="A", mode="minor"))
        assert minor[3] / minor[4] > 1.4 * (major[3] / major[4]), (genre, seed)
        assert major[4] > major[3]


def test_instruments_change_programs_and_spectrum(backend):
    piano = one(backend, 3, genres=("Classical",), instruments=("Piano",))
    trumpet = one(backend, 3, genres=("Classical",), instruments=("Trumpet",))
    programs = {i.name: i.program for i in midi_of(piano).instruments}
    assert programs["lead"] == 0
    assert {i.name: i.program for i in midi_of(trumpet).instruments}["lead"] == 56
    assert spectral_centroid(trumpet) > 1.3 * spectral_centroid(piano)


def test_bass_instrument_goes_to_the_bass_part(backend):
    pm = midi_of(one(backend, 3, instruments=("Flute", "Upright bass")))
    programs = {i.name: i.program for i in pm.instruments}
    assert programs["lead"] == 73
    assert programs["bass"] == instrument_program("Upright bass")[0] and programs["bass"] in BASS_PROGRAMS


def test_deterministic_per_seed_and_different_across_seeds(backend):
    a = one(backend, seed=11)
    b = one(backend, seed=11)
    c = one(backend, seed=12)
    assert np.array_equal(a.audio, b.audio) and a.midi == b.midi

    def melody(track):
        lead = next(i for i in midi_of(track).instruments if i.name == "lead")
        return [n.pitch for n in lead.notes]

    assert melody(a) != melody(c)
    assert not np.allclose(a.audio, c.audio)


def test_batch_grouped_by_spec_with_seeds_and_progress(backend):
    calls = []
    specs = [make_spec(genres=("Jazz",), duration=5.0), make_spec(genres=("EDM",), bpm=124, duration=6.0)]
    tracks = backend.generate(specs, samples=2, seed=40, progress=lambda d, t: calls.append((d, t)))
    assert [t.spec for t in tracks] == [specs[0], specs[0], specs[1], specs[1]]
    assert [t.seed for t in tracks] == [40, 41, 40, 41]
    assert [t.duration for t in tracks] == pytest.approx([5.0, 5.0, 6.0, 6.0])
    assert calls[-1] == (4, 4) and len(calls) == 5
    # the recorded seed alone reproduces the take
    again = backend.generate([specs[0]], seed=tracks[1].seed)[0]
    assert np.array_equal(again.audio, tracks[1].audio)


def test_random_seed_is_recorded(backend):
    track = backend.generate([make_spec(duration=5.0)])[0]
    assert isinstance(track.seed, int)
    assert np.array_equal(backend.generate([make_spec(duration=5.0)], seed=track.seed)[0].audio, track.audio)


def test_form_has_sections_and_chords_move():
    arrangement = arrange(make_spec(duration=60.0, bpm=100), seed=5)
    builder_bars = arrangement.total_bars
    assert builder_bars == 25 and arrangement.intro_bars == 4 and arrangement.outro_start_bar == 23
    pm = arrangement.midi
    bass = next(i for i in pm.instruments if i.name == "bass")
    bar = arrangement.bar_seconds
    roots = {
        min(n.pitch for n in bass.notes if k * bar <= n.start < (k + 1) * bar) % 12 for k in range(4, 20)
    }
    assert len(roots) >= 3  # a progression, not one chord
    lead = next(i for i in pm.instruments if i.name == "lead")
    assert min(n.start for n in lead.notes) >= 4 * bar - 0.05  # melody enters after the intro
    assert max(n.end for n in lead.notes) > 24 * bar  # and holds the final note


def test_drums_fit_the_genre(backend):
    ambient = midi_of(one(backend, genres=("Ambient",), bpm=70))
    assert not any(i.is_drum for i in ambient.instruments)
    four = midi_of(one(backend, genres=("House",), bpm=124))
    drums = next(i for i in four.instruments if i.is_drum)
    kicks = sorted(n.start for n in drums.notes if n.pitch == 36)
    beat = 60 / 124
    on_beats = [k for k in kicks if abs(k / beat - round(k / beat)) < 0.02]
    assert len(on_beats) >= 0.9 * len(kicks) and len(kicks) >= 10  # four on the floor
    assert style_for(["Lo-fi Hip Hop"]).name == "lofi" and style_for(["Unheard Of"]).name == "pop"


@pytest.mark.parametrize("genre", ["Pop", "Lofi"])
def test_continuation_extends_from_the_same_arrangement(backend, genre):
    original = one(backend, seed=9, duration=12.0, genres=(genre,))
    longer = backend.generate_continuation(original, 8.0)
    sr = original.sample_rate
    assert longer.audio.shape[1] == round(20.0 * sr)
    assert longer.spec.duration == pytest.approx(20.0)
    assert longer.seed == original.seed and longer.midi and len(longer.midi) > len(original.midi)
    join = longer.meta["join_seconds"]
    assert 4.0 < join <= 12.0
    head = int((join - 0.2) * sr)
    assert np.array_equal(longer.audio[:, :head], original.audio[:, :head])
    # around the join the level stays continuous (no drop-out, no jump)
    before = rms(longer.audio[:, int((join - 1.0) * sr) : int(join * sr)])
    after = rms(longer.audio[:, int(join * sr) : int((join + 1.0) * sr)])
    assert 0.4 < after / before < 2.5
    assert rms(longer.audio[:, -2 * sr :]) > 0.01


def test_bad_input_gets_a_friendly_error(backend):
    with pytest.raises(UserInputError, match="key"):
        backend.generate([make_spec(key="H")], seed=1)
    with pytest.raises(UserInputError, match="Duration"):
        backend.generate([make_spec(duration=0)], seed=1)
    with pytest.raises(UserInputError, match="Tempo"):
        backend.generate([make_spec(bpm=900)], seed=1)
    with pytest.raises(UserInputError):
        backend.generate_continuation(one(backend, duration=5.0), 0)
    assert (
        tonic_pitch_class("Bb") == 10
        and tonic_pitch_class("f# minor") == 6
        and tonic_pitch_class(None) is None
    )


def test_percussion_instruments_add_their_drums(backend):
    plain = midi_of(one(backend, 6, genres=("Ambient",), bpm=90))
    shaker = midi_of(one(backend, 6, genres=("Ambient",), bpm=90, instruments=("Piano", "Shaker")))
    assert not any(i.is_drum for i in plain.instruments)
    drums = next(i for i in shaker.instruments if i.is_drum)
    keys = {n.pitch for n in drums.notes}
    assert 70 in keys and 36 not in keys  # a shaker layer, not a whole kit
    kit = midi_of(one(backend, 6, genres=("Ambient",), bpm=90, instruments=("Drums",)))
    assert {36, 38} & {n.pitch for i in kit.instruments if i.is_drum for n in i.notes}


def test_continuation_of_a_finished_track_keeps_its_level(backend):
    from engine.audio import finish, loudness

    finished = finish(one(backend, seed=5, duration=10.0))
    longer = backend.generate_continuation(finished, 10.0)
    sr = longer.sample_rate
    join = int(longer.meta["join_seconds"] * sr)
    assert np.array_equal(longer.audio[:, : join - sr // 4], finished.audio[:, : join - sr // 4])
    before = loudness(longer.audio[:, join - 2 * sr : join], sr)
    after = loudness(longer.audio[:, join : join + 2 * sr], sr)
    assert abs(before - after) < 4.0
    assert np.max(np.abs(longer.audio)) <= 0.96
    assert "finish" not in longer.meta  # the new take needs finishing again


def test_render_stops_at_the_duration_without_changing_the_audio(backend):
    from engine.generation.arranger import render_arrangement, render_midi

    track = one(backend, seed=11, duration=9.0, genres=("Ambient",))
    trimmed, sr = render_arrangement(midi_of(track), 9.0)
    whole, _ = render_midi(track.midi)  # the untrimmed MIDI renders its release tails past 9 s
    assert whole.shape[1] > trimmed.shape[1] == 9 * sr
    assert np.array_equal(trimmed, whole[:, : 9 * sr])
