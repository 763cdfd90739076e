"""Settling in-doubt creates: pure matching against the credits usage, and the shell that pages it
and writes the verdicts.

Import from the modules; this package imports nothing, so that a command loads only what it uses.
"""

__all__: list[str] = []
