"""``textunes analyze``: what the text mode reads in a document, and the music prompt it makes.

textunes analyze chapter.pdf              # pretty report
textunes analyze chapter.pdf --json       # one JSON object
textunes analyze --batch rows.csv --column text --out results.jsonl
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import time
from pathlib import Path

BATCH_CHUNK = 32  # rows per encoder batch in --batch mode


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze",
        help="analyse a document: summary, topic, emotion, valence/arousal → music prompt",
        description="Analyse a document (.txt .md .pdf .docx .html; English, Korean or other) "
        "and show the music prompt it leads to, with the reasons.",
    )
    p.add_argument("file", nargs="?", help="document to analyse")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    p.add_argument("--batch", metavar="CSV", help="analyse every row of a CSV file (writes JSON lines)")
    p.add_argument("--column", default="text", help="CSV column holding the text (default: text)")
    p.add_argument("--title-column", help="CSV column holding a title (optional)")
    p.add_argument("--out", help="JSON-lines output for --batch (default: stdout)")
    p.add_argument("--limit", type=int, help="analyse at most this many rows (--batch)")
    p.add_argument("--tempo", help="override the tempo: Slow / Medium / Fast or a BPM")
    p.add_argument("--duration", help="override the duration: seconds or m:ss")
    p.add_argument("--keyword", action="append", default=[], help="extra keyword (repeatable)")
    p.add_argument("--instrument", action="append", default=[], help="instrument (repeatable)")
    p.add_argument("--models", help="folder with the trained text heads (default data/models)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.errors import UserInputError

    if bool(args.file) == bool(args.batch):
        raise UserInputError("Give either a FILE to analyse or --batch FILE.csv (not both).")
    overrides = {
        "tempo": args.tempo,
        "duration": args.duration,
        "keywords": tuple(args.keyword),
        "instruments": tuple(args.instrument),
    }
    if args.batch:
        return _run_batch(args, overrides)

    from engine.text.analyzer import Analyzer, read_file

    doc = read_file(args.file)  # bad files fail before the models load
    analyzer = Analyzer.load(args.models)
    started = time.perf_counter()
    analysis = analyzer.analyze_document(doc, **overrides)
    elapsed = time.perf_counter() - started
    if args.json:
        out = analysis.to_dict()
        out["seconds"] = round(elapsed, 3)
        print(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        print(format_report(analysis, doc_name=Path(args.file).name, seconds=elapsed))
    return 0


def format_report(analysis, *, doc_name: str = "", seconds: float | None = None) -> str:
    a = analysis
    lines = []
    head = f"{doc_name}: " if doc_name else ""
    extra = ", sampled (long document)" if a.truncated else ""
    lines.append(f"{head}{a.language_name}, {a.chars:,} characters, {a.sentences} sentences{extra}")
    if a.title:
        lines.append(f"title:     {a.title}")
    lines.append("summary:")
    for sentence in a.summary:
        lines.append(f"  - {sentence}")
    top3 = ", ".join(f"{t['name']} {t['score']:.2f}" for t in a.topic["top3"])
    lines.append(f"topic:     {a.topic['name']} ({a.topic['score']:.2f})   top 3: {top3}")
    scores = sorted(a.emotion["scores"].items(), key=lambda kv: -kv[1])
    lines.append(f"emotion:   {a.emotion['label']}   " + " ".join(f"{k} {v:.2f}" for k, v in scores))
    lines.append(f"valence:   {a.valence:+.2f}   arousal: {a.arousal:+.2f}")
    lines.append(f"genres:    {', '.join(a.genres) or '-'}")
    lines.append(f"moods:     {', '.join(a.moods) or '-'}")
    if a.instruments:
        lines.append(f"instruments: {', '.join(a.instruments)}")
    lines.append(f"tempo:     {a.tempo} ({a.bpm} BPM), {a.mode}")
    lines.append(f"duration:  {a.spec.duration:g} s")
    lines.append(f"prompt:    {a.prompt}")
    lines.append("why:")
    for reason in a.reasons:
        lines.append(f"  - {reason}")
    if seconds is not None:
        lines.append(f"(analysed in {seconds:.2f} s)")
    return "\n".join(lines)


def read_csv_rows(
    path: str | Path, column: str, title_column: str | None = None
) -> list[tuple[str, str | None]]:
    """Rows of a CSV (any common encoding, e.g. CP949 from Korean Excel) → (text, title) pairs."""
    from engine.errors import UserInputError, existing_file
    from engine.text.ingest import decode_text

    file = existing_file(path)
    text, _ = decode_text(file.read_bytes(), file.name)
    reader = csv.DictReader(io.StringIO(text))
    columns = reader.fieldnames or []
    for wanted in (column, title_column):
        if wanted and wanted not in columns:
            raise UserInputError(
                f"{file.name} has no column '{wanted}'. Columns: {', '.join(columns) or '(none)'}. "
                "Pick one with --column."
            )
    return [(row.get(column) or "", row.get(title_column) if title_column else None) for row in reader]


def check_out_path(out: str | None) -> None:
    """Refuse an ``--out`` that cannot be written (missing folder, a folder, read-only) up front."""
    from engine.errors import UserInputError

    if not out:
        return
    path = Path(out)
    folder = path.parent
    if path.is_dir():
        raise UserInputError(f"--out {out} is a folder; give a file name such as {path / 'results.jsonl'}.")
    if not folder.is_dir():
        raise UserInputError(
            f"--out {out}: the folder {folder} does not exist. Create it or choose another path."
        )
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserInputError(f"--out {out} is not writable here. Choose another path.")


def _run_batch(args: argparse.Namespace, overrides: dict) -> int:
    from engine.errors import UserInputError
    from engine.text.analyzer import Analyzer
    from engine.text.ingest import document_from_text

    check_out_path(args.out)  # before the CSV is read and long before the models load
    from engine.prompt import build_spec

    # the options are checked before --out is opened (and emptied) and before the models load
    build_spec(genres="Lofi", tempo=overrides["tempo"], duration=overrides["duration"] or 30,
               keywords=overrides["keywords"], instruments=overrides["instruments"])  # fmt: skip
    rows = read_csv_rows(args.batch, args.column, args.title_column)
    if args.limit is not None:
        rows = rows[: max(args.limit, 0)]
    if not rows:
        raise UserInputError(f"{Path(args.batch).name} has no rows to analyse.")
    analyzer = Analyzer.load(args.models)
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
    started = time.perf_counter()
    done = failed = 0
    try:
        for start in range(0, len(rows), BATCH_CHUNK):
            chunk = list(enumerate(rows[start : start + BATCH_CHUNK], start=start))
            docs, positions, records = [], [], {}
            for index, (text, title) in chunk:
                try:
                    docs.append(document_from_text(text, title=title or None))
                    positions.append(index)
                except UserInputError as exc:  # one bad row must not stop the run
                    records[index] = {"row": index, "error": str(exc)}
                    failed += 1
            for index, analysis in zip(positions, analyzer.analyze_documents(docs, **overrides), strict=True):
                records[index] = {"row": index, **analysis.to_dict()}
                done += 1
            for index, _ in chunk:
                out.write(json.dumps(records[index], ensure_ascii=False) + "\n")
            out.flush()
    finally:
        if out is not sys.stdout:
            out.close()
    elapsed = time.perf_counter() - started
    where = args.out or "stdout"
    print(
        f"analysed {done} rows ({failed} skipped) in {elapsed:.1f} s "
        f"({done / max(elapsed, 1e-9):.1f} rows/s) → {where}",
        file=sys.stderr,
    )
    return 0
