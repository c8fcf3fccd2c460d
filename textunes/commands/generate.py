"""``textunes generate``: categories (or a document) → finished audio files (+ MIDI)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

FORMATS = ("mp3", "wav", "ogg")
MAX_SAMPLES = 8
MAX_FILE_BYTES = 2_000_000  # documents for --from-text (same default as the bot's upload cap)


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
    if output and (output.endswith(("/", os.sep)) or base.is_dir()):  # a folder: the file goes inside
        base = base / f"textunes-{seed}.{fmt}"
    if base.suffix.lstrip(".").lower() != fmt:
        base = base.with_suffix(f".{fmt}")
    if count == 1:
        return [base]
    return [base.with_name(f"{base.stem}-{i + 1}{base.suffix}") for i in range(count)]


def _check_writable(path: Path) -> None:
    """Refuse an output path whose folder cannot be made or written, before the music is made."""
    from engine.errors import UserInputError

    folder = path.parent.absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise UserInputError(f"Cannot write {path}: {existing} is a file, not a folder.")
    if not os.access(existing, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserInputError(f"Cannot write {path} here. Choose another path with -o.")


def _request(args: argparse.Namespace):
    """The service request for these arguments: a document, or categories."""
    from engine.errors import UserInputError
    from engine.prompt import build_spec
    from engine.service import DocumentRequest, MusicRequest

    if args.samples < 1 or args.samples > MAX_SAMPLES:
        raise UserInputError(f"--samples must be between 1 and {MAX_SAMPLES}.")
    if args.from_text:
        from engine.errors import existing_file
        from engine.text.ingest import check_upload

        # the document makes the prompt: a genre, mood, prompt or preset beside it would be dropped
        ignored = [flag for flag, value in (("--genre", args.genre), ("--mood", args.mood),
                   ("--prompt", args.prompt), ("--preset", args.preset)) if value]  # fmt: skip
        if ignored:
            raise UserInputError(
                f"--from-text makes its own prompt from the document; drop {', '.join(ignored)} "
                "(--keyword, --instrument, --tempo and --duration still apply)."
            )
        path = existing_file(args.from_text)
        check_upload(path.name, path.stat().st_size, max_bytes=MAX_FILE_BYTES)  # before reading it
        return DocumentRequest(
            data=path.read_bytes(),
            filename=path.name,
            duration=args.duration,
            tempo=args.tempo,
            keywords=tuple(args.keyword),
            instruments=tuple(args.instrument),
            loop=args.loop,
            samples=args.samples,
        )
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
    spec = build_spec(**options)
    return MusicRequest(spec=spec, samples=args.samples, title="textunes generate", loop=args.loop)


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
    import asyncio
    import random

    from engine.errors import UserInputError

    fmt = args.format or (Path(args.output).suffix.lstrip(".").lower() if args.output else "") or "mp3"
    if fmt not in FORMATS:
        raise UserInputError(f"Unknown output format '{fmt}'. Use one of: {', '.join(FORMATS)}.")
    request = _request(args)
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    _check_writable(_output_paths(args.output, fmt, seed, 1)[0])  # before anything is generated
    if hasattr(request, "spec"):  # a document's prompt is printed once it is analysed
        print(f"prompt:  {request.spec.prompt}")
    return asyncio.run(_generate(args, request, fmt, seed))


async def _generate(args: argparse.Namespace, request, fmt: str, seed: int) -> int:
    """One request through the same ``MusicService`` the bot uses, with an in-process engine and a
    throwaway store; the finished files are copied to the output paths."""
    import dataclasses
    import shutil
    import tempfile

    from tqdm import tqdm

    from engine.errors import UserInputError
    from engine.jobs import EngineConfig, JobEngine, JobFailed
    from engine.limits import Limits
    from engine.prompt import MAX_DURATION
    from engine.service import Analysed, MusicRequest, MusicService, Progress, Requester
    from engine.store import Store

    params = {
        k: v
        for k, v in (
            ("guidance_scale", args.guidance),
            ("temperature", args.temperature),
            ("top_k", args.top_k),
        )
        if v is not None
    }
    limits = Limits(
        max_duration=MAX_DURATION,
        max_samples=MAX_SAMPLES,
        jobs_per_user=1,
        queue_size=1,
        max_file_bytes=MAX_FILE_BYTES,
    )
    engine = JobEngine(
        EngineConfig(
            backend=args.backend,
            model=args.model,
            device=args.device,
            dtype=args.dtype,
            worker="thread",
            generation_params=params,
            job_timeout=24 * 3600.0,  # a CLI run waits as long as the model needs
            **limits.engine_caps(),
        )
    )
    sandbox = None
    if not isinstance(request, MusicRequest):
        from engine.text.sandbox import AnalysisSandbox

        sandbox = AnalysisSandbox()
    request = dataclasses.replace(request, seed=seed)
    with tempfile.TemporaryDirectory(prefix="textunes-cli-") as scratch:
        store = Store.open(Path(scratch) / "cli.db")
        service = MusicService(store, engine, limits=limits, analysis=sandbox, audio_format=fmt)
        try:
            await service.start()
            handle = await service.submit(Requester("cli"), request)
            bar = None
            try:
                async for out in handle:
                    if isinstance(out, Analysed):
                        await _print_analysis(service, handle.job_id, out)
                    elif isinstance(out, Progress):
                        if bar is None:
                            bar = tqdm(
                                total=100, unit="%", desc=engine.backend_name, file=sys.stderr, leave=False
                            )
                        bar.n = round(out.percent)
                        bar.refresh()
            finally:
                if bar is not None:
                    bar.close()
            try:
                records = await handle.result()
            except JobFailed as exc:
                if exc.reason in ("input", "refused"):
                    raise UserInputError(str(exc)) from None  # one line, exit status 2
                print(f"error: {exc}", file=sys.stderr)
                return 1
            print(f"backend: {engine.backend_name} ({engine.model_id})")
            print(f"seed:    {records[0].seed if records else seed}")
            for path, record in zip(
                _output_paths(args.output, fmt, seed, len(records)), records, strict=True
            ):
                path.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(record.path, path)
                extra = ""
                if record.midi_path is not None:
                    shutil.copyfile(record.midi_path, path.with_suffix(".mid"))
                    extra = f" + {path.with_suffix('.mid')}"
                print(f"wrote:   {path} ({record.duration:.1f} s, seed {record.seed}){extra}")
        finally:
            await service.close()
            store.close()
    return 0


async def _print_analysis(service, job_id: str, analysed) -> None:
    summary = analysed.summary
    print(
        f"analysis: {summary['language']}, topic {summary['topic']['name']}, emotion {summary['emotion']['label']}"
    )
    for reason in summary.get("reasons") or ():
        print(f"  why: {reason}")
    job = await service.job(job_id)
    print(f"prompt:  {job.spec.prompt}")
