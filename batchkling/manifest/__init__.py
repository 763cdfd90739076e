"""Manifests: YAML and CSV readers that keep source lines, the rules, building jobs, problems, the
shipped schemas.

Import from the modules; this package imports nothing, so that a command loads only what it uses.
"""

__all__: list[str] = []
