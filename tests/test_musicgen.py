"""MusicGen backend + backend selection, on a tiny random MusicGen saved to disk (tests/tiny_musicgen.py)."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.errors import BackendUnavailable, UserInputError
from engine.generation import load_backend, musicgen_weights_available
from engine.generation.base import GenerationCancelled, MusicBackend
from engine.spec import MusicSpec

SR = 32_000


def spec(prompt: str, duration: float) -> MusicSpec:
    return MusicSpec(prompt=prompt, duration=duration)


@pytest.fixture(scope="module")
def backend(tiny_musicgen_dir: Path):
    from engine.generation.musicgen import MusicGenBackend

    # threads=1: the test box is shared; see engine.device.configure_cpu_threads
    return MusicGenBackend(str(tiny_musicgen_dir), device="cpu", dtype="float32", threads=1)


@pytest.fixture(autouse=True)
def default_params(backend):
    backend.set_generation_params(
        guidance_scale=3.0, top_k=250, top_p=0.0, temperature=1.0, window_seconds=30.0, overlap_seconds=10.0
    )


def test_backend_satisfies_protocol(backend) -> None:
    assert isinstance(backend, MusicBackend)
    assert backend.name == "musicgen"
    assert backend.sample_rate == SR
    assert backend.frame_rate == 50


def test_batch_of_specs_and_samples_in_one_generate_call_with_cfg_as_one_batch(backend) -> None:
    specs = [spec("lofi calm piano", 0.6), spec("fast rock with loud drums and electric guitar", 0.3)]
    decoder_batches: list[int] = []
    generate_calls = 0
    real_generate = backend.model.generate

    def counting_generate(*args, **kwargs):
        nonlocal generate_calls
        generate_calls += 1
        return real_generate(*args, **kwargs)

    hook = backend.model.decoder.register_forward_hook(
        lambda _mod, args, kwargs, _out: decoder_batches.append(kwargs["input_ids"].shape[0]),
        with_kwargs=True,
    )
    backend.model.generate = counting_generate  # wraps transformers' method, ours still runs fully
    try:
        tracks = backend.generate(specs, samples=2, seed=11)
    finally:
        hook.remove()
        del backend.model.generate

    assert generate_calls == 1
    # 4 rows x 4 codebooks, doubled once for classifier-free guidance: one decoder batch per step
    assert set(decoder_batches) == {2 * 4 * backend.num_codebooks}
    # one decoder forward per step (transformers 5.24's MusicGen runs its 1-token prefill twice: +1)
    steps = backend._frames(0.6) + backend.num_codebooks - 1
    assert steps <= len(decoder_batches) <= steps + 1
    # grouped by spec: spec0 s0, spec0 s1, spec1 s0, spec1 s1, each trimmed to its own duration
    assert [t.spec for t in tracks] == [specs[0], specs[0], specs[1], specs[1]]
    assert [t.meta["sample_index"] for t in tracks] == [0, 1, 0, 1]
    assert [t.audio.shape for t in tracks] == [(1, int(0.6 * SR))] * 2 + [(1, int(0.3 * SR))] * 2
    for track in tracks:
        assert track.audio.dtype == np.float32
        assert np.isfinite(track.audio).all()
        assert track.sample_rate == SR and track.backend == "musicgen"
        assert track.meta["dtype"] == "float32" and track.meta["device"] == "cpu"
        assert track.meta["guidance_scale"] == 3.0 and track.meta["batch_size"] == 4
    # two samples of one prompt are different takes
    assert not np.array_equal(tracks[0].audio, tracks[1].audio)


def test_guidance_off_runs_a_single_sized_batch(backend) -> None:
    backend.set_generation_params(guidance_scale=1.0)
    batches: list[int] = []
    hook = backend.model.decoder.register_forward_hook(
        lambda _m, _a, kwargs, _o: batches.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        backend.generate([spec("jazz piano", 0.2)], samples=3, seed=1)
    finally:
        hook.remove()
    assert set(batches) == {3 * backend.num_codebooks}


def test_same_seed_same_audio_different_seed_different_audio(backend) -> None:
    specs = [spec("ambient synth pad", 0.4), spec("upbeat pop", 0.4)]
    first = backend.generate(specs, samples=1, seed=1234)
    again = backend.generate(specs, samples=1, seed=1234)
    other = backend.generate(specs, samples=1, seed=4321)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.audio, b.audio)
        assert a.seed == b.seed == 1234
    assert any(not np.array_equal(a.audio, c.audio) for a, c in zip(first, other, strict=True))


def test_random_seed_is_recorded_and_reproduces(backend) -> None:
    made = backend.generate([spec("chill lofi", 0.3)])[0]
    again = backend.generate([spec("chill lofi", 0.3)], seed=made.seed)[0]
    np.testing.assert_array_equal(made.audio, again.audio)


def test_progress_is_monotone_and_reaches_total(backend) -> None:
    calls: list[tuple[int, int]] = []
    backend.generate([spec("soft piano", 0.5)], samples=2, seed=3, progress=lambda d, t: calls.append((d, t)))
    totals = {t for _, t in calls}
    assert len(totals) == 1
    total = totals.pop()
    assert total == backend._frames(0.5) + backend.num_codebooks - 1
    done = [d for d, _ in calls]
    assert done[0] == 0 and done[-1] == total
    assert all(b > a for a, b in zip(done[:-1], done[1:], strict=True))


def test_cancel_from_progress_aborts_generation(backend) -> None:
    seen: list[int] = []

    def cancel_after_five(done: int, total: int) -> None:
        seen.append(done)
        if done >= 5:
            raise GenerationCancelled()

    with pytest.raises(GenerationCancelled):
        backend.generate([spec("rock", 2.0)], seed=1, progress=cancel_after_five)
    assert max(seen) == 5  # stopped at once, not after the whole clip
    # and the backend still works afterwards
    assert backend.generate([spec("rock", 0.2)], seed=1)[0].audio.shape == (1, int(0.2 * SR))


def test_tracks_longer_than_the_window_use_continuation_windows(backend) -> None:
    backend.set_generation_params(window_seconds=1.0, overlap_seconds=0.4)
    calls: list[tuple[int, int]] = []
    tracks = backend.generate(
        [spec("cinematic strings", 2.5), spec("cinematic drums", 0.8)],
        seed=5,
        progress=lambda d, t: calls.append((d, t)),
    )
    long, short = tracks
    assert long.audio.shape == (1, int(2.5 * SR))
    assert short.audio.shape == (1, int(0.8 * SR))
    # 1.0 s window, then 0.6 s of new audio per window: 1.0 + 0.6 + 0.6 + 0.3
    assert long.meta["windows"] == 4
    k = backend.num_codebooks - 1
    assert calls[-1][0] == calls[-1][1] == sum(backend._frames(s) + k for s in (1.0, 0.6, 0.6, 0.3))
    assert np.isfinite(long.audio).all()
    again = backend.generate([spec("cinematic strings", 2.5), spec("cinematic drums", 0.8)], seed=5)
    np.testing.assert_array_equal(again[0].audio, long.audio)


def test_generate_continuation_extends_a_track_and_keeps_its_start(backend) -> None:
    backend.set_generation_params(window_seconds=1.0, overlap_seconds=0.4)
    original = backend.generate([spec("warm jazz", 1.0)], seed=8)[0]
    longer = backend.generate_continuation(original, 1.5)
    assert longer.audio.shape == (1, int(2.5 * SR))
    assert longer.spec.duration == pytest.approx(2.5)
    assert longer.meta["extended_seconds"] == 1.5 and longer.meta["continued_from_seed"] == 8
    overlap = int(0.4 * SR)
    # everything before the crossfaded overlap is the original audio, untouched
    np.testing.assert_array_equal(
        longer.audio[:, : original.audio.shape[1] - overlap], original.audio[:, :-overlap]
    )


def test_continuation_from_a_start_shorter_than_the_overlap_uses_all_of_it(backend) -> None:
    # 🔁 Variation keeps a third of the track (5 s of a 15-s one; the real overlap is 10 s)
    backend.set_generation_params(window_seconds=1.0, overlap_seconds=0.4)
    original = backend.generate([spec("warm jazz", 1.0)], seed=8)[0]
    start = dataclasses.replace(original, audio=original.audio[:, : int(0.25 * SR)])
    longer = backend.generate_continuation(start, 1.25)
    assert longer.audio.shape == (1, int(1.5 * SR)) and np.isfinite(longer.audio).all()
    assert longer.meta["windows"] == 3  # 0.25 s given, then 0.6 + 0.6 + 0.05 s new


def test_continuation_of_a_finished_track_is_made_from_before_its_fade_out(backend) -> None:
    backend.set_generation_params(window_seconds=1.0, overlap_seconds=0.4)
    original = backend.generate([spec("warm jazz", 1.0)], seed=8)[0]
    audio = original.audio.copy()
    audio[:, -int(0.5 * SR) :] = 0.0  # a finished track's fade-out, faded to silence here
    finished = dataclasses.replace(original, audio=audio, meta={"finish": {"fade_out": 0.5}})
    longer = backend.generate_continuation(finished, 1.5)
    assert longer.audio.shape == (1, int(2.5 * SR))  # the asked length all the same
    assert longer.meta["extended_seconds"] == 1.5
    cut, overlap = int(0.5 * SR), int(0.4 * SR)
    kept = original.audio.shape[1] - cut - overlap
    np.testing.assert_array_equal(longer.audio[:, :kept], original.audio[:, :kept])  # before the joint
    # where the old track died away (before the old joint: untouched, silent) is new music now
    assert (
        np.abs(longer.audio[:, original.audio.shape[1] - cut : original.audio.shape[1] - overlap]).max() > 0
    )


def test_continuation_accepts_other_rates_and_stereo(backend) -> None:
    backend.set_generation_params(window_seconds=1.0, overlap_seconds=0.4)
    from engine.spec import Track

    t = np.arange(int(1.0 * 48_000)) / 48_000
    stereo = np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t)]).astype(np.float32) * 0.3
    track = Track(
        audio=stereo, sample_rate=48_000, spec=spec("piano", 1.0), seed=2, backend="arranger", model="sf2"
    )
    longer = backend.generate_continuation(track, 0.5)
    assert longer.sample_rate == SR and longer.audio.shape == (1, int(1.5 * SR))


def test_bad_params_get_clear_errors(backend) -> None:
    with pytest.raises(UserInputError, match="overlap"):
        backend.set_generation_params(window_seconds=5.0, overlap_seconds=5.0)
    with pytest.raises(UserInputError, match="temperature"):
        backend.set_generation_params(temperature=0)
    with pytest.raises(UserInputError, match="window"):
        backend.set_generation_params(window_seconds=45)
    for name in ("guidance_scale", "temperature", "top_p", "window_seconds", "overlap_seconds"):
        with pytest.raises(UserInputError):  # NaN is outside every range, not inside
            backend.set_generation_params(**{name: float("nan")})
    with pytest.raises(TypeError, match="guidence.*valid:.*guidance_scale"):
        backend.set_generation_params(guidence=3)
    with pytest.raises(UserInputError, match="samples"):
        backend.generate([spec("x", 1.0)], samples=0)


def test_model_loaded_once_per_device_and_dtype(tiny_musicgen_dir: Path, backend) -> None:
    from engine.generation.musicgen import MusicGenBackend

    second = MusicGenBackend(str(tiny_musicgen_dir), device="cpu", dtype="float32", threads=1)
    assert second.model is backend.model


def test_bfloat16_generation_keeps_codec_in_float32(tiny_musicgen_dir: Path) -> None:
    import torch

    from engine.generation.musicgen import MusicGenBackend

    bf16 = MusicGenBackend(str(tiny_musicgen_dir), device="cpu", dtype="bfloat16", threads=1)
    assert bf16.model.decoder.dtype == torch.bfloat16
    assert next(bf16.model.audio_encoder.parameters()).dtype == torch.float32
    track = bf16.generate([spec("lofi", 0.3)], seed=1)[0]
    assert track.audio.dtype == np.float32 and track.meta["dtype"] == "bfloat16"
    assert np.isfinite(track.audio).all()


def test_preallocated_kv_cache_gives_the_same_audio_as_transformers_dynamic_cache(
    tiny_musicgen_dir: Path, backend
) -> None:
    from engine.generation.musicgen import MusicGenBackend

    dynamic = MusicGenBackend(
        str(tiny_musicgen_dir), device="cpu", dtype="float32", threads=1, kv_cache="dynamic"
    )
    assert backend.kv_cache == "preallocated"  # the default
    for b in (backend, dynamic):  # windows + continuation: the audio-prompt path fills the cache too
        b.set_generation_params(window_seconds=1.0, overlap_seconds=0.4)
    specs = [spec("lofi", 1.6), spec("fast rock with guitar", 0.3)]
    ours = backend.generate(specs, seed=1)
    plain = dynamic.generate(specs, seed=1)
    assert ours[0].meta["kv_cache"] == "preallocated" and plain[0].meta["kv_cache"] == "dynamic"
    assert ours[0].meta["windows"] == 2
    for a, b in zip(ours, plain, strict=True):
        np.testing.assert_array_equal(a.audio, b.audio)
    with pytest.raises(ValueError, match="kv_cache"):
        MusicGenBackend(str(tiny_musicgen_dir), device="cpu", dtype="float32", kv_cache="static")


def test_prefill_runs_once_and_our_cache_matches_plain_transformers_generate(backend) -> None:
    import torch

    from engine.generation.kv_cache import preallocated_cache, prefill_once

    model = backend.model
    inputs = backend.processor(text=["lofi", "fast rock with guitar"], padding=True, return_tensors="pt")
    calls = [0]
    hook = model.decoder.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    runs = {}
    try:
        for name, cache, once in (("plain", False, False), ("once", False, True), ("ours", True, True)):
            torch.manual_seed(3)
            calls[0] = 0
            kwargs = {"do_sample": True, "top_k": 250, "guidance_scale": 3.0, "max_new_tokens": 12}
            if cache:
                kwargs["cache"] = preallocated_cache(model.decoder.config, 1 + 12)
            with torch.inference_mode():
                if once:
                    with prefill_once(model):
                        audio = model.generate(**inputs, **kwargs)
                else:
                    audio = model.generate(**inputs, **kwargs)
            runs[name] = (audio, calls[0])
    finally:
        hook.remove()
    assert not hasattr(model, "_prefill") or "_prefill" not in vars(model)  # the class method is back
    plain_audio, plain_calls = runs["plain"]
    for name in ("once", "ours"):
        audio, forward_calls = runs[name]
        torch.testing.assert_close(audio, plain_audio, rtol=0, atol=0)
        assert forward_calls <= plain_calls
    assert runs["ours"][1] == 12  # one forward pass per generated step: the prefill is not repeated


def test_preallocated_layer_matches_concatenation_and_grows_past_its_capacity() -> None:
    import torch

    from engine.generation.kv_cache import PreallocatedLayer

    layer = PreallocatedLayer(capacity=3)
    keys, values = [], []
    for step in range(5):  # 2 + 1 + 1 + 1 + 1 positions: past the 3 reserved
        n = 2 if step == 0 else 1
        k, v = torch.randn(2, 4, n, 8), torch.randn(2, 4, n, 8)
        keys.append(k)
        values.append(v)
        got_k, got_v = layer.update(k, v)
        torch.testing.assert_close(got_k, torch.cat(keys, dim=-2), rtol=0, atol=0)
        torch.testing.assert_close(got_v, torch.cat(values, dim=-2), rtol=0, atol=0)
    assert layer.get_seq_length() == 6
    layer.crop(-2)  # drop the last two positions
    assert layer.get_seq_length() == 4
    got_k, _ = layer.update(keys[-1], values[-1])
    torch.testing.assert_close(got_k, torch.cat([*keys[:3], keys[-1]], dim=-2), rtol=0, atol=0)


def test_int8_quantises_linear_layers_keeps_codec_float_and_stays_close_to_float32(
    tiny_musicgen_dir: Path, backend
) -> None:
    import torch
    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

    from engine.generation.musicgen import MusicGenBackend

    int8 = MusicGenBackend(str(tiny_musicgen_dir), device="cpu", dtype="int8", threads=1)
    assert int8.model is not backend.model  # its own copy: the float32 one is left untouched
    linears = [m for m in int8.model.decoder.modules() if isinstance(m, torch.nn.Linear)]
    quantised = [m for m in int8.model.decoder.modules() if isinstance(m, DynamicInt8Linear)]
    assert quantised and not linears
    assert any(isinstance(m, DynamicInt8Linear) for m in int8.model.text_encoder.modules())
    assert next(int8.model.audio_encoder.parameters()).dtype == torch.float32

    # the same decoder step in both: int8 logits must track the float32 ones closely
    inputs = backend.processor(text=["calm lofi piano"], return_tensors="pt")
    codes = torch.randint(0, backend.model.decoder.config.vocab_size, (backend.num_codebooks, 6))
    with torch.inference_mode():
        ref = backend.model(**inputs, decoder_input_ids=codes).logits.flatten()
        got = int8.model(**inputs, decoder_input_ids=codes).logits.flatten()
    cosine = torch.nn.functional.cosine_similarity(ref, got, dim=0).item()
    assert cosine > 0.98, cosine

    track = int8.generate([spec("lofi", 0.3)], seed=1)[0]
    assert track.meta["dtype"] == "int8-dynamic" and np.isfinite(track.audio).all()
    assert track.audio.shape == (1, int(0.3 * SR))


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/maps")
def test_int8_model_owns_its_tensors_so_the_checkpoint_mapping_can_go(tiny_musicgen_dir: Path) -> None:
    from engine.generation import musicgen as mg
    from engine.generation.int8 import checkpoint_mappings

    def in_mapping(model) -> int:
        ranges = checkpoint_mappings()
        tensors = [*model.parameters(), *model.buffers()]
        return sum(any(a <= t.data_ptr() < b for a, b in ranges) for t in tensors)

    fp32 = mg.MusicGenBackend(str(tiny_musicgen_dir), device="cpu", dtype="float32", threads=1)
    before = fp32.generate([spec("lofi", 0.3)], seed=4)[0].audio
    assert in_mapping(fp32.model) > 0  # a float load reads its weights straight from the file mapping
    mg._MODELS.pop((str(tiny_musicgen_dir), "cpu", "int8-dynamic"), None)
    int8 = mg.MusicGenBackend(str(tiny_musicgen_dir), device="cpu", dtype="int8", threads=1)
    assert in_mapping(int8.model) == 0
    assert np.isfinite(int8.generate([spec("lofi", 0.3)], seed=4)[0].audio).all()
    # the float model's own mapping was left alone: same audio as before the int8 load
    np.testing.assert_array_equal(fp32.generate([spec("lofi", 0.3)], seed=4)[0].audio, before)


def test_codec_upsamples_big_batches_a_few_rows_at_a_time_with_the_same_audio(
    tiny_musicgen_dir: Path,
) -> None:
    import torch
    from transformers import MusicgenForConditionalGeneration

    from engine.generation.musicgen import _decode_rows_in_chunks, _frame_rate_layers

    model = MusicgenForConditionalGeneration.from_pretrained(str(tiny_musicgen_dir)).eval()
    codec = model.audio_encoder
    layers = list(codec.decoder.layers)
    split = _frame_rate_layers(layers)
    assert split >= 2  # the first conv and the LSTM run at the frame rate
    rows_seen: dict[str, list[int]] = {"lstm": [], "upsample": []}
    lstm = next(m for m in codec.decoder.modules() if isinstance(m, torch.nn.LSTM))
    lstm.register_forward_hook(lambda m, args, out: rows_seen["lstm"].append(args[0].shape[1]))
    layers[split].register_forward_hook(lambda m, args, out: rows_seen["upsample"].append(args[0].shape[0]))

    codes = torch.randint(0, codec.config.codebook_size, (1, 5, model.decoder.config.num_codebooks, 10))
    with torch.inference_mode():
        expected = codec.decode(codes, [None]).audio_values
        rows_seen = {"lstm": [], "upsample": []}
        _decode_rows_in_chunks(codec.decoder, budget_frames=20)
        got = codec.decode(codes, [None]).audio_values
    assert rows_seen == {"lstm": [5], "upsample": [2, 2, 1]}  # 20 frames of budget / 10 per row
    assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-5)


def test_precision_choice_auto_int8_override_and_gpu_refusal(monkeypatch) -> None:
    import torch

    from engine.device import InvalidDevice, pick_precision

    monkeypatch.setenv("TEXTUNES_CPU_BF16", "0")
    monkeypatch.setenv("TEXTUNES_CPU_INT8", "0")
    assert pick_precision("auto", "cpu") == (torch.float32, False)
    monkeypatch.setenv("TEXTUNES_CPU_INT8", "1")
    assert pick_precision("auto", "cpu") == (torch.float32, True)
    assert pick_precision("float32", "cpu") == (torch.float32, False)
    assert pick_precision("bf16", "cpu") == (torch.bfloat16, False)
    with pytest.raises(InvalidDevice, match="CPU only"):
        pick_precision("int8", "cuda")
    with pytest.raises(InvalidDevice, match="int8"):
        pick_precision("int4", "cpu")


def test_auto_precision_follows_the_cpu_flags(monkeypatch) -> None:
    import torch

    from engine import device

    monkeypatch.delenv("TEXTUNES_CPU_BF16", raising=False)
    monkeypatch.setenv("TEXTUNES_CPU_INT8", "1")
    cpus = {
        "avx2 only": ({"avx2", "fma"}, (torch.float32, True), torch.float32),
        "avx512 bf16, no AMX": ({"avx2", "avx512f", "avx512_bf16"}, (torch.float32, True), torch.bfloat16),
        "AMX": ({"avx512_bf16", "amx_bf16", "amx_tile"}, (torch.bfloat16, False), torch.bfloat16),
    }
    for flags, auto, float_dtype in cpus.values():
        monkeypatch.setattr(device, "_cpu_flags", lambda flags=flags: flags)
        assert device.pick_precision("auto", "cpu") == auto
        monkeypatch.setenv("TEXTUNES_CPU_INT8", "0")  # no int8: the float rule alone
        assert device.pick_precision("auto", "cpu") == (float_dtype, False)
        monkeypatch.setenv("TEXTUNES_CPU_INT8", "1")


_HEAP_PROBE = """
import resource
import numpy as np
from engine.device import keep_freed_memory_for_reuse
np._core.multiarray._set_madvise_hugepage(False)  # plain 4 KB pages, so faults count pages
applied = keep_freed_memory_for_reuse()
def faults_per_round():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        block = np.ones(64 * 2**20 // 8)  # 64 MB: over glibc's mmap threshold
        del block
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5
faults_per_round()  # warm up: the first round grows the heap either way
print(applied, faults_per_round())
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc heap tuning is Linux-only")
def test_freed_big_blocks_are_reused_instead_of_faulted_in_again() -> None:
    import os

    def probe(keep: str) -> tuple[str, float]:
        env = {**os.environ, "TEXTUNES_KEEP_HEAP": keep}
        out = subprocess.run(
            [sys.executable, "-c", _HEAP_PROBE], capture_output=True, text=True, check=True, env=env
        )
        applied, faults = out.stdout.split()
        return applied, float(faults)

    kept, kept_faults = probe("1")
    unmapped, unmapped_faults = probe("0")
    assert (kept, unmapped) == ("True", "False")
    assert unmapped_faults > 10_000  # 64 MB of fresh pages on every allocation
    assert kept_faults < unmapped_faults / 20


# -- backend selection ----------------------------------------------------------------------------


def test_weights_available_for_local_folder_only_when_complete(
    tiny_musicgen_dir: Path, tmp_path: Path
) -> None:
    assert musicgen_weights_available(str(tiny_musicgen_dir))
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(tiny_musicgen_dir / "config.json", partial / "config.json")
    assert not musicgen_weights_available(str(partial))  # no weights, no processor
    assert not musicgen_weights_available(str(tmp_path / "missing"))


def test_weights_found_in_hf_cache_and_loaded_offline(
    tiny_musicgen_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    import huggingface_hub.constants as hf_constants

    # Lay the tiny checkpoint out the way the HF hub cache stores a download.
    repo = tmp_path / "hub" / "models--textunes--tiny-musicgen"
    snapshot = repo / "snapshots" / "0123abcd"
    shutil.copytree(tiny_musicgen_dir, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    assert musicgen_weights_available("textunes/tiny-musicgen")
    assert not musicgen_weights_available("textunes/not-downloaded")
    lines: list[str] = []
    chosen = load_backend(
        "auto", model="textunes/tiny-musicgen", device="cpu", dtype="float32", log=lines.append, threads=1
    )
    assert chosen.name == "musicgen"
    assert len(lines) == 1 and "MusicGen" in lines[0] and "Hugging Face cache" in lines[0]


def test_auto_uses_musicgen_for_a_local_folder_and_says_so(tiny_musicgen_dir: Path) -> None:
    lines: list[str] = []
    chosen = load_backend(
        "auto", model=str(tiny_musicgen_dir), device="cpu", dtype="float32", log=lines.append, threads=1
    )
    assert chosen.name == "musicgen" and chosen.model_id == str(tiny_musicgen_dir)
    assert len(lines) == 1 and "using MusicGen" in lines[0] and "local folder" in lines[0]


def test_explicit_musicgen_without_weights_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    with pytest.raises(BackendUnavailable, match=r"not on this machine.*hf download facebook/musicgen-small"):
        load_backend("musicgen", log=None)


def test_unknown_backend_name_is_user_error() -> None:
    with pytest.raises(UserInputError, match="Unknown backend 'magenta'"):
        load_backend("magenta")


def test_auto_without_weights_picks_arranger_with_one_loud_line(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip(
        "engine.generation.arranger", reason="arranger backend (helper B) not in the tree yet"
    )
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    lines: list[str] = []
    chosen = load_backend("auto", model="facebook/musicgen-small", log=lines.append)
    assert chosen.name == "arranger"
    assert len(lines) == 1
    assert (
        "facebook/musicgen-small" in lines[0] and "not on this machine" in lines[0] and "arranger" in lines[0]
    )


def test_auto_falls_back_to_arranger_when_local_weights_are_broken(
    tiny_musicgen_dir: Path, tmp_path: Path
) -> None:
    pytest.importorskip(
        "engine.generation.arranger", reason="arranger backend (helper B) not in the tree yet"
    )
    broken = tmp_path / "broken"
    shutil.copytree(tiny_musicgen_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    lines: list[str] = []
    chosen = load_backend("auto", model=str(broken), log=lines.append)
    assert chosen.name == "arranger"
    assert len(lines) == 1 and "could not be loaded" in lines[0] and "arranger" in lines[0]
    with pytest.raises(BackendUnavailable, match="Could not load MusicGen"):
        load_backend("musicgen", model=str(broken), log=None)


def test_importing_engine_generation_does_not_import_torch() -> None:
    code = "import sys, engine.generation; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.stdout.split() == ["False", "False"]


def test_roofline_bench_counts_the_weights_one_cached_step_multiplies(backend) -> None:
    """bench/roofline.py's ceiling rests on this count: every Linear a decoding step runs after the
    prefill (cross-attention keys/values come from the cache, not recomputed)."""
    import torch

    from bench.roofline import decoder_step_weights
    from engine.generation.kv_cache import preallocated_cache, prefill_once

    model = backend.model
    used: list[int] = []
    counting = [False]

    def count(module, *_):
        if counting[0]:
            used.append(module.weight.numel())

    hooks = [
        m.register_forward_pre_hook(count) for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)
    ]
    steps = [0]

    def start_counting_after_prefill(*_):
        steps[0] += 1
        counting[0] = steps[0] == 2  # count the second forward pass: the first cached step

    hooks.append(model.decoder.register_forward_pre_hook(start_counting_after_prefill))
    inputs = backend.processor(text=["lofi"], return_tensors="pt")
    try:
        with torch.inference_mode(), prefill_once(model):
            model.generate(
                **inputs,
                do_sample=False,
                guidance_scale=3.0,
                max_new_tokens=3,
                cache=preallocated_cache(model.decoder.config, 4),
            )
    finally:
        for hook in hooks:
            hook.remove()
    assert steps[0] == 3
    assert sum(used) == decoder_step_weights(model.decoder.config)
