"""Hostile documents through the real CLI: exit status, wall time and peak RSS of each (issue 14).

    PYTHONPATH=$PWD python bench/hostile.py                 # every input, table on stdout
    PYTHONPATH=$PWD python bench/hostile.py --only docx     # inputs whose name contains "docx"
    PYTHONPATH=$PWD python bench/hostile.py --checkout /other/tree --timeout 30   # e.g. the old code

Each input is generated into a temporary folder (tests/hostile_inputs.py) and run as
``python -m textunes analyze FILE`` in a child process with an address-space limit (RLIMIT_AS, set in
``preexec_fn``) and a wall-clock timeout (killed when it runs past). Peak RSS is the child's own
``ru_maxrss`` from ``os.wait4``. A document that reads fine goes on to the analysis (the text models
load: ~750 MB and ~15 s of the figures), exactly as a user's would.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.hostile_inputs import (  # noqa: E402  (the repo root must be on the path first)
    MENTIONS,
    W_NS,
    dense_docx,
    docx_with_member,
    mention_title_files,
    repeat,
    shared_stream_pdf,
    zip_bomb,
)

TITLE_FILES = ("title.txt", "title.md", "title.html", "title.docx", "title.pdf")


def _text(unit: str) -> Callable[[], bytes]:
    return lambda: repeat(unit).encode()


def _markup_only_docx() -> bytes:
    head = f'<w:document xmlns:w="{W_NS}"><w:body><w:p>'.encode()
    return docx_with_member([head, *[b"<w:r/>" * 100_000] * 80])


# name -> (bytes builder, extra CLI arguments); the file is written as <name>
INPUTS: dict[str, tuple[Callable[[], bytes], list[str]]] = {
    "spaces-2MB.txt": (_text(" "), []),
    "trailing-blanks-2MB.md": (_text(" " * 5000 + "x\n"), []),
    "dash-underscore-a-2MB.md": (_text("-_a"), []),
    "link-parens-2MB.md": (_text("[a]("), []),
    "comment-openers-2MB.md": (_text("<!--"), []),
    "initials-2MB.txt": (_text("a. "), []),
    "tag-openers-2MB.html": (_text("<a"), []),
    "bzip2-1GiB-declared-4KB.docx": (lambda: zip_bomb(zipfile.ZIP_BZIP2, 1 << 30), []),
    "lzma-256MiB-declared-4KB.docx": (lambda: zip_bomb(zipfile.ZIP_LZMA, 256 << 20), []),
    "deflate-1GiB-declared-4KB.docx": (lambda: zip_bomb(zipfile.ZIP_DEFLATED, 1 << 30), []),
    "deflate-1GiB-declared-40MB.docx": (
        lambda: zip_bomb(zipfile.ZIP_DEFLATED, 1 << 30, declared=40_000_000),
        [],
    ),
    "dense-12MB-xml.docx": (lambda: dense_docx(12_000_000), []),
    "dense-55MB-xml.docx": (lambda: dense_docx(55_000_000), []),
    "empty-runs-48MB-xml.docx": (_markup_only_docx, []),
    "300-pages-one-10MB-stream.pdf": (lambda: shared_stream_pdf(300, 10_000_000), []),
    "40-pages-8-heavy-streams.pdf": (lambda: shared_stream_pdf(40, 10_000_000, distinct=8), []),
    "latin1.txt": (lambda: "Crème brûlée\n\nUn café à Noël, très charmant.\n".encode("latin-1"), []),
    "cp949.txt": (
        lambda: "떠나간 사람\n\n비가 계속 내리는 밤, 우리는 오래된 마을에서 기다렸다.\n".encode("cp949"),
        [],
    ),
    **{name: ((lambda name=name: mention_title_files()[name]), []) for name in TITLE_FILES},
    "batch.csv --out /missing/dir/x.jsonl": (
        lambda: b"text\nThe rain fell all night on the quiet town.\n",
        ["--out", "/missing/dir/x.jsonl"],
    ),
}


def run_one(path: Path, extra: list[str], *, checkout: Path, as_limit: int, timeout: float) -> dict:
    """Run the CLI on ``path`` in a limited child; exit status, wall seconds, peak RSS, last message."""
    if path.suffix == ".csv":
        command = [sys.executable, "-m", "textunes", "analyze", "--batch", str(path), *extra]
    else:
        command = [sys.executable, "-m", "textunes", "analyze", str(path), *extra]

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (as_limit, as_limit))

    env = {**os.environ, "PYTHONPATH": str(checkout)}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        child = subprocess.Popen(command, stdout=out, stderr=err, preexec_fn=limit, cwd=checkout, env=env)
        killer = threading.Timer(timeout, lambda: os.kill(child.pid, signal.SIGKILL))
        killer.start()
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.monotonic() - started
        killer.cancel()
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    code = child.returncode
    if code == -signal.SIGKILL and wall >= timeout:
        message = f"killed after {timeout:g} s"
    elif code == 0:
        lines = stdout.strip().splitlines()
        head = lines[0] if lines else ""
        title = next((line for line in lines if line.startswith("title:")), "")
        message = f"{head} {title}".strip()
    else:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        message = lines[-1] if lines else f"no message (status {code})"
    return {"status": code, "wall": wall, "rss_mb": usage.ru_maxrss / 1024, "message": message}


def generate(folder: Path, names: list[str]) -> None:
    """Write the inputs (run in its own process: see ``main``)."""
    for name in names:
        build, _ = INPUTS[name]
        (folder / name.split(" ")[0]).write_bytes(build())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="run the inputs whose name contains this")
    parser.add_argument(
        "--checkout", default=str(REPO), help="tree whose textunes to run (default: this one)"
    )
    parser.add_argument("--as-limit-gb", type=float, default=3.0, help="child address-space limit (GiB)")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="wall seconds before the child is killed"
    )
    parser.add_argument("--message-width", type=int, default=110)
    parser.add_argument("--generate", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = [name for name in INPUTS if not args.only or args.only in name]
    if args.generate:
        generate(Path(args.generate), names)
        return 0
    print(
        f"# textunes analyze FILE from {args.checkout}; RLIMIT_AS {args.as_limit_gb:g} GiB, timeout {args.timeout:g} s"
    )
    print(
        f"# mention titles use {MENTIONS!r}; the table's message is stdout's first line (+ title) or stderr's last"
    )
    print(f"| {'input':<38} | {'bytes':>9} | exit | {'wall s':>6} | {'peak RSS MB':>11} | message |")
    print(f"|{'-' * 40}|{'-' * 11}|------|{'-' * 8}|{'-' * 13}|---------|")
    with tempfile.TemporaryDirectory(prefix="hostile-") as folder:
        # the inputs are built in another process: a child's ru_maxrss starts from this process's RSS
        # at fork, so this one stays small (its figure is printed below the table)
        command = [
            sys.executable,
            __file__,
            "--generate",
            folder,
            *(["--only", args.only] if args.only else []),
        ]
        subprocess.run(command, check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        for name in names:
            _, extra = INPUTS[name]
            path = Path(folder) / name.split(" ")[0]
            result = run_one(
                path, extra, checkout=Path(args.checkout), as_limit=int(args.as_limit_gb * (1 << 30)),
                timeout=args.timeout,
            )  # fmt: skip
            message = " ".join(result["message"].replace("|", "/").split())
            if len(message) > args.message_width:
                message = message[: args.message_width - 1] + "…"
            print(
                f"| {name:<38} | {path.stat().st_size:>9,} | {result['status']:>4} | {result['wall']:>6.1f} | "
                f"{result['rss_mb']:>11.0f} | {message} |",
                flush=True,
            )
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"# this process's own peak RSS (the floor every child's figure starts from): {floor:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
