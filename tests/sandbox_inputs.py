"""Inputs and probes shared by the sandbox and service tests: a PDF that is slow to read, a loop-lag probe."""

from __future__ import annotations

import asyncio
import time

FIXTURES_TEXT = "tests/fixtures/happy_en.txt"


def slow_pdf() -> bytes:
    """A 0.6 MB PDF of 300 pages, each drawing its own 600 KB content stream (~170k tokens, under the
    hardened reader's per-stream cap): reading it all took over 100 s on a 2-core EPYC (2026-12-02),
    and the reader's own 6 s budget ends it, so any wall-clock limit a test sets (1-2 s) is reached
    on any machine. The first version shared one stream between the pages; a faster machine read
    that in 1.6 s, close enough to a 2 s limit to make the tests flaky."""
    from tests.hostile_inputs import shared_stream_pdf

    return shared_stream_pdf(300, 600_000, distinct=300)


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
