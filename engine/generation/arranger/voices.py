"""The arranger's voices: how drums, bass, comping, pad and melody are written bar by bar."""

from __future__ import annotations

import numpy as np

from engine.generation.arranger.grooves import (
    CLOSED_HAT,
    CRASH,
    DEFAULT_LAYERS,
    DRUM_GROOVES,
    HIGH_TOM,
    INTRO_KEYS,
    KICK,
    LOW_TOM,
    MID_TOM,
    OPEN_HAT,
    PERCUSSION_LAYERS,
    RHYTHMS,
    RIDE_BELL,
    SHAKER,
    SNARE,
)
from engine.generation.arranger.instruments import POLYPHONIC, tessitura
from engine.generation.arranger.theory import BarPlan, Chord, voice_chord


class _Voices:
    """The part writers of ``_Builder`` (a mixin: they use its plan, rngs and MIDI helpers)."""

    def _drums(self) -> None:
        groove = {k: list(v) for k, v in DRUM_GROOVES.get(self.parts.drums, {}).items()}
        for i, key in enumerate(self.parts.percussion[:4]):
            groove.setdefault(key, list(PERCUSSION_LAYERS.get(key, DEFAULT_LAYERS[i % len(DEFAULT_LAYERS)])))
        if not groove:
            return
        kit = self._track("drums", 0, is_drum=True, reverb=min(self.style.reverb, 40))
        sixteenth = 0.25
        has_kit = self.parts.drums not in ("none", "traditional")  # crashes and fills need a drum kit
        for bar in self.plan:
            rng = self._rng(1, bar.index)
            final = bar.section == "outro" and bar.last_of_section
            if final:
                t = self._time(bar.index, 0)
                if has_kit:
                    self._note(kit, CRASH, t, t + self.bar, self._vel(100, rng))
                    self._note(kit, KICK, t, t + 0.2, self._vel(112, rng))
                else:
                    self._note(kit, next(iter(groove)), t, t + 0.3, self._vel(90, rng))
                continue
            if bar.section == "intro" and self.intro_bars >= 2 and bar.index == 0:
                continue  # first intro bar without drums: the groove enters after the chords
            fill = has_kit and bar.last_of_section and bar.section != "intro" and self.energy >= 0.3
            for key, hits in groove.items():
                if bar.section == "intro" and key not in INTRO_KEYS:
                    continue
                for step, vel in hits:
                    if fill and step >= 12 and key not in (KICK,):
                        continue
                    # low energy thins the hats; B sections add ghost notes on the hats
                    if key in (CLOSED_HAT, SHAKER) and step % 2 == 1 and self.energy < 0.35:
                        continue
                    beat = step * sixteenth
                    t = self._time(bar.index, beat) + (0.0 if key == KICK else rng.normal(0, 0.003))
                    v = vel * (1.08 if bar.section == "B" else 1.0)
                    self._note(kit, key, t, t + 0.12, self._vel(v, rng, 4.0))
            if bar.section == "B" and self.parts.drums in (
                "pop",
                "rock",
                "boom_bap",
                "funk",
                "shuffle",
                "breakbeat",
            ):
                # B lifts: open hat on the "and" of 4
                t = self._time(bar.index, 3.5)
                self._note(kit, OPEN_HAT, t, t + 0.2, self._vel(70, rng))
            if (
                has_kit
                and bar.section_bar == 0
                and bar.section in ("A", "B")
                and (bar.index == self.intro_bars or bar.phrase_index % 2 == 0)
            ):
                t = self._time(bar.index, 0)
                crash_v = 72 if bar.index == self.intro_bars else 60
                self._note(
                    kit,
                    CRASH if self.parts.drums not in ("swing",) else RIDE_BELL,
                    t,
                    t + 1.0,
                    self._vel(crash_v, rng),
                )
            if fill:
                toms = (
                    (SNARE, SNARE, HIGH_TOM, MID_TOM)
                    if self.energy < 0.7
                    else (SNARE, HIGH_TOM, MID_TOM, LOW_TOM)
                )
                for i, step in enumerate(range(12, 16)):
                    t = self._time(bar.index, step * sixteenth)
                    self._note(kit, toms[i], t, t + 0.12, self._vel(70 + 8 * i, rng))

    def _bass(self) -> None:
        program = self.parts.bass
        if program is None:
            return
        inst = self._track("bass", program, reverb=20)
        lo = 33 if program in (38, 39) else 28
        pattern = self.style.bass_pattern

        def root_note(pc: int) -> int:
            n = lo + ((pc - lo) % 12)
            return n if n >= 33 else n + 12

        for bar in self.plan:
            rng = self._rng(2, bar.index)
            chord = bar.chord
            root = root_note(chord.root)
            fifth = root + 7
            nxt = self.plan[bar.index + 1].chord.root if bar.index + 1 < len(self.plan) else chord.root
            t0 = bar.index
            final = bar.section == "outro" and bar.last_of_section
            if final or pattern == "drone" or (bar.section == "intro" and bar.section_bar == 0):
                end = self._time(t0, 4) + (1.5 if final else 0.0)
                self._note(inst, root, self._time(t0, 0), end - 0.02, self._vel(88, rng))
                continue
            notes: list[tuple[float, float, int, float]] = []  # beat, length, pitch, velocity
            if pattern == "root":
                notes = [
                    (0, 2, root, 90),
                    (2, 2, root if rng.random() < 0.5 else fifth - 12 if fifth - 12 >= 28 else fifth, 80),
                ]
            elif pattern == "pop":
                approach = root_note(nxt) + (-1 if rng.random() < 0.5 else 2)
                notes = [(0, 1.5, root, 96), (1.5, 0.5, root, 76), (2, 1, fifth, 86), (3, 1, approach, 80)]
            elif pattern == "walking":
                tones = [root, root + (chord.tones[1] - chord.root) % 12, fifth]
                target = root_note(nxt)
                lead_in = target - 1 if target > tones[-1] else target + 1
                notes = [
                    (0, 1, tones[0], 92),
                    (1, 1, tones[1], 80),
                    (2, 1, tones[2], 84),
                    (3, 1, lead_in, 78),
                ]
            elif pattern == "octave":
                notes = [
                    (b / 2, 0.45, root + (12 if b % 2 else 0), 92 if b % 2 == 0 else 78) for b in range(8)
                ]
            elif pattern == "offbeat":
                notes = [(b + 0.5, 0.45, root, 96) for b in range(4)]
                if bar.section == "B":
                    notes += [(0, 0.3, root, 80)]
            elif pattern == "hiphop":
                notes = [
                    (0, 1.2, root, 98),
                    (1.75, 0.5, root, 76),
                    (2.5, 1.0, fifth if rng.random() < 0.4 else root, 86),
                ]
            elif pattern == "reggae":
                notes = [
                    (0, 0.9, root, 92),
                    (1.5, 0.5, fifth, 78),
                    (2.5, 0.5, root + 12, 74),
                    (3, 0.9, fifth, 80),
                ]
            if bar.section == "intro":
                notes = notes[:1]
            for beat, length, pitch, vel in notes:
                start = self._time(t0, beat) + rng.normal(0, 0.004)
                end = self._time(t0, beat + length) - 0.03
                self._note(inst, pitch, start, end, self._vel(vel, rng))

    def _comp(self) -> None:
        program = self.parts.comp
        if program is None:
            return
        pattern = self.style.comp_pattern
        if program not in POLYPHONIC and pattern in ("block", "strum", "stab", "skank", "power", "pad"):
            pattern = "arp"  # a single-line instrument plays the chords as broken chords
        lo, hi = (48, 67) if pattern == "power" else (52, 74)
        if program in range(88, 96) or program in (48, 49, 50, 51):
            lo, hi = 55, 76
        inst = self._track("comp", program, pan=44)
        previous: list[int] | None = None
        for bar in self.plan:
            rng = self._rng(3, bar.index)
            chord = bar.chord
            tones = (chord.root, (chord.root + 7) % 12) if pattern == "power" else chord.tones
            voicing = voice_chord(tones, previous, lo, hi)
            previous = voicing
            if pattern == "power":
                voicing = voicing + [voicing[0] + 12]
            t0 = bar.index
            final = bar.section == "outro" and bar.last_of_section
            base = 74 if bar.section != "B" else 80
            if bar.section == "intro":
                base -= 8
            hits: list[tuple[float, float, float]]  # beat, length, velocity
            if final or pattern == "pad":
                hits = [(0, 4 + (1.5 / self.beat if final else 0), base)]
            elif pattern == "block":
                if self.style.name in ("lofi", "hiphop", "jazz", "house", "funk"):
                    hits = (
                        [(0, 1.4, base), (2.5, 1.3, base - 6)]
                        if rng.random() < 0.6
                        else [(0, 2.5, base), (3.5, 0.5, base - 10)]
                    )
                else:
                    hits = [(0, 2, base), (2, 2, base - 6)]
            elif pattern == "strum":
                hits = [
                    (0, 1, base + 6),
                    (1, 0.5, base - 4),
                    (1.5, 1, base - 8),
                    (2.5, 0.5, base - 6),
                    (3, 0.5, base),
                    (3.5, 0.5, base - 10),
                ]
            elif pattern == "stab":
                hits = [(b + 0.5, 0.3, base) for b in range(4)]
            elif pattern == "skank":
                hits = [(1, 0.3, base), (3, 0.3, base)]
            elif pattern == "power":
                hits = [(b / 2, 0.4, base + (6 if b % 2 == 0 else -4)) for b in range(8)]
            else:  # arp / waltz: broken chord in 8ths, up then down
                seq = voicing + [voicing[0] + 12] + voicing[1:][::-1]
                step = 0.5 if self.bpm < 130 else 1.0
                count = int(4 / step)
                for i in range(count):
                    pitch = seq[i % len(seq)]
                    start = self._time(t0, i * step) + rng.normal(0, 0.005)
                    end = self._time(t0, i * step + step * 1.6)
                    self._note(inst, pitch, start, end, self._vel(base - 6 - (4 if i % 2 else 0), rng))
                continue
            for beat, length, vel in hits:
                strum = 0.012 if pattern == "strum" else 0.004
                start = self._time(t0, beat)
                for k, pitch in enumerate(voicing):
                    s = start + k * strum + rng.normal(0, 0.003)
                    e = self._time(t0, beat + length) - 0.02
                    self._note(inst, pitch, s, e, self._vel(vel - 3 * (k == 0), rng, 4.0))

    def _pad(self) -> None:
        program = self.parts.pad
        if program is None:
            return
        inst = self._track("pad", program, pan=84)
        previous: list[int] | None = None
        for bar in self.plan:
            if bar.section == "A" and self.style.drums != "none" and bar.phrase_index == 0:
                continue  # let the first A breathe; the pad joins later for contrast
            rng = self._rng(4, bar.index)
            voicing = voice_chord(bar.chord.tones, previous, 62, 84)
            previous = voicing
            final = bar.section == "outro" and bar.last_of_section
            start = self._time(bar.index, 0)
            end = self._time(bar.index, 4) + (1.5 if final else 0.05)
            for pitch in voicing:
                self._note(inst, pitch, start + rng.normal(0, 0.004), end, self._vel(68, rng, 3.0))

    # -- melody ---------------------------------------------------------------------------
    def _melody_pitches(self, lo: int, hi: int) -> list[int]:
        if self.style.pentatonic:
            steps = (0, 2, 4, 7, 9) if self.mode == "major" else (0, 3, 5, 7, 10)
        else:
            steps = self.scale
        return [n for n in range(lo, hi + 1) if (n - self.tonic) % 12 in steps]

    def _motif(self, kind: int) -> list[list[tuple[float, float, int]]]:
        """Two bars of (onset, length, scale-step move) — the idea each phrase develops."""
        rng = self._rng(5, kind)
        density = min(1.0, max(0.05, self.style.density * (0.7 + 0.6 * self.energy) + (0.12 if kind else 0)))
        choices = [r for d, r in RHYTHMS if abs(d - density) <= 0.25] or [RHYTHMS[3][1]]
        motif = []
        for _bar in range(2):
            rhythm = choices[int(rng.integers(len(choices)))]
            moves = []
            for i, (onset, length) in enumerate(rhythm):
                spread = 1.2 * self.temperature
                move = 0 if i == 0 else int(np.clip(round(rng.normal(0, spread)), -4, 4))
                if i and move == 0 and rng.random() < 0.5:
                    move = 1 if rng.random() < 0.5 else -1
                moves.append((float(onset), float(length), move))
            motif.append(moves)
        return motif

    def _pitch(self, pool: list[int], idx: int, chord: Chord) -> int:
        """Scale note ``idx``, with the leading tone raised where the chord is a harmonic-minor V."""
        pitch = pool[idx]
        if self.mode == "minor" and (self.tonic + 11) % 12 in chord.tones and (pitch - self.tonic) % 12 == 10:
            pitch += 1
        return pitch

    def _melody(self) -> None:
        program = self.parts.lead
        lo, hi = tessitura(program)
        if hi >= 76 and self.parts.comp is not None:
            lo = max(lo, 62)  # keep the tune above the comping hands
        inst = self._track("lead", program, pan=64)
        doubles = [
            self._track(f"double{i}", p, pan=30 + 60 * (i % 2)) for i, p in enumerate(self.parts.doubles)
        ]
        pool = self._melody_pitches(lo, hi)
        motifs = {"A": self._motif(0), "B": self._motif(1)}
        centre = {"A": len(pool) * 0.45, "B": len(pool) * 0.62}
        idx = int(centre["A"])

        def play(bar: BarPlan, onset: float, length: float, pitch: int, vel: int, rng) -> None:
            start = self._time(bar.index, onset) + (rng.normal(0, 0.006) if onset else 0.0)
            end = self._time(bar.index, onset + length) - 0.03
            self._note(inst, pitch, start, end, vel)
            for d in doubles:
                self._note(d, pitch - 12, start, end, max(1, vel - 18))

        def nearest_chord_tone(pitch: int, chord: Chord, below: bool = False) -> int:
            options = [pitch + d for d in range(-6, 7) if (pitch + d) % 12 in chord.tones[:3]]
            if below:
                options = [o for o in options if o <= pitch] or options
            return min(options, key=lambda o: (abs(o - pitch), o))

        for bar in self.plan:
            if bar.section == "intro":
                continue
            rng = self._rng(6, bar.index)
            chord = bar.chord
            chord_pcs = set(chord.triad)
            final = bar.section == "outro" and bar.last_of_section
            if bar.section == "outro":
                # cadence: chord tones of the V (or IV) stepping down, then the tonic held to the end
                target = min(
                    (i for i, n in enumerate(pool) if n % 12 == self.tonic),
                    key=lambda i: abs(i - idx),
                    default=idx,
                )
                if final:
                    start = self._time(bar.index, 0)
                    self._note(inst, pool[target], start, start + self.bar + 1.2, self._vel(84, rng))
                    idx = target
                else:
                    first = nearest_chord_tone(pool[min(target + 2, len(pool) - 1)], chord)
                    second = nearest_chord_tone(first - 1, chord, below=True)
                    play(bar, 0.0, 2.0, first, self._vel(86, rng), rng)
                    play(bar, 2.0, 2.0, second, self._vel(78, rng), rng)
                continue
            section = bar.section
            motif = motifs[section]
            if bar.phrase_bar == 3:
                # phrase ending: one or two long notes on chord tones (the answer to the motif)
                moves = [(0.0, 2.0, 0), (2.0, 2.0, -1)] if rng.random() < 0.5 else [(0.0, 3.0, -1)]
            else:
                moves = list(motif[bar.phrase_bar % 2])
                if bar.phrase_bar == 2:  # restate the motif with a varied tail
                    moves = [
                        (o, ln, m + (int(rng.integers(-2, 3)) if k == len(moves) - 1 else 0))
                        for k, (o, ln, m) in enumerate(moves)
                    ]
                if bar.phrase_index >= 1 and len(moves) > 1:
                    # later phrases develop the idea: one interval changes, the rhythm stays
                    vary = self._rng(7, bar.phrase_index, bar.phrase_bar)
                    k = 1 + int(vary.integers(len(moves) - 1))
                    o, ln, m = moves[k]
                    moves[k] = (o, ln, int(np.clip(m + vary.choice([-2, -1, 1, 2]), -4, 4)))
            # drift back towards this section's register
            pull = centre[section] - idx
            if abs(pull) > 3:
                idx += int(np.sign(pull)) * 2
            if self.energy < 0.35 and bar.phrase_bar == 1 and rng.random() < 0.4:
                continue  # calm pieces leave space
            for onset, length, move in moves:
                idx = int(np.clip(idx + move, 1, len(pool) - 2))
                if onset in (0.0, 2.0) or length >= 1.0:  # strong beats and long notes: chord tones
                    idx = min(
                        range(max(0, idx - 2), min(len(pool), idx + 3)),
                        key=lambda i: (pool[i] % 12 not in chord_pcs, abs(i - idx)),
                    )
                accent = 8 if onset in (0.0, 2.0) else 0
                arch = 6 if bar.phrase_bar == 2 else 0
                vel = self._vel(82 + accent + arch + (6 if section == "B" else 0), rng)
                play(bar, onset, length, self._pitch(pool, idx, chord), vel, rng)
