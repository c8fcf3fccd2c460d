"""TexTuneS engine: a plain library (never imports discord).

Catalogue, text analysis, prompt builder, generation backends, job engine, audio finishing, store.
"""

from engine.errors import TexTuneSError, UserInputError
from engine.spec import MusicSpec, Track

__all__ = ["MusicSpec", "Track", "TexTuneSError", "UserInputError"]
