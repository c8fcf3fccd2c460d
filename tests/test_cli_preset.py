"""``textunes generate --preset NAME --guild ID``: a server's preset from the bot's store, offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile

from engine.store import Store
from textunes.cli import main


@pytest.fixture
def store_with_preset(tmp_path: Path) -> Path:
    db = tmp_path / "textunes.db"
    with Store.open(db) as store:
        store.add_guild_preset(
            77, "Horror game", genres=["Ambient"], moods=["Scary"], tempo="Slow", duration="0:06"
        )
    return db


def test_generate_from_a_preset(
    store_with_preset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "horror.wav"
    argv = ["generate", "--preset", "horror game", "--guild", "77", "--store", str(store_with_preset)]
    code = main([*argv, "--backend", "arranger", "--seed", "5", "-o", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    audio, rate = soundfile.read(out)
    assert abs(len(audio) / rate - 6.0) < 0.1  # the preset's duration
    prompt = next(line for line in printed.splitlines() if line.startswith("prompt:")).lower()
    assert "ambient" in prompt and "slow" in prompt


def test_options_typed_win_and_unknown_presets_are_one_line_errors(
    store_with_preset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "short.wav"
    base = ["generate", "--preset", "Horror game", "--guild", "77", "--store", str(store_with_preset)]
    assert main([*base, "--duration", "5", "--backend", "arranger", "--seed", "1", "-o", str(out)]) == 0
    audio, rate = soundfile.read(out)
    assert abs(len(audio) / rate - 5.0) < 0.1
    capsys.readouterr()
    assert main(["generate", "--preset", "Wedding", "--guild", "77", "--store", str(store_with_preset)]) == 2
    assert "has no preset 'Wedding'. Its presets: Horror game." in capsys.readouterr().err
    assert main(["generate", "--preset", "Horror game", "--store", str(store_with_preset)]) == 2
    assert "--preset needs --guild" in capsys.readouterr().err
