"""MusicGen through Hugging Face transformers, behind the ``MusicBackend`` API.

    backend = MusicGenBackend("facebook/musicgen-small")          # or a local folder
    backend.set_generation_params(guidance_scale=3.0, top_k=250)
    tracks = backend.generate([spec_a, spec_b], samples=2, seed=7, progress=print)

Design notes (why):
- The model is loaded once per (weights, device, dtype) and shared by every backend object in the
  process (``_load_model``), so the job engine and the CLI never hold two copies on one device.
- All specs x samples go into ONE ``model.generate`` call: the decoder loop is memory-bound, so a
  batch of 8 costs little more per step than a batch of 1. Classifier-free guidance in transformers'
  MusicGen is already batched: the text encoding is concatenated with a null encoding and the decoder
  runs one 2B-row batch per step (tests/test_musicgen.py checks this with a hook on the decoder).
- MusicGen was trained on <= 30 s clips, so longer tracks are made in windows: the first window, then
  repeated continuations conditioned on the last ``overlap`` seconds (the audio prompt is encoded
  with EnCodec into decoder codes), joined with an equal-power crossfade over the overlap.
- The EnCodec audio codec is kept in float32 whatever the decoder dtype: it runs once per call (cheap)
  and reduced precision there only costs audio quality.
- On CPU, ``dtype="auto"`` int8-quantises the Linear layers of the T5 encoder and the decoder
  (torch's dynamic quantisation, fbgemm kernels): the per-step cost is reading weights, and int8
  reads 4x fewer bytes. torchao's int8 configs were far slower than fbgemm here without torch.compile.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import BackendError, BackendUnavailable, UserInputError
from engine.generation.base import GenerationParams, ProgressFn
from engine.generation.int8 import checkpoint_mappings, drop_pages, own_tensors, quantize_int8
from engine.generation.kv_cache import KV_CACHES, preallocated_cache, prefill_once
from engine.spec import MusicSpec, Track

DEFAULT_MODEL = "facebook/musicgen-small"
KNOWN_MODELS = (
    "facebook/musicgen-small",
    "facebook/musicgen-medium",
    "facebook/musicgen-large",
    "facebook/musicgen-melody",
    "facebook/musicgen-stereo-small",
    "facebook/musicgen-stereo-medium",
    "facebook/musicgen-stereo-large",
)
# MusicGen's decoder has 2048 learned positions (~40 s at 50 frames/s) but was trained on 30 s.
MAX_WINDOW_SECONDS = 30.0


class InvalidGenerationParams(UserInputError):
    """A generation parameter outside its allowed range."""


@dataclass
class _LoadedModel:
    processor: Any
    model: Any
    device: Any
    dtype: Any
    is_melody: bool
    lock: threading.Lock  # one generate at a time per loaded model (the device is the bottleneck)


_MODELS: dict[tuple[str, str, str], _LoadedModel] = {}
_MODELS_LOCK = threading.Lock()


# EnCodec's last layers hold (rows, 64, samples) float32 activations: 16 rows of 30 s would need several
# GB at once. Those layers run on at most this many audio-seconds of rows at a time; the codec has no
# batch-wide state, so the result is the same. 10 s: with the LSTM on all rows (below) and the heap
# kept for reuse (engine.device), 10 and 20 s decoded 8 x 5 s in about the same time (3.2 s) and 10 s
# left the worker 0.5 GB smaller.
DECODE_BUDGET_SECONDS = 10.0


def _frame_rate_layers(layers: Sequence[Any]) -> int:
    """How many leading decoder layers run at the codes' frame rate, before the first upsampling."""
    import torch

    for i, layer in enumerate(layers):
        if any(isinstance(m, torch.nn.ConvTranspose1d) for m in layer.modules()):
            return i
    return 0


def _decode_rows_in_chunks(decoder: Any, budget_frames: int) -> None:
    """Make EnCodec's decoder run its upsampling layers a few rows at a time, in place.

    The layers before the first upsampling (a conv and the LSTM, at 50 frames/s) take all rows at
    once: an LSTM step costs about the same for 2 rows as for 16, and running it per chunk of rows was
    a quarter of the codec's time at batch 8 (1.27 s of 4.8 s, torch profiler). Only the audio-rate
    layers after it, whose activations are big, are chunked.
    """
    import torch

    layers = list(decoder.layers)
    split = _frame_rate_layers(layers)

    def forward(hidden_states):
        for layer in layers[:split]:
            hidden_states = layer(hidden_states)
        rows = hidden_states.shape[0]
        step = max(1, budget_frames // max(1, hidden_states.shape[-1]))
        chunks = []
        for start in range(0, rows, step):
            chunk = hidden_states[start : start + step]
            for layer in layers[split:]:
                chunk = layer(chunk)
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else torch.cat(chunks, dim=0)

    decoder.forward = forward  # an instance attribute: nn.Module.__call__ runs it


def _load_model(
    model_id_or_path: str, device: Any, dtype: Any, local_files_only: bool, int8: bool = False
) -> _LoadedModel:
    """Load (or reuse) processor + model for one (weights, device, dtype / int8)."""
    from engine.device import INT8, dtype_name

    key = (str(model_id_or_path), str(device), INT8 if int8 else dtype_name(dtype))
    with _MODELS_LOCK:
        loaded = _MODELS.get(key)
        if loaded is not None:
            return loaded
        import torch
        from transformers import AutoConfig, AutoProcessor

        try:
            config = AutoConfig.from_pretrained(model_id_or_path, local_files_only=local_files_only)
            processor = AutoProcessor.from_pretrained(model_id_or_path, local_files_only=local_files_only)
            is_melody = getattr(config, "model_type", "") == "musicgen_melody"
            if is_melody:
                from transformers import MusicgenMelodyForConditionalGeneration as model_class
            elif getattr(config, "model_type", "") == "musicgen":
                from transformers import MusicgenForConditionalGeneration as model_class
            else:
                raise BackendUnavailable(
                    f"'{model_id_or_path}' is a {getattr(config, 'model_type', 'unknown')!r} model, not MusicGen."
                )
            mapped_before = checkpoint_mappings()
            model = model_class.from_pretrained(
                model_id_or_path, dtype=dtype, local_files_only=local_files_only
            )
        except ImportError as exc:
            # e.g. MusicGen-Melody's chroma feature extractor needs torchaudio, which we do not install
            raise BackendUnavailable(
                f"'{model_id_or_path}' needs an optional library that is not installed: {exc}. "
                "Install the torchaudio build matching your torch (same version) to use it, or use "
                "facebook/musicgen-small / -medium / -large."
            ) from exc
        except BackendUnavailable:
            raise
        except Exception as exc:  # corrupt/partial checkpoints fail in many library-specific ways
            raise BackendUnavailable(f"Could not load MusicGen from '{model_id_or_path}': {exc}") from exc
        model.audio_encoder.to(torch.float32)  # see module docstring
        model.to(device)
        model.eval()
        if int8:
            quantize_int8(model)
            # int8 keeps copies of what it uses, so this load's checkpoint mappings are unused now
            own_tensors(model)
            drop_pages(checkpoint_mappings() - mapped_before)
        if device.type == "cpu":
            from engine.device import keep_freed_memory_for_reuse

            keep_freed_memory_for_reuse()  # the codec's big buffers are reused, not faulted in anew
        frames = int(DECODE_BUDGET_SECONDS * model.config.audio_encoder.frame_rate)
        _decode_rows_in_chunks(model.audio_encoder.decoder, frames)
        loaded = _LoadedModel(processor, model, device, dtype, is_melody, threading.Lock())
        _MODELS[key] = loaded
        return loaded


def _progress_criteria(callback: Callable[[], None]):
    """A StoppingCriteria that never stops but ticks once per decoding step.

    Why a stopping criterion: transformers calls them exactly once per generated token, and an
    exception raised inside (GenerationCancelled) unwinds out of ``generate`` cleanly.
    """
    import torch
    from transformers import StoppingCriteria

    class _StepTicker(StoppingCriteria):
        def __call__(
            self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs
        ) -> torch.BoolTensor:
            callback()
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    return _StepTicker()


def _equal_power_crossfade(head: np.ndarray, tail: np.ndarray) -> np.ndarray:
    """Blend ``head`` (fading out) into ``tail`` (fading in); both (channels, n)."""
    n = head.shape[-1]
    if n == 0:
        return tail
    t = np.linspace(0.0, 1.0, n, dtype=np.float32)
    fade_in = np.sin(t * (np.pi / 2)).astype(np.float32)
    fade_out = np.cos(t * (np.pi / 2)).astype(np.float32)
    return head * fade_out + tail * fade_in


def _resample(audio: np.ndarray, rate_from: int, rate_to: int) -> np.ndarray:
    if rate_from == rate_to:
        return audio
    from scipy.signal import resample_poly

    g = math.gcd(rate_from, rate_to)
    return resample_poly(audio, rate_to // g, rate_from // g, axis=-1).astype(np.float32)


class MusicGenBackend:
    """``MusicBackend`` implementation for MusicGen checkpoints (small/medium/large/melody/stereo)."""

    name = "musicgen"

    def __init__(
        self,
        model_id_or_path: str = DEFAULT_MODEL,
        device: str = "auto",
        dtype: str = "auto",
        *,
        kv_cache: str = "preallocated",
        threads: int | None = None,
        local_files_only: bool = False,
        max_batch: int | None = None,
    ) -> None:
        from engine.device import INT8, configure_cpu_threads, dtype_name, pick_device, pick_precision

        self.model_id = str(model_id_or_path)
        self.device = pick_device(device)
        self.dtype, self.int8 = pick_precision(dtype, self.device)
        self.threads = configure_cpu_threads(threads) if self.device.type == "cpu" else None
        if kv_cache not in KV_CACHES:
            raise ValueError(f"kv_cache must be one of {', '.join(KV_CACHES)}, not {kv_cache!r}")
        self.kv_cache = kv_cache
        self._loaded = _load_model(self.model_id, self.device, self.dtype, local_files_only, self.int8)
        model = self._loaded.model
        self.sample_rate = int(model.config.audio_encoder.sampling_rate)
        self.frame_rate = int(model.config.audio_encoder.frame_rate)
        self._hop = self.sample_rate // self.frame_rate  # audio samples per decoder frame
        self.num_codebooks = int(model.decoder.config.num_codebooks)
        self.audio_channels = int(model.decoder.config.audio_channels)
        self.max_batch = max_batch or (16 if self.device.type == "cuda" else 8)
        self.params = GenerationParams()
        self._dtype_name = INT8 if self.int8 else dtype_name(self.dtype)

    # -- public API ---------------------------------------------------------------------------
    @property
    def model(self):
        return self._loaded.model

    @property
    def processor(self):
        return self._loaded.processor

    def set_generation_params(self, **params: Any) -> None:
        """Update guidance_scale, top_k, top_p, temperature, window_seconds, overlap_seconds."""
        allowed = set(asdict(self.params))
        unknown = set(params) - allowed
        if unknown:
            raise TypeError(
                f"unknown generation parameter(s): {', '.join(sorted(unknown))} "
                f"(valid: {', '.join(sorted(allowed))})"
            )
        merged = GenerationParams(**{**asdict(self.params), **params})
        if not 0 <= merged.guidance_scale <= 20:  # written so that NaN fails each range too
            raise InvalidGenerationParams(
                "guidance scale must be between 0 and 20 (3 is MusicGen's default)."
            )
        if not merged.top_k >= 0:
            raise InvalidGenerationParams("top-k must be 0 (off) or a positive number of tokens.")
        if not 0.0 <= merged.top_p <= 1.0:
            raise InvalidGenerationParams("top-p must be between 0 (off) and 1.")
        if not 0 < merged.temperature <= 5:
            raise InvalidGenerationParams("temperature must be above 0 and at most 5.")
        if not 0 < merged.window_seconds <= MAX_WINDOW_SECONDS:
            raise InvalidGenerationParams(f"window must be between 0 and {MAX_WINDOW_SECONDS:g} seconds.")
        if not 0 < merged.overlap_seconds < merged.window_seconds:
            raise InvalidGenerationParams("overlap must be positive and shorter than the window.")
        self.params = merged

    def generate(
        self,
        specs: Sequence[MusicSpec],
        *,
        samples: int = 1,
        seed: int | None = None,
        progress: ProgressFn | None = None,
    ) -> list[Track]:
        specs = list(specs)
        if not specs:
            return []
        if samples < 1:
            raise InvalidGenerationParams(f"samples must be at least 1, got {samples}.")
        for spec in specs:
            if not spec.duration or spec.duration <= 0:
                raise InvalidGenerationParams(f"duration must be positive, got {spec.duration}.")
        seed = random.randrange(2**31) if seed is None else int(seed)
        rows = [(spec, sample) for spec in specs for sample in range(samples)]
        started = time.perf_counter()
        audios, windows = self._generate_rows(
            prompts=[spec.prompt for spec, _ in rows],
            durations=[float(spec.duration) for spec, _ in rows],
            start_audio=None,
            seed=seed,
            progress=progress,
        )
        wall = time.perf_counter() - started
        return [
            self._track(audio, spec, seed, sample_index=sample, batch=len(rows), windows=windows, wall=wall)
            for audio, (spec, sample) in zip(audios, rows, strict=True)
        ]

    def generate_continuation(
        self,
        track: Track,
        seconds: float,
        *,
        progress: ProgressFn | None = None,
        seed: int | None = None,
    ) -> Track:
        """Extend ``track`` by ``seconds`` of music continuing from its end (same prompt)."""
        if seconds <= 0:
            raise InvalidGenerationParams(f"extension must be positive, got {seconds} seconds.")
        audio = np.asarray(track.audio, dtype=np.float32)
        if audio.ndim == 1:
            audio = audio[None, :]
        # a finished track ends in a fade-out: continuing from inside it would prompt the model with
        # music dying away and leave a dip mid-track, so it goes and is made again as new music
        faded = float((track.meta.get("finish") or {}).get("fade_out") or 0.0)
        faded = min(int(round(faded * track.sample_rate)), audio.shape[-1] // 2)
        audio = audio[:, : audio.shape[-1] - faded]
        new_seconds = float(seconds) + faded / track.sample_rate
        audio = _resample(audio, track.sample_rate, self.sample_rate)
        audio = self._match_channels(audio)
        if audio.shape[-1] < self._hop:  # not one codec frame to condition on
            raise InvalidGenerationParams("the track is too short to continue: it has no audio.")
        seed = track.seed + 1 if seed is None else int(seed)
        total = audio.shape[-1] / self.sample_rate + new_seconds
        started = time.perf_counter()
        audios, windows = self._generate_rows(
            prompts=[track.spec.prompt],
            durations=[total],
            start_audio=[audio],
            seed=seed,
            progress=progress,
        )
        spec = track.spec.with_(duration=round(total, 3))
        out = self._track(
            audios[0],
            spec,
            seed,
            sample_index=0,
            batch=1,
            windows=windows,
            wall=time.perf_counter() - started,
        )
        out.meta["continued_from_seed"] = track.seed
        out.meta["extended_seconds"] = float(seconds)
        return out

    # -- internals ----------------------------------------------------------------------------
    def _match_channels(self, audio: np.ndarray) -> np.ndarray:
        if audio.shape[0] == self.audio_channels:
            return audio
        if self.audio_channels == 1:
            return audio.mean(axis=0, keepdims=True)
        return np.repeat(audio[:1], self.audio_channels, axis=0)

    def _track(self, audio, spec, seed, *, sample_index, batch, windows, wall) -> Track:
        p = self.params
        return Track(
            audio=audio,
            sample_rate=self.sample_rate,
            spec=spec,
            seed=seed,
            backend=self.name,
            model=self.model_id,
            meta={
                "device": str(self.device),
                "dtype": self._dtype_name,
                "threads": self.threads,
                "kv_cache": self.kv_cache,
                "guidance_scale": p.guidance_scale,
                "top_k": p.top_k,
                "top_p": p.top_p,
                "temperature": p.temperature,
                "window_seconds": p.window_seconds,
                "overlap_seconds": p.overlap_seconds,
                "windows": windows,
                "sample_index": sample_index,
                "batch_size": batch,
                "wall_seconds": round(wall, 3),
            },
        )

    def _frames(self, seconds: float) -> int:
        return max(1, math.ceil(seconds * self.frame_rate - 1e-6))

    def _plan(self, longest: float, already: float) -> list[float]:
        """Seconds of NEW audio per window until ``longest`` seconds exist (``already`` given)."""
        window, overlap = self.params.window_seconds, self.params.overlap_seconds
        plan: list[float] = []
        have = already
        if have <= 0:
            first = min(window, longest)
            plan.append(first)
            have = first
        step = window - overlap
        while have < longest - 1e-6:
            new = min(step, longest - have)
            plan.append(new)
            have += new
        return plan

    def _generate_rows(
        self,
        *,
        prompts: list[str],
        durations: list[float],
        start_audio: list[np.ndarray] | None,
        seed: int,
        progress: ProgressFn | None,
    ) -> tuple[list[np.ndarray], int]:
        import torch

        sr = self.sample_rate
        already = 0.0 if start_audio is None else min(a.shape[-1] for a in start_audio) / sr
        plan = self._plan(max(durations), already)
        k_delay = self.num_codebooks - 1  # the delay pattern costs this many extra steps per call
        # Rows drop out of later windows once they are long enough, so count steps per window.
        steps_per_window = [self._frames(new) + k_delay for new in plan]
        total_steps = sum(steps_per_window)
        done = 0

        def tick() -> None:
            nonlocal done
            done += 1
            if progress is not None and done <= total_steps:
                progress(done, total_steps)

        if progress is not None:
            progress(0, total_steps)
        audios: list[np.ndarray | None] = (
            list(start_audio) if start_audio is not None else [None] * len(prompts)
        )
        device_indices = [self.device.index or 0] if self.device.type == "cuda" else []
        with self._loaded.lock, torch.inference_mode(), torch.random.fork_rng(devices=device_indices):
            torch.manual_seed(seed)
            for new_seconds in plan:
                have = [0.0 if a is None else a.shape[-1] / sr for a in audios]
                active = [i for i, d in enumerate(durations) if have[i] < d - 1e-6] or list(
                    range(len(prompts))
                )
                tails = None
                if audios[active[0]] is not None:
                    # the audio prompt: the last overlap seconds, or the whole of a shorter start
                    # (a 🎲 variation keeps a third of a 15-s track), in whole codec frames
                    shortest = min(audios[i].shape[-1] for i in active) // self._hop
                    tail_len = min(self._frames(self.params.overlap_seconds), shortest) * self._hop
                    tails = [audios[i][:, -tail_len:] for i in active]
                outputs = self._generate_window(
                    [prompts[i] for i in active], self._frames(new_seconds), tails, tick
                )
                for i, out in zip(active, outputs, strict=True):
                    previous = audios[i]
                    if previous is None:
                        audios[i] = out
                    else:
                        overlap = tails[0].shape[-1]
                        joined_head = _equal_power_crossfade(previous[:, -overlap:], out[:, :overlap])
                        audios[i] = np.concatenate(
                            [previous[:, :-overlap], joined_head, out[:, overlap:]], axis=-1
                        )
        if progress is not None and done < total_steps:
            progress(total_steps, total_steps)
        results = []
        for audio, duration in zip(audios, durations, strict=True):
            n = int(round(duration * sr))
            assert audio is not None
            results.append(np.ascontiguousarray(audio[:, :n], dtype=np.float32))
        return results, len(plan)

    def _generate_window(
        self,
        prompts: list[str],
        new_frames: int,
        tails: list[np.ndarray] | None,
        tick: Callable[[], None],
    ) -> list[np.ndarray]:
        """One ``model.generate`` call for all rows: returns (channels, samples) float32 per row,
        including the re-decoded audio prompt (``tails``) at the start when given."""
        import torch
        from transformers import StoppingCriteriaList

        model, processor = self._loaded.model, self._loaded.processor
        inputs = processor(text=prompts, padding=True, return_tensors="pt")
        kwargs: dict[str, Any] = {
            "input_ids": inputs["input_ids"].to(self.device),
            "attention_mask": inputs["attention_mask"].to(self.device),
        }
        if tails is not None:
            kwargs["decoder_input_ids"] = self._encode_audio_prompt(tails)
        p = self.params
        gen_kwargs: dict[str, Any] = {
            "do_sample": True,
            "guidance_scale": p.guidance_scale if p.guidance_scale > 1 else None,
            "top_k": p.top_k if p.top_k > 0 else None,
            "top_p": p.top_p if 0 < p.top_p < 1 else None,
            "temperature": p.temperature,
            "max_new_tokens": new_frames + self.num_codebooks - 1,
            "stopping_criteria": StoppingCriteriaList([_progress_criteria(tick)]),
        }
        if self.kv_cache == "preallocated" and not self._loaded.is_melody:
            # every position this call can fill: decoder start token + audio prompt + new steps
            prompt_frames = 0 if tails is None else kwargs["decoder_input_ids"].shape[-1]
            capacity = 1 + prompt_frames + gen_kwargs["max_new_tokens"]
            gen_kwargs["cache"] = preallocated_cache(model.decoder.config, capacity)
        try:
            with prefill_once(model):
                audio_values = model.generate(**kwargs, **gen_kwargs)
        except torch.OutOfMemoryError:
            raise  # the job engine splits the batch and retries; keep the type
        except RuntimeError as exc:
            if "out of memory" in str(exc).lower():
                raise
            raise BackendError(f"MusicGen generation failed: {exc}") from exc
        audio = audio_values.to(torch.float32).cpu().numpy()
        return [audio[i] for i in range(audio.shape[0])]

    def _encode_audio_prompt(self, tails: list[np.ndarray]):
        """EnCodec-encode the prompt audio into decoder codes (rows = batch x codebooks).

        Why not ``processor(audio=...)``: encoding ourselves works for both MusicGen and
        MusicGen-Melody (whose ``input_features`` are chroma, not an audio prompt)."""
        import torch

        model = self._loaded.model
        batch = torch.from_numpy(np.stack(tails).astype(np.float32)).to(self.device)
        if self.audio_channels == 1:
            encoded = model.audio_encoder.encode(batch)
            codes = encoded.audio_codes  # (1, B, K, T)
        else:  # stereo checkpoints interleave left/right codebooks
            left = model.audio_encoder.encode(batch[:, :1]).audio_codes
            right = model.audio_encoder.encode(batch[:, 1:2]).audio_codes
            codes = torch.empty(
                (1, left.shape[1], left.shape[2] * 2, left.shape[3]), dtype=left.dtype, device=left.device
            )
            codes[:, :, ::2] = left
            codes[:, :, 1::2] = right
        _, bsz, k, t = codes.shape
        return codes[0].reshape(bsz * k, t)


def describe_weights_hint(model_id: str) -> str:
    """How a user gets the weights onto this machine (shown in errors and the auto line)."""
    if Path(model_id).expanduser().exists():
        return (
            f"The folder {model_id} has no complete MusicGen checkpoint (config.json + weights + processor)."
        )
    return (
        f"Download them once with `hf download {model_id}` (needs network; CC-BY-NC weights), "
        "or pass --model /path/to/a/local/musicgen/folder."
    )
