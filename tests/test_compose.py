"""compose.yaml and the image it builds: valid against the Compose specification, every command a
real ``textunes`` invocation, every setting one our code reads, Redis's flags accepted by a real
redis-server, and no secret copied into the image."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis
import yaml

from tests.redis_server import RedisServer
from textunes.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose.yaml"


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def validate(path: Path) -> subprocess.CompletedProcess:
    """check-jsonschema with its vendored copy of the Compose specification's schema."""
    cmd = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_compose_file_follows_the_compose_specification(tmp_path: Path) -> None:
    ok = validate(COMPOSE)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # the check is real: a misspelt service option (a typo docker compose would also refuse) fails it
    typo = tmp_path / "compose.yaml"
    typo.write_text(COMPOSE.read_text().replace("stop_grace_period:", "stop_grace_perod:"))
    refused = validate(typo)
    assert refused.returncode != 0 and "stop_grace_perod" in refused.stdout + refused.stderr


@pytest.mark.parametrize("service", ["bot", "worker"])
def test_each_service_of_our_image_runs_a_real_textunes_command(service: str) -> None:
    spec = compose()["services"][service]
    assert spec["build"] == "."
    program, *argv = spec["command"]
    assert program == "textunes"  # the console script the Dockerfile installs
    args = build_parser().parse_args(argv)  # exits (status 2) on an unknown command or flag
    assert args.command == service
    if service == "worker":
        assert args.device == "cuda:0" and args.backend == "musicgen"
        assert "capabilities" in str(spec["deploy"]["resources"]["reservations"]["devices"])


def test_every_setting_compose_passes_is_read_by_our_code_and_documented() -> None:
    sources = "\n".join(
        p.read_text() for d in ("engine", "bot", "textunes") for p in (ROOT / d).rglob("*.py")
    )
    example = (ROOT / ".env.example").read_text()
    services = compose()["services"]
    names = {name for s in services.values() for name in s.get("environment", {})}
    ours = {n for n in names if n.startswith("TEXTUNES_")}
    assert {"TEXTUNES_BROKER", "TEXTUNES_METRICS_PORT", "TEXTUNES_DATA_DIR"} <= ours
    for name in ours:
        assert f'"{name}"' in sources, f"{name} is set in compose.yaml but nothing reads it"
        assert name in example, f"{name} is not described in .env.example"
    # both sides of the stack meet at the same broker, and Prometheus reaches the bot's port
    assert (
        services["bot"]["environment"]["TEXTUNES_BROKER"]
        == services["worker"]["environment"]["TEXTUNES_BROKER"]
    )
    port = services["bot"]["environment"]["TEXTUNES_METRICS_PORT"]
    assert any(str(p).endswith(f":{port}") for p in services["bot"]["ports"])
    # the model cache lives on a volume, so the weights are downloaded once
    hf_home = services["worker"]["environment"]["HF_HOME"]
    assert any(str(v).endswith(f":{hf_home}") for v in services["worker"]["volumes"])


def test_the_redis_service_flags_start_a_real_redis_with_append_only_on(tmp_path: Path) -> None:
    program, *flags = compose()["services"]["redis"]["command"]
    assert program == "redis-server"
    server = RedisServer(tmp_path, extra=flags)
    try:
        client = redis.Redis.from_url(server.url)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        client.xadd("batches", {"job": "1"})  # a queued batch survives a restart: it is in the log
        client.close()
    finally:
        server.stop()
    logged = b"".join(p.read_bytes() for p in tmp_path.rglob("*.aof"))
    assert b"batches" in logged


def test_the_image_never_contains_the_env_file_or_local_state() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert ".env" in ignored  # the bot token: compose passes it at run time (env_file), never baked in
    assert {".venv", "var", ".git"} <= ignored
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY . /app" in dockerfile and ".env" not in dockerfile
