"""The sjinn Tool API client: one send path (``client``), the table from failed answers to
exceptions (``failures``), the answer types (``answers``), and the request gate that paces
every call (``gate``).

Import from the modules; this package imports nothing, so that a command loads only what it uses.
"""

__all__: list[str] = []
