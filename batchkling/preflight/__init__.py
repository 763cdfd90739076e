"""Pre-flight: what can be checked for free before a credit is spent (the account, every image).

Import from the modules; this package imports nothing, so that a command loads only what it uses.
"""

__all__: list[str] = []
