"""Int8 MusicGen on CPU: int8 Linear layers, and giving back the checkpoint pages that leaves unused."""

from __future__ import annotations

from typing import Any


def int8_linears(module: Any) -> Any:
    """``module`` with its Linear layers int8 dynamic-quantised (CPU only): in place for a container,
    a new module for a bare Linear. Per-output-channel weight scales keep the error small."""
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    qconfig = {torch.nn.Linear: per_channel_dynamic_qconfig}
    with warnings.catch_warnings():  # torch marks eager quantisation deprecated; it is still the fast path
        warnings.simplefilter("ignore")
        if isinstance(module, torch.nn.Linear):
            return quantize_dynamic(torch.nn.Sequential(module), qconfig, dtype=torch.qint8)[0]
        return quantize_dynamic(module, qconfig, dtype=torch.qint8, inplace=True)


def quantize_int8(model: Any) -> None:
    """Int8 Linear layers in the text encoder, its projection and the decoder, in place; EnCodec has
    no Linear layers and stays fp32."""
    for part in ("text_encoder", "decoder", "enc_to_dec_proj"):
        module = getattr(model, part, None)
        if module is not None:
            setattr(model, part, int8_linears(module))


def own_tensors(model: Any) -> None:
    """Copy the parameters and buffers that still point into the memory-mapped checkpoint into memory
    of their own, so the mapping (every page of which quantisation has read) can be released.

    Why: reading the checkpoint into owned memory instead (``disable_mmap``) holds the file's bytes and
    the model's tensors at once — a 4.8 GB load peak for musicgen-small — while an mmapped load that
    keeps the mapping stays at ~3 GB resident for good. Swapping ``.data`` keeps every Parameter object,
    so tied weights and the references LSTMs keep to their weights follow.
    """
    import gc

    import torch

    gc.collect()  # the replaced float Linear layers sit in reference cycles: free them first
    done: set[int] = set()
    with torch.no_grad():
        for module in model.modules():
            for tensor in [*module._parameters.values(), *module._buffers.values()]:
                if tensor is None or id(tensor) in done or tensor.device.type != "cpu":
                    continue
                done.add(id(tensor))
                tensor.data = tensor.data.clone()
    gc.collect()


_MADV_DONTNEED = 4


def checkpoint_mappings() -> set[tuple[int, int]]:
    """Address ranges of this process's private ``*.safetensors`` mappings (Linux; empty elsewhere)."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            lines = maps.read().splitlines()
    except OSError:
        return set()
    found = set()
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].endswith(".safetensors") and fields[1][3] == "p":
            start, end = (int(x, 16) for x in fields[0].split("-"))
            found.add((start, end))
    return found


def drop_pages(ranges: set[tuple[int, int]]) -> int:
    """Give back the resident pages of checkpoint mappings nothing points into any more.

    Why: safetensors keeps a checkpoint mapped after loading even when no tensor uses it
    (``own_tensors`` copied them all), so its 2.4 GB of read pages stayed in our RSS. They are clean
    file pages: anything that read them again would fault them back in from the file. Returns bytes.
    """
    import ctypes

    if not ranges:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    dropped = 0
    for start, end in ranges:
        if libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), _MADV_DONTNEED) == 0:
            dropped += end - start
    return dropped
