"""PDF → text (pypdf) within one wall-clock budget for the whole document and a page cap.

A 76 KB PDF can hold 300 pages that share one 10 MB content stream; pypdf spends ~20 s on each
before its own token limit stops it. So: pypdf's limits are lowered for the call, a content stream
that failed once is not parsed again for the next page, the budget is checked before every page
(failed ones included), and in the main thread a timer interrupts a page that runs past it.
"""

from __future__ import annotations

import io
import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from engine.text.ingest.errors import (
    DocumentError,
    EmptyDocument,
    NoTextLayer,
    UnreadableDocument,
    short_error,
)

# pypdf limits for our call only (pypdf's defaults are 75 MB of output and 2 M tokens per stream,
# ~20 s of parsing; 200 000 tokens take ~2 s); a dense page of text has ~10 000 tokens
PYPDF_LIMITS = {
    "stream_parsing_work_maximum_count": 200_000,
    "zlib_maximum_output_length": 20_000_000,
    "lzw_maximum_output_length": 20_000_000,
    "run_length_maximum_output_length": 20_000_000,
    "array_based_stream_maximum_output_length": 20_000_000,
    "xform_maximum_invocations_per_extraction": 500,
}


class _OutOfTime(BaseException):
    """Raised by the timer inside pypdf; not an ``Exception``, so pypdf's handlers cannot swallow it."""


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` where a timer can (the main thread, SIGALRM unused);
    elsewhere the caller's checks between pages are the budget."""
    usable = (
        hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None)
    )
    if not usable:
        yield
        return

    def on_alarm(signum: int, frame: object) -> None:
        raise _OutOfTime

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)


def _contents_key(page: object) -> tuple:
    """The indirect objects a page's content comes from (pages may share them)."""
    try:
        contents = page.get("/Contents")  # type: ignore[attr-defined]
    except Exception:
        return ()
    refs = contents if isinstance(contents, list) else [contents]
    return tuple((ref.idnum, ref.generation) for ref in refs if hasattr(ref, "idnum"))


def read_pdf(
    data: bytes, name: str, *, max_chars: int, max_pages: int, time_budget_s: float
) -> tuple[str, str | None, int, bool]:
    """Returns (text, title, page count, truncated). ``truncated`` when pages were sampled (over
    ``max_pages``), the text limit was reached, or the time budget ran out with some text read."""
    from pypdf import PdfReader, apply_configuration

    if not data.lstrip().startswith(b"%PDF"):
        raise UnreadableDocument(
            f"{name} is not a valid PDF (it doesn't start like one). Re-export it as PDF."
        )
    # pypdf logs every repair it makes on a damaged file; that is noise for our users
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    started = time.monotonic()
    texts: list[str] = []
    title: str | None = None
    count = 0
    truncated = out_of_time = False
    failures = attempted = 0
    try:
        with apply_configuration(**PYPDF_LIMITS), _deadline(time_budget_s):
            try:
                reader = PdfReader(io.BytesIO(data))
                if reader.is_encrypted and not reader.decrypt(""):
                    raise UnreadableDocument(
                        f"{name} is password-protected. Remove the password and send it again."
                    )
                count = len(reader.pages)
            except DocumentError:
                raise
            except Exception as exc:  # pypdf raises many types on corrupt input
                raise UnreadableDocument(
                    f"{name} looks damaged and I couldn't read it ({short_error(exc)}). "
                    "Re-export it as PDF or paste the text."
                ) from exc
            if count == 0:
                raise EmptyDocument(f"{name} has no pages.")
            title = _title(reader)
            # very long PDFs: read evenly spaced pages so the text still represents the whole document
            indices = list(range(count))
            if count > max_pages:
                step = count / max_pages
                indices = sorted({int(i * step) for i in range(max_pages)})
                truncated = True
            total = 0
            failed_streams: set[tuple] = set()
            for index in indices:
                if time.monotonic() - started > time_budget_s:  # failed pages count too
                    out_of_time = True
                    break
                attempted += 1
                key: tuple = ()
                try:
                    page = reader.pages[index]
                    key = _contents_key(page)
                    if key and key in failed_streams:  # the same stream fails the same way
                        failures += 1
                        continue
                    page_text = page.extract_text() or ""
                except Exception:  # one broken page must not lose the rest
                    failures += 1
                    if key:
                        failed_streams.add(key)
                    continue
                texts.append(page_text)
                total += len(page_text)
                if total > max_chars * 1.2:
                    truncated = index != indices[-1]
                    break
    except _OutOfTime:
        out_of_time = True
    if out_of_time and not texts:
        raise UnreadableDocument(
            f"{name} takes too long to read (its pages are unusually complex, over "
            f"{time_budget_s:g} s). Re-export it as PDF with simpler pages, or paste the text."
        )
    if failures and failures == attempted and not out_of_time:
        raise UnreadableDocument(
            f"{name} looks damaged: no page could be read. Re-export it as PDF or paste the text."
        )
    text = "\n\n".join(texts)
    if sum(ch.isalnum() for ch in text[:100_000]) < 20:
        raise NoTextLayer(
            f"{name}: this PDF has no text layer (a scan?) — export it with text, or paste the text."
        )
    return text, title, count, truncated or out_of_time


def _title(reader: object) -> str | None:
    try:
        meta = reader.metadata  # type: ignore[attr-defined]
        if meta and meta.title and str(meta.title).strip():
            return str(meta.title)
    except Exception:  # broken metadata is not worth failing for
        return None
    return None
