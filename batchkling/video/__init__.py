"""Videos: what a downloaded file must be to count as done, and where it and its poster live.

- ``rules``: pure: names in ``videos/``, the duration tolerance, what the ledger records;
- ``verify``: a file opened with PyAV: container, video stream, first and last frames,
  and the first frame as a JPEG poster;
- ``store``: putting a verified file in place without ever writing over an earlier one.

Import from the modules; this package imports nothing, so that a command loads only what it uses.
"""

__all__: list[str] = []
