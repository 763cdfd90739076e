"""The sjinn Tool API client: one send path, the answer types, and the request gate that paces
every call.

Import from the modules; this package imports nothing, so that a command loads only what it uses.
"""

__all__: list[str] = []
