"""Inputs and probes shared by the sandbox and service tests: a PDF that is slow to read, a loop-lag probe."""

from __future__ import annotations

import asyncio
import io
import time

FIXTURES_TEXT = "tests/fixtures/happy_en.txt"


def shared_stream_pdf(pages: int = 300, megabytes: float = 1.0) -> bytes:
    """A ~50 KB PDF whose pages all share one ``megabytes`` MB content stream (issue 14's input):
    every page parses the whole stream again. At 1 MB (about 170k tokens, under the per-page token
    cap of the hardened reader) reading it takes its whole time budget: 6-7 s on this machine."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    line = b"BT /F1 12 Tf 72 712 Td (The sea festival began at dawn) Tj ET\n"
    stream = DecodedStreamObject()
    stream.set_data(line * int(megabytes * 1_000_000 // len(line)))
    writer = PdfWriter()
    contents = writer._add_object(stream.flate_encode())
    font = writer._add_object(
        DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
    )
    for _ in range(pages):
        page = writer.add_blank_page(612, 792)
        page[NameObject("/Contents")] = contents
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


class LoopLag:
    """Measures how late a 10 ms sleep wakes up on the running loop, while ``async with`` lasts."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.lags: list[float] = []
        self._task: asyncio.Task | None = None

    async def _probe(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.lags.append(time.perf_counter() - start - self.interval)

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._probe())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass

    def p99(self) -> float:
        ordered = sorted(self.lags)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0
