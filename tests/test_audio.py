"""Audio finishing and export: loudness, duration, fades, loops, encodings, size limits."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile

from engine.audio import (
    AudioError,
    AudioTooLarge,
    UnsupportedFormat,
    encode,
    encode_to_fit,
    estimate_tempo,
    export,
    finish,
    finish_and_encode,
    loudness,
    true_peak,
    vorbis_range,
)
from engine.errors import UserInputError
from engine.generation.arranger import ArrangerBackend
from engine.spec import MusicSpec, Track

SR = 48000


def synth_track(seconds: float = 6.0, level: float = 0.9, seed: int = 0, sr: int = SR) -> Track:
    """A loud, peaky test signal: chords of partials with a pulsing envelope plus noise bursts."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    tone = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in (110, 220, 277.2, 329.6, 440, 880))
    pulse = 0.5 + 0.5 * (np.sin(2 * np.pi * 2 * t) > 0)
    noise = rng.normal(0, 0.3, t.size) * (np.sin(2 * np.pi * 4 * t) > 0.9)
    mono = tone * pulse + noise
    mono = level * mono / np.max(np.abs(mono))
    audio = np.stack([mono, np.roll(mono, 37)]).astype(np.float32)
    spec = MusicSpec(prompt="test", duration=seconds)
    return Track(audio=audio, sample_rate=sr, spec=spec, seed=seed, backend="test", model="synth")


@pytest.fixture(scope="module")
def arranged() -> Track:
    spec = MusicSpec(prompt="test", genres=("Lofi",), bpm=90, mode="minor", duration=10.0)
    return ArrangerBackend().generate([spec], seed=3)[0]


def rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(a))))


@pytest.mark.parametrize("level", [0.02, 0.9])
def test_finish_normalises_loudness_and_never_clips(level):
    track = synth_track(level=level)
    out = finish(track, duration=6.0)
    assert abs(loudness(out.audio, SR) - -14.0) <= 1.0
    assert np.max(np.abs(out.audio)) <= 10 ** (-1 / 20) + 1e-6
    assert true_peak(out.audio) <= 10 ** (-0.5 / 20)  # 4x oversampled peaks stay near the -1 dB ceiling
    assert out.meta["finish"]["lufs"] == pytest.approx(loudness(out.audio, SR), abs=0.01)


def test_finish_on_arranged_music_hits_other_targets(arranged):
    for target in (-14.0, -20.0):
        out = finish(arranged, target_lufs=target)
        assert abs(loudness(out.audio, SR) - target) <= 1.0


@pytest.mark.parametrize("seconds", [3.25, 6.0, 9.5])
def test_finish_gives_the_exact_duration(seconds):
    out = finish(synth_track(6.0), duration=seconds)
    assert out.audio.shape == (2, round(seconds * SR))
    assert out.duration == pytest.approx(seconds)
    assert out.spec.duration == seconds


def test_fades_start_and_end_near_silence():
    out = finish(synth_track(level=0.9), duration=6.0, fade_in=0.5, fade_out=1.5)
    body = rms(out.audio[:, 2 * SR : 3 * SR])
    assert rms(out.audio[:, : SR // 1000]) < 0.01 * body  # first millisecond
    assert rms(out.audio[:, -SR // 1000 :]) < 0.01 * body  # last millisecond
    assert rms(out.audio[:, -SR // 4 :]) < 0.3 * body


def test_loop_seam_is_continuous(arranged):
    out = finish(arranged, duration=8.0, loop=True)
    assert out.audio.shape[1] == 8 * SR
    a = out.audio
    twice = np.concatenate([a, a], axis=1)
    seam = a.shape[1]
    step = np.abs(np.diff(twice, axis=1)).max(axis=0)
    # the jump over the seam is no bigger than the music's own sample-to-sample motion
    assert step[seam - 1] <= np.percentile(step, 99.5)
    # and the level does not dip or jump around it
    around = rms(twice[:, seam - SR // 4 : seam + SR // 4])
    assert 0.5 < around / rms(a) < 2.0
    # the same check catches the hard edge of a plain trim of the same music
    plain = finish(arranged, duration=8.0, fade_in=0, fade_out=0).audio
    plain_step = np.abs(np.diff(np.concatenate([plain, plain], axis=1), axis=1)).max(axis=0)
    assert plain_step[seam - 1] > np.percentile(plain_step, 99.5)


def seam_step_and_inner_p995(audio: np.ndarray) -> tuple[float, float]:
    twice = np.concatenate([audio, audio], axis=1)
    step = np.abs(np.diff(twice, axis=1)).max(axis=0)
    return float(step[audio.shape[1] - 1]), float(np.percentile(step, 99.5))


def test_tempo_of_half_a_second_is_a_number_not_a_crash():
    clicks = np.zeros((1, 16000), np.float32)
    clicks[:, ::4000] = 0.8
    assert np.isfinite(estimate_tempo(clicks, 32000))  # shorter than the flux detrender's 0.5 s


def test_a_loop_of_audio_with_nothing_past_its_end_folds_its_own_tail_in_instead_of_cutting(arranged):
    # what a backend returns when asked for exactly the loop's length: no overhang to crossfade
    exact = finish(arranged, duration=8.0, fade_in=0, fade_out=0)
    seam, inner = seam_step_and_inner_p995(exact.audio)
    assert seam > inner  # played as a loop, the plain cut clicks
    looped = finish(exact, duration=8.0, loop=True)
    assert looped.audio.shape[1] == 7 * SR and looped.duration == 7.0  # shorter by the 1-s crossfade
    seam, inner = seam_step_and_inner_p995(looped.audio)
    assert seam <= inner


@pytest.mark.parametrize("fmt", ["mp3", "ogg", "wav"])
def test_encodings_decode_back_with_the_right_duration(arranged, fmt):
    track = finish(arranged, duration=7.0)
    data = encode(track, fmt, "128k")
    decoded, sr = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    assert sr == SR and decoded.shape[1] == 2
    assert abs(decoded.shape[0] / sr - 7.0) <= 0.05
    assert rms(decoded) > 0.05


def test_ogg_of_musicgen_shaped_audio_gets_vorbis_highest_bitrate_instead_of_failing():
    # MusicGen makes 32 kHz mono; libvorbis refuses more than 160 kbps for that shape
    mono = synth_track(seconds=3.0, sr=32000)
    mono = Track(**{**mono.__dict__, "audio": mono.audio[:1]})
    assert vorbis_range(32000, 1) == ("32k", "160k") and vorbis_range(48000, 2) == ("48k", "320k")
    decoded, sr = soundfile.read(io.BytesIO(encode(mono, "ogg", "192k")), dtype="float32", always_2d=True)
    assert sr == 32000 and decoded.shape[1] == 1 and abs(decoded.shape[0] / sr - 3.0) <= 0.05
    data, rate = encode_to_fit(mono, "ogg", max_bytes=10 * 1024 * 1024)
    assert rate == "160k" and soundfile.info(io.BytesIO(data)).samplerate == 32000
    finished = finish_and_encode(mono, "ogg", duration=3.0)  # what a worker does for a user who picked ogg
    assert finished.encoded.format == "ogg" and finished.encoded.channels == 1


def test_ogg_that_fits_only_below_48k_fits_where_vorbis_takes_it():
    long_mono = synth_track(seconds=60.0, sr=32000)
    long_mono = Track(**{**long_mono.__dict__, "audio": long_mono.audio[:1]})
    at32, at48 = len(encode(long_mono, "ogg", "32k")), len(encode(long_mono, "ogg", "48k"))
    limit = (at32 + at48) // 2
    data, rate = encode_to_fit(long_mono, "ogg", max_bytes=limit)
    assert rate == "32k" and len(data) <= limit


def test_an_encoder_failure_says_what_to_do_and_keeps_ffmpegs_words_for_the_logs(arranged):
    with pytest.raises(AudioError) as err:
        encode(arranged, "mp3", "abc")  # ffmpeg refuses the option
    assert str(err.value) == "Could not encode the track as mp3 at abc. Try another format (mp3, ogg or wav)."
    assert "libmp3lame" in str(err.value.__cause__)


def test_lower_bitrate_makes_smaller_mp3(arranged):
    assert len(encode(arranged, "mp3", "64k")) < 0.6 * len(encode(arranged, "mp3", "192k"))


def test_encode_to_fit_respects_the_limit(arranged):
    full, rate = encode_to_fit(arranged, "mp3", max_bytes=10 * 1024 * 1024)
    assert rate == "320k" and len(full) <= 10 * 1024 * 1024
    limit = len(encode(arranged, "mp3", "128k")) + 500  # 128k fits, 160k does not
    data, rate = encode_to_fit(arranged, "mp3", max_bytes=limit)
    assert len(data) <= limit and rate == "128k"
    data, rate = encode_to_fit(arranged, "ogg", max_bytes=limit)
    assert len(data) <= limit


def test_encode_to_fit_says_clearly_when_nothing_fits(arranged):
    with pytest.raises(AudioTooLarge, match="upload limit") as err:
        encode_to_fit(arranged, "mp3", max_bytes=5_000)
    assert isinstance(err.value, UserInputError)
    with pytest.raises(AudioTooLarge, match="mp3 or ogg"):
        encode_to_fit(arranged, "wav", max_bytes=100_000)


def test_export_writes_audio_and_midi(tmp_path, arranged):
    path = export(arranged, tmp_path / "sub" / "song.ogg")
    assert path.is_file() and path.suffix == ".ogg"
    assert path.with_suffix(".mid").read_bytes() == arranged.midi
    wav = export(arranged, tmp_path / "song", fmt="wav")
    assert wav.name == "song.wav" and soundfile.info(str(wav)).duration == pytest.approx(10.0, abs=1e-3)
    plain = export(synth_track(), tmp_path / "plain.mp3")
    assert not plain.with_suffix(".mid").exists()


def test_bad_format_and_duration_are_user_errors(arranged):
    with pytest.raises(UnsupportedFormat, match="flac"):
        encode(arranged, "flac")
    with pytest.raises(UserInputError, match="Duration"):
        finish(arranged, duration=0)


def test_tempo_estimator_on_a_click_track():
    for bpm in (72, 128):
        t = np.zeros(SR * 8, dtype=np.float32)
        for k in range(int(8 * bpm / 60)):
            i = int(k * 60 / bpm * SR)
            t[i : i + 200] = np.hanning(400)[200:] * (1.0 if k % 4 == 0 else 0.6)
        assert abs(estimate_tempo(t, SR) - bpm) / bpm < 0.02


@pytest.mark.parametrize("sr", [48000, 44100, 22050])
def test_fast_loudness_agrees_with_pyloudnorm(sr, arranged):
    import pyloudnorm

    signals = [synth_track(seconds=4.0, level=0.3, sr=sr).audio, np.zeros((2, sr // 10), np.float32)]
    if sr == SR:
        signals.append(arranged.audio)
    for audio in signals:
        padded = audio if audio.shape[1] >= 0.4 * sr else np.pad(audio, ((0, 0), (0, int(0.4 * sr))))
        with np.errstate(divide="ignore"):
            reference = pyloudnorm.Meter(sr).integrated_loudness(padded.T.astype(np.float64))
        ours = loudness(audio, sr)
        if np.isfinite(reference):
            assert ours == pytest.approx(reference, abs=0.01)
        else:
            assert ours == -np.inf


def test_finished_loudness_is_on_target_for_the_reference_meter(arranged):
    import pyloudnorm

    out = finish(arranged, target_lufs=-16.0)
    assert abs(pyloudnorm.Meter(SR).integrated_loudness(out.audio.T.astype(np.float64)) - -16.0) <= 1.0
