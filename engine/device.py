"""Device and dtype selection shared by the torch-based parts of the engine.

Kept free of module-level torch imports so ``import engine.device`` stays cheap; the functions import
torch when called.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import TYPE_CHECKING

from engine.errors import UserInputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}
# Not a tensor dtype: float32 weights whose Linear layers are replaced by int8 dynamic-quantised ones
# (weights int8 per output channel, activations quantised on the fly) — CPU only.
INT8_NAMES = ("int8", "qint8", "int8-dynamic")
INT8 = "int8-dynamic"


class InvalidDevice(UserInputError):
    """A --device / --dtype value that cannot be used on this machine."""


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` → cuda → mps → cpu; explicit names are checked so typos fail clearly."""
    import torch

    name = (requested or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InvalidDevice(f"Unknown device '{requested}'. Use auto, cpu, cuda, cuda:N or mps.") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidDevice(f"Device '{requested}' was asked for but no CUDA GPU is available here.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InvalidDevice(
                f"Device '{requested}' does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)."
            )
    elif device.type == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise InvalidDevice("Device 'mps' was asked for but Apple Metal is not available here.")
    elif device.type != "cpu":
        raise InvalidDevice(f"Unsupported device '{requested}'. Use auto, cpu, cuda, cuda:N or mps.")
    return device


@lru_cache(maxsize=1)
def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:  # not Linux: no flags, so fp32 / int8 by the rules below
        pass
    return set()


def _override(name: str) -> bool | None:
    value = os.environ.get(name, "").strip().lower()
    return None if not value else value in ("1", "true", "yes")


def cpu_prefers_bf16() -> bool:
    """Whether float (not int8) generation on CPU should run in bf16 rather than fp32.

    bf16 only pays on CPUs with native bf16 (AVX512-BF16 / AMX); elsewhere it is emulated: on an
    AVX2-only EPYC a decoder step at 16 rows took 609 ms in fp32 vs 1447 ms in bf16. On an
    AVX512-BF16 Xeon without AMX the two were level (bench/decode_steps.py, batch 8: 0.853 vs 0.810
    audio-s/s). ``TEXTUNES_CPU_BF16=1/0`` overrides the detection.
    """
    forced = _override("TEXTUNES_CPU_BF16")
    if forced is not None:
        return forced
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_bf16_beats_int8() -> bool:
    """Whether ``dtype="auto"`` on CPU picks bf16 over int8: only with AMX tiles (or when forced).

    Measured on an AVX512-BF16 + VNNI Xeon without AMX: int8 1.566 vs bf16 0.853 audio-s/s at batch 8
    and 0.511 vs 0.256 at batch 1 (bench/decode_steps.py). AMX multiplies bf16 tiles several times
    faster than AVX-512, so there bf16 is expected to win; that case was not measured here.
    """
    forced = _override("TEXTUNES_CPU_BF16")
    if forced is not None:
        return forced
    return "amx_bf16" in _cpu_flags()


@lru_cache(maxsize=1)
def cpu_int8_available() -> bool:
    """Whether torch has a quantised CPU kernel library here (fbgemm/x86 on Intel/AMD, qnnpack on ARM)."""
    import torch

    engines = set(torch.backends.quantized.supported_engines)
    return bool(engines & {"x86", "fbgemm", "qnnpack"})


def cpu_prefers_int8() -> bool:
    """Whether ``dtype="auto"`` on CPU quantises the decoder's Linear layers to int8.

    Why: the decoder loop is bound by reading weights; int8 reads 4x fewer bytes and fbgemm's int8
    GEMM is far better tuned than fp32 at small batch. On a 2-core AVX2 EPYC a musicgen-small
    decoder step at batch 1 took 333 ms in fp32 vs 67 ms in int8 (bench/decode_steps.py).
    ``TEXTUNES_CPU_INT8=0`` keeps float32.
    """
    forced = _override("TEXTUNES_CPU_INT8")
    if forced is not None:
        return forced
    return cpu_int8_available()


def pick_precision(requested: str = "auto", device: torch.device | str = "cpu") -> tuple[torch.dtype, bool]:
    """``(weights dtype, int8-quantise Linear layers?)`` for a requested precision name.

    ``auto`` on CPU: int8 dynamic quantisation where torch has the kernels (bf16 instead on CPUs with
    AMX, see ``cpu_bf16_beats_int8``), else bf16 with native bf16 instructions, else fp32. ``int8`` is CPU-only; GPUs use bf16/fp16 (``pick_dtype``).
    """
    import torch

    device = torch.device(device)
    name = (requested or "auto").strip().lower()
    if name in INT8_NAMES:
        if device.type != "cpu":
            raise InvalidDevice("int8 runs on CPU only; on a GPU use auto, bfloat16 or float16.")
        if not cpu_int8_available():
            raise InvalidDevice("This torch build has no quantised CPU kernels; use float32 or auto.")
        return torch.float32, True
    if name == "auto" and device.type == "cpu" and not cpu_bf16_beats_int8() and cpu_prefers_int8():
        return torch.float32, True
    return pick_dtype(name, device), False


def pick_dtype(requested: str = "auto", device: torch.device | str = "cpu") -> torch.dtype:
    """Resolve a dtype name for ``device``.

    ``auto``: cuda → bf16 when the GPU supports it (no fp16 overflow risk in T5) else fp16; mps → fp16;
    cpu → bf16 only with native bf16 instructions, else fp32 (see ``cpu_prefers_bf16``).
    """
    import torch

    device = torch.device(device)
    name = (requested or "auto").strip().lower()
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "mps":
            return torch.float16
        return torch.bfloat16 if cpu_prefers_bf16() else torch.float32
    canonical = DTYPE_NAMES.get(name)
    if canonical is None:
        raise InvalidDevice(f"Unknown dtype '{requested}'. Use auto, float32, float16, bfloat16 or int8.")
    dtype = getattr(torch, canonical)
    if dtype == torch.float16 and device.type == "cpu":
        raise InvalidDevice("float16 is not supported for generation on CPU; use bfloat16 or float32.")
    return dtype


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def configure_cpu_threads(threads: int | None) -> int:
    """Set torch's intra-op thread count (None keeps torch's default) and return the value in effect.

    Why: on a shared 2-core box, two spinning OpenMP threads fighting another process made a tiny
    MusicGen run >100x slower than one thread; callers that share the CPU should pass threads=1.
    """
    import torch

    if threads is not None:
        if threads < 1:
            raise InvalidDevice(f"threads must be at least 1, got {threads}.")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


# glibc mallopt parameters (malloc.h); the values are C ints
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1


@lru_cache(maxsize=1)
def keep_freed_memory_for_reuse() -> bool:
    """Make glibc keep freed big blocks in the heap instead of unmapping them; True when applied.

    Why: glibc serves every allocation over ~32 MB with a fresh ``mmap`` and unmaps it on free, so the
    EnCodec decoder's large activations are page-faulted in from zero on every call (2.7 M minor
    faults for one 8 x 5 s decode on this box); reusing the heap measured 12.6 s -> 7.2 s for that
    decode. The cost: the process keeps its peak heap instead of shrinking after a big job, which
    suits a long-running generation worker. Linux/glibc only; ``TEXTUNES_KEEP_HEAP=0`` turns it off.
    """
    if os.environ.get("TEXTUNES_KEEP_HEAP", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX))
