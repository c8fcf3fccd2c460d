"""The analysis sandbox: documents are read and analysed in a child with a memory cap and a wall clock."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from engine.errors import UserInputError
from engine.text.sandbox import (
    AnalysisSandbox,
    AnalysisTimeout,
    AnalysisTooLarge,
    DocumentRejected,
    SandboxLimits,
)
from tests.sandbox_inputs import LoopLag, slow_pdf

HAPPY = Path(__file__).parent / "fixtures" / "happy_en.txt"
WALL = 2.0


@pytest.fixture(scope="module")
def sandbox():
    """One loaded sandbox for the module (loading the text models takes seconds)."""
    box = AnalysisSandbox(SandboxLimits(wall_seconds=WALL))
    asyncio.run(box.start())
    yield box
    asyncio.run(box.close())


async def test_a_document_is_read_and_analysed_in_the_child(sandbox: AnalysisSandbox) -> None:
    analysis = await sandbox.analyze(HAPPY.read_bytes(), "happy.txt", duration=20, tempo="Fast")
    assert analysis.title == "A Summer Festival by the Sea"
    assert analysis.language == "en"
    assert analysis.spec.duration == 20.0 and analysis.spec.tempo == "Fast"
    assert analysis.summary and analysis.spec.genres
    assert sandbox.pid is not None and sandbox.pid != os.getpid()
    assert pickle.loads(pickle.dumps(analysis)).prompt == analysis.prompt  # it crossed a pipe


async def test_pasted_text_and_reader_errors_keep_their_type(sandbox: AnalysisSandbox) -> None:
    analysis = await sandbox.analyze(text=HAPPY.read_text(encoding="utf-8"))
    assert analysis.language == "en"
    with pytest.raises(DocumentRejected, match="empty") as rejected:
        await sandbox.analyze(b"   \n  ", "blank.txt")
    assert rejected.value.kind == "EmptyDocument"
    with pytest.raises(UserInputError, match="Supported types"):
        await sandbox.analyze(b"MZ\x90\x00", "tool.exe")


async def test_a_slow_document_times_out_without_lagging_the_loop_and_the_next_one_works(
    sandbox: AnalysisSandbox,
) -> None:
    pdf = slow_pdf()
    before = sandbox.pid
    async with LoopLag() as lag:
        started = time.monotonic()
        with pytest.raises(AnalysisTimeout, match=f"within {WALL:g} s"):
            await sandbox.analyze(pdf, "shared.pdf")
        took = time.monotonic() - started
    assert WALL <= took < WALL + 5, took
    assert len(lag.lags) > 50
    assert lag.p99() < 0.050, f"event-loop lag p99 {lag.p99() * 1000:.1f} ms"
    assert not psutil.pid_exists(before) or psutil.Process(before).status() == psutil.STATUS_ZOMBIE
    analysis = await sandbox.analyze(HAPPY.read_bytes(), "happy.txt")  # a fresh child serves it
    assert analysis.language == "en"
    assert sandbox.pid != before


async def test_a_memory_blow_up_fails_cleanly_and_the_next_request_works() -> None:
    # 30 MB above the loaded analyser; the operator allows 100 MB uploads here, so a 60 MB text
    # gets in, and decoding it (a second 60 MB) runs into the cap
    box = AnalysisSandbox(SandboxLimits(memory_bytes=30_000_000, wall_seconds=60))
    big = b"The sea festival began at dawn and everyone came down to the water. " * 900_000
    try:
        await box.start()
        assert box.mapped_bytes > 500_000_000  # the loaded models, measured in the child
        first = box.pid
        started = time.monotonic()
        with pytest.raises(AnalysisTooLarge, match="within 30 MB"):
            await box.analyze(big, "big.txt", max_bytes=100_000_000)
        assert time.monotonic() - started < 30
        analysis = await box.analyze(HAPPY.read_bytes(), "happy.txt")
        assert analysis.language == "en"
        assert box.pid != first
    finally:
        await box.close()


PARENT = """
import asyncio, sys, time
from engine.text.sandbox import AnalysisSandbox

async def main():
    box = AnalysisSandbox()
    await box.start()
    print(box.pid, flush=True)
    time.sleep(600)

asyncio.run(main())
"""


def test_the_child_exits_when_its_parent_is_killed(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = parent.stdout.readline()
        child = psutil.Process(int(line))
        assert child.is_running() and child.ppid() == parent.pid
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        child.wait(10)  # raises TimeoutExpired if it outlives its parent
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    finally:
        if parent.poll() is None:
            parent.kill()
