"""A run directory seen from outside: one row per job, the report builds (JSON, CSV) and the HTML
storyboard.

Import from the modules; this package imports nothing, so that a command loads only what it uses.
"""

__all__: list[str] = []
