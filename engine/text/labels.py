"""Reviewed label tables: fine emotion labels → the seven Ekman labels and the valence/arousal plane.

Valence (unpleasant −1 … pleasant +1) and arousal (calm −1 … excited +1) follow Russell's circumplex.
The numbers are hand-placed from the circumplex and the NRC VAD lexicon (Mohammad 2018: e.g.
joy V .98 A .82, sadness V .05 A .29, anger V .17 A .87, fear V .07 A .84 on 0…1) and rescaled to
[−1, 1], with arousal pulled toward 0 where a word is mild. ``bench/text_quality.py`` checks them:
it prints the mean *predicted* valence/arousal (from the EmoBank-trained regressor, which never saw
these tables) for each gold GoEmotions label, so a wrong placement shows up as a disagreement.

GoEmotions → Ekman follows the GoEmotions authors' own grouping (``ekman_mapping.json`` in
google-research/goemotions). KOTE → Ekman is ours; ambiguous Korean labels are commented.
"""

from __future__ import annotations

from collections.abc import Iterable

EKMAN_LABELS: tuple[str, ...] = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")

# Centre of each Ekman label on the valence/arousal plane.
EKMAN_VA: dict[str, tuple[float, float]] = {
    "anger": (-0.65, 0.65),
    "disgust": (-0.65, 0.30),
    "fear": (-0.65, 0.55),
    "joy": (0.75, 0.45),
    "neutral": (0.0, -0.15),
    "sadness": (-0.70, -0.40),
    "surprise": (0.20, 0.65),
}

# GoEmotions' 27 emotions + neutral: (Ekman label, valence, arousal).
GOEMOTIONS_28: dict[str, tuple[str, float, float]] = {
    "admiration": ("joy", 0.65, 0.30),
    "amusement": ("joy", 0.70, 0.50),
    "anger": ("anger", -0.70, 0.70),
    "annoyance": ("anger", -0.50, 0.40),
    "approval": ("joy", 0.50, 0.00),
    "caring": ("joy", 0.60, 0.00),
    "confusion": ("surprise", -0.20, 0.25),
    "curiosity": ("surprise", 0.30, 0.40),
    "desire": ("joy", 0.40, 0.50),
    "disappointment": ("sadness", -0.60, -0.20),
    "disapproval": ("anger", -0.50, 0.15),
    "disgust": ("disgust", -0.70, 0.40),
    "embarrassment": ("sadness", -0.50, 0.30),
    "excitement": ("joy", 0.75, 0.80),
    "fear": ("fear", -0.70, 0.60),
    "gratitude": ("joy", 0.80, 0.10),
    "grief": ("sadness", -0.85, -0.30),
    "joy": ("joy", 0.85, 0.50),
    "love": ("joy", 0.85, 0.40),
    "nervousness": ("fear", -0.45, 0.55),
    "optimism": ("joy", 0.60, 0.25),
    "pride": ("joy", 0.70, 0.40),
    "realization": ("surprise", 0.10, 0.20),
    "relief": ("joy", 0.50, -0.40),
    "remorse": ("sadness", -0.60, -0.10),
    "sadness": ("sadness", -0.75, -0.45),
    "surprise": ("surprise", 0.20, 0.70),
    "neutral": ("neutral", 0.00, -0.20),
}

# KOTE's 43 emotions + 없음 (none): (Ekman label, valence, arousal).
KOTE_44: dict[str, tuple[str, float, float]] = {
    "불평/불만": ("anger", -0.50, 0.30),  # complaint
    "환영/호의": ("joy", 0.60, 0.30),  # welcome, goodwill
    "감동/감탄": ("joy", 0.70, 0.50),  # moved, admiration
    "지긋지긋": ("disgust", -0.60, 0.10),  # fed up
    "고마움": ("joy", 0.80, 0.10),  # gratitude
    "슬픔": ("sadness", -0.75, -0.45),  # sadness
    "화남/분노": ("anger", -0.75, 0.75),  # anger
    "존경": ("joy", 0.60, 0.10),  # respect
    "기대감": ("joy", 0.50, 0.50),  # anticipation
    "우쭐댐/무시함": ("disgust", -0.30, 0.30),  # smugness / contempt: contempt sits with disgust
    "안타까움/실망": (
        "sadness",
        -0.55,
        -0.20,
    ),  # regret, disappointment (GoEmotions: disappointment → sadness)
    "비장함": ("neutral", 0.10, 0.40),  # grim resolve: no Ekman counterpart, so neutral with raised arousal
    "의심/불신": ("disgust", -0.40, 0.20),  # suspicion, distrust (Plutchik: distrust is mild disgust)
    "뿌듯함": ("joy", 0.70, 0.40),  # pride
    "편안/쾌적": ("joy", 0.60, -0.50),  # comfort, ease
    "신기함/관심": ("surprise", 0.40, 0.45),  # wonder, interest (GoEmotions: curiosity → surprise)
    "아껴주는": ("joy", 0.60, 0.00),  # caring
    "부끄러움": ("sadness", -0.40, 0.30),  # shame, shyness (GoEmotions: embarrassment → sadness)
    "공포/무서움": ("fear", -0.75, 0.70),  # fear
    "절망": ("sadness", -0.85, -0.30),  # despair
    "한심함": ("disgust", -0.55, 0.10),  # "how pathetic": contempt
    "역겨움/징그러움": ("disgust", -0.75, 0.45),  # disgust, creepiness
    "짜증": ("anger", -0.60, 0.50),  # irritation
    "어이없음": (
        "anger",
        -0.45,
        0.35,
    ),  # "unbelievable/ridiculous": co-occurs mostly with complaint/irritation
    "없음": ("neutral", 0.00, -0.20),  # none
    "패배/자기혐오": ("sadness", -0.80, -0.10),  # defeat, self-loathing
    "귀찮음": ("anger", -0.40, -0.20),  # can't be bothered: low-arousal annoyance
    "힘듦/지침": ("sadness", -0.60, -0.50),  # exhaustion
    "즐거움/신남": ("joy", 0.80, 0.70),  # fun, excitement
    "깨달음": ("surprise", 0.20, 0.20),  # realization (as GoEmotions)
    "죄책감": ("sadness", -0.60, 0.00),  # guilt (GoEmotions: remorse → sadness)
    "증오/혐오": ("disgust", -0.85, 0.55),  # hatred, loathing
    "흐뭇함(귀여움/예쁨)": ("joy", 0.75, 0.10),  # warm contentment (cute, pretty)
    "당황/난처": ("surprise", -0.30, 0.50),  # flustered, at a loss (GoEmotions: confusion → surprise)
    "경악": ("surprise", -0.40, 0.80),  # shock, aghast
    "부담/안_내킴": ("fear", -0.40, 0.10),  # burdened, reluctant: a mild apprehension
    "서러움": ("sadness", -0.70, -0.10),  # sorrow of being wronged
    "재미없음": ("sadness", -0.40, -0.60),  # boredom: low-arousal unpleasant, nearest Ekman is sadness
    "불쌍함/연민": ("sadness", -0.40, -0.20),  # pity, compassion
    "놀람": ("surprise", 0.10, 0.75),  # surprise
    "행복": ("joy", 0.90, 0.40),  # happiness
    "불안/걱정": ("fear", -0.60, 0.40),  # anxiety, worry
    "기쁨": ("joy", 0.85, 0.50),  # joy
    "안심/신뢰": ("joy", 0.55, -0.30),  # relief, trust
}

# Ties between equally voted Ekman labels go to the rarer, more specific label.
_TIE_ORDER: tuple[str, ...] = ("fear", "surprise", "disgust", "sadness", "anger", "joy", "neutral")


def _table(scheme: str) -> dict[str, tuple[str, float, float]]:
    if scheme == "goemotions":
        return GOEMOTIONS_28
    if scheme == "kote":
        return KOTE_44
    raise ValueError(f"unknown label scheme {scheme!r}")


def ekman_votes(fine_labels: Iterable[str], scheme: str) -> dict[str, int]:
    """How many of a text's fine labels fall under each Ekman label."""
    table = _table(scheme)
    votes = dict.fromkeys(EKMAN_LABELS, 0)
    for fine in fine_labels:
        votes[table[fine][0]] += 1
    return votes


def to_ekman(fine_labels: Iterable[str], scheme: str) -> str:
    """One Ekman label for a multi-label row: the most voted, ties to the more specific label.

    A row whose only label is none/neutral is neutral; neutral never wins against a real emotion.
    """
    votes = ekman_votes(fine_labels, scheme)
    emotional = {k: v for k, v in votes.items() if k != "neutral" and v > 0}
    if not emotional:
        return "neutral"
    best = max(emotional.values())
    return next(label for label in _TIE_ORDER if emotional.get(label, 0) == best)


def to_valence_arousal(fine_labels: Iterable[str], scheme: str) -> tuple[float, float]:
    """Mean valence/arousal of a text's fine labels (a soft regression target)."""
    table = _table(scheme)
    points = [table[fine][1:] for fine in fine_labels]
    if not points:
        return 0.0, 0.0
    return (sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points))


# One-sentence descriptions of the book32 categories (by id). Their embeddings act as class
# prototypes that the topic head blends with the title classifier: with ~100 titles per class,
# a hand-written description adds what few titles show (bench/text_quality.py measures it).
TOPIC_DESCRIPTIONS: dict[int, str] = {
    0: "A book about art, painting, drawing, photography, design, architecture, music and film.",
    1: "A biography or memoir: the life story of a famous person, told by themselves or others.",
    2: "A book about business, money, investing, finance, management, marketing and careers.",
    3: "A wall calendar for the year with monthly pictures of animals, landscapes or art.",
    4: "A picture book or story for young children and kids, with animals, ABCs and bedtime tales.",
    5: "A comic book, graphic novel or manga with superheroes, volumes and illustrated stories.",
    6: "A book about computers, programming, software, the internet, data and technology.",
    7: "A cookbook of recipes: cooking, baking, food, wine, drinks and healthy meals.",
    8: "A book about crafts, hobbies and the home: knitting, sewing, quilting, woodworking, gardening.",
    9: "A Christian book or Bible: Jesus, God, faith, prayer, church and devotionals.",
    10: "A book about engineering and transportation: mechanics, electronics, cars, aircraft, trains.",
    11: "A book about health, fitness and dieting: weight loss, exercise, nutrition and wellness.",
    12: "A history book about wars, empires, ancient civilizations, nations and historical events.",
    13: "A humor and entertainment book: jokes, puzzles, games, television, movies and celebrities.",
    14: "A book about law: legal cases, courts, the constitution, crime, rights and lawyers.",
    15: "A novel or literary fiction: stories, poetry, classic literature and short stories.",
    16: "A medical textbook about medicine, nursing, anatomy, clinical practice and disease.",
    17: "A mystery, thriller or suspense novel: detectives, murder, crime, spies and secrets.",
    18: "A book about parenting and relationships: raising children, marriage, family and love.",
    19: "A book about politics and social sciences: government, society, sociology, economics.",
    20: "A reference book: a dictionary, encyclopedia, atlas, guide, language learning or handbook.",
    21: "A book about religion and spirituality: Buddhism, Islam, meditation, the soul and mysticism.",
    22: "A romance novel about love, passion, a bride, a cowboy, a duke and a happy ending.",
    23: "A book about science and mathematics: physics, biology, chemistry, algebra and nature.",
    24: "A science fiction or fantasy novel: space, aliens, magic, dragons, wizards and other worlds.",
    25: "A self-help book about personal growth, happiness, success, habits and motivation.",
    26: "A book about sports and the outdoors: baseball, football, hiking, fishing, hunting, climbing.",
    27: "A novel for teens and young adults about high school, growing up, friendship and first love.",
    28: "A test preparation guide for exams such as the SAT, GRE, GMAT, bar exam and certification tests.",
    29: "A travel guide to a country or city: maps, trips, hotels, tours and places to visit.",
    30: "A book about gay and lesbian lives, LGBT identity, queer stories and coming out.",
    31: "A book about education and teaching: teachers, classrooms, curriculum and learning.",
}


# Three short scenes per Ekman label, written for this project in narrative (not chat) language.
# Their mean embedding is a label prototype: the document head (engine.text.mood) compares a
# document with them, which reads feeling that a story shows rather than names (rain, an empty
# room) better than heads trained on Reddit comments. bench/text_quality.py measures what they add.
EMOTION_DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "anger": (
        "I am furious and outraged; this makes me so angry I could scream.",
        "How dare they treat us like this, I hate them for it.",
        "He slammed his fist on the table, shouting in rage at the injustice.",
    ),
    "disgust": (
        "That is disgusting and revolting, it makes me sick.",
        "Gross, vile and filthy; I find it repulsive.",
        "The stench of rot and decay turned her stomach.",
    ),
    "fear": (
        "I am terrified and afraid; something dreadful is coming for us in the dark.",
        "Panic and dread: we are in danger and I am scared.",
        "Footsteps crept closer in the night and she held her breath in terror.",
    ),
    "joy": (
        "I am so happy and delighted; this is wonderful and full of love.",
        "A bright, joyful day of laughter, sunshine and celebration.",
        "They danced and sang together, full of hope and gladness.",
    ),
    "neutral": (
        "The meeting is on Tuesday at the office.",
        "The report describes the method and the results.",
        "The train leaves the station at nine and arrives at noon.",
    ),
    "sadness": (
        "I am heartbroken and grieving; someone I love is gone and will never come back.",
        "A lonely, empty day of loss, tears and mourning.",
        "She wept quietly by the grave as the light faded.",
    ),
    "surprise": (
        "Wow, I did not expect that at all, what a surprise!",
        "I am amazed and astonished by this sudden news.",
        "To everyone's astonishment, the door flew open and there he was.",
    ),
}
