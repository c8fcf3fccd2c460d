"""A small fake Discord (REST + gateway) that the real discord.py client can talk to.

    fake = FakeDiscord()
    await fake.start()
    fake.point_discord_py_here()          # Route.BASE + DiscordWebSocket.DEFAULT_GATEWAY
    ... run a bot with any token ...
    inter = await fake.slash("bgm", {"genre": "Lofi"})
    msg = await inter.wait_for_result()
"""

from tests.fake_discord.server import FakeDiscord, FakeInteraction, StoredMessage

__all__ = ["FakeDiscord", "FakeInteraction", "StoredMessage"]
