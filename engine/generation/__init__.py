"""Pick and load a generation backend.

    from engine.generation import load_backend
    backend = load_backend("auto")     # MusicGen if its weights are on this machine, else the arranger

Importing this package is cheap: torch / transformers are imported only when a MusicGen backend is
actually loaded, so the bot and ``textunes --help`` never pay for them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from engine.errors import BackendUnavailable, UserInputError
from engine.generation.base import GenerationCancelled, GenerationParams, MusicBackend, ProgressFn

__all__ = [
    "BACKENDS",
    "DEFAULT_MUSICGEN_MODEL",
    "GenerationCancelled",
    "GenerationParams",
    "MusicBackend",
    "ProgressFn",
    "load_backend",
    "musicgen_weights_available",
]

BACKENDS = ("auto", "musicgen", "arranger")
DEFAULT_MUSICGEN_MODEL = "facebook/musicgen-small"

# Any one of these is a complete set of weights in a checkpoint folder / hub snapshot.
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# The processor (tokenizer + feature extractor) must be there too, or loading fails later.
_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


class UnknownBackend(UserInputError):
    """--backend value that does not exist."""


def _local_dir_complete(folder: Path) -> bool:
    return (
        (folder / "config.json").is_file()
        and any((folder / name).is_file() for name in _WEIGHT_FILES)
        and any((folder / name).is_file() for name in _PROCESSOR_FILES)
    )


def musicgen_weights_available(model: str | os.PathLike | None = None) -> bool:
    """True when ``model`` (a folder or a hub id) can be loaded WITHOUT the network.

    Never downloads: a folder is checked on disk; a hub id is looked up in the local HF cache only
    (``try_to_load_from_cache`` reads the cache directory and makes no request).
    """
    model = str(model or DEFAULT_MUSICGEN_MODEL)
    folder = Path(model).expanduser()
    if folder.is_dir():
        return _local_dir_complete(folder)
    if model.count("/") != 1 or model.startswith((".", "/", "~")):
        return False  # neither an existing folder nor a hub id ("owner/name")
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on it
        return False

    def cached(filename: str) -> bool:
        try:
            return isinstance(try_to_load_from_cache(model, filename), str)
        except Exception:  # malformed ids etc. mean "not available", never a crash
            return False

    return (
        cached("config.json")
        and any(cached(name) for name in _WEIGHT_FILES)
        and any(cached(name) for name in _PROCESSOR_FILES)
    )


def _load_arranger(log: Callable[[str], None] | None = None) -> MusicBackend:
    try:
        from engine.generation.arranger import ArrangerBackend
    except ImportError as exc:
        raise BackendUnavailable(f"The offline arranger backend could not be imported: {exc}") from exc
    return ArrangerBackend()


def _load_musicgen(model: str, device: str, dtype: str, *, offline: bool, **options) -> MusicBackend:
    from engine.generation.musicgen import MusicGenBackend

    return MusicGenBackend(model, device=device, dtype=dtype, local_files_only=offline, **options)


def load_backend(
    name: str = "auto",
    model: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    log: Callable[[str], None] | None = print,
    **options,
) -> MusicBackend:
    """Return a ready backend.

    - ``"arranger"``: the embedded offline arranger (always available).
    - ``"musicgen"``: MusicGen from ``model`` (hub id or folder; default facebook/musicgen-small);
      raises ``BackendUnavailable`` when the weights are not on this machine. Never downloads.
    - ``"auto"``: MusicGen when its weights are local, else the arranger — and says which and why in
      ONE loud ``log`` line, never silently.
    ``options`` go to ``MusicGenBackend`` (``kv_cache``, ``threads``, ``max_batch``).
    """
    choice = (name or "auto").strip().lower()
    if choice not in BACKENDS:
        raise UnknownBackend(f"Unknown backend '{name}'. Use one of: {', '.join(BACKENDS)}.")
    model_id = str(model or DEFAULT_MUSICGEN_MODEL)
    say = log or (lambda _line: None)

    if choice == "arranger":
        return _load_arranger()

    from engine.generation.musicgen import describe_weights_hint

    available = musicgen_weights_available(model_id)
    if choice == "musicgen":
        if not available:
            raise BackendUnavailable(
                f"MusicGen weights for {model_id} are not on this machine. {describe_weights_hint(model_id)} "
                "Or use --backend arranger (offline, no weights needed)."
            )
        return _load_musicgen(model_id, device, dtype, offline=True, **options)

    # auto
    if available:
        try:
            backend = _load_musicgen(model_id, device, dtype, offline=True, **options)
        except BackendUnavailable as exc:  # weights there but unusable: still make music, and say why
            backend = _load_arranger()
            say(f"TexTuneS: MusicGen {model_id} could not be loaded ({exc}) → using the offline arranger.")
            return backend
        where = "local folder" if Path(model_id).expanduser().is_dir() else "Hugging Face cache"
        meta = getattr(backend, "device", device), getattr(backend, "_dtype_name", dtype)
        say(f"TexTuneS: using MusicGen ({model_id}, found in the {where}) on {meta[0]} / {meta[1]}.")
        return backend
    backend = _load_arranger()
    say(
        f"TexTuneS: MusicGen weights for {model_id} are not on this machine → using the offline arranger "
        f"(General MIDI SoundFont). {describe_weights_hint(model_id)}"
    )
    return backend
