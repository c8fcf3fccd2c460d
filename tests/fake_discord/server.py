"""Fake Discord: the REST routes and gateway events discord.py 2.7 uses, served on 127.0.0.1.

Everything the bot sends is recorded (``requests``, ``messages``) and tests drive the bot by
injecting gateway events (slash commands, autocomplete, button clicks, modal submits, reactions).
Replies carry ``Content-Type: application/json`` exactly, because discord.py only parses JSON then.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import aiohttp
import yarl
from aiohttp import web

API_PREFIX = "/api/v10"
EPHEMERAL = 1 << 6
LOADING = 1 << 7
MANAGE_GUILD = 1 << 5
# permissions of a plain member: view, send, embed, attach, read history, add reactions, use commands
MEMBER_PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 14) | (1 << 15) | (1 << 16) | (1 << 6) | (1 << 31)
ALL_PERMISSIONS = (1 << 41) - 1
DISCORD_EPOCH_MS = 1420070400000  # snowflakes count milliseconds from 2015-01-01

_OPTION_TYPES = {str: 3, int: 4, bool: 5, float: 10}


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # discord.py parses a body only when Content-Type is exactly application/json (no charset)
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json", **(headers or {})}
    )


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    json: Any = None
    files: list[tuple[str, str, bytes]] = field(default_factory=list)  # (field name, filename, bytes)
    status: int = 200
    at: float = field(default_factory=time.monotonic)


@dataclass
class StoredAttachment:
    id: int
    filename: str
    data: bytes
    content_type: str | None = None

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class StoredMessage:
    """A message the bot created (interaction response, follow-up or channel message)."""

    id: int
    channel_id: int
    guild_id: int | None
    author: dict
    content: str = ""
    embeds: list[dict] = field(default_factory=list)
    components: list[dict] = field(default_factory=list)
    attachments: list[StoredAttachment] = field(default_factory=list)
    flags: int = 0
    webhook_id: int | None = None
    interaction_id: int | None = None
    message_reference: dict | None = None
    reactions: list[str] = field(default_factory=list)  # emojis the bot itself added
    edits: list[dict] = field(default_factory=list)  # every payload that touched it, in order
    deleted: bool = False
    created: float = field(default_factory=time.time)  # wall clock: what its snowflake would encode

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & LOADING)

    def custom_ids(self) -> list[str]:
        ids = []
        for row in self.components:
            for comp in row.get("components", []):
                if "custom_id" in comp:
                    ids.append(comp["custom_id"])
        return ids

    def text(self) -> str:
        """Content plus every embed's title/description/fields, for assertions."""
        parts = [self.content]
        for embed in self.embeds:
            parts += [embed.get("title", ""), embed.get("description", "")]
            parts += [f"{f.get('name', '')}: {f.get('value', '')}" for f in embed.get("fields", [])]
            parts.append(embed.get("footer", {}).get("text", ""))
        return "\n".join(p for p in parts if p)

    def to_payload(self, base_url: str) -> dict:
        payload = {
            "id": str(self.id),
            "channel_id": str(self.channel_id),
            "author": self.author,
            "content": self.content,
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [
                {
                    "id": str(a.id),
                    "filename": a.filename,
                    "size": a.size,
                    "url": f"{base_url}/attachments/{self.channel_id}/{a.id}/{a.filename}",
                    "proxy_url": f"{base_url}/attachments/{self.channel_id}/{a.id}/{a.filename}",
                    "content_type": a.content_type,
                }
                for a in self.attachments
            ],
            "embeds": self.embeds,
            "pinned": False,
            "type": 19 if self.message_reference else 0,
            "flags": self.flags,
            "components": self.components,
        }
        if self.guild_id is not None:
            payload["guild_id"] = str(self.guild_id)
        if self.webhook_id is not None:
            payload["webhook_id"] = str(self.webhook_id)
            payload["application_id"] = str(self.webhook_id)
        if self.message_reference:
            payload["message_reference"] = self.message_reference
        return payload


@dataclass
class Stall:
    """A request the fake holds open until ``release()`` (see ``FakeDiscord.stall_next``)."""

    method: str
    rx: re.Pattern
    deliver: bool
    files_only: bool
    held: list[RecordedRequest] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        self.released.set()


class FakeInteraction:
    """One interaction the test injected, and everything the bot did in answer to it."""

    def __init__(self, fake: FakeDiscord, payload: dict) -> None:
        self.fake = fake
        self.payload = payload
        self.id = int(payload["id"])
        self.token: str = payload["token"]
        self.sent_at = time.monotonic()
        self.callback: dict | None = None  # {"type": int, "data": dict | None}
        self.callback_at: float | None = None
        self.original_id: int | None = None
        self.followup_ids: list[int] = []

    @property
    def original(self) -> StoredMessage | None:
        return self.fake.messages.get(self.original_id) if self.original_id else None

    @property
    def followups(self) -> list[StoredMessage]:
        return [self.fake.messages[i] for i in self.followup_ids]

    @property
    def ack_seconds(self) -> float | None:
        return None if self.callback_at is None else self.callback_at - self.sent_at

    async def wait_callback(self, timeout: float = 5.0) -> dict:
        await self.fake.wait_until(lambda: self.callback is not None, timeout, f"callback for interaction {self.id}")
        assert self.callback is not None
        return self.callback

    async def wait_original(
        self, predicate: Callable[[StoredMessage], bool] = lambda m: True, timeout: float = 30.0
    ) -> StoredMessage:
        def check() -> bool:
            msg = self.original
            return msg is not None and predicate(msg)

        await self.fake.wait_until(check, timeout, f"original response of interaction {self.id}")
        assert self.original is not None
        return self.original

    async def wait_result(self, timeout: float = 60.0) -> StoredMessage:
        """The original response once it carries an attachment (the finished track)."""
        return await self.wait_original(lambda m: bool(m.attachments), timeout)

    async def wait_followup(
        self, predicate: Callable[[StoredMessage], bool] = lambda m: True, timeout: float = 10.0
    ) -> StoredMessage:
        def find() -> StoredMessage | None:
            return next((m for m in self.followups if predicate(m)), None)

        await self.fake.wait_until(lambda: find() is not None, timeout, f"follow-up of interaction {self.id}")
        found = find()
        assert found is not None
        return found

    async def wait_error(self, timeout: float = 10.0) -> str:
        """Text of the ephemeral message the bot answered with (direct reply or follow-up)."""

        def find() -> StoredMessage | None:
            candidates = ([self.original] if self.original else []) + self.followups
            return next((m for m in candidates if m.ephemeral and not m.loading and m.text()), None)

        await self.fake.wait_until(lambda: find() is not None, timeout, f"ephemeral reply to {self.id}")
        found = find()
        assert found is not None
        return found.text()

    def choices(self) -> list[dict]:
        assert self.callback is not None and self.callback["type"] == 8, self.callback
        return self.callback["data"]["choices"]


class FakeDiscord:
    def __init__(self, *, attachment_size_limit: int = 10 * 1024 * 1024) -> None:
        self._ids = itertools.count(1_200_000_000_000_000_000)
        self.application_id = self.new_id()
        self.bot_user = {
            "id": str(self.application_id),
            "username": "TexTuneS",
            "discriminator": "0",
            "global_name": "TexTuneS",
            "avatar": None,
            "bot": True,
        }
        self.owner_user = self._user("owner")
        self.guild_id = self.new_id()
        self.channel_id = self.new_id()
        self.users: dict[str, dict] = {}
        self.admins: set[int] = set()
        for name in ("alice", "bob"):
            self.users[name] = self._user(name)
        self.attachment_size_limit = attachment_size_limit
        self.requests: list[RecordedRequest] = []
        self.messages: dict[int, StoredMessage] = {}
        self.interactions: dict[int, FakeInteraction] = {}
        self._by_token: dict[str, FakeInteraction] = {}
        self.uploads: dict[int, StoredAttachment] = {}  # attachments users "uploaded" (served at /attachments)
        self.synced_commands: dict[int | None, list[dict]] = {}
        self.identify_payloads: list[dict] = []
        self._sockets: list[tuple[web.WebSocketResponse, itertools.count]] = []
        self._failures: list[dict] = []
        self._stalls: list[Stall] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0
        # delivery-fault knobs, all off by default (see deny_permission, expire_interaction, block_dms)
        self.max_upload_bytes: int | None = None  # an attachment over this answers 413 code 40005
        self.denied: dict[int, set[str]] = {}  # channel id -> permissions the bot lacks there
        self._denied_in_interactions: set[int] = set()
        self._expired_tokens: dict[str, int] = {}  # interaction token -> status its webhook answers
        self.dm_channels: dict[str, int] = {}  # user id -> id of the bot's DM channel with them
        self._dms_blocked: set[str] = set()

    # ----------------------------------------------------------------- set-up
    def new_id(self) -> int:
        return next(self._ids)

    def _user(self, name: str) -> dict:
        return {"id": str(self.new_id()), "username": name, "discriminator": "0", "global_name": name.title(), "avatar": None}

    def user(self, name: str) -> dict:
        return self.users[name]

    def user_id(self, name: str) -> int:
        return int(self.users[name]["id"])

    def add_user(self, name: str) -> dict:
        """Another guild member; add before the bot connects so the guild payload lists it."""
        return self.users.setdefault(name, self._user(name))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._record_and_fail], client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{channel}/{aid}/{filename}", self._serve_attachment)
        api = API_PREFIX
        app.router.add_get(api + "/users/@me", lambda r: _json(self.bot_user))
        app.router.add_get(api + "/oauth2/applications/@me", self._application_info)
        app.router.add_get(api + "/gateway", lambda r: _json({"url": f"ws://127.0.0.1:{self.port}/gateway"}))
        app.router.add_put(api + "/applications/{app}/commands", self._sync_commands)
        app.router.add_put(api + "/applications/{app}/guilds/{guild}/commands", self._sync_commands)
        app.router.add_get(api + "/applications/{app}/commands", self._get_commands)
        app.router.add_get(api + "/applications/{app}/guilds/{guild}/commands", self._get_commands)
        app.router.add_post(api + "/interactions/{iid}/{token}/callback", self._interaction_callback)
        app.router.add_post(api + "/webhooks/{app}/{token}", self._webhook_execute)
        app.router.add_route("*", api + "/webhooks/{app}/{token}/messages/{mid}", self._webhook_message)
        app.router.add_post(api + "/channels/{cid}/messages", self._channel_send)
        app.router.add_get(api + "/channels/{cid}/messages", self._channel_history)
        app.router.add_post(api + "/users/@me/channels", self._open_dm)
        app.router.add_route("*", api + "/channels/{cid}/messages/{mid}", self._channel_message)
        app.router.add_route("*", api + "/channels/{cid}/messages/{mid}/reactions/{emoji}/{who}", self._reaction)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)  # URLs carry tokens
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def point_discord_py_here(self) -> None:
        import discord.gateway
        import discord.http

        discord.http.Route.BASE = self.base_url + API_PREFIX
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(f"ws://127.0.0.1:{self.port}/gateway")

    async def close(self) -> None:
        for stall in self._stalls:  # let held requests finish so the server can shut down
            stall.release()
        for ws, _ in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # ----------------------------------------------------------- observation
    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
        async def waiter() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        try:
            await asyncio.wait_for(waiter(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"fake Discord: timed out after {timeout} s waiting for {what}") from None

    def requests_to(self, method: str, pattern: str) -> list[RecordedRequest]:
        rx = re.compile(pattern)
        return [r for r in self.requests if r.method == method and rx.search(r.path)]

    def channel_messages(self, channel_id: int | None = None) -> list[StoredMessage]:
        cid = channel_id or self.channel_id
        return [m for m in self.messages.values() if m.channel_id == cid and m.webhook_id is None]

    # --------------------------------------------------------- fault injection
    def fail_next(self, method: str, path_pattern: str, *, status: int = 503, times: int = 1, retry_after: float = 0.05,
                  files_only: bool = False, body: dict | None = None):
        """The next ``times`` matching requests answer ``status`` (429 carries ``retry_after``).

        ``files_only``: only requests that upload files (multipart), e.g. the final track post and not
        the progress edits to the same message. ``body``: the JSON error body (Discord's code/message).
        """
        self._failures.append(
            {"method": method, "rx": re.compile(path_pattern), "status": status, "left": times, "retry_after": retry_after,
             "files_only": files_only, "body": body}
        )

    def stall_next(
        self, method: str, path_pattern: str, *, deliver: bool = True, files_only: bool = True
    ) -> Stall:
        """Hold the next matching request open: the bot waits for an answer that never comes
        (until ``release()`` or ``close()``) — e.g. to SIGKILL a bot process mid-request.

        ``deliver=True``: the request takes effect first (Discord stored the post, the reply was
        lost); ``False``: it never takes effect. ``files_only``: only requests that upload files.
        """
        stall = Stall(method, re.compile(path_pattern), deliver, files_only)
        self._stalls.append(stall)
        return stall

    def _stall_for(self, request: web.Request) -> Stall | None:
        for stall in self._stalls:
            if stall.held or stall.method != request.method or not stall.rx.search(request.path):
                continue
            if stall.files_only and not request.content_type.startswith("multipart/"):
                continue
            return stall
        return None

    async def _hold(self, stall: Stall, request: web.Request, rec: RecordedRequest, handler) -> web.StreamResponse:
        stall.held.append(rec)
        request["record"] = rec
        if stall.deliver:
            response = await handler(request)
        else:
            await request.read()  # swallowed: it never reaches the "server"
            rec.status, response = 503, _json({"message": "Service Unavailable", "code": 0}, 503)
        await self._notify()
        await stall.released.wait()
        return response

    @web.middleware
    async def _record_and_fail(self, request: web.Request, handler):
        if request.path == "/gateway":
            return await handler(request)
        rec = RecordedRequest(request.method, request.path, dict(request.query))
        self.requests.append(rec)
        stall = self._stall_for(request)
        if stall is not None:
            return await self._hold(stall, request, rec, handler)
        for failure in self._failures:
            if failure["left"] > 0 and failure["method"] == request.method and failure["rx"].search(request.path):
                if failure.get("files_only") and not request.content_type.startswith("multipart/"):
                    continue
                failure["left"] -= 1
                rec.status = failure["status"]
                await request.read()
                if failure["status"] == 429:
                    # discord.py retries a 429 only when it came through Discord's proxy (``Via``)
                    body = {"message": "You are being rate limited.", "retry_after": failure["retry_after"], "global": False}
                    return _json(body, 429, {"Via": "1.1 google", "Retry-After": str(failure["retry_after"])})
                return _json(failure.get("body") or {"message": "Internal Server Error", "code": 0}, failure["status"])
        request["record"] = rec
        response = await handler(request)
        rec.status = response.status
        await self._notify()
        return response

    # --------------------------------------------------------------- REST
    async def _application_info(self, request: web.Request) -> web.Response:
        return _json(
            {
                "id": str(self.application_id),
                "name": "TexTuneS",
                "icon": None,
                "description": "",
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": self.owner_user,
                "team": None,
                "verify_key": "0" * 64,
                "flags": 0,
                "bot": self.bot_user,
            }
        )

    async def _sync_commands(self, request: web.Request) -> web.Response:
        body = await request.json()
        request["record"].json = body
        guild = request.match_info.get("guild")
        stored = []
        for cmd in body:
            stored.append({**cmd, "id": str(self.new_id()), "application_id": str(self.application_id), "version": "1"})
            if guild:
                stored[-1]["guild_id"] = guild
        self.synced_commands[int(guild) if guild else None] = stored
        return _json(stored)

    async def _get_commands(self, request: web.Request) -> web.Response:
        guild = request.match_info.get("guild")
        return _json(self.synced_commands.get(int(guild) if guild else None, []))

    async def _read_body(self, request: web.Request) -> tuple[dict, list[tuple[str, str, bytes, str | None]]]:
        """JSON body, or multipart ``payload_json`` + ``files[n]`` parts."""
        files: list[tuple[str, str, bytes, str | None]] = []
        if request.content_type.startswith("multipart/"):
            payload: dict = {}
            reader = await request.multipart()
            async for part in reader:
                data = await part.read()  # type: ignore[union-attr]
                if part.name == "payload_json":
                    payload = json.loads(data)
                else:
                    files.append((part.name or "", part.filename or "file", bytes(data), part.headers.get("Content-Type")))
        else:
            raw = await request.read()
            payload = json.loads(raw) if raw else {}
        rec: RecordedRequest = request["record"]
        rec.json = payload
        rec.files = [(n, fn, d) for n, fn, d, _ in files]
        return payload, files

    def _apply(self, msg: StoredMessage, payload: dict, files: list[tuple[str, str, bytes, str | None]]) -> None:
        msg.edits.append(payload)
        if "content" in payload:
            msg.content = payload["content"] or ""
        if "embeds" in payload:
            msg.embeds = payload["embeds"] or []
        if "components" in payload:
            msg.components = payload["components"] or []
        new_files = {}
        for name, filename, data, ctype in files:
            m = re.fullmatch(r"files\[(\d+)\]", name)
            index = int(m.group(1)) if m else len(new_files)
            new_files[index] = StoredAttachment(self.new_id(), filename, data, ctype)
        if "attachments" in payload:
            kept = {a.id: a for a in msg.attachments}
            result = []
            for item in payload["attachments"] or []:
                ident = item.get("id")
                if isinstance(ident, int) and ident in new_files:
                    result.append(new_files.pop(ident))
                elif ident is not None and int(ident) in kept:
                    result.append(kept[int(ident)])
            msg.attachments = result + list(new_files.values())
        elif new_files:
            msg.attachments = msg.attachments + list(new_files.values())
        if "flags" in payload and payload["flags"] is not None:
            msg.flags = (msg.flags & (EPHEMERAL | LOADING)) | int(payload["flags"])
        msg.flags &= ~LOADING  # any edit ends the "thinking…" state

    def _new_message(self, channel_id: int, **kw) -> StoredMessage:
        msg = StoredMessage(id=self.new_id(), channel_id=channel_id, guild_id=self.guild_id, author=self.bot_user, **kw)
        self.messages[msg.id] = msg
        return msg

    async def _echo(self, event: str, msg: StoredMessage) -> None:
        # Discord echoes the bot's own visible messages on the gateway; discord.py caches them from it
        if not msg.ephemeral:
            await self.dispatch(event, msg.to_payload(self.base_url))

    async def _interaction_callback(self, request: web.Request) -> web.Response:
        inter = self.interactions.get(int(request.match_info["iid"]))
        if inter is None or inter.token != request.match_info["token"]:
            return _json({"message": "Unknown interaction", "code": 10062}, 404)
        if inter.callback is not None:
            return _json({"message": "Interaction has already been acknowledged.", "code": 40060}, 400)
        body, files = await self._read_body(request)
        ctype = body.get("type")
        data = body.get("data") or {}
        inter.callback = {"type": ctype, "data": data}
        inter.callback_at = time.monotonic()
        resource: dict = {"type": ctype}
        reply = {"id": str(inter.id), "type": inter.payload["type"]}
        channel_id = int(inter.payload["channel_id"])
        if ctype in (4, 5):
            flags = int(data.get("flags") or 0) | (LOADING if ctype == 5 else 0)
            msg = self._new_message(channel_id, webhook_id=self.application_id, interaction_id=inter.id, flags=flags)
            if ctype == 4:
                self._apply(msg, data, files)
                msg.flags = flags
            inter.original_id = msg.id
            resource["message"] = msg.to_payload(self.base_url)
            reply.update(response_message_id=str(msg.id), response_message_loading=ctype == 5,
                         response_message_ephemeral=bool(flags & EPHEMERAL))
            await self._echo("MESSAGE_CREATE", msg)
        elif ctype == 7 and "message" in inter.payload:
            msg = self.messages[int(inter.payload["message"]["id"])]
            self._apply(msg, data, files)
            await self._echo("MESSAGE_UPDATE", msg)
        await self._notify()
        return _json({"interaction": reply, "resource": resource})

    async def _webhook_execute(self, request: web.Request) -> web.Response:
        inter = self._by_token.get(request.match_info["token"])
        if inter is None:
            return _json({"message": "Unknown Webhook", "code": 10015}, 404)
        if (gone := self._expired_webhook(inter)) is not None:
            await request.read()
            return gone
        body, files = await self._read_body(request)
        if (refused := self._refusal(int(inter.payload["channel_id"]), files, creating=True, webhook=True)) is not None:
            return refused
        msg = self._new_message(int(inter.payload["channel_id"]), webhook_id=self.application_id,
                                interaction_id=inter.id, flags=int(body.get("flags") or 0))
        self._apply(msg, body, files)
        msg.flags = int(body.get("flags") or 0)
        inter.followup_ids.append(msg.id)
        await self._echo("MESSAGE_CREATE", msg)
        await self._notify()
        return _json(msg.to_payload(self.base_url))

    async def _webhook_message(self, request: web.Request) -> web.Response:
        inter = self._by_token.get(request.match_info["token"])
        if inter is None:
            return _json({"message": "Unknown Webhook", "code": 10015}, 404)
        if (gone := self._expired_webhook(inter)) is not None:
            await request.read()
            return gone
        mid = request.match_info["mid"]
        msg_id = inter.original_id if mid == "@original" else int(mid)
        msg = self.messages.get(msg_id) if msg_id else None
        if msg is None or msg.deleted:
            return _json({"message": "Unknown Message", "code": 10008}, 404)
        if request.method == "GET":
            return _json(msg.to_payload(self.base_url))
        if request.method == "DELETE":
            msg.deleted = True
            await self._notify()
            return web.Response(status=204)
        body, files = await self._read_body(request)
        if (refused := self._refusal(msg.channel_id, files, creating=False, webhook=True)) is not None:
            return refused
        self._apply(msg, body, files)
        await self._echo("MESSAGE_UPDATE", msg)
        await self._notify()
        return _json(msg.to_payload(self.base_url))

    async def _channel_send(self, request: web.Request) -> web.Response:
        body, files = await self._read_body(request)
        if (refused := self._refusal(int(request.match_info["cid"]), files, creating=True)) is not None:
            return refused
        msg = self._new_message(int(request.match_info["cid"]), message_reference=body.get("message_reference"))
        if msg.channel_id in self.dm_channels.values():
            msg.guild_id = None
        self._apply(msg, body, files)
        await self._echo("MESSAGE_CREATE", msg)
        await self._notify()
        return _json(msg.to_payload(self.base_url))

    def _history_key(self, snowflake: str, *, upper: bool) -> tuple[float, float]:
        """Where a ``before``/``after`` cursor falls: one of our messages (our ids are counters, not
        timestamps), else a time snowflake as discord.py makes from a datetime."""
        msg = self.messages.get(int(snowflake))
        if msg is not None:
            return (msg.created, msg.id)
        at = ((int(snowflake) >> 22) + DISCORD_EPOCH_MS) / 1000
        return (at, float("inf") if upper else -1.0)

    async def _channel_history(self, request: web.Request) -> web.Response:
        """GET /channels/{cid}/messages like Discord: up to ``limit`` (1-100, default 50) visible
        messages, newest first; ``before``/``after`` bound them, and ``after`` alone gives the oldest
        ``limit`` after it. Without Read Message History: 403 code 50001."""
        cid = int(request.match_info["cid"])
        if "read_message_history" in self.denied.get(cid, set()):
            return _json({"message": "Missing Access", "code": 50001}, 403)
        limit = max(1, min(int(request.query.get("limit", 50)), 100))
        found = sorted(
            (m for m in self.messages.values() if m.channel_id == cid and not m.deleted and not m.ephemeral),
            key=lambda m: (m.created, m.id),
        )
        after, before = request.query.get("after"), request.query.get("before")
        if after is not None:
            low = self._history_key(after, upper=True)
            found = [m for m in found if (m.created, m.id) > low]
        if before is not None:
            high = self._history_key(before, upper=False)
            found = [m for m in found if (m.created, m.id) < high]
        page = found[:limit] if after is not None and before is None else found[-limit:]
        return _json([m.to_payload(self.base_url) for m in reversed(page)])

    async def _channel_message(self, request: web.Request) -> web.Response:
        msg = self.messages.get(int(request.match_info["mid"]))
        if msg is None or msg.deleted:
            return _json({"message": "Unknown Message", "code": 10008}, 404)
        if request.method == "GET":
            return _json(msg.to_payload(self.base_url))
        if request.method == "DELETE":
            msg.deleted = True
            await self._notify()
            return web.Response(status=204)
        body, files = await self._read_body(request)
        if (refused := self._refusal(msg.channel_id, files, creating=False)) is not None:
            return refused
        self._apply(msg, body, files)
        await self._echo("MESSAGE_UPDATE", msg)
        await self._notify()
        return _json(msg.to_payload(self.base_url))

    async def _reaction(self, request: web.Request) -> web.Response:
        msg = self.messages.get(int(request.match_info["mid"]))
        if msg is None:
            return _json({"message": "Unknown Message", "code": 10008}, 404)
        emoji = request.match_info["emoji"]
        if request.method == "PUT":
            msg.reactions.append(emoji)
        elif request.method == "DELETE" and emoji in msg.reactions:
            msg.reactions.remove(emoji)
        await self._notify()
        return web.Response(status=204)

    async def _serve_attachment(self, request: web.Request) -> web.Response:
        self.requests.append(RecordedRequest("GET", request.path, dict(request.query)))
        att = self.uploads.get(int(request.match_info["aid"]))
        if att is None:
            for msg in self.messages.values():
                att = next((a for a in msg.attachments if a.id == int(request.match_info["aid"])), None)
                if att:
                    break
        if att is None:
            return _json({"message": "Not found"}, 404)
        return web.Response(body=att.data, headers={"Content-Type": att.content_type or "application/octet-stream"})

    # --------------------------------------------------------------- gateway
    def _guild_payload(self) -> dict:
        members = [self._member(u) for u in [self.bot_user, *self.users.values()]]
        return {
            "id": str(self.guild_id),
            "name": "Fake Guild",
            "icon": None,
            "owner_id": str(self.owner_user["id"]),
            "features": [],
            "roles": [{"id": str(self.guild_id), "name": "@everyone", "permissions": str(MEMBER_PERMISSIONS),
                       "position": 0, "color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0}],
            "emojis": [],
            "stickers": [],
            "channels": [{"id": str(self.channel_id), "type": 0, "name": "music", "position": 0,
                          "permission_overwrites": self._overwrites(self.channel_id), "guild_id": str(self.guild_id)}],
            "threads": [],
            "members": members,
            "member_count": len(members),  # equal to the members sent, so discord.py does not chunk
            "voice_states": [],
            "presences": [],
            "large": False,
            "unavailable": False,
            "premium_tier": 0,
            "mfa_level": 0,
            "verification_level": 0,
            "explicit_content_filter": 0,
            "default_message_notifications": 0,
            "preferred_locale": "ko",
            "nsfw_level": 0,
            "system_channel_flags": 0,
            "joined_at": _now_iso(),
        }

    def _member(self, user: dict) -> dict:
        perms = ALL_PERMISSIONS if int(user["id"]) in self.admins else MEMBER_PERMISSIONS
        return {"user": user, "roles": [], "joined_at": _now_iso(), "deaf": False, "mute": False, "flags": 0,
                "pending": False, "nick": None, "permissions": str(perms)}

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        seq = itertools.count(1)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None}))
        try:
            async for frame in ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    continue
                msg = json.loads(frame.data)
                op = msg.get("op")
                if op == 1:
                    await ws.send_str(json.dumps({"op": 11, "d": None, "s": None, "t": None}))
                elif op == 2:
                    self.identify_payloads.append(msg["d"])
                    self._sockets.append((ws, seq))
                    ready = {
                        "v": 10,
                        "user": self.bot_user,
                        "guilds": [{"id": str(self.guild_id), "unavailable": True}],
                        "session_id": f"session-{len(self.identify_payloads)}",
                        "resume_gateway_url": f"ws://127.0.0.1:{self.port}/gateway",
                        "application": {"id": str(self.application_id), "flags": 0},
                        "private_channels": [],
                        "relationships": [],
                    }
                    await self._send(ws, seq, "READY", ready)
                    await self._send(ws, seq, "GUILD_CREATE", self._guild_payload())
                    await self._notify()
                elif op == 6:
                    self._sockets.append((ws, seq))
                    await self._send(ws, seq, "RESUMED", {})
        finally:
            self._sockets = [(s, q) for s, q in self._sockets if s is not ws]
            await self._notify()
        return ws

    async def _send(self, ws: web.WebSocketResponse, seq: itertools.count, event: str, data: dict) -> None:
        await ws.send_str(json.dumps({"op": 0, "t": event, "s": next(seq), "d": data}))

    async def dispatch(self, event: str, data: dict) -> None:
        for ws, seq in list(self._sockets):
            if not ws.closed:
                await self._send(ws, seq, event, data)

    async def wait_connected(self, count: int = 1, timeout: float = 10.0) -> None:
        await self.wait_until(lambda: len(self.identify_payloads) >= count and bool(self._sockets), timeout,
                              "the bot to IDENTIFY")

    # ------------------------------------------------------ driving the bot
    def add_attachment(self, filename: str, data: bytes, content_type: str | None = None, size: int | None = None) -> dict:
        """A file a user attached to a command; ``size`` may claim more than ``len(data)``."""
        att = StoredAttachment(self.new_id(), filename, data, content_type)
        self.uploads[att.id] = att
        url = f"{self.base_url}/attachments/{self.channel_id}/{att.id}/{filename}"
        payload = {"id": str(att.id), "filename": filename, "size": size if size is not None else len(data),
                   "url": url, "proxy_url": url}
        if content_type:
            payload["content_type"] = content_type
        return payload

    def attachment_downloads(self, attachment: dict) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "GET" and r.path.startswith("/attachments/")
                and f"/{attachment['id']}/" in r.path]

    def _interaction_payload(self, itype: int, data: dict, user: str, message: StoredMessage | None = None) -> dict:
        iid = self.new_id()
        payload = {
            "id": str(iid),
            "application_id": str(self.application_id),
            "type": itype,
            "data": data,
            "guild_id": str(self.guild_id),
            "guild": {"id": str(self.guild_id), "locale": "ko", "features": []},
            "channel_id": str(self.channel_id),
            "channel": {"id": str(self.channel_id), "type": 0, "guild_id": str(self.guild_id), "name": "music"},
            "member": self._member(self.users[user]),
            "token": f"itoken-{iid}",
            "version": 1,
            "locale": "en-US",
            "guild_locale": "ko",
            "app_permissions": str(ALL_PERMISSIONS),
            "attachment_size_limit": self.attachment_size_limit,
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(self.guild_id)},
            "context": 0,
        }
        if message is not None:
            payload["message"] = message.to_payload(self.base_url)
        return payload

    async def _inject(self, payload: dict) -> FakeInteraction:
        inter = FakeInteraction(self, payload)
        self.interactions[inter.id] = inter
        self._by_token[inter.token] = inter
        await self.dispatch("INTERACTION_CREATE", payload)
        return inter

    @staticmethod
    def _options(options: dict[str, Any], focused: str | None = None) -> tuple[list[dict], dict]:
        out, resolved = [], {}
        for name, value in options.items():
            if isinstance(value, dict) and "url" in value:  # an attachment from add_attachment
                out.append({"name": name, "type": 11, "value": value["id"]})
                resolved.setdefault("attachments", {})[value["id"]] = value
                continue
            opt = {"name": name, "type": _OPTION_TYPES.get(type(value), 3), "value": value}
            if name == focused:
                opt["focused"] = True
                opt["type"] = 3 if isinstance(value, str) else opt["type"]
            out.append(opt)
        return out, resolved

    async def slash(self, name: str, options: dict[str, Any] | None = None, *, user: str = "alice") -> FakeInteraction:
        opts, resolved = self._options(options or {})
        data = {"id": str(self.new_id()), "name": name, "type": 1, "options": opts}
        if resolved:
            data["resolved"] = resolved
        return await self._inject(self._interaction_payload(2, data, user))

    async def autocomplete(
        self, name: str, options: dict[str, Any], focused: str, *, user: str = "alice", timeout: float = 5.0
    ) -> list[dict]:
        opts, _ = self._options(options, focused)
        data = {"id": str(self.new_id()), "name": name, "type": 1, "options": opts}
        inter = await self._inject(self._interaction_payload(4, data, user))
        await inter.wait_callback(timeout)
        return inter.choices()

    async def click(self, message: StoredMessage, custom_id: str, *, user: str = "alice") -> FakeInteraction:
        assert custom_id in message.custom_ids(), f"{custom_id!r} not on the message ({message.custom_ids()})"
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._inject(self._interaction_payload(3, data, user, message))

    async def submit_modal(
        self, custom_id: str, values: dict[str, str], *, user: str = "alice", message: StoredMessage | None = None
    ) -> FakeInteraction:
        rows = [{"type": 1, "components": [{"type": 4, "custom_id": k, "value": v}]} for k, v in values.items()]
        data = {"custom_id": custom_id, "components": rows}
        return await self._inject(self._interaction_payload(5, data, user, message))

    async def react(self, message: StoredMessage, emoji: str = "\N{CLOCKWISE RIGHTWARDS AND LEFTWARDS OPEN CIRCLE ARROWS}",
                    *, user: str = "alice") -> None:
        user_payload = self.users[user]
        await self.dispatch(
            "MESSAGE_REACTION_ADD",
            {
                "user_id": user_payload["id"],
                "channel_id": str(message.channel_id),
                "message_id": str(message.id),
                "guild_id": str(self.guild_id),
                "member": self._member(user_payload),
                "emoji": {"id": None, "name": emoji},
                "message_author_id": str(self.application_id),
                "burst": False,
                "burst_colors": [],
                "type": 0,
            },
        )

    # ------------------------------------------- permissions, expired tokens, DMs, upload size
    _PERMISSION_BITS = {"send_messages": 1 << 11, "embed_links": 1 << 14, "attach_files": 1 << 15,
                        "read_message_history": 1 << 16}

    def _overwrites(self, channel_id: int) -> list[dict]:
        bits = sum(self._PERMISSION_BITS[p] for p in self.denied.get(channel_id, ()))
        if not bits:
            return []
        return [{"id": str(self.application_id), "type": 1, "allow": "0", "deny": str(bits)}]

    async def deny_permission(self, permission: str, *, channel_id: int | None = None,
                              interactions: bool = False) -> None:
        """Take ``permission`` ("send_messages", "attach_files", ...) from the bot in a channel.

        New messages (``send_messages``) or uploads (``attach_files``) there answer 403 code 50013
        "Missing Permissions", and a CHANNEL_UPDATE with the overwrite tells the bot's cache, as
        Discord does. Interaction responses are exempt (Discord grants apps Attach Files and Embed
        Links in them) unless ``interactions=True``, which refuses their uploads too.
        """
        if permission not in self._PERMISSION_BITS:
            raise ValueError(f"unknown permission {permission!r}")
        cid = channel_id or self.channel_id
        self.denied.setdefault(cid, set()).add(permission)
        if interactions:
            self._denied_in_interactions.add(cid)
        if cid == self.channel_id:
            await self.dispatch("CHANNEL_UPDATE", {
                "id": str(cid), "type": 0, "name": "music", "position": 0, "guild_id": str(self.guild_id),
                "permission_overwrites": self._overwrites(cid)})

    def expire_interaction(self, inter: FakeInteraction, status: int = 404) -> None:
        """The interaction's webhook stops working, as after Discord's 15 minutes: follow-ups and edits
        answer 404 code 10015 "Unknown Webhook" or 401 code 50027 "Invalid Webhook Token"."""
        if status not in (401, 404):
            raise ValueError("an expired interaction answers 401 or 404")
        self._expired_tokens[inter.token] = status

    def _expired_webhook(self, inter: FakeInteraction) -> web.Response | None:
        status = self._expired_tokens.get(inter.token)
        if status is None:
            return None
        if status == 401:
            return _json({"message": "Invalid Webhook Token", "code": 50027}, 401)
        return _json({"message": "Unknown Webhook", "code": 10015}, 404)

    def block_dms(self, name: str) -> None:
        """``name`` does not accept DMs from the bot: sends answer 403 code 50007."""
        self._dms_blocked.add(self.users[name]["id"])

    def dm_messages(self, name: str) -> list[StoredMessage]:
        cid = self.dm_channels.get(self.users[name]["id"])
        return [m for m in self.messages.values() if cid is not None and m.channel_id == cid]

    def _refusal(self, channel_id: int, files: list, *, creating: bool, webhook: bool = False) -> web.Response | None:
        """Discord's answer when the bot may not post this here, else None."""
        if creating and any(cid == channel_id and uid in self._dms_blocked for uid, cid in self.dm_channels.items()):
            return _json({"message": "Cannot send messages to this user", "code": 50007}, 403)
        denied = self.denied.get(channel_id, set())
        if webhook and channel_id not in self._denied_in_interactions:
            denied = set()
        if (creating and not webhook and "send_messages" in denied) or (files and "attach_files" in denied):
            return _json({"message": "Missing Permissions", "code": 50013}, 403)
        if self.max_upload_bytes is not None and any(len(f[2]) > self.max_upload_bytes for f in files):
            return _json({"message": "Request entity too large", "code": 40005}, 413)
        return None

    async def _open_dm(self, request: web.Request) -> web.Response:
        body, _ = await self._read_body(request)
        uid = str(body.get("recipient_id"))
        user = next((u for u in self.users.values() if u["id"] == uid), None)
        if user is None:
            return _json({"message": "Unknown User", "code": 10013}, 404)
        cid = self.dm_channels.setdefault(uid, self.new_id())
        return _json({"id": str(cid), "type": 1, "recipients": [user], "last_message_id": None, "flags": 0})
