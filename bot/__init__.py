"""The Discord front end: cogs, checks, delivery; it talks to the engine only through MusicService."""
