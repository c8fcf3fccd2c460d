"""``textunes generate`` goes through the MusicService (in-process engine, arranger, sandboxed analysis)."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile

from textunes.cli import main

FIXTURES = Path(__file__).parent / "fixtures"


def test_categories_write_audio_and_midi(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "lofi.mp3"
    argv = ["generate", "--genre", "Lofi", "--mood", "Calm", "--tempo", "Slow", "--duration", "5"]
    assert main([*argv, "--seed", "7", "--samples", "2", "--backend", "arranger", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "prompt:  A calm instrumental lo-fi track." in printed and "seed:    7" in printed
    for path in (tmp_path / "out" / "lofi-1.mp3", tmp_path / "out" / "lofi-2.mp3"):
        info = soundfile.info(str(path))
        assert abs(info.duration - 5.0) < 0.1
        assert path.with_suffix(".mid").read_bytes().startswith(b"MThd")
        assert f"wrote:   {path} (5.0 s" in printed


def test_from_text_scores_the_document_in_the_requested_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "happy.ogg"
    argv = [
        "generate",
        "--from-text",
        str(FIXTURES / "happy_en.txt"),
        "--duration",
        "0:10",
        "--format",
        "ogg",
    ]
    assert main([*argv, "--backend", "arranger", "--loop", "--samples", "2", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "analysis: en," in printed and "  why: duration 0:10 (your choice)" in printed
    assert "prompt:  " in printed
    for take in (tmp_path / "happy-1.ogg", tmp_path / "happy-2.ogg"):
        info = soundfile.info(str(take))
        assert info.format == "OGG" and abs(info.duration - 10.0) < 0.1


def test_a_bad_document_is_one_line_and_exit_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["generate", "--from-text", str(FIXTURES / "random_bytes.txt"), "--backend", "arranger"]
    assert main([*argv, "-o", str(tmp_path / "x.mp3")]) == 2
    err = capsys.readouterr().err
    assert "doesn't look like text" in err and "Traceback" not in err
    assert not (tmp_path / "x.mp3").exists()
    assert main(["generate", "--from-text", str(tmp_path / "missing.txt")]) == 2
    assert "No such file" in capsys.readouterr().err
    assert main(["generate", "--from-text", str(tmp_path)]) == 2  # it used to say "No such file"
    assert f"{tmp_path} is a folder. Give one file inside it." in capsys.readouterr().err


def test_from_text_refuses_the_options_it_would_drop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the document makes the prompt: a genre, mood, prompt or preset beside it used to be dropped silently
    doc = str(FIXTURES / "happy_en.txt")
    out = tmp_path / "x.mp3"
    extra = ["--genre", "Lofi", "--mood", "Calm", "--prompt", "rain", "--preset", "focus", "--guild", "1"]
    assert main(["generate", "--from-text", doc, *extra, "--backend", "arranger", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "drop --genre, --mood, --prompt, --preset" in err and not out.exists()
    assert main(["generate", "--from-text", doc, "--mood", "Calm", "-o", str(out)]) == 2
    assert "drop --mood (" in capsys.readouterr().err and not out.exists()


def test_the_output_may_be_a_folder_or_an_upper_case_name_and_an_unwritable_one_fails_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["generate", "--mood", "Calm", "--duration", "5", "--seed", "3", "--backend", "arranger"]
    (tmp_path / "songs").mkdir()
    assert main([*argv, "-o", str(tmp_path / "songs")]) == 0
    assert soundfile.info(str(tmp_path / "songs" / "textunes-3.mp3")).duration == pytest.approx(5.0, abs=0.1)
    assert main([*argv, "-o", str(tmp_path / "loud.WAV")]) == 0
    assert soundfile.info(str(tmp_path / "loud.WAV")).format == "WAV"
    (tmp_path / "afile").write_text("not a folder")
    capsys.readouterr()
    assert main([*argv, "-o", str(tmp_path / "afile" / "x.wav")]) == 2
    captured = capsys.readouterr()
    assert "afile is a file, not a folder" in captured.err and "wrote" not in captured.out
