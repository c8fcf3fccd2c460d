"""Audio finishing and export: exact duration, fades, loudness, seamless loops, wav/mp3/ogg.

    track = finish(track, duration=15, fade_out=1.5)      # -14 LUFS integrated, never clips
    data = encode(track, "mp3", "192k")
    data, bitrate = encode_to_fit(track, "mp3", max_bytes=10 * 1024 * 1024)
    path = export(track, "out/song.mp3")                   # + out/song.mid for arranger tracks

mp3/ogg go through pydub with the ffmpeg binary shipped by ``imageio-ffmpeg`` (no system install).
Also here: ``loudness`` (integrated LUFS) and ``estimate_tempo`` (onset autocorrelation), used by
tests and benchmarks to measure what the backends produce.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from engine.errors import UserInputError
from engine.spec import EncodedAudio, MusicSpec, Track

FORMATS = ("wav", "mp3", "ogg")
# Highest first; encode_to_fit walks down this ladder.
BITRATES = ("320k", "256k", "192k", "160k", "128k", "112k", "96k", "80k", "64k", "48k", "32k")
DEFAULT_MAX_BYTES = 10 * 1024 * 1024  # bytes; a front end passes its real upload limit
TRUE_PEAK_CEILING_DB = -1.0
MIN_DURATION = 0.5
MAX_DURATION = 15 * 60.0


class AudioError(UserInputError):
    """Base for audio problems a user can fix (format, size, duration)."""


class UnsupportedFormat(AudioError):
    pass


class AudioTooLarge(AudioError):
    pass


class InvalidDuration(AudioError):
    pass


# --------------------------------------------------------------------------------------------
# Measurement helpers
# --------------------------------------------------------------------------------------------
def _as_2d(audio: np.ndarray) -> np.ndarray:
    a = np.asarray(audio, dtype=np.float32)
    return a[None, :] if a.ndim == 1 else a


@lru_cache(maxsize=8)
def _k_weighting(sample_rate: int) -> np.ndarray:
    """BS.1770 K-weighting (high shelf + RLB high-pass) as second-order sections for ``sample_rate``.

    The RBJ-cookbook biquads with the same parameters pyloudnorm uses, so both meters agree.
    """

    def biquad(kind: str, gain_db: float, q: float, fc: float) -> list[float]:
        a_ = 10 ** (gain_db / 40.0)
        w0 = 2 * np.pi * fc / sample_rate
        alpha, cos_w0 = np.sin(w0) / (2 * q), np.cos(w0)
        if kind == "high_shelf":
            b = [
                a_ * ((a_ + 1) + (a_ - 1) * cos_w0 + 2 * np.sqrt(a_) * alpha),
                -2 * a_ * ((a_ - 1) + (a_ + 1) * cos_w0),
                a_ * ((a_ + 1) + (a_ - 1) * cos_w0 - 2 * np.sqrt(a_) * alpha),
            ]
            a = [
                (a_ + 1) - (a_ - 1) * cos_w0 + 2 * np.sqrt(a_) * alpha,
                2 * ((a_ - 1) - (a_ + 1) * cos_w0),
                (a_ + 1) - (a_ - 1) * cos_w0 - 2 * np.sqrt(a_) * alpha,
            ]
        else:  # high-pass
            b = [(1 + cos_w0) / 2, -(1 + cos_w0), (1 + cos_w0) / 2]
            a = [1 + alpha, -2 * cos_w0, 1 - alpha]
        return [v / a[0] for v in b] + [v / a[0] for v in a]

    return np.array([biquad("high_shelf", 4.0, 1 / np.sqrt(2), 1500.0), biquad("high_pass", 0.0, 0.5, 38.0)])


def _block_energies(weighted: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mean square of each 400 ms gating block (75 % overlap, 100 ms hop) per channel (BS.1770)."""
    n = weighted.shape[1]
    count = max(int(np.round((n / sample_rate - 0.4) / 0.1)) + 1, 0)
    hop = 0.1 * sample_rate
    if hop == int(hop):  # the usual rates: sum 100 ms hops once, each block is four of them
        hop = int(hop)
        hops = min(n // hop, count + 3)
        sq = np.square(weighted[:, : hops * hop], dtype=np.float32)
        sums = sq.reshape(weighted.shape[0], hops, hop).sum(axis=2, dtype=np.float64)
        sums = np.pad(sums, ((0, 0), (0, count + 3 - hops)))
        blocks = sums[:, :count] + sums[:, 1 : count + 1] + sums[:, 2 : count + 2] + sums[:, 3 : count + 3]
        return blocks / (0.4 * sample_rate)
    j = np.arange(count)
    lo = np.minimum((0.4 * (j * 0.25) * sample_rate).astype(np.int64), n)
    hi = np.minimum((0.4 * (j * 0.25 + 1) * sample_rate).astype(np.int64), n)
    csum = np.zeros((weighted.shape[0], n + 1), dtype=np.float64)
    np.cumsum(np.square(weighted, dtype=np.float64), axis=1, out=csum[:, 1:])
    return (csum[:, hi] - csum[:, lo]) / (0.4 * sample_rate)


def loudness(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4, gated); ``-inf`` for silence.

    Vectorised: one ``sosfilt`` for the K-weighting and cumulative sums for the gating blocks; it
    agrees with pyloudnorm (the reference the tests compare with) to within 0.01 LU.
    """
    from scipy.signal import sosfilt

    a = _as_2d(audio)
    if a.shape[1] < int(0.4 * sample_rate):  # BS.1770 gating needs at least one 400 ms block
        a = np.pad(a, ((0, 0), (0, int(0.4 * sample_rate) - a.shape[1] + 1)))
    # float32 filtering keeps the result within 0.01 LU of a float64 meter at half the cost
    weighted = sosfilt(_k_weighting(int(sample_rate)).astype(np.float32), a.astype(np.float32), axis=1)
    z = _block_energies(weighted, int(sample_rate))
    channel_gain = np.array([1.0, 1.0, 1.0, 1.41, 1.41])[: z.shape[0], None]
    power = (channel_gain * z).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        block_lufs = -0.691 + 10.0 * np.log10(power)
        gated = block_lufs >= -70.0
        if not gated.any():
            return float("-inf")
        relative = -0.691 + 10.0 * np.log10(power[gated].mean()) - 10.0
        gated = (block_lufs > relative) & (block_lufs > -70.0)
        if not gated.any():
            return float("-inf")
        return float(-0.691 + 10.0 * np.log10(power[gated].mean()))


def _interpolation_phases(oversample: int = 4, taps: int = 32) -> list[np.ndarray]:
    """Windowed-sinc FIR filters giving the signal between samples at k/oversample offsets."""
    m = np.arange(taps) - taps // 2 + 1
    filters = []
    for k in range(1, oversample):
        t = m - k / oversample
        h = np.sinc(t) * np.kaiser(taps, 6.0)
        filters.append((h / h.sum())[::-1])
    return filters


def sample_true_peaks(audio: np.ndarray, oversample: int = 4) -> np.ndarray:
    """Per sample, the largest |value| among it and the inter-sample points after it, over channels.

    A polyphase 4x interpolation (32-tap windowed sinc per phase) — the same idea as the BS.1770
    true-peak meter, at a fraction of the cost of a general resampler.
    """
    a = _as_2d(audio).astype(np.float32)
    peak = np.abs(a).max(axis=0)
    for h in _interpolation_phases(oversample):
        shift = len(h) // 2
        for ch in a:
            between = np.convolve(ch, h.astype(np.float32), mode="full")[shift : shift + ch.size]
            np.maximum(peak, np.abs(between), out=peak)
    return peak


def true_peak(audio: np.ndarray, oversample: int = 4) -> float:
    """Approximate true peak (linear) from a 4x oversampled signal."""
    a = _as_2d(audio)
    if a.shape[1] == 0:
        return 0.0
    return float(sample_true_peaks(a, oversample).max())


def onset_envelope(audio: np.ndarray, sample_rate: int, hop: int = 256) -> tuple[np.ndarray, float]:
    """Spectral-flux onset strength (log magnitude, half-wave rectified), and its frame rate."""
    from scipy.signal import stft

    mono = _as_2d(audio).mean(axis=0)
    _, _, spec = stft(mono, fs=sample_rate, nperseg=4 * hop, noverlap=3 * hop, boundary=None, padded=False)
    mag = np.log1p(100.0 * np.abs(spec))
    flux = np.maximum(np.diff(mag, axis=1), 0.0).sum(axis=0)
    # remove the slowly varying part so sustained loud passages do not count as onsets
    width = max(1, min(int(round(sample_rate / hop * 0.5)), flux.size))  # "same" keeps the longer length
    kernel = np.ones(width) / width
    flux = np.maximum(flux - np.convolve(flux, kernel, mode="same"), 0.0)
    return flux.astype(np.float64), sample_rate / hop


def estimate_tempo(
    audio: np.ndarray, sample_rate: int, lo: float = 60.0, hi: float = 200.0, prior_bpm: float = 110.0
) -> float:
    """Tempo in BPM from the autocorrelation of the onset envelope.

    Candidates in [lo, hi] are weighted by a broad log-normal prior (one octave wide) around
    ``prior_bpm`` — the usual trick against picking half or double the tempo — and the chosen
    period is refined on the autocorrelation peak near four beats (one 4/4 bar).
    """
    env, fps = onset_envelope(audio, sample_rate)
    if env.size < 4 or not np.any(env):
        return 0.0
    env = env - env.mean()
    n = 1 << int(np.ceil(np.log2(2 * env.size)))
    spectrum = np.fft.rfft(env, n)
    ac = np.fft.irfft(spectrum * np.conj(spectrum), n)[: env.size]
    ac /= ac[0] + 1e-12
    lags = np.arange(int(fps * 60.0 / hi), int(fps * 60.0 / lo) + 1)
    lags = lags[lags < ac.size]
    if lags.size == 0:
        return 0.0
    bpms = 60.0 * fps / lags
    prior = np.exp(-0.5 * (np.log2(bpms / prior_bpm)) ** 2)
    score = np.clip(ac[lags], 0, None) * prior
    lag = float(lags[int(np.argmax(score))])
    # refine: the peak near k beats gives k times the resolution
    for k in (4, 2):
        centre = k * lag
        lo_i, hi_i = int(centre * 0.96), int(np.ceil(centre * 1.04)) + 1
        if hi_i < ac.size - 1:
            i = lo_i + int(np.argmax(ac[lo_i:hi_i]))
            # parabolic interpolation around the discrete maximum
            a, b, c = ac[i - 1], ac[i], ac[i + 1]
            denom = a - 2 * b + c
            offset = 0.5 * (a - c) / denom if denom != 0 else 0.0
            return 60.0 * fps * k / (i + float(np.clip(offset, -0.5, 0.5)))
    return 60.0 * fps / lag


# --------------------------------------------------------------------------------------------
# Finishing
# --------------------------------------------------------------------------------------------
def _fade_curve(n: int, rising: bool) -> np.ndarray:
    # raised-cosine: starts and ends with zero slope, so no click and no abrupt level change
    x = np.linspace(0.0, 1.0, n, dtype=np.float64)
    curve = 0.5 - 0.5 * np.cos(np.pi * x)
    return (curve if rising else curve[::-1]).astype(np.float32)


def limit_peaks(audio: np.ndarray, sample_rate: int, ceiling: float) -> np.ndarray:
    """Look-ahead peak limiter on a 4x oversampled peak estimate (approximate true peak).

    The gain curve is the running minimum of the needed gain over +-``w`` samples, then averaged over
    ``w`` samples: every averaged value only mixes minima whose window covers the current sample, so
    the smoothed gain never exceeds what that sample needs (no overshoot), and it has no steps.
    """
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    peak = sample_true_peaks(audio)
    need = np.minimum(1.0, ceiling / np.maximum(peak, 1e-12))
    if need.min() >= 1.0:
        return audio
    w = max(2, int(0.004 * sample_rate))  # 4 ms attack / look-ahead
    gain = minimum_filter1d(need, size=2 * w + 1, mode="nearest")
    gain = uniform_filter1d(gain, size=w, mode="nearest")
    # release: hold gain reduction a little longer so it recovers smoothly (50 ms)
    release = max(2, int(0.05 * sample_rate))
    gain = np.minimum(
        gain,
        uniform_filter1d(minimum_filter1d(gain, size=release, mode="nearest"), size=release, mode="nearest"),
    )
    return (audio * gain[None, :]).astype(np.float32)


def normalize_loudness(
    audio: np.ndarray, sample_rate: int, target_lufs: float = -14.0, ceiling_db: float = TRUE_PEAK_CEILING_DB
) -> tuple[np.ndarray, float]:
    """Gain to ``target_lufs`` then limit to ``ceiling_db`` true peak; returns (audio, final LUFS)."""
    a = _as_2d(audio).astype(np.float32)
    ceiling = 10 ** (ceiling_db / 20)
    current = loudness(a, sample_rate)
    if not np.isfinite(current):  # silence stays silence
        return a, current
    for _ in range(3):  # limiting lowers loudness a little: re-aim a few times
        a = a * np.float32(10 ** ((target_lufs - current) / 20))
        a = limit_peaks(a, sample_rate, ceiling)
        current = loudness(a, sample_rate)
        if abs(current - target_lufs) < 0.3:
            break
    # belt and braces: sample peaks can never exceed the ceiling
    np.clip(a, -ceiling, ceiling, out=a)
    return a, current


def loop_overhang(duration: float) -> float:
    """Seconds of audio past the end that a seamless loop of ``duration`` crossfades into its head:
    a loop request asks its model for this much more than it keeps."""
    return min(1.0, duration / 4)


def make_loop(audio: np.ndarray, n: int, sample_rate: int, crossfade: float = 1.0) -> np.ndarray:
    """Audio that loops seamlessly: the ``crossfade`` seconds after sample ``n`` are crossfaded
    into the head, giving exactly ``n`` samples. Playing it end-to-start continues as the original
    would have after sample n, because the head starts as that continuation and fades into the
    original opening. Audio with less than that past ``n`` folds its own last ``crossfade``
    seconds into its head instead, so the loop is that much shorter than ``n`` but still seamless
    (a hard cut at the seam would click on every repeat).
    """
    a = _as_2d(audio)
    if a.shape[1] < n:  # too short: repeat it to length first
        reps = int(np.ceil(n / max(a.shape[1], 1))) + 1
        a = np.tile(a, (1, reps))
    xf = min(int(crossfade * sample_rate), n // 2)
    end = n if a.shape[1] - n >= xf else n - xf
    out = a[:, :end].copy()
    if xf > 1:
        t = np.linspace(0.0, 1.0, xf, dtype=np.float32)
        fade_in, fade_out = np.sin(0.5 * np.pi * t), np.cos(0.5 * np.pi * t)  # equal power
        out[:, :xf] = a[:, :xf] * fade_in + a[:, end : end + xf] * fade_out
    return out


def finish(
    track: Track,
    *,
    duration: float | None = None,
    fade_in: float = 0.05,
    fade_out: float = 1.5,
    target_lufs: float = -14.0,
    loop: bool = False,
) -> Track:
    """Exact duration, fades, loudness to ``target_lufs`` with a -1 dBTP limiter, optional loop.

    With ``loop=True`` the fades are skipped (they would break the loop) and the audio past the end
    is crossfaded into the head so the file repeats without a seam.
    """
    sr = int(track.sample_rate)
    duration = float(track.duration if duration is None else duration)
    if not MIN_DURATION <= duration <= MAX_DURATION:
        raise InvalidDuration(
            f"Duration must be between {MIN_DURATION:g} and {MAX_DURATION:g} seconds, got {duration:g}."
        )
    if fade_in < 0 or fade_out < 0:
        raise AudioError("Fade lengths cannot be negative.")
    n = int(round(duration * sr))
    audio = _as_2d(track.audio).astype(np.float32)
    if loop:
        audio = make_loop(audio, n, sr, crossfade=loop_overhang(duration))
        duration = audio.shape[1] / sr  # shorter by the crossfade when there was no overhang
    else:
        audio = audio[:, :n] if audio.shape[1] >= n else np.pad(audio, ((0, 0), (0, n - audio.shape[1])))
        audio = audio.copy()
        fi = min(int(fade_in * sr), n // 2)
        fo = min(int(fade_out * sr), n // 2)
        if fi > 1:
            audio[:, :fi] *= _fade_curve(fi, rising=True)
        if fo > 1:
            audio[:, -fo:] *= _fade_curve(fo, rising=False)
    audio, measured = normalize_loudness(audio, sr, target_lufs)
    meta = dict(track.meta)
    meta["finish"] = {
        "duration": duration,
        "fade_in": 0.0 if loop else fade_in,
        "fade_out": 0.0 if loop else fade_out,
        "target_lufs": target_lufs,
        "lufs": float(measured)
        if np.isfinite(measured)
        else None,  # silence has no loudness (JSON has no -inf)
        "loop": loop,
    }
    return replace(track, audio=audio, spec=track.spec.with_(duration=duration), meta=meta)


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------
def _check_format(fmt: str) -> str:
    f = (fmt or "").lower().lstrip(".")
    if f not in FORMATS:
        raise UnsupportedFormat(f"Unsupported audio format '{fmt}'. Use one of: {', '.join(FORMATS)}.")
    return f


def _pcm16(audio: np.ndarray) -> np.ndarray:
    a = np.clip(_as_2d(audio), -1.0, 1.0)
    return np.round(a * 32767.0).astype("<i2")


def _segment(track: Track):
    import warnings

    import imageio_ffmpeg

    with warnings.catch_warnings():  # pydub warns at import that no *system* ffmpeg exists: we bring our own
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        from pydub import AudioSegment

    AudioSegment.converter = imageio_ffmpeg.get_ffmpeg_exe()
    pcm = _pcm16(track.audio)
    return AudioSegment(
        data=pcm.T.tobytes(), sample_width=2, frame_rate=int(track.sample_rate), channels=pcm.shape[0]
    )


def _export(track: Track, fmt: str, bitrate: str) -> bytes:
    codec = {"mp3": "libmp3lame", "ogg": "libvorbis"}[fmt]
    buf = io.BytesIO()
    try:
        _segment(track).export(buf, format=fmt, codec=codec, bitrate=bitrate)
    except Exception as exc:  # pydub's CouldntEncodeError carries ffmpeg's stderr: kept as the cause
        raise AudioError(
            f"Could not encode the track as {fmt} at {bitrate}. Try another format (mp3, ogg or wav)."
        ) from exc
    return buf.getvalue()


@lru_cache(maxsize=64)
def vorbis_range(sample_rate: int, channels: int) -> tuple[str, str]:
    """The lowest and highest bitrates of ``BITRATES`` libvorbis accepts for this shape of audio.
    Its managed bitrate range depends on the rate and channel count (mono 32 kHz, MusicGen's
    output, takes 32k–160k; stereo 48 kHz 48k–320k; 22.05 kHz mono tops out at 80k) and it refuses
    anything outside, so we ask a tenth of a second of silence once per shape rather than keep a
    table of libvorbis's internals."""
    probe = Track(
        audio=np.zeros((channels, max(1, sample_rate // 10)), dtype=np.float32),
        sample_rate=sample_rate,
        spec=MusicSpec(prompt="probe", duration=MIN_DURATION),
        seed=0,
        backend="probe",
        model="probe",
    )

    def accepted(bitrate: str) -> bool:
        try:
            _export(probe, "ogg", bitrate)
        except AudioError:
            return False
        return True

    highest = next((b for b in BITRATES if accepted(b)), None)
    if highest is None:
        raise AudioError(
            f"Vorbis cannot encode {channels}-channel audio at {sample_rate} Hz. Choose mp3 or wav."
        )
    lowest = next(b for b in reversed(BITRATES) if b == highest or accepted(b))
    return lowest, highest


def bitrates_for(track: Track, fmt: str, ladder: Sequence[str]) -> list[str]:
    """``ladder`` (highest first) moved into what the encoder accepts for this track, without
    repeats: only Vorbis has limits among our formats."""
    if fmt != "ogg":
        return list(ladder)
    lowest, highest = vorbis_range(int(track.sample_rate), int(_as_2d(track.audio).shape[0]))
    low, high = _kbps(lowest), _kbps(highest)
    moved = [highest if _kbps(b) > high else lowest if _kbps(b) < low else b for b in ladder]
    return list(dict.fromkeys(moved))


def encode(track: Track, fmt: str = "mp3", bitrate: str = "192k") -> bytes:
    """The track as a wav (16-bit PCM), mp3 (LAME) or ogg (Vorbis) file, in memory. An ogg asked
    at a bitrate Vorbis refuses for the track's rate and channels gets the nearest it takes."""
    fmt = _check_format(fmt)
    if fmt == "wav":
        import soundfile

        buf = io.BytesIO()
        soundfile.write(buf, _as_2d(track.audio).T, int(track.sample_rate), format="WAV", subtype="PCM_16")
        return buf.getvalue()
    return _export(track, fmt, bitrates_for(track, fmt, [bitrate])[0])


def finish_and_encode(track: Track, fmt: str, *, duration: float | None = None, loop: bool = False) -> Track:
    """``finish`` the track, then encode it as ``fmt``: the result carries both the finished samples
    and the file (``encoded``), so whoever stores it never encodes again."""
    fmt = _check_format(fmt)
    finished = finish(track, duration=duration, loop=loop)
    audio = _as_2d(finished.audio)
    data = encode(finished, fmt)
    return replace(finished, encoded=EncodedAudio(data, fmt, int(audio.shape[0]), int(audio.shape[1])))


def _kbps(bitrate: str) -> int:
    return int(str(bitrate).lower().rstrip("k"))


def encode_to_fit(track: Track, fmt: str = "mp3", max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[bytes, str]:
    """Encode at the highest bitrate whose file is at most ``max_bytes``; returns (data, bitrate)."""
    fmt = _check_format(fmt)
    limit_mb = max_bytes / (1024 * 1024)
    if fmt == "wav":
        data = encode(track, "wav")
        if len(data) <= max_bytes:
            return data, "pcm_s16le"
        raise AudioTooLarge(
            f"The {track.duration:.0f} s WAV is {len(data) / 1048576:.1f} MB, over the {limit_mb:.1f} MB "
            "upload limit. Choose mp3 or ogg, or a shorter duration."
        )
    # skip bitrates whose size estimate is clearly over the limit (saves encoding passes)
    ladder = [b for b in BITRATES if _kbps(b) * 1000 / 8 * track.duration <= max_bytes * 1.05] or [
        BITRATES[-1]
    ]
    ladder = bitrates_for(track, fmt, ladder)  # Vorbis: within what it takes for this rate and channels
    smallest = 0
    for bitrate in ladder:
        data = encode(track, fmt, bitrate)
        if len(data) <= max_bytes:
            return data, bitrate
        smallest = len(data)
    raise AudioTooLarge(
        f"Even at {ladder[-1]}bps the {track.duration:.0f} s {fmt} is {smallest / 1048576:.1f} MB, over the "
        f"{limit_mb:.1f} MB upload limit. Choose a shorter duration."
    )


def export(track: Track, path: str | Path, fmt: str | None = None, bitrate: str = "192k") -> Path:
    """Write the track to ``path`` (format from ``fmt`` or the suffix) and its MIDI beside it."""
    path = Path(path)
    fmt = _check_format(fmt or path.suffix.lstrip(".") or "mp3")
    if path.suffix.lower().lstrip(".") != fmt:
        path = path.with_suffix(f".{fmt}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(track, fmt, bitrate))
    if track.midi:
        path.with_suffix(".mid").write_bytes(track.midi)
    return path
