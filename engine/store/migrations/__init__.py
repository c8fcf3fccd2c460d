"""Numbered schema migrations for ``engine.store`` (applied in order, never edited once released).

Each module here is named ``NNNN_what.py`` and defines ``SQL`` (a script run inside one transaction)
and/or ``upgrade(conn)`` (for data migrations that need Python). The store records every applied
version in ``schema_migrations``; to change the schema, add the next number — never edit an old one,
because databases in the wild have already run it.
"""
