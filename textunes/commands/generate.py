"""``textunes generate``: categories (or a document) → finished audio files (+ MIDI)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

FORMATS = ("mp3", "wav", "ogg")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="generate a track from categories or a document",
        description="Generate background music. Names may be Korean or English, any case.",
    )
    p.add_argument("--genre", action="append", default=[], help="genre (repeatable), e.g. Lofi")
    p.add_argument("--mood", action="append", default=[], help="mood (repeatable), e.g. Calm")
    p.add_argument("--instrument", action="append", default=[], help="instrument (repeatable), e.g. Piano")
    p.add_argument(
        "--keyword", action="append", default=[], help='free keyword (repeatable), e.g. "rainy night"'
    )
    p.add_argument("--tempo", help="Slow / Medium / Fast, or a BPM such as 92")
    p.add_argument("--duration", help="seconds or m:ss (0:15, 0:30, 1:00; 5 s .. 3 min); default 15")
    p.add_argument("--prompt", help="free text added to the prompt")
    p.add_argument(
        "--from-text", metavar="FILE", help="analyse a document (.txt .md .pdf .docx .html) and score it"
    )
    p.add_argument("--preset", help="a server preset (theme) made with /admin preset-add; needs --guild")
    p.add_argument("--guild", help="with --preset: the Discord server id the preset belongs to")
    p.add_argument(
        "--store",
        help="with --preset: the bot's database (default $TEXTUNES_STORE, else $TEXTUNES_DATA_DIR/textunes.db)",
    )
    p.add_argument("--samples", type=int, default=1, help="takes per prompt (default 1)")
    p.add_argument("--seed", type=int, help="random seed (default: random, printed)")
    p.add_argument("--backend", choices=("auto", "musicgen", "arranger"), default="auto")
    p.add_argument("--model", help="MusicGen model id or local path (default facebook/musicgen-small)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument(
        "--dtype",
        default="auto",
        help="auto (CPU: int8, or bf16 with AMX; GPU: bf16/fp16), float32, float16, bfloat16, int8",
    )
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (MusicGen)")
    p.add_argument("--temperature", type=float, help="sampling temperature (MusicGen)")
    p.add_argument("--top-k", type=int, help="top-k sampling (MusicGen)")
    p.add_argument("--loop", action="store_true", help="make the file loop seamlessly")
    p.add_argument("--format", choices=FORMATS, help="output format (default: from -o, else mp3)")
    p.add_argument("-o", "--output", help="output file (default out/textunes-SEED.FORMAT)")
    p.set_defaults(func=run)


def _output_paths(output: str | None, fmt: str, seed: int, count: int) -> list[Path]:
    base = Path(output) if output else Path("out") / f"textunes-{seed}.{fmt}"
    if base.suffix.lstrip(".") != fmt:
        base = base.with_suffix(f".{fmt}")
    if count == 1:
        return [base]
    return [base.with_name(f"{base.stem}-{i + 1}{base.suffix}") for i in range(count)]


def _build_spec(args: argparse.Namespace):
    from engine.errors import UserInputError
    from engine.prompt import build_spec

    if args.samples < 1 or args.samples > 8:
        raise UserInputError("--samples must be between 1 and 8.")
    if args.from_text:
        from engine.text.analyzer import spec_from_file

        analysis, spec = spec_from_file(
            args.from_text,
            tempo=args.tempo,
            duration=args.duration,
            keywords=tuple(args.keyword),
            instruments=tuple(args.instrument),
        )
        return spec, analysis
    options = _preset_options(args) if args.preset else {}
    given = {
        "genres": tuple(args.genre),
        "moods": tuple(args.mood),
        "instruments": tuple(args.instrument),
        "keywords": tuple(args.keyword),
        "tempo": args.tempo,
        "duration": args.duration,
        "prompt": args.prompt,
    }
    options.update({k: v for k, v in given.items() if v})  # what is typed wins over the preset
    if not any(options.get(k) for k in ("genres", "moods", "instruments", "keywords", "prompt")):
        raise UserInputError(
            "Say what to make: at least one of --genre, --mood, --instrument, --keyword, --prompt, "
            "--preset NAME --guild ID or --from-text FILE. List choices with `textunes categories genres --popular`."
        )
    options.setdefault("duration", 15)
    return build_spec(**options), None


def _preset_options(args: argparse.Namespace) -> dict:
    """``build_spec`` options from a server's preset in the bot's store (read only)."""
    import os

    from engine.errors import UserInputError
    from engine.store import Store

    if not args.guild:
        raise UserInputError("--preset needs --guild ID: presets belong to a Discord server.")
    path = Path(
        args.store
        or os.environ.get("TEXTUNES_STORE")
        or Path(os.environ.get("TEXTUNES_DATA_DIR") or "var") / "textunes.db"
    )
    if not path.is_file():
        raise UserInputError(f"No TexTuneS database at {path}; pass --store PATH.")
    with Store.open(path) as store:
        preset = store.get_guild_preset(args.guild, args.preset)
        if preset is None:
            names = ", ".join(p.name for p in store.guild_presets(args.guild)) or "none"
            raise UserInputError(f"Server {args.guild} has no preset '{args.preset}'. Its presets: {names}.")
    return preset.as_options()


def run(args: argparse.Namespace) -> int:
    import random

    from tqdm import tqdm

    from engine.audio import export, finish
    from engine.generation import load_backend

    spec, analysis = _build_spec(args)
    fmt = args.format or (Path(args.output).suffix.lstrip(".") if args.output else "") or "mp3"
    if fmt not in FORMATS:
        from engine.errors import UserInputError

        raise UserInputError(f"Unknown output format '{fmt}'. Use one of: {', '.join(FORMATS)}.")
    seed = args.seed if args.seed is not None else random.randrange(2**31)

    if analysis is not None:
        print(
            f"analysis: {analysis.language}, topic {analysis.topic['name']}, emotion {analysis.emotion['label']}"
        )
        for reason in analysis.reasons:
            print(f"  why: {reason}")
    print(f"prompt:  {spec.prompt}")

    backend = load_backend(args.backend, model=args.model, device=args.device, dtype=args.dtype)
    params = {
        k: v
        for k, v in (
            ("guidance_scale", args.guidance),
            ("temperature", args.temperature),
            ("top_k", args.top_k),
        )
        if v is not None
    }
    if params:
        backend.set_generation_params(**params)

    bar = tqdm(total=100, unit="%", desc=f"{backend.name}", file=sys.stderr, leave=False)

    def progress(done: int, total: int) -> None:
        bar.n = round(100 * done / max(total, 1))
        bar.refresh()

    try:
        tracks = backend.generate([spec], samples=args.samples, seed=seed, progress=progress)
    finally:
        bar.close()

    print(f"backend: {backend.name} ({backend.model_id})")
    print(f"seed:    {seed}")
    for path, track in zip(_output_paths(args.output, fmt, seed, len(tracks)), tracks, strict=True):
        track = finish(track, duration=spec.duration, loop=args.loop)
        written = export(track, path, fmt=fmt)
        extra = f" + {written.with_suffix('.mid')}" if track.midi else ""
        print(f"wrote:   {written} ({track.duration:.1f} s, seed {track.seed}){extra}")
    return 0
