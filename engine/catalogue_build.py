"""Build ``data/categories.db`` from the reviewed source ``data/categories.json`` (sqlite-utils).

The source is the only thing people edit; the db is a build product that is committed so a fresh
checkout needs no build step. ``textunes categories build`` rebuilds it; ``--check`` (and a test)
fails when the committed db no longer matches the source. Comparison is by content (every row of
every table), not by bytes, since SQLite files differ byte-wise between identical builds.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import sqlite_utils

from engine.catalogue import DEFAULT_DB, DEFAULT_SOURCE, KINDS, name_key

# Words that keep their capital inside prompts (proper nouns); everything else is lower-cased.
PROPER_WORDS = frozenset(
    """African American Bali Balinese Bollywood Brazilian Chinese Christian Christmas European French
    Gnawa Halloween Hammond Hawaiian Indian Japanese Korean Latin Middle Eastern Mongolian Peruvian
    Spanish Wurlitzer Rhodes""".split()
)
MODES = ("major", "minor")


class SourceError(ValueError):
    """The source file breaks a rule (duplicate name, unknown topic genre, value out of range...)."""


def load_source(path: str | Path = DEFAULT_SOURCE) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:  # the reviewer's typo: say where, not a traceback
        raise SourceError(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from exc


def default_text(en: str) -> str:
    """Prompt wording of a name: lower case except acronyms (EDM, R&B, 808) and proper nouns."""
    words = []
    for word in en.split():
        keep = word.isupper() or any(c.isdigit() or c == "&" for c in word) or word in PROPER_WORDS
        words.append(word if keep else word.lower())
    return " ".join(words)


def validate(doc: dict[str, Any]) -> list[str]:
    """Every rule the source must satisfy; an empty list means it is fine."""
    problems: list[str] = []
    for kind in KINDS:
        seen_en: set[str] = set()
        seen_keys: dict[str, str] = {}
        for item in doc[kind]:
            en, ko = item["en"], item["ko"]
            if not en.isascii() or not en.isprintable() or en != en.strip() or not en:
                problems.append(f"{kind}: English value {en!r} must be printable ASCII without edge spaces")
            if ko != ko.strip() or not ko:
                problems.append(f"{kind}: Korean label {ko!r} has edge spaces or is empty")
            if en in seen_en:
                problems.append(f"{kind}: duplicate English value {en!r}")
            seen_en.add(en)
            for name in [en, ko, *item.get("aliases", [])]:
                key = name_key(name)
                if not key:
                    problems.append(f"{kind}: name {name!r} of {en!r} is empty after normalising")
                elif seen_keys.setdefault(key, en) != en:
                    problems.append(f"{kind}: name {name!r} of {en!r} clashes with {seen_keys[key]!r}")
    for item in doc["instruments"]:
        if not 0 <= item["gm"] <= 127:
            problems.append(f"instruments: {item['en']} GM program {item['gm']} outside 0..127")
        if item.get("drum") and not item.get("drum_notes"):
            problems.append(f"instruments: drum {item['en']} needs drum_notes")
        if any(not 27 <= n <= 87 for n in item.get("drum_notes", [])):
            problems.append(f"instruments: {item['en']} drum note outside the GM percussion keys 27..87")
    for item in doc["moods"]:
        if item["mode"] not in MODES:
            problems.append(f"moods: {item['en']} mode {item['mode']!r}")
        if not 0 <= item["energy"] <= 1:
            problems.append(f"moods: {item['en']} energy outside 0..1")
        for axis in ("valence", "arousal"):
            if not -1 <= item[axis] <= 1:
                problems.append(f"moods: {item['en']} {axis} outside -1..1")
    for item in doc["genres"]:
        if item.get("mode") not in (None, *MODES):
            problems.append(f"genres: {item['en']} mode {item['mode']!r}")
        if item.get("bpm") is not None and not 40 <= item["bpm"] <= 220:
            problems.append(f"genres: {item['en']} bpm outside 40..220")
    previous_hi = None
    for item in doc["tempos"]:
        if not item["lo"] <= item["bpm"] <= item["hi"]:
            problems.append(f"tempos: {item['en']} default bpm outside its range")
        if previous_hi is not None and item["lo"] != previous_hi + 1:
            problems.append(f"tempos: {item['en']} range does not follow the previous one")
        previous_hi = item["hi"]
    genres = {g["en"] for g in doc["genres"]}
    ids = [t["id"] for t in doc["topics"]]
    if ids != list(range(len(ids))):
        problems.append("topics: ids must be 0..n-1 in order")
    for topic in doc["topics"]:
        if len(topic["genres"]) != 5 or len(set(topic["genres"])) != 5:
            problems.append(f"topics: {topic['name']} needs five different genres")
        for genre in topic["genres"]:
            if genre not in genres:
                problems.append(f"topics: {topic['name']} names unknown genre {genre!r}")
    return problems


def source_digest(doc: dict[str, Any]) -> str:
    """Hash of the source's content (key order and whitespace do not matter)."""
    canonical = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _rows(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    tables: dict[str, list[dict[str, Any]]] = {
        "entries": [],
        "names": [],
        "tempos": [],
        "durations": [],
        "instruments": [],
        "moods": [],
        "genre_hints": [],
        "topics": [],
        "topic_genres": [],
        "removed": [],
        "meta": [],
    }
    for kind in KINDS:
        for position, item in enumerate(doc[kind]):
            en = item["en"]
            tables["entries"].append(
                {
                    "kind": kind,
                    "en": en,
                    "ko": item["ko"],
                    "popular": int(bool(item["popular"])),
                    "position": position,
                    "added": int(bool(item.get("added", False))),
                    "fix": item.get("fix"),
                    "text": item.get("text") or default_text(en),
                }
            )
            keys: set[str] = set()
            for source, name in [("en", en), ("ko", item["ko"])] + [
                ("alias", a) for a in item.get("aliases", [])
            ]:
                key = name_key(name)
                if key not in keys:  # "EDM"/"EDM", "Hip Hop"/"Hip-hop": one row per key, English first
                    keys.add(key)
                    tables["names"].append(
                        {"kind": kind, "key": key, "name": name, "en": en, "source": source}
                    )
    for item in doc["tempos"]:
        tables["tempos"].append({k: item[k] for k in ("en", "ko", "bpm", "lo", "hi")})
    for item in doc["durations"]:
        tables["durations"].append({"en": item["en"], "ko": item["ko"], "seconds": item["seconds"]})
    for item in doc["instruments"]:
        tables["instruments"].append(
            {
                "en": item["en"],
                "program": item["gm"],
                "is_drum": int(bool(item.get("drum", False))),
                "drum_notes": json.dumps(item.get("drum_notes", [])),
            }
        )
    for item in doc["moods"]:
        tables["moods"].append(
            {
                "en": item["en"],
                "mode": item["mode"],
                "energy": float(item["energy"]),
                "valence": float(item["valence"]),
                "arousal": float(item["arousal"]),
                # absent "adj" means the English word itself; an explicit null means "no adjective"
                "adj": item["adj"] if "adj" in item else item["en"].lower(),
                "scene": item.get("scene"),
                "theme": int(bool(item.get("theme", False))),
            }
        )
    for item in doc["genres"]:
        if item.get("bpm") is not None or item.get("mode") is not None:
            tables["genre_hints"].append({"en": item["en"], "bpm": item.get("bpm"), "mode": item.get("mode")})
    for topic in doc["topics"]:
        tables["topics"].append({"id": topic["id"], "name": topic["name"], "ko": topic["ko"]})
        for rank, genre in enumerate(topic["genres"]):
            tables["topic_genres"].append({"topic_id": topic["id"], "rank": rank, "genre": genre})
    for kind, items in doc.get("removed", {}).items():
        for item in items:
            for label in item["seed"]:
                tables["removed"].append({"kind": kind, "label": label, "why": item["why"]})
    meta = {
        "version": doc["version"],
        "seed": doc["seed"],
        "keyword_guide_en": doc["keyword_guide"]["en"],
        "keyword_guide_ko": doc["keyword_guide"]["ko"],
        "source_digest": source_digest(doc),
    }
    tables["meta"] = [{"key": k, "value": v} for k, v in meta.items()]
    return tables


PRIMARY_KEYS = {
    "entries": ("kind", "en"),
    "names": ("kind", "key"),
    "tempos": "en",
    "durations": "en",
    "instruments": "en",
    "moods": "en",
    "genre_hints": "en",
    "topics": "id",
    "topic_genres": ("topic_id", "rank"),
    "removed": ("kind", "label"),
    "meta": "key",
}
COLUMN_TYPES = {  # nullable columns must be typed explicitly: sqlite-utils cannot infer a type from None
    "entries": {"fix": str, "text": str},
    "moods": {"adj": str, "scene": str},
    "genre_hints": {"bpm": int, "mode": str},
}


def build(source: str | Path = DEFAULT_SOURCE, db_path: str | Path = DEFAULT_DB) -> dict[str, int]:
    """Validate the source and (re)write the db atomically; returns row counts per table."""
    doc = load_source(source)
    problems = validate(doc)
    if problems:
        raise SourceError("categories source has problems:\n  " + "\n  ".join(problems))
    tables = _rows(doc)
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    # build next to the target, then rename: a reader never sees a half-written file
    fd, tmp_name = tempfile.mkstemp(prefix=".categories-", suffix=".db", dir=db_path.parent)
    os.close(fd)
    try:
        db = sqlite_utils.Database(tmp_name)
        for name, rows in tables.items():
            db[name].insert_all(rows, pk=PRIMARY_KEYS[name], columns=COLUMN_TYPES.get(name))
        db["names"].create_index(["kind", "en"])
        db["topic_genres"].add_foreign_key("topic_id", "topics", "id")
        db.conn.commit()
        db.conn.execute("VACUUM")
        db.close()
        os.replace(tmp_name, db_path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return {name: len(rows) for name, rows in tables.items()}


def db_contents(db_path: str | Path) -> dict[str, list[tuple]]:
    """Every row of every table, sorted, for comparing two builds by content."""
    conn = sqlite3.connect(f"file:{Path(db_path)}?mode=ro", uri=True)
    try:
        names = [
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        ]
        out = {}
        for name in names:
            columns = [r[1] for r in conn.execute(f'PRAGMA table_info("{name}")')]
            rows = conn.execute(f'SELECT * FROM "{name}"').fetchall()
            out[name] = [tuple(columns)] + sorted(rows, key=repr)
        return out
    finally:
        conn.close()


def differences(source: str | Path = DEFAULT_SOURCE, db_path: str | Path = DEFAULT_DB) -> list[str]:
    """What differs between the db and a fresh build of the source (empty when they agree)."""
    db_path = Path(db_path)
    if not db_path.is_file():
        return [f"{db_path} does not exist"]
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "categories.db"
        build(source, fresh)
        want, have = db_contents(fresh), db_contents(db_path)
    problems = []
    for table in sorted(set(want) | set(have)):
        if table not in have:
            problems.append(f"table {table} missing from {db_path}")
        elif table not in want:
            problems.append(f"table {table} is not built from the source")
        elif want[table] != have[table]:
            missing = set(want[table]) - set(have[table])
            extra = set(have[table]) - set(want[table])
            problems.append(f"table {table}: {len(missing)} rows missing, {len(extra)} rows stale")
    return problems


if __name__ == "__main__":  # python -m engine.catalogue_build
    counts = build()
    print(f"built {DEFAULT_DB}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
