"""One run of a manifest: the whole sequence (``run_manifest``), selection, the runner and its
units (submit, follow, download), options.

Import from the modules; this package imports nothing, so that a command loads only what it uses.
"""

__all__: list[str] = []
