"""Local images put in the user's own object storage (S3 and compatibles, GCS, Azure).

``location`` (pure: ``upload_to`` and object keys), ``credentials`` (pure: are
there any), ``records`` (``uploads.jsonl``), ``store`` (the obstore client),
``upload`` (the uploads, retried, and the check of every URL), ``images`` (pure:
a manifest's local files, and the manifest with their URLs) and ``prepare`` (the
step a run and ``batchkling upload`` take).
"""

from __future__ import annotations

__all__: list[str] = []
