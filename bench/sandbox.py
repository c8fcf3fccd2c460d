"""The analysis sandbox under normal and hostile documents: wall time, the child's memory, the loop's lag.

    python bench/sandbox.py            # prints one markdown table

Rows: loading the child; a short and a 1.9 MB text; a PDF slow to read (tests/sandbox_inputs.py) with the
default limits and with a 2 s wall; a 60 MB text against a 30 MB memory budget. For each: outcome,
wall seconds, the child's peak RSS and mapped size (VmHWM / VmSize, read from /proc), and the
event-loop lag p99 of this (parent) process while the request ran.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.text.sandbox import AnalysisSandbox, SandboxLimits  # noqa: E402
from tests.sandbox_inputs import LoopLag, slow_pdf  # noqa: E402

HAPPY = ROOT / "tests" / "fixtures" / "happy_en.txt"


def _proc_mb(pid: int | None, field: str) -> str:
    if pid is None:
        return "-"
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return f"{int(line.split()[1]) / 1024:.0f}"
    except OSError:
        pass
    return "(gone)"


async def _row(box: AnalysisSandbox, name: str, data: bytes, filename: str, **kw) -> list[str]:
    pid = box.pid
    async with LoopLag() as lag:
        started = time.monotonic()
        try:
            analysis = await box.analyze(data, filename, **kw)
            outcome = f"ok ({analysis.language}, {len(analysis.summary)} summary sentences)"
        except Exception as exc:  # the row shows what the user would read
            outcome = f"{type(exc).__name__}: {str(exc)[:70]}"
        wall = time.monotonic() - started
    return [
        name,
        outcome,
        f"{wall:.2f}",
        _proc_mb(pid, "VmHWM"),
        _proc_mb(pid, "VmSize"),
        f"{lag.p99() * 1000:.1f}",
    ]


async def main() -> None:
    rows: list[list[str]] = []
    rnd = random.Random(1)
    words = HAPPY.read_text(encoding="utf-8").split()
    big_text = ". ".join(" ".join(rnd.choice(words) for _ in range(12)) for _ in range(40_000))
    big = big_text.encode()[:1_900_000]
    pdf = slow_pdf()

    box = AnalysisSandbox(SandboxLimits())
    started = time.monotonic()
    await box.start()
    rows.append(
        [
            "load analyser in the child (default limits: +1.5 GB, 30 s)",
            f"cap = {box.mapped_bytes / 1e9:.2f} GB mapped + 1.50 GB",
            f"{time.monotonic() - started:.2f}",
            _proc_mb(box.pid, "VmHWM"),
            _proc_mb(box.pid, "VmSize"),
            "-",
        ]
    )
    rows.append(await _row(box, "happy_en.txt (1 KB)", HAPPY.read_bytes(), "happy.txt"))
    rows.append(await _row(box, "random words .txt (1.9 MB)", big, "big.txt"))
    rows.append(
        await _row(
            box, f"slow PDF ({len(pdf) // 1024} KB, 300 pages, a 600 KB stream each)", pdf, "shared.pdf"
        )
    )
    await box.close()

    box = AnalysisSandbox(SandboxLimits(wall_seconds=2.0))
    await box.start()
    rows.append(await _row(box, "slow PDF, wall 2 s", pdf, "shared.pdf"))
    rows.append(await _row(box, "happy_en.txt right after (fresh child)", HAPPY.read_bytes(), "happy.txt"))
    await box.close()

    box = AnalysisSandbox(SandboxLimits(memory_bytes=30_000_000, wall_seconds=60))
    await box.start()
    sixty = b"The sea festival began at dawn and everyone came down to the water. " * 900_000
    rows.append(await _row(box, "60 MB .txt, memory budget 30 MB", sixty, "big.txt", max_bytes=100_000_000))
    rows.append(await _row(box, "happy_en.txt right after (fresh child)", HAPPY.read_bytes(), "happy.txt"))
    await box.close()

    header = ["input", "outcome", "wall s", "child peak RSS MB", "child VmSize MB", "loop lag p99 ms"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    asyncio.run(main())
