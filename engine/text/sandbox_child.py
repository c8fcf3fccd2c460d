"""The analysis sandbox's child process: load the analyser, cap the address space, serve documents.

Runs only in the child that ``engine.text.sandbox.AnalysisSandbox`` spawns (the parent reaches it
by module name, so the parent never imports the document readers or the text models). Each request
is read (``engine.text.ingest``) and analysed here; the answer, or what went wrong, goes back over
the pipe. A ``MemoryError`` ends the child after its answer: a fresh one is cleaner.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
from typing import Any

from engine.errors import UserInputError
from engine.lifeline import exit_with_parent

_WARM_UP_TEXTS = (
    "The whole town woke early on the morning of the summer festival. Everyone was happy.",
    "비가 오는 밤, 그는 오래된 편지를 다시 읽었다. 마음이 조용히 가라앉았다.",
)


def _vm_size() -> int:
    """This process's mapped address space in bytes (VmSize)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmSize in /proc/self/status")


def _release_free_memory() -> None:
    """Collect garbage and hand freed heap pages back (glibc), so VmSize is what stays mapped."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    name = ctypes.util.find_library("c")
    if name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc: the measurement is just a little high
            pass


def _read(payload: dict) -> Any:
    """The request's ``Document``: an upload (bytes + name) or pasted text."""
    from engine.text.ingest import document_from_text, read_document

    data, name = payload.pop("data", None), payload.get("filename") or "document.txt"
    if data is not None:
        return read_document(data, name, max_bytes=payload["max_bytes"])
    return document_from_text(payload.get("text") or "")


def child_main(conn: multiprocessing.connection.Connection, memory_bytes: int) -> None:
    """The sandbox process: load, warm up, cap the address space, then serve requests until EOF."""
    exit_with_parent("textunes-sandbox-parent-watch")
    try:
        from engine.text.analyzer import default_analyzer

        analyzer = default_analyzer()
        for text in _WARM_UP_TEXTS:  # lazy parts (splitter, thread pools) map their memory now
            analyzer.analyze(text)
        _release_free_memory()  # measure what the models hold, not the warm-up's garbage
        mapped = _vm_size()
        if memory_bytes > 0:
            import resource

            limit = mapped + memory_bytes
            _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            if hard != resource.RLIM_INFINITY:
                limit = min(limit, hard)
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        conn.send(("ready", mapped))
    except BaseException as exc:  # report why, then exit
        conn.send(("load_error", f"{type(exc).__name__}: {exc}"))
        return
    while True:
        try:
            payload = conn.recv()
            if payload.pop("has_data", False):  # the upload follows as raw bytes (no pickle copy)
                payload["data"] = conn.recv_bytes()
        except (EOFError, OSError, MemoryError):
            return
        overrides = payload.pop("overrides", {})
        try:
            doc = _read(payload)
            payload.clear()  # drop the upload before the analysis allocates
            analysis = analyzer.analyze_document(doc, **overrides)
            reply: tuple = ("ok", analysis)
        except MemoryError:
            reply = ("memory",)
        except UserInputError as exc:
            reply = ("user_error", type(exc).__name__, str(exc))
        except Exception as exc:  # a reader bug: the parent logs it and tells the user plainly
            reply = ("error", f"{type(exc).__name__}: {exc}"[:500])
        try:
            conn.send(reply)
        except MemoryError:
            return  # the parent sees the child die and reports "too large"
        if reply[0] == "memory":
            return  # a fresh child is cleaner than one that just failed an allocation
