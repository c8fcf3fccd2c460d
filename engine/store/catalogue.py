"""The guild catalogue in the store: server-specific categories and presets ("themes")."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from engine.store.db import StoreBase
from engine.store.records import CATEGORY_KINDS, GuildCategory, GuildPreset, as_id, from_json, to_json
from engine.store.settings import (
    MAX_GUILD_CATEGORIES,
    MAX_GUILD_PRESETS,
    SettingsError,
    clean_list,
    clean_name,
)


class CatalogueMixin(StoreBase):
    """A guild's own categories (autocomplete entries) and presets."""

    def add_guild_category(
        self,
        guild_id: str | int,
        kind: str,
        en: str,
        ko: str | None = None,
        *,
        created_by: str | int | None = None,
    ) -> GuildCategory:
        """Add (or relabel) a guild-specific genre/mood/instrument/keyword shown in autocomplete."""
        if kind not in CATEGORY_KINDS:
            raise SettingsError(
                f"Unknown category kind '{kind}'. Choose one of: {', '.join(CATEGORY_KINDS)}."
            )
        en = clean_name(en, "category name")
        ko = clean_name(ko, "Korean name") if ko and str(ko).strip() else None
        gid = as_id(guild_id)
        with self._tx() as conn:
            count = conn.execute(
                "SELECT COUNT(*) FROM guild_categories WHERE guild_id = ?", (gid,)
            ).fetchone()[0]
            exists = conn.execute(
                "SELECT 1 FROM guild_categories WHERE guild_id = ? AND kind = ? AND en = ?", (gid, kind, en)
            ).fetchone()
            if not exists and count >= MAX_GUILD_CATEGORIES:
                raise SettingsError(
                    f"This server already has {count} custom categories (the limit). Remove some first."
                )
            conn.execute(
                "INSERT INTO guild_categories (guild_id, kind, en, ko, created_by, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (guild_id, kind, en) DO UPDATE SET "
                "en = excluded.en, ko = excluded.ko",
                (gid, kind, en, ko, as_id(created_by), self._clock()),
            )
        return GuildCategory(gid or "", kind, en, ko)

    def remove_guild_category(self, guild_id: str | int, kind: str, name: str) -> bool:
        """Remove by English or Korean name (case-insensitive); returns whether something was removed."""
        name = " ".join(str(name).split())
        with self._lock:
            cur = self._conn.execute(
                "DELETE FROM guild_categories WHERE guild_id = ? AND kind = ? AND (en = ? OR ko = ?)",
                (as_id(guild_id), kind, name, name),
            )
            return cur.rowcount > 0

    def guild_categories(self, guild_id: str | int | None, kind: str | None = None) -> list[GuildCategory]:
        if guild_id is None:
            return []
        sql, params = "SELECT * FROM guild_categories WHERE guild_id = ?", [as_id(guild_id)]
        if kind is not None:
            sql, params = sql + " AND kind = ?", [*params, kind]
        rows = self._query(sql + " ORDER BY kind, en", params)
        return [GuildCategory(r["guild_id"], r["kind"], r["en"], r["ko"]) for r in rows]

    def complete_guild_categories(
        self, guild_id: str | int | None, kind: str, text: str = "", limit: int = 25
    ) -> list[GuildCategory]:
        """Autocomplete over a guild's own entries: prefix matches first, then substring (en or ko)."""
        needle = " ".join(str(text or "").split()).casefold()
        entries = self.guild_categories(guild_id, kind)
        if not needle:
            return entries[:limit]
        prefix = [e for e in entries if e.en.casefold().startswith(needle) or (e.ko or "").startswith(needle)]
        inner = [
            e for e in entries if e not in prefix and (needle in e.en.casefold() or needle in (e.ko or ""))
        ]
        return (prefix + inner)[:limit]

    def find_guild_category(self, guild_id: str | int | None, kind: str, name: str) -> GuildCategory | None:
        """Exact (case/space-insensitive) lookup by English or Korean name."""
        needle = " ".join(str(name or "").split()).casefold()
        for entry in self.guild_categories(guild_id, kind):
            if needle in (entry.en.casefold(), (entry.ko or "").casefold()):
                return entry
        return None

    def add_guild_preset(
        self,
        guild_id: str | int,
        name: str,
        *,
        genres: Iterable[str] | str = (),
        moods: Iterable[str] | str = (),
        tempo: str | None = None,
        instruments: Iterable[str] | str = (),
        keywords: Iterable[str] | str = (),
        duration: float | str | None = None,
        created_by: str | int | None = None,
    ) -> GuildPreset:
        """Create or replace a preset ("theme", e.g. Study / Horror game / Wedding)."""
        preset = GuildPreset(
            guild_id=as_id(guild_id) or "",
            name=clean_name(name, "preset name"),
            genres=clean_list(genres, "genre"),
            moods=clean_list(moods, "mood"),
            tempo=clean_name(tempo, "tempo") if tempo and str(tempo).strip() else None,
            instruments=clean_list(instruments, "instrument"),
            keywords=clean_list(keywords, "keyword"),
            duration=None,
        )
        if duration is not None and str(duration).strip():
            from engine.prompt import parse_duration

            preset = dataclasses.replace(preset, duration=parse_duration(duration))
        if not (preset.genres or preset.moods or preset.instruments or preset.keywords or preset.tempo):
            raise SettingsError(
                f"The preset '{preset.name}' is empty: give it at least a genre, mood or keyword."
            )
        with self._tx() as conn:
            count = conn.execute(
                "SELECT COUNT(*) FROM guild_presets WHERE guild_id = ?", (preset.guild_id,)
            ).fetchone()[0]
            exists = conn.execute(
                "SELECT 1 FROM guild_presets WHERE guild_id = ? AND name = ?", (preset.guild_id, preset.name)
            ).fetchone()
            if not exists and count >= MAX_GUILD_PRESETS:
                raise SettingsError(f"This server already has {count} presets (the limit). Remove one first.")
            conn.execute(
                "INSERT INTO guild_presets (guild_id, name, genres, moods, tempo, instruments, keywords, duration, "
                "created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (guild_id, name) DO UPDATE SET name = excluded.name, genres = excluded.genres, "
                "moods = excluded.moods, tempo = excluded.tempo, instruments = excluded.instruments, "
                "keywords = excluded.keywords, duration = excluded.duration",
                (
                    preset.guild_id, preset.name, to_json(list(preset.genres)), to_json(list(preset.moods)),
                    preset.tempo, to_json(list(preset.instruments)), to_json(list(preset.keywords)),
                    preset.duration, as_id(created_by), self._clock(),
                ),
            )  # fmt: skip
        return preset

    def remove_guild_preset(self, guild_id: str | int, name: str) -> bool:
        with self._lock:
            cur = self._conn.execute(
                "DELETE FROM guild_presets WHERE guild_id = ? AND name = ?",
                (as_id(guild_id), " ".join(str(name).split())),
            )
            return cur.rowcount > 0

    @staticmethod
    def _preset_from_row(row: Mapping[str, Any]) -> GuildPreset:
        return GuildPreset(
            guild_id=row["guild_id"],
            name=row["name"],
            genres=tuple(from_json(row["genres"], [])),
            moods=tuple(from_json(row["moods"], [])),
            tempo=row["tempo"],
            instruments=tuple(from_json(row["instruments"], [])),
            keywords=tuple(from_json(row["keywords"], [])),
            duration=row["duration"],
        )

    def guild_presets(self, guild_id: str | int | None) -> list[GuildPreset]:
        if guild_id is None:
            return []
        rows = self._query("SELECT * FROM guild_presets WHERE guild_id = ? ORDER BY name", (as_id(guild_id),))
        return [self._preset_from_row(r) for r in rows]

    def get_guild_preset(self, guild_id: str | int | None, name: str) -> GuildPreset | None:
        if guild_id is None:
            return None
        rows = self._query(
            "SELECT * FROM guild_presets WHERE guild_id = ? AND name = ?",
            (as_id(guild_id), " ".join(str(name).split())),
        )
        return self._preset_from_row(rows[0]) if rows else None

    def complete_guild_presets(
        self, guild_id: str | int | None, text: str = "", limit: int = 25
    ) -> list[GuildPreset]:
        needle = " ".join(str(text or "").split()).casefold()
        presets = self.guild_presets(guild_id)
        prefix = [p for p in presets if p.name.casefold().startswith(needle)]
        inner = [p for p in presets if p not in prefix and needle in p.name.casefold()]
        return (prefix + inner)[:limit]
