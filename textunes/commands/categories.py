"""``textunes categories``: list the bilingual catalogue, or rebuild ``data/categories.db``.

Examples: ``textunes categories genres --popular``, ``textunes categories moods --search 슬``,
``textunes categories instruments --details``, ``textunes categories topics``,
``textunes categories build [--check]``.
"""

from __future__ import annotations

import argparse
import sys
import unicodedata

LIST_KINDS = ("genres", "moods", "instruments", "tempos", "durations")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "categories",
        help="list genres, moods, instruments, tempos, durations; rebuild the catalogue db",
        description="List the category catalogue (English and Korean names), or rebuild data/categories.db.",
    )
    inner = p.add_subparsers(
        dest="what", required=True, metavar="{" + ",".join(LIST_KINDS) + ",topics,build}"
    )
    for kind in LIST_KINDS:
        q = inner.add_parser(kind, help=f"list {kind}")
        q.add_argument("--popular", action="store_true", help="only the popular ones")
        q.add_argument(
            "--search", metavar="TEXT", help="names containing TEXT (English or Korean), closest first"
        )
        q.add_argument(
            "--details", action="store_true", help="also show arranger hints (GM program, mode, BPM...)"
        )
        q.set_defaults(func=run_list, kind=kind)
    t = inner.add_parser("topics", help="book topic → five genres table used by text mode")
    t.set_defaults(func=run_topics)
    b = inner.add_parser("build", help="rebuild data/categories.db from data/categories.json")
    b.add_argument("--source", help="source JSON (default data/categories.json)")
    b.add_argument("--db", help="database to write (default data/categories.db)")
    b.add_argument("--check", action="store_true", help="only compare; exit 1 if the db is out of date")
    b.set_defaults(func=run_build)


def _width(text: str) -> int:
    """Terminal columns: Hangul and other wide characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(_width(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c + " " * (w - _width(c)) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def run_list(args: argparse.Namespace) -> int:
    from engine.catalogue import default_catalogue

    cat = default_catalogue()
    entries = cat.list(args.kind, popular=args.popular, search=args.search)
    if not entries:
        print(f"No {args.kind} match {args.search!r}.", file=sys.stderr)
        return 1
    header = ["English", "Korean", "Popular"]
    rows = []
    for e in entries:
        row = [e.en, e.ko, "*" if e.popular else ""]
        if args.details or args.kind in ("tempos", "durations"):
            row += _details(cat, args.kind, e.en)
        rows.append(row)
    if args.details or args.kind in ("tempos", "durations"):
        header += _DETAIL_HEADERS[args.kind]
    print(_table(header, rows))
    what = "popular " + args.kind if args.popular else args.kind
    print(f"\n{len(entries)} {what}" + (f" matching {args.search!r}" if args.search else ""))
    return 0


_DETAIL_HEADERS = {
    "genres": ["Prompt text", "Typical BPM", "Mode"],
    "moods": ["Mode", "Energy", "Valence", "Arousal"],
    "instruments": ["GM program", "Drum"],
    "tempos": ["BPM range", "Default BPM"],
    "durations": ["Seconds"],
}


def _details(cat, kind: str, name: str) -> list[str]:
    if kind == "genres":
        hint = cat.genre_hint(name)
        return [hint.text, str(hint.bpm or ""), hint.mode or ""]
    if kind == "moods":
        h = cat.mood_hint(name)
        return [h.mode, f"{h.energy:.2f}", f"{h.valence:+.2f}", f"{h.arousal:+.2f}"]
    if kind == "instruments":
        gm = cat.instrument_program(name)
        notes = " ".join(str(n) for n in gm.drum_notes)
        return [str(gm.program), f"yes (keys {notes})" if gm.is_drum else ""]
    if kind == "tempos":
        info = cat.tempo(name)
        return [f"{info.lo}-{info.hi}", str(info.bpm)]
    return [str(cat.duration_seconds(name))]


def run_topics(args: argparse.Namespace) -> int:
    from engine.catalogue import default_catalogue

    rows = [[str(t.id), t.name, t.ko, ", ".join(t.genres)] for t in default_catalogue().topics()]
    print(_table(["Id", "Book topic", "Korean", "Genres"], rows))
    return 0


def run_build(args: argparse.Namespace) -> int:
    from engine.catalogue import DEFAULT_DB, DEFAULT_SOURCE
    from engine.catalogue_build import SourceError, build, differences

    source = args.source or DEFAULT_SOURCE
    db = args.db or DEFAULT_DB
    try:
        if args.check:
            problems = differences(source, db)
            if problems:
                print(f"{db} is out of date with {source}:", file=sys.stderr)
                for problem in problems:
                    print(f"  {problem}", file=sys.stderr)
                print("Rebuild it with `textunes categories build`.", file=sys.stderr)
                return 1
            print(f"{db} matches {source}")
            return 0
        counts = build(source, db)
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"built {db} from {source}: " + ", ".join(f"{n} {name}" for name, n in counts.items()))
    return 0
