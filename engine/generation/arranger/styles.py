"""Data: the arranger's styles (groove, default instruments, harmony per genre) and the genre rules."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


# --------------------------------------------------------------------------------------------
# Styles: genre -> groove, default instrumentation and harmonic language
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Style:
    name: str
    drums: str  # key of DRUM_GROOVES ("none" for no kit)
    lead: int  # GM programs (0-based)
    comp: int | None
    pad: int | None
    bass: int | None
    comp_pattern: str  # block | arp | strum | stab | skank | power | pad | waltz
    bass_pattern: str  # root | pop | walking | octave | offbeat | hiphop | reggae | drone
    harmony: str  # pop | jazz | blues | modal | epic
    swing: float = 0.0  # 0 straight .. 0.33 triplet swing of the 8th notes (16ths for hip hop)
    density: float = 0.5  # melody notes: 0 sparse .. 1 busy
    seventh_chords: bool = False
    pentatonic: bool = False  # melody on the pentatonic scale (folk/traditional/blues flavours)
    reverb: int = 50  # CC91 send
    harmonic_rhythm: int = 1  # bars per chord
    tempo_range: tuple[int, int] = (60, 180)  # the BPM range the groove sounds right in (info only)


STYLES: dict[str, Style] = {
    "pop": Style("pop", "pop", 0, 0, 48, 33, "block", "pop", "pop", density=0.55),
    "ballad": Style("ballad", "soft", 0, 0, 49, 33, "arp", "root", "pop", density=0.4, reverb=70),
    "lofi": Style(
        "lofi",
        "boom_bap",
        4,
        4,
        89,
        33,
        "block",
        "hiphop",
        "jazz",
        swing=0.18,
        density=0.35,
        seventh_chords=True,
        reverb=60,
    ),
    "hiphop": Style(
        "hiphop",
        "boom_bap",
        0,
        4,
        89,
        38,
        "block",
        "hiphop",
        "pop",
        swing=0.12,
        density=0.4,
        seventh_chords=True,
    ),
    "trap": Style("trap", "trap", 80, 4, 89, 38, "pad", "hiphop", "pop", density=0.4),
    "jazz": Style(
        "jazz",
        "swing",
        65,
        0,
        None,
        32,
        "block",
        "walking",
        "jazz",
        swing=0.3,
        density=0.6,
        seventh_chords=True,
        reverb=45,
    ),
    "blues": Style(
        "blues",
        "shuffle",
        26,
        0,
        None,
        33,
        "block",
        "walking",
        "blues",
        swing=0.3,
        density=0.55,
        seventh_chords=True,
        pentatonic=True,
    ),
    "rock": Style("rock", "rock", 29, 29, None, 34, "power", "pop", "pop", density=0.55, reverb=35),
    "metal": Style("metal", "metal", 30, 30, None, 34, "power", "octave", "epic", density=0.6, reverb=30),
    "edm": Style("edm", "four_on_floor", 81, 90, 89, 38, "stab", "offbeat", "pop", density=0.6),
    "house": Style(
        "house", "four_on_floor", 4, 4, 89, 38, "stab", "offbeat", "jazz", density=0.5, seventh_chords=True
    ),
    "disco": Style("disco", "disco", 48, 27, 49, 33, "stab", "octave", "pop", density=0.55),
    "dnb": Style("dnb", "breakbeat", 81, 89, 89, 38, "pad", "root", "epic", density=0.5),
    "reggae": Style(
        "reggae", "one_drop", 0, 16, None, 33, "skank", "reggae", "pop", swing=0.12, density=0.45
    ),
    "latin": Style("latin", "latin", 24, 24, None, 33, "strum", "pop", "pop", density=0.6),
    "funk": Style(
        "funk",
        "funk",
        61,
        27,
        None,
        36,
        "stab",
        "octave",
        "jazz",
        swing=0.08,
        density=0.6,
        seventh_chords=True,
    ),
    "folk": Style("folk", "folk", 73, 25, None, 32, "strum", "root", "pop", density=0.5, pentatonic=True),
    "country": Style("country", "folk", 40, 25, None, 32, "strum", "pop", "pop", density=0.55),
    "orchestral": Style("orchestral", "epic", 48, 48, 49, 43, "pad", "root", "epic", density=0.45, reverb=80),
    "classical": Style("classical", "none", 0, 0, 48, 42, "arp", "root", "pop", density=0.5, reverb=70),
    "ambient": Style(
        "ambient",
        "none",
        0,  # sparse piano over pads
        88,
        89,
        89,  # a low pad as the drone
        "pad",
        "drone",
        "modal",
        density=0.2,
        reverb=110,
        harmonic_rhythm=2,
        seventh_chords=True,
    ),
    "newage": Style(
        "newage", "none", 0, 0, 91, 32, "arp", "root", "modal", density=0.3, reverb=100, harmonic_rhythm=2
    ),
    "lullaby": Style(
        "lullaby", "none", 10, 46, 89, 32, "arp", "root", "pop", density=0.35, reverb=80, pentatonic=True
    ),
    "children": Style("children", "folk", 8, 0, None, 32, "block", "pop", "pop", density=0.55),
    "korean": Style(
        "korean",
        "traditional",
        107,
        107,
        49,
        32,
        "arp",
        "root",
        "modal",
        density=0.4,
        pentatonic=True,
        reverb=70,
        harmonic_rhythm=2,
    ),
    "asian": Style(
        "asian",
        "traditional",
        77,
        107,
        49,
        32,
        "arp",
        "root",
        "modal",
        density=0.4,
        pentatonic=True,
        reverb=70,
        harmonic_rhythm=2,
    ),
    "worldperc": Style(
        "worldperc", "latin", 114, 108, 49, 32, "arp", "pop", "modal", density=0.55, pentatonic=True
    ),
    "horror": Style(
        "horror", "none", 49, 48, 95, 43, "pad", "drone", "epic", density=0.25, reverb=110, harmonic_rhythm=2
    ),
}

# Ordered (keyword, style) rules: the first keyword found in a lower-cased genre name wins.
GENRE_RULES: tuple[tuple[str, str], ...] = (
    ("lofi", "lofi"),
    ("lo-fi", "lofi"),
    ("chill", "lofi"),
    ("downtempo", "lofi"),
    ("trip", "lofi"),
    ("trap", "trap"),
    ("hip", "hiphop"),
    ("gangsta", "hiphop"),
    ("rap", "hiphop"),
    ("jazz", "jazz"),
    ("swing", "jazz"),
    ("lounge", "jazz"),
    ("bossa", "latin"),
    ("blues", "blues"),
    ("bluegrass", "country"),
    ("country", "country"),
    ("metal", "metal"),
    ("punk", "rock"),
    ("industrial", "metal"),
    ("rock", "rock"),
    ("disco", "disco"),
    ("funk", "funk"),
    ("r&b", "funk"),
    ("soul", "funk"),
    ("rhythm and blues", "funk"),
    ("dnb", "dnb"),
    ("drum and bass", "dnb"),
    ("breakbeat", "dnb"),
    ("dubstep", "dnb"),
    ("house", "house"),
    ("techno", "edm"),
    ("trance", "edm"),
    ("rave", "edm"),
    ("edm", "edm"),
    ("dance", "edm"),
    ("electro", "edm"),
    ("synth", "edm"),
    ("future", "edm"),
    ("glitch", "edm"),
    ("electronic", "edm"),
    ("racing", "edm"),
    ("new wave", "edm"),
    ("games", "edm"),
    ("video game", "edm"),
    ("reggaeton", "latin"),
    ("reggae", "reggae"),
    ("ska", "reggae"),
    ("latin", "latin"),
    ("samba", "latin"),
    ("brazil", "latin"),
    ("flamenco", "latin"),
    ("spanish", "latin"),
    ("peruvian", "latin"),
    ("hawaiian", "folk"),
    ("folk", "folk"),
    ("acoustic", "folk"),
    ("indie", "folk"),
    ("lullaby", "lullaby"),
    ("children", "children"),
    ("kids", "children"),
    ("christmas", "children"),
    ("korean", "korean"),
    ("japanese", "asian"),
    ("china", "asian"),
    ("chinese", "asian"),
    ("mongolian", "asian"),
    ("gamelan", "asian"),
    ("bali", "asian"),
    ("indian", "worldperc"),
    ("bollywood", "worldperc"),
    ("african", "worldperc"),
    ("gnawa", "worldperc"),
    ("middle eastern", "worldperc"),
    ("world", "worldperc"),
    ("exotica", "worldperc"),
    ("horror", "horror"),
    ("halloween", "horror"),
    ("suspense", "horror"),
    ("thriller", "horror"),
    ("drone", "ambient"),
    ("ambient", "ambient"),
    ("ethereal", "ambient"),
    ("meditation", "ambient"),
    ("dream", "ambient"),
    ("new age", "newage"),
    ("minimal", "newage"),
    ("classical", "classical"),
    ("neo", "classical"),
    ("piano", "classical"),
    ("orchestr", "orchestral"),
    ("cinematic", "orchestral"),
    ("epic", "orchestral"),
    ("trailer", "orchestral"),
    ("battle", "orchestral"),
    ("action", "orchestral"),
    ("fantasy", "orchestral"),
    ("drama", "orchestral"),
    ("ballad", "ballad"),
    ("adult contemporary", "ballad"),
    ("easy listening", "ballad"),
    ("gospel", "ballad"),
    ("hymn", "ballad"),
    ("christian", "ballad"),
    ("inspirational", "ballad"),
    ("pop", "pop"),
)


def style_for(genres: Sequence[str]) -> Style:
    """The style of the first genre that matches a rule; ``pop`` when none does."""
    for genre in genres:
        name = genre.lower().replace("_", " ")
        for keyword, style in GENRE_RULES:
            if keyword in name:
                return STYLES[style]
    return STYLES["pop"]
