"""The arrangement builder: instrumentation, the bar plan, mix levels and the PrettyMIDI it writes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.generation.arranger.gm_levels import DRUM_KIT_LEVEL, GM_LEVELS, ROLE_TARGETS, STYLE_TARGETS
from engine.generation.arranger.instruments import BASS_PROGRAMS, FULL_KIT_NOTES, POLYPHONIC, gm_instrument
from engine.generation.arranger.styles import Style, style_for
from engine.generation.arranger.theory import (
    BODY_CYCLE,
    MAJOR_SCALE,
    MINOR_SCALE,
    PHRASE_BARS,
    PROGRESSIONS,
    BarPlan,
    Chord,
    InvalidArrangerInput,
    bars_for,
    build_chord,
    default_intro_bars,
    default_outro_bars,
    tonic_pitch_class,
)
from engine.generation.arranger.voices import _Voices
from engine.spec import MusicSpec


# --------------------------------------------------------------------------------------------
# The arrangement
# --------------------------------------------------------------------------------------------
@dataclass
class Parts:
    """Resolved instrumentation for one track."""

    lead: int
    comp: int | None
    pad: int | None
    bass: int | None
    drums: str
    doubles: list[int] = field(default_factory=list)  # extra user instruments doubling the lead
    percussion: list[int] = field(default_factory=list)  # extra GM drum keys asked for (congas, shaker...)
    user_chosen: bool = False


def orchestrate(spec: MusicSpec, style: Style) -> Parts:
    """Map spec.instruments onto roles; unfilled roles keep the style's defaults."""
    parts = Parts(lead=style.lead, comp=style.comp, pad=style.pad, bass=style.bass, drums=style.drums)
    if not spec.instruments:
        return parts
    melodic: list[int] = []
    wants_drums = False
    user_bass: int | None = None
    for name in spec.instruments:
        program, is_drum, keys = gm_instrument(name)
        if is_drum:
            # a kit (kick + snare) brings the groove; single percussion adds a layer over it
            wants_drums = wants_drums or not keys or (36 in keys and 38 in keys)
            parts.percussion.extend(k for k in keys if k not in FULL_KIT_NOTES and k not in parts.percussion)
        elif program in BASS_PROGRAMS and user_bass is None:
            user_bass = program
        elif program not in melodic:
            melodic.append(program)
    if user_bass is not None:
        parts.bass = user_bass
    if melodic:
        parts.user_chosen = True
        parts.lead = melodic[0]
        if len(melodic) > 1:
            parts.comp = melodic[1]
        elif melodic[0] in POLYPHONIC:
            parts.comp = melodic[0]  # piano / guitar / harp chosen alone: it also plays the chords
        if len(melodic) > 2:
            parts.pad = melodic[2]
        parts.doubles = melodic[3:5]
    if wants_drums and parts.drums == "none":
        parts.drums = "soft"
    return parts


@dataclass
class Arrangement:
    midi: object  # pretty_midi.PrettyMIDI
    bpm: float
    bar_seconds: float
    total_bars: int
    intro_bars: int
    outro_start_bar: int
    tonic: int
    mode: str
    style: str
    parts: Parts


class _Builder(_Voices):
    """Writes one arrangement into a PrettyMIDI object."""

    def __init__(
        self, spec: MusicSpec, seed: int, *, total_bars: int, intro_bars: int, temperature: float = 1.0
    ) -> None:
        import pretty_midi

        self.pm_mod = pretty_midi
        self.spec = spec
        self.seed = seed
        self.temperature = max(0.1, float(temperature))
        self.bpm = float(spec.bpm)
        self.beat = 60.0 / self.bpm
        self.bar = 4 * self.beat
        self.total_bars = total_bars
        self.intro_bars = intro_bars
        self.outro_bars = min(default_outro_bars(total_bars), max(total_bars - intro_bars - 1, 1))
        self.outro_start = total_bars - self.outro_bars
        self.style = style_for(spec.genres)
        self.parts = orchestrate(spec, self.style)
        self.mode = "minor" if str(spec.mode).lower().startswith("min") else "major"
        self.energy = float(min(max(spec.energy, 0.0), 1.0))
        home = np.random.default_rng([seed, 11])
        tonic = tonic_pitch_class(spec.key)
        # keys that sit well on most GM instruments when none was asked for
        self.tonic = tonic if tonic is not None else int(home.choice([0, 2, 3, 5, 7, 9, 10]))
        self.scale = MAJOR_SCALE if self.mode == "major" else MINOR_SCALE
        self.swing = self.style.swing
        harmony = self.style.harmony
        options = PROGRESSIONS[(harmony, self.mode)]
        picks = home.permutation(len(options))
        self.prog_a = options[int(picks[0])]
        self.prog_b = options[int(picks[1 % len(options)])]
        self.pm = pretty_midi.PrettyMIDI(initial_tempo=self.bpm, resolution=480)
        self.tracks: dict[str, object] = {}
        self.mix = self._mix_offsets()
        self.plan = self._plan()

    # -- planning -------------------------------------------------------------------------
    def _chord(self, degree: int) -> Chord:
        dominant = self.style.harmony == "blues"
        return build_chord(
            self.tonic,
            self.scale,
            degree,
            seventh=self.style.seventh_chords or dominant,
            mode=self.mode,
            dominant=dominant,
        )

    def _plan(self) -> list[BarPlan]:
        plan: list[BarPlan] = []
        hr = self.style.harmonic_rhythm
        for index in range(self.total_bars):
            if index < self.intro_bars:
                section, section_bar, phrase_index = "intro", index, -1
                degree = self.prog_a[(index // hr) % len(self.prog_a)]
                last = index == self.intro_bars - 1
            elif index >= self.outro_start:
                section, section_bar, phrase_index = "outro", index - self.outro_start, -1
                final = index == self.total_bars - 1
                cadence = 3 if self.style.harmony == "modal" else 4  # plagal for modal styles
                degree = 0 if final else cadence
                last = final
            else:
                body = index - self.intro_bars
                phrase_index = body // PHRASE_BARS
                section = BODY_CYCLE[phrase_index % len(BODY_CYCLE)]
                section_bar = body % PHRASE_BARS
                prog = self.prog_a if section == "A" else self.prog_b
                if len(prog) == 12:  # 12-bar blues runs through its whole form
                    degree = prog[body % 12]
                else:
                    degree = (
                        prog[(section_bar // hr) % len(prog)] if hr == 1 else prog[(body // hr) % len(prog)]
                    )
                nxt = index + 1
                next_section = (
                    "outro"
                    if nxt >= self.outro_start
                    else BODY_CYCLE[((nxt - self.intro_bars) // PHRASE_BARS) % len(BODY_CYCLE)]
                )
                last = (section_bar == PHRASE_BARS - 1 and next_section != section) or nxt == self.outro_start
            plan.append(
                BarPlan(
                    index=index,
                    section=section,
                    section_bar=section_bar,
                    phrase_bar=(section_bar % PHRASE_BARS),
                    phrase_index=phrase_index,
                    last_of_section=last,
                    chord=self._chord(degree),
                )
            )
        return plan

    # -- helpers --------------------------------------------------------------------------
    def _mix_offsets(self) -> dict[str, float]:
        """dB each role must move from CC7 127 to hit its target (<= 0: CC7 can only attenuate)."""
        targets = {**ROLE_TARGETS, **STYLE_TARGETS.get(self.style.name, {})}
        if self.parts.user_chosen:
            targets["pad"] -= 2.0  # the instruments the user asked for stay in front
        roles = {
            "lead": self.parts.lead,
            "comp": self.parts.comp,
            "pad": self.parts.pad,
            "bass": self.parts.bass,
        }
        wanted = {r: targets[r] - GM_LEVELS[p] for r, p in roles.items() if p is not None}
        if self.parts.drums != "none" or self.parts.percussion:
            wanted["drums"] = targets["drums"] - DRUM_KIT_LEVEL
        for i, p in enumerate(self.parts.doubles):
            wanted[f"double{i}"] = targets["double"] - GM_LEVELS[p]
        excess = max(0.0, max(wanted.values(), default=0.0))
        return {r: db - excess for r, db in wanted.items()}

    def _track(
        self,
        role: str,
        program: int,
        *,
        is_drum: bool = False,
        pan: int = 64,
        reverb: int | None = None,
    ) -> object:
        key = f"{role}:{program}:{is_drum}"
        if key not in self.tracks:
            inst = self.pm_mod.Instrument(program=program, is_drum=is_drum, name=role)
            cc = self.pm_mod.ControlChange
            rev = self.style.reverb if reverb is None else reverb
            # CC7 follows a 40*log10 law in SoundFont synths (measured: 127 -> 100 is -4.2 dB)
            volume = int(np.clip(round(127 * 10 ** (self.mix.get(role, -6.0) / 40)), 8, 127))
            inst.control_changes.extend([cc(7, volume, 0.0), cc(10, pan, 0.0), cc(91, min(rev, 127), 0.0)])
            self.pm.instruments.append(inst)
            self.tracks[key] = inst
        return self.tracks[key]

    def _time(self, bar: int, beat: float) -> float:
        """Seconds of (bar, beat), with swing on off-beat 8ths (or 16ths for hip hop grooves)."""
        frac = beat % 1.0
        if self.swing:
            sixteenth_swing = self.style.drums in ("boom_bap", "trap")
            if sixteenth_swing and (abs(frac - 0.25) < 1e-6 or abs(frac - 0.75) < 1e-6):
                beat += self.swing * 0.25
            elif abs(frac - 0.5) < 1e-6:
                beat += self.swing * 0.5
        return bar * self.bar + beat * self.beat

    def _vel(self, base: float, rng: np.random.Generator, spread: float = 5.0) -> int:
        scale = 0.78 + 0.32 * self.energy
        return int(np.clip(round(base * scale + rng.normal(0.0, spread)), 1, 127))

    def _note(self, inst, pitch: int, start: float, end: float, velocity: int) -> None:
        if end - start < 0.02:
            end = start + 0.02
        inst.notes.append(
            self.pm_mod.Note(velocity=int(velocity), pitch=int(pitch), start=max(0.0, start), end=end)
        )

    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *key])

    # -- parts ----------------------------------------------------------------------------
    def build(self) -> Arrangement:
        self._drums()
        self._bass()
        self._comp()
        self._pad()
        self._melody()
        # final chord rings past the end of the grid; the renderer stops at the last event
        return Arrangement(
            midi=self.pm,
            bpm=self.bpm,
            bar_seconds=self.bar,
            total_bars=self.total_bars,
            intro_bars=self.intro_bars,
            outro_start_bar=self.outro_start,
            tonic=self.tonic,
            mode=self.mode,
            style=self.style.name,
            parts=self.parts,
        )


def arrange(
    spec: MusicSpec,
    seed: int,
    *,
    total_bars: int | None = None,
    intro_bars: int | None = None,
    temperature: float = 1.0,
) -> Arrangement:
    """Plan and write the MIDI for ``spec`` (no audio)."""
    bpm = float(spec.bpm)
    if not 30 <= bpm <= 300:
        raise InvalidArrangerInput(f"Tempo {spec.bpm} BPM is out of range: use 30-300 BPM.")
    if total_bars is None:
        total_bars = bars_for(float(spec.duration), bpm)
    if intro_bars is None:
        intro_bars = default_intro_bars(total_bars)
    return _Builder(spec, seed, total_bars=total_bars, intro_bars=intro_bars, temperature=temperature).build()
